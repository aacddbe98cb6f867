/*  publisher.c: the events endpoint of a node (ZCQ/1 section 4).

    The log stage publishes every committed event and heartbeat on a PUB
    socket bound to an inproc endpoint, where the node's own view hosts
    subscribe. This actor carries that stream out to remote subscribers:
    a SUB on the inproc endpoint, an XPUB bound to the events endpoint.

    DESIGN
    1.  Remote subscribers cost this thread, never the write path. ZeroMQ
        applies subscriptions and matches topics in the thread that sends
        on a publishing socket; here that is this actor, so a client that
        subscribes to a hundred thousand topics, or connects and leaves in
        a loop, slows the events it gets and nobody's commands.
    2.  This actor takes events from the log stage only while someone
        subscribes: the XPUB reports each topic's first subscription and
        last unsubscription, and the SUB subscribes to everything while at
        least one topic is wanted. A node without remote subscribers spends
        nothing here.
    3.  What waits for a subscriber that does not read is S_SUBSCRIBER_HWM
        events; past it ZeroMQ drops that subscriber's events, and the
        subscriber fills the gap from the log (ZCQ/1 section 4). ZeroMQ
        counts its queues in messages only, and a lower count drops events
        of bursts that a reading subscriber would take, since a sender
        learns that its peer has read only every millisecond or so. The
        pipe from the log stage to here is short (S_INTERNAL_HWM, plus the
        stage's own): should this thread fall behind, events are dropped
        for remote subscribers only, who fill the gap the same way.
    4.  So that the bound is in bytes too, an event body larger than the
        `publish-limit` setting (64 KiB by default) is not sent on the
        events endpoint: what one subscriber makes the node hold is at most
        S_SUBSCRIBER_HWM times that limit (64 MiB), plus the socket's
        kernel buffers. In its place a heartbeat goes out at once, with the
        event's position as its head, so that every subscriber to the
        heartbeat reads the event from the log without waiting for the next
        event or the next timed heartbeat. A subscriber of one topic sees
        the event's version missing from its stream at its next event (ZCQ/1
        section 4: the events endpoint may drop; the log does not). Such
        events are rare by design: a domain's events are small facts.
    5.  Messages are moved, not copied: a received frame is sent as is.
*/
#include "zcq_actors.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define S_SUBSCRIBER_HWM   1000 //  DESIGN 3
#define S_INTERNAL_HWM     1000
#define S_SUBSCRIPTION_MAX 4096 //  the longest subscription a peer may send
#define S_ROUND            1024

typedef struct {
    const zcq_node_env_t *env;
    zsock_t *pipe;
    zsock_t *events;         //  SUB on the log stage's inproc endpoint
    zsock_t *clients;        //  XPUB, the events endpoint
    int64_t topics;          //  DESIGN 2: topics remote subscribers want
    bool all;                //  subscribed to everything upstream
    zcq_writer_t *heartbeat; //  DESIGN 4
    char endpoint[ZCQ_ENDPOINT_MAX];
} self_t;

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    zcq_gate_unwatch (self->clients); //  before it closes (actors/gate.c DESIGN 1)
    zsock_destroy (&self->clients);
    zsock_destroy (&self->events);
    zcq_writer_destroy (&self->heartbeat);
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
    self->events = zsock_new (ZMQ_SUB);
    self->clients = zsock_new (ZMQ_XPUB);
    self->heartbeat = zcq_writer_new ();
    if (!self->events || !self->clients || !self->heartbeat) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return NULL;
    }
    char endpoint[128];
    zcq_endpoint_events (env, endpoint, sizeof endpoint);
    zsock_set_rcvhwm (self->events, S_INTERNAL_HWM); //  before the pipe exists
    if (zsock_connect (self->events, "%s", endpoint) < 0) {
        zcq_actor_failed (pipe, "cannot connect %s", endpoint);
        s_destroy (&self);
        return NULL;
    }
    zsock_set_sndhwm (self->clients, S_SUBSCRIBER_HWM);
    //  subscribers send only subscriptions: topics are short
    zsock_set_maxmsgsize (self->clients, S_SUBSCRIPTION_MAX);
    zsock_set_linger (self->clients, 0);
    const char *wanted = env->config->endpoints[ZCQ_ENDPOINT_EVENTS];
    if (zsock_bind (self->clients, "%s", wanted) < 0) {
        zcq_actor_failed (pipe, "cannot bind the events endpoint %s: %s", wanted,
                          zmq_strerror (zmq_errno ()));
        s_destroy (&self);
        return NULL;
    }
    zcq_gate_watch (env, self->clients, "events"); //  actors/gate.c
    char *bound = zsock_last_endpoint (self->clients);
    snprintf (self->endpoint, sizeof self->endpoint, "%s", bound ? bound : wanted);
    zstr_free (&bound);
    return self;
}

//  Subscriptions and unsubscriptions from remote subscribers (DESIGN 2).
static void
s_handle_subscriptions (self_t *self)
{
    for (int count = 0; count < S_ROUND; count++) {
        zframe_t *frame = zframe_recv_nowait (self->clients);
        if (!frame)
            break;
        if (zframe_size (frame) >= 1) {
            uint8_t kind = zframe_data (frame)[0];
            if (kind == 1)
                self->topics++;
            else if (kind == 0 && self->topics > 0)
                self->topics--;
        }
        zframe_destroy (&frame);
    }
    if (self->topics > 0 && !self->all) {
        zsock_set_subscribe (self->events, "");
        self->all = true;
    }
    else if (self->topics == 0 && self->all) {
        zsock_set_unsubscribe (self->events, "");
        self->all = false;
    }
}

//  In place of an event over the limit, a heartbeat whose head is its
//  position (DESIGN 4).
static void
s_withhold (self_t *self, zmq_msg_t *body)
{
    uint64_t position;
    if (!zcq_event_position_of (zmq_msg_data (body), zmq_msg_size (body), &position))
        return;
    const zcq_config_t *config = self->env->config;
    bool clustered = config->cluster[0] && config->group >= 0;
    zcq_event_encode_heartbeat (self->heartbeat, config->node, clustered ? config->group : -1,
                                position, position);
    void *out = zsock_resolve (self->clients);
    zmq_send (out, "$heartbeat", 10, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (out, zcq_writer_data (self->heartbeat), zcq_writer_size (self->heartbeat),
              ZMQ_DONTWAIT);
    ZCQ_STAT_ADD (self->env->stats, events_withheld, 1);
}

//  Events and heartbeats: [topic][body], moved as they are (DESIGN 4, 5).
static void
s_handle_events (self_t *self)
{
    void *in = zsock_resolve (self->events);
    void *out = zsock_resolve (self->clients);
    size_t limit = self->env->config->publish_limit;
    for (int count = 0; count < S_ROUND; count++) {
        zmq_msg_t topic, body;
        zmq_msg_init (&topic);
        if (zmq_msg_recv (&topic, in, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&topic);
            return;
        }
        zmq_msg_init (&body);
        if (!zmq_msg_more (&topic) || zmq_msg_recv (&body, in, 0) < 0 || zmq_msg_more (&body)) {
            //  the log stage sends two frames; anything else is dropped whole
            while (zmq_msg_more (&body) && zmq_msg_recv (&body, in, 0) >= 0)
                ;
            zmq_msg_close (&topic);
            zmq_msg_close (&body);
            continue;
        }
        if (limit && zmq_msg_size (&body) > limit) {
            s_withhold (self, &body);
            zmq_msg_close (&topic);
            zmq_msg_close (&body);
            continue;
        }
        if (zmq_msg_send (&topic, out, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&topic);
            zmq_msg_close (&body);
            continue;
        }
        if (zmq_msg_send (&body, out, ZMQ_DONTWAIT) < 0)
            zmq_msg_close (&body);
    }
}

void
zcq_publisher_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-publisher");
    self_t *self = s_new (pipe, args);
    if (!self)
        return;
    zsock_send (pipe, "is", 0, "");
    zmq_pollitem_t items[3] = {
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (self->clients), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 },
    };
    while (true) {
        if (zmq_poll (items, 3, -1) < 0) {
            if (zmq_errno () == EINTR)
                continue; //  a signal for the process, not for us
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            if (command && streq (command, "ENDPOINT"))
                zsock_send (pipe, "s", self->endpoint);
            zstr_free (&command);
            if (term)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_subscriptions (self);
        if (items[2].revents & ZMQ_POLLIN)
            s_handle_events (self);
    }
    s_destroy (&self);
}
