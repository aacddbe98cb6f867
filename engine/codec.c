/*  codec.c: MessagePack in and out. The only file that includes msgpack.h.

    DESIGN
    1.  Bytes from outside are checked by s_check before msgpack-c sees
        them: every length and count is compared with the bytes that remain
        (each element takes at least one byte), nesting is capped, and the
        value must end exactly where the bytes end. Only then does
        msgpack_unpack build objects, so no count can make it allocate
        more than a small multiple of the input size.
    2.  Decoded strings and binaries point into the input bytes (msgpack-c
        unpacks by reference); a doc either borrows the bytes or keeps a
        copy of them.
    3.  Bytes the node wrote itself (event bodies it encoded, log entries
        it committed, which RocksDB checksums, view rows) skip the check:
        zcq_doc_decode_trusted goes straight to msgpack_unpack, which never
        reads past the end of its input either way.
    4.  Writers track failure in one flag: once a write fails for lack of
        memory, zcq_writer_ok is false and the bytes must not be used.
*/
#include "zcq_value.h"
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DEFAULT_DEPTH 32
//  msgpack-c unpacks with a fixed stack of MSGPACK_EMBED_STACK_SIZE levels:
//  deeper documents cannot be decoded, so no limit may allow them
#ifndef MSGPACK_EMBED_STACK_SIZE
#define MSGPACK_EMBED_STACK_SIZE 32
#endif
#define S_MAX_DEPTH  MSGPACK_EMBED_STACK_SIZE
#define S_ZONE_CHUNK 2048

struct zcq_doc_t {
    msgpack_zone zone;
    msgpack_object root;
    bool decoded;
    void *copy; //  our copy of the bytes, for decode_copy
    size_t copy_size;
    char error[160];
};

struct zcq_writer_t {
    msgpack_sbuffer buffer;
    msgpack_packer packer;
    bool ok;
};

static inline const msgpack_object *
s_obj (const zcq_value_t *value)
{
    return (const msgpack_object *) value;
}

static inline const zcq_value_t *
s_value (const msgpack_object *object)
{
    return (const zcq_value_t *) object;
}

//  --------------------------------------------------------------------------
//  Checking untrusted bytes (DESIGN 1)

typedef struct {
    const uint8_t *cursor;
    const uint8_t *end;
    int max_depth;
    const char *reason;
} s_scan_t;

static uint64_t
s_be (const uint8_t *bytes, int width)
{
    uint64_t value = 0;
    for (int index = 0; index < width; index++)
        value = (value << 8) | bytes[index];
    return value;
}

//  Skip `size` payload bytes after a header of `header` bytes.
static bool
s_skip (s_scan_t *scan, size_t header, uint64_t size)
{
    size_t remaining = (size_t) (scan->end - scan->cursor);
    if (header > remaining || size > remaining - header) {
        scan->reason = "truncated value";
        return false;
    }
    scan->cursor += header + size;
    return true;
}

static bool s_check_value (s_scan_t *scan, int depth);

static bool
s_check_items (s_scan_t *scan, size_t header, uint64_t count, int depth)
{
    scan->cursor += header;
    size_t remaining = (size_t) (scan->end - scan->cursor);
    if (count > remaining) {
        scan->reason = "count larger than the bytes that remain";
        return false;
    }
    if (depth >= scan->max_depth) {
        scan->reason = "nested too deeply";
        return false;
    }
    for (uint64_t index = 0; index < count; index++)
        if (!s_check_value (scan, depth + 1))
            return false;
    return true;
}

static bool
s_check_value (s_scan_t *scan, int depth)
{
    if (scan->cursor >= scan->end) {
        scan->reason = "truncated value";
        return false;
    }
    const uint8_t *p = scan->cursor;
    size_t remaining = (size_t) (scan->end - p);
    uint8_t tag = *p;
    if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3)
        return s_skip (scan, 1, 0);
    if ((tag & 0xe0) == 0xa0)
        return s_skip (scan, 1, tag & 0x1f);
    if ((tag & 0xf0) == 0x90)
        return s_check_items (scan, 1, tag & 0x0f, depth);
    if ((tag & 0xf0) == 0x80)
        return s_check_items (scan, 1, (uint64_t) (tag & 0x0f) * 2, depth);

    //  Fixed headers: width of the length field, or a fixed payload size
    switch (tag) {
        case 0xcc:
        case 0xd0: return s_skip (scan, 1, 1);
        case 0xcd:
        case 0xd1: return s_skip (scan, 1, 2);
        case 0xce:
        case 0xd2:
        case 0xca: return s_skip (scan, 1, 4);
        case 0xcf:
        case 0xd3:
        case 0xcb: return s_skip (scan, 1, 8);
        case 0xd4: return s_skip (scan, 1, 2);
        case 0xd5: return s_skip (scan, 1, 3);
        case 0xd6: return s_skip (scan, 1, 5);
        case 0xd7: return s_skip (scan, 1, 9);
        case 0xd8: return s_skip (scan, 1, 17);
        default: break;
    }
    int width = 0;
    enum { RAW, EXT, ARRAY, MAP } kind = RAW;
    switch (tag) {
        case 0xd9:
        case 0xc4: width = 1; break;
        case 0xda:
        case 0xc5: width = 2; break;
        case 0xdb:
        case 0xc6: width = 4; break;
        case 0xc7:
            width = 1;
            kind = EXT;
            break;
        case 0xc8:
            width = 2;
            kind = EXT;
            break;
        case 0xc9:
            width = 4;
            kind = EXT;
            break;
        case 0xdc:
            width = 2;
            kind = ARRAY;
            break;
        case 0xdd:
            width = 4;
            kind = ARRAY;
            break;
        case 0xde:
            width = 2;
            kind = MAP;
            break;
        case 0xdf:
            width = 4;
            kind = MAP;
            break;
        default: scan->reason = "reserved type byte 0xc1"; return false;
    }
    if (remaining < (size_t) 1 + width) {
        scan->reason = "truncated length";
        return false;
    }
    uint64_t length = s_be (p + 1, width);
    if (kind == RAW)
        return s_skip (scan, 1 + width, length);
    if (kind == EXT)
        return s_skip (scan, 1 + width + 1, length);
    if (kind == ARRAY)
        return s_check_items (scan, 1 + width, length, depth);
    return s_check_items (scan, 1 + width, length * 2, depth);
}

zcq_err_t
zcq_msgpack_check (const void *bytes, size_t size, const zcq_limits_t *limits, const char **reason)
{
    const char *dummy;
    if (!reason)
        reason = &dummy;
    *reason = NULL;
    if (limits && limits->max_bytes && size > limits->max_bytes) {
        *reason = "larger than the request limit";
        return ZCQ_INVALID;
    }
    if (size == 0 || !bytes) {
        *reason = "empty body";
        return ZCQ_INVALID;
    }
    s_scan_t scan = {
        .cursor = bytes,
        .end = (const uint8_t *) bytes + size,
        .max_depth = limits && limits->max_depth > 0 && limits->max_depth < S_MAX_DEPTH
                       ? limits->max_depth
                       : (limits && limits->max_depth > 0 ? S_MAX_DEPTH : S_DEFAULT_DEPTH),
    };
    if (!s_check_value (&scan, 0)) {
        *reason = scan.reason;
        return ZCQ_INVALID;
    }
    if (scan.cursor != scan.end) {
        *reason = "trailing bytes after the value";
        return ZCQ_INVALID;
    }
    return ZCQ_OK;
}

//  Find a string key in the top-level map of untrusted bytes without
//  decoding anything else: the encoded value's bytes, or false.
bool
zcq_msgpack_peek (const void *bytes, size_t size, const char *key, const void **value, size_t *len)
{
    s_scan_t scan
        = { .cursor = bytes, .end = (const uint8_t *) bytes + size, .max_depth = S_DEFAULT_DEPTH };
    if (!bytes || size == 0)
        return false;
    uint8_t tag = *scan.cursor;
    uint64_t count;
    if ((tag & 0xf0) == 0x80) {
        count = tag & 0x0f;
        scan.cursor += 1;
    }
    else if ((tag == 0xde || tag == 0xdf) && size >= (tag == 0xde ? 3u : 5u)) {
        count = s_be (scan.cursor + 1, tag == 0xde ? 2 : 4);
        scan.cursor += tag == 0xde ? 3 : 5;
    }
    else
        return false;
    size_t key_len = strlen (key);
    for (uint64_t entry = 0; entry < count; entry++) {
        const uint8_t *name = scan.cursor;
        if (!s_check_value (&scan, 1))
            return false;
        //  a fixstr or str8 name equal to key?
        bool match = false;
        if ((name[0] & 0xe0) == 0xa0)
            match = (size_t) (name[0] & 0x1f) == key_len && memcmp (name + 1, key, key_len) == 0;
        else if (name[0] == 0xd9)
            match = name[1] == key_len && memcmp (name + 2, key, key_len) == 0;
        const uint8_t *start = scan.cursor;
        if (!s_check_value (&scan, 1))
            return false;
        if (match) {
            *value = start;
            *len = (size_t) (scan.cursor - start);
            return true;
        }
    }
    return false;
}

//  --------------------------------------------------------------------------
//  Docs

zcq_doc_t *
zcq_doc_new (void)
{
    zcq_doc_t *self = calloc (1, sizeof (zcq_doc_t));
    if (!self)
        return NULL;
    if (!msgpack_zone_init (&self->zone, S_ZONE_CHUNK)) {
        free (self);
        return NULL;
    }
    return self;
}

void
zcq_doc_destroy (zcq_doc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_doc_t *self = *self_p;
    msgpack_zone_destroy (&self->zone);
    free (self->copy);
    free (self);
    *self_p = NULL;
}

zcq_err_t
zcq_doc_decode (zcq_doc_t *self, const void *bytes, size_t size, const zcq_limits_t *limits)
{
    self->decoded = false;
    self->error[0] = 0;
    msgpack_zone_clear (&self->zone);
    const char *reason;
    if (zcq_msgpack_check (bytes, size, limits, &reason) != ZCQ_OK) {
        snprintf (self->error, sizeof self->error, "body is not one valid MessagePack value: %s",
                  reason);
        return ZCQ_INVALID;
    }
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack (bytes, size, &offset, &self->zone, &self->root);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
        snprintf (self->error, sizeof self->error, "out of memory decoding the body");
        return ZCQ_NOMEM;
    }
    if (rc != MSGPACK_UNPACK_SUCCESS || offset != size) {
        snprintf (self->error, sizeof self->error, "body is not one valid MessagePack value");
        return ZCQ_INVALID;
    }
    self->decoded = true;
    return ZCQ_OK;
}

zcq_err_t
zcq_doc_decode_trusted (zcq_doc_t *self, const void *bytes, size_t size)
{
    self->decoded = false;
    self->error[0] = 0;
    msgpack_zone_clear (&self->zone);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack (bytes, size, &offset, &self->zone, &self->root);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR)
        return ZCQ_NOMEM;
    if (rc != MSGPACK_UNPACK_SUCCESS || offset != size) {
        snprintf (self->error, sizeof self->error, "stored bytes are not one MessagePack value");
        return ZCQ_CORRUPT;
    }
    self->decoded = true;
    return ZCQ_OK;
}

zcq_err_t
zcq_doc_decode_copy (zcq_doc_t *self, const void *bytes, size_t size, const zcq_limits_t *limits)
{
    if (size > self->copy_size || !self->copy) {
        void *copy = realloc (self->copy, size ? size : 1);
        if (!copy) {
            snprintf (self->error, sizeof self->error, "out of memory copying the body");
            return ZCQ_NOMEM;
        }
        self->copy = copy;
        self->copy_size = size;
    }
    if (size)
        memcpy (self->copy, bytes, size);
    return zcq_doc_decode (self, self->copy, size, limits);
}

const zcq_value_t *
zcq_doc_root (const zcq_doc_t *self)
{
    return self->decoded ? s_value (&self->root) : NULL;
}

const char *
zcq_doc_error (const zcq_doc_t *self)
{
    return self->error;
}

//  --------------------------------------------------------------------------
//  Reading values

zcq_type_t
zcq_value_type (const zcq_value_t *self)
{
    if (!self)
        return ZCQ_TYPE_NIL;
    switch (s_obj (self)->type) {
        case MSGPACK_OBJECT_BOOLEAN: return ZCQ_TYPE_BOOL;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return ZCQ_TYPE_INT;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: return ZCQ_TYPE_FLOAT;
        case MSGPACK_OBJECT_STR: return ZCQ_TYPE_STR;
        case MSGPACK_OBJECT_BIN: return ZCQ_TYPE_BIN;
        case MSGPACK_OBJECT_ARRAY: return ZCQ_TYPE_ARRAY;
        case MSGPACK_OBJECT_MAP: return ZCQ_TYPE_MAP;
        case MSGPACK_OBJECT_EXT: return ZCQ_TYPE_EXT;
        default: return ZCQ_TYPE_NIL;
    }
}

const zcq_value_t *
zcq_value_get (const zcq_value_t *self, const char *key)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t key_len = strlen (key);
    const msgpack_object_map *map = &s_obj (self)->via.map;
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *entry_key = &map->ptr[index].key;
        //  (an empty string's pointer is NULL: compare bytes only when there are some)
        if (entry_key->type == MSGPACK_OBJECT_STR && entry_key->via.str.size == key_len
            && (key_len == 0 || memcmp (entry_key->via.str.ptr, key, key_len) == 0))
            return s_value (&map->ptr[index].val);
    }
    return NULL;
}

bool
zcq_value_int (const zcq_value_t *self, int64_t *value)
{
    if (!self)
        return false;
    const msgpack_object *object = s_obj (self);
    if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *value = object->via.i64;
        return true;
    }
    if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER && object->via.u64 <= INT64_MAX) {
        *value = (int64_t) object->via.u64;
        return true;
    }
    return false;
}

bool
zcq_value_uint (const zcq_value_t *self, uint64_t *value)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *value = s_obj (self)->via.u64;
    return true;
}

bool
zcq_value_bool (const zcq_value_t *self, bool *value)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *value = s_obj (self)->via.boolean;
    return true;
}

bool
zcq_value_float (const zcq_value_t *self, double *value)
{
    if (!self)
        return false;
    const msgpack_object *object = s_obj (self);
    switch (object->type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: *value = object->via.f64; return true;
        case MSGPACK_OBJECT_POSITIVE_INTEGER: *value = (double) object->via.u64; return true;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: *value = (double) object->via.i64; return true;
        default: return false;
    }
}

bool
zcq_value_str (const zcq_value_t *self, const char **str, size_t *len)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_STR)
        return false;
    //  msgpack-c gives an empty string a NULL pointer
    *str = s_obj (self)->via.str.ptr ? s_obj (self)->via.str.ptr : "";
    *len = s_obj (self)->via.str.size;
    return true;
}

bool
zcq_value_bin (const zcq_value_t *self, const void **data, size_t *len)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_BIN)
        return false;
    *data = s_obj (self)->via.bin.ptr ? (const void *) s_obj (self)->via.bin.ptr : "";
    *len = s_obj (self)->via.bin.size;
    return true;
}

bool
zcq_value_streq (const zcq_value_t *self, const char *text)
{
    const char *str;
    size_t len;
    return zcq_value_str (self, &str, &len) && len == strlen (text) && memcmp (str, text, len) == 0;
}

size_t
zcq_value_size (const zcq_value_t *self)
{
    if (!self)
        return 0;
    if (s_obj (self)->type == MSGPACK_OBJECT_ARRAY)
        return s_obj (self)->via.array.size;
    if (s_obj (self)->type == MSGPACK_OBJECT_MAP)
        return s_obj (self)->via.map.size;
    return 0;
}

const zcq_value_t *
zcq_value_at (const zcq_value_t *self, size_t index)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_ARRAY
        || index >= s_obj (self)->via.array.size)
        return NULL;
    return s_value (&s_obj (self)->via.array.ptr[index]);
}

const zcq_value_t *
zcq_value_key_at (const zcq_value_t *self, size_t index)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_MAP || index >= s_obj (self)->via.map.size)
        return NULL;
    return s_value (&s_obj (self)->via.map.ptr[index].key);
}

const zcq_value_t *
zcq_value_val_at (const zcq_value_t *self, size_t index)
{
    if (!self || s_obj (self)->type != MSGPACK_OBJECT_MAP || index >= s_obj (self)->via.map.size)
        return NULL;
    return s_value (&s_obj (self)->via.map.ptr[index].val);
}

int64_t
zcq_value_get_int (const zcq_value_t *self, const char *key, int64_t fallback)
{
    int64_t value;
    return zcq_value_int (zcq_value_get (self, key), &value) ? value : fallback;
}

const char *
zcq_value_get_str (const zcq_value_t *self, const char *key, char *buffer, size_t size,
                   const char *fallback)
{
    const char *str;
    size_t len;
    if (!size || !zcq_value_str (zcq_value_get (self, key), &str, &len))
        return fallback;
    if (len >= size)
        len = size - 1;
    memcpy (buffer, str, len);
    buffer[len] = 0;
    return buffer;
}

bool
zcq_value_equal (const zcq_value_t *a, const zcq_value_t *b)
{
    if (!a || !b)
        return a == b;
    return msgpack_object_equal (*s_obj (a), *s_obj (b));
}

//  --------------------------------------------------------------------------
//  Writers (DESIGN 4)

zcq_writer_t *
zcq_writer_new (void)
{
    zcq_writer_t *self = calloc (1, sizeof (zcq_writer_t));
    if (!self)
        return NULL;
    msgpack_sbuffer_init (&self->buffer);
    msgpack_packer_init (&self->packer, &self->buffer, msgpack_sbuffer_write);
    self->ok = true;
    return self;
}

void
zcq_writer_destroy (zcq_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_sbuffer_destroy (&(*self_p)->buffer);
    free (*self_p);
    *self_p = NULL;
}

void
zcq_writer_reset (zcq_writer_t *self)
{
    self->buffer.size = 0;
    self->ok = true;
}

#define S_PACK(call)          \
    do {                      \
        if ((call) != 0)      \
            self->ok = false; \
    } while (0)

void
zcq_writer_nil (zcq_writer_t *self)
{
    S_PACK (msgpack_pack_nil (&self->packer));
}

void
zcq_writer_bool (zcq_writer_t *self, bool value)
{
    S_PACK (value ? msgpack_pack_true (&self->packer) : msgpack_pack_false (&self->packer));
}

void
zcq_writer_int (zcq_writer_t *self, int64_t value)
{
    S_PACK (msgpack_pack_int64 (&self->packer, value));
}

void
zcq_writer_uint (zcq_writer_t *self, uint64_t value)
{
    S_PACK (msgpack_pack_uint64 (&self->packer, value));
}

void
zcq_writer_float (zcq_writer_t *self, double value)
{
    S_PACK (msgpack_pack_double (&self->packer, value));
}

void
zcq_writer_str (zcq_writer_t *self, const char *text)
{
    zcq_writer_strn (self, text, strlen (text));
}

void
zcq_writer_strn (zcq_writer_t *self, const char *text, size_t len)
{
    if (len > UINT32_MAX) {
        self->ok = false;
        return;
    }
    S_PACK (msgpack_pack_str_with_body (&self->packer, text, len));
}

void
zcq_writer_bin (zcq_writer_t *self, const void *data, size_t len)
{
    if (len > UINT32_MAX) {
        self->ok = false;
        return;
    }
    S_PACK (msgpack_pack_bin_with_body (&self->packer, data, len));
}

void
zcq_writer_array (zcq_writer_t *self, size_t count)
{
    S_PACK (msgpack_pack_array (&self->packer, count));
}

void
zcq_writer_map (zcq_writer_t *self, size_t count)
{
    S_PACK (msgpack_pack_map (&self->packer, count));
}

//  Open a container with a 32-bit count to patch later.
static size_t
s_open (zcq_writer_t *self, uint8_t tag)
{
    size_t mark = self->buffer.size;
    uint8_t header[5] = { tag, 0, 0, 0, 0 };
    S_PACK (msgpack_sbuffer_write (&self->buffer, (const char *) header, sizeof header));
    return mark;
}

static void
s_close (zcq_writer_t *self, size_t mark, size_t count)
{
    if (!self->ok || mark + 5 > self->buffer.size)
        return;
    uint8_t *header = (uint8_t *) self->buffer.data + mark;
    header[1] = (uint8_t) (count >> 24);
    header[2] = (uint8_t) (count >> 16);
    header[3] = (uint8_t) (count >> 8);
    header[4] = (uint8_t) count;
}

size_t
zcq_writer_map_open (zcq_writer_t *self)
{
    return s_open (self, 0xdf);
}

void
zcq_writer_map_close (zcq_writer_t *self, size_t mark, size_t count)
{
    s_close (self, mark, count);
}

size_t
zcq_writer_array_open (zcq_writer_t *self)
{
    return s_open (self, 0xdd);
}

void
zcq_writer_array_close (zcq_writer_t *self, size_t mark, size_t count)
{
    s_close (self, mark, count);
}

void
zcq_writer_value (zcq_writer_t *self, const zcq_value_t *value)
{
    if (!value) {
        zcq_writer_nil (self);
        return;
    }
    S_PACK (msgpack_pack_object (&self->packer, *s_obj (value)));
}

void
zcq_writer_raw (zcq_writer_t *self, const void *bytes, size_t len)
{
    if (len)
        S_PACK (msgpack_sbuffer_write (&self->buffer, bytes, len));
}

const void *
zcq_writer_data (const zcq_writer_t *self)
{
    return self->buffer.data;
}

size_t
zcq_writer_size (const zcq_writer_t *self)
{
    return self->buffer.size;
}

bool
zcq_writer_ok (const zcq_writer_t *self)
{
    return self->ok;
}

void *
zcq_writer_take (zcq_writer_t *self, size_t *size)
{
    *size = self->buffer.size;
    void *data = msgpack_sbuffer_release (&self->buffer);
    self->ok = true;
    return data;
}
