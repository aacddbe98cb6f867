/*  zcq_internal.h: engine classes shared by the library's own files, not
    part of the public API.
*/
#ifndef ZCQ_INTERNAL_H_INCLUDED
#define ZCQ_INTERNAL_H_INCLUDED

#include "zcqrs.h"
#include <czmq.h>

//  Limits of ZCQ/1 section 3
#define ZCQ_ID_MAX        64
#define ZCQ_AGGREGATE_MAX 64
#define ZCQ_KEY_MAX       256
#define ZCQ_TYPE_MAX      64
#define ZCQ_STREAM_MAX    (ZCQ_AGGREGATE_MAX + 1 + ZCQ_KEY_MAX)
#define ZCQ_NODE_ID_MAX   64

//  An event body starts with a fixmap of 11 entries whose first two are
//  "position" (uint64, 0xcf + 8 bytes) and "time" (int64, 0xd3 + 8 bytes),
//  written at fixed width so that the log writer can stamp them in place.
#define ZCQ_EVENT_FIELDS          11
#define ZCQ_EVENT_POSITION_OFFSET 11
#define ZCQ_EVENT_TIME_OFFSET     25
#define ZCQ_EVENT_HEADER_SIZE     33

//  --------------------------------------------------------------------------
//  A small arena: NUL-terminated copies of strings that live until reset.

typedef struct zcq_arena_t zcq_arena_t;
zcq_arena_t *zcq_arena_new (void);
void zcq_arena_destroy (zcq_arena_t **self_p);
void zcq_arena_reset (zcq_arena_t *self);
const char *zcq_arena_strndup (zcq_arena_t *self, const char *text, size_t len);

//  Limits for bytes a node stored or served itself (its log, view
//  snapshots, aggregate snapshots, replies read by the client library):
//  any text, since nodes of earlier versions stored what they were sent.
extern const zcq_limits_t zcq_stored_limits;

//  Decode bytes the node produced itself (codec.c DESIGN 3): no bounds
//  pre-check; ZCQ_CORRUPT when they do not decode.
zcq_err_t zcq_doc_decode_trusted (zcq_doc_t *self, const void *bytes, size_t size);

//  Find a string key in the top-level map of (untrusted) bytes without
//  decoding the rest: the value's encoded bytes, or false. Bounded like
//  zcq_msgpack_check. Other entries are skipped by structure only; the
//  value found must pass zcq_msgpack_check (valid UTF-8, no repeated key),
//  else false. Allocates only to check a large map within that value.
bool zcq_msgpack_peek (const void *bytes, size_t size, const char *key, const void **value,
                       size_t *len);

//  --------------------------------------------------------------------------
//  View tables and their snapshots (view.c, viewsnap.c)

//  Size the hash table for rows rows; false when out of memory.
bool zcq_viewtable_reserve (zcq_viewtable_t *self, size_t rows);

//  Snapshots carry the order of each index as row numbers (rows numbered
//  0, 1, ... in key order): index_order writes index_size be32 numbers.
size_t zcq_viewtable_index_count (const zcq_viewtable_t *self);
const char *zcq_viewtable_index_field (const zcq_viewtable_t *self, size_t index);
size_t zcq_viewtable_index_size (const zcq_viewtable_t *self, size_t index);
void zcq_viewtable_index_order (const zcq_viewtable_t *self, size_t index, uint8_t *rows);
//  Loading: rows in key order without their index entries, then the
//  indexes the snapshot has, in their order (ZCQ_INVALID when the order or
//  a number is wrong), then load_done builds the other indexes and checks
//  that the loaded ones have every row with the field.
zcq_err_t zcq_viewtable_load_row (zcq_viewtable_t *self, const char *key, size_t key_len,
                                  const void *row, size_t row_len);
zcq_err_t zcq_viewtable_load_index (zcq_viewtable_t *self, const char *field, size_t field_len,
                                    const uint8_t *rows, size_t count);
zcq_err_t zcq_viewtable_load_done (zcq_viewtable_t *self);

//  A snapshot in memory: taken by the table's owner between two changes
//  (a copy of the rows), written by any thread afterwards.
typedef struct zcq_viewimage_t zcq_viewimage_t;
zcq_viewimage_t *zcq_viewimage_new (const zcq_viewtable_t *table, const char *view,
                                    const zcq_viewsnap_t *snap);
void zcq_viewimage_destroy (zcq_viewimage_t **self_p);
zcq_err_t zcq_viewimage_write (const zcq_viewimage_t *self, const char *path, char *error,
                               size_t size);

//  --------------------------------------------------------------------------
//  Fields builders

zcq_fields_t *zcq_fields_new (void);
void zcq_fields_destroy (zcq_fields_t **self_p);
void zcq_fields_reset (zcq_fields_t *self);
size_t zcq_fields_count (const zcq_fields_t *self);
bool zcq_fields_ok (const zcq_fields_t *self);
//  Write the fields as one map (adds as sets, unsets skipped; the last of
//  two sets of one field wins).
void zcq_fields_encode (const zcq_fields_t *self, zcq_writer_t *writer);
//  Write row (a map, or NULL for a new row) changed by the fields as one
//  map; a new row starts with `key`. False when an integer add would
//  overflow (the bytes must not be used then).
bool zcq_fields_merge (const zcq_fields_t *self, const zcq_value_t *row, const char *key,
                       zcq_writer_t *writer);

//  --------------------------------------------------------------------------
//  Decisions

typedef struct {
    const char *type;     //  event type (arena copy)
    zcq_fields_t *fields; //  its payload
} zcq_emitted_t;

struct zcq_decide_t {
    const zcq_value_t *data;
    const zcq_value_t *meta;
    const char *key;
    const char *command_id;
    uint64_t version;
    zcq_err_t outcome;
    char message[256];
    zcq_emitted_t *events;
    size_t event_count;
    size_t event_capacity;
    bool nomem;
    zcq_arena_t *arena;
};

zcq_decide_t *zcq_decide_new (void);
void zcq_decide_destroy (zcq_decide_t **self_p);
//  Start a new decision (keeps buffers).
void zcq_decide_reset (zcq_decide_t *self, const zcq_value_t *data, const zcq_value_t *meta,
                       const char *key, const char *command_id, uint64_t version);

//  --------------------------------------------------------------------------
//  Recorded events

struct zcq_event_t {
    const zcq_value_t *body;
    const zcq_value_t *data;
    const zcq_value_t *meta;
    uint64_t position;
    uint64_t version;
    int64_t time;
    char type[ZCQ_TYPE_MAX + 1];
    char aggregate[ZCQ_AGGREGATE_MAX + 1];
    char key[ZCQ_KEY_MAX + 1];
    char stream[ZCQ_STREAM_MAX + 1];
    char command[ZCQ_ID_MAX + 1];
    char node[ZCQ_NODE_ID_MAX + 1];
    zcq_arena_t *arena; //  for zcq_event_str; created on first use
};

//  Fill event from a decoded event body; ZCQ_CORRUPT when a field is
//  missing or ill-typed. The event borrows body.
zcq_err_t zcq_event_parse (zcq_event_t *self, const zcq_value_t *body);
void zcq_event_release (zcq_event_t *self);

//  --------------------------------------------------------------------------
//  Domain lookups

const zcq_aggregate_def_t *zcq_domain_aggregate (const zcq_domain_t *domain, const char *name,
                                                 size_t len);
const zcq_command_def_t *zcq_domain_command (const zcq_aggregate_def_t *aggregate, const char *type,
                                             size_t len);
const zcq_event_def_t *zcq_domain_event (const zcq_aggregate_def_t *aggregate, const char *type);
uint32_t zcq_aggregate_snapshot_every (const zcq_aggregate_def_t *aggregate);

//  Copy a string value into buffer (NUL-terminated) when it fits.
bool zcq_value_copy_str (const zcq_value_t *value, char *buffer, size_t size);

//  Big-endian helpers
static inline void
zcq_put_be64 (uint8_t *bytes, uint64_t value)
{
    for (int index = 7; index >= 0; index--) {
        bytes[index] = (uint8_t) value;
        value >>= 8;
    }
}

static inline uint64_t
zcq_get_be64 (const uint8_t *bytes)
{
    uint64_t value = 0;
    for (int index = 0; index < 8; index++)
        value = (value << 8) | bytes[index];
    return value;
}

static inline void
zcq_put_be32 (uint8_t *bytes, uint32_t value)
{
    bytes[0] = (uint8_t) (value >> 24);
    bytes[1] = (uint8_t) (value >> 16);
    bytes[2] = (uint8_t) (value >> 8);
    bytes[3] = (uint8_t) value;
}

static inline uint32_t
zcq_get_be32 (const uint8_t *bytes)
{
    return (uint32_t) bytes[0] << 24 | (uint32_t) bytes[1] << 16 | (uint32_t) bytes[2] << 8
         | bytes[3];
}

//  A 64-bit hash of bytes (FNV-1a, then mixed), for hash tables, filters
//  and shard placement.
uint64_t zcq_hash (const void *bytes, size_t len);

//  Microseconds since the Unix epoch.
int64_t zcq_now_us (void);

#endif
