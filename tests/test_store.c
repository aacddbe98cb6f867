/*  test_store.c: zcq_store_t, the event store on RocksDB.

    Appends and reads (log and stream, from, limit, early stop), atomic
    batches under an injected commit failure, version conflicts, stream
    names that prefix each other, reads across the multiget chunk size,
    snapshots, command ids and their expiry, metadata, reopening, both
    durability modes, opens that must fail cleanly, and damage found on
    open (a WAL garbled in the middle, a garbled .sst block).

    The index behind the log (store.c DESIGN 11-13): streams and ids read
    from the recent part only, from RocksDB only and split across both; a
    crash (a child process that exits without closing) with an un-indexed
    tail, after which the open indexes the log again; commands without
    events; the dedup window across a restart; the indexer moving segments
    while every commit is read back.
*/
#include "testutil.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Helpers

#define S_MAX_SEEN 2048

//  Wall-clock microseconds, the clock command ids are stamped with.
static int64_t
s_now_us (void)
{
    struct timeval now;
    gettimeofday (&now, NULL);
    return (int64_t) now.tv_sec * 1000000 + now.tv_usec;
}

//  What a read callback saw.
typedef struct {
    size_t count;
    size_t stop_after; //  return 1 after this many (0 = never)
    uint64_t positions[S_MAX_SEEN];
    uint64_t versions[S_MAX_SEEN];
    char bodies[S_MAX_SEEN][32];
} s_seen_t;

static int
s_collect (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_seen_t *seen = arg;
    assert_true (seen->count < S_MAX_SEEN);
    assert_true (len < sizeof seen->bodies[0]);
    seen->positions[seen->count] = position;
    seen->versions[seen->count] = version;
    memcpy (seen->bodies[seen->count], body, len);
    seen->bodies[seen->count][len] = 0;
    seen->count++;
    return seen->stop_after && seen->count >= seen->stop_after;
}

static s_seen_t *
s_seen_new (size_t stop_after)
{
    s_seen_t *seen = calloc (1, sizeof (s_seen_t));
    assert_non_null (seen);
    seen->stop_after = stop_after;
    return seen;
}

static zcq_store_t *
s_open (const char *path, const zcq_store_options_t *options)
{
    zcq_store_t *store = NULL;
    char error[256] = "";
    zcq_err_t rc = zcq_store_open (&store, path, options, error, sizeof error);
    if (rc != ZCQ_OK)
        fail_msg ("open %s: %s (%s)", path, zcq_strerror (rc), error);
    assert_non_null (store);
    return store;
}

//  Append one event whose body is text to stream.
static void
s_append_one (zcq_store_t *store, const char *stream, const char *text)
{
    const void *bodies[1] = { text };
    size_t lens[1] = { strlen (text) };
    assert_int_equal (zcq_store_append (store, stream, -1, bodies, lens, 1, NULL, NULL), ZCQ_OK);
}

static uint64_t
s_version (zcq_store_t *store, const char *stream)
{
    uint64_t version = 12345;
    assert_int_equal (zcq_store_stream_version (store, stream, &version), ZCQ_OK);
    return version;
}

static size_t
s_log_count (zcq_store_t *store)
{
    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_log (store, 0, 0, s_collect, seen), ZCQ_OK);
    size_t count = seen->count;
    free (seen);
    return count;
}

static void
s_put_be (uint8_t *bytes, uint64_t value, int width)
{
    for (int index = width - 1; index >= 0; index--, value >>= 8)
        bytes[index] = (uint8_t) value;
}

static uint64_t
s_get_be (const uint8_t *bytes, int width)
{
    uint64_t value = 0;
    for (int index = 0; index < width; index++)
        value = value << 8 | bytes[index];
    return value;
}

//  An event body in the ZCQ/1 layout (aggregate_shard.c s_encode_events):
//  what the store indexes the log from after a crash.
static void
s_event_body (zcq_writer_t *writer, const char *stream, uint64_t position, uint64_t version,
              const char *command, int64_t time, const char *text)
{
    const char *slash = strchr (stream, '/');
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 11);
    zcq_writer_str (writer, "position");
    zcq_writer_uint (writer, position);
    zcq_writer_str (writer, "time");
    zcq_writer_int (writer, time);
    zcq_writer_str (writer, "node");
    zcq_writer_str (writer, "test");
    zcq_writer_str (writer, "stream");
    zcq_writer_str (writer, stream);
    zcq_writer_str (writer, "aggregate");
    zcq_writer_strn (writer, stream, slash ? (size_t) (slash - stream) : strlen (stream));
    zcq_writer_str (writer, "key");
    zcq_writer_str (writer, slash ? slash + 1 : "");
    zcq_writer_str (writer, "version");
    zcq_writer_uint (writer, version);
    zcq_writer_str (writer, "type");
    zcq_writer_str (writer, "deposited");
    zcq_writer_str (writer, "command");
    zcq_writer_str (writer, command);
    zcq_writer_str (writer, "meta");
    zcq_writer_map (writer, 0);
    zcq_writer_str (writer, "data");
    zcq_writer_map (writer, 1);
    zcq_writer_str (writer, "text");
    zcq_writer_str (writer, text);
}

//  A fresh empty directory under $ZCQ_TEST_TMP (or /tmp); remove it with
//  zcq_test_rmdir. (zcq_test_dir would do, but it leaks a zuuid_t a call,
//  which LeakSanitizer reports.)
static char *
s_test_dir (const char *name)
{
    const char *base = getenv ("ZCQ_TEST_TMP");
    if (!base)
        base = "/tmp";
    mkdir (base, 0755);
    char *path = NULL;
    if (asprintf (&path, "%s/%s-XXXXXX", base, name) < 0)
        return NULL;
    if (!mkdtemp (path)) {
        free (path);
        return NULL;
    }
    return path;
}

//  Each test after the walk-through gets a fresh directory as its state,
//  removed afterwards even when the test fails.
static int
s_setup (void **state)
{
    *state = s_test_dir ("store");
    return *state ? 0 : -1;
}

static int
s_teardown (void **state)
{
    char *path = *state;
    zcq_test_rmdir (&path);
    return 0;
}

//  --------------------------------------------------------------------------
//  The walk-through: open, append, read, close.

static void
test_store_walkthrough (void **state)
{
    char *path = s_test_dir ("store-walkthrough");
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    zcq_store_t *store = NULL;
    char error[256];
    assert_int_equal (zcq_store_open (&store, path, &options, error, sizeof error), ZCQ_OK);
    assert_int_equal (zcq_store_head (store), 0);

    //  Two events on a new stream (expect version 0)
    const void *bodies[2] = { "opened", "deposited" };
    size_t lens[2] = { 6, 9 };
    uint64_t version = 0, position = 0;
    assert_int_equal (
        zcq_store_append (store, "account/1", 0, bodies, lens, 2, &version, &position), ZCQ_OK);
    assert_int_equal (version, 2);
    assert_int_equal (position, 2);
    assert_int_equal (zcq_store_head (store), 2);

    //  Read them back by stream and from the log
    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_stream (store, "account/1", 1, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 2);
    assert_string_equal (seen->bodies[0], "opened");
    assert_int_equal (seen->versions[1], 2);
    assert_int_equal (seen->positions[1], 2);
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_log (store, 1, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 2);
    assert_string_equal (seen->bodies[1], "deposited");
    free (seen);

    zcq_store_close (&store);
    assert_null (store);
    zcq_store_close (&store); //  safe twice
    zcq_test_rmdir (&path);
}

//  --------------------------------------------------------------------------
//  Reads

static void
test_store_read_log (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    char body[32];
    for (int index = 1; index <= 10; index++) {
        snprintf (body, sizeof body, "e%d", index);
        s_append_one (store, index % 2 ? "odd" : "even", body);
    }
    assert_int_equal (zcq_store_head (store), 10);

    //  All, from 0 or 1, in position order
    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_log (store, 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 10);
    for (size_t index = 0; index < 10; index++) {
        assert_int_equal (seen->positions[index], index + 1);
        snprintf (body, sizeof body, "e%zu", index + 1);
        assert_string_equal (seen->bodies[index], body);
    }

    //  From a position
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_log (store, 7, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 4);
    assert_int_equal (seen->positions[0], 7);
    assert_string_equal (seen->bodies[3], "e10");

    //  With a limit, and from past the head
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_log (store, 3, 2, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 2);
    assert_int_equal (seen->positions[1], 4);
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_log (store, 11, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 0);
    assert_int_equal (zcq_store_read_log (store, UINT64_MAX, 5, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 0);

    //  Early stop from the callback
    memset (seen, 0, sizeof *seen);
    seen->stop_after = 3;
    assert_int_equal (zcq_store_read_log (store, 2, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 3);
    assert_int_equal (seen->positions[2], 4);
    free (seen);
    zcq_store_close (&store);
}

static void
test_store_read_stream (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    char body[32];
    for (int index = 1; index <= 12; index++) {
        snprintf (body, sizeof body, "e%d", index);
        s_append_one (store, index % 3 ? "a" : "b", body); //  b gets 3, 6, 9, 12
    }
    assert_int_equal (s_version (store, "a"), 8);
    assert_int_equal (s_version (store, "b"), 4);

    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_stream (store, "b", 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 4);
    const uint64_t b_positions[] = { 3, 6, 9, 12 };
    for (size_t index = 0; index < 4; index++) {
        assert_int_equal (seen->versions[index], index + 1);
        assert_int_equal (seen->positions[index], b_positions[index]);
        snprintf (body, sizeof body, "e%d", (int) b_positions[index]);
        assert_string_equal (seen->bodies[index], body);
    }

    //  From a version, with a limit
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "a", 5, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 4);
    assert_int_equal (seen->versions[0], 5);
    assert_int_equal (seen->positions[0], 7);
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "a", 2, 3, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 3);
    assert_int_equal (seen->versions[2], 4);
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "a", 9, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 0);

    //  Early stop
    memset (seen, 0, sizeof *seen);
    seen->stop_after = 2;
    assert_int_equal (zcq_store_read_stream (store, "a", 1, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 2);

    //  Absent streams read as empty
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "c", 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (zcq_store_read_stream (store, "", 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 0);
    free (seen);
    zcq_store_close (&store);
}

//  Streams whose names prefix one another never see each other's events.
static void
test_store_stream_prefixes (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    assert_int_equal (s_version (store, "account/1"), 0);

    for (int index = 0; index < 3; index++)
        s_append_one (store, "account/10", "ten");
    assert_int_equal (s_version (store, "account/1"), 0);
    assert_int_equal (s_version (store, "account/10"), 3);
    assert_int_equal (s_version (store, "account/100"), 0);
    assert_int_equal (s_version (store, "account/"), 0);
    assert_int_equal (s_version (store, "account/1\x01"), 0);
    assert_int_equal (s_version (store, "account/2"), 0);

    s_append_one (store, "account/1", "one");
    s_append_one (store, "account/1", "one");
    s_append_one (store, "account/100", "hundred");
    s_append_one (store, "account/", "bare");
    s_append_one (store, "account/0", "zero");
    assert_int_equal (s_version (store, "account/1"), 2);
    assert_int_equal (s_version (store, "account/10"), 3);
    assert_int_equal (s_version (store, "account/100"), 1);
    assert_int_equal (s_version (store, "account/"), 1);
    assert_int_equal (s_version (store, "account/0"), 1);
    assert_int_equal (s_version (store, "account/01"), 0);
    assert_int_equal (s_version (store, "account"), 0);

    const struct {
        const char *stream;
        size_t count;
        const char *body;
    } cases[] = {
        { "account/1", 2, "one" }, { "account/10", 3, "ten" }, { "account/100", 1, "hundred" },
        { "account/", 1, "bare" }, { "account/0", 1, "zero" }, { "account", 0, NULL },
    };
    s_seen_t *seen = s_seen_new (0);
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        memset (seen, 0, sizeof *seen);
        assert_int_equal (zcq_store_read_stream (store, cases[index].stream, 0, 0, s_collect, seen),
                          ZCQ_OK);
        assert_int_equal (seen->count, cases[index].count);
        for (size_t event = 0; event < seen->count; event++) {
            assert_string_equal (seen->bodies[event], cases[index].body);
            assert_int_equal (seen->versions[event], event + 1);
        }
    }
    //  An expect on one stream is not fooled by its neighbour
    const void *bodies[1] = { "one" };
    size_t lens[1] = { 3 };
    uint64_t version = 0;
    assert_int_equal (zcq_store_append (store, "account/1", 3, bodies, lens, 1, &version, NULL),
                      ZCQ_CONFLICT);
    assert_int_equal (version, 2);
    free (seen);
    zcq_store_close (&store);
}

//  More than 256 events (the multiget chunk) in one stream, interleaved
//  with another stream.
static void
test_store_many_positions (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    char body[32];
    size_t big_count = 0;
    for (int position = 1; position <= 700; position++) {
        bool big = position % 7 != 0;
        if (big)
            big_count++;
        snprintf (body, sizeof body, "p%d", position);
        s_append_one (store, big ? "big" : "small", body);
    }
    assert_int_equal (zcq_store_head (store), 700);
    assert_int_equal (big_count, 600);
    assert_int_equal (s_version (store, "big"), 600);
    assert_int_equal (s_version (store, "small"), 100);

    //  The log, in order, across positions 255, 256, 257 (key byte carry)
    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_log (store, 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 700);
    for (size_t index = 0; index < 700; index++) {
        assert_int_equal (seen->positions[index], index + 1);
        snprintf (body, sizeof body, "p%zu", index + 1);
        assert_string_equal (seen->bodies[index], body);
    }

    //  The big stream whole: versions 1..600 with increasing positions,
    //  each body the one stored at that position
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "big", 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 600);
    for (size_t index = 0; index < 600; index++) {
        assert_int_equal (seen->versions[index], index + 1);
        assert_true (index == 0 || seen->positions[index] > seen->positions[index - 1]);
        assert_int_equal (seen->positions[index] % 7 != 0, true);
        snprintf (body, sizeof body, "p%d", (int) seen->positions[index]);
        assert_string_equal (seen->bodies[index], body);
    }

    //  From a version, with a limit that crosses a chunk
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "big", 200, 300, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 300);
    assert_int_equal (seen->versions[0], 200);
    assert_int_equal (seen->versions[299], 499);

    //  Limits at the chunk edge
    const size_t limits[] = { 255, 256, 257, 512, 513, 600, 601 };
    for (size_t index = 0; index < sizeof limits / sizeof limits[0]; index++) {
        memset (seen, 0, sizeof *seen);
        assert_int_equal (zcq_store_read_stream (store, "big", 1, limits[index], s_collect, seen),
                          ZCQ_OK);
        assert_int_equal (seen->count, limits[index] < 600 ? limits[index] : 600);
        assert_int_equal (seen->versions[seen->count - 1], seen->count);
    }

    //  Early stop on either side of the chunk edge
    const size_t stops[] = { 1, 255, 256, 257, 300, 599, 600 };
    for (size_t index = 0; index < sizeof stops / sizeof stops[0]; index++) {
        memset (seen, 0, sizeof *seen);
        seen->stop_after = stops[index];
        assert_int_equal (zcq_store_read_stream (store, "big", 0, 0, s_collect, seen), ZCQ_OK);
        assert_int_equal (seen->count, stops[index]);
        memset (seen, 0, sizeof *seen);
        seen->stop_after = stops[index];
        assert_int_equal (zcq_store_read_log (store, 0, 0, s_collect, seen), ZCQ_OK);
        assert_int_equal (seen->count, stops[index]);
    }

    //  One append of 300 events: consecutive positions and versions
    const void *bodies[300];
    size_t lens[300];
    for (size_t index = 0; index < 300; index++) {
        bodies[index] = "batch";
        lens[index] = 5;
    }
    uint64_t version = 0, position = 0;
    assert_int_equal (
        zcq_store_append (store, "small", 100, bodies, lens, 300, &version, &position), ZCQ_OK);
    assert_int_equal (version, 400);
    assert_int_equal (position, 1000);
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_stream (store, "small", 101, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 300);
    for (size_t index = 0; index < 300; index++) {
        assert_int_equal (seen->positions[index], 701 + index);
        assert_int_equal (seen->versions[index], 101 + index);
    }
    free (seen);
    zcq_store_close (&store);
}

//  --------------------------------------------------------------------------
//  Writes: atomic batches, conflicts

static void
test_store_batch_all_or_nothing (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    s_append_one (store, "a", "first");
    assert_int_equal (zcq_store_head (store), 1);

    //  A batch of three events on two streams, a snapshot, a command id
    //  and a metadata value
    zcq_batch_t *batch = zcq_batch_new (store);
    assert_non_null (batch);
    assert_int_equal (zcq_batch_count (batch), 0);
    zcq_batch_event (batch, 2, "a", 1, 2, "second", 6);
    zcq_batch_event (batch, 3, "b", 1, 1, "third", 5);
    zcq_batch_event (batch, 4, "a", 1, 3, "fourth", 6);
    zcq_batch_snapshot (batch, "a", 1, 1, 3, "state", 5);
    int64_t now = s_now_us ();
    zcq_batch_command (batch, "cmd-1", 5, now, "ok", 2);
    zcq_batch_meta (batch, "checkpoint", "4", 1);
    assert_int_equal (zcq_batch_count (batch), 6);

    //  The commit fails: nothing of it is readable, the head stays
    zcq_store_inject_fault (store, 1);
    assert_int_equal (zcq_store_commit (store, batch, 4), ZCQ_IO);
    assert_int_equal (zcq_store_head (store), 1);
    assert_int_equal (s_log_count (store), 1);
    assert_int_equal (s_version (store, "a"), 1);
    assert_int_equal (s_version (store, "b"), 0);
    uint32_t schema;
    uint64_t version;
    void *bytes = NULL;
    size_t len;
    assert_int_equal (zcq_store_snapshot (store, "a", &schema, &version, &bytes, &len),
                      ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_command (store, "cmd-1", 5, &bytes, &len), ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_meta (store, "checkpoint", &bytes, &len), ZCQ_NOT_FOUND);

    //  The same batch commits whole on the next try
    assert_int_equal (zcq_store_commit (store, batch, 4), ZCQ_OK);
    assert_int_equal (zcq_store_head (store), 4);
    assert_int_equal (s_log_count (store), 4);
    assert_int_equal (s_version (store, "a"), 3);
    assert_int_equal (s_version (store, "b"), 1);
    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_stream (store, "a", 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 3);
    assert_string_equal (seen->bodies[2], "fourth");
    assert_int_equal (seen->positions[2], 4);
    assert_int_equal (zcq_store_snapshot (store, "a", &schema, &version, &bytes, &len), ZCQ_OK);
    free (bytes);
    assert_int_equal (zcq_store_command (store, "cmd-1", 5, &bytes, &len), ZCQ_OK);
    free (bytes);
    assert_int_equal (zcq_store_meta (store, "checkpoint", &bytes, &len), ZCQ_OK);
    free (bytes);

    //  A countdown of 2 lets one commit through and fails the second
    zcq_batch_clear (batch);
    assert_int_equal (zcq_batch_count (batch), 0);
    zcq_batch_event (batch, 5, "c", 1, 1, "fifth", 5);
    zcq_store_inject_fault (store, 2);
    assert_int_equal (zcq_store_commit (store, batch, 5), ZCQ_OK);
    zcq_batch_clear (batch);
    zcq_batch_event (batch, 6, "c", 1, 2, "sixth", 5);
    zcq_batch_event (batch, 7, "c", 1, 3, "seventh", 7);
    assert_int_equal (zcq_store_commit (store, batch, 7), ZCQ_IO);
    assert_int_equal (zcq_store_head (store), 5);
    assert_int_equal (s_version (store, "c"), 1);
    //  and the fault is spent
    assert_int_equal (zcq_store_commit (store, batch, 7), ZCQ_OK);
    assert_int_equal (s_version (store, "c"), 3);

    //  A cleared batch writes nothing
    zcq_batch_event (batch, 8, "d", 1, 1, "never", 5);
    zcq_batch_clear (batch);
    assert_int_equal (zcq_store_commit (store, batch, 7), ZCQ_OK);
    assert_int_equal (s_version (store, "d"), 0);
    assert_int_equal (zcq_store_head (store), 7);

    //  An append of several events under a fault: none of them lands
    const void *bodies[3] = { "x", "y", "z" };
    size_t lens[3] = { 1, 1, 1 };
    uint64_t new_version = 99, position = 99;
    zcq_store_inject_fault (store, 1);
    assert_int_equal (zcq_store_append (store, "e", 0, bodies, lens, 3, &new_version, &position),
                      ZCQ_IO);
    assert_int_equal (zcq_store_head (store), 7);
    assert_int_equal (s_version (store, "e"), 0);
    assert_int_equal (s_log_count (store), 7);
    //  and the next one takes the positions right after the head
    assert_int_equal (zcq_store_append (store, "e", 0, bodies, lens, 3, &new_version, &position),
                      ZCQ_OK);
    assert_int_equal (new_version, 3);
    assert_int_equal (position, 10);
    memset (seen, 0, sizeof *seen);
    assert_int_equal (zcq_store_read_log (store, 8, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 3);
    assert_int_equal (seen->positions[0], 8);
    assert_string_equal (seen->bodies[2], "z");
    free (seen);

    //  After a reopen the failed commits are still absent
    zcq_batch_destroy (&batch);
    assert_null (batch);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);
    store = s_open (path, NULL);
    assert_int_equal (zcq_store_head (store), 10);
    assert_int_equal (s_log_count (store), 10);
    assert_int_equal (s_version (store, "c"), 3);
    zcq_store_close (&store);
}

static void
test_store_conflicts (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    const void *bodies[2] = { "one", "two" };
    size_t lens[2] = { 3, 3 };
    uint64_t version = 99, position = 99;

    //  A new stream is at version 0: expecting 1 conflicts
    assert_int_equal (zcq_store_append (store, "s", 1, bodies, lens, 1, &version, &position),
                      ZCQ_CONFLICT);
    assert_int_equal (version, 0);
    assert_int_equal (position, 99);
    assert_int_equal (zcq_store_head (store), 0);

    assert_int_equal (zcq_store_append (store, "s", 0, bodies, lens, 2, &version, &position),
                      ZCQ_OK);
    assert_int_equal (version, 2);

    //  Stale and future expectations both conflict, with the current version
    const int64_t wrong[] = { 0, 1, 3, 100, INT64_MAX };
    for (size_t index = 0; index < sizeof wrong / sizeof wrong[0]; index++) {
        version = 99;
        assert_int_equal (
            zcq_store_append (store, "s", wrong[index], bodies, lens, 1, &version, &position),
            ZCQ_CONFLICT);
        assert_int_equal (version, 2);
    }
    assert_int_equal (zcq_store_head (store), 2);
    assert_int_equal (s_log_count (store), 2);
    //  NULL outputs are allowed on a conflict
    assert_int_equal (zcq_store_append (store, "s", 7, bodies, lens, 1, NULL, NULL), ZCQ_CONFLICT);

    //  The right version, and "any" (-1), both append
    assert_int_equal (zcq_store_append (store, "s", 2, bodies, lens, 1, &version, &position),
                      ZCQ_OK);
    assert_int_equal (version, 3);
    assert_int_equal (position, 3);
    assert_int_equal (zcq_store_append (store, "s", -1, bodies, lens, 1, &version, &position),
                      ZCQ_OK);
    assert_int_equal (version, 4);
    assert_int_equal (position, 4);
    zcq_store_close (&store);
}

//  --------------------------------------------------------------------------
//  Snapshots, command ids, metadata

static void
test_store_snapshots (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    uint32_t schema = 0;
    uint64_t version = 0;
    void *state_bytes = NULL;
    size_t len = 0;
    assert_int_equal (
        zcq_store_snapshot (store, "account/1", &schema, &version, &state_bytes, &len),
        ZCQ_NOT_FOUND);
    assert_null (state_bytes);

    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_snapshot (batch, "account/1", 9, 0xfedcba98, 5,
                        "\x81\xa1"
                        "b\x05",
                        4);
    zcq_batch_snapshot (batch, "account/10", 10, 2, 1, "ten", 3);
    assert_int_equal (zcq_store_commit (store, batch, zcq_store_head (store)), ZCQ_OK);
    assert_int_equal (zcq_store_head (store), 0); //  no events, head unmoved

    assert_int_equal (
        zcq_store_snapshot (store, "account/1", &schema, &version, &state_bytes, &len), ZCQ_OK);
    assert_true (schema == 0xfedcba98);
    assert_int_equal (version, 5);
    assert_int_equal (len, 4);
    assert_memory_equal (state_bytes,
                         "\x81\xa1"
                         "b\x05",
                         4);
    free (state_bytes);
    assert_int_equal (
        zcq_store_snapshot (store, "account/10", &schema, &version, &state_bytes, &len), ZCQ_OK);
    assert_int_equal (schema, 2);
    assert_int_equal (len, 3);
    free (state_bytes);
    assert_int_equal (
        zcq_store_snapshot (store, "account/100", &schema, &version, &state_bytes, &len),
        ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_snapshot (store, "account/", &schema, &version, &state_bytes, &len),
                      ZCQ_NOT_FOUND);

    //  A later snapshot replaces the earlier; an empty state is allowed
    zcq_batch_clear (batch);
    zcq_batch_snapshot (batch, "account/1", 9, 1, UINT64_MAX, "", 0);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);
    assert_int_equal (
        zcq_store_snapshot (store, "account/1", &schema, &version, &state_bytes, &len), ZCQ_OK);
    assert_int_equal (schema, 1);
    assert_true (version == UINT64_MAX);
    assert_int_equal (len, 0);
    assert_non_null (state_bytes);
    free (state_bytes);

    zcq_batch_destroy (&batch);
    zcq_store_close (&store);
}

static void
test_store_command_ids (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    assert_int_equal (zcq_store_dedup_window_s (store), 24 * 3600);
    void *result = NULL;
    size_t len = 0;
    assert_int_equal (zcq_store_command (store, "c1", 2, &result, &len), ZCQ_NOT_FOUND);

    zcq_batch_t *batch = zcq_batch_new (store);
    int64_t now = s_now_us ();
    zcq_batch_command (batch, "c1", 2, now, "result one", 10);
    zcq_batch_command (batch, "c1\0x", 4, now, "binary id", 9); //  ids are bytes
    zcq_batch_command (batch, "c2", 2, now, "", 0);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);

    assert_int_equal (zcq_store_command (store, "c1", 2, &result, &len), ZCQ_OK);
    assert_int_equal (len, 10);
    assert_memory_equal (result, "result one", 10);
    free (result);
    assert_int_equal (zcq_store_command (store, "c1\0x", 4, &result, &len), ZCQ_OK);
    assert_int_equal (len, 9);
    assert_memory_equal (result, "binary id", 9);
    free (result);
    assert_int_equal (zcq_store_command (store, "c2", 2, &result, &len), ZCQ_OK);
    assert_int_equal (len, 0);
    free (result);
    assert_int_equal (zcq_store_command (store, "c", 1, &result, &len), ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_command (store, "c1\0", 3, &result, &len), ZCQ_NOT_FOUND);

    //  Nothing is old enough to expire
    size_t expired = 99;
    assert_int_equal (zcq_store_expire_commands (store, s_now_us (), 100, &expired), ZCQ_OK);
    assert_int_equal (expired, 0);
    assert_int_equal (zcq_store_command (store, "c1", 2, &result, &len), ZCQ_OK);
    free (result);

    zcq_batch_destroy (&batch);
    zcq_store_close (&store);
}

static void
test_store_command_window_and_expiry (void **state)
{
    const char *path = *state;
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.dedup_window_s = 60;
    zcq_store_t *store = s_open (path, &options);
    assert_int_equal (zcq_store_dedup_window_s (store), 60);

    int64_t now = s_now_us ();
    int64_t old = now - 3600 * 1000000LL; //  an hour ago: outside the window
    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_command (batch, "old", 3, old, "was old", 7);
    zcq_batch_command (batch, "reused", 6, old, "first run", 9);
    zcq_batch_command (batch, "fresh", 5, now, "is fresh", 8);
    for (int index = 0; index < 5; index++) {
        char id[16];
        snprintf (id, sizeof id, "bulk-%d", index);
        zcq_batch_command (batch, id, strlen (id), old - index, "bulk", 4);
    }
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);
    //  The id is used again now: its newer record must survive the expiry
    //  of the old one
    zcq_batch_clear (batch);
    zcq_batch_command (batch, "reused", 6, now, "second run", 10);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);

    //  Outside the window reads as absent, inside as present
    void *result = NULL;
    size_t len = 0;
    assert_int_equal (zcq_store_command (store, "old", 3, &result, &len), ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_command (store, "bulk-0", 6, &result, &len), ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_command (store, "fresh", 5, &result, &len), ZCQ_OK);
    free (result);
    assert_int_equal (zcq_store_command (store, "reused", 6, &result, &len), ZCQ_OK);
    assert_int_equal (len, 10);
    assert_memory_equal (result, "second run", 10);
    free (result);

    //  A compaction drops the old records (the newer record of the reused
    //  id is the one it sees); the expiry index of earlier data dirs is
    //  no longer written, so there is nothing left there to expire
    assert_int_equal (zcq_store_compact_commands (store), ZCQ_OK);
    size_t expired = 99;
    assert_int_equal (zcq_store_expire_commands (store, s_now_us (), 100, &expired), ZCQ_OK);
    assert_int_equal (expired, 0);
    assert_int_equal (zcq_store_command (store, "reused", 6, &result, &len), ZCQ_OK);
    assert_memory_equal (result, "second run", 10);
    free (result);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);

    //  Reopened with a window of a year, the old records that were not
    //  expired would read as present again: the expired ones are gone
    options.dedup_window_s = 365 * 24 * 3600;
    store = s_open (path, &options);
    const char *gone[] = { "old", "bulk-0", "bulk-1", "bulk-2", "bulk-3", "bulk-4" };
    for (size_t index = 0; index < sizeof gone / sizeof gone[0]; index++)
        assert_int_equal (
            zcq_store_command (store, gone[index], strlen (gone[index]), &result, &len),
            ZCQ_NOT_FOUND);
    assert_int_equal (zcq_store_command (store, "fresh", 5, &result, &len), ZCQ_OK);
    free (result);
    assert_int_equal (zcq_store_command (store, "reused", 6, &result, &len), ZCQ_OK);
    assert_memory_equal (result, "second run", 10);
    free (result);

    //  And a record outside a short window is still stored until expired:
    //  a wide window sees it
    batch = zcq_batch_new (store);
    zcq_batch_command (batch, "kept", 4, old, "kept", 4);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);
    assert_int_equal (zcq_store_command (store, "kept", 4, &result, &len), ZCQ_OK);
    free (result);
    assert_int_equal (zcq_store_expire_commands (store, s_now_us (), 100, &expired), ZCQ_OK);
    assert_int_equal (expired, 0);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);
}

static void
test_store_metadata (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    void *value = NULL;
    size_t len = 0;
    assert_int_equal (zcq_store_meta (store, "view/accounts", &value, &len), ZCQ_NOT_FOUND);
    //  The store records its format
    assert_int_equal (zcq_store_meta (store, "format", &value, &len), ZCQ_OK);
    assert_int_equal (len, 1);
    assert_memory_equal (value, "3", 1);
    free (value);

    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_meta (batch, "view/accounts", "\x00\x00\x00\x07", 4);
    zcq_batch_meta (batch, "empty", "", 0);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);
    assert_int_equal (zcq_store_meta (store, "view/accounts", &value, &len), ZCQ_OK);
    assert_int_equal (len, 4);
    assert_memory_equal (value, "\x00\x00\x00\x07", 4);
    free (value);
    assert_int_equal (zcq_store_meta (store, "empty", &value, &len), ZCQ_OK);
    assert_int_equal (len, 0);
    free (value);
    assert_int_equal (zcq_store_meta (store, "view/account", &value, &len), ZCQ_NOT_FOUND);

    //  Overwrite
    zcq_batch_clear (batch);
    zcq_batch_meta (batch, "view/accounts", "8", 1);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_OK);
    assert_int_equal (zcq_store_meta (store, "view/accounts", &value, &len), ZCQ_OK);
    assert_int_equal (len, 1);
    assert_memory_equal (value, "8", 1);
    free (value);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);
}

//  A stream's version is found by probing its index (no head record is
//  kept): right for every length, including the powers of two and their
//  neighbours, and not fooled by a longer stream that shares the prefix.
static void
test_store_stream_version_probe (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    for (uint64_t count = 0; count <= 70; count++) {
        assert_int_equal (s_version (store, "probe"), count);
        s_append_one (store, "probe", "e");
        s_append_one (store, "probe!", "f");
        s_append_one (store, "probe!", "f");
    }
    assert_int_equal (s_version (store, "probe"), 71);
    assert_int_equal (s_version (store, "probe!"), 142);
    assert_int_equal (s_version (store, "prob"), 0);
    zcq_store_close (&store);
}

//  Data dirs of formats 1 (which kept head records) and 2 (whose commits
//  wrote the index) open, indexed through their head, and are moved to
//  format 3 so that older builds refuse them; an unknown format is refused.
static void
test_store_format_upgrade (void **state)
{
    const char *path = *state;
    const char *earlier[] = { "1", "2" };
    for (size_t index = 0; index < 2; index++) {
        zcq_store_t *store = s_open (path, NULL);
        s_append_one (store, "s", "a");
        zcq_batch_t *batch = zcq_batch_new (store);
        zcq_batch_meta (batch, "format", earlier[index], 1);
        assert_int_equal (zcq_store_commit (store, batch, zcq_store_head (store)), ZCQ_OK);
        zcq_batch_destroy (&batch);
        zcq_store_close (&store);

        store = s_open (path, NULL);
        void *value = NULL;
        size_t len = 0;
        assert_int_equal (zcq_store_meta (store, "format", &value, &len), ZCQ_OK);
        assert_int_equal (len, 1);
        assert_memory_equal (value, "3", 1);
        free (value);
        assert_int_equal (zcq_store_recent (store), 0);
        assert_int_equal (s_version (store, "s"), index + 1);
        zcq_store_close (&store);
    }
    zcq_store_t *store = s_open (path, NULL);
    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_meta (batch, "format", "7", 1);
    assert_int_equal (zcq_store_commit (store, batch, 2), ZCQ_OK);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);

    char error[256] = "";
    assert_int_equal (zcq_store_open (&store, path, NULL, error, sizeof error), ZCQ_CORRUPT);
    assert_null (store);
    assert_non_null (strstr (error, "unsupported format"));
}

//  --------------------------------------------------------------------------
//  Lifecycle

static void
test_store_reopen (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    char body[32];
    for (int index = 1; index <= 300; index++) {
        snprintf (body, sizeof body, "r%d", index);
        s_append_one (store, index % 2 ? "x" : "y", body);
    }
    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_snapshot (batch, "x", 1, 4, 150, "snap", 4);
    zcq_batch_command (batch, "id", 2, s_now_us (), "res", 3);
    zcq_batch_meta (batch, "m", "v", 1);
    assert_int_equal (zcq_store_commit (store, batch, 300), ZCQ_OK);
    zcq_batch_destroy (&batch);
    assert_true (zcq_store_disk_bytes (store) > 0);
    zcq_store_close (&store);

    store = s_open (path, NULL);
    assert_int_equal (zcq_store_head (store), 300);
    assert_int_equal (s_version (store, "x"), 150);
    assert_int_equal (s_version (store, "y"), 150);
    s_seen_t *seen = s_seen_new (0);
    assert_int_equal (zcq_store_read_log (store, 0, 0, s_collect, seen), ZCQ_OK);
    assert_int_equal (seen->count, 300);
    assert_string_equal (seen->bodies[299], "r300");
    free (seen);
    uint32_t schema;
    uint64_t version;
    void *bytes;
    size_t len;
    assert_int_equal (zcq_store_snapshot (store, "x", &schema, &version, &bytes, &len), ZCQ_OK);
    assert_int_equal (version, 150);
    assert_memory_equal (bytes, "snap", 4);
    free (bytes);
    assert_int_equal (zcq_store_command (store, "id", 2, &bytes, &len), ZCQ_OK);
    assert_memory_equal (bytes, "res", 3);
    free (bytes);
    assert_int_equal (zcq_store_meta (store, "m", &bytes, &len), ZCQ_OK);
    free (bytes);

    //  Appends continue after the head
    uint64_t position = 0;
    const void *bodies[1] = { "next" };
    size_t lens[1] = { 4 };
    assert_int_equal (zcq_store_append (store, "x", 150, bodies, lens, 1, &version, &position),
                      ZCQ_OK);
    assert_int_equal (position, 301);
    assert_int_equal (version, 151);
    zcq_store_close (&store);

    //  An empty store reopens at head 0
    char empty[512];
    snprintf (empty, sizeof empty, "%s/empty", path);
    store = s_open (empty, NULL);
    zcq_store_close (&store);
    store = s_open (empty, NULL);
    assert_int_equal (zcq_store_head (store), 0);
    zcq_store_close (&store);
}

static void
test_store_durability (void **state)
{
    assert_string_equal (zcq_durability_name (ZCQ_DURABILITY_WAL), "wal");
    assert_string_equal (zcq_durability_name (ZCQ_DURABILITY_FSYNC), "fsync");
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    assert_int_equal (options.durability, ZCQ_DURABILITY_WAL);
    assert_true (options.create);

    const char *path = *state;
    options.durability = ZCQ_DURABILITY_FSYNC;
    options.dedup_window_s = 0; //  0 = the default day
    options.cache_mb = 0;
    zcq_store_t *store = s_open (path, &options);
    assert_int_equal (zcq_store_durability (store), ZCQ_DURABILITY_FSYNC);
    assert_int_equal (zcq_store_dedup_window_s (store), 24 * 3600);
    s_append_one (store, "s", "durable");
    assert_int_equal (zcq_store_sync (store), ZCQ_OK);
    assert_int_equal (zcq_store_head (store), 1);
    zcq_store_close (&store);

    //  The same data in WAL mode
    options.durability = ZCQ_DURABILITY_WAL;
    store = s_open (path, &options);
    assert_int_equal (zcq_store_durability (store), ZCQ_DURABILITY_WAL);
    assert_int_equal (zcq_store_head (store), 1);
    s_append_one (store, "s", "wal");
    assert_int_equal (zcq_store_sync (store), ZCQ_OK);
    assert_int_equal (s_version (store, "s"), 2);
    zcq_store_close (&store);

    //  NULL options are the defaults
    store = s_open (path, NULL);
    assert_int_equal (zcq_store_durability (store), ZCQ_DURABILITY_WAL);
    assert_int_equal (zcq_store_head (store), 2);
    zcq_store_close (&store);
}

//  An open that fails gives an error, a reason and no store.
static void
s_expect_open_fails (const char *path, const zcq_store_options_t *options)
{
    zcq_store_t *store = (zcq_store_t *) &store; //  must be reset to NULL
    char error[256] = "";
    zcq_err_t rc = zcq_store_open (&store, path, options, error, sizeof error);
    if (rc == ZCQ_OK)
        fail_msg ("open of %s succeeded", path);
    assert_null (store);
    assert_true (strlen (error) > 0);
    //  and without an error buffer
    store = (zcq_store_t *) &store;
    assert_int_not_equal (zcq_store_open (&store, path, options, NULL, 0), ZCQ_OK);
    assert_null (store);
}

static void
test_store_open_failures (void **state)
{
    const char *path = *state;

    //  A regular file where the directory should be, or above it
    char file[512];
    snprintf (file, sizeof file, "%s/plain-file", path);
    FILE *handle = fopen (file, "w");
    assert_non_null (handle);
    fputs ("not a store", handle);
    fclose (handle);
    s_expect_open_fails (file, NULL);
    char below[600];
    snprintf (below, sizeof below, "%s/db", file);
    s_expect_open_fails (below, NULL);

    //  A place nobody may create a directory, root included
    s_expect_open_fails ("/proc/zcqrs-test-not-writable/db", NULL);

    //  A directory without write permission (meaningless for root)
    if (geteuid () != 0) {
        char locked[512];
        snprintf (locked, sizeof locked, "%s/locked", path);
        assert_int_equal (mkdir (locked, 0500), 0);
        char inside[600];
        snprintf (inside, sizeof inside, "%s/db", locked);
        s_expect_open_fails (inside, NULL);
        s_expect_open_fails (locked, NULL);
        chmod (locked, 0700);
    }

    //  A directory that is not a store, with create off
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.create = false;
    s_expect_open_fails (path, &options);
}

//  With create off, a missing data dir is an error and stays missing: a
//  mistyped path must not leave a stray directory behind.
static void
test_store_open_without_create (void **state)
{
    const char *path = *state;
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.create = false;
    char missing[512];
    snprintf (missing, sizeof missing, "%s/missing", path);
    s_expect_open_fails (missing, &options);
    struct stat info;
    if (stat (missing, &info) == 0)
        fail_msg ("zcq_store_open with create=false made the directory %s", missing);
}

static void
test_store_second_open_fails (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    s_append_one (store, "s", "one");

    zcq_store_t *second = NULL;
    char error[256] = "";
    zcq_err_t rc = zcq_store_open (&second, path, NULL, error, sizeof error);
    assert_int_not_equal (rc, ZCQ_OK);
    assert_null (second);
    assert_true (strlen (error) > 0);
    assert_non_null (strstr (error, "lock"));

    //  The first store is unharmed
    s_append_one (store, "s", "two");
    assert_int_equal (s_version (store, "s"), 2);
    zcq_store_close (&store);

    //  Once closed, the directory opens again
    store = s_open (path, NULL);
    assert_int_equal (zcq_store_head (store), 2);
    zcq_store_close (&store);
}

//  --------------------------------------------------------------------------
//  The index behind the log (store.c DESIGN 11-13)

#define S_MODEL_STREAMS  6
#define S_MODEL_VERSIONS 2048
#define S_MODEL_COMMANDS 2048

//  What a test committed, to check every read against. Built the same way
//  with or without a store (a child commits, the parent only counts).
typedef struct {
    const char *streams[S_MODEL_STREAMS];
    uint64_t versions[S_MODEL_STREAMS];
    uint64_t positions[S_MODEL_STREAMS][S_MODEL_VERSIONS]; //  of version v at v - 1
    struct {
        char id[32];
        int stream;
        uint64_t version; //  of its last event (the stream's, with none)
        uint64_t position;
        uint32_t events;
        int64_t time;
    } commands[S_MODEL_COMMANDS];
    size_t command_count;
    uint64_t head;   //  the head the next command is staged on
    uint64_t staged; //  events staged in the group
    zcq_writer_t *writer;
    zcq_batch_t *batch;
} s_model_t;

static s_model_t *
s_model_new (void)
{
    s_model_t *model = calloc (1, sizeof (s_model_t));
    assert_non_null (model);
    const char *streams[S_MODEL_STREAMS]
        = { "account/a", "account/b", "account/c", "account/d", "account/e", "account/ab" };
    memcpy (model->streams, streams, sizeof streams);
    model->writer = zcq_writer_new ();
    return model;
}

static void
s_model_destroy (s_model_t **model_p)
{
    zcq_writer_destroy (&(*model_p)->writer);
    zcq_batch_destroy (&(*model_p)->batch);
    free (*model_p);
    *model_p = NULL;
}

//  Start a group commit (store NULL: count only).
static void
s_model_begin (s_model_t *model, zcq_store_t *store)
{
    if (store) {
        zcq_batch_destroy (&model->batch);
        model->batch = zcq_batch_new (store);
        assert_int_equal (zcq_store_head (store), model->head);
    }
}

//  Stage a command of `events` events (0: none) on a stream, as the log
//  writer stages it: its events, then its id with its result.
static void
s_model_command (s_model_t *model, int stream, uint32_t events, int64_t time)
{
    assert_true (model->command_count < S_MODEL_COMMANDS);
    size_t number = model->command_count;
    char *id = model->commands[number].id;
    snprintf (id, sizeof model->commands[number].id, "cmd-%zu", number);
    const char *name = model->streams[stream];
    for (uint32_t event = 0; event < events; event++) {
        uint64_t position = model->head + ++model->staged;
        uint64_t version = ++model->versions[stream];
        assert_true (version <= S_MODEL_VERSIONS);
        model->positions[stream][version - 1] = position;
        if (model->batch) {
            s_event_body (model->writer, name, position, version, id, time, "x");
            zcq_batch_event (model->batch, position, name, strlen (name), version,
                             zcq_writer_data (model->writer), zcq_writer_size (model->writer));
        }
    }
    model->commands[number].stream = stream;
    model->commands[number].version = model->versions[stream];
    model->commands[number].position = model->head + model->staged;
    model->commands[number].events = events;
    model->commands[number].time = time;
    model->command_count++;
    if (model->batch) {
        uint8_t result[20 + 32 + 1 + 8];
        s_put_be (result, model->commands[number].version, 8);
        s_put_be (result + 8, model->commands[number].position, 8);
        s_put_be (result + 16, events, 4);
        size_t len = strlen (name);
        memcpy (result + 20, name, len + 1);
        memcpy (result + 21 + len, "deposit", 7);
        zcq_batch_command (model->batch, id, strlen (id), time, result, 28 + len);
    }
}

static void
s_model_commit (s_model_t *model, zcq_store_t *store)
{
    model->head += model->staged;
    model->staged = 0;
    if (store)
        assert_int_equal (zcq_store_commit (store, model->batch, model->head), ZCQ_OK);
}

typedef struct {
    uint64_t versions[S_MODEL_VERSIONS];
    uint64_t positions[S_MODEL_VERSIONS];
    size_t count;
} s_read_t;

static int
s_read_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_read_t *read = arg;
    assert_true (read->count < S_MODEL_VERSIONS);
    read->versions[read->count] = version;
    read->positions[read->count++] = position;
    return 0;
}

//  Check a stream's reads from version `from`, at most limit, against the
//  model.
static void
s_check_stream (s_model_t *model, zcq_store_t *store, int stream, uint64_t from, size_t limit)
{
    s_read_t *read = calloc (1, sizeof (s_read_t));
    assert_non_null (read);
    assert_int_equal (
        zcq_store_read_stream (store, model->streams[stream], from, limit, s_read_event, read),
        ZCQ_OK);
    uint64_t first = from ? from : 1, last = model->versions[stream];
    if (limit && last >= first && last - first + 1 > limit)
        last = first + limit - 1;
    size_t expected = last >= first ? (size_t) (last - first + 1) : 0;
    if (read->count != expected)
        fail_msg ("%s from %llu: %zu events read, %zu expected", model->streams[stream],
                  (unsigned long long) from, read->count, expected);
    for (size_t index = 0; index < read->count; index++) {
        assert_int_equal (read->versions[index], first + index);
        assert_int_equal (read->positions[index], model->positions[stream][first + index - 1]);
    }
    free (read);
}

//  Check every stream (read whole and in parts, its version) and every
//  command id against the model. With `typed`, every result must have its
//  command type; else one rebuilt from the log may have none (DESIGN 12).
//  Ids older than `window_s` must read as absent.
static void
s_model_check (s_model_t *model, zcq_store_t *store, bool typed, uint64_t window_s)
{
    assert_int_equal (zcq_store_head (store), model->head);
    for (int stream = 0; stream < S_MODEL_STREAMS; stream++) {
        assert_int_equal (s_version (store, model->streams[stream]), model->versions[stream]);
        uint64_t version = model->versions[stream];
        s_check_stream (model, store, stream, 0, 0);
        s_check_stream (model, store, stream, version / 2 + 1, 0);
        s_check_stream (model, store, stream, version / 3 + 1, version / 3 + 1);
        s_check_stream (model, store, stream, version + 1, 0);
    }
    int64_t expired_before = s_now_us () - (int64_t) window_s * 1000000;
    for (size_t number = 0; number < model->command_count; number++) {
        const char *id = model->commands[number].id;
        void *bytes = NULL;
        size_t len = 0;
        zcq_err_t err = zcq_store_command (store, id, strlen (id), &bytes, &len);
        if (model->commands[number].time < expired_before) {
            if (err != ZCQ_NOT_FOUND)
                fail_msg ("%s is older than the window, yet found (%s)", id, zcq_strerror (err));
            continue;
        }
        if (err != ZCQ_OK)
            fail_msg ("%s (%u events) not found: %s", id, model->commands[number].events,
                      zcq_strerror (err));
        const char *stream = model->streams[model->commands[number].stream];
        size_t stream_len = strlen (stream);
        assert_true (len == 21 + stream_len || len == 28 + stream_len);
        const uint8_t *result = bytes;
        assert_int_equal (s_get_be (result, 8), model->commands[number].version);
        assert_int_equal (s_get_be (result + 8, 8), model->commands[number].position);
        assert_int_equal (s_get_be (result + 16, 4), model->commands[number].events);
        assert_memory_equal (result + 20, stream, stream_len + 1);
        if (typed || len == 28 + stream_len) {
            assert_int_equal (len, 28 + stream_len);
            assert_memory_equal (result + 21 + stream_len, "deposit", 7);
        }
        free (bytes);
    }
}

//  A group of commands: some of several events, one without any.
static void
s_model_group (s_model_t *model, zcq_store_t *store, int round, int64_t time)
{
    s_model_begin (model, store);
    for (int index = 0; index < 5; index++)
        s_model_command (model, (round + index) % S_MODEL_STREAMS, 1 + (index + round) % 3, time);
    s_model_command (model, round % S_MODEL_STREAMS, 0, time);
    s_model_commit (model, store);
}

//  Streams and ids whose index is in RocksDB only, in memory only, or
//  split across both, read while the indexer is held, after it indexed
//  everything, and after a reopen.
static void
test_store_index_split (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    zcq_store_hold_index (store, true);
    s_model_t *model = s_model_new ();
    int64_t now = s_now_us ();
    //  in RocksDB: streams a, c (and the shared prefix ab)
    s_model_begin (model, store);
    for (int index = 0; index < 10; index++)
        s_model_command (model, index % 2 ? 0 : 2, 1 + index % 2, now);
    s_model_command (model, 5, 1, now);
    s_model_commit (model, store);
    assert_true (zcq_store_recent (store) > 0);
    assert_int_equal (zcq_store_index (store), ZCQ_OK);
    assert_int_equal (zcq_store_recent (store), 0);
    s_model_check (model, store, true, 3600);
    //  in memory: more of a (split), b (memory only), ids without events
    for (int round = 0; round < 4; round++) {
        s_model_begin (model, store);
        s_model_command (model, 0, 2, now);
        s_model_command (model, 1, 3, now);
        s_model_command (model, 1, 0, now);
        s_model_command (model, 4, 0, now);
        s_model_commit (model, store);
    }
    assert_true (zcq_store_recent (store) > 0);
    s_model_check (model, store, true, 3600);
    //  a snapshot, then the stream read on from it: the memory part
    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_snapshot (batch, "account/a", 9, 1, 12, "state", 5);
    assert_int_equal (zcq_store_commit (store, batch, model->head), ZCQ_OK);
    zcq_batch_destroy (&batch);
    uint32_t schema;
    uint64_t version;
    void *bytes;
    size_t len;
    assert_int_equal (zcq_store_snapshot (store, "account/a", &schema, &version, &bytes, &len),
                      ZCQ_OK);
    free (bytes);
    s_check_stream (model, store, 0, version + 1, 0);
    s_check_stream (model, store, 0, version - 3, 5); //  across the two parts

    assert_int_equal (zcq_store_index (store), ZCQ_OK);
    assert_int_equal (zcq_store_recent (store), 0);
    s_model_check (model, store, true, 3600);
    zcq_store_close (&store);
    store = s_open (path, NULL);
    assert_int_equal (zcq_store_recent (store), 0);
    s_model_check (model, store, true, 3600);
    zcq_store_close (&store);
    s_model_destroy (&model);
}

//  The scenario a child commits before it dies: `indexed` groups indexed,
//  then `tail` groups with the indexer held (a crash between the log write
//  and the index write). With store NULL: the model only.
static void
s_crash_scenario (s_model_t *model, zcq_store_t *store, int indexed, int tail, int64_t now,
                  int64_t old)
{
    for (int round = 0; round < indexed + tail; round++) {
        s_model_group (model, store, round, round % 4 == 3 ? old : now);
        if (store && round + 1 == indexed)
            assert_int_equal (zcq_store_index (store), ZCQ_OK);
    }
}

//  Run the scenario in a child process that exits without closing the
//  store (what a crash leaves: the log in the WAL, the tail unindexed).
//  The child runs this program again (s_child_main): a forked copy would
//  inherit RocksDB's background thread pool without its threads.
static void
s_crash_child (const char *path, uint64_t window_s, int indexed, int tail, int64_t now, int64_t old)
{
    char arguments[5][32];
    snprintf (arguments[0], sizeof arguments[0], "%llu", (unsigned long long) window_s);
    snprintf (arguments[1], sizeof arguments[1], "%d", indexed);
    snprintf (arguments[2], sizeof arguments[2], "%d", tail);
    snprintf (arguments[3], sizeof arguments[3], "%lld", (long long) now);
    snprintf (arguments[4], sizeof arguments[4], "%lld", (long long) old);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        execl ("/proc/self/exe", "test_store", "crash-child", path, arguments[0], arguments[1],
               arguments[2], arguments[3], arguments[4], (char *) NULL);
        _exit (127);
    }
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

//  A crash with an unindexed tail: the open indexes the log again, and
//  every stream read, version and id look-up is right, before and after
//  the index is written, and after a clean reopen. Ids rebuilt from the
//  log have no type; ids of commands without events keep theirs.
static void
test_store_crash_unindexed (void **state)
{
    const struct {
        int indexed, tail;
    } cases[] = { { 0, 12 }, { 7, 9 }, { 10, 0 } };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        char path[4096];
        snprintf (path, sizeof path, "%s/case-%zu", (char *) *state, index);
        int64_t now = s_now_us ();
        s_crash_child (path, 0, cases[index].indexed, cases[index].tail, now, now);
        s_model_t *model = s_model_new ();
        s_crash_scenario (model, NULL, cases[index].indexed, cases[index].tail, now, now);

        zcq_store_t *store = s_open (path, NULL);
        zcq_store_hold_index (store, true);
        assert_int_equal (zcq_store_recent (store) > 0, cases[index].tail > 0);
        s_model_check (model, store, false, 3600);
        //  and it goes on: more commits on top of the reindexed tail
        s_model_group (model, store, 99, s_now_us ());
        s_model_check (model, store, false, 3600);
        assert_int_equal (zcq_store_index (store), ZCQ_OK);
        s_model_check (model, store, false, 3600);
        zcq_store_close (&store);
        store = s_open (path, NULL);
        assert_int_equal (zcq_store_recent (store), 0);
        s_model_check (model, store, false, 3600);
        assert_int_equal (zcq_store_verified (store, NULL, 0), ZCQ_OK);
        zcq_store_close (&store);
        s_model_destroy (&model);
    }
}

//  A crash between the index's two ingestions (ZCQ_STORE_INDEX_CRASH: the
//  child dies once the `streams` file is in): the families are indexed to
//  different positions, and the open indexes each from its own marker.
static void
test_store_crash_between_ingestions (void **state)
{
    const char *path = *state;
    int64_t now = s_now_us ();
    char time_text[32];
    snprintf (time_text, sizeof time_text, "%lld", (long long) now);
    setenv ("ZCQ_STORE_INDEX_CRASH", "1", 1);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        execl ("/proc/self/exe", "test_store", "crash-child", path, "0", "6", "0", time_text,
               time_text, (char *) NULL);
        _exit (127);
    }
    unsetenv ("ZCQ_STORE_INDEX_CRASH");
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 3);
    s_model_t *model = s_model_new ();
    s_crash_scenario (model, NULL, 6, 0, now, now);

    zcq_store_t *store = s_open (path, NULL);
    zcq_store_hold_index (store, true);
    //  the streams are indexed: only the ids are in the recent part
    size_t ids = 0;
    for (size_t number = 0; number < model->command_count; number++)
        ids += model->commands[number].events > 0;
    assert_int_equal (zcq_store_recent (store), ids);
    s_model_check (model, store, false, 3600);
    assert_int_equal (zcq_store_index (store), ZCQ_OK);
    zcq_store_close (&store);
    store = s_open (path, NULL);
    s_model_check (model, store, false, 3600);
    zcq_store_close (&store);
    s_model_destroy (&model);
}

//  An id seen within the dedup window is found after a restart, wherever
//  its record was (RocksDB, the rebuilt tail, a command without events);
//  one older than the window reads as absent.
static void
test_store_dedup_window_restart (void **state)
{
    const char *path = *state;
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.dedup_window_s = 60;
    int64_t now = s_now_us ();
    int64_t inside = now - 30 * 1000000LL, outside = now - 3600 * 1000000LL;
    s_crash_child (path, 60, 6, 6, inside, outside);
    s_model_t *model = s_model_new ();
    s_crash_scenario (model, NULL, 6, 6, inside, outside);

    zcq_store_t *store = s_open (path, &options);
    s_model_check (model, store, false, 60);
    zcq_store_close (&store); //  indexes the rebuilt tail
    store = s_open (path, &options);
    s_model_check (model, store, false, 60);
    zcq_store_close (&store);
    s_model_destroy (&model);
}

//  Commands without events: their ids are written in the commit, found in
//  memory, in RocksDB, and after a crash that left them unindexed.
static void
test_store_commands_without_events (void **state)
{
    const char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    zcq_store_hold_index (store, true);
    s_model_t *model = s_model_new ();
    int64_t now = s_now_us ();
    s_model_begin (model, store);
    s_model_command (model, 0, 0, now);
    s_model_command (model, 1, 0, now);
    s_model_commit (model, store);
    assert_int_equal (zcq_store_head (store), 0);
    s_model_check (model, store, true, 3600);
    assert_int_equal (zcq_store_index (store), ZCQ_OK);
    s_model_check (model, store, true, 3600);
    zcq_store_close (&store);
    s_model_destroy (&model);

    //  an empty id is refused: the empty key is the index's marker
    store = s_open (path, NULL);
    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_batch_command (batch, "", 0, now, "r", 1);
    assert_int_equal (zcq_store_commit (store, batch, 0), ZCQ_INVALID);
    void *bytes;
    size_t len;
    assert_int_equal (zcq_store_command (store, "", 0, &bytes, &len), ZCQ_NOT_FOUND);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);

    //  a crash: the ids of commands without events are not in the log, yet
    //  remembered (with their type)
    char crashed[4096];
    snprintf (crashed, sizeof crashed, "%s/crashed", path);
    s_crash_child (crashed, 0, 0, 4, now, now);
    model = s_model_new ();
    s_crash_scenario (model, NULL, 0, 4, now, now);
    store = s_open (crashed, NULL);
    s_model_check (model, store, false, 3600);
    for (size_t number = 0; number < model->command_count; number++) {
        if (model->commands[number].events)
            continue;
        const char *id = model->commands[number].id;
        assert_int_equal (zcq_store_command (store, id, strlen (id), &bytes, &len), ZCQ_OK);
        assert_memory_equal ((char *) bytes + len - 7, "deposit", 7);
        free (bytes);
    }
    zcq_store_close (&store);
    s_model_destroy (&model);
}

//  The indexer moving segments in the background (sealing every few
//  entries) while each commit is read back at once: versions, the new
//  events and the newest id never go missing between memory and RocksDB.
static void
test_store_indexer_running (void **state)
{
    const char *path = *state;
    setenv ("ZCQ_STORE_INDEX_ENTRIES", "40", 1);
    zcq_store_t *store = s_open (path, NULL);
    unsetenv ("ZCQ_STORE_INDEX_ENTRIES");
    s_model_t *model = s_model_new ();
    int64_t now = s_now_us ();
    size_t entries = 0;
    for (int round = 0; round < 150; round++) {
        s_model_group (model, store, round, now);
        entries += 6 + 5 + 1; //  at most: events and ids of a group
        for (int stream = 0; stream < S_MODEL_STREAMS; stream++) {
            uint64_t version = model->versions[stream];
            assert_int_equal (s_version (store, model->streams[stream]), version);
            s_check_stream (model, store, stream, version > 4 ? version - 4 : 1, 0);
        }
        const char *id = model->commands[model->command_count - 2].id;
        void *bytes;
        size_t len;
        assert_int_equal (zcq_store_command (store, id, strlen (id), &bytes, &len), ZCQ_OK);
        free (bytes);
    }
    //  the indexer keeps up: the recent part shrinks without help
    int64_t deadline = zclock_mono () + 10000;
    while (zcq_store_recent (store) > 200 && zclock_mono () < deadline)
        zclock_sleep (10); //  polling the indexer, with a deadline
    assert_true (zcq_store_recent (store) <= 200);
    s_model_check (model, store, true, 3600);
    zcq_store_close (&store);
    store = s_open (path, NULL);
    assert_int_equal (zcq_store_recent (store), 0);
    s_model_check (model, store, true, 3600);
    zcq_store_close (&store);
    s_model_destroy (&model);
}

//  --------------------------------------------------------------------------
//  Damage found on open

//  The biggest file in dir whose name ends with suffix; caller frees.
static char *
s_biggest_file (const char *dir_path, const char *suffix)
{
    DIR *dir = opendir (dir_path);
    assert_non_null (dir);
    char *found = NULL;
    off_t best = -1;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name), suffix_len = strlen (suffix);
        if (len < suffix_len || strcmp (entry->d_name + len - suffix_len, suffix) != 0)
            continue;
        char path[4096];
        snprintf (path, sizeof path, "%s/%s", dir_path, entry->d_name);
        struct stat info;
        if (stat (path, &info) == 0 && info.st_size > best) {
            free (found);
            found = strdup (path);
            best = info.st_size;
        }
    }
    closedir (dir);
    assert_non_null (found);
    return found;
}

//  Flip one byte at `fraction` of the file's size.
static void
s_flip_byte (const char *path, double fraction)
{
    int fd = open (path, O_RDWR);
    assert_true (fd >= 0);
    struct stat info;
    assert_int_equal (fstat (fd, &info), 0);
    off_t offset = (off_t) ((double) info.st_size * fraction);
    unsigned char byte;
    assert_int_equal (pread (fd, &byte, 1, offset), 1);
    byte ^= 0x5a;
    assert_int_equal (pwrite (fd, &byte, 1, offset), 1);
    close (fd);
}

//  Leave a store at path whose last `count` events are only in the WAL,
//  as a crash leaves it: a child process (this program again, see
//  s_crash_child) appends them and exits without closing the store. Each
//  body is about 1000 bytes, so the WAL spans blocks; they are event
//  bodies, which the open indexes again.
static void
s_crash_with_wal (const char *path, int count)
{
    char text[16];
    snprintf (text, sizeof text, "%d", count);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        execl ("/proc/self/exe", "test_store", "wal-child", path, text, (char *) NULL);
        _exit (127);
    }
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

//  A WAL cut short (a torn last write, what a crash or a power cut
//  leaves) opens, without its last event; a WAL damaged in the middle
//  (intact records after the damage, which RocksDB's recovery would drop
//  silently) is refused with the offset, and opens once cut there.
static void
test_store_wal_damage (void **state)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/torn", (char *) *state);
    s_crash_with_wal (path, 100);
    char *wal = s_biggest_file (path, ".log");
    struct stat info;
    assert_int_equal (stat (wal, &info), 0);
    assert_true (info.st_size > 3 * 32768);
    assert_int_equal (truncate (wal, info.st_size - 10), 0);
    free (wal);
    zcq_store_t *store = s_open (path, NULL);
    assert_int_equal (zcq_store_head (store), 99);
    assert_int_equal (zcq_test_log_events (store), 99);
    assert_int_equal (zcq_store_verified (store, NULL, 0), ZCQ_OK);
    zcq_store_close (&store);

    snprintf (path, sizeof path, "%s/garbled", (char *) *state);
    s_crash_with_wal (path, 100);
    wal = s_biggest_file (path, ".log");
    s_flip_byte (wal, 0.4);
    char error[1024] = "";
    assert_int_equal (zcq_store_open (&store, path, NULL, error, sizeof error), ZCQ_CORRUPT);
    assert_null (store);
    assert_non_null (strstr (error, wal));
    const char *damaged = strstr (error, "damaged at byte ");
    assert_non_null (damaged);
    long long offset = atoll (damaged + strlen ("damaged at byte "));
    assert_true (offset > 0);
    assert_non_null (strstr (error, "intact records follow (events at positions "));
    assert_non_null (strstr (error, "truncate -s"));
    //  still refused: the refusal changed nothing
    assert_int_equal (zcq_store_open (&store, path, NULL, NULL, 0), ZCQ_CORRUPT);

    //  the operator accepts the loss: cut the WAL where the message says
    assert_int_equal (truncate (wal, (off_t) offset), 0);
    free (wal);
    store = s_open (path, NULL);
    uint64_t head = zcq_store_head (store);
    assert_true (head > 0 && head < 100);
    assert_int_equal (zcq_test_log_events (store), head);
    assert_int_equal (s_version (store, "s"), head);
    zcq_store_close (&store);
}

//  A garbled data block of the log's .sst is found on open: the log check
//  reports it (RocksDB itself would find it only when the block is read).
static void
test_store_sst_damage (void **state)
{
    char *path = *state;
    zcq_store_t *store = s_open (path, NULL);
    char body[200];
    for (int index = 0; index < 2000; index++) {
        snprintf (body, sizeof body, "event %d %0150d", index, index);
        s_append_one (store, "s", body);
    }
    zcq_store_close (&store); //  flushes the memtables into .sst files

    store = s_open (path, NULL);
    assert_int_equal (zcq_store_verified (store, NULL, 0), ZCQ_OK);
    zcq_store_close (&store);

    char *sst = s_biggest_file (path, ".sst");
    s_flip_byte (sst, 0.3);
    free (sst);
    store = s_open (path, NULL);
    char error[1024] = "";
    assert_int_equal (zcq_store_verified (store, error, sizeof error), ZCQ_CORRUPT);
    assert_non_null (strstr (error, "verifying the log"));
    //  asking again gives the same answer
    assert_int_equal (zcq_store_verified (store, NULL, 0), ZCQ_CORRUPT);
    zcq_store_close (&store);

    //  without the check, the open does not read the log
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.verify = false;
    store = s_open (path, &options);
    assert_int_equal (zcq_store_verified (store, NULL, 0), ZCQ_OK);
    zcq_store_close (&store);
}

//  The children of s_crash_child and s_crash_with_wal: they write, then
//  exit without closing the store.
static int
s_child_main (int argc, char **argv)
{
    zcq_store_t *store = NULL;
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    if (strcmp (argv[1], "crash-child") == 0 && argc == 8) {
        options.dedup_window_s = strtoull (argv[3], NULL, 10);
        if (zcq_store_open (&store, argv[2], &options, NULL, 0) != ZCQ_OK)
            return 1;
        zcq_store_hold_index (store, true);
        s_model_t *model = s_model_new ();
        s_crash_scenario (model, store, atoi (argv[4]), atoi (argv[5]), atoll (argv[6]),
                          atoll (argv[7]));
        _exit (zcq_store_head (store) == model->head ? 0 : 1);
    }
    if (strcmp (argv[1], "wal-child") == 0 && argc == 4) {
        if (zcq_store_open (&store, argv[2], &options, NULL, 0) != ZCQ_OK)
            return 1;
        zcq_writer_t *writer = zcq_writer_new ();
        char text[900], id[32];
        for (int index = 0; index < atoi (argv[3]); index++) {
            memset (text, 'a' + index % 26, sizeof text - 1);
            text[sizeof text - 1] = 0;
            snprintf (id, sizeof id, "crash-%d", index);
            uint64_t position = zcq_store_head (store) + 1;
            s_event_body (writer, "s", position, position, id, s_now_us (), text);
            const void *bodies[1] = { zcq_writer_data (writer) };
            size_t lens[1] = { zcq_writer_size (writer) };
            if (zcq_store_append (store, "s", -1, bodies, lens, 1, NULL, NULL) != ZCQ_OK)
                _exit (1);
        }
        _exit (0); //  no close: the events stay in the WAL only, unindexed
    }
    return 2;
}

int
main (int argc, char **argv)
{
    if (argc > 2)
        return s_child_main (argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_store_walkthrough),
        cmocka_unit_test_setup_teardown (test_store_read_log, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_read_stream, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_stream_prefixes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_many_positions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_batch_all_or_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_conflicts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_snapshots, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_command_ids, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_command_window_and_expiry, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_metadata, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_stream_version_probe, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_format_upgrade, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_durability, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_open_failures, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_open_without_create, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_second_open_fails, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_index_split, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_crash_unindexed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_crash_between_ingestions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_dedup_window_restart, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_commands_without_events, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_indexer_running, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_wal_damage, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_store_sst_damage, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
