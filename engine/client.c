/*  client.c: a small synchronous ZCQ/1 client over two DEALER sockets.

    Requests go out as [empty][body] so the node sees a REQ-style envelope;
    replies are matched by `id` (commands) or `rid` (queries), and replies
    of earlier requests that timed out are skipped.
*/
#include "zcq_internal.h"
#include <stdio.h>
#include <string.h>

struct zcq_client_t {
    zsock_t *sockets[3]; //  by zcq_endpoint_t; events unused
    zcq_doc_t *reply;
    zframe_t *reply_frame;
    zcq_writer_t *writer;
    uint64_t next_rid;
};

zcq_client_t *
zcq_client_new (const char *command_endpoint, const char *query_endpoint)
{
    zcq_client_t *self = calloc (1, sizeof (zcq_client_t));
    if (!self)
        return NULL;
    self->reply = zcq_doc_new ();
    self->writer = zcq_writer_new ();
    self->next_rid = 1;
    const char *endpoints[3] = { command_endpoint, NULL, query_endpoint };
    bool ok = self->reply && self->writer;
    for (int which = 0; ok && which < 3; which++) {
        if (!endpoints[which])
            continue;
        self->sockets[which] = zsock_new (ZMQ_DEALER);
        ok = self->sockets[which]
          && zsock_connect (self->sockets[which], "%s", endpoints[which]) == 0;
        if (ok) {
            zsock_set_linger (self->sockets[which], 0);
            zsock_set_rcvhwm (self->sockets[which], 0);
            zsock_set_sndhwm (self->sockets[which], 0);
        }
    }
    if (!ok)
        zcq_client_destroy (&self);
    return self;
}

void
zcq_client_destroy (zcq_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_client_t *self = *self_p;
    for (int which = 0; which < 3; which++)
        zsock_destroy (&self->sockets[which]);
    zcq_doc_destroy (&self->reply);
    zframe_destroy (&self->reply_frame);
    zcq_writer_destroy (&self->writer);
    free (self);
    *self_p = NULL;
}

//  True when a reply answers the request whose correlation value is
//  `expected` (a string id, or an integer rid).
static bool
s_matches (const zcq_value_t *reply, const char *key, const zcq_value_t *expected)
{
    return zcq_value_equal (zcq_value_get (reply, key), expected);
}

zcq_err_t
zcq_client_call (zcq_client_t *self, zcq_endpoint_t endpoint, const void *body, size_t len,
                 int timeout_ms, const zcq_value_t **reply)
{
    *reply = NULL;
    zsock_t *socket = (unsigned) endpoint <= ZCQ_ENDPOINT_QUERY ? self->sockets[endpoint] : NULL;
    if (!socket)
        return ZCQ_INVALID;
    //  what to correlate on: the request's id or rid, if any
    zcq_doc_t *request = zcq_doc_new ();
    if (!request)
        return ZCQ_NOMEM;
    const char *key = endpoint == ZCQ_ENDPOINT_COMMAND ? "id" : "rid";
    const zcq_value_t *expected = NULL;
    if (zcq_doc_decode (request, body, len, NULL) == ZCQ_OK)
        expected = zcq_value_get (zcq_doc_root (request), key);

    zmsg_t *message = zmsg_new ();
    zmsg_addmem (message, "", 0);
    zmsg_addmem (message, body, len);
    if (zmsg_send (&message, socket) != 0) {
        zmsg_destroy (&message);
        zcq_doc_destroy (&request);
        return ZCQ_UNAVAILABLE;
    }
    int64_t deadline = zclock_mono () + timeout_ms;
    zcq_err_t err = ZCQ_TIMEOUT;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            break;
        zmq_pollitem_t item = { zsock_resolve (socket), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, left) <= 0)
            continue;
        zmsg_t *answer = zmsg_recv (socket);
        if (!answer)
            break;
        zframe_destroy (&self->reply_frame);
        self->reply_frame = zmsg_last (answer);
        zmsg_remove (answer, self->reply_frame);
        zmsg_destroy (&answer);
        //  a node's replies may carry events stored before nodes refused
        //  text that is not UTF-8: read them all the same
        if (zcq_doc_decode (self->reply, zframe_data (self->reply_frame),
                            zframe_size (self->reply_frame), &zcq_stored_limits)
            != ZCQ_OK)
            continue;
        const zcq_value_t *root = zcq_doc_root (self->reply);
        //  a request without an id or rid takes the first reply
        if (!expected || s_matches (root, key, expected)) {
            *reply = root;
            err = ZCQ_OK;
            break;
        }
    }
    zcq_doc_destroy (&request);
    return err;
}

void
zcq_command_id (char *buffer, size_t size)
{
    zuuid_t *uuid = zuuid_new ();
    snprintf (buffer, size, "%s", uuid ? zuuid_str_canonical (uuid) : "");
    zuuid_destroy (&uuid);
}

void
zcq_command_encode (zcq_writer_t *writer, const zcq_command_req_t *command)
{
    char id[64];
    if (!command->id)
        zcq_command_id (id, sizeof id);
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 4;
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, command->id ? command->id : id);
    zcq_writer_str (writer, "aggregate");
    zcq_writer_str (writer, command->aggregate ? command->aggregate : "");
    zcq_writer_str (writer, "key");
    zcq_writer_str (writer, command->key ? command->key : "");
    zcq_writer_str (writer, "type");
    zcq_writer_str (writer, command->type ? command->type : "");
    if (command->expect >= 0) {
        zcq_writer_str (writer, "expect");
        zcq_writer_int (writer, command->expect);
        count++;
    }
    if (command->data) {
        zcq_writer_str (writer, "data");
        zcq_writer_raw (writer, command->data, command->data_len);
        count++;
    }
    if (command->meta) {
        zcq_writer_str (writer, "meta");
        zcq_writer_raw (writer, command->meta, command->meta_len);
        count++;
    }
    zcq_writer_map_close (writer, mark, count);
}

zcq_err_t
zcq_client_command (zcq_client_t *self, const zcq_command_req_t *command, int timeout_ms,
                    const zcq_value_t **reply)
{
    zcq_writer_reset (self->writer);
    zcq_command_encode (self->writer, command);
    if (!zcq_writer_ok (self->writer))
        return ZCQ_NOMEM;
    return zcq_client_call (self, ZCQ_ENDPOINT_COMMAND, zcq_writer_data (self->writer),
                            zcq_writer_size (self->writer), timeout_ms, reply);
}

zcq_err_t
zcq_reply_status (const zcq_value_t *reply)
{
    bool ok = false;
    if (!zcq_value_bool (zcq_value_get (reply, "ok"), &ok))
        return ZCQ_INTERNAL;
    if (ok)
        return ZCQ_OK;
    char code[32];
    return zcq_err_parse (zcq_value_get_str (reply, "error", code, sizeof code, "internal"));
}
