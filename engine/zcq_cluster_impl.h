/*  zcq_cluster_impl.h: the cluster's metadata in ZooKeeper (cluster.c),
    for the coordinator and the operator actions. docs/cluster.md has the
    znode layout. */
#ifndef ZCQ_CLUSTER_IMPL_H_INCLUDED
#define ZCQ_CLUSTER_IMPL_H_INCLUDED

#include "zcq_internal.h"
#include "zcq_zk.h"

//  A node id a cluster accepts (it names a znode): 1 to 64 letters, digits,
//  '.', '_' or '-', not `.` or `..`.
bool zcq_cluster_node_id_ok (const char *node);

//  The znodes' texts that make a view, as read (untrusted: every one is
//  checked by zcq_cluster_view_build).
typedef struct {
    const char *path; //  PATH, for the reasons given
    const char *id;
    const char *config;
    const char *map;
    int32_t map_version;
    size_t group_count; //  groups/0 .. groups/<group_count - 1>
    const char *const *groups;
    const int32_t *group_versions;
    size_t node_count; //  nodes/<node_names[i]> holds nodes[i]
    const char *const *node_names;
    const char *const *nodes;
} zcq_cluster_texts_t;

//  Build a view from texts. ZCQ_CORRUPT with a reason naming the znode when
//  the id, config, map or a group state is malformed (or the map does not
//  cover every slot exactly once, or fewer groups were read than the config
//  has); a malformed node is left out with a warning, since one bad node
//  must not hide the cluster.
zcq_err_t zcq_cluster_view_build (const zcq_cluster_texts_t *texts, zcq_cluster_view_t **view_p,
                                  char *error, size_t size);
//  Read the cluster under the session's PATH and build a view; with watch,
//  arm the watches MAP (map), GROUPS (each groups/<g>) and NODES (nodes'
//  children). ZCQ_NOT_FOUND when PATH holds no cluster.
zcq_err_t zcq_cluster_load (zcq_zk_t *zk, bool watch, zcq_cluster_view_t **view_p, char *error,
                            size_t size);
//  Fill in the node a view is seen from (before it is handed out): its
//  role follows from its group's state and the epoch it leads under.
void zcq_cluster_view_set_self (zcq_cluster_view_t *self, const char *node, int group, bool views,
                                uint64_t epoch, uint64_t generation);

//  The JSON of a group's state; the caller frees. NULL when out of memory.
char *zcq_cluster_group_json (const char *leader, uint64_t epoch, const char *const *isr,
                              size_t isr_count);

//  What a node registers (nodes/<id>).
typedef struct {
    const char *node;
    int group;        //  -1: views only
    const char *role; //  `replica` or `views`
    const char *command;
    const char *events;
    const char *query;
    const char *replication; //  NULL: none
} zcq_cluster_registration_t;
//  Its JSON; the caller frees. NULL when out of memory.
char *zcq_cluster_node_json (const zcq_cluster_registration_t *node);

#endif
