/*  gate.c: the connection gate of a node (setting `max-connections`).

    A node has three listening sockets (command, events, query), and every
    connection to any of them costs a file descriptor. When descriptors run
    out, it is not the newest client that suffers: RocksDB cannot open a
    file, the store fails, and every client's commands fail with it. So the
    node counts its connections and keeps them under a maximum that leaves
    RocksDB its share of the file limit, like Redis's `maxclients`.

    DESIGN
    1.  Each actor that binds a listening socket calls zcq_gate_watch on it,
        in its own thread, right after binding: ZeroMQ's socket monitor then
        reports every accepted connection and every disconnection, with the
        connection's descriptor, on an inproc pair that this actor reads.
        ZeroMQ's I/O thread sends those reports blocking: a monitor pair
        with nobody at the other end, or a full one, would stop every
        socket of the process. So the gate connects its pairs before the
        monitors bind (inproc allows it; the node's inproc names are unique
        in the process), they have no high-water mark, and no socket is
        watched when the gate does not run. A socket's owner stops its
        monitor (zcq_gate_unwatch) before closing it: ZeroMQ closes a
        socket's connections after zmq_close returns, and reports them to
        the monitor, which by then may have nobody reading it.
    2.  A connection accepted beyond the maximum is shut down at once
        (shutdown(2) on its descriptor: ZeroMQ's I/O thread sees the end of
        the stream and closes it as if the peer had left; the descriptor
        stays ZeroMQ's to close, so it is never reused under its feet). It
        is counted as connections_refused and logged at most once a second.
    3.  The count is by descriptor: a descriptor counts from its accept to
        its disconnection, once, whichever socket it belongs to. A refused
        connection never counts.
*/
#include "zcq_actors.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define S_SOCKETS 3

static const char *s_names[S_SOCKETS] = { "command", "events", "query" };

typedef struct {
    const zcq_node_env_t *env;
    size_t max_connections;
    zsock_t *pipe;
    zsock_t *monitors[S_SOCKETS];
    zhashx_t *open;    //  descriptor (as a key) -> 1, for the ones counted
    int64_t logged_at; //  DESIGN 2
    uint64_t refused_logged;
} self_t;

void
zcq_gate_endpoint (const zcq_node_env_t *env, const char *name, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-gate-%s", env->prefix, name);
}

int
zcq_gate_watch (const zcq_node_env_t *env, zsock_t *socket, const char *name)
{
    if (!env->gate)
        return 0; //  DESIGN 1: nobody would read the reports
    char endpoint[128];
    zcq_gate_endpoint (env, name, endpoint, sizeof endpoint);
    return zmq_socket_monitor (zsock_resolve (socket), endpoint,
                               ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED);
}

void
zcq_gate_unwatch (zsock_t *socket)
{
    if (socket)
        zmq_socket_monitor (zsock_resolve (socket), NULL, 0);
}

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    for (int index = 0; index < S_SOCKETS; index++)
        zsock_destroy (&self->monitors[index]);
    zhashx_destroy (&self->open);
    free (self);
    *self_p = NULL;
}

static self_t *
s_new (zsock_t *pipe, const zcq_gate_args_t *args)
{
    self_t *self = calloc (1, sizeof (self_t));
    if (!self)
        return NULL;
    self->env = args->env;
    self->max_connections = args->max_connections;
    self->pipe = pipe;
    self->open = zhashx_new ();
    if (!self->open) {
        s_destroy (&self);
        return NULL;
    }
    for (int index = 0; index < S_SOCKETS; index++) {
        char endpoint[128];
        zcq_gate_endpoint (self->env, s_names[index], endpoint, sizeof endpoint);
        //  inproc may connect before the monitor binds (DESIGN 1)
        self->monitors[index] = zsock_new (ZMQ_PAIR);
        if (!self->monitors[index]) {
            s_destroy (&self);
            return NULL;
        }
        zsock_set_rcvhwm (self->monitors[index], 0); //  before the pipe exists
        if (zsock_connect (self->monitors[index], "%s", endpoint) < 0) {
            s_destroy (&self);
            return NULL;
        }
    }
    return self;
}

//  One monitor event: [u16 event][u32 value], then the endpoint.
static void
s_handle_event (self_t *self, zsock_t *monitor, const char *name)
{
    zmsg_t *message = zmsg_recv_nowait (monitor);
    if (!message)
        return;
    zframe_t *head = zmsg_first (message);
    if (!head || zframe_size (head) < 6) {
        zmsg_destroy (&message);
        return;
    }
    uint16_t event;
    uint32_t value;
    memcpy (&event, zframe_data (head), 2);
    memcpy (&value, zframe_data (head) + 2, 4);
    zmsg_destroy (&message);
    int fd = (int) value;
    char key[16];
    snprintf (key, sizeof key, "%d", fd);
    zcq_stats_t *stats = self->env->stats;
    if (event == ZMQ_EVENT_DISCONNECTED) {
        if (zhashx_lookup (self->open, key)) {
            zhashx_delete (self->open, key);
            ZCQ_STAT_ADD (stats, connections, -1);
        }
        return;
    }
    if (event != ZMQ_EVENT_ACCEPTED)
        return;
    if (zhashx_size (self->open) >= self->max_connections) {
        //  DESIGN 2
        shutdown (fd, SHUT_RDWR);
        ZCQ_STAT_ADD (stats, connections_refused, 1);
        uint64_t refused = ZCQ_STAT_GET (stats, connections_refused);
        int64_t now = zclock_mono ();
        if (now - self->logged_at >= 1000) {
            zsys_warning ("gate: refused %llu connection(s) on the %s endpoint: %zu open, "
                          "max-connections is %zu",
                          (unsigned long long) (refused - self->refused_logged), name,
                          zhashx_size (self->open), self->max_connections);
            self->logged_at = now;
            self->refused_logged = refused;
        }
        return;
    }
    if (!zhashx_lookup (self->open, key) && zhashx_insert (self->open, key, (void *) 1) == 0)
        ZCQ_STAT_ADD (stats, connections, 1);
}

void
zcq_gate_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-gate");
    self_t *self = s_new (pipe, args);
    if (!self) {
        zcq_actor_failed (pipe, "gate: out of memory");
        return;
    }
    zsock_send (pipe, "is", 0, "");
    zmq_pollitem_t items[1 + S_SOCKETS] = { { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 } };
    for (int index = 0; index < S_SOCKETS; index++)
        items[1 + index]
            = (zmq_pollitem_t) { zsock_resolve (self->monitors[index]), 0, ZMQ_POLLIN, 0 };
    while (true) {
        if (zmq_poll (items, 1 + S_SOCKETS, -1) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
        }
        for (int index = 0; index < S_SOCKETS; index++)
            if (items[1 + index].revents & ZMQ_POLLIN)
                s_handle_event (self, self->monitors[index], s_names[index]);
    }
    s_destroy (&self);
}
