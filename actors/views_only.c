/*  views_only.c: the command and events endpoints of a views node (`--role
    views`, cluster.md section 2), a read replica of the views that keeps no
    group's log.

    DESIGN
    1.  A views node never takes a command into a log of its own: it has no
        log stage, no shards and no command router (node.c, env.views_only).
        Until the command router forwards every command of a node with
        env.views_only to its group's leader (cluster.md section 3), this
        actor serves the command endpoint: each command is answered
        `unavailable` with `reason: "forwarding_failed"`, its `group` and,
        when the coordinator's view shows one, `owner` (the command endpoint
        of that group's leader), so a client can send it there. Once the
        router forwards, node.c starts it for a views node instead.
    2.  The events endpoint is bound and publishes nothing: a views node has
        no log, so its subscribers see no event (the views' groups are read
        from their own replicas).
    3.  Requests are untrusted: the body is decoded by the codec with the
        node's request limit; one that is not a command map still gets an
        `invalid` reply; the envelope (identity and the frames before the
        body) is echoed, at most S_ENVELOPE_FRAMES frames.
*/
#include "zcq_read.h"
#include <stdio.h>
#include <string.h>

#define S_ENVELOPE_FRAMES 64

typedef struct {
    const zcq_node_env_t *env;
    zsock_t *pipe;
    zsock_t *commands; //  ROUTER
    zsock_t *events;   //  PUB, silent (DESIGN 2)
    zcq_doc_t *doc;
    zcq_writer_t *writer;
    zcq_limits_t limits;
    bool terminated;
} self_t;

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->commands);
    zsock_destroy (&self->events);
    zcq_doc_destroy (&self->doc);
    zcq_writer_destroy (&self->writer);
    free (self);
    *self_p = NULL;
}

//  The reply to one command body (DESIGN 1, 3), into self->writer.
static void
s_refuse (self_t *self, const void *body, size_t size)
{
    zcq_writer_t *writer = self->writer;
    zcq_writer_reset (writer);
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 1; //  ok
    const zcq_value_t *root = NULL;
    bool decoded = size <= self->limits.max_bytes
                && zcq_doc_decode (self->doc, body, size, &self->limits) == ZCQ_OK
                && zcq_value_type (root = zcq_doc_root (self->doc)) == ZCQ_TYPE_MAP;
    const zcq_value_t *id = decoded ? zcq_value_get (root, "id") : NULL;
    if (id && zcq_value_type (id) == ZCQ_TYPE_STR) {
        zcq_writer_str (writer, "id");
        zcq_writer_value (writer, id);
        count++;
    }
    zcq_writer_str (writer, "ok");
    zcq_writer_bool (writer, false);
    char aggregate[ZCQ_AGGREGATE_MAX + 1], key[ZCQ_KEY_MAX + 1];
    if (!decoded
        || !zcq_value_copy_str (zcq_value_get (root, "aggregate"), aggregate, sizeof aggregate)
        || !zcq_value_copy_str (zcq_value_get (root, "key"), key, sizeof key)) {
        zcq_writer_str (writer, "error");
        zcq_writer_str (writer, "invalid");
        zcq_writer_str (writer, "message");
        zcq_writer_str (writer, "a command is a map with 'id', 'aggregate', 'key', 'type'");
        zcq_writer_map_close (writer, mark, count + 2);
        return;
    }
    char stream[ZCQ_STREAM_MAX + 1];
    int len = snprintf (stream, sizeof stream, "%s/%s", aggregate, key);
    zcq_cluster_view_t *view = zcq_coordinator_view (self->env->coordinator);
    int group = view ? zcq_cluster_view_group_of (view, stream, (size_t) len) : -1;
    const char *owner = view && group >= 0 ? zcq_cluster_view_leader (view, group) : NULL;
    zcq_writer_str (writer, "error");
    zcq_writer_str (writer, "unavailable");
    zcq_writer_str (writer, "message");
    zcq_writer_str (writer, "a views node takes no command into a log: send it to its group's "
                            "leader (owner)");
    zcq_writer_str (writer, "reason");
    zcq_writer_str (writer, "forwarding_failed");
    count += 3;
    if (group >= 0) {
        zcq_writer_str (writer, "group");
        zcq_writer_int (writer, group);
        count++;
    }
    if (owner) {
        zcq_writer_str (writer, "owner");
        zcq_writer_str (writer, owner);
        count++;
    }
    zcq_cluster_view_release (&view);
    zcq_writer_map_close (writer, mark, count);
}

//  One request: envelope frames, then the body (DESIGN 3).
static bool
s_handle_command (self_t *self)
{
    void *socket = zsock_resolve (self->commands);
    zmq_msg_t frames[S_ENVELOPE_FRAMES + 2];
    size_t count = 0;
    bool more = true, dropped = false;
    while (more) {
        zmq_msg_t *frame = &frames[count < S_ENVELOPE_FRAMES + 1 ? count : S_ENVELOPE_FRAMES + 1];
        zmq_msg_init (frame);
        if (zmq_msg_recv (frame, socket, count ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (frame);
            if (!count)
                return false;
            dropped = true;
            break;
        }
        more = zmq_msg_more (frame);
        if (count < S_ENVELOPE_FRAMES + 1)
            count++;
        else {
            dropped = true; //  too many frames: read to the end, answer nothing
            zmq_msg_close (frame);
        }
    }
    if (!dropped && count >= 2) {
        zmq_msg_t *body = &frames[count - 1];
        s_refuse (self, zmq_msg_data (body), zmq_msg_size (body));
        bool sent = true;
        for (size_t index = 0; sent && index + 1 < count; index++)
            sent = zmq_send (socket, zmq_msg_data (&frames[index]), zmq_msg_size (&frames[index]),
                             ZMQ_SNDMORE | ZMQ_DONTWAIT)
                >= 0;
        if (sent && zcq_writer_ok (self->writer))
            zmq_send (socket, zcq_writer_data (self->writer), zcq_writer_size (self->writer),
                      ZMQ_DONTWAIT);
    }
    for (size_t index = 0; index < count; index++)
        zmq_msg_close (&frames[index]);
    return true;
}

static void
s_handle_pipe (self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "ENDPOINT") || streq (command, "EVENTS")) {
        zsock_t *socket = streq (command, "ENDPOINT") ? self->commands : self->events;
        char *bound = zsock_last_endpoint (socket);
        zsock_send (self->pipe, "s", bound ? bound : "");
        zstr_free (&bound);
    }
    else
        zsys_error ("views node: unknown pipe command '%s'", command);
    zstr_free (&command);
}

//  Pipe: zsock_send (actor, "s", "ENDPOINT") / reply "s" command endpoint;
//  "EVENTS" / the events endpoint.
void
zcq_views_only_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-views-node");
    self_t *self = calloc (1, sizeof (self_t));
    if (!self) {
        zcq_actor_failed (pipe, "out of memory");
        return;
    }
    self->env = args;
    self->pipe = pipe;
    self->limits.max_bytes = self->env->config->request_limit;
    self->limits.max_depth = 32;
    self->doc = zcq_doc_new ();
    self->writer = zcq_writer_new ();
    self->commands = zsock_new (ZMQ_ROUTER);
    self->events = zsock_new (ZMQ_PUB);
    const zcq_config_t *config = self->env->config;
    if (!self->doc || !self->writer || !self->commands || !self->events) {
        zcq_actor_failed (pipe, "out of memory");
        s_destroy (&self);
        return;
    }
    zsock_set_linger (self->commands, 0);
    zsock_set_maxmsgsize (self->commands, (int64_t) config->request_limit * 4 + (64 << 10));
    if (zsock_bind (self->commands, "%s", config->endpoints[ZCQ_ENDPOINT_COMMAND]) < 0
        || zsock_bind (self->events, "%s", config->endpoints[ZCQ_ENDPOINT_EVENTS]) < 0) {
        zcq_actor_failed (pipe, "cannot bind the command or events endpoint: %s",
                          zmq_strerror (zmq_errno ()));
        s_destroy (&self);
        return;
    }
    zsock_send (pipe, "is", 0, "");
    zmq_pollitem_t items[] = {
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (self->commands), 0, ZMQ_POLLIN, 0 },
    };
    while (!self->terminated) {
        if (zmq_poll (items, 2, -1) < 0) {
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_handle_pipe (self);
        for (int round = 0; round < 256 && (items[1].revents & ZMQ_POLLIN); round++)
            if (!s_handle_command (self))
                break;
    }
    s_destroy (&self);
}
