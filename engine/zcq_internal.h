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
//  MessagePack read in place (event.c): every read bounded by the bytes.

#define ZCQ_MP_DEPTH_MAX 32 //  containers open at once, as msgpack-c decodes

typedef struct {
    const uint8_t *cursor;
    const uint8_t *end;
} zcq_mp_t;

typedef struct {
    zcq_type_t type;
    bool big;    //  ZCQ_TYPE_INT above INT64_MAX: the value is in as.u
    bool single; //  ZCQ_TYPE_FLOAT written as a float32
    int8_t ext;  //  ZCQ_TYPE_EXT: its type
    union {
        int64_t i;
        uint64_t u;
        double f;
        bool b;
    } as;
    const uint8_t *bytes; //  STR, BIN, EXT: the payload
    uint32_t len;         //  STR, BIN, EXT: payload bytes; ARRAY, MAP: entries
} zcq_mp_item_t;

//  Read the value at the cursor: a scalar, string, bin or ext whole, an
//  array or map as its header (the cursor then at its first element).
//  False when truncated or not MessagePack.
bool zcq_mp_read (zcq_mp_t *reader, zcq_mp_item_t *item);
//  Skip one whole value, inside `open` containers (0: a whole document);
//  false when malformed, truncated, or when it would have more than
//  ZCQ_MP_DEPTH_MAX containers open at once (msgpack-c's limit).
bool zcq_mp_skip (zcq_mp_t *reader, int open);
//  Read a map's header and move to the value of its first entry whose key
//  is the string key; false when not a map, no such entry, or malformed.
bool zcq_mp_find (zcq_mp_t *reader, const char *key, size_t key_len);
//  An integer item in int64 range (as zcq_value_int takes it).
bool zcq_mp_int (const zcq_mp_item_t *item, int64_t *value);

//  --------------------------------------------------------------------------
//  Fields builders (fields.c)

//  A value as builders and view rows hold it: numbers as numbers, strings
//  as their bytes, anything else as its encoded bytes (RAW).
typedef enum {
    ZCQ_SCALAR_NIL,
    ZCQ_SCALAR_BOOL,
    ZCQ_SCALAR_INT,
    ZCQ_SCALAR_FLOAT,
    ZCQ_SCALAR_STR,
    ZCQ_SCALAR_RAW,
} zcq_scalar_kind_t;

typedef struct {
    zcq_scalar_kind_t kind;
    union {
        int64_t i;
        double f;
        bool b;
    } as;
    const void *bytes; //  STR: the string; RAW: one encoded value
    size_t len;
} zcq_scalar_t;

//  Write a scalar as the writer encodes it (shortest forms).
void zcq_scalar_write (const zcq_scalar_t *value, zcq_writer_t *writer);

zcq_fields_t *zcq_fields_new (void);
void zcq_fields_destroy (zcq_fields_t **self_p);
void zcq_fields_reset (zcq_fields_t *self);
size_t zcq_fields_count (const zcq_fields_t *self);
bool zcq_fields_ok (const zcq_fields_t *self);
//  Write the fields as one map (adds as sets, unsets skipped; the last of
//  two sets of one field wins).
void zcq_fields_encode (const zcq_fields_t *self, zcq_writer_t *writer);

//  What the fields do to a row, one change per name, in the order of each
//  name's last call: the sets, adds and unsets of a name folded into one.
typedef enum {
    ZCQ_CHANGE_SET,      //  the field becomes value
    ZCQ_CHANGE_ADD,      //  delta is added to the row's integer (absent or
                         //  not an integer: 0)
    ZCQ_CHANGE_UNSET,    //  the field goes
    ZCQ_CHANGE_OVERFLOW, //  the adds overflow int64: the row must not change
} zcq_change_op_t;

typedef struct {
    const char *name; //  not NUL-terminated
    size_t name_len;
    zcq_change_op_t op;
    zcq_scalar_t value; //  ZCQ_CHANGE_SET
    int64_t delta;      //  ZCQ_CHANGE_ADD
} zcq_change_t;

//  The changes (borrowed until the fields change); NULL when out of memory.
const zcq_change_t *zcq_fields_changes (zcq_fields_t *self, size_t *count);

//  --------------------------------------------------------------------------
//  The store (store.c, store_recent.c, store_wal.c)

//  Check the WAL files of the data dir at path before RocksDB opens it
//  (store.c DESIGN 8): ZCQ_CORRUPT, with the file, the offset and what
//  would be lost in error, when a damaged record has intact ones after it.
zcq_err_t zcq_store_check_wal (const char *path, char *error, size_t size);

//  One segment of the recent part of the index (store.c DESIGN 11): the
//  stream index entries and command id records of commits not yet in
//  RocksDB. Not thread-safe: the store guards it.
typedef struct zcq_recent_t zcq_recent_t;
zcq_recent_t *zcq_recent_new (void);
void zcq_recent_destroy (zcq_recent_t **self_p);
//  Make room for that many events and command ids whose strings (streams,
//  ids, results) add up to bytes: adding them then cannot fail.
bool zcq_recent_reserve (zcq_recent_t *self, size_t events, size_t commands, size_t bytes);
//  Add stream's event (its events come in version order); false when out
//  of memory.
bool zcq_recent_event (zcq_recent_t *self, const char *stream, size_t len, uint64_t version,
                       uint64_t position);
//  Add a command id's record; a later record of an id replaces the earlier.
bool zcq_recent_command (zcq_recent_t *self, const char *id, size_t len, int64_t time,
                         const void *result, size_t result_len);
//  The segment covers the log up to position (at least).
void zcq_recent_cover (zcq_recent_t *self, uint64_t position);
uint64_t zcq_recent_through (const zcq_recent_t *self);
size_t zcq_recent_entries (const zcq_recent_t *self); //  events + command ids
size_t zcq_recent_bytes (const zcq_recent_t *self);
int64_t zcq_recent_started (const zcq_recent_t *self); //  zclock_mono () of the first entry
//  The newest record of id here: borrowed bytes, valid while the segment is.
bool zcq_recent_find_command (const zcq_recent_t *self, const char *id, size_t len, int64_t *time,
                              const void **result, size_t *result_len);
//  How many events of stream are here (0: none), their first and last version.
size_t zcq_recent_find_stream (const zcq_recent_t *self, const char *stream, size_t len,
                               uint64_t *first, uint64_t *last);
//  fn for each event of stream here with version >= from, in order, until
//  it returns non-zero (then true).
typedef int (zcq_recent_event_fn) (void *arg, uint64_t version, uint64_t position);
bool zcq_recent_each_event (const zcq_recent_t *self, const char *stream, size_t len, uint64_t from,
                            zcq_recent_event_fn *fn, void *arg);
//  fn for every key and value the segment puts in a family, in key order
//  (RocksDB's bytewise order): `streams` (stream NUL version -> position),
//  `commands` (id -> time, result; records older than expired_before are
//  left out). Stops at the first error fn returns.
typedef zcq_err_t (zcq_recent_key_fn) (void *arg, const char *key, size_t key_len,
                                       const void *value, size_t value_len);
zcq_err_t zcq_recent_sorted_streams (const zcq_recent_t *self, zcq_recent_key_fn *fn, void *arg);
zcq_err_t zcq_recent_sorted_commands (const zcq_recent_t *self, int64_t expired_before,
                                      zcq_recent_key_fn *fn, void *arg);

//  --------------------------------------------------------------------------
//  View tables and their snapshots (view.c, viewsnap.c)

//  Size the hash table for rows rows; false when out of memory.
bool zcq_viewtable_reserve (zcq_viewtable_t *self, size_t rows);

//  Change the row at key by fields, as a projection handler asked: create
//  it when absent if create (starting with its `key` field), else leave
//  the table as it is (ZCQ_NOT_FOUND). ZCQ_INVALID when an integer add
//  overflows, ZCQ_CORRUPT when the stored row is not a map: the row is
//  unchanged then.
zcq_err_t zcq_viewtable_merge (zcq_viewtable_t *self, const char *key, size_t key_len,
                               zcq_fields_t *fields, bool create);
//  Start fetching where the row at key would be looked up: a handler that
//  comes to it a little later finds it in the cache (the look-up of a row
//  in a large table is a cache miss as dear as the rest of an event).
void zcq_viewtable_prefetch (const zcq_viewtable_t *self, const char *key, size_t key_len);
//  A new table takes rows in bulk: they go into the hash table only, and
//  the ordered structures (rows in key order, the indexes) are built in
//  one pass by this call, or by the first read that needs them (a page, a
//  count by value, a snapshot). Call it when a bulk load is over.
zcq_err_t zcq_viewtable_settle (const zcq_viewtable_t *self);
//  Every row in key order, encoded, without keeping the encodings (the
//  snapshot image); fn as for zcq_viewtable_list. False when out of memory.
bool zcq_viewtable_dump (const zcq_viewtable_t *self, zcq_row_fn *fn, void *arg);

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
//  Read the view snapshot at path whole, checked (checksum, header) but of
//  any view: its bytes (the caller frees them), its view's name in view,
//  its header in snap (zcq_viewsnap_clear it).
zcq_err_t zcq_viewsnap_read (const char *path, uint8_t **bytes_p, size_t *length_p, char *view,
                             size_t view_size, zcq_viewsnap_t *snap, char *error, size_t size);

//  --------------------------------------------------------------------------
//  Decisions

typedef struct {
    const char *type;      //  event type (arena copy)
    uint32_t type_version; //  its definition's version
    zcq_fields_t *fields;  //  its payload
} zcq_emitted_t;

struct zcq_decide_t {
    const zcq_aggregate_def_t *aggregate; //  whose events it may emit
    void *context;                        //  the command definition's
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
    bool internal;            //  a domain bug (message says which): the command fails `internal`
    bool system;              //  the node's own decision: may emit system events
    uint64_t first;           //  the stream's first kept version (set by the shard)
    uint64_t truncate_before; //  `$truncate`: remove the versions below this
    zcq_arena_t *arena;
    zcq_fields_t *reply; //  zcq_decide_reply's; created on first use
};

#define ZCQ_REPLY_MAX 1024 //  encoded bytes of a decide's reply fields
//  Encode the reply fields decide set (zcq_decide_reply) into writer, as
//  a map (nothing when none was set); false, with failure saying why,
//  when one has a name of the protocol's or they take over ZCQ_REPLY_MAX.
bool zcq_decide_reply_encode (zcq_decide_t *self, zcq_writer_t *writer, char *failure, size_t size);
zcq_decide_t *zcq_decide_new (void);
void zcq_decide_destroy (zcq_decide_t **self_p);
//  Start a new decision of a command of aggregate (keeps buffers).
void zcq_decide_reset (zcq_decide_t *self, const zcq_aggregate_def_t *aggregate,
                       const zcq_value_t *data, const zcq_value_t *meta, const char *key,
                       const char *command_id, uint64_t version);

//  --------------------------------------------------------------------------
//  Recorded events (event.c)

//  An event body starts with a fixmap of 11 entries whose first two are
//  "position" (uint64, 0xcf + 8 bytes) and "time" (int64, 0xd3 + 8 bytes),
//  written at fixed width so that the log writer can stamp them in place.
//  event.c states the whole layout.
#define ZCQ_EVENT_FIELDS          11
#define ZCQ_EVENT_POSITION_OFFSET 11
#define ZCQ_EVENT_TIME_OFFSET     25
#define ZCQ_EVENT_HEADER_SIZE     33

struct zcq_event_t {
    uint64_t position;
    uint64_t version;
    int64_t time;
    char type[ZCQ_TYPE_MAX + 1];
    char aggregate[ZCQ_AGGREGATE_MAX + 1];
    char key[ZCQ_KEY_MAX + 1];
    char stream[ZCQ_STREAM_MAX + 1];
    char command[ZCQ_ID_MAX + 1];
    char node[ZCQ_NODE_ID_MAX + 1];
    //  read in place (zcq_event_read): the body, and where data and meta
    //  lie in it (NULL when absent)
    const uint8_t *bytes;
    size_t size;
    const uint8_t *data_at;
    size_t data_len;
    const uint8_t *meta_at;
    size_t meta_len;
    //  as values: given to zcq_event_parse, or decoded on demand
    const zcq_value_t *body;
    const zcq_value_t *data;
    const zcq_value_t *meta;
    void *context; //  in evolve: the event definition's context
    bool failed;   //  a handler read it strictly and failed (error says why)
    char error[256];
    uint32_t type_version; //  event_version (1 when absent)
    //  zcq_event_upcast's: two bodies (the current one and the next), and
    //  the upcaster's builder; created on first use
    zcq_writer_t *upcast_bodies[2];
    int upcast_turn;
    zcq_fields_t *upcast_data;
    bool decoded;       //  body, data and meta are set (or cannot be)
    zcq_doc_t *doc;     //  the on-demand decode; created on first use
    zcq_arena_t *arena; //  for zcq_event_str; created on first use
};

//  Read an event body where it lies (DESIGN of event.c): ZCQ_CORRUPT when
//  it is not one well-formed map with every header field of its type. The
//  event borrows bytes until the next read.
zcq_err_t zcq_event_read (zcq_event_t *self, const void *bytes, size_t size);
//  Fill event from a decoded event body; ZCQ_CORRUPT when a field is
//  missing or ill-typed. The event borrows body.
zcq_err_t zcq_event_parse (zcq_event_t *self, const zcq_value_t *body);
void zcq_event_release (zcq_event_t *self);
//  Bring the event to its definition's version through its upcasters
//  (event.c DESIGN 6); the event is read again from the new body. A
//  handler failure (no upcaster, a newer version than def's, an upcaster
//  that failed) is recorded as zcq_event_fail does, with ZCQ_INTERNAL;
//  ZCQ_NOMEM, ZCQ_CORRUPT otherwise.
zcq_err_t zcq_event_upcast (zcq_event_t *self, const zcq_event_def_t *def);
//  The position of a body in this node's layout, read at its fixed offset;
//  false when the body does not start that way.
bool zcq_event_position_of (const void *bytes, size_t size, uint64_t *position);
//  The name of the layout's entry at place index (NULL past the last).
const char *zcq_event_field (size_t index);
//  Write the head of an event body in this node's layout: the map's header,
//  position and time at fixed width and zero (the log writer stamps them),
//  node, stream, aggregate and key (stream is <aggregate>/<key>, the
//  aggregate its first aggregate_len bytes), version, type, command, meta
//  (NULL: an empty map), group (only when >= 0: a clustered node's),
//  event_version (only when type_version > 1), then the key "data": the
//  caller writes its value.
void zcq_event_encode_head (zcq_writer_t *body, const char *node, int group, const char *stream,
                            size_t stream_len, size_t aggregate_len, uint64_t version,
                            const char *type, uint32_t type_version, const char *command,
                            size_t command_len, const zcq_value_t *meta);
//  Write a heartbeat's body (ZCQ/1 section 4): node, head and time; with
//  group >= 0 (a clustered node) also the group and its high watermark hw.
void zcq_event_encode_heartbeat (zcq_writer_t *body, const char *node, int group, uint64_t head,
                                 uint64_t hw);

//  --------------------------------------------------------------------------
//  Domain lookups

const zcq_aggregate_def_t *zcq_domain_aggregate (const zcq_domain_t *domain, const char *name,
                                                 size_t len);
const zcq_command_def_t *zcq_domain_command (const zcq_aggregate_def_t *aggregate, const char *type,
                                             size_t len);
const zcq_event_def_t *zcq_domain_event (const zcq_aggregate_def_t *aggregate, const char *type);
//  The command definition of `$delete`, decided by the node for every
//  aggregate (ZCQ_COMMAND_DELETE).
extern const zcq_command_def_t zcq_delete_command;
//  `$truncate` (ZCQ_COMMAND_TRUNCATE), likewise.
extern const zcq_command_def_t zcq_truncate_command;
//  True for the types of the events the node writes itself ($deleted).
bool zcq_system_event (const char *type);
uint32_t zcq_aggregate_snapshot_every (const zcq_aggregate_def_t *aggregate);
//  The layout fingerprint of an aggregate's state (zcq_state_field_t):
//  of its state_size and every declared field's name, offset and size.
uint64_t zcq_aggregate_fingerprint (const zcq_aggregate_def_t *aggregate);

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
