/*  zcq_cluster.h: what a zcqrs cluster is made of (docs/cluster.md, the
    spec in cluster.md): slots, the slot map, groups and live nodes, as a
    snapshot any thread may read, and the two operator actions that work
    on ZooKeeper directly.

        uint32_t slot = zcq_slot_of ("account/{ann}-savings", 21, 16384);

        zcq_cluster_view_t *view;
        if (zcq_cluster_status ("127.0.0.1:2181/zcqrs", 5000, &view, error, sizeof error) == 0) {
            int group = zcq_cluster_view_group_of (view, "account/ann", 11);
            const char *owner = zcq_cluster_view_leader (view, group);
            zcq_cluster_view_release (&view);
        }

    A view is immutable once handed out and reference counted: take one,
    read it as long as needed, release it. Every string in it lives as long
    as the view.
*/
#ifndef ZCQ_CLUSTER_H_INCLUDED
#define ZCQ_CLUSTER_H_INCLUDED

#include "zcq_error.h"
#include "zcq_value.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZCQ_CLUSTER_SLOTS_MAX    16384 //  and the default slot count
#define ZCQ_CLUSTER_REPLICAS_MAX 9

//  --------------------------------------------------------------------------
//  Slots

//  CRC16 exactly as Redis Cluster's: XMODEM (poly 0x1021, init 0, no
//  reflection, no final xor); zcq_crc16 ("123456789", 9) == 0x31C3.
ZCQ_EXPORT uint16_t zcq_crc16 (const void *data, size_t size);

//  The slot of a stream (`aggregate/key`) among slots: CRC16 of its hash
//  part mod slots. The hash part is the whole name, unless it holds a `{`
//  followed later by a `}` with at least one byte between the first `{` and
//  the first `}` after it: then only those bytes (Redis hash tags).
ZCQ_EXPORT uint32_t zcq_slot_of (const char *stream, size_t len, uint32_t slots);

//  One range of the slot map: slots first..last (inclusive) are group's.
typedef struct {
    uint32_t first;
    uint32_t last;
    int group;
} zcq_slot_range_t;

//  The even map of `cluster create`: group 0 the first slots / groups
//  slots, group 1 the next as many, ..., the last group the remainder.
//  Writes groups ranges; groups must be 1..slots.
ZCQ_EXPORT void zcq_slot_map_even (uint32_t slots, int groups, zcq_slot_range_t *ranges);

//  --------------------------------------------------------------------------
//  A snapshot of the cluster

//  A live node, as it registered itself (nodes/<id> in ZooKeeper).
typedef struct {
    const char *node;
    int group;        //  -1 for a views-only node
    const char *role; //  `leader`, `follower` or `views` (from the groups' state)
    const char *command;
    const char *events;
    const char *query;
    const char *replication; //  NULL when the node gave none
} zcq_cluster_node_t;

//  A group: its state in ZooKeeper and its live replicas.
typedef struct {
    int group;
    uint64_t epoch;
    const char *leader; //  as recorded, NULL when none; it may be dead
    size_t isr_count;
    const char *const *isr;
    size_t replica_count; //  live nodes of this group
    const zcq_cluster_node_t *const *replicas;
    int32_t version; //  the znode version the state was read at
} zcq_cluster_group_t;

typedef struct {
    const char *id; //  the cluster id (hex)
    uint32_t slots;
    int replicas; //  R of `cluster create`
    int min_insync;
    int64_t map_version;
    const uint16_t *slot_group; //  slots entries: the group of each slot
    size_t range_count;
    const zcq_slot_range_t *ranges; //  the map as stored, by first slot
    size_t group_count;
    const zcq_cluster_group_t *groups; //  groups[g].group == g
    size_t node_count;
    const zcq_cluster_node_t *nodes; //  every live node, by id
    //  the node that made the view (a coordinator's), else NULL / -1 / 0
    const char *node;
    int group;
    const char *role;    //  `leader`, `follower`, `views`; NULL when no node
    uint64_t epoch;      //  the epoch this node leads its group under, 0 if none
    uint64_t generation; //  the coordinator's generation when it was made
} zcq_cluster_view_t;

//  Release a view taken from a coordinator or zcq_cluster_status. Safe on
//  NULL; nulls the pointer.
ZCQ_EXPORT void zcq_cluster_view_release (zcq_cluster_view_t **self_p);
//  Take one more reference (for handing a view to another thread).
ZCQ_EXPORT zcq_cluster_view_t *zcq_cluster_view_ref (zcq_cluster_view_t *self);
//  The group that owns a stream's slot.
ZCQ_EXPORT int zcq_cluster_view_group_of (const zcq_cluster_view_t *self, const char *stream,
                                          size_t len);
//  The command endpoint of a group's leader when that leader is a live node,
//  else NULL (no leader, dead leader, no such group).
ZCQ_EXPORT const char *zcq_cluster_view_leader (const zcq_cluster_view_t *self, int group);
//  A live node by id, or NULL.
ZCQ_EXPORT const zcq_cluster_node_t *zcq_cluster_view_node (const zcq_cluster_view_t *self,
                                                            const char *node);

//  Where the high watermarks and replica positions of a `cluster` reply
//  come from; either function may be NULL (0 is written: unknown).
typedef struct {
    uint64_t (*hw) (void *arg, int group);
    uint64_t (*position) (void *arg, int group, const char *node);
    void *arg;
} zcq_cluster_hw_t;

//  Write the fields of the `cluster` reply (cluster.md section 5): id,
//  slots, map_version, map, groups, nodes, as key/value pairs into a map
//  the caller opened (zcq_writer_map_open). Returns the number of pairs
//  written, for the caller's zcq_writer_map_close.
ZCQ_EXPORT size_t zcq_cluster_view_encode (const zcq_cluster_view_t *self, zcq_writer_t *writer,
                                           const zcq_cluster_hw_t *hw);

//  --------------------------------------------------------------------------
//  Operator actions on ZooKeeper. zk is `HOST:PORT[,HOST:PORT...]/PATH`.

typedef struct {
    uint32_t slots; //  1..16384
    int groups;     //  1..slots
    int replicas;   //  1..9
    int min_insync; //  1..replicas
} zcq_cluster_config_t;

//  Create a cluster at PATH (and PATH's parents): a random id, the config,
//  an even slot map, every group without a leader at epoch 0. ZCQ_CONFLICT
//  when PATH already holds a cluster (or a part of one), ZCQ_INVALID for a
//  bad config or zk string, ZCQ_UNAVAILABLE when ZooKeeper does not answer
//  within timeout_ms; each with a reason in error.
ZCQ_EXPORT zcq_err_t zcq_cluster_create (const char *zk, const zcq_cluster_config_t *config,
                                         int timeout_ms, char *error, size_t size);
//  Read the cluster at PATH into a view (without a node of its own).
//  ZCQ_NOT_FOUND when there is no cluster at PATH. The caller releases the
//  view.
ZCQ_EXPORT zcq_err_t zcq_cluster_status (const char *zk, int timeout_ms,
                                         zcq_cluster_view_t **view_p, char *error, size_t size);

#ifdef __cplusplus
}
#endif
#endif
