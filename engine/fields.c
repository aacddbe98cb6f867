/*  fields.c: what domain code touches: fields builders and decisions
    (recorded events are event.c's). Nothing here is shared between
    threads: each shard and each projection owns its decisions and
    builders.
*/
#include "zcq_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

int64_t
zcq_now_us (void)
{
    struct timeval now;
    gettimeofday (&now, NULL);
    return (int64_t) now.tv_sec * 1000000 + now.tv_usec;
}

uint64_t
zcq_hash (const void *bytes, size_t len)
{
    const uint8_t *byte = bytes;
    uint64_t hash = 14695981039346656037ULL;
    for (size_t index = 0; index < len; index++) {
        hash ^= byte[index];
        hash *= 1099511628211ULL;
    }
    //  FNV-1a leaves the high bits weak: mix them down (murmur3 finaliser)
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    return hash;
}

//  --------------------------------------------------------------------------
//  Arena: a chain of chunks; reset keeps the first one.

#define S_ARENA_CHUNK 4096

typedef struct s_chunk_t {
    struct s_chunk_t *next;
    size_t used;
    size_t size;
    char data[];
} s_chunk_t;

struct zcq_arena_t {
    s_chunk_t *head;
};

zcq_arena_t *
zcq_arena_new (void)
{
    return calloc (1, sizeof (zcq_arena_t));
}

void
zcq_arena_reset (zcq_arena_t *self)
{
    if (!self || !self->head)
        return;
    s_chunk_t *chunk = self->head->next;
    while (chunk) {
        s_chunk_t *next = chunk->next;
        free (chunk);
        chunk = next;
    }
    self->head->next = NULL;
    self->head->used = 0;
}

void
zcq_arena_destroy (zcq_arena_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_arena_reset (*self_p);
    free ((*self_p)->head);
    free (*self_p);
    *self_p = NULL;
}

const char *
zcq_arena_strndup (zcq_arena_t *self, const char *text, size_t len)
{
    s_chunk_t *chunk = self->head;
    if (!chunk || chunk->size - chunk->used < len + 1) {
        size_t size = len + 1 > S_ARENA_CHUNK ? len + 1 : S_ARENA_CHUNK;
        s_chunk_t *fresh = malloc (sizeof (s_chunk_t) + size);
        if (!fresh)
            return NULL;
        fresh->used = 0;
        fresh->size = size;
        //  the first chunk stays first so that reset keeps it
        if (chunk) {
            fresh->next = chunk->next;
            chunk->next = fresh;
        }
        else {
            fresh->next = NULL;
            self->head = fresh;
        }
        chunk = fresh;
    }
    char *copy = chunk->data + chunk->used;
    memcpy (copy, text, len);
    copy[len] = 0;
    chunk->used += len + 1;
    return copy;
}

//  --------------------------------------------------------------------------
//  Fields: each call is one entry holding its value as a scalar (numbers
//  as numbers); names, strings and encoded values live in one byte
//  buffer, referred to by offset.

typedef enum { S_SET, S_ADD, S_UNSET } s_op_t;

typedef struct {
    s_op_t op;
    zcq_scalar_kind_t kind; //  S_SET: the value's kind
    uint32_t name_at;
    uint32_t name_len;
    uint32_t value_at; //  ZCQ_SCALAR_STR, _RAW: the bytes
    uint32_t value_len;
    union {
        int64_t i; //  ZCQ_SCALAR_INT; S_ADD: the delta
        double f;
        bool b;
    } as;
} s_field_t;

struct zcq_fields_t {
    zcq_writer_t *bytes;
    s_field_t *fields;
    size_t count;
    size_t capacity;
    bool ok;
    zcq_change_t *changes; //  zcq_fields_changes, valid while changes_ready
    size_t change_count;
    size_t change_capacity;
    bool changes_ready;
};

zcq_fields_t *
zcq_fields_new (void)
{
    zcq_fields_t *self = calloc (1, sizeof (zcq_fields_t));
    if (!self)
        return NULL;
    self->bytes = zcq_writer_new ();
    self->ok = true;
    if (!self->bytes)
        zcq_fields_destroy (&self);
    return self;
}

void
zcq_fields_destroy (zcq_fields_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_writer_destroy (&(*self_p)->bytes);
    free ((*self_p)->fields);
    free ((*self_p)->changes);
    free (*self_p);
    *self_p = NULL;
}

void
zcq_fields_reset (zcq_fields_t *self)
{
    zcq_writer_reset (self->bytes);
    self->count = 0;
    self->ok = true;
    self->changes_ready = false;
}

size_t
zcq_fields_count (const zcq_fields_t *self)
{
    return self->count;
}

bool
zcq_fields_ok (const zcq_fields_t *self)
{
    return self->ok && zcq_writer_ok (self->bytes);
}

//  Start a field: record its name; the caller then sets its value.
static s_field_t *
s_field_begin (zcq_fields_t *self, const char *name, s_op_t op)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 8;
        s_field_t *fields = realloc (self->fields, capacity * sizeof (s_field_t));
        if (!fields) {
            self->ok = false;
            return NULL;
        }
        self->fields = fields;
        self->capacity = capacity;
    }
    self->changes_ready = false;
    s_field_t *field = &self->fields[self->count++];
    size_t name_len = strlen (name);
    field->op = op;
    field->kind = ZCQ_SCALAR_NIL;
    field->name_at = (uint32_t) zcq_writer_size (self->bytes);
    field->name_len = (uint32_t) name_len;
    zcq_writer_raw (self->bytes, name, name_len);
    field->value_at = (uint32_t) zcq_writer_size (self->bytes);
    field->value_len = 0;
    field->as.i = 0;
    return field;
}

//  Close a field whose value bytes were appended after its name.
static void
s_field_bytes (zcq_fields_t *self, s_field_t *field, zcq_scalar_kind_t kind)
{
    field->kind = kind;
    field->value_len = (uint32_t) (zcq_writer_size (self->bytes) - field->value_at);
}

void
zcq_set_int (zcq_fields_t *self, const char *name, int64_t value)
{
    s_field_t *field = self ? s_field_begin (self, name, S_SET) : NULL;
    if (field) {
        field->kind = ZCQ_SCALAR_INT;
        field->as.i = value;
    }
}

void
zcq_set_float (zcq_fields_t *self, const char *name, double value)
{
    s_field_t *field = self ? s_field_begin (self, name, S_SET) : NULL;
    if (field) {
        field->kind = ZCQ_SCALAR_FLOAT;
        field->as.f = value;
    }
}

void
zcq_set_bool (zcq_fields_t *self, const char *name, bool value)
{
    s_field_t *field = self ? s_field_begin (self, name, S_SET) : NULL;
    if (field) {
        field->kind = ZCQ_SCALAR_BOOL;
        field->as.b = value;
    }
}

void
zcq_set_strn (zcq_fields_t *self, const char *name, const char *value, size_t len)
{
    s_field_t *field = self ? s_field_begin (self, name, S_SET) : NULL;
    if (!field)
        return;
    if (len > UINT32_MAX)
        self->ok = false;
    else
        zcq_writer_raw (self->bytes, value, len);
    s_field_bytes (self, field, ZCQ_SCALAR_STR);
}

void
zcq_set_str (zcq_fields_t *self, const char *name, const char *value)
{
    value = value ? value : "";
    zcq_set_strn (self, name, value, strlen (value));
}

void
zcq_set_bin (zcq_fields_t *self, const char *name, const void *data, size_t len)
{
    s_field_t *field = self ? s_field_begin (self, name, S_SET) : NULL;
    if (!field)
        return;
    zcq_writer_bin (self->bytes, data, len);
    s_field_bytes (self, field, ZCQ_SCALAR_RAW);
}

void
zcq_set_nil (zcq_fields_t *self, const char *name)
{
    if (self)
        s_field_begin (self, name, S_SET);
}

void
zcq_set_value (zcq_fields_t *self, const char *name, const zcq_value_t *value)
{
    s_field_t *field = self ? s_field_begin (self, name, S_SET) : NULL;
    if (!field)
        return;
    //  numbers, strings, nil and booleans as such; other values (floats,
    //  whose width the value keeps, binaries, arrays, maps) encoded
    const char *str;
    size_t len;
    switch (zcq_value_type (value)) {
        case ZCQ_TYPE_NIL: return;
        case ZCQ_TYPE_BOOL:
            field->kind = ZCQ_SCALAR_BOOL;
            zcq_value_bool (value, &field->as.b);
            return;
        case ZCQ_TYPE_STR:
            zcq_value_str (value, &str, &len);
            zcq_writer_raw (self->bytes, str, len);
            s_field_bytes (self, field, ZCQ_SCALAR_STR);
            return;
        case ZCQ_TYPE_INT:
            if (zcq_value_int (value, &field->as.i)) {
                field->kind = ZCQ_SCALAR_INT;
                return;
            }
            break;
        default: break;
    }
    zcq_writer_value (self->bytes, value);
    s_field_bytes (self, field, ZCQ_SCALAR_RAW);
}

void
zcq_add_int (zcq_fields_t *self, const char *name, int64_t delta)
{
    s_field_t *field = self ? s_field_begin (self, name, S_ADD) : NULL;
    if (field) {
        field->kind = ZCQ_SCALAR_INT;
        field->as.i = delta;
    }
}

void
zcq_unset (zcq_fields_t *self, const char *name)
{
    if (self)
        s_field_begin (self, name, S_UNSET);
}

static const char *
s_name (const zcq_fields_t *self, const s_field_t *field)
{
    return (const char *) zcq_writer_data (self->bytes) + field->name_at;
}

static bool
s_same_name (const zcq_fields_t *self, const s_field_t *a, const s_field_t *b)
{
    return a->name_len == b->name_len
        && memcmp (s_name (self, a), s_name (self, b), a->name_len) == 0;
}

//  True when a later field has the same name (so this one is overridden).
static bool
s_overridden (const zcq_fields_t *self, size_t index)
{
    for (size_t later = index + 1; later < self->count; later++)
        if (s_same_name (self, &self->fields[later], &self->fields[index]))
            return true;
    return false;
}

//  The value of a field as a scalar (S_ADD: its delta as an integer).
static void
s_scalar (const zcq_fields_t *self, const s_field_t *field, zcq_scalar_t *value)
{
    value->kind = field->kind;
    value->as.i = field->as.i; //  (the union whole)
    value->bytes = NULL;
    value->len = 0;
    if (field->kind == ZCQ_SCALAR_STR || field->kind == ZCQ_SCALAR_RAW) {
        value->bytes = (const char *) zcq_writer_data (self->bytes) + field->value_at;
        value->len = field->value_len;
    }
}

void
zcq_scalar_write (const zcq_scalar_t *value, zcq_writer_t *writer)
{
    switch (value->kind) {
        case ZCQ_SCALAR_NIL: zcq_writer_nil (writer); break;
        case ZCQ_SCALAR_BOOL: zcq_writer_bool (writer, value->as.b); break;
        case ZCQ_SCALAR_INT: zcq_writer_int (writer, value->as.i); break;
        case ZCQ_SCALAR_FLOAT: zcq_writer_float (writer, value->as.f); break;
        case ZCQ_SCALAR_STR: zcq_writer_strn (writer, value->bytes, value->len); break;
        case ZCQ_SCALAR_RAW: zcq_writer_raw (writer, value->bytes, value->len); break;
    }
}

void
zcq_fields_encode (const zcq_fields_t *self, zcq_writer_t *writer)
{
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 0;
    for (size_t index = 0; index < self->count; index++) {
        const s_field_t *field = &self->fields[index];
        if (field->op == S_UNSET || s_overridden (self, index))
            continue;
        zcq_writer_strn (writer, s_name (self, field), field->name_len);
        zcq_scalar_t value;
        s_scalar (self, field, &value);
        zcq_scalar_write (&value, writer);
        count++;
    }
    zcq_writer_map_close (writer, mark, count);
}

//  Fold the calls on the name of fields[last] (its last call) into one
//  change: the last set or unset, and the adds after it.
static void
s_fold (const zcq_fields_t *self, size_t last, zcq_change_t *change)
{
    const s_field_t *field = &self->fields[last];
    change->name = s_name (self, field);
    change->name_len = field->name_len;
    change->delta = 0;
    if (field->op == S_UNSET) {
        change->op = ZCQ_CHANGE_UNSET;
        return;
    }
    const s_field_t *base = NULL;
    int64_t delta = 0;
    for (size_t index = last + 1; index-- > 0;) {
        const s_field_t *other = &self->fields[index];
        if (!s_same_name (self, other, field))
            continue;
        if (other->op != S_ADD) {
            base = other;
            break;
        }
        if (__builtin_add_overflow (delta, other->as.i, &delta)) {
            change->op = ZCQ_CHANGE_OVERFLOW;
            return;
        }
    }
    if (!base) {
        //  adds only: on the row's value
        change->op = ZCQ_CHANGE_ADD;
        change->delta = delta;
        return;
    }
    change->op = ZCQ_CHANGE_SET;
    if (base->op == S_SET && delta == 0) {
        s_scalar (self, base, &change->value);
        return;
    }
    //  adds after a set (which counts as 0 unless an integer) or an unset
    int64_t start = base->op == S_SET && base->kind == ZCQ_SCALAR_INT ? base->as.i : 0;
    change->value.kind = ZCQ_SCALAR_INT;
    change->value.bytes = NULL;
    change->value.len = 0;
    if (__builtin_add_overflow (start, delta, &change->value.as.i))
        change->op = ZCQ_CHANGE_OVERFLOW;
}

const zcq_change_t *
zcq_fields_changes (zcq_fields_t *self, size_t *count)
{
    if (!self->changes_ready) {
        if (self->count > self->change_capacity) {
            zcq_change_t *changes = realloc (self->changes, self->capacity * sizeof (zcq_change_t));
            if (!changes)
                return NULL;
            self->changes = changes;
            self->change_capacity = self->capacity;
        }
        self->change_count = 0;
        for (size_t index = 0; index < self->count; index++)
            if (!s_overridden (self, index))
                s_fold (self, index, &self->changes[self->change_count++]);
        self->changes_ready = true;
    }
    *count = self->change_count;
    return self->changes;
}

//  --------------------------------------------------------------------------
//  Decisions

zcq_decide_t *
zcq_decide_new (void)
{
    zcq_decide_t *self = calloc (1, sizeof (zcq_decide_t));
    if (!self)
        return NULL;
    self->arena = zcq_arena_new ();
    if (!self->arena)
        zcq_decide_destroy (&self);
    return self;
}

void
zcq_decide_destroy (zcq_decide_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_decide_t *self = *self_p;
    for (size_t index = 0; index < self->event_capacity; index++)
        zcq_fields_destroy (&self->events[index].fields);
    free (self->events);
    zcq_arena_destroy (&self->arena);
    zcq_fields_destroy (&self->reply);
    free (self);
    *self_p = NULL;
}

void
zcq_decide_reset (zcq_decide_t *self, const zcq_aggregate_def_t *aggregate, const zcq_value_t *data,
                  const zcq_value_t *meta, const char *key, const char *command_id,
                  uint64_t version)
{
    self->aggregate = aggregate;
    self->context = NULL;
    self->data = data;
    self->meta = meta;
    self->key = key;
    self->command_id = command_id;
    self->version = version;
    self->outcome = ZCQ_OK;
    self->message[0] = 0;
    self->event_count = 0;
    self->nomem = false;
    self->internal = false;
    self->system = false;
    self->first = 1;
    self->truncate_before = 0;
    if (self->reply)
        zcq_fields_reset (self->reply);
    zcq_arena_reset (self->arena);
}

//  The names of a command's `ok` reply and of the replies of a cluster's
//  nodes: decide may not set them (zcq_decide_reply).
static const char *const s_reply_names[]
    = { "id",   "ok",    "stream",  "version", "position", "events", "duplicate", "group",
        "node", "error", "message", "reason",  "owner",    "rid",    NULL };

bool
zcq_decide_reply_encode (zcq_decide_t *self, zcq_writer_t *writer, char *failure, size_t size)
{
    zcq_writer_reset (writer);
    zcq_fields_t *reply = self->reply;
    if (!reply || zcq_fields_count (reply) == 0)
        return true;
    size_t count;
    const zcq_change_t *changes = zcq_fields_changes (reply, &count);
    if (!changes) {
        snprintf (failure, size, "out of memory encoding the reply");
        return false;
    }
    for (size_t index = 0; index < count; index++)
        for (const char *const *name = s_reply_names; *name; name++)
            if (strlen (*name) == changes[index].name_len
                && memcmp (*name, changes[index].name, changes[index].name_len) == 0) {
                snprintf (failure, size, "decide set reply field '%s', a name of the protocol's",
                          *name);
                return false;
            }
    zcq_fields_encode (reply, writer);
    if (!zcq_writer_ok (writer) || !zcq_fields_ok (reply)) {
        snprintf (failure, size, "out of memory encoding the reply");
        return false;
    }
    if (zcq_writer_size (writer) > ZCQ_REPLY_MAX) {
        snprintf (failure, size, "decide's reply fields take %zu bytes, more than %d",
                  zcq_writer_size (writer), ZCQ_REPLY_MAX);
        return false;
    }
    return true;
}

const zcq_value_t *
zcq_decide_data (const zcq_decide_t *self)
{
    return self->data;
}

const zcq_value_t *
zcq_decide_meta (const zcq_decide_t *self)
{
    return self->meta;
}

const char *
zcq_decide_key (const zcq_decide_t *self)
{
    return self->key;
}

const char *
zcq_decide_command_id (const zcq_decide_t *self)
{
    return self->command_id;
}

uint64_t
zcq_decide_version (const zcq_decide_t *self)
{
    return self->version;
}

void *
zcq_decide_context (const zcq_decide_t *self)
{
    return self->context;
}

//  Record a domain bug; the first one is the command's message.
static void s_internal (zcq_decide_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void
s_internal (zcq_decide_t *self, const char *format, ...)
{
    if (self->internal)
        return;
    self->internal = true;
    self->outcome = ZCQ_INTERNAL;
    va_list args;
    va_start (args, format);
    vsnprintf (self->message, sizeof self->message, format, args);
    va_end (args);
}

zcq_fields_t *
zcq_emit (zcq_decide_t *self, const char *type)
{
    //  an event no evolve knows would be stored and never applied
    const zcq_event_def_t *def = type && self->aggregate ? zcq_domain_event (self->aggregate, type)
                                                         : NULL;
    if (!def && !(self->system && zcq_system_event (type))) {
        s_internal (self, "event type '%s' is not declared by aggregate %s", type ? type : "(null)",
                    self->aggregate ? self->aggregate->name : "?");
        return NULL;
    }
    if (self->event_count == self->event_capacity) {
        size_t capacity = self->event_capacity ? self->event_capacity * 2 : 4;
        zcq_emitted_t *events = realloc (self->events, capacity * sizeof (zcq_emitted_t));
        if (!events) {
            self->nomem = true;
            return NULL;
        }
        for (size_t index = self->event_capacity; index < capacity; index++)
            events[index].fields = NULL;
        self->events = events;
        self->event_capacity = capacity;
    }
    zcq_emitted_t *event = &self->events[self->event_count];
    if (!event->fields && !(event->fields = zcq_fields_new ())) {
        self->nomem = true;
        return NULL;
    }
    zcq_fields_reset (event->fields);
    event->type = zcq_arena_strndup (self->arena, type, strlen (type));
    event->type_version = def && def->version ? def->version : 1;
    if (!event->type) {
        self->nomem = true;
        return NULL;
    }
    self->event_count++;
    return event->fields;
}

zcq_fields_t *
zcq_decide_reply (zcq_decide_t *self)
{
    if (!self->reply && !(self->reply = zcq_fields_new ()))
        self->nomem = true;
    return self->reply;
}

static zcq_err_t
s_outcome (zcq_decide_t *self, zcq_err_t outcome, const char *format, va_list args)
{
    self->outcome = outcome;
    vsnprintf (self->message, sizeof self->message, format, args);
    return outcome;
}

zcq_err_t
zcq_reject (zcq_decide_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    s_outcome (self, ZCQ_REJECTED, format, args);
    va_end (args);
    return ZCQ_REJECTED;
}

zcq_err_t
zcq_invalid (zcq_decide_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    s_outcome (self, ZCQ_INVALID, format, args);
    va_end (args);
    return ZCQ_INVALID;
}

zcq_err_t
zcq_arg_int_or (zcq_decide_t *self, const char *field, int64_t min, int64_t max, int64_t fallback,
                int64_t *value)
{
    const zcq_value_t *found = zcq_value_get (self->data, field);
    if (!found || zcq_value_type (found) == ZCQ_TYPE_NIL) {
        *value = fallback;
        return ZCQ_OK;
    }
    return zcq_arg_int (self, field, min, max, value);
}

zcq_err_t
zcq_arg_int (zcq_decide_t *self, const char *field, int64_t min, int64_t max, int64_t *value)
{
    if (zcq_value_type (self->data) != ZCQ_TYPE_MAP)
        return zcq_invalid (self, "data must be a map with field '%s'", field);
    const zcq_value_t *found = zcq_value_get (self->data, field);
    if (!found)
        return zcq_invalid (self, "data.%s is required", field);
    if (!zcq_value_int (found, value))
        return zcq_invalid (self, "data.%s must be an integer", field);
    if (*value < min)
        return zcq_invalid (self, "data.%s must be >= %lld", field, (long long) min);
    if (*value > max)
        return zcq_invalid (self, "data.%s must be <= %lld", field, (long long) max);
    return ZCQ_OK;
}

zcq_err_t
zcq_arg_str (zcq_decide_t *self, const char *field, size_t min_len, size_t max_len,
             const char **value)
{
    if (zcq_value_type (self->data) != ZCQ_TYPE_MAP)
        return zcq_invalid (self, "data must be a map with field '%s'", field);
    const zcq_value_t *found = zcq_value_get (self->data, field);
    const char *str;
    size_t len;
    if (!found)
        return zcq_invalid (self, "data.%s is required", field);
    if (!zcq_value_str (found, &str, &len))
        return zcq_invalid (self, "data.%s must be a string", field);
    if (len < min_len || len > max_len)
        return zcq_invalid (self, "data.%s must be %zu to %zu bytes", field, min_len, max_len);
    if (memchr (str, 0, len))
        return zcq_invalid (self, "data.%s must not contain NUL", field);
    *value = zcq_arena_strndup (self->arena, str, len);
    if (!*value) {
        self->nomem = true;
        return zcq_invalid (self, "out of memory");
    }
    return ZCQ_OK;
}

zcq_err_t
zcq_arg_bool_or (zcq_decide_t *self, const char *field, bool fallback, bool *value)
{
    const zcq_value_t *found = zcq_value_get (self->data, field);
    if (!found || zcq_value_type (found) == ZCQ_TYPE_NIL) {
        *value = fallback;
        return ZCQ_OK;
    }
    if (!zcq_value_bool (found, value))
        return zcq_invalid (self, "data.%s must be a boolean", field);
    return ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  Values

bool
zcq_value_copy_str (const zcq_value_t *value, char *buffer, size_t size)
{
    const char *str;
    size_t len;
    if (!zcq_value_str (value, &str, &len) || len >= size || memchr (str, 0, len))
        return false;
    memcpy (buffer, str, len);
    buffer[len] = 0;
    return true;
}
