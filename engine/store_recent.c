/*  store_recent.c: one segment of the recent part of the store's index
    (store.c DESIGN 11): the stream index entries and command id records
    of commits that are in the log but not yet in RocksDB's `streams` and
    `commands` families.

    A segment lives in an arena of chunks, freed whole when the indexer has
    moved it to RocksDB, with two open-addressing hash tables (linear
    probing, at most half full): streams, each with its events in the order
    they came (version order), and command ids, each with its newest
    record. zcq_recent_reserve makes room ahead, so that adding what it
    reserved for cannot fail: a commit reserves before it writes, and adds
    after RocksDB took the write. Nothing here locks: store.c guards every
    segment (readers shared, changes exclusive).
*/
#include "zcq_internal.h"
#include <stdio.h>
#include <string.h>

#define S_CHUNK      (256 * 1024) //  arena chunk, unless an item needs more
#define S_MIN_SLOTS  1024
#define S_ALIGN(len) (((len) + 7) & ~(size_t) 7)

typedef struct s_chunk_t {
    struct s_chunk_t *next;
    size_t size; //  bytes in data
    size_t used;
    uint64_t data[];
} s_chunk_t;

typedef struct s_event_t {
    uint64_t version;
    uint64_t position;
    struct s_event_t *next;
} s_event_t;

//  A stream's events in this segment
typedef struct {
    uint64_t hash;
    s_event_t *first;
    s_event_t *last;
    uint32_t count;
    uint32_t len;
    char name[];
} s_run_t;

//  A command id's record: id bytes, then result bytes
typedef struct {
    uint64_t hash;
    int64_t time;
    uint32_t id_len;
    uint32_t result_len;
    char bytes[];
} s_record_t;

struct zcq_recent_t {
    s_chunk_t *chunks; //  newest first: items come from the first
    s_run_t **runs;
    size_t run_slots; //  a power of two, or 0
    size_t run_count;
    s_record_t **records;
    size_t record_slots;
    size_t record_count;
    size_t events;
    size_t bytes; //  chunks and tables
    uint64_t through;
    int64_t started; //  zclock_mono () of the first entry; 0 while empty
};

zcq_recent_t *
zcq_recent_new (void)
{
    return calloc (1, sizeof (zcq_recent_t));
}

void
zcq_recent_destroy (zcq_recent_t **self_p)
{
    zcq_recent_t *self = *self_p;
    if (!self)
        return;
    while (self->chunks) {
        s_chunk_t *next = self->chunks->next;
        free (self->chunks);
        self->chunks = next;
    }
    free (self->runs);
    free (self->records);
    free (self);
    *self_p = NULL;
}

//  A chunk with at least `size` bytes free at the front of the arena.
static bool
s_room (zcq_recent_t *self, size_t size)
{
    if (self->chunks && self->chunks->size - self->chunks->used >= size)
        return true;
    size_t capacity = size > S_CHUNK ? S_ALIGN (size) : S_CHUNK;
    s_chunk_t *chunk = malloc (sizeof (s_chunk_t) + capacity);
    if (!chunk)
        return false;
    chunk->next = self->chunks;
    chunk->size = capacity;
    chunk->used = 0;
    self->chunks = chunk;
    self->bytes += sizeof (s_chunk_t) + capacity;
    return true;
}

static void *
s_alloc (zcq_recent_t *self, size_t size)
{
    size = S_ALIGN (size);
    if (!s_room (self, size))
        return NULL;
    void *item = (char *) self->chunks->data + self->chunks->used;
    self->chunks->used += size;
    return item;
}

//  Grow a table of pointers whose items start with their hash to hold
//  `wanted` items at most half full.
static bool
s_grow (void ***slots_p, size_t *slot_count, size_t wanted, size_t *bytes)
{
    if (wanted * 2 <= *slot_count)
        return true;
    size_t count = *slot_count ? *slot_count : S_MIN_SLOTS;
    while (count < wanted * 2)
        count *= 2;
    void **slots = calloc (count, sizeof (void *));
    if (!slots)
        return false;
    void **old = *slots_p;
    for (size_t index = 0; index < *slot_count; index++) {
        if (!old[index])
            continue;
        size_t slot = *(const uint64_t *) old[index] & (count - 1);
        while (slots[slot])
            slot = (slot + 1) & (count - 1);
        slots[slot] = old[index];
    }
    *bytes += (count - *slot_count) * sizeof (void *);
    free (old);
    *slots_p = slots;
    *slot_count = count;
    return true;
}

bool
zcq_recent_reserve (zcq_recent_t *self, size_t events, size_t commands, size_t bytes)
{
    size_t arena = events * (S_ALIGN (sizeof (s_event_t)) + S_ALIGN (sizeof (s_run_t)) + 8)
                 + commands * (S_ALIGN (sizeof (s_record_t)) + 8) + bytes;
    return s_grow ((void ***) &self->runs, &self->run_slots, self->run_count + events, &self->bytes)
        && s_grow ((void ***) &self->records, &self->record_slots, self->record_count + commands,
                   &self->bytes)
        && s_room (self, arena);
}

//  The slot of stream in the table: its run, or the empty slot to take.
static s_run_t **
s_run_slot (const zcq_recent_t *self, const char *stream, size_t len, uint64_t hash)
{
    size_t slot = hash & (self->run_slots - 1);
    while (self->runs[slot]) {
        const s_run_t *run = self->runs[slot];
        if (run->hash == hash && run->len == len && memcmp (run->name, stream, len) == 0)
            break;
        slot = (slot + 1) & (self->run_slots - 1);
    }
    return &self->runs[slot];
}

static s_record_t **
s_record_slot (const zcq_recent_t *self, const char *id, size_t len, uint64_t hash)
{
    size_t slot = hash & (self->record_slots - 1);
    while (self->records[slot]) {
        const s_record_t *record = self->records[slot];
        if (record->hash == hash && record->id_len == len && memcmp (record->bytes, id, len) == 0)
            break;
        slot = (slot + 1) & (self->record_slots - 1);
    }
    return &self->records[slot];
}

static void
s_touch (zcq_recent_t *self)
{
    if (!self->started)
        self->started = zclock_mono ();
}

bool
zcq_recent_event (zcq_recent_t *self, const char *stream, size_t len, uint64_t version,
                  uint64_t position)
{
    if (len > UINT32_MAX
        || !s_grow ((void ***) &self->runs, &self->run_slots, self->run_count + 1, &self->bytes))
        return false;
    uint64_t hash = zcq_hash (stream, len);
    s_run_t **slot = s_run_slot (self, stream, len, hash);
    s_event_t *event = s_alloc (self, sizeof (s_event_t));
    if (!event)
        return false;
    if (!*slot) {
        s_run_t *run = s_alloc (self, sizeof (s_run_t) + len);
        if (!run)
            return false;
        run->hash = hash;
        run->first = run->last = NULL;
        run->count = 0;
        run->len = (uint32_t) len;
        memcpy (run->name, stream, len);
        *slot = run;
        self->run_count++;
    }
    s_run_t *run = *slot;
    event->version = version;
    event->position = position;
    event->next = NULL;
    if (run->last)
        run->last->next = event;
    else
        run->first = event;
    run->last = event;
    run->count++;
    self->events++;
    if (position > self->through)
        self->through = position;
    s_touch (self);
    return true;
}

bool
zcq_recent_command (zcq_recent_t *self, const char *id, size_t len, int64_t time,
                    const void *result, size_t result_len)
{
    if (len > UINT32_MAX || result_len > UINT32_MAX
        || !s_grow ((void ***) &self->records, &self->record_slots, self->record_count + 1,
                    &self->bytes))
        return false;
    uint64_t hash = zcq_hash (id, len);
    s_record_t **slot = s_record_slot (self, id, len, hash);
    s_record_t *record = s_alloc (self, sizeof (s_record_t) + len + result_len);
    if (!record)
        return false;
    record->hash = hash;
    record->time = time;
    record->id_len = (uint32_t) len;
    record->result_len = (uint32_t) result_len;
    memcpy (record->bytes, id, len);
    if (result_len)
        memcpy (record->bytes + len, result, result_len);
    if (!*slot)
        self->record_count++;
    *slot = record; //  a later record of an id replaces the earlier
    s_touch (self);
    return true;
}

void
zcq_recent_cover (zcq_recent_t *self, uint64_t position)
{
    if (position > self->through)
        self->through = position;
}

size_t
zcq_recent_entries (const zcq_recent_t *self)
{
    return self->events + self->record_count;
}

size_t
zcq_recent_bytes (const zcq_recent_t *self)
{
    return self->bytes;
}

uint64_t
zcq_recent_through (const zcq_recent_t *self)
{
    return self->through;
}

int64_t
zcq_recent_started (const zcq_recent_t *self)
{
    return self->started;
}

//  --------------------------------------------------------------------------
//  Look-ups

bool
zcq_recent_find_command (const zcq_recent_t *self, const char *id, size_t len, int64_t *time,
                         const void **result, size_t *result_len)
{
    if (!self->record_count)
        return false;
    const s_record_t *record = *s_record_slot (self, id, len, zcq_hash (id, len));
    if (!record)
        return false;
    *time = record->time;
    *result = record->bytes + record->id_len;
    *result_len = record->result_len;
    return true;
}

size_t
zcq_recent_find_stream (const zcq_recent_t *self, const char *stream, size_t len, uint64_t *first,
                        uint64_t *last)
{
    if (!self->run_count)
        return 0;
    const s_run_t *run = *s_run_slot (self, stream, len, zcq_hash (stream, len));
    if (!run)
        return 0;
    *first = run->first->version;
    *last = run->last->version;
    return run->count;
}

bool
zcq_recent_each_event (const zcq_recent_t *self, const char *stream, size_t len, uint64_t from,
                       zcq_recent_event_fn *fn, void *arg)
{
    if (!self->run_count)
        return false;
    const s_run_t *run = *s_run_slot (self, stream, len, zcq_hash (stream, len));
    for (const s_event_t *event = run ? run->first : NULL; event; event = event->next)
        if (event->version >= from && fn (arg, event->version, event->position))
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Sorted walks, for the indexer

//  Byte order, shorter first on a tie: RocksDB's default comparator
static int
s_compare_bytes (const char *a, size_t a_len, const char *b, size_t b_len)
{
    int order = memcmp (a, b, a_len < b_len ? a_len : b_len);
    return order ? order : (a_len > b_len) - (a_len < b_len);
}

static int
s_compare_runs (const void *a, const void *b)
{
    const s_run_t *x = *(const s_run_t *const *) a, *y = *(const s_run_t *const *) b;
    return s_compare_bytes (x->name, x->len, y->name, y->len);
}

static int
s_compare_records (const void *a, const void *b)
{
    const s_record_t *x = *(const s_record_t *const *) a, *y = *(const s_record_t *const *) b;
    return s_compare_bytes (x->bytes, x->id_len, y->bytes, y->id_len);
}

//  The items of a table, sorted with compare; caller frees.
static void **
s_sorted (void **slots, size_t slot_count, size_t count,
          int (*compare) (const void *, const void *))
{
    void **items = malloc ((count ? count : 1) * sizeof (void *));
    if (!items)
        return NULL;
    size_t taken = 0;
    for (size_t index = 0; index < slot_count; index++)
        if (slots[index])
            items[taken++] = slots[index];
    qsort (items, taken, sizeof (void *), compare);
    return items;
}

zcq_err_t
zcq_recent_sorted_streams (const zcq_recent_t *self, zcq_recent_key_fn *fn, void *arg)
{
    s_run_t **runs = (s_run_t **) s_sorted ((void **) self->runs, self->run_slots, self->run_count,
                                            s_compare_runs);
    if (!runs)
        return ZCQ_NOMEM;
    zcq_err_t err = ZCQ_OK;
    char buffer[ZCQ_STREAM_MAX + 9];
    for (size_t index = 0; index < self->run_count && err == ZCQ_OK; index++) {
        const s_run_t *run = runs[index];
        char *key = run->len <= ZCQ_STREAM_MAX ? buffer : malloc (run->len + 9);
        if (!key) {
            err = ZCQ_NOMEM;
            break;
        }
        memcpy (key, run->name, run->len);
        key[run->len] = 0;
        uint64_t written = 0; //  keys must rise: a repeated version is left out
        for (const s_event_t *event = run->first; event && err == ZCQ_OK; event = event->next) {
            if (written && event->version <= written)
                continue;
            written = event->version;
            uint8_t value[8];
            zcq_put_be64 ((uint8_t *) key + run->len + 1, event->version);
            zcq_put_be64 (value, event->position);
            err = fn (arg, key, run->len + 9, value, 8);
        }
        if (key != buffer)
            free (key);
    }
    free (runs);
    return err;
}

zcq_err_t
zcq_recent_sorted_commands (const zcq_recent_t *self, int64_t expired_before, zcq_recent_key_fn *fn,
                            void *arg)
{
    s_record_t **records = (s_record_t **) s_sorted ((void **) self->records, self->record_slots,
                                                     self->record_count, s_compare_records);
    if (!records)
        return ZCQ_NOMEM;
    zcq_err_t err = ZCQ_OK;
    uint8_t *value = NULL;
    size_t value_size = 0;
    for (size_t index = 0; index < self->record_count && err == ZCQ_OK; index++) {
        const s_record_t *record = records[index];
        if (record->time < expired_before)
            continue;
        size_t len = 8 + record->result_len;
        if (len > value_size) {
            uint8_t *bigger = realloc (value, len);
            if (!bigger) {
                err = ZCQ_NOMEM;
                break;
            }
            value = bigger;
            value_size = len;
        }
        zcq_put_be64 (value, (uint64_t) record->time);
        memcpy (value + 8, record->bytes + record->id_len, record->result_len);
        err = fn (arg, record->bytes, record->id_len, value, len);
    }
    free (value);
    free (records);
    return err;
}
