/*  test_viewtable.c: zcq_viewtable_t, the in-memory table behind views.

    Rows by key (put, get, delete), key order in bytes, pages at their
    edges, secondary indexes (counts and pages by value, kept right as
    rows change), a long random run checked against a plain reference
    model, and the memory the table reports.
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

static uint64_t
s_next (uint64_t *seed)
{
    uint64_t x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    return x;
}

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
        s_model_row_t *row = &model[s_next (&seed) % S_KEYS];
        uint64_t dice = s_next (&seed) % 100;
        if (dice < 55 || (dice >= 80 && !row->present)) {
            //  put a new row or replace one
            row->present = true;
            row->group = (int) (s_next (&seed) % (S_GROUPS + 2)) - 2;
            if (row->group < 0)
                row->group = -1;
            row->tag = (int) (s_next (&seed) % S_TAGS);
            row->amount = (int64_t) (s_next (&seed) % 1000000) - 500000;
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
                row->group = row->group >= 0 ? -1 : (int) (s_next (&seed) % S_GROUPS);
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
    //  A bigger row (same indexed value) grows by the difference exactly
    s_write_row (writer, "open", 1 << 20);
    size_t bigger_len = zcq_writer_size (writer);
    assert_true (bigger_len > row_len);
    assert_int_equal (zcq_viewtable_put (table, "key", 3, zcq_writer_data (writer), bigger_len),
                      ZCQ_OK);
    assert_int_equal (zcq_viewtable_memory (table), one + bigger_len - row_len);
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
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
