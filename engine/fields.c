/*  fields.c: what domain code touches: fields builders, decisions and
    recorded events. Nothing here is shared between threads: each shard and
    each projection owns its decisions, builders and events.
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
//  Fields: entries are offsets into one byte buffer holding each field's
//  name followed by its encoded value.

typedef enum { S_SET, S_ADD, S_UNSET } s_op_t;

typedef struct {
    s_op_t op;
    uint32_t name_at;
    uint32_t name_len;
    uint32_t value_at;
    uint32_t value_len;
    int64_t delta;
} s_field_t;

struct zcq_fields_t {
    zcq_writer_t *bytes;
    zcq_writer_t *scratch;
    s_field_t *fields;
    size_t count;
    size_t capacity;
    bool ok;
};

zcq_fields_t *
zcq_fields_new (void)
{
    zcq_fields_t *self = calloc (1, sizeof (zcq_fields_t));
    if (!self)
        return NULL;
    self->bytes = zcq_writer_new ();
    self->scratch = zcq_writer_new ();
    self->ok = true;
    if (!self->bytes || !self->scratch)
        zcq_fields_destroy (&self);
    return self;
}

void
zcq_fields_destroy (zcq_fields_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_writer_destroy (&(*self_p)->bytes);
    zcq_writer_destroy (&(*self_p)->scratch);
    free ((*self_p)->fields);
    free (*self_p);
    *self_p = NULL;
}

void
zcq_fields_reset (zcq_fields_t *self)
{
    zcq_writer_reset (self->bytes);
    self->count = 0;
    self->ok = true;
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

//  Start a field: record its name; the caller then writes its value.
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
    s_field_t *field = &self->fields[self->count++];
    size_t name_len = strlen (name);
    field->op = op;
    field->name_at = (uint32_t) zcq_writer_size (self->bytes);
    field->name_len = (uint32_t) name_len;
    zcq_writer_raw (self->bytes, name, name_len);
    field->value_at = (uint32_t) zcq_writer_size (self->bytes);
    field->value_len = 0;
    field->delta = 0;
    return field;
}

static void
s_field_end (zcq_fields_t *self, s_field_t *field)
{
    field->value_len = (uint32_t) (zcq_writer_size (self->bytes) - field->value_at);
}

#define S_SET_FIELD(write)                                \
    if (!self)                                            \
        return;                                           \
    s_field_t *field = s_field_begin (self, name, S_SET); \
    if (!field)                                           \
        return;                                           \
    write;                                                \
    s_field_end (self, field);

void
zcq_set_int (zcq_fields_t *self, const char *name, int64_t value)
{
    S_SET_FIELD (zcq_writer_int (self->bytes, value));
}

void
zcq_set_float (zcq_fields_t *self, const char *name, double value)
{
    S_SET_FIELD (zcq_writer_float (self->bytes, value));
}

void
zcq_set_bool (zcq_fields_t *self, const char *name, bool value)
{
    S_SET_FIELD (zcq_writer_bool (self->bytes, value));
}

void
zcq_set_str (zcq_fields_t *self, const char *name, const char *value)
{
    S_SET_FIELD (zcq_writer_str (self->bytes, value ? value : ""));
}

void
zcq_set_strn (zcq_fields_t *self, const char *name, const char *value, size_t len)
{
    S_SET_FIELD (zcq_writer_strn (self->bytes, value, len));
}

void
zcq_set_bin (zcq_fields_t *self, const char *name, const void *data, size_t len)
{
    S_SET_FIELD (zcq_writer_bin (self->bytes, data, len));
}

void
zcq_set_nil (zcq_fields_t *self, const char *name)
{
    S_SET_FIELD (zcq_writer_nil (self->bytes));
}

void
zcq_set_value (zcq_fields_t *self, const char *name, const zcq_value_t *value)
{
    S_SET_FIELD (zcq_writer_value (self->bytes, value));
}

void
zcq_add_int (zcq_fields_t *self, const char *name, int64_t delta)
{
    if (!self)
        return;
    s_field_t *field = s_field_begin (self, name, S_ADD);
    if (!field)
        return;
    field->delta = delta;
    zcq_writer_int (self->bytes, delta);
    s_field_end (self, field);
}

void
zcq_unset (zcq_fields_t *self, const char *name)
{
    if (!self)
        return;
    s_field_t *field = s_field_begin (self, name, S_UNSET);
    if (field)
        s_field_end (self, field);
}

static const char *
s_name (const zcq_fields_t *self, const s_field_t *field)
{
    return (const char *) zcq_writer_data (self->bytes) + field->name_at;
}

//  True when a later field has the same name (so this one is overridden).
static bool
s_overridden (const zcq_fields_t *self, size_t index)
{
    const s_field_t *field = &self->fields[index];
    for (size_t later = index + 1; later < self->count; later++) {
        const s_field_t *other = &self->fields[later];
        if (other->name_len == field->name_len
            && memcmp (s_name (self, other), s_name (self, field), field->name_len) == 0)
            return true;
    }
    return false;
}

//  The last field named like the given string, or NULL.
static const s_field_t *
s_find (const zcq_fields_t *self, const char *name, size_t len)
{
    for (size_t index = self->count; index-- > 0;) {
        const s_field_t *field = &self->fields[index];
        if (field->name_len == len && memcmp (s_name (self, field), name, len) == 0)
            return field;
    }
    return NULL;
}

//  Sum of every add to a field since its last set or unset, and where that
//  run of adds starts; false when the sum overflows.
static bool
s_adds (const zcq_fields_t *self, const char *name, size_t len, const s_field_t **base,
        int64_t *sum)
{
    int64_t delta = 0;
    *base = NULL;
    for (size_t index = self->count; index-- > 0;) {
        const s_field_t *field = &self->fields[index];
        if (field->name_len != len || memcmp (s_name (self, field), name, len) != 0)
            continue;
        if (field->op != S_ADD) {
            *base = field;
            break;
        }
        if (__builtin_add_overflow (delta, field->delta, &delta))
            return false;
    }
    *sum = delta;
    return true;
}

static void
s_write_field_value (const zcq_fields_t *self, const s_field_t *field, zcq_writer_t *writer)
{
    zcq_writer_raw (writer, (const char *) zcq_writer_data (self->bytes) + field->value_at,
                    field->value_len);
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
        s_write_field_value (self, field, writer);
        count++;
    }
    zcq_writer_map_close (writer, mark, count);
}

//  Write the merged value of a field, given the row's old value (or
//  NULL); false when an integer add overflows.
static bool
s_write_merged (const zcq_fields_t *self, const char *name, size_t len,
                const zcq_value_t *old_value, zcq_writer_t *writer)
{
    const s_field_t *base;
    int64_t delta;
    if (!s_adds (self, name, len, &base, &delta))
        return false;
    if (base && base->op == S_SET && delta == 0) {
        s_write_field_value (self, base, writer);
        return true;
    }
    int64_t start = 0;
    if (base && base->op == S_SET) {
        //  a set followed by adds: the set must have been an integer
        const uint8_t *bytes = (const uint8_t *) zcq_writer_data (self->bytes) + base->value_at;
        zcq_doc_t *doc = zcq_doc_new ();
        if (!doc || zcq_doc_decode_trusted (doc, bytes, base->value_len) != ZCQ_OK
            || !zcq_value_int (zcq_doc_root (doc), &start))
            start = 0;
        zcq_doc_destroy (&doc);
    }
    else if (!base)
        zcq_value_int (old_value, &start);
    int64_t result;
    if (__builtin_add_overflow (start, delta, &result))
        return false;
    zcq_writer_int (writer, result);
    return true;
}

bool
zcq_fields_merge (const zcq_fields_t *self, const zcq_value_t *row, const char *key,
                  zcq_writer_t *writer)
{
    bool ok = true;
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 0;
    if (!row) {
        zcq_writer_str (writer, "key");
        zcq_writer_str (writer, key);
        count++;
    }
    //  the row's fields, changed where the builder says so
    size_t row_size = zcq_value_size (row);
    for (size_t index = 0; index < row_size; index++) {
        const char *name;
        size_t len;
        const zcq_value_t *name_value = zcq_value_key_at (row, index);
        if (!zcq_value_str (name_value, &name, &len)) {
            zcq_writer_value (writer, name_value);
            zcq_writer_value (writer, zcq_value_val_at (row, index));
            count++;
            continue;
        }
        const s_field_t *last = s_find (self, name, len);
        if (last && last->op == S_UNSET)
            continue;
        zcq_writer_strn (writer, name, len);
        if (!last || (len == 3 && memcmp (name, "key", 3) == 0))
            zcq_writer_value (writer, zcq_value_val_at (row, index));
        else
            ok &= s_write_merged (self, name, len, zcq_value_val_at (row, index), writer);
        count++;
    }
    //  fields the row did not have yet
    for (size_t index = 0; index < self->count; index++) {
        const s_field_t *field = &self->fields[index];
        const char *name = s_name (self, field);
        if (field->op == S_UNSET || s_overridden (self, index))
            continue;
        if (field->name_len == 3 && memcmp (name, "key", 3) == 0)
            continue;
        //  find whether the row had it
        char lookup[256];
        if (field->name_len >= sizeof lookup)
            continue;
        memcpy (lookup, name, field->name_len);
        lookup[field->name_len] = 0;
        if (row && zcq_value_get (row, lookup))
            continue;
        zcq_writer_strn (writer, name, field->name_len);
        ok &= s_write_merged (self, name, field->name_len, NULL, writer);
        count++;
    }
    zcq_writer_map_close (writer, mark, count);
    return ok;
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
    free (self);
    *self_p = NULL;
}

void
zcq_decide_reset (zcq_decide_t *self, const zcq_value_t *data, const zcq_value_t *meta,
                  const char *key, const char *command_id, uint64_t version)
{
    self->data = data;
    self->meta = meta;
    self->key = key;
    self->command_id = command_id;
    self->version = version;
    self->outcome = ZCQ_OK;
    self->message[0] = 0;
    self->event_count = 0;
    self->nomem = false;
    zcq_arena_reset (self->arena);
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

zcq_fields_t *
zcq_emit (zcq_decide_t *self, const char *type)
{
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
    if (!event->type) {
        self->nomem = true;
        return NULL;
    }
    self->event_count++;
    return event->fields;
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
//  Recorded events

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

zcq_err_t
zcq_event_parse (zcq_event_t *self, const zcq_value_t *body)
{
    //  one pass over the map's entries (this runs for every event a shard
    //  or a view applies), then a check that every required field came
    enum {
        POSITION = 1,
        VERSION = 2,
        TIME = 4,
        TYPE = 8,
        AGGREGATE = 16,
        KEY = 32,
        STREAM = 64,
        COMMAND = 128,
        NODE = 256,
        ALL = 511
    };
    int seen = 0;
    self->body = body;
    self->data = NULL;
    self->meta = NULL;
    if (self->arena)
        zcq_arena_reset (self->arena);
    size_t count = zcq_value_size (body);
    if (zcq_value_type (body) != ZCQ_TYPE_MAP)
        return ZCQ_CORRUPT;
    for (size_t index = 0; index < count; index++) {
        const char *name;
        size_t len;
        if (!zcq_value_str (zcq_value_key_at (body, index), &name, &len))
            continue;
        const zcq_value_t *value = zcq_value_val_at (body, index);
#define S_IS(text) (len == sizeof (text) - 1 && memcmp (name, text, len) == 0)
#define S_STR(flag, field)                                                \
    do {                                                                  \
        if (!zcq_value_copy_str (value, self->field, sizeof self->field)) \
            return ZCQ_CORRUPT;                                           \
        seen |= flag;                                                     \
    } while (0)
        if (S_IS ("position")) {
            if (!zcq_value_uint (value, &self->position))
                return ZCQ_CORRUPT;
            seen |= POSITION;
        }
        else if (S_IS ("version")) {
            if (!zcq_value_uint (value, &self->version))
                return ZCQ_CORRUPT;
            seen |= VERSION;
        }
        else if (S_IS ("time")) {
            if (!zcq_value_int (value, &self->time))
                return ZCQ_CORRUPT;
            seen |= TIME;
        }
        else if (S_IS ("type"))
            S_STR (TYPE, type);
        else if (S_IS ("aggregate"))
            S_STR (AGGREGATE, aggregate);
        else if (S_IS ("key"))
            S_STR (KEY, key);
        else if (S_IS ("stream"))
            S_STR (STREAM, stream);
        else if (S_IS ("command"))
            S_STR (COMMAND, command);
        else if (S_IS ("node"))
            S_STR (NODE, node);
        else if (S_IS ("data"))
            self->data = value;
        else if (S_IS ("meta"))
            self->meta = value;
#undef S_IS
#undef S_STR
    }
    return seen == ALL ? ZCQ_OK : ZCQ_CORRUPT;
}

void
zcq_event_release (zcq_event_t *self)
{
    zcq_arena_destroy (&self->arena);
}

const zcq_value_t *
zcq_event_body (const zcq_event_t *self)
{
    return self->body;
}

const char *
zcq_event_type (const zcq_event_t *self)
{
    return self->type;
}

const zcq_value_t *
zcq_event_data (const zcq_event_t *self)
{
    return self->data;
}

const zcq_value_t *
zcq_event_meta (const zcq_event_t *self)
{
    return self->meta;
}

const char *
zcq_event_stream (const zcq_event_t *self)
{
    return self->stream;
}

const char *
zcq_event_aggregate (const zcq_event_t *self)
{
    return self->aggregate;
}

const char *
zcq_event_key (const zcq_event_t *self)
{
    return self->key;
}

const char *
zcq_event_command_id (const zcq_event_t *self)
{
    return self->command;
}

const char *
zcq_event_node (const zcq_event_t *self)
{
    return self->node;
}

uint64_t
zcq_event_position (const zcq_event_t *self)
{
    return self->position;
}

uint64_t
zcq_event_version (const zcq_event_t *self)
{
    return self->version;
}

int64_t
zcq_event_time (const zcq_event_t *self)
{
    return self->time;
}

int64_t
zcq_event_int (const zcq_event_t *self, const char *field, int64_t fallback)
{
    return zcq_value_get_int (self->data, field, fallback);
}

const char *
zcq_event_str (const zcq_event_t *self, const char *field)
{
    const char *str;
    size_t len;
    if (!zcq_value_str (zcq_value_get (self->data, field), &str, &len))
        return "";
    //  the arena is a cache of the event, not part of its value
    zcq_event_t *mutable_self = (zcq_event_t *) self;
    if (!mutable_self->arena && !(mutable_self->arena = zcq_arena_new ()))
        return "";
    const char *copy = zcq_arena_strndup (mutable_self->arena, str, len);
    return copy ? copy : "";
}
