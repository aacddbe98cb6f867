/*  fuzz_codec: the MessagePack decoder of untrusted bytes (engine/codec.c).

    For every input:
    1.  zcq_doc_decode with the routers' limits (1 MiB, depth 32); it must
        agree with zcq_msgpack_check on the same bytes, and decode_copy
        must agree with decode.
    2.  Every value of a decoded document is visited with every accessor
        (type, int, uint, bool, float, str, bin, streq, size, at, key_at,
        val_at, get, get_int, get_str, equal), out-of-range indexes
        included.
    3.  The root is re-encoded with zcq_writer_value and decoded again: the
        two documents are equal (NaN aside), the second encoding is stable,
        and it is never larger than the input.
    4.  The depth limit is exact: the measured depth D passes with
        max_depth D and fails with D - 1; a max_bytes one short fails.
    5.  zcq_msgpack_peek (which the command router runs on bodies too large
        to decode) stays within the bytes and, when it finds a key, hands
        back exactly one valid value.
*/
#include "fuzz_common.h"
#include "zcq_internal.h"
#include <math.h>
#include <string.h>

#define S_LIMIT (1024 * 1024)

static zcq_doc_t *s_doc, *s_copy, *s_again, *s_slice;
static zcq_writer_t *s_writer, *s_writer2;

typedef struct {
    size_t values;
    bool nan;
    int depth; //  deepest nesting of containers, empty ones included
} s_walk_t;

static void s_visit (const zcq_value_t *value, int depth, s_walk_t *walk);

static void
s_scalars (const zcq_value_t *value, s_walk_t *walk)
{
    int64_t i;
    uint64_t u;
    bool b;
    double f;
    const char *str;
    const void *bin;
    size_t len;
    zcq_type_t type = zcq_value_type (value);
    bool is_int = zcq_value_int (value, &i);
    bool is_uint = zcq_value_uint (value, &u);
    FUZZ_ASSERT (!is_int || type == ZCQ_TYPE_INT, "int accessor on type %d", type);
    FUZZ_ASSERT (!is_uint || type == ZCQ_TYPE_INT, "uint accessor on type %d", type);
    if (is_int && is_uint)
        FUZZ_ASSERT ((uint64_t) i == u, "int %lld and uint %llu disagree", (long long) i,
                     (unsigned long long) u);
    if (zcq_value_bool (value, &b))
        FUZZ_ASSERT (type == ZCQ_TYPE_BOOL, "bool accessor on type %d", type);
    if (zcq_value_float (value, &f)) {
        FUZZ_ASSERT (type == ZCQ_TYPE_FLOAT || type == ZCQ_TYPE_INT, "float on type %d", type);
        if (isnan (f))
            walk->nan = true;
    }
    if (zcq_value_str (value, &str, &len)) {
        FUZZ_ASSERT (type == ZCQ_TYPE_STR, "str accessor on type %d", type);
        //  touch every byte: ASan checks they are inside the input
        volatile uint8_t sum = 0;
        for (size_t index = 0; index < len; index++)
            sum += (uint8_t) str[index];
        (void) sum;
        FUZZ_ASSERT (zcq_value_streq (value, "") == (len == 0), "streq of empty");
        char copy[32];
        if (len < sizeof copy && !memchr (str, 0, len)) {
            memcpy (copy, str, len);
            copy[len] = 0;
            FUZZ_ASSERT (zcq_value_streq (value, copy), "streq with its own text");
        }
    }
    if (zcq_value_bin (value, &bin, &len)) {
        FUZZ_ASSERT (type == ZCQ_TYPE_BIN, "bin accessor on type %d", type);
        volatile uint8_t sum = 0;
        for (size_t index = 0; index < len; index++)
            sum += ((const uint8_t *) bin)[index];
        (void) sum;
    }
}

static void
s_visit (const zcq_value_t *value, int depth, s_walk_t *walk)
{
    FUZZ_ASSERT (value != NULL, "NULL value inside a document");
    walk->values++;
    s_scalars (value, walk);
    zcq_type_t type = zcq_value_type (value);
    size_t size = zcq_value_size (value);
    if (type == ZCQ_TYPE_ARRAY || type == ZCQ_TYPE_MAP) {
        if (depth + 1 > walk->depth)
            walk->depth = depth + 1;
    }
    else
        FUZZ_ASSERT (size == 0, "size %zu of a scalar", size);
    if (type == ZCQ_TYPE_ARRAY) {
        for (size_t index = 0; index < size; index++)
            s_visit (zcq_value_at (value, index), depth + 1, walk);
        FUZZ_ASSERT (zcq_value_at (value, size) == NULL, "at(size) is not NULL");
        FUZZ_ASSERT (zcq_value_key_at (value, 0) == NULL, "key_at on an array");
        FUZZ_ASSERT (zcq_value_get (value, "x") == NULL, "get on an array");
    }
    else if (type == ZCQ_TYPE_MAP) {
        for (size_t index = 0; index < size; index++) {
            const zcq_value_t *key = zcq_value_key_at (value, index);
            s_visit (key, depth + 1, walk);
            s_visit (zcq_value_val_at (value, index), depth + 1, walk);
            //  look the key up by name (bounded, so big maps stay linear)
            const char *str;
            size_t len;
            char name[80];
            if (index < 64 && zcq_value_str (key, &str, &len) && len < sizeof name
                && !memchr (str, 0, len)) {
                memcpy (name, str, len);
                name[len] = 0;
                const zcq_value_t *found = zcq_value_get (value, name);
                FUZZ_ASSERT (found != NULL, "get('%s') misses a key of the map", name);
                char buffer[8];
                const char *text = zcq_value_get_str (value, name, buffer, sizeof buffer, NULL);
                if (text)
                    FUZZ_ASSERT (strlen (text) < sizeof buffer, "get_str overflowed");
                zcq_value_get_str (value, name, buffer, 1, NULL);
                zcq_value_get_int (value, name, 0);
            }
        }
        FUZZ_ASSERT (zcq_value_key_at (value, size) == NULL, "key_at(size) is not NULL");
        FUZZ_ASSERT (zcq_value_val_at (value, size) == NULL, "val_at(size) is not NULL");
        FUZZ_ASSERT (zcq_value_at (value, 0) == NULL, "at on a map");
    }
    else {
        FUZZ_ASSERT (zcq_value_at (value, 0) == NULL, "at on a scalar");
        FUZZ_ASSERT (zcq_value_key_at (value, 0) == NULL, "key_at on a scalar");
    }
    //  after the children, so that a NaN anywhere inside is known
    FUZZ_ASSERT (zcq_value_equal (value, value) || walk->nan, "a value differs from itself");
}

//  Check zcq_msgpack_peek of one key.
static void
s_peek (const uint8_t *data, size_t size, const char *key, const zcq_value_t *root)
{
    const void *found = NULL;
    size_t len = 0;
    if (!zcq_msgpack_peek (data, size, key, &found, &len))
        return;
    const uint8_t *start = found;
    FUZZ_ASSERT (start > data && start + len <= data + size, "peek slice outside the input");
    //  the slice is one whole value (peek checks it with the depth left)
    FUZZ_ASSERT (zcq_msgpack_check (start, len, NULL, NULL) == ZCQ_OK,
                 "peek('%s') gave bytes that are not one value", key);
    FUZZ_ASSERT (zcq_doc_decode (s_slice, start, len, NULL) == ZCQ_OK, "peek slice decode: %s",
                 zcq_doc_error (s_slice));
    //  a key peek finds, the decoder finds too
    if (root && zcq_value_type (root) == ZCQ_TYPE_MAP)
        FUZZ_ASSERT (zcq_value_get (root, key) != NULL, "peek found '%s', get did not", key);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    s_doc = zcq_doc_new ();
    s_copy = zcq_doc_new ();
    s_again = zcq_doc_new ();
    s_slice = zcq_doc_new ();
    s_writer = zcq_writer_new ();
    s_writer2 = zcq_writer_new ();
    return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    zcq_limits_t limits = { .max_bytes = S_LIMIT, .max_depth = 32 };
    const char *reason = NULL;
    zcq_err_t checked = zcq_msgpack_check (data, size, &limits, &reason);
    zcq_err_t decoded = zcq_doc_decode (s_doc, data, size, &limits);
    FUZZ_ASSERT (decoded != ZCQ_NOMEM, "decode ran out of memory on %zu bytes", size);
    FUZZ_ASSERT (checked == decoded, "check says %s (%s), decode says %s (%s)",
                 zcq_err_code (checked), reason ? reason : "-", zcq_err_code (decoded),
                 zcq_doc_error (s_doc));
    FUZZ_ASSERT ((checked == ZCQ_OK) == (reason == NULL), "check reason out of step");
    FUZZ_ASSERT ((decoded == ZCQ_OK) == (zcq_doc_root (s_doc) != NULL), "root out of step");
    if (decoded != ZCQ_OK)
        FUZZ_ASSERT (zcq_doc_error (s_doc)[0], "an invalid body without a reason");
    zcq_err_t copied = zcq_doc_decode_copy (s_copy, data, size, &limits);
    FUZZ_ASSERT (copied == decoded, "decode_copy %d, decode %d", copied, decoded);

    const zcq_value_t *root = zcq_doc_root (s_doc);
    for (const char *const *key = (const char *const[]) { "id", "op", "rid", "data", NULL }; *key;
         key++)
        s_peek (data, size, *key, root);
    if (!root)
        return 0;

    s_walk_t walk = { 0 };
    s_visit (root, 0, &walk);
    FUZZ_ASSERT (walk.values <= size, "%zu values from %zu bytes", walk.values, size);
    FUZZ_ASSERT (zcq_value_equal (root, zcq_doc_root (s_copy)) || walk.nan, "copy differs");

    //  re-encode, decode again, compare
    zcq_writer_reset (s_writer);
    zcq_writer_value (s_writer, root);
    FUZZ_ASSERT (zcq_writer_ok (s_writer), "writer failed");
    size_t size2 = zcq_writer_size (s_writer);
    FUZZ_ASSERT (size2 <= size, "re-encoding grew from %zu to %zu bytes", size, size2);
    zcq_err_t again = zcq_doc_decode (s_again, zcq_writer_data (s_writer), size2, &limits);
    FUZZ_ASSERT (again == ZCQ_OK, "re-encoded bytes do not decode: %s", zcq_doc_error (s_again));
    FUZZ_ASSERT (zcq_value_equal (root, zcq_doc_root (s_again)) || walk.nan,
                 "re-encoded value differs");
    zcq_writer_reset (s_writer2);
    zcq_writer_value (s_writer2, zcq_doc_root (s_again));
    FUZZ_ASSERT (zcq_writer_size (s_writer2) == size2
                     && memcmp (zcq_writer_data (s_writer2), zcq_writer_data (s_writer), size2)
                            == 0,
                 "encoding is not stable");

    //  the limits are exact
    if (walk.depth >= 1) {
        zcq_limits_t exact = { .max_bytes = size, .max_depth = walk.depth };
        FUZZ_ASSERT (zcq_msgpack_check (data, size, &exact, NULL) == ZCQ_OK,
                     "depth %d fails max_depth %d", walk.depth, walk.depth);
        if (walk.depth >= 2) {
            zcq_limits_t shallow = { .max_bytes = size, .max_depth = walk.depth - 1 };
            FUZZ_ASSERT (zcq_msgpack_check (data, size, &shallow, NULL) == ZCQ_INVALID,
                         "depth %d passes max_depth %d", walk.depth, walk.depth - 1);
        }
    }
    zcq_limits_t small = { .max_bytes = size - 1, .max_depth = 32 };
    if (size > 1)
        FUZZ_ASSERT (zcq_doc_decode (s_again, data, size, &small) == ZCQ_INVALID,
                     "max_bytes %zu let %zu bytes through", size - 1, size);
    return 0;
}
