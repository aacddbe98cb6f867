/*  test_viewtable.c: zcq_viewtable_t, the in-memory table behind views.

    Rows by key (put, get, delete), key order in bytes, pages at their
    edges, secondary indexes (counts and pages by value, kept right as
    rows change), a long random run checked against a plain reference
    model, and the memory the table reports; rows held as records that
    give back the bytes put in, their encoding kept until they change,
    and rows taken in bulk, ordered at the first read that needs it.
*/
#include "testutil.h"
#include <malloc.h>
#if defined(__SANITIZE_ADDRESS__)
//  From ASan's allocator interface (its header is not always installed)
size_t __sanitizer_get_current_allocated_bytes (void);
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Helpers

#define S_KEY_MAX 32

typedef struct {
    char bytes[S_KEY_MAX];
    size_t len;
} s_key_t;

//  What a row callback saw: keys in order, and the last row's bytes.
typedef struct {
    s_key_t *keys;
    size_t count;
    size_t capacity;
    size_t stop_after; //  return 1 after this many (0 = never)
    char last_row[256];
    size_t last_row_len;
} s_page_t;

static int
s_collect (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    s_page_t *page = arg;
    if (page->count == page->capacity) {
        page->capacity = page->capacity ? page->capacity * 2 : 64;
        page->keys = realloc (page->keys, page->capacity * sizeof (s_key_t));
        assert_non_null (page->keys);
    }
    assert_true (key_len <= S_KEY_MAX);
    memcpy (page->keys[page->count].bytes, key, key_len);
    page->keys[page->count].len = key_len;
    page->count++;
    assert_non_null (row);
    if (row_len <= sizeof page->last_row) {
        memcpy (page->last_row, row, row_len);
        page->last_row_len = row_len;
    }
    return page->stop_after && page->count >= page->stop_after;
}

static void
s_page_reset (s_page_t *page)
{
    page->count = 0;
    page->stop_after = 0;
    page->last_row_len = 0;
}

static void
s_page_free (s_page_t *page)
{
    free (page->keys);
    memset (page, 0, sizeof *page);
}

static bool
s_key_is (const s_key_t *key, const char *text)
{
    return key->len == strlen (text) && memcmp (key->bytes, text, key->len) == 0;
}

//  Byte order, shorter first on a common prefix: the table's key order.
static int
s_key_compare (const void *a, const void *b)
{
    const s_key_t *left = a, *right = b;
    size_t common = left->len < right->len ? left->len : right->len;
    int order = memcmp (left->bytes, right->bytes, common);
    if (order)
        return order;
    return left->len < right->len ? -1 : left->len > right->len;
}

//  A row {"status": status, "amount": amount}; status NULL = absent.
static void
s_write_row (zcq_writer_t *writer, const char *status, int64_t amount)
{
    zcq_writer_reset (writer);
    zcq_writer_map (writer, status ? 2 : 1);
    if (status) {
        zcq_writer_str (writer, "status");
        zcq_writer_str (writer, status);
    }
    zcq_writer_str (writer, "amount");
    zcq_writer_int (writer, amount);
}

static void
s_put (zcq_viewtable_t *table, zcq_writer_t *writer, const char *key, const char *status,
       int64_t amount)
{
    s_write_row (writer, status, amount);
    assert_int_equal (zcq_viewtable_put (table, key, strlen (key), zcq_writer_data (writer),
                                         zcq_writer_size (writer)),
                      ZCQ_OK);
}

//  Encode a string value the way index look-ups take it.
static const void *
s_str_value (zcq_writer_t *writer, const char *text, size_t *len)
{
    zcq_writer_reset (writer);
    zcq_writer_str (writer, text);
    *len = zcq_writer_size (writer);
    return zcq_writer_data (writer);
}

static size_t
s_count_status (const zcq_viewtable_t *table, const char *status)
{
    zcq_writer_t *writer = zcq_writer_new ();
    size_t len;
    const void *value = s_str_value (writer, status, &len);
    size_t count = zcq_viewtable_count_value (table, "status", value, len);
    zcq_writer_destroy (&writer);
    return count;
}

//  List the rows with status, after `after`, at most limit.
static size_t
s_list_status (const zcq_viewtable_t *table, const char *status, const char *after, size_t limit,
               s_page_t *page, bool *more)
{
    zcq_writer_t *writer = zcq_writer_new ();
    size_t len;
    const void *value = s_str_value (writer, status, &len);
    s_page_reset (page);
    size_t given = zcq_viewtable_list_value (table, "status", value, len, after,
                                             after ? strlen (after) : 0, limit, s_collect, page,
                                             more);
    zcq_writer_destroy (&writer);
    assert_int_equal (given, page->count);
    return given;
}

static size_t
s_list (const zcq_viewtable_t *table, const char *after, size_t limit, s_page_t *page, bool *more)
{
    s_page_reset (page);
    size_t given = zcq_viewtable_list (table, after, after ? strlen (after) : 0, limit, s_collect,
                                       page, more);
    assert_int_equal (given, page->count);
    return given;
}

static int64_t
s_amount (const void *row, size_t row_len)
{
    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (zcq_doc_decode (doc, row, row_len, NULL), ZCQ_OK);
    int64_t amount = zcq_value_get_int (zcq_doc_root (doc), "amount", -1);
    zcq_doc_destroy (&doc);
    return amount;
}

//  The amount of the row at key, or -2 when there is no row.
static int64_t
s_get_amount (const zcq_viewtable_t *table, const char *key, size_t key_len)
{
    size_t row_len = 0;
    const void *row = zcq_viewtable_get (table, key, key_len, &row_len);
    return row ? s_amount (row, row_len) : -2;
}

//  --------------------------------------------------------------------------
//  The walk-through: a table with one index, rows in, pages out.

static void
test_viewtable_walkthrough (void **state)
{
    const char *indexes[] = { "owner", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    assert_non_null (table);
    assert_true (zcq_viewtable_has_index (table, "owner"));

    //  Rows are encoded maps stored under a key
    zcq_writer_t *row = zcq_writer_new ();
    zcq_writer_map (row, 2);
    zcq_writer_str (row, "owner");
    zcq_writer_str (row, "ann");
    zcq_writer_str (row, "balance");
    zcq_writer_int (row, 10);
    assert_int_equal (
        zcq_viewtable_put (table, "acc-1", 5, zcq_writer_data (row), zcq_writer_size (row)),
        ZCQ_OK);
    assert_int_equal (
        zcq_viewtable_put (table, "acc-2", 5, zcq_writer_data (row), zcq_writer_size (row)),
        ZCQ_OK);
    assert_int_equal (zcq_viewtable_count (table), 2);

    size_t row_len = 0;
    const void *stored = zcq_viewtable_get (table, "acc-1", 5, &row_len);
    assert_non_null (stored);
    assert_int_equal (row_len, zcq_writer_size (row));
    assert_memory_equal (stored, zcq_writer_data (row), row_len);

    //  Count and page by the indexed value
    zcq_writer_t *value = zcq_writer_new ();
    zcq_writer_str (value, "ann");
    assert_int_equal (zcq_viewtable_count_value (table, "owner", zcq_writer_data (value),
                                                 zcq_writer_size (value)),
                      2);
    s_page_t page = { 0 };
    bool more = true;
    assert_int_equal (zcq_viewtable_list_value (table, "owner", zcq_writer_data (value),
                                                zcq_writer_size (value), NULL, 0, 1, s_collect,
                                                &page, &more),
                      1);
    assert_true (more);
    assert_true (s_key_is (&page.keys[0], "acc-1"));

    //  All rows in key order
    assert_int_equal (s_list (table, NULL, 10, &page, &more), 2);
    assert_false (more);
    assert_true (s_key_is (&page.keys[1], "acc-2"));

    assert_true (zcq_viewtable_delete (table, "acc-1", 5));
    assert_null (zcq_viewtable_get (table, "acc-1", 5, &row_len));
    assert_int_equal (zcq_viewtable_count (table), 1);

    s_page_free (&page);
    zcq_writer_destroy (&value);
    zcq_writer_destroy (&row);
    zcq_viewtable_destroy (&table);
    assert_null (table);
    zcq_viewtable_destroy (&table); //  safe twice
}

//  --------------------------------------------------------------------------
//  Rows by key

static void
test_viewtable_put_get_delete (void **state)
{
    zcq_viewtable_t *table = zcq_viewtable_new (NULL);
    assert_false (zcq_viewtable_has_index (table, "status"));
    zcq_writer_t *writer = zcq_writer_new ();
    size_t row_len = 99;
    assert_null (zcq_viewtable_get (table, "a", 1, &row_len));
    assert_false (zcq_viewtable_delete (table, "a", 1));
    assert_int_equal (zcq_viewtable_count (table), 0);

    s_put (table, writer, "a", "open", 1);
    const void *row = zcq_viewtable_get (table, "a", 1, &row_len);
    assert_int_equal (s_amount (row, row_len), 1);

    //  A put replaces, the count stays
    s_put (table, writer, "a", "open", 2);
    assert_int_equal (zcq_viewtable_count (table), 1);
    row = zcq_viewtable_get (table, "a", 1, &row_len);
    assert_int_equal (s_amount (row, row_len), 2);

    //  Rows are copied: the caller's buffer may change afterwards
    s_write_row (writer, "open", 3);
    assert_int_equal (
        zcq_viewtable_put (table, "b", 1, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    s_write_row (writer, "open", 4);
    row = zcq_viewtable_get (table, "b", 1, &row_len);
    assert_int_equal (s_amount (row, row_len), 3);

    //  Keys are bytes with a length: the empty key, an embedded NUL, and
    //  keys that prefix one another are all distinct
    s_write_row (writer, NULL, 10);
    assert_int_equal (
        zcq_viewtable_put (table, "", 0, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    s_write_row (writer, NULL, 11);
    assert_int_equal (
        zcq_viewtable_put (table, "a\0", 2, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    s_write_row (writer, NULL, 12);
    assert_int_equal (
        zcq_viewtable_put (table, "aa", 2, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    assert_int_equal (zcq_viewtable_count (table), 5);
    assert_int_equal (s_get_amount (table, "", 0), 10);
    assert_int_equal (s_get_amount (table, "a\0", 2), 11);
    assert_int_equal (s_get_amount (table, "aa", 2), 12);
    assert_int_equal (s_get_amount (table, "a", 1), 2);
    assert_null (zcq_viewtable_get (table, "a\0\0", 3, &row_len));

    //  A row need not be a map (it is just not indexed), nor non-empty
    assert_int_equal (zcq_viewtable_put (table, "raw", 3, "\x93\x01\x02\x03", 4), ZCQ_OK);
    assert_int_equal (zcq_viewtable_put (table, "none", 4, "", 0), ZCQ_OK);
    row = zcq_viewtable_get (table, "none", 4, &row_len);
    assert_non_null (row);
    assert_int_equal (row_len, 0);

    //  Delete: once true, then false; the others stay
    assert_true (zcq_viewtable_delete (table, "a\0", 2));
    assert_false (zcq_viewtable_delete (table, "a\0", 2));
    assert_null (zcq_viewtable_get (table, "a\0", 2, &row_len));
    assert_int_equal (s_get_amount (table, "a", 1), 2);
    assert_int_equal (s_get_amount (table, "aa", 2), 12);
    assert_int_equal (zcq_viewtable_count (table), 6);

    //  Keys and rows over 4 GiB are refused before they are read
    assert_int_equal (zcq_viewtable_put (table, "k", (size_t) UINT32_MAX + 1, "\x80", 1),
                      ZCQ_INVALID);
    assert_int_equal (zcq_viewtable_put (table, "k", 1, "\x80", (size_t) UINT32_MAX + 1),
                      ZCQ_INVALID);
    assert_null (zcq_viewtable_get (table, "k", 1, &row_len));

    //  A deleted key can come back
    s_put (table, writer, "b", NULL, 5);
    assert_true (zcq_viewtable_delete (table, "b", 1));
    s_put (table, writer, "b", NULL, 6);
    assert_int_equal (s_get_amount (table, "b", 1), 6);

    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

static void
test_viewtable_key_order (void **state)
{
    static const s_key_t keys[] = {
        { "b", 1 },   { "", 0 },     { "a\0", 2 },   { "\xff", 1 }, { "ab", 2 },
        { "a", 1 },   { "\x80", 1 }, { "aa", 2 },    { "\x7f", 1 }, { "\xff\xff", 2 },
        { "abc", 3 }, { "A", 1 },    { "a\0\0", 3 }, { "10", 2 },   { "9", 1 },
        { "100", 3 }, { "\x00", 1 }, { "\x01", 1 },  { "ba", 2 },   { "a\xff", 2 },
    };
    size_t count = sizeof keys / sizeof keys[0];
    zcq_viewtable_t *table = zcq_viewtable_new (NULL);
    for (size_t index = 0; index < count; index++)
        assert_int_equal (zcq_viewtable_put (table, keys[index].bytes, keys[index].len, "\x80", 1),
                          ZCQ_OK);
    s_key_t sorted[sizeof keys / sizeof keys[0]];
    memcpy (sorted, keys, sizeof keys);
    qsort (sorted, count, sizeof sorted[0], s_key_compare);
    //  (spot-check the reference: "" first, "\xff\xff" last, "a" < "a\0")
    assert_int_equal (sorted[0].len, 0);
    assert_true (sorted[count - 1].len == 2 && sorted[count - 1].bytes[0] == '\xff');

    s_page_t page = { 0 };
    bool more = true;
    assert_int_equal (zcq_viewtable_list (table, NULL, 0, 100, s_collect, &page, &more), count);
    assert_false (more);
    for (size_t index = 0; index < count; index++) {
        assert_int_equal (page.keys[index].len, sorted[index].len);
        assert_memory_equal (page.keys[index].bytes, sorted[index].bytes, sorted[index].len);
    }
    //  From after each key, the page starts at the next one
    for (size_t index = 0; index < count; index++) {
        s_page_reset (&page);
        size_t given = zcq_viewtable_list (table, sorted[index].bytes, sorted[index].len, 1,
                                           s_collect, &page, &more);
        if (index + 1 < count) {
            assert_int_equal (given, 1);
            assert_int_equal (s_key_compare (&page.keys[0], &sorted[index + 1]), 0);
            assert_int_equal (more, index + 2 < count);
        }
        else {
            assert_int_equal (given, 0);
            assert_false (more);
        }
    }
    s_page_free (&page);
    zcq_viewtable_destroy (&table);
}

//  --------------------------------------------------------------------------
//  Pages at their edges

static void
test_viewtable_list_edges (void **state)
{
    zcq_viewtable_t *table = zcq_viewtable_new (NULL);
    zcq_writer_t *writer = zcq_writer_new ();
    s_page_t page = { 0 };
    bool more = true;

    //  An empty table: nothing, no more, the callback is never called
    assert_int_equal (s_list (table, NULL, 10, &page, &more), 0);
    assert_false (more);
    more = true;
    assert_int_equal (s_list (table, "x", 10, &page, &more), 0);
    assert_false (more);
    assert_int_equal (zcq_viewtable_list (table, NULL, 0, 10, s_collect, &page, NULL), 0);

    //  Ten rows k0..k9
    char key[8];
    for (int index = 9; index >= 0; index--) {
        snprintf (key, sizeof key, "k%d", index);
        s_put (table, writer, key, NULL, index);
    }
    //  Exactly one page
    assert_int_equal (s_list (table, NULL, 10, &page, &more), 10);
    assert_false (more);
    assert_true (s_key_is (&page.keys[9], "k9"));
    //  One row short of the whole
    assert_int_equal (s_list (table, NULL, 9, &page, &more), 9);
    assert_true (more);
    //  Pages of 4: 4, 4, then the last 2
    assert_int_equal (s_list (table, NULL, 4, &page, &more), 4);
    assert_true (more);
    assert_true (s_key_is (&page.keys[3], "k3"));
    assert_int_equal (s_list (table, "k3", 4, &page, &more), 4);
    assert_true (more);
    assert_true (s_key_is (&page.keys[0], "k4"));
    assert_int_equal (s_list (table, "k7", 4, &page, &more), 2);
    assert_false (more);
    assert_true (s_key_is (&page.keys[1], "k9"));
    //  A page that ends exactly on the last row
    assert_int_equal (s_list (table, "k5", 4, &page, &more), 4);
    assert_false (more);
    //  After the last key, and after anything beyond it
    assert_int_equal (s_list (table, "k9", 4, &page, &more), 0);
    assert_false (more);
    assert_int_equal (s_list (table, "z", 4, &page, &more), 0);
    assert_false (more);
    //  After something before the first key
    assert_int_equal (s_list (table, "a", 2, &page, &more), 2);
    assert_true (s_key_is (&page.keys[0], "k0"));
    assert_int_equal (s_list (table, "", 2, &page, &more), 2);
    assert_true (s_key_is (&page.keys[0], "k0"));

    //  After a key that no longer exists: carry on from the next one
    assert_true (zcq_viewtable_delete (table, "k5", 2));
    assert_int_equal (s_list (table, "k5", 3, &page, &more), 3);
    assert_true (s_key_is (&page.keys[0], "k6"));
    assert_true (more);
    //  and after a key between two rows ("k4a" sorts between k4 and k6)
    assert_int_equal (s_list (table, "k4a", 1, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "k6"));

    //  Limit 1, walked to the end, visits every row once, in order
    const char *after = NULL;
    char last[8];
    size_t visited = 0;
    do {
        assert_int_equal (s_list (table, after, 1, &page, &more), 1);
        snprintf (key, sizeof key, "k%zu", visited < 5 ? visited : visited + 1);
        assert_true (s_key_is (&page.keys[0], key));
        memcpy (last, page.keys[0].bytes, page.keys[0].len);
        last[page.keys[0].len] = 0;
        after = last;
        visited++;
    } while (more);
    assert_int_equal (visited, 9);

    //  Limit 0 gives nothing but still says whether rows remain
    assert_int_equal (s_list (table, NULL, 0, &page, &more), 0);
    assert_true (more);
    assert_int_equal (s_list (table, "k9", 0, &page, &more), 0);
    assert_false (more);

    //  A callback that stops: that row counts, and more says what is left
    s_page_reset (&page);
    page.stop_after = 2;
    assert_int_equal (zcq_viewtable_list (table, NULL, 0, 5, s_collect, &page, &more), 2);
    assert_true (more);
    s_page_reset (&page);
    page.stop_after = 1;
    assert_int_equal (zcq_viewtable_list (table, "k8", 2, 5, s_collect, &page, &more), 1);
    assert_false (more);

    s_page_free (&page);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

//  --------------------------------------------------------------------------
//  Indexes

static void
test_viewtable_index_follows_rows (void **state)
{
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_page_t page = { 0 };
    bool more = true;
    assert_int_equal (s_count_status (table, "open"), 0);
    assert_int_equal (s_list_status (table, "open", NULL, 10, &page, &more), 0);
    assert_false (more);

    s_put (table, writer, "c", "open", 1);
    s_put (table, writer, "a", "open", 2);
    s_put (table, writer, "b", "closed", 3);
    s_put (table, writer, "d", NULL, 4); //  no status: not indexed
    assert_int_equal (s_count_status (table, "open"), 2);
    assert_int_equal (s_count_status (table, "closed"), 1);
    assert_int_equal (s_count_status (table, "other"), 0);
    assert_int_equal (s_list_status (table, "open", NULL, 10, &page, &more), 2);
    assert_false (more);
    assert_true (s_key_is (&page.keys[0], "a"));
    assert_true (s_key_is (&page.keys[1], "c"));

    //  Putting the same row again changes nothing
    s_put (table, writer, "a", "open", 2);
    assert_int_equal (s_count_status (table, "open"), 2);
    assert_int_equal (s_list_status (table, "open", NULL, 10, &page, &more), 2);

    //  A change of another field keeps the entry, and pages give the new row
    s_put (table, writer, "a", "open", 20);
    assert_int_equal (s_count_status (table, "open"), 2);
    assert_int_equal (s_list_status (table, "open", NULL, 1, &page, &more), 1);
    assert_int_equal (s_amount (page.last_row, page.last_row_len), 20);

    //  The value changes: the row moves from one value to the other
    s_put (table, writer, "c", "closed", 1);
    assert_int_equal (s_count_status (table, "open"), 1);
    assert_int_equal (s_count_status (table, "closed"), 2);
    assert_int_equal (s_list_status (table, "open", NULL, 10, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "a"));
    assert_int_equal (s_list_status (table, "closed", NULL, 10, &page, &more), 2);
    assert_true (s_key_is (&page.keys[0], "b"));
    assert_true (s_key_is (&page.keys[1], "c"));

    //  The row loses the field: gone from the index, still in the table
    s_put (table, writer, "b", NULL, 3);
    assert_int_equal (s_count_status (table, "closed"), 1);
    assert_int_equal (s_list_status (table, "closed", NULL, 10, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "c"));
    assert_int_equal (zcq_viewtable_count (table), 4);
    //  and gains it back
    s_put (table, writer, "d", "closed", 4);
    s_put (table, writer, "b", "closed", 3);
    assert_int_equal (s_count_status (table, "closed"), 3);
    assert_int_equal (s_list_status (table, "closed", NULL, 10, &page, &more), 3);

    //  A row that is not a map drops out of the index
    assert_int_equal (zcq_viewtable_put (table, "d", 1, "\x91\x01", 2), ZCQ_OK);
    assert_int_equal (s_count_status (table, "closed"), 2);

    //  Delete takes the entry with it
    assert_true (zcq_viewtable_delete (table, "c", 1));
    assert_int_equal (s_count_status (table, "closed"), 1);
    assert_int_equal (s_list_status (table, "closed", NULL, 10, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "b"));
    assert_true (zcq_viewtable_delete (table, "b", 1));
    assert_true (zcq_viewtable_delete (table, "a", 1));
    assert_int_equal (s_count_status (table, "closed"), 0);
    assert_int_equal (s_count_status (table, "open"), 0);
    assert_int_equal (s_list_status (table, "closed", NULL, 10, &page, &more), 0);
    assert_false (more);
    //  and a value can be used again after its count went to zero
    s_put (table, writer, "e", "open", 5);
    assert_int_equal (s_count_status (table, "open"), 1);

    //  Fields that are not indexed
    size_t len;
    const void *value = s_str_value (writer, "open", &len);
    assert_int_equal (zcq_viewtable_count_value (table, "amount", value, len), 0);
    s_page_reset (&page);
    more = true;
    assert_int_equal (zcq_viewtable_list_value (table, "amount", value, len, NULL, 0, 10, s_collect,
                                                &page, &more),
                      0);
    assert_false (more);
    assert_int_equal (page.count, 0);
    assert_false (zcq_viewtable_has_index (table, "amount"));
    assert_false (zcq_viewtable_has_index (table, "statu"));

    s_page_free (&page);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

static void
test_viewtable_index_pages (void **state)
{
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_page_t page = { 0 };
    bool more;

    //  Keys that prefix one another, in two values interleaved
    const char *open_keys[] = { "a", "aa", "aab", "ab", "b", "b\xff" };
    const char *closed_keys[] = { "a0", "aa0", "aac", "c" };
    for (int index = 5; index >= 0; index--)
        s_put (table, writer, open_keys[index], "open", index);
    for (int index = 0; index < 4; index++)
        s_put (table, writer, closed_keys[index], "closed", index);
    //  A value whose encoding extends the other's ("openx" vs "open")
    s_put (table, writer, "a", "open", 0);
    s_put (table, writer, "zz", "openx", 0);

    assert_int_equal (s_list_status (table, "open", NULL, 100, &page, &more), 6);
    assert_false (more);
    for (int index = 0; index < 6; index++)
        assert_true (s_key_is (&page.keys[index], open_keys[index]));
    assert_int_equal (s_list_status (table, "openx", NULL, 100, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "zz"));

    //  Pages of 2: a, aa | aab, ab | b, b\xff
    assert_int_equal (s_list_status (table, "open", NULL, 2, &page, &more), 2);
    assert_true (more);
    assert_int_equal (s_list_status (table, "open", "aa", 2, &page, &more), 2);
    assert_true (more);
    assert_true (s_key_is (&page.keys[0], "aab"));
    assert_int_equal (s_list_status (table, "open", "ab", 2, &page, &more), 2);
    assert_false (more); //  the page ends on the last row
    assert_true (s_key_is (&page.keys[1], "b\xff"));
    assert_int_equal (s_list_status (table, "open", "b\xff", 2, &page, &more), 0);
    assert_false (more);

    //  After a key of another value: from the next key of this value
    assert_int_equal (s_list_status (table, "open", "a0", 1, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "aa"));
    assert_true (more);
    assert_int_equal (s_list_status (table, "closed", "a", 10, &page, &more), 4);
    assert_true (s_key_is (&page.keys[0], "a0"));
    //  After a key that no longer exists
    assert_true (zcq_viewtable_delete (table, "aab", 3));
    assert_int_equal (s_list_status (table, "open", "aab", 10, &page, &more), 3);
    assert_true (s_key_is (&page.keys[0], "ab"));
    //  After a key beyond every row, and before every row
    assert_int_equal (s_list_status (table, "closed", "zzz", 10, &page, &more), 0);
    assert_false (more);
    assert_int_equal (s_list_status (table, "closed", "", 10, &page, &more), 4);
    assert_false (more);

    //  Limit 1 walk
    char after[S_KEY_MAX + 1] = "";
    size_t visited = 0;
    do {
        assert_int_equal (s_list_status (table, "open", visited ? after : NULL, 1, &page, &more),
                          1);
        memcpy (after, page.keys[0].bytes, page.keys[0].len);
        after[page.keys[0].len] = 0;
        visited++;
    } while (more);
    assert_int_equal (visited, 5);
    assert_string_equal (after, "b\xff");

    //  A stopping callback: the row counts, more tells what is left
    size_t len;
    const void *value = s_str_value (writer, "closed", &len);
    s_page_reset (&page);
    page.stop_after = 1;
    assert_int_equal (zcq_viewtable_list_value (table, "status", value, len, NULL, 0, 10, s_collect,
                                                &page, &more),
                      1);
    assert_true (more);
    s_page_reset (&page);
    page.stop_after = 1;
    assert_int_equal (zcq_viewtable_list_value (table, "status", value, len, "aac", 3, 10,
                                                s_collect, &page, &more),
                      1);
    assert_false (more);

    s_page_free (&page);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

static void
test_viewtable_index_value_types (void **state)
{
    //  Two indexes; values of several types, compared as their encodings
    const char *indexes[] = { "kind", "level", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    assert_true (zcq_viewtable_has_index (table, "kind"));
    assert_true (zcq_viewtable_has_index (table, "level"));
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_writer_t *value = zcq_writer_new ();

    struct {
        const char *key;
        int type; //  0 int, 1 float, 2 str, 3 nil, 4 bool, 5 array
    } rows[] = {
        { "i1", 0 }, { "i2", 0 }, { "f1", 1 }, { "s1", 2 }, { "s2", 2 },
        { "s3", 2 }, { "n1", 3 }, { "b1", 4 }, { "a1", 5 },
    };
    for (size_t index = 0; index < sizeof rows / sizeof rows[0]; index++) {
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 2);
        zcq_writer_str (writer, "kind");
        switch (rows[index].type) {
            case 0: zcq_writer_int (writer, 5); break;
            case 1: zcq_writer_float (writer, 5.0); break;
            case 2: zcq_writer_str (writer, "5"); break;
            case 3: zcq_writer_nil (writer); break;
            case 4: zcq_writer_bool (writer, true); break;
            default:
                zcq_writer_array (writer, 1);
                zcq_writer_int (writer, 5);
                break;
        }
        zcq_writer_str (writer, "level");
        zcq_writer_uint (writer, index < 3 ? 300 : 7);
        assert_int_equal (zcq_viewtable_put (table, rows[index].key, strlen (rows[index].key),
                                             zcq_writer_data (writer), zcq_writer_size (writer)),
                          ZCQ_OK);
    }
    const struct {
        int type;
        size_t count;
    } expect[] = { { 0, 2 }, { 1, 1 }, { 2, 3 }, { 3, 1 }, { 4, 1 }, { 5, 1 } };
    for (size_t index = 0; index < sizeof expect / sizeof expect[0]; index++) {
        zcq_writer_reset (value);
        switch (expect[index].type) {
            case 0: zcq_writer_int (value, 5); break;
            case 1: zcq_writer_float (value, 5.0); break;
            case 2: zcq_writer_str (value, "5"); break;
            case 3: zcq_writer_nil (value); break;
            case 4: zcq_writer_bool (value, true); break;
            default:
                zcq_writer_array (value, 1);
                zcq_writer_int (value, 5);
                break;
        }
        assert_int_equal (zcq_viewtable_count_value (table, "kind", zcq_writer_data (value),
                                                     zcq_writer_size (value)),
                          expect[index].count);
    }
    //  An unsigned and a signed writer of one number meet in one value
    zcq_writer_reset (value);
    zcq_writer_int (value, 300);
    assert_int_equal (zcq_viewtable_count_value (table, "level", zcq_writer_data (value),
                                                 zcq_writer_size (value)),
                      3);
    zcq_writer_reset (value);
    zcq_writer_uint (value, 7);
    assert_int_equal (zcq_viewtable_count_value (table, "level", zcq_writer_data (value),
                                                 zcq_writer_size (value)),
                      6);
    //  A value written in a longer form than the shortest (int 7 as 0xcc
    //  0x07) is found too when the row holds it that way
    assert_int_equal (zcq_viewtable_put (table, "wide", 4, "\x81\xa5level\xcc\x07", 9), ZCQ_OK);
    assert_int_equal (zcq_viewtable_count_value (table, "level", zcq_writer_data (value),
                                                 zcq_writer_size (value)),
                      7);

    //  Deleting updates both indexes
    assert_true (zcq_viewtable_delete (table, "i1", 2));
    zcq_writer_reset (value);
    zcq_writer_int (value, 5);
    assert_int_equal (
        zcq_viewtable_count_value (table, "kind", zcq_writer_data (value), zcq_writer_size (value)),
        1);
    zcq_writer_reset (value);
    zcq_writer_int (value, 300);
    assert_int_equal (zcq_viewtable_count_value (table, "level", zcq_writer_data (value),
                                                 zcq_writer_size (value)),
                      2);
    zcq_writer_destroy (&value);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

//  The table's reads take a const table: a row callback may read the table
//  again (a join: look the row's partner up by another value) without
//  upsetting the page in progress.
typedef struct {
    const zcq_viewtable_t *table;
    s_page_t outer;
    s_page_t inner;
    zcq_writer_t *value;
} s_join_t;

static int
s_join_row (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    s_join_t *join = arg;
    s_collect (&join->outer, key, key_len, row, row_len);
    bool more;
    s_page_reset (&join->inner);
    zcq_viewtable_list_value (join->table, "status", zcq_writer_data (join->value),
                              zcq_writer_size (join->value), NULL, 0, 10, s_collect, &join->inner,
                              &more);
    return 0;
}

static void
test_viewtable_read_inside_callback (void **state)
{
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_put (table, writer, "a", "open", 1);
    s_put (table, writer, "b", "open", 2);
    s_put (table, writer, "c", "open", 3);
    s_put (table, writer, "x", "a much longer status value than open", 4);

    s_join_t join = { .table = table, .value = zcq_writer_new () };
    zcq_writer_str (join.value, "a much longer status value than open");
    size_t len;
    const void *value = s_str_value (writer, "open", &len);
    bool more = true;
    size_t given = zcq_viewtable_list_value (table, "status", value, len, NULL, 0, 10, s_join_row,
                                             &join, &more);
    size_t inner = join.inner.count;
    s_page_free (&join.outer);
    s_page_free (&join.inner);
    zcq_writer_destroy (&join.value);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
    assert_int_equal (inner, 1);
    if (given != 3 || more)
        fail_msg ("a list_value inside the callback cut the outer page to %zu rows (of 3), "
                  "more=%d",
                  given, more);
}

//  --------------------------------------------------------------------------
//  Many rows against a reference model

#define S_KEYS   3000
#define S_GROUPS 12
#define S_TAGS   5

typedef struct {
    s_key_t key;
    bool present;
    int group; //  -1 = the row has no group field
    int tag;
    int64_t amount;
} s_model_row_t;

static void
s_model_write (zcq_writer_t *writer, const s_model_row_t *row)
{
    zcq_writer_reset (writer);
    zcq_writer_map (writer, row->group >= 0 ? 3 : 2);
    zcq_writer_str (writer, "amount");
    zcq_writer_int (writer, row->amount);
    char tag[8];
    snprintf (tag, sizeof tag, "t%d", row->tag);
    zcq_writer_str (writer, "tag");
    zcq_writer_str (writer, tag);
    if (row->group >= 0) {
        zcq_writer_str (writer, "group");
        zcq_writer_int (writer, row->group);
    }
}

static int
s_model_compare (const void *a, const void *b)
{
    return s_key_compare (&((const s_model_row_t *) a)->key, &((const s_model_row_t *) b)->key);
}

//  Check the table against the model, which is sorted by key.
static void
s_model_check (const zcq_viewtable_t *table, const s_model_row_t *model, s_page_t *page,
               zcq_writer_t *value)
{
    size_t present = 0;
    size_t groups[S_GROUPS] = { 0 }, tags[S_TAGS] = { 0 };
    for (size_t index = 0; index < S_KEYS; index++) {
        size_t row_len = 0;
        const void *row
            = zcq_viewtable_get (table, model[index].key.bytes, model[index].key.len, &row_len);
        assert_int_equal (row != NULL, model[index].present);
        if (!model[index].present)
            continue;
        assert_int_equal (s_amount (row, row_len), model[index].amount);
        present++;
        if (model[index].group >= 0)
            groups[model[index].group]++;
        tags[model[index].tag]++;
    }
    assert_int_equal (zcq_viewtable_count (table), present);

    //  The whole table in one page, and in pages of 97
    bool more = true;
    s_page_reset (page);
    assert_int_equal (zcq_viewtable_list (table, NULL, 0, SIZE_MAX, s_collect, page, &more),
                      present);
    assert_false (more);
    size_t position = 0;
    for (size_t index = 0; index < S_KEYS; index++)
        if (model[index].present)
            assert_int_equal (s_key_compare (&page->keys[position++], &model[index].key), 0);
    s_key_t after = { "", 0 };
    size_t seen = 0;
    size_t pages = 0;
    position = 0;
    do {
        s_page_reset (page);
        size_t given = zcq_viewtable_list (table, pages ? after.bytes : NULL, after.len, 97,
                                           s_collect, page, &more);
        pages++;
        for (size_t index = 0; index < given; index++) {
            while (!model[position].present)
                position++;
            assert_int_equal (s_key_compare (&page->keys[index], &model[position].key), 0);
            position++;
        }
        seen += given;
        if (given)
            after = page->keys[given - 1];
    } while (more);
    assert_int_equal (seen, present);

    //  Every group and tag: its count, and its rows in key order
    for (int group = 0; group < S_GROUPS; group++) {
        zcq_writer_reset (value);
        zcq_writer_int (value, group);
        assert_int_equal (zcq_viewtable_count_value (table, "group", zcq_writer_data (value),
                                                     zcq_writer_size (value)),
                          groups[group]);
        s_page_reset (page);
        assert_int_equal (zcq_viewtable_list_value (table, "group", zcq_writer_data (value),
                                                    zcq_writer_size (value), NULL, 0, SIZE_MAX,
                                                    s_collect, page, &more),
                          groups[group]);
        position = 0;
        for (size_t index = 0; index < S_KEYS; index++)
            if (model[index].present && model[index].group == group)
                assert_int_equal (s_key_compare (&page->keys[position++], &model[index].key), 0);
    }
    for (int tag = 0; tag < S_TAGS; tag++) {
        char text[8];
        snprintf (text, sizeof text, "t%d", tag);
        zcq_writer_reset (value);
        zcq_writer_str (value, text);
        assert_int_equal (zcq_viewtable_count_value (table, "tag", zcq_writer_data (value),
                                                     zcq_writer_size (value)),
                          tags[tag]);
        //  paged by 50 through the tag
        size_t total = 0;
        s_key_t tag_after = { "", 0 };
        position = 0;
        do {
            s_page_reset (page);
            size_t given = zcq_viewtable_list_value (
                table, "tag", zcq_writer_data (value), zcq_writer_size (value),
                total ? tag_after.bytes : NULL, tag_after.len, 50, s_collect, page, &more);
            for (size_t index = 0; index < given; index++) {
                while (!(model[position].present && model[position].tag == tag))
                    position++;
                assert_int_equal (s_key_compare (&page->keys[index], &model[position].key), 0);
                position++;
            }
            total += given;
            if (given)
                tag_after = page->keys[given - 1];
        } while (more);
        assert_int_equal (total, tags[tag]);
    }
}

static void
test_viewtable_random_against_model (void **state)
{
    //  Keys: decimal numbers (so "1" prefixes "10" and "100"), some with
    //  a NUL or a high byte inside
    s_model_row_t *model = calloc (S_KEYS, sizeof (s_model_row_t));
    assert_non_null (model);
    for (size_t index = 0; index < S_KEYS; index++) {
        s_key_t *key = &model[index].key;
        key->len = (size_t) snprintf (key->bytes, sizeof key->bytes, "%zu", index);
        if (index % 17 == 0)
            key->bytes[key->len++] = 0;
        if (index % 23 == 0)
            key->bytes[key->len++] = (char) 0xe9;
    }
    qsort (model, S_KEYS, sizeof model[0], s_model_compare);

    const char *indexes[] = { "group", "tag", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_writer_t *value = zcq_writer_new ();
    s_page_t page = { 0 };
    uint64_t seed = 0x7ab1e5eedULL;
    size_t peak_memory = 0;
    for (int operation = 1; operation <= 50000; operation++) {
        s_model_row_t *row = &model[zcq_test_next (&seed) % S_KEYS];
        uint64_t dice = zcq_test_next (&seed) % 100;
        if (dice < 55 || (dice >= 80 && !row->present)) {
            //  put a new row or replace one
            row->present = true;
            row->group = (int) (zcq_test_next (&seed) % (S_GROUPS + 2)) - 2;
            if (row->group < 0)
                row->group = -1;
            row->tag = (int) (zcq_test_next (&seed) % S_TAGS);
            row->amount = (int64_t) (zcq_test_next (&seed) % 1000000) - 500000;
            s_model_write (writer, row);
            assert_int_equal (zcq_viewtable_put (table, row->key.bytes, row->key.len,
                                                 zcq_writer_data (writer),
                                                 zcq_writer_size (writer)),
                              ZCQ_OK);
        }
        else if (dice < 80) {
            assert_int_equal (zcq_viewtable_delete (table, row->key.bytes, row->key.len),
                              row->present);
            row->present = false;
        }
        else {
            //  change one field of an existing row
            if (dice < 90)
                row->group = row->group >= 0 ? -1 : (int) (zcq_test_next (&seed) % S_GROUPS);
            else
                row->amount++;
            s_model_write (writer, row);
            assert_int_equal (zcq_viewtable_put (table, row->key.bytes, row->key.len,
                                                 zcq_writer_data (writer),
                                                 zcq_writer_size (writer)),
                              ZCQ_OK);
        }
        if (zcq_viewtable_memory (table) > peak_memory)
            peak_memory = zcq_viewtable_memory (table);
        if (operation % 5000 == 0)
            s_model_check (table, model, &page, value);
    }

    //  Delete everything: empty table, empty indexes, memory back down
    for (size_t index = 0; index < S_KEYS; index++)
        if (model[index].present) {
            assert_true (
                zcq_viewtable_delete (table, model[index].key.bytes, model[index].key.len));
            model[index].present = false;
        }
    s_model_check (table, model, &page, value);
    assert_int_equal (zcq_viewtable_count (table), 0);
    assert_true (zcq_viewtable_memory (table) < peak_memory / 4);

    s_page_free (&page);
    zcq_writer_destroy (&value);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
    free (model);
}

//  --------------------------------------------------------------------------
//  Memory

static void
test_viewtable_memory (void **state)
{
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_viewtable_t *plain = zcq_viewtable_new (NULL);
    zcq_writer_t *writer = zcq_writer_new ();
    size_t empty = zcq_viewtable_memory (table);
    assert_true (empty > 0);
    //  an index costs its (small) empty value-count table
    assert_true (zcq_viewtable_memory (plain) < empty);
    assert_true (empty - zcq_viewtable_memory (plain) <= 4096);

    //  One row: at least its bytes and key, plus bounded structure
    s_write_row (writer, "open", 1);
    size_t row_len = zcq_writer_size (writer);
    assert_int_equal (zcq_viewtable_put (table, "key", 3, zcq_writer_data (writer), row_len),
                      ZCQ_OK);
    size_t one = zcq_viewtable_memory (table);
    assert_true (one >= empty + row_len + 3);
    assert_true (one <= empty + row_len + 3 + 1024);

    //  The same row again, or another of the same size: no change
    assert_int_equal (zcq_viewtable_put (table, "key", 3, zcq_writer_data (writer), row_len),
                      ZCQ_OK);
    assert_int_equal (zcq_viewtable_memory (table), one);
    s_write_row (writer, "open", 2);
    assert_int_equal (
        zcq_viewtable_put (table, "key", 3, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    assert_int_equal (zcq_viewtable_memory (table), one);
    //  A row whose number takes more bytes: no change either (rows hold
    //  numbers as numbers, not as their encodings)
    s_write_row (writer, "open", 1 << 20);
    size_t bigger_len = zcq_writer_size (writer);
    assert_true (bigger_len > row_len);
    assert_int_equal (zcq_viewtable_put (table, "key", 3, zcq_writer_data (writer), bigger_len),
                      ZCQ_OK);
    assert_int_equal (zcq_viewtable_memory (table), one);
    //  A longer string (same indexed value) grows it by the difference, and
    //  by no more than a field's room besides
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 3);
    zcq_writer_str (writer, "status");
    zcq_writer_str (writer, "open");
    zcq_writer_str (writer, "amount");
    zcq_writer_int (writer, 1);
    zcq_writer_str (writer, "note");
    char note[1001];
    memset (note, 'n', 1000);
    note[1000] = 0;
    zcq_writer_str (writer, note);
    assert_int_equal (
        zcq_viewtable_put (table, "key", 3, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    assert_true (zcq_viewtable_memory (table) >= one + 1000);
    assert_true (zcq_viewtable_memory (table) <= one + 1000 + 256);
    //  Deleted: back to the empty size exactly
    assert_true (zcq_viewtable_delete (table, "key", 3));
    assert_int_equal (zcq_viewtable_memory (table), empty);

    //  Growing row by row, shrinking back row by row (500 rows stay below
    //  the first growth of the hash table)
    char key[16];
    size_t previous = empty;
    for (int index = 0; index < 500; index++) {
        snprintf (key, sizeof key, "row-%d", index);
        s_put (table, writer, key, index % 2 ? "open" : "closed", index);
        s_put (plain, writer, key, index % 2 ? "open" : "closed", index);
        size_t now = zcq_viewtable_memory (table);
        assert_true (now > previous);
        previous = now;
    }
    size_t full = previous;
    //  The index costs memory of its own
    assert_true (full > zcq_viewtable_memory (plain));
    for (int index = 0; index < 500; index++) {
        snprintf (key, sizeof key, "row-%d", index);
        assert_true (zcq_viewtable_delete (table, key, strlen (key)));
        size_t now = zcq_viewtable_memory (table);
        assert_true (now < previous);
        previous = now;
    }
    assert_int_equal (zcq_viewtable_memory (table), empty);

    //  Many rows: what stays after deleting them is at most the grown
    //  hash table (one pointer per slot)
    for (int index = 0; index < 20000; index++) {
        snprintf (key, sizeof key, "many-%d", index);
        s_put (table, writer, key, "open", index);
    }
    size_t peak = zcq_viewtable_memory (table);
    assert_true (peak > full * 10);
    for (int index = 0; index < 20000; index++) {
        snprintf (key, sizeof key, "many-%d", index);
        assert_true (zcq_viewtable_delete (table, key, strlen (key)));
    }
    size_t after = zcq_viewtable_memory (table);
    assert_true (after >= empty);
    assert_true (after <= empty + 32768 * sizeof (void *));
    assert_true (after < peak / 4);

    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&plain);
    zcq_viewtable_destroy (&table);
}

//  Heap bytes in use (glibc), or 0 where that cannot be measured.
static size_t
s_heap_in_use (void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes (); //  ASan's own allocator
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 info = mallinfo2 ();
    return info.uordblks + info.hblkhd;
#else
    return 0;
#endif
}

//  An indexed field that takes a new value on every row (a timestamp, an
//  amount): once the rows are gone, the table must give the memory back.
static void
test_viewtable_distinct_values_are_released (void **state)
{
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    char key[16], status[24];
    //  Warm up once so that the hash table and scratch buffers are grown
    for (int index = 0; index < 50000; index++) {
        snprintf (key, sizeof key, "k%d", index);
        s_put (table, writer, key, "warm", index);
    }
    for (int index = 0; index < 50000; index++) {
        snprintf (key, sizeof key, "k%d", index);
        assert_true (zcq_viewtable_delete (table, key, strlen (key)));
    }
    size_t before = s_heap_in_use ();
    size_t reported_before = zcq_viewtable_memory (table);

    //  Rows come and go, each with a value never seen before
    for (int round = 0; round < 5; round++) {
        for (int index = 0; index < 10000; index++) {
            snprintf (key, sizeof key, "k%d", index);
            snprintf (status, sizeof status, "at-%d-%d", round, index);
            s_put (table, writer, key, status, index);
        }
        for (int index = 0; index < 10000; index++) {
            snprintf (key, sizeof key, "k%d", index);
            assert_true (zcq_viewtable_delete (table, key, strlen (key)));
        }
    }
    size_t after = s_heap_in_use ();
    size_t count = zcq_viewtable_count (table);
    size_t reported_after = zcq_viewtable_memory (table);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
    assert_int_equal (count, 0);
    assert_int_equal (reported_after, reported_before);
    if (before && after > before + 256 * 1024)
        fail_msg ("an empty table keeps %zu more heap bytes after 50000 distinct indexed "
                  "values came and went (zcq_viewtable_memory reports no change)",
                  after - before);
}

//  --------------------------------------------------------------------------
//  Snapshots: zcq_viewtable_save and zcq_viewtable_load

//  A copy of viewsnap.c's s_checksum (static there), so that the tests can
//  build files with a valid checksum by hand. Keep in step with viewsnap.c.
static uint64_t
s_test_checksum (const uint8_t *bytes, size_t len)
{
    const uint64_t prime1 = 0x9e3779b185ebca87ULL, prime2 = 0xc2b2ae3d27d4eb4fULL;
    uint64_t lanes[4] = { prime1, prime2, len, ~len };
    size_t index = 0;
    for (; index + 32 <= len; index += 32)
        for (int lane = 0; lane < 4; lane++) {
            uint64_t word;
            memcpy (&word, bytes + index + 8 * lane, 8);
            lanes[lane] += word * prime2;
            lanes[lane] = (lanes[lane] << 31 | lanes[lane] >> 33) * prime1;
        }
    uint64_t hash = lanes[0] ^ (lanes[1] << 7 | lanes[1] >> 57) ^ (lanes[2] << 12 | lanes[2] >> 52)
                  ^ (lanes[3] << 18 | lanes[3] >> 46);
    for (; index < len; index++)
        hash = (hash ^ bytes[index]) * prime1;
    hash ^= hash >> 33;
    hash *= prime2;
    hash ^= hash >> 29;
    return hash;
}

//  A path in the test's directory.
static char *
s_path (const char *dir, const char *name)
{
    char *path = NULL;
    assert_true (asprintf (&path, "%s/%s", dir, name) > 0);
    return path;
}

static uint8_t *
s_read_whole (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    assert_non_null (file);
    assert_int_equal (fseek (file, 0, SEEK_END), 0);
    long length = ftell (file);
    assert_true (length >= 0);
    rewind (file);
    uint8_t *bytes = malloc ((size_t) length + 1);
    assert_non_null (bytes);
    assert_int_equal (fread (bytes, 1, (size_t) length, file), (size_t) length);
    fclose (file);
    *size = (size_t) length;
    return bytes;
}

static void
s_write_whole (const char *path, const void *bytes, size_t size)
{
    FILE *file = fopen (path, "wb");
    assert_non_null (file);
    if (size)
        assert_int_equal (fwrite (bytes, 1, size, file), size);
    assert_int_equal (fclose (file), 0);
}

//  Every row of a table, [key][row] in key order, into writer (as a
//  MessagePack array of pairs: bytes compare equal for equal tables).
static int
s_dump_row (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    zcq_writer_t *writer = arg;
    zcq_writer_array (writer, 2);
    zcq_writer_bin (writer, key, key_len);
    zcq_writer_bin (writer, row, row_len);
    return 0;
}

static void
s_assert_tables_equal (const zcq_viewtable_t *left, const zcq_viewtable_t *right)
{
    assert_int_equal (zcq_viewtable_count (left), zcq_viewtable_count (right));
    zcq_writer_t *a = zcq_writer_new (), *b = zcq_writer_new ();
    zcq_viewtable_list (left, NULL, 0, SIZE_MAX, s_dump_row, a, NULL);
    zcq_viewtable_list (right, NULL, 0, SIZE_MAX, s_dump_row, b, NULL);
    assert_true (zcq_writer_ok (a) && zcq_writer_ok (b));
    assert_int_equal (zcq_writer_size (a), zcq_writer_size (b));
    assert_memory_equal (zcq_writer_data (a), zcq_writer_data (b), zcq_writer_size (a));
    zcq_writer_destroy (&a);
    zcq_writer_destroy (&b);
}

//  The rows of one status value, listed by index, as a dump.
static void
s_assert_index_equal (const zcq_viewtable_t *left, const zcq_viewtable_t *right, const char *status)
{
    assert_int_equal (s_count_status (left, status), s_count_status (right, status));
    zcq_writer_t *value = zcq_writer_new ();
    size_t len;
    const void *bytes = s_str_value (value, status, &len);
    zcq_writer_t *a = zcq_writer_new (), *b = zcq_writer_new ();
    size_t given_a = zcq_viewtable_list_value (left, "status", bytes, len, NULL, 0, SIZE_MAX,
                                               s_dump_row, a, NULL);
    size_t given_b = zcq_viewtable_list_value (right, "status", bytes, len, NULL, 0, SIZE_MAX,
                                               s_dump_row, b, NULL);
    assert_int_equal (given_a, given_b);
    assert_int_equal (given_a, s_count_status (left, status));
    assert_int_equal (zcq_writer_size (a), zcq_writer_size (b));
    assert_memory_equal (zcq_writer_data (a), zcq_writer_data (b), zcq_writer_size (a));
    zcq_writer_destroy (&a);
    zcq_writer_destroy (&b);
    zcq_writer_destroy (&value);
}

static const char *const s_statuses[] = { "open", "closed", "frozen", NULL };

static void
s_assert_same_indexed (const zcq_viewtable_t *left, const zcq_viewtable_t *right)
{
    s_assert_tables_equal (left, right);
    for (const char *const *status = s_statuses; *status; status++)
        s_assert_index_equal (left, right, *status);
}

//  Save table, load it back (with the given indexes); checks the header.
static zcq_viewtable_t *
s_round_trip (const zcq_viewtable_t *table, const char *const *indexes, const char *path)
{
    char error[512] = "";
    zcq_viewsnap_t snap
        = { .version = 7, .position = 123456789012ULL, .check = 0xfeedfacecafebeefULL };
    assert_int_equal (zcq_viewtable_save (table, path, "accounts", &snap, error, sizeof error),
                      ZCQ_OK);
    zcq_viewtable_t *loaded = NULL;
    zcq_viewsnap_t got = { 0 };
    zcq_err_t err
        = zcq_viewtable_load (&loaded, indexes, path, "accounts", &got, error, sizeof error);
    if (err != ZCQ_OK)
        fail_msg ("load: %s: %s", zcq_strerror (err), error);
    assert_non_null (loaded);
    assert_int_equal (got.version, snap.version);
    assert_true (got.position == snap.position);
    assert_true (got.check == snap.check);
    return loaded;
}

//  A cluster-wide view's snapshot (format 2): the cluster id and every
//  group's position come back; a single node's (format 1) has none.
static void
test_viewsnap_positions (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-positions");
    char *path = s_path (dir, "totals.snap");
    zcq_viewtable_t *table = zcq_viewtable_new (NULL);
    zcq_writer_t *row = zcq_writer_new ();
    zcq_writer_map (row, 1);
    zcq_writer_str (row, "balance");
    zcq_writer_int (row, 42);
    assert_int_equal (
        zcq_viewtable_put (table, "bank", 4, zcq_writer_data (row), zcq_writer_size (row)), ZCQ_OK);
    uint64_t positions[3] = { 5, 0, 1ULL << 40 };
    zcq_viewsnap_t snap
        = { .version = 1, .position = 5, .check = 9, .groups = 3, .positions = positions };
    snprintf (snap.cluster, sizeof snap.cluster, "0123456789abcdef0123456789abcdef");
    char error[512] = "";
    assert_int_equal (zcq_viewtable_save (table, path, "totals", &snap, error, sizeof error),
                      ZCQ_OK);
    zcq_viewtable_t *loaded = NULL;
    zcq_viewsnap_t got;
    assert_int_equal (zcq_viewtable_load (&loaded, NULL, path, "totals", &got, error, sizeof error),
                      ZCQ_OK);
    assert_int_equal (got.groups, 3);
    for (size_t group = 0; group < 3; group++)
        assert_true (got.positions[group] == positions[group]);
    assert_string_equal (got.cluster, snap.cluster);
    assert_true (got.position == 5 && got.check == 9);
    assert_int_equal (zcq_viewtable_count (loaded), 1);
    zcq_viewsnap_clear (&got);
    zcq_viewsnap_clear (&got);
    zcq_viewtable_destroy (&loaded);
    //  a single node's snapshot loads with no positions
    snap.groups = 0;
    assert_int_equal (zcq_viewtable_save (table, path, "totals", &snap, error, sizeof error),
                      ZCQ_OK);
    assert_int_equal (zcq_viewtable_load (&loaded, NULL, path, "totals", &got, error, sizeof error),
                      ZCQ_OK);
    assert_int_equal (got.groups, 0);
    assert_null (got.positions);
    zcq_viewtable_destroy (&loaded);
    zcq_viewtable_destroy (&table);
    zcq_writer_destroy (&row);
    free (path);
    zcq_test_rmdir (&dir);
}

static void
test_viewsnap_round_trip (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-trip");
    char *path = s_path (dir, "accounts.snap");
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    //  keys of every shape: binary bytes, a NUL inside, prefixes of each
    //  other, high bytes; rows with and without the indexed field
    char key[S_KEY_MAX];
    for (int index = 0; index < 300; index++) {
        snprintf (key, sizeof key, "acc-%d", index * 7919 % 1000);
        const char *status = index % 10 == 9 ? NULL : s_statuses[index % 3];
        s_put (table, writer, key, status, index * 1000003LL - 77);
    }
    s_write_row (writer, "open", -1);
    assert_int_equal (
        zcq_viewtable_put (table, "a\0b", 3, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);
    assert_int_equal (zcq_viewtable_put (table, "\xff\xfe", 2, zcq_writer_data (writer),
                                         zcq_writer_size (writer)),
                      ZCQ_OK);
    s_put (table, writer, "a", "closed", 1);
    s_put (table, writer, "ab", "closed", 2);
    //  a bigger row, and a row with nested values
    s_put (table, writer, "big", "frozen", INT64_MIN);
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 3);
    zcq_writer_str (writer, "status");
    zcq_writer_str (writer, "open");
    zcq_writer_str (writer, "list");
    zcq_writer_array (writer, 2);
    zcq_writer_float (writer, 2.5);
    zcq_writer_nil (writer);
    zcq_writer_str (writer, "map");
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "x");
    zcq_writer_bin (writer, "\0\1", 2);
    assert_int_equal (
        zcq_viewtable_put (table, "nested", 6, zcq_writer_data (writer), zcq_writer_size (writer)),
        ZCQ_OK);

    zcq_viewtable_t *loaded = s_round_trip (table, indexes, path);
    s_assert_same_indexed (table, loaded);

    //  the loaded table moves on like the original: puts before, between
    //  and after the loaded keys, a changed indexed value, same-size and
    //  other-size rows, deletes, a patch-like rewrite of one field
    for (int round = 0; round < 2; round++) {
        zcq_viewtable_t *target = round ? loaded : table;
        s_put (target, writer, "0-first", "open", 5);
        s_put (target, writer, "zzz-last", "frozen", 6);
        s_put (target, writer, "acc-5", "frozen", 7);
        s_put (target, writer, "acc-10", "closed", 123456789);
        s_put (target, writer, "acc-11", NULL, 8);
        assert_true (zcq_viewtable_delete (target, "acc-12", 6));
        assert_true (zcq_viewtable_delete (target, "a\0b", 3));
        assert_false (zcq_viewtable_delete (target, "absent", 6));
        s_put (target, writer, "zzzz-after-last", "open", 9);
        assert_true (zcq_viewtable_delete (target, "zzz-last", 8));
        s_put (target, writer, "zzz-last", "open", 10);
    }
    s_assert_same_indexed (table, loaded);
    assert_int_equal (s_get_amount (loaded, "acc-10", 6), 123456789);
    assert_int_equal (s_get_amount (loaded, "acc-12", 6), -2);

    //  a table loaded with other indexes builds them from the rows
    const char *none[] = { NULL };
    zcq_viewtable_t *plain = s_round_trip (table, none, path);
    s_assert_tables_equal (table, plain);
    assert_false (zcq_viewtable_has_index (plain, "status"));
    const char *amount_index[] = { "amount", "status", NULL };
    zcq_viewtable_t *more = s_round_trip (table, amount_index, path);
    s_assert_same_indexed (table, more);
    zcq_writer_reset (writer);
    zcq_writer_int (writer, 123456789);
    assert_int_equal (zcq_viewtable_count_value (more, "amount", zcq_writer_data (writer),
                                                 zcq_writer_size (writer)),
                      1);

    //  saving over a snapshot replaces it, and leaves no temporary file
    s_put (table, writer, "only-in-the-second", "open", 1);
    zcq_viewtable_t *again = s_round_trip (table, indexes, path);
    s_assert_same_indexed (table, again);
    char *temporary = s_path (dir, "accounts.snap.tmp");
    assert_int_equal (access (temporary, F_OK), -1);

    //  a symlink planted at the temporary name is replaced, never written
    //  through: its target keeps its bytes, and the file is owner-only
    char *target = s_path (dir, "victim");
    FILE *victim = fopen (target, "w");
    assert_non_null (victim);
    fputs ("precious", victim);
    fclose (victim);
    assert_int_equal (symlink (target, temporary), 0);
    zcq_viewtable_t *planted = s_round_trip (table, indexes, path);
    s_assert_same_indexed (table, planted);
    char bytes[16] = { 0 };
    victim = fopen (target, "r");
    assert_non_null (victim);
    assert_int_equal (fread (bytes, 1, sizeof bytes, victim), 8);
    fclose (victim);
    assert_string_equal (bytes, "precious");
    struct stat info;
    assert_int_equal (stat (path, &info), 0);
    assert_int_equal (info.st_mode & 077, 0);
    zcq_viewtable_destroy (&planted);
    free (target);

    free (temporary);
    zcq_viewtable_destroy (&again);
    zcq_viewtable_destroy (&more);
    zcq_viewtable_destroy (&plain);
    zcq_viewtable_destroy (&loaded);
    zcq_viewtable_destroy (&table);
    zcq_writer_destroy (&writer);
    free (path);
    zcq_test_rmdir (&dir);
}

static void
test_viewsnap_empty (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-empty");
    char *path = s_path (dir, "empty.snap");
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_viewtable_t *loaded = s_round_trip (table, indexes, path);
    assert_int_equal (zcq_viewtable_count (loaded), 0);
    s_page_t page = { 0 };
    bool more = true;
    assert_int_equal (s_list (loaded, NULL, 10, &page, &more), 0);
    assert_false (more);
    assert_int_equal (s_count_status (loaded, "open"), 0);
    zcq_writer_t *writer = zcq_writer_new ();
    s_put (loaded, writer, "k", "open", 1);
    assert_int_equal (s_count_status (loaded, "open"), 1);
    assert_int_equal (s_get_amount (loaded, "k", 1), 1);
    zcq_writer_destroy (&writer);
    s_page_free (&page);
    zcq_viewtable_destroy (&loaded);
    zcq_viewtable_destroy (&table);
    free (path);
    zcq_test_rmdir (&dir);
}

static void
test_viewsnap_large (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-large");
    char *path = s_path (dir, "large.snap");
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    enum { ROWS = 50000 };
    char key[S_KEY_MAX];
    uint64_t random = 42;
    for (int index = 0; index < ROWS; index++) {
        zcq_test_next (&random);
        snprintf (key, sizeof key, "k%08llx-%d", (unsigned long long) (random & 0xffffffff), index);
        s_put (table, writer, key, s_statuses[random % 3], (int64_t) (random >> 8));
    }
    assert_int_equal (zcq_viewtable_count (table), ROWS);
    zcq_viewtable_t *loaded = s_round_trip (table, indexes, path);
    s_assert_same_indexed (table, loaded);
    //  the loaded table's memory is of the same order as the original's
    assert_true (zcq_viewtable_memory (loaded) <= zcq_viewtable_memory (table) * 2);
    assert_true (zcq_viewtable_memory (loaded) >= zcq_viewtable_memory (table) / 2);
    //  and gets the same random changes right
    for (int index = 0; index < 5000; index++) {
        zcq_test_next (&random);
        snprintf (key, sizeof key, "k%08llx-%d", (unsigned long long) (random & 0xffffffff),
                  (int) (random % ROWS));
        for (int round = 0; round < 2; round++) {
            zcq_viewtable_t *target = round ? loaded : table;
            if (random % 5 == 0)
                zcq_viewtable_delete (target, key, strlen (key));
            else
                s_put (target, writer, key, s_statuses[(random >> 3) % 3], index);
        }
    }
    s_assert_same_indexed (table, loaded);
    zcq_viewtable_destroy (&loaded);
    zcq_viewtable_destroy (&table);
    zcq_writer_destroy (&writer);
    free (path);
    zcq_test_rmdir (&dir);
}

static void
test_viewsnap_missing_and_other_view (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-other");
    char *path = s_path (dir, "accounts.snap");
    const char *indexes[] = { "status", NULL };
    char error[512] = "";
    zcq_viewsnap_t snap = { 0 };
    zcq_viewtable_t *loaded = (zcq_viewtable_t *) &snap; //  must be set to NULL
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, path, "accounts", &snap, error, sizeof error),
        ZCQ_NOT_FOUND);
    assert_null (loaded);
    assert_true (strlen (error) > 0);

    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_put (table, writer, "k", "open", 1);
    zcq_viewsnap_t saved = { .version = 1, .position = 10, .check = 11 };
    assert_int_equal (zcq_viewtable_save (table, path, "totals", &saved, error, sizeof error),
                      ZCQ_OK);
    error[0] = 0;
    loaded = (zcq_viewtable_t *) &snap;
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, path, "accounts", &snap, error, sizeof error),
        ZCQ_INVALID);
    assert_null (loaded);
    assert_true (strlen (error) > 0);
    //  a view name that is a prefix of the saved one is another view too
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, path, "total", &snap, error, sizeof error),
        ZCQ_INVALID);
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, path, "totals", &snap, error, sizeof error), ZCQ_OK);
    assert_int_equal (zcq_viewtable_count (loaded), 1);
    zcq_viewtable_destroy (&loaded);
    //  a directory where the file should be: an error, not a table
    char *sub = s_path (dir, "sub.snap");
    assert_int_equal (mkdir (sub, 0755), 0);
    assert_int_not_equal (
        zcq_viewtable_load (&loaded, indexes, sub, "accounts", &snap, error, sizeof error), ZCQ_OK);
    assert_null (loaded);
    free (sub);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
    free (path);
    zcq_test_rmdir (&dir);
}

//  Load path, expecting ZCQ_CORRUPT, no table and an explanation.
static void
s_assert_corrupt (const char *path, const char *what, size_t at)
{
    const char *indexes[] = { "status", NULL };
    char error[512] = "";
    zcq_viewsnap_t snap;
    zcq_viewtable_t *loaded = NULL;
    zcq_err_t err
        = zcq_viewtable_load (&loaded, indexes, path, "accounts", &snap, error, sizeof error);
    if (err != ZCQ_CORRUPT)
        fail_msg ("%s at %zu: expected corrupt, got %s (%s)", what, at, zcq_strerror (err), error);
    assert_null (loaded);
    assert_true (strlen (error) > 0);
}

//  Load every damaged variant of the snapshot bytes (size of them) that
//  the test tries; each must be ZCQ_CORRUPT. Returns how many.
static size_t
s_damage_all (const char *damaged, const uint8_t *bytes, size_t size, uint8_t *copy,
              size_t header_end)
{
    size_t attempts = 0;
    //  every single-byte flip in the magic, header and trailer; every 5th
    //  byte of the rows; two flips each (one bit, every bit)
    for (size_t at = 0; at < size; at++) {
        if (at >= header_end && at < size - 8 && at % 5)
            continue;
        for (int variant = 0; variant < 2; variant++) {
            memcpy (copy, bytes, size);
            copy[at] ^= variant ? 0xff : 0x01;
            s_write_whole (damaged, copy, size);
            s_assert_corrupt (damaged, variant ? "byte flip" : "bit flip", at);
            attempts++;
        }
    }
    //  every truncation, and bytes after the end
    for (size_t length = 0; length < size; length++) {
        s_write_whole (damaged, bytes, length);
        s_assert_corrupt (damaged, "truncated", length);
        attempts++;
    }
    for (size_t extra = 1; extra <= 64; extra *= 2) {
        memcpy (copy, bytes, size);
        memset (copy + size, extra == 8 ? 0 : 0x5a, extra);
        s_write_whole (damaged, copy, size + extra);
        s_assert_corrupt (damaged, "bytes after the end", extra);
        attempts++;
    }
    //  files of zeros: as long as the snapshot, and short ones (the last
    //  one written is 64 bytes)
    static const size_t zero_sizes[] = { 1, 8, 12, 19, 20, 21, 64, 0 };
    memset (copy, 0, size);
    s_write_whole (damaged, copy, size);
    s_assert_corrupt (damaged, "zeros", size);
    for (const size_t *length = zero_sizes; *length; length++) {
        s_write_whole (damaged, copy, *length);
        s_assert_corrupt (damaged, "zeros", *length);
        attempts++;
    }
    return attempts;
}

static void
test_viewsnap_damaged (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-damaged");
    char *path = s_path (dir, "accounts.snap");
    char *damaged = s_path (dir, "damaged.snap");
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    char key[S_KEY_MAX];
    for (int index = 0; index < 60; index++) {
        snprintf (key, sizeof key, "row-%03d", index);
        s_put (table, writer, key, s_statuses[index % 3], index * 31);
    }
    char error[512];
    zcq_viewsnap_t snap = { .version = 1, .position = 1000, .check = 2000 };
    assert_int_equal (zcq_viewtable_save (table, path, "accounts", &snap, error, sizeof error),
                      ZCQ_OK);
    size_t size;
    uint8_t *bytes = s_read_whole (path, &size);
    assert_true (size > 1000);
    uint8_t *copy = malloc (size + 64);
    assert_non_null (copy);
    size_t header_end
        = 12 + ((size_t) bytes[8] << 24 | bytes[9] << 16 | bytes[10] << 8 | bytes[11]);
    assert_true (header_end < size - 8);

    //  the intact copy loads (the control for what follows)
    s_write_whole (damaged, bytes, size);
    zcq_viewtable_t *loaded = NULL;
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, damaged, "accounts", &snap, error, sizeof error),
        ZCQ_OK);
    zcq_viewtable_destroy (&loaded);

    //  every damage twice: the first pass lets the allocator's caches
    //  (glibc keeps freed chunks of each size for reuse) fill up, so
    //  that heap growth over the second pass is what failed loads leak
    size_t heap_before = 0, attempts = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            heap_before = s_heap_in_use ();
        attempts = s_damage_all (damaged, bytes, size, copy, header_end);
    }
    size_t heap_after = s_heap_in_use ();
    if (heap_before && heap_after > heap_before + 16384)
        fail_msg ("%zu failed loads left %zu more heap bytes in use", attempts,
                  heap_after - heap_before);
    //  a failed load leaves the file alone
    size_t still;
    uint8_t *left = s_read_whole (damaged, &still);
    free (left);
    assert_int_equal (still, 64);

    free (copy);
    free (bytes);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
    free (damaged);
    free (path);
    zcq_test_rmdir (&dir);
}

//  --------------------------------------------------------------------------
//  Hand-built snapshot files (DESIGN 1 of viewsnap.c) with a valid checksum

static void
s_be32 (zcq_writer_t *writer, uint32_t value)
{
    uint8_t bytes[4] = { (uint8_t) (value >> 24), (uint8_t) (value >> 16), (uint8_t) (value >> 8),
                         (uint8_t) value };
    zcq_writer_raw (writer, bytes, 4);
}

//  [be32 key length][key][be32 row length][row]
static void
s_raw_row (zcq_writer_t *rows, const char *key, size_t key_len, const void *row, size_t row_len)
{
    s_be32 (rows, (uint32_t) key_len);
    zcq_writer_raw (rows, key, key_len);
    s_be32 (rows, (uint32_t) row_len);
    zcq_writer_raw (rows, row, row_len);
}

//  A row {"status": status, "amount": amount} under key.
static void
s_map_row (zcq_writer_t *rows, const char *key, const char *status, int64_t amount)
{
    zcq_writer_t *row = zcq_writer_new ();
    s_write_row (row, status, amount);
    s_raw_row (rows, key, strlen (key), zcq_writer_data (row), zcq_writer_size (row));
    zcq_writer_destroy (&row);
}

static void
s_header_map (zcq_writer_t *header, const char *view, uint64_t version, uint64_t rows)
{
    zcq_writer_reset (header);
    zcq_writer_map (header, 5);
    zcq_writer_str (header, "view");
    zcq_writer_str (header, view);
    zcq_writer_str (header, "version");
    zcq_writer_uint (header, version);
    zcq_writer_str (header, "position");
    zcq_writer_uint (header, 500);
    zcq_writer_str (header, "check");
    zcq_writer_uint (header, 600);
    zcq_writer_str (header, "rows");
    zcq_writer_uint (header, rows);
}

//  Write magic, header (its be32 length given, or the real one when 0),
//  rows and a valid checksum to path.
static void
s_build_with (const char *path, const char *magic, const zcq_writer_t *header, uint32_t header_len,
              const zcq_writer_t *rows)
{
    zcq_writer_t *file = zcq_writer_new ();
    zcq_writer_raw (file, magic, 8);
    s_be32 (file, header_len ? header_len : (uint32_t) zcq_writer_size (header));
    zcq_writer_raw (file, zcq_writer_data (header), zcq_writer_size (header));
    if (rows)
        zcq_writer_raw (file, zcq_writer_data (rows), zcq_writer_size (rows));
    uint64_t checksum = s_test_checksum (zcq_writer_data (file), zcq_writer_size (file));
    uint8_t trailer[8];
    for (int index = 0; index < 8; index++)
        trailer[index] = (uint8_t) (checksum >> (56 - 8 * index));
    zcq_writer_raw (file, trailer, 8);
    assert_true (zcq_writer_ok (file));
    s_write_whole (path, zcq_writer_data (file), zcq_writer_size (file));
    zcq_writer_destroy (&file);
}

static void
s_build (const char *path, const zcq_writer_t *header, const zcq_writer_t *rows)
{
    s_build_with (path, "ZCQVIEW1", header, 0, rows);
}

static void
test_viewsnap_hand_built (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-hand");
    char *path = s_path (dir, "accounts.snap");
    const char *indexes[] = { "status", NULL };
    zcq_writer_t *header = zcq_writer_new ();
    zcq_writer_t *rows = zcq_writer_new ();
    zcq_writer_t *row = zcq_writer_new ();
    char error[512];
    zcq_viewsnap_t snap;
    zcq_viewtable_t *loaded = NULL;

    //  the control: a well-formed file loads, so the format and the
    //  checksum copy above are right ("a" sorts before "ab", "" first)
    s_header_map (header, "accounts", 3, 4);
    s_map_row (rows, "", "open", 0);
    s_map_row (rows, "a", "open", 1);
    s_map_row (rows, "ab", "closed", 2);
    s_map_row (rows, "b", "open", 3);
    s_build (path, header, rows);
    zcq_err_t err
        = zcq_viewtable_load (&loaded, indexes, path, "accounts", &snap, error, sizeof error);
    if (err != ZCQ_OK)
        fail_msg ("the hand-built control file does not load: %s", error);
    assert_int_equal (snap.version, 3);
    assert_int_equal (snap.position, 500);
    assert_int_equal (snap.check, 600);
    assert_int_equal (zcq_viewtable_count (loaded), 4);
    assert_int_equal (s_count_status (loaded, "open"), 3);
    assert_int_equal (s_get_amount (loaded, "ab", 2), 2);
    assert_int_equal (s_get_amount (loaded, "", 0), 0);
    zcq_viewtable_destroy (&loaded);

    //  the same view name under another: INVALID, not CORRUPT
    s_header_map (header, "totals", 3, 4);
    s_build (path, header, rows);
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, path, "accounts", &snap, error, sizeof error),
        ZCQ_INVALID);
    assert_null (loaded);

    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    size_t heap_before = s_heap_in_use ();
    //  keys out of order, a key twice, a prefix after its extension
    static const char *const bad_orders[][2]
        = { { "b", "a" }, { "a", "a" }, { "ab", "a" }, { "a", "" }, { "\xff", "\x01" } };
    for (size_t index = 0; index < sizeof bad_orders / sizeof bad_orders[0]; index++) {
        zcq_writer_reset (rows);
        s_map_row (rows, "0", "open", 0);
        s_map_row (rows, bad_orders[index][0], "open", 1);
        s_map_row (rows, bad_orders[index][1], "open", 2);
        s_map_row (rows, "\xff\xff", "open", 3);
        s_header_map (header, "accounts", 1, 4);
        s_build (path, header, rows);
        s_assert_corrupt (path, "keys out of order", index);
    }

    //  rows that are not one well-formed map
    static const struct {
        const char *bytes;
        size_t len;
    } bad_rows[] = {
        { "", 0 },         //  empty
        { "\x05", 1 },     //  an integer
        { "\x91\x01", 2 }, //  an array
        { "\xa3"
          "abc",
          4 },                       //  a string
        { "\xc0", 1 },               //  nil
        { "\x81\xa1x", 3 },          //  a map without its value
        { "\x81\xa1x\x01\xc0", 5 },  //  a map, then a byte more
        { "\x82\xa1x\x01", 4 },      //  a map with a pair missing
        { "\xde\x00\x01\xa1x", 5 },  //  map16 without its value
        { "\x81\xa1x\xd9\x10x", 6 }, //  a value running past the row
        { "\x81\xa1x\xc1", 4 },      //  the never-used byte
    };
    for (size_t index = 0; index < sizeof bad_rows / sizeof bad_rows[0]; index++) {
        zcq_writer_reset (rows);
        s_map_row (rows, "a", "open", 1);
        s_raw_row (rows, "b", 1, bad_rows[index].bytes, bad_rows[index].len);
        s_map_row (rows, "c", "open", 3);
        s_header_map (header, "accounts", 1, 3);
        s_build (path, header, rows);
        s_assert_corrupt (path, "a row that is not a map", index);
    }

    //  counts and lengths that do not match the bytes
    zcq_writer_reset (rows);
    s_map_row (rows, "a", "open", 1);
    s_map_row (rows, "b", "open", 2);
    static const uint64_t bad_counts[] = { 0, 1, 3, 4, 1000, 1ULL << 40, UINT64_MAX };
    for (size_t index = 0; index < sizeof bad_counts / sizeof bad_counts[0]; index++) {
        s_header_map (header, "accounts", 1, bad_counts[index]);
        s_build (path, header, rows);
        s_assert_corrupt (path, "a row count that does not match", index);
    }
    s_header_map (header, "accounts", 1, 2);
    static const uint32_t bad_lengths[] = { 2, 100, 0x7fffffff, 0xffffffff, 0xfffffffc };
    for (size_t index = 0; index < sizeof bad_lengths / sizeof bad_lengths[0]; index++) {
        for (int which = 0; which < 2; which++) {
            //  "a" with its key or row length wrong, then "b"
            zcq_writer_reset (rows);
            s_write_row (row, "open", 1);
            s_be32 (rows, which ? 1 : bad_lengths[index]);
            zcq_writer_raw (rows, "a", 1);
            s_be32 (rows, which ? bad_lengths[index] : (uint32_t) zcq_writer_size (row));
            zcq_writer_raw (rows, zcq_writer_data (row), zcq_writer_size (row));
            s_map_row (rows, "b", "open", 2);
            s_build (path, header, rows);
            s_assert_corrupt (
                path, which ? "a row length past the end" : "a key length past the end", index);
        }
    }
    //  a last row cut short: 4 bytes of key length and nothing else
    zcq_writer_reset (rows);
    s_map_row (rows, "a", "open", 1);
    s_be32 (rows, 1);
    s_build (path, header, rows);
    s_assert_corrupt (path, "a row cut short", 0);

    //  headers: not a map, a field missing or ill-typed, too long, past
    //  the end, a length that covers bytes after the map
    zcq_writer_reset (rows);
    s_map_row (rows, "a", "open", 1);
    zcq_writer_reset (header);
    zcq_writer_array (header, 1);
    zcq_writer_int (header, 1);
    s_build (path, header, rows);
    s_assert_corrupt (path, "a header that is not a map", 0);
    static const char *const fields[] = { "view", "version", "position", "check", "rows" };
    for (size_t skip = 0; skip < 5; skip++) {
        for (int typed = 0; typed < 2; typed++) {
            zcq_writer_reset (header);
            zcq_writer_map (header, typed ? 5 : 4);
            for (size_t field = 0; field < 5; field++) {
                if (field == skip && !typed)
                    continue;
                zcq_writer_str (header, fields[field]);
                if (field == skip)
                    zcq_writer_int (header, field == 0 ? 1 : -1); //  ill-typed
                else if (field == 0)
                    zcq_writer_str (header, "accounts");
                else
                    zcq_writer_uint (header, field == 4 ? 1 : 10);
            }
            s_build (path, header, rows);
            s_assert_corrupt (path, typed ? "an ill-typed header field" : "a missing header field",
                              skip);
        }
    }
    s_header_map (header, "accounts", 1ULL << 32, 1);
    s_build (path, header, rows);
    s_assert_corrupt (path, "a version past 32 bits", 0);
    s_header_map (header, "accounts", 1, 1);
    s_build_with (path, "ZCQVIEW3", header, 0, rows);
    s_assert_corrupt (path, "another magic", 0);
    //  format 2 (a cluster-wide view's) without its cluster and positions
    s_build_with (path, "ZCQVIEW2", header, 0, rows);
    s_assert_corrupt (path, "a format 2 header without positions", 0);
    s_build_with (path, "ZCQVIEW1", header, (uint32_t) zcq_writer_size (header) + 1, rows);
    s_assert_corrupt (path, "a header length one past its map", 0);
    s_build_with (path, "ZCQVIEW1", header, (uint32_t) zcq_writer_size (header) - 1, rows);
    s_assert_corrupt (path, "a header length one short", 0);
    s_build_with (path, "ZCQVIEW1", header, 0xffffffff, rows);
    s_assert_corrupt (path, "a header length past the end", 0);
    //  a header longer than 4096 bytes (a long view name)
    char *long_name = malloc (5000);
    memset (long_name, 'v', 4999);
    long_name[4999] = 0;
    s_header_map (header, long_name, 1, 1);
    s_build (path, header, rows);
    err = zcq_viewtable_load (&loaded, indexes, path, long_name, &snap, error, sizeof error);
    assert_int_equal (err, ZCQ_CORRUPT);
    assert_null (loaded);
    //  ... which zcq_viewtable_save refuses to write in the first place
    zcq_viewsnap_t saved = { .version = 1, .position = 1, .check = 1 };
    assert_int_not_equal (zcq_viewtable_save (table, path, long_name, &saved, error, sizeof error),
                          ZCQ_OK);
    free (long_name);
    size_t heap_after = s_heap_in_use ();
    if (heap_before && heap_after > heap_before + 16384)
        fail_msg ("failed loads of hand-built files left %zu more heap bytes in use",
                  heap_after - heap_before);

    //  the header's numbers keep all their bits
    saved = (zcq_viewsnap_t) { .version = UINT32_MAX,
                               .position = UINT64_MAX,
                               .check = UINT64_MAX - 1 };
    assert_int_equal (zcq_viewtable_save (table, path, "accounts", &saved, error, sizeof error),
                      ZCQ_OK);
    assert_int_equal (
        zcq_viewtable_load (&loaded, indexes, path, "accounts", &snap, error, sizeof error),
        ZCQ_OK);
    assert_int_equal (snap.version, UINT32_MAX);
    assert_true (snap.position == UINT64_MAX);
    assert_true (snap.check == UINT64_MAX - 1);
    zcq_viewtable_destroy (&loaded);

    zcq_viewtable_destroy (&table);
    zcq_writer_destroy (&row);
    zcq_writer_destroy (&rows);
    zcq_writer_destroy (&header);
    free (path);
    zcq_test_rmdir (&dir);
}

//  Saving where it cannot: an error (not a crash), and nothing left behind.
static void
test_viewsnap_save_errors (void **state)
{
    char *dir = zcq_test_dir ("viewsnap-save");
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_put (table, writer, "k", "open", 1);
    zcq_viewsnap_t snap = { .version = 1, .position = 2, .check = 3 };
    char error[512] = "";

    //  a directory that does not exist
    char *missing = s_path (dir, "no-such-dir/accounts.snap");
    assert_int_not_equal (
        zcq_viewtable_save (table, missing, "accounts", &snap, error, sizeof error), ZCQ_OK);
    assert_true (strlen (error) > 0);
    char *missing_dir = s_path (dir, "no-such-dir");
    assert_int_equal (access (missing_dir, F_OK), -1);

    //  a directory where the file should go: the rename fails, and the
    //  temporary file is removed
    char *blocked = s_path (dir, "blocked.snap");
    assert_int_equal (mkdir (blocked, 0755), 0);
    char *inside = s_path (blocked, "keep");
    s_write_whole (inside, "x", 1);
    error[0] = 0;
    assert_int_not_equal (
        zcq_viewtable_save (table, blocked, "accounts", &snap, error, sizeof error), ZCQ_OK);
    assert_true (strlen (error) > 0);
    char *temporary = s_path (dir, "blocked.snap.tmp");
    assert_int_equal (access (temporary, F_OK), -1);
    //  what was there is untouched
    assert_int_equal (access (inside, F_OK), 0);

    //  nothing in dir but the blocking directory
    DIR *listing = opendir (dir);
    assert_non_null (listing);
    struct dirent *entry;
    while ((entry = readdir (listing)))
        if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..")
            && strcmp (entry->d_name, "blocked.snap"))
            fail_msg ("a file was left behind: %s", entry->d_name);
    closedir (listing);

    free (temporary);
    free (inside);
    free (blocked);
    free (missing_dir);
    free (missing);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
    zcq_test_rmdir (&dir);
}

//  --------------------------------------------------------------------------
//  Rows as records: what goes in comes out byte for byte

//  Put row at key, read it back by get and by a page: the same bytes.
static void
s_assert_round_trip (zcq_viewtable_t *table, const void *row, size_t row_len)
{
    assert_int_equal (zcq_viewtable_put (table, "r", 1, row, row_len), ZCQ_OK);
    size_t got_len = 0;
    const void *got = zcq_viewtable_get (table, "r", 1, &got_len);
    assert_non_null (got);
    assert_int_equal (got_len, row_len);
    if (row_len)
        assert_memory_equal (got, row, row_len);
    zcq_writer_t *dump = zcq_writer_new ();
    zcq_viewtable_list (table, NULL, 0, 10, s_dump_row, dump, NULL);
    zcq_writer_t *expect = zcq_writer_new ();
    s_dump_row (expect, "r", 1, row, row_len);
    assert_int_equal (zcq_writer_size (dump), zcq_writer_size (expect));
    assert_memory_equal (zcq_writer_data (dump), zcq_writer_data (expect), zcq_writer_size (dump));
    zcq_writer_destroy (&expect);
    zcq_writer_destroy (&dump);
    assert_true (zcq_viewtable_delete (table, "r", 1));
}

static void
test_viewtable_rows_as_records (void **state)
{
    const char *indexes[] = { "kind", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();

    //  every scalar, at every width the writer picks, and values that stay
    //  encoded (binaries, ext, arrays, maps, float32)
    static const int64_t numbers[]
        = { 0,         1,  127, 128, 255,  256,  65535,  65536,  4294967295LL,  4294967296LL,
            INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769, -2147483648LL, -2147483649LL,
            INT64_MIN };
    zcq_writer_map (writer, 13 + sizeof numbers / sizeof numbers[0]);
    for (size_t index = 0; index < sizeof numbers / sizeof numbers[0]; index++) {
        char name[8];
        snprintf (name, sizeof name, "n%zu", index);
        zcq_writer_str (writer, name);
        zcq_writer_int (writer, numbers[index]);
    }
    zcq_writer_str (writer, "nil");
    zcq_writer_nil (writer);
    zcq_writer_str (writer, "yes");
    zcq_writer_bool (writer, true);
    zcq_writer_str (writer, "no");
    zcq_writer_bool (writer, false);
    zcq_writer_str (writer, "big");
    zcq_writer_uint (writer, UINT64_MAX);
    zcq_writer_str (writer, "float");
    zcq_writer_float (writer, -1.25);
    zcq_writer_str (writer, "float32");
    zcq_writer_raw (writer, "\xca\x3f\xc0\x00\x00", 5);
    zcq_writer_str (writer, "empty");
    zcq_writer_str (writer, "");
    zcq_writer_str (writer, "long");
    char text[70000];
    memset (text, 't', sizeof text - 1);
    text[sizeof text - 1] = 0;
    zcq_writer_str (writer, text);
    zcq_writer_str (writer, "r"); //  equal to the key
    zcq_writer_str (writer, "r");
    zcq_writer_str (writer, "bin");
    zcq_writer_bin (writer, "\x00\x01", 2);
    zcq_writer_str (writer, "ext");
    zcq_writer_raw (writer, "\xd4\x01\x02", 3);
    zcq_writer_str (writer, "nested");
    zcq_test_write_typed (writer, "D:4");
    zcq_writer_str (writer, "map");
    zcq_test_write_typed (writer, "m:");
    assert_true (zcq_writer_ok (writer));
    s_assert_round_trip (table, zcq_writer_data (writer), zcq_writer_size (writer));

    //  maps a record could not give back as they are stay their bytes:
    //  headers and key strings wider than needed, and the like
    static const struct {
        const char *bytes;
        size_t len;
    } exact[] = {
        { "\xde\x00\x01\xa1k\x01", 6 },                          //  map16 of one entry
        { "\xdf\x00\x00\x00\x01\xa1k\x01", 8 },                  //  map32 of one entry
        { "\x81\xd9\x01k\x01", 5 },                              //  str8 key
        { "\x81\xa1k\xd3\x00\x00\x00\x00\x00\x00\x00\x05", 12 }, //  int64 5
        { "\x81\xa1k\xcd\x00\x07", 6 },                          //  uint16 7
        { "\x81\xa1k\xd9\x02"
          "ab",
          6 },                                        //  str8 value
        { "\x82\x05\xa1v\x93\x01\x02\x03\xa1w", 10 }, //  an int and an array as keys
        { "\x82\xa1k\x01\xa1k\x02", 7 },              //  a key twice
        { "\x80", 1 },                                //  empty
        { "\x93\x01\x02\x03", 4 },                    //  not a map
        { "\x81\xa1k", 3 },                           //  truncated
        { "\xc1", 1 },                                //  not MessagePack
        { "\x81\xa1k\x01\x01", 5 },                   //  trailing bytes
        { "", 0 },
    };
    for (size_t index = 0; index < sizeof exact / sizeof exact[0]; index++)
        s_assert_round_trip (table, exact[index].bytes, exact[index].len);

    //  an indexed value finds the row however wide its encoding
    zcq_writer_t *value = zcq_writer_new ();
    zcq_writer_int (value, 7);
    assert_int_equal (zcq_viewtable_put (table, "a", 1, "\x81\xa4kind\xcd\x00\x07", 9), ZCQ_OK);
    assert_int_equal (zcq_viewtable_put (table, "b", 1, "\x81\xa4kind\x07", 7), ZCQ_OK);
    assert_int_equal (
        zcq_viewtable_put (table, "c", 1, "\x81\xa4kind\xd3\x00\x00\x00\x00\x00\x00\x00\x07", 15),
        ZCQ_OK);
    assert_int_equal (
        zcq_viewtable_count_value (table, "kind", zcq_writer_data (value), zcq_writer_size (value)),
        3);
    //  and a string that is not UTF-8 is not an index value
    assert_int_equal (zcq_viewtable_put (table, "d", 1, "\x81\xa4kind\xa2\xc3\x28", 9), ZCQ_OK);
    assert_int_equal (zcq_viewtable_put (table, "e", 1, "\x81\xa4kind\xa2\xc3\xa9", 9), ZCQ_OK);
    zcq_writer_reset (value);
    zcq_writer_strn (value, "\xc3\x28", 2);
    assert_int_equal (
        zcq_viewtable_count_value (table, "kind", zcq_writer_data (value), zcq_writer_size (value)),
        0);
    zcq_writer_reset (value);
    zcq_writer_strn (value, "\xc3\xa9", 2);
    assert_int_equal (
        zcq_viewtable_count_value (table, "kind", zcq_writer_data (value), zcq_writer_size (value)),
        1);
    zcq_writer_destroy (&value);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

//  A record is encoded when read, and that encoding kept until it changes.
static void
test_viewtable_encoding_kept_until_change (void **state)
{
    const char *indexes[] = { "status", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_put (table, writer, "a", "open", 1);
    s_page_t page = { 0 };
    bool more;
    assert_int_equal (s_count_status (table, "open"), 1); //  (orders the table)
    size_t held = zcq_viewtable_memory (table);
    size_t len;
    const void *first = zcq_viewtable_get (table, "a", 1, &len);
    assert_int_equal (len, zcq_writer_size (writer));
    assert_memory_equal (first, zcq_writer_data (writer), len);
    //  the encoding is counted while kept, and the next read is the same
    assert_int_equal (zcq_viewtable_memory (table), held + len);
    assert_ptr_equal (zcq_viewtable_get (table, "a", 1, &len), first);
    assert_int_equal (s_list (table, NULL, 10, &page, &more), 1);
    assert_int_equal (s_amount (page.last_row, page.last_row_len), 1);

    //  a change drops it: every read sees the new row
    s_put (table, writer, "a", "open", 2);
    assert_int_equal (zcq_viewtable_memory (table), held);
    assert_int_equal (s_get_amount (table, "a", 1), 2);
    assert_int_equal (s_list (table, NULL, 10, &page, &more), 1);
    assert_int_equal (s_amount (page.last_row, page.last_row_len), 2);
    assert_int_equal (s_list_status (table, "open", NULL, 10, &page, &more), 1);
    assert_int_equal (s_amount (page.last_row, page.last_row_len), 2);
    //  and a change of its size as well
    s_put (table, writer, "a", "closed", -70000);
    assert_int_equal (s_get_amount (table, "a", 1), -70000);
    assert_int_equal (s_list_status (table, "closed", NULL, 10, &page, &more), 1);
    assert_int_equal (s_amount (page.last_row, page.last_row_len), -70000);
    //  a delete takes it with the row
    assert_true (zcq_viewtable_delete (table, "a", 1));
    assert_int_equal (zcq_viewtable_count (table), 0);
    s_page_free (&page);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

//  --------------------------------------------------------------------------
//  Rows in bulk: a new table sorts its rows at its first ordered read

#define S_BULK_ROWS 20000

//  A key of 0 to 80 bytes from 4 letters (0x00, 'a', 'b', 0xff): long
//  common prefixes, keys that end in zeros or prefix each other.
static void
s_bulk_key (uint64_t *seed, s_key_t *key)
{
    static const char letters[] = { 0x00, 'a', 'b', (char) 0xff };
    size_t len = zcq_test_next (seed) % 4 == 0 ? zcq_test_next (seed) % 81
                                               : 10 + zcq_test_next (seed) % 12;
    if (len > S_KEY_MAX)
        len = S_KEY_MAX;
    for (size_t index = 0; index < len; index++)
        key->bytes[index]
            = index < 12 && zcq_test_next (seed) % 3 ? 'a' : letters[zcq_test_next (seed) % 4];
    key->len = len;
}

static void
s_check_bulk (zcq_viewtable_t *table, s_key_t *keys, int *groups, size_t count)
{
    //  the model: the present keys, sorted
    s_key_t *sorted = malloc (count * sizeof (s_key_t));
    size_t present = 0;
    for (size_t index = 0; index < count; index++)
        if (groups[index] >= 0)
            sorted[present++] = keys[index];
    qsort (sorted, present, sizeof (s_key_t), s_key_compare);
    s_page_t page = { 0 };
    bool more;
    assert_int_equal (s_list (table, NULL, SIZE_MAX, &page, &more), present);
    assert_int_equal (zcq_viewtable_count (table), present);
    for (size_t index = 0; index < present; index++)
        assert_int_equal (s_key_compare (&page.keys[index], &sorted[index]), 0);
    //  by index: each group's keys in order, and its count
    zcq_writer_t *value = zcq_writer_new ();
    for (int group = 0; group < 4; group++) {
        zcq_writer_reset (value);
        zcq_writer_int (value, group);
        size_t expect = 0;
        for (size_t index = 0; index < count; index++)
            expect += groups[index] == group;
        s_page_reset (&page);
        size_t given = zcq_viewtable_list_value (table, "group", zcq_writer_data (value),
                                                 zcq_writer_size (value), NULL, 0, SIZE_MAX,
                                                 s_collect, &page, &more);
        assert_int_equal (given, expect);
        assert_int_equal (zcq_viewtable_count_value (table, "group", zcq_writer_data (value),
                                                     zcq_writer_size (value)),
                          expect);
        for (size_t index = 1; index < given; index++)
            assert_true (s_key_compare (&page.keys[index - 1], &page.keys[index]) < 0);
    }
    zcq_writer_destroy (&value);
    s_page_free (&page);
    free (sorted);
}

static void
test_viewtable_bulk_order (void **state)
{
    const char *indexes[] = { "group", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_writer_t *writer = zcq_writer_new ();
    s_key_t *keys = calloc (S_BULK_ROWS, sizeof (s_key_t));
    int *groups = malloc (S_BULK_ROWS * sizeof (int));
    uint64_t seed = 0xb01cULL;
    //  distinct keys, put in no order; some replaced, some deleted and put
    //  again, before anything is read
    size_t count = 0;
    while (count < S_BULK_ROWS) {
        s_bulk_key (&seed, &keys[count]);
        bool seen = false;
        for (size_t other = count > 64 ? count - 64 : 0; other < count && !seen; other++)
            seen = s_key_compare (&keys[other], &keys[count]) == 0;
        if (seen || zcq_viewtable_get (table, keys[count].bytes, keys[count].len, &(size_t) { 0 }))
            continue;
        groups[count] = (int) (zcq_test_next (&seed) % 4);
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 2);
        zcq_writer_str (writer, "group");
        zcq_writer_int (writer, groups[count]);
        zcq_writer_str (writer, "n");
        zcq_writer_uint (writer, count);
        assert_int_equal (zcq_viewtable_put (table, keys[count].bytes, keys[count].len,
                                             zcq_writer_data (writer), zcq_writer_size (writer)),
                          ZCQ_OK);
        count++;
    }
    for (size_t index = 0; index < count; index += 7) {
        assert_true (zcq_viewtable_delete (table, keys[index].bytes, keys[index].len));
        groups[index] = -1;
    }
    for (size_t index = 0; index < count; index += 21) {
        groups[index] = 3;
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 1);
        zcq_writer_str (writer, "group");
        zcq_writer_int (writer, 3);
        assert_int_equal (zcq_viewtable_put (table, keys[index].bytes, keys[index].len,
                                             zcq_writer_data (writer), zcq_writer_size (writer)),
                          ZCQ_OK);
    }
    //  a snapshot of the table as it stands orders it first
    char *dir = zcq_test_dir ("viewtable-bulk");
    char *path = s_path (dir, "bulk.snap");
    const char *snap_indexes[] = { "group", NULL };
    zcq_viewtable_t *loaded = s_round_trip (table, snap_indexes, path);
    //  the first read orders the rows and builds the index
    s_check_bulk (table, keys, groups, count);
    s_check_bulk (loaded, keys, groups, count);
    //  from then on every change keeps them as it goes
    for (size_t index = 3; index < count; index += 5) {
        if (groups[index] >= 0) {
            assert_true (zcq_viewtable_delete (table, keys[index].bytes, keys[index].len));
            groups[index] = -1;
        }
        else {
            groups[index] = 1;
            zcq_writer_reset (writer);
            zcq_writer_map (writer, 1);
            zcq_writer_str (writer, "group");
            zcq_writer_int (writer, 1);
            assert_int_equal (zcq_viewtable_put (table, keys[index].bytes, keys[index].len,
                                                 zcq_writer_data (writer),
                                                 zcq_writer_size (writer)),
                              ZCQ_OK);
        }
    }
    s_check_bulk (table, keys, groups, count);

    //  a count by value is an ordered read too; so is a page of one
    zcq_viewtable_t *fresh = zcq_viewtable_new (indexes);
    for (size_t index = 0; index < 100; index++) {
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 1);
        zcq_writer_str (writer, "group");
        zcq_writer_int (writer, (int64_t) (index % 2));
        char key[8];
        snprintf (key, sizeof key, "%03zu", 99 - index);
        assert_int_equal (
            zcq_viewtable_put (fresh, key, 3, zcq_writer_data (writer), zcq_writer_size (writer)),
            ZCQ_OK);
    }
    zcq_writer_reset (writer);
    zcq_writer_int (writer, 1);
    assert_int_equal (zcq_viewtable_count_value (fresh, "group", zcq_writer_data (writer),
                                                 zcq_writer_size (writer)),
                      50);
    s_page_t page = { 0 };
    bool more;
    assert_int_equal (s_list (fresh, NULL, 1, &page, &more), 1);
    assert_true (s_key_is (&page.keys[0], "000"));
    assert_true (more);
    s_page_free (&page);

    zcq_viewtable_destroy (&fresh);
    zcq_viewtable_destroy (&loaded);
    zcq_test_rmdir (&dir);
    free (path);
    free (keys);
    free (groups);
    zcq_writer_destroy (&writer);
    zcq_viewtable_destroy (&table);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_viewtable_walkthrough),
        cmocka_unit_test (test_viewtable_put_get_delete),
        cmocka_unit_test (test_viewtable_key_order),
        cmocka_unit_test (test_viewtable_list_edges),
        cmocka_unit_test (test_viewtable_index_follows_rows),
        cmocka_unit_test (test_viewtable_index_pages),
        cmocka_unit_test (test_viewtable_index_value_types),
        cmocka_unit_test (test_viewtable_read_inside_callback),
        cmocka_unit_test (test_viewtable_random_against_model),
        cmocka_unit_test (test_viewtable_memory),
        cmocka_unit_test (test_viewtable_distinct_values_are_released),
        cmocka_unit_test (test_viewtable_rows_as_records),
        cmocka_unit_test (test_viewtable_encoding_kept_until_change),
        cmocka_unit_test (test_viewtable_bulk_order),
        cmocka_unit_test (test_viewsnap_round_trip),
        cmocka_unit_test (test_viewsnap_positions),
        cmocka_unit_test (test_viewsnap_empty),
        cmocka_unit_test (test_viewsnap_large),
        cmocka_unit_test (test_viewsnap_missing_and_other_view),
        cmocka_unit_test (test_viewsnap_damaged),
        cmocka_unit_test (test_viewsnap_hand_built),
        cmocka_unit_test (test_viewsnap_save_errors),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
