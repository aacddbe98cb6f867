/*  node.c: a zcqrs node: the store and every actor, started in order and
    stopped in reverse, with a graceful drain of the commands in flight.

        start: [coordinator] -> store -> gate -> log writer -> shards
               -> publisher -> projections -> query router -> the store's
               log check passed -> command router (last: commands arrive
               only when all the rest is ready) -> [HTTP endpoint, /metrics]
        stop:  command router drains (new commands get `unavailable`, the
               ones in flight are committed and answered) -> command router
               -> shards -> [HTTP endpoint] -> publisher -> log writer
               -> query side -> gate -> store -> [coordinator]

    The data dir is claimed before the store opens it: created owner-only
    (0700) when missing, refused when it holds anything a zcqrs data dir
    does not (a typo'd --data pointing at someone's home must not become a
    store), and locked with flock on the directory itself for as long as
    the node runs. RocksDB's own LOCK is keyed by the path string inside
    one process, so two nodes of one process reaching the same dir through
    a symlink would both open it; flock locks the directory, whatever the
    path, and conflicts within a process too.

    The data dir is one domain's: a node records its domain's name in the
    store (meta `domain`) when the dir has none, and refuses a dir recorded
    with another name unless allow-domain-change is set (s_check_domain),
    so a --domain typo never runs new decide/evolve code over old events.

    A views node (`--role views`, env.views_only) keeps no group's log: it
    opens a store (empty; it holds the view snapshots' checks) but starts
    no log stage or shards. Its command router forwards every command to
    its group's leader (command_router.c DESIGN 7: a views node leads no
    group), and its events endpoint publishes nothing. Its views are
    cluster-wide (projection.c DESIGN 6), and so are every clustered
    node's with `views` = cluster: those are all asynchronous.

    A clustered node (setting `cluster`) starts its coordinator before
    anything else, so that a node that cannot join its cluster (no cluster
    at the path, ZooKeeper away, its id taken) fails to start with that
    reason; the coordinator stops last, and with it the node's
    registration.

    The write plan (setting `write-plan`) says how the write path sits on
    threads. `split`: the log writer and each shard are actors of their
    own, and batches travel between them over inproc pipes. `one-loop`:
    the command router calls the shards' cores and the log stage directly,
    in its own thread; the node makes the log stage before the projections
    start (it binds the events endpoints they subscribe to) and hands it to
    the router, which owns it from then on.
*/
#include "zcq_actors.h"
#include "zcq_http.h"
#include "zcq_read.h"
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

//  The store meta key of the data dir's domain name (s_check_domain).
#define S_DOMAIN_META "domain"

struct zcq_node_t {
    zcq_config_t *config;
    zcq_coordinator_t *coordinator; //  NULL when not clustered
    int data_lock;                  //  the data dir, open and flock'ed; -1 when not
    zcq_store_t *store;
    zcq_stats_t stats;
    zcq_node_env_t env;
    zactor_t *writer;
    zcq_log_stage_t *stage; //  one loop: made here, handed to the router
    zcq_router_args_t router_args;
    zactor_t **shards;
    zcq_shard_args_t *shard_args;
    uint32_t shard_count;
    zcq_reader_t *reader; //  projections and the query router
    zactor_t *router;
    zactor_t *gate;      //  counts connections (actors/gate.c)
    zactor_t *publisher; //  the events endpoint (actors/publisher.c)
    zcq_gate_args_t gate_args;
    zcq_http_t *http; //  /metrics (actors/http.c); NULL when `http` is none
    char endpoints[3][ZCQ_ENDPOINT_MAX];
    zactor_t *retention; //  actors/retention.c; NULL when no aggregate has one
    zcq_retention_args_t retention_args;
};

//  True when an aggregate type of the domain has a retention.
static bool
s_has_retention (const zcq_domain_t *domain)
{
    for (size_t index = 0; domain->aggregates && domain->aggregates[index]; index++)
        if (domain->aggregates[index]->max_count || domain->aggregates[index]->max_age_s)
            return true;
    return false;
}

static char *
s_ask_endpoint (zactor_t *actor, const char *which)
{
    char *endpoint = NULL;
    zsock_send (actor, "s", which);
    zsock_recv (actor, "s", &endpoint);
    return endpoint;
}

//  What a zcqrs data dir holds: RocksDB's files and the view snapshots
//  (and a filesystem's lost+found, when the dir is a mount point).
static bool
s_data_dir_entry (const char *name)
{
    static const char *const patterns[] = { ".",         "..",    "CURRENT",    "IDENTITY",
                                            "LOCK",      "LOG",   "LOG.old.*",  "MANIFEST-*",
                                            "OPTIONS-*", "*.log", "*.sst",      "*.blob",
                                            "*.dbtmp",   "views", "lost+found", NULL };
    for (size_t index = 0; patterns[index]; index++)
        if (fnmatch (patterns[index], name, 0) == 0)
            return true;
    return false;
}

//  A clustered node's settings (docs/cluster.md), then its coordinator.
static zcq_err_t
s_join_cluster (zcq_node_t *self, char *error, size_t size)
{
    const zcq_config_t *config = self->config;
    if (!config->node_given) {
        snprintf (error, size, "a clustered node (--cluster) needs its id (--node ID)");
        return ZCQ_INVALID;
    }
    if (config->role_views ? config->group >= 0 : config->group < 0) {
        snprintf (error, size,
                  config->role_views
                      ? "a views node (--role views) belongs to no group: drop --group"
                      : "a clustered node needs --group N, or --role views");
        return ZCQ_INVALID;
    }
    zcq_coordinator_args_t args = {
        .zk = config->cluster,
        .node = config->node,
        .group = config->group,
        .role = config->role_views ? "views" : "replica",
        .command = config->endpoints[ZCQ_ENDPOINT_COMMAND],
        .events = config->endpoints[ZCQ_ENDPOINT_EVENTS],
        .query = config->endpoints[ZCQ_ENDPOINT_QUERY],
        .replication = config->replication,
        .session_ms = config->zk_session_ms,
    };
    self->coordinator = zcq_coordinator_new (&args, error, size);
    self->env.coordinator = self->coordinator;
    return self->coordinator ? ZCQ_OK : ZCQ_UNAVAILABLE;
}

//  Create (0700), check and lock the data dir (see the top of the file).
static zcq_err_t
s_claim_data_dir (zcq_node_t *self, char *error, size_t size)
{
    const char *path = self->config->data;
    struct stat info;
    if (stat (path, &info) != 0) {
        //  the parents as the system makes them, the data dir owner-only
        char *parent = strdup (path);
        char *slash = parent ? strrchr (parent, '/') : NULL;
        if (slash && slash != parent) {
            *slash = 0;
            zsys_dir_create ("%s", parent);
        }
        free (parent);
        if (mkdir (path, 0700) != 0 && errno != EEXIST) {
            snprintf (error, size, "cannot create the data dir %s: %s", path, strerror (errno));
            return ZCQ_IO;
        }
    }
    else if (!S_ISDIR (info.st_mode)) {
        snprintf (error, size, "the data dir %s is not a directory", path);
        return ZCQ_IO;
    }
    self->data_lock = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->data_lock < 0) {
        snprintf (error, size, "cannot open the data dir %s: %s", path, strerror (errno));
        return ZCQ_IO;
    }
    if (flock (self->data_lock, LOCK_EX | LOCK_NB) != 0) {
        snprintf (error, size, "the data dir %s is in use by another node (%s)", path,
                  errno == EWOULDBLOCK ? "it holds the dir's lock" : strerror (errno));
        return ZCQ_UNAVAILABLE;
    }
    DIR *dir = fdopendir (dup (self->data_lock));
    if (!dir) {
        snprintf (error, size, "cannot list the data dir %s: %s", path, strerror (errno));
        return ZCQ_IO;
    }
    struct dirent *entry;
    zcq_err_t err = ZCQ_OK;
    while (err == ZCQ_OK && (entry = readdir (dir)))
        if (!s_data_dir_entry (entry->d_name)) {
            snprintf (error, size,
                      "%s is not a zcqrs data dir: it holds '%s', which no data dir does; "
                      "give --data an empty or missing dir",
                      path, entry->d_name);
            err = ZCQ_INVALID;
        }
    closedir (dir);
    if (err == ZCQ_OK && fstat (self->data_lock, &info) == 0 && (info.st_mode & 077)
        && info.st_uid == geteuid ()) {
        //  the events are the business's data: nobody else reads them
        if (fchmod (self->data_lock, info.st_mode & 0700) == 0)
            zsys_notice ("node: the data dir %s was open to others (mode %04o): now 0700", path,
                         (unsigned) (info.st_mode & 07777));
    }
    return err;
}

//  The data dir's domain: recorded (store meta `domain`) when the dir has
//  none, so that a node of another domain does not read its events as its
//  own, which it refuses unless allow-domain-change is set (then the new
//  name is recorded).
static zcq_err_t
s_check_domain (zcq_node_t *self, const char *name, char *error, size_t size)
{
    const char *path = self->config->data;
    void *recorded = NULL;
    size_t len = 0;
    zcq_err_t err = zcq_store_meta (self->store, S_DOMAIN_META, &recorded, &len);
    if (err != ZCQ_OK && err != ZCQ_NOT_FOUND) {
        snprintf (error, size, "cannot read the domain of the data dir %s: %s", path,
                  zcq_strerror (err));
        return err;
    }
    if (err == ZCQ_OK) {
        bool same = len == strlen (name) && memcmp (recorded, name, len) == 0;
        int shown = len > 64 ? 64 : (int) len;
        if (!same && !self->config->allow_domain_change)
            snprintf (error, size,
                      "the data dir %s holds the events of domain '%.*s', not of '%s' (the domain "
                      "this node runs): give another data dir, or set allow-domain-change "
                      "(zcqrsd --allow-domain-change) to open it with '%s'",
                      path, shown, (const char *) recorded, name, name);
        else if (!same)
            zsys_warning ("node: the data dir %s held domain '%.*s', now '%s' "
                          "(allow-domain-change)",
                          path, shown, (const char *) recorded, name);
        free (recorded);
        if (same)
            return ZCQ_OK;
        if (!self->config->allow_domain_change)
            return ZCQ_INVALID;
    }
    zcq_batch_t *batch = zcq_batch_new (self->store);
    if (!batch) {
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    zcq_batch_meta (batch, S_DOMAIN_META, name, strlen (name));
    err = zcq_store_commit (self->store, batch, zcq_store_head (self->store));
    zcq_batch_destroy (&batch);
    if (err != ZCQ_OK)
        snprintf (error, size, "cannot record the domain of the data dir %s: %s", path,
                  zcq_strerror (err));
    return err;
}

//  The connections a node takes: max-connections, or what the file limit
//  leaves after the store's files and the node's own descriptors.
static size_t
s_max_connections (const zcq_config_t *config)
{
    if (config->max_connections)
        return config->max_connections;
    struct rlimit limit;
    rlim_t files = 1024;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        files = limit.rlim_cur;
    else if (getrlimit (RLIMIT_NOFILE, &limit) == 0)
        files = 1 << 20;
    rlim_t reserved = ZCQ_STORE_OPEN_FILES + 256;
    size_t max = files > reserved + 16 ? (size_t) (files - reserved) : 16;
    return max > 100000 ? 100000 : max;
}

//  The HTTP endpoint. `auto` is loopback at the command endpoint's port +
//  80 (7400: 7480), or a port the system picks when that one is not a
//  number; a node on the same host as another takes its own this way, and
//  one whose port is taken anyway runs without the endpoint, with a
//  warning. An address given is bound or the start fails.
static zcq_err_t
s_start_http (zcq_node_t *self, char *error, size_t size)
{
    size_t view_count;
    const zcq_view_info_t *views = zcq_reader_views (self->reader, &view_count);
    if (strcmp (self->config->http, "auto") != 0)
        return zcq_http_start (&self->http, &self->env, self->config->http, views, view_count,
                               error, size);
    const char *command = self->config->endpoints[ZCQ_ENDPOINT_COMMAND];
    const char *colon = strrchr (command, ':');
    char *end = NULL;
    long port = colon ? strtol (colon + 1, &end, 10) : 0;
    if (!colon || !end || *end || port <= 0 || port + 80 > 65535)
        port = -80; //  the system picks
    char address[32], reason[256];
    snprintf (address, sizeof address, "127.0.0.1:%ld", port + 80);
    if (zcq_http_start (&self->http, &self->env, address, views, view_count, reason, sizeof reason)
        != ZCQ_OK)
        zsys_warning ("node: no HTTP endpoint: %s", reason);
    return ZCQ_OK;
}

zcq_err_t
zcq_node_start (zcq_node_t **node_p, const zcq_config_t *config, const zcq_domain_t *domain,
                char *error, size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    *node_p = NULL;
    ZCQ_TRY (zcq_domain_check (domain, error, size));
    if (config->log_level_given)
        zcq_log_set_level (config->log_level);
    zcq_node_t *self = calloc (1, sizeof (zcq_node_t));
    if (!self || !(self->config = zcq_config_dup (config))) {
        free (self);
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    self->shard_count = (uint32_t) self->config->shards;
    self->env.config = self->config;
    self->env.domain = domain;
    self->env.stats = &self->stats;
    self->env.metrics = zcq_metrics_new (domain);
    self->env.started_us = zcq_now_us ();
    if (!self->env.metrics) {
        self->data_lock = -1;
        zcq_node_destroy (&self);
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    //  unique in the process, even for a node made where a freed one was:
    //  inproc names of a node being torn down may still be bound
    static atomic_uint nodes_made;
    snprintf (self->env.prefix, sizeof self->env.prefix, "zcq-%u-%p",
              atomic_fetch_add (&nodes_made, 1), (void *) self);
    for (size_t index = 0; domain->projections && domain->projections[index]; index++)
        if (domain->projections[index]->synchronous)
            self->env.synchronous_views = true;

    self->data_lock = -1;
    zcq_err_t err = self->config->cluster[0] ? s_join_cluster (self, error, size) : ZCQ_OK;
    //  a views node, and cluster-wide views: no synchronous host (above)
    self->env.views_only = self->coordinator && self->config->role_views;
    if (self->coordinator && (self->config->views != ZCQ_VIEWS_GROUP || self->env.views_only))
        self->env.synchronous_views = false;
    if (err == ZCQ_OK)
        err = s_claim_data_dir (self, error, size);
    if (err == ZCQ_OK) {
        zcq_store_options_t options;
        zcq_store_options_init (&options);
        options.durability = self->config->durability;
        options.dedup_window_s = self->config->dedup_window_s;
        err = zcq_store_open (&self->store, self->config->data, &options, error, size);
        self->env.store = self->store;
    }
    if (err == ZCQ_OK)
        err = s_check_domain (self, domain->name, error, size);
    if (err == ZCQ_OK) {
        //  the gate first: it watches the endpoints as they bind
        self->gate_args = (zcq_gate_args_t) { &self->env, s_max_connections (self->config) };
        self->gate = zcq_actor_start (zcq_gate_actor, &self->gate_args, error, size);
        if (!self->gate)
            err = ZCQ_NOMEM;
        self->env.gate = self->gate != NULL;
    }
    bool one_loop = zcq_config_write_plan (self->config) == ZCQ_WRITE_PLAN_ONE_LOOP;
    if (err == ZCQ_OK && self->env.views_only)
        ; //  no log of its own: no log stage, writer or shards
    else if (err == ZCQ_OK && one_loop)
        err = zcq_log_stage_new (&self->stage, &self->env, error, size);
    else if (err == ZCQ_OK) {
        self->writer = zcq_actor_start (zcq_writer_actor, &self->env, error, size);
        if (!self->writer)
            err = ZCQ_UNAVAILABLE;
    }
    if (err == ZCQ_OK && !one_loop && !self->env.views_only) {
        self->shards = calloc (self->shard_count, sizeof (zactor_t *));
        self->shard_args = calloc (self->shard_count, sizeof (zcq_shard_args_t));
        if (!self->shards || !self->shard_args) {
            snprintf (error, size, "out of memory");
            err = ZCQ_NOMEM;
        }
    }
    for (uint32_t shard = 0;
         err == ZCQ_OK && !one_loop && self->shards && shard < self->shard_count; shard++) {
        self->shard_args[shard] = (zcq_shard_args_t) { &self->env, shard };
        self->shards[shard]
            = zcq_actor_start (zcq_shard_actor, &self->shard_args[shard], error, size);
        if (!self->shards[shard])
            err = ZCQ_UNAVAILABLE;
    }
    if (err == ZCQ_OK) {
        self->publisher = zcq_actor_start (zcq_publisher_actor, &self->env, error, size);
        if (!self->publisher)
            err = ZCQ_UNAVAILABLE;
    }
    if (err == ZCQ_OK)
        err = zcq_reader_start (&self->reader, &self->env, error, size);
    //  the store's log check (store.c DESIGN 9) ran while the views caught
    //  up: a damaged log stops the start before commands are taken
    if (err == ZCQ_OK)
        err = zcq_store_verified (self->store, error, size);
    if (err == ZCQ_OK) {
        //  the router takes the log stage when it starts (even when it
        //  fails to: it destroys what it was handed)
        self->router_args = (zcq_router_args_t) { &self->env, self->stage };
        self->stage = NULL;
        self->router = zcq_actor_start (zcq_router_actor, &self->router_args, error, size);
        if (!self->router)
            err = ZCQ_UNAVAILABLE;
    }
    if (err == ZCQ_OK && self->config->http[0])
        err = s_start_http (self, error, size);
    if (err != ZCQ_OK) {
        zcq_node_destroy (&self);
        return err;
    }
    char *endpoint = s_ask_endpoint (self->router, "ENDPOINT");
    snprintf (self->endpoints[ZCQ_ENDPOINT_COMMAND], ZCQ_ENDPOINT_MAX, "%s", endpoint);
    zstr_free (&endpoint);
    endpoint = s_ask_endpoint (self->publisher, "ENDPOINT");
    snprintf (self->endpoints[ZCQ_ENDPOINT_EVENTS], ZCQ_ENDPOINT_MAX, "%s", endpoint);
    zstr_free (&endpoint);
    snprintf (self->endpoints[ZCQ_ENDPOINT_QUERY], ZCQ_ENDPOINT_MAX, "%s",
              zcq_reader_endpoint (self->reader));
    //  retention sends its truncations to the node's own command endpoint;
    //  a clustered node does not run it (this release)
    if (s_has_retention (self->env.domain) && !self->config->cluster[0]) {
        self->retention_args.env = &self->env;
        snprintf (self->retention_args.command, ZCQ_ENDPOINT_MAX, "%s",
                  self->endpoints[ZCQ_ENDPOINT_COMMAND]);
        self->retention = zcq_actor_start (zcq_retention_actor, &self->retention_args, error, size);
        if (!self->retention) {
            zcq_node_destroy (&self);
            return ZCQ_UNAVAILABLE;
        }
    }
    *node_p = self;
    return ZCQ_OK;
}

int
zcq_node_retain (zcq_node_t *self)
{
    if (!self->retention)
        return -1;
    int truncated = -1;
    zsock_send (self->retention, "s", "RETAIN");
    if (zsock_recv (self->retention, "i", &truncated) != 0)
        return -1;
    return truncated;
}

int
zcq_node_drain (zcq_node_t *self)
{
    int left = 0;
    zactor_destroy (&self->retention); //  it sends commands: stopped first
    if (self->router) {
        zsock_send (self->router, "s", "DRAIN");
        if (zsock_recv (self->router, "i", &left) == 0 && left)
            zsys_warning ("node: %d commands still in flight at shutdown", left);
        zactor_destroy (&self->router);
    }
    for (uint32_t shard = 0; self->shards && shard < self->shard_count; shard++) {
        if (!self->shards[shard])
            continue;
        int status;
        zsock_send (self->shards[shard], "s", "SYNC");
        zsock_recv (self->shards[shard], "i", &status);
        zactor_destroy (&self->shards[shard]);
    }
    return left;
}

void
zcq_node_destroy (zcq_node_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_node_t *self = *self_p;
    zcq_node_drain (self);
    zcq_http_destroy (&self->http); //  before what a scrape reads: store, views
    zactor_destroy (&self->publisher);
    free (self->shards);
    free (self->shard_args);
    zactor_destroy (&self->writer);
    zcq_log_stage_destroy (&self->stage);
    zcq_reader_destroy (&self->reader);
    zactor_destroy (&self->gate);
    zcq_store_close (&self->store);
    if (self->data_lock >= 0)
        close (self->data_lock); //  and with it the flock
    zcq_coordinator_destroy (&self->coordinator);
    zcq_metrics_destroy (&self->env.metrics);
    zcq_config_destroy (&self->config);
    free (self);
    *self_p = NULL;
}

const char *
zcq_node_endpoint (const zcq_node_t *self, zcq_endpoint_t which)
{
    if ((unsigned) which > ZCQ_ENDPOINT_QUERY)
        return NULL;
    return self->endpoints[which];
}

const char *
zcq_node_id (const zcq_node_t *self)
{
    return self->config->node;
}

uint64_t
zcq_node_head (const zcq_node_t *self)
{
    return zcq_store_head (self->store);
}

const char *
zcq_node_http (const zcq_node_t *self)
{
    return self->http ? zcq_http_address (self->http) : NULL;
}
