/*  log_writer.c: the node's single sequencer. It assigns log positions,
    commits, and publishes what it committed.

    DESIGN
    1.  Positions are head + 1, head + 2, ... in the order batches are taken
        and commands sit in them; no other thread assigns positions, so the
        log has no holes and a total order.
    2.  Group commit: everything waiting on the shard sockets is taken (up
        to S_GROUP_MAX commands) and written as one WriteBatch with one
        sync in fsync mode; while it is written, shards keep deciding and
        their next batches queue up for the next group.
    3.  A failed commit fails every command of the group with `internal`,
        leaves the head where it was (so the next group reuses the same
        positions: nothing of the failed one is stored) and poisons the
        shards involved: any batch of theirs with a generation up to a
        failed one's fails too, because it may have been decided on a state
        that included the failed events. Each batch's fate is decided once,
        while the group is staged, and the poison marks move only after
        every fate is known (F1-F3 in zcq_actors.h; the shard keeps F4).
    4.  Events are published only after the commit returns, in position
        order, on a PUB socket bound to an inproc endpoint, for the node's
        own projections and for the publisher (actors/publisher.c), which
        carries them to the events endpoint. PUB drops for slow
        subscribers; they fill gaps from the log (ZCQ/1 section 4).
    5.  Publishing here rather than in a separate actor saves a thread hop
        per group for the node's own views; a PUB send never blocks, and
        only the node's own subscribers are met here: remote subscribers
        and their subscriptions cost the publisher's thread.
    6.  After a failed commit the store refuses commits until it has
        reopened RocksDB (store.c DESIGN 7). Before each group, and every
        S_RECOVER_MS while the store is failed, the writer lets the store
        try (zcq_store_recover); a group that comes while it is failed
        fails whole, like a failed commit. When the store's epoch moves (a
        reopen), the writer takes the head from the store, since a batch
        whose commit had failed may be back (fsync mode, outcome unknown),
        sends a heartbeat at once so that subscribers fill the gap from the
        log, and fails every batch decided under an older epoch (the shards
        drop their cached aggregates when they see the new one: F6).
    7.  The committer (zcq_committer_t) is the socket-free core: positions,
        staging, the commit and every batch's fate. The actor around it
        gathers, publishes what was written (F7) and passes batches on.
*/
#include "zcq_actors.h"
#include <stdio.h>
#include <string.h>

#define S_GROUP_MAX    8192
#define S_EXPIRE_MS    60000
#define S_EXPIRE_BATCH 10000
#define S_PUBLISH_HWM  800 //  messages queued per subscriber of the node
#define S_RECOVER_MS   100 //  DESIGN 6: how often a failed store is retried

//  --------------------------------------------------------------------------
//  The committer: the socket-free core

struct zcq_committer_t {
    zcq_store_t *store;
    zcq_stats_t *stats; //  may be NULL
    uint32_t shard_count;
    uint32_t *poisoned_below; //  per shard: generations below fail (F3)
    uint64_t head;
    uint64_t epoch; //  the store's, when head was taken (DESIGN 6)
    zcq_batch_t *batch;
    uint8_t *result; //  scratch for a command's stored result
    //  a clustered node: its group's epoch history (zcq_committer_set_coordinator)
    zcq_coordinator_t *coordinator;
    uint8_t *epochs; //  the `epochs` record: [u64 epoch][u64 first position]...
    size_t epochs_size;
    uint64_t epoch_written; //  the newest epoch in it
};

#define S_STAT_ADD(self, name, value)                  \
    do {                                               \
        if ((self)->stats)                             \
            ZCQ_STAT_ADD ((self)->stats, name, value); \
    } while (0)

zcq_committer_t *
zcq_committer_new (zcq_store_t *store, zcq_stats_t *stats, uint32_t shard_count)
{
    zcq_committer_t *self = calloc (1, sizeof (zcq_committer_t));
    if (!self)
        return NULL;
    self->store = store;
    self->stats = stats;
    self->shard_count = shard_count;
    self->head = zcq_store_head (store);
    self->epoch = zcq_store_epoch (store);
    self->poisoned_below = calloc (shard_count ? shard_count : 1, sizeof (uint32_t));
    self->batch = zcq_batch_new (store);
    self->result = malloc (ZCQ_RESULT_MAX);
    if (!self->poisoned_below || !self->batch || !self->result)
        zcq_committer_destroy (&self);
    return self;
}

void
zcq_committer_destroy (zcq_committer_t **self_p)
{
    zcq_committer_t *self = *self_p;
    if (!self)
        return;
    free (self->poisoned_below);
    zcq_batch_destroy (&self->batch);
    free (self->result);
    free (self->epochs);
    free (self);
    *self_p = NULL;
}

void
zcq_committer_set_coordinator (zcq_committer_t *self, zcq_coordinator_t *coordinator)
{
    self->coordinator = coordinator;
    free (self->epochs);
    self->epochs = NULL;
    self->epochs_size = 0;
    self->epoch_written = 0;
    void *value;
    size_t len;
    if (coordinator && zcq_store_meta (self->store, ZCQ_EPOCHS_META, &value, &len) == ZCQ_OK) {
        if (len % 16 == 0) {
            self->epochs = value;
            self->epochs_size = len;
            if (len)
                self->epoch_written = zcq_get_be64 (self->epochs + len - 16);
        }
        else
            free (value); //  not ours to trust: the next epoch starts a new history
    }
}

//  Stage the epoch history's new entry when this commit is the first under
//  the epoch the node leads now; false when out of memory.
static bool
s_stage_epoch (zcq_committer_t *self, uint64_t first)
{
    uint64_t epoch;
    if (!self->coordinator || !zcq_coordinator_leading (self->coordinator, &epoch)
        || epoch <= self->epoch_written)
        return true;
    uint8_t *epochs = realloc (self->epochs, self->epochs_size + 16);
    if (!epochs)
        return false;
    self->epochs = epochs;
    zcq_put_be64 (epochs + self->epochs_size, epoch);
    zcq_put_be64 (epochs + self->epochs_size + 8, first);
    zcq_batch_meta (self->batch, ZCQ_EPOCHS_META, epochs, self->epochs_size + 16);
    self->epochs_size += 16; //  kept only if the commit succeeds (below)
    self->epoch_written = epoch;
    return true;
}

uint64_t
zcq_committer_head (const zcq_committer_t *self)
{
    return self->head;
}

bool
zcq_committer_recover (zcq_committer_t *self)
{
    //  a store that is still failed may show a head it could not read
    //  whole: take the head only once a reopen has succeeded
    if (zcq_store_recover (self->store) != ZCQ_OK || zcq_store_failed (self->store))
        return false;
    uint64_t epoch = zcq_store_epoch (self->store);
    if (epoch == self->epoch)
        return false;
    self->epoch = epoch;
    uint64_t head = zcq_store_head (self->store);
    if (head == self->head)
        return false;
    if (head < self->head)
        zsys_error ("writer: the reopened store's log head is %llu, below the %llu committed: "
                    "the store lost committed events",
                    (unsigned long long) head, (unsigned long long) self->head);
    else
        zsys_warning ("writer: the reopened store's log head is %llu, was %llu (a commit "
                      "reported as failed was written after all)",
                      (unsigned long long) head, (unsigned long long) self->head);
    self->head = head;
    return true;
}

//  Add a command to the WriteBatch: its events at the next positions, its
//  snapshot and its id with its result (DESIGN 1).
static void
s_stage (zcq_committer_t *self, zcq_command_t *command, uint64_t *head, int64_t time)
{
    uint64_t version = command->version - command->event_count + 1;
    size_t offset = 0, size;
    uint8_t *body;
    //  store.c DESIGN 14: a failure fails the whole commit
    if (command->truncate_before)
        zcq_batch_truncate (self->batch, command->stream, command->stream_len,
                            command->truncate_before);
    while ((body = zcq_command_next_event (command, &offset, &size))) {
        ++*head;
        zcq_put_be64 (body + ZCQ_EVENT_POSITION_OFFSET, *head);
        zcq_put_be64 (body + ZCQ_EVENT_TIME_OFFSET, (uint64_t) time);
        zcq_batch_event (self->batch, *head, command->stream, command->stream_len, version++, body,
                         size);
    }
    command->position = *head;
    if (command->snapshot)
        zcq_batch_snapshot (self->batch, command->stream, command->stream_len,
                            command->snapshot_schema, command->version, command->snapshot,
                            command->snapshot_size);
    size_t len = zcq_result_encode (self->result, command);
    zcq_batch_command (self->batch, command->id, command->id_len, time, self->result, len);
}

//  Fail every command of a batch that will not be written (F1).
static void
s_fail (zcq_cbatch_t *batch, const char *reason, zcq_err_t err)
{
    batch->written = false;
    for (size_t command = 0; command < batch->count; command++)
        zcq_command_fail (batch->commands[command], ZCQ_INTERNAL, "%s%s%s", reason, err ? ": " : "",
                          err ? zcq_strerror (err) : "");
}

void
zcq_committer_commit (zcq_committer_t *self, zcq_cbatch_t *const *group, size_t count,
                      int64_t time_us)
{
    //  F2: every fate below comes from this state, which the loop that
    //  stages does not change
    bool ready = !zcq_store_failed (self->store);
    uint64_t head = self->head;
    size_t staged = 0;
    zcq_batch_clear (self->batch);
    for (size_t index = 0; index < count; index++) {
        zcq_cbatch_t *batch = group[index];
        batch->kind = ZCQ_BATCH_COMMITTED;
        if (!ready)
            s_fail (batch, "storage failure, nothing written", ZCQ_IO);
        else if (batch->shard >= self->shard_count
                 || batch->generation < self->poisoned_below[batch->shard]
                 || batch->epoch != self->epoch)
            //  F3, F6: decided on state that included failed events, or
            //  on a store that has since been reopened
            s_fail (batch, "not written: an earlier commit failed", ZCQ_OK);
        else {
            batch->written = true;
            for (size_t command = 0; command < batch->count; command++)
                s_stage (self, batch->commands[command], &head, time_us);
            staged += batch->count;
        }
    }
    zcq_err_t err = ZCQ_OK;
    size_t epochs_size = self->epochs_size;
    uint64_t epoch_written = self->epoch_written;
    if (staged && !s_stage_epoch (self, self->head + 1))
        err = ZCQ_NOMEM;
    if (staged && err == ZCQ_OK)
        err = zcq_store_commit (self->store, self->batch, head);
    if (err != ZCQ_OK) {
        //  the history's new entry was not written either
        self->epochs_size = epochs_size;
        self->epoch_written = epoch_written;
    }
    if (err != ZCQ_OK) {
        S_STAT_ADD (self, commit_failures, 1);
        zsys_error ("writer: commit of %zu commands failed: %s", staged, zcq_strerror (err));
        for (size_t index = 0; index < count; index++)
            if (group[index]->written)
                s_fail (group[index], "storage failure, nothing written", err);
    }
    else if (staged) {
        S_STAT_ADD (self, commits, 1);
        S_STAT_ADD (self, events_written, head - self->head);
        self->head = head;
    }
    //  F2, F3: the poison marks move only now that every fate is known
    for (size_t index = 0; index < count; index++) {
        zcq_cbatch_t *batch = group[index];
        if (!batch->written && batch->shard < self->shard_count
            && self->poisoned_below[batch->shard] <= batch->generation)
            self->poisoned_below[batch->shard] = batch->generation + 1;
    }
}

//  --------------------------------------------------------------------------
//  The log stage: the committer and what follows a commit

struct zcq_log_stage_t {
    const zcq_node_env_t *env;
    zcq_committer_t *committer;
    zsock_t *publisher; //  PUB: events and heartbeats
    zcq_writer_t *heartbeat;
    int64_t next_heartbeat;
    int64_t next_expiry;
};

void
zcq_log_stage_destroy (zcq_log_stage_t **self_p)
{
    zcq_log_stage_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->publisher);
    zcq_committer_destroy (&self->committer);
    zcq_writer_destroy (&self->heartbeat);
    free (self);
    *self_p = NULL;
}

zcq_err_t
zcq_log_stage_new (zcq_log_stage_t **self_p, const zcq_node_env_t *env, char *error, size_t size)
{
    *self_p = NULL;
    zcq_log_stage_t *self = calloc (1, sizeof (zcq_log_stage_t));
    if (self) {
        self->env = env;
        self->committer
            = zcq_committer_new (env->store, env->stats, (uint32_t) env->config->shards);
        if (self->committer && env->coordinator)
            zcq_committer_set_coordinator (self->committer, env->coordinator);
        self->heartbeat = zcq_writer_new ();
        self->publisher = zsock_new (ZMQ_PUB);
    }
    if (!self || !self->committer || !self->heartbeat || !self->publisher) {
        zcq_log_stage_destroy (&self);
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    //  DESIGN 4: bounded queues per subscriber; drops are filled from the log
    zsock_set_sndhwm (self->publisher, S_PUBLISH_HWM);
    zsock_set_linger (self->publisher, 0);
    char endpoint[128];
    zcq_endpoint_events (env, endpoint, sizeof endpoint);
    if (zsock_bind (self->publisher, "%s", endpoint) < 0) {
        snprintf (error, size, "cannot bind %s", endpoint);
        zcq_log_stage_destroy (&self);
        return ZCQ_UNAVAILABLE;
    }
    self->next_heartbeat = zclock_mono ();
    self->next_expiry = zclock_mono () + S_EXPIRE_MS;
    *self_p = self;
    return ZCQ_OK;
}

uint64_t
zcq_log_stage_head (const zcq_log_stage_t *self)
{
    return zcq_committer_head (self->committer);
}

//  Publish the events of a committed command (DESIGN 4).
static void
s_publish (zcq_log_stage_t *self, zcq_command_t *command)
{
    void *socket = zsock_resolve (self->publisher);
    char topic[ZCQ_STREAM_MAX + 2];
    memcpy (topic, command->stream, command->stream_len);
    topic[command->stream_len] = '/';
    size_t offset = 0, size;
    const uint8_t *body;
    while ((body = zcq_command_next_event (command, &offset, &size))) {
        zmq_send (socket, topic, command->stream_len + 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (socket, body, size, ZMQ_DONTWAIT);
    }
}

static void
s_send_heartbeat (zcq_log_stage_t *self)
{
    zcq_writer_t *writer = self->heartbeat;
    const zcq_config_t *config = self->env->config;
    bool clustered = config->cluster[0] && config->group >= 0;
    uint64_t head = zcq_committer_head (self->committer);
    //  cluster.md section 4: with one replica a group's high watermark is
    //  its leader's head
    zcq_event_encode_heartbeat (writer, config->node, clustered ? config->group : -1, head, head);
    void *socket = zsock_resolve (self->publisher);
    zmq_send (socket, "$heartbeat", 10, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (socket, zcq_writer_data (writer), zcq_writer_size (writer), ZMQ_DONTWAIT);
    self->next_heartbeat = zclock_mono () + self->env->config->heartbeat_ms;
}

void
zcq_log_stage_commit (zcq_log_stage_t *self, zcq_cbatch_t *const *group, size_t count)
{
    if (zcq_committer_recover (self->committer))
        s_send_heartbeat (self); //  subscribers fill the gap from the log
    zcq_committer_commit (self->committer, group, count, zcq_now_us ());
    for (size_t index = 0; index < count; index++)
        for (size_t command = 0; group[index]->written && command < group[index]->count; command++)
            s_publish (self, group[index]->commands[command]);
}

int64_t
zcq_log_stage_tick (zcq_log_stage_t *self)
{
    bool failed = zcq_store_failed (self->env->store);
    if (failed && zcq_committer_recover (self->committer))
        s_send_heartbeat (self); //  healed without waiting for a command
    int64_t now = zclock_mono ();
    if (now >= self->next_heartbeat)
        s_send_heartbeat (self);
    if (now >= self->next_expiry) {
        size_t expired = 0;
        zcq_store_expire_commands (self->env->store, zcq_now_us (), S_EXPIRE_BATCH, &expired);
        self->next_expiry = now + (expired == S_EXPIRE_BATCH ? 1000 : S_EXPIRE_MS);
    }
    int64_t wait = self->next_heartbeat - zclock_mono ();
    if (zcq_store_failed (self->env->store) && wait > S_RECOVER_MS)
        wait = S_RECOVER_MS;
    return wait > 0 ? wait : 0;
}

//  --------------------------------------------------------------------------
//  The actor: the log stage behind the shards' pipes

typedef struct {
    const zcq_node_env_t *env;
    zsock_t *pipe;
    zsock_t **shards; //  PAIR per shard: COMMIT batches in
    zsock_t *acks;    //  PAIR to the router: COMMITTED out
    uint32_t shard_count;
    zcq_log_stage_t *stage;
    zcq_cbatch_t **group;
    size_t group_count;
    size_t group_capacity;
    bool terminated;
} self_t;

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (uint32_t shard = 0; self->shards && shard < self->shard_count; shard++) {
        if (self->shards[shard])
            zcq_cbatch_drain (self->shards[shard]);
        zsock_destroy (&self->shards[shard]);
    }
    free (self->shards);
    for (size_t index = 0; index < self->group_count; index++)
        zcq_cbatch_destroy (&self->group[index]);
    free (self->group);
    zsock_destroy (&self->acks);
    zcq_log_stage_destroy (&self->stage);
    free (self);
    *self_p = NULL;
}

static self_t *
s_new (zsock_t *pipe, const zcq_node_env_t *env)
{
    self_t *self = calloc (1, sizeof (self_t));
    if (!self) {
        zcq_actor_failed (pipe, "out of memory");
        return NULL;
    }
    self->env = env;
    self->pipe = pipe;
    self->shard_count = (uint32_t) env->config->shards;
    self->shards = calloc (self->shard_count, sizeof (zsock_t *));
    self->acks = zsock_new (ZMQ_PAIR);
    if (!self->shards || !self->acks) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    char error[256];
    if (zcq_log_stage_new (&self->stage, env, error, sizeof error) != ZCQ_OK) {
        zcq_actor_failed (pipe, "%s", error);
        s_destroy (&self);
        return NULL;
    }
    char endpoint[128];
    for (uint32_t shard = 0; shard < self->shard_count; shard++) {
        zcq_endpoint_shard_log (env, shard, endpoint, sizeof endpoint);
        self->shards[shard] = zsock_new (ZMQ_PAIR);
        if (!self->shards[shard]) {
            zcq_actor_failed (pipe, "out of memory");
            s_destroy (&self);
            return NULL;
        }
        zsock_set_sndhwm (self->shards[shard], 0);
        zsock_set_rcvhwm (self->shards[shard], 0);
        if (zsock_bind (self->shards[shard], "%s", endpoint) < 0) {
            zcq_actor_failed (pipe, "cannot bind %s", endpoint);
            s_destroy (&self);
            return NULL;
        }
    }
    //  committed batches go to the router, through the synchronous views
    //  when the domain has some
    if (env->synchronous_views)
        zcq_endpoint_sync (env, endpoint, sizeof endpoint);
    else
        zcq_endpoint_acks (env, endpoint, sizeof endpoint);
    zsock_set_sndhwm (self->acks, 0);
    zsock_set_rcvhwm (self->acks, 0);
    if (zsock_connect (self->acks, "%s", endpoint) < 0) {
        zcq_actor_failed (pipe, "cannot connect %s", endpoint);
        s_destroy (&self);
        return NULL;
    }
    return self;
}

//  Commit the group (DESIGN 2, 3, 6), publish what was written (F7), then
//  hand every batch to the router.
static void
s_commit_group (self_t *self)
{
    zcq_log_stage_commit (self->stage, self->group, self->group_count);
    for (size_t index = 0; index < self->group_count; index++)
        zcq_cbatch_send (&self->group[index], self->acks);
    self->group_count = 0;
}

//  Take every batch waiting on the shard sockets, up to S_GROUP_MAX
//  commands.
static void
s_gather (self_t *self)
{
    size_t commands = 0;
    bool more = true;
    while (more && commands < S_GROUP_MAX) {
        more = false;
        for (uint32_t shard = 0; shard < self->shard_count; shard++) {
            zcq_cbatch_t *batch = zcq_cbatch_recv (self->shards[shard], ZMQ_DONTWAIT);
            if (!batch)
                continue;
            if (self->group_count == self->group_capacity) {
                size_t capacity = self->group_capacity ? self->group_capacity * 2 : 64;
                zcq_cbatch_t **group = realloc (self->group, capacity * sizeof (zcq_cbatch_t *));
                if (!group) {
                    //  no room for a longer group: commit what is gathered,
                    //  then this batch alone (failing it here would skip
                    //  the poison mark of F3)
                    if (self->group_count)
                        s_commit_group (self);
                    zcq_log_stage_commit (self->stage, &batch, 1);
                    zcq_cbatch_send (&batch, self->acks);
                    continue;
                }
                self->group = group;
                self->group_capacity = capacity;
            }
            self->group[self->group_count++] = batch;
            commands += batch->count;
            more = true;
        }
    }
}

static void
s_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "HEAD"))
        zsock_send (self->pipe, "8", zcq_log_stage_head (self->stage));
    else
        zsys_error ("writer: unknown pipe command '%s'", command);
    zstr_free (&command);
}

void
zcq_writer_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-writer");
    self_t *self = s_new (pipe, args);
    if (!self)
        return;
    zsock_send (pipe, "is", 0, "");
    size_t item_count = 1 + self->shard_count;
    zmq_pollitem_t *items = calloc (item_count, sizeof (zmq_pollitem_t));
    items[0] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
    for (uint32_t shard = 0; shard < self->shard_count; shard++)
        items[1 + shard]
            = (zmq_pollitem_t) { zsock_resolve (self->shards[shard]), 0, ZMQ_POLLIN, 0 };
    while (!self->terminated) {
        int64_t wait = zcq_log_stage_tick (self->stage);
        if (zmq_poll (items, (int) item_count, wait) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        s_gather (self);
        if (self->group_count)
            s_commit_group (self);
    }
    free (items);
    s_destroy (&self);
}
