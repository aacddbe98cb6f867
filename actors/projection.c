/*  projection.c: the view host, an actor that keeps views up to date and
    answers their queries.

    DESIGN
    1.  A host is a catch-up subscription. On start it reads the log from
        position 1 in chunks (status catching_up, still answering queries
        between chunks), then follows the live events; a live event past
        position + 1 means messages were dropped, and the missing range is
        read from the log before the event is applied. Heartbeats carry the
        head, so a drop at the end of a burst is found too. Every event is
        applied exactly once, in position order.
    2.  A synchronous host sits between the log writer and the command
        router instead: it applies each committed batch, then passes it on,
        so its views have the events before the commands are acknowledged.
        It catches up completely before the node takes commands.
    3.  A rebuild builds a new table from position 1 in chunks while the old
        one keeps serving and following the live events; when the new one
        reaches the live position the two swap, in this thread, between two
        messages: no reader sees a half-built view. The new table takes its
        rows in bulk and is ordered in one pass before the swap
        (engine/view.c DESIGN 5); the old one is freed by a thread of its
        own, since nothing refers to it any more (freeing a million rows
        takes a good part of a second).
    4.  A query with min_position beyond the host's position is parked and
        answered as soon as the position is reached, or with `timeout`.
        Parked queries are bounded, counted with their envelopes: per host
        (S_PARKED_MAX, S_PARKED_BYTES_MAX) and per client
        (S_PARKED_PER_CLIENT, S_PARKED_CLIENT_BYTES), so that one client
        waiting for a position that never comes makes only its own next
        waits `unavailable`.
    5.  View snapshots (engine/viewsnap.c): every view-snapshot-every
        events, and at a clean stop, the host copies its tables into images
        (a memcpy per row, between two events) and a saver thread writes
        them to <data>/views/<view>.snap while the host goes on. On start a
        snapshot is loaded when it is whole, of the projection's version,
        and the event at its position is still the one it saw (a hash of
        the stored event: a log that lost its tail, or was replaced, does
        not match); the host then replays only the log after it. A view
        whose snapshot is older than its host's position skips the events
        its rows already have (its floor).
    6.  Cluster-wide views (cluster.md section 5; zcq_host_groups): the host
        follows every group of the cluster. Its own group (a replica's)
        through the local log as above, since that is the group's log and
        the fastest way to it; every other group through a feed
        (group_feed.c) on a replica of that group, its leader's endpoints
        in the coordinator's view. The host polls the coordinator's
        generation on every turn and points a feed at the replica the view
        shows, or at none: a group without a live replica does not advance,
        and queries are answered with the others. Each group's events are
        applied in that group's order; groups interleave as they come. The
        host's checkpoint is a position per group (positions; `position`
        and `head` of a reply are their sums), in snapshots too (format 2,
        engine/viewsnap.c DESIGN 4: with the cluster's id, so that a
        snapshot of another cluster is not paired with this one's logs). A
        view's floor is per group.
    7.  A rebuild of a cluster-wide view is DESIGN 3 per group: the new
        table reads the own group's log from the store as a single node
        does, and every other group's through a reader of its own
        (group_feed.c DESIGN 5) on the replica its live feed follows: `read`
        requests in chunks, one in flight per group, matched by rid, given
        up after a while, polled in this loop and never waited for. Each
        group's events are applied in its order, and never past the old
        table's position in that group (the reader's bound, raised as the
        live feed moves). The swap waits until the new table has, in every
        group, the old one's position at that moment; then the host's
        checkpoint (its position per group) is the new table's too, and a
        snapshot after the swap records it. A group with no live replica
        holds the rebuild back (its reader does not move either) while the
        old table keeps serving; it ends once the group has a replica again
        and the reader reaches the live feed's position.
*/
#include "zcq_read.h"
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define S_CHUNK               8192
#define S_PARKED_MAX          100000     //  queries waiting for a position, per host
#define S_PARKED_BYTES_MAX    (64 << 20) //  and the bytes of their requests
#define S_PARKED_PER_CLIENT   4096       //  DESIGN 4: what one client may park
#define S_PARKED_CLIENT_BYTES (8 << 20)

//  What one client has parked here.
typedef struct {
    size_t count;
    size_t bytes;
} s_parker_t;

static void
s_parker_free (s_parker_t **parker_p)
{
    free (*parker_p);
    *parker_p = NULL;
}

typedef enum { S_UPSERT, S_PATCH, S_DELETE } s_mode_t;

//  One change a handler asked for, applied when it returns.
typedef struct {
    s_mode_t mode;
    zcq_fields_t *fields; //  S_UPSERT, S_PATCH: the change's own builder
    char *key;
    size_t key_len;
    size_t key_capacity;
} s_pending_t;

//  What a projection handler works on.
struct zcq_view_t {
    zcq_viewtable_t *table;
    s_pending_t *pending; //  the handler's changes, in call order
    size_t pending_count;
    size_t pending_capacity; //  entries keep their buffers between events
    void *context;           //  the running handler definition's
    zcq_doc_t *row_doc;      //  zcq_view_row's, decoded from
    zcq_writer_t *row_bytes; //  a copy of the row (later changes free its own)
    bool failed;
};

typedef struct {
    zcq_view_info_t *info;
    const zcq_projection_def_t *def;
    zcq_viewtable_t *table;
    zcq_viewtable_t *rebuild; //  DESIGN 3: the table being rebuilt
    uint64_t rebuild_position;
    zcq_feed_t **readers; //  DESIGN 7: per group, NULL for the own group
    uint64_t floor;       //  DESIGN 5: events up to here are in the loaded rows
    uint64_t *floors;     //  DESIGN 6: the same per group (other groups' only)
} s_view_t;

//  Images on their way to disk (DESIGN 5).
typedef struct {
    pthread_t thread;
    size_t count;
    zcq_viewimage_t **images;
    char **paths;
    bool *saved;
    uint64_t position;
    atomic_bool done;
} s_saver_t;

typedef struct {
    const zcq_node_env_t *env;
    zsock_t *pipe;
    zsock_t *queries;   //  PAIR with the query router
    zsock_t *events;    //  SUB (asynchronous host)
    zsock_t *committed; //  PAIR from the log writer (synchronous host)
    zsock_t *acks;      //  PAIR to the command router (synchronous host)
    bool synchronous;
    bool versioned; //  the domain has event types past their first version
    s_view_t *views;
    size_t view_count;
    uint64_t position;   //  last position applied to every view
    uint64_t known_head; //  from heartbeats
    uint64_t epoch;      //  synchronous host: the store's, last looked at
    bool caught_up;
    zcq_doc_t *doc;
    zcq_event_t event;
    struct zcq_view_t context;
    zcq_query_t *parked;
    size_t parked_count;
    size_t parked_bytes;
    zhashx_t *parkers; //  client (hex identity) -> s_parker_t
    zcq_writer_t *writer;
    zcq_writer_t *value;
    bool terminated;
    uint64_t snapshot_every; //  DESIGN 5; 0 = no snapshots
    uint64_t snapshot_at;    //  position of the last snapshot taken or loaded
    s_saver_t *saver;
    pthread_t reaper; //  DESIGN 3: frees a replaced table
    bool reaping;
    //  DESIGN 6: cluster-wide views
    size_t groups;       //  the cluster's groups; 0 when not cluster-wide
    int own_group;       //  the group of the local log; -1 for none
    zcq_feed_t **feeds;  //  per group, NULL for the own group
    uint64_t generation; //  the coordinator's, when the feeds were pointed
    char cluster[64];    //  the cluster's id
} self_t;

//  --------------------------------------------------------------------------
//  The handler API

//  Apply the changes a handler left pending, in the order it asked for
//  them: each one's fields go into its row's record where it is
//  (engine/view.c DESIGN 4). A change that cannot be applied (overflow,
//  out of memory) sets failed and leaves its row as it was. (A handler
//  that failed, zcq_event_fail, has none applied: s_apply_to.)
static void
s_flush (struct zcq_view_t *view)
{
    for (size_t index = 0; index < view->pending_count; index++) {
        s_pending_t *change = &view->pending[index];
        if (change->mode == S_DELETE) {
            zcq_viewtable_delete (view->table, change->key, change->key_len);
            continue;
        }
        if (!zcq_fields_ok (change->fields)) {
            view->failed = true; //  this row's change is lost, not the others'
            continue;
        }
        zcq_err_t err = zcq_viewtable_merge (view->table, change->key, change->key_len,
                                             change->fields, change->mode == S_UPSERT);
        if (err != ZCQ_OK && err != ZCQ_NOT_FOUND) //  a patch of no row changes nothing
            view->failed = true;
    }
    view->pending_count = 0;
}

//  Drop every pending change (keep the buffers).
static void
s_pending_free (struct zcq_view_t *view)
{
    for (size_t index = 0; index < view->pending_capacity; index++) {
        zcq_fields_destroy (&view->pending[index].fields);
        free (view->pending[index].key);
    }
    free (view->pending);
    view->pending = NULL;
    view->pending_count = view->pending_capacity = 0;
}

//  A new pending change of the row at key, with a builder of its own for
//  an upsert or a patch; NULL (and the handler failed) when out of memory.
static s_pending_t *
s_change (zcq_view_t *self, const char *key, s_mode_t mode)
{
    if (self->pending_count == self->pending_capacity) {
        size_t capacity = self->pending_capacity ? self->pending_capacity * 2 : 4;
        s_pending_t *pending = realloc (self->pending, capacity * sizeof (s_pending_t));
        if (!pending) {
            self->failed = true;
            return NULL;
        }
        memset (pending + self->pending_capacity, 0,
                (capacity - self->pending_capacity) * sizeof (s_pending_t));
        self->pending = pending;
        self->pending_capacity = capacity;
    }
    s_pending_t *change = &self->pending[self->pending_count];
    size_t len = strlen (key);
    if (len + 1 > change->key_capacity) {
        char *buffer = realloc (change->key, len + 1);
        if (!buffer) {
            self->failed = true;
            return NULL;
        }
        change->key = buffer;
        change->key_capacity = len + 1;
    }
    if (mode != S_DELETE) {
        if (!change->fields && !(change->fields = zcq_fields_new ())) {
            self->failed = true;
            return NULL;
        }
        zcq_fields_reset (change->fields);
    }
    memcpy (change->key, key, len + 1);
    change->key_len = len;
    change->mode = mode;
    self->pending_count++;
    return change;
}

zcq_fields_t *
zcq_view_upsert (zcq_view_t *self, const char *key)
{
    s_pending_t *change = s_change (self, key, S_UPSERT);
    return change ? change->fields : NULL;
}

zcq_fields_t *
zcq_view_patch (zcq_view_t *self, const char *key)
{
    s_pending_t *change = s_change (self, key, S_PATCH);
    return change ? change->fields : NULL;
}

void
zcq_view_delete (zcq_view_t *self, const char *key)
{
    s_change (self, key, S_DELETE);
}

void *
zcq_view_context (const zcq_view_t *self)
{
    return self->context;
}

const zcq_value_t *
zcq_view_row (zcq_view_t *self, const char *key)
{
    size_t row_len;
    const void *row = zcq_viewtable_get (self->table, key, strlen (key), &row_len);
    if (!row)
        return NULL;
    zcq_writer_reset (self->row_bytes);
    zcq_writer_raw (self->row_bytes, row, row_len);
    if (!zcq_writer_ok (self->row_bytes)
        || zcq_doc_decode_trusted (self->row_doc, zcq_writer_data (self->row_bytes), row_len)
               != ZCQ_OK)
        return NULL;
    return zcq_doc_root (self->row_doc);
}

//  --------------------------------------------------------------------------
//  Applying events

static const zcq_handler_def_t *
s_handler (const zcq_projection_def_t *def, const zcq_event_t *event)
{
    for (const zcq_handler_def_t *handler = def->handlers; handler->type; handler++)
        if (strcmp (handler->type, event->type) == 0
            && (!handler->aggregate || strcmp (handler->aggregate, event->aggregate) == 0))
            return handler;
    return NULL;
}

//  A handler failed on an event (zcq_event_fail): none of its changes is
//  applied, and the view says so in `views`, with the first reason.
static void
s_view_failed (s_view_t *view, const zcq_event_t *event)
{
    zsys_error ("view %s: handler failed at position %llu, its changes not applied: %s",
                view->def->view, (unsigned long long) event->position, event->error);
    if (atomic_load_explicit (&view->info->failed, memory_order_acquire))
        return;
    snprintf (view->info->error, sizeof view->info->error, "position %llu: %s",
              (unsigned long long) event->position, event->error);
    atomic_store_explicit (&view->info->failed, true, memory_order_release);
}

//  Apply an event to one table of a view.
static void
s_apply_to (self_t *self, s_view_t *view, zcq_viewtable_t *table, const zcq_event_t *event)
{
    const zcq_handler_def_t *handler = s_handler (view->def, event);
    if (!handler)
        return;
    self->context.table = table;
    self->context.pending_count = 0;
    self->context.failed = false;
    self->context.context = handler->context;
    //  most views keep a row per aggregate: fetch its slot while the
    //  handler reads the event
    zcq_viewtable_prefetch (table, event->key, strlen (event->key));
    //  a failure is of this handler's run: the event goes on to other views
    zcq_event_t *run = (zcq_event_t *) event;
    run->failed = false;
    run->error[0] = 0;
    if (self->versioned || event->type_version != 1) {
        //  an event of an older version of its type is brought to the
        //  current one first (engine/event.c DESIGN 6)
        const zcq_aggregate_def_t *aggregate
            = zcq_domain_aggregate (self->env->domain, event->aggregate, strlen (event->aggregate));
        const zcq_event_def_t *def = aggregate ? zcq_domain_event (aggregate, event->type) : NULL;
        zcq_err_t err = def ? zcq_event_upcast (run, def) : ZCQ_OK;
        if (err != ZCQ_OK && !event->failed)
            zcq_event_fail (event, "upcasting: %s", zcq_strerror (err));
    }
    if (!event->failed)
        handler->apply (&self->context, event);
    if (event->failed)
        s_view_failed (view, event);
    else {
        s_flush (&self->context);
        if (self->context.failed)
            zsys_error ("view %s: event %llu left the row unchanged (integer overflow, out of "
                        "memory or bad row)",
                        view->def->view, (unsigned long long) event->position);
    }
    self->context.pending_count = 0;
    atomic_fetch_add_explicit (&view->info->applied, 1, memory_order_relaxed);
}

//  Read an event body where it lies (engine/event.c); false when it is not
//  an event.
static bool
s_decode (self_t *self, const void *body, size_t len)
{
    if (zcq_event_read (&self->event, body, len) != ZCQ_OK) {
        zsys_error ("view host: an event body does not decode; skipped");
        return false;
    }
    return true;
}

//  Apply the event at the next position to every view's live table.
static void
s_apply (self_t *self, const void *body, size_t len, uint64_t position)
{
    if (s_decode (self, body, len))
        for (size_t index = 0; index < self->view_count; index++)
            if (position > self->views[index].floor)
                s_apply_to (self, &self->views[index], self->views[index].table, &self->event);
    self->position = position;
}

//  A read of the log up to `until`: the positions it skips were removed
//  by truncation (store.c DESIGN 14), the log's only holes.
typedef struct {
    self_t *self;
    uint64_t until;
    size_t read;
} s_fill_t;

static int
s_apply_stored (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_fill_t *fill = arg;
    if (position <= fill->self->position || position > fill->until)
        return 1;
    fill->read++;
    s_apply (fill->self, body, len, position);
    return 0;
}

//  --------------------------------------------------------------------------
//  Cluster-wide views (DESIGN 6)

//  The host's position in a group's log, and what it knows of the head.
static uint64_t
s_group_position (const self_t *self, size_t group)
{
    if ((int) group == self->own_group)
        return self->position;
    return self->feeds && self->feeds[group] ? zcq_feed_position (self->feeds[group]) : 0;
}

static uint64_t
s_group_head (const self_t *self, size_t group)
{
    if ((int) group == self->own_group)
        return zcq_store_head (self->env->store);
    return self->feeds && self->feeds[group] ? zcq_feed_head (self->feeds[group]) : 0;
}

//  The position of a reply: the local log's, or the sum of every group's.
static uint64_t
s_total_position (const self_t *self)
{
    if (!self->groups)
        return self->position;
    uint64_t total = 0;
    for (size_t group = 0; group < self->groups; group++)
        total += s_group_position (self, group);
    return total;
}

static uint64_t
s_total_head (const self_t *self)
{
    if (!self->groups)
        return zcq_store_head (self->env->store);
    uint64_t total = 0;
    for (size_t group = 0; group < self->groups; group++)
        total += s_group_head (self, group);
    return total;
}

//  Write `positions` and `heads` (two pairs) into a reply map.
static void
s_write_positions (const self_t *self, zcq_writer_t *writer)
{
    for (int which = 0; which < 2; which++) {
        zcq_writer_str (writer, which ? "heads" : "positions");
        zcq_writer_map (writer, self->groups);
        for (size_t group = 0; group < self->groups; group++) {
            char name[24];
            snprintf (name, sizeof name, "%zu", group);
            zcq_writer_str (writer, name);
            zcq_writer_uint (writer,
                             which ? s_group_head (self, group) : s_group_position (self, group));
        }
    }
}

//  An event of another group, the next in its log (zcq_feed_apply_fn).
static void
s_apply_remote (void *arg, int group, const zcq_event_t *event)
{
    self_t *self = arg;
    for (size_t index = 0; index < self->view_count; index++)
        if (event->position > self->views[index].floors[group])
            s_apply_to (self, &self->views[index], self->views[index].table, event);
}

//  The replica to follow a group through: its leader when live, else any
//  live replica, else NULL.
static const zcq_cluster_node_t *
s_replica_of (const zcq_cluster_view_t *view, size_t group)
{
    if (group >= view->group_count)
        return NULL;
    const zcq_cluster_group_t *state = &view->groups[group];
    const zcq_cluster_node_t *leader = state->leader ? zcq_cluster_view_node (view, state->leader)
                                                     : NULL;
    if (leader && leader->group == (int) group && leader->events && leader->query)
        return leader;
    for (size_t index = 0; index < state->replica_count; index++)
        if (state->replicas[index]->events && state->replicas[index]->query)
            return state->replicas[index];
    return NULL;
}

//  Point a rebuild's readers at the replicas of the coordinator's view
//  (DESIGN 7).
static void
s_point_readers (self_t *self, s_view_t *view, const zcq_cluster_view_t *cluster)
{
    for (size_t group = 0; group < self->groups; group++) {
        if (!view->readers[group])
            continue;
        const zcq_cluster_node_t *replica = s_replica_of (cluster, group);
        if (zcq_feed_connect (view->readers[group], replica ? replica->events : NULL,
                              replica ? replica->query : NULL))
            zsys_info ("view %s: rebuild reads group %zu through %s (at position %llu)",
                       view->def->view, group,
                       replica ? replica->node : "no replica: the rebuild waits for one",
                       (unsigned long long) zcq_feed_position (view->readers[group]));
    }
}

//  Point every feed (and rebuild reader) at the replica the coordinator's
//  view shows, when the view changed since the last time.
static void
s_point_feeds (self_t *self)
{
    uint64_t generation = zcq_coordinator_generation (self->env->coordinator);
    if (generation == self->generation)
        return;
    self->generation = generation;
    zcq_cluster_view_t *view = zcq_coordinator_view (self->env->coordinator);
    if (!view)
        return;
    for (size_t group = 0; group < self->groups; group++) {
        if (!self->feeds[group])
            continue;
        const zcq_cluster_node_t *replica = s_replica_of (view, group);
        if (zcq_feed_connect (self->feeds[group], replica ? replica->events : NULL,
                              replica ? replica->query : NULL))
            zsys_info ("view host: group %zu followed through %s (at position %llu)", group,
                       replica ? replica->node : "no replica: it does not advance",
                       (unsigned long long) zcq_feed_position (self->feeds[group]));
    }
    for (size_t index = 0; index < self->view_count; index++)
        if (self->views[index].readers)
            s_point_readers (self, &self->views[index], view);
    zcq_cluster_view_release (&view);
}

//  Take what the feeds have (up to a chunk each).
static void
s_pump_feeds (self_t *self)
{
    for (size_t group = 0; group < self->groups; group++)
        if (self->feeds[group])
            zcq_feed_pump (self->feeds[group], s_apply_remote, self, S_CHUNK);
}

size_t
zcq_host_groups (const zcq_node_env_t *env)
{
    if (!env->coordinator || (!env->config->role_views && env->config->views != ZCQ_VIEWS_CLUSTER))
        return 0;
    zcq_cluster_view_t *view = zcq_coordinator_view (env->coordinator);
    size_t groups = view ? view->group_count : 0;
    zcq_cluster_view_release (&view);
    return groups;
}

//  A group as a map key: decimal digits without a sign or a leading zero.
static bool
s_group_key (const zcq_value_t *key, size_t groups, size_t *group)
{
    const char *text;
    size_t len;
    if (!zcq_value_str (key, &text, &len) || len == 0 || len > 5 || (len > 1 && text[0] == '0'))
        return false;
    size_t value = 0;
    for (size_t index = 0; index < len; index++) {
        if (text[index] < '0' || text[index] > '9')
            return false;
        value = value * 10 + (size_t) (text[index] - '0');
    }
    *group = value;
    return value < groups;
}

bool
zcq_host_parse_wait (zcq_query_t *query, const zcq_node_env_t *env)
{
    int64_t min_position, timeout_ms, group;
    if (!zcq_query_int (query, "min_position", 0, INT64_MAX, 0, &min_position)
        || !zcq_query_int (query, "timeout_ms", 0, 3600000, 1000, &timeout_ms)
        || !zcq_query_int (query, "group", 0, ZCQ_CLUSTER_SLOTS_MAX - 1, -1, &group))
        return false;
    size_t groups = zcq_host_groups (env);
    //  not cluster-wide: the views follow the node's own group alone
    int own = env->coordinator ? env->config->group : -1;
    if (group >= 0 && (groups ? (size_t) group >= groups : group != own)) {
        zcq_query_fail (query, ZCQ_INVALID, "'group' %lld is not a group these views follow",
                        (long long) group);
        return false;
    }
    query->min_position = (uint64_t) min_position;
    query->wait_group = groups ? (int) group : -1;
    query->deadline = zclock_mono () + timeout_ms;
    const zcq_value_t *wanted = zcq_value_get (query->root, "min_positions");
    if (!wanted || zcq_value_type (wanted) == ZCQ_TYPE_NIL)
        return true;
    if (zcq_value_type (wanted) != ZCQ_TYPE_MAP) {
        zcq_query_fail (query, ZCQ_INVALID,
                        "'min_positions' must be a map from group (a string) to a position");
        return false;
    }
    size_t count = zcq_value_size (wanted);
    if (groups && count && !(query->min_positions = calloc (groups, sizeof (uint64_t)))) {
        zcq_query_fail (query, ZCQ_INTERNAL, "out of memory");
        return false;
    }
    query->min_positions_count = groups;
    for (size_t index = 0; index < count; index++) {
        size_t key;
        int64_t position;
        bool known = s_group_key (zcq_value_key_at (wanted, index), groups ? groups : 16384, &key)
                  && (groups || (int) key == own);
        if (!known) {
            zcq_query_fail (query, ZCQ_INVALID,
                            "'min_positions' keys must be groups these views follow, as "
                            "decimal strings (\"0\", \"1\", ...)");
            return false;
        }
        if (!zcq_value_int (zcq_value_val_at (wanted, index), &position) || position < 0) {
            zcq_query_fail (query, ZCQ_INVALID,
                            "'min_positions' values must be non-negative integers");
            return false;
        }
        if (groups)
            query->min_positions[key] = (uint64_t) position;
        else if ((uint64_t) position > query->min_position)
            query->min_position = (uint64_t) position; //  the own group's alone
    }
    return true;
}

//  Whether the host has every position a query waits for.
static bool
s_reached (const self_t *self, const zcq_query_t *query)
{
    for (size_t group = 0; query->min_positions && group < query->min_positions_count; group++)
        if (query->min_positions[group] > s_group_position (self, group))
            return false;
    if (query->wait_group >= 0)
        return s_group_position (self, (size_t) query->wait_group) >= query->min_position;
    return s_total_position (self) >= query->min_position;
}

//  Read and apply the log up to position `until` (inclusive), or at most
//  `limit` events. Returns how many were applied.
static uint64_t
s_fill (self_t *self, uint64_t until, size_t limit)
{
    uint64_t before = self->position;
    if (until <= before)
        return 0;
    uint64_t wanted = until - before;
    if (limit && wanted > limit)
        wanted = limit;
    s_fill_t fill = { self, until, 0 };
    zcq_err_t err
        = zcq_store_read_log (self->env->store, before + 1, (size_t) wanted, s_apply_stored, &fill);
    if (err != ZCQ_OK)
        zsys_error ("view host: reading the log: %s", zcq_strerror (err));
    else if (fill.read < wanted && until <= zcq_store_head (self->env->store))
        self->position = until; //  the rest up to until was removed
    return self->position - before;
}

typedef struct {
    self_t *self;
    s_view_t *view;
    size_t read; //  events of the local log read
} s_rebuild_t;

static int
s_rebuild_stored (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_rebuild_t *rebuild = arg;
    if (position > rebuild->self->position)
        return 1; //  past a removed range: the live table has not applied it yet
    rebuild->read++;
    if (s_decode (rebuild->self, body, len))
        s_apply_to (rebuild->self, rebuild->view, rebuild->view->rebuild, &rebuild->self->event);
    rebuild->view->rebuild_position = position;
    return 0;
}

static void *
s_reaper_run (void *arg)
{
    zcq_actor_name ("zcq-views-free");
    zcq_viewtable_t *table = arg;
    zcq_viewtable_destroy (&table);
    return NULL;
}

//  Wait for the reaper thread, if any.
static void
s_reaper_join (self_t *self)
{
    if (self->reaping) {
        pthread_join (self->reaper, NULL);
        self->reaping = false;
    }
}

//  Free a table no one refers to any more, on a thread of its own
//  (DESIGN 3); here when no thread can be had.
static void
s_reap (self_t *self, zcq_viewtable_t **table_p)
{
    s_reaper_join (self);
    if (*table_p && pthread_create (&self->reaper, NULL, s_reaper_run, *table_p) == 0) {
        self->reaping = true;
        *table_p = NULL;
    }
    else
        zcq_viewtable_destroy (table_p);
}

//  An event of another group for a rebuild, the next in its log
//  (zcq_feed_apply_fn, DESIGN 7).
static void
s_rebuild_remote (void *arg, int group, const zcq_event_t *event)
{
    s_rebuild_t *rebuild = arg;
    s_apply_to (rebuild->self, rebuild->view, rebuild->view->rebuild, event);
}

static void
s_readers_destroy (self_t *self, s_view_t *view)
{
    for (size_t group = 0; view->readers && group < self->groups; group++)
        zcq_feed_destroy (&view->readers[group]);
    free (view->readers);
    view->readers = NULL;
}

//  Whether the new table has, in every group, the old one's position.
static bool
s_rebuild_reached (const self_t *self, const s_view_t *view)
{
    if (view->rebuild_position < self->position)
        return false;
    for (size_t group = 0; view->readers && group < self->groups; group++)
        if (view->readers[group]
            && zcq_feed_position (view->readers[group]) < s_group_position (self, group))
            return false;
    return true;
}

//  Advance a rebuild by one chunk of the local log and what the readers
//  have; swap when it has caught up (DESIGN 3, 7).
static void
s_rebuild_step (self_t *self, s_view_t *view)
{
    s_rebuild_t rebuild = { self, view, 0 };
    if (view->rebuild_position < self->position) {
        uint64_t wanted = self->position - view->rebuild_position;
        if (wanted > S_CHUNK)
            wanted = S_CHUNK;
        if (zcq_store_read_log (self->env->store, view->rebuild_position + 1, (size_t) wanted,
                                s_rebuild_stored, &rebuild)
                == ZCQ_OK
            && rebuild.read < wanted)
            view->rebuild_position = self->position; //  the rest was removed
    }
    for (size_t group = 0; view->readers && group < self->groups; group++)
        if (view->readers[group]) {
            zcq_feed_read_until (view->readers[group], s_group_position (self, group));
            zcq_feed_pump (view->readers[group], s_rebuild_remote, &rebuild, 0);
        }
    if (s_rebuild_reached (self, view)) {
        //  the new table was filled in bulk: order it before it serves
        zcq_err_t err = zcq_viewtable_settle (view->rebuild);
        if (err != ZCQ_OK)
            zsys_warning ("view %s: ordering the rebuilt rows: %s (left to its first read)",
                          view->def->view, zcq_strerror (err));
        s_reap (self, &view->table);
        view->table = view->rebuild;
        view->rebuild = NULL;
        view->floor = 0; //  the new table has every event
        for (size_t group = 0; group < self->groups; group++)
            view->floors[group] = 0;
        s_readers_destroy (self, view);
        atomic_store (&view->info->status, self->caught_up ? ZCQ_VIEW_LIVE : ZCQ_VIEW_CATCHING_UP);
        zsys_info ("view %s: rebuilt to position %llu", view->def->view,
                   (unsigned long long) s_total_position (self));
    }
}

//  Whether a rebuild has local work for the next turn, rather than
//  waiting for readers' replies (DESIGN 7).
static bool
s_rebuild_busy (const self_t *self, const s_view_t *view)
{
    return view->rebuild && view->rebuild_position < self->position;
}

static zcq_err_t
s_start_rebuild (self_t *self, s_view_t *view)
{
    if (view->rebuild)
        return ZCQ_OK;
    view->rebuild = zcq_viewtable_new (view->def->indexes);
    if (!view->rebuild)
        return ZCQ_NOMEM;
    if (self->groups) {
        //  DESIGN 7: a reader per other group, on its live feed's replica
        bool ok = (view->readers = calloc (self->groups, sizeof (zcq_feed_t *))) != NULL;
        for (size_t group = 0; ok && group < self->groups; group++)
            if ((int) group != self->own_group)
                ok = (view->readers[group] = zcq_feed_new_reader ((int) group)) != NULL;
        if (!ok) {
            s_readers_destroy (self, view);
            zcq_viewtable_destroy (&view->rebuild);
            return ZCQ_NOMEM;
        }
        zcq_cluster_view_t *cluster = zcq_coordinator_view (self->env->coordinator);
        if (cluster)
            s_point_readers (self, view, cluster);
        zcq_cluster_view_release (&cluster);
    }
    //  about as many rows as now: the hash table sized once
    zcq_viewtable_reserve (view->rebuild, zcq_viewtable_count (view->table));
    view->rebuild_position = 0;
    atomic_store (&view->info->status, ZCQ_VIEW_REBUILDING);
    return ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  Queries (DESIGN 4)

typedef struct {
    zcq_writer_t *writer;
    const char *last_key;
    size_t last_len;
} s_page_t;

static int
s_add_row (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    s_page_t *page = arg;
    zcq_writer_raw (page->writer, row, row_len);
    page->last_key = key;
    page->last_len = key_len;
    return 0;
}

static void
s_reply_open_view (self_t *self, zcq_query_t *query, size_t *mark, size_t *count)
{
    *mark = zcq_query_reply_open (query, self->writer, count);
    zcq_writer_str (self->writer, "position");
    zcq_writer_uint (self->writer, s_total_position (self));
    zcq_writer_str (self->writer, "head");
    zcq_writer_uint (self->writer, s_total_head (self));
    *count += 2;
    if (self->groups) {
        s_write_positions (self, self->writer);
        *count += 2;
    }
}

//  The optional index + value of list and count; false when the query
//  failed. *field is NULL when the query has no index.
static bool
s_index_args (self_t *self, s_view_t *view, zcq_query_t *query, const char **field, char *buffer,
              size_t size)
{
    *field = NULL;
    const zcq_value_t *index = zcq_value_get (query->root, "index");
    if (!index || zcq_value_type (index) == ZCQ_TYPE_NIL)
        return true;
    if (!zcq_value_copy_str (index, buffer, size)) {
        zcq_query_fail (query, ZCQ_INVALID, "'index' must be a string");
        return false;
    }
    if (!zcq_viewtable_has_index (view->table, buffer)) {
        zcq_query_fail (query, ZCQ_UNKNOWN, "view %s has no index '%s'", view->def->view, buffer);
        return false;
    }
    const zcq_value_t *value = zcq_value_get (query->root, "value");
    if (!value) {
        zcq_query_fail (query, ZCQ_INVALID, "'value' is required with 'index'");
        return false;
    }
    zcq_writer_reset (self->value);
    zcq_writer_value (self->value, value);
    *field = buffer;
    return true;
}

static void
s_op_get (self_t *self, s_view_t *view, zcq_query_t *query)
{
    const char *key;
    size_t key_len;
    const zcq_value_t *key_value = zcq_value_get (query->root, "key");
    if (!zcq_value_str (key_value, &key, &key_len)) {
        zcq_query_fail (query, ZCQ_INVALID,
                        key_value ? "'key' must be a string" : "'key' is required");
        return;
    }
    size_t mark, count, row_len;
    s_reply_open_view (self, query, &mark, &count);
    const void *row = zcq_viewtable_get (view->table, key, key_len, &row_len);
    zcq_writer_str (self->writer, "row");
    if (row)
        zcq_writer_raw (self->writer, row, row_len);
    else
        zcq_writer_nil (self->writer);
    zcq_query_reply_close (query, self->writer, mark, count + 1);
}

static void
s_op_list (self_t *self, s_view_t *view, zcq_query_t *query)
{
    char buffer[256];
    const char *field;
    if (!s_index_args (self, view, query, &field, buffer, sizeof buffer))
        return;
    const zcq_value_t *limit_value = zcq_value_get (query->root, "limit");
    int64_t limit = 100;
    if (limit_value && zcq_value_type (limit_value) != ZCQ_TYPE_NIL
        && (!zcq_value_int (limit_value, &limit) || limit < 1 || limit > 1000)) {
        zcq_query_fail (query, ZCQ_INVALID, "'limit' must be an integer from 1 to 1000");
        return;
    }
    const char *after = NULL;
    size_t after_len = 0;
    const zcq_value_t *after_value = zcq_value_get (query->root, "after");
    if (after_value && zcq_value_type (after_value) != ZCQ_TYPE_NIL
        && !zcq_value_str (after_value, &after, &after_len)) {
        zcq_query_fail (query, ZCQ_INVALID, "'after' must be a cursor string");
        return;
    }
    size_t mark, count;
    s_reply_open_view (self, query, &mark, &count);
    zcq_writer_str (self->writer, "rows");
    size_t rows_mark = zcq_writer_array_open (self->writer);
    s_page_t page = { self->writer, NULL, 0 };
    bool more = false;
    size_t rows;
    if (field)
        rows = zcq_viewtable_list_value (view->table, field, zcq_writer_data (self->value),
                                         zcq_writer_size (self->value), after, after_len,
                                         (size_t) limit, s_add_row, &page, &more);
    else
        rows = zcq_viewtable_list (view->table, after, after_len, (size_t) limit, s_add_row, &page,
                                   &more);
    zcq_writer_array_close (self->writer, rows_mark, rows);
    zcq_writer_str (self->writer, "next");
    if (more && page.last_key)
        zcq_writer_strn (self->writer, page.last_key, page.last_len);
    else
        zcq_writer_nil (self->writer);
    zcq_query_reply_close (query, self->writer, mark, count + 2);
}

static void
s_op_count (self_t *self, s_view_t *view, zcq_query_t *query)
{
    char buffer[256];
    const char *field;
    if (!s_index_args (self, view, query, &field, buffer, sizeof buffer))
        return;
    size_t total = field
                     ? zcq_viewtable_count_value (view->table, field, zcq_writer_data (self->value),
                                                  zcq_writer_size (self->value))
                     : zcq_viewtable_count (view->table);
    size_t mark, count;
    s_reply_open_view (self, query, &mark, &count);
    zcq_writer_str (self->writer, "count");
    zcq_writer_uint (self->writer, total);
    zcq_query_reply_close (query, self->writer, mark, count + 1);
}

//  A rebuild asked for while one runs joins it (answered with `running`
//  true): requests in a loop cost one rebuild at a time, never a restart.
static void
s_op_rebuild (self_t *self, s_view_t *view, zcq_query_t *query)
{
    bool running = view->rebuild != NULL;
    zcq_err_t err = s_start_rebuild (self, view);
    if (err != ZCQ_OK) {
        zcq_query_fail (query, ZCQ_INTERNAL, "cannot start the rebuild: %s", zcq_strerror (err));
        return;
    }
    size_t mark, count;
    s_reply_open_view (self, query, &mark, &count);
    zcq_writer_str (self->writer, "view");
    zcq_writer_str (self->writer, view->def->view);
    zcq_writer_str (self->writer, "status");
    zcq_writer_str (self->writer, "rebuilding");
    zcq_writer_str (self->writer, "running");
    zcq_writer_bool (self->writer, running);
    zcq_query_reply_close (query, self->writer, mark, count + 3);
}

static s_view_t *
s_view_of (self_t *self, const zcq_query_t *query)
{
    for (size_t index = 0; index < self->view_count; index++)
        if (self->views[index].info == query->view)
            return &self->views[index];
    return NULL;
}

static void
s_answer (self_t *self, zcq_query_t *query, s_view_t *view)
{
    if (streq (query->op, "get"))
        s_op_get (self, view, query);
    else if (streq (query->op, "list"))
        s_op_list (self, view, query);
    else if (streq (query->op, "count"))
        s_op_count (self, view, query);
    else if (streq (query->op, "rebuild"))
        s_op_rebuild (self, view, query);
    else
        zcq_query_fail (query, ZCQ_UNKNOWN, "unknown op '%s'", query->op);
    zmq_send (zsock_resolve (self->queries), &query, sizeof query, 0);
}

//  Send a timeout reply for a parked query.
static void
s_timeout (self_t *self, zcq_query_t *query)
{
    zcq_writer_t *writer = self->writer;
    zcq_writer_reset (writer);
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 5;
    if (query->rid) {
        zcq_writer_str (writer, "rid");
        zcq_writer_value (writer, query->rid);
        count++;
    }
    zcq_writer_str (writer, "ok");
    zcq_writer_bool (writer, false);
    zcq_writer_str (writer, "error");
    zcq_writer_str (writer, "timeout");
    zcq_writer_str (writer, "message");
    zcq_writer_str (writer, "the view did not reach min_position in time");
    zcq_writer_str (writer, "position");
    zcq_writer_uint (writer, s_total_position (self));
    zcq_writer_str (writer, "head");
    zcq_writer_uint (writer, s_total_head (self));
    if (self->groups) {
        s_write_positions (self, writer);
        count += 2;
    }
    zcq_query_reply_close (query, writer, mark, count);
    zmq_send (zsock_resolve (self->queries), &query, sizeof query, 0);
}

//  What a parked query holds: its request and its envelope (DESIGN 4).
static size_t
s_parked_bytes (const zcq_query_t *query)
{
    return zframe_size (query->body) + zmsg_content_size (query->envelope) + sizeof (zcq_query_t);
}

//  Count a query into (delta 1) or out of (delta -1) its client's parking;
//  false when it does not fit.
static bool
s_park_count (self_t *self, const zcq_query_t *query, int delta)
{
    char peer[ZCQ_PEER_MAX];
    zcq_query_peer (query, peer, sizeof peer);
    size_t bytes = s_parked_bytes (query);
    s_parker_t *parker = zhashx_lookup (self->parkers, peer);
    if (delta < 0) {
        if (parker && parker->count > 1) {
            parker->count--;
            parker->bytes -= bytes;
        }
        else if (parker)
            zhashx_delete (self->parkers, peer);
        self->parked_count--;
        self->parked_bytes -= bytes;
        return true;
    }
    if (self->parked_count >= S_PARKED_MAX || self->parked_bytes + bytes > S_PARKED_BYTES_MAX)
        return false;
    if (parker
        && (parker->count >= S_PARKED_PER_CLIENT || parker->bytes + bytes > S_PARKED_CLIENT_BYTES))
        return false;
    if (!parker) {
        parker = calloc (1, sizeof (s_parker_t));
        if (!parker || zhashx_insert (self->parkers, peer, parker)) {
            free (parker);
            return false;
        }
    }
    parker->count++;
    parker->bytes += bytes;
    self->parked_count++;
    self->parked_bytes += bytes;
    return true;
}

static void
s_handle_query (self_t *self, zcq_query_t *query)
{
    s_view_t *view = s_view_of (self, query);
    if (!view) {
        zcq_query_fail (query, ZCQ_INTERNAL, "view is not kept by this host");
        zmq_send (zsock_resolve (self->queries), &query, sizeof query, 0);
        return;
    }
    if (!streq (query->op, "rebuild") && !s_reached (self, query)) {
        if (!s_park_count (self, query, 1)) {
            zcq_query_fail (query, ZCQ_UNAVAILABLE,
                            "too many queries waiting for a position (this client may park %d "
                            "queries or %d bytes, every client %d or %d bytes)",
                            S_PARKED_PER_CLIENT, S_PARKED_CLIENT_BYTES, S_PARKED_MAX,
                            S_PARKED_BYTES_MAX);
            zmq_send (zsock_resolve (self->queries), &query, sizeof query, 0);
            return;
        }
        query->next = self->parked;
        self->parked = query;
        return;
    }
    s_answer (self, query, view);
}

//  Answer parked queries whose position was reached or whose time ran out.
static void
s_check_parked (self_t *self)
{
    int64_t now = zclock_mono ();
    zcq_query_t **link = &self->parked;
    while (*link) {
        zcq_query_t *query = *link;
        if (s_reached (self, query)) {
            *link = query->next;
            query->next = NULL;
            s_park_count (self, query, -1);
            s_answer (self, query, s_view_of (self, query));
        }
        else if (now >= query->deadline) {
            *link = query->next;
            query->next = NULL;
            s_park_count (self, query, -1);
            s_timeout (self, query);
        }
        else
            link = &query->next;
    }
}

static void
s_handle_queries (self_t *self)
{
    zcq_query_t *query;
    while (zmq_recv (zsock_resolve (self->queries), &query, sizeof query, ZMQ_DONTWAIT)
           == sizeof query)
        s_handle_query (self, query);
}

//  --------------------------------------------------------------------------
//  Following the log

//  Live events from the SUB socket (DESIGN 1).
static void
s_handle_events (self_t *self)
{
    void *socket = zsock_resolve (self->events);
    for (int count = 0; count < S_CHUNK; count++) {
        zmq_msg_t topic, body;
        zmq_msg_init (&topic);
        if (zmq_msg_recv (&topic, socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&topic);
            break;
        }
        zmq_msg_init (&body);
        if (!zmq_msg_more (&topic) || zmq_msg_recv (&body, socket, 0) < 0) {
            zmq_msg_close (&topic);
            zmq_msg_close (&body);
            continue;
        }
        bool heartbeat = zmq_msg_size (&topic) == 10
                      && memcmp (zmq_msg_data (&topic), "$heartbeat", 10) == 0;
        if (heartbeat) {
            if (zcq_doc_decode (self->doc, zmq_msg_data (&body), zmq_msg_size (&body), NULL)
                == ZCQ_OK) {
                uint64_t head;
                if (zcq_value_uint (zcq_value_get (zcq_doc_root (self->doc), "head"), &head)
                    && head > self->known_head)
                    self->known_head = head;
            }
        }
        else {
            //  our own writer stamps the position at a fixed offset
            uint64_t position = 0;
            zcq_event_position_of (zmq_msg_data (&body), zmq_msg_size (&body), &position);
            if (position > self->position + 1)
                s_fill (self, position - 1, 0);
            if (position == self->position + 1)
                s_apply (self, zmq_msg_data (&body), zmq_msg_size (&body), position);
            if (position > self->known_head)
                self->known_head = position;
        }
        zmq_msg_close (&topic);
        zmq_msg_close (&body);
    }
    //  a drop at the end of a burst shows in the heartbeat's head
    if (self->known_head > self->position)
        s_fill (self, self->known_head, 0);
}

//  Committed batches from the log writer (DESIGN 2).
static void
s_handle_committed (self_t *self)
{
    zcq_cbatch_t *batch;
    while ((batch = zcq_cbatch_recv (self->committed, ZMQ_DONTWAIT))) {
        for (size_t index = 0; index < batch->count; index++) {
            zcq_command_t *command = batch->commands[index];
            if (command->outcome != ZCQ_OK || !command->event_count)
                continue;
            size_t offset = 0, size;
            const uint8_t *body;
            uint64_t position = command->position - command->event_count;
            while ((body = zcq_command_next_event (command, &offset, &size))) {
                position++;
                if (position > self->position + 1)
                    s_fill (self, position - 1, 0);
                if (position == self->position + 1)
                    s_apply (self, body, size, position);
            }
        }
        zcq_cbatch_send (&batch, self->acks);
    }
}

static void
s_publish_info (self_t *self)
{
    for (size_t index = 0; index < self->view_count; index++) {
        s_view_t *view = &self->views[index];
        atomic_store_explicit (&view->info->position, s_total_position (self),
                               memory_order_relaxed);
        for (size_t group = 0; group < view->info->groups && group < self->groups; group++)
            atomic_store_explicit (&view->info->positions[group], s_group_position (self, group),
                                   memory_order_relaxed);
        atomic_store_explicit (&view->info->rows, zcq_viewtable_count (view->table),
                               memory_order_relaxed);
        atomic_store_explicit (&view->info->memory, zcq_viewtable_memory (view->table),
                               memory_order_relaxed);
    }
}

//  One step of catching up from the log (DESIGN 1).
static void
s_catch_up_step (self_t *self)
{
    uint64_t head = zcq_store_head (self->env->store);
    uint64_t applied = s_fill (self, head, S_CHUNK);
    if (self->position >= head || applied == 0) {
        self->caught_up = true;
        for (size_t index = 0; index < self->view_count; index++) {
            //  the tables were filled in bulk: order them before they go
            //  live (unless a query already did)
            zcq_err_t err = zcq_viewtable_settle (self->views[index].table);
            if (err != ZCQ_OK)
                zsys_warning ("view %s: ordering the rows: %s (left to its first read)",
                              self->views[index].def->view, zcq_strerror (err));
            if (!self->views[index].rebuild)
                atomic_store (&self->views[index].info->status, ZCQ_VIEW_LIVE);
        }
    }
}

//  --------------------------------------------------------------------------
//  View snapshots (DESIGN 5)

static void
s_snapshot_path (self_t *self, const s_view_t *view, char *path, size_t size)
{
    //  view names are the domain's; keep the file name to a safe alphabet
    int used = snprintf (path, size, "%s/views/", self->env->config->data);
    for (const char *name = view->def->view; *name && used + 4 < (int) size; name++) {
        unsigned char c = (unsigned char) *name;
        if (isalnum (c) || c == '-' || c == '_' || c == '.')
            path[used++] = (char) c;
        else
            used += snprintf (path + used, size - (size_t) used, "%%%02X", c);
    }
    snprintf (path + used, size - (size_t) used, ".snap");
}

static int
s_hash_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    *(uint64_t *) arg = zcq_hash (body, len);
    return 0;
}

//  The check of a snapshot at position: a hash of the stored event there,
//  or 0 when the log does not hold it.
static uint64_t
s_check_of (self_t *self, uint64_t position)
{
    uint64_t check = 0;
    if (zcq_store_read_log (self->env->store, position, 1, s_hash_event, &check) != ZCQ_OK)
        return 0;
    return check;
}

//  Why a loaded snapshot's groups do not fit this host (DESIGN 6), or NULL.
static const char *
s_snapshot_groups_wrong (const self_t *self, const zcq_viewsnap_t *snap)
{
    if (!snap->groups)
        return self->groups && self->own_group < 0
                 ? "it is a single node's, and this node keeps no group's log"
                 : NULL;
    if (!self->groups)
        return "it is of a cluster-wide view, and these views follow one group";
    if (snap->groups != self->groups || strcmp (snap->cluster, self->cluster) != 0)
        return "it is of another cluster";
    if (self->own_group >= 0 && snap->positions[self->own_group] != snap->position)
        return "its own group's position disagrees with its header";
    if (self->own_group < 0 && snap->position)
        return "it holds a local log's events, and this node keeps none";
    return NULL;
}

//  Load what snapshots there are and start after the oldest of them.
static void
s_load_snapshots (self_t *self)
{
    uint64_t head = zcq_store_head (self->env->store);
    uint64_t start = UINT64_MAX;
    for (size_t index = 0; index < self->view_count; index++) {
        s_view_t *view = &self->views[index];
        char path[1200], error[512];
        s_snapshot_path (self, view, path, sizeof path);
        int64_t began = zclock_usecs ();
        zcq_viewtable_t *table;
        zcq_viewsnap_t snap;
        zcq_err_t err = zcq_viewtable_load (&table, view->def->indexes, path, view->def->view,
                                            &snap, error, sizeof error);
        const char *reason = NULL;
        if (err == ZCQ_NOT_FOUND)
            ;
        else if (err != ZCQ_OK)
            reason = error;
        else if (snap.version != view->def->version)
            reason = "it is of another version of the projection";
        else if (snap.position > head)
            reason = "it is ahead of the log (the log lost its tail)";
        else if ((snap.position || !snap.groups)
                 && (!snap.position || s_check_of (self, snap.position) != snap.check))
            reason = "the log holds another event at its position";
        else
            reason = s_snapshot_groups_wrong (self, &snap);
        if (err == ZCQ_OK && !reason) {
            zcq_viewtable_destroy (&view->table);
            view->table = table;
            view->floor = snap.position;
            //  DESIGN 6: the other groups' checkpoint (a single node's
            //  snapshot has the own group's alone)
            for (size_t group = 0; group < snap.groups && group < self->groups; group++)
                if ((int) group != self->own_group)
                    view->floors[group] = snap.positions[group];
            atomic_store (&view->info->snapshot, snap.position);
            zsys_info ("view %s: loaded %zu rows at position %llu from its snapshot in %.3f s",
                       view->def->view, zcq_viewtable_count (table),
                       (unsigned long long) snap.position, (zclock_usecs () - began) / 1e6);
        }
        else {
            zcq_viewtable_destroy (&table);
            if (reason)
                zsys_warning ("view %s: snapshot not used, %s; rebuilding from the log",
                              view->def->view, reason);
        }
        zcq_viewsnap_clear (&snap);
        if (view->floor < start)
            start = view->floor;
    }
    if (start != UINT64_MAX)
        self->position = start;
    self->snapshot_at = 0; //  set by s_start_feeds, which knows every group's start
}

static void *
s_saver_run (void *arg)
{
    s_saver_t *saver = arg;
    for (size_t index = 0; index < saver->count; index++) {
        char error[512];
        saver->saved[index]
            = zcq_viewimage_write (saver->images[index], saver->paths[index], error, sizeof error)
           == ZCQ_OK;
        if (!saver->saved[index])
            zsys_warning ("view snapshot not saved: %s", error);
        zcq_viewimage_destroy (&saver->images[index]);
    }
    atomic_store (&saver->done, true);
    return NULL;
}

static void
s_saver_destroy (s_saver_t **saver_p)
{
    s_saver_t *saver = *saver_p;
    if (!saver)
        return;
    for (size_t index = 0; index < saver->count; index++) {
        zcq_viewimage_destroy (&saver->images[index]);
        free (saver->paths[index]);
    }
    free (saver->images);
    free (saver->paths);
    free (saver->saved);
    free (saver);
    *saver_p = NULL;
}

//  Publish the positions of the snapshots a saver wrote.
static void
s_saver_done (self_t *self, const s_saver_t *saver)
{
    for (size_t index = 0; index < saver->count; index++)
        if (saver->saved[index])
            atomic_store (&self->views[index].info->snapshot, saver->position);
}

//  Wait for the saver thread, if any, and forget it.
static void
s_saver_join (self_t *self)
{
    if (self->saver) {
        pthread_join (self->saver->thread, NULL);
        s_saver_done (self, self->saver);
        s_saver_destroy (&self->saver);
    }
}

//  Snapshot every view at the host's position: images now, files by a
//  saver thread (or in this thread when wait is true).
static void
s_snapshot (self_t *self, bool wait)
{
    s_saver_join (self);
    //  a view whose rows came from a snapshot ahead of the host (DESIGN 5)
    //  holds events past the position: labelled with it, they would be
    //  applied twice after a restart; wait until the host has passed them
    for (size_t index = 0; index < self->view_count; index++) {
        if (self->views[index].floor > self->position)
            return;
        for (size_t group = 0; group < self->groups; group++)
            if (self->views[index].floors[group] > s_group_position (self, group))
                return;
    }
    //  DESIGN 6: a cluster-wide view's checkpoint, a position per group
    uint64_t positions[self->groups ? self->groups : 1];
    for (size_t group = 0; group < self->groups; group++)
        positions[group] = s_group_position (self, group);
    uint64_t check = self->position ? s_check_of (self, self->position) : 0;
    if (!check && (self->position || !self->groups)) {
        zsys_warning ("view host: no event at position %llu to check a snapshot by",
                      (unsigned long long) self->position);
        return;
    }
    s_saver_t *saver = calloc (1, sizeof (s_saver_t));
    bool ok = saver && (saver->images = calloc (self->view_count, sizeof (zcq_viewimage_t *)))
           && (saver->paths = calloc (self->view_count, sizeof (char *)))
           && (saver->saved = calloc (self->view_count, sizeof (bool)));
    if (saver)
        saver->position = s_total_position (self);
    for (size_t index = 0; ok && index < self->view_count; index++) {
        s_view_t *view = &self->views[index];
        zcq_viewsnap_t snap = { .version = view->def->version,
                                .position = self->position,
                                .check = check,
                                .groups = self->groups,
                                .positions = positions };
        snprintf (snap.cluster, sizeof snap.cluster, "%s", self->cluster);
        char path[1200];
        s_snapshot_path (self, view, path, sizeof path);
        saver->images[index] = zcq_viewimage_new (view->table, view->def->view, &snap);
        saver->paths[index] = strdup (path);
        saver->count++;
        ok = saver->images[index] && saver->paths[index];
    }
    if (!ok) {
        zsys_warning ("view host: out of memory for view snapshots");
        s_saver_destroy (&saver);
        return;
    }
    self->snapshot_at = s_total_position (self);
    if (!wait && pthread_create (&saver->thread, NULL, s_saver_run, saver) == 0)
        self->saver = saver;
    else {
        s_saver_run (saver);
        s_saver_done (self, saver);
        s_saver_destroy (&saver);
    }
}

//  Take a snapshot when enough events were applied since the last one.
static void
s_snapshot_due (self_t *self)
{
    if (self->saver && atomic_load (&self->saver->done))
        s_saver_join (self);
    if (self->snapshot_every && self->caught_up && !self->saver
        && s_total_position (self) - self->snapshot_at >= self->snapshot_every)
        s_snapshot (self, false);
}

//  At a clean stop: apply what the log has, then snapshot and wait.
static void
s_snapshot_final (self_t *self)
{
    s_saver_join (self);
    if (!self->snapshot_every || !self->caught_up)
        return;
    s_fill (self, zcq_store_head (self->env->store), 0);
    if (s_total_position (self) > self->snapshot_at)
        s_snapshot (self, true);
}

static void
s_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    else
        zsys_error ("view host: unknown pipe command '%s'", command);
    zstr_free (&command);
}

//  --------------------------------------------------------------------------

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    while (self->parked) {
        zcq_query_t *query = self->parked;
        self->parked = query->next;
        zcq_query_destroy (&query);
    }
    zhashx_destroy (&self->parkers);
    if (self->queries) {
        zcq_query_t *query;
        while (zmq_recv (zsock_resolve (self->queries), &query, sizeof query, ZMQ_DONTWAIT)
               == sizeof query)
            zcq_query_destroy (&query);
    }
    if (self->committed)
        zcq_cbatch_drain (self->committed);
    s_saver_join (self);
    s_reaper_join (self);
    for (size_t index = 0; self->views && index < self->view_count; index++) {
        zcq_viewtable_destroy (&self->views[index].table);
        zcq_viewtable_destroy (&self->views[index].rebuild);
        s_readers_destroy (self, &self->views[index]);
        free (self->views[index].floors);
    }
    for (size_t group = 0; self->feeds && group < self->groups; group++)
        zcq_feed_destroy (&self->feeds[group]);
    free (self->feeds);
    free (self->views);
    zsock_destroy (&self->queries);
    zsock_destroy (&self->events);
    zsock_destroy (&self->committed);
    zsock_destroy (&self->acks);
    zcq_doc_destroy (&self->doc);
    zcq_event_release (&self->event);
    s_pending_free (&self->context);
    zcq_doc_destroy (&self->context.row_doc);
    zcq_writer_destroy (&self->context.row_bytes);
    zcq_writer_destroy (&self->writer);
    zcq_writer_destroy (&self->value);
    free (self);
    *self_p = NULL;
}

static zsock_t *
s_socket (self_t *self, int type, bool bind, const char *endpoint)
{
    zsock_t *socket = zsock_new (type);
    if (!socket)
        return NULL;
    zsock_set_sndhwm (socket, 0);
    if (type != ZMQ_SUB)
        zsock_set_rcvhwm (socket, 0);
    else
        zsock_set_rcvhwm (socket, 100000);
    int rc = bind ? zsock_bind (socket, "%s", endpoint) : zsock_connect (socket, "%s", endpoint);
    if (rc < 0)
        zsock_destroy (&socket);
    return socket;
}

//  A feed for every other group, from the oldest of the views' floors in
//  it (DESIGN 6); false when out of memory.
static bool
s_start_feeds (self_t *self)
{
    for (size_t group = 0; group < self->groups; group++) {
        if ((int) group == self->own_group)
            continue;
        uint64_t start = UINT64_MAX;
        for (size_t index = 0; index < self->view_count; index++)
            if (self->views[index].floors[group] < start)
                start = self->views[index].floors[group];
        self->feeds[group] = zcq_feed_new ((int) group, start == UINT64_MAX ? 0 : start);
        if (!self->feeds[group])
            return false;
    }
    self->snapshot_at = s_total_position (self);
    return true;
}

static self_t *
s_new (zsock_t *pipe, const zcq_host_args_t *args)
{
    self_t *self = calloc (1, sizeof (self_t));
    if (!self) {
        zcq_actor_failed (pipe, "out of memory");
        return NULL;
    }
    self->env = args->env;
    self->pipe = pipe;
    self->synchronous = args->synchronous;
    for (size_t index = 0; self->env->domain->aggregates && self->env->domain->aggregates[index];
         index++)
        for (const zcq_event_def_t *event = self->env->domain->aggregates[index]->events;
             event && event->type; event++)
            if (event->version > 1)
                self->versioned = true;
    self->epoch = zcq_store_epoch (self->env->store);
    self->view_count = args->view_count;
    self->views = calloc (self->view_count ? self->view_count : 1, sizeof (s_view_t));
    self->doc = zcq_doc_new ();
    self->writer = zcq_writer_new ();
    self->value = zcq_writer_new ();
    self->parkers = zhashx_new ();
    if (self->parkers)
        zhashx_set_destructor (self->parkers, (zhashx_destructor_fn *) s_parker_free);
    self->context.row_doc = zcq_doc_new ();
    self->context.row_bytes = zcq_writer_new ();
    bool ok = self->views && self->doc && self->writer && self->value && self->parkers
           && self->context.row_doc && self->context.row_bytes;
    //  DESIGN 6
    self->own_group = self->env->config->role_views ? -1 : self->env->config->group;
    self->groups = args->synchronous ? 0 : zcq_host_groups (self->env);
    if (self->groups) {
        zcq_cluster_view_t *cluster = zcq_coordinator_view (self->env->coordinator);
        snprintf (self->cluster, sizeof self->cluster, "%s",
                  cluster && cluster->id ? cluster->id : "");
        zcq_cluster_view_release (&cluster);
        self->feeds = calloc (self->groups, sizeof (zcq_feed_t *));
        ok = ok && self->feeds;
    }
    for (size_t index = 0; ok && index < self->view_count; index++) {
        s_view_t *view = &self->views[index];
        view->info = args->views[index];
        view->def = view->info->def;
        view->table = zcq_viewtable_new (view->def->indexes);
        view->floors = calloc (self->groups ? self->groups : 1, sizeof (uint64_t));
        ok = view->table != NULL && view->floors != NULL;
    }
    if (!ok) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    self->snapshot_every = self->env->config->view_snapshot_every;
    if (self->snapshot_every) {
        if (zsys_dir_create ("%s/views", self->env->config->data) != 0)
            zsys_warning ("view host: cannot create %s/views: view snapshots are off",
                          self->env->config->data);
        s_load_snapshots (self);
    }
    if (!s_start_feeds (self)) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    char endpoint[128];
    zcq_endpoint_host (self->env, args->host, endpoint, sizeof endpoint);
    self->queries = s_socket (self, ZMQ_PAIR, true, endpoint);
    if (self->synchronous) {
        zcq_endpoint_sync (self->env, endpoint, sizeof endpoint);
        self->committed = s_socket (self, ZMQ_PAIR, true, endpoint);
        zcq_endpoint_acks (self->env, endpoint, sizeof endpoint);
        self->acks = s_socket (self, ZMQ_PAIR, false, endpoint);
        ok = self->queries && self->committed && self->acks;
    }
    else {
        zcq_endpoint_events (self->env, endpoint, sizeof endpoint);
        self->events = s_socket (self, ZMQ_SUB, false, endpoint);
        if (self->events)
            zsock_set_subscribe (self->events, "");
        ok = self->queries && self->events;
    }
    if (!ok) {
        zcq_actor_failed (pipe, "cannot set up the view host's sockets");
        s_destroy (&self);
        return NULL;
    }
    //  DESIGN 2: a synchronous host is complete before commands flow
    if (self->synchronous)
        while (!self->caught_up)
            s_catch_up_step (self);
    s_publish_info (self);
    return self;
}

void
zcq_host_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-views-%u", ((zcq_host_args_t *) args)->host);
    self_t *self = s_new (pipe, args);
    if (!self)
        return;
    zsock_send (pipe, "is", 0, "");
    //  the pipe, queries, local events, then two per feed (DESIGN 6) and
    //  one per rebuild reader (DESIGN 7)
    zmq_pollitem_t *items
        = calloc (3 + (2 + self->view_count) * self->groups, sizeof (zmq_pollitem_t));
    if (!items) {
        zsys_error ("view host: out of memory");
        s_destroy (&self);
        return;
    }
    items[0] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
    items[1] = (zmq_pollitem_t) { zsock_resolve (self->queries), 0, ZMQ_POLLIN, 0 };
    items[2]
        = (zmq_pollitem_t) { zsock_resolve (self->synchronous ? self->committed : self->events), 0,
                             ZMQ_POLLIN, 0 };
    while (!self->terminated) {
        if (self->groups)
            s_point_feeds (self);
        bool rebuilding = false, busy = false;
        for (size_t index = 0; index < self->view_count; index++) {
            rebuilding |= self->views[index].rebuild != NULL;
            busy |= s_rebuild_busy (self, &self->views[index]);
        }
        long timeout = 1000;
        if (!self->caught_up || busy)
            timeout = 0;
        else if (self->parked) {
            int64_t earliest = INT64_MAX;
            for (zcq_query_t *query = self->parked; query; query = query->next)
                if (query->deadline < earliest)
                    earliest = query->deadline;
            int64_t left = earliest - zclock_mono ();
            timeout = left > 0 ? (long) (left < 1000 ? left : 1000) : 0;
        }
        //  DESIGN 7: readers' replies wake the poll; their timeouts and
        //  retries are checked at least this often
        if (rebuilding && timeout > 50)
            timeout = 50;
        //  while catching up, live events wait in the socket (DESIGN 1)
        int item_count = self->caught_up ? 3 : 2;
        items[2].events = self->caught_up ? ZMQ_POLLIN : 0;
        items[2].revents = 0;
        int polled = 3; //  the feeds' sockets after the local ones (DESIGN 6)
        for (size_t group = 0; group < self->groups; group++)
            if (self->feeds[group])
                polled += (int) zcq_feed_poll_items (self->feeds[group], items + polled);
        for (size_t index = 0; index < self->view_count; index++)
            for (size_t group = 0; self->views[index].readers && group < self->groups; group++)
                if (self->views[index].readers[group])
                    polled += (int) zcq_feed_poll_items (self->views[index].readers[group],
                                                         items + polled);
        if (zmq_poll (items, polled, timeout) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            zsys_error ("view host: poll failed: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        if (!self->caught_up)
            s_catch_up_step (self);
        else if (item_count == 3 && (items[2].revents & ZMQ_POLLIN)) {
            if (self->synchronous)
                s_handle_committed (self);
            else
                s_handle_events (self);
        }
        if (self->groups)
            s_pump_feeds (self);
        //  a synchronous host hears of nothing but committed batches: a
        //  reopened store may hold a batch whose commit had failed (its
        //  sync did), which no batch brings; take it from the log once the
        //  store's epoch moves (before that, every event comes in a batch)
        if (self->synchronous && self->caught_up
            && zcq_store_epoch (self->env->store) != self->epoch) {
            self->epoch = zcq_store_epoch (self->env->store);
            s_fill (self, zcq_store_head (self->env->store), 0);
        }
        //  queries before the next rebuild chunk, so that they wait for
        //  one chunk at most
        s_publish_info (self);
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_queries (self);
        if (self->parked)
            s_check_parked (self);
        for (size_t index = 0; index < self->view_count; index++)
            if (self->views[index].rebuild)
                s_rebuild_step (self, &self->views[index]);
        s_snapshot_due (self);
    }
    free (items);
    s_snapshot_final (self);
    s_destroy (&self);
}
