/*  command_router.c: the command endpoint of a node (ZCQ/1 section 3).

    A ROUTER socket takes commands from DEALER and REQ clients. The router
    decodes and validates each request, answers malformed ones itself, and
    routes the rest by a hash of the stream name to an aggregate shard. It
    owns the client socket, so every reply leaves from here: the shards
    send back what they decided, the log writer what it committed.

    DESIGN
    1.  Every command that reaches a shard gets exactly one reply; the
        in-flight count rises on dispatch and falls on reply, and past
        max-inflight new commands are answered `unavailable` at once. Each
        connection (a routing identity) has its own count too: past
        max-inflight-per-client its new commands are `unavailable`, so a
        flood from one client, or one id repeated, never takes the others'
        room. A client's requests still queued in the socket when it
        leaves are read at the socket's pace and cost a reply each, not an
        execution, once its in-flight room is full.
    2.  Replies never vanish silently: the ROUTER is mandatory (a reply to
        a vanished peer is counted and dropped, since nobody can read it),
        and a reply that meets a full pipe waits in its client's backlog,
        retried every loop; that client's later replies queue behind it,
        and no other client's do. A client that does not read is bounded in
        bytes: ZeroMQ's pipe holds at most S_SNDHWM replies of at most
        S_ENVELOPE_BYTES of envelope each, its backlog S_PEER_BYTES, every
        client's backlog S_BACKLOG_BYTES; beyond, that client's replies are
        dropped (counted as replies_dropped), never another's.
    3.  Requests are read in rounds of up to S_ROUND messages, and each
        shard gets one batch per round, so that hops cost per round, not
        per command. A round also ends after S_ROUND_US of reading: the
        commands of a round are decided only when it ends, and a client
        sending requests that are costly to read (large envelopes, each
        answered at once) made a round of 2,048 last a second, and every
        other client's command in it wait that long. Bounded in time, a
        round costs another client's command at most a few ms however its
        neighbours' requests are shaped.
    4.  One id is in flight at most once: a command whose id is in flight
        is held until the first one is answered, then dispatched (and, if
        the first succeeded, answered as its duplicate by the shard). The
        router sees every command, so this holds across streams and shards.
        The table of ids in flight (s_ids_t) is open addressing over the
        commands themselves: a command costs it no allocation, and a held
        command takes its predecessor's slot when that one is answered.
    5.  The request limit counts the whole request (docs/protocol.md,
        Framing): the frames the peer sent before its body, and the body.
        The routing identity this ROUTER adds is not counted. A request
        over the limit is answered `invalid` with its envelope; one whose
        envelope alone is over the limit or S_ENVELOPE_BYTES, or has more
        than S_ENVELOPE_FRAMES frames, is dropped unanswered (counted as
        requests_dropped), since its reply would echo that envelope back.
        Routing identities are at most 255 bytes, so a real envelope of
        S_ENVELOPE_FRAMES frames fits S_ENVELOPE_BYTES four times over.
        A ROUTER cannot close one peer's connection, so the peer stays
        connected; ZeroMQ itself disconnects a peer that sends a frame
        over the socket's maximum message size.
    6.  The one-loop plan (node.c): the router holds the shards' cores and
        the log stage, and a round runs to its end in this thread: every
        shard's batch is decided, the commit batches are written as one
        group, answered and handed back to their cores, and ids released on
        the way make the next round, until none is left. Nothing crosses a
        thread but the batches of synchronous views, which go to their host
        and come back as in the split plan. The failure protocol (F1-F8 in
        zcq_actors.h) is the same: the cores keep it, whoever calls them.
    7.  In a cluster (cluster.md section 3) every node takes every command.
        The stream's slot names its group; a command of the group this node
        leads (zcq_coordinator_leading: a fenced leader does not) is decided
        here, any other is forwarded to its group's leader, body and id
        unchanged, over one ROUTER socket connected to each leader met so
        far (one socket: no thread or socket per peer). A forwarded request
        carries a marker frame (S_MARK and a sequence number) that the
        leader echoes with its reply; the reply is relayed as it came, so
        it names the leader's group and node. A request that came with a
        marker is never sent on: a node that is not its group's leader
        answers it `unavailable` (`no_leader`, with `owner` when it knows
        the leader), and the sender relays that. A forward that finds no
        connection yet is retried for S_LINK_MS (`forwarding_failed`
        after); one sent and not answered in S_FORWARD_MS is answered
        `timeout` with `reason: "outcome_unknown"`: its retry, same id,
        answers the truth. Forwarded commands count in flight like the
        others, for their client and in total.
*/
#include "zcq_actors.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define S_ROUND           512
#define S_ROUND_ONE_LOOP  2048       //  DESIGN 6: a round is also a group commit
#define S_ROUND_US        3000       //  DESIGN 3: a round's reading ends after this
#define S_SNDHWM          1000       //  replies queued per client in ZeroMQ (DESIGN 2)
#define S_PEER_BYTES      (32 << 20) //  a client's backlog
#define S_BACKLOG_BYTES   (256 << 20)
#define S_ENVELOPE_FRAMES 64 //  frames a peer may send before its body (DESIGN 5)
#define S_ENVELOPE_BYTES  (64 << 10)
#define S_MARK            "zcq-forward" //  DESIGN 7: with its NUL, then a u64
#define S_MARK_SIZE       (sizeof (S_MARK) + 8)
#define S_LINK_MS         2000
#define S_FORWARD_MS      10000

//  A command sent to another node (DESIGN 7), in the order sent.
typedef struct s_forward_t s_forward_t;
struct s_forward_t {
    s_forward_t *prev, *next;
    zcq_command_t *command;
    uint64_t sequence;
    int64_t deadline; //  zclock_mono
    bool sent;        //  else waiting for its link
    char peer[16];    //  the routing id of the leader's connection
};

//  The commands in flight by id (DESIGN 4): open addressing over the ids'
//  hashes, so that a command in flight costs no allocation; the table
//  grows by doubling, and deletions leave tombstones swept at the next
//  growth.
#define S_IDS_TOMBSTONE ((zcq_command_t *) 1)
typedef struct {
    zcq_command_t **slots;
    size_t capacity; //  a power of two
    size_t used;     //  commands and tombstones
} s_ids_t;

//  A reply that met its client's full pipe.
typedef struct s_reply_t s_reply_t;
struct s_reply_t {
    s_reply_t *next;
    size_t bytes;
    zmsg_t *message;
};

//  A connection, known by its routing identity while it has commands in
//  flight or replies waiting (DESIGN 1, 2).
typedef struct s_client_t s_client_t;
struct s_client_t {
    char key[2 * 256 + 1]; //  the routing identity, in hex
    int64_t refs;          //  commands that point here, plus one for a backlog
    int64_t inflight;
    s_reply_t *backlog; //  oldest first
    s_reply_t *backlog_tail;
    size_t backlog_bytes;
    s_client_t *next_waiting; //  on self->waiting while the backlog is not empty
};

typedef struct {
    const zcq_node_env_t *env;
    zsock_t *pipe;
    zsock_t *clients; //  ROUTER, the command endpoint
    zsock_t **shards; //  PAIR per shard
    zsock_t *acks;    //  PAIR from the log writer (or the synchronous views)
    uint32_t shard_count;
    //  the one-loop plan (DESIGN 6)
    zcq_log_stage_t *stage; //  NULL in the split plan
    zcq_shard_t **cores;    //  per shard
    zsock_t *sync;          //  PAIR to the synchronous views' host, when any
    zcq_cbatch_t **group;   //  the commit batches of a round
    size_t group_count;
    size_t group_capacity;
    zcq_cbatch_t **round; //  per shard, the batch being filled
    zcq_writer_t *writer;
    zhashx_t *peers;      //  identity in hex -> s_client_t (DESIGN 1, 2)
    s_client_t *waiting;  //  clients with a backlog
    size_t backlog_bytes; //  every client's
    int64_t drops_logged; //  replies_dropped when a drop was last logged
    int64_t drop_log_at;  //  when, in ms
    s_ids_t ids;          //  id -> command in flight; held ones chain on `next` (DESIGN 4)
    int64_t inflight;
    bool draining;
    bool terminated;
    //  a clustered node (DESIGN 7)
    zcq_coordinator_t *coordinator;
    zcq_cluster_view_t *view;
    zsock_t *forward;    //  ROUTER to other leaders' command endpoints
    zhashx_t *links;     //  command endpoint -> routing id (char[16])
    uint32_t link_count; //  ids given so far
    zhashx_t *forwards;  //  sequence (hex) -> s_forward_t
    s_forward_t *oldest, *newest;
    uint64_t sequence;
    zcq_limits_t limits;
    char endpoint[ZCQ_ENDPOINT_MAX];
} self_t;

static void
s_free_string (char **string_p)
{
    free (*string_p);
    *string_p = NULL;
}

static void
s_client_free (s_client_t **client_p)
{
    free (*client_p);
    *client_p = NULL;
}

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (size_t slot = 0; slot < self->ids.capacity; slot++) {
        //  held commands belong to nobody else; first ones belong to
        //  batches, still queued on the pipes: free the held ones before
        //  the batches go
        zcq_command_t *first = self->ids.slots[slot];
        if (!first || first == S_IDS_TOMBSTONE)
            continue;
        zcq_command_t *held = first->next;
        while (held) {
            zcq_command_t *next = held->next;
            zcq_command_destroy (&held);
            held = next;
        }
    }
    free (self->ids.slots);
    for (uint32_t shard = 0; shard < self->shard_count; shard++) {
        if (self->round)
            zcq_cbatch_destroy (&self->round[shard]);
        if (self->shards && self->shards[shard]) {
            zcq_cbatch_drain (self->shards[shard]);
            zsock_destroy (&self->shards[shard]);
        }
    }
    if (self->acks)
        zcq_cbatch_drain (self->acks);
    free (self->round);
    free (self->shards);
    while (self->oldest) {
        //  forwards still out at the end: their commands are nobody's now
        s_forward_t *forward = self->oldest;
        self->oldest = forward->next;
        zcq_command_destroy (&forward->command);
        free (forward);
    }
    zhashx_destroy (&self->forwards);
    zhashx_destroy (&self->links);
    zsock_destroy (&self->forward);
    zcq_cluster_view_release (&self->view);
    zcq_gate_unwatch (self->clients); //  before it closes (actors/gate.c DESIGN 1)
    zsock_destroy (&self->clients);
    zsock_destroy (&self->acks);
    zsock_destroy (&self->sync);
    for (uint32_t shard = 0; self->cores && shard < self->shard_count; shard++)
        zcq_shard_destroy (&self->cores[shard]);
    free (self->cores);
    free (self->group);
    zcq_log_stage_destroy (&self->stage);
    zcq_writer_destroy (&self->writer);
    if (self->peers) {
        for (s_client_t *client = zhashx_first (self->peers); client;
             client = zhashx_next (self->peers))
            while (client->backlog) {
                s_reply_t *reply = client->backlog;
                client->backlog = reply->next;
                zmsg_destroy (&reply->message);
                free (reply);
            }
        zhashx_destroy (&self->peers);
    }
    free (self);
    *self_p = NULL;
}

static self_t *
s_new (zsock_t *pipe, zcq_router_args_t *args)
{
    const zcq_node_env_t *env = args->env;
    self_t *self = calloc (1, sizeof (self_t));
    if (!self) {
        zcq_log_stage_destroy (&args->stage);
        zcq_actor_failed (pipe, "out of memory");
        return NULL;
    }
    self->env = env;
    self->pipe = pipe;
    self->stage = args->stage; //  ours from now on
    args->stage = NULL;
    self->shard_count = (uint32_t) env->config->shards;
    self->limits.max_bytes = env->config->request_limit;
    self->limits.max_depth = 32;
    self->writer = zcq_writer_new ();
    self->coordinator = env->coordinator;
    if (self->coordinator) {
        self->forward = zsock_new (ZMQ_ROUTER);
        self->links = zhashx_new ();
        self->forwards = zhashx_new ();
        if (!self->forward || !self->links || !self->forwards) {
            zcq_actor_failed (pipe, "out of memory");
            s_destroy (&self);
            return NULL;
        }
        zhashx_set_destructor (self->links, (zhashx_destructor_fn *) s_free_string);
        zsock_set_router_mandatory (self->forward, 1);
        //  not ZMQ_IMMEDIATE: with it, a ROUTER's connection never takes
        //  the routing id given at connect, and no forward goes out. A
        //  forward to a leader that died before ZooKeeper noticed waits
        //  in ZeroMQ's queue and ends as outcome_unknown (DESIGN 7)
        zsock_set_sndhwm (self->forward, 100000);
        zsock_set_rcvhwm (self->forward, 100000);
        zsock_set_linger (self->forward, 0);
    }
    self->peers = zhashx_new ();
    self->ids.capacity = 1024;
    self->ids.slots = calloc (self->ids.capacity, sizeof (zcq_command_t *));
    self->shards = calloc (self->shard_count, sizeof (zsock_t *));
    self->round = calloc (self->shard_count, sizeof (zcq_cbatch_t *));
    if (self->stage)
        self->cores = calloc (self->shard_count, sizeof (zcq_shard_t *));
    self->clients = zsock_new (ZMQ_ROUTER);
    if (!self->writer || !self->peers || !self->ids.slots || !self->shards || !self->round
        || !self->clients || (self->stage && !self->cores)) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    char endpoint[128];
    for (uint32_t shard = 0; self->cores && shard < self->shard_count; shard++)
        if (!(self->cores[shard] = zcq_shard_new (env, shard))) {
            zcq_actor_failed (pipe, "out of memory");
            s_destroy (&self);
            return NULL;
        }
    if (self->stage && env->synchronous_views) {
        //  DESIGN 6: committed batches pass the synchronous views first
        zcq_endpoint_sync (env, endpoint, sizeof endpoint);
        self->sync = zsock_new (ZMQ_PAIR);
        if (!self->sync || zsock_connect (self->sync, "%s", endpoint) < 0) {
            zcq_actor_failed (pipe, "cannot connect %s", endpoint);
            s_destroy (&self);
            return NULL;
        }
        zsock_set_sndhwm (self->sync, 0);
    }
    for (uint32_t shard = 0; !self->stage && shard < self->shard_count; shard++) {
        zcq_endpoint_shard (env, shard, endpoint, sizeof endpoint);
        self->shards[shard] = zsock_new (ZMQ_PAIR);
        if (!self->shards[shard] || zsock_connect (self->shards[shard], "%s", endpoint)) {
            zcq_actor_failed (pipe, "cannot connect to shard %u", shard);
            s_destroy (&self);
            return NULL;
        }
        zsock_set_sndhwm (self->shards[shard], 0);
        zsock_set_rcvhwm (self->shards[shard], 0);
    }
    zhashx_set_key_duplicator (self->peers, NULL);
    zhashx_set_key_destructor (self->peers, NULL);
    zhashx_set_destructor (self->peers, (zhashx_destructor_fn *) s_client_free);
    zcq_endpoint_acks (env, endpoint, sizeof endpoint);
    self->acks = zsock_new (ZMQ_PAIR);
    if (!self->acks || zsock_bind (self->acks, "%s", endpoint) < 0) {
        zcq_actor_failed (pipe, "cannot bind %s", endpoint);
        s_destroy (&self);
        return NULL;
    }
    zsock_set_rcvhwm (self->acks, 0);
    zsock_set_sndhwm (self->acks, 0);

    //  DESIGN 2: mandatory routing
    zsock_set_router_mandatory (self->clients, 1);
    zsock_set_sndhwm (self->clients, S_SNDHWM); //  DESIGN 2: the rest waits in the backlog
    zsock_set_rcvhwm (self->clients, 100000);
    zsock_set_linger (self->clients, 2000);
    int64_t max_message = (int64_t) env->config->request_limit * 4;
    if (max_message < (16 << 20))
        max_message = 16 << 20;
    zsock_set_maxmsgsize (self->clients, max_message);
    const char *wanted = env->config->endpoints[ZCQ_ENDPOINT_COMMAND];
    if (zsock_bind (self->clients, "%s", wanted) < 0) {
        zcq_actor_failed (pipe, "cannot bind the command endpoint %s: %s", wanted,
                          zmq_strerror (zmq_errno ()));
        s_destroy (&self);
        return NULL;
    }
    zcq_gate_watch (env, self->clients, "command"); //  actors/gate.c
    char *bound = zsock_last_endpoint (self->clients);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", bound ? bound : wanted);
    zstr_free (&bound);
    return self;
}

//  --------------------------------------------------------------------------
//  Replies

//  Encode the reply a command earned (ZCQ/1 section 3).
static void
s_encode_reply (self_t *self, const zcq_command_t *command)
{
    zcq_writer_t *writer = self->writer;
    zcq_writer_reset (writer);
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 0;
    if (command->id) {
        zcq_writer_str (writer, "id");
        zcq_writer_strn (writer, command->id, command->id_len);
        count++;
    }
    else if (command->id_value && zcq_value_type (command->id_value) != ZCQ_TYPE_STR
             && zcq_value_type (command->id_value) != ZCQ_TYPE_BIN
             && zcq_value_size (command->id_value) == 0) {
        //  echo a small invalid id as it came, so that the client can match
        //  it; a large one is not worth a reply's size
        zcq_writer_str (writer, "id");
        zcq_writer_value (writer, command->id_value);
        count++;
    }
    else if (command->id_raw && command->id_raw_len <= ZCQ_ID_MAX + 5) {
        zcq_writer_str (writer, "id");
        zcq_writer_raw (writer, command->id_raw, command->id_raw_len);
        count++;
    }
    zcq_writer_str (writer, "ok");
    zcq_writer_bool (writer, command->outcome == ZCQ_OK);
    count++;
    if (command->outcome == ZCQ_OK) {
        zcq_writer_str (writer, "stream");
        zcq_writer_strn (writer, command->stream, command->stream_len);
        zcq_writer_str (writer, "version");
        zcq_writer_uint (writer, command->version);
        zcq_writer_str (writer, "position");
        zcq_writer_uint (writer, command->position);
        zcq_writer_str (writer, "events");
        zcq_writer_uint (writer, command->event_count);
        zcq_writer_str (writer, "duplicate");
        zcq_writer_bool (writer, command->duplicate);
        count += 5;
        //  the fields decide added (zcq_decide_reply), stored with the
        //  result for its duplicates
        const uint8_t *pairs;
        size_t pairs_size;
        uint32_t pairs_count;
        if (command->reply
            && zcq_reply_pairs (command->reply, command->reply_size, &pairs, &pairs_size,
                                &pairs_count)) {
            zcq_writer_raw (writer, pairs, pairs_size);
            count += pairs_count;
        }
        if (self->coordinator && command->group >= 0) {
            //  cluster.md section 3: decided here, by this node
            zcq_writer_str (writer, "group");
            zcq_writer_int (writer, command->group);
            zcq_writer_str (writer, "node");
            zcq_writer_str (writer, self->env->config->node);
            count += 2;
        }
    }
    else {
        zcq_writer_str (writer, "error");
        zcq_writer_str (writer, zcq_err_code (command->outcome));
        //  a message cut short by a buffer (a domain's) may end in half a
        //  character: send the part that is valid UTF-8
        const char *message = command->message ? command->message : zcq_strerror (command->outcome);
        zcq_writer_str (writer, "message");
        zcq_writer_strn (writer, message, zcq_utf8_prefix (message, strlen (message)));
        count += 2;
        if (command->outcome == ZCQ_CONFLICT) {
            zcq_writer_str (writer, "version");
            zcq_writer_uint (writer, command->version);
            count++;
        }
        if ((command->outcome == ZCQ_UNAVAILABLE || command->outcome == ZCQ_TIMEOUT)
            && command->reason) {
            zcq_writer_str (writer, "reason");
            zcq_writer_str (writer, command->reason);
            count++;
        }
        if (self->coordinator && command->group >= 0) {
            //  cluster.md section 3: every reply names the group, and the
            //  node that answered (a forwarded reply comes as the leader
            //  gave it)
            zcq_writer_str (writer, "group");
            zcq_writer_int (writer, command->group);
            zcq_writer_str (writer, "node");
            zcq_writer_str (writer, self->env->config->node);
            count += 2;
        }
        if (command->outcome == ZCQ_UNAVAILABLE && command->owner) {
            zcq_writer_str (writer, "owner");
            zcq_writer_str (writer, command->owner);
            count++;
        }
    }
    zcq_writer_map_close (writer, mark, count);
}

//  Try to send a whole reply without blocking. 0 = sent, 1 = the peer's
//  pipe is full (try later), -1 = the peer is gone.
static int
s_send (self_t *self, const zcq_command_t *command, const void *body, size_t size)
{
    void *socket = zsock_resolve (self->clients);
    size_t offset = 0, frame_size;
    const uint8_t *frame;
    bool first = true;
    while ((frame = zcq_command_next_frame (command, &offset, &frame_size))) {
        int flags = ZMQ_SNDMORE | (first ? ZMQ_DONTWAIT : 0);
        if (zmq_send (socket, frame, frame_size, flags) < 0) {
            if (first && zmq_errno () == EAGAIN)
                return 1;
            return -1;
        }
        first = false;
    }
    if (first)
        return -1; //  no envelope: nobody to answer
    return zmq_send (socket, body, size, 0) < 0 ? -1 : 0;
}

//  The reply as a message, to wait in the backlog.
static zmsg_t *
s_reply_message (const zcq_command_t *command, const void *body, size_t size)
{
    zmsg_t *reply = zmsg_new ();
    size_t offset = 0, frame_size;
    const uint8_t *frame;
    while (reply && (frame = zcq_command_next_frame (command, &offset, &frame_size)))
        if (zmsg_addmem (reply, frame, frame_size))
            zmsg_destroy (&reply);
    if (reply && zmsg_addmem (reply, body, size))
        zmsg_destroy (&reply);
    return reply;
}

//  Send a reply waiting in the backlog; same results as s_send.
static int
s_send_message (self_t *self, zmsg_t *reply)
{
    void *socket = zsock_resolve (self->clients);
    zframe_t *frame = zmsg_first (reply);
    bool first = true;
    while (frame) {
        zframe_t *next = zmsg_next (reply);
        int flags = (next ? ZMQ_SNDMORE : 0) | (first ? ZMQ_DONTWAIT : 0);
        if (zmq_send (socket, zframe_data (frame), zframe_size (frame), flags) < 0) {
            if (first && zmq_errno () == EAGAIN)
                return 1;
            return -1;
        }
        first = false;
        frame = next;
    }
    return 0;
}

static void
s_count_outcome (self_t *self, const zcq_command_t *command)
{
    zcq_stats_t *stats = self->env->stats;
    switch (command->outcome) {
        case ZCQ_OK:
            ZCQ_STAT_ADD (stats, commands_accepted, 1);
            if (command->duplicate)
                ZCQ_STAT_ADD (stats, commands_duplicate, 1);
            break;
        case ZCQ_REJECTED: ZCQ_STAT_ADD (stats, commands_rejected, 1); break;
        case ZCQ_CONFLICT: ZCQ_STAT_ADD (stats, commands_conflict, 1); break;
        case ZCQ_INVALID:
        case ZCQ_UNKNOWN: ZCQ_STAT_ADD (stats, commands_invalid, 1); break;
        case ZCQ_UNAVAILABLE: ZCQ_STAT_ADD (stats, commands_unavailable, 1); break;
        default: ZCQ_STAT_ADD (stats, commands_failed, 1); break;
    }
    if (self->env->metrics)
        zcq_metrics_command (self->env->metrics, command->aggregate, command->handler,
                             zcq_outcome_of (command->outcome, command->duplicate),
                             zcq_mono_ns () - command->received_ns);
}

//  The client a request came from, found or made by its routing identity
//  (the envelope's first frame); NULL when out of memory.
static s_client_t *
s_client_hold (self_t *self, const void *identity, size_t size)
{
    char key[2 * 256 + 1];
    zcq_peer_key (identity, size, key, sizeof key);
    s_client_t *client = zhashx_lookup (self->peers, key);
    if (!client) {
        client = calloc (1, sizeof (s_client_t));
        if (!client)
            return NULL;
        memcpy (client->key, key, strlen (key) + 1);
        if (zhashx_insert (self->peers, client->key, client)) {
            free (client);
            return NULL;
        }
    }
    client->refs++;
    return client;
}

static void
s_client_release (self_t *self, s_client_t *client)
{
    if (--client->refs == 0)
        zhashx_delete (self->peers, client->key);
}

//  Count a dropped reply; log drops at most once a second, with a count.
static void
s_reply_dropped (self_t *self, const zcq_command_t *command, const char *why)
{
    ZCQ_STAT_ADD (self->env->stats, replies_dropped, 1);
    int64_t dropped = (int64_t) atomic_load (&self->env->stats->replies_dropped);
    int64_t now = zclock_mono ();
    if (now - self->drop_log_at < 1000)
        return;
    zsys_warning ("router: reply to command %.*s dropped (%s); %lld dropped since the last "
                  "such line",
                  (int) command->id_len, command->id ? command->id : "", why,
                  (long long) (dropped - self->drops_logged));
    self->drops_logged = dropped;
    self->drop_log_at = now;
}

//  Keep a reply that met its client's full pipe, if the client's and every
//  client's backlog have room (DESIGN 2).
static bool
s_backlog_add (self_t *self, s_client_t *client, const zcq_command_t *command, const void *body,
               size_t size)
{
    size_t bytes = command->envelope_size + size + sizeof (s_reply_t) + 64;
    if (client->backlog_bytes + bytes > S_PEER_BYTES
        || self->backlog_bytes + bytes > S_BACKLOG_BYTES)
        return false;
    s_reply_t *reply = calloc (1, sizeof (s_reply_t));
    if (!reply)
        return false;
    reply->message = s_reply_message (command, body, size);
    if (!reply->message) {
        free (reply);
        return false;
    }
    reply->bytes = bytes;
    if (!client->backlog) {
        client->refs++; //  the backlog holds the client
        client->next_waiting = self->waiting;
        self->waiting = client;
        client->backlog = reply;
    }
    else
        client->backlog_tail->next = reply;
    client->backlog_tail = reply;
    client->backlog_bytes += bytes;
    self->backlog_bytes += bytes;
    return true;
}

//  Send a reply body with a command's envelope (or keep it in the client's
//  backlog); the command lets go of its client.
static void
s_reply_bytes (self_t *self, zcq_command_t *command, const void *body, size_t size)
{
    s_client_t *client = command->client;
    int rc = client && client->backlog ? 1 : s_send (self, command, body, size);
    if (rc == 1 && !(client && s_backlog_add (self, client, command, body, size)))
        s_reply_dropped (self, command, "the client is not reading its replies");
    else if (rc < 0)
        s_reply_dropped (self, command, "peer gone");
    if (client) {
        if (command->counted)
            client->inflight--;
        command->counted = false;
        command->client = NULL;
        s_client_release (self, client);
    }
}

//  Reply to a command with the outcome it holds.
static void
s_reply (self_t *self, zcq_command_t *command)
{
    s_count_outcome (self, command);
    s_encode_reply (self, command);
    if (!zcq_writer_ok (self->writer)) {
        zcq_command_fail (command, ZCQ_INTERNAL, "out of memory encoding the reply");
        s_encode_reply (self, command);
    }
    s_reply_bytes (self, command, zcq_writer_data (self->writer), zcq_writer_size (self->writer));
}

//  Retry the replies that met a full pipe, each client's oldest first; a
//  client whose pipe is still full keeps the rest.
static void
s_flush_backlog (self_t *self)
{
    s_client_t **link = &self->waiting;
    while (*link) {
        s_client_t *client = *link;
        while (client->backlog) {
            s_reply_t *reply = client->backlog;
            int rc = s_send_message (self, reply->message);
            if (rc == 1)
                break;
            if (rc < 0)
                ZCQ_STAT_ADD (self->env->stats, replies_dropped, 1);
            client->backlog = reply->next;
            client->backlog_bytes -= reply->bytes;
            self->backlog_bytes -= reply->bytes;
            zmsg_destroy (&reply->message);
            free (reply);
        }
        if (client->backlog) {
            link = &client->next_waiting;
            continue;
        }
        *link = client->next_waiting;
        client->next_waiting = NULL;
        client->backlog_tail = NULL;
        s_client_release (self, client);
    }
}

//  Reply to a command that never reached a shard, and free it.
static void
s_reply_now (self_t *self, zcq_command_t **command_p)
{
    s_reply (self, *command_p);
    zcq_command_destroy (command_p);
}

//  --------------------------------------------------------------------------
//  Cluster (DESIGN 7)

//  The coordinator's view, taken again when it changed.
static const zcq_cluster_view_t *
s_view (self_t *self)
{
    uint64_t generation = zcq_coordinator_generation (self->coordinator);
    if (!self->view || self->view->generation != generation) {
        zcq_cluster_view_t *view = zcq_coordinator_view (self->coordinator);
        if (view) {
            zcq_cluster_view_release (&self->view);
            self->view = view;
        }
    }
    return self->view;
}

//  Decide where a command goes: true when it is decided here or
//  forwarded, false with the command failed (`unavailable`).
static bool
s_route (self_t *self, zcq_command_t *command)
{
    const zcq_cluster_view_t *view = s_view (self);
    int group = zcq_cluster_view_group_of (view, command->stream, command->stream_len);
    command->group = group;
    uint64_t epoch;
    if (group >= 0 && group == view->group && zcq_coordinator_leading (self->coordinator, &epoch)) {
        //  acknowledged only on min_insync durable copies: an ISR smaller
        //  than that takes no command (its followers are not there)
        size_t isr = (size_t) group < view->group_count ? view->groups[group].isr_count : 0;
        if (isr >= (size_t) (view->min_insync > 0 ? view->min_insync : 1))
            return true;
        command->reason = "not_enough_replicas";
        zcq_command_fail (command, ZCQ_UNAVAILABLE,
                          "group %d has %zu in-sync replicas, fewer than min_insync %d", group, isr,
                          view->min_insync);
        return false;
    }
    const char *leader = group >= 0 ? zcq_cluster_view_leader (view, group) : NULL;
    const char *recorded
        = group >= 0 && (size_t) group < view->group_count ? view->groups[group].leader : NULL;
    bool leader_is_us = recorded && view->node && streq (recorded, view->node);
    if (leader && !leader_is_us && !command->forwarded_in) {
        command->owner = strdup (leader);
        if (!command->owner) {
            zcq_command_fail (command, ZCQ_INTERNAL, "out of memory");
            return false;
        }
        command->forward = true;
        return true;
    }
    command->reason = "no_leader";
    if (leader && !leader_is_us)
        command->owner = strdup (leader);
    if (group < 0)
        zcq_command_fail (command, ZCQ_UNAVAILABLE, "the cluster's slot map has no group for %s",
                          command->stream);
    else if (command->forwarded_in && leader && !leader_is_us)
        zcq_command_fail (command, ZCQ_UNAVAILABLE,
                          "this node does not lead group %d: its leader is at %s", group, leader);
    else
        zcq_command_fail (command, ZCQ_UNAVAILABLE, "group %d has no leader taking commands now",
                          group);
    return false;
}

//  The routing id of the connection to a leader's command endpoint,
//  connecting on first use; NULL when out of memory.
static const char *
s_link (self_t *self, const char *endpoint)
{
    const char *peer = zhashx_lookup (self->links, endpoint);
    if (peer)
        return peer;
    char *id = malloc (16);
    if (!id)
        return NULL;
    snprintf (id, 16, "L%u", ++self->link_count);
    zsock_set_connect_rid (self->forward, id);
    if (zsock_connect (self->forward, "%s", endpoint) < 0
        || zhashx_insert (self->links, endpoint, id)) {
        free (id);
        return NULL;
    }
    return id;
}

static void
s_forward_key (uint64_t sequence, char *key)
{
    snprintf (key, 24, "%" PRIx64, sequence);
}

//  Send a forward, if its link is up and has room; else it waits.
static void
s_forward_try (self_t *self, s_forward_t *forward)
{
    void *socket = zsock_resolve (self->forward);
    if (zmq_send (socket, forward->peer, strlen (forward->peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return; //  not connected yet, or its pipe is full: the tick retries
    uint8_t mark[S_MARK_SIZE];
    memcpy (mark, S_MARK, sizeof S_MARK);
    zcq_put_be64 (mark + sizeof S_MARK, forward->sequence);
    zmq_send (socket, mark, sizeof mark, ZMQ_SNDMORE);
    zmq_msg_t body;
    zmq_msg_init (&body);
    zmq_msg_copy (&body, &forward->command->body);
    if (zmq_msg_send (&body, socket, 0) < 0)
        zmq_msg_close (&body);
    forward->sent = true;
    forward->deadline = zclock_mono () + S_FORWARD_MS;
    ZCQ_STAT_ADD (self->env->stats, commands_forwarded, 1);
}

static void s_release_id (self_t *self, zcq_command_t *command);

//  A forward is over: its command was answered; it leaves every list.
static void
s_forward_end (self_t *self, s_forward_t *forward)
{
    char key[24];
    s_forward_key (forward->sequence, key);
    zhashx_delete (self->forwards, key);
    if (forward->prev)
        forward->prev->next = forward->next;
    else
        self->oldest = forward->next;
    if (forward->next)
        forward->next->prev = forward->prev;
    else
        self->newest = forward->prev;
    zcq_command_t *command = forward->command;
    free (forward);
    s_release_id (self, command);
    self->inflight--;
    zcq_command_destroy (&command);
}

//  Send a command to its group's leader (DESIGN 7).
static void
s_forward (self_t *self, zcq_command_t *command)
{
    s_forward_t *forward = calloc (1, sizeof (s_forward_t));
    const char *peer = forward ? s_link (self, command->owner) : NULL;
    char key[24];
    if (forward)
        s_forward_key (forward->sequence = ++self->sequence, key);
    if (!peer || zhashx_insert (self->forwards, key, forward)) {
        free (forward);
        zcq_command_fail (command, ZCQ_INTERNAL, "out of memory");
        s_reply (self, command);
        self->inflight--;
        s_release_id (self, command);
        zcq_command_destroy (&command);
        return;
    }
    snprintf (forward->peer, sizeof forward->peer, "%s", peer);
    forward->command = command;
    forward->deadline = zclock_mono () + S_LINK_MS;
    forward->prev = self->newest;
    if (self->newest)
        self->newest->next = forward;
    else
        self->oldest = forward;
    self->newest = forward;
    s_forward_try (self, forward);
}

//  Replies from leaders: relayed as they came.
static void
s_handle_forwarded (self_t *self)
{
    void *socket = zsock_resolve (self->forward);
    for (int count = 0; count < S_ROUND; count++) {
        zmsg_t *reply = zmsg_recv_nowait (self->forward);
        if (!reply)
            break;
        zframe_t *peer = zmsg_first (reply);
        zframe_t *mark = zmsg_next (reply);
        zframe_t *body = zmsg_next (reply);
        s_forward_t *forward = NULL;
        if (peer && mark && body && !zmsg_next (reply) && zframe_size (mark) == S_MARK_SIZE
            && memcmp (zframe_data (mark), S_MARK, sizeof S_MARK) == 0) {
            char key[24];
            s_forward_key (zcq_get_be64 (zframe_data (mark) + sizeof S_MARK), key);
            forward = zhashx_lookup (self->forwards, key);
        }
        if (forward) {
            s_reply_bytes (self, forward->command, zframe_data (body), zframe_size (body));
            s_forward_end (self, forward);
        }
        zmsg_destroy (&reply);
    }
    (void) socket;
}

//  Retry forwards waiting for their link; fail the ones out of time.
static void
s_forward_tick (self_t *self)
{
    int64_t now = zclock_mono ();
    s_forward_t *forward = self->oldest;
    while (forward) {
        s_forward_t *next = forward->next;
        if (now >= forward->deadline) {
            zcq_command_t *command = forward->command;
            if (forward->sent) {
                command->reason = "outcome_unknown";
                zcq_command_fail (command, ZCQ_TIMEOUT,
                                  "no answer from group %d's leader at %s in %d ms: the "
                                  "command may or may not be applied; retry it with the same id",
                                  command->group, command->owner, S_FORWARD_MS);
            }
            else {
                command->reason = "forwarding_failed";
                zcq_command_fail (command, ZCQ_UNAVAILABLE, "cannot reach group %d's leader at %s",
                                  command->group, command->owner);
            }
            s_reply (self, command);
            s_forward_end (self, forward);
        }
        else if (!forward->sent)
            s_forward_try (self, forward);
        forward = next;
    }
}

//  --------------------------------------------------------------------------
//  Requests

static bool
s_valid_aggregate (const char *name, size_t len)
{
    if (len == 0 || len > ZCQ_AGGREGATE_MAX)
        return false;
    for (size_t index = 0; index < len; index++) {
        char c = name[index];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

//  Read a required string field of 1..max bytes.
static bool
s_field_str (zcq_command_t *command, const zcq_value_t *root, const char *name, size_t max,
             const char **str, size_t *len)
{
    const zcq_value_t *value = zcq_value_get (root, name);
    if (!value) {
        zcq_command_fail (command, ZCQ_INVALID, "'%s' is required", name);
        return false;
    }
    if (!zcq_value_str (value, str, len)) {
        zcq_command_fail (command, ZCQ_INVALID, "'%s' must be a string", name);
        return false;
    }
    if (*len == 0 || *len > max) {
        zcq_command_fail (command, ZCQ_INVALID, "'%s' must be 1 to %zu bytes", name, max);
        return false;
    }
    return true;
}

//  Decode and validate a command request whose envelope (the frames the
//  peer sent before the body) holds envelope_bytes; on failure the command
//  holds the error outcome.
static bool
s_parse (self_t *self, zcq_command_t *command, size_t envelope_bytes)
{
    command->doc = zcq_doc_new ();
    if (!command->doc) {
        zcq_command_fail (command, ZCQ_INTERNAL, "out of memory");
        return false;
    }
    size_t size = zmq_msg_size (&command->body);
    const void *body = zmq_msg_data (&command->body);
    char message[160];
    if (zcq_request_over_limit (envelope_bytes, size, self->limits.max_bytes, message,
                                sizeof message)) {
        //  too large to decode, but the id can still be echoed (peek gives
        //  only a value that is valid as a whole)
        zcq_msgpack_peek (body, size, "id", &command->id_raw, &command->id_raw_len);
        zcq_command_fail (command, ZCQ_INVALID, "%s", message);
        return false;
    }
    zcq_err_t err = zcq_doc_decode (command->doc, body, size, &self->limits);
    if (err != ZCQ_OK) {
        if (err == ZCQ_INVALID)
            zcq_msgpack_peek (body, size, "id", &command->id_raw, &command->id_raw_len);
        zcq_command_fail (command, err == ZCQ_NOMEM ? ZCQ_INTERNAL : ZCQ_INVALID, "%s",
                          zcq_doc_error (command->doc));
        return false;
    }
    const zcq_value_t *root = zcq_doc_root (command->doc);
    if (zcq_value_type (root) != ZCQ_TYPE_MAP) {
        zcq_command_fail (command, ZCQ_INVALID, "request must be a MessagePack map");
        return false;
    }
    //  the id first, so that later errors can carry it
    const zcq_value_t *id = zcq_value_get (root, "id");
    if (zcq_value_str (id, &command->id, &command->id_len)) {
        if (command->id_len == 0 || command->id_len > ZCQ_ID_MAX) {
            zcq_command_fail (command, ZCQ_INVALID, "'id' must be 1 to %d bytes", ZCQ_ID_MAX);
            return false;
        }
        if (memchr (command->id, 0, command->id_len)) {
            command->id = NULL;
            command->id_value = id;
            zcq_command_fail (command, ZCQ_INVALID, "'id' must not contain NUL");
            return false;
        }
        memcpy (command->id_copy, command->id, command->id_len);
        command->id_copy[command->id_len] = 0;
    }
    else {
        command->id = NULL;
        command->id_value = id;
        zcq_command_fail (command, ZCQ_INVALID, id ? "'id' must be a string" : "'id' is required");
        return false;
    }
    const char *aggregate;
    size_t aggregate_len;
    if (!s_field_str (command, root, "aggregate", ZCQ_AGGREGATE_MAX, &aggregate, &aggregate_len))
        return false;
    if (!s_valid_aggregate (aggregate, aggregate_len)) {
        zcq_command_fail (command, ZCQ_INVALID, "'aggregate' must match [a-z0-9_.-]{1,64}");
        return false;
    }
    if (!s_field_str (command, root, "key", ZCQ_KEY_MAX, &command->key, &command->key_len))
        return false;
    if (memchr (command->key, '/', command->key_len)
        || memchr (command->key, 0, command->key_len)) {
        zcq_command_fail (command, ZCQ_INVALID, "'key' must not contain '/' or NUL");
        return false;
    }
    if (!s_field_str (command, root, "type", ZCQ_TYPE_MAX, &command->type, &command->type_len))
        return false;
    const zcq_value_t *expect = zcq_value_get (root, "expect");
    if (expect && zcq_value_type (expect) != ZCQ_TYPE_NIL) {
        if (!zcq_value_int (expect, &command->expect) || command->expect < 0) {
            zcq_command_fail (command, ZCQ_INVALID, "'expect' must be an integer >= 0");
            return false;
        }
    }
    command->data = zcq_value_get (root, "data");
    const zcq_value_t *meta = zcq_value_get (root, "meta");
    if (meta && zcq_value_type (meta) != ZCQ_TYPE_NIL && zcq_value_type (meta) != ZCQ_TYPE_MAP) {
        zcq_command_fail (command, ZCQ_INVALID, "'meta' must be a map");
        return false;
    }
    command->meta = zcq_value_type (meta) == ZCQ_TYPE_MAP ? meta : NULL;

    //  stream name, NUL-terminated, with the key as its tail
    memcpy (command->stream, aggregate, aggregate_len);
    command->stream[aggregate_len] = '/';
    memcpy (command->stream + aggregate_len + 1, command->key, command->key_len);
    command->stream_len = aggregate_len + 1 + command->key_len;
    command->stream[command->stream_len] = 0;
    command->key = command->stream + aggregate_len + 1;

    command->aggregate = zcq_domain_aggregate (self->env->domain, aggregate, aggregate_len);
    if (!command->aggregate) {
        zcq_command_fail (command, ZCQ_UNKNOWN, "unknown aggregate type '%.*s'",
                          (int) aggregate_len, aggregate);
        return false;
    }
    //  `$delete` and `$truncate` are the node's own commands on every
    //  aggregate; no other
    //  name starting with '$' is a command (zcq_domain_check refuses them)
    if (command->type_len == strlen (ZCQ_COMMAND_DELETE)
        && memcmp (command->type, ZCQ_COMMAND_DELETE, command->type_len) == 0)
        command->handler = &zcq_delete_command;
    else if (command->type_len == strlen (ZCQ_COMMAND_TRUNCATE)
             && memcmp (command->type, ZCQ_COMMAND_TRUNCATE, command->type_len) == 0)
        command->handler = &zcq_truncate_command;
    else
        command->handler
            = zcq_domain_command (command->aggregate, command->type, command->type_len);
    if (!command->handler) {
        zcq_command_fail (command, ZCQ_UNKNOWN, "unknown command '%.*s' for aggregate '%s'",
                          (int) command->type_len, command->type, command->aggregate->name);
        return false;
    }
    command->shard
        = (uint32_t) (zcq_stream_hash (command->stream, command->stream_len) % self->shard_count);
    return true;
}

//  Add a command to its shard's batch of this round, or send it to its
//  group's leader.
static void
s_dispatch (self_t *self, zcq_command_t *command)
{
    if (command->forward) {
        s_forward (self, command);
        return;
    }
    zcq_cbatch_t **round = &self->round[command->shard];
    if (!*round)
        *round = zcq_cbatch_new (ZCQ_BATCH_COMMANDS, command->shard);
    if (!*round || !zcq_cbatch_add (*round, command)) {
        zcq_command_fail (command, ZCQ_INTERNAL, "out of memory");
        s_reply (self, command);
        self->inflight--;
        s_release_id (self, command);
        zcq_command_destroy (&command);
    }
}

//  The slot of an id in the in-flight table: its command's, or the empty
//  slot where it would go.
static size_t
s_ids_find (const s_ids_t *ids, const char *id, size_t len)
{
    size_t mask = ids->capacity - 1;
    size_t slot = (size_t) zcq_stream_hash (id, len) & mask;
    size_t free_slot = SIZE_MAX;
    while (ids->slots[slot]) {
        zcq_command_t *command = ids->slots[slot];
        if (command == S_IDS_TOMBSTONE) {
            if (free_slot == SIZE_MAX)
                free_slot = slot;
        }
        else if (command->id_len == len && memcmp (command->id_copy, id, len) == 0)
            return slot;
        slot = (slot + 1) & mask;
    }
    return free_slot != SIZE_MAX ? free_slot : slot;
}

static zcq_command_t *
s_ids_lookup (const s_ids_t *ids, const zcq_command_t *command)
{
    zcq_command_t *found = ids->slots[s_ids_find (ids, command->id_copy, command->id_len)];
    return found == S_IDS_TOMBSTONE ? NULL : found;
}

//  Put a command in under its id (replacing one with the same id); false
//  when the table cannot grow.
static bool
s_ids_put (s_ids_t *ids, zcq_command_t *command)
{
    if ((ids->used + 1) * 2 > ids->capacity) {
        //  rehash the live entries into a table twice as large (or as
        //  large, when tombstones made most of the load)
        size_t live = 0;
        for (size_t slot = 0; slot < ids->capacity; slot++)
            live += ids->slots[slot] && ids->slots[slot] != S_IDS_TOMBSTONE;
        size_t capacity = (live + 1) * 4 > ids->capacity ? ids->capacity * 2 : ids->capacity;
        zcq_command_t **slots = calloc (capacity, sizeof (zcq_command_t *));
        if (!slots)
            return false;
        s_ids_t grown = { slots, capacity, 0 };
        for (size_t slot = 0; slot < ids->capacity; slot++) {
            zcq_command_t *entry = ids->slots[slot];
            if (entry && entry != S_IDS_TOMBSTONE) {
                grown.slots[s_ids_find (&grown, entry->id_copy, entry->id_len)] = entry;
                grown.used++;
            }
        }
        free (ids->slots);
        *ids = grown;
    }
    size_t slot = s_ids_find (ids, command->id_copy, command->id_len);
    if (!ids->slots[slot])
        ids->used++;
    ids->slots[slot] = command;
    return true;
}

//  A command was answered: its id is free, and the next command held with
//  that id goes out (DESIGN 4).
static void
s_release_id (self_t *self, zcq_command_t *command)
{
    size_t slot = s_ids_find (&self->ids, command->id_copy, command->id_len);
    if (self->ids.slots[slot] != command)
        return;
    //  the next held command takes the first one's slot: same id
    zcq_command_t *next = command->next;
    command->next = NULL;
    self->ids.slots[slot] = next ? next : S_IDS_TOMBSTONE;
    if (next)
        s_dispatch (self, next);
}

//  Answer every command of a batch that came back from a shard or the log
//  writer, then give a committed one back to its shard (DONE).
static void
s_answer_batch (self_t *self, zcq_cbatch_t **batch_p)
{
    zcq_cbatch_t *batch = *batch_p;
    *batch_p = NULL;
    for (size_t index = 0; index < batch->count; index++) {
        s_reply (self, batch->commands[index]);
        s_release_id (self, batch->commands[index]);
    }
    self->inflight -= (int64_t) batch->count;
    if (batch->kind != ZCQ_BATCH_COMMITTED)
        zcq_cbatch_destroy (&batch);
    else if (self->cores) {
        batch->kind = ZCQ_BATCH_DONE;
        zcq_shard_done (self->cores[batch->shard], &batch);
    }
    else {
        batch->kind = ZCQ_BATCH_DONE;
        zcq_cbatch_send (&batch, self->shards[batch->shard]);
    }
}

//  Add a commit batch to the round's group; a group that cannot grow is
//  committed first.
static void s_commit_group (self_t *self);

static void
s_group_add (self_t *self, zcq_cbatch_t *batch)
{
    if (self->group_count == self->group_capacity) {
        size_t capacity = self->group_capacity ? self->group_capacity * 2 : 64;
        zcq_cbatch_t **group = realloc (self->group, capacity * sizeof (zcq_cbatch_t *));
        if (group) {
            self->group = group;
            self->group_capacity = capacity;
        }
        else if (self->group_count)
            s_commit_group (self);
        else {
            zcq_log_stage_commit (self->stage, &batch, 1);
            s_answer_batch (self, &batch);
            return;
        }
    }
    self->group[self->group_count++] = batch;
}

//  Commit the round's group, then answer it (or pass it to the synchronous
//  views, which answer through the acks pipe).
static void
s_commit_group (self_t *self)
{
    size_t count = self->group_count;
    zcq_log_stage_commit (self->stage, self->group, count);
    self->group_count = 0;
    for (size_t index = 0; index < count; index++) {
        if (self->sync)
            zcq_cbatch_send (&self->group[index], self->sync);
        else
            s_answer_batch (self, &self->group[index]);
    }
}

//  DESIGN 6: run the rounds in the shards' cores and the log stage, until
//  the ids they release leave no round behind.
static void
s_run_rounds (self_t *self)
{
    bool more = true;
    while (more) {
        for (uint32_t shard = 0; shard < self->shard_count; shard++) {
            if (!self->round[shard])
                continue;
            zcq_cbatch_t *commit, *replies;
            zcq_shard_decide (self->cores[shard], &self->round[shard], &commit, &replies);
            if (replies)
                s_answer_batch (self, &replies);
            if (commit)
                s_group_add (self, commit);
        }
        if (self->group_count)
            s_commit_group (self);
        more = false;
        for (uint32_t shard = 0; shard < self->shard_count; shard++)
            more = more || self->round[shard];
    }
}

static void
s_send_rounds (self_t *self)
{
    if (self->cores) {
        s_run_rounds (self);
        return;
    }
    for (uint32_t shard = 0; shard < self->shard_count; shard++)
        if (self->round[shard])
            zcq_cbatch_send (&self->round[shard], self->shards[shard]);
}

//  Read one request from the command socket and route it. Returns false
//  when nothing was there.
static bool
s_take_request (self_t *self)
{
    void *socket = zsock_resolve (self->clients);
    zmq_msg_t part;
    zmq_msg_init (&part);
    if (zmq_msg_recv (&part, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&part);
        return false;
    }
    ZCQ_STAT_ADD (self->env->stats, commands_received, 1);
    zcq_command_t *command = zcq_command_new ();
    bool fits = command != NULL;
    if (command)
        command->received_ns = zcq_mono_ns ();
    //  every frame but the last is envelope; the last is the body. The
    //  first is the identity our ROUTER added; the peer sent the others
    //  (DESIGN 5)
    size_t frames = 0, envelope_bytes = 0;
    bool dropped = false;
    while (zmq_msg_more (&part)) {
        if (++frames > 1)
            envelope_bytes += zmq_msg_size (&part);
        if (envelope_bytes > self->limits.max_bytes || envelope_bytes > S_ENVELOPE_BYTES
            || frames > 1 + S_ENVELOPE_FRAMES)
            dropped = true;
        if (!dropped)
            fits = fits
                && zcq_command_add_frame (command, zmq_msg_data (&part), zmq_msg_size (&part));
        if (frames == 2 && zmq_msg_size (&part) == S_MARK_SIZE
            && memcmp (zmq_msg_data (&part), S_MARK, sizeof S_MARK) == 0)
            command->forwarded_in = true; //  DESIGN 7: from another node
        if (frames == 1 && fits && !dropped) {
            command->client = s_client_hold (self, zmq_msg_data (&part), zmq_msg_size (&part));
            fits = command->client != NULL;
        }
        zmq_msg_close (&part);
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, socket, 0) < 0)
            break;
    }
    if (dropped || !fits) {
        zmq_msg_close (&part);
        if (command && command->client)
            s_client_release (self, command->client);
        zcq_command_destroy (&command);
        if (dropped)
            ZCQ_STAT_ADD (self->env->stats, requests_dropped, 1);
        else
            zsys_error ("router: out of memory reading a request; dropped");
        return true;
    }
    zmq_msg_move (&command->body, &part);
    zmq_msg_close (&part);
    if (!s_parse (self, command, envelope_bytes)) {
        s_reply_now (self, &command);
        return true;
    }
    if (self->draining) {
        command->reason = "shutting_down";
        zcq_command_fail (command, ZCQ_UNAVAILABLE, "node is shutting down");
        s_reply_now (self, &command);
        return true;
    }
    if (self->inflight >= (int64_t) self->env->config->max_inflight) {
        command->reason = "overloaded";
        zcq_command_fail (command, ZCQ_UNAVAILABLE, "node is overloaded: %lld commands in flight",
                          (long long) self->inflight);
        s_reply_now (self, &command);
        return true;
    }
    s_client_t *client = command->client;
    if (client->inflight >= (int64_t) self->env->config->max_inflight_per_client) {
        //  DESIGN 1: this client's room is full, nobody else's
        command->reason = "overloaded";
        zcq_command_fail (command, ZCQ_UNAVAILABLE,
                          "client is overloading the node: %lld of its commands in flight "
                          "(max-inflight-per-client)",
                          (long long) client->inflight);
        s_reply_now (self, &command);
        return true;
    }
    if (self->coordinator && !s_route (self, command)) {
        s_reply_now (self, &command);
        return true;
    }
    client->inflight++;
    command->counted = true;
    self->inflight++;
    zcq_command_t *first = s_ids_lookup (&self->ids, command);
    if (first) {
        //  DESIGN 4: hold it behind the last command with this id
        while (first->next)
            first = first->next;
        first->next = command;
        return true;
    }
    if (!s_ids_put (&self->ids, command)) {
        zcq_command_fail (command, ZCQ_INTERNAL, "out of memory");
        self->inflight--;
        s_reply_now (self, &command);
        return true;
    }
    s_dispatch (self, command);
    return true;
}

//  DESIGN 3: a round of requests, then one batch per shard.
static void
s_handle_clients (self_t *self)
{
    int round = self->cores ? S_ROUND_ONE_LOOP : S_ROUND;
    int64_t until = zclock_usecs () + S_ROUND_US;
    for (int count = 0; count < round; count++)
        if (!s_take_request (self) || zclock_usecs () > until)
            break;
    s_send_rounds (self);
    atomic_store_explicit (&self->env->stats->commands_inflight, self->inflight,
                           memory_order_relaxed);
}

//  A batch came back from a shard or the writer: reply to every command.
static void
s_handle_batch (self_t *self, zsock_t *socket)
{
    zcq_cbatch_t *batch;
    while ((batch = zcq_cbatch_recv (socket, ZMQ_DONTWAIT)))
        s_answer_batch (self, &batch);
    s_send_rounds (self);
    atomic_store_explicit (&self->env->stats->commands_inflight, self->inflight,
                           memory_order_relaxed);
}

static void
s_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command) {
        self->terminated = true;
        return;
    }
    if (streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "ENDPOINT"))
        zsock_send (self->pipe, "s", self->endpoint);
    else if (streq (command, "DRAIN"))
        self->draining = true;
    else
        zsys_error ("router: unknown pipe command '%s'", command);
    zstr_free (&command);
}

void
zcq_router_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-commands");
    self_t *self = s_new (pipe, args);
    if (!self)
        return;
    zsock_send (pipe, "is", 0, "");

    //  pipe, clients, acks, forwards (a clustered node's), then the shards
    size_t shards_at = self->forward ? 4 : 3;
    size_t item_count = shards_at + (self->cores ? 0 : self->shard_count);
    zmq_pollitem_t *items = calloc (item_count, sizeof (zmq_pollitem_t));
    items[0] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
    items[1] = (zmq_pollitem_t) { zsock_resolve (self->clients), 0, ZMQ_POLLIN, 0 };
    items[2] = (zmq_pollitem_t) { zsock_resolve (self->acks), 0, ZMQ_POLLIN, 0 };
    if (self->forward)
        items[3] = (zmq_pollitem_t) { zsock_resolve (self->forward), 0, ZMQ_POLLIN, 0 };
    for (size_t item = shards_at; item < item_count; item++)
        items[item]
            = (zmq_pollitem_t) { zsock_resolve (self->shards[item - shards_at]), 0, ZMQ_POLLIN, 0 };
    bool drain_reported = false;
    int64_t drain_deadline = 0;
    int64_t forward_tick = 0;
    while (!self->terminated) {
        long timeout = self->waiting ? 1 : (self->draining ? 10 : -1);
        if (self->oldest && (timeout < 0 || timeout > 20))
            timeout = 20; //  DESIGN 7: forwards waiting for a link, or out of time
        if (self->stage) {
            //  the log stage's heartbeats, expiry and healing (DESIGN 6)
            int64_t tick = zcq_log_stage_tick (self->stage);
            if (timeout < 0 || tick < timeout)
                timeout = (long) tick;
        }
        if (zmq_poll (items, (int) item_count, timeout) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        if (items[2].revents & ZMQ_POLLIN)
            s_handle_batch (self, self->acks);
        for (size_t item = shards_at; item < item_count; item++)
            if (items[item].revents & ZMQ_POLLIN)
                s_handle_batch (self, self->shards[item - shards_at]);
        if (self->forward && (items[3].revents & ZMQ_POLLIN))
            s_handle_forwarded (self);
        if (self->oldest && zclock_mono () >= forward_tick) {
            s_forward_tick (self);
            forward_tick = zclock_mono () + 20;
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_clients (self);
        if (self->waiting)
            s_flush_backlog (self);
        if (self->draining && !drain_reported) {
            if (!drain_deadline)
                drain_deadline = zclock_mono () + 30000;
            if ((self->inflight == 0 && !self->waiting) || zclock_mono () > drain_deadline) {
                zsock_send (pipe, "i", (int) self->inflight);
                drain_reported = true;
            }
        }
    }
    free (items);
    s_destroy (&self);
}
