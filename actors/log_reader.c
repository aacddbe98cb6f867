/*  log_reader.c: `read` and `stream` (ZCQ/1 section 5), answered from the
    store by a thread of their own, one client at a time in turn.

        query router --read--> [queue per client] --one at a time--> [reader thread]
                     <---------------- answered --------------------------'

    DESIGN
    1.  A log read is the most expensive query there is: up to 10,000
        events and a 4 MiB reply. Answered on the query router's thread, a
        client asking for many of them held every other client's view
        query behind its reads (hundreds of ms). Here they run on a thread
        of their own, so the router keeps routing view queries to their
        hosts while reads are done.
    2.  Reads wait in a queue per client, and the reader takes them one
        client at a time in turn (round robin), with at most S_IN_FLIGHT
        handed over at once: a client that sends a thousand reads makes
        another client's read wait for one of its reads, not a thousand.
    3.  A client whose earlier replies still wait for its pipe (it does
        not read them: the router's backlog holds some of its replies) gets
        no more reads done until they drain; its reads wait in its queue.
        That queue is bounded per client (S_CLIENT_READS requests,
        S_CLIENT_BYTES with their envelopes) and for all clients
        (S_ALL_READS, S_ALL_BYTES); past a bound the read is answered
        `unavailable` at once. So a client that asks and never reads costs
        the node its queue and a bounded backlog, not reads done and
        thrown away.
    4.  The thread owns a query from the moment it is handed over until it
        sends it back answered, and it answers every query it was handed
        before it stops: the router counts them and takes them all back
        before it lets the thread go (zcq_log_reads_destroy).
*/
#include "zcq_read.h"
#include <string.h>

#define S_READ_DEFAULT 1000
#define S_READ_MAX     10000
#define S_REPLY_BYTES  (4 << 20) //  a read or stream reply stops growing here
#define S_IN_FLIGHT    2         //  reads handed to the thread at once (DESIGN 2)
#define S_CLIENT_READS 64        //  DESIGN 3: bounds of the queues
#define S_CLIENT_BYTES (8 << 20)
#define S_ALL_READS    100000
#define S_ALL_BYTES    (64 << 20)
#define S_STOP_MS      30000 //  a read in flight at stop is answered well before this

//  --------------------------------------------------------------------------
//  The reads themselves, on the reader thread

typedef struct {
    zcq_writer_t *writer;
    size_t count;
    uint64_t last_position; //  of the last event added
    uint64_t last_version;
    uint64_t expected; //  `read`: the position the next event should have
    uint64_t *removed; //  `read`: [from, to] pairs of positions skipped
    size_t removed_count;
    size_t removed_slots;
    bool nomem;
} s_events_t;

//  Add an event to a read or stream reply; stop once the reply is large
//  (ZCQ/1 lets a reply hold fewer events than `limit`; the reader asks
//  again from the next position).
static int
s_add_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_events_t *events = arg;
    if (events->count && zcq_writer_size (events->writer) + len > S_REPLY_BYTES)
        return 1;
    if (events->expected && position > events->expected) {
        //  the log's only holes are removed events (store.c DESIGN 14)
        if (events->removed_count == events->removed_slots) {
            size_t slots = events->removed_slots ? events->removed_slots * 2 : 16;
            uint64_t *removed = realloc (events->removed, slots * 2 * sizeof (uint64_t));
            if (!removed) {
                events->nomem = true;
                return 1;
            }
            events->removed = removed;
            events->removed_slots = slots;
        }
        events->removed[2 * events->removed_count] = events->expected;
        events->removed[2 * events->removed_count + 1] = position - 1;
        events->removed_count++;
    }
    if (events->expected)
        events->expected = position + 1;
    zcq_writer_raw (events->writer, body, len);
    events->count++;
    events->last_position = position;
    events->last_version = version;
    return 0;
}

//  The type of an event body the node wrote, as a C string in type[size]
//  ("" when it has none).
static void
s_event_type (const void *body, size_t len, char *type, size_t size)
{
    const void *value;
    size_t value_len;
    type[0] = 0;
    if (!zcq_msgpack_peek (body, len, "type", &value, &value_len) || value_len == 0)
        return;
    const uint8_t *bytes = value;
    size_t start, count;
    if ((bytes[0] & 0xe0) == 0xa0) {
        start = 1;
        count = bytes[0] & 0x1f;
    }
    else if (bytes[0] == 0xd9 && value_len >= 2) {
        start = 2;
        count = bytes[1];
    }
    else
        return;
    if (start + count > value_len || count >= size)
        return;
    memcpy (type, bytes + start, count);
    type[count] = 0;
}

//  The stream's last event is `$deleted`: its version is the stream's.
static int
s_last_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    (void) position;
    (void) version;
    char type[ZCQ_TYPE_MAX + 1];
    s_event_type (body, len, type, sizeof type);
    *(bool *) arg = strcmp (type, ZCQ_EVENT_DELETED) == 0;
    return 1;
}

//  `next`: where to ask from for what this reply did not hold (a position
//  or a version), or nil when it reached the end.
static void
s_write_next (zcq_writer_t *writer, uint64_t last, uint64_t end, size_t count)
{
    zcq_writer_str (writer, "next");
    if (count && last < end)
        zcq_writer_uint (writer, last + 1);
    else
        zcq_writer_nil (writer);
}

//  op read: events of the log from a position
static void
s_op_read (const zcq_node_env_t *env, zcq_writer_t *writer, zcq_query_t *query)
{
    int64_t from, limit;
    if (!zcq_value_get (query->root, "from")) {
        zcq_query_fail (query, ZCQ_INVALID, "'from' is required");
        return;
    }
    if (!zcq_query_int (query, "from", 1, INT64_MAX, 1, &from)
        || !zcq_query_int (query, "limit", 1, S_READ_MAX, S_READ_DEFAULT, &limit))
        return;
    uint64_t head = zcq_store_head (env->store);
    size_t count;
    size_t mark = zcq_query_reply_open (query, writer, &count);
    zcq_writer_str (writer, "head");
    zcq_writer_uint (writer, head);
    zcq_writer_str (writer, "events");
    size_t events_mark = zcq_writer_array_open (writer);
    s_events_t events = { writer, 0, 0, 0, (uint64_t) from, NULL, 0, 0, false };
    zcq_err_t err
        = zcq_store_read_log (env->store, (uint64_t) from, (size_t) limit, s_add_event, &events);
    if (err == ZCQ_OK && events.nomem)
        err = ZCQ_NOMEM;
    if (err != ZCQ_OK) {
        free (events.removed);
        zcq_query_fail (query, ZCQ_INTERNAL, "reading the log: %s", zcq_strerror (err));
        return;
    }
    zcq_writer_array_close (writer, events_mark, events.count);
    s_write_next (writer, events.last_position, head, events.count);
    if (events.removed_count) {
        //  extension: the removed ranges the reply skipped
        zcq_writer_str (writer, "removed");
        zcq_writer_array (writer, events.removed_count);
        for (size_t index = 0; index < events.removed_count; index++) {
            zcq_writer_array (writer, 2);
            zcq_writer_uint (writer, events.removed[2 * index]);
            zcq_writer_uint (writer, events.removed[2 * index + 1]);
        }
    }
    free (events.removed);
    zcq_query_reply_close (query, writer, mark, count + 3 + (events.removed_count ? 1 : 0));
}

//  op stream: events of one stream from a version
static void
s_op_stream (const zcq_node_env_t *env, zcq_writer_t *writer, zcq_query_t *query)
{
    char stream[ZCQ_STREAM_MAX + 1];
    const zcq_value_t *name = zcq_value_get (query->root, "stream");
    if (!name) {
        zcq_query_fail (query, ZCQ_INVALID, "'stream' is required");
        return;
    }
    if (!zcq_value_copy_str (name, stream, sizeof stream) || !strchr (stream, '/')) {
        zcq_query_fail (query, ZCQ_INVALID, "'stream' must be a string <aggregate>/<key>");
        return;
    }
    int64_t from, limit;
    if (!zcq_query_int (query, "from", 1, INT64_MAX, 1, &from)
        || !zcq_query_int (query, "limit", 1, S_READ_MAX, S_READ_DEFAULT, &limit))
        return;
    uint64_t version = 0;
    bool deleted = false;
    uint64_t first = 1;
    zcq_err_t err = zcq_store_stream_version (env->store, stream, &version);
    if (err == ZCQ_OK)
        err = zcq_store_stream_first (env->store, stream, &first);
    if (err == ZCQ_OK && version)
        err = zcq_store_read_stream (env->store, stream, version, 1, s_last_event, &deleted);
    size_t count;
    size_t mark = zcq_query_reply_open (query, writer, &count);
    zcq_writer_str (writer, "version");
    zcq_writer_uint (writer, version);
    zcq_writer_str (writer, "head");
    zcq_writer_uint (writer, zcq_store_head (env->store));
    if (deleted) {
        zcq_writer_str (writer, "deleted");
        zcq_writer_bool (writer, true);
    }
    if (first > 1) {
        zcq_writer_str (writer, "first");
        zcq_writer_uint (writer, first);
    }
    zcq_writer_str (writer, "events");
    size_t events_mark = zcq_writer_array_open (writer);
    s_events_t events = { writer, 0, 0, 0, 0, NULL, 0, 0, false };
    if (err == ZCQ_OK)
        err = zcq_store_read_stream (env->store, stream, (uint64_t) from, (size_t) limit,
                                     s_add_event, &events);
    if (err != ZCQ_OK) {
        zcq_query_fail (query, ZCQ_INTERNAL, "reading the stream: %s", zcq_strerror (err));
        return;
    }
    zcq_writer_array_close (writer, events_mark, events.count);
    s_write_next (writer, events.last_version, version, events.count);
    zcq_query_reply_close (query, writer, mark,
                           count + 4 + (deleted ? 1 : 0) + (first > 1 ? 1 : 0));
}

//  The reader thread's answer (zcq_query_worker: DESIGN 4).
static void
s_answer (const zcq_node_env_t *env, zcq_writer_t *writer, zcq_query_t *query)
{
    if (streq (query->op, "stream"))
        s_op_stream (env, writer, query);
    else
        s_op_read (env, writer, query);
}

//  --------------------------------------------------------------------------
//  The queues, on the query router's thread

typedef struct {
    char peer[ZCQ_PEER_MAX];
    zlistx_t *queries; //  zcq_query_t, oldest first
    size_t bytes;
} s_client_t;

struct zcq_log_reads_t {
    zcq_query_worker_t worker; //  the reader thread's arguments
    zactor_t *reader;
    zhashx_t *clients; //  peer -> s_client_t, while it has reads waiting
    zlistx_t *turns;   //  s_client_t with reads waiting, next first (DESIGN 2)
    size_t queued;     //  reads waiting, of every client
    size_t bytes;
    size_t in_flight; //  handed to the thread, not back yet
    zcq_stats_t *stats;
};

static void
s_client_destroy (void **item_p)
{
    s_client_t *client = *item_p;
    if (!client)
        return;
    zcq_query_t *query;
    while ((query = zlistx_detach (client->queries, NULL)))
        zcq_query_destroy (&query);
    zlistx_destroy (&client->queries);
    free (client);
    *item_p = NULL;
}

//  What a waiting read holds: its request, envelope and decoded document
//  (about the body's size again) and the query.
static size_t
s_query_bytes (const zcq_query_t *query)
{
    return 2 * zframe_size (query->body) + zmsg_content_size (query->envelope)
         + sizeof (zcq_query_t) + 256;
}

zcq_log_reads_t *
zcq_log_reads_new (const zcq_node_env_t *env)
{
    zcq_log_reads_t *self = calloc (1, sizeof (zcq_log_reads_t));
    if (!self)
        return NULL;
    self->stats = env->stats;
    self->clients = zhashx_new ();
    self->turns = zlistx_new ();
    if (self->clients)
        zhashx_set_destructor (self->clients, s_client_destroy);
    self->worker = (zcq_query_worker_t) { env, "zcq-reads", s_answer };
    self->reader = zactor_new (zcq_query_worker, &self->worker);
    if (!self->clients || !self->turns || !self->reader) {
        zcq_log_reads_destroy (&self);
        return NULL;
    }
    zsock_set_sndhwm (zactor_sock (self->reader), 0);
    zsock_set_rcvhwm (zactor_sock (self->reader), 0);
    return self;
}

void
zcq_log_reads_destroy (zcq_log_reads_t **self_p)
{
    zcq_log_reads_t *self = *self_p;
    if (!self)
        return;
    if (self->reader) {
        //  DESIGN 4: take back every read handed over before the thread goes
        zsock_set_rcvtimeo (zactor_sock (self->reader), S_STOP_MS);
        while (self->in_flight) {
            zcq_query_t *query = NULL;
            if (zmq_recv (zsock_resolve (self->reader), &query, sizeof query, 0) != sizeof query)
                break;
            self->in_flight--;
            zcq_query_destroy (&query);
        }
        zactor_destroy (&self->reader);
    }
    zlistx_destroy (&self->turns);
    zhashx_destroy (&self->clients);
    free (self);
    *self_p = NULL;
}

bool
zcq_log_reads_add (zcq_log_reads_t *self, zcq_query_t *query)
{
    char peer[ZCQ_PEER_MAX];
    zcq_query_peer (query, peer, sizeof peer);
    size_t bytes = s_query_bytes (query);
    s_client_t *client = zhashx_lookup (self->clients, peer);
    if (self->queued >= S_ALL_READS || self->bytes + bytes > S_ALL_BYTES) {
        ZCQ_STAT_ADD (self->stats, reads_refused, 1);
        zcq_query_fail (query, ZCQ_UNAVAILABLE, "too many reads waiting (%zu, %zu bytes)",
                        self->queued, self->bytes);
        return false;
    }
    if (client
        && (zlistx_size (client->queries) >= S_CLIENT_READS
            || client->bytes + bytes > S_CLIENT_BYTES)) {
        ZCQ_STAT_ADD (self->stats, reads_refused, 1);
        zcq_query_fail (query, ZCQ_UNAVAILABLE,
                        "too many of this client's reads waiting (%zu, %zu bytes)",
                        zlistx_size (client->queries), client->bytes);
        return false;
    }
    if (!client) {
        client = calloc (1, sizeof (s_client_t));
        if (client) {
            snprintf (client->peer, sizeof client->peer, "%s", peer);
            client->queries = zlistx_new ();
        }
        if (!client || !client->queries || !zlistx_add_end (self->turns, client)) {
            s_client_destroy ((void **) &client);
            zcq_query_fail (query, ZCQ_INTERNAL, "out of memory");
            return false;
        }
        zhashx_insert (self->clients, peer, client);
    }
    if (!zlistx_add_end (client->queries, query)) {
        zcq_query_fail (query, ZCQ_INTERNAL, "out of memory");
        return false; //  the client has other reads waiting: it stays
    }
    client->bytes += bytes;
    self->queued++;
    self->bytes += bytes;
    return true;
}

void
zcq_log_reads_dispatch (zcq_log_reads_t *self, zcq_log_reads_blocked_fn *blocked, void *arg)
{
    //  DESIGN 2, 3: each client with reads waiting gets one turn at most
    size_t turns = zlistx_size (self->turns);
    while (self->in_flight < S_IN_FLIGHT && turns--) {
        s_client_t *client = zlistx_detach (self->turns, NULL);
        if (blocked && blocked (arg, client->peer)) {
            zlistx_add_end (self->turns, client);
            continue;
        }
        zcq_query_t *query = zlistx_detach (client->queries, NULL);
        size_t bytes = s_query_bytes (query);
        client->bytes -= bytes;
        self->bytes -= bytes;
        self->queued--;
        if (zmq_send (zsock_resolve (self->reader), &query, sizeof query, 0) == sizeof query)
            self->in_flight++;
        else
            zcq_query_destroy (&query);
        if (zlistx_size (client->queries))
            zlistx_add_end (self->turns, client);
        else
            zhashx_delete (self->clients, client->peer); //  frees it
    }
}

zsock_t *
zcq_log_reads_socket (zcq_log_reads_t *self)
{
    return zactor_sock (self->reader);
}

zcq_query_t *
zcq_log_reads_take (zcq_log_reads_t *self)
{
    zcq_query_t *query = NULL;
    if (zmq_recv (zsock_resolve (self->reader), &query, sizeof query, ZMQ_DONTWAIT) != sizeof query)
        return NULL;
    self->in_flight--;
    return query;
}

size_t
zcq_log_reads_waiting (const zcq_log_reads_t *self)
{
    return self->queued;
}
