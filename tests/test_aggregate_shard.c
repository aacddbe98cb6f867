/*  test_aggregate_shard.c: the aggregate shard's core, zcq_shard_t, with the
    bank domain on a real store, chained in one thread to the log writer's
    core the way the actors chain them over sockets: decide, commit a group,
    answer, hand the batch back (DONE). Commits fail on purpose, and a
    failure comes back to the shard only after it has decided more batches,
    as it does in a running node; then F4 (actors/zcq_actors.h) must hold:
    nothing decided on a failed batch's events is ever written. */
#include "testutil.h"
#include "zcq_actors.h"
#include <stdio.h>
#include <string.h>

#define S_SHARDS 2

typedef struct {
    char *dir;
    zcq_store_t *store;
    zcq_config_t *config;
    zcq_stats_t stats;
    zcq_node_env_t env;
    zcq_shard_t *shards[S_SHARDS];
    zcq_committer_t *committer;
    zcq_writer_t *writer;
} s_fixture_t;

static int
s_setup (void **state)
{
    s_fixture_t *fixture = calloc (1, sizeof (s_fixture_t));
    fixture->dir = zcq_test_dir ("aggregate-shard");
    fixture->store = zcq_test_store (fixture->dir);
    char error[256];
    fixture->config = zcq_config_new ();
    assert_int_equal (zcq_config_set (fixture->config, "shards", "2", error, sizeof error), ZCQ_OK);
    fixture->env = (zcq_node_env_t) {
        .config = fixture->config,
        .domain = zcq_bank_domain (),
        .store = fixture->store,
        .stats = &fixture->stats,
    };
    for (uint32_t shard = 0; shard < S_SHARDS; shard++) {
        fixture->shards[shard] = zcq_shard_new (&fixture->env, shard);
        assert_non_null (fixture->shards[shard]);
    }
    fixture->committer = zcq_committer_new (fixture->store, &fixture->stats, S_SHARDS);
    fixture->writer = zcq_writer_new ();
    *state = fixture;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fixture_t *fixture = *state;
    for (uint32_t shard = 0; shard < S_SHARDS; shard++)
        zcq_shard_destroy (&fixture->shards[shard]);
    zcq_committer_destroy (&fixture->committer);
    zcq_store_close (&fixture->store);
    zcq_config_destroy (&fixture->config);
    zcq_writer_destroy (&fixture->writer);
    zcq_test_rmdir (&fixture->dir);
    free (fixture);
    return 0;
}

//  A bank command as the command router parses it: account/<key>, with
//  {owner} for open and {amount} for the others.
static zcq_command_t *
s_command (s_fixture_t *fixture, const char *id, const char *key, const char *type, int64_t amount)
{
    zcq_command_t *command = zcq_command_new ();
    snprintf (command->id_copy, sizeof command->id_copy, "%s", id);
    command->id = command->id_copy;
    command->id_len = strlen (id);
    command->type = type;
    command->type_len = strlen (type);
    command->stream_len
        = (size_t) snprintf (command->stream, sizeof command->stream, "account/%s", key);
    command->key = command->stream + strlen ("account/");
    command->key_len = strlen (key);
    command->aggregate = zcq_domain_aggregate (fixture->env.domain, "account", 7);
    command->handler = zcq_domain_command (command->aggregate, type, strlen (type));
    assert_non_null (command->handler);
    command->shard = (uint32_t) (zcq_stream_hash (command->stream, command->stream_len) % S_SHARDS);
    zcq_writer_t *writer = fixture->writer;
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 1);
    if (streq (type, "open")) {
        zcq_writer_str (writer, "owner");
        zcq_writer_str (writer, "ann");
    }
    else {
        zcq_writer_str (writer, "amount");
        zcq_writer_int (writer, amount);
    }
    command->doc = zcq_doc_new ();
    assert_int_equal (zcq_doc_decode_copy (command->doc, zcq_writer_data (writer),
                                           zcq_writer_size (writer), NULL),
                      ZCQ_OK);
    command->data = zcq_doc_root (command->doc);
    return command;
}

//  Decide one command alone; the COMMIT batch it makes, or NULL when it was
//  answered at once (then *outcome says how).
static zcq_cbatch_t *
s_decide (s_fixture_t *fixture, zcq_command_t *command, zcq_err_t *outcome)
{
    zcq_cbatch_t *batch = zcq_cbatch_new (ZCQ_BATCH_COMMANDS, command->shard);
    zcq_cbatch_add (batch, command);
    zcq_cbatch_t *commit, *replies;
    zcq_shard_decide (fixture->shards[command->shard], &batch, &commit, &replies);
    assert_null (batch);
    assert_true ((commit != NULL) != (replies != NULL));
    if (replies) {
        *outcome = replies->commands[0]->outcome;
        zcq_cbatch_destroy (&replies);
    }
    else
        *outcome = ZCQ_OK;
    return commit;
}

//  Commit one group, failing it when told to.
static void
s_commit (s_fixture_t *fixture, zcq_cbatch_t **group, size_t count, bool fail)
{
    if (fail)
        zcq_store_inject_fault (fixture->store, 1);
    zcq_committer_commit (fixture->committer, group, count, zcq_now_us ());
    zcq_store_inject_fault (fixture->store, 0);
}

//  The router's part: the answered batch goes back to its shard.
static void
s_done (s_fixture_t *fixture, zcq_cbatch_t **batch_p)
{
    (*batch_p)->kind = ZCQ_BATCH_DONE;
    zcq_shard_done (fixture->shards[(*batch_p)->shard], batch_p);
    assert_null (*batch_p);
}

//  Decide, commit and hand back one command; its outcome.
static zcq_err_t
s_run (s_fixture_t *fixture, const char *id, const char *key, const char *type, int64_t amount)
{
    zcq_err_t outcome;
    zcq_cbatch_t *batch = s_decide (fixture, s_command (fixture, id, key, type, amount), &outcome);
    if (!batch)
        return outcome;
    s_commit (fixture, &batch, 1, false);
    outcome = batch->commands[0]->outcome;
    s_done (fixture, &batch);
    return outcome;
}

//  Fold a stream from the store: its version and balance; versions must run
//  1, 2, ... without a hole.
typedef struct {
    uint64_t version;
    int64_t balance;
    zcq_doc_t *doc;
} s_fold_t;

static int
s_fold_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    s_fold_t *fold = arg;
    if (version != fold->version + 1)
        fail_msg ("the stream jumps from version %llu to %llu", (unsigned long long) fold->version,
                  (unsigned long long) version);
    fold->version = version;
    assert_int_equal (zcq_doc_decode (fold->doc, body, len, NULL), ZCQ_OK);
    const zcq_value_t *root = zcq_doc_root (fold->doc);
    int64_t amount = zcq_value_get_int (zcq_value_get (root, "data"), "amount", 0);
    if (zcq_value_streq (zcq_value_get (root, "type"), "deposited"))
        fold->balance += amount;
    else if (zcq_value_streq (zcq_value_get (root, "type"), "withdrawn"))
        fold->balance -= amount;
    assert_true (fold->balance >= 0);
    return 0;
}

static s_fold_t
s_fold (s_fixture_t *fixture, const char *key)
{
    char stream[64];
    snprintf (stream, sizeof stream, "account/%s", key);
    s_fold_t fold = { 0, 0, zcq_doc_new () };
    assert_int_equal (zcq_store_read_stream (fixture->store, stream, 1, 0, s_fold_event, &fold),
                      ZCQ_OK);
    zcq_doc_destroy (&fold.doc);
    return fold;
}

//  --------------------------------------------------------------------------

static void
test_walk_through (void **state)
{
    s_fixture_t *fixture = *state;
    assert_int_equal (s_run (fixture, "w-1", "1", "open", 0), ZCQ_OK);
    assert_int_equal (s_run (fixture, "w-2", "1", "deposit", 50), ZCQ_OK);
    assert_int_equal (s_run (fixture, "w-3", "1", "withdraw", 80), ZCQ_REJECTED);
    s_fold_t fold = s_fold (fixture, "1");
    assert_int_equal (fold.version, 2);
    assert_int_equal (fold.balance, 50);
}

//  A stored result answers a retry of the same command only (DESIGN 4).
static void
test_id_names_one_command (void **state)
{
    s_fixture_t *fixture = *state;
    assert_int_equal (s_run (fixture, "w-1", "1", "open", 0), ZCQ_OK);
    assert_int_equal (s_run (fixture, "w-2", "1", "deposit", 50), ZCQ_OK);
    //  a retry answers the stored result; the same id for another stream
    //  or command type does not
    zcq_err_t outcome;
    zcq_cbatch_t *batch
        = s_decide (fixture, s_command (fixture, "w-2", "1", "deposit", 50), &outcome);
    assert_null (batch);
    assert_int_equal (outcome, ZCQ_OK);
    assert_null (s_decide (fixture, s_command (fixture, "w-2", "2", "deposit", 50), &outcome));
    assert_int_equal (outcome, ZCQ_INVALID);
    assert_null (s_decide (fixture, s_command (fixture, "w-2", "1", "withdraw", 50), &outcome));
    assert_int_equal (outcome, ZCQ_INVALID);
    s_fold_t fold = s_fold (fixture, "1");
    assert_int_equal (fold.version, 2);
    assert_int_equal (fold.balance, 50);
}

//  F4: batch A fails; batch B of the same shard, decided before the failure
//  came back, fails as poisoned; a batch decided after A's failure came
//  back but before B's must not see B's events.
static void
test_failure_drops_what_in_flight_batches_touched (void **state)
{
    s_fixture_t *fixture = *state;
    //  two accounts of one shard
    char x[16] = "", y[16] = "";
    for (int key = 0; !y[0]; key++) {
        char name[16];
        snprintf (name, sizeof name, "%d", key);
        char stream[32];
        snprintf (stream, sizeof stream, "account/%s", name);
        if (zcq_stream_hash (stream, strlen (stream)) % S_SHARDS != 0)
            continue;
        if (!x[0])
            snprintf (x, sizeof x, "%s", name);
        else
            snprintf (y, sizeof y, "%s", name);
    }
    assert_int_equal (s_run (fixture, "f-1", x, "open", 0), ZCQ_OK);
    assert_int_equal (s_run (fixture, "f-2", y, "open", 0), ZCQ_OK);
    zcq_err_t outcome;
    zcq_cbatch_t *a = s_decide (fixture, s_command (fixture, "f-3", x, "deposit", 10), &outcome);
    zcq_cbatch_t *b = s_decide (fixture, s_command (fixture, "f-4", y, "deposit", 20), &outcome);
    assert_non_null (a);
    assert_non_null (b);
    s_commit (fixture, &a, 1, true);
    assert_false (a->written);
    s_commit (fixture, &b, 1, false);
    assert_false (b->written); //  poisoned: decided before A's failure was known
    s_done (fixture, &a);
    //  decided now, before B's failure is back: y must come from the store
    zcq_cbatch_t *c = s_decide (fixture, s_command (fixture, "f-5", y, "withdraw", 15), &outcome);
    assert_null (c);
    assert_int_equal (outcome, ZCQ_REJECTED); //  the 20 of B was never written
    c = s_decide (fixture, s_command (fixture, "f-6", y, "deposit", 5), &outcome);
    assert_non_null (c);
    assert_int_equal (c->commands[0]->version, 2);
    s_commit (fixture, &c, 1, false);
    assert_true (c->written);
    s_done (fixture, &b);
    s_done (fixture, &c);
    s_fold_t fold = s_fold (fixture, y);
    assert_int_equal (fold.version, 2);
    assert_int_equal (fold.balance, 5);
    assert_int_equal (s_run (fixture, "f-7", y, "withdraw", 5), ZCQ_OK);
    assert_int_equal (s_run (fixture, "f-8", x, "withdraw", 1), ZCQ_REJECTED);
}

//  A seeded run: two shards, commits failing at random, batches pipelined
//  up to a random depth before the answers come back. Afterwards every
//  stream's versions run without a hole, no balance ever went below zero
//  (each withdrawal was decided on written deposits only), the commands
//  answered `ok` are exactly the ones in the log, and each account's
//  balance is what the `ok` answers say.
static void
test_random_pipeline (void **state)
{
    s_fixture_t *fixture = *state;
    enum { ACCOUNTS = 24, COMMANDS = 6000, DEPTH = 8 };
    uint64_t seed = 0xc0ffee1234567ull;
    int64_t balance[ACCOUNTS] = { 0 };
    uint64_t version[ACCOUNTS] = { 0 };
    zcq_cbatch_t *queue[DEPTH * 4]; //  committed, waiting to come back
    size_t queued = 0;
    zcq_cbatch_t *deciding[S_SHARDS][DEPTH]; //  decided, waiting for the writer
    size_t decided[S_SHARDS] = { 0 };
    size_t ok = 0, failed = 0;
    for (int account = 0; account < ACCOUNTS; account++) {
        char id[16], key[16];
        snprintf (id, sizeof id, "open-%d", account);
        snprintf (key, sizeof key, "%d", account);
        assert_int_equal (s_run (fixture, id, key, "open", 0), ZCQ_OK);
        version[account] = 1;
    }
    for (int step = 0; step < COMMANDS; step++) {
        int account = (int) (zcq_test_next (&seed) % ACCOUNTS);
        bool deposit = zcq_test_next (&seed) % 2;
        char id[32], key[16];
        snprintf (id, sizeof id, "c-%d", step);
        snprintf (key, sizeof key, "%d", account);
        zcq_command_t *command = s_command (fixture, id, key, deposit ? "deposit" : "withdraw",
                                            1 + (int64_t) (zcq_test_next (&seed) % 50));
        uint32_t shard = command->shard;
        zcq_err_t outcome;
        zcq_cbatch_t *batch = s_decide (fixture, command, &outcome);
        if (batch)
            deciding[shard][decided[shard]++] = batch;
        //  now and then the writer takes a group; now and then answers
        //  come back
        if (decided[shard] == DEPTH || zcq_test_next (&seed) % 3 == 0) {
            zcq_cbatch_t *group[S_SHARDS * DEPTH];
            size_t count = 0;
            for (uint32_t each = 0; each < S_SHARDS; each++) {
                for (size_t index = 0; index < decided[each]; index++)
                    group[count++] = deciding[each][index];
                decided[each] = 0;
            }
            s_commit (fixture, group, count, zcq_test_next (&seed) % 6 == 0);
            for (size_t index = 0; index < count; index++) {
                zcq_cbatch_t *done = group[index];
                for (size_t at = 0; at < done->count; at++) {
                    zcq_command_t *each = done->commands[at];
                    if (each->outcome != ZCQ_OK) {
                        failed++;
                        continue;
                    }
                    ok++;
                    int which = atoi (each->key);
                    int64_t amount = zcq_value_get_int (each->data, "amount", 0);
                    balance[which] += streq (each->type, "deposit") ? amount : -amount;
                    assert_int_equal (each->version, version[which] + 1);
                    version[which] = each->version;
                }
                queue[queued++] = done;
            }
        }
        if (queued && (queued > DEPTH * 2 || zcq_test_next (&seed) % 4 == 0)) {
            size_t back = 1 + zcq_test_next (&seed) % queued;
            for (size_t index = 0; index < back; index++)
                s_done (fixture, &queue[index]);
            memmove (queue, queue + back, (queued - back) * sizeof queue[0]);
            queued -= back;
        }
    }
    //  the last decided batches and answers
    zcq_cbatch_t *group[S_SHARDS * DEPTH];
    size_t count = 0;
    for (uint32_t each = 0; each < S_SHARDS; each++)
        for (size_t index = 0; index < decided[each]; index++)
            group[count++] = deciding[each][index];
    s_commit (fixture, group, count, false);
    for (size_t index = 0; index < count; index++) {
        for (size_t at = 0; at < group[index]->count; at++) {
            zcq_command_t *each = group[index]->commands[at];
            if (each->outcome == ZCQ_OK) {
                ok++;
                int which = atoi (each->key);
                int64_t amount = zcq_value_get_int (each->data, "amount", 0);
                balance[which] += streq (each->type, "deposit") ? amount : -amount;
                assert_int_equal (each->version, version[which] + 1);
                version[which] = each->version;
            }
            else
                failed++;
        }
        s_done (fixture, &group[index]);
    }
    for (size_t index = 0; index < queued; index++)
        s_done (fixture, &queue[index]);
    uint64_t events = ACCOUNTS;
    for (int account = 0; account < ACCOUNTS; account++) {
        char key[16];
        snprintf (key, sizeof key, "%d", account);
        s_fold_t fold = s_fold (fixture, key);
        assert_int_equal (fold.version, version[account]);
        assert_int_equal (fold.balance, balance[account]);
        events += version[account] - 1;
    }
    assert_int_equal (zcq_test_log_events (fixture->store), events);
    assert_int_equal (events, ACCOUNTS + ok);
    print_message ("%zu commands written, %zu failed\n", ok, failed);
    assert_true (failed > 100);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_walk_through, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_id_names_one_command, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failure_drops_what_in_flight_batches_touched, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_random_pipeline, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
