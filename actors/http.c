/*  http.c: a node's HTTP endpoint, GET /metrics in the Prometheus text
    format 0.0.4 (docs/operations.md lists every metric).

    DESIGN
    1.  libmicrohttpd serves it from a thread of its own (its internal
        polling thread, epoll on Linux): the endpoint is not a czmq actor,
        since it owns no socket of the node's and takes no message from
        one. MHD's thread is its loop; start and stop are its pipe.
    2.  Nothing on the write path waits for a scrape: a scrape reads the
        node's counters (zcq_stats_t, the command router's zcq_metrics_t),
        relaxed atomics written by the actors as they go, and the views'
        infos, which their hosts write the same way. It reads the store
        through calls that are safe from any thread (head, disk bytes,
        RocksDB properties, one log read for a view's lag in seconds) and
        the process's own /proc files. The exposition is built in memory
        and handed to MHD whole.
    3.  The node binds the listening socket itself, so that a bind that
        fails stops the node's start with the system's reason, as for the
        other endpoints; MHD takes the socket. Connections are bounded
        (S_CONNECTIONS at once, S_PER_CLIENT from one address), idle ones
        closed after S_TIMEOUT_S, and a request's memory bounded by MHD.
    4.  Only GET (and HEAD) /metrics: any other path is 404, any other
        method on /metrics 405. A bind address that is not loopback is
        allowed with a warning: the endpoint has no authentication yet.
*/
#include "zcq_http.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_CONNECTIONS  32
#define S_PER_CLIENT   8
#define S_TIMEOUT_S    10
#define S_MEMORY       (32 << 10)
#define S_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct zcq_http_t {
    const zcq_node_env_t *env;
    const zcq_view_info_t *views;
    size_t view_count;
    struct MHD_Daemon *daemon;
    char address[ZCQ_ENDPOINT_MAX + 8];
};

//  --------------------------------------------------------------------------
//  The exposition

static void
s_family (FILE *out, const char *name, const char *type, const char *help)
{
    fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
s_metric (FILE *out, const char *name, const char *type, const char *help, uint64_t value)
{
    s_family (out, name, type, help);
    fprintf (out, "%s %" PRIu64 "\n", name, value);
}

//  A number of seconds, from a count of some smaller unit.
static void
s_seconds (FILE *out, const char *name, const char *type, const char *help, uint64_t count,
           uint64_t per_second)
{
    s_family (out, name, type, help);
    fprintf (out, "%s %.6f\n", name, (double) count / (double) per_second);
}

static void
s_write_stats (FILE *out, const zcq_stats_t *stats)
{
#define S_COUNTER(field, name, help) \
    s_metric (out, "zcqrs_" name, "counter", help, ZCQ_STAT_GET (stats, field));
    S_COUNTER (commands_received, "commands_received_total", "Command requests read.")
    S_COUNTER (commands_forwarded, "commands_forwarded_total",
               "Commands sent on to another group's leader (their replies are relayed).")
    S_COUNTER (events_written, "events_written_total", "Events committed to the log.")
    S_COUNTER (commits, "commits_total", "Store commits (each a group of batches).")
    S_COUNTER (commit_failures, "commit_failures_total", "Store commits that failed.")
    S_COUNTER (replies_dropped, "replies_dropped_total",
               "Replies dropped: the client was gone or not reading.")
    S_COUNTER (requests_dropped, "requests_dropped_total",
               "Requests dropped unanswered: envelope over the request limit.")
    S_COUNTER (aggregates_loaded, "aggregates_loaded_total", "Aggregates loaded from the store.")
    S_COUNTER (snapshots_written, "snapshots_written_total", "Aggregate snapshots written.")
    S_COUNTER (queries_served, "queries_total", "Queries answered.")
    S_COUNTER (connections_refused, "connections_refused_total",
               "Connections shut over max-connections.")
    S_COUNTER (events_withheld, "events_withheld_total",
               "Events over publish-limit: read by subscribers, not sent.")
    S_COUNTER (reads_refused, "reads_refused_total",
               "Log reads refused over a bound of waiting reads.")
#undef S_COUNTER
    int64_t inflight = (int64_t) ZCQ_STAT_GET (stats, commands_inflight);
    int64_t connections = (int64_t) ZCQ_STAT_GET (stats, connections);
    s_metric (out, "zcqrs_commands_inflight", "gauge", "Commands in flight.",
              inflight > 0 ? (uint64_t) inflight : 0);
    s_metric (out, "zcqrs_connections", "gauge",
              "Open connections on the command, events and query endpoints.",
              connections > 0 ? (uint64_t) connections : 0);
}

//  The commit time (us) of the event at position, or -1.
typedef struct {
    int64_t time_us;
} s_time_t;

static int
s_event_time (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_time_t *found = arg;
    const uint8_t *value;
    size_t size;
    if (zcq_msgpack_peek (body, len, "time", (const void **) &value, &size)) {
        if (size == 9 && (value[0] == 0xd3 || value[0] == 0xcf))
            found->time_us = (int64_t) zcq_get_be64 (value + 1);
        else if (size == 1 && value[0] < 0x80)
            found->time_us = value[0];
    }
    return 1;
}

static const char *const s_view_states[] = { "live", "catching_up", "rebuilding", "failed" };

static void
s_write_views (zcq_http_t *self, FILE *out, uint64_t head)
{
    if (!self->view_count)
        return;
    //  gather each view's figures once, then write them family by family
    typedef struct {
        uint64_t position, rows, memory, applied, snapshot, lag;
        double lag_seconds; //  < 0: not known (a cluster-wide view, a failed read)
        int state;
    } s_view_t;
    s_view_t *figures = calloc (self->view_count, sizeof (s_view_t));
    if (!figures)
        return;
    int64_t now_us = zcq_now_us ();
    for (size_t index = 0; index < self->view_count; index++) {
        const zcq_view_info_t *view = &self->views[index];
        s_view_t *figure = &figures[index];
        figure->position = atomic_load_explicit (&view->position, memory_order_relaxed);
        figure->rows = atomic_load_explicit (&view->rows, memory_order_relaxed);
        figure->memory = atomic_load_explicit (&view->memory, memory_order_relaxed);
        figure->applied = atomic_load_explicit (&view->applied, memory_order_relaxed);
        figure->snapshot = atomic_load_explicit (&view->snapshot, memory_order_relaxed);
        int status = atomic_load_explicit (&view->status, memory_order_relaxed);
        figure->state = atomic_load_explicit (&view->failed, memory_order_acquire) ? 3
                      : status >= 0 && status <= 2                                 ? status
                                                                                   : 0;
        figure->lag = head > figure->position ? head - figure->position : 0;
        figure->lag_seconds = 0;
        if (view->groups)
            figure->lag_seconds = -1; //  its position sums several groups' logs
        else if (figure->lag) {
            //  the age of the oldest event it has not applied
            s_time_t found = { -1 };
            zcq_store_read_log (self->env->store, figure->position + 1, 1, s_event_time, &found);
            //  -1 (not given) when the store could not say, e.g. while it reopens
            figure->lag_seconds = found.time_us < 0      ? -1
                                : now_us > found.time_us ? (now_us - found.time_us) / 1e6
                                                         : 0;
        }
    }
#define S_VIEWS(name, type, help, format, expression)           \
    s_family (out, name, type, help);                           \
    for (size_t index = 0; index < self->view_count; index++) { \
        const s_view_t *figure = &figures[index];               \
        (void) figure;                                          \
        fputs (name "{view=\"", out);                           \
        zcq_metrics_label (out, self->views[index].def->view);  \
        fprintf (out, "\"} " format "\n", expression);          \
    }
    S_VIEWS ("zcqrs_view_position", "gauge", "The last log position the view applied.", "%" PRIu64,
             figure->position)
    S_VIEWS ("zcqrs_view_lag_events", "gauge", "Events in the log the view has not applied yet.",
             "%" PRIu64, figure->lag)
    S_VIEWS ("zcqrs_view_rows", "gauge", "Rows in the view.", "%" PRIu64, figure->rows)
    S_VIEWS ("zcqrs_view_memory_bytes", "gauge", "Memory the view's rows and indexes take.",
             "%" PRIu64, figure->memory)
    S_VIEWS ("zcqrs_view_events_applied_total", "counter",
             "Events the view applied (rebuilds included).", "%" PRIu64, figure->applied)
    S_VIEWS ("zcqrs_view_snapshot_position", "gauge",
             "The log position of the view's last snapshot saved or loaded.", "%" PRIu64,
             figure->snapshot)
#undef S_VIEWS
    s_family (out, "zcqrs_view_lag_seconds", "gauge",
              "Age of the oldest event the view has not applied (0: caught up).");
    for (size_t index = 0; index < self->view_count; index++) {
        if (figures[index].lag_seconds < 0)
            continue;
        fputs ("zcqrs_view_lag_seconds{view=\"", out);
        zcq_metrics_label (out, self->views[index].def->view);
        fprintf (out, "\"} %.6f\n", figures[index].lag_seconds);
    }
    s_family (out, "zcqrs_view_status", "gauge",
              "The view's state: 1 for the one it is in (failed: a projection handler failed).");
    for (size_t index = 0; index < self->view_count; index++)
        for (int state = 0; state < 4; state++) {
            fputs ("zcqrs_view_status{view=\"", out);
            zcq_metrics_label (out, self->views[index].def->view);
            fprintf (out, "\",status=\"%s\"} %d\n", s_view_states[state],
                     figures[index].state == state);
        }
    free (figures);
}

static void
s_write_store (zcq_http_t *self, FILE *out, uint64_t head)
{
    zcq_store_t *store = self->env->store;
    s_metric (out, "zcqrs_log_head", "gauge", "The position of the last event in the log.", head);
    s_metric (out, "zcqrs_store_disk_bytes", "gauge", "Bytes the store takes on disk.",
              zcq_store_disk_bytes (store));
    s_metric (out, "zcqrs_store_failed", "gauge",
              "1 while a storage error keeps commands from committing (the store reopens "
              "itself once the fault clears).",
              zcq_store_failed (store) ? 1 : 0);
    uint64_t value;
    if (zcq_store_property (store, "rocksdb.cur-size-all-mem-tables", &value) == ZCQ_OK)
        s_metric (out, "zcqrs_store_memtable_bytes", "gauge", "RocksDB memtables, in bytes.",
                  value);
    if (zcq_store_property (store, "rocksdb.estimate-pending-compaction-bytes", &value) == ZCQ_OK)
        s_metric (out, "zcqrs_store_pending_compaction_bytes", "gauge",
                  "RocksDB's estimate of the bytes compaction has to rewrite.", value);
}

//  The standard process metrics, from /proc/self.
static void
s_write_process (FILE *out)
{
    long ticks = sysconf (_SC_CLK_TCK);
    long page = sysconf (_SC_PAGESIZE);
    char text[1024];
    FILE *file = fopen ("/proc/self/stat", "r");
    size_t len = file ? fread (text, 1, sizeof text - 1, file) : 0;
    if (file)
        fclose (file);
    text[len] = 0;
    //  the fields after the command's name, which may hold anything but ')'
    char *rest = strrchr (text, ')');
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    bool parsed = rest && ticks > 0 && page > 0
               && sscanf (rest + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                          "%*d %*d %*d %llu %llu %lld",
                          &utime, &stime, &start, &vsize, &rss)
                      == 5;
    uint64_t boot = 0;
    file = fopen ("/proc/stat", "r");
    while (file && fgets (text, sizeof text, file))
        if (sscanf (text, "btime %" SCNu64, &boot) == 1)
            break;
    if (file)
        fclose (file);
    if (parsed) {
        s_seconds (out, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.", utime + stime,
                   (uint64_t) ticks);
        s_metric (out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                  rss > 0 ? (uint64_t) rss * (uint64_t) page : 0);
        s_metric (out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                  vsize);
        if (boot)
            s_seconds (out, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.",
                       boot * (uint64_t) ticks + start, (uint64_t) ticks);
    }
    DIR *dir = opendir ("/proc/self/fd");
    if (dir) {
        uint64_t count = 0;
        struct dirent *entry;
        while ((entry = readdir (dir)))
            if (entry->d_name[0] != '.')
                count++;
        closedir (dir);
        s_metric (out, "process_open_fds", "gauge", "Number of open file descriptors.",
                  count ? count - 1 : 0); //  less the one listing them
    }
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
        s_metric (out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                  (uint64_t) limit.rlim_cur);
}

//  The whole exposition, heap; NULL when out of memory.
static char *
s_exposition (zcq_http_t *self, size_t *size)
{
    char *text = NULL;
    FILE *out = open_memstream (&text, size);
    if (!out)
        return NULL;
    const zcq_node_env_t *env = self->env;
    uint64_t head = zcq_store_head (env->store);
    s_family (out, "zcqrs_node_info", "gauge", "The node's id, its domain and zcqrs's version.");
    fputs ("zcqrs_node_info{node=\"", out);
    zcq_metrics_label (out, env->config->node);
    fputs ("\",domain=\"", out);
    zcq_metrics_label (out, env->domain->name);
    fprintf (out, "\",version=\"%d.%d.%d\"} 1\n", ZCQ_VERSION_MAJOR, ZCQ_VERSION_MINOR,
             ZCQ_VERSION_PATCH);
    if (env->metrics)
        zcq_metrics_write (env->metrics, out);
    s_write_stats (out, env->stats);
    s_write_store (self, out, head);
    s_write_views (self, out, head);
    s_write_process (out);
    bool failed = ferror (out) != 0;
    if (fclose (out) != 0 || failed) {
        free (text);
        return NULL;
    }
    return text;
}

//  --------------------------------------------------------------------------
//  Serving

static enum MHD_Result
s_reply (struct MHD_Connection *connection, unsigned int status, const char *type, char *body,
         size_t size, const char *allow)
{
    struct MHD_Response *response
        = MHD_create_response_from_buffer (size, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (body);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result result = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return result;
}

static enum MHD_Result
s_handle_request (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                  const char *version, const char *upload_data, size_t *upload_data_size,
                  void **request)
{
    zcq_http_t *self = cls;
    const char *plain = "text/plain; charset=utf-8";
    if (strcmp (url, "/metrics") != 0) {
        char *body = strdup ("not found: this endpoint serves GET /metrics\n");
        return body ? s_reply (connection, MHD_HTTP_NOT_FOUND, plain, body, strlen (body), NULL)
                    : MHD_NO;
    }
    if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 && strcmp (method, MHD_HTTP_METHOD_HEAD) != 0) {
        char *body = strdup ("method not allowed: /metrics takes GET\n");
        return body ? s_reply (connection, MHD_HTTP_METHOD_NOT_ALLOWED, plain, body, strlen (body),
                               "GET, HEAD")
                    : MHD_NO;
    }
    size_t size = 0;
    char *body = s_exposition (self, &size);
    if (!body) {
        body = strdup ("out of memory building the metrics\n");
        return body ? s_reply (connection, MHD_HTTP_INTERNAL_SERVER_ERROR, plain, body,
                               strlen (body), NULL)
                    : MHD_NO;
    }
    return s_reply (connection, MHD_HTTP_OK, S_CONTENT_TYPE, body, size, NULL);
}

static void
s_log (void *cls, const char *format, va_list args)
{
    char line[512];
    vsnprintf (line, sizeof line, format, args);
    size_t len = strlen (line);
    while (len && line[len - 1] == '\n')
        line[--len] = 0;
    zsys_warning ("http: %s", line);
}

//  Bind and listen on address (HOST:PORT, [V6]:PORT); the socket, or -1
//  with the reason in error. *loopback says whether only this host can
//  reach it; bound gets the address with the port bound.
static int
s_listen (const char *address, bool *loopback, bool *ipv6, char *bound, size_t bound_size,
          char *error, size_t size)
{
    char host[ZCQ_ENDPOINT_MAX];
    const char *colon = strrchr (address, ':');
    size_t host_len = colon ? (size_t) (colon - address) : 0;
    if (!colon || host_len == 0 || host_len >= sizeof host) {
        snprintf (error, size, "http: '%s' is not HOST:PORT", address);
        return -1;
    }
    memcpy (host, address, host_len);
    host[host_len] = 0;
    char *name = host;
    if (host[0] == '[' && host_len >= 2 && host[host_len - 1] == ']') {
        host[host_len - 1] = 0;
        name = host + 1;
    }
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                              .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM };
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (name, colon + 1, &hints, &found);
    if (rc != 0 || !found) {
        snprintf (error, size, "cannot bind the HTTP endpoint %s: %s", address,
                  rc ? gai_strerror (rc) : "no address");
        return -1;
    }
    int fd = socket (found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
    int on = 1;
    if (fd < 0 || setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0
        || bind (fd, found->ai_addr, found->ai_addrlen) != 0 || listen (fd, 64) != 0) {
        snprintf (error, size, "cannot bind the HTTP endpoint %s: %s", address, strerror (errno));
        if (fd >= 0)
            close (fd);
        freeaddrinfo (found);
        return -1;
    }
    *ipv6 = found->ai_family == AF_INET6;
    if (found->ai_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *) found->ai_addr;
        *loopback = (ntohl (in->sin_addr.s_addr) >> 24) == 127;
    }
    else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) found->ai_addr;
        *loopback = IN6_IS_ADDR_LOOPBACK (&in6->sin6_addr);
    }
    freeaddrinfo (found);
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    unsigned port = 0;
    if (getsockname (fd, (struct sockaddr *) &local, &local_len) == 0)
        port = ntohs (local.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &local)->sin6_port
                                                  : ((struct sockaddr_in *) &local)->sin_port);
    snprintf (bound, bound_size, "%.*s:%u", (int) host_len, address, port);
    return fd;
}

zcq_err_t
zcq_http_start (zcq_http_t **self_p, const zcq_node_env_t *env, const char *address,
                const zcq_view_info_t *views, size_t view_count, char *error, size_t size)
{
    *self_p = NULL;
    zcq_http_t *self = calloc (1, sizeof (zcq_http_t));
    if (!self) {
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    self->env = env;
    self->views = views;
    self->view_count = view_count;
    bool loopback = false, ipv6 = false;
    int fd = s_listen (address, &loopback, &ipv6, self->address, sizeof self->address, error, size);
    if (fd < 0) {
        free (self);
        return ZCQ_UNAVAILABLE;
    }
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG
                       | (ipv6 ? MHD_USE_IPv6 : 0);
    self->daemon = MHD_start_daemon (
        flags, 0, NULL, NULL, s_handle_request, self, MHD_OPTION_EXTERNAL_LOGGER, s_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned int) S_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) S_PER_CLIENT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) S_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) S_MEMORY, MHD_OPTION_END);
    if (!self->daemon) {
        close (fd);
        snprintf (error, size, "cannot start the HTTP endpoint on %s", self->address);
        free (self);
        return ZCQ_UNAVAILABLE;
    }
    if (!loopback)
        zsys_warning ("http: /metrics is served on %s, which is not a loopback address: anyone "
                      "who reaches it reads the node's metrics (the endpoint has no "
                      "authentication)",
                      self->address);
    *self_p = self;
    return ZCQ_OK;
}

void
zcq_http_destroy (zcq_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_http_t *self = *self_p;
    if (self->daemon)
        MHD_stop_daemon (self->daemon); //  and with it the listening socket
    free (self);
    *self_p = NULL;
}

const char *
zcq_http_address (const zcq_http_t *self)
{
    return self->address;
}
