/*  client.c: a small synchronous ZCQ/1 client over two DEALER sockets.

    Requests go out as [empty][body] so the node sees a REQ-style envelope;
    replies are matched by `id` (commands) or `rid` (queries), and replies
    of earlier requests that timed out are skipped.

    A cluster client (zcq_client_new_cluster, cluster.md sections 3 and 5)
    reads the slot map with the `cluster` op through its query endpoint and
    sends each command straight to its group's leader, over a DEALER per
    leader (ZMQ_IMMEDIATE: a leader that is not connected fails the send at
    once). It reads the map again on `unavailable`, on no reply, on a failed
    send and every S_MAP_MS, and sends a command at most S_ATTEMPTS times,
    always with the same id, so that a retry is never applied twice.
*/
#include "zcq_internal.h"
#include <stdio.h>
#include <string.h>

#define S_ATTEMPTS 4     //  a command's sends in a cluster: the first and 3 more
#define S_MAP_MS   30000 //  the map is read again at least this often

struct zcq_client_t {
    zsock_t *sockets[3]; //  by zcq_endpoint_t; events unused
    zcq_doc_t *reply;
    zframe_t *reply_frame;
    zcq_writer_t *writer;
    uint64_t next_rid;
    //  a cluster client
    bool cluster;
    uint32_t slots;
    uint16_t *slot_group; //  slots entries; NULL until the map is read
    char **leaders;       //  per group, the leader's command endpoint or NULL
    size_t group_count;
    int64_t map_at;
    zhashx_t *links; //  command endpoint -> zsock_t (DEALER)
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
    for (size_t group = 0; self->leaders && group < self->group_count; group++)
        free (self->leaders[group]);
    free (self->leaders);
    free (self->slot_group);
    if (self->links) {
        for (zsock_t *link = zhashx_first (self->links); link; link = zhashx_next (self->links))
            zsock_destroy (&link);
        zhashx_destroy (&self->links);
    }
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

//  Send a request on a socket and wait for the reply that answers it.
static zcq_err_t
s_call (zcq_client_t *self, zsock_t *socket, const char *key, const void *body, size_t len,
        int timeout_ms, const zcq_value_t **reply)
{
    *reply = NULL;
    //  what to correlate on: the request's id or rid, if any
    zcq_doc_t *request = zcq_doc_new ();
    if (!request)
        return ZCQ_NOMEM;
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

static zcq_err_t s_cluster_call (zcq_client_t *self, const void *body, size_t len, int timeout_ms,
                                 const zcq_value_t **reply);

zcq_err_t
zcq_client_call (zcq_client_t *self, zcq_endpoint_t endpoint, const void *body, size_t len,
                 int timeout_ms, const zcq_value_t **reply)
{
    *reply = NULL;
    if (self->cluster && endpoint == ZCQ_ENDPOINT_COMMAND)
        return s_cluster_call (self, body, len, timeout_ms, reply);
    zsock_t *socket = (unsigned) endpoint <= ZCQ_ENDPOINT_QUERY ? self->sockets[endpoint] : NULL;
    if (!socket)
        return ZCQ_INVALID;
    return s_call (self, socket, endpoint == ZCQ_ENDPOINT_COMMAND ? "id" : "rid", body, len,
                   timeout_ms, reply);
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
    if (command->expect != 0) {
        //  zcq_client.h: 0 means none, ZCQ_EXPECT_NEW a stream at version 0
        zcq_writer_str (writer, "expect");
        zcq_writer_int (writer, command->expect == ZCQ_EXPECT_NEW ? 0 : command->expect);
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

//  --------------------------------------------------------------------------
//  A cluster client

zcq_client_t *
zcq_client_new_cluster (const char *query_endpoint)
{
    if (!query_endpoint)
        return NULL;
    zcq_client_t *self = zcq_client_new (NULL, query_endpoint);
    if (self) {
        self->cluster = true;
        self->links = zhashx_new ();
        if (!self->links)
            zcq_client_destroy (&self);
    }
    return self;
}

//  Forget the map (it is read again before the next command).
static void
s_map_forget (zcq_client_t *self)
{
    for (size_t group = 0; self->leaders && group < self->group_count; group++)
        free (self->leaders[group]);
    free (self->leaders);
    free (self->slot_group);
    self->leaders = NULL;
    self->slot_group = NULL;
    self->group_count = 0;
}

//  Read the map with the `cluster` op; every value is checked, since it
//  comes from the network.
static zcq_err_t
s_map_read (zcq_client_t *self, int timeout_ms)
{
    s_map_forget (self);
    zcq_writer_t *writer = zcq_writer_new ();
    if (!writer)
        return ZCQ_NOMEM;
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "op");
    zcq_writer_str (writer, "cluster");
    zcq_writer_str (writer, "rid");
    zcq_writer_uint (writer, self->next_rid++);
    const zcq_value_t *reply;
    zcq_err_t err = zcq_client_call (self, ZCQ_ENDPOINT_QUERY, zcq_writer_data (writer),
                                     zcq_writer_size (writer), timeout_ms, &reply);
    zcq_writer_destroy (&writer);
    if (err != ZCQ_OK)
        return err;
    if (zcq_reply_status (reply) != ZCQ_OK)
        return zcq_reply_status (reply);
    int64_t slots;
    const zcq_value_t *map = zcq_value_get (reply, "map");
    const zcq_value_t *groups = zcq_value_get (reply, "groups");
    if (!zcq_value_int (zcq_value_get (reply, "slots"), &slots) || slots < 1 || slots > 65536
        || zcq_value_type (map) != ZCQ_TYPE_ARRAY || zcq_value_type (groups) != ZCQ_TYPE_ARRAY)
        return ZCQ_INVALID;
    size_t group_count = zcq_value_size (groups);
    if (group_count == 0 || group_count > 65535)
        return ZCQ_INVALID;
    self->slots = (uint32_t) slots;
    self->slot_group = malloc (self->slots * sizeof (uint16_t));
    self->leaders = calloc (group_count, sizeof (char *));
    if (!self->slot_group || !self->leaders) {
        s_map_forget (self);
        return ZCQ_NOMEM;
    }
    self->group_count = group_count;
    memset (self->slot_group, 0xff, self->slots * sizeof (uint16_t));
    for (size_t index = 0; index < zcq_value_size (map); index++) {
        const zcq_value_t *range = zcq_value_at (map, index);
        int64_t first, last, group;
        if (zcq_value_type (range) != ZCQ_TYPE_ARRAY || zcq_value_size (range) != 3
            || !zcq_value_int (zcq_value_at (range, 0), &first)
            || !zcq_value_int (zcq_value_at (range, 1), &last)
            || !zcq_value_int (zcq_value_at (range, 2), &group) || first < 0 || last < first
            || last >= slots || group < 0 || (size_t) group >= group_count) {
            s_map_forget (self);
            return ZCQ_INVALID;
        }
        for (int64_t slot = first; slot <= last; slot++)
            self->slot_group[slot] = (uint16_t) group;
    }
    for (size_t index = 0; index < group_count; index++) {
        const zcq_value_t *state = zcq_value_at (groups, index);
        int64_t group;
        char leader[128];
        if (!zcq_value_int (zcq_value_get (state, "group"), &group) || group < 0
            || (size_t) group >= group_count
            || !*zcq_value_get_str (state, "leader", leader, sizeof leader, ""))
            continue;
        const zcq_value_t *replicas = zcq_value_get (state, "replicas");
        for (size_t at = 0; at < zcq_value_size (replicas); at++) {
            const zcq_value_t *replica = zcq_value_at (replicas, at);
            char node[128], endpoint[256];
            zcq_value_get_str (replica, "node", node, sizeof node, "");
            zcq_value_get_str (replica, "command", endpoint, sizeof endpoint, "");
            if (streq (node, leader) && *endpoint && !self->leaders[group])
                self->leaders[group] = strdup (endpoint);
        }
    }
    self->map_at = zclock_mono ();
    return ZCQ_OK;
}

//  The DEALER to a leader's command endpoint, connected on first use.
static zsock_t *
s_link (zcq_client_t *self, const char *endpoint)
{
    zsock_t *link = zhashx_lookup (self->links, endpoint);
    if (link)
        return link;
    link = zsock_new (ZMQ_DEALER);
    if (!link)
        return NULL;
    zsock_set_linger (link, 0);
    zsock_set_immediate (link, 1);
    //  a new link connects in well under a second; a leader that does not
    //  take a connection in that time fails the send, and the map is read
    //  again
    zsock_set_sndtimeo (link, 1000);
    if (zsock_connect (link, "%s", endpoint) < 0 || zhashx_insert (self->links, endpoint, link)) {
        zsock_destroy (&link);
        return NULL;
    }
    return link;
}

//  A command in a cluster: to its group's leader, the map read again and
//  the command sent again (same id) while the answer says to.
static zcq_err_t
s_cluster_command (zcq_client_t *self, const void *body, size_t len, const char *stream,
                   int timeout_ms, const zcq_value_t **reply)
{
    zcq_err_t err = ZCQ_UNAVAILABLE;
    *reply = NULL;
    int64_t deadline = zclock_mono () + timeout_ms;
    for (int attempt = 0; attempt < S_ATTEMPTS; attempt++) {
        int left = (int) (deadline - zclock_mono ());
        if (left <= 0)
            break;
        if (!self->slot_group || zclock_mono () - self->map_at > S_MAP_MS) {
            zcq_err_t read = s_map_read (self, left);
            if (read != ZCQ_OK) {
                err = read == ZCQ_TIMEOUT ? ZCQ_TIMEOUT : err;
                continue;
            }
            left = (int) (deadline - zclock_mono ());
        }
        uint16_t group = self->slot_group[zcq_slot_of (stream, strlen (stream), self->slots)];
        const char *leader = group < self->group_count ? self->leaders[group] : NULL;
        zsock_t *link = leader ? s_link (self, leader) : NULL;
        if (!link) {
            //  no leader known now: read the map again, and wait a little
            //  for a new leader before the next attempt
            err = ZCQ_UNAVAILABLE;
            self->map_at = 0;
            zclock_sleep (left < 200 ? left : 200);
            continue;
        }
        err = s_call (self, link, "id", body, len, left, reply);
        if (err == ZCQ_OK && zcq_reply_status (*reply) != ZCQ_UNAVAILABLE)
            return ZCQ_OK;
        self->map_at = 0; //  stale: read the map before the next send
    }
    return *reply ? ZCQ_OK : err;
}

//  A command request in a cluster: routed by its stream.
static zcq_err_t
s_cluster_call (zcq_client_t *self, const void *body, size_t len, int timeout_ms,
                const zcq_value_t **reply)
{
    char aggregate[ZCQ_AGGREGATE_MAX + 1], key[ZCQ_KEY_MAX + 1], stream[ZCQ_STREAM_MAX + 2];
    zcq_doc_t *request = zcq_doc_new ();
    if (!request)
        return ZCQ_NOMEM;
    const zcq_value_t *root = NULL;
    if (zcq_doc_decode (request, body, len, NULL) == ZCQ_OK)
        root = zcq_doc_root (request);
    snprintf (stream, sizeof stream, "%s/%s",
              zcq_value_get_str (root, "aggregate", aggregate, sizeof aggregate, ""),
              zcq_value_get_str (root, "key", key, sizeof key, ""));
    zcq_doc_destroy (&request);
    return s_cluster_command (self, body, len, stream, timeout_ms, reply);
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
