/*  test_log_writer.c: the log writer's core, zcq_committer_t, driven
    directly with hand-made COMMIT batches on a real store: several batches
    per shard and group, several generations, several shards, commits that
    fail, and every command's outcome checked against what the store holds
    (the failure protocol F1-F3 in actors/zcq_actors.h). */
#include "testutil.h"
#include "zcq_actors.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    char *dir;
    zcq_store_t *store;
    zcq_stats_t stats;
    zcq_committer_t *committer;
    zcq_writer_t *body;
    zcq_writer_t *events;
} s_fixture_t;

static int
s_setup (void **state)
{
    s_fixture_t *fixture = calloc (1, sizeof (s_fixture_t));
    fixture->dir = zcq_test_dir ("log-writer");
    fixture->store = zcq_test_store (fixture->dir);
    fixture->committer = zcq_committer_new (fixture->store, &fixture->stats, 3);
    fixture->body = zcq_writer_new ();
    fixture->events = zcq_writer_new ();
    assert_non_null (fixture->committer);
    *state = fixture;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fixture_t *fixture = *state;
    zcq_committer_destroy (&fixture->committer);
    zcq_store_close (&fixture->store);
    zcq_writer_destroy (&fixture->body);
    zcq_writer_destroy (&fixture->events);
    zcq_test_rmdir (&fixture->dir);
    free (fixture);
    return 0;
}

//  A decided command as a shard hands it to the writer: stream
//  account/<key>, `events` event bodies in the ZCQ/1 layout, the first at
//  version `before` + 1.
static zcq_command_t *
s_command (s_fixture_t *fixture, const char *id, const char *key, uint64_t before, int events)
{
    zcq_command_t *command = zcq_command_new ();
    snprintf (command->id_copy, sizeof command->id_copy, "%s", id);
    command->id = command->id_copy;
    command->id_len = strlen (id);
    command->stream_len
        = (size_t) snprintf (command->stream, sizeof command->stream, "account/%s", key);
    command->key = command->stream + strlen ("account/");
    command->key_len = strlen (key);
    command->type = "deposit";
    command->type_len = strlen ("deposit");
    zcq_writer_reset (fixture->events);
    for (int index = 0; index < events; index++) {
        zcq_writer_t *body = fixture->body;
        zcq_writer_reset (body);
        zcq_event_encode_head (body, "test", -1, command->stream, command->stream_len,
                               strlen ("account"), before + 1 + (uint64_t) index, "deposited", 1,
                               id, strlen (id), NULL);
        zcq_writer_map (body, 0);
        uint8_t length[4];
        zcq_put_be32 (length, (uint32_t) zcq_writer_size (body));
        zcq_writer_raw (fixture->events, length, 4);
        zcq_writer_raw (fixture->events, zcq_writer_data (body), zcq_writer_size (body));
    }
    command->events_size = zcq_writer_size (fixture->events);
    command->events = malloc (command->events_size ? command->events_size : 1);
    if (command->events_size)
        memcpy (command->events, zcq_writer_data (fixture->events), command->events_size);
    command->event_count = (uint32_t) events;
    command->version = before + (uint64_t) events;
    command->outcome = ZCQ_OK;
    return command;
}

static zcq_cbatch_t *
s_batch (uint32_t shard, uint32_t generation, uint64_t epoch)
{
    zcq_cbatch_t *batch = zcq_cbatch_new (ZCQ_BATCH_COMMIT, shard);
    batch->generation = generation;
    batch->epoch = epoch;
    return batch;
}

//  The id of the event at position, "" when there is none.
typedef struct {
    char id[ZCQ_ID_MAX + 1];
    zcq_doc_t *doc;
} s_lookup_t;

static int
s_lookup_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_lookup_t *lookup = arg;
    assert_int_equal (zcq_doc_decode (lookup->doc, body, len, NULL), ZCQ_OK);
    zcq_value_get_str (zcq_doc_root (lookup->doc), "command", lookup->id, sizeof lookup->id, "");
    assert_int_equal (zcq_value_get_int (zcq_doc_root (lookup->doc), "position", 0), position);
    return 1;
}

static void
s_event_id (zcq_store_t *store, uint64_t position, char *id, size_t size)
{
    s_lookup_t lookup = { "", zcq_doc_new () };
    assert_int_equal (zcq_store_read_log (store, position, 1, s_lookup_event, &lookup), ZCQ_OK);
    zcq_doc_destroy (&lookup.doc);
    snprintf (id, size, "%s", lookup.id);
}

//  F1 for one command: `ok` and its events at its positions with its id,
//  or failed and its id unknown to the store.
static void
s_assert_outcome (zcq_store_t *store, const zcq_command_t *command)
{
    void *result = NULL;
    size_t len;
    zcq_err_t err = zcq_store_command (store, command->id, command->id_len, &result, &len);
    if (command->outcome == ZCQ_OK) {
        if (err != ZCQ_OK)
            fail_msg ("%s answered ok but the store does not know it", command->id_copy);
        for (uint32_t index = 0; index < command->event_count; index++) {
            char id[ZCQ_ID_MAX + 1];
            s_event_id (store, command->position - index, id, sizeof id);
            if (!streq (id, command->id_copy))
                fail_msg ("%s answered ok at position %llu, which holds '%s'", command->id_copy,
                          (unsigned long long) (command->position - index), id);
        }
    }
    else if (err != ZCQ_NOT_FOUND)
        fail_msg ("%s failed (%s) but the store holds it", command->id_copy, command->message);
    free (result);
}

//  --------------------------------------------------------------------------

static void
test_walk_through (void **state)
{
    s_fixture_t *fixture = *state;
    zcq_cbatch_t *batch = s_batch (0, 0, zcq_store_epoch (fixture->store));
    zcq_cbatch_add (batch, s_command (fixture, "walk-1", "1", 0, 1));
    zcq_cbatch_add (batch, s_command (fixture, "walk-2", "2", 0, 2));
    zcq_cbatch_t *group[] = { batch };
    zcq_committer_commit (fixture->committer, group, 1, zcq_now_us ());
    assert_int_equal (batch->kind, ZCQ_BATCH_COMMITTED);
    assert_true (batch->written);
    assert_int_equal (batch->commands[0]->position, 1);
    assert_int_equal (batch->commands[1]->position, 3);
    assert_int_equal (zcq_committer_head (fixture->committer), 3);
    assert_int_equal (zcq_store_head (fixture->store), 3);
    s_assert_outcome (fixture->store, batch->commands[0]);
    s_assert_outcome (fixture->store, batch->commands[1]);
    //  the stored result names the command's stream and type
    void *bytes;
    size_t len;
    assert_int_equal (zcq_store_command (fixture->store, "walk-2", 6, &bytes, &len), ZCQ_OK);
    zcq_result_t result;
    assert_true (zcq_result_parse (&result, bytes, len));
    assert_int_equal (result.version, 2);
    assert_int_equal (result.position, 3);
    assert_int_equal (result.event_count, 2);
    assert_memory_equal (result.stream, "account/2", 9);
    assert_int_equal (result.stream_len, 9);
    assert_memory_equal (result.type, "deposit", 7);
    assert_int_equal (result.type_len, 7);
    free (bytes);
    zcq_cbatch_destroy (&batch);
}

//  The defect F2 closes: two batches of one shard and generation in a group
//  whose commit fails. Both fail, the head stays, and the shard's later
//  batches of that generation fail too until it moves past it.
static void
test_failed_group_fails_every_batch (void **state)
{
    s_fixture_t *fixture = *state;
    uint64_t epoch = zcq_store_epoch (fixture->store);
    zcq_cbatch_t *first = s_batch (0, 0, epoch);
    zcq_cbatch_add (first, s_command (fixture, "a-1", "1", 0, 1));
    zcq_cbatch_t *second = s_batch (0, 0, epoch);
    zcq_cbatch_add (second, s_command (fixture, "a-2", "2", 0, 1));
    zcq_cbatch_add (second, s_command (fixture, "a-3", "1", 1, 1));
    zcq_cbatch_t *other = s_batch (1, 0, epoch);
    zcq_cbatch_add (other, s_command (fixture, "a-4", "4", 0, 1));
    zcq_cbatch_t *group[] = { first, second, other };
    zcq_store_inject_fault (fixture->store, 1);
    zcq_committer_commit (fixture->committer, group, 3, zcq_now_us ());
    for (size_t index = 0; index < 3; index++) {
        assert_false (group[index]->written);
        for (size_t command = 0; command < group[index]->count; command++) {
            assert_int_equal (group[index]->commands[command]->outcome, ZCQ_INTERNAL);
            s_assert_outcome (fixture->store, group[index]->commands[command]);
        }
    }
    assert_int_equal (zcq_committer_head (fixture->committer), 0);
    assert_int_equal (zcq_store_head (fixture->store), 0);

    //  generation 0 of shards 0 and 1 is poisoned; shard 2 is not
    zcq_cbatch_t *late = s_batch (0, 0, epoch);
    zcq_cbatch_add (late, s_command (fixture, "a-5", "5", 0, 1));
    zcq_cbatch_t *next = s_batch (0, 1, epoch);
    zcq_cbatch_add (next, s_command (fixture, "a-6", "1", 0, 1));
    zcq_cbatch_t *untouched = s_batch (2, 0, epoch);
    zcq_cbatch_add (untouched, s_command (fixture, "a-7", "7", 0, 1));
    zcq_cbatch_t *again[] = { late, next, untouched };
    zcq_committer_commit (fixture->committer, again, 3, zcq_now_us ());
    assert_false (late->written);
    assert_int_equal (late->commands[0]->outcome, ZCQ_INTERNAL);
    assert_true (next->written);
    assert_true (untouched->written);
    //  positions of the failed group are reused: nothing of it is stored
    assert_int_equal (next->commands[0]->position, 1);
    assert_int_equal (untouched->commands[0]->position, 2);
    for (size_t index = 0; index < 3; index++)
        s_assert_outcome (fixture->store, again[index]->commands[0]);
    assert_int_equal (zcq_test_log_events (fixture->store), 2);
    for (size_t index = 0; index < 3; index++) {
        zcq_cbatch_destroy (&group[index]);
        zcq_cbatch_destroy (&again[index]);
    }
}

//  A batch decided under another store epoch is not written (F6).
static void
test_old_epoch_fails (void **state)
{
    s_fixture_t *fixture = *state;
    uint64_t epoch = zcq_store_epoch (fixture->store);
    zcq_cbatch_t *stale = s_batch (1, 0, epoch + 1);
    zcq_cbatch_add (stale, s_command (fixture, "e-1", "1", 0, 1));
    zcq_cbatch_t *fresh = s_batch (1, 1, epoch);
    zcq_cbatch_add (fresh, s_command (fixture, "e-2", "2", 0, 1));
    zcq_cbatch_t *group[] = { stale, fresh };
    zcq_committer_commit (fixture->committer, group, 2, zcq_now_us ());
    assert_false (stale->written);
    assert_int_equal (stale->commands[0]->outcome, ZCQ_INTERNAL);
    assert_true (fresh->written);
    assert_int_equal (fresh->commands[0]->position, 1);
    zcq_cbatch_destroy (&stale);
    zcq_cbatch_destroy (&fresh);
}

//  Many groups of random composition, with commits failing at random: every
//  outcome agrees with the store, and the log has no hole. A failure reaches
//  the simulated shards one group late, as DONE does, so their next batches
//  are decided on the old generation and must fail as poisoned (F3).
static void
test_random_groups (void **state)
{
    s_fixture_t *fixture = *state;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    uint32_t generation[3] = { 0, 0, 0 };
    uint32_t learned[3] = { 0, 0, 0 }; //  raised by this group's failures
    uint64_t epoch = zcq_store_epoch (fixture->store);
    uint64_t expected_events = 0;
    size_t failed = 0, poisoned = 0, written = 0;
    for (int round = 0; round < 300; round++) {
        //  each shard's batches in order, dealt into the group at random
        zcq_cbatch_t *pending[3][4];
        size_t pending_count[3], taken[3] = { 0, 0, 0 }, left = 0;
        for (uint32_t shard = 0; shard < 3; shard++) {
            pending_count[shard] = zcq_test_next (&seed) % 4;
            for (size_t index = 0; index < pending_count[shard]; index++) {
                zcq_cbatch_t *batch = s_batch (shard, generation[shard], epoch);
                size_t commands = 1 + zcq_test_next (&seed) % 5;
                for (size_t command = 0; command < commands; command++) {
                    char id[32], key[16];
                    snprintf (id, sizeof id, "r%d-%u-%zu-%zu", round, shard, index, command);
                    snprintf (key, sizeof key, "%d", (int) (zcq_test_next (&seed) % 1000));
                    zcq_cbatch_add (
                        batch, s_command (fixture, id, key, 0, (int) (zcq_test_next (&seed) % 3)));
                }
                pending[shard][index] = batch;
            }
            left += pending_count[shard];
            //  the last group's failures arrive only now
            generation[shard] = learned[shard];
        }
        zcq_cbatch_t *group[12];
        size_t count = 0;
        while (count < left) {
            uint32_t shard = (uint32_t) (zcq_test_next (&seed) % 3);
            if (taken[shard] < pending_count[shard])
                group[count++] = pending[shard][taken[shard]++];
        }
        if (zcq_test_next (&seed) % 5 == 0)
            zcq_store_inject_fault (fixture->store, 1);
        uint64_t head = zcq_committer_head (fixture->committer);
        zcq_committer_commit (fixture->committer, group, count, zcq_now_us ());
        zcq_store_inject_fault (fixture->store, 0);
        for (size_t index = 0; index < count; index++) {
            zcq_cbatch_t *batch = group[index];
            for (size_t command = 0; command < batch->count; command++) {
                zcq_command_t *each = batch->commands[command];
                assert_int_equal (each->outcome == ZCQ_OK, batch->written);
                s_assert_outcome (fixture->store, each);
                if (batch->written)
                    expected_events += each->event_count;
            }
            if (batch->written)
                written++;
            else {
                failed++;
                if (strstr (batch->commands[0]->message, "earlier commit"))
                    poisoned++;
                //  what the shard does when the failure comes back (F4)
                if (learned[batch->shard] <= batch->generation)
                    learned[batch->shard] = batch->generation + 1;
            }
            zcq_cbatch_destroy (&group[index]);
        }
        assert_true (zcq_committer_head (fixture->committer) >= head);
    }
    assert_int_equal (zcq_committer_head (fixture->committer), expected_events);
    assert_int_equal (zcq_test_log_events (fixture->store), expected_events);
    print_message ("%zu batches written, %zu failed (%zu of them poisoned)\n", written, failed,
                   poisoned);
    assert_true (poisoned > 10);
    assert_true (written > 200);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_walk_through, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failed_group_fails_every_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_old_epoch_fails, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_random_groups, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
