/*  test_codec.c: zcq_writer_t, zcq_doc_t and zcq_value_t.

    Round trips of every MessagePack type through a writer and a doc, the
    value accessors, and every class of malformed input a doc must reject
    with ZCQ_INVALID (and never with a crash or a huge allocation): bad
    structure, strings that are not UTF-8, maps that repeat a key. Ends
    with a small deterministic fuzz loop.
*/
#include "testutil.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Helpers

//  Decode the writer's bytes into doc; the test fails unless they decode.
static const zcq_value_t *
s_decode (zcq_doc_t *doc, const zcq_writer_t *writer)
{
    assert_true (zcq_writer_ok (writer));
    zcq_err_t rc = zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL);
    if (rc != ZCQ_OK)
        fail_msg ("decode failed: %s", zcq_doc_error (doc));
    const zcq_value_t *root = zcq_doc_root (doc);
    assert_non_null (root);
    return root;
}

//  Expect bytes to be rejected as ZCQ_INVALID by both decode and check.
static void
s_expect_invalid (const void *bytes, size_t size, const zcq_limits_t *limits)
{
    zcq_doc_t *doc = zcq_doc_new ();
    assert_non_null (doc);
    assert_int_equal (zcq_doc_decode (doc, bytes, size, limits), ZCQ_INVALID);
    assert_null (zcq_doc_root (doc));
    assert_true (strlen (zcq_doc_error (doc)) > 0);
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check (bytes, size, limits, &reason), ZCQ_INVALID);
    assert_non_null (reason);
    zcq_doc_destroy (&doc);
}

//  Expect bytes to decode, by both decode and check.
static void
s_expect_valid (const void *bytes, size_t size, const zcq_limits_t *limits)
{
    zcq_doc_t *doc = zcq_doc_new ();
    assert_non_null (doc);
    zcq_err_t rc = zcq_doc_decode (doc, bytes, size, limits);
    if (rc != ZCQ_OK)
        fail_msg ("expected valid, got %s: %s", zcq_strerror (rc), zcq_doc_error (doc));
    assert_non_null (zcq_doc_root (doc));
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check (bytes, size, limits, &reason), ZCQ_OK);
    zcq_doc_destroy (&doc);
}

//  A document holding every type, nested (used by several tests).
static void
s_write_everything (zcq_writer_t *writer)
{
    zcq_writer_map (writer, 10);
    zcq_writer_str (writer, "nil");
    zcq_writer_nil (writer);
    zcq_writer_str (writer, "yes");
    zcq_writer_bool (writer, true);
    zcq_writer_str (writer, "min");
    zcq_writer_int (writer, INT64_MIN);
    zcq_writer_str (writer, "max");
    zcq_writer_uint (writer, UINT64_MAX);
    zcq_writer_str (writer, "pi");
    zcq_writer_float (writer, 3.25);
    zcq_writer_str (writer, "name");
    zcq_writer_str (writer, "a string longer than thirty-one bytes, so str8");
    zcq_writer_str (writer, "blob");
    zcq_writer_bin (writer, "\x00\x01\x02", 3);
    zcq_writer_str (writer, "list");
    zcq_writer_array (writer, 3);
    zcq_writer_int (writer, -1);
    zcq_writer_int (writer, 300);
    zcq_writer_array (writer, 0);
    zcq_writer_str (writer, "inner");
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "deep");
    zcq_writer_array (writer, 1);
    zcq_writer_map (writer, 0);
    zcq_writer_str (writer, "ext");
    zcq_writer_raw (writer, "\xd5\x07\xab\xcd", 4); //  fixext2, type 7
}

//  --------------------------------------------------------------------------
//  The walk-through: write a map, decode it, read fields, destroy.

static void
test_codec_walkthrough (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    assert_non_null (writer);
    zcq_writer_map (writer, 3);
    zcq_writer_str (writer, "owner");
    zcq_writer_str (writer, "ann");
    zcq_writer_str (writer, "balance");
    zcq_writer_int (writer, 42);
    zcq_writer_str (writer, "tags");
    zcq_writer_array (writer, 2);
    zcq_writer_str (writer, "gold");
    zcq_writer_str (writer, "new");
    assert_true (zcq_writer_ok (writer));

    zcq_limits_t limits = { .max_bytes = 1024, .max_depth = 8 };
    zcq_doc_t *doc = zcq_doc_new ();
    assert_non_null (doc);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), &limits), ZCQ_OK);
    const zcq_value_t *account = zcq_doc_root (doc);
    assert_int_equal (zcq_value_type (account), ZCQ_TYPE_MAP);
    assert_int_equal (zcq_value_size (account), 3);

    char owner[16];
    assert_string_equal (zcq_value_get_str (account, "owner", owner, sizeof owner, "?"), "ann");
    assert_int_equal (zcq_value_get_int (account, "balance", -1), 42);
    const zcq_value_t *tags = zcq_value_get (account, "tags");
    assert_int_equal (zcq_value_type (tags), ZCQ_TYPE_ARRAY);
    assert_true (zcq_value_streq (zcq_value_at (tags, 1), "new"));

    zcq_doc_destroy (&doc);
    assert_null (doc);
    zcq_doc_destroy (&doc); //  safe twice
    zcq_writer_destroy (&writer);
    assert_null (writer);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Scalars

static void
test_codec_nil_and_bool (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    bool flag;

    zcq_writer_nil (writer);
    const zcq_value_t *value = s_decode (doc, writer);
    assert_int_equal (zcq_value_type (value), ZCQ_TYPE_NIL);
    assert_false (zcq_value_bool (value, &flag));
    assert_int_equal (zcq_writer_size (writer), 1);

    zcq_writer_reset (writer);
    zcq_writer_bool (writer, true);
    value = s_decode (doc, writer);
    assert_int_equal (zcq_value_type (value), ZCQ_TYPE_BOOL);
    flag = false;
    assert_true (zcq_value_bool (value, &flag));
    assert_true (flag);

    zcq_writer_reset (writer);
    zcq_writer_bool (writer, false);
    value = s_decode (doc, writer);
    flag = true;
    assert_true (zcq_value_bool (value, &flag));
    assert_false (flag);
    int64_t number;
    assert_false (zcq_value_int (value, &number));

    //  A NULL value reads as nil and as nothing else
    assert_int_equal (zcq_value_type (NULL), ZCQ_TYPE_NIL);
    assert_false (zcq_value_bool (NULL, &flag));
    assert_false (zcq_value_int (NULL, &number));
    assert_int_equal (zcq_value_size (NULL), 0);

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_signed_boundaries (void **state)
{
    //  Each value with the size of its shortest MessagePack form
    const struct {
        int64_t value;
        size_t size;
    } cases[] = {
        { 0, 1 },
        { 1, 1 },
        { 127, 1 },
        { 128, 2 },
        { 255, 2 },
        { 256, 3 },
        { 65535, 3 },
        { 65536, 5 },
        { UINT32_MAX, 5 },
        { (int64_t) UINT32_MAX + 1, 9 },
        { INT64_MAX, 9 },
        { -1, 1 },
        { -32, 1 },
        { -33, 2 },
        { -128, 2 },
        { -129, 3 },
        { -32768, 3 },
        { -32769, 5 },
        { INT32_MIN, 5 },
        { (int64_t) INT32_MIN - 1, 9 },
        { INT64_MIN + 1, 9 },
        { INT64_MIN, 9 },
    };
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        zcq_writer_reset (writer);
        zcq_writer_int (writer, cases[index].value);
        assert_int_equal (zcq_writer_size (writer), cases[index].size);
        const zcq_value_t *value = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (value), ZCQ_TYPE_INT);
        int64_t number = 0;
        assert_true (zcq_value_int (value, &number));
        assert_true (number == cases[index].value);
        uint64_t unsigned_number = 0;
        if (cases[index].value >= 0) {
            assert_true (zcq_value_uint (value, &unsigned_number));
            assert_true (unsigned_number == (uint64_t) cases[index].value);
        }
        else
            assert_false (zcq_value_uint (value, &unsigned_number));
        double real = 0;
        assert_true (zcq_value_float (value, &real));
        assert_true (real == (double) cases[index].value);
        const char *text;
        size_t len;
        assert_false (zcq_value_str (value, &text, &len));
    }
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_unsigned_boundaries (void **state)
{
    const struct {
        uint64_t value;
        size_t size;
        bool fits_int64;
    } cases[] = {
        { 0, 1, true },
        { 127, 1, true },
        { 128, 2, true },
        { UINT8_MAX, 2, true },
        { UINT16_MAX, 3, true },
        { UINT32_MAX, 5, true },
        { INT64_MAX, 9, true },
        { (uint64_t) INT64_MAX + 1, 9, false },
        { UINT64_MAX - 1, 9, false },
        { UINT64_MAX, 9, false },
    };
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        zcq_writer_reset (writer);
        zcq_writer_uint (writer, cases[index].value);
        assert_int_equal (zcq_writer_size (writer), cases[index].size);
        const zcq_value_t *value = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (value), ZCQ_TYPE_INT);
        uint64_t number = 0;
        assert_true (zcq_value_uint (value, &number));
        assert_true (number == cases[index].value);
        int64_t signed_number = -7;
        assert_int_equal (zcq_value_int (value, &signed_number), cases[index].fits_int64);
        if (cases[index].fits_int64)
            assert_true ((uint64_t) signed_number == cases[index].value);
        else
            assert_true (signed_number == -7); //  untouched on failure
    }
    //  get_int falls back for an integer above INT64_MAX
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "big");
    zcq_writer_uint (writer, UINT64_MAX);
    assert_int_equal (zcq_value_get_int (s_decode (doc, writer), "big", -5), -5);

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_floats (void **state)
{
    const double cases[] = { 0.0,     -0.0,    1.5,          -2.25,    1e300,    -1e-300,
                             DBL_MAX, DBL_MIN, DBL_TRUE_MIN, INFINITY, -INFINITY };
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        zcq_writer_reset (writer);
        zcq_writer_float (writer, cases[index]);
        assert_int_equal (zcq_writer_size (writer), 9);
        const zcq_value_t *value = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (value), ZCQ_TYPE_FLOAT);
        double real = 42;
        assert_true (zcq_value_float (value, &real));
        assert_memory_equal (&real, &cases[index], sizeof real); //  bit exact, -0.0 too
        int64_t number;
        assert_false (zcq_value_int (value, &number));
        uint64_t unsigned_number;
        assert_false (zcq_value_uint (value, &unsigned_number));
    }
    //  NaN survives as a NaN
    zcq_writer_reset (writer);
    zcq_writer_float (writer, NAN);
    double real = 0;
    assert_true (zcq_value_float (s_decode (doc, writer), &real));
    assert_true (isnan (real));

    //  float32 from other encoders reads as a float too
    const uint8_t float32[] = { 0xca, 0x3f, 0xc0, 0x00, 0x00 }; //  1.5f
    assert_int_equal (zcq_doc_decode (doc, float32, sizeof float32, NULL), ZCQ_OK);
    assert_int_equal (zcq_value_type (zcq_doc_root (doc)), ZCQ_TYPE_FLOAT);
    assert_true (zcq_value_float (zcq_doc_root (doc), &real));
    assert_true (real == 1.5);

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Strings and binaries

static void
test_codec_strings_and_binaries (void **state)
{
    //  Lengths at each header boundary, with the header byte expected
    const struct {
        size_t len;
        uint8_t str_tag;
        uint8_t bin_tag;
    } cases[] = {
        { 0, 0xa0, 0xc4 },     { 1, 0xa1, 0xc4 },     { 31, 0xbf, 0xc4 },
        { 32, 0xd9, 0xc4 },    { 255, 0xd9, 0xc4 },   { 256, 0xda, 0xc5 },
        { 65535, 0xda, 0xc5 }, { 65536, 0xdb, 0xc6 }, { 100000, 0xdb, 0xc6 },
    };
    char *text = malloc (100000);
    assert_non_null (text);
    for (size_t index = 0; index < 100000; index++)
        text[index] = (char) ('a' + index % 26);
    text[7] = 0; //  an embedded NUL travels too
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        size_t len = cases[index].len;
        zcq_writer_reset (writer);
        zcq_writer_strn (writer, text, len);
        assert_int_equal (((const uint8_t *) zcq_writer_data (writer))[0], cases[index].str_tag);
        const zcq_value_t *value = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (value), ZCQ_TYPE_STR);
        const char *str = NULL;
        size_t str_len = 1;
        assert_true (zcq_value_str (value, &str, &str_len));
        assert_int_equal (str_len, len);
        if (len)
            assert_memory_equal (str, text, len);
        const void *data;
        size_t data_len;
        assert_false (zcq_value_bin (value, &data, &data_len));

        zcq_writer_reset (writer);
        zcq_writer_bin (writer, text, len);
        assert_int_equal (((const uint8_t *) zcq_writer_data (writer))[0], cases[index].bin_tag);
        value = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (value), ZCQ_TYPE_BIN);
        data = NULL;
        data_len = 1;
        assert_true (zcq_value_bin (value, &data, &data_len));
        assert_int_equal (data_len, len);
        if (len)
            assert_memory_equal (data, text, len);
        assert_false (zcq_value_str (value, &str, &str_len));
        assert_false (zcq_value_streq (value, ""));
    }
    free (text);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_streq (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    zcq_writer_array (writer, 4);
    zcq_writer_str (writer, "abc");
    zcq_writer_str (writer, "");
    zcq_writer_strn (writer, "ab\0c", 4);
    zcq_writer_int (writer, 5);
    const zcq_value_t *root = s_decode (doc, writer);
    assert_true (zcq_value_streq (zcq_value_at (root, 0), "abc"));
    assert_false (zcq_value_streq (zcq_value_at (root, 0), "ab"));
    assert_false (zcq_value_streq (zcq_value_at (root, 0), "abcd"));
    assert_false (zcq_value_streq (zcq_value_at (root, 0), "ABC"));
    assert_true (zcq_value_streq (zcq_value_at (root, 1), ""));
    assert_false (zcq_value_streq (zcq_value_at (root, 1), "a"));
    assert_false (zcq_value_streq (zcq_value_at (root, 2), "ab")); //  4 bytes, not 2
    assert_false (zcq_value_streq (zcq_value_at (root, 3), "5"));
    assert_false (zcq_value_streq (NULL, ""));
    assert_false (zcq_value_streq (root, ""));
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Containers

static void
test_codec_arrays_and_maps (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();

    //  Array sizes across the fixarray/array16/array32 headers
    const size_t sizes[] = { 0, 1, 15, 16, 65535, 65536, 70000 };
    const uint8_t tags[] = { 0x90, 0x91, 0x9f, 0xdc, 0xdc, 0xdd, 0xdd };
    for (size_t index = 0; index < sizeof sizes / sizeof sizes[0]; index++) {
        zcq_writer_reset (writer);
        zcq_writer_array (writer, sizes[index]);
        for (size_t element = 0; element < sizes[index]; element++)
            zcq_writer_int (writer, (int64_t) (element % 100));
        assert_int_equal (((const uint8_t *) zcq_writer_data (writer))[0], tags[index]);
        const zcq_value_t *array = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (array), ZCQ_TYPE_ARRAY);
        assert_int_equal (zcq_value_size (array), sizes[index]);
        if (sizes[index]) {
            int64_t last = -1;
            assert_true (zcq_value_int (zcq_value_at (array, sizes[index] - 1), &last));
            assert_int_equal (last, (sizes[index] - 1) % 100);
        }
        assert_null (zcq_value_at (array, sizes[index]));
        assert_null (zcq_value_key_at (array, 0));
        assert_null (zcq_value_get (array, "0"));
    }

    //  Map sizes across the fixmap/map16/map32 headers
    const size_t map_sizes[] = { 0, 15, 16, 65536 };
    const uint8_t map_tags[] = { 0x80, 0x8f, 0xde, 0xdf };
    for (size_t index = 0; index < sizeof map_sizes / sizeof map_sizes[0]; index++) {
        zcq_writer_reset (writer);
        zcq_writer_map (writer, map_sizes[index]);
        for (size_t entry = 0; entry < map_sizes[index]; entry++) {
            char key[24];
            snprintf (key, sizeof key, "k%zu", entry);
            zcq_writer_str (writer, key);
            zcq_writer_uint (writer, entry);
        }
        assert_int_equal (((const uint8_t *) zcq_writer_data (writer))[0], map_tags[index]);
        const zcq_value_t *map = s_decode (doc, writer);
        assert_int_equal (zcq_value_type (map), ZCQ_TYPE_MAP);
        assert_int_equal (zcq_value_size (map), map_sizes[index]);
        if (map_sizes[index]) {
            size_t last = map_sizes[index] - 1;
            char key[24];
            snprintf (key, sizeof key, "k%zu", last);
            assert_true (zcq_value_streq (zcq_value_key_at (map, last), key));
            assert_int_equal (zcq_value_get_int (map, key, -1), last);
            uint64_t first = 99;
            assert_true (zcq_value_uint (zcq_value_val_at (map, 0), &first));
            assert_int_equal (first, 0);
        }
        assert_null (zcq_value_key_at (map, map_sizes[index]));
        assert_null (zcq_value_val_at (map, map_sizes[index]));
        assert_null (zcq_value_at (map, 0));
        assert_null (zcq_value_get (map, "absent"));
    }

    //  Nested: a map of arrays of maps
    zcq_writer_reset (writer);
    s_write_everything (writer);
    const zcq_value_t *root = s_decode (doc, writer);
    assert_int_equal (zcq_value_size (root), 10);
    const zcq_value_t *list = zcq_value_get (root, "list");
    assert_int_equal (zcq_value_size (list), 3);
    assert_int_equal (zcq_value_type (zcq_value_at (list, 2)), ZCQ_TYPE_ARRAY);
    assert_int_equal (zcq_value_size (zcq_value_at (list, 2)), 0);
    const zcq_value_t *deep = zcq_value_get (zcq_value_get (root, "inner"), "deep");
    assert_int_equal (zcq_value_type (zcq_value_at (deep, 0)), ZCQ_TYPE_MAP);
    assert_int_equal (zcq_value_type (zcq_value_get (root, "nil")), ZCQ_TYPE_NIL);
    assert_non_null (zcq_value_get (root, "nil")); //  present, and nil
    int64_t min = 0;
    assert_true (zcq_value_int (zcq_value_get (root, "min"), &min));
    assert_true (min == INT64_MIN);
    uint64_t max = 0;
    assert_true (zcq_value_uint (zcq_value_get (root, "max"), &max));
    assert_true (max == UINT64_MAX);
    assert_int_equal (zcq_value_type (zcq_value_get (root, "ext")), ZCQ_TYPE_EXT);

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_open_close_patch_counts (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();

    //  A map whose entries are counted while written, holding an open array
    size_t map_mark = zcq_writer_map_open (writer);
    assert_int_equal (map_mark, 0);
    size_t entries = 0;
    for (int field = 0; field < 20; field++) {
        char key[8];
        snprintf (key, sizeof key, "f%d", field);
        zcq_writer_str (writer, key);
        zcq_writer_int (writer, field * 10);
        entries++;
    }
    zcq_writer_str (writer, "items");
    size_t array_mark = zcq_writer_array_open (writer);
    for (int item = 0; item < 3; item++)
        zcq_writer_str (writer, "x");
    zcq_writer_array_close (writer, array_mark, 3);
    entries++;
    zcq_writer_str (writer, "empty");
    size_t empty_mark = zcq_writer_map_open (writer);
    zcq_writer_map_close (writer, empty_mark, 0);
    entries++;
    zcq_writer_map_close (writer, map_mark, entries);

    const uint8_t *bytes = zcq_writer_data (writer);
    assert_int_equal (bytes[0], 0xdf);
    assert_int_equal (bytes[4], entries);
    const zcq_value_t *root = s_decode (doc, writer);
    assert_int_equal (zcq_value_size (root), 22);
    assert_int_equal (zcq_value_get_int (root, "f19", -1), 190);
    assert_int_equal (zcq_value_size (zcq_value_get (root, "items")), 3);
    assert_int_equal (zcq_value_type (zcq_value_get (root, "empty")), ZCQ_TYPE_MAP);
    assert_int_equal (zcq_value_size (zcq_value_get (root, "empty")), 0);

    //  A mark after other values: only that header is patched
    zcq_writer_reset (writer);
    zcq_writer_array (writer, 2);
    zcq_writer_str (writer, "head");
    size_t mark = zcq_writer_map_open (writer);
    assert_int_equal (mark, 6);
    zcq_writer_str (writer, "a");
    zcq_writer_nil (writer);
    zcq_writer_map_close (writer, mark, 1);
    root = s_decode (doc, writer);
    assert_int_equal (zcq_value_size (zcq_value_at (root, 1)), 1);
    assert_int_equal (zcq_value_type (zcq_value_get (zcq_value_at (root, 1), "a")), ZCQ_TYPE_NIL);

    //  A count that does not match the entries written makes bad bytes
    zcq_writer_reset (writer);
    mark = zcq_writer_map_open (writer);
    zcq_writer_str (writer, "a");
    zcq_writer_int (writer, 1);
    zcq_writer_map_close (writer, mark, 2);
    s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Accessors and copies

static void
test_codec_get_semantics (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    zcq_writer_map (writer, 6);
    zcq_writer_int (writer, 1); //  a non-string key is never matched
    zcq_writer_str (writer, "int key");
    zcq_writer_str (writer, "name"); //  (a repeated key is refused: test_codec_repeated_keys)
    zcq_writer_str (writer, "first");
    zcq_writer_bin (writer, "bin", 3); //  a binary key is not a string key
    zcq_writer_int (writer, 7);
    zcq_writer_str (writer, "count");
    zcq_writer_str (writer, "12"); //  a string is not an int
    zcq_writer_str (writer, "long");
    zcq_writer_str (writer, "0123456789");
    zcq_writer_str (writer, "");
    zcq_writer_int (writer, -3);
    const zcq_value_t *root = s_decode (doc, writer);

    assert_null (zcq_value_get (root, "1"));
    assert_null (zcq_value_get (root, "bin"));
    assert_true (zcq_value_streq (zcq_value_get (root, "name"), "first"));
    assert_null (zcq_value_get (root, "nam"));
    assert_null (zcq_value_get (root, "names"));
    assert_int_equal (zcq_value_get_int (root, "", 0), -3);
    assert_int_equal (zcq_value_get_int (root, "count", 99), 99);
    assert_int_equal (zcq_value_get_int (root, "absent", 99), 99);
    assert_int_equal (zcq_value_get_int (NULL, "count", 98), 98);
    assert_null (zcq_value_get (NULL, "name"));
    assert_null (zcq_value_get (zcq_value_get (root, "name"), "name")); //  not a map

    //  get_str copies into the buffer, truncating to fit
    char buffer[8];
    memset (buffer, 'z', sizeof buffer);
    const char *text = zcq_value_get_str (root, "long", buffer, sizeof buffer, "none");
    assert_ptr_equal (text, buffer);
    assert_string_equal (text, "0123456");
    assert_string_equal (zcq_value_get_str (root, "long", buffer, 1, "none"), "");
    assert_string_equal (zcq_value_get_str (root, "long", buffer, 0, "none"), "none");
    assert_string_equal (zcq_value_get_str (root, "absent", buffer, sizeof buffer, "none"), "none");
    assert_null (zcq_value_get_str (root, "", buffer, sizeof buffer, NULL)); //  not a string
    char exact[11];
    assert_string_equal (zcq_value_get_str (root, "long", exact, sizeof exact, NULL), "0123456789");

    //  The copy outlives the doc; borrowed values do not need to
    char kept[16];
    zcq_value_get_str (root, "name", kept, sizeof kept, NULL);
    zcq_writer_reset (writer);
    zcq_writer_str (writer, "other");
    s_decode (doc, writer);
    assert_string_equal (kept, "first");

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_writer_value_copies (void **state)
{
    zcq_writer_t *source = zcq_writer_new ();
    zcq_writer_t *copy = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    zcq_doc_t *other = zcq_doc_new ();
    s_write_everything (source);
    const zcq_value_t *root = s_decode (doc, source);

    //  The whole document, then a sub-value, written deep
    zcq_writer_value (copy, root);
    zcq_writer_value (copy, zcq_value_get (root, "inner"));
    zcq_writer_value (copy, NULL); //  NULL writes nil
    assert_true (zcq_writer_ok (copy));

    //  Overwrite the source bytes: the copy holds its own
    size_t copy_size = zcq_writer_size (copy);
    zcq_writer_reset (source);
    for (int index = 0; index < 64; index++)
        zcq_writer_str (source, "overwritten overwritten");

    //  The copy is three values: decode them one at a time via raw
    zcq_writer_t *whole = zcq_writer_new ();
    zcq_writer_array (whole, 3);
    zcq_writer_raw (whole, zcq_writer_data (copy), copy_size);
    const zcq_value_t *three = s_decode (other, whole);
    assert_int_equal (zcq_value_size (three), 3);
    const zcq_value_t *again = zcq_value_at (three, 0);
    assert_int_equal (zcq_value_size (again), 10);
    char name[64];
    assert_string_equal (zcq_value_get_str (again, "name", name, sizeof name, NULL),
                         "a string longer than thirty-one bytes, so str8");
    int64_t min;
    assert_true (zcq_value_int (zcq_value_get (again, "min"), &min));
    assert_true (min == INT64_MIN);
    const void *blob;
    size_t blob_len;
    assert_true (zcq_value_bin (zcq_value_get (again, "blob"), &blob, &blob_len));
    assert_int_equal (blob_len, 3);
    assert_memory_equal (blob, "\x00\x01\x02", 3);
    assert_int_equal (zcq_value_type (zcq_value_get (again, "ext")), ZCQ_TYPE_EXT);
    assert_int_equal (zcq_value_type (zcq_value_at (three, 1)), ZCQ_TYPE_MAP);
    assert_non_null (zcq_value_get (zcq_value_at (three, 1), "deep"));
    assert_int_equal (zcq_value_type (zcq_value_at (three, 2)), ZCQ_TYPE_NIL);

    //  Writing the decoded copy again gives the same bytes
    zcq_writer_t *twice = zcq_writer_new ();
    zcq_writer_value (twice, again);
    zcq_writer_t *once = zcq_writer_new ();
    s_write_everything (once);
    assert_int_equal (zcq_writer_size (twice), zcq_writer_size (once));
    assert_memory_equal (zcq_writer_data (twice), zcq_writer_data (once), zcq_writer_size (once));

    zcq_writer_destroy (&once);
    zcq_writer_destroy (&twice);
    zcq_writer_destroy (&whole);
    zcq_doc_destroy (&other);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&copy);
    zcq_writer_destroy (&source);
}

static void
test_codec_writer_reset_and_take (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    assert_int_equal (zcq_writer_size (writer), 0);
    assert_true (zcq_writer_ok (writer));
    zcq_writer_str (writer, "hello");
    assert_int_equal (zcq_writer_size (writer), 6);
    zcq_writer_reset (writer);
    assert_int_equal (zcq_writer_size (writer), 0);
    zcq_writer_int (writer, 1);
    assert_int_equal (zcq_writer_size (writer), 1);
    assert_memory_equal (zcq_writer_data (writer), "\x01", 1);
    zcq_writer_raw (writer, NULL, 0); //  nothing to append
    assert_int_equal (zcq_writer_size (writer), 1);

    //  take hands the bytes over and leaves the writer empty and usable
    size_t size = 0;
    void *bytes = zcq_writer_take (writer, &size);
    assert_non_null (bytes);
    assert_int_equal (size, 1);
    assert_memory_equal (bytes, "\x01", 1);
    assert_int_equal (zcq_writer_size (writer), 0);
    zcq_writer_str (writer, "again");
    assert_true (zcq_writer_ok (writer));
    assert_int_equal (zcq_writer_size (writer), 6);
    zcq_doc_t *doc = zcq_doc_new ();
    assert_true (zcq_value_streq (s_decode (doc, writer), "again"));
    assert_memory_equal (bytes, "\x01", 1); //  the taken bytes are untouched
    free (bytes);

    //  A write that cannot be encoded (a string over 4 GiB: refused before
    //  its bytes are read) marks the writer failed until reset
    zcq_writer_reset (writer);
    zcq_writer_strn (writer, "x", (size_t) UINT32_MAX + 1);
    assert_false (zcq_writer_ok (writer));
    zcq_writer_int (writer, 1);
    assert_false (zcq_writer_ok (writer));
    zcq_writer_reset (writer);
    assert_true (zcq_writer_ok (writer));
    zcq_writer_bin (writer, "x", (size_t) UINT32_MAX + 1);
    assert_false (zcq_writer_ok (writer));
    zcq_writer_reset (writer);
    assert_true (zcq_writer_ok (writer));
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Equality

static void
test_codec_value_equal (void **state)
{
    zcq_doc_t *left = zcq_doc_new ();
    zcq_doc_t *right = zcq_doc_new ();
    const struct {
        const char *a;
        size_t a_len;
        const char *b;
        size_t b_len;
        bool equal;
    } cases[] = {
        //  Same value, different encodings
        { "\x01", 1, "\xcc\x01", 2, true },
        { "\x01", 1, "\xcf\x00\x00\x00\x00\x00\x00\x00\x01", 9, true },
        { "\xff", 1, "\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 9, true },
        { "\xa2hi", 3, "\xd9\x02hi", 4, true },
        { "\x92\x01\x02", 3, "\xdc\x00\x02\x01\x02", 5, true },
        { "\x81\xa1k\xc0", 4, "\xdf\x00\x00\x00\x01\xa1k\xc0", 8, true },
        //  Different values
        { "\x01", 1, "\x02", 1, false },
        { "\x01", 1, "\xff", 1, false },
        { "\xc2", 1, "\xc3", 1, false },
        { "\xc0", 1, "\xc2", 1, false },
        { "\xa2hi", 3, "\xc4\x02hi", 4, false }, //  str vs bin
        { "\xa2hi", 3, "\xa3hi!", 4, false },
        { "\x01", 1, "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9, false }, //  1 vs 1.0
        { "\x92\x01\x02", 3, "\x92\x02\x01", 3, false },                 //  order counts
        { "\x92\x01\x02", 3, "\x93\x01\x02\x03", 4, false },
        { "\x82\xa1"
          "a\x01\xa1"
          "b\x02",
          7,
          "\x82\xa1"
          "b\x02\xa1"
          "a\x01",
          7, false },
        { "\x81\xa1k\x91\x01", 5, "\x81\xa1k\x91\x02", 5, false }, //  deep difference
        { "\x90", 1, "\x80", 1, false },
        { "\xd4\x01\x05", 3, "\xd4\x01\x05", 3, true },  //  ext
        { "\xd4\x01\x05", 3, "\xd4\x02\x05", 3, false }, //  ext type differs
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        assert_int_equal (zcq_doc_decode (left, cases[index].a, cases[index].a_len, NULL), ZCQ_OK);
        assert_int_equal (zcq_doc_decode (right, cases[index].b, cases[index].b_len, NULL), ZCQ_OK);
        bool equal = zcq_value_equal (zcq_doc_root (left), zcq_doc_root (right));
        if (equal != cases[index].equal)
            fail_msg ("case %zu: expected %s", index, cases[index].equal ? "equal" : "different");
        assert_int_equal (zcq_value_equal (zcq_doc_root (right), zcq_doc_root (left)), equal);
        assert_true (zcq_value_equal (zcq_doc_root (left), zcq_doc_root (left)));
    }
    assert_true (zcq_value_equal (NULL, NULL));
    assert_false (zcq_value_equal (zcq_doc_root (left), NULL));
    assert_false (zcq_value_equal (NULL, zcq_doc_root (left)));
    zcq_doc_destroy (&right);
    zcq_doc_destroy (&left);
}

//  --------------------------------------------------------------------------
//  Docs: reuse and copies

static void
test_codec_decode_copy_survives_source (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    s_write_everything (writer);
    size_t size = zcq_writer_size (writer);
    uint8_t *source = malloc (size);
    memcpy (source, zcq_writer_data (writer), size);

    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (zcq_doc_decode_copy (doc, source, size, NULL), ZCQ_OK);
    memset (source, 0xc1, size); //  overwrite with the reserved byte
    free (source);               //  and let ASan watch the old bytes

    const zcq_value_t *root = zcq_doc_root (doc);
    char name[64];
    assert_string_equal (zcq_value_get_str (root, "name", name, sizeof name, NULL),
                         "a string longer than thirty-one bytes, so str8");
    const void *blob;
    size_t blob_len;
    assert_true (zcq_value_bin (zcq_value_get (root, "blob"), &blob, &blob_len));
    assert_memory_equal (blob, "\x00\x01\x02", 3);

    //  A smaller then a larger document reuse and grow the doc's copy
    uint8_t small[] = { 0xa3, 'a', 'b', 'c' };
    assert_int_equal (zcq_doc_decode_copy (doc, small, sizeof small, NULL), ZCQ_OK);
    memset (small, 0, sizeof small);
    assert_true (zcq_value_streq (zcq_doc_root (doc), "abc"));
    zcq_writer_reset (writer);
    zcq_writer_array (writer, 1000);
    for (int index = 0; index < 1000; index++)
        zcq_writer_str (writer, "element");
    uint8_t *large = malloc (zcq_writer_size (writer));
    memcpy (large, zcq_writer_data (writer), zcq_writer_size (writer));
    assert_int_equal (zcq_doc_decode_copy (doc, large, zcq_writer_size (writer), NULL), ZCQ_OK);
    memset (large, 0, zcq_writer_size (writer));
    free (large);
    assert_true (zcq_value_streq (zcq_value_at (zcq_doc_root (doc), 999), "element"));

    //  Bad bytes are refused by a copying decode too
    assert_int_equal (zcq_doc_decode_copy (doc, "\x92\x01", 2, NULL), ZCQ_INVALID);
    assert_null (zcq_doc_root (doc));
    assert_int_equal (zcq_doc_decode_copy (doc, "", 0, NULL), ZCQ_INVALID);
    assert_null (zcq_doc_root (doc));

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

static void
test_codec_doc_reuse (void **state)
{
    zcq_doc_t *doc = zcq_doc_new ();
    assert_null (zcq_doc_root (doc)); //  nothing decoded yet
    assert_int_equal (zcq_doc_decode (doc, "\x05", 1, NULL), ZCQ_OK);
    assert_string_equal (zcq_doc_error (doc), "");
    int64_t number;
    assert_true (zcq_value_int (zcq_doc_root (doc), &number));
    assert_int_equal (number, 5);

    //  A failed decode drops the previous value and says why
    assert_int_equal (zcq_doc_decode (doc, "\xc1", 1, NULL), ZCQ_INVALID);
    assert_null (zcq_doc_root (doc));
    assert_non_null (strstr (zcq_doc_error (doc), "0xc1"));

    //  And the next good decode clears the error
    assert_int_equal (zcq_doc_decode (doc, "\xa1x", 2, NULL), ZCQ_OK);
    assert_string_equal (zcq_doc_error (doc), "");
    assert_true (zcq_value_streq (zcq_doc_root (doc), "x"));

    //  Many decodes on one doc (the zone is cleared each time)
    zcq_writer_t *writer = zcq_writer_new ();
    for (int round = 0; round < 2000; round++) {
        zcq_writer_reset (writer);
        zcq_writer_array (writer, 50);
        for (int index = 0; index < 50; index++)
            zcq_writer_int (writer, round + index);
        const zcq_value_t *root = s_decode (doc, writer);
        assert_true (zcq_value_int (zcq_value_at (root, 49), &number));
        assert_int_equal (number, round + 49);
    }
    zcq_writer_destroy (&writer);
    zcq_doc_destroy (&doc);
}

//  --------------------------------------------------------------------------
//  Malformed input

static void
test_codec_truncated_everywhere (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    s_write_everything (writer);
    //  Add the wider headers too: str16, bin16, array16, map16, ext8
    zcq_writer_t *wide = zcq_writer_new ();
    zcq_writer_array (wide, 6);
    zcq_writer_raw (wide, zcq_writer_data (writer), zcq_writer_size (writer));
    char text[300];
    memset (text, 't', sizeof text);
    zcq_writer_strn (wide, text, sizeof text);
    zcq_writer_bin (wide, text, sizeof text);
    zcq_writer_array (wide, 16);
    for (int index = 0; index < 16; index++)
        zcq_writer_float (wide, index);
    zcq_writer_map (wide, 16);
    for (int index = 0; index < 16; index++) {
        zcq_writer_int (wide, index);
        zcq_writer_int (wide, -index - 100);
    }
    zcq_writer_raw (wide, "\xc7\x03\x01xyz", 6); //  ext8
    const uint8_t *bytes = zcq_writer_data (wide);
    size_t size = zcq_writer_size (wide);
    s_expect_valid (bytes, size, NULL);
    //  Every proper prefix is rejected, from a fresh heap copy so ASan
    //  catches a read past its end
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *prefix = malloc (cut ? cut : 1);
        memcpy (prefix, bytes, cut);
        s_expect_invalid (prefix, cut, NULL);
        free (prefix);
    }
    zcq_writer_destroy (&wide);
    zcq_writer_destroy (&writer);
}

static void
test_codec_counts_beyond_the_bytes (void **state)
{
    //  Headers that declare more than the bytes that remain: each must be
    //  refused from its few bytes, before anything is allocated for them
    //  (an allocation of 0xFFFFFFFF objects would fail or abort under ASan)
    const struct {
        const char *bytes;
        size_t size;
    } cases[] = {
        { "\xdd\xff\xff\xff\xff", 5 }, //  array32 of 4G entries
        { "\xdf\xff\xff\xff\xff", 5 }, //  map32 of 4G entries
        { "\xdd\x7f\xff\xff\xff\xc0", 6 },
        { "\xdc\xff\xff", 3 },         //  array16
        { "\xde\xff\xff\x01\x01", 5 }, //  map16
        { "\xdb\xff\xff\xff\xff", 5 }, //  str32 of 4 GiB
        { "\xda\x00\x05"
          "abcd",
          7 }, //  str16 one byte short
        { "\xd9\x03"
          "ab",
          4 }, //  str8
        { "\xbf"
          "abc",
          4 },                             //  fixstr 31
        { "\xc6\xff\xff\xff\xff", 5 },     //  bin32
        { "\xc5\x01\x00", 3 },             //  bin16
        { "\xc4\x02\x00", 3 },             //  bin8
        { "\xc9\xff\xff\xff\xff\x01", 6 }, //  ext32
        { "\xc8\x00\x02\x01\x00", 5 },     //  ext16
        { "\xc7\x01\x01", 3 },             //  ext8 without its byte
        { "\x9f\x01\x02\x03", 4 },         //  fixarray 15 of 3
        { "\x8f\x01\x02", 3 },             //  fixmap 15
        { "\x81\x01", 2 },                 //  a key without a value
        { "\x91\xdd\xff\xff\xff\xff", 6 }, //  nested
        { "\x81\xa1k\xdf\xff\xff\xff\xff", 8 },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++)
        s_expect_invalid (cases[index].bytes, cases[index].size, NULL);

    //  The reason names the count
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check ("\xdd\xff\xff\xff\xff", 5, NULL, &reason), ZCQ_INVALID);
    assert_non_null (strstr (reason, "count"));

    //  At the boundary: an array32 of n nils with exactly n bytes is fine
    uint8_t exact[5 + 40];
    memcpy (exact, "\xdd\x00\x00\x00\x28", 5);
    memset (exact + 5, 0xc0, 40);
    s_expect_valid (exact, sizeof exact, NULL);
    exact[4] = 0x29;
    s_expect_invalid (exact, sizeof exact, NULL);
    //  and a map32 needs two bytes per entry (keys 0..19, values nil)
    uint8_t map[5 + 40];
    memcpy (map, "\xdf\x00\x00\x00\x14", 5);
    for (uint8_t entry = 0; entry < 20; entry++) {
        map[5 + 2 * entry] = entry;
        map[6 + 2 * entry] = 0xc0;
    }
    s_expect_valid (map, sizeof map, NULL);
    map[4] = 0x15;
    s_expect_invalid (map, sizeof map, NULL);
}

//  n arrays nested in one another, the innermost holding one nil.
static size_t
s_nested (uint8_t *bytes, int depth, uint8_t tag)
{
    size_t size = 0;
    for (int level = 0; level < depth; level++) {
        bytes[size++] = tag;
        if (tag == 0x81)
            bytes[size++] = 0x00; //  the key of the next map
    }
    bytes[size++] = 0xc0;
    return size;
}

static void
test_codec_depth_limit (void **state)
{
    uint8_t bytes[512];
    //  The default limit is 32: exactly at it is fine, one more is not
    s_expect_valid (bytes, s_nested (bytes, 32, 0x91), NULL);
    s_expect_invalid (bytes, s_nested (bytes, 33, 0x91), NULL);
    s_expect_valid (bytes, s_nested (bytes, 32, 0x81), NULL);
    s_expect_invalid (bytes, s_nested (bytes, 33, 0x81), NULL);
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check (bytes, s_nested (bytes, 100, 0x91), NULL, &reason),
                      ZCQ_INVALID);
    assert_non_null (strstr (reason, "deep"));
    //  An empty container counts as a level too
    size_t size = s_nested (bytes, 32, 0x91);
    bytes[size - 1] = 0x90;
    s_expect_invalid (bytes, size, NULL);
    bytes[size - 1] = 0xc0;

    //  A smaller limit
    zcq_limits_t limits = { .max_depth = 3 };
    s_expect_valid (bytes, s_nested (bytes, 3, 0x91), &limits);
    s_expect_invalid (bytes, s_nested (bytes, 4, 0x91), &limits);
    //  Depth is nesting, not count: many containers side by side are fine
    uint8_t wide[] = { 0x93, 0x91, 0x91, 0xc0, 0x91, 0x91, 0xc0, 0x91, 0x91, 0xc0 };
    s_expect_valid (wide, sizeof wide, &limits);
    limits.max_depth = 1;
    s_expect_valid ("\x92\x01\x02", 3, &limits);
    s_expect_invalid ("\x91\x91\x01", 3, &limits);
    s_expect_valid ("\x01", 1, &limits);
}

//  A caller may ask for a limit deeper than 32. Whatever the codec does
//  with it (honour it, or cap it), a document is never refused as "out of
//  memory", and zcq_msgpack_check gives the same answer as zcq_doc_decode.
static void
test_codec_depth_limit_above_32 (void **state)
{
    uint8_t bytes[512];
    zcq_limits_t limits = { .max_depth = 64 };
    for (int depth = 30; depth <= 65; depth++) {
        size_t size = s_nested (bytes, depth, 0x91);
        zcq_err_t checked = zcq_msgpack_check (bytes, size, &limits, NULL);
        zcq_doc_t *doc = zcq_doc_new ();
        zcq_err_t rc = zcq_doc_decode (doc, bytes, size, &limits);
        char error[160];
        snprintf (error, sizeof error, "%s", zcq_doc_error (doc));
        zcq_doc_destroy (&doc);
        if (rc != checked || (rc != ZCQ_OK && rc != ZCQ_INVALID))
            fail_msg ("depth %d under max_depth 64: check gave %s, decode gave %s (%s)", depth,
                      zcq_strerror (checked), zcq_strerror (rc), error);
        if (depth <= 32)
            assert_int_equal (rc, ZCQ_OK);
    }
    s_expect_invalid (bytes, s_nested (bytes, 65, 0x91), &limits);
}

static void
test_codec_trailing_empty_reserved (void **state)
{
    //  Trailing bytes after one whole value
    s_expect_invalid ("\x01\x02", 2, NULL);
    s_expect_invalid ("\xc0\xc0", 2, NULL);
    s_expect_invalid ("\x91\x01\x01", 3, NULL);
    s_expect_invalid ("\xa1x\x00", 3, NULL);
    s_expect_invalid ("\x80\x80", 2, NULL);
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check ("\x01\x02", 2, NULL, &reason), ZCQ_INVALID);
    assert_non_null (strstr (reason, "trailing"));

    //  Empty input, and no input at all
    s_expect_invalid ("", 0, NULL);
    s_expect_invalid (NULL, 0, NULL);
    s_expect_invalid (NULL, 5, NULL);
    zcq_limits_t limits = { .max_bytes = 10 };
    s_expect_invalid ("", 0, &limits);

    //  The reserved byte 0xc1, alone or inside a container
    s_expect_invalid ("\xc1", 1, NULL);
    s_expect_invalid ("\x92\x01\xc1", 3, NULL);
    s_expect_invalid ("\x81\xc1\x01", 3, NULL);
    s_expect_invalid ("\x81\x01\xc1", 3, NULL);
    //  (as bin content it is just a byte; in a string it is not UTF-8)
    s_expect_valid ("\xc4\x01\xc1", 3, NULL);
    s_expect_invalid ("\xa1\xc1", 2, NULL);
}

static void
test_codec_wrong_types (void **state)
{
    //  Every accessor refuses a value of another type, leaving outputs alone
    const struct {
        const char *bytes;
        size_t size;
        zcq_type_t type;
    } cases[] = {
        { "\xc0", 1, ZCQ_TYPE_NIL },
        { "\xc3", 1, ZCQ_TYPE_BOOL },
        { "\x07", 1, ZCQ_TYPE_INT },
        { "\xcb\x40\x00\x00\x00\x00\x00\x00\x00", 9, ZCQ_TYPE_FLOAT },
        { "\xa1s", 2, ZCQ_TYPE_STR },
        { "\xc4\x01\x62", 3, ZCQ_TYPE_BIN },
        { "\x91\x01", 2, ZCQ_TYPE_ARRAY },
        { "\x81\xa1k\x01", 4, ZCQ_TYPE_MAP },
        { "\xd4\x01\x01", 3, ZCQ_TYPE_EXT },
    };
    zcq_doc_t *doc = zcq_doc_new ();
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        assert_int_equal (zcq_doc_decode (doc, cases[index].bytes, cases[index].size, NULL),
                          ZCQ_OK);
        const zcq_value_t *value = zcq_doc_root (doc);
        zcq_type_t type = cases[index].type;
        assert_int_equal (zcq_value_type (value), type);
        bool flag = true;
        int64_t number = 77;
        uint64_t unsigned_number = 77;
        double real = 77;
        const char *text = "unchanged";
        const void *data = "unchanged";
        size_t len = 77;
        assert_int_equal (zcq_value_bool (value, &flag), type == ZCQ_TYPE_BOOL);
        assert_int_equal (zcq_value_int (value, &number), type == ZCQ_TYPE_INT);
        assert_int_equal (zcq_value_uint (value, &unsigned_number), type == ZCQ_TYPE_INT);
        assert_int_equal (zcq_value_float (value, &real),
                          type == ZCQ_TYPE_INT || type == ZCQ_TYPE_FLOAT);
        assert_int_equal (zcq_value_str (value, &text, &len), type == ZCQ_TYPE_STR);
        if (type != ZCQ_TYPE_STR)
            assert_string_equal (text, "unchanged");
        assert_int_equal (zcq_value_bin (value, &data, &len), type == ZCQ_TYPE_BIN);
        assert_int_equal (zcq_value_size (value) > 0,
                          type == ZCQ_TYPE_ARRAY || type == ZCQ_TYPE_MAP);
        assert_int_equal (zcq_value_at (value, 0) != NULL, type == ZCQ_TYPE_ARRAY);
        assert_int_equal (zcq_value_key_at (value, 0) != NULL, type == ZCQ_TYPE_MAP);
        assert_int_equal (zcq_value_val_at (value, 0) != NULL, type == ZCQ_TYPE_MAP);
        assert_int_equal (zcq_value_get (value, "k") != NULL, type == ZCQ_TYPE_MAP);
        if (type != ZCQ_TYPE_BOOL && type != ZCQ_TYPE_INT && type != ZCQ_TYPE_FLOAT) {
            assert_true (flag);
            assert_int_equal (number, 77);
            assert_true (real == 77);
        }
    }
    zcq_doc_destroy (&doc);
}

static void
test_codec_max_bytes (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_writer_str (writer, "0123456789"); //  11 bytes
    size_t size = zcq_writer_size (writer);
    assert_int_equal (size, 11);
    zcq_limits_t limits = { .max_bytes = 11 };
    s_expect_valid (zcq_writer_data (writer), size, &limits);
    limits.max_bytes = 10;
    s_expect_invalid (zcq_writer_data (writer), size, &limits);
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check (zcq_writer_data (writer), size, &limits, &reason),
                      ZCQ_INVALID);
    assert_non_null (strstr (reason, "limit"));
    limits.max_bytes = 0; //  no limit
    s_expect_valid (zcq_writer_data (writer), size, &limits);

    //  A large document under a limit that fits it
    zcq_writer_reset (writer);
    char *big = calloc (1, 1 << 20);
    zcq_writer_bin (writer, big, 1 << 20);
    limits.max_bytes = (1 << 20) + 5;
    s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), &limits);
    limits.max_bytes = 1 << 20;
    s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), &limits);
    free (big);
    zcq_writer_destroy (&writer);
}

static void
test_codec_ext_types (void **state)
{
    const struct {
        const char *bytes;
        size_t size;
        size_t data_size;
    } cases[] = {
        { "\xd4\x01\xaa", 3, 1 },
        { "\xd5\x02\xaa\xbb", 4, 2 },
        { "\xd6\xff\x00\x00\x00\x01", 6, 4 }, //  timestamp32, type -1
        { "\xd7\x03"
          "12345678",
          10, 8 },
        { "\xd8\x04"
          "0123456789abcdef",
          18, 16 },
        { "\xc7\x00\x05", 3, 0 }, //  ext8, empty
        { "\xc7\x03\x05xyz", 6, 3 },
        { "\xc8\x00\x02\x06xy", 6, 2 },
        { "\xc9\x00\x00\x00\x01\x07z", 7, 1 },
    };
    zcq_doc_t *doc = zcq_doc_new ();
    zcq_doc_t *again = zcq_doc_new ();
    zcq_writer_t *writer = zcq_writer_new ();
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        s_expect_valid (cases[index].bytes, cases[index].size, NULL);
        assert_int_equal (zcq_doc_decode (doc, cases[index].bytes, cases[index].size, NULL),
                          ZCQ_OK);
        assert_int_equal (zcq_value_type (zcq_doc_root (doc)), ZCQ_TYPE_EXT);
        //  Written back, the ext keeps its type and data
        zcq_writer_reset (writer);
        zcq_writer_value (writer, zcq_doc_root (doc));
        const zcq_value_t *copy = s_decode (again, writer);
        assert_true (zcq_value_equal (copy, zcq_doc_root (doc)));
        //  Every truncation is refused
        for (size_t cut = 0; cut < cases[index].size; cut++)
            s_expect_invalid (cases[index].bytes, cut, NULL);
        //  As is a byte too many
        char longer[32];
        memcpy (longer, cases[index].bytes, cases[index].size);
        longer[cases[index].size] = 0;
        s_expect_invalid (longer, cases[index].size + 1, NULL);
    }
    //  An ext inside a map
    s_expect_valid ("\x81\xa1t\xd6\xff\x00\x00\x00\x01", 9, NULL);
    zcq_writer_destroy (&writer);
    zcq_doc_destroy (&again);
    zcq_doc_destroy (&doc);
}

//  --------------------------------------------------------------------------
//  UTF-8 and repeated keys (ZCQ/1 section 2)

//  A body {"id": "c1", "data": [<str>]} with text as the str, or with text
//  as a key of the top-level map.
static void
s_write_text_body (zcq_writer_t *writer, const char *text, size_t len, bool as_key)
{
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, "c1");
    if (as_key) {
        zcq_writer_strn (writer, text, len);
        zcq_writer_int (writer, 1);
    }
    else {
        zcq_writer_str (writer, "data");
        zcq_writer_array (writer, 1);
        zcq_writer_strn (writer, text, len);
    }
}

//  text in a string: alone, after ASCII of every length up to 24 (so that
//  the eight-byte ASCII path leads in), then followed by ASCII, and as a
//  key; valid or not, the doc says the same as the check.
static void
s_expect_text (const char *text, size_t len, bool valid)
{
    zcq_writer_t *writer = zcq_writer_new ();
    char padded[128];
    assert_true (len + 48 < sizeof padded);
    for (size_t prefix = 0; prefix <= 24; prefix++) {
        memset (padded, 'a', prefix);
        memcpy (padded + prefix, text, len);
        for (size_t suffix = 0; suffix <= 9; suffix += 9) {
            memset (padded + prefix + len, 'z', suffix);
            size_t size = prefix + len + suffix;
            assert_int_equal (zcq_utf8_prefix (padded, size), valid ? size : prefix);
            for (int as_key = 0; as_key < 2; as_key++) {
                s_write_text_body (writer, padded, size, as_key);
                if (valid)
                    s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
                else
                    s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
            }
        }
    }
    //  the same bytes as a binary are never checked
    zcq_writer_reset (writer);
    zcq_writer_bin (writer, text, len);
    s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
    zcq_writer_destroy (&writer);
}

static void
test_codec_utf8_valid (void **state)
{
    const struct {
        const char *text;
        size_t len;
    } cases[] = {
        { "", 0 },
        { "\x00", 1 },             //  U+0000 is a character like any other
        { "\x7f", 1 },             //  U+007F, last of one byte
        { "\xc2\x80", 2 },         //  U+0080, first of two bytes
        { "\xdf\xbf", 2 },         //  U+07FF
        { "\xe0\xa0\x80", 3 },     //  U+0800, first of three bytes
        { "\xed\x9f\xbf", 3 },     //  U+D7FF, before the surrogates
        { "\xee\x80\x80", 3 },     //  U+E000, after them
        { "\xef\xbf\xbf", 3 },     //  U+FFFF
        { "\xf0\x90\x80\x80", 4 }, //  U+10000, first of four bytes
        { "\xf4\x8f\xbf\xbf", 4 }, //  U+10FFFF, the last code point
        { "Zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80", 13 },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++)
        s_expect_text (cases[index].text, cases[index].len, true);
}

static void
test_codec_utf8_invalid (void **state)
{
    const struct {
        const char *text;
        size_t len;
    } cases[] = {
        //  continuation bytes without a lead
        { "\x80", 1 },
        { "\xbf", 1 },
        //  overlong forms
        { "\xc0\x80", 2 }, //  U+0000 in two bytes
        { "\xc1\xbf", 2 }, //  U+007F in two bytes
        { "\xe0\x80\x80", 3 },
        { "\xe0\x9f\xbf", 3 }, //  U+07FF in three bytes
        { "\xf0\x80\x80\x80", 4 },
        { "\xf0\x8f\xbf\xbf", 4 }, //  U+FFFF in four bytes
        //  surrogates
        { "\xed\xa0\x80", 3 }, //  U+D800
        { "\xed\xbf\xbf", 3 }, //  U+DFFF
        { "\xed\xa0\xbd\xed\xb8\x80", 6 },
        //  beyond U+10FFFF
        { "\xf4\x90\x80\x80", 4 }, //  U+110000
        { "\xf5\x80\x80\x80", 4 },
        { "\xf8\x88\x80\x80\x80", 5 },
        { "\xfe", 1 },
        { "\xff", 1 },
        //  cut short, at the end of the string
        { "\xc2", 1 },
        { "\xe0\xa0", 2 },
        { "\xe2\x82", 2 },
        { "\xf0\x90\x80", 3 },
        { "\xf4\x8f\xbf", 3 },
        //  a continuation byte missing in the middle
        { "\xc2\x41", 2 },
        { "\xe2\x28\xa1", 3 },
        { "\xe2\x82\x28", 3 },
        { "\xf0\x90\x28\x80", 4 },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++)
        s_expect_text (cases[index].text, cases[index].len, false);

    //  The reason, and where the doc says it is
    const char *reason = NULL;
    assert_int_equal (zcq_msgpack_check ("\xa1\xff", 2, NULL, &reason), ZCQ_INVALID);
    assert_string_equal (reason, "a string is not valid UTF-8");
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    zcq_writer_map (writer, 3);
    zcq_writer_str (writer, "id");
    zcq_writer_strn (writer, "c\xff", 2);
    zcq_writer_str (writer, "data");
    zcq_writer_nil (writer);
    zcq_writer_str (writer, "meta");
    zcq_writer_nil (writer);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL),
        ZCQ_INVALID);
    assert_string_equal (zcq_doc_error (doc), "'id' is not valid UTF-8 (byte 6)");

    zcq_writer_reset (writer);
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, "c1");
    zcq_writer_str (writer, "meta");
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "user");
    zcq_writer_array (writer, 2);
    zcq_writer_str (writer, "ann");
    zcq_writer_strn (writer, "b\xed\xa0\x80", 4);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL),
        ZCQ_INVALID);
    assert_non_null (strstr (zcq_doc_error (doc), "a string in 'meta' is not valid UTF-8"));

    zcq_writer_reset (writer);
    zcq_writer_map (writer, 1);
    zcq_writer_strn (writer, "k\xc0\x80", 3);
    zcq_writer_int (writer, 1);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL),
        ZCQ_INVALID);
    assert_non_null (strstr (zcq_doc_error (doc), "a key of the body's map is not valid UTF-8"));
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  Two maps, each {key: 1, <other>: 2}, as raw bytes after a fixmap header.
static void
s_expect_pair (const char *first, size_t first_len, const char *second, size_t second_len,
               bool repeated)
{
    uint8_t bytes[64];
    size_t size = 0;
    bytes[size++] = 0x82;
    memcpy (bytes + size, first, first_len);
    size += first_len;
    bytes[size++] = 0x01;
    memcpy (bytes + size, second, second_len);
    size += second_len;
    bytes[size++] = 0x02;
    if (repeated)
        s_expect_invalid (bytes, size, NULL);
    else
        s_expect_valid (bytes, size, NULL);
}

static void
test_codec_repeated_keys (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();

    //  At the top level
    zcq_writer_map (writer, 3);
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, "c1");
    zcq_writer_str (writer, "type");
    zcq_writer_str (writer, "open");
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, "c2");
    s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL),
        ZCQ_INVALID);
    assert_string_equal (zcq_doc_error (doc), "the body's map repeats the key 'id'");
    const char *reason = NULL;
    zcq_msgpack_check (zcq_writer_data (writer), zcq_writer_size (writer), NULL, &reason);
    assert_string_equal (reason, "a map repeats a key");

    //  Nested: in data, and in a map in an array in meta
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, "c1");
    zcq_writer_str (writer, "data");
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "amount");
    zcq_writer_int (writer, 1);
    zcq_writer_str (writer, "amount");
    zcq_writer_int (writer, 2);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL),
        ZCQ_INVALID);
    assert_string_equal (zcq_doc_error (doc), "'data' repeats the key 'amount'");

    zcq_writer_reset (writer);
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "meta");
    zcq_writer_array (writer, 2);
    zcq_writer_map (writer, 0);
    zcq_writer_map (writer, 2);
    zcq_writer_int (writer, 7);
    zcq_writer_nil (writer);
    zcq_writer_int (writer, 7);
    zcq_writer_nil (writer);
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL),
        ZCQ_INVALID);
    assert_string_equal (zcq_doc_error (doc), "a map in 'meta' repeats a key");

    //  One key in several maps is no repeat
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "a");
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "a");
    zcq_writer_int (writer, 1);
    zcq_writer_str (writer, "b");
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "a");
    zcq_writer_int (writer, 2);
    s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);

    //  Keys are values: one value in two encodings is a repeat
    s_expect_pair ("\xa1"
                   "a",
                   2,
                   "\xd9\x01"
                   "a",
                   3, true);                            //  fixstr, str8
    s_expect_pair ("\xa0", 1, "\xda\x00\x00", 3, true); //  "" twice
    s_expect_pair ("\x05", 1, "\xcc\x05", 2, true);     //  5 as fixint, uint8
    s_expect_pair ("\x05", 1, "\xd3\x00\x00\x00\x00\x00\x00\x00\x05", 9, true); //  int64
    s_expect_pair ("\xff", 1, "\xd0\xff", 2, true);         //  -1 as negfixint, int8
    s_expect_pair ("\xd1\xff\x80", 3, "\xd0\x80", 2, true); //  -128 as int16, int8
    s_expect_pair ("\xca\x3f\x80\x00\x00", 5, "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9,
                   true); //  1.0 as float32, float64
    s_expect_pair ("\xcb\x80\x00\x00\x00\x00\x00\x00\x00", 9, "\xca\x00\x00\x00\x00", 5,
                   true);                                           //  -0.0, 0.0
    s_expect_pair ("\xc0", 1, "\xc0", 1, true);                     //  nil
    s_expect_pair ("\xc3", 1, "\xc3", 1, true);                     //  true
    s_expect_pair ("\xd4\x01\xaa", 3, "\xc7\x01\x01\xaa", 4, true); //  fixext1, ext8
    s_expect_pair ("\xc4\x01x", 3, "\xc5\x00\x01x", 4, true);       //  bin8, bin16
    s_expect_pair ("\x91\x01", 2, "\x91\x01", 2, true);             //  [1] as a key, twice
    //  and different values are not
    s_expect_pair ("\xa1"
                   "1",
                   2, "\x01", 1, false); //  "1", 1
    s_expect_pair ("\xa1"
                   "x",
                   2, "\xc4\x01x", 3, false);                                    //  "x", bin "x"
    s_expect_pair ("\xc0", 1, "\xc2", 1, false);                                 //  nil, false
    s_expect_pair ("\xc2", 1, "\xc3", 1, false);                                 //  false, true
    s_expect_pair ("\x01", 1, "\xca\x3f\x80\x00\x00", 5, false);                 //  1, 1.0
    s_expect_pair ("\x7f", 1, "\xd0\x80", 2, false);                             //  127, -128
    s_expect_pair ("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, "\xff", 1, false); //  2^64-1, -1
    s_expect_pair ("\xd4\x01\xaa", 3, "\xd4\x02\xaa", 3, false); //  ext types differ
    s_expect_pair ("\xa2"
                   "ab",
                   3,
                   "\xa2"
                   "ba",
                   3, false);

    //  A map just past the pairwise size, and large maps: 10,000 keys
    //  without a repeat, then with one (first and last, two in the middle)
    static const size_t counts[] = { 17, 10000 };
    for (size_t size = 0; size < sizeof counts / sizeof counts[0]; size++) {
        size_t count = counts[size];
        for (int repeat = 0; repeat < 3; repeat++) {
            zcq_writer_reset (writer);
            zcq_writer_map (writer, count);
            for (size_t entry = 0; entry < count; entry++) {
                char key[32];
                size_t name = entry;
                if (repeat == 1 && entry == count - 1)
                    name = 0;
                if (repeat == 2 && entry == count / 2)
                    name = count / 2 - 1;
                snprintf (key, sizeof key, "field-%zu", name);
                zcq_writer_str (writer, key);
                zcq_writer_uint (writer, entry);
            }
            zcq_limits_t limits = { .max_bytes = 1 << 20 };
            if (repeat == 0) {
                s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), &limits);
                assert_int_equal (zcq_doc_decode (doc, zcq_writer_data (writer),
                                                  zcq_writer_size (writer), &limits),
                                  ZCQ_OK);
                assert_int_equal (zcq_value_size (zcq_doc_root (doc)), count);
            }
            else {
                s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), &limits);
                zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), &limits);
                assert_non_null (strstr (zcq_doc_error (doc), "repeats the key 'field-"));
            }
        }
    }
    //  10,000 integer keys -5000..4999 in data; with a repeat, the last is 0
    for (int repeat = 0; repeat < 2; repeat++) {
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 1);
        zcq_writer_str (writer, "data");
        zcq_writer_map (writer, 10000);
        for (int64_t entry = 0; entry < 10000; entry++) {
            zcq_writer_int (writer, repeat && entry == 9999 ? 0 : entry - 5000);
            zcq_writer_nil (writer);
        }
        if (repeat)
            s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
        else
            s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
    }
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  Keys made to meet in the hash table that codec.c finds repeats of large
//  maps with (slot = top bits of key * 0x9e3779b97f4a7c15): the check
//  stays fast (it sorts instead) and still finds a repeat.
//  Bytes a node stored itself are read whatever their text: nodes of
//  earlier versions stored strings that are not UTF-8 and repeated keys.
static void
test_codec_stored_bytes_any_text (void **state)
{
    //  {"owner": "\xff", "a": 1, "a": 2}
    const uint8_t bytes[]
        = { 0x83, 0xa5, 'o', 'w', 'n', 'e', 'r', 0xa1, 0xff, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02 };
    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (zcq_doc_decode (doc, bytes, sizeof bytes, NULL), ZCQ_INVALID);
    zcq_limits_t limits = { .max_bytes = 1024 };
    assert_int_equal (zcq_doc_decode (doc, bytes, sizeof bytes, &limits), ZCQ_INVALID);
    zcq_limits_t stored = { .any_text = true };
    assert_int_equal (zcq_doc_decode (doc, bytes, sizeof bytes, &stored), ZCQ_OK);
    assert_int_equal (zcq_value_size (zcq_doc_root (doc)), 3);
    //  structure and bounds are still checked
    limits.any_text = true;
    assert_int_equal (zcq_doc_decode (doc, bytes, sizeof bytes - 1, &limits), ZCQ_INVALID);
    limits.max_bytes = 8;
    assert_int_equal (zcq_doc_decode (doc, bytes, sizeof bytes, &limits), ZCQ_INVALID);
    zcq_doc_destroy (&doc);
}

static void
test_codec_repeated_keys_colliding (void **state)
{
    //  the inverse of the multiplier modulo 2^64 (Newton's iteration)
    uint64_t multiplier = 0x9e3779b97f4a7c15ULL, inverse = multiplier;
    for (int round = 0; round < 6; round++)
        inverse *= 2 - multiplier * inverse;
    assert_true (multiplier * inverse == 1);
    zcq_writer_t *writer = zcq_writer_new ();
    for (int repeat = 0; repeat < 2; repeat++) {
        //  key number j times the inverse: every key's product is j, so
        //  every key wants slot 0
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 20000);
        for (uint64_t number = 0; number < 20000; number++) {
            uint64_t key = (repeat && number == 19999 ? 7 : number) * inverse;
            zcq_writer_uint (writer, key);
            zcq_writer_nil (writer);
        }
        if (repeat)
            s_expect_invalid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
        else
            s_expect_valid (zcq_writer_data (writer), zcq_writer_size (writer), NULL);
    }
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Fuzz: mutations of valid documents never crash; decode and check agree;
//  a decoded value written back decodes to the same bytes again.

static void
test_codec_fuzz (void **state)
{
    //  Seeds: the everything document, plus wide headers
    zcq_writer_t *seed_writer = zcq_writer_new ();
    zcq_writer_array (seed_writer, 5);
    s_write_everything (seed_writer);
    zcq_writer_strn (seed_writer, "0123456789012345678901234567890123456789", 40);
    zcq_writer_map (seed_writer, 2);
    zcq_writer_int (seed_writer, 70000);
    zcq_writer_float (seed_writer, -1.5);
    zcq_writer_uint (seed_writer, 1ULL << 40);
    zcq_writer_array (seed_writer, 16);
    for (int index = 0; index < 16; index++)
        zcq_writer_int (seed_writer, -index * 1000);
    zcq_writer_raw (seed_writer, "\xc7\x02\x01xy", 5);
    const uint8_t *original = zcq_writer_data (seed_writer);
    size_t original_size = zcq_writer_size (seed_writer);

    //  Interesting bytes to splice in: headers with big counts and lengths
    static const uint8_t headers[] = { 0xc1, 0xdd, 0xdf, 0xdc, 0xde, 0xdb, 0xda, 0xd9, 0xc6,
                                       0xc5, 0xc4, 0xc9, 0xc8, 0xc7, 0xd8, 0x9f, 0x8f, 0xbf,
                                       0xff, 0x00, 0x7f, 0x80, 0x90, 0xa0, 0xca, 0xcb, 0xd3 };
    uint64_t seed = 0x5eed1234abcdULL;
    uint8_t buffer[1024];
    zcq_doc_t *doc = zcq_doc_new ();
    zcq_doc_t *second = zcq_doc_new ();
    zcq_writer_t *first_pass = zcq_writer_new ();
    zcq_writer_t *second_pass = zcq_writer_new ();
    zcq_limits_t limits = { .max_bytes = 0, .max_depth = 8 };
    size_t valid = 0, invalid = 0;
    for (int round = 0; round < 20000; round++) {
        size_t size = original_size;
        memcpy (buffer, original, size);
        int mutations = 1 + (int) (zcq_test_next (&seed) % 4);
        for (int mutation = 0; mutation < mutations; mutation++) {
            uint64_t dice = zcq_test_next (&seed);
            size_t at = (size_t) (zcq_test_next (&seed) % (size ? size : 1));
            switch (dice % 6) {
                case 0: //  flip a bit
                    if (size)
                        buffer[at] ^= (uint8_t) (1u << (dice >> 8) % 8);
                    break;
                case 1: //  random byte
                    if (size)
                        buffer[at] = (uint8_t) (dice >> 16);
                    break;
                case 2: //  a header byte
                    if (size)
                        buffer[at] = headers[(dice >> 16) % sizeof headers];
                    break;
                case 3: //  truncate
                    size = at;
                    break;
                case 4: //  insert a byte
                    if (size < sizeof buffer) {
                        memmove (buffer + at + 1, buffer + at, size - at);
                        buffer[at] = headers[(dice >> 16) % sizeof headers];
                        size++;
                    }
                    break;
                default: //  0xff run: a huge length
                    for (size_t index = at; index < size && index < at + 4; index++)
                        buffer[index] = 0xff;
                    break;
            }
        }
        //  A heap copy of exactly size bytes, so overreads are caught
        uint8_t *input = malloc (size ? size : 1);
        memcpy (input, buffer, size);
        const zcq_limits_t *use = round % 2 ? &limits : NULL;
        zcq_err_t rc = zcq_doc_decode (doc, input, size, use);
        zcq_err_t checked = zcq_msgpack_check (input, size, use, NULL);
        if (rc != ZCQ_OK && rc != ZCQ_INVALID)
            fail_msg ("round %d: decode gave %s", round, zcq_strerror (rc));
        assert_int_equal (rc, checked);
        if (rc == ZCQ_OK) {
            valid++;
            zcq_writer_reset (first_pass);
            zcq_writer_value (first_pass, zcq_doc_root (doc));
            assert_true (zcq_writer_ok (first_pass));
            assert_int_equal (zcq_doc_decode (second, zcq_writer_data (first_pass),
                                              zcq_writer_size (first_pass), NULL),
                              ZCQ_OK);
            zcq_writer_reset (second_pass);
            zcq_writer_value (second_pass, zcq_doc_root (second));
            assert_int_equal (zcq_writer_size (second_pass), zcq_writer_size (first_pass));
            assert_memory_equal (zcq_writer_data (second_pass), zcq_writer_data (first_pass),
                                 zcq_writer_size (first_pass));
        }
        else {
            invalid++;
            assert_null (zcq_doc_root (doc));
        }
        free (input);
    }
    //  The loop exercised both outcomes
    assert_true (valid > 100);
    assert_true (invalid > 100);
    zcq_writer_destroy (&second_pass);
    zcq_writer_destroy (&first_pass);
    zcq_doc_destroy (&second);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&seed_writer);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_codec_walkthrough),
        cmocka_unit_test (test_codec_nil_and_bool),
        cmocka_unit_test (test_codec_signed_boundaries),
        cmocka_unit_test (test_codec_unsigned_boundaries),
        cmocka_unit_test (test_codec_floats),
        cmocka_unit_test (test_codec_strings_and_binaries),
        cmocka_unit_test (test_codec_streq),
        cmocka_unit_test (test_codec_arrays_and_maps),
        cmocka_unit_test (test_codec_open_close_patch_counts),
        cmocka_unit_test (test_codec_get_semantics),
        cmocka_unit_test (test_codec_writer_value_copies),
        cmocka_unit_test (test_codec_writer_reset_and_take),
        cmocka_unit_test (test_codec_value_equal),
        cmocka_unit_test (test_codec_decode_copy_survives_source),
        cmocka_unit_test (test_codec_doc_reuse),
        cmocka_unit_test (test_codec_truncated_everywhere),
        cmocka_unit_test (test_codec_counts_beyond_the_bytes),
        cmocka_unit_test (test_codec_depth_limit),
        cmocka_unit_test (test_codec_depth_limit_above_32),
        cmocka_unit_test (test_codec_trailing_empty_reserved),
        cmocka_unit_test (test_codec_wrong_types),
        cmocka_unit_test (test_codec_max_bytes),
        cmocka_unit_test (test_codec_ext_types),
        cmocka_unit_test (test_codec_utf8_valid),
        cmocka_unit_test (test_codec_utf8_invalid),
        cmocka_unit_test (test_codec_repeated_keys),
        cmocka_unit_test (test_codec_repeated_keys_colliding),
        cmocka_unit_test (test_codec_stored_bytes_any_text),
        cmocka_unit_test (test_codec_fuzz),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
