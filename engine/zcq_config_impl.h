/*  zcq_config_impl.h: the typed settings behind zcq_config_t, for the
    node and its actors. */
#ifndef ZCQ_CONFIG_IMPL_H_INCLUDED
#define ZCQ_CONFIG_IMPL_H_INCLUDED

#include "zcq_internal.h"

#define ZCQ_ENDPOINT_MAX 256

//  How the write path is laid out on threads (setting `write-plan`).
typedef enum {
    ZCQ_WRITE_PLAN_AUTO = 0, //  one loop on 1-2 cores, else split
    ZCQ_WRITE_PLAN_ONE_LOOP, //  router, shards and log writer in one thread
    ZCQ_WRITE_PLAN_SPLIT,    //  an actor each, batches passed over inproc pipes
} zcq_write_plan_t;

//  The plan a config asks for, with `auto` resolved from the machine.
zcq_write_plan_t zcq_config_write_plan (const zcq_config_t *self);

//  Which groups feed a clustered node's views (setting `views`).
typedef enum {
    ZCQ_VIEWS_CLUSTER = 0, //  every group's committed events
    ZCQ_VIEWS_GROUP,       //  its own group's only
    ZCQ_VIEWS_NONE,        //  no views
} zcq_views_scope_t;

struct zcq_config_t {
    char data[1024];
    char endpoints[3][ZCQ_ENDPOINT_MAX]; //  by zcq_endpoint_t
    char node[ZCQ_NODE_ID_MAX + 1];
    zcq_durability_t durability;
    int shards;
    size_t cache;
    uint64_t dedup_window_s;
    size_t request_limit;
    size_t publish_limit; //  0: every event travels whole on the events endpoint
    int heartbeat_ms;
    size_t max_inflight;
    size_t max_inflight_per_client;
    size_t max_connections; //  0: derived from RLIMIT_NOFILE at start
    uint64_t view_snapshot_every;
    uint64_t retention_interval_ms; //  0: retention runs on demand only
    int view_threads;
    zcq_write_plan_t write_plan;
    //  the cluster (docs/cluster.md); cluster[0] == 0: a single node
    char cluster[1024]; //  HOST:PORT[,HOST:PORT...]/PATH
    bool node_given;    //  `node` was set (a cluster needs an explicit id)
    int group;          //  -1: none
    bool role_views;    //  role `views` (else `replica`)
    zcq_views_scope_t views;
    char replication[ZCQ_ENDPOINT_MAX]; //  "" when none
    int zk_session_ms;
    zcq_log_level_t log_level; //  applied by the node only when given
    bool log_level_given;
    char http[ZCQ_ENDPOINT_MAX]; //  HOST:PORT of the /metrics endpoint; "" when off
    char domain[1024];           //  the plugin zcqrsd loads (name or path); the library's
                                 //  nodes take their domain as an argument
    bool allow_domain_change;    //  open a data dir recorded with another domain
    char text[64];               //  scratch for zcq_config_get
};

#endif
