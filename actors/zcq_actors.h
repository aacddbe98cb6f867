/*  zcq_actors.h: what the actors of a node pass each other, and their
    typed wrappers.

    The write path is a ring that one batch object travels, ownership moving
    with it (only pointers cross the inproc sockets):

        command router --COMMANDS--> aggregate shard --COMMIT--> log writer
              ^    ^                      |                          |
              |    +------- REPLIES ------+                          |
              +----------------------- COMMITTED --------------------+
        command router --DONE--> aggregate shard (bookkeeping, then free)

    A batch holds commands of one shard. Every command gets exactly one
    reply, sent by the command router, which owns the client socket.

    THE FAILURE PROTOCOL of the write path. Every file that keeps one of
    these cites it by number; docs/architecture.md explains them.

    F1  `ok` for a command that writes events means its events are in a
        commit the store reported successful. A COMMITTED batch is written
        whole or not at all (batch->written), and a batch that is not
        written has every command failed (log_writer.c, zcq_committer_commit).
    F2  A batch's fate is decided once, while its group is staged, from
        state that nothing changes until every batch of the group has its
        fate; the writer's per-shard poison mark moves only after that.
    F3  The writer fails every batch of shard s whose generation is below
        poisoned_below[s], and after a group raises poisoned_below[s] to
        generation + 1 for each batch of s that it failed, whatever the
        reason (storage error, store failed, poisoned, old epoch).
    F4  No batch decided on uncommitted state commits. A shard applies a
        decided command's events to its cached aggregate at once (so the
        next command sees them); when a batch of generation g comes back
        failed, the shard drops the failed batch's aggregates and every
        cached aggregate whose latest command in flight has a generation
        <= g (all of those batches fail by F3), then raises its generation
        to at least g + 1 (aggregate_shard.c, zcq_shard_done). A batch
        decided after that holds no failed events; a batch decided before
        it has a generation <= g, or one raised by an earlier failure that
        already dropped the same aggregates.
    F5  Per shard, batches reach the writer in the order they were sent,
        and their COMMITTED and DONE come back in that order (single PAIR
        pipes; the synchronous view host and the router forward in order).
    F6  A store epoch change (a reopen of RocksDB after a storage error)
        drops every cached aggregate of every shard and raises its
        generation; the writer fails every batch decided under an older
        epoch and takes the head from the reopened store, since a batch
        whose sync failed may be there after all.
    F7  Events are published, and applied by views, only from written
        batches, after the commit returned, in position order.
    F8  An aggregate whose cached state is unusable while commands of it
        are still in flight (a decide that failed half way through its
        events) is not reloaded from the store until they are back: its
        commands get `unavailable` meanwhile, since the store does not yet
        hold the in-flight events.
*/
#ifndef ZCQ_ACTORS_H_INCLUDED
#define ZCQ_ACTORS_H_INCLUDED

#include "zcq_config_impl.h"
#include "zcq_coordinator.h"
#include "zcq_metrics.h"
#include <stdatomic.h>

//  --------------------------------------------------------------------------
//  Commands

typedef struct zcq_cached_t zcq_cached_t; //  a cached aggregate (shard)

typedef struct zcq_command_t zcq_command_t;
struct zcq_command_t {
    //  set by the command router
    uint8_t *envelope;           //  routing frames as [u32 size][bytes]...,
    size_t envelope_size;        //  given back with the reply
    uint8_t envelope_inline[40]; //  where a short envelope lives
    zmq_msg_t body;              //  request bytes; the doc borrows them
    zcq_doc_t *doc;
    const char *id; //  into body, not NUL-terminated
    size_t id_len;
    const zcq_value_t *id_value; //  the request's id when it is not a valid one
    const void *id_raw;          //  the encoded id of a request too large to decode
    size_t id_raw_len;
    const char *key; //  NUL-terminated copy in stream
    size_t key_len;
    const char *type;
    size_t type_len;
    int64_t expect; //  -1 = absent
    const zcq_value_t *data;
    const zcq_value_t *meta;
    const zcq_aggregate_def_t *aggregate;
    const zcq_command_def_t *handler;
    char stream[ZCQ_STREAM_MAX + 2]; //  aggregate/key NUL, then topic slash room
    size_t stream_len;
    uint32_t shard;
    char id_copy[ZCQ_ID_MAX + 1]; //  NUL-terminated id

    //  outcome (shard, then writer)
    zcq_err_t outcome;
    char *message;    //  heap; NULL when none
    uint64_t version; //  stream version after (or current, on conflict)
    uint64_t position;
    uint32_t event_count;
    bool duplicate;
    uint8_t *reply; //  fields decide added to the ok reply: an encoded map, heap; or NULL
    size_t reply_size;

    //  for the log writer: event bodies, each prefixed by its u32 length
    uint8_t *events;
    size_t events_size;
    uint64_t truncate_before; //  `$truncate`: remove the stream's versions below this
    uint8_t *snapshot;        //  encoded snapshot, or NULL
    size_t snapshot_size;
    uint32_t snapshot_schema;

    //  bookkeeping
    zcq_cached_t *cached; //  shard: the aggregate, pinned while in flight
    zcq_command_t *next;  //  router: next command with this id, held
    void *client;         //  router: the connection it came from
    bool counted;         //  router: counted in its client's in-flight
    int64_t received_ns;  //  router: when it arrived (zcq_mono_ns), for its latency
    const char *reason;   //  `unavailable`, `timeout`: why, as cluster.md names it
    //  router, in a cluster (command_router.c DESIGN 7)
    int group;         //  the group of the stream's slot; -1: not known
    bool forward;      //  to be sent to the group's leader
    bool forwarded_in; //  came from another node: never sent on
    char *owner;       //  `unavailable`: the leader's command endpoint, heap
};

zcq_command_t *zcq_command_new (void);
void zcq_command_destroy (zcq_command_t **self_p);
//  Append a routing frame to the command's envelope; false when out of
//  memory.
bool zcq_command_add_frame (zcq_command_t *self, const void *data, size_t size);
//  Walk the envelope's frames from *offset (start at 0); NULL after the
//  last one.
const uint8_t *zcq_command_next_frame (const zcq_command_t *self, size_t *offset, size_t *size);
//  Walk the encoded events of a command: the next body and its size, from
//  *offset (start at 0); NULL after the last one.
uint8_t *zcq_command_next_event (const zcq_command_t *self, size_t *offset, size_t *size);
//  A successful command's stored result (what a duplicate is answered
//  with): [u64 version][u64 position][u32 events][stream] NUL [type], or,
//  when decide added reply fields (ZCQ_RESULT_REPLY set in the events
//  word), [u64 version][u64 position][u32 events | ZCQ_RESULT_REPLY]
//  [u16 size][reply: encoded map of size bytes][stream] NUL [type].
//  Results written by earlier versions, and those the store rebuilds from
//  the log, end at the stream; their type is empty.
#define ZCQ_RESULT_REPLY 0x80000000u
#define ZCQ_RESULT_MAX   (22 + ZCQ_REPLY_MAX + ZCQ_STREAM_MAX + 1 + ZCQ_TYPE_MAX)
typedef struct {
    uint64_t version;
    uint64_t position;
    uint32_t event_count;
    const uint8_t *reply; //  into the stored bytes: an encoded map, or NULL
    size_t reply_size;
    const char *stream; //  into the stored bytes, not NUL-terminated
    size_t stream_len;
    const char *type; //  likewise; empty for results of earlier versions
    size_t type_len;
} zcq_result_t;
//  Encode a committed command's result into buffer (ZCQ_RESULT_MAX bytes);
//  returns its size.
size_t zcq_result_encode (uint8_t *buffer, const zcq_command_t *command);
//  Parse a stored result; false when it is damaged.
bool zcq_result_parse (zcq_result_t *result, const uint8_t *bytes, size_t len);
//  The key-value pairs of an encoded reply map (what follows its header)
//  and their count; false when it is not one whole map.
bool zcq_reply_pairs (const uint8_t *reply, size_t size, const uint8_t **pairs, size_t *pairs_size,
                      uint32_t *count);

//  Record an outcome with a formatted message.
void zcq_command_fail (zcq_command_t *self, zcq_err_t outcome, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  --------------------------------------------------------------------------
//  Batches

typedef enum {
    ZCQ_BATCH_COMMANDS,  //  router -> shard: decide these
    ZCQ_BATCH_REPLIES,   //  shard -> router: reply, then free
    ZCQ_BATCH_COMMIT,    //  shard -> writer: append these
    ZCQ_BATCH_COMMITTED, //  writer -> router: reply, then return to shard
    ZCQ_BATCH_DONE,      //  router -> shard: replies sent; unpin and free
} zcq_batch_kind_t;

typedef struct {
    zcq_batch_kind_t kind;
    uint32_t shard;
    uint32_t generation; //  shard's commit generation (invariants F3-F5 above)
    uint64_t epoch;      //  the store epoch the shard decided under (F6)
    bool written;        //  COMMITTED: every command's events are in the log (F1)
    size_t count;
    size_t capacity;
    zcq_command_t **commands;
} zcq_cbatch_t;

zcq_cbatch_t *zcq_cbatch_new (zcq_batch_kind_t kind, uint32_t shard);
//  Destroys the commands it still holds, too.
void zcq_cbatch_destroy (zcq_cbatch_t **self_p);
//  Make room for count commands in all; false when out of memory.
bool zcq_cbatch_reserve (zcq_cbatch_t *self, size_t count);
//  Append a command; false when out of memory (the command is not taken).
bool zcq_cbatch_add (zcq_cbatch_t *self, zcq_command_t *command);
//  Send a batch pointer over an inproc socket; on failure the batch is
//  destroyed. Receive one, or NULL.
int zcq_cbatch_send (zcq_cbatch_t **self_p, zsock_t *socket);
zcq_cbatch_t *zcq_cbatch_recv (zsock_t *socket, int flags);
//  Free every batch still queued on a socket (at shutdown).
void zcq_cbatch_drain (zsock_t *socket);

//  --------------------------------------------------------------------------
//  Counters of a node. THREAD SAFETY: each counter is a relaxed atomic
//  that actors add to and the query router reads; no other state is shared.

typedef struct {
    atomic_uint_fast64_t commands_received;
    atomic_uint_fast64_t commands_accepted; //  ok replies, duplicates included
    atomic_uint_fast64_t commands_duplicate;
    atomic_uint_fast64_t commands_rejected; //  rejected by the domain
    atomic_uint_fast64_t commands_conflict;
    atomic_uint_fast64_t commands_invalid; //  invalid and unknown
    atomic_uint_fast64_t commands_unavailable;
    atomic_uint_fast64_t commands_failed; //  internal errors
    atomic_uint_fast64_t events_written;
    atomic_uint_fast64_t commits;
    atomic_uint_fast64_t commit_failures;
    atomic_uint_fast64_t replies_dropped;  //  peer gone or never reading
    atomic_uint_fast64_t requests_dropped; //  envelope over the request limit
    atomic_uint_fast64_t aggregates_loaded;
    atomic_uint_fast64_t snapshots_written;
    atomic_uint_fast64_t queries_served;
    atomic_int_fast64_t commands_inflight;
    atomic_int_fast64_t connections;          //  open, on the three endpoints
    atomic_uint_fast64_t connections_refused; //  over max-connections
    atomic_uint_fast64_t commands_forwarded;  //  sent to another group's leader
    atomic_uint_fast64_t events_withheld;     //  over publish-limit: read, not sent
    atomic_uint_fast64_t reads_refused;       //  over a bound of waiting reads
} zcq_stats_t;

#define ZCQ_STAT_ADD(stats, name, value) \
    atomic_fetch_add_explicit (&(stats)->name, (value), memory_order_relaxed)
#define ZCQ_STAT_GET(stats, name) atomic_load_explicit (&(stats)->name, memory_order_relaxed)

//  --------------------------------------------------------------------------
//  What every actor of a node shares: read-only after start (but stats).

typedef struct {
    const zcq_config_t *config;
    const zcq_domain_t *domain;
    zcq_store_t *store;
    zcq_stats_t *stats;
    zcq_metrics_t *metrics; //  commands by aggregate, type, outcome; latency (zcq_metrics.h)
    int64_t started_us;
    bool synchronous_views; //  committed batches pass the sync host first
    bool gate;              //  the connection gate runs (actors/gate.c)
    char prefix[64];        //  inproc endpoint prefix, unique per node
    //  the node's part in its cluster (zcq_coordinator.h); NULL when the
    //  node is not clustered. Started first, stopped last: it outlives
    //  every other actor.
    zcq_coordinator_t *coordinator;
    //  true on a views node (`--role views`), which keeps no group's log
    //  and never takes a command into one: node.c starts no log stage or
    //  shards for it, and its command router forwards every command
    //  (command_router.c DESIGN 7)
    bool views_only;
} zcq_node_env_t;

//  inproc endpoint names
void zcq_endpoint_shard (const zcq_node_env_t *env, uint32_t shard, char *buffer, size_t size);
void zcq_endpoint_shard_log (const zcq_node_env_t *env, uint32_t shard, char *buffer, size_t size);
void zcq_endpoint_acks (const zcq_node_env_t *env, char *buffer, size_t size);
void zcq_endpoint_events (const zcq_node_env_t *env, char *buffer, size_t size);
void zcq_endpoint_sync (const zcq_node_env_t *env, char *buffer, size_t size);
void zcq_endpoint_host (const zcq_node_env_t *env, uint32_t host, char *buffer, size_t size);

//  --------------------------------------------------------------------------
//  Actors. Each `new` returns NULL (with a reason in error) when the actor
//  failed to start; destroy sends $TERM and waits.

typedef struct {
    const zcq_node_env_t *env;
    uint32_t shard;
} zcq_shard_args_t;

//  Aggregate shard core, socket-free: decides commands for the
//  aggregates hashed to one shard, caching them (aggregate_shard.c).
typedef struct zcq_shard_t zcq_shard_t;
zcq_shard_t *zcq_shard_new (const zcq_node_env_t *env, uint32_t shard);
void zcq_shard_destroy (zcq_shard_t **self_p);
//  Decide a COMMANDS batch (taken): the commands to commit come out as a
//  COMMIT batch in *commit_p, those answered now (rejected, conflict,
//  duplicate, ...) as a REPLIES batch in *replies_p; either is NULL when
//  empty.
void zcq_shard_decide (zcq_shard_t *self, zcq_cbatch_t **batch_p, zcq_cbatch_t **commit_p,
                       zcq_cbatch_t **replies_p);
//  A COMMITTED batch of this shard came back answered (DONE, taken):
//  unpin its aggregates, and after a failure drop what F4 says.
void zcq_shard_done (zcq_shard_t *self, zcq_cbatch_t **batch_p);

//  Aggregate shard: decides commands for the aggregates hashed to it.
//  Pipe: zsock_send (shard, "s", "SYNC") / reply "i" 0 once every batch
//  already sent to it is handled.
void zcq_shard_actor (zsock_t *pipe, void *args);

//  Committer: the log writer's socket-free core. It assigns positions,
//  writes a group of COMMIT batches in one store commit and decides every
//  batch's fate (F1-F3, F6). The log writer runs it in its actor loop; a
//  test drives it directly.
typedef struct zcq_committer_t zcq_committer_t;
//  stats may be NULL. The head is the store's.
zcq_committer_t *zcq_committer_new (zcq_store_t *store, zcq_stats_t *stats, uint32_t shard_count);
void zcq_committer_destroy (zcq_committer_t **self_p);
//  A clustered node's committer keeps its group's epoch history (cluster.md
//  6.4): the first commit under an epoch it has not written before also
//  writes [epoch, first position] into the store's `epochs` record, in the
//  same write as the events.
void zcq_committer_set_coordinator (zcq_committer_t *self, zcq_coordinator_t *coordinator);
//  The epoch history as stored: [u64 epoch][u64 first position] pairs,
//  big-endian, oldest first; the record's name.
#define ZCQ_EPOCHS_META "epochs"
//  Let a failed store reopen (zcq_store_recover); after a reopen, take the
//  store's head (F6). True when the head moved: subscribers must be told.
bool zcq_committer_recover (zcq_committer_t *self);
//  Stage, commit and decide a group of COMMIT batches: afterwards every
//  batch is COMMITTED with `written` set, or has every command failed.
//  Events get positions head + 1, ... and the time time_us.
void zcq_committer_commit (zcq_committer_t *self, zcq_cbatch_t *const *group, size_t count,
                           int64_t time_us);
//  The position of the last event committed.
uint64_t zcq_committer_head (const zcq_committer_t *self);

//  Log stage: the committer and what follows a commit (publishing on the
//  events endpoint, heartbeats, id expiry, healing a failed store), without
//  the shards' pipes. The log writer actor runs it behind those pipes; a
//  plan that calls the shards directly runs it in the same loop. It binds
//  the events endpoints when made; use it from one thread at a time.
typedef struct zcq_log_stage_t zcq_log_stage_t;
zcq_err_t zcq_log_stage_new (zcq_log_stage_t **self_p, const zcq_node_env_t *env, char *error,
                             size_t size);
void zcq_log_stage_destroy (zcq_log_stage_t **self_p);
uint64_t zcq_log_stage_head (const zcq_log_stage_t *self);
//  Commit a group (zcq_committer_commit, after letting a failed store
//  heal) and publish the events of every written batch; the batches stay
//  the caller's.
void zcq_log_stage_commit (zcq_log_stage_t *self, zcq_cbatch_t *const *group, size_t count);
//  The timed work: heartbeats, id expiry, healing a failed store. Returns
//  how many ms until it wants to run again.
int64_t zcq_log_stage_tick (zcq_log_stage_t *self);

//  Log writer: sequences, commits and publishes.
void zcq_writer_actor (zsock_t *pipe, void *args);

//  Publisher (publisher.c): the events endpoint, fed by the log stage's
//  inproc PUB. args: the node's zcq_node_env_t.
//  Pipe: zsock_send (publisher, "s", "ENDPOINT") / reply "s" events endpoint.
void zcq_publisher_actor (zsock_t *pipe, void *args);

//  Command router: the command endpoint. With a log stage (the one-loop
//  plan) it also runs the shards' cores and the stage in its own loop; it
//  owns the stage from its start on, whether the start succeeds or not.
typedef struct {
    const zcq_node_env_t *env;
    zcq_log_stage_t *stage; //  NULL: the split plan
} zcq_router_args_t;
//  Pipe: zsock_send (router, "s", "ENDPOINT") / reply "s" command endpoint;
//        zsock_send (router, "s", "DRAIN") / reply "i" in-flight commands
//        left when draining ended (0 = clean): after DRAIN every new command
//        gets `unavailable`.
void zcq_router_actor (zsock_t *pipe, void *args);

//  Connection gate (gate.c): counts the connections of the three
//  endpoints and shuts down the ones over max_connections.
typedef struct {
    const zcq_node_env_t *env;
    size_t max_connections;
} zcq_gate_args_t;
void zcq_gate_actor (zsock_t *pipe, void *args);
//  Report a listening socket's connections to the gate; call it in the
//  socket's thread, after binding. name: command, events or query.
int zcq_gate_watch (const zcq_node_env_t *env, zsock_t *socket, const char *name);
//  Stop reporting a socket; call it in the socket's thread before closing
//  it (safe on a socket never watched, and on NULL).
void zcq_gate_unwatch (zsock_t *socket);

//  Retention (retention.c): applies the aggregate types' max_count and
//  max_age_s every retention-interval-ms, sending `$truncate` commands to
//  the node's command endpoint. Pipe: zsock_send (actor, "s", "RETAIN") /
//  reply "i" the streams truncated, once a pass is done.
typedef struct {
    const zcq_node_env_t *env;
    char command[ZCQ_ENDPOINT_MAX]; //  the node's command endpoint, as bound
} zcq_retention_args_t;
void zcq_retention_actor (zsock_t *pipe, void *args);

//  Start an actor and wait for its start-up status: the actor signals 0
//  when ready, or sends "s" reason and signals 1.
zactor_t *zcq_actor_start (zactor_fn *actor, void *args, char *error, size_t size);
//  Used by actors: report start-up failure through the pipe.
void zcq_actor_failed (zsock_t *pipe, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Whether a request of envelope + body bytes is over limit (the routers'
//  DESIGN 5); when it is, the refusal's message goes into message.
bool zcq_request_over_limit (size_t envelope, size_t body, size_t limit, char *message,
                             size_t size);

//  Name the calling thread (15 characters at most), for top -H and perf.
void zcq_actor_name (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  Hash of a stream name, for shard placement (FNV-1a, 64 bits).
uint64_t zcq_stream_hash (const char *stream, size_t len);
//  A client's routing identity as a hash key: hex, cut to fit size (513
//  bytes hold any identity).
void zcq_peer_key (const void *identity, size_t len, char *key, size_t size);

#endif
