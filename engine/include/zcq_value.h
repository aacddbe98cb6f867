/*  zcq_value.h: MessagePack values, read and written without msgpack.h.

    zcq_value_t is a read-only view of one decoded value (a command's data,
    an event's payload, a view row). zcq_doc_t decodes untrusted bytes into
    values with bounds on size, depth and counts checked before anything is
    allocated. zcq_writer_t encodes values into a reusable buffer.

    Values returned by a doc borrow both the doc and the bytes it decoded:
    keep both alive while you use them.
*/
#ifndef ZCQ_VALUE_H_INCLUDED
#define ZCQ_VALUE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "zcq_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_value_t zcq_value_t;
typedef struct zcq_doc_t zcq_doc_t;
typedef struct zcq_writer_t zcq_writer_t;

typedef enum {
    ZCQ_TYPE_NIL,
    ZCQ_TYPE_BOOL,
    ZCQ_TYPE_INT, //  any integer; see zcq_value_int for the range
    ZCQ_TYPE_FLOAT,
    ZCQ_TYPE_STR,
    ZCQ_TYPE_BIN,
    ZCQ_TYPE_ARRAY,
    ZCQ_TYPE_MAP,
    ZCQ_TYPE_EXT,
} zcq_type_t;

//  Bounds applied when decoding bytes from outside.
typedef struct {
    size_t max_bytes; //  whole document; 0 = no limit
    int max_depth;    //  nesting of arrays and maps; 0 = 32, and at most 32
    //  Accept strings that are not valid UTF-8 and maps that repeat a key:
    //  for bytes a node stored or served itself, which nodes of earlier
    //  versions wrote before they refused such requests. Structure and
    //  bounds are checked all the same. Requests from clients never get it.
    bool any_text;
} zcq_limits_t;

//  ---------------------------------------------------------------------
//  Reading values

ZCQ_EXPORT zcq_type_t zcq_value_type (const zcq_value_t *self);
//  Look a string key up in a map. NULL when self is not a map or has no
//  such key.
ZCQ_EXPORT const zcq_value_t *zcq_value_get (const zcq_value_t *self, const char *key);
//  Integer in int64 range; false for other types or uint64 above INT64_MAX.
ZCQ_EXPORT bool zcq_value_int (const zcq_value_t *self, int64_t *value);
ZCQ_EXPORT bool zcq_value_uint (const zcq_value_t *self, uint64_t *value);
ZCQ_EXPORT bool zcq_value_bool (const zcq_value_t *self, bool *value);
//  Float or integer, as a double.
ZCQ_EXPORT bool zcq_value_float (const zcq_value_t *self, double *value);
//  String bytes (not NUL-terminated) and their length.
ZCQ_EXPORT bool zcq_value_str (const zcq_value_t *self, const char **str, size_t *len);
ZCQ_EXPORT bool zcq_value_bin (const zcq_value_t *self, const void **data, size_t *len);
//  True when self is a string equal to text.
ZCQ_EXPORT bool zcq_value_streq (const zcq_value_t *self, const char *text);
//  Entries of an array or a map; 0 for other types.
ZCQ_EXPORT size_t zcq_value_size (const zcq_value_t *self);
//  Element of an array, or NULL out of range.
ZCQ_EXPORT const zcq_value_t *zcq_value_at (const zcq_value_t *self, size_t index);
//  Key and value of a map entry, or NULL out of range.
ZCQ_EXPORT const zcq_value_t *zcq_value_key_at (const zcq_value_t *self, size_t index);
ZCQ_EXPORT const zcq_value_t *zcq_value_val_at (const zcq_value_t *self, size_t index);
//  Shorthands for map fields: the field's value or the fallback.
ZCQ_EXPORT int64_t zcq_value_get_int (const zcq_value_t *self, const char *key, int64_t fallback);
//  A field's string, NUL-terminated into buffer (truncated to fit); returns
//  buffer, or fallback when the field is absent or not a string.
ZCQ_EXPORT const char *zcq_value_get_str (const zcq_value_t *self, const char *key, char *buffer,
                                          size_t size, const char *fallback);
//  Deep equality of two values (maps compare entry by entry, in order).
ZCQ_EXPORT bool zcq_value_equal (const zcq_value_t *a, const zcq_value_t *b);

//  ---------------------------------------------------------------------
//  Decoding

//  Create an empty doc. A doc can decode many times; each decode releases
//  the values of the previous one. NULL when out of memory.
ZCQ_EXPORT zcq_doc_t *zcq_doc_new (void);
ZCQ_EXPORT void zcq_doc_destroy (zcq_doc_t **self_p);
//  Decode exactly one value from bytes: anything malformed, truncated,
//  followed by trailing bytes, deeper or larger than the limits, or with a
//  count larger than the bytes that remain, a string that is not valid
//  UTF-8, or a map that repeats a key (at any depth), gives ZCQ_INVALID and
//  a reason in the doc's error text. Values borrow bytes.
ZCQ_EXPORT zcq_err_t zcq_doc_decode (zcq_doc_t *self, const void *bytes, size_t size,
                                     const zcq_limits_t *limits);
//  As decode, but the doc keeps its own copy of the bytes.
ZCQ_EXPORT zcq_err_t zcq_doc_decode_copy (zcq_doc_t *self, const void *bytes, size_t size,
                                          const zcq_limits_t *limits);
ZCQ_EXPORT const zcq_value_t *zcq_doc_root (const zcq_doc_t *self);
ZCQ_EXPORT const char *zcq_doc_error (const zcq_doc_t *self);
//  Check bytes without building values (same rules as decode).
ZCQ_EXPORT zcq_err_t zcq_msgpack_check (const void *bytes, size_t size, const zcq_limits_t *limits,
                                        const char **reason);
//  Length of the longest prefix of bytes that is valid UTF-8 (RFC 3629,
//  the rule decode applies to every string): len when all of it is.
ZCQ_EXPORT size_t zcq_utf8_prefix (const void *bytes, size_t len);

//  ---------------------------------------------------------------------
//  Encoding

ZCQ_EXPORT zcq_writer_t *zcq_writer_new (void);
ZCQ_EXPORT void zcq_writer_destroy (zcq_writer_t **self_p);
//  Forget what was written; keep the buffer for reuse.
ZCQ_EXPORT void zcq_writer_reset (zcq_writer_t *self);
ZCQ_EXPORT void zcq_writer_nil (zcq_writer_t *self);
ZCQ_EXPORT void zcq_writer_bool (zcq_writer_t *self, bool value);
ZCQ_EXPORT void zcq_writer_int (zcq_writer_t *self, int64_t value);
ZCQ_EXPORT void zcq_writer_uint (zcq_writer_t *self, uint64_t value);
ZCQ_EXPORT void zcq_writer_float (zcq_writer_t *self, double value);
ZCQ_EXPORT void zcq_writer_str (zcq_writer_t *self, const char *text);
ZCQ_EXPORT void zcq_writer_strn (zcq_writer_t *self, const char *text, size_t len);
ZCQ_EXPORT void zcq_writer_bin (zcq_writer_t *self, const void *data, size_t len);
ZCQ_EXPORT void zcq_writer_array (zcq_writer_t *self, size_t count);
ZCQ_EXPORT void zcq_writer_map (zcq_writer_t *self, size_t count);
//  Open a map whose size is not known yet; close it with the count.
ZCQ_EXPORT size_t zcq_writer_map_open (zcq_writer_t *self);
ZCQ_EXPORT void zcq_writer_map_close (zcq_writer_t *self, size_t mark, size_t count);
ZCQ_EXPORT size_t zcq_writer_array_open (zcq_writer_t *self);
ZCQ_EXPORT void zcq_writer_array_close (zcq_writer_t *self, size_t mark, size_t count);
//  Write a value (deep copy of what it holds).
ZCQ_EXPORT void zcq_writer_value (zcq_writer_t *self, const zcq_value_t *value);
//  Append bytes that already are one or more encoded values.
ZCQ_EXPORT void zcq_writer_raw (zcq_writer_t *self, const void *bytes, size_t len);
//  Encoded bytes so far (borrowed, valid until the next write or reset).
ZCQ_EXPORT const void *zcq_writer_data (const zcq_writer_t *self);
ZCQ_EXPORT size_t zcq_writer_size (const zcq_writer_t *self);
//  False once a write failed for lack of memory; reset clears it.
ZCQ_EXPORT bool zcq_writer_ok (const zcq_writer_t *self);
//  Hand the buffer over: caller owns the returned bytes (free with free).
//  The writer is left empty.
ZCQ_EXPORT void *zcq_writer_take (zcq_writer_t *self, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
