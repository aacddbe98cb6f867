/*  fuzz_event: event bodies as a remote subscriber reads them, and snapshot
    bytes as the node reads them back from disk.

    For every input:
    1.  Event path (engine/catchup.c, actors/projection.c heartbeats): the
        bytes are decoded with zcq_doc_decode and no limits (as those
        readers do), then given to zcq_event_parse; a parsed event's
        accessors must agree with the body's fields, and zcq_event_int /
        zcq_event_str are read the way the bank's handlers read them. The
        heartbeat reading (`head` as uint) is done on the same root.
    2.  Snapshot path (engine/store.c zcq_store_snapshot, then
        actors/aggregate_shard.c s_restore_snapshot): the bytes are stored
        as a snapshot in a real RocksDB store, read back, compared, and
        decoded with zcq_doc_decode and no limits, then read the way a
        domain's snapshot_decode would.
*/
#include "fuzz_common.h"
#include "zcq_internal.h"
#include <string.h>
#include <unistd.h>

#define S_MAX_ENTRIES 65536 //  more entries than any input can hold

static zcq_doc_t *s_doc;
static zcq_event_t s_event;
static zcq_store_t *s_store;
static zcq_batch_t *s_batch;
static char s_dir[64];

static void
s_cleanup (void)
{
    zcq_batch_destroy (&s_batch);
    zcq_store_close (&s_store);
    zcq_doc_destroy (&s_doc);
    zcq_event_release (&s_event);
    if (s_dir[0]) {
        char command[128];
        snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
        if (system (command) != 0)
            fprintf (stderr, "fuzz_event: could not remove %s\n", s_dir);
    }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    zsys_handler_set (NULL);
    s_doc = zcq_doc_new ();
    snprintf (s_dir, sizeof s_dir, "/tmp/zcq-fuzz-event-XXXXXX");
    if (!mkdtemp (s_dir)) {
        perror ("mkdtemp");
        exit (1);
    }
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.cache_mb = 8;
    char error[256];
    if (zcq_store_open (&s_store, s_dir, &options, error, sizeof error) != ZCQ_OK) {
        fprintf (stderr, "fuzz_event: cannot open a store in %s: %s\n", s_dir, error);
        exit (1);
    }
    s_batch = zcq_batch_new (s_store);
    atexit (s_cleanup);
    return 0;
}

//  The entries of the body named `field` (a body may repeat a key: the
//  parser may take any of them, but only one of them).
static size_t
s_entries (const zcq_value_t *body, const char *field, const zcq_value_t **found, size_t max)
{
    size_t count = 0;
    for (size_t index = 0; index < zcq_value_size (body); index++) {
        const char *name;
        size_t len;
        if (zcq_value_str (zcq_value_key_at (body, index), &name, &len) && len == strlen (field)
            && memcmp (name, field, len) == 0 && count < max)
            found[count++] = zcq_value_val_at (body, index);
    }
    return count;
}

//  A string field of the body as the event parser must have copied it.
static void
s_same_str (const zcq_value_t *body, const char *field, const char *copied)
{
    static const zcq_value_t *found[S_MAX_ENTRIES];
    size_t count = s_entries (body, field, found, S_MAX_ENTRIES);
    for (size_t index = 0; index < count; index++) {
        const char *str;
        size_t len;
        if (zcq_value_str (found[index], &str, &len) && strlen (copied) == len
            && memcmp (copied, str, len) == 0)
            return;
    }
    FUZZ_ASSERT (false, "%s '%s' is none of the body's %zu %s fields", field, copied, count, field);
}

static void
s_same_uint (const zcq_value_t *body, const char *field, uint64_t parsed)
{
    static const zcq_value_t *found[S_MAX_ENTRIES];
    size_t count = s_entries (body, field, found, S_MAX_ENTRIES);
    for (size_t index = 0; index < count; index++) {
        uint64_t value;
        int64_t signed_value;
        if ((zcq_value_uint (found[index], &value) && value == parsed)
            || (zcq_value_int (found[index], &signed_value) && (uint64_t) signed_value == parsed))
            return;
    }
    FUZZ_ASSERT (false, "%s %llu is none of the body's %s fields", field,
                 (unsigned long long) parsed, field);
}

static void
s_same_value (const zcq_value_t *body, const char *field, const zcq_value_t *parsed)
{
    static const zcq_value_t *found[S_MAX_ENTRIES];
    size_t count = s_entries (body, field, found, S_MAX_ENTRIES);
    if (!parsed && count == 0)
        return;
    for (size_t index = 0; index < count; index++)
        if (found[index] == parsed)
            return;
    FUZZ_ASSERT (false, "%s is none of the body's %zu %s fields", field, count, field);
}

static void
s_event_path (const uint8_t *data, size_t size)
{
    if (zcq_doc_decode (s_doc, data, size, NULL) != ZCQ_OK)
        return;
    const zcq_value_t *root = zcq_doc_root (s_doc);
    //  heartbeat
    uint64_t head = 0;
    zcq_value_uint (zcq_value_get (root, "head"), &head);
    if (zcq_event_parse (&s_event, root) != ZCQ_OK)
        return;
    const zcq_event_t *event = &s_event;
    FUZZ_ASSERT (zcq_event_body (event) == root, "body");
    s_same_uint (root, "position", zcq_event_position (event));
    s_same_uint (root, "version", zcq_event_version (event));
    s_same_uint (root, "time", (uint64_t) zcq_event_time (event));
    s_same_str (root, "type", zcq_event_type (event));
    s_same_str (root, "aggregate", zcq_event_aggregate (event));
    s_same_str (root, "key", zcq_event_key (event));
    s_same_str (root, "stream", zcq_event_stream (event));
    s_same_str (root, "command", zcq_event_command_id (event));
    s_same_str (root, "node", zcq_event_node (event));
    s_same_value (root, "data", zcq_event_data (event));
    s_same_value (root, "meta", zcq_event_meta (event));
    //  what domain handlers read
    zcq_event_int (event, "amount", 0);
    zcq_event_int (event, "overdraft", 0);
    const char *owner = zcq_event_str (event, "owner");
    FUZZ_ASSERT (owner != NULL, "event_str gave NULL");
    size_t owner_len = strlen (owner);
    (void) owner_len;
    //  every data field by name, as a generic projection would
    const zcq_value_t *payload = zcq_event_data (event);
    for (size_t index = 0; index < zcq_value_size (payload) && index < 32; index++) {
        char name[64];
        if (zcq_value_copy_str (zcq_value_key_at (payload, index), name, sizeof name)) {
            zcq_event_int (event, name, 0);
            zcq_event_str (event, name);
        }
    }
}

static void
s_snapshot_path (const uint8_t *data, size_t size)
{
    static uint64_t round;
    round++;
    const char *stream = "account/fuzz";
    uint32_t schema = (uint32_t) (round * 2654435761u);
    zcq_batch_clear (s_batch);
    zcq_batch_snapshot (s_batch, stream, strlen (stream), schema, round, data, size);
    FUZZ_ASSERT (zcq_store_commit (s_store, s_batch, zcq_store_head (s_store)) == ZCQ_OK,
                 "snapshot commit failed");
    uint32_t read_schema = 0;
    uint64_t read_version = 0;
    void *bytes = NULL;
    size_t len = 0;
    FUZZ_ASSERT (zcq_store_snapshot (s_store, stream, &read_schema, &read_version, &bytes, &len)
                     == ZCQ_OK,
                 "snapshot not read back");
    FUZZ_ASSERT (read_schema == schema && read_version == round, "snapshot header");
    FUZZ_ASSERT (len == size && (size == 0 || memcmp (bytes, data, size) == 0), "snapshot bytes");
    //  s_restore_snapshot: zcq_doc_decode with no limits, then snapshot_decode
    if (zcq_doc_decode (s_doc, bytes, len, NULL) == ZCQ_OK) {
        const zcq_value_t *root = zcq_doc_root (s_doc);
        char owner[129];
        zcq_value_get_int (root, "balance", 0);
        zcq_value_get_int (root, "overdraft", 0);
        zcq_value_get_str (root, "owner", owner, sizeof owner, "");
        bool flag;
        zcq_value_bool (zcq_value_get (root, "opened"), &flag);
        for (size_t index = 0; index < zcq_value_size (root) && index < 32; index++) {
            zcq_value_type (zcq_value_key_at (root, index));
            zcq_value_type (zcq_value_val_at (root, index));
            zcq_value_type (zcq_value_at (root, index));
        }
    }
    free (bytes);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_event_path (data, size);
    s_snapshot_path (data, size);
    return 0;
}
