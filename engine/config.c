/*  config.c: a node's settings. One table names every setting with its
    parser, so flags, files and code share one validation. */
#include "zcq_config_impl.h"
#include "zcq_zk.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef zcq_err_t (s_parse_fn) (zcq_config_t *self, const char *value, char *error, size_t size);
typedef const char *(s_format_fn) (zcq_config_t *self);

typedef struct {
    const char *name;
    s_parse_fn *parse;
    s_format_fn *format;
} s_setting_t;

static zcq_err_t
s_copy (char *target, size_t capacity, const char *name, const char *value, char *error,
        size_t size)
{
    size_t len = strlen (value);
    if (len == 0 || len >= capacity) {
        snprintf (error, size, "%s: must be 1 to %zu characters", name, capacity - 1);
        return ZCQ_INVALID;
    }
    memcpy (target, value, len + 1);
    return ZCQ_OK;
}

static zcq_err_t
s_number (const char *name, const char *value, long long min, long long max, long long *number,
          char *error, size_t size)
{
    char *end;
    errno = 0;
    long long parsed = strtoll (value, &end, 10);
    if (errno || end == value || *end || parsed < min || parsed > max) {
        snprintf (error, size, "%s: '%s' is not a whole number from %lld to %lld", name, value, min,
                  max);
        return ZCQ_INVALID;
    }
    *number = parsed;
    return ZCQ_OK;
}

static zcq_err_t
s_endpoint (char *target, const char *name, const char *value, char *error, size_t size)
{
    if (strncmp (value, "tcp://", 6) && strncmp (value, "ipc://", 6)
        && strncmp (value, "inproc://", 9)) {
        snprintf (error, size, "%s: '%s' is not a tcp://, ipc:// or inproc:// endpoint", name,
                  value);
        return ZCQ_INVALID;
    }
    return s_copy (target, ZCQ_ENDPOINT_MAX, name, value, error, size);
}

#define S_STRING(field, label, capacity)                                                  \
    static zcq_err_t s_parse_##field (zcq_config_t *self, const char *value, char *error, \
                                      size_t size)                                        \
    {                                                                                     \
        return s_copy (self->field, capacity, label, value, error, size);                 \
    }                                                                                     \
    static const char *s_format_##field (zcq_config_t *self)                              \
    {                                                                                     \
        return self->field;                                                               \
    }

#define S_ENDPOINT(which, label)                                                              \
    static zcq_err_t s_parse_##which (zcq_config_t *self, const char *value, char *error,     \
                                      size_t size)                                            \
    {                                                                                         \
        return s_endpoint (self->endpoints[ZCQ_ENDPOINT_##which], label, value, error, size); \
    }                                                                                         \
    static const char *s_format_##which (zcq_config_t *self)                                  \
    {                                                                                         \
        return self->endpoints[ZCQ_ENDPOINT_##which];                                         \
    }

#define S_NUMBER(field, label, min, max)                                                  \
    static zcq_err_t s_parse_##field (zcq_config_t *self, const char *value, char *error, \
                                      size_t size)                                        \
    {                                                                                     \
        long long number;                                                                 \
        ZCQ_TRY (s_number (label, value, min, max, &number, error, size));                \
        self->field = number;                                                             \
        return ZCQ_OK;                                                                    \
    }                                                                                     \
    static const char *s_format_##field (zcq_config_t *self)                              \
    {                                                                                     \
        snprintf (self->text, sizeof self->text, "%lld", (long long) self->field);        \
        return self->text;                                                                \
    }

S_STRING (data, "data", sizeof ((zcq_config_t *) 0)->data)
S_NUMBER (group, "group", -1, ZCQ_CLUSTER_SLOTS_MAX - 1)
S_NUMBER (zk_session_ms, "zk-session-ms", 500, 600000)

static zcq_err_t
s_parse_node (zcq_config_t *self, const char *value, char *error, size_t size)
{
    ZCQ_TRY (s_copy (self->node, ZCQ_NODE_ID_MAX + 1, "node", value, error, size));
    self->node_given = true;
    return ZCQ_OK;
}

static const char *
s_format_node (zcq_config_t *self)
{
    return self->node;
}

static zcq_err_t
s_parse_cluster (zcq_config_t *self, const char *value, char *error, size_t size)
{
    char hosts[1024], path[ZCQ_ZK_PATH_MAX], reason[256];
    if (zcq_zk_parse (value, hosts, sizeof hosts, path, sizeof path, reason, sizeof reason)) {
        snprintf (error, size, "cluster: %s", reason);
        return ZCQ_INVALID;
    }
    return s_copy (self->cluster, sizeof self->cluster, "cluster", value, error, size);
}

static const char *
s_format_cluster (zcq_config_t *self)
{
    return self->cluster;
}

static zcq_err_t
s_parse_role (zcq_config_t *self, const char *value, char *error, size_t size)
{
    if (strcmp (value, "replica") && strcmp (value, "views")) {
        snprintf (error, size, "role: '%s' is neither replica nor views", value);
        return ZCQ_INVALID;
    }
    self->role_views = value[0] == 'v';
    return ZCQ_OK;
}

static const char *
s_format_role (zcq_config_t *self)
{
    return self->role_views ? "views" : "replica";
}

static const char *const s_views_scopes[] = { "cluster", "group", "none" };

static zcq_err_t
s_parse_views (zcq_config_t *self, const char *value, char *error, size_t size)
{
    for (int scope = 0; scope < 3; scope++)
        if (strcmp (value, s_views_scopes[scope]) == 0) {
            self->views = (zcq_views_scope_t) scope;
            return ZCQ_OK;
        }
    snprintf (error, size, "views: '%s' is not cluster, group or none", value);
    return ZCQ_INVALID;
}

static const char *
s_format_views (zcq_config_t *self)
{
    return s_views_scopes[self->views];
}

static zcq_err_t
s_parse_replication (zcq_config_t *self, const char *value, char *error, size_t size)
{
    return s_endpoint (self->replication, "replication", value, error, size);
}

static const char *
s_format_replication (zcq_config_t *self)
{
    return self->replication;
}
S_ENDPOINT (COMMAND, "command")
S_ENDPOINT (EVENTS, "events")
S_ENDPOINT (QUERY, "query")
S_NUMBER (shards, "shards", 1, 256)
S_NUMBER (cache, "cache", 1, 100000000)
S_NUMBER (dedup_window_s, "dedup-window", 60, 365LL * 24 * 3600)
S_NUMBER (request_limit, "request-limit", 1024, 256LL << 20)
S_NUMBER (publish_limit, "publish-limit", 0, 256LL << 20)
S_NUMBER (heartbeat_ms, "heartbeat-ms", 10, 1000)
S_NUMBER (max_inflight, "max-inflight", 16, 100000000)
S_NUMBER (max_inflight_per_client, "max-inflight-per-client", 1, 100000000)
S_NUMBER (max_connections, "max-connections", 0, 10000000)
S_NUMBER (view_snapshot_every, "view-snapshot-every", 0, 1LL << 40)
S_NUMBER (retention_interval_ms, "retention-interval-ms", 0, 1LL << 40)
S_NUMBER (view_threads, "view-threads", 0, 256)

static zcq_err_t
s_parse_durability (zcq_config_t *self, const char *value, char *error, size_t size)
{
    if (strcmp (value, "wal") == 0)
        self->durability = ZCQ_DURABILITY_WAL;
    else if (strcmp (value, "fsync") == 0)
        self->durability = ZCQ_DURABILITY_FSYNC;
    else {
        snprintf (error, size, "durability: '%s' is neither wal nor fsync", value);
        return ZCQ_INVALID;
    }
    return ZCQ_OK;
}

static const char *
s_format_durability (zcq_config_t *self)
{
    return zcq_durability_name (self->durability);
}

static const char *const s_write_plans[] = { "auto", "one-loop", "split" };

static zcq_err_t
s_parse_write_plan (zcq_config_t *self, const char *value, char *error, size_t size)
{
    for (int plan = 0; plan < 3; plan++)
        if (strcmp (value, s_write_plans[plan]) == 0) {
            self->write_plan = (zcq_write_plan_t) plan;
            return ZCQ_OK;
        }
    snprintf (error, size, "write-plan: '%s' is not auto, one-loop or split", value);
    return ZCQ_INVALID;
}

static const char *
s_format_write_plan (zcq_config_t *self)
{
    return s_write_plans[self->write_plan];
}

zcq_write_plan_t
zcq_config_write_plan (const zcq_config_t *self)
{
    if (self->write_plan != ZCQ_WRITE_PLAN_AUTO)
        return self->write_plan;
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    return cores > 0 && cores <= 2 ? ZCQ_WRITE_PLAN_ONE_LOOP : ZCQ_WRITE_PLAN_SPLIT;
}

static const char *const s_log_levels_text = "error, warn, info or debug";

static zcq_err_t
s_parse_log_level (zcq_config_t *self, const char *value, char *error, size_t size)
{
    zcq_log_level_t level;
    if (zcq_log_level_parse (value, &level) != ZCQ_OK) {
        snprintf (error, size, "log-level: '%s' is not %s", value, s_log_levels_text);
        return ZCQ_INVALID;
    }
    self->log_level = level;
    self->log_level_given = true;
    return ZCQ_OK;
}

static const char *
s_format_log_level (zcq_config_t *self)
{
    return zcq_log_level_name (self->log_level);
}

S_STRING (domain, "domain", sizeof ((zcq_config_t *) 0)->domain)

static zcq_err_t
s_parse_allow_domain_change (zcq_config_t *self, const char *value, char *error, size_t size)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t index = 0; index < 4; index++)
        if (strcmp (value, yes[index]) == 0 || strcmp (value, no[index]) == 0) {
            self->allow_domain_change = strcmp (value, yes[index]) == 0;
            return ZCQ_OK;
        }
    snprintf (error, size, "allow-domain-change: '%s' is neither true nor false", value);
    return ZCQ_INVALID;
}

static const char *
s_format_allow_domain_change (zcq_config_t *self)
{
    return self->allow_domain_change ? "true" : "false";
}

//  `http`: HOST:PORT (a name or an address; an IPv6 address in brackets;
//  port 0 lets the system choose), or none (or empty): no HTTP endpoint.
static zcq_err_t
s_parse_http (zcq_config_t *self, const char *value, char *error, size_t size)
{
    if (*value == 0 || strcmp (value, "none") == 0) {
        self->http[0] = 0;
        return ZCQ_OK;
    }
    if (strcmp (value, "auto") == 0)
        return s_copy (self->http, sizeof self->http, "http", value, error, size);
    const char *colon = strrchr (value, ':');
    size_t host_len = colon ? (size_t) (colon - value) : 0;
    bool bracketed = host_len >= 2 && value[0] == '[' && value[host_len - 1] == ']';
    bool host_ok = host_len > 0 && (bracketed || !memchr (value, ':', host_len))
                && !strpbrk (value, " /\t");
    char *end = NULL;
    errno = 0;
    long port = colon && colon[1] >= '0' && colon[1] <= '9' ? strtol (colon + 1, &end, 10) : -1;
    if (!host_ok || errno || !end || *end || port < 0 || port > 65535) {
        snprintf (error, size, "http: '%s' is not HOST:PORT (port 0 to 65535), auto or none",
                  value);
        return ZCQ_INVALID;
    }
    return s_copy (self->http, sizeof self->http, "http", value, error, size);
}

static const char *
s_format_http (zcq_config_t *self)
{
    return self->http[0] ? self->http : "none";
}

static const s_setting_t s_settings[] = {
    { "data", s_parse_data, s_format_data },
    { "command", s_parse_COMMAND, s_format_COMMAND },
    { "events", s_parse_EVENTS, s_format_EVENTS },
    { "query", s_parse_QUERY, s_format_QUERY },
    { "node", s_parse_node, s_format_node },
    { "durability", s_parse_durability, s_format_durability },
    { "shards", s_parse_shards, s_format_shards },
    { "cache", s_parse_cache, s_format_cache },
    { "dedup-window", s_parse_dedup_window_s, s_format_dedup_window_s },
    { "request-limit", s_parse_request_limit, s_format_request_limit },
    { "publish-limit", s_parse_publish_limit, s_format_publish_limit },
    { "heartbeat-ms", s_parse_heartbeat_ms, s_format_heartbeat_ms },
    { "max-inflight", s_parse_max_inflight, s_format_max_inflight },
    { "max-inflight-per-client", s_parse_max_inflight_per_client,
      s_format_max_inflight_per_client },
    { "max-connections", s_parse_max_connections, s_format_max_connections },
    { "view-snapshot-every", s_parse_view_snapshot_every, s_format_view_snapshot_every },
    { "retention-interval-ms", s_parse_retention_interval_ms, s_format_retention_interval_ms },
    { "view-threads", s_parse_view_threads, s_format_view_threads },
    { "write-plan", s_parse_write_plan, s_format_write_plan },
    { "cluster", s_parse_cluster, s_format_cluster },
    { "group", s_parse_group, s_format_group },
    { "role", s_parse_role, s_format_role },
    { "views", s_parse_views, s_format_views },
    { "replication", s_parse_replication, s_format_replication },
    { "zk-session-ms", s_parse_zk_session_ms, s_format_zk_session_ms },
    { "log-level", s_parse_log_level, s_format_log_level },
    { "http", s_parse_http, s_format_http },
    { "domain", s_parse_domain, s_format_domain },
    { "allow-domain-change", s_parse_allow_domain_change, s_format_allow_domain_change },
};
#define S_SETTING_COUNT (sizeof (s_settings) / sizeof (s_settings[0]))

const char *const *
zcq_config_names (void)
{
    static const char *names[S_SETTING_COUNT + 1];
    for (size_t index = 0; index < S_SETTING_COUNT; index++)
        names[index] = s_settings[index].name;
    names[S_SETTING_COUNT] = NULL;
    return names;
}

zcq_config_t *
zcq_config_new (void)
{
    zcq_config_t *self = calloc (1, sizeof (zcq_config_t));
    if (!self)
        return NULL;
    strcpy (self->data, "./zcqrs-data");
    strcpy (self->endpoints[ZCQ_ENDPOINT_COMMAND], "tcp://127.0.0.1:7400");
    strcpy (self->endpoints[ZCQ_ENDPOINT_EVENTS], "tcp://127.0.0.1:7401");
    strcpy (self->endpoints[ZCQ_ENDPOINT_QUERY], "tcp://127.0.0.1:7402");
    strcpy (self->node, "node1");
    strcpy (self->domain, "bank");
    self->log_level = ZCQ_LOG_INFO;
    self->durability = ZCQ_DURABILITY_WAL;
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    self->shards = cores > 0 ? (int) (cores > 64 ? 64 : cores) : 2;
    self->cache = 100000;
    self->dedup_window_s = 24 * 3600;
    self->request_limit = 1 << 20;
    self->publish_limit = 64 << 10;
    self->heartbeat_ms = 500;
    self->max_inflight = 65536;
    self->max_inflight_per_client = 4096;
    self->max_connections = 0; //  0: from the file limit, when the node starts
    self->view_snapshot_every = 1000000;
    self->retention_interval_ms = 60000;
    self->view_threads = 0; //  one per asynchronous view
    self->group = -1;
    self->views = ZCQ_VIEWS_CLUSTER;
    self->zk_session_ms = 4000;
    return self;
}

void
zcq_config_destroy (zcq_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

zcq_config_t *
zcq_config_dup (const zcq_config_t *self)
{
    zcq_config_t *copy = malloc (sizeof (zcq_config_t));
    if (copy)
        memcpy (copy, self, sizeof (zcq_config_t));
    return copy;
}

static const s_setting_t *
s_lookup (const char *name)
{
    for (size_t index = 0; index < S_SETTING_COUNT; index++)
        if (strcmp (s_settings[index].name, name) == 0)
            return &s_settings[index];
    return NULL;
}

zcq_err_t
zcq_config_set (zcq_config_t *self, const char *name, const char *value, char *error, size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    const s_setting_t *setting = s_lookup (name);
    if (!setting) {
        snprintf (error, size, "'%s' is not a setting", name);
        return ZCQ_UNKNOWN;
    }
    if (!value) {
        snprintf (error, size, "%s: needs a value", name);
        return ZCQ_INVALID;
    }
    return setting->parse (self, value, error, size);
}

const char *
zcq_config_get (const zcq_config_t *self, const char *name)
{
    const s_setting_t *setting = s_lookup (name);
    return setting ? setting->format ((zcq_config_t *) self) : NULL;
}

//  Apply every leaf under item as a setting.
static zcq_err_t
s_load_children (zcq_config_t *self, zconfig_t *item, char *error, size_t size)
{
    for (zconfig_t *child = zconfig_child (item); child; child = zconfig_next (child)) {
        const char *name = zconfig_name (child);
        if (strcmp (name, "zcqrs") == 0 && zconfig_child (child)) {
            ZCQ_TRY (s_load_children (self, child, error, size));
            continue;
        }
        const char *value = zconfig_value (child);
        ZCQ_TRY (zcq_config_set (self, name, value && *value ? value : NULL, error, size));
    }
    return ZCQ_OK;
}

zcq_err_t
zcq_config_load (zcq_config_t *self, const char *path, char *error, size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    if (access (path, R_OK) != 0) {
        snprintf (error, size, "cannot read config file %s: %s", path, strerror (errno));
        return ZCQ_IO;
    }
    //  read the text ourselves: zconfig_load leaks when a file does not parse
    zconfig_t *root = NULL;
    zfile_t *file = zfile_new (NULL, path);
    zchunk_t *chunk = file && zfile_input (file) == 0 ? zfile_read (file, zfile_cursize (file), 0)
                                                      : NULL;
    if (chunk) {
        char *text = zchunk_strdup (chunk);
        if (text)
            root = zconfig_str_load (text);
        zstr_free (&text);
    }
    zchunk_destroy (&chunk);
    zfile_destroy (&file);
    if (!root) {
        snprintf (error, size, "config file %s is not valid ZPL", path);
        return ZCQ_INVALID;
    }
    char reason[256];
    zcq_err_t err = s_load_children (self, root, reason, sizeof reason);
    if (err != ZCQ_OK)
        snprintf (error, size, "%s: %s", path, reason);
    zconfig_destroy (&root);
    return err;
}
