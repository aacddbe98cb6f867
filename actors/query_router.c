/*  query_router.c: the query endpoint of a node (ZCQ/1 section 5), and the
    reader that starts the view hosts and this router together.

    DESIGN
    1.  View queries (get, list, count, rebuild) go to the host of their
        view and come back with their reply encoded; the host parks those
        with a min_position it has not reached, so a waiting query never
        holds up any other.
    2.  Node queries (views, health, stats, cluster) are answered here from
        the counters. Log reads (read, stream) are answered from the store
        by a thread of their own, the clients in turn (log_reader.c), so a
        client's large reads never hold up another client's queries. A
        `backup` is taken by a thread of its own too, one at a time
        (backup.c). None of them touches the write path.
    3.  A reply that meets a client's full pipe (a burst of answered
        queries is faster than the I/O thread) waits in a backlog, retried
        every few ms, and a client's later replies queue behind it. A client
        that does not read its replies is bounded: its waiting replies stop
        at S_PEER_BYTES, every client's at S_BACKLOG_BYTES, and a reply
        still waiting after S_BACKLOG_MS is dropped. ZeroMQ's own pipe to a
        client holds at most S_SNDHWM replies, each at most 4 MiB (a read)
        plus S_ENVELOPE_BYTES: so a client that asks for large reads and
        never reads them pins a bounded amount, about 100 MiB, and only its
        own replies are dropped.
    4.  The request limit counts the whole request, as on the command
        endpoint (command_router.c DESIGN 5): the frames the peer sent
        before its body count with the body, and a request whose envelope
        alone is over the limit or S_ENVELOPE_BYTES, or has more than
        S_ENVELOPE_FRAMES frames, is dropped unanswered (requests_dropped).
    5.  In a cluster (cluster.md section 5), `read` and `stream` read one
        group's log: `group` names it (the node's own by default; a `stream`
        without `group` goes by its slot). Another group's is read through
        a live replica of that group: the request goes there as it came,
        with a marker frame (S_MARK and a sequence number) the other node
        echoes, over one ROUTER socket connected to each node met, and its
        reply comes back as it was given. A marked request is answered
        where it lands, never sent on. No answer in S_FORWARD_MS: `timeout`. Frames are
        received, not copied, except the routing identity.
*/
#include "zcq_read.h"
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define S_ROUND           256
#define S_SNDHWM          16         //  replies queued per client in ZeroMQ (DESIGN 3)
#define S_PEER_BYTES      (32 << 20) //  DESIGN 3: backlog per client
#define S_BACKLOG_BYTES   (256 << 20)
#define S_BACKLOG_MS      10000
#define S_ENVELOPE_FRAMES 64 //  frames a peer may send before its body (DESIGN 4)
#define S_ENVELOPE_BYTES  (64 << 10)
#define S_MARK            "zcq-forward" //  DESIGN 5: with its NUL, then a u64
#define S_MARK_SIZE       (sizeof (S_MARK) + 8)
#define S_FORWARD_MS      10000

static const char *s_status_names[] = { "live", "catching_up", "rebuilding" };

//  --------------------------------------------------------------------------
//  Queries

void
zcq_query_destroy (zcq_query_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_query_t *self = *self_p;
    zmsg_destroy (&self->envelope);
    zcq_doc_destroy (&self->doc);
    zframe_destroy (&self->body);
    free (self->reply);
    free (self->min_positions);
    free (self);
    *self_p = NULL;
}

static void
s_query_set_reply (zcq_query_t *self, zcq_writer_t *writer)
{
    free (self->reply);
    self->reply = zcq_writer_take (writer, &self->reply_size);
}

void
zcq_query_fail (zcq_query_t *self, zcq_err_t err, const char *format, ...)
{
    char message[512];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    zcq_writer_t *writer = zcq_writer_new ();
    if (!writer)
        return;
    size_t count = 3;
    size_t mark = zcq_writer_map_open (writer);
    if (self->rid) {
        zcq_writer_str (writer, "rid");
        zcq_writer_value (writer, self->rid);
        count++;
    }
    zcq_writer_str (writer, "ok");
    zcq_writer_bool (writer, false);
    zcq_writer_str (writer, "error");
    zcq_writer_str (writer, zcq_err_code (err));
    //  vsnprintf may have cut the message in the middle of a character
    zcq_writer_str (writer, "message");
    zcq_writer_strn (writer, message, zcq_utf8_prefix (message, strlen (message)));
    zcq_writer_map_close (writer, mark, count);
    s_query_set_reply (self, writer);
    zcq_writer_destroy (&writer);
}

size_t
zcq_query_reply_open (zcq_query_t *self, zcq_writer_t *writer, size_t *count)
{
    zcq_writer_reset (writer);
    size_t mark = zcq_writer_map_open (writer);
    *count = 1;
    zcq_writer_str (writer, "ok");
    zcq_writer_bool (writer, true);
    if (self->rid) {
        zcq_writer_str (writer, "rid");
        zcq_writer_value (writer, self->rid);
        ++*count;
    }
    return mark;
}

void
zcq_query_reply_close (zcq_query_t *self, zcq_writer_t *writer, size_t mark, size_t count)
{
    zcq_writer_map_close (writer, mark, count);
    if (!zcq_writer_ok (writer)) {
        zcq_query_fail (self, ZCQ_INTERNAL, "out of memory encoding the reply");
        return;
    }
    s_query_set_reply (self, writer);
}

void
zcq_query_worker (zsock_t *pipe, void *args)
{
    const zcq_query_worker_t *worker = args;
    zcq_writer_t *writer = zcq_writer_new ();
    zsock_signal (pipe, 0);
    zcq_actor_name ("%s", worker->name);
    void *socket = zsock_resolve (pipe);
    while (true) {
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, socket, 0) < 0) {
            zmq_msg_close (&msg);
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        zcq_query_t *query = NULL;
        if (zmq_msg_size (&msg) == sizeof query)
            memcpy (&query, zmq_msg_data (&msg), sizeof query);
        zmq_msg_close (&msg);
        if (!query)
            break; //  $TERM
        if (!writer)
            zcq_query_fail (query, ZCQ_INTERNAL, "out of memory");
        else
            worker->answer (worker->env, writer, query);
        if (zmq_send (socket, &query, sizeof query, 0) != sizeof query)
            zcq_query_destroy (&query);
    }
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  The router

typedef struct {
    const zcq_node_env_t *env;
    zsock_t *pipe;
    zsock_t *clients; //  ROUTER, the query endpoint
    zsock_t **hosts;  //  PAIR per view host
    uint32_t host_count;
    zcq_view_info_t *views;
    size_t view_count;
    zcq_writer_t *writer;
    zcq_limits_t limits;
    zlistx_t *backlog;    //  DESIGN 3: answered queries waiting for a pipe
    zhashx_t *queued;     //  client identity (hex) -> size_t bytes it has waiting
    size_t backlog_bytes; //  of every client
    bool terminated;
    char endpoint[ZCQ_ENDPOINT_MAX];
    //  DESIGN 5: log reads of other groups
    zsock_t *forward; //  ROUTER to other nodes' query endpoints
    zhashx_t *links;  //  query endpoint -> routing id
    uint32_t link_count;
    zhashx_t *forwards; //  sequence (hex) -> zcq_query_t sent
    uint64_t sequence;
    zcq_log_reads_t *reads; //  DESIGN 2: read and stream
    zcq_backups_t *backups; //  DESIGN 2: backup (backup.c)
} self_t;

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (uint32_t host = 0; self->hosts && host < self->host_count; host++) {
        if (self->hosts[host]) {
            zcq_query_t *query;
            while (zmq_recv (zsock_resolve (self->hosts[host]), &query, sizeof query, ZMQ_DONTWAIT)
                   == sizeof query)
                zcq_query_destroy (&query);
        }
        zsock_destroy (&self->hosts[host]);
    }
    free (self->hosts);
    zcq_log_reads_destroy (&self->reads);
    zcq_backups_destroy (&self->backups);
    if (self->backlog) {
        zcq_query_t *query;
        while ((query = zlistx_detach (self->backlog, NULL)))
            zcq_query_destroy (&query);
        zlistx_destroy (&self->backlog);
    }
    zhashx_destroy (&self->queued);
    if (self->forwards) {
        for (zcq_query_t *query = zhashx_first (self->forwards); query;
             query = zhashx_next (self->forwards))
            zcq_query_destroy (&query);
        zhashx_destroy (&self->forwards);
    }
    zhashx_destroy (&self->links);
    zsock_destroy (&self->forward);
    zcq_gate_unwatch (self->clients); //  before it closes (actors/gate.c DESIGN 1)
    zsock_destroy (&self->clients);
    zcq_writer_destroy (&self->writer);
    free (self);
    *self_p = NULL;
}

static void
s_free_item (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static self_t *
s_new (zsock_t *pipe, const zcq_query_args_t *args)
{
    self_t *self = calloc (1, sizeof (self_t));
    if (!self) {
        zcq_actor_failed (pipe, "out of memory");
        return NULL;
    }
    self->env = args->env;
    self->pipe = pipe;
    self->views = args->views;
    self->view_count = args->view_count;
    self->host_count = args->host_count;
    self->limits.max_bytes = args->env->config->request_limit;
    self->limits.max_depth = 32;
    self->writer = zcq_writer_new ();
    self->hosts = calloc (self->host_count ? self->host_count : 1, sizeof (zsock_t *));
    self->clients = zsock_new (ZMQ_ROUTER);
    self->backlog = zlistx_new ();
    self->queued = zhashx_new ();
    if (self->queued)
        zhashx_set_destructor (self->queued, s_free_item);
    self->reads = zcq_log_reads_new (self->env);
    self->backups = zcq_backups_new (self->env);
    if (!self->writer || !self->hosts || !self->clients || !self->backlog || !self->queued
        || !self->reads || !self->backups) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    char endpoint[128];
    for (uint32_t host = 0; host < self->host_count; host++) {
        zcq_endpoint_host (self->env, host, endpoint, sizeof endpoint);
        self->hosts[host] = zsock_new (ZMQ_PAIR);
        if (!self->hosts[host] || zsock_connect (self->hosts[host], "%s", endpoint) < 0) {
            zcq_actor_failed (pipe, "cannot connect %s", endpoint);
            s_destroy (&self);
            return NULL;
        }
        zsock_set_sndhwm (self->hosts[host], 0);
        zsock_set_rcvhwm (self->hosts[host], 0);
    }
    if (self->env->coordinator) {
        self->forward = zsock_new (ZMQ_ROUTER);
        self->links = zhashx_new ();
        self->forwards = zhashx_new ();
        if (!self->forward || !self->links || !self->forwards) {
            zcq_actor_failed (pipe, "out of memory");
            s_destroy (&self);
            return NULL;
        }
        //  routing ids are kept as copies
        zhashx_set_duplicator (self->links, (zhashx_duplicator_fn *) strdup);
        zhashx_set_destructor (self->links, (zhashx_destructor_fn *) s_free_item);
        zsock_set_router_mandatory (self->forward, 1);
        //  not ZMQ_IMMEDIATE: with it, a ROUTER's connection never takes
        //  the routing id given at connect, and no forward goes out. A
        //  forward to a leader that died before ZooKeeper noticed waits
        //  in ZeroMQ's queue and ends as outcome_unknown (DESIGN 7)
        zsock_set_linger (self->forward, 0);
        zsock_set_sndhwm (self->forward, 10000);
        zsock_set_rcvhwm (self->forward, 10000);
    }
    zsock_set_router_mandatory (self->clients, 1);
    zsock_set_sndhwm (self->clients, S_SNDHWM);
    zsock_set_rcvhwm (self->clients, 100000);
    zsock_set_linger (self->clients, 1000);
    int64_t max_message = (int64_t) args->env->config->request_limit * 4;
    zsock_set_maxmsgsize (self->clients, max_message < (16 << 20) ? (16 << 20) : max_message);
    const char *wanted = self->env->config->endpoints[ZCQ_ENDPOINT_QUERY];
    if (zsock_bind (self->clients, "%s", wanted) < 0) {
        zcq_actor_failed (pipe, "cannot bind the query endpoint %s: %s", wanted,
                          zmq_strerror (zmq_errno ()));
        s_destroy (&self);
        return NULL;
    }
    zcq_gate_watch (self->env, self->clients, "query"); //  actors/gate.c
    char *bound = zsock_last_endpoint (self->clients);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", bound ? bound : wanted);
    zstr_free (&bound);
    return self;
}

//  Try to send a query's reply with its envelope, without blocking: 0 =
//  sent, 1 = the client's pipe is full (nothing sent), -1 = not sent (the
//  client is gone, or there is no reply).
static int
s_send_reply (self_t *self, zcq_query_t *query)
{
    void *socket = zsock_resolve (self->clients);
    zframe_t *frame = zmsg_first (query->envelope);
    if (!frame || !query->reply)
        return -1;
    bool first = true;
    while (frame) {
        if (zmq_send (socket, zframe_data (frame), zframe_size (frame),
                      ZMQ_SNDMORE | (first ? ZMQ_DONTWAIT : 0))
            < 0)
            return first && zmq_errno () == EAGAIN ? 1 : -1;
        first = false;
        frame = zmsg_next (query->envelope);
    }
    return zmq_send (socket, query->reply, query->reply_size, 0) >= 0 ? 0 : -1;
}

//  The client a query came from, as hex of its routing identity.
void
zcq_query_peer (const zcq_query_t *query, char *peer, size_t size)
{
    zframe_t *identity = zmsg_first (query->envelope);
    zcq_peer_key (identity ? zframe_data (identity) : NULL, identity ? zframe_size (identity) : 0,
                  peer, size);
}

//  What a waiting reply holds: the reply, its envelope and the query.
static size_t
s_reply_bytes (const zcq_query_t *query)
{
    return query->reply_size + zmsg_content_size (query->envelope) + sizeof (zcq_query_t) + 256;
}

//  Queue a reply for a full pipe (DESIGN 3); false when over a bound.
static bool
s_backlog_add (self_t *self, zcq_query_t *query, const char *peer)
{
    size_t bytes = s_reply_bytes (query);
    size_t *queued = zhashx_lookup (self->queued, peer);
    if (!queued && (queued = calloc (1, sizeof (size_t))))
        zhashx_insert (self->queued, peer, queued);
    if (!queued || *queued + bytes > S_PEER_BYTES || self->backlog_bytes + bytes > S_BACKLOG_BYTES
        || !zlistx_add_end (self->backlog, query)) {
        if (queued && *queued == 0)
            zhashx_delete (self->queued, peer);
        return false;
    }
    *queued += bytes;
    self->backlog_bytes += bytes;
    //  the request is answered: only the reply and its envelope wait
    query->root = query->rid = NULL;
    zcq_doc_destroy (&query->doc);
    zframe_destroy (&query->body);
    query->deadline = zclock_mono () + S_BACKLOG_MS;
    return true;
}

static void
s_backlog_forget (self_t *self, zcq_query_t *query)
{
    char peer[ZCQ_PEER_MAX];
    zcq_query_peer (query, peer, sizeof peer);
    size_t bytes = s_reply_bytes (query);
    size_t *queued = zhashx_lookup (self->queued, peer);
    if (queued && *queued > bytes)
        *queued -= bytes;
    else
        zhashx_delete (self->queued, peer);
    self->backlog_bytes -= bytes;
}

//  Send a query's reply (or queue it, DESIGN 3), then let go of the query.
static void
s_reply (self_t *self, zcq_query_t **query_p)
{
    zcq_query_t *query = *query_p;
    *query_p = NULL;
    ZCQ_STAT_ADD (self->env->stats, queries_served, 1);
    //  behind the client's replies already waiting, to keep their order
    //  (the client is looked up only while some replies wait)
    char peer[ZCQ_PEER_MAX] = "";
    if (zlistx_size (self->backlog))
        zcq_query_peer (query, peer, sizeof peer);
    int rc = *peer && zhashx_lookup (self->queued, peer) ? 1 : s_send_reply (self, query);
    if (rc == 1) {
        if (!*peer)
            zcq_query_peer (query, peer, sizeof peer);
        if (s_backlog_add (self, query, peer))
            return;
    }
    if (rc != 0)
        ZCQ_STAT_ADD (self->env->stats, replies_dropped, 1);
    zcq_query_destroy (&query);
}

//  Retry the waiting replies, oldest first; drop those waiting too long.
static void
s_flush_backlog (self_t *self)
{
    int64_t now = zclock_mono ();
    zcq_query_t *query = zlistx_first (self->backlog);
    while (query) {
        int rc = now < query->deadline ? s_send_reply (self, query) : -1;
        if (rc == 1) {
            query = zlistx_next (self->backlog);
            continue;
        }
        if (rc < 0)
            ZCQ_STAT_ADD (self->env->stats, replies_dropped, 1);
        zlistx_detach_cur (self->backlog);
        s_backlog_forget (self, query);
        zcq_query_destroy (&query);
        query = zlistx_next (self->backlog);
    }
}

bool
zcq_query_int (zcq_query_t *query, const char *name, int64_t min, int64_t max, int64_t fallback,
               int64_t *value)
{
    const zcq_value_t *found = zcq_value_get (query->root, name);
    *value = fallback;
    if (!found || zcq_value_type (found) == ZCQ_TYPE_NIL)
        return true;
    if (!zcq_value_int (found, value) || *value < min || *value > max) {
        zcq_query_fail (query, ZCQ_INVALID, "'%s' must be an integer from %lld to %lld", name,
                        (long long) min, (long long) max);
        return false;
    }
    return true;
}

static void
s_write_views (self_t *self)
{
    zcq_writer_array (self->writer, self->view_count);
    for (size_t index = 0; index < self->view_count; index++) {
        zcq_view_info_t *view = &self->views[index];
        int status = atomic_load_explicit (&view->status, memory_order_relaxed);
        bool failed = atomic_load_explicit (&view->failed, memory_order_acquire);
        zcq_writer_map (self->writer, (view->groups ? 6 : 5) + (failed ? 1 : 0));
        if (view->groups) {
            //  a cluster-wide view: its position in every group's log
            zcq_writer_str (self->writer, "positions");
            zcq_writer_map (self->writer, view->groups);
            for (size_t group = 0; group < view->groups; group++) {
                char name[24];
                snprintf (name, sizeof name, "%zu", group);
                zcq_writer_str (self->writer, name);
                zcq_writer_uint (self->writer, atomic_load_explicit (&view->positions[group],
                                                                     memory_order_relaxed));
            }
        }
        zcq_writer_str (self->writer, "name");
        zcq_writer_str (self->writer, view->def->view);
        zcq_writer_str (self->writer, "position");
        zcq_writer_uint (self->writer,
                         atomic_load_explicit (&view->position, memory_order_relaxed));
        zcq_writer_str (self->writer, "rows");
        zcq_writer_uint (self->writer, atomic_load_explicit (&view->rows, memory_order_relaxed));
        zcq_writer_str (self->writer, "snapshot");
        zcq_writer_uint (self->writer,
                         atomic_load_explicit (&view->snapshot, memory_order_relaxed));
        zcq_writer_str (self->writer, "status");
        if (failed) {
            //  a projection handler failed: the view misses that event's changes
            zcq_writer_str (self->writer, "failed");
            zcq_writer_str (self->writer, "error");
            zcq_writer_str (self->writer, view->error);
        }
        else
            zcq_writer_str (self->writer, s_status_names[status >= 0 && status <= 2 ? status : 0]);
    }
}

static void
s_op_views (self_t *self, zcq_query_t *query)
{
    size_t count;
    size_t mark = zcq_query_reply_open (query, self->writer, &count);
    zcq_writer_str (self->writer, "head");
    zcq_writer_uint (self->writer, zcq_store_head (self->env->store));
    zcq_writer_str (self->writer, "views");
    s_write_views (self);
    zcq_query_reply_close (query, self->writer, mark, count + 2);
}

static void
s_op_health (self_t *self, zcq_query_t *query)
{
    size_t count;
    size_t mark = zcq_query_reply_open (query, self->writer, &count);
    zcq_writer_str (self->writer, "node");
    zcq_writer_str (self->writer, self->env->config->node);
    zcq_writer_str (self->writer, "head");
    zcq_writer_uint (self->writer, zcq_store_head (self->env->store));
    zcq_writer_str (self->writer, "uptime_ms");
    zcq_writer_int (self->writer, (zcq_now_us () - self->env->started_us) / 1000);
    zcq_writer_str (self->writer, "durability");
    zcq_writer_str (self->writer, zcq_durability_name (self->env->config->durability));
    //  `failed` while a storage error keeps commands from committing (the
    //  store reopens itself once the fault clears)
    zcq_writer_str (self->writer, "store");
    zcq_writer_str (self->writer, zcq_store_failed (self->env->store) ? "failed" : "ok");
    zcq_writer_str (self->writer, "views");
    s_write_views (self);
    count += 6;
    zcq_coordinator_t *coordinator = self->env->coordinator;
    if (coordinator) {
        //  cluster.md section 5: the node's part in its cluster
        zcq_cluster_view_t *view = zcq_coordinator_view (coordinator);
        uint64_t epoch = 0;
        bool leading = zcq_coordinator_leading (coordinator, &epoch);
        int group = self->env->config->group;
        const zcq_cluster_group_t *state = view && group >= 0 && (size_t) group < view->group_count
                                             ? &view->groups[group]
                                             : NULL;
        zcq_writer_str (self->writer, "group");
        if (group >= 0)
            zcq_writer_int (self->writer, group);
        else
            zcq_writer_nil (self->writer);
        zcq_writer_str (self->writer, "role");
        zcq_writer_str (self->writer, group < 0 ? "views" : leading ? "leader" : "follower");
        zcq_writer_str (self->writer, "epoch");
        zcq_writer_uint (self->writer, leading ? epoch : state ? state->epoch : 0);
        zcq_writer_str (self->writer, "hw");
        zcq_writer_uint (self->writer, group >= 0 ? zcq_store_head (self->env->store) : 0);
        zcq_writer_str (self->writer, "isr");
        zcq_writer_array (self->writer, state ? state->isr_count : 0);
        for (size_t index = 0; state && index < state->isr_count; index++)
            zcq_writer_str (self->writer, state->isr[index]);
        //  the epoch history of its log (cluster.md 6.4): [epoch, first position]
        void *epochs = NULL;
        size_t size = 0;
        if (zcq_store_meta (self->env->store, ZCQ_EPOCHS_META, &epochs, &size) != ZCQ_OK
            || size % 16)
            size = 0;
        zcq_writer_str (self->writer, "epochs");
        zcq_writer_array (self->writer, size / 16);
        for (size_t at = 0; at < size; at += 16) {
            zcq_writer_array (self->writer, 2);
            zcq_writer_uint (self->writer, zcq_get_be64 ((uint8_t *) epochs + at));
            zcq_writer_uint (self->writer, zcq_get_be64 ((uint8_t *) epochs + at + 8));
        }
        free (epochs);
        count += 6;
        zcq_cluster_view_release (&view);
    }
    zcq_query_reply_close (query, self->writer, mark, count);
}

//  The high watermark this node knows of a group: its own group's is its
//  head (one replica per group); others' come from its views' followers.
static uint64_t
s_group_hw (void *arg, int group)
{
    self_t *self = arg;
    if (group == self->env->config->group)
        return zcq_store_head (self->env->store);
    uint64_t known = 0;
    for (size_t index = 0; index < self->view_count; index++) {
        const zcq_view_info_t *view = &self->views[index];
        if (view->positions && group >= 0 && (size_t) group < view->groups) {
            uint64_t position
                = atomic_load_explicit (&view->positions[group], memory_order_relaxed);
            known = position > known ? position : known;
        }
    }
    return known;
}

//  A replica's position: this node's own, else what its views know.
static uint64_t
s_replica_position (void *arg, int group, const char *node)
{
    self_t *self = arg;
    if (streq (node, self->env->config->node))
        return zcq_store_head (self->env->store);
    return s_group_hw (arg, group);
}

//  `cluster` (cluster.md section 5): the map, the groups and the nodes.
static void
s_op_cluster (self_t *self, zcq_query_t *query)
{
    if (!self->env->coordinator) {
        zcq_query_fail (query, ZCQ_INVALID, "this node is not in a cluster (no --cluster)");
        return;
    }
    zcq_cluster_view_t *view = zcq_coordinator_view (self->env->coordinator);
    if (!view) {
        zcq_query_fail (query, ZCQ_UNAVAILABLE, "no view of the cluster yet");
        return;
    }
    size_t count;
    size_t mark = zcq_query_reply_open (query, self->writer, &count);
    zcq_cluster_hw_t hw = { s_group_hw, s_replica_position, self };
    count += zcq_cluster_view_encode (view, self->writer, &hw);
    zcq_query_reply_close (query, self->writer, mark, count);
    zcq_cluster_view_release (&view);
}

static void
s_op_stats (self_t *self, zcq_query_t *query)
{
    zcq_stats_t *stats = self->env->stats;
    uint64_t head = zcq_store_head (self->env->store);
    size_t count;
    size_t mark = zcq_query_reply_open (query, self->writer, &count);
    zcq_writer_str (self->writer, "head");
    zcq_writer_uint (self->writer, head);
    zcq_writer_str (self->writer, "stats");
    size_t stats_mark = zcq_writer_map_open (self->writer);
    size_t entries = 0;
#define S_COUNTER(name)                                         \
    zcq_writer_str (self->writer, #name);                       \
    zcq_writer_uint (self->writer, ZCQ_STAT_GET (stats, name)); \
    entries++;
    S_COUNTER (commands_received)
    S_COUNTER (commands_accepted)
    S_COUNTER (commands_duplicate)
    S_COUNTER (commands_rejected)
    S_COUNTER (commands_conflict)
    S_COUNTER (commands_invalid)
    S_COUNTER (commands_unavailable)
    S_COUNTER (commands_failed)
    S_COUNTER (events_written)
    S_COUNTER (commits)
    S_COUNTER (commit_failures)
    S_COUNTER (replies_dropped)
    S_COUNTER (requests_dropped)
    S_COUNTER (aggregates_loaded)
    S_COUNTER (snapshots_written)
    S_COUNTER (queries_served)
    S_COUNTER (connections_refused)
    S_COUNTER (commands_forwarded)
    S_COUNTER (events_withheld)
    S_COUNTER (reads_refused)
#undef S_COUNTER
    zcq_writer_str (self->writer, "reads_waiting");
    zcq_writer_uint (self->writer, zcq_log_reads_waiting (self->reads));
    entries++;
    zcq_writer_str (self->writer, "connections");
    zcq_writer_int (self->writer, (int64_t) ZCQ_STAT_GET (stats, connections));
    entries++;
    zcq_writer_str (self->writer, "commands_inflight");
    zcq_writer_int (self->writer, (int64_t) ZCQ_STAT_GET (stats, commands_inflight));
    zcq_writer_str (self->writer, "head");
    zcq_writer_uint (self->writer, head);
    zcq_writer_str (self->writer, "disk_bytes");
    zcq_writer_uint (self->writer, zcq_store_disk_bytes (self->env->store));
    entries += 3;
    for (size_t index = 0; index < self->view_count; index++) {
        zcq_view_info_t *view = &self->views[index];
        uint64_t position = atomic_load_explicit (&view->position, memory_order_relaxed);
        char name[128];
        snprintf (name, sizeof name, "view.%s.lag", view->def->view);
        zcq_writer_str (self->writer, name);
        zcq_writer_uint (self->writer, head > position ? head - position : 0);
        snprintf (name, sizeof name, "view.%s.rows", view->def->view);
        zcq_writer_str (self->writer, name);
        zcq_writer_uint (self->writer, atomic_load_explicit (&view->rows, memory_order_relaxed));
        snprintf (name, sizeof name, "view.%s.memory_bytes", view->def->view);
        zcq_writer_str (self->writer, name);
        zcq_writer_uint (self->writer, atomic_load_explicit (&view->memory, memory_order_relaxed));
        snprintf (name, sizeof name, "view.%s.applied", view->def->view);
        zcq_writer_str (self->writer, name);
        zcq_writer_uint (self->writer, atomic_load_explicit (&view->applied, memory_order_relaxed));
        entries += 4;
    }
    zcq_writer_map_close (self->writer, stats_mark, entries);
    zcq_query_reply_close (query, self->writer, mark, count + 2);
}

//  A view query: find the view and hand the query to its host (DESIGN 1).
static bool
s_route_view (self_t *self, zcq_query_t *query)
{
    const zcq_value_t *name = zcq_value_get (query->root, "view");
    char view[80];
    if (!name) {
        zcq_query_fail (query, ZCQ_INVALID, "'view' is required");
        return false;
    }
    if (!zcq_value_copy_str (name, view, sizeof view)) {
        zcq_query_fail (query, ZCQ_INVALID, "'view' must be a string of 1 to 64 bytes");
        return false;
    }
    for (size_t index = 0; index < self->view_count; index++) {
        if (strcmp (self->views[index].def->view, view) != 0)
            continue;
        //  min_position, group, min_positions, timeout_ms (projection.c)
        if (!zcq_host_parse_wait (query, self->env))
            return false;
        query->view = &self->views[index];
        zsock_t *host = self->hosts[self->views[index].host];
        if (zmq_send (zsock_resolve (host), &query, sizeof query, 0) != sizeof query) {
            zcq_query_fail (query, ZCQ_INTERNAL, "cannot reach the view's host");
            return false;
        }
        return true;
    }
    zcq_query_fail (query, ZCQ_UNKNOWN, "unknown view '%s'", view);
    return false;
}

//  --------------------------------------------------------------------------
//  Log reads of other groups (DESIGN 5)

//  The group a `read` or `stream` is for; -2 when the request is bad (the
//  query failed), else a group (the node's own when none is named).
static int
s_read_group (self_t *self, zcq_query_t *query, const zcq_cluster_view_t *view)
{
    int64_t group;
    if (!zcq_query_int (query, "group", 0, INT32_MAX, -1, &group))
        return -2;
    if (group >= 0 && (size_t) group >= view->group_count) {
        zcq_query_fail (query, ZCQ_INVALID, "the cluster has no group %lld (it has %zu)",
                        (long long) group, view->group_count);
        return -2;
    }
    if (group < 0 && streq (query->op, "stream")) {
        const char *stream;
        size_t len;
        if (zcq_value_str (zcq_value_get (query->root, "stream"), &stream, &len))
            group = zcq_cluster_view_group_of (view, stream, len);
    }
    return group < 0 ? self->env->config->group : (int) group;
}

//  Send a read waiting for its connection, if it is up and has room.
static void
s_forward_try (self_t *self, zcq_query_t *query)
{
    void *socket = zsock_resolve (self->forward);
    const char *peer = query->forward_peer;
    if (zmq_send (socket, peer, strlen (peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return; //  still connecting, or full: the tick tries again
    uint8_t mark[S_MARK_SIZE];
    memcpy (mark, S_MARK, sizeof S_MARK);
    zcq_put_be64 (mark + sizeof S_MARK, query->sequence);
    zmq_send (socket, mark, sizeof mark, ZMQ_SNDMORE);
    zmq_send (socket, zframe_data (query->body), zframe_size (query->body), 0);
    query->forward_sent = true;
    query->forward_until = zclock_mono () + S_FORWARD_MS;
}

//  Send a read to a live replica of its group; false when it was answered
//  (no replica, or no memory).
static bool
s_forward_read (self_t *self, zcq_query_t *query, const zcq_cluster_view_t *view, int group)
{
    const zcq_cluster_group_t *state = &view->groups[group];
    const char *endpoint = NULL;
    for (size_t index = 0; !endpoint && index < state->replica_count; index++)
        endpoint = state->replicas[index]->query;
    if (!endpoint) {
        zcq_query_fail (query, ZCQ_UNAVAILABLE, "group %d has no live replica to read from", group);
        return false;
    }
    const char *peer = zhashx_lookup (self->links, endpoint);
    if (!peer) {
        char id[16];
        snprintf (id, sizeof id, "Q%u", ++self->link_count);
        zsock_set_connect_rid (self->forward, id);
        if (zsock_connect (self->forward, "%s", endpoint) < 0
            || zhashx_insert (self->links, endpoint, id)) {
            zcq_query_fail (query, ZCQ_UNAVAILABLE, "cannot connect to %s", endpoint);
            return false;
        }
        peer = zhashx_lookup (self->links, endpoint);
    }
    char key[24];
    query->sequence = ++self->sequence;
    snprintf (key, sizeof key, "%" PRIx64, query->sequence);
    snprintf (query->forward_peer, sizeof query->forward_peer, "%s", peer);
    query->forward_sent = false;
    query->forward_until = zclock_mono () + 2000; //  to connect, then S_FORWARD_MS
    if (zhashx_insert (self->forwards, key, query)) {
        zcq_query_fail (query, ZCQ_INTERNAL, "out of memory");
        return false;
    }
    s_forward_try (self, query);
    return true;
}

//  Replies of other nodes to reads sent there: answered as they came.
static void
s_handle_forwarded (self_t *self)
{
    for (int count = 0; count < S_ROUND; count++) {
        zmsg_t *reply = zmsg_recv_nowait (self->forward);
        if (!reply)
            break;
        zframe_t *peer = zmsg_first (reply);
        zframe_t *mark = zmsg_next (reply);
        zframe_t *body = zmsg_next (reply);
        if (peer && mark && body && !zmsg_next (reply) && zframe_size (mark) == S_MARK_SIZE
            && memcmp (zframe_data (mark), S_MARK, sizeof S_MARK) == 0) {
            char key[24];
            snprintf (key, sizeof key, "%" PRIx64,
                      zcq_get_be64 (zframe_data (mark) + sizeof S_MARK));
            zcq_query_t *query = zhashx_lookup (self->forwards, key);
            if (query) {
                zhashx_delete (self->forwards, key);
                free (query->reply);
                query->reply_size = zframe_size (body);
                query->reply = malloc (query->reply_size ? query->reply_size : 1);
                if (query->reply)
                    memcpy (query->reply, zframe_data (body), query->reply_size);
                s_reply (self, &query);
            }
        }
        zmsg_destroy (&reply);
    }
}

//  Reads sent elsewhere and not answered in time get `timeout`.
static void
s_forward_tick (self_t *self)
{
    int64_t now = zclock_mono ();
    zlistx_t *late = zlistx_new ();
    for (zcq_query_t *query = zhashx_first (self->forwards); query && late;
         query = zhashx_next (self->forwards))
        if (now >= query->forward_until)
            zlistx_add_end (late, query);
        else if (!query->forward_sent)
            s_forward_try (self, query);
    for (zcq_query_t *query = late ? zlistx_first (late) : NULL; query;
         query = zlistx_next (late)) {
        char key[24];
        snprintf (key, sizeof key, "%" PRIx64, query->sequence);
        zhashx_delete (self->forwards, key);
        if (query->forward_sent)
            zcq_query_fail (query, ZCQ_TIMEOUT, "no answer from the group's replica in %d ms",
                            S_FORWARD_MS);
        else
            zcq_query_fail (query, ZCQ_UNAVAILABLE, "cannot reach the group's replica");
        s_reply (self, &query);
    }
    zlistx_destroy (&late);
}

//  Decode a request whose envelope (the frames the peer sent before the
//  body) holds envelope_bytes, and answer it or route it; false when it
//  was answered here (the caller replies).
static bool
s_dispatch (self_t *self, zcq_query_t *query, size_t envelope_bytes)
{
    query->doc = zcq_doc_new ();
    if (!query->doc) {
        zcq_query_fail (query, ZCQ_INTERNAL, "out of memory");
        return false;
    }
    size_t size = zframe_size (query->body);
    char message[160];
    if (zcq_request_over_limit (envelope_bytes, size, self->limits.max_bytes, message,
                                sizeof message)) {
        zcq_query_fail (query, ZCQ_INVALID, "%s", message);
        return false;
    }
    if (zcq_doc_decode (query->doc, zframe_data (query->body), size, &self->limits) != ZCQ_OK) {
        zcq_query_fail (query, ZCQ_INVALID, "%s", zcq_doc_error (query->doc));
        return false;
    }
    query->root = zcq_doc_root (query->doc);
    if (zcq_value_type (query->root) != ZCQ_TYPE_MAP) {
        zcq_query_fail (query, ZCQ_INVALID, "request must be a MessagePack map");
        return false;
    }
    query->rid = zcq_value_get (query->root, "rid");
    const zcq_value_t *op = zcq_value_get (query->root, "op");
    if (!op) {
        zcq_query_fail (query, ZCQ_INVALID, "'op' is required");
        return false;
    }
    const char *op_name;
    size_t op_len;
    if (!zcq_value_str (op, &op_name, &op_len)) {
        zcq_query_fail (query, ZCQ_INVALID, "'op' must be a string");
        return false;
    }
    if (!zcq_value_copy_str (op, query->op, sizeof query->op)) {
        //  at most 64 bytes of it, cut where a character starts
        size_t shown = op_len > 64 ? zcq_utf8_prefix (op_name, 64) : op_len;
        zcq_query_fail (query, ZCQ_UNKNOWN, "unknown op '%.*s'", (int) shown, op_name);
        return false;
    }
    if (self->forward && (streq (query->op, "read") || streq (query->op, "stream"))) {
        //  DESIGN 5: another group's log is read where it is
        zcq_cluster_view_t *view = zcq_coordinator_view (self->env->coordinator);
        int group = view ? s_read_group (self, query, view) : self->env->config->group;
        bool forwarded = false, answered = group == -2;
        if (!answered && group != self->env->config->group) {
            if (query->forwarded_in) {
                zcq_query_fail (query, ZCQ_UNAVAILABLE, "this node does not hold group %d's log",
                                group);
                answered = true;
            }
            else {
                forwarded = s_forward_read (self, query, view, group);
                answered = !forwarded;
            }
        }
        zcq_cluster_view_release (&view);
        if (forwarded)
            return true;
        if (answered)
            return false;
    }
    static const struct {
        const char *op;
        void (*handler) (self_t *self, zcq_query_t *query);
    } local[] = {
        { "views", s_op_views },
        { "health", s_op_health },
        { "stats", s_op_stats },
        { "cluster", s_op_cluster },
    };
    if (streq (query->op, "read") || streq (query->op, "stream"))
        return zcq_log_reads_add (self->reads, query); //  log_reader.c
    if (streq (query->op, "backup"))
        return zcq_backups_add (self->backups, query); //  backup.c
    for (size_t index = 0; index < sizeof local / sizeof local[0]; index++)
        if (streq (query->op, local[index].op)) {
            local[index].handler (self, query);
            return false;
        }
    if (streq (query->op, "get") || streq (query->op, "list") || streq (query->op, "count")
        || streq (query->op, "rebuild"))
        return s_route_view (self, query);
    zcq_query_fail (query, ZCQ_UNKNOWN, "unknown op '%s'", query->op);
    return false;
}

//  Read one request: its envelope (the identity our ROUTER added, then the
//  frames the peer sent) and its body, counted against the limit (DESIGN
//  4). Returns false when nothing was there.
static bool
s_take_request (self_t *self)
{
    void *socket = zsock_resolve (self->clients);
    zmq_msg_t identity;
    zmq_msg_init (&identity);
    if (zmq_msg_recv (&identity, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&identity);
        return false;
    }
    bool more = zmq_msg_more (&identity);
    zmsg_t *envelope = zmsg_new ();
    if (envelope)
        zmsg_addmem (envelope, zmq_msg_data (&identity), zmq_msg_size (&identity));
    zmq_msg_close (&identity);
    size_t frames = 0, envelope_bytes = 0; //  what the peer sent before its body
    bool dropped = false, forwarded_in = false;
    zframe_t *body = NULL;
    while (more) {
        zframe_t *frame = zframe_recv (socket);
        if (!frame)
            break;
        more = zframe_more (frame);
        if (!more) {
            body = frame;
            break;
        }
        envelope_bytes += zframe_size (frame);
        frames++;
        if (frames == 1 && zframe_size (frame) == S_MARK_SIZE
            && memcmp (zframe_data (frame), S_MARK, sizeof S_MARK) == 0)
            forwarded_in = true; //  DESIGN 5: from another node
        if (envelope_bytes > self->limits.max_bytes || envelope_bytes > S_ENVELOPE_BYTES
            || frames > S_ENVELOPE_FRAMES)
            dropped = true;
        if (dropped || !envelope)
            zframe_destroy (&frame);
        else
            zmsg_append (envelope, &frame);
    }
    zcq_query_t *query = NULL;
    if (dropped)
        ZCQ_STAT_ADD (self->env->stats, requests_dropped, 1);
    else if (envelope && body && zmsg_size (envelope) == 1 + frames)
        query = calloc (1, sizeof (zcq_query_t));
    if (!query) {
        zmsg_destroy (&envelope);
        zframe_destroy (&body);
        return true;
    }
    query->envelope = envelope;
    query->body = body;
    query->forwarded_in = forwarded_in;
    if (!s_dispatch (self, query, envelope_bytes))
        s_reply (self, &query);
    return true;
}

//  A client whose replies wait for its pipe gets no more reads done until
//  they drain (log_reader.c DESIGN 3).
static bool
s_replies_waiting (void *arg, const char *peer)
{
    self_t *self = arg;
    return zhashx_lookup (self->queued, peer) != NULL;
}

static void
s_handle_host (self_t *self, zsock_t *host)
{
    zcq_query_t *query;
    while (zmq_recv (zsock_resolve (host), &query, sizeof query, ZMQ_DONTWAIT) == sizeof query)
        s_reply (self, &query);
}

static void
s_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "ENDPOINT"))
        zsock_send (self->pipe, "s", self->endpoint);
    else
        zsys_error ("query router: unknown pipe command '%s'", command);
    zstr_free (&command);
}

void
zcq_query_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-queries");
    self_t *self = s_new (pipe, args);
    if (!self)
        return;
    zsock_send (pipe, "is", 0, "");
    //  the pipe, the clients, the reads answered, the hosts, the backups,
    //  the forwards
    size_t item_count = 4 + self->host_count + (self->forward ? 1 : 0);
    zmq_pollitem_t *items = calloc (item_count, sizeof (zmq_pollitem_t));
    if (!items) {
        s_destroy (&self);
        return;
    }
    items[0] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
    items[1] = (zmq_pollitem_t) { zsock_resolve (self->clients), 0, ZMQ_POLLIN, 0 };
    items[2]
        = (zmq_pollitem_t) { zsock_resolve (zcq_log_reads_socket (self->reads)), 0, ZMQ_POLLIN, 0 };
    for (uint32_t host = 0; host < self->host_count; host++)
        items[3 + host] = (zmq_pollitem_t) { zsock_resolve (self->hosts[host]), 0, ZMQ_POLLIN, 0 };
    zmq_pollitem_t *backups = &items[3 + self->host_count];
    *backups
        = (zmq_pollitem_t) { zsock_resolve (zcq_backups_socket (self->backups)), 0, ZMQ_POLLIN, 0 };
    if (self->forward)
        items[item_count - 1]
            = (zmq_pollitem_t) { zsock_resolve (self->forward), 0, ZMQ_POLLIN, 0 };
    int64_t forward_tick = 0;
    while (!self->terminated) {
        long timeout = zlistx_size (self->backlog) ? 2 : -1;
        if (self->forward && zhashx_size (self->forwards) && (timeout < 0 || timeout > 100))
            timeout = 20; //  DESIGN 5: reads waiting to connect, or out of time
        if (zmq_poll (items, (int) item_count, timeout) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        for (uint32_t host = 0; host < self->host_count; host++)
            if (items[3 + host].revents & ZMQ_POLLIN)
                s_handle_host (self, self->hosts[host]);
        if (items[2].revents & ZMQ_POLLIN) {
            zcq_query_t *query;
            while ((query = zcq_log_reads_take (self->reads)))
                s_reply (self, &query);
        }
        if (backups->revents & ZMQ_POLLIN) {
            zcq_query_t *query = zcq_backups_take (self->backups);
            if (query)
                s_reply (self, &query);
        }
        if (items[1].revents & ZMQ_POLLIN)
            for (int count = 0; count < S_ROUND; count++)
                if (!s_take_request (self))
                    break;
        if (zlistx_size (self->backlog))
            s_flush_backlog (self);
        if (zcq_log_reads_waiting (self->reads))
            zcq_log_reads_dispatch (self->reads, s_replies_waiting, self);
        if (self->forward) {
            if (items[item_count - 1].revents & ZMQ_POLLIN)
                s_handle_forwarded (self);
            if (zhashx_size (self->forwards) && zclock_mono () >= forward_tick) {
                s_forward_tick (self);
                forward_tick = zclock_mono () + 20;
            }
        }
    }
    free (items);
    s_destroy (&self);
}

//  --------------------------------------------------------------------------
//  The reader: view hosts and the query router

struct zcq_reader_t {
    zcq_view_info_t *views;
    zcq_view_info_t **members; //  views grouped by host
    size_t view_count;
    zactor_t **hosts;
    zcq_host_args_t *host_args;
    uint32_t host_count;
    zcq_query_args_t query_args;
    zactor_t *router;
    char endpoint[ZCQ_ENDPOINT_MAX];
};

zcq_err_t
zcq_reader_start (zcq_reader_t **reader_p, zcq_node_env_t *env, char *error, size_t size)
{
    *reader_p = NULL;
    zcq_reader_t *self = calloc (1, sizeof (zcq_reader_t));
    if (!self) {
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    const zcq_domain_t *domain = env->domain;
    //  a clustered node with `views` = none keeps none; cluster-wide views
    //  are all asynchronous: no view can hold every group's events before a
    //  command of one group is acknowledged (projection.c DESIGN 6)
    bool no_views = env->coordinator && !env->config->role_views
                 && env->config->views == ZCQ_VIEWS_NONE;
    size_t groups = zcq_host_groups (env);
    while (!no_views && domain->projections && domain->projections[self->view_count])
        self->view_count++;
    //  hosts 0..async_hosts-1 take the asynchronous views in turn (there
    //  are view-threads of them at most, or one per view when it is 0), the
    //  next one every synchronous view
    size_t async_views = 0;
    for (size_t index = 0; index < self->view_count; index++)
        if (!domain->projections[index]->synchronous || groups)
            async_views++;
    size_t threads = (size_t) env->config->view_threads;
    size_t async_hosts = threads == 0 || async_views < threads ? async_views : threads;
    uint32_t sync_host = UINT32_MAX;
    self->views = calloc (self->view_count ? self->view_count : 1, sizeof (zcq_view_info_t));
    self->hosts = calloc (self->view_count + 1, sizeof (zactor_t *));
    self->host_args = calloc (self->view_count + 1, sizeof (zcq_host_args_t));
    zcq_view_info_t **members = calloc (self->view_count + 1, sizeof (zcq_view_info_t *));
    self->members = members;
    if (!self->views || !self->hosts || !self->host_args || !members) {
        zcq_reader_destroy (&self);
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    self->host_count = (uint32_t) async_hosts;
    size_t async_next = 0;
    for (size_t index = 0; index < self->view_count; index++) {
        zcq_view_info_t *view = &self->views[index];
        view->def = domain->projections[index];
        atomic_store (&view->status, ZCQ_VIEW_CATCHING_UP);
        if (groups && !(view->positions = calloc (groups, sizeof (atomic_uint_fast64_t)))) {
            zcq_reader_destroy (&self);
            snprintf (error, size, "out of memory");
            return ZCQ_NOMEM;
        }
        view->groups = groups;
        if (view->def->synchronous && !groups) {
            if (sync_host == UINT32_MAX)
                sync_host = self->host_count++;
            view->host = sync_host;
        }
        else
            view->host = (uint32_t) (async_next++ % async_hosts);
    }
    //  each host's views, as consecutive runs of the members array
    size_t used = 0;
    for (uint32_t host = 0; host < self->host_count; host++) {
        zcq_host_args_t *args = &self->host_args[host];
        args->env = env;
        args->host = host;
        args->synchronous = host == sync_host;
        args->views = members + used;
        for (size_t index = 0; index < self->view_count; index++)
            if (self->views[index].host == host)
                args->views[args->view_count++] = &self->views[index];
        used += args->view_count;
    }
    self->query_args = (zcq_query_args_t) { env, self->views, self->view_count, self->host_count };
    zcq_err_t err = ZCQ_OK;
    for (uint32_t host = 0; err == ZCQ_OK && host < self->host_count; host++) {
        self->hosts[host] = zcq_actor_start (zcq_host_actor, &self->host_args[host], error, size);
        if (!self->hosts[host])
            err = ZCQ_UNAVAILABLE;
    }
    if (err == ZCQ_OK) {
        self->router = zcq_actor_start (zcq_query_actor, &self->query_args, error, size);
        if (!self->router)
            err = ZCQ_UNAVAILABLE;
    }
    if (err != ZCQ_OK) {
        zcq_reader_destroy (&self);
        return err;
    }
    char *endpoint = NULL;
    zsock_send (self->router, "s", "ENDPOINT");
    zsock_recv (self->router, "s", &endpoint);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint ? endpoint : "");
    zstr_free (&endpoint);
    *reader_p = self;
    return ZCQ_OK;
}

void
zcq_reader_destroy (zcq_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_reader_t *self = *self_p;
    zactor_destroy (&self->router);
    for (uint32_t host = 0; self->hosts && host < self->host_count; host++)
        zactor_destroy (&self->hosts[host]);
    for (size_t index = 0; self->views && index < self->view_count; index++)
        free (self->views[index].positions);
    free (self->members);
    free (self->host_args);
    free (self->hosts);
    free (self->views);
    free (self);
    *self_p = NULL;
}

const char *
zcq_reader_endpoint (const zcq_reader_t *self)
{
    return self->endpoint;
}

const zcq_view_info_t *
zcq_reader_views (const zcq_reader_t *self, size_t *count)
{
    *count = self->view_count;
    return self->views;
}
