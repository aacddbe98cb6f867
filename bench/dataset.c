/*  dataset.c: data dirs for zcqrs-bench: event bodies in the engine's
    layout, large logs written straight through the store, copies,
    removal, sizes, and the process's resident memory.

    A log written here holds exactly what the node would have written for
    the same events (the body layout of aggregate_shard.c, log and stream
    index entries, one WriteBatch per 8,192 events), minus the command ids
    and snapshots, so views rebuild from it as from a node's own log. It
    is used where making the log through the node would take most of the
    run (10M events); the 1M-event figures use a log the node wrote.
*/
#include "bench.h"
#include <ftw.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char s_workdir[512] = "/tmp";
static bool s_keep;

//  --------------------------------------------------------------------------
//  Event bodies

//  The first 33 bytes: fixmap of 11, "position" as uint64 and "time" as
//  int64, both at fixed width (the engine's ZCQ_EVENT_HEADER_SIZE).
static void
s_put_be64 (uint8_t *bytes, uint64_t value)
{
    for (int index = 7; index >= 0; index--) {
        bytes[index] = (uint8_t) value;
        value >>= 8;
    }
}

void
bench_event_encode (zcq_writer_t *writer, uint64_t position, int64_t time_us, const char *node,
                    const char *aggregate, const char *key, uint64_t version, const char *type,
                    const char *command_id, const void *data, size_t data_len)
{
    uint8_t header[33] = { 0x8b, 0xa8, 'p', 'o', 's', 'i', 't', 'i', 'o', 'n', 0xcf };
    s_put_be64 (header + 11, position);
    memcpy (header + 19, (const uint8_t[]) { 0xa4, 't', 'i', 'm', 'e', 0xd3 }, 6);
    s_put_be64 (header + 25, (uint64_t) time_us);
    zcq_writer_raw (writer, header, sizeof header);
    char stream[320];
    snprintf (stream, sizeof stream, "%s/%s", aggregate, key);
    zcq_writer_str (writer, "node");
    zcq_writer_str (writer, node);
    zcq_writer_str (writer, "stream");
    zcq_writer_str (writer, stream);
    zcq_writer_str (writer, "aggregate");
    zcq_writer_str (writer, aggregate);
    zcq_writer_str (writer, "key");
    zcq_writer_str (writer, key);
    zcq_writer_str (writer, "version");
    zcq_writer_uint (writer, version);
    zcq_writer_str (writer, "type");
    zcq_writer_str (writer, type);
    zcq_writer_str (writer, "command");
    zcq_writer_str (writer, command_id);
    zcq_writer_str (writer, "meta");
    zcq_writer_map (writer, 0);
    zcq_writer_str (writer, "data");
    zcq_writer_raw (writer, data, data_len);
}

//  --------------------------------------------------------------------------
//  Write accounts x rounds bank events through the store.

double
bench_dataset_write (const char *path, uint64_t accounts, uint64_t rounds)
{
    uint64_t started = bench_now_ns ();
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.durability = ZCQ_DURABILITY_WAL;
    zcq_store_t *store = NULL;
    char error[256];
    if (zcq_store_open (&store, path, &options, error, sizeof error) != ZCQ_OK) {
        fprintf (stderr, "zcqrs-bench: cannot open %s: %s\n", path, error);
        return -1;
    }
    zcq_batch_t *batch = zcq_batch_new (store);
    zcq_writer_t *body = zcq_writer_new ();
    zcq_writer_t *data = zcq_writer_new ();
    uint64_t position = zcq_store_head (store);
    bool ok = batch && body && data;
    for (uint64_t round = 0; ok && round < rounds; round++) {
        for (uint64_t account = 0; ok && account < accounts; account++) {
            char key[24], stream[48], command[64], owner[32];
            snprintf (key, sizeof key, "%llu", (unsigned long long) account);
            int stream_len = snprintf (stream, sizeof stream, "account/%s", key);
            snprintf (command, sizeof command, "gen-%llu-%s", (unsigned long long) round, key);
            zcq_writer_reset (data);
            if (round == 0) {
                snprintf (owner, sizeof owner, "owner-%llu", (unsigned long long) account % 1000);
                zcq_writer_map (data, 2);
                zcq_writer_str (data, "owner");
                zcq_writer_str (data, owner);
                zcq_writer_str (data, "overdraft");
                zcq_writer_int (data, 0);
            }
            else {
                zcq_writer_map (data, 1);
                zcq_writer_str (data, "amount");
                zcq_writer_int (data, 1);
            }
            zcq_writer_reset (body);
            position++;
            bench_event_encode (body, position, bench_wall_us (), "node1", "account", key,
                                round + 1, round == 0 ? "opened" : "deposited", command,
                                zcq_writer_data (data), zcq_writer_size (data));
            zcq_batch_event (batch, position, stream, (size_t) stream_len, round + 1,
                             zcq_writer_data (body), zcq_writer_size (body));
            if (zcq_batch_count (batch) >= 8192) {
                ok = zcq_store_commit (store, batch, position) == ZCQ_OK;
                zcq_batch_clear (batch);
            }
        }
    }
    if (ok && zcq_batch_count (batch))
        ok = zcq_store_commit (store, batch, position) == ZCQ_OK;
    if (ok)
        ok = zcq_store_sync (store) == ZCQ_OK;
    zcq_writer_destroy (&body);
    zcq_writer_destroy (&data);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);
    if (!ok) {
        fprintf (stderr, "zcqrs-bench: writing the log in %s failed\n", path);
        return -1;
    }
    return (double) (bench_now_ns () - started) / 1e9;
}

//  --------------------------------------------------------------------------
//  Directories

void
bench_workdir_set (const char *path)
{
    snprintf (s_workdir, sizeof s_workdir, "%s", path);
}

char *
bench_dir_new (const char *name)
{
    static unsigned counter;
    char path[1024];
    snprintf (path, sizeof path, "%s/%s-%u", s_workdir, name, ++counter);
    return strdup (path);
}

int
bench_dir_copy (const char *from, const char *to)
{
    char command[2200];
    snprintf (command, sizeof command, "cp -a --reflink=auto '%s' '%s'", from, to);
    return system (command) == 0 ? 0 : -1;
}

static int
s_remove_entry (const char *path, const struct stat *info, int flag, struct FTW *walk)
{
    remove (path);
    return 0;
}

void
bench_dir_keep (bool keep)
{
    s_keep = keep;
}

void
bench_dir_remove (const char *path)
{
    if (!s_keep)
        bench_dir_purge (path);
}

void
bench_dir_purge (const char *path)
{
    if (path)
        nftw (path, s_remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static uint64_t s_bytes;
static const char *s_suffix;

static int
s_count_entry (const char *path, const struct stat *info, int flag, struct FTW *walk)
{
    size_t len = strlen (path), suffix_len = s_suffix ? strlen (s_suffix) : 0;
    if (flag == FTW_F
        && (!s_suffix || (len >= suffix_len && streq (path + len - suffix_len, s_suffix))))
        s_bytes += (uint64_t) info->st_size;
    return 0;
}

uint64_t
bench_dir_bytes_matching (const char *path, const char *suffix)
{
    s_bytes = 0;
    s_suffix = suffix;
    nftw (path, s_count_entry, 32, FTW_PHYS);
    return s_bytes;
}

uint64_t
bench_dir_bytes (const char *path)
{
    return bench_dir_bytes_matching (path, NULL);
}

uint64_t
bench_rss_bytes (void)
{
    FILE *file = fopen ("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (file) {
        if (fscanf (file, "%llu %llu", &size, &resident) != 2)
            resident = 0;
        fclose (file);
    }
    return (uint64_t) resident * (uint64_t) sysconf (_SC_PAGESIZE);
}

//  --------------------------------------------------------------------------
//  CPU accounting, from /proc: the machine's busy time (user, nice,
//  system; interrupts and softirqs left out, as they are often this
//  process's own network traffic), the hypervisor's steal, and this
//  process's time with its waited-for children.

static void
s_cpu_read (uint64_t *busy, uint64_t *steal, uint64_t *self)
{
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                       stolen = 0;
    FILE *file = fopen ("/proc/stat", "r");
    if (file) {
        if (fscanf (file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system,
                    &idle, &iowait, &irq, &softirq, &stolen)
            != 8)
            user = nice = system = stolen = 0;
        fclose (file);
    }
    *busy = user + nice + system;
    *steal = stolen;
    unsigned long long utime = 0, stime = 0, cutime = 0, cstime = 0;
    file = fopen ("/proc/self/stat", "r");
    if (file) {
        //  the command name may hold spaces: the fields start after ')'
        char line[1024];
        if (fgets (line, sizeof line, file)) {
            char *cursor = strrchr (line, ')');
            if (!cursor
                || sscanf (cursor + 2,
                           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                           &utime, &stime, &cutime, &cstime)
                       != 4)
                utime = stime = cutime = cstime = 0;
        }
        fclose (file);
    }
    *self = utime + stime + cutime + cstime;
}

double
bench_process_cpu_s (void)
{
    struct timespec now;
    if (clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &now) != 0)
        return 0;
    return (double) now.tv_sec + (double) now.tv_nsec / 1e9;
}

void
bench_sleep_until_ns (uint64_t when_ns)
{
    uint64_t now;
    while ((now = bench_now_ns ()) < when_ns) {
        uint64_t wait = when_ns - now;
        struct timespec pause = { (time_t) (wait / 1000000000), (long) (wait % 1000000000) };
        nanosleep (&pause, NULL);
    }
}

void
bench_cpu_start (bench_cpu_t *cpu)
{
    s_cpu_read (&cpu->busy, &cpu->steal, &cpu->self);
    cpu->started_ns = bench_now_ns ();
}

double
bench_cpu_others (const bench_cpu_t *cpu, double *steal)
{
    uint64_t busy, stolen, self;
    s_cpu_read (&busy, &stolen, &self);
    double seconds = (double) (bench_now_ns () - cpu->started_ns) / 1e9;
    double ticks = (double) sysconf (_SC_CLK_TCK);
    if (seconds <= 0)
        return 0;
    if (steal)
        *steal = (double) (stolen - cpu->steal) / ticks / seconds;
    double others = ((double) (busy - cpu->busy) - (double) (self - cpu->self)) / ticks / seconds;
    return others > 0 ? others : 0;
}
