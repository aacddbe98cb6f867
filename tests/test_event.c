/*  test_event.c: recorded events read where they lie (engine/event.c).

    The walk-through reads a body laid out as the aggregate shard writes it
    and the log writer stamps it; then the layout in any order, header
    fields absent or of other types, malformed bodies (every truncation,
    lying counts, nesting, bytes after the map: bodies come from disk and
    from the network), the payload read in place and decoded only on
    demand, and the in-place reader against the decoding one; then the
    rest of the projection path: a handler's fields merged into a row's
    record, against the merge on decoded rows it replaced.
*/
#include "testutil.h"
#include "zcq_actors.h"
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Helpers

//  The 33 bytes every body starts with, as the aggregate shard writes them
//  (zero position and time, stamped later by the log writer).
static const uint8_t s_stamps[ZCQ_EVENT_HEADER_SIZE - 1]
    = { 0xa8, 'p', 'o',  's', 'i', 't', 'i', 'o',  'n', 0xcf, 0, 0, 0, 0, 0, 0,
        0,    0,   0xa4, 't', 'i', 'm', 'e', 0xd3, 0,   0,    0, 0, 0, 0, 0, 0 };

//  A body in the node's layout (the shard's s_encode_events): data is a
//  map {owner: "ann", amount: 250}.
static void
s_write_body (zcq_writer_t *body)
{
    zcq_writer_reset (body);
    zcq_writer_map (body, ZCQ_EVENT_FIELDS);
    zcq_writer_raw (body, s_stamps, sizeof s_stamps);
    zcq_writer_str (body, "node");
    zcq_writer_str (body, "node1");
    zcq_writer_str (body, "stream");
    zcq_writer_str (body, "account/42");
    zcq_writer_str (body, "aggregate");
    zcq_writer_str (body, "account");
    zcq_writer_str (body, "key");
    zcq_writer_str (body, "42");
    zcq_writer_str (body, "version");
    zcq_writer_uint (body, 3);
    zcq_writer_str (body, "type");
    zcq_writer_str (body, "deposited");
    zcq_writer_str (body, "command");
    zcq_writer_str (body, "cmd-1");
    zcq_writer_str (body, "meta");
    zcq_writer_map (body, 1);
    zcq_writer_str (body, "user");
    zcq_writer_str (body, "u1");
    zcq_writer_str (body, "data");
    size_t mark = zcq_writer_map_open (body); //  as zcq_fields_encode: map32
    zcq_writer_str (body, "owner");
    zcq_writer_str (body, "ann");
    zcq_writer_str (body, "amount");
    zcq_writer_int (body, 250);
    zcq_writer_map_close (body, mark, 2);
    assert_true (zcq_writer_ok (body));
}

//  A copy of bytes in a block of exactly their size, so that a read past
//  the end is caught by AddressSanitizer.
static uint8_t *
s_exact (const void *bytes, size_t size)
{
    uint8_t *copy = malloc (size ? size : 1);
    assert_non_null (copy);
    if (size)
        memcpy (copy, bytes, size);
    return copy;
}

static zcq_err_t
s_read_exact (zcq_event_t *event, const void *bytes, size_t size, uint8_t **copy)
{
    *copy = s_exact (bytes, size);
    return zcq_event_read (event, *copy, size);
}

//  A body as a map of the given name, typed-value pairs (testutil's
//  notation, "s:text", "i:1"...), NULL-terminated.
static void
s_write_map (zcq_writer_t *writer, ...)
{
    va_list args;
    va_start (args, writer);
    zcq_writer_reset (writer);
    zcq_test_write_map (writer, args);
    va_end (args);
    assert_true (zcq_writer_ok (writer));
}

//  Append the entries of the map in from (not its header) to writer.
static void
s_write_entries (zcq_writer_t *writer, const zcq_writer_t *from)
{
    const uint8_t *bytes = zcq_writer_data (from);
    size_t header = bytes[0] == 0xdf ? 5 : bytes[0] == 0xde ? 3 : 1;
    zcq_writer_raw (writer, bytes + header, zcq_writer_size (from) - header);
}

#define S_HEADER                                                                             \
    "position", "i:7", "time", "i:-5", "node", "s:n", "stream", "s:a/k", "aggregate", "s:a", \
        "key", "s:k", "version", "i:1", "type", "s:t", "command", "s:c"

//  --------------------------------------------------------------------------
//  The walk-through

static void
test_event_walkthrough (void **state)
{
    zcq_writer_t *body = zcq_writer_new ();
    s_write_body (body);
    //  the log writer stamps position and time at their fixed offsets
    uint8_t *bytes = s_exact (zcq_writer_data (body), zcq_writer_size (body));
    size_t size = zcq_writer_size (body);
    zcq_put_be64 (bytes + ZCQ_EVENT_POSITION_OFFSET, 1000001);
    zcq_put_be64 (bytes + ZCQ_EVENT_TIME_OFFSET, (uint64_t) 1767225600000000LL);

    //  the position can be had without reading the body
    uint64_t position = 0;
    assert_true (zcq_event_position_of (bytes, size, &position));
    assert_int_equal (position, 1000001);

    //  one pass over the body: the header fields
    zcq_event_t event = { 0 };
    assert_int_equal (zcq_event_read (&event, bytes, size), ZCQ_OK);
    assert_int_equal (zcq_event_position (&event), 1000001);
    assert_true (zcq_event_time (&event) == 1767225600000000LL);
    assert_int_equal (zcq_event_version (&event), 3);
    assert_string_equal (zcq_event_type (&event), "deposited");
    assert_string_equal (zcq_event_stream (&event), "account/42");
    assert_string_equal (zcq_event_aggregate (&event), "account");
    assert_string_equal (zcq_event_key (&event), "42");
    assert_string_equal (zcq_event_command_id (&event), "cmd-1");
    assert_string_equal (zcq_event_node (&event), "node1");

    //  the payload, read where it lies: nothing decoded
    assert_int_equal (zcq_event_int (&event, "amount", -1), 250);
    assert_int_equal (zcq_event_int (&event, "missing", -1), -1);
    assert_int_equal (zcq_event_int (&event, "owner", -1), -1); //  a string
    assert_string_equal (zcq_event_str (&event, "owner"), "ann");
    assert_string_equal (zcq_event_str (&event, "amount"), "");
    assert_null (event.doc);

    //  as values, decoded on the first call only
    const zcq_value_t *data = zcq_event_data (&event);
    assert_non_null (data);
    assert_non_null (event.doc);
    assert_int_equal (zcq_value_get_int (data, "amount", 0), 250);
    assert_true (zcq_value_streq (zcq_value_get (zcq_event_meta (&event), "user"), "u1"));
    const zcq_value_t *whole = zcq_event_body (&event);
    assert_int_equal (zcq_value_size (whole), ZCQ_EVENT_FIELDS);
    assert_true (zcq_value_equal (zcq_value_get (whole, "data"), data));

    //  the next read forgets the decode (the event borrows its bytes)
    assert_int_equal (zcq_event_read (&event, bytes, size), ZCQ_OK);
    assert_false (event.decoded);
    assert_int_equal (zcq_event_int (&event, "amount", 0), 250);

    zcq_event_release (&event);
    free (bytes);
    zcq_writer_destroy (&body);
}

//  --------------------------------------------------------------------------
//  The layout

//  What the aggregate shard writes and the log writer stamps is the layout
//  event.c states (zcq_event_field), entry for entry.
static void
test_event_written_by_the_shard (void **state)
{
    char *dir = zcq_test_dir ("event-shard");
    zcq_store_t *store;
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    char error[256];
    assert_int_equal (zcq_store_open (&store, dir, &options, error, sizeof error), ZCQ_OK);
    zcq_config_t *config = zcq_config_new ();
    assert_int_equal (zcq_config_set (config, "shards", "1", error, sizeof error), ZCQ_OK);
    zcq_stats_t stats = { 0 };
    zcq_node_env_t env
        = { .config = config, .domain = zcq_bank_domain (), .store = store, .stats = &stats };
    zcq_shard_t *shard = zcq_shard_new (&env, 0);
    zcq_committer_t *committer = zcq_committer_new (store, &stats, 1);
    assert_non_null (shard);
    assert_non_null (committer);

    //  an `open` of account 7 by ann, decided and committed
    zcq_command_t *command = zcq_command_new ();
    snprintf (command->id_copy, sizeof command->id_copy, "open-7");
    command->id = command->id_copy;
    command->id_len = strlen (command->id);
    command->type = "open";
    command->type_len = 4;
    command->stream_len = (size_t) snprintf (command->stream, sizeof command->stream, "account/7");
    command->key = command->stream + strlen ("account/");
    command->key_len = 1;
    command->aggregate = zcq_domain_aggregate (env.domain, "account", 7);
    command->handler = zcq_domain_command (command->aggregate, "open", 4);
    zcq_writer_t *data = zcq_writer_new ();
    zcq_writer_map (data, 1);
    zcq_writer_str (data, "owner");
    zcq_writer_str (data, "ann");
    command->doc = zcq_doc_new ();
    assert_int_equal (
        zcq_doc_decode_copy (command->doc, zcq_writer_data (data), zcq_writer_size (data), NULL),
        ZCQ_OK);
    command->data = zcq_doc_root (command->doc);
    zcq_cbatch_t *batch = zcq_cbatch_new (ZCQ_BATCH_COMMANDS, 0);
    zcq_cbatch_add (batch, command);
    zcq_cbatch_t *commit, *replies;
    zcq_shard_decide (shard, &batch, &commit, &replies);
    assert_non_null (commit);
    assert_null (replies);
    zcq_committer_commit (committer, &commit, 1, 1767225600000000LL);
    assert_int_equal (command->outcome, ZCQ_OK);

    size_t offset = 0, size;
    const uint8_t *body = zcq_command_next_event (command, &offset, &size);
    assert_non_null (body);
    //  the entries, in the layout's order
    zcq_mp_t reader = { body, body + size };
    zcq_mp_item_t item;
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_MAP);
    assert_int_equal (item.len, ZCQ_EVENT_FIELDS);
    for (size_t entry = 0; entry < ZCQ_EVENT_FIELDS; entry++) {
        assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_STR);
        assert_int_equal (item.len, strlen (zcq_event_field (entry)));
        assert_memory_equal (item.bytes, zcq_event_field (entry), item.len);
        assert_true (zcq_mp_skip (&reader, 1));
    }
    assert_null (zcq_event_field (ZCQ_EVENT_FIELDS));
    //  stamped at the fixed offsets, and read in place
    uint64_t position;
    assert_true (zcq_event_position_of (body, size, &position));
    assert_int_equal (position, 1);
    zcq_event_t event = { 0 };
    assert_int_equal (zcq_event_read (&event, body, size), ZCQ_OK);
    assert_int_equal (zcq_event_position (&event), 1);
    assert_true (zcq_event_time (&event) == 1767225600000000LL);
    assert_int_equal (zcq_event_version (&event), 1);
    assert_string_equal (zcq_event_type (&event), "opened");
    assert_string_equal (zcq_event_stream (&event), "account/7");
    assert_string_equal (zcq_event_aggregate (&event), "account");
    assert_string_equal (zcq_event_key (&event), "7");
    assert_string_equal (zcq_event_command_id (&event), "open-7");
    assert_string_equal (zcq_event_str (&event, "owner"), "ann");
    assert_int_equal (zcq_event_int (&event, "overdraft", -1), 0);
    zcq_event_release (&event);

    commit->kind = ZCQ_BATCH_DONE;
    zcq_shard_done (shard, &commit);
    zcq_writer_destroy (&data);
    zcq_committer_destroy (&committer);
    zcq_shard_destroy (&shard);
    zcq_store_close (&store);
    zcq_config_destroy (&config);
    zcq_test_rmdir (&dir);
}

static void
test_event_layout (void **state)
{
    //  the stamps are where the constants say
    zcq_writer_t *body = zcq_writer_new ();
    s_write_body (body);
    const uint8_t *bytes = zcq_writer_data (body);
    assert_int_equal (bytes[0], 0x80 | ZCQ_EVENT_FIELDS);
    assert_int_equal (bytes[ZCQ_EVENT_POSITION_OFFSET - 1], 0xcf);
    assert_int_equal (bytes[ZCQ_EVENT_TIME_OFFSET - 1], 0xd3);
    assert_memory_equal (bytes + ZCQ_EVENT_TIME_OFFSET - 6, "\xa4time\xd3", 6);

    //  the same fields in another order read the same
    zcq_writer_t *other = zcq_writer_new ();
    s_write_map (other, "data", "m:", "type", "s:t", "key", "s:k", "command", "s:c", "time", "i:-5",
                 "version", "i:1", "stream", "s:a/k", "aggregate", "s:a", "node", "s:n", "position",
                 "i:7", NULL);
    zcq_event_t event = { 0 };
    uint8_t *copy;
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (other), zcq_writer_size (other), &copy), ZCQ_OK);
    assert_int_equal (zcq_event_position (&event), 7);
    assert_true (zcq_event_time (&event) == -5);
    assert_string_equal (zcq_event_stream (&event), "a/k");
    assert_int_equal (zcq_event_int (&event, "amount", 0), 100);
    //  ... but not at the fixed offset
    uint64_t position;
    assert_false (zcq_event_position_of (copy, zcq_writer_size (other), &position));
    assert_false (zcq_event_position_of (copy, 5, &position));
    free (copy);

    //  meta and data may be absent; other fields are ignored, and so are
    //  entries whose key is not a string
    s_write_map (other, S_HEADER, "extra", "D:5", NULL);
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (other), zcq_writer_size (other), &copy), ZCQ_OK);
    assert_null (zcq_event_data (&event));
    assert_null (zcq_event_meta (&event));
    assert_int_equal (zcq_event_int (&event, "amount", 9), 9);
    assert_string_equal (zcq_event_str (&event, "owner"), "");
    assert_non_null (zcq_event_body (&event));
    free (copy);
    zcq_writer_reset (other);
    zcq_writer_map (other, 12);
    zcq_writer_int (other, 5); //  an integer key
    zcq_writer_str (other, "ignored");
    zcq_writer_raw (other, zcq_writer_data (body) + 1, zcq_writer_size (body) - 1);
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (other), zcq_writer_size (other), &copy), ZCQ_OK);
    assert_string_equal (zcq_event_type (&event), "deposited");
    free (copy);
    //  an array as a key is skipped whole
    zcq_writer_reset (other);
    zcq_writer_map (other, 12);
    zcq_writer_array (other, 2);
    zcq_writer_str (other, "type");
    zcq_writer_str (other, "x");
    zcq_writer_map (other, 0);
    zcq_writer_raw (other, zcq_writer_data (body) + 1, zcq_writer_size (body) - 1);
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (other), zcq_writer_size (other), &copy), ZCQ_OK);
    assert_string_equal (zcq_event_type (&event), "deposited");
    free (copy);

    //  a field given twice: the last one counts (as it did when decoded)
    s_write_map (other, S_HEADER, "type", "s:second", "data", "m:", "data", "a:", NULL);
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (other), zcq_writer_size (other), &copy), ZCQ_OK);
    assert_string_equal (zcq_event_type (&event), "second");
    assert_int_equal (zcq_value_type (zcq_event_data (&event)), ZCQ_TYPE_ARRAY);
    assert_int_equal (zcq_event_int (&event, "amount", -1), -1);
    free (copy);

    zcq_event_release (&event);
    zcq_writer_destroy (&other);
    zcq_writer_destroy (&body);
}

//  Header fields absent or of other types: the event is corrupt.
static void
test_event_header_types (void **state)
{
    static const char *const names[] = { "position", "time",    "node", "stream", "aggregate",
                                         "key",      "version", "type", "command" };
    static const char *const header[]
        = { "i:7", "i:-5", "s:n", "s:a/k", "s:a", "s:k", "i:1", "s:t", "s:c" };
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_event_t event = { 0 };
    uint8_t *copy;
    for (size_t missing = 0; missing < 9; missing++) {
        //  each header field left out in turn
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 8);
        for (size_t field = 0; field < 9; field++)
            if (field != missing) {
                zcq_writer_str (writer, names[field]);
                zcq_test_write_typed (writer, header[field]);
            }
        assert_int_equal (
            s_read_exact (&event, zcq_writer_data (writer), zcq_writer_size (writer), &copy),
            ZCQ_CORRUPT);
        free (copy);
        //  and given a value of the wrong type
        static const char *const wrong[]
            = { "s:7", "f:1.5", "i:1", "n:", "B:3", "a:", "s:1", "i:8", "m:" };
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 9);
        for (size_t field = 0; field < 9; field++) {
            zcq_writer_str (writer, names[field]);
            zcq_test_write_typed (writer, field == missing ? wrong[field] : header[field]);
        }
        assert_int_equal (
            s_read_exact (&event, zcq_writer_data (writer), zcq_writer_size (writer), &copy),
            ZCQ_CORRUPT);
        free (copy);
    }
    //  numbers out of their range, strings too long or holding NUL
    const struct {
        const char *name;
        const char *value;
        zcq_err_t expect;
    } cases[] = {
        { "version", "i:-1", ZCQ_CORRUPT }, { "position", "i:-1", ZCQ_CORRUPT },
        { "position", "i:0", ZCQ_OK },      { "time", "i:9223372036854775807", ZCQ_OK },
        { "key", "x:256", ZCQ_OK },         { "key", "x:257", ZCQ_CORRUPT },
        { "type", "x:64", ZCQ_OK },         { "type", "x:65", ZCQ_CORRUPT },
        { "stream", "x:321", ZCQ_OK },      { "stream", "x:322", ZCQ_CORRUPT },
        { "node", "s:", ZCQ_OK },           { "command", "x:65", ZCQ_CORRUPT },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        s_write_map (writer, S_HEADER, cases[index].name, cases[index].value, NULL);
        assert_int_equal (
            s_read_exact (&event, zcq_writer_data (writer), zcq_writer_size (writer), &copy),
            cases[index].expect);
        free (copy);
    }
    //  a NUL inside a string, a time beyond int64, a position in a wide form
    s_write_map (writer, S_HEADER, NULL);
    size_t size = zcq_writer_size (writer);
    uint8_t *bytes = s_exact (zcq_writer_data (writer), size);
    uint8_t *type = memmem (bytes, size, "\xa4type\xa1t", 7);
    assert_non_null (type);
    type[6] = 0;
    assert_int_equal (zcq_event_read (&event, bytes, size), ZCQ_CORRUPT);
    free (bytes);
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 9);
    zcq_writer_str (writer, "time");
    zcq_writer_uint (writer, (uint64_t) INT64_MAX + 1);
    zcq_writer_raw (writer, "\xa8position\xd3\x00\x00\x00\x00\x00\x00\x00\x07", 18);
    for (size_t field = 2; field < 9; field++) {
        zcq_writer_str (writer, names[field]);
        zcq_test_write_typed (writer, header[field]);
    }
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (writer), zcq_writer_size (writer), &copy),
        ZCQ_CORRUPT);
    free (copy);
    //  (the same with a time in range: the signed position form reads)
    bytes = s_exact (zcq_writer_data (writer), zcq_writer_size (writer));
    bytes[6] = 0xd3;
    assert_int_equal (zcq_event_read (&event, bytes, zcq_writer_size (writer)), ZCQ_OK);
    assert_int_equal (zcq_event_position (&event), 7);
    free (bytes);

    zcq_event_release (&event);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Malformed bodies: every read stays inside the bytes

static void
test_event_malformed (void **state)
{
    zcq_writer_t *body = zcq_writer_new ();
    s_write_body (body);
    const uint8_t *whole = zcq_writer_data (body);
    size_t size = zcq_writer_size (body);
    zcq_event_t event = { 0 };
    uint8_t *copy;

    //  every truncation is corrupt, and is read within its bytes
    for (size_t len = 0; len < size; len++) {
        assert_int_equal (s_read_exact (&event, whole, len, &copy), ZCQ_CORRUPT);
        free (copy);
    }
    assert_int_equal (zcq_event_read (&event, NULL, 0), ZCQ_CORRUPT);
    //  bytes after the map
    zcq_writer_t *longer = zcq_writer_new ();
    zcq_writer_raw (longer, whole, size);
    zcq_writer_nil (longer);
    assert_int_equal (s_read_exact (&event, zcq_writer_data (longer), size + 1, &copy),
                      ZCQ_CORRUPT);
    free (copy);
    //  not a map
    assert_int_equal (s_read_exact (&event, "\x93\x01\x02\x03", 4, &copy), ZCQ_CORRUPT);
    free (copy);
    //  the never-used tag anywhere in data
    uint8_t *bytes = s_exact (whole, size);
    bytes[size - 2] = 0xc1; //  the amount's tag (250 is 0xcc 0xfa)
    assert_int_equal (zcq_event_read (&event, bytes, size), ZCQ_CORRUPT);
    free (bytes);

    //  counts that lie: a map or array with more entries than bytes left
    static const uint8_t liars[][6] = {
        { 0xdf, 0xff, 0xff, 0xff, 0xff },
        { 0xdd, 0xff, 0xff, 0xff, 0xff },
        { 0xde, 0xff, 0xff },
        { 0xdb, 0xff, 0xff, 0xff, 0xff },
        { 0xc6, 0xff, 0xff, 0xff, 0xff },
        { 0xc9, 0xff, 0xff, 0xff, 0xff },
    };
    for (size_t index = 0; index < sizeof liars / sizeof liars[0]; index++) {
        size_t liar_len = liars[index][0] == 0xde ? 3 : 5;
        //  as the body, and as the value of data
        assert_int_equal (s_read_exact (&event, liars[index], liar_len, &copy), ZCQ_CORRUPT);
        free (copy);
        zcq_writer_t *writer = zcq_writer_new ();
        s_write_map (writer, S_HEADER, NULL);
        zcq_writer_t *lying = zcq_writer_new ();
        zcq_writer_map (lying, 10);
        s_write_entries (lying, writer);
        zcq_writer_str (lying, "data");
        zcq_writer_raw (lying, liars[index], liar_len);
        zcq_writer_raw (lying, "\x01\x02\x03", 3);
        assert_int_equal (
            s_read_exact (&event, zcq_writer_data (lying), zcq_writer_size (lying), &copy),
            ZCQ_CORRUPT);
        free (copy);
        zcq_writer_destroy (&lying);
        zcq_writer_destroy (&writer);
    }

    //  nesting: 32 containers open at once read (the body's map and 31 in
    //  meta), 33 do not, as msgpack-c decodes them
    for (int depth = 30; depth <= 33; depth++) {
        zcq_writer_t *writer = zcq_writer_new ();
        s_write_map (writer, S_HEADER, NULL);
        zcq_writer_t *deep = zcq_writer_new ();
        zcq_writer_map (deep, 10);
        s_write_entries (deep, writer);
        zcq_writer_str (deep, "meta");
        for (int level = 1; level < depth; level++)
            zcq_writer_array (deep, 1);
        zcq_writer_array (deep, 0);
        assert_int_equal (
            s_read_exact (&event, zcq_writer_data (deep), zcq_writer_size (deep), &copy),
            depth <= 31 ? ZCQ_OK : ZCQ_CORRUPT);
        zcq_doc_t *doc = zcq_doc_new ();
        assert_int_equal (
            zcq_doc_decode_trusted (doc, zcq_writer_data (deep), zcq_writer_size (deep)) == ZCQ_OK,
            depth <= 31);
        zcq_doc_destroy (&doc);
        free (copy);
        zcq_writer_destroy (&deep);
        zcq_writer_destroy (&writer);
    }

    zcq_event_release (&event);
    zcq_writer_destroy (&longer);
    zcq_writer_destroy (&body);
}

//  --------------------------------------------------------------------------
//  The payload, in place and on demand

static void
test_event_payload (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_event_t event = { 0 };
    uint8_t *copy;
    //  data of every type; the first of a repeated field counts, as
    //  zcq_value_get finds it
    s_write_map (writer, S_HEADER, NULL);
    zcq_writer_t *body = zcq_writer_new ();
    zcq_writer_map (body, 10);
    s_write_entries (body, writer);
    zcq_writer_str (body, "data");
    zcq_writer_map (body, 11);
    zcq_writer_str (body, "small");
    zcq_writer_int (body, -3);
    zcq_writer_str (body, "wide");
    zcq_writer_raw (body, "\xd3\xff\xff\xff\xff\xff\xff\xff\xfe", 9); //  -2, wider than needed
    zcq_writer_str (body, "big");
    zcq_writer_uint (body, (uint64_t) INT64_MAX + 1);
    zcq_writer_str (body, "max");
    zcq_writer_uint (body, INT64_MAX);
    zcq_writer_str (body, "float");
    zcq_writer_float (body, 2.5);
    zcq_writer_str (body, "text");
    zcq_writer_str (body, "hello");
    zcq_writer_str (body, "text");
    zcq_writer_str (body, "second");
    zcq_writer_str (body, "empty");
    zcq_writer_str (body, "");
    zcq_writer_str (body, "nested");
    zcq_writer_map (body, 1);
    zcq_writer_str (body, "text");
    zcq_writer_str (body, "inner");
    zcq_writer_int (body, 77); //  a key that is not a string
    zcq_writer_str (body, "number key");
    zcq_writer_str (body, "nul");
    zcq_writer_strn (body, "a\0b", 3);
    assert_int_equal (s_read_exact (&event, zcq_writer_data (body), zcq_writer_size (body), &copy),
                      ZCQ_OK);
    assert_int_equal (zcq_event_int (&event, "small", 0), -3);
    assert_int_equal (zcq_event_int (&event, "wide", 0), -2);
    assert_int_equal (zcq_event_int (&event, "big", 1), 1);
    assert_true (zcq_event_int (&event, "max", 0) == INT64_MAX);
    assert_int_equal (zcq_event_int (&event, "float", 1), 1);
    assert_int_equal (zcq_event_int (&event, "text", 1), 1);
    assert_string_equal (zcq_event_str (&event, "text"), "hello");
    assert_string_equal (zcq_event_str (&event, "empty"), "");
    assert_string_equal (zcq_event_str (&event, "inner"), "");
    assert_string_equal (zcq_event_str (&event, "small"), "");
    //  a string copy stays while the event does; NUL inside cuts the C view
    const char *first = zcq_event_str (&event, "text");
    const char *nul = zcq_event_str (&event, "nul");
    assert_string_equal (nul, "a");
    assert_string_equal (first, "hello");
    assert_null (event.doc);
    //  the decoded payload agrees with the in-place reads
    const zcq_value_t *data = zcq_event_data (&event);
    const char *names[] = { "small", "wide", "big", "max", "float", "text", "empty", "nested" };
    for (size_t index = 0; index < sizeof names / sizeof names[0]; index++) {
        char buffer[32];
        assert_true (zcq_event_int (&event, names[index], 12345)
                     == zcq_value_get_int (data, names[index], 12345));
        assert_string_equal (zcq_event_str (&event, names[index]),
                             zcq_value_get_str (data, names[index], buffer, sizeof buffer, ""));
    }
    free (copy);

    //  data that is not a map: no fields, and the value as it is
    s_write_map (writer, S_HEADER, "data", "i:5", NULL);
    assert_int_equal (
        s_read_exact (&event, zcq_writer_data (writer), zcq_writer_size (writer), &copy), ZCQ_OK);
    assert_int_equal (zcq_event_int (&event, "amount", -1), -1);
    assert_int_equal (zcq_value_type (zcq_event_data (&event)), ZCQ_TYPE_INT);
    free (copy);

    //  an event filled from a decoded body answers the same (the shard's
    //  evolve reads events that way)
    s_write_map (writer, S_HEADER, "data", "m:", NULL);
    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL), ZCQ_OK);
    zcq_event_t parsed = { 0 };
    assert_int_equal (zcq_event_parse (&parsed, zcq_doc_root (doc)), ZCQ_OK);
    assert_ptr_equal (zcq_event_body (&parsed), zcq_doc_root (doc));
    assert_int_equal (zcq_event_int (&parsed, "amount", 0), 100);
    assert_string_equal (zcq_event_key (&parsed), "k");
    assert_int_equal (zcq_event_parse (&parsed, zcq_value_get (zcq_doc_root (doc), "data")),
                      ZCQ_CORRUPT);
    zcq_event_release (&parsed);
    zcq_doc_destroy (&doc);

    zcq_event_release (&event);
    zcq_writer_destroy (&body);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  The in-place reader against the decoding one, on damaged bodies

static void
s_compare_paths (zcq_event_t *read, zcq_event_t *parsed, zcq_doc_t *doc, const uint8_t *bytes,
                 size_t size)
{
    uint8_t *copy;
    zcq_err_t in_place = s_read_exact (read, bytes, size, &copy);
    //  msgpack-c trusts counts (the node decodes only its own bytes that
    //  way): damage that makes one lie is for the in-place reader alone
    zcq_mp_t whole = { bytes, bytes + size };
    if (!zcq_mp_skip (&whole, 0) || whole.cursor != whole.end) {
        assert_int_equal (in_place, ZCQ_CORRUPT);
        free (copy);
        return;
    }
    //  (msgpack-c says "no memory" for nesting beyond its stack: that body
    //  does not decode either)
    zcq_err_t decoded = zcq_doc_decode_trusted (doc, bytes, size) == ZCQ_OK
                          ? zcq_event_parse (parsed, zcq_doc_root (doc))
                          : ZCQ_CORRUPT;
    if (in_place != decoded)
        fail_msg ("in place %s, decoded %s", zcq_strerror (in_place), zcq_strerror (decoded));
    if (in_place == ZCQ_OK) {
        assert_int_equal (zcq_event_position (read), zcq_event_position (parsed));
        assert_int_equal (zcq_event_version (read), zcq_event_version (parsed));
        assert_true (zcq_event_time (read) == zcq_event_time (parsed));
        assert_string_equal (zcq_event_type (read), zcq_event_type (parsed));
        assert_string_equal (zcq_event_key (read), zcq_event_key (parsed));
        assert_string_equal (zcq_event_stream (read), zcq_event_stream (parsed));
        assert_string_equal (zcq_event_command_id (read), zcq_event_command_id (parsed));
        assert_string_equal (zcq_event_node (read), zcq_event_node (parsed));
        assert_true (zcq_event_int (read, "amount", 7) == zcq_event_int (parsed, "amount", 7));
        assert_string_equal (zcq_event_str (read, "owner"), zcq_event_str (parsed, "owner"));
        assert_true (zcq_value_equal (zcq_event_data (read), zcq_event_data (parsed)));
        assert_true (zcq_value_equal (zcq_event_meta (read), zcq_event_meta (parsed)));
    }
    free (copy);
}

static void
test_event_against_decode (void **state)
{
    zcq_writer_t *body = zcq_writer_new ();
    s_write_body (body);
    size_t size = zcq_writer_size (body);
    uint8_t *bytes = s_exact (zcq_writer_data (body), size);
    zcq_event_t read = { 0 }, parsed = { 0 };
    zcq_doc_t *doc = zcq_doc_new ();
    s_compare_paths (&read, &parsed, doc, bytes, size);
    //  every byte set to a few telling values, then random damage
    static const uint8_t values[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xbf, 0xc0, 0xc1, 0xc3,
                                      0xca, 0xcc, 0xcf, 0xd0, 0xd3, 0xd9, 0xdc, 0xde, 0xdf, 0xff };
    for (size_t at = 0; at < size; at++)
        for (size_t value = 0; value < sizeof values; value++) {
            uint8_t saved = bytes[at];
            bytes[at] = values[value];
            s_compare_paths (&read, &parsed, doc, bytes, size);
            bytes[at] = saved;
        }
    uint64_t seed = 0x5eedf00dULL;
    for (int round = 0; round < 20000; round++) {
        uint8_t *damaged = s_exact (zcq_writer_data (body), size);
        int changes = 1 + (int) (zcq_test_next (&seed) % 4);
        for (int change = 0; change < changes; change++)
            damaged[zcq_test_next (&seed) % size] = (uint8_t) zcq_test_next (&seed);
        s_compare_paths (&read, &parsed, doc, damaged, size);
        free (damaged);
    }
    zcq_event_release (&read);
    zcq_event_release (&parsed);
    zcq_doc_destroy (&doc);
    free (bytes);
    zcq_writer_destroy (&body);
}

//  --------------------------------------------------------------------------
//  The MessagePack reader itself

static void
test_event_mp_reader (void **state)
{
    zcq_writer_t *writer = zcq_writer_new ();
    //  every form, read back
    zcq_writer_int (writer, 5);
    zcq_writer_int (writer, -5);
    zcq_writer_int (writer, -200);
    zcq_writer_int (writer, 70000);
    zcq_writer_int (writer, INT64_MIN);
    zcq_writer_uint (writer, UINT64_MAX);
    zcq_writer_float (writer, -0.5);
    zcq_writer_raw (writer, "\xca\x3f\xc0\x00\x00", 5); //  float32 1.5
    zcq_writer_nil (writer);
    zcq_writer_bool (writer, true);
    zcq_writer_str (writer, "x");
    zcq_writer_bin (writer, "ab", 2);
    zcq_writer_raw (writer, "\xd5\x07\x01\x02", 4); //  fixext 2 of type 7
    zcq_writer_raw (writer, "\xc7\x01\xfe\x09", 4); //  ext8 of 1 byte, type -2
    zcq_writer_array (writer, 2);
    zcq_writer_map (writer, 3);
    size_t size = zcq_writer_size (writer);
    uint8_t *bytes = s_exact (zcq_writer_data (writer), size);
    zcq_mp_t reader = { bytes, bytes + size };
    zcq_mp_item_t item;
    int64_t number;
    assert_true (zcq_mp_read (&reader, &item) && zcq_mp_int (&item, &number) && number == 5);
    assert_true (zcq_mp_read (&reader, &item) && zcq_mp_int (&item, &number) && number == -5);
    assert_true (zcq_mp_read (&reader, &item) && zcq_mp_int (&item, &number) && number == -200);
    assert_true (zcq_mp_read (&reader, &item) && zcq_mp_int (&item, &number) && number == 70000);
    assert_true (zcq_mp_read (&reader, &item) && zcq_mp_int (&item, &number)
                 && number == INT64_MIN);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_INT && item.big
                 && item.as.u == UINT64_MAX && !zcq_mp_int (&item, &number));
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_FLOAT && !item.single
                 && item.as.f == -0.5);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_FLOAT && item.single
                 && item.as.f == 1.5);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_NIL);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_BOOL && item.as.b);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_STR && item.len == 1
                 && item.bytes[0] == 'x');
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_BIN && item.len == 2
                 && memcmp (item.bytes, "ab", 2) == 0);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_EXT && item.ext == 7
                 && item.len == 2 && item.bytes[1] == 2);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_EXT && item.ext == -2
                 && item.len == 1 && item.bytes[0] == 9);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_ARRAY && item.len == 2);
    assert_true (zcq_mp_read (&reader, &item) && item.type == ZCQ_TYPE_MAP && item.len == 3);
    assert_ptr_equal (reader.cursor, reader.end);
    assert_false (zcq_mp_read (&reader, &item));
    free (bytes);

    //  skip and find
    s_write_map (writer, "a", "D:5", "b", "a:", "c", "i:3", NULL);
    bytes = s_exact (zcq_writer_data (writer), zcq_writer_size (writer));
    reader = (zcq_mp_t) { bytes, bytes + zcq_writer_size (writer) };
    assert_true (zcq_mp_skip (&reader, 0));
    assert_ptr_equal (reader.cursor, reader.end);
    reader.cursor = bytes;
    assert_true (zcq_mp_find (&reader, "c", 1));
    assert_true (zcq_mp_read (&reader, &item) && zcq_mp_int (&item, &number) && number == 3);
    reader.cursor = bytes;
    assert_false (zcq_mp_find (&reader, "d", 1));
    reader.cursor = bytes;
    assert_false (zcq_mp_find (&reader, "", 0));
    free (bytes);
    //  the never-used tag, and truncated headers of every width
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = { { "\xc1", 1 },     { "\xcd\x01", 2 },     { "\xcf\x01\x02", 3 },
                { "\xd9", 1 },     { "\xda\x01", 2 },     { "\xdb\x00\x00", 3 },
                { "\xc7\x01", 2 }, { "\xd6\x01\x02", 3 }, { "\xdc\x00", 2 },
                { "\xa3xy", 3 },   { "\x92\x01", 2 },     { "\x81\xa1k", 3 } };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        bytes = s_exact (bad[index].bytes, bad[index].len);
        reader = (zcq_mp_t) { bytes, bytes + bad[index].len };
        assert_false (zcq_mp_skip (&reader, 0));
        free (bytes);
    }
    //  containers open at once: 32 at most, empty ones counted
    for (int depth = 31; depth <= 33; depth++) {
        zcq_writer_reset (writer);
        for (int level = 1; level < depth; level++)
            zcq_writer_array (writer, 1);
        zcq_writer_map (writer, 0);
        bytes = s_exact (zcq_writer_data (writer), zcq_writer_size (writer));
        reader = (zcq_mp_t) { bytes, bytes + zcq_writer_size (writer) };
        assert_int_equal (zcq_mp_skip (&reader, 0), depth <= 32);
        reader.cursor = bytes;
        assert_int_equal (zcq_mp_skip (&reader, 1), depth <= 31);
        free (bytes);
    }
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  From event to row: a handler's fields merged into a row's record
//  (engine/view.c), against the merge as it was done on decoded rows

typedef enum { S_SET, S_ADD, S_UNSET } s_op_kind_t;
typedef enum { S_INT, S_STR, S_FLOAT, S_NIL, S_BOOL, S_BIN, S_ARRAY } s_value_kind_t;

typedef struct {
    s_op_kind_t op;
    const char *name;
    s_value_kind_t kind;
    int64_t number; //  S_INT, S_BOOL; S_ADD: the delta
    const char *text;
} s_op_t;

static void
s_op_value (const s_op_t *op, zcq_writer_t *writer)
{
    switch (op->kind) {
        case S_INT: zcq_writer_int (writer, op->number); break;
        case S_STR: zcq_writer_str (writer, op->text); break;
        case S_FLOAT: zcq_writer_float (writer, (double) op->number / 4); break;
        case S_NIL: zcq_writer_nil (writer); break;
        case S_BOOL: zcq_writer_bool (writer, op->number != 0); break;
        case S_BIN: zcq_writer_bin (writer, op->text, strlen (op->text)); break;
        case S_ARRAY:
            zcq_writer_array (writer, 2);
            zcq_writer_int (writer, op->number);
            zcq_writer_str (writer, op->text);
            break;
    }
}

//  The ops through the builder a handler uses.
static void
s_apply_ops (zcq_fields_t *fields, const s_op_t *ops, size_t count)
{
    zcq_fields_reset (fields);
    for (size_t index = 0; index < count; index++) {
        const s_op_t *op = &ops[index];
        if (op->op == S_UNSET)
            zcq_unset (fields, op->name);
        else if (op->op == S_ADD)
            zcq_add_int (fields, op->name, op->number);
        else
            switch (op->kind) {
                case S_INT: zcq_set_int (fields, op->name, op->number); break;
                case S_STR: zcq_set_str (fields, op->name, op->text); break;
                case S_FLOAT: zcq_set_float (fields, op->name, (double) op->number / 4); break;
                case S_NIL: zcq_set_nil (fields, op->name); break;
                case S_BOOL: zcq_set_bool (fields, op->name, op->number != 0); break;
                case S_BIN: zcq_set_bin (fields, op->name, op->text, strlen (op->text)); break;
                case S_ARRAY: {
                    zcq_writer_t *writer = zcq_writer_new ();
                    s_op_value (op, writer);
                    zcq_doc_t *doc = zcq_doc_new ();
                    assert_int_equal (zcq_doc_decode (doc, zcq_writer_data (writer),
                                                      zcq_writer_size (writer), NULL),
                                      ZCQ_OK);
                    zcq_set_value (fields, op->name, zcq_doc_root (doc));
                    zcq_doc_destroy (&doc);
                    zcq_writer_destroy (&writer);
                }
            }
    }
}

//  The last op on name at or before `last`, or NULL.
static const s_op_t *
s_model_find (const s_op_t *ops, size_t last, const char *name, size_t len)
{
    for (size_t index = last + 1; index-- > 0;)
        if (strlen (ops[index].name) == len && memcmp (ops[index].name, name, len) == 0)
            return &ops[index];
    return NULL;
}

//  The merged value of name given the row's old value (the old
//  s_write_merged); false when an add overflows.
static bool
s_model_merged (const s_op_t *ops, size_t count, const char *name, size_t len,
                const zcq_value_t *old, zcq_writer_t *writer)
{
    const s_op_t *base = NULL;
    int64_t delta = 0;
    for (size_t index = count; index-- > 0;) {
        const s_op_t *op = &ops[index];
        if (strlen (op->name) != len || memcmp (op->name, name, len) != 0)
            continue;
        if (op->op != S_ADD) {
            base = op;
            break;
        }
        if (__builtin_add_overflow (delta, op->number, &delta))
            return false;
    }
    if (base && base->op == S_SET && delta == 0) {
        s_op_value (base, writer);
        return true;
    }
    int64_t start = 0;
    if (base && base->op == S_SET)
        start = base->kind == S_INT ? base->number : 0;
    else if (!base && !zcq_value_int (old, &start))
        start = 0;
    int64_t result;
    if (__builtin_add_overflow (start, delta, &result))
        return false;
    zcq_writer_int (writer, result);
    return true;
}

//  The merge of ops into row (NULL: a new row at key), written with the
//  shortest map header; false when an add overflows.
static bool
s_model_merge (const s_op_t *ops, size_t count, const zcq_value_t *row, const char *key,
               zcq_writer_t *out)
{
    bool ok = true;
    size_t entries = 0;
    zcq_writer_t *body = zcq_writer_new ();
    if (!row) {
        zcq_writer_str (body, "key");
        zcq_writer_str (body, key);
        entries++;
    }
    for (size_t index = 0; index < zcq_value_size (row); index++) {
        const char *name;
        size_t len;
        if (!zcq_value_str (zcq_value_key_at (row, index), &name, &len)) {
            zcq_writer_value (body, zcq_value_key_at (row, index));
            zcq_writer_value (body, zcq_value_val_at (row, index));
            entries++;
            continue;
        }
        const s_op_t *last = count ? s_model_find (ops, count - 1, name, len) : NULL;
        if (last && last->op == S_UNSET)
            continue;
        zcq_writer_strn (body, name, len);
        if (!last || (len == 3 && memcmp (name, "key", 3) == 0))
            zcq_writer_value (body, zcq_value_val_at (row, index));
        else
            ok &= s_model_merged (ops, count, name, len, zcq_value_val_at (row, index), body);
        entries++;
    }
    for (size_t index = 0; index < count; index++) {
        const s_op_t *op = &ops[index];
        size_t len = strlen (op->name);
        if (s_model_find (ops, count - 1, op->name, len) != op || op->op == S_UNSET
            || strcmp (op->name, "key") == 0 || len >= 256
            || (row && zcq_value_get (row, op->name)))
            continue;
        zcq_writer_strn (body, op->name, len);
        ok &= s_model_merged (ops, count, op->name, len, NULL, body);
        entries++;
    }
    zcq_writer_reset (out);
    zcq_writer_map (out, entries);
    zcq_writer_raw (out, zcq_writer_data (body), zcq_writer_size (body));
    zcq_writer_destroy (&body);
    return ok;
}

static void
test_event_fields_into_rows (void **state)
{
    char long_name[301];
    memset (long_name, 'x', 300);
    long_name[300] = 0;
    const char *names[] = { "a", "b", "c", "key", long_name, "n\xc3\xa9" };
    const char *texts[] = { "", "s", "open", "closed", "a longer text than the others are" };
    const char *keys[] = { "k1", "k2", "k3" };
    static const int64_t big[] = { INT64_MAX, INT64_MAX - 3, INT64_MIN, INT64_MIN + 2 };
    const char *indexes[] = { "a", NULL };
    zcq_viewtable_t *table = zcq_viewtable_new (indexes);
    zcq_fields_t *fields = zcq_fields_new ();
    zcq_writer_t *model[3] = { NULL, NULL, NULL }; //  each key's row as the model has it
    zcq_writer_t *out = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    uint64_t seed = 0xf1e1d5ULL;
    size_t changed = 0, overflowed = 0, absent = 0;
    for (int step = 0; step < 30000; step++) {
        size_t which = zcq_test_next (&seed) % 3;
        const char *key = keys[which];
        if (zcq_test_next (&seed) % 50 == 0 && model[which]) {
            //  the row goes (a handler's delete)
            assert_true (zcq_viewtable_delete (table, key, 2));
            zcq_writer_destroy (&model[which]);
        }
        if (zcq_test_next (&seed) % 40 == 0 && model[which]) {
            //  the row put as bytes (a wide map header: kept as bytes)
            zcq_writer_t *wide = zcq_writer_new ();
            zcq_doc_decode (doc, zcq_writer_data (model[which]), zcq_writer_size (model[which]),
                            NULL);
            const zcq_value_t *root = zcq_doc_root (doc);
            size_t mark = zcq_writer_map_open (wide);
            for (size_t entry = 0; entry < zcq_value_size (root); entry++) {
                zcq_writer_value (wide, zcq_value_key_at (root, entry));
                zcq_writer_value (wide, zcq_value_val_at (root, entry));
            }
            zcq_writer_map_close (wide, mark, zcq_value_size (root));
            assert_int_equal (
                zcq_viewtable_put (table, key, 2, zcq_writer_data (wide), zcq_writer_size (wide)),
                ZCQ_OK);
            zcq_writer_destroy (&model[which]);
            model[which] = wide;
        }
        s_op_t ops[5];
        size_t count = 1 + zcq_test_next (&seed) % 5;
        for (size_t index = 0; index < count; index++) {
            uint64_t dice = zcq_test_next (&seed) % 100;
            s_op_t *op = &ops[index];
            op->name = names[zcq_test_next (&seed) % 6];
            op->op = dice < 50 ? S_SET : dice < 85 ? S_ADD : S_UNSET;
            op->kind = (s_value_kind_t) (zcq_test_next (&seed) % 7);
            if (op->op == S_ADD || zcq_test_next (&seed) % 3)
                op->kind = op->op == S_ADD ? S_INT : op->kind;
            op->number = zcq_test_next (&seed) % 8 == 0
                           ? big[zcq_test_next (&seed) % 4]
                           : (int64_t) (zcq_test_next (&seed) % 11) - 5;
            op->text = texts[zcq_test_next (&seed) % 5];
        }
        bool create = zcq_test_next (&seed) % 10 < 7;
        s_apply_ops (fields, ops, count);
        assert_true (zcq_fields_ok (fields));
        zcq_err_t err = zcq_viewtable_merge (table, key, 2, fields, create);
        const zcq_value_t *row = NULL;
        if (model[which]) {
            assert_int_equal (zcq_doc_decode (doc, zcq_writer_data (model[which]),
                                              zcq_writer_size (model[which]), NULL),
                              ZCQ_OK);
            row = zcq_doc_root (doc);
        }
        if (!row && !create) {
            assert_int_equal (err, ZCQ_NOT_FOUND);
            absent++;
        }
        else if (!s_model_merge (ops, count, row, key, out)) {
            assert_int_equal (err, ZCQ_INVALID); //  the row stays as it was
            overflowed++;
        }
        else {
            assert_int_equal (err, ZCQ_OK);
            if (!model[which])
                model[which] = zcq_writer_new ();
            zcq_writer_reset (model[which]);
            zcq_writer_raw (model[which], zcq_writer_data (out), zcq_writer_size (out));
            changed++;
        }
        //  the table's row encodes exactly as the model's
        size_t len = 0;
        const void *bytes = zcq_viewtable_get (table, key, 2, &len);
        if (!model[which])
            assert_null (bytes);
        else {
            assert_non_null (bytes);
            if (len != zcq_writer_size (model[which])
                || memcmp (bytes, zcq_writer_data (model[which]), len) != 0) {
                fprintf (stderr, "ops:");
                for (size_t index = 0; index < count; index++)
                    fprintf (stderr, " [%d %.8s %d %lld %s]", ops[index].op, ops[index].name,
                             ops[index].kind, (long long) ops[index].number, ops[index].text);
                fprintf (stderr, "\ntable:");
                for (size_t index = 0; index < len; index++)
                    fprintf (stderr, " %02x", ((const uint8_t *) bytes)[index]);
                fprintf (stderr, "\nmodel:");
                for (size_t index = 0; index < zcq_writer_size (model[which]); index++)
                    fprintf (stderr, " %02x",
                             ((const uint8_t *) zcq_writer_data (model[which]))[index]);
                fprintf (stderr, "\n");
                fail_msg ("step %d: the row of %s differs from the model's", step, key);
            }
        }
    }
    if (!(changed > 10000 && overflowed > 100 && absent > 10))
        fail_msg ("%zu changed, %zu overflowed, %zu absent", changed, overflowed, absent);
    //  the index followed: each row with an indexed value is found by it
    for (size_t which = 0; which < 3; which++) {
        if (!model[which])
            continue;
        zcq_doc_decode (doc, zcq_writer_data (model[which]), zcq_writer_size (model[which]), NULL);
        const zcq_value_t *value = zcq_value_get (zcq_doc_root (doc), "a");
        if (!value)
            continue;
        zcq_writer_reset (out);
        zcq_writer_value (out, value);
        assert_true (
            zcq_viewtable_count_value (table, "a", zcq_writer_data (out), zcq_writer_size (out))
            >= 1);
    }
    //  a row that is not a map cannot take fields
    assert_int_equal (zcq_viewtable_put (table, "k4", 2, "\x92\x01\x02", 3), ZCQ_OK);
    zcq_fields_reset (fields);
    zcq_set_int (fields, "a", 1);
    assert_int_equal (zcq_viewtable_merge (table, "k4", 2, fields, true), ZCQ_CORRUPT);
    size_t len;
    assert_int_equal (zcq_viewtable_get (table, "k4", 2, &len) != NULL, true);
    assert_int_equal (len, 3);

    for (size_t which = 0; which < 3; which++)
        zcq_writer_destroy (&model[which]);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&out);
    zcq_fields_destroy (&fields);
    zcq_viewtable_destroy (&table);
}

//  The common change of a projection, an integer add and a set of the
//  same size, is made in the row's record where it is: no allocation,
//  and the row's bytes are those of a merge all the same.
static void
test_event_fields_in_place (void **state)
{
    zcq_viewtable_t *table = zcq_viewtable_new (NULL);
    zcq_fields_t *fields = zcq_fields_new ();
    zcq_set_str (fields, "owner", "ann");
    zcq_set_int (fields, "balance", 0);
    zcq_set_str (fields, "status", "open");
    zcq_set_int (fields, "version", 1);
    assert_int_equal (zcq_viewtable_merge (table, "42", 2, fields, true), ZCQ_OK);
    size_t before = zcq_viewtable_memory (table);
    for (int version = 2; version < 1000; version++) {
        zcq_fields_reset (fields);
        zcq_add_int (fields, "balance", version % 2 ? -70000 : 100000);
        zcq_set_int (fields, "version", version);
        assert_int_equal (zcq_viewtable_merge (table, "42", 2, fields, false), ZCQ_OK);
    }
    assert_int_equal (zcq_viewtable_memory (table), before);
    zcq_writer_t *expect = zcq_writer_new ();
    zcq_writer_map (expect, 5);
    zcq_writer_str (expect, "key");
    zcq_writer_str (expect, "42");
    zcq_writer_str (expect, "owner");
    zcq_writer_str (expect, "ann");
    zcq_writer_str (expect, "balance");
    zcq_writer_int (expect, 499 * 100000 - 499 * 70000);
    zcq_writer_str (expect, "status");
    zcq_writer_str (expect, "open");
    zcq_writer_str (expect, "version");
    zcq_writer_int (expect, 999);
    size_t len;
    const void *bytes = zcq_viewtable_get (table, "42", 2, &len);
    assert_int_equal (len, zcq_writer_size (expect));
    assert_memory_equal (bytes, zcq_writer_data (expect), len);
    //  a patch of no row changes nothing
    assert_int_equal (zcq_viewtable_merge (table, "43", 2, fields, false), ZCQ_NOT_FOUND);
    assert_int_equal (zcq_viewtable_count (table), 1);
    zcq_writer_destroy (&expect);
    zcq_fields_destroy (&fields);
    zcq_viewtable_destroy (&table);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_event_walkthrough),
        cmocka_unit_test (test_event_written_by_the_shard),
        cmocka_unit_test (test_event_layout),
        cmocka_unit_test (test_event_header_types),
        cmocka_unit_test (test_event_malformed),
        cmocka_unit_test (test_event_payload),
        cmocka_unit_test (test_event_against_decode),
        cmocka_unit_test (test_event_mp_reader),
        cmocka_unit_test (test_event_fields_into_rows),
        cmocka_unit_test (test_event_fields_in_place),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
