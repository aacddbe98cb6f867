/*  fuzz_event_read: event bodies read where they lie (engine/event.c), as
    a view host reads the log and a catch-up subscription reads the
    network, and rows taken as records (engine/view.c).

    For every input:
    1.  zcq_event_read on an exact-size copy of the bytes (ASan sees any
        read past them), against the decoding path (zcq_doc_decode_trusted
        + zcq_event_parse, for bytes whose structure holds: msgpack-c trusts
        counts): both read the body or neither does (a body msgpack-c cannot
        decode is not an event either), and when they do,
        every accessor agrees, the payload read in place (zcq_event_int,
        zcq_event_str for each data field) as much as the decoded one.
    2.  zcq_mp_skip and zcq_mp_find on the bytes stay inside them.
    3.  The bytes put as a row come back byte for byte (a record gives
        back what it took, or the row stays bytes); a handler's fields
        merged into it give a row whose bytes decode, or a refusal.
*/
#include "fuzz_common.h"
#include "zcq_internal.h"
#include <string.h>

static zcq_doc_t *s_doc;
static zcq_event_t s_read;
static zcq_event_t s_parsed;
static zcq_viewtable_t *s_table;
static zcq_fields_t *s_fields;

static void
s_cleanup (void)
{
    zcq_doc_destroy (&s_doc);
    zcq_event_release (&s_read);
    zcq_event_release (&s_parsed);
    zcq_viewtable_destroy (&s_table);
    zcq_fields_destroy (&s_fields);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    zsys_handler_set (NULL);
    s_doc = zcq_doc_new ();
    const char *indexes[] = { "owner", NULL };
    s_table = zcq_viewtable_new (indexes);
    s_fields = zcq_fields_new ();
    atexit (s_cleanup);
    return 0;
}

static void
s_event_path (const uint8_t *bytes, size_t size)
{
    zcq_err_t in_place = zcq_event_read (&s_read, bytes, size);
    //  msgpack-c trusts counts (the node decodes only its own bytes that
    //  way): only bytes whose structure holds go to it
    zcq_mp_t whole = { bytes, bytes + size };
    if (!zcq_mp_skip (&whole, 0) || whole.cursor != whole.end) {
        FUZZ_ASSERT (in_place == ZCQ_CORRUPT, "not one MessagePack value, yet read");
        return;
    }
    zcq_err_t decoded = zcq_doc_decode_trusted (s_doc, bytes, size) == ZCQ_OK
                          ? zcq_event_parse (&s_parsed, zcq_doc_root (s_doc))
                          : ZCQ_CORRUPT;
    FUZZ_ASSERT (in_place == decoded, "read in place: %s, decoded: %s", zcq_strerror (in_place),
                 zcq_strerror (decoded));
    uint64_t position;
    if (zcq_event_position_of (bytes, size, &position) && in_place == ZCQ_OK)
        FUZZ_ASSERT (position == zcq_event_position (&s_read), "position at its offset");
    if (in_place != ZCQ_OK)
        return;
    const zcq_event_t *read = &s_read, *parsed = &s_parsed;
    FUZZ_ASSERT (zcq_event_position (read) == zcq_event_position (parsed), "position");
    FUZZ_ASSERT (zcq_event_version (read) == zcq_event_version (parsed), "version");
    FUZZ_ASSERT (zcq_event_time (read) == zcq_event_time (parsed), "time");
    FUZZ_ASSERT (strcmp (zcq_event_type (read), zcq_event_type (parsed)) == 0, "type");
    FUZZ_ASSERT (strcmp (zcq_event_key (read), zcq_event_key (parsed)) == 0, "key");
    FUZZ_ASSERT (strcmp (zcq_event_stream (read), zcq_event_stream (parsed)) == 0, "stream");
    FUZZ_ASSERT (strcmp (zcq_event_aggregate (read), zcq_event_aggregate (parsed)) == 0,
                 "aggregate");
    FUZZ_ASSERT (strcmp (zcq_event_command_id (read), zcq_event_command_id (parsed)) == 0,
                 "command");
    FUZZ_ASSERT (strcmp (zcq_event_node (read), zcq_event_node (parsed)) == 0, "node");
    //  the payload in place, field by field, as the decoded one has it
    const zcq_value_t *payload = zcq_event_data (parsed);
    for (size_t index = 0; index < zcq_value_size (payload) && index < 64; index++) {
        char name[128];
        if (!zcq_value_copy_str (zcq_value_key_at (payload, index), name, sizeof name))
            continue;
        FUZZ_ASSERT (zcq_event_int (read, name, 12345) == zcq_event_int (parsed, name, 12345),
                     "data.%s as an integer", name);
        FUZZ_ASSERT (strcmp (zcq_event_str (read, name), zcq_event_str (parsed, name)) == 0,
                     "data.%s as a string", name);
    }
    FUZZ_ASSERT (zcq_event_int (read, "amount", 7) == zcq_event_int (parsed, "amount", 7),
                 "amount");
    //  and decoded on demand, the same values
    FUZZ_ASSERT (zcq_value_equal (zcq_event_data (read), zcq_event_data (parsed)), "data");
    FUZZ_ASSERT (zcq_value_equal (zcq_event_meta (read), zcq_event_meta (parsed)), "meta");
    FUZZ_ASSERT (zcq_value_equal (zcq_event_body (read), zcq_event_body (parsed)), "body");
}

static void
s_reader_path (const uint8_t *bytes, size_t size)
{
    zcq_mp_t reader = { bytes, bytes + size };
    if (zcq_mp_skip (&reader, 0))
        FUZZ_ASSERT (reader.cursor <= reader.end, "skip past the end");
    reader.cursor = bytes;
    if (zcq_mp_find (&reader, "data", 4)) {
        zcq_mp_item_t item;
        FUZZ_ASSERT (reader.cursor <= reader.end, "find past the end");
        zcq_mp_read (&reader, &item);
    }
}

static int
s_same_row (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    FUZZ_ASSERT (row == arg, "a page gives the row's kept bytes");
    return 0;
}

static void
s_row_path (const uint8_t *bytes, size_t size)
{
    if (zcq_viewtable_put (s_table, "k", 1, bytes, size) != ZCQ_OK)
        return;
    size_t len = 0;
    const void *row = zcq_viewtable_get (s_table, "k", 1, &len);
    FUZZ_ASSERT (row && len == size && (size == 0 || memcmp (row, bytes, size) == 0),
                 "a row put comes back as it was");
    //  a handler's change: an add, a set, an unset
    zcq_fields_reset (s_fields);
    zcq_add_int (s_fields, "balance", 5);
    zcq_set_str (s_fields, "owner", "ann");
    zcq_unset (s_fields, "status");
    zcq_err_t err = zcq_viewtable_merge (s_table, "k", 1, s_fields, false);
    row = zcq_viewtable_get (s_table, "k", 1, &len);
    FUZZ_ASSERT (row, "the row is still there");
    if (err == ZCQ_OK)
        FUZZ_ASSERT (zcq_doc_decode_trusted (s_doc, row, len) == ZCQ_OK
                         && zcq_value_type (zcq_doc_root (s_doc)) == ZCQ_TYPE_MAP,
                     "a merged row is a map");
    else
        FUZZ_ASSERT (err == ZCQ_CORRUPT || err == ZCQ_INVALID, "merge: %s", zcq_strerror (err));
    //  a page gives the row's bytes as get does
    bool more;
    size_t given = zcq_viewtable_list (s_table, NULL, 0, 10, s_same_row, (void *) row, &more);
    FUZZ_ASSERT (given == 1 && !more, "a page of the one row");
    zcq_viewtable_delete (s_table, "k", 1);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  an exact-size copy: a read past the input is a read past a block
    uint8_t *bytes = malloc (size ? size : 1);
    if (size)
        memcpy (bytes, data, size);
    s_event_path (bytes, size);
    s_reader_path (bytes, size);
    s_row_path (bytes, size);
    free (bytes);
    return 0;
}
