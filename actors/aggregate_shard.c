/*  aggregate_shard.c: decides the commands of the aggregates hashed to
    this shard. Each aggregate lives in exactly one shard, so its state
    needs no lock.

    DESIGN
    1.  An aggregate is loaded once (latest snapshot with the right schema,
        then the stream's later events through evolve) and cached; the
        cache is an LRU bounded by the `cache` setting.
    2.  Decisions are pipelined: a decided command's events are applied to
        the cached state at once (so the next command sees them) and the
        command goes to the log writer; the aggregate stays pinned in the
        cache until the writer's answer comes back (DONE).
    3.  A failed commit drops every aggregate it touched from the cache
        (they reload from the store, which has none of the failed events),
        and every aggregate that a batch still in flight, and bound to fail
        with it, has touched; then the shard's generation passes the failed
        batch's. The failure protocol is F1-F8 in zcq_actors.h; this file
        keeps F4 (zcq_shard_done), F6 and F8.
    4.  Deduplication: the store is asked (the command router holds a
        second command with an id in flight until the first is answered,
        so the store has the first's outcome by then). Only successful
        commands are remembered. A stored result answers only the same
        command: an id used before for another stream or command type is
        `invalid`, never answered with the other command's result.
    5.  Replies for outcomes decided here (rejected, conflict, invalid,
        duplicate) go straight back to the router, per round.
    6.  After a storage failure the store reopens RocksDB, and the reopened
        store may hold a batch whose commit had failed (store.c DESIGN 7).
        Every batch of commands starts by comparing the store's epoch with
        the one the cache was loaded under: when it moved, every cached
        aggregate is dropped and the generation raised; the epoch goes with
        the commit batch, and the writer fails a batch decided under an
        older epoch (F6).
    7.  The shard is a socket-free core (zcq_shard_t: decide a batch, take
        one back) and a thin actor that moves batches over its two pipes;
        tests drive the core directly.
    8.  A default snapshot (no snapshot_encode) is the state struct's bytes
        behind a 16-byte header: a magic, the struct's size and its layout
        fingerprint (zcq_aggregate_fingerprint, from state_fields). A
        snapshot is restored only when its schema, size and fingerprint are
        the running code's; any other is ignored with a warning (a schema
        change alone is ordinary and quiet) and the stream replayed from
        version 1.
    9.  Deletion: `$delete` (zcq_delete_command) is decided here for every
        aggregate, never by the domain: the id, `expect` and the checks
        above apply, then a stream that exists gets one `$deleted` event.
        The event is the truth: evolving it marks the cached aggregate
        deleted (the domain's evolve never sees it), a reload replays it
        (the `$delete` command writes no snapshot, so a snapshot never
        hides it), and every later command on the stream is rejected. A
        hard delete (`{hard: true}`) truncates the stream below its
        `$deleted` too (DESIGN 10), with a snapshot at the head: a stream
        loaded from a snapshot with no event after it checks whether its
        last event is `$deleted`.
    10. Truncation: `$truncate` (zcq_truncate_command, also what retention
        sends) is decided here too. It removes the stream's versions below
        `before` (store.c DESIGN 14) and appends `$truncated`; its commit
        carries a snapshot of the state at that point, whatever
        snapshot_every says, since the removed events can no longer be
        replayed. So a stream loads from a snapshot at or above its first
        kept version; when none of the running schema and layout is there,
        loading fails with a message that says so. A clustered node
        refuses truncations (`invalid`): its replicas and the cluster-wide
        views follow a group's log as one without holes. A truncation waits
        (`unavailable`) while the stream has commands being committed: the
        events it removes must be in the store.
*/
#include "zcq_actors.h"
#include <stdio.h>
#include <string.h>

struct zcq_cached_t {
    zcq_cached_t *prev; //  LRU list: head = most recent
    zcq_cached_t *next;
    const zcq_aggregate_def_t *def;
    char *stream;
    uint64_t version;
    uint32_t inflight;   //  commands with the writer (DESIGN 2)
    uint32_t generation; //  of the latest command decided on it (F4)
    bool dead;           //  dropped from the map, freed when idle
    bool broken;         //  state unusable, commands in flight (F8)
    bool deleted;        //  the stream holds `$deleted` (DESIGN 9)
    uint64_t first;      //  the first version the log keeps (DESIGN 10)
    void *state;
};

struct zcq_shard_t {
    const zcq_node_env_t *env;
    uint32_t shard;
    uint32_t generation; //  F3, F4
    uint64_t epoch;      //  the store's, when the cache was last emptied (F6)
    zhashx_t *cache;     //  stream -> zcq_cached_t
    zcq_cached_t *lru_head;
    zcq_cached_t *lru_tail;
    size_t cache_size; //  live entries in the map
    zcq_decide_t *decide;
    zcq_doc_t *doc; //  decodes events and snapshots
    zcq_event_t event;
    zcq_writer_t *events; //  [u32 length][body]... of one command
    zcq_writer_t *body;
    zcq_fields_t *snapshot;
    char failure[512]; //  why the last evolve failed (a strict read)
};

typedef zcq_shard_t self_t;

//  --------------------------------------------------------------------------
//  Cache (DESIGN 1)

static void
s_lru_unlink (self_t *self, zcq_cached_t *cached)
{
    if (cached->prev)
        cached->prev->next = cached->next;
    else
        self->lru_head = cached->next;
    if (cached->next)
        cached->next->prev = cached->prev;
    else
        self->lru_tail = cached->prev;
    cached->prev = cached->next = NULL;
}

static void
s_lru_push (self_t *self, zcq_cached_t *cached)
{
    cached->prev = NULL;
    cached->next = self->lru_head;
    if (self->lru_head)
        self->lru_head->prev = cached;
    self->lru_head = cached;
    if (!self->lru_tail)
        self->lru_tail = cached;
}

static zcq_cached_t *
s_cached_new (const zcq_aggregate_def_t *def, const char *stream)
{
    size_t header = (sizeof (zcq_cached_t) + 15) & ~(size_t) 15;
    zcq_cached_t *cached = calloc (1, header + def->state_size);
    if (!cached)
        return NULL;
    cached->stream = strdup (stream);
    if (!cached->stream) {
        free (cached);
        return NULL;
    }
    cached->def = def;
    cached->state = (char *) cached + header;
    if (def->init)
        def->init (cached->state);
    return cached;
}

static void
s_cached_free (zcq_cached_t **cached_p)
{
    zcq_cached_t *cached = *cached_p;
    if (!cached)
        return;
    if (cached->def->release)
        cached->def->release (cached->state);
    free (cached->stream);
    free (cached);
    *cached_p = NULL;
}

//  Reset a state to the one of a new stream.
static void
s_state_reset (zcq_cached_t *cached)
{
    if (cached->def->release)
        cached->def->release (cached->state);
    memset (cached->state, 0, cached->def->state_size);
    if (cached->def->init)
        cached->def->init (cached->state);
    cached->version = 0;
    cached->deleted = false;
}

//  Drop an aggregate from the cache; freed now or when its last command
//  in flight comes back (DESIGN 3).
static void
s_drop (self_t *self, zcq_cached_t *cached)
{
    if (!cached->dead) {
        zhashx_delete (self->cache, cached->stream);
        self->cache_size--;
        cached->dead = true;
    }
    if (cached->inflight == 0) {
        s_lru_unlink (self, cached);
        s_cached_free (&cached);
    }
}

//  Evict idle aggregates beyond the cache bound, least recent first.
static void
s_evict (self_t *self)
{
    zcq_cached_t *cached = self->lru_tail;
    while (cached && self->cache_size > self->env->config->cache) {
        zcq_cached_t *previous = cached->prev;
        if (cached->inflight == 0 && !cached->dead)
            s_drop (self, cached);
        cached = previous;
    }
}

//  Drop every cached aggregate: the store was reopened (DESIGN 6).
static void
s_drop_all (self_t *self)
{
    zcq_cached_t *cached = self->lru_head;
    while (cached) {
        zcq_cached_t *next = cached->next;
        s_drop (self, cached);
        cached = next;
    }
}

//  Apply one recorded event body to a cached state. ZCQ_INTERNAL when
//  evolve failed (a strict read): self->failure says why.
static zcq_err_t
s_evolve (self_t *self, zcq_cached_t *cached, const void *body, size_t len)
{
    zcq_err_t err = zcq_doc_decode_trusted (self->doc, body, len);
    if (err == ZCQ_OK)
        err = zcq_event_parse (&self->event, zcq_doc_root (self->doc));
    if (err != ZCQ_OK)
        return ZCQ_CORRUPT;
    if (strcmp (self->event.type, ZCQ_EVENT_DELETED) == 0)
        cached->deleted = true; //  DESIGN 9: a system event, no evolve
    const zcq_event_def_t *handler = zcq_domain_event (cached->def, self->event.type);
    if (handler && handler->evolve) {
        self->event.context = handler->context;
        err = zcq_event_upcast (&self->event, handler);
        if (err != ZCQ_OK && !self->event.failed) {
            self->event.context = NULL;
            return err;
        }
        if (!self->event.failed)
            handler->evolve (cached->state, &self->event);
        self->event.context = NULL;
        if (self->event.failed) {
            snprintf (self->failure, sizeof self->failure, "evolve of %s", self->event.error);
            zsys_error ("shard: %s", self->failure);
            return ZCQ_INTERNAL;
        }
    }
    return ZCQ_OK;
}

typedef struct {
    self_t *self;
    zcq_cached_t *cached;
    zcq_err_t err;
} s_replay_t;

static int
s_replay_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_replay_t *replay = arg;
    if (version != replay->cached->version + 1) {
        zsys_error ("shard: stream %s jumps from version %llu to %llu", replay->cached->stream,
                    (unsigned long long) replay->cached->version, (unsigned long long) version);
        replay->err = ZCQ_CORRUPT;
        return 1;
    }
    replay->err = s_evolve (replay->self, replay->cached, body, len);
    if (replay->err != ZCQ_OK)
        return 1;
    replay->cached->version = version;
    return 0;
}

//  Mark the aggregate deleted when the event is `$deleted`.
static int
s_check_deleted (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    (void) position;
    (void) version;
    s_replay_t *replay = arg;
    zcq_doc_t *doc = replay->self->doc;
    if (zcq_doc_decode_trusted (doc, body, len) == ZCQ_OK
        && zcq_value_streq (zcq_value_get (zcq_doc_root (doc), "type"), ZCQ_EVENT_DELETED))
        replay->cached->deleted = true;
    return 1;
}

//  A default snapshot (the state struct's bytes) starts with a header that
//  says which layout the bytes have (DESIGN 8).
#define S_SNAPSHOT_MAGIC  0x5a435153u //  "ZCQS"
#define S_SNAPSHOT_HEADER 16          //  magic, state size (u32 BE), fingerprint (u64 BE)

//  Restore from the latest snapshot, when it has the current schema (and
//  a default one, the current layout); else the state stays new and the
//  stream is replayed, with a warning saying why.
static void
s_restore_snapshot (self_t *self, zcq_cached_t *cached)
{
    uint32_t schema;
    uint64_t version;
    void *bytes;
    size_t len;
    if (zcq_store_snapshot (self->env->store, cached->stream, &schema, &version, &bytes, &len)
        != ZCQ_OK)
        return;
    const zcq_aggregate_def_t *def = cached->def;
    const uint8_t *header = bytes;
    const char *ignored = NULL; //  why the snapshot is not used
    char reason[160];
    if (schema != def->schema)
        ignored = NULL; //  an ordinary schema change: replay quietly
    else if (def->snapshot_decode) {
        if (zcq_doc_decode (self->doc, bytes, len, &zcq_stored_limits) != ZCQ_OK)
            ignored = "it does not decode";
        else if (def->snapshot_decode (cached->state, zcq_doc_root (self->doc)) != ZCQ_OK)
            ignored = "snapshot_decode refused it";
        else {
            free (bytes);
            cached->version = version;
            return;
        }
    }
    else if (len < S_SNAPSHOT_HEADER || zcq_get_be32 (header) != S_SNAPSHOT_MAGIC)
        ignored = "it has no layout header (written by an earlier version)";
    else if (zcq_get_be32 (header + 4) != def->state_size
             || len - S_SNAPSHOT_HEADER != def->state_size) {
        snprintf (reason, sizeof reason, "its state is %u bytes, the state struct %zu",
                  zcq_get_be32 (header + 4), def->state_size);
        ignored = reason;
    }
    else if (zcq_get_be64 (header + 8) != zcq_aggregate_fingerprint (def))
        ignored = "its layout fingerprint differs (state fields moved, resized or renamed)";
    else {
        memcpy (cached->state, header + S_SNAPSHOT_HEADER, def->state_size);
        free (bytes);
        cached->version = version;
        return;
    }
    free (bytes);
    if (ignored) {
        zsys_warning ("shard: snapshot of %s at version %llu ignored, the stream is replayed: %s",
                      cached->stream, (unsigned long long) version, ignored);
    }
    s_state_reset (cached);
}

//  Find an aggregate in the cache or load it (DESIGN 1).
static zcq_err_t
s_load (self_t *self, zcq_command_t *command, zcq_cached_t **cached_p)
{
    zcq_cached_t *cached = zhashx_lookup (self->cache, command->stream);
    if (cached) {
        if (cached != self->lru_head) {
            s_lru_unlink (self, cached);
            s_lru_push (self, cached);
        }
        *cached_p = cached;
        return ZCQ_OK;
    }
    cached = s_cached_new (command->aggregate, command->stream);
    if (!cached)
        return ZCQ_NOMEM;
    //  the latest snapshot, then every later event: the stream's version is
    //  the last one read (versions have no holes: s_replay_event checks)
    zcq_err_t err = zcq_store_stream_first (self->env->store, cached->stream, &cached->first);
    if (err != ZCQ_OK) {
        s_cached_free (&cached);
        return err;
    }
    s_restore_snapshot (self, cached);
    if (cached->version + 1 < cached->first) {
        //  DESIGN 10
        snprintf (self->failure, sizeof self->failure,
                  "the events of %s below version %llu were removed, and no snapshot of this "
                  "schema and layout holds their state",
                  cached->stream, (unsigned long long) cached->first);
        s_cached_free (&cached);
        return ZCQ_CORRUPT;
    }
    s_replay_t replay = { self, cached, ZCQ_OK };
    uint64_t restored = cached->version;
    err = zcq_store_read_stream (self->env->store, cached->stream, cached->version + 1, 0,
                                 s_replay_event, &replay);
    if (err == ZCQ_OK)
        err = replay.err;
    if (err == ZCQ_OK && restored && cached->version == restored)
        //  DESIGN 9: a snapshot at the head may be a hard delete's, taken
        //  with `$deleted` applied: the last event says
        err = zcq_store_read_stream (self->env->store, cached->stream, restored, 1, s_check_deleted,
                                     &replay);
    if (err != ZCQ_OK) {
        s_cached_free (&cached);
        return err;
    }
    zhashx_insert (self->cache, cached->stream, cached);
    self->cache_size++;
    s_lru_push (self, cached);
    ZCQ_STAT_ADD (self->env->stats, aggregates_loaded, 1);
    s_evict (self);
    *cached_p = cached;
    return ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  Deciding

//  Encode the decided events of a command: each body is the ZCQ/1 event
//  map with position and time left to the writer.
static zcq_err_t
s_encode_events (self_t *self, zcq_command_t *command, uint64_t first_version)
{
    zcq_decide_t *decide = self->decide;
    const zcq_config_t *config = self->env->config;
    size_t aggregate_len = strlen (command->aggregate->name);
    zcq_writer_reset (self->events);
    for (size_t index = 0; index < decide->event_count; index++) {
        zcq_writer_t *body = self->body;
        zcq_writer_reset (body);
        zcq_event_encode_head (
            body, config->node, config->cluster[0] ? config->group : -1, command->stream,
            command->stream_len, aggregate_len, first_version + index, decide->events[index].type,
            decide->events[index].type_version, command->id, command->id_len, command->meta);
        zcq_fields_encode (decide->events[index].fields, body);
        if (!zcq_writer_ok (body) || !zcq_fields_ok (decide->events[index].fields))
            return ZCQ_NOMEM;
        uint8_t length[4];
        size_t size = zcq_writer_size (body);
        zcq_put_be32 (length, (uint32_t) size);
        zcq_writer_raw (self->events, length, 4);
        zcq_writer_raw (self->events, zcq_writer_data (body), size);
    }
    if (!zcq_writer_ok (self->events))
        return ZCQ_NOMEM;
    command->events_size = zcq_writer_size (self->events);
    if (command->events_size) {
        command->events = malloc (command->events_size);
        if (!command->events)
            return ZCQ_NOMEM;
        memcpy (command->events, zcq_writer_data (self->events), command->events_size);
    }
    command->event_count = (uint32_t) decide->event_count;
    return ZCQ_OK;
}

//  Apply a command's encoded events to the cached state.
static zcq_err_t
s_apply_events (self_t *self, zcq_command_t *command, zcq_cached_t *cached)
{
    size_t offset = 0, size;
    const uint8_t *body;
    while ((body = zcq_command_next_event (command, &offset, &size)))
        ZCQ_TRY (s_evolve (self, cached, body, size));
    return ZCQ_OK;
}

//  Encode a snapshot of the state when the command crossed a multiple of
//  snapshot_every.
static zcq_err_t
s_snapshot (self_t *self, zcq_command_t *command, zcq_cached_t *cached, uint64_t before, bool force)
{
    const zcq_aggregate_def_t *def = cached->def;
    uint32_t every = zcq_aggregate_snapshot_every (def);
    if (!force && before / every == cached->version / every)
        return ZCQ_OK;
    if (def->snapshot_encode) {
        zcq_fields_reset (self->snapshot);
        ZCQ_TRY (def->snapshot_encode (cached->state, self->snapshot));
        zcq_writer_reset (self->body);
        zcq_fields_encode (self->snapshot, self->body);
        if (!zcq_writer_ok (self->body) || !zcq_fields_ok (self->snapshot))
            return ZCQ_NOMEM;
        command->snapshot_size = zcq_writer_size (self->body);
        command->snapshot = malloc (command->snapshot_size);
        if (!command->snapshot)
            return ZCQ_NOMEM;
        memcpy (command->snapshot, zcq_writer_data (self->body), command->snapshot_size);
    }
    else {
        //  DESIGN 8
        command->snapshot_size = S_SNAPSHOT_HEADER + def->state_size;
        command->snapshot = malloc (command->snapshot_size);
        if (!command->snapshot)
            return ZCQ_NOMEM;
        zcq_put_be32 (command->snapshot, S_SNAPSHOT_MAGIC);
        zcq_put_be32 ((uint8_t *) command->snapshot + 4, (uint32_t) def->state_size);
        zcq_put_be64 ((uint8_t *) command->snapshot + 8, zcq_aggregate_fingerprint (def));
        memcpy ((uint8_t *) command->snapshot + S_SNAPSHOT_HEADER, cached->state, def->state_size);
    }
    command->snapshot_schema = def->schema;
    ZCQ_STAT_ADD (self->env->stats, snapshots_written, 1);
    return ZCQ_OK;
}

//  A stored result answers a retry of the same command, and only that: an
//  id used for another stream or command type is `invalid` (DESIGN 4).
static void
s_answer_duplicate (zcq_command_t *command, const uint8_t *bytes, size_t len)
{
    zcq_result_t result;
    if (!zcq_result_parse (&result, bytes, len))
        zcq_command_fail (command, ZCQ_INTERNAL, "stored result of %s is corrupt",
                          command->id_copy);
    else if (result.stream_len != command->stream_len
             || memcmp (result.stream, command->stream, result.stream_len) != 0
             || (result.type_len
                 && (result.type_len != command->type_len
                     || memcmp (result.type, command->type, result.type_len) != 0)))
        zcq_command_fail (command, ZCQ_INVALID,
                          "command id %s was already used for %.*s %.*s: "
                          "an id names one command, retries included",
                          command->id_copy, (int) result.stream_len, result.stream,
                          (int) (result.type_len ? result.type_len : 1),
                          result.type_len ? result.type : "?");
    else {
        command->outcome = ZCQ_OK;
        command->duplicate = true;
        command->version = result.version;
        command->position = result.position;
        command->event_count = result.event_count;
        if (result.reply && (command->reply = malloc (result.reply_size))) {
            memcpy (command->reply, result.reply, result.reply_size);
            command->reply_size = result.reply_size;
        }
        else if (result.reply)
            zcq_command_fail (command, ZCQ_INTERNAL, "out of memory");
    }
}

//  Encode the reply fields decide set into the command; false (and
//  self->failure says why) when one has a protocol name, or too many bytes.
static bool
s_take_reply (self_t *self, zcq_command_t *command)
{
    if (!zcq_decide_reply_encode (self->decide, self->body, self->failure, sizeof self->failure))
        return false;
    size_t size = zcq_writer_size (self->body);
    if (size == 0)
        return true;
    command->reply = malloc (size);
    if (!command->reply) {
        snprintf (self->failure, sizeof self->failure, "out of memory encoding the reply");
        return false;
    }
    memcpy (command->reply, zcq_writer_data (self->body), size);
    command->reply_size = size;
    return true;
}

typedef enum { S_REPLY, S_COMMIT } s_route_t;

//  Decide one command: it is to be replied now, or committed.
static s_route_t
s_decide (self_t *self, zcq_command_t *command)
{
    self->failure[0] = 0;
    //  DESIGN 4
    void *result;
    size_t result_len;
    zcq_err_t err
        = zcq_store_command (self->env->store, command->id, command->id_len, &result, &result_len);
    if (err == ZCQ_OK) {
        s_answer_duplicate (command, result, result_len);
        free (result);
        return S_REPLY;
    }
    if (err != ZCQ_NOT_FOUND) {
        zcq_command_fail (command, ZCQ_INTERNAL, "reading command ids: %s", zcq_strerror (err));
        return S_REPLY;
    }

    zcq_cached_t *cached;
    err = s_load (self, command, &cached);
    if (err != ZCQ_OK) {
        zcq_command_fail (command, ZCQ_INTERNAL, "loading %s: %s", command->stream,
                          self->failure[0] ? self->failure : zcq_strerror (err));
        return S_REPLY;
    }
    if (cached->broken) {
        //  F8
        zcq_command_fail (command, ZCQ_UNAVAILABLE,
                          "aggregate %s is reloading after an error; retry", command->stream);
        return S_REPLY;
    }
    if (command->expect >= 0 && (uint64_t) command->expect != cached->version) {
        command->version = cached->version;
        zcq_command_fail (command, ZCQ_CONFLICT, "stream %s is at version %llu, not %lld",
                          command->stream, (unsigned long long) cached->version,
                          (long long) command->expect);
        return S_REPLY;
    }
    if (cached->deleted) {
        //  DESIGN 9
        zcq_command_fail (command, ZCQ_REJECTED, "stream %s is deleted", command->stream);
        return S_REPLY;
    }
    zcq_decide_t *decide = self->decide;
    zcq_decide_reset (decide, cached->def, command->data, command->meta, command->key,
                      command->id_copy, cached->version);
    decide->context = command->handler->context;
    decide->system = command->handler == &zcq_delete_command
                  || command->handler == &zcq_truncate_command;
    decide->first = cached->first;
    err = command->handler->decide (decide, cached->state);
    if (decide->nomem) {
        zcq_command_fail (command, ZCQ_INTERNAL, "out of memory deciding");
        return S_REPLY;
    }
    if (decide->internal) {
        //  a bug of the domain's, whatever decide returned: nothing stored
        zsys_error ("shard: %s %.*s: %s", command->stream, (int) command->type_len, command->type,
                    decide->message);
        zcq_command_fail (command, ZCQ_INTERNAL, "%s", decide->message);
        return S_REPLY;
    }
    if (err != ZCQ_OK) {
        if (err != ZCQ_REJECTED && err != ZCQ_INVALID && err != ZCQ_CONFLICT && err != ZCQ_UNKNOWN
            && err != ZCQ_DENIED && err != ZCQ_UNAVAILABLE)
            err = ZCQ_INTERNAL;
        zcq_command_fail (command, err, "%s",
                          decide->message[0] ? decide->message : zcq_strerror (err));
        return S_REPLY;
    }
    if (decide->truncate_before && self->env->config->cluster[0]) {
        //  DESIGN 10: replicas and cluster-wide views follow a log without holes
        zcq_command_fail (command, ZCQ_INVALID,
                          "removing events (truncation, hard delete) is not available in a "
                          "cluster in this release");
        return S_REPLY;
    }
    if (decide->truncate_before && cached->inflight) {
        //  DESIGN 10: the events to remove must be committed
        command->reason = "overloaded";
        zcq_command_fail (command, ZCQ_UNAVAILABLE,
                          "stream %s has commands being committed; retry the truncation",
                          command->stream);
        return S_REPLY;
    }
    if (!s_take_reply (self, command)) {
        zsys_error ("shard: %s %.*s: %s", command->stream, (int) command->type_len, command->type,
                    self->failure);
        zcq_command_fail (command, ZCQ_INTERNAL, "%s", self->failure);
        return S_REPLY;
    }
    uint64_t before = cached->version;
    err = s_encode_events (self, command, before + 1);
    if (err == ZCQ_OK) {
        err = s_apply_events (self, command, cached);
        cached->version = before + decide->event_count;
        //  no snapshot of a deleted state: `$deleted` is replayed (DESIGN 9)
        //  a truncation's snapshot holds what the removed events made
        //  (DESIGN 10)
        if (err == ZCQ_OK && (!decide->system || decide->truncate_before))
            err = s_snapshot (self, command, cached, before, decide->truncate_before != 0);
        if (err == ZCQ_OK && decide->truncate_before) {
            command->truncate_before = decide->truncate_before;
            cached->first = decide->truncate_before;
        }
        if (err != ZCQ_OK && cached->inflight)
            cached->broken = true; //  F8: reloaded once its commands are back
        else if (err != ZCQ_OK)
            s_drop (self, cached); //  the state may be half-evolved
    }
    if (err != ZCQ_OK) {
        if (self->failure[0])
            zcq_command_fail (command, ZCQ_INTERNAL, "%s", self->failure);
        else
            zcq_command_fail (command, ZCQ_INTERNAL, "encoding events: %s", zcq_strerror (err));
        return S_REPLY;
    }
    command->version = cached->version;
    command->cached = cached;
    cached->inflight++;
    cached->generation = self->generation;
    return S_COMMIT;
}

//  --------------------------------------------------------------------------
//  The core's API (zcq_actors.h)

//  Answer every command of a batch with the same failure.
static void
s_fail_all (zcq_cbatch_t *batch, zcq_err_t outcome, const char *message)
{
    for (size_t index = 0; index < batch->count; index++)
        zcq_command_fail (batch->commands[index], outcome, "%s", message);
    batch->kind = ZCQ_BATCH_REPLIES;
}

void
zcq_shard_decide (zcq_shard_t *self, zcq_cbatch_t **batch_p, zcq_cbatch_t **commit_p,
                  zcq_cbatch_t **replies_p)
{
    zcq_cbatch_t *batch = *batch_p;
    *batch_p = NULL;
    *commit_p = NULL;
    *replies_p = NULL;
    uint64_t epoch = zcq_store_epoch (self->env->store);
    if (epoch != self->epoch) {
        //  F6
        s_drop_all (self);
        self->epoch = epoch;
        self->generation++;
    }
    zcq_cbatch_t *commit = zcq_cbatch_new (ZCQ_BATCH_COMMIT, self->shard);
    zcq_cbatch_t *replies = zcq_cbatch_new (ZCQ_BATCH_REPLIES, self->shard);
    //  the batches hold at least as many commands as came in, so adding
    //  cannot fail once they are sized
    if (!commit || !replies || !zcq_cbatch_reserve (commit, batch->count)
        || !zcq_cbatch_reserve (replies, batch->count)) {
        //  answer the whole batch: nothing was decided
        zcq_cbatch_destroy (&commit);
        zcq_cbatch_destroy (&replies);
        s_fail_all (batch, ZCQ_INTERNAL, "out of memory");
        *replies_p = batch;
        return;
    }
    commit->generation = self->generation;
    commit->epoch = epoch;
    for (size_t index = 0; index < batch->count; index++) {
        zcq_command_t *command = batch->commands[index];
        if (s_decide (self, command) == S_COMMIT)
            zcq_cbatch_add (commit, command);
        else
            zcq_cbatch_add (replies, command);
    }
    batch->count = 0;
    zcq_cbatch_destroy (&batch);
    if (commit->count)
        *commit_p = commit;
    else
        zcq_cbatch_destroy (&commit);
    if (replies->count)
        *replies_p = replies;
    else
        zcq_cbatch_destroy (&replies);
}

void
zcq_shard_done (zcq_shard_t *self, zcq_cbatch_t **batch_p)
{
    zcq_cbatch_t *batch = *batch_p;
    *batch_p = NULL;
    bool failed = false;
    for (size_t index = 0; index < batch->count; index++) {
        zcq_command_t *command = batch->commands[index];
        zcq_cached_t *cached = command->cached;
        if (!cached)
            continue;
        command->cached = NULL;
        cached->inflight--;
        if (command->outcome != ZCQ_OK)
            failed = true;
        if (command->outcome != ZCQ_OK || cached->dead || (cached->broken && !cached->inflight))
            s_drop (self, cached);
    }
    if (failed) {
        //  F4: every batch still in flight with a generation up to this
        //  one's fails too (F3), so no state that holds their events may
        //  be decided on again
        zcq_cached_t *cached = self->lru_head;
        while (cached) {
            zcq_cached_t *next = cached->next;
            if (cached->inflight && cached->generation <= batch->generation)
                s_drop (self, cached);
            cached = next;
        }
        if (self->generation <= batch->generation)
            self->generation = batch->generation + 1;
    }
    zcq_cbatch_destroy (&batch);
    s_evict (self);
}

zcq_shard_t *
zcq_shard_new (const zcq_node_env_t *env, uint32_t shard)
{
    zcq_shard_t *self = calloc (1, sizeof (zcq_shard_t));
    if (!self)
        return NULL;
    self->env = env;
    self->shard = shard;
    self->epoch = zcq_store_epoch (env->store);
    self->cache = zhashx_new ();
    self->decide = zcq_decide_new ();
    self->doc = zcq_doc_new ();
    self->events = zcq_writer_new ();
    self->body = zcq_writer_new ();
    self->snapshot = zcq_fields_new ();
    if (!self->cache || !self->decide || !self->doc || !self->events || !self->body
        || !self->snapshot) {
        zcq_shard_destroy (&self);
        return NULL;
    }
    //  the map uses the stream names its values carry
    zhashx_set_key_duplicator (self->cache, NULL);
    zhashx_set_key_destructor (self->cache, NULL);
    return self;
}

void
zcq_shard_destroy (zcq_shard_t **self_p)
{
    zcq_shard_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->cache);
    zcq_cached_t *cached = self->lru_head;
    while (cached) {
        zcq_cached_t *next = cached->next;
        s_cached_free (&cached);
        cached = next;
    }
    zcq_decide_destroy (&self->decide);
    zcq_doc_destroy (&self->doc);
    zcq_event_release (&self->event);
    zcq_writer_destroy (&self->events);
    zcq_writer_destroy (&self->body);
    zcq_fields_destroy (&self->snapshot);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  The actor: the core between the router's pipe and the writer's

typedef struct {
    zsock_t *pipe;
    zsock_t *router; //  PAIR, commands in and replies out
    zsock_t *log;    //  PAIR to the log writer
    zcq_shard_t *core;
    bool terminated;
} s_actor_t;

static void
s_handle_router (s_actor_t *self)
{
    zcq_cbatch_t *batch;
    while ((batch = zcq_cbatch_recv (self->router, ZMQ_DONTWAIT))) {
        if (batch->kind == ZCQ_BATCH_COMMANDS) {
            zcq_cbatch_t *commit, *replies;
            zcq_shard_decide (self->core, &batch, &commit, &replies);
            if (commit)
                zcq_cbatch_send (&commit, self->log);
            if (replies)
                zcq_cbatch_send (&replies, self->router);
        }
        else if (batch->kind == ZCQ_BATCH_DONE)
            zcq_shard_done (self->core, &batch);
        else {
            zsys_error ("shard %u: unexpected batch kind %d", self->core->shard, batch->kind);
            zcq_cbatch_destroy (&batch);
        }
    }
}

static void
s_handle_pipe (s_actor_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "SYNC")) {
        s_handle_router (self);
        zsock_send (self->pipe, "i", 0);
    }
    else
        zsys_error ("shard %u: unknown pipe command '%s'", self->core->shard, command);
    zstr_free (&command);
}

static void
s_destroy (s_actor_t **self_p)
{
    s_actor_t *self = *self_p;
    if (!self)
        return;
    if (self->router)
        zcq_cbatch_drain (self->router);
    zsock_destroy (&self->router);
    zsock_destroy (&self->log);
    zcq_shard_destroy (&self->core);
    free (self);
    *self_p = NULL;
}

static s_actor_t *
s_new (zsock_t *pipe, const zcq_shard_args_t *args)
{
    s_actor_t *self = calloc (1, sizeof (s_actor_t));
    if (!self) {
        zcq_actor_failed (pipe, "out of memory");
        return NULL;
    }
    self->pipe = pipe;
    self->core = zcq_shard_new (args->env, args->shard);
    self->router = zsock_new (ZMQ_PAIR);
    self->log = zsock_new (ZMQ_PAIR);
    if (!self->core || !self->router || !self->log) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    char endpoint[128];
    zcq_endpoint_shard (args->env, args->shard, endpoint, sizeof endpoint);
    zsock_set_sndhwm (self->router, 0);
    zsock_set_rcvhwm (self->router, 0);
    if (zsock_bind (self->router, "%s", endpoint) < 0) {
        zcq_actor_failed (pipe, "cannot bind %s", endpoint);
        s_destroy (&self);
        return NULL;
    }
    zcq_endpoint_shard_log (args->env, args->shard, endpoint, sizeof endpoint);
    zsock_set_sndhwm (self->log, 0);
    zsock_set_rcvhwm (self->log, 0);
    if (zsock_connect (self->log, "%s", endpoint) < 0) {
        zcq_actor_failed (pipe, "cannot connect %s", endpoint);
        s_destroy (&self);
        return NULL;
    }
    return self;
}

void
zcq_shard_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-shard-%u", ((zcq_shard_args_t *) args)->shard);
    s_actor_t *self = s_new (pipe, args);
    if (!self)
        return;
    zsock_send (pipe, "is", 0, "");
    zmq_pollitem_t items[] = {
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (self->router), 0, ZMQ_POLLIN, 0 },
    };
    while (!self->terminated) {
        if (zmq_poll (items, 2, -1) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_router (self);
    }
    s_destroy (&self);
}
