/*  fixture.c: one stream of one aggregate, decided and evolved in memory
    the way an aggregate shard does it (actors/aggregate_shard.c), for
    domain tests (zcq_fixture.h).

    DESIGN
    1.  Every event, given or decided, is encoded into a stored body with
        the node's own code (zcq_event_encode_head, the payload, position
        and time stamped) and read back for evolve, so a domain's test
        meets the bytes a node would give it: versions, upcasters, strict
        reads, contexts.
    2.  The stream's history (every body applied) is kept, so that a
        command whose evolve fails leaves the state as it was: the state
        is released and rebuilt from the history, as a node drops and
        reloads an aggregate. A state with pointers (release) is handled
        the same way.
*/
#include "zcq_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char type[ZCQ_TYPE_MAX + 1];
    uint32_t version; //  of its type's payload; 0 = its definition's
    zcq_fields_t *data;
} s_given_t;

struct zcq_fixture_t {
    const zcq_aggregate_def_t *aggregate;
    char key[ZCQ_KEY_MAX + 1];
    char stream[ZCQ_STREAM_MAX + 1];
    void *state;
    uint64_t version;
    zcq_writer_t *history; //  DESIGN 2: [u32 size][body]...
    s_given_t *given;      //  waiting to be applied
    size_t given_count;
    size_t given_capacity;
    char command[ZCQ_TYPE_MAX + 1]; //  "" = none
    zcq_fields_t *data;
    zcq_fields_t *meta;
    uint64_t runs; //  for command ids
    zcq_decide_t *decide;
    zcq_doc_t *doc; //  a body being evolved
    zcq_doc_t *command_doc;
    zcq_doc_t *meta_doc;
    zcq_doc_t *reply_doc;
    zcq_event_t event; //  the event being evolved
    zcq_writer_t *body;
    zcq_writer_t *scratch;
    zcq_writer_t *emitted; //  the last run's bodies, [u32 size][body]...
    zcq_event_t *emitted_events;
    size_t emitted_count;
    char message[512];
};

//  --------------------------------------------------------------------------
//  Evolve (DESIGN 1, 2)

static void
s_fail (zcq_fixture_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->message, sizeof self->message, format, args);
    va_end (args);
}

//  Apply one stored body to the state; ZCQ_INTERNAL (message says why)
//  when evolve failed.
static zcq_err_t
s_evolve (zcq_fixture_t *self, const void *body, size_t size)
{
    if (zcq_doc_decode_trusted (self->doc, body, size) != ZCQ_OK
        || zcq_event_parse (&self->event, zcq_doc_root (self->doc)) != ZCQ_OK) {
        s_fail (self, "an event did not read back (out of memory?)");
        return ZCQ_INTERNAL;
    }
    const zcq_event_def_t *def = zcq_domain_event (self->aggregate, self->event.type);
    if (!def || !def->evolve)
        return ZCQ_OK;
    self->event.context = def->context;
    zcq_err_t err = zcq_event_upcast (&self->event, def);
    if (err == ZCQ_OK && !self->event.failed)
        def->evolve (self->state, &self->event);
    self->event.context = NULL;
    if (self->event.failed) {
        s_fail (self, "evolve of %s", self->event.error);
        return ZCQ_INTERNAL;
    }
    if (err != ZCQ_OK) {
        s_fail (self, "upcasting %s: %s", self->event.type, zcq_strerror (err));
        return ZCQ_INTERNAL;
    }
    return ZCQ_OK;
}

static void
s_state_reset (zcq_fixture_t *self)
{
    if (self->aggregate->release)
        self->aggregate->release (self->state);
    memset (self->state, 0, self->aggregate->state_size ? self->aggregate->state_size : 1);
    if (self->aggregate->init)
        self->aggregate->init (self->state);
}

//  Rebuild the state from the history (DESIGN 2).
static void
s_replay (zcq_fixture_t *self)
{
    char message[sizeof self->message];
    memcpy (message, self->message, sizeof message);
    s_state_reset (self);
    const uint8_t *at = zcq_writer_data (self->history);
    const uint8_t *end = at + zcq_writer_size (self->history);
    while (at + 4 <= end) {
        size_t size = zcq_get_be32 (at);
        s_evolve (self, at + 4, size); //  applied once before: it succeeds
        at += 4 + size;
    }
    memcpy (self->message, message, sizeof message);
}

static void
s_frame (zcq_writer_t *writer, const void *body, size_t size)
{
    uint8_t length[4];
    zcq_put_be32 (length, (uint32_t) size);
    zcq_writer_raw (writer, length, 4);
    zcq_writer_raw (writer, body, size);
}

//  Encode an event of the stream at version, as the log holds it.
static zcq_err_t
s_encode (zcq_fixture_t *self, const char *type, uint32_t type_version, zcq_fields_t *data,
          const char *command, const zcq_value_t *meta, uint64_t version)
{
    zcq_writer_reset (self->body);
    zcq_event_encode_head (self->body, "fixture", -1, self->stream, strlen (self->stream),
                           strlen (self->aggregate->name), version, type, type_version, command,
                           strlen (command), meta);
    zcq_fields_encode (data, self->body);
    if (!zcq_writer_ok (self->body) || !zcq_fields_ok (data)) {
        s_fail (self, "out of memory encoding an event");
        return ZCQ_NOMEM;
    }
    //  the writer's own buffer, stamped in place as the log writer does
    uint8_t *bytes = (uint8_t *) zcq_writer_data (self->body);
    zcq_put_be64 (bytes + ZCQ_EVENT_POSITION_OFFSET, version);
    zcq_put_be64 (bytes + ZCQ_EVENT_TIME_OFFSET, (uint64_t) zcq_now_us ());
    return ZCQ_OK;
}

//  Apply the given events, in order.
static zcq_err_t
s_apply_given (zcq_fixture_t *self)
{
    zcq_err_t err = ZCQ_OK;
    size_t index = 0;
    for (; err == ZCQ_OK && index < self->given_count; index++) {
        s_given_t *given = &self->given[index];
        const zcq_event_def_t *def = zcq_domain_event (self->aggregate, given->type);
        if (!def) {
            s_fail (self, "given event type '%s' is not declared by aggregate %s", given->type,
                    self->aggregate->name);
            err = ZCQ_INTERNAL;
            break;
        }
        uint32_t version = given->version ? given->version : (def->version ? def->version : 1);
        err = s_encode (self, given->type, version, given->data, "given", NULL, self->version + 1);
        if (err == ZCQ_OK)
            err = s_evolve (self, zcq_writer_data (self->body), zcq_writer_size (self->body));
        if (err == ZCQ_OK) {
            s_frame (self->history, zcq_writer_data (self->body), zcq_writer_size (self->body));
            self->version++;
        }
        else
            s_replay (self);
    }
    for (index = 0; index < self->given_count; index++)
        zcq_fields_destroy (&self->given[index].data);
    self->given_count = 0;
    return err;
}

//  --------------------------------------------------------------------------
//  The API

zcq_fixture_t *
zcq_fixture_new (const zcq_domain_t *domain, const char *aggregate, const char *key)
{
    char error[256];
    if (zcq_domain_check (domain, error, sizeof error) != ZCQ_OK) {
        fprintf (stderr, "zcq_fixture_new: %s\n", error);
        return NULL;
    }
    const zcq_aggregate_def_t *def
        = aggregate ? zcq_domain_aggregate (domain, aggregate, strlen (aggregate)) : NULL;
    if (!def || !key || !*key || strlen (key) > ZCQ_KEY_MAX || strchr (key, '/')) {
        fprintf (stderr, "zcq_fixture_new: %s\n",
                 def ? "a key is 1 to 128 bytes, without '/'" : "no such aggregate");
        return NULL;
    }
    zcq_fixture_t *self = calloc (1, sizeof (zcq_fixture_t));
    if (!self)
        return NULL;
    self->aggregate = def;
    snprintf (self->key, sizeof self->key, "%s", key);
    snprintf (self->stream, sizeof self->stream, "%s/%s", def->name, key);
    self->state = calloc (1, def->state_size ? def->state_size : 1);
    self->history = zcq_writer_new ();
    self->decide = zcq_decide_new ();
    self->doc = zcq_doc_new ();
    self->command_doc = zcq_doc_new ();
    self->meta_doc = zcq_doc_new ();
    self->reply_doc = zcq_doc_new ();
    self->body = zcq_writer_new ();
    self->scratch = zcq_writer_new ();
    self->emitted = zcq_writer_new ();
    if (!self->state || !self->history || !self->decide || !self->doc || !self->command_doc
        || !self->meta_doc || !self->reply_doc || !self->body || !self->scratch || !self->emitted) {
        zcq_fixture_destroy (&self);
        return NULL;
    }
    if (def->init)
        def->init (self->state);
    //  no reply yet: an empty map
    zcq_writer_map_close (self->scratch, zcq_writer_map_open (self->scratch), 0);
    zcq_doc_decode_trusted (self->reply_doc, zcq_writer_data (self->scratch),
                            zcq_writer_size (self->scratch));
    return self;
}

static void
s_emitted_release (zcq_fixture_t *self)
{
    for (size_t index = 0; self->emitted_events && index < self->emitted_count; index++)
        zcq_event_release (&self->emitted_events[index]);
    free (self->emitted_events);
    self->emitted_events = NULL;
    self->emitted_count = 0;
    zcq_writer_reset (self->emitted);
}

void
zcq_fixture_destroy (zcq_fixture_t **self_p)
{
    zcq_fixture_t *self = *self_p;
    if (!self)
        return;
    if (self->state && self->aggregate->release)
        self->aggregate->release (self->state);
    free (self->state);
    for (size_t index = 0; index < self->given_count; index++)
        zcq_fields_destroy (&self->given[index].data);
    free (self->given);
    zcq_fields_destroy (&self->data);
    zcq_fields_destroy (&self->meta);
    s_emitted_release (self);
    zcq_event_release (&self->event);
    zcq_writer_destroy (&self->history);
    zcq_decide_destroy (&self->decide);
    zcq_doc_destroy (&self->doc);
    zcq_doc_destroy (&self->command_doc);
    zcq_doc_destroy (&self->meta_doc);
    zcq_doc_destroy (&self->reply_doc);
    zcq_writer_destroy (&self->body);
    zcq_writer_destroy (&self->scratch);
    zcq_writer_destroy (&self->emitted);
    free (self);
    *self_p = NULL;
}

zcq_fields_t *
zcq_fixture_given_version (zcq_fixture_t *self, const char *type, uint32_t version)
{
    if (!type || strlen (type) > ZCQ_TYPE_MAX)
        return NULL;
    if (self->given_count == self->given_capacity) {
        size_t capacity = self->given_capacity ? self->given_capacity * 2 : 8;
        s_given_t *given = realloc (self->given, capacity * sizeof (s_given_t));
        if (!given)
            return NULL;
        self->given = given;
        self->given_capacity = capacity;
    }
    s_given_t *given = &self->given[self->given_count];
    given->data = zcq_fields_new ();
    if (!given->data)
        return NULL;
    snprintf (given->type, sizeof given->type, "%s", type);
    given->version = version;
    self->given_count++;
    return given->data;
}

zcq_fields_t *
zcq_fixture_given (zcq_fixture_t *self, const char *type)
{
    return zcq_fixture_given_version (self, type, 0);
}

zcq_fields_t *
zcq_fixture_when (zcq_fixture_t *self, const char *type)
{
    if (!type || strlen (type) > ZCQ_TYPE_MAX)
        return NULL;
    snprintf (self->command, sizeof self->command, "%s", type);
    if (!self->data)
        self->data = zcq_fields_new ();
    else
        zcq_fields_reset (self->data);
    if (self->meta)
        zcq_fields_reset (self->meta);
    return self->data;
}

zcq_fields_t *
zcq_fixture_meta (zcq_fixture_t *self)
{
    if (!self->meta)
        self->meta = zcq_fields_new ();
    return self->meta;
}

//  Decide the command; its events, encoded, are in self->emitted.
static zcq_err_t
s_decide (zcq_fixture_t *self, const char *command_id)
{
    const zcq_command_def_t *def
        = zcq_domain_command (self->aggregate, self->command, strlen (self->command));
    if (!def) {
        s_fail (self, "unknown command type '%s' for aggregate %s", self->command,
                self->aggregate->name);
        return ZCQ_UNKNOWN;
    }
    zcq_writer_reset (self->scratch);
    zcq_fields_encode (self->data, self->scratch);
    const zcq_value_t *meta = NULL;
    if (zcq_doc_decode_trusted (self->command_doc, zcq_writer_data (self->scratch),
                                zcq_writer_size (self->scratch))
        != ZCQ_OK) {
        s_fail (self, "out of memory encoding the command");
        return ZCQ_INTERNAL;
    }
    if (self->meta && zcq_fields_count (self->meta)) {
        zcq_writer_reset (self->scratch);
        zcq_fields_encode (self->meta, self->scratch);
        if (zcq_doc_decode_trusted (self->meta_doc, zcq_writer_data (self->scratch),
                                    zcq_writer_size (self->scratch))
            != ZCQ_OK) {
            s_fail (self, "out of memory encoding the meta");
            return ZCQ_INTERNAL;
        }
        meta = zcq_doc_root (self->meta_doc);
    }
    zcq_decide_t *decide = self->decide;
    zcq_decide_reset (decide, self->aggregate, zcq_doc_root (self->command_doc), meta, self->key,
                      command_id, self->version);
    decide->context = def->context;
    zcq_err_t err = def->decide (decide, self->state);
    if (decide->nomem) {
        s_fail (self, "out of memory deciding");
        return ZCQ_INTERNAL;
    }
    if (decide->internal) {
        s_fail (self, "%s", decide->message);
        return ZCQ_INTERNAL;
    }
    if (err != ZCQ_OK) {
        if (err != ZCQ_REJECTED && err != ZCQ_INVALID && err != ZCQ_CONFLICT && err != ZCQ_UNKNOWN
            && err != ZCQ_DENIED && err != ZCQ_UNAVAILABLE)
            err = ZCQ_INTERNAL;
        s_fail (self, "%s", decide->message[0] ? decide->message : zcq_strerror (err));
        return err;
    }
    if (!zcq_decide_reply_encode (decide, self->scratch, self->message, sizeof self->message))
        return ZCQ_INTERNAL;
    if (zcq_writer_size (self->scratch) == 0)
        zcq_writer_map_close (self->scratch, zcq_writer_map_open (self->scratch), 0);
    if (zcq_doc_decode_trusted (self->reply_doc, zcq_writer_data (self->scratch),
                                zcq_writer_size (self->scratch))
        != ZCQ_OK) {
        s_fail (self, "out of memory encoding the reply");
        return ZCQ_INTERNAL;
    }
    for (size_t index = 0; index < decide->event_count; index++) {
        zcq_emitted_t *emitted = &decide->events[index];
        ZCQ_TRY (s_encode (self, emitted->type, emitted->type_version, emitted->fields, command_id,
                           meta, self->version + 1 + index));
        s_frame (self->emitted, zcq_writer_data (self->body), zcq_writer_size (self->body));
    }
    if (!zcq_writer_ok (self->emitted)) {
        s_fail (self, "out of memory encoding the events");
        return ZCQ_INTERNAL;
    }
    self->emitted_count = decide->event_count;
    return ZCQ_OK;
}

zcq_err_t
zcq_fixture_run (zcq_fixture_t *self)
{
    self->message[0] = 0;
    s_emitted_release (self);
    zcq_writer_reset (self->scratch);
    zcq_writer_map_close (self->scratch, zcq_writer_map_open (self->scratch), 0);
    zcq_doc_decode_trusted (self->reply_doc, zcq_writer_data (self->scratch),
                            zcq_writer_size (self->scratch));
    zcq_err_t err = s_apply_given (self);
    if (err != ZCQ_OK) {
        self->command[0] = 0; //  not decided: the test is wrong as given
        return err;
    }
    if (!self->command[0]) {
        s_fail (self, "no command: call zcq_fixture_when first");
        return ZCQ_INVALID;
    }
    if (!self->data && !(self->data = zcq_fields_new ()))
        return ZCQ_NOMEM;
    char command_id[64];
    snprintf (command_id, sizeof command_id, "fixture-%llu", (unsigned long long) ++self->runs);
    err = s_decide (self, command_id);
    if (err == ZCQ_OK) {
        //  apply the events; an evolve that fails undoes the command
        const uint8_t *at = zcq_writer_data (self->emitted);
        for (size_t index = 0; err == ZCQ_OK && index < self->emitted_count; index++) {
            size_t size = zcq_get_be32 (at);
            err = s_evolve (self, at + 4, size);
            at += 4 + size;
        }
        if (err == ZCQ_OK) {
            zcq_writer_raw (self->history, zcq_writer_data (self->emitted),
                            zcq_writer_size (self->emitted));
            self->version += self->emitted_count;
        }
        else
            s_replay (self);
    }
    if (err != ZCQ_OK)
        s_emitted_release (self);
    self->command[0] = 0;
    return err;
}

const char *
zcq_fixture_message (const zcq_fixture_t *self)
{
    return self->message;
}

size_t
zcq_fixture_emitted_count (const zcq_fixture_t *self)
{
    return self->emitted_count;
}

const zcq_event_t *
zcq_fixture_emitted (zcq_fixture_t *self, size_t index)
{
    if (index >= self->emitted_count)
        return NULL;
    if (!self->emitted_events) {
        self->emitted_events = calloc (self->emitted_count, sizeof (zcq_event_t));
        if (!self->emitted_events)
            return NULL;
        const uint8_t *at = zcq_writer_data (self->emitted);
        for (size_t event = 0; event < self->emitted_count; event++) {
            size_t size = zcq_get_be32 (at);
            zcq_event_read (&self->emitted_events[event], at + 4, size);
            at += 4 + size;
        }
    }
    return &self->emitted_events[index];
}

const zcq_value_t *
zcq_fixture_reply (const zcq_fixture_t *self)
{
    return zcq_doc_root (self->reply_doc);
}

const void *
zcq_fixture_state (zcq_fixture_t *self)
{
    if (self->given_count)
        s_apply_given (self);
    return self->state;
}

uint64_t
zcq_fixture_version (zcq_fixture_t *self)
{
    if (self->given_count)
        s_apply_given (self);
    return self->version;
}
