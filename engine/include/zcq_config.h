/*  zcq_config.h: a node's settings, from code, flags or a ZPL file.

    Every setting has a name and a string form, so flags (--shards 4), a
    config file (czmq ZPL) and C code (zcq_config_set) go through the same
    validation:

        data             data directory                  ./zcqrs-data
        command          command endpoint                tcp://127.0.0.1:7400
        events           events endpoint                 tcp://127.0.0.1:7401
        query            query endpoint                  tcp://127.0.0.1:7402
        node             node id                         node1
        durability       wal | fsync                     wal
        shards           aggregate shard actors          number of cores
        cache            aggregates cached per shard     100000
        dedup-window     seconds a command id is kept    86400
        request-limit    largest request body, bytes     1048576
        publish-limit    largest event sent whole on the   65536
                         events endpoint, bytes (a larger
                         one is read from the log; 0: no
                         limit)
        heartbeat-ms     heartbeat interval              500
        max-inflight     commands in flight per node     65536
        view-snapshot-every  events between view snapshots   1000000
                         (0: never; also saved at a clean stop)
        retention-interval-ms  ms between retention passes  60000
                         (max_count, max_age_s; 0: on
                         demand only)
        view-threads     threads hosting the asynchronous  0
                         views, 0: one per view
        write-plan       auto | one-loop | split         auto
                         one-loop: the command router,
                         the shards and the log writer
                         share one thread (auto picks it
                         on 1-2 cores); split: a thread
                         each, batches passed between them

        http             HOST:PORT of the HTTP endpoint  none
                         that serves /metrics (Prometheus
                         text format; docs/operations.md);
                         auto: 127.0.0.1 at the command
                         port + 80, skipped with a warning
                         when taken (zcqrsd's default);
                         none: no endpoint
        log-level        error | warn | info | debug      info
                         (the process's log, zcq_log.h:
                         a node applies it when given)
        domain           the domain plugin zcqrsd loads:  bank
                         a name or a path to a .so
        allow-domain-change  open a data dir whose        false
                         recorded domain is another one
                         (a node records its domain's
                         name in a new data dir and
                         refuses another's otherwise)

    In a cluster (docs/cluster.md):

        cluster          HOST:PORT[,...]/PATH in ZooKeeper  (none: one node)
        group            the group this node replicates  -1 (none)
        role             replica | views                 replica
        views            cluster | group | none          cluster
                         (which groups feed the views)
        replication      replication endpoint            (none)
        zk-session-ms    ZooKeeper session timeout       4000

    A clustered node needs `node`, and `group` unless its role is `views`;
    its endpoints are published as given, so none may use `*`.
*/
#ifndef ZCQ_CONFIG_H_INCLUDED
#define ZCQ_CONFIG_H_INCLUDED

#include "zcq_error.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_config_t zcq_config_t;

//  A config with every default. NULL when out of memory.
ZCQ_EXPORT zcq_config_t *zcq_config_new (void);
ZCQ_EXPORT void zcq_config_destroy (zcq_config_t **self_p);
ZCQ_EXPORT zcq_config_t *zcq_config_dup (const zcq_config_t *self);
//  Set one setting from its string form; ZCQ_UNKNOWN for a name that is no
//  setting, ZCQ_INVALID for a bad value, each with a reason in error.
ZCQ_EXPORT zcq_err_t zcq_config_set (zcq_config_t *self, const char *name, const char *value,
                                     char *error, size_t size);
//  A setting's current string form, or NULL for an unknown name.
ZCQ_EXPORT const char *zcq_config_get (const zcq_config_t *self, const char *name);
//  Load settings from a ZPL file: top-level names, or names under a
//  `zcqrs` section. Unknown names are errors, so typos do not pass.
ZCQ_EXPORT zcq_err_t zcq_config_load (zcq_config_t *self, const char *path, char *error,
                                      size_t size);
//  The names of all settings, ending with NULL.
ZCQ_EXPORT const char *const *zcq_config_names (void);

#ifdef __cplusplus
}
#endif
#endif
