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
    5.  The same pass enforces the two content rules of ZCQ/1 section 2,
        so that every string a node stores and serves back is valid UTF-8
        and every map means one thing to every reader:
        a.  every str is valid UTF-8 (RFC 3629: no overlong forms, no
            surrogates, nothing above U+10FFFF, no cut sequence), checked
            eight ASCII bytes at a time;
        b.  no map repeats a key. Keys are compared as the values they
            encode, whatever the encoding's width: strings, binaries and
            ext by their bytes (and ext type), integers by value, floats by
            value as a double, nil and booleans by type; arrays and maps as
            keys by their encoded bytes. Maps of up to S_SMALL_MAP keys
            compare every pair; larger ones put a copy of their keys in a
            hash table (O(n); keys made to collide fall back to sorting
            the copy, O(n log n)), at most 48 bytes a key, at most one key
            per two bytes of input, freed before the check returns.
        zcq_msgpack_peek skips entries by structure alone, but checks the
        value it hands back by both rules. The node does not check again
        what it stored itself (DESIGN 3), so events stored before it
        enforced these rules stay in the log as they are; a reader that
        decodes them as untrusted bytes (a client reading the log) refuses
        one that breaks a rule.
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
//  UTF-8 (DESIGN 5)

//  True when text is all ASCII: its bytes ORed together eight at a time
//  (the last word overlapping), with no branch per word.
static inline bool
s_ascii (const uint8_t *text, size_t len)
{
    if (len >= 8) {
        uint64_t word, seen = 0;
        for (size_t at = 0; at + 8 <= len; at += 8) {
            memcpy (&word, text + at, 8);
            seen |= word;
        }
        memcpy (&word, text + len - 8, 8);
        return !((seen | word) & 0x8080808080808080ULL);
    }
    if (len >= 4) {
        uint32_t head, tail;
        memcpy (&head, text, 4);
        memcpy (&tail, text + len - 4, 4);
        return !((head | tail) & 0x80808080U);
    }
    uint8_t seen = 0;
    for (size_t at = 0; at < len; at++)
        seen |= text[at];
    return !(seen & 0x80);
}

//  Length of the longest prefix of text that is valid UTF-8 as RFC 3629
//  defines it: no overlong forms, no surrogates (U+D800..DFFF), nothing
//  above U+10FFFF, no sequence cut short. ASCII goes eight bytes at a time.
static inline size_t
s_utf8_prefix (const uint8_t *text, size_t len)
{
    if (s_ascii (text, len))
        return len;
    size_t at = 0;
    while (at < len) {
        while (len - at >= 8) {
            uint64_t word;
            memcpy (&word, text + at, 8);
            if (word & 0x8080808080808080ULL)
                break;
            at += 8;
        }
        if (at == len)
            break;
        uint8_t lead = text[at];
        if (lead < 0x80) {
            at++;
            continue;
        }
        //  the sequence's size, and the range of its second byte (RFC 3629
        //  section 4) that excludes overlongs, surrogates and > U+10FFFF
        size_t size = 0;
        uint8_t low = 0x80, high = 0xbf;
        if (lead >= 0xc2 && lead <= 0xdf)
            size = 2;
        else if (lead >= 0xe0 && lead <= 0xef) {
            size = 3;
            if (lead == 0xe0)
                low = 0xa0;
            else if (lead == 0xed)
                high = 0x9f;
        }
        else if (lead >= 0xf0 && lead <= 0xf4) {
            size = 4;
            if (lead == 0xf0)
                low = 0x90;
            else if (lead == 0xf4)
                high = 0x8f;
        }
        if (size == 0 || size > len - at || text[at + 1] < low || text[at + 1] > high)
            return at;
        for (size_t index = 2; index < size; index++)
            if ((text[at + index] & 0xc0) != 0x80)
                return at;
        at += size;
    }
    return len;
}

size_t
zcq_utf8_prefix (const void *bytes, size_t len)
{
    return s_utf8_prefix (bytes, len);
}

//  --------------------------------------------------------------------------
//  Checking untrusted bytes (DESIGN 1, 5)

typedef enum {
    S_KEY_NIL,
    S_KEY_FALSE,
    S_KEY_TRUE,
    S_KEY_UINT,  //  an integer >= 0, whatever its encoding
    S_KEY_NINT,  //  an integer < 0
    S_KEY_FLOAT, //  as a double's bits, -0.0 as 0.0
    S_KEY_STR,   //  the bytes of the string
    S_KEY_BIN,
    S_KEY_EXT,   //  type and data
    S_KEY_OTHER, //  an array or a map: its encoded bytes
} s_key_kind_t;

//  A map key as the value it stands for (DESIGN 5): its kind, its bytes
//  (strings, binaries, ext, arrays and maps) and a 64-bit digest: the
//  number itself for numbers; for the others a hash of the bytes, made
//  only for the table of a large map (0 until then).
typedef struct {
    const uint8_t *bytes;
    size_t len;
    uint64_t digest;
    s_key_kind_t kind;
} s_key_t;

//  Maps with more keys than this find a repeated key with a hash table;
//  smaller ones compare every pair.
#define S_SMALL_MAP 16

typedef enum { S_PROBLEM_NONE, S_PROBLEM_UTF8, S_PROBLEM_REPEAT, S_PROBLEM_NOMEM } s_problem_t;

typedef struct {
    const uint8_t *start;
    const uint8_t *cursor;
    const uint8_t *end;
    int max_depth;
    bool strict; //  DESIGN 5: UTF-8 and repeated keys too
    const char *reason;
    //  where a strict check failed, to say so in a doc's error
    s_problem_t problem;
    const uint8_t *bad_byte;   //  S_PROBLEM_UTF8: the first invalid byte
    const uint8_t *bad_string; //  ... and the string's header
    s_key_t repeated;          //  S_PROBLEM_REPEAT: the key
    int repeated_depth;        //  ... and the depth of its map (0 = the root)
    const uint8_t *top_value;  //  the root map's entry being checked: its value
    const uint8_t *top_key;    //  and its key, when a string (NULL otherwise)
    size_t top_key_len;
    bool in_top_key; //  checking a key of the root map
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

//  Skip a string, checking its UTF-8 when strict.
static inline bool
s_skip_str (s_scan_t *scan, size_t header, uint64_t size)
{
    const uint8_t *string = scan->cursor;
    if (!s_skip (scan, header, size))
        return false;
    if (!scan->strict)
        return true;
    size_t valid = s_utf8_prefix (string + header, (size_t) size);
    if (valid == size)
        return true;
    scan->reason = "a string is not valid UTF-8";
    scan->problem = S_PROBLEM_UTF8;
    scan->bad_string = string;
    scan->bad_byte = string + header + valid;
    return false;
}

//  A hash of bytes, eight at a time; the last 1 to 7 bytes are read as
//  overlapping pieces that cover them all.
static uint64_t
s_digest (const uint8_t *bytes, size_t len)
{
    uint64_t hash = 0x9e3779b97f4a7c15ULL ^ len;
    uint64_t word;
    for (; len >= 8; bytes += 8, len -= 8) {
        memcpy (&word, bytes, 8);
        hash = (hash ^ word) * 0xff51afd7ed558ccdULL;
        hash ^= hash >> 32;
    }
    if (len >= 4) {
        uint32_t head, tail;
        memcpy (&head, bytes, 4);
        memcpy (&tail, bytes + len - 4, 4);
        word = (uint64_t) head << 32 | tail;
    }
    else if (len)
        word = (uint64_t) bytes[0] << 16 | (uint64_t) bytes[len / 2] << 8 | bytes[len - 1];
    else
        return hash;
    hash = (hash ^ word) * 0xc4ceb9fe1a85ec53ULL;
    return hash ^ (hash >> 29);
}

//  The key a checked value between start and end stands for.
static s_key_t
s_key (const uint8_t *start, const uint8_t *end)
{
    s_key_t key = { .bytes = start, .len = (size_t) (end - start), .kind = S_KEY_OTHER };
    uint8_t tag = *start;
    int width = 0;
    if (tag <= 0x7f || tag >= 0xe0) {
        key.kind = tag <= 0x7f ? S_KEY_UINT : S_KEY_NINT;
        key.digest = (uint64_t) (int64_t) (int8_t) tag;
        key.len = 0;
        return key;
    }
    if ((tag & 0xe0) == 0xa0) {
        key.kind = S_KEY_STR;
        key.bytes = start + 1;
        key.len = tag & 0x1f;
        return key;
    }
    switch (tag) {
        case 0xc0: key.kind = S_KEY_NIL; break;
        case 0xc2: key.kind = S_KEY_FALSE; break;
        case 0xc3: key.kind = S_KEY_TRUE; break;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            key.kind = S_KEY_UINT;
            key.digest = s_be (start + 1, 1 << (tag - 0xcc));
            break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: {
            width = 1 << (tag - 0xd0);
            uint64_t raw = s_be (start + 1, width);
            int shift = 64 - 8 * width;
            int64_t value = (int64_t) (raw << shift) >> shift;
            key.kind = value < 0 ? S_KEY_NINT : S_KEY_UINT;
            key.digest = (uint64_t) value;
            break;
        }
        case 0xca:
        case 0xcb: {
            double value;
            if (tag == 0xca) {
                uint32_t bits = (uint32_t) s_be (start + 1, 4);
                float single;
                memcpy (&single, &bits, sizeof single);
                value = single;
            }
            else {
                uint64_t bits = s_be (start + 1, 8);
                memcpy (&value, &bits, sizeof value);
            }
            if (value == 0)
                value = 0; //  -0.0 is the key 0.0
            key.kind = S_KEY_FLOAT;
            memcpy (&key.digest, &value, sizeof key.digest);
            break;
        }
        case 0xd9:
        case 0xda:
        case 0xdb:
            key.kind = S_KEY_STR;
            width = 1 << (tag - 0xd9);
            break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            key.kind = S_KEY_BIN;
            width = 1 << (tag - 0xc4);
            break;
        case 0xc7:
        case 0xc8:
        case 0xc9:
            key.kind = S_KEY_EXT;
            width = 1 << (tag - 0xc7);
            break;
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8: key.kind = S_KEY_EXT; break;
        default: break; //  an array or a map
    }
    if (key.kind == S_KEY_STR || key.kind == S_KEY_BIN || key.kind == S_KEY_EXT) {
        key.bytes = start + 1 + width;
        key.len = (size_t) (end - key.bytes);
    }
    if (key.kind < S_KEY_STR)
        key.len = 0;
    return key;
}

//  Keys in a total order: digest, kind, length, bytes (digests made).
static int
s_key_compare (const void *left_p, const void *right_p)
{
    const s_key_t *left = left_p, *right = right_p;
    if (left->digest != right->digest)
        return left->digest < right->digest ? -1 : 1;
    if (left->kind != right->kind)
        return left->kind < right->kind ? -1 : 1;
    if (left->len != right->len)
        return left->len < right->len ? -1 : 1;
    return left->len ? memcmp (left->bytes, right->bytes, left->len) : 0;
}

static inline bool
s_key_equal (const s_key_t *left, const s_key_t *right)
{
    return left->digest == right->digest && left->kind == right->kind && left->len == right->len
        && (left->len == 0
            || (left->bytes[0] == right->bytes[0]
                && memcmp (left->bytes, right->bytes, left->len) == 0));
}

//  Slots of the table that finds a repeat among a large map's keys: a
//  power of two, at least twice the keys.
static size_t
s_table_bits (size_t count)
{
    size_t bits = 1;
    while (((size_t) 1 << bits) < 2 * count)
        bits++;
    return bits;
}

//  A repeated key among count keys, or NULL. A small map compares every
//  pair. A larger one puts its keys, by digest, in an open-addressing
//  table (slots: 1 << s_table_bits (count) key numbers, zeroed), and
//  compares keys whole only when their digests meet: O(n) for keys as
//  they come. Keys made to collide could make the probes quadratic, so
//  past 8 probes a key on average the keys are sorted instead (O(n log
//  n), and they are reordered).
static const s_key_t *
s_repeated_key (s_key_t *keys, uint32_t *slots, size_t count)
{
    if (count <= S_SMALL_MAP) {
        for (size_t index = 1; index < count; index++)
            for (size_t other = 0; other < index; other++)
                if (s_key_equal (&keys[index], &keys[other]))
                    return &keys[index];
        return NULL;
    }
    size_t bits = s_table_bits (count), mask = ((size_t) 1 << bits) - 1;
    size_t probes = 0;
    for (size_t index = 0; index < count; index++) {
        s_key_t *key = &keys[index];
        if (key->kind >= S_KEY_STR)
            key->digest = s_digest (key->bytes, key->len);
        size_t slot = (size_t) ((key->digest * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
        while (slots[slot]) {
            if (s_key_equal (key, &keys[slots[slot] - 1]))
                return key;
            slot = (slot + 1) & mask;
            if (++probes > 8 * count) {
                qsort (keys, count, sizeof (s_key_t), s_key_compare);
                for (size_t sorted = 1; sorted < count; sorted++)
                    if (s_key_equal (&keys[sorted], &keys[sorted - 1]))
                        return &keys[sorted];
                return NULL;
            }
        }
        slots[slot] = (uint32_t) index + 1;
    }
    return NULL;
}

static bool s_check_value (s_scan_t *scan, int depth);

static bool
s_check_array (s_scan_t *scan, size_t header, uint64_t count, int depth)
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
s_check_map (s_scan_t *scan, size_t header, uint64_t count, int depth)
{
    scan->cursor += header;
    size_t remaining = (size_t) (scan->end - scan->cursor);
    if (count * 2 > remaining) {
        scan->reason = "count larger than the bytes that remain";
        return false;
    }
    if (depth >= scan->max_depth) {
        scan->reason = "nested too deeply";
        return false;
    }
    s_key_t small[S_SMALL_MAP];
    s_key_t *keys = small;
    uint32_t *slots = NULL;
    if (scan->strict && count > S_SMALL_MAP) {
        //  the keys, then the table's slots: at most one key per two bytes
        //  of input (checked above)
        size_t slot_count = (size_t) 1 << s_table_bits ((size_t) count);
        keys = malloc ((size_t) count * sizeof (s_key_t) + slot_count * sizeof (uint32_t));
        if (keys) {
            slots = (uint32_t *) (keys + count);
            memset (slots, 0, slot_count * sizeof (uint32_t));
        }
        if (!keys) {
            scan->reason = "out of memory";
            scan->problem = S_PROBLEM_NOMEM;
            return false;
        }
    }
    bool ok = true;
    for (uint64_t entry = 0; ok && entry < count; entry++) {
        const uint8_t *key = scan->cursor;
        if (depth == 0) {
            scan->in_top_key = true;
            scan->top_key = NULL;
        }
        ok = s_check_value (scan, depth + 1);
        if (!ok)
            break;
        if (scan->strict)
            keys[entry] = s_key (key, scan->cursor);
        if (depth == 0) {
            scan->in_top_key = false;
            scan->top_value = scan->cursor;
            if (scan->strict && keys[entry].kind == S_KEY_STR) {
                scan->top_key = keys[entry].bytes;
                scan->top_key_len = keys[entry].len;
            }
        }
        ok = s_check_value (scan, depth + 1);
    }
    if (ok && scan->strict) {
        const s_key_t *repeated = s_repeated_key (keys, slots, (size_t) count);
        if (repeated) {
            scan->reason = "a map repeats a key";
            scan->problem = S_PROBLEM_REPEAT;
            scan->repeated = *repeated;
            scan->repeated_depth = depth;
            ok = false;
        }
    }
    if (keys != small)
        free (keys);
    return ok;
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
        return s_skip_str (scan, 1, tag & 0x1f);
    if ((tag & 0xf0) == 0x90)
        return s_check_array (scan, 1, tag & 0x0f, depth);
    if ((tag & 0xf0) == 0x80)
        return s_check_map (scan, 1, tag & 0x0f, depth);

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
    enum { STR, BIN, EXT, ARRAY, MAP } kind = BIN;
    switch (tag) {
        case 0xd9:
            width = 1;
            kind = STR;
            break;
        case 0xda:
            width = 2;
            kind = STR;
            break;
        case 0xdb:
            width = 4;
            kind = STR;
            break;
        case 0xc4: width = 1; break;
        case 0xc5: width = 2; break;
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
    switch (kind) {
        case STR: return s_skip_str (scan, 1 + width, length);
        case BIN: return s_skip (scan, 1 + width, length);
        case EXT: return s_skip (scan, 1 + width + 1, length);
        case ARRAY: return s_check_array (scan, 1 + width, length, depth);
        default: return s_check_map (scan, 1 + width, length, depth);
    }
}

//  Check untrusted bytes strictly (DESIGN 1, and 5 unless the limits say
//  any_text) with the scan's state left where a check failed.
static zcq_err_t
s_check (s_scan_t *scan, const void *bytes, size_t size, const zcq_limits_t *limits)
{
    *scan = (s_scan_t) {
        .start = bytes,
        .cursor = bytes,
        .end = (const uint8_t *) bytes + size,
        .max_depth = limits && limits->max_depth > 0 && limits->max_depth < S_MAX_DEPTH
                       ? limits->max_depth
                       : (limits && limits->max_depth > 0 ? S_MAX_DEPTH : S_DEFAULT_DEPTH),
        .strict = !(limits && limits->any_text),
    };
    if (limits && limits->max_bytes && size > limits->max_bytes) {
        scan->reason = "larger than the request limit";
        return ZCQ_INVALID;
    }
    if (size == 0 || !bytes) {
        scan->reason = "empty body";
        return ZCQ_INVALID;
    }
    if (!s_check_value (scan, 0))
        return scan->problem == S_PROBLEM_NOMEM ? ZCQ_NOMEM : ZCQ_INVALID;
    if (scan->cursor != scan->end) {
        scan->reason = "trailing bytes after the value";
        return ZCQ_INVALID;
    }
    return ZCQ_OK;
}

const zcq_limits_t zcq_stored_limits = { .any_text = true };

zcq_err_t
zcq_msgpack_check (const void *bytes, size_t size, const zcq_limits_t *limits, const char **reason)
{
    s_scan_t scan;
    zcq_err_t err = s_check (&scan, bytes, size, limits);
    if (reason)
        *reason = err == ZCQ_OK ? NULL : scan.reason;
    return err;
}

//  A string's text for a message: at most 32 bytes, cut where a character
//  starts, "..." when cut. The text is valid UTF-8 (it passed the check).
static void
s_quote (char *buffer, size_t size, const uint8_t *text, size_t len)
{
    size_t shown = len > 32 ? s_utf8_prefix (text, 32) : len;
    snprintf (buffer, size, "'%.*s%s'", (int) shown, (const char *) text, shown < len ? "..." : "");
}

//  Say in the doc's error which rule of DESIGN 5 the bytes broke, and where.
static void
s_describe (zcq_doc_t *self, const s_scan_t *scan)
{
    char where[48] = "";
    if (scan->top_key && !scan->in_top_key)
        s_quote (where, sizeof where, scan->top_key, scan->top_key_len);
    if (scan->problem == S_PROBLEM_UTF8) {
        size_t offset = (size_t) (scan->bad_byte - scan->start);
        if (scan->in_top_key)
            snprintf (self->error, sizeof self->error,
                      "a key of the body's map is not valid UTF-8 (byte %zu)", offset);
        else if (*where && scan->bad_string == scan->top_value)
            snprintf (self->error, sizeof self->error, "%s is not valid UTF-8 (byte %zu)", where,
                      offset);
        else if (*where)
            snprintf (self->error, sizeof self->error,
                      "a string in %s is not valid UTF-8 (byte %zu)", where, offset);
        else
            snprintf (self->error, sizeof self->error, "a string is not valid UTF-8 (byte %zu)",
                      offset);
        return;
    }
    char key[48] = "a key";
    if (scan->repeated.kind == S_KEY_STR) {
        memcpy (key, "the key ", 8);
        s_quote (key + 8, sizeof key - 8, scan->repeated.bytes, scan->repeated.len);
    }
    if (scan->repeated_depth == 0)
        snprintf (self->error, sizeof self->error, "the body's map repeats %s", key);
    else if (*where && scan->repeated_depth == 1)
        snprintf (self->error, sizeof self->error, "%s repeats %s", where, key);
    else if (*where)
        snprintf (self->error, sizeof self->error, "a map in %s repeats %s", where, key);
    else
        snprintf (self->error, sizeof self->error, "a map repeats %s", key);
}

//  Find a string key in the top-level map of untrusted bytes without
//  decoding anything else: the encoded value's bytes, or false. Entries
//  are skipped by their structure; the value found is checked strictly.
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
            s_scan_t strict = { .start = start,
                                .cursor = start,
                                .end = scan.cursor,
                                .max_depth = S_DEFAULT_DEPTH,
                                .strict = true };
            if (!s_check_value (&strict, 1))
                return false;
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
    s_scan_t scan;
    zcq_err_t err = s_check (&scan, bytes, size, limits);
    if (err == ZCQ_NOMEM) {
        snprintf (self->error, sizeof self->error, "out of memory checking the body");
        return ZCQ_NOMEM;
    }
    if (err != ZCQ_OK) {
        if (scan.problem == S_PROBLEM_NONE)
            snprintf (self->error, sizeof self->error,
                      "body is not one valid MessagePack value: %s", scan.reason);
        else
            s_describe (self, &scan);
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
