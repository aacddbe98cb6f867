/*  coordinator.c: a clustered node's part in the cluster, as an actor that
    owns the ZooKeeper session (cluster.md sections 1, 2 and 6).

    DESIGN
    1.  Registration: nodes/<id> is an ephemeral znode of this session with
        the node's endpoints. A create that meets an existing one reads its
        ephemeralOwner: this session's is kept, the previous session's (left
        by an expiry) is deleted and created again, and any other session's
        is waited for: it belongs to a process still alive, or to one that
        died less than a session timeout ago. At start the wait lasts at
        most twice the session timeout, then the start fails (two live
        processes never share a node id).
    2.  The view: every change seen (a watch on map, groups/<g>, the
        children of nodes, or a reconnect) re-reads the cluster and
        publishes a new immutable view; the generation grows with each.
        Watches are one-shot: each read re-arms them.
    3.  Election (6.3, what one replica needs now): a node that does not
        lead, whose group has no live leader other than itself, takes the
        group with ONE transaction: check nodes/<self> exists, set
        groups/<g> to {leader: self, epoch: e + 1, isr} at the version it
        read. It may lead only when it is in the ISR, or when the ISR is
        empty (a fresh group: isr becomes [self]). A node that is recorded
        leader but does not lead (it restarted, or fenced itself) takes a
        new epoch the same way: it never resumes an old one (section 2).
    4.  Fencing (6.5): leading_epoch (atomic) is the epoch this node leads
        under, 0 when none. zcq_coordinator_leading returns false as soon
        as the ZooKeeper lease (zk.c DESIGN 3) is older than two thirds of
        the session timeout, and clears leading_epoch by compare-and-swap
        (only the epoch it saw), whichever thread asks; the actor's timer
        clears it too. A view whose group state names another leader or a
        newer epoch clears it as well.
    5.  Session expiry: the actor makes a new session, registers again
        (DESIGN 1) and reads everything again; leadership is long gone by
        then (the lease ran out first).

        state machine of the node's leadership:
            follower --claim won (e+1)--> leader
            leader --lease old, other leader, newer epoch--> follower
            follower --claim lost (version moved)--> follower (re-read)
*/
#include "zcq_coordinator.h"
#include "zcq_actors.h"
#include "zcq_cluster_impl.h"
#include <pthread.h>
#include <stdatomic.h>

struct zcq_coordinator_t {
    zactor_t *actor;
    zcq_zk_t *zk; //  made and used by the actor; the lease is read by any thread
    char zk_string[1024];
    char node[ZCQ_NODE_ID_MAX + 1];
    int group;
    bool views;
    char *registration; //  nodes/<node>'s JSON
    int session_ms;
    pthread_mutex_t lock; //  guards view
    zcq_cluster_view_t *view;
    atomic_uint_fast64_t generation;
    atomic_uint_fast64_t leading_epoch; //  DESIGN 4
    atomic_int_fast64_t fence_us;       //  two thirds of the granted timeout
};

//  --------------------------------------------------------------------------
//  Any thread

bool
zcq_coordinator_endpoint_ok (const char *name, const char *endpoint, char *error, size_t size)
{
    const char *host = strstr (endpoint, "://");
    host = host ? host + 3 : endpoint;
    const char *colon = strrchr (host, ':');
    const char *why = NULL;
    if (strncmp (endpoint, "tcp://", 6) && strncmp (endpoint, "ipc://", 6))
        why = "other nodes connect over tcp:// (or ipc:// on one machine)";
    else if (strchr (endpoint, '*'))
        why = "`*` is no address others can connect to";
    else if (!strncmp (endpoint, "tcp://", 6)
             && (!colon || streq (colon, ":0") || !strncmp (host, "0.0.0.0:", 8)))
        why = "give the host and port others connect to";
    if (why)
        snprintf (error, size, "%s: '%s' cannot be published in a cluster: %s", name, endpoint,
                  why);
    return why == NULL;
}

zcq_cluster_view_t *
zcq_coordinator_view (zcq_coordinator_t *self)
{
    pthread_mutex_lock (&self->lock);
    zcq_cluster_view_t *view = zcq_cluster_view_ref (self->view);
    pthread_mutex_unlock (&self->lock);
    return view;
}

uint64_t
zcq_coordinator_generation (zcq_coordinator_t *self)
{
    return atomic_load (&self->generation);
}

//  DESIGN 4
bool
zcq_coordinator_leading (zcq_coordinator_t *self, uint64_t *epoch_p)
{
    uint64_t epoch = atomic_load (&self->leading_epoch);
    if (!epoch)
        return false;
    if (zcq_zk_now_us () - zcq_zk_lease_us (self->zk) >= atomic_load (&self->fence_us)) {
        if (atomic_compare_exchange_strong (&self->leading_epoch, &epoch, 0))
            atomic_fetch_add (&self->generation, 1);
        return false;
    }
    if (epoch_p)
        *epoch_p = epoch;
    return true;
}

//  --------------------------------------------------------------------------
//  The actor

typedef struct {
    zcq_coordinator_t *shared;
    zsock_t *pipe;
    zcq_zk_t *zk;
    bool registered;
    bool reload;              //  a change was seen, or a read failed: read again
    int64_t waiting_since_us; //  registration waits for another session's znode
    char note[512];           //  the last election note logged, to log each once
} s_actor_t;

static void
s_note (s_actor_t *self, const char *format, ...)
{
    char note[512];
    va_list args;
    va_start (args, format);
    vsnprintf (note, sizeof note, format, args);
    va_end (args);
    if (strcmp (note, self->note)) {
        zsys_notice ("coordinator: %s", note);
        snprintf (self->note, sizeof self->note, "%s", note);
    }
}

//  Publish a view (taken) as the current one (DESIGN 2).
static void
s_publish (s_actor_t *self, zcq_cluster_view_t *view)
{
    zcq_coordinator_t *shared = self->shared;
    uint64_t generation = atomic_load (&shared->generation) + 1;
    zcq_cluster_view_set_self (view, shared->node, shared->group, shared->views,
                               atomic_load (&shared->leading_epoch), generation);
    pthread_mutex_lock (&shared->lock);
    zcq_cluster_view_t *old = shared->view;
    shared->view = view;
    pthread_mutex_unlock (&shared->lock);
    atomic_fetch_add (&shared->generation, 1);
    zcq_cluster_view_release (&old);
}

//  Stop leading now (DESIGN 4), saying why.
static void
s_stop_leading (s_actor_t *self, const char *why)
{
    uint64_t epoch = atomic_exchange (&self->shared->leading_epoch, 0);
    if (epoch) {
        zsys_warning ("coordinator: node %s stops leading group %d at epoch %llu: %s",
                      self->shared->node, self->shared->group, (unsigned long long) epoch, why);
        atomic_fetch_add (&self->shared->generation, 1);
    }
}

//  One registration attempt (DESIGN 1): ZCQ_OK when registered,
//  ZCQ_CONFLICT while another session holds the node's znode.
static zcq_err_t
s_register (s_actor_t *self, char *error, size_t size)
{
    zcq_coordinator_t *shared = self->shared;
    char path[16 + ZCQ_NODE_ID_MAX];
    snprintf (path, sizeof path, "nodes/%s", shared->node);
    for (int attempt = 0; attempt < 3; attempt++) {
        zcq_err_t err = zcq_zk_create (self->zk, path, shared->registration,
                                       strlen (shared->registration), true, error, size);
        if (err == ZCQ_NOT_FOUND)
            snprintf (error, size, "%s/nodes is missing: the cluster is damaged",
                      zcq_zk_path (self->zk));
        if (err != ZCQ_CONFLICT)
            return err;
        zcq_zk_stat_t stat;
        err = zcq_zk_exists (self->zk, path, &stat, error, size);
        if (err == ZCQ_NOT_FOUND)
            continue; //  gone meanwhile: create again
        if (err != ZCQ_OK)
            return err;
        if (stat.owner == zcq_zk_session (self->zk))
            return ZCQ_OK; //  an earlier attempt's create went through
        if (stat.owner && stat.owner == zcq_zk_previous_session (self->zk)) {
            //  our own, left by the expired session
            err = zcq_zk_delete (self->zk, path, stat.version, error, size);
            if (err != ZCQ_OK && err != ZCQ_NOT_FOUND && err != ZCQ_CONFLICT)
                return err;
            continue;
        }
        snprintf (error, size,
                  "node id %s is registered by another ZooKeeper session (0x%llx): another "
                  "zcqrsd runs with --node %s, or one died less than a session timeout ago",
                  shared->node, (unsigned long long) stat.owner, shared->node);
        return ZCQ_CONFLICT;
    }
    snprintf (error, size, "%s/%s keeps changing", zcq_zk_path (self->zk), path);
    return ZCQ_UNAVAILABLE;
}

static bool
s_member (const char *const *list, size_t count, const char *node)
{
    for (size_t index = 0; index < count; index++)
        if (streq (list[index], node))
            return true;
    return false;
}

//  DESIGN 3 and the leader's checks of DESIGN 4, against the view just read.
static void
s_elect (s_actor_t *self, const zcq_cluster_view_t *view)
{
    zcq_coordinator_t *shared = self->shared;
    if (shared->views || shared->group < 0 || (size_t) shared->group >= view->group_count)
        return;
    const zcq_cluster_group_t *state = &view->groups[shared->group];
    uint64_t leading = atomic_load (&shared->leading_epoch);
    if (leading) {
        if (state->leader && streq (state->leader, shared->node) && state->epoch == leading)
            return; //  still ours
        s_stop_leading (self, state->epoch > leading ? "a newer epoch exists" : "another leader");
    }
    bool self_recorded = state->leader && streq (state->leader, shared->node);
    if (state->leader && !self_recorded && zcq_cluster_view_node (view, state->leader)) {
        s_note (self, "group %d: follower of %s at epoch %llu", shared->group, state->leader,
                (unsigned long long) state->epoch);
        return;
    }
    if (state->isr_count && !s_member (state->isr, state->isr_count, shared->node)) {
        char members[256] = "";
        for (size_t index = 0; index < state->isr_count; index++)
            snprintf (members + strlen (members), sizeof members - strlen (members), "%s%s",
                      index ? ", " : "", state->isr[index]);
        s_note (self,
                "group %d: no live leader, and node %s is not in the ISR [%s]: it does not lead",
                shared->group, shared->node, members);
        return;
    }
    int64_t lease_age = zcq_zk_now_us () - zcq_zk_lease_us (self->zk);
    if (lease_age >= atomic_load (&shared->fence_us) / 2) {
        self->reload = true; //  after the next ping's answer: a fresh lease to lead on
        return;
    }
    //  the new ISR: [self] for a fresh group, else the ISR without the old leader
    const char *isr[ZCQ_CLUSTER_REPLICAS_MAX * 8];
    size_t isr_count = 0;
    if (!state->isr_count)
        isr[isr_count++] = shared->node;
    for (size_t index = 0; index < state->isr_count && isr_count < sizeof isr / sizeof isr[0];
         index++)
        if (!state->leader || self_recorded || !streq (state->isr[index], state->leader))
            isr[isr_count++] = state->isr[index];
    uint64_t epoch = state->epoch + 1;
    char *data = zcq_cluster_group_json (shared->node, epoch, isr, isr_count);
    char path[32], check[16 + ZCQ_NODE_ID_MAX], error[512];
    snprintf (path, sizeof path, "groups/%d", shared->group);
    snprintf (check, sizeof check, "nodes/%s", shared->node);
    zcq_zk_op_t ops[] = {
        { ZCQ_ZK_OP_CHECK, check, NULL, 0, -1 },
        { ZCQ_ZK_OP_SET, path, data, data ? strlen (data) : 0, state->version },
    };
    zcq_err_t err = data ? zcq_zk_multi (self->zk, ops, 2, error, sizeof error) : ZCQ_NOMEM;
    free (data);
    if (err == ZCQ_OK) {
        atomic_store (&shared->leading_epoch, epoch);
        s_note (self, "group %d: node %s leads at epoch %llu", shared->group, shared->node,
                (unsigned long long) epoch);
    }
    else if (err == ZCQ_CONFLICT)
        s_note (self, "group %d: another node changed the group first: reading again",
                shared->group);
    else
        zsys_warning ("coordinator: group %d: cannot take the lead: %s", shared->group,
                      err == ZCQ_NOMEM ? "out of memory" : error);
    self->reload = true; //  the group's state moved (or may have)
}

//  Read the cluster again, publish it and run the election.
static void
s_reload (s_actor_t *self)
{
    zcq_cluster_view_t *view;
    char error[512];
    zcq_err_t err = zcq_cluster_load (self->zk, true, &view, error, sizeof error);
    if (err != ZCQ_OK) {
        if (err != ZCQ_UNAVAILABLE)
            s_note (self, "%s", error);
        return; //  self->reload stays set: the next tick tries again
    }
    self->reload = false;
    s_elect (self, view);
    s_publish (self, view);
}

//  What the session's state asks for, then any pending re-read.
static void
s_work (s_actor_t *self)
{
    char error[512];
    zcq_zk_state_t state = zcq_zk_state (self->zk);
    if (state == ZCQ_ZK_EXPIRED) {
        s_stop_leading (self, "the ZooKeeper session expired");
        zsys_warning ("coordinator: the ZooKeeper session expired: starting a new one");
        if (zcq_zk_renew (self->zk, error, sizeof error) != ZCQ_OK)
            zsys_warning ("coordinator: %s", error);
        self->registered = false;
        self->reload = true;
        return;
    }
    if (state != ZCQ_ZK_CONNECTED)
        return;
    atomic_store (&self->shared->fence_us, (int64_t) zcq_zk_session_ms (self->zk) * 2000 / 3);
    if (!self->registered) {
        zcq_err_t err = s_register (self, error, sizeof error);
        if (err == ZCQ_OK) {
            self->registered = true;
            self->reload = true;
        }
        else
            s_note (self, "%s", error);
    }
    if (self->registered && self->reload)
        s_reload (self);
}

//  The timer (DESIGN 4): ping, and stop leading on an old lease.
static void
s_tick (s_actor_t *self)
{
    zcq_zk_ping (self->zk);
    zcq_coordinator_t *shared = self->shared;
    if (atomic_load (&shared->leading_epoch)
        && zcq_zk_now_us () - zcq_zk_lease_us (self->zk) >= atomic_load (&shared->fence_us))
        s_stop_leading (self, "no word from ZooKeeper for two thirds of the session timeout");
    //  a view that still shows the node leading, after a fence by any thread
    zcq_cluster_view_t *view = zcq_coordinator_view (shared);
    bool stale = view && view->epoch != atomic_load (&shared->leading_epoch);
    zcq_cluster_view_release (&view);
    if (stale)
        self->reload = true;
}

//  Start: connect, check the cluster, register, read it once.
static zcq_err_t
s_start (s_actor_t *self, char *error, size_t size)
{
    zcq_coordinator_t *shared = self->shared;
    int wait_ms = shared->session_ms > 5000 ? shared->session_ms : 5000;
    ZCQ_TRY (zcq_zk_wait_connected (self->zk, wait_ms, error, size));
    zcq_cluster_view_t *view;
    ZCQ_TRY (zcq_cluster_load (self->zk, false, &view, error, size));
    zcq_err_t err = ZCQ_OK;
    if (!shared->views && (size_t) shared->group >= view->group_count) {
        snprintf (error, size, "group %d: the cluster at %s has groups 0 to %zu", shared->group,
                  zcq_zk_path (self->zk), view->group_count - 1);
        err = ZCQ_INVALID;
    }
    zcq_cluster_view_release (&view);
    //  DESIGN 1: wait out a registration of another session, for a while
    int64_t deadline = zcq_zk_now_us () + (int64_t) shared->session_ms * 2000;
    while (err == ZCQ_OK && !self->registered) {
        err = s_register (self, error, size);
        if (err == ZCQ_OK)
            self->registered = true;
        else if ((err == ZCQ_CONFLICT || err == ZCQ_UNAVAILABLE) && zcq_zk_now_us () < deadline) {
            s_note (self, "%s: waiting", error);
            zmq_pollitem_t items[] = { { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 } };
            zmq_poll (items, 1, 100); //  the znode's expiry, checked every 100 ms
            if (items[0].revents & ZMQ_POLLIN) {
                snprintf (error, size, "stopped while waiting to register");
                return ZCQ_UNAVAILABLE;
            }
            err = ZCQ_OK;
        }
    }
    if (err == ZCQ_OK)
        err = zcq_cluster_load (self->zk, true, &view, error, size);
    if (err == ZCQ_OK) {
        atomic_store (&shared->fence_us, (int64_t) zcq_zk_session_ms (self->zk) * 2000 / 3);
        s_elect (self, view);
        s_publish (self, view);
    }
    return err;
}

static void
s_coordinator_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-coordinator");
    s_actor_t self = { .shared = args, .pipe = pipe, .zk = ((zcq_coordinator_t *) args)->zk };
    char error[512];
    if (s_start (&self, error, sizeof error) != ZCQ_OK) {
        zcq_actor_failed (pipe, "%s", error);
        return;
    }
    zsock_send (pipe, "is", 0, "");
    int64_t tick_us = 0;
    while (true) {
        int interval_ms = zcq_zk_session_ms (self.zk) / 6;
        interval_ms = interval_ms < 50 ? 50 : interval_ms;
        int64_t now = zcq_zk_now_us ();
        if (now >= tick_us) {
            s_tick (&self);
            tick_us = now + (int64_t) interval_ms * 1000;
        }
        zmq_pollitem_t items[] = {
            { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
            { NULL, zcq_zk_fd (self.zk), ZMQ_POLLIN, 0 },
        };
        long timeout = (long) ((tick_us - now) / 1000) + 1;
        if (zmq_poll (items, 2, timeout) < 0)
            break; //  interrupted: the context is going
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            bool stop = !command || streq (command, "$TERM");
            if (!stop)
                zsys_warning ("coordinator: unknown pipe command '%s'", command);
            zstr_free (&command);
            if (stop)
                break;
        }
        unsigned events = items[1].revents & ZMQ_POLLIN ? zcq_zk_events (self.zk) : 0;
        if (events & (ZCQ_ZK_SESSION | ZCQ_ZK_MAP | ZCQ_ZK_GROUPS | ZCQ_ZK_NODES))
            self.reload = true;
        if (events || self.reload || !self.registered || zcq_zk_state (self.zk) != ZCQ_ZK_CONNECTED)
            s_work (&self);
    }
    s_stop_leading (&self, "the node stops");
}

//  --------------------------------------------------------------------------
//  The wrapper

zcq_coordinator_t *
zcq_coordinator_new (const zcq_coordinator_args_t *args, char *error, size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    const char *role = args->role ? args->role : "replica";
    bool views = streq (role, "views");
    if (!views && !streq (role, "replica")) {
        snprintf (error, size, "role: '%s' is neither replica nor views", role);
        return NULL;
    }
    if (!zcq_cluster_node_id_ok (args->node)) {
        snprintf (error, size,
                  "node: '%s' cannot name a cluster node: 1 to %d letters, digits, '.', '_' or "
                  "'-'",
                  args->node ? args->node : "", ZCQ_NODE_ID_MAX);
        return NULL;
    }
    if (views ? args->group >= 0 : args->group < 0) {
        snprintf (error, size,
                  views ? "a views node (--role views) has no --group"
                        : "a clustered replica needs --group N");
        return NULL;
    }
    const char *names[] = { "command", "events", "query", "replication" };
    const char *endpoints[] = { args->command, args->events, args->query, args->replication };
    for (int index = 0; index < 4; index++) {
        if (index == 3 && (!endpoints[index] || !*endpoints[index]))
            continue;
        if (!endpoints[index]) {
            snprintf (error, size, "%s: a clustered node needs its endpoint", names[index]);
            return NULL;
        }
        if (!zcq_coordinator_endpoint_ok (names[index], endpoints[index], error, size))
            return NULL;
    }
    zcq_coordinator_t *self = calloc (1, sizeof (zcq_coordinator_t));
    if (!self) {
        snprintf (error, size, "out of memory");
        return NULL;
    }
    snprintf (self->zk_string, sizeof self->zk_string, "%s", args->zk ? args->zk : "");
    snprintf (self->node, sizeof self->node, "%s", args->node);
    self->group = views ? -1 : args->group;
    self->views = views;
    self->session_ms = args->session_ms > 0 ? args->session_ms : 4000;
    pthread_mutex_init (&self->lock, NULL);
    atomic_init (&self->generation, 0);
    atomic_init (&self->leading_epoch, 0);
    atomic_init (&self->fence_us, (int64_t) self->session_ms * 2000 / 3);
    self->registration = zcq_cluster_node_json (
        &(zcq_cluster_registration_t) { self->node, self->group, role, args->command, args->events,
                                        args->query, args->replication });
    if (!self->registration) {
        snprintf (error, size, "out of memory");
        zcq_coordinator_destroy (&self);
        return NULL;
    }
    if (zcq_zk_new (&self->zk, self->zk_string, self->session_ms, error, size) != ZCQ_OK) {
        zcq_coordinator_destroy (&self);
        return NULL;
    }
    self->actor = zcq_actor_start (s_coordinator_actor, self, error, size);
    if (!self->actor) {
        zcq_coordinator_destroy (&self);
        return NULL;
    }
    return self;
}

void
zcq_coordinator_destroy (zcq_coordinator_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_coordinator_t *self = *self_p;
    zactor_destroy (&self->actor);
    zcq_zk_destroy (&self->zk); //  closes the session: nodes/<node> goes now
    zcq_cluster_view_release (&self->view);
    pthread_mutex_destroy (&self->lock);
    free (self->registration);
    free (self);
    *self_p = NULL;
}
