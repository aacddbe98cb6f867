/*  test_store_backup.c: zcq_store_checkpoint and zcq_backup_take/restore.

    The walk-through backs a store up and restores it; then a checkpoint
    taken while another thread commits holds a whole prefix of the log
    ending at the position it reports; then the refusals (targets that
    exist, are relative or inside the data dir; restores into a dir that
    holds something, of a dir that is no backup).
*/
#include "testutil.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Helpers

//  Append one event to stream, its body a ZCQ/1 event map (what the store
//  indexes the log from when a restored store opens).
static void
s_append (zcq_store_t *store, zcq_writer_t *writer, const char *stream, uint64_t position,
          uint64_t version)
{
    char command[32];
    snprintf (command, sizeof command, "c%llu", (unsigned long long) position);
    zcq_writer_reset (writer);
    zcq_writer_map (writer, 10);
    zcq_writer_str (writer, "position");
    zcq_writer_uint (writer, position);
    zcq_writer_str (writer, "time");
    zcq_writer_int (writer, 1);
    zcq_writer_str (writer, "node");
    zcq_writer_str (writer, "test");
    zcq_writer_str (writer, "stream");
    zcq_writer_str (writer, stream);
    zcq_writer_str (writer, "aggregate");
    zcq_writer_str (writer, "account");
    zcq_writer_str (writer, "key");
    zcq_writer_str (writer, strchr (stream, '/') + 1);
    zcq_writer_str (writer, "version");
    zcq_writer_uint (writer, version);
    zcq_writer_str (writer, "type");
    zcq_writer_str (writer, "deposited");
    zcq_writer_str (writer, "command");
    zcq_writer_str (writer, command);
    zcq_writer_str (writer, "data");
    zcq_writer_map (writer, 0);
    const void *bodies[1] = { zcq_writer_data (writer) };
    size_t lens[1] = { zcq_writer_size (writer) };
    assert_int_equal (zcq_store_append (store, stream, -1, bodies, lens, 1, NULL, NULL), ZCQ_OK);
}

static int
s_count (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    uint64_t *expected = arg;
    assert_int_equal (position, *expected);
    ++*expected;
    return 0;
}

//  The store in path holds the log 1..head without a hole, checked through.
static void
s_check_log (const char *path, uint64_t head)
{
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.create = false;
    zcq_store_t *store = NULL;
    char error[512] = "";
    if (zcq_store_open (&store, path, &options, error, sizeof error) != ZCQ_OK)
        fail_msg ("open %s: %s", path, error);
    assert_int_equal (zcq_store_verified (store, error, sizeof error), ZCQ_OK);
    assert_int_equal (zcq_store_head (store), head);
    uint64_t expected = 1;
    assert_int_equal (zcq_store_read_log (store, 1, 0, s_count, &expected), ZCQ_OK);
    assert_int_equal (expected, head + 1);
    zcq_store_close (&store);
}

static char *
s_path (const char *dir, const char *name)
{
    char *path = NULL;
    assert_true (asprintf (&path, "%s/%s", dir, name) > 0);
    return path;
}

//  --------------------------------------------------------------------------
//  Tests

static void
test_backup_walkthrough (void **state)
{
    char *dir = zcq_test_dir ("backup");
    char *data = s_path (dir, "data");
    char *backup = s_path (dir, "backup");
    char *restored = s_path (dir, "restored");
    zcq_store_t *store = zcq_test_store (data);
    zcq_writer_t *writer = zcq_writer_new ();
    for (uint64_t position = 1; position <= 20; position++)
        s_append (store, writer, position % 2 ? "account/a" : "account/b", position,
                  (position + 1) / 2);

    zcq_backup_info_t info;
    char error[512] = "";
    zcq_err_t rc
        = zcq_backup_take (store, data, backup, "node1", "bank", &info, error, sizeof error);
    if (rc != ZCQ_OK)
        fail_msg ("backup: %s", error);
    assert_int_equal (info.position, 20);
    assert_int_equal (info.view_count, 0);
    assert_true (info.bytes > 0);
    assert_string_equal (info.node, "node1");
    zcq_backup_info_clear (&info);
    struct stat status;
    assert_int_equal (stat (backup, &status), 0);
    assert_int_equal (status.st_mode & 0777, 0700);
    //  the store goes on; the backup stays at 20
    s_append (store, writer, "account/a", 21, 11);
    zcq_store_close (&store);

    rc = zcq_backup_restore (backup, restored, &info, error, sizeof error);
    if (rc != ZCQ_OK)
        fail_msg ("restore: %s", error);
    assert_int_equal (info.position, 20);
    assert_string_equal (info.domain, "bank");
    zcq_backup_info_clear (&info);
    s_check_log (restored, 20);
    //  a backup restores again
    char *again = s_path (dir, "again");
    assert_int_equal (zcq_backup_restore (backup, again, &info, error, sizeof error), ZCQ_OK);
    s_check_log (again, 20);

    zcq_writer_destroy (&writer);
    free (again);
    free (restored);
    free (backup);
    free (data);
    zcq_test_rmdir (&dir);
}

typedef struct {
    zcq_store_t *store;
    atomic_bool stop;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    uint64_t appended;
} s_writer_t;

static void *
s_writer (void *args)
{
    s_writer_t *self = args;
    zcq_writer_t *writer = zcq_writer_new ();
    char stream[32];
    uint64_t versions[50] = { 0 };
    for (uint64_t position = 1; !atomic_load (&self->stop) && position <= 200000; position++) {
        snprintf (stream, sizeof stream, "account/%llu", (unsigned long long) position % 50);
        s_append (self->store, writer, stream, position, ++versions[position % 50]);
        pthread_mutex_lock (&self->mutex);
        self->appended = position;
        pthread_cond_broadcast (&self->cond);
        pthread_mutex_unlock (&self->mutex);
    }
    zcq_writer_destroy (&writer);
    return NULL;
}

//  A checkpoint taken while another thread commits holds the log 1..P,
//  P the position it reports.
static void
test_checkpoint_under_commits (void **state)
{
    char *dir = zcq_test_dir ("checkpoint");
    char *data = s_path (dir, "data");
    zcq_store_t *store = zcq_test_store (data);
    s_writer_t writer = { .store = store };
    pthread_mutex_init (&writer.mutex, NULL);
    pthread_cond_init (&writer.cond, NULL);
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_writer, &writer), 0);
    uint64_t positions[3];
    char *checkpoints[3];
    for (int round = 0; round < 3; round++) {
        //  wait for 500 more commits, then copy while they go on
        pthread_mutex_lock (&writer.mutex);
        uint64_t wanted = writer.appended + 500;
        while (writer.appended < wanted)
            pthread_cond_wait (&writer.cond, &writer.mutex);
        pthread_mutex_unlock (&writer.mutex);
        char name[16];
        snprintf (name, sizeof name, "cp%d", round);
        checkpoints[round] = s_path (dir, name);
        char error[512] = "";
        zcq_err_t rc = zcq_store_checkpoint (store, checkpoints[round], &positions[round], error,
                                             sizeof error);
        if (rc != ZCQ_OK)
            fail_msg ("checkpoint: %s", error);
        assert_true (positions[round] >= wanted);
        //  a second one into the same dir is refused
        uint64_t position;
        assert_int_equal (
            zcq_store_checkpoint (store, checkpoints[round], &position, error, sizeof error),
            ZCQ_INVALID);
    }
    atomic_store (&writer.stop, true);
    pthread_join (thread, NULL);
    zcq_store_close (&store);
    for (int round = 0; round < 3; round++) {
        s_check_log (checkpoints[round], positions[round]);
        free (checkpoints[round]);
    }
    pthread_cond_destroy (&writer.cond);
    pthread_mutex_destroy (&writer.mutex);
    free (data);
    zcq_test_rmdir (&dir);
}

static void
test_backup_refusals (void **state)
{
    char *dir = zcq_test_dir ("backup-refusals");
    char *data = s_path (dir, "data");
    char *inside = s_path (data, "inside");
    char *orphan = s_path (dir, "no/parent");
    char *backup = s_path (dir, "backup");
    char *busy = s_path (dir, "busy");
    char *keep = s_path (busy, "keep");
    zcq_store_t *store = zcq_test_store (data);
    zcq_writer_t *writer = zcq_writer_new ();
    s_append (store, writer, "account/a", 1, 1);
    zcq_backup_info_t info;
    char error[512];
    assert_int_equal (
        zcq_backup_take (store, data, "relative", "n", "bank", &info, error, sizeof error),
        ZCQ_INVALID);
    assert_int_equal (
        zcq_backup_take (store, data, inside, "n", "bank", &info, error, sizeof error),
        ZCQ_INVALID);
    assert_int_equal (access (inside, F_OK), -1);
    assert_int_equal (
        zcq_backup_take (store, data, orphan, "n", "bank", &info, error, sizeof error),
        ZCQ_INVALID);
    assert_int_equal (zcq_backup_take (store, data, dir, "n", "bank", &info, error, sizeof error),
                      ZCQ_INVALID);
    assert_int_equal (
        zcq_backup_take (store, data, backup, "n", "bank", &info, error, sizeof error), ZCQ_OK);
    zcq_backup_info_clear (&info);
    zcq_store_close (&store);

    //  restores: into a dir that holds something, of a dir that is no backup
    assert_int_equal (mkdir (busy, 0700), 0);
    FILE *file = fopen (keep, "w");
    assert_non_null (file);
    fclose (file);
    assert_int_equal (zcq_backup_restore (backup, busy, &info, error, sizeof error), ZCQ_INVALID);
    assert_int_equal (access (keep, F_OK), 0);
    char *nowhere = s_path (dir, "nowhere");
    assert_int_equal (zcq_backup_restore (data, nowhere, &info, error, sizeof error), ZCQ_CORRUPT);
    assert_int_equal (access (nowhere, F_OK), -1);

    zcq_writer_destroy (&writer);
    free (nowhere);
    free (keep);
    free (busy);
    free (backup);
    free (orphan);
    free (inside);
    free (data);
    zcq_test_rmdir (&dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_backup_walkthrough),
        cmocka_unit_test (test_checkpoint_under_commits),
        cmocka_unit_test (test_backup_refusals),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
