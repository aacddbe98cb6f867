/*  batch.c: commands and the batches that carry them between the actors
    of a node, plus the small helpers every actor uses. */
#include "zcq_actors.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

zcq_command_t *
zcq_command_new (void)
{
    zcq_command_t *self = calloc (1, sizeof (zcq_command_t));
    if (!self)
        return NULL;
    self->expect = -1;
    self->group = -1;
    self->envelope = self->envelope_inline;
    zmq_msg_init (&self->body);
    return self;
}

void
zcq_command_destroy (zcq_command_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_command_t *self = *self_p;
    if (self->envelope != self->envelope_inline)
        free (self->envelope);
    zcq_doc_destroy (&self->doc);
    zmq_msg_close (&self->body);
    free (self->message);
    free (self->owner);
    free (self->events);
    free (self->snapshot);
    free (self->reply);
    free (self);
    *self_p = NULL;
}

bool
zcq_command_add_frame (zcq_command_t *self, const void *data, size_t size)
{
    size_t needed = self->envelope_size + 4 + size;
    if (needed > sizeof self->envelope_inline && size <= UINT32_MAX) {
        bool inline_now = self->envelope == self->envelope_inline;
        uint8_t *envelope = realloc (inline_now ? NULL : self->envelope, needed);
        if (!envelope)
            return false;
        if (inline_now)
            memcpy (envelope, self->envelope_inline, self->envelope_size);
        self->envelope = envelope;
    }
    else if (size > UINT32_MAX)
        return false;
    uint8_t *at = self->envelope + self->envelope_size;
    zcq_put_be32 (at, (uint32_t) size);
    if (size)
        memcpy (at + 4, data, size);
    self->envelope_size = needed;
    return true;
}

const uint8_t *
zcq_command_next_frame (const zcq_command_t *self, size_t *offset, size_t *size)
{
    if (*offset + 4 > self->envelope_size)
        return NULL;
    const uint8_t *at = self->envelope + *offset;
    *size = zcq_get_be32 (at);
    *offset += 4 + *size;
    return at + 4;
}

void
zcq_command_fail (zcq_command_t *self, zcq_err_t outcome, const char *format, ...)
{
    self->outcome = outcome;
    free (self->message);
    va_list args;
    va_start (args, format);
    if (vasprintf (&self->message, format, args) < 0)
        self->message = NULL;
    va_end (args);
}

uint8_t *
zcq_command_next_event (const zcq_command_t *self, size_t *offset, size_t *size)
{
    if (*offset + 4 > self->events_size)
        return NULL;
    uint8_t *length = self->events + *offset;
    *size = zcq_get_be32 (length);
    if (*size > self->events_size - *offset - 4)
        return NULL;
    *offset += 4 + *size;
    return length + 4;
}

size_t
zcq_result_encode (uint8_t *buffer, const zcq_command_t *command)
{
    bool reply = command->reply && command->reply_size <= ZCQ_REPLY_MAX;
    zcq_put_be64 (buffer, command->version);
    zcq_put_be64 (buffer + 8, command->position);
    zcq_put_be32 (buffer + 16, command->event_count | (reply ? ZCQ_RESULT_REPLY : 0));
    uint8_t *at = buffer + 20;
    if (reply) {
        at[0] = (uint8_t) (command->reply_size >> 8);
        at[1] = (uint8_t) command->reply_size;
        memcpy (at + 2, command->reply, command->reply_size);
        at += 2 + command->reply_size;
    }
    memcpy (at, command->stream, command->stream_len);
    at += command->stream_len;
    *at++ = 0;
    memcpy (at, command->type, command->type_len);
    return (size_t) (at - buffer) + command->type_len;
}

bool
zcq_reply_pairs (const uint8_t *reply, size_t size, const uint8_t **pairs, size_t *pairs_size,
                 uint32_t *count)
{
    zcq_mp_t reader = { reply, reply + size };
    zcq_mp_item_t map;
    if (!zcq_mp_read (&reader, &map) || map.type != ZCQ_TYPE_MAP)
        return false;
    *pairs = reader.cursor;
    *count = map.len;
    reader.cursor = reply;
    if (!zcq_mp_skip (&reader, 0) || reader.cursor != reply + size)
        return false;
    *pairs_size = (size_t) (reply + size - *pairs);
    return true;
}

bool
zcq_result_parse (zcq_result_t *result, const uint8_t *bytes, size_t len)
{
    if (len < 21 || len > ZCQ_RESULT_MAX)
        return false;
    result->version = zcq_get_be64 (bytes);
    result->position = zcq_get_be64 (bytes + 8);
    uint32_t events = zcq_get_be32 (bytes + 16);
    result->event_count = events & ~ZCQ_RESULT_REPLY;
    result->reply = NULL;
    result->reply_size = 0;
    size_t at = 20;
    if (events & ZCQ_RESULT_REPLY) {
        if (len < 22)
            return false;
        size_t size = (size_t) bytes[20] << 8 | bytes[21];
        const uint8_t *pairs;
        size_t pairs_size;
        uint32_t count;
        if (size > len - 22 || len - 22 - size < 1
            || !zcq_reply_pairs (bytes + 22, size, &pairs, &pairs_size, &count))
            return false;
        result->reply = bytes + 22;
        result->reply_size = size;
        at = 22 + size;
    }
    result->stream = (const char *) bytes + at;
    const char *end = memchr (result->stream, 0, len - at);
    result->stream_len = end ? (size_t) (end - result->stream) : len - at;
    result->type = end ? end + 1 : result->stream + result->stream_len;
    result->type_len = len - at - result->stream_len - (end ? 1 : 0);
    return result->stream_len >= 3 && result->stream_len <= ZCQ_STREAM_MAX
        && result->type_len <= ZCQ_TYPE_MAX;
}

bool
zcq_request_over_limit (size_t envelope, size_t body, size_t limit, char *message, size_t size)
{
    if (body <= limit - envelope)
        return false;
    if (envelope)
        snprintf (message, size,
                  "request of %zu bytes (envelope %zu, body %zu) exceeds the limit of %zu",
                  envelope + body, envelope, body, limit);
    else
        snprintf (message, size, "request of %zu bytes exceeds the limit of %zu", body, limit);
    return true;
}

zcq_cbatch_t *
zcq_cbatch_new (zcq_batch_kind_t kind, uint32_t shard)
{
    zcq_cbatch_t *self = calloc (1, sizeof (zcq_cbatch_t));
    if (!self)
        return NULL;
    self->kind = kind;
    self->shard = shard;
    return self;
}

void
zcq_cbatch_destroy (zcq_cbatch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_cbatch_t *self = *self_p;
    for (size_t index = 0; index < self->count; index++)
        zcq_command_destroy (&self->commands[index]);
    free (self->commands);
    free (self);
    *self_p = NULL;
}

bool
zcq_cbatch_reserve (zcq_cbatch_t *self, size_t count)
{
    if (count <= self->capacity)
        return true;
    zcq_command_t **commands = realloc (self->commands, count * sizeof (zcq_command_t *));
    if (!commands)
        return false;
    self->commands = commands;
    self->capacity = count;
    return true;
}

bool
zcq_cbatch_add (zcq_cbatch_t *self, zcq_command_t *command)
{
    if (self->count == self->capacity
        && !zcq_cbatch_reserve (self, self->capacity ? self->capacity * 2 : 64))
        return false;
    self->commands[self->count++] = command;
    return true;
}

int
zcq_cbatch_send (zcq_cbatch_t **self_p, zsock_t *socket)
{
    zcq_cbatch_t *self = *self_p;
    *self_p = NULL;
    //  the pipes have no high-water mark, so a send fails only when the
    //  peer is gone (a shutdown that gave up waiting): never block on it
    if (zmq_send (zsock_resolve (socket), &self, sizeof self, ZMQ_DONTWAIT) != sizeof self) {
        zsys_error ("batch: a batch of %zu commands could not be passed on (%s): dropped",
                    self->count, zmq_strerror (zmq_errno ()));
        zcq_cbatch_destroy (&self);
        return -1;
    }
    return 0;
}

zcq_cbatch_t *
zcq_cbatch_recv (zsock_t *socket, int flags)
{
    zcq_cbatch_t *self = NULL;
    int size = zmq_recv (zsock_resolve (socket), &self, sizeof self, flags);
    if (size != sizeof self)
        return NULL;
    return self;
}

void
zcq_cbatch_drain (zsock_t *socket)
{
    zcq_cbatch_t *batch;
    while ((batch = zcq_cbatch_recv (socket, ZMQ_DONTWAIT)))
        zcq_cbatch_destroy (&batch);
}

void
zcq_endpoint_shard (const zcq_node_env_t *env, uint32_t shard, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-shard-%u", env->prefix, shard);
}

void
zcq_endpoint_shard_log (const zcq_node_env_t *env, uint32_t shard, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-log-%u", env->prefix, shard);
}

void
zcq_endpoint_acks (const zcq_node_env_t *env, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-acks", env->prefix);
}

void
zcq_endpoint_events (const zcq_node_env_t *env, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-events", env->prefix);
}

void
zcq_endpoint_sync (const zcq_node_env_t *env, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-sync", env->prefix);
}

void
zcq_endpoint_host (const zcq_node_env_t *env, uint32_t host, char *buffer, size_t size)
{
    snprintf (buffer, size, "inproc://%s-host-%u", env->prefix, host);
}

zactor_t *
zcq_actor_start (zactor_fn *actor, void *args, char *error, size_t size)
{
    zactor_t *self = zactor_new (actor, args);
    if (!self) {
        snprintf (error, size, "cannot start an actor thread");
        return NULL;
    }
    int status = -1;
    char *reason = NULL;
    if (zsock_recv (self, "is", &status, &reason) != 0)
        status = -1;
    if (status != 0) {
        snprintf (error, size, "%s", reason ? reason : "actor failed to start");
        zactor_destroy (&self);
    }
    zstr_free (&reason);
    return self;
}

void
zcq_actor_failed (zsock_t *pipe, const char *format, ...)
{
    char reason[512];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    zsock_send (pipe, "is", 1, reason);
}

void
zcq_actor_name (const char *format, ...)
{
    char name[16];
    va_list args;
    va_start (args, format);
    vsnprintf (name, sizeof name, format, args);
    va_end (args);
    pthread_setname_np (pthread_self (), name);
}

uint64_t
zcq_stream_hash (const char *stream, size_t len)
{
    return zcq_hash (stream, len);
}

void
zcq_peer_key (const void *identity, size_t len, char *key, size_t size)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *bytes = identity;
    if (len * 2 + 1 > size)
        len = (size - 1) / 2;
    for (size_t index = 0; index < len; index++) {
        key[2 * index] = digits[bytes[index] >> 4];
        key[2 * index + 1] = digits[bytes[index] & 15];
    }
    key[2 * len] = 0;
}
