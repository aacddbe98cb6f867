/*  zcq_coordinator.h: what a clustered node runs to take part in its
    cluster (coordinator.c): its registration in ZooKeeper, a live view of
    the cluster for the other actors, and its group's leadership.

        zcq_coordinator_args_t args = { .zk = "127.0.0.1:2181/zcqrs", .node = "n1",
                                        .group = 0, .role = "replica", .command = ..., };
        zcq_coordinator_t *coordinator = zcq_coordinator_new (&args, error, sizeof error);
        ...
        uint64_t epoch;
        if (zcq_coordinator_leading (coordinator, &epoch))
            ...decide the command under epoch...
        zcq_cluster_view_t *view = zcq_coordinator_view (coordinator);
        const char *owner = zcq_cluster_view_leader (view, group);
        zcq_cluster_view_release (&view);
        zcq_coordinator_destroy (&coordinator);

    THREAD SAFETY: zcq_coordinator_view, _generation and _leading may be
    called from any thread at any time between new and destroy: the view
    is swapped under a lock and immutable, generation and the leading
    epoch are atomics. A thread that caches a view polls the generation
    and takes a new view when it moved.

    Pipe: only $TERM (zcq_coordinator_destroy).
*/
#ifndef ZCQ_COORDINATOR_H_INCLUDED
#define ZCQ_COORDINATOR_H_INCLUDED

#include "zcq_internal.h"

typedef struct zcq_coordinator_t zcq_coordinator_t;

typedef struct {
    const char *zk;   //  HOST:PORT[,HOST:PORT...]/PATH
    const char *node; //  node id, a znode name (zcq_cluster_node_id_ok)
    int group;        //  the group it replicates; -1 with role `views`
    const char *role; //  `replica` (default when NULL) or `views`
    //  endpoints as others connect to them: no `*`, no port 0, no inproc
    const char *command;
    const char *events;
    const char *query;
    const char *replication; //  NULL or "": none yet
    int session_ms;          //  ZooKeeper session timeout; 0: 4000
} zcq_coordinator_args_t;

//  Check an endpoint that a clustered node publishes; false with a reason.
bool zcq_coordinator_endpoint_ok (const char *name, const char *endpoint, char *error, size_t size);

//  Connect, check the cluster exists, register nodes/<node> and read the
//  cluster; returns once the first view is there, or NULL with a reason
//  (no cluster at PATH, ZooKeeper unreachable, the node id registered by
//  another live process for longer than twice the session timeout, ...).
//  The node starts as a follower: it leads only once it won an epoch.
zcq_coordinator_t *zcq_coordinator_new (const zcq_coordinator_args_t *args, char *error,
                                        size_t size);
//  Leave the cluster (the session closes: nodes/<node> goes at once).
void zcq_coordinator_destroy (zcq_coordinator_t **self_p);
//  The current view, with a reference the caller releases
//  (zcq_cluster_view_release). Never NULL after a successful new.
zcq_cluster_view_t *zcq_coordinator_view (zcq_coordinator_t *self);
//  Grows by one or more on every change of the view.
uint64_t zcq_coordinator_generation (zcq_coordinator_t *self);
//  Whether this node leads its group now, and under which epoch. False at
//  once when the ZooKeeper lease is older than two thirds of the session
//  timeout (cluster.md 6.5); leadership then comes back only with a new
//  epoch. The write path calls this before it decides commands.
bool zcq_coordinator_leading (zcq_coordinator_t *self, uint64_t *epoch);

#endif
