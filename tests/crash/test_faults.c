/*  test_faults.c: storage faults and damaged data dirs.

    Groups (argv[1] picks one; no argument runs them all):

    store      zcq_store on a real RocksDB error: write() or fdatasync() of
               the WAL fails (fault_shim.c is linked into this executable,
               which exports its symbols, so it interposes librocksdb's
               calls). A failed commit leaves nothing partial, reads keep
               working, commits are refused until zcq_store_recover has
               reopened RocksDB once the fault cleared, and then the batch
               is there whole (a failed sync) or not at all.
    node       zcqrsd with fault_shim.so preloaded: WAL writes (wal mode)
               or WAL syncs (fsync mode) fail for a while. The commands get
               `internal`, nothing of them is in the log, queries are
               answered, and the node takes commands again once the fault
               clears; after a restart the log holds exactly the
               acknowledged commands.
    disk_full  zcqrsd on a real 8 MiB tmpfs that a filler file fills up
               (root only; skipped otherwise): same expectations.
    pipelined_wal, pipelined_fsync
               zcqrsd (2 shards) under pipelined load: 4 DEALER clients keep
               256 commands each in flight (opens, then deposits of
               distinct amounts, each with 200 bytes of meta) while WAL
               writes (wal) or WAL syncs (fsync) fail through the shim, and
               then (root only) while its tmpfs is full until a remount
               grows it. Once the node takes commands again and every reply
               is in, the log holds exactly the commands answered `ok`,
               each at the position its reply gave (in fsync mode also
               commands answered `internal` whose batch a failed sync left
               in the WAL: outcome unknown, docs/reliability.md), and the
               views, also once rebuilt, equal the fold of the log; the
               same after a restart. (A failed group commit with two
               batches of one shard used to acknowledge the second.)
    readonly   zcqrsd on a data dir it cannot write (a regular file in place
               of the dir; a read-only mount, empty or holding data; a
               chmod 500 dir when not root): a clear message and exit 2.
    corrupt    zcqrsd on a copy of a good data dir with one file damaged
               (CURRENT, MANIFEST, an .sst, the WAL): a clear message and a
               non-zero exit, or a start with every event intact; never a
               start with data missing.

    Environment: ZCQRSD (the daemon), ZCQ_FAULT_SHIM (fault_shim.so),
    ZCQ_TEST_TMP (where test dirs go).

    No fixed sleeps wait for readiness: the daemon's stdout is read until it
    prints its endpoints, with a deadline. Waits for a state (the daemon
    exited, a command succeeds again) poll with a deadline.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testutil.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_START_MS   120000 //  the machine may be loaded
#define S_STOP_MS    90000
#define S_REPLY_MS   30000
#define S_RECOVER_MS 10000 //  how long a cleared fault may take to heal
#define S_PROBLEMS   8192

static const char *s_zcqrsd;
//  The nodes bind a loopback address of this run's own (all of 127/8 is
//  local): a client of another test whose node died keeps reconnecting to
//  its port, and must not reach ours if the kernel reuses that port.
static char s_endpoint[64];
static const char *s_shim;
static int s_spawned;

//  --------------------------------------------------------------------------
//  Small helpers

static char *
s_read_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return strdup ("");
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    char buffer[4096];
    size_t got;
    while ((got = fread (buffer, 1, sizeof buffer, file)) > 0)
        fwrite (buffer, 1, got, out);
    fclose (file);
    fclose (out);
    return text;
}

static void
s_write_file (const char *path, const char *text)
{
    FILE *file = fopen (path, "wb");
    assert_non_null (file);
    fputs (text, file);
    assert_int_equal (fclose (file), 0);
}

//  The last `lines` lines of a text (in place).
static const char *
s_tail (const char *text, int lines)
{
    const char *end = text + strlen (text);
    const char *cursor = end;
    while (cursor > text && (cursor[-1] == '\n'))
        cursor--;
    while (cursor > text && lines > 0) {
        cursor--;
        if (*cursor == '\n')
            lines--;
    }
    return cursor == text ? cursor : cursor + 1;
}

static void
s_copy_dir (const char *from, const char *to)
{
    assert_int_equal (zsys_dir_create ("%s", to), 0);
    DIR *dir = opendir (from);
    assert_non_null (dir);
    struct dirent *entry;
    char source[8192], target[8192];
    while ((entry = readdir (dir))) {
        snprintf (source, sizeof source, "%s/%s", from, entry->d_name);
        snprintf (target, sizeof target, "%s/%s", to, entry->d_name);
        struct stat info;
        if (stat (source, &info) != 0 || !S_ISREG (info.st_mode))
            continue;
        int in = open (source, O_RDONLY);
        int out = open (target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true (in >= 0 && out >= 0);
        char buffer[65536];
        ssize_t got;
        while ((got = read (in, buffer, sizeof buffer)) > 0)
            assert_int_equal (write (out, buffer, (size_t) got), got);
        close (in);
        assert_int_equal (close (out), 0);
    }
    closedir (dir);
}

//  The file in dir whose name matches: prefix and suffix; the biggest when
//  `biggest`, else the first. NULL when none.
static char *
s_find_file (const char *dir_path, const char *prefix, const char *suffix, bool biggest)
{
    DIR *dir = opendir (dir_path);
    if (!dir)
        return NULL;
    char *found = NULL;
    off_t best = -1;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name), suffix_len = strlen (suffix);
        if (strncmp (entry->d_name, prefix, strlen (prefix)) != 0 || len < suffix_len
            || strcmp (entry->d_name + len - suffix_len, suffix) != 0)
            continue;
        char path[4096];
        snprintf (path, sizeof path, "%s/%s", dir_path, entry->d_name);
        struct stat info;
        if (stat (path, &info) != 0 || !S_ISREG (info.st_mode))
            continue;
        if (!found || (biggest && info.st_size > best)) {
            free (found);
            found = strdup (path);
            best = info.st_size;
        }
    }
    closedir (dir);
    return found;
}

//  Flip `count` bytes at `fraction` of the file's size.
static void
s_garble (const char *path, double fraction, size_t count)
{
    int fd = open (path, O_RDWR);
    assert_true (fd >= 0);
    struct stat info;
    assert_int_equal (fstat (fd, &info), 0);
    off_t offset = (off_t) ((double) info.st_size * fraction);
    unsigned char bytes[64];
    if (count > sizeof bytes)
        count = sizeof bytes;
    ssize_t got = pread (fd, bytes, count, offset);
    assert_true (got > 0);
    for (ssize_t index = 0; index < got; index++)
        bytes[index] ^= 0x5a;
    assert_int_equal (pwrite (fd, bytes, (size_t) got, offset), got);
    close (fd);
}

static void
s_truncate (const char *path, double fraction)
{
    struct stat info;
    assert_int_equal (stat (path, &info), 0);
    assert_int_equal (truncate (path, (off_t) ((double) info.st_size * fraction)), 0);
}

static bool
s_is_root (void)
{
    return geteuid () == 0;
}

//  Mount a tmpfs at dir; false when that is not possible here.
static bool
s_mount_tmpfs (const char *dir, const char *options, unsigned long flags)
{
    if (!s_is_root ())
        return false;
    if (mount ("tmpfs", dir, "tmpfs", flags, options) != 0) {
        print_message ("cannot mount a tmpfs at %s: %s\n", dir, strerror (errno));
        return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  The daemon as a child process

typedef struct {
    pid_t pid;
    bool running;
    int status; //  waitpid status once it exited
    char command[256];
    char query[256];
    char out_path[4096];
    char err_path[4096];
} s_daemon_t;

//  Start zcqrsd on data, with `extra` arguments (NULL-terminated, or NULL);
//  with `fault_file`, preload the fault shim and point it there. True once
//  it printed its endpoints; false when it exited first (d->status says
//  how).
static bool
s_daemon_start_args (s_daemon_t *d, const char *workdir, const char *data, const char *durability,
                     const char *fault_file, const char *const *extra)
{
    memset (d, 0, sizeof *d);
    int serial = ++s_spawned;
    snprintf (d->out_path, sizeof d->out_path, "%s/zcqrsd-%03d.out", workdir, serial);
    snprintf (d->err_path, sizeof d->err_path, "%s/zcqrsd-%03d.err", workdir, serial);
    fflush (NULL);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        int out = open (d->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open (d->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0)
            _exit (126);
        dup2 (out, 1);
        dup2 (err, 2);
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2 (null, 0);
        if (fault_file) {
            setenv ("LD_PRELOAD", s_shim, 1);
            setenv ("ZCQ_FAULT_FILE", fault_file, 1);
        }
        else {
            unsetenv ("LD_PRELOAD");
            unsetenv ("ZCQ_FAULT_FILE");
        }
        const char *argv[64] = { s_zcqrsd,   "--data",  data,        "--durability", durability,
                                 "--http",   "none",    "--command", s_endpoint,     "--events",
                                 s_endpoint, "--query", s_endpoint };
        size_t count = 13;
        for (size_t index = 0; extra && extra[index] && count < 63; index++)
            argv[count++] = extra[index];
        argv[count] = NULL;
        execv (s_zcqrsd, (char *const *) argv);
        _exit (127);
    }
    d->pid = pid;
    d->running = true;
    int64_t deadline = zclock_mono () + S_START_MS;
    while (zclock_mono () < deadline) {
        if (waitpid (pid, &d->status, WNOHANG) == pid) {
            d->running = false;
            return false;
        }
        char *out = s_read_file (d->out_path);
        char *line = out;
        d->command[0] = d->query[0] = 0;
        bool events = false;
        while (line && *line) {
            char *next = strchr (line, '\n');
            if (!next)
                break; //  a line still being written
            *next = 0;
            if (strncmp (line, "command ", 8) == 0)
                snprintf (d->command, sizeof d->command, "%s", line + 8);
            else if (strncmp (line, "query ", 6) == 0)
                snprintf (d->query, sizeof d->query, "%s", line + 6);
            else if (strncmp (line, "events ", 7) == 0)
                events = true;
            line = next + 1;
        }
        free (out);
        if (d->command[0] && d->query[0] && events)
            return true;
        zclock_sleep (20); //  polling the output file, with a deadline
    }
    kill (pid, SIGKILL);
    waitpid (pid, &d->status, 0);
    d->running = false;
    char *err = s_read_file (d->err_path);
    fail_msg ("zcqrsd printed no endpoints within %d s:\n%s", S_START_MS / 1000, s_tail (err, 10));
    free (err);
    return false;
}

static bool
s_daemon_start (s_daemon_t *d, const char *workdir, const char *data, const char *durability,
                const char *fault_file)
{
    return s_daemon_start_args (d, workdir, data, durability, fault_file, NULL);
}

//  Wait up to timeout_ms for the daemon to exit; true when it did.
static bool
s_daemon_wait (s_daemon_t *d, int timeout_ms)
{
    if (!d->running)
        return true;
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        if (waitpid (d->pid, &d->status, WNOHANG) == d->pid) {
            d->running = false;
            return true;
        }
        if (zclock_mono () >= deadline)
            return false;
        zclock_sleep (20);
    }
}

//  Stop with signal; returns the waitpid status. SIGKILL after a deadline.
static int
s_daemon_stop (s_daemon_t *d, int signal_number)
{
    if (d->running) {
        kill (d->pid, signal_number);
        if (!s_daemon_wait (d, S_STOP_MS)) {
            kill (d->pid, SIGKILL);
            waitpid (d->pid, &d->status, 0);
            d->running = false;
            fail_msg ("zcqrsd did not stop within %d s after signal %d", S_STOP_MS / 1000,
                      signal_number);
        }
    }
    return d->status;
}

static void
s_describe_status (int status, char *text, size_t size)
{
    if (WIFEXITED (status))
        snprintf (text, size, "exit code %d", WEXITSTATUS (status));
    else if (WIFSIGNALED (status))
        snprintf (text, size, "killed by signal %d (%s)", WTERMSIG (status),
                  strsignal (WTERMSIG (status)));
    else
        snprintf (text, size, "status 0x%x", status);
}

//  --------------------------------------------------------------------------
//  Talking to the node

typedef struct {
    bool replied;
    bool ok;
    bool duplicate;
    char code[32];
    char message[256];
    uint64_t position;
    uint64_t version;
} s_reply_t;

static s_reply_t
s_command (zcq_client_t *client, const char *id, const char *type, const char *key, int64_t amount)
{
    zcq_writer_t *data = zcq_writer_new ();
    zcq_writer_map (data, 1);
    if (strcmp (type, "open") == 0) {
        zcq_writer_str (data, "owner");
        zcq_writer_str (data, "faults");
    }
    else {
        zcq_writer_str (data, "amount");
        zcq_writer_int (data, amount);
    }
    zcq_command_req_t request = { .id = id,
                                  .aggregate = "account",
                                  .key = key,
                                  .type = type,
                                  .data = zcq_writer_data (data),
                                  .data_len = zcq_writer_size (data) };
    const zcq_value_t *reply = NULL;
    s_reply_t result = { 0 };
    if (zcq_client_command (client, &request, S_REPLY_MS, &reply) == ZCQ_OK && reply) {
        result.replied = true;
        zcq_value_bool (zcq_value_get (reply, "ok"), &result.ok);
        zcq_value_bool (zcq_value_get (reply, "duplicate"), &result.duplicate);
        snprintf (result.code, sizeof result.code, "%s", zcq_test_code (reply));
        zcq_value_get_str (reply, "message", result.message, sizeof result.message, "");
        zcq_value_uint (zcq_value_get (reply, "position"), &result.position);
        zcq_value_uint (zcq_value_get (reply, "version"), &result.version);
    }
    else
        snprintf (result.code, sizeof result.code, "no reply");
    zcq_writer_destroy (&data);
    return result;
}

//  A query from name/value pairs (values: "s:..", "i:.."), with a rid; NULL
//  when no reply came.
static const zcq_value_t *
s_query (zcq_client_t *client, const char *op, ...)
{
    static uint64_t rid;
    zcq_writer_t *body = zcq_writer_new ();
    size_t mark = zcq_writer_map_open (body);
    size_t count = 2;
    zcq_writer_str (body, "op");
    zcq_writer_str (body, op);
    zcq_writer_str (body, "rid");
    zcq_writer_uint (body, ++rid);
    va_list args;
    va_start (args, op);
    const char *name;
    while ((name = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        zcq_writer_str (body, name);
        if (strncmp (value, "i:", 2) == 0)
            zcq_writer_int (body, atoll (value + 2));
        else
            zcq_writer_str (body, value + 2);
        count++;
    }
    va_end (args);
    zcq_writer_map_close (body, mark, count);
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_call (client, ZCQ_ENDPOINT_QUERY, zcq_writer_data (body),
                                     zcq_writer_size (body), S_REPLY_MS, &reply);
    zcq_writer_destroy (&body);
    return err == ZCQ_OK ? reply : NULL;
}

//  The node's log as read with `read`: its head, and per command id the
//  position of its event. `problem` says what is wrong with it, if
//  anything: a hole or duplicate position, a stream version out of step,
//  a command id twice.
typedef struct {
    bool answered;
    uint64_t head;
    uint64_t count;  //  position of the last event checked
    uint64_t events; //  events read
    zhashx_t *ids;   //  command id -> position (as a string)
    char problem[512];
} s_log_t;

static void
s_log_release (s_log_t *log)
{
    zhashx_destroy (&log->ids);
}

//  Called for each event read, in log order.
typedef void (s_event_fn) (const zcq_value_t *event, void *arg);

//  Read the log; with on_event, hand it every event.
static void
s_read_log_with (zcq_client_t *client, s_log_t *log, s_event_fn *on_event, void *arg)
{
    memset (log, 0, sizeof *log);
    log->ids = zhashx_new ();
    zhashx_set_destructor (log->ids, (zhashx_destructor_fn *) zstr_free);
    zhashx_t *versions = zhashx_new ();
    zhashx_set_destructor (versions, (zhashx_destructor_fn *) zstr_free);
    uint64_t from = 1;
    char text[64];
    while (true) {
        snprintf (text, sizeof text, "i:%llu", (unsigned long long) from);
        const zcq_value_t *reply = s_query (client, "read", "from", text, "limit", "i:10000", NULL);
        if (!reply) {
            snprintf (log->problem, sizeof log->problem, "`read` got no reply");
            break;
        }
        if (strcmp (zcq_test_code (reply), "ok") != 0) {
            char message[256];
            zcq_value_get_str (reply, "message", message, sizeof message, "");
            snprintf (log->problem, sizeof log->problem, "`read` from %llu failed: %s: %s",
                      (unsigned long long) from, zcq_test_code (reply), message);
            break;
        }
        log->answered = true;
        zcq_value_uint (zcq_value_get (reply, "head"), &log->head);
        const zcq_value_t *events = zcq_value_get (reply, "events");
        size_t size = zcq_value_size (events);
        log->events += size;
        for (size_t index = 0; on_event && index < size; index++)
            on_event (zcq_value_at (events, index), arg);
        for (size_t index = 0; index < size && !log->problem[0]; index++) {
            const zcq_value_t *event = zcq_value_at (events, index);
            uint64_t position = 0, version = 0;
            zcq_value_uint (zcq_value_get (event, "position"), &position);
            zcq_value_uint (zcq_value_get (event, "version"), &version);
            char id[128], stream[300];
            zcq_value_get_str (event, "command", id, sizeof id, "?");
            zcq_value_get_str (event, "stream", stream, sizeof stream, "?");
            if (position != log->count + 1)
                snprintf (log->problem, sizeof log->problem,
                          "log position %llu follows %llu (hole or duplicate)",
                          (unsigned long long) position, (unsigned long long) log->count);
            char *last = zhashx_lookup (versions, stream);
            uint64_t expected = last ? strtoull (last, NULL, 10) + 1 : 1;
            if (!log->problem[0] && version != expected)
                snprintf (log->problem, sizeof log->problem,
                          "stream %s: version %llu at position %llu, expected %llu", stream,
                          (unsigned long long) version, (unsigned long long) position,
                          (unsigned long long) expected);
            snprintf (text, sizeof text, "%llu", (unsigned long long) version);
            zhashx_update (versions, stream, strdup (text));
            if (!log->problem[0] && zhashx_lookup (log->ids, id))
                snprintf (log->problem, sizeof log->problem,
                          "command %s is in the log twice (positions %s and %llu)", id,
                          (char *) zhashx_lookup (log->ids, id), (unsigned long long) position);
            snprintf (text, sizeof text, "%llu", (unsigned long long) position);
            zhashx_update (log->ids, id, strdup (text));
            log->count = position;
        }
        if (size == 0 || log->count >= log->head)
            break;
        //  after a problem, keep reading to count the events
        from = zcq_value_get_int (zcq_value_at (events, size - 1), "position", 0) + 1;
    }
    if (!log->problem[0] && log->answered && log->count != log->head)
        snprintf (log->problem, sizeof log->problem, "log has %llu events, head is %llu",
                  (unsigned long long) log->count, (unsigned long long) log->head);
    zhashx_destroy (&versions);
}

static void
s_read_log (zcq_client_t *client, s_log_t *log)
{
    s_read_log_with (client, log, NULL, NULL);
}

//  Problems are collected so that one run reports everything it saw.
typedef struct {
    char text[S_PROBLEMS];
    size_t size;
} s_problems_t;

static void
s_problem (s_problems_t *problems, const char *format, ...)
{
    if (problems->size >= sizeof problems->text - 2)
        return;
    va_list args;
    va_start (args, format);
    int wrote = vsnprintf (problems->text + problems->size,
                           sizeof problems->text - problems->size - 1, format, args);
    va_end (args);
    if (wrote > 0)
        problems->size += (size_t) wrote;
    if (problems->size > sizeof problems->text - 2)
        problems->size = sizeof problems->text - 2;
    problems->text[problems->size++] = '\n';
    problems->text[problems->size] = 0;
}

//  Check the log against what the test knows: every id in `acked` is in
//  it, no id in `failed` is, and its shape is sound. With `applied`, a
//  failed id may be in the log (its outcome was unknown: a failed sync in
//  fsync mode leaves the batch in the WAL, and a reopen or restart brings
//  it back whole); those found are added to `applied`.
static void
s_check_log (zcq_client_t *client, zlistx_t *acked, zlistx_t *failed, zlistx_t *applied,
             const char *when, s_problems_t *problems, uint64_t *head)
{
    s_log_t log;
    s_read_log (client, &log);
    if (log.problem[0])
        s_problem (problems, "%s: %s", when, log.problem);
    size_t missing = 0, present = 0;
    char first_missing[128] = "", first_present[128] = "";
    for (const char *id = zlistx_first (acked); id; id = zlistx_next (acked))
        if (!zhashx_lookup (log.ids, id) && missing++ == 0)
            snprintf (first_missing, sizeof first_missing, "%s", id);
    for (const char *id = zlistx_first (failed); id; id = zlistx_next (failed)) {
        if (!zhashx_lookup (log.ids, id))
            continue;
        if (applied) {
            if (!zlistx_find (applied, (void *) id))
                zlistx_add_end (applied, (void *) id);
        }
        else if (present++ == 0)
            snprintf (first_present, sizeof first_present, "%s", id);
    }
    if (missing)
        s_problem (problems, "%s: %zu acknowledged commands are not in the log (first: %s)", when,
                   missing, first_missing);
    if (present)
        s_problem (problems,
                   "%s: %zu of %zu commands answered `internal` (\"nothing written\") are in "
                   "the log (first: %s at position %s)",
                   when, present, zlistx_size (failed), first_present,
                   (char *) zhashx_lookup (log.ids, first_present));
    if (head)
        *head = log.head;
    s_log_release (&log);
}

static zlistx_t *
s_id_list (void)
{
    zlistx_t *list = zlistx_new ();
    zlistx_set_destructor (list, (zlistx_destructor_fn *) zstr_free);
    zlistx_set_duplicator (list, (zlistx_duplicator_fn *) strdup);
    return list;
}

//  --------------------------------------------------------------------------
//  Group store: a real RocksDB error under zcq_store

typedef struct {
    char *dir;
    char control[4096];
} s_store_fixture_t;

static int
s_store_setup (void **state)
{
    s_store_fixture_t *fixture = calloc (1, sizeof *fixture);
    fixture->dir = zcq_test_dir ("faults-store");
    snprintf (fixture->control, sizeof fixture->control, "%s/fault", fixture->dir);
    //  the shim linked into this executable reads it on every write
    setenv ("ZCQ_FAULT_FILE", fixture->control, 1);
    *state = fixture;
    return 0;
}

static int
s_store_teardown (void **state)
{
    s_store_fixture_t *fixture = *state;
    unsetenv ("ZCQ_FAULT_FILE");
    zcq_test_rmdir (&fixture->dir);
    free (fixture);
    return 0;
}

static zcq_store_t *
s_store_open (const char *path, zcq_durability_t durability)
{
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.durability = durability;
    zcq_store_t *store = NULL;
    char error[512];
    if (zcq_store_open (&store, path, &options, error, sizeof error) != ZCQ_OK)
        fail_msg ("cannot open the store: %s", error);
    return store;
}

//  Stage command `number`: one event on stream "s" at position/version
//  `number`, and its id.
static void
s_stage (zcq_batch_t *batch, uint64_t number)
{
    char id[32], body[32];
    snprintf (id, sizeof id, "cmd-%llu", (unsigned long long) number);
    snprintf (body, sizeof body, "event-%llu", (unsigned long long) number);
    zcq_batch_event (batch, number, "s", 1, number, body, strlen (body));
    zcq_batch_command (batch, id, strlen (id), zclock_time () * 1000, "r", 1);
}

static bool
s_has_command (zcq_store_t *store, uint64_t number)
{
    char id[32];
    snprintf (id, sizeof id, "cmd-%llu", (unsigned long long) number);
    void *result = NULL;
    size_t len;
    zcq_err_t err = zcq_store_command (store, id, strlen (id), &result, &len);
    free (result);
    return err == ZCQ_OK;
}

static void
s_store_scenario (s_store_fixture_t *fixture, zcq_durability_t durability, const char *fault)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", fixture->dir, zcq_durability_name (durability));
    zcq_store_t *store = s_store_open (path, durability);
    zcq_batch_t *batch = zcq_batch_new (store);
    for (uint64_t number = 1; number <= 10; number++) {
        zcq_batch_clear (batch);
        s_stage (batch, number);
        assert_int_equal (zcq_store_commit (store, batch, number), ZCQ_OK);
    }
    //  the fault: a batch of three commands fails
    s_write_file (fixture->control, fault);
    zcq_batch_clear (batch);
    for (uint64_t number = 11; number <= 13; number++)
        s_stage (batch, number);
    zcq_err_t err = zcq_store_commit (store, batch, 13);
    unlink (fixture->control);
    assert_int_not_equal (err, ZCQ_OK);
    //  nothing of it is visible, reads work
    assert_int_equal (zcq_store_head (store), 10);
    assert_int_equal (zcq_test_log_events (store), 10);
    uint64_t version = 0;
    assert_int_equal (zcq_store_stream_version (store, "s", &version), ZCQ_OK);
    assert_int_equal (version, 10);
    for (uint64_t number = 11; number <= 13; number++)
        assert_false (s_has_command (store, number));
    assert_true (s_has_command (store, 10));

    //  the store refuses commits until it has reopened RocksDB
    assert_true (zcq_store_failed (store));
    zcq_batch_clear (batch);
    s_stage (batch, 11);
    assert_int_equal (zcq_store_commit (store, batch, 11), ZCQ_IO);

    //  while every write fails, a reopen fails too: the store opens
    //  read-only meanwhile, and reads go on
    s_write_file (fixture->control, "both 5 data");
    uint64_t epoch = zcq_store_epoch (store);
    int64_t deadline = zclock_mono () + S_RECOVER_MS;
    zcq_err_t recovered = ZCQ_OK;
    while (zcq_store_epoch (store) == epoch && zclock_mono () < deadline) {
        recovered = zcq_store_recover (store);
        if (zcq_store_epoch (store) == epoch)
            zclock_sleep (10); //  polling the backoff, with a deadline
    }
    unlink (fixture->control);
    assert_true (zcq_store_epoch (store) > epoch);
    assert_int_equal (recovered, ZCQ_IO);
    assert_true (zcq_store_failed (store));
    uint64_t read_only_head = zcq_store_head (store);
    assert_true (read_only_head == 10
                 || (durability == ZCQ_DURABILITY_FSYNC && read_only_head == 13));
    assert_int_equal (zcq_test_log_events (store), read_only_head);
    assert_int_equal (zcq_store_stream_version (store, "s", &version), ZCQ_OK);
    assert_int_equal (version, read_only_head);
    assert_true (s_has_command (store, 10));
    assert_int_equal (zcq_store_commit (store, batch, 11), ZCQ_IO);

    //  the fault is gone: the store reopens (after its backoff) and takes
    //  commits again, positions following the head it reloaded
    epoch = zcq_store_epoch (store);
    deadline = zclock_mono () + S_RECOVER_MS;
    while ((recovered = zcq_store_recover (store)) != ZCQ_OK && zclock_mono () < deadline)
        zclock_sleep (10); //  polling the backoff, with a deadline
    assert_int_equal (recovered, ZCQ_OK);
    assert_false (zcq_store_failed (store));
    assert_true (zcq_store_epoch (store) > epoch);
    uint64_t head = zcq_store_head (store);
    //  10: the batch is gone; 13: it came back whole from the WAL (a failed
    //  sync: outcome unknown); never in part
    if (head != 10 && (durability == ZCQ_DURABILITY_WAL || head != 13))
        fail_msg ("after the reopen the head is %llu: a failed batch of three was written in "
                  "part, or (wal mode) written at all",
                  (unsigned long long) head);
    assert_int_equal (zcq_test_log_events (store), head);
    for (uint64_t number = 11; number <= 13; number++)
        assert_int_equal (s_has_command (store, number), head == 13);
    if (head == 13)
        print_message ("store (%s): the batch whose commit returned an error is in the "
                       "store after the reopen (its WAL record was written before the %s "
                       "failed)\n",
                       zcq_durability_name (durability), fault);
    zcq_batch_clear (batch);
    s_stage (batch, head + 1);
    assert_int_equal (zcq_store_commit (store, batch, head + 1), ZCQ_OK);
    assert_int_equal (zcq_store_head (store), head + 1);
    zcq_batch_destroy (&batch);
    zcq_store_close (&store);

    //  after a close and an open: everything committed, nothing else
    store = s_store_open (path, durability);
    assert_int_equal (zcq_store_head (store), head + 1);
    assert_int_equal (zcq_test_log_events (store), head + 1);
    assert_int_equal (zcq_store_stream_version (store, "s", &version), ZCQ_OK);
    assert_int_equal (version, head + 1);
    for (uint64_t number = 1; number <= head + 1; number++)
        assert_true (s_has_command (store, number));
    assert_int_equal (zcq_store_verified (store, NULL, 0), ZCQ_OK);
    zcq_store_close (&store);
}

//  The WAL write fails (wal mode): nothing partial, reads work, a reopen
//  finds the batch absent.
static void
test_store_wal_write_error (void **state)
{
    s_store_scenario (*state, ZCQ_DURABILITY_WAL, "write 5 wal");
}

//  The WAL sync fails (fsync mode): the same, except that the batch may
//  come back whole from the WAL after a reopen (it was written, only the
//  sync failed); never in part.
static void
test_store_wal_sync_error (void **state)
{
    s_store_scenario (*state, ZCQ_DURABILITY_FSYNC, "sync 5 wal");
}

//  --------------------------------------------------------------------------
//  Groups node and disk_full: a node whose storage fails mid-run

typedef struct {
    char *dir;
} s_dir_fixture_t;

static int
s_dir_setup (void **state)
{
    s_dir_fixture_t *fixture = calloc (1, sizeof *fixture);
    fixture->dir = zcq_test_dir ("faults");
    *state = fixture;
    return 0;
}

static int
s_dir_teardown (void **state)
{
    s_dir_fixture_t *fixture = *state;
    zcq_test_rmdir (&fixture->dir);
    free (fixture);
    return 0;
}

typedef struct {
    const char *durability;
    const char *fault; //  shim control text, or NULL for disk full
    const char *mount; //  disk full: the tmpfs
    bool unknown;      //  a failed command may have been applied (a failed sync)
} s_scenario_t;

//  The amount of a deposit the scenario sent, by its id.
static int64_t
s_amount (const char *id)
{
    return strncmp (id, "after-", 6) == 0 ? 100 : 1;
}

//  Start the fault: the shim's control file, or a full disk.
static void
s_fault_on (const s_scenario_t *scenario, const char *control, char *filler, size_t size)
{
    if (scenario->fault) {
        s_write_file (control, scenario->fault);
        return;
    }
    //  disk full: fill the tmpfs to the last byte
    snprintf (filler, size, "%s/filler", scenario->mount);
    int fd = open (filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true (fd >= 0);
    static char block[65536];
    size_t chunk = sizeof block;
    while (chunk >= 512) {
        if (write (fd, block, chunk) < 0) {
            assert_int_equal (errno, ENOSPC);
            chunk /= 2;
        }
    }
    close (fd);
}

static void
s_fault_off (const s_scenario_t *scenario, const char *control, const char *filler)
{
    unlink (scenario->fault ? control : filler);
}

static void
s_storage_fault_scenario (const char *workdir, const s_scenario_t *scenario)
{
    s_problems_t problems = { .size = 0 };
    char data[4096], control[4096], filler[4096] = "";
    snprintf (data, sizeof data, "%s/data", scenario->mount ? scenario->mount : workdir);
    snprintf (control, sizeof control, "%s/fault", workdir);
    zlistx_t *acked = s_id_list ();
    zlistx_t *failed = s_id_list ();
    //  failed commands found applied (outcome unknown), when the scenario
    //  allows that
    zlistx_t *applied = scenario->unknown ? s_id_list () : NULL;
    if (applied)
        zlistx_set_comparator (applied, (zlistx_comparator_fn *) strcmp);
    s_daemon_t daemon;
    assert_true (s_daemon_start (&daemon, workdir, data, scenario->durability,
                                 scenario->fault ? control : NULL));
    zcq_client_t *client = zcq_client_new (daemon.command, daemon.query);
    assert_non_null (client);
    char id[64];
    s_reply_t reply = s_command (client, "open-a", "open", "a", 0);
    assert_string_equal (reply.code, "ok");
    zlistx_add_end (acked, "open-a");
    int64_t balance = 0;
    for (int index = 0; index < 50; index++) {
        snprintf (id, sizeof id, "before-%d", index);
        reply = s_command (client, id, "deposit", "a", 10);
        assert_string_equal (reply.code, "ok");
        zlistx_add_end (acked, id);
        balance += 10;
    }
    uint64_t head_before = 0;
    s_check_log (client, acked, failed, applied, "before the fault", &problems, &head_before);
    assert_int_equal (head_before, 51);

    //  the fault: commands fail with `internal`, or (disk full) succeed
    //  while the WAL's last page still has room, then fail
    s_fault_on (scenario, control, filler, sizeof filler);
    int attempts = scenario->fault ? 20 : 20000;
    int failures = 0, successes = 0;
    bool died = false;
    for (int index = 0; index < attempts && failures < 20; index++) {
        snprintf (id, sizeof id, "during-%d", index);
        reply = s_command (client, id, "deposit", "a", 1);
        if (reply.ok) {
            zlistx_add_end (acked, id);
            balance += 1;
            successes++;
            if (scenario->fault)
                s_problem (&problems, "%s succeeded while every WAL write failed", id);
            continue;
        }
        if (!reply.replied) {
            s_daemon_wait (&daemon, 5000);
            char status[128] = "still running";
            if (!daemon.running)
                s_describe_status (daemon.status, status, sizeof status);
            char *err = s_read_file (daemon.err_path);
            s_problem (&problems,
                       "command %s during the storage fault got no reply; zcqrsd %s; its "
                       "stderr ends:\n    %s",
                       id, status, s_tail (err, 3));
            free (err);
            died = !daemon.running;
            break;
        }
        failures++;
        zlistx_add_end (failed, id);
        if (strcmp (reply.code, "internal") != 0)
            s_problem (&problems, "%s during the fault: `%s` (%s), expected `internal`", id,
                       reply.code, reply.message);
    }
    if (!died && failures == 0)
        s_problem (&problems, "no command failed during the storage fault (%d succeeded)",
                   successes);
    print_message ("%s: during the fault %d commands succeeded, %d failed%s\n",
                   scenario->fault ? scenario->fault : "disk full", successes, failures,
                   died ? ", then zcqrsd died" : "");

    bool recovered = false;
    if (!died) {
        //  queries are still answered, and show nothing of the failed commands
        const zcq_value_t *health = s_query (client, "health", NULL);
        if (!health || strcmp (zcq_test_code (health), "ok") != 0)
            s_problem (&problems, "`health` during the fault: %s",
                       health ? zcq_test_code (health) : "no reply");
        uint64_t head = 0;
        s_check_log (client, acked, failed, applied, "during the fault", &problems, &head);
        int64_t expected = balance;
        for (const char *applied_id = applied ? zlistx_first (applied) : NULL; applied_id;
             applied_id = zlistx_next (applied))
            expected += s_amount (applied_id);
        char position[32];
        snprintf (position, sizeof position, "i:%llu", (unsigned long long) head);
        const zcq_value_t *row = s_query (client, "get", "view", "s:accounts", "key", "s:a",
                                          "min_position", position, "timeout_ms", "i:20000", NULL);
        int64_t seen = row ? zcq_value_get_int (zcq_value_get (row, "row"), "balance", -1) : -1;
        if (seen != expected)
            s_problem (&problems,
                       "during the fault the accounts view says balance %lld, the "
                       "acknowledged (and applied) deposits make %lld",
                       (long long) seen, (long long) expected);

        //  the fault clears: the node must take commands again
        s_fault_off (scenario, control, filler);
        int64_t deadline = zclock_mono () + S_RECOVER_MS;
        int tries = 0;
        while (!recovered && zclock_mono () < deadline) {
            snprintf (id, sizeof id, "after-%d", tries++);
            reply = s_command (client, id, "deposit", "a", 100);
            if (reply.ok) {
                recovered = true;
                zlistx_add_end (acked, id);
                balance += 100;
            }
            else if (!reply.replied)
                break;
            else {
                zlistx_add_end (failed, id);
                zclock_sleep (200); //  polling for recovery, with a deadline
            }
        }
        if (!recovered)
            s_problem (&problems,
                       "the node did not recover within %d s after the storage fault cleared: "
                       "commands still get `%s` (%s). RocksDB keeps the background error of "
                       "the failed write and refuses every later write until the DB is "
                       "reopened; the node never resumes or reopens it",
                       S_RECOVER_MS / 1000, reply.code, reply.message);
        if (recovered) {
            //  a command committed: the store reports itself healthy again
            health = s_query (client, "health", NULL);
            if (!health || !zcq_value_streq (zcq_value_get (health, "store"), "ok"))
                s_problem (&problems, "`health` after the recovery does not say store `ok`");
        }
        s_check_log (client, acked, failed, applied, "after the fault cleared", &problems, NULL);
        int status = s_daemon_stop (&daemon, SIGTERM);
        if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
            char text[128];
            s_describe_status (status, text, sizeof text);
            s_problem (&problems, "zcqrsd stopped with %s after SIGTERM, expected exit 0", text);
        }
    }
    else
        s_fault_off (scenario, control, filler);
    zcq_client_destroy (&client);

    //  a restart on the same data, without the fault: exactly the
    //  acknowledged commands are there, and commands work
    assert_true (s_daemon_start (&daemon, workdir, data, scenario->durability, NULL));
    client = zcq_client_new (daemon.command, daemon.query);
    s_check_log (client, acked, failed, applied, "after a restart", &problems, NULL);
    reply = s_command (client, "after-restart", "deposit", "a", 1);
    if (!reply.ok)
        s_problem (&problems, "a command after the restart: `%s` (%s)", reply.code, reply.message);
    for (const char *first = zlistx_first (failed); first; first = zlistx_next (failed)) {
        //  a failed id is decided afresh (only successes are remembered),
        //  unless it was applied after all: then it is a duplicate
        bool was_applied = applied && zlistx_find (applied, (void *) first);
        reply = s_command (client, first, "deposit", "a", 1);
        if (!reply.ok || reply.duplicate != was_applied)
            s_problem (&problems,
                       "retry of %s (answered `internal` before, %s) after the restart: "
                       "`%s`%s, expected %s",
                       first, was_applied ? "found applied" : "not in the log", reply.code,
                       reply.duplicate ? " duplicate" : "",
                       was_applied ? "a duplicate" : "a fresh success");
        if (!was_applied)
            break; //  one fresh retry is enough
    }
    zcq_client_destroy (&client);
    int status = s_daemon_stop (&daemon, SIGTERM);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        s_problem (&problems, "zcqrsd did not exit 0 after the final SIGTERM");
    if (applied)
        print_message ("%s: %zu commands answered `internal` were applied after all (a failed "
                       "sync: outcome unknown)\n",
                       scenario->fault ? scenario->fault : "disk full", zlistx_size (applied));
    zlistx_destroy (&acked);
    zlistx_destroy (&failed);
    zlistx_destroy (&applied);
    if (problems.size)
        fail_msg ("storage fault (%s, durability %s):\n%s",
                  scenario->fault ? scenario->fault : "disk full", scenario->durability,
                  problems.text);
}

//  Every WAL write fails for a while (wal mode).
static void
test_node_wal_write_error (void **state)
{
    s_dir_fixture_t *fixture = *state;
    if (!s_shim)
        skip ();
    s_scenario_t scenario = { "wal", "write 5 wal", NULL, false };
    s_storage_fault_scenario (fixture->dir, &scenario);
}

//  Every WAL sync fails for a while (fsync mode).
static void
test_node_wal_sync_error (void **state)
{
    s_dir_fixture_t *fixture = *state;
    if (!s_shim)
        skip ();
    s_scenario_t scenario = { "fsync", "sync 5 wal", NULL, true };
    s_storage_fault_scenario (fixture->dir, &scenario);
}

//  A real full disk: an 8 MiB tmpfs filled by a filler file.
static void
test_node_disk_full (void **state)
{
    s_dir_fixture_t *fixture = *state;
    char mount_dir[4096];
    snprintf (mount_dir, sizeof mount_dir, "%s/tmpfs", fixture->dir);
    assert_int_equal (zsys_dir_create ("%s", mount_dir), 0);
    if (!s_mount_tmpfs (mount_dir, "size=8m", 0)) {
        print_message ("disk_full: skipped (needs root and tmpfs)\n");
        skip ();
    }
    s_scenario_t scenario = { "wal", NULL, mount_dir, false };
    //  unmount even when the scenario fails (cmocka longjmps out of it)
    s_storage_fault_scenario (fixture->dir, &scenario);
    umount2 (mount_dir, MNT_DETACH);
}

static int
s_disk_full_teardown (void **state)
{
    s_dir_fixture_t *fixture = *state;
    char mount_dir[4096];
    snprintf (mount_dir, sizeof mount_dir, "%s/tmpfs", fixture->dir);
    umount2 (mount_dir, MNT_DETACH);
    return s_dir_teardown (state);
}

//  --------------------------------------------------------------------------
//  Groups pipelined_wal and pipelined_fsync: storage faults under pipelined
//  load

#define S_PIPE_CLIENTS  4    //  DEALER sockets, each keeping a full window
#define S_PIPE_WINDOW   256  //  commands in flight per client
#define S_PIPE_ACCOUNTS 8    //  accounts per client
#define S_PIPE_META     200  //  bytes of meta per command: the disk fills sooner
#define S_PIPE_WARM     3000 //  commands acknowledged before the fault
#define S_PIPE_FAULT_MS 1000 //  how long the fault lasts once commands fail
#define S_PIPE_HEALED   2000 //  commands acknowledged after the fault cleared
#define S_PIPE_PHASE_MS 20000
#define S_PIPE_EXAMPLES 5 //  examples reported per kind of problem
#define S_PIPE_SHARDS   "2"

//  One command sent, and its reply.
typedef struct {
    char id[64];
    char key[48];
    bool open;      //  open, else deposit
    int64_t amount; //  a deposit's amount, distinct per command
    int client;
    bool sent_healing; //  sent after the fault cleared
    bool replied;
    bool ok;
    bool duplicate;
    char code[24];
    uint64_t position;
} s_sent_t;

typedef enum { S_PIPE_WARMING, S_PIPE_FAULTED, S_PIPE_HEALING, S_PIPE_DRAINING } s_phase_t;

typedef struct {
    const char *durability;
    const char *fault; //  shim control text, or NULL for a full tmpfs
    const char *mount; //  full tmpfs: its mount point
    char control[4096];
    char filler[4096];
    char tag[16]; //  this run's, in every command id
    zsock_t *clients[S_PIPE_CLIENTS];
    size_t outstanding[S_PIPE_CLIENTS];
    uint64_t counter[S_PIPE_CLIENTS];
    zhashx_t *by_id; //  id -> s_sent_t (owned by sent)
    s_sent_t **sent; //  in sending order
    size_t count, capacity;
    s_phase_t phase;
    size_t oks, internals, others; //  replies by outcome
    size_t failed_in_fault;        //  commands that failed while the fault was on
    size_t oks_after;              //  ok replies to commands sent after the fault cleared
    size_t strays;                 //  replies for no command in flight
    int64_t phase_ms[4];
    zcq_doc_t *doc;
    zcq_writer_t *request, *data, *meta;
} s_pipe_t;

static void
s_pipe_send (s_pipe_t *pipe, int client)
{
    s_sent_t *command = calloc (1, sizeof *command);
    assert_non_null (command);
    uint64_t number = ++pipe->counter[client];
    snprintf (command->id, sizeof command->id, "%s-c%d-%llu", pipe->tag, client,
              (unsigned long long) number);
    snprintf (command->key, sizeof command->key, "%s-c%d-a%llu", pipe->tag, client,
              (unsigned long long) ((number - 1) % S_PIPE_ACCOUNTS));
    command->open = number <= S_PIPE_ACCOUNTS;
    command->amount = command->open ? 0 : (int64_t) (client + 1) * 100000000 + (int64_t) number;
    command->client = client;
    command->sent_healing = pipe->phase >= S_PIPE_HEALING;
    zcq_writer_reset (pipe->data);
    zcq_writer_map (pipe->data, 1);
    if (command->open) {
        zcq_writer_str (pipe->data, "owner");
        zcq_writer_str (pipe->data, "pipelined");
    }
    else {
        zcq_writer_str (pipe->data, "amount");
        zcq_writer_int (pipe->data, command->amount);
    }
    char note[S_PIPE_META + 1];
    for (size_t index = 0; index < S_PIPE_META; index++)
        note[index] = command->id[index % strlen (command->id)];
    note[S_PIPE_META] = 0;
    zcq_writer_reset (pipe->meta);
    zcq_writer_map (pipe->meta, 1);
    zcq_writer_str (pipe->meta, "note");
    zcq_writer_str (pipe->meta, note);
    zcq_command_req_t request = { .id = command->id,
                                  .aggregate = "account",
                                  .key = command->key,
                                  .type = command->open ? "open" : "deposit",
                                  .data = zcq_writer_data (pipe->data),
                                  .data_len = zcq_writer_size (pipe->data),
                                  .meta = zcq_writer_data (pipe->meta),
                                  .meta_len = zcq_writer_size (pipe->meta) };
    zcq_writer_reset (pipe->request);
    zcq_command_encode (pipe->request, &request);
    //  no high-water mark: the send queues
    int rc = zmq_send (zsock_resolve (pipe->clients[client]), zcq_writer_data (pipe->request),
                       zcq_writer_size (pipe->request), ZMQ_DONTWAIT);
    assert_int_equal (rc, (int) zcq_writer_size (pipe->request));
    if (pipe->count == pipe->capacity) {
        pipe->capacity = pipe->capacity ? pipe->capacity * 2 : 16384;
        pipe->sent = realloc (pipe->sent, pipe->capacity * sizeof (s_sent_t *));
        assert_non_null (pipe->sent);
    }
    pipe->sent[pipe->count++] = command;
    assert_int_equal (zhashx_insert (pipe->by_id, command->id, command), 0);
    pipe->outstanding[client]++;
}

//  Take every reply waiting on a client's socket.
static void
s_pipe_receive (s_pipe_t *pipe, int client, s_problems_t *problems)
{
    void *socket = zsock_resolve (pipe->clients[client]);
    zmq_msg_t message;
    zmq_msg_init (&message);
    while (zmq_msg_recv (&message, socket, ZMQ_DONTWAIT) >= 0) {
        //  the body is the last frame
        while (zmq_msg_more (&message))
            if (zmq_msg_recv (&message, socket, 0) < 0)
                break;
        char id[64] = "";
        s_sent_t *command = NULL;
        if (zcq_doc_decode (pipe->doc, zmq_msg_data (&message), zmq_msg_size (&message), NULL)
            == ZCQ_OK) {
            zcq_value_get_str (zcq_doc_root (pipe->doc), "id", id, sizeof id, "");
            command = zhashx_lookup (pipe->by_id, id);
        }
        if (!command || command->replied || command->client != client) {
            if (pipe->strays++ < S_PIPE_EXAMPLES)
                s_problem (problems, "client %d got a reply for no command in flight (id '%s')",
                           client, id);
            continue;
        }
        const zcq_value_t *reply = zcq_doc_root (pipe->doc);
        command->replied = true;
        zcq_value_bool (zcq_value_get (reply, "ok"), &command->ok);
        zcq_value_bool (zcq_value_get (reply, "duplicate"), &command->duplicate);
        zcq_value_uint (zcq_value_get (reply, "position"), &command->position);
        snprintf (command->code, sizeof command->code, "%s", zcq_test_code (reply));
        pipe->outstanding[client]--;
        if (command->ok) {
            pipe->oks++;
            if (command->sent_healing)
                pipe->oks_after++;
        }
        else if (strcmp (command->code, "internal") == 0)
            pipe->internals++;
        else
            pipe->others++;
        if (!command->ok && pipe->phase == S_PIPE_FAULTED)
            pipe->failed_in_fault++;
    }
    zmq_msg_close (&message);
}

//  The fault: the shim's control file, or the tmpfs filled to the last
//  byte.
static void
s_pipe_fault_on (s_pipe_t *pipe)
{
    s_scenario_t scenario = { pipe->durability, pipe->fault, pipe->mount, false };
    s_fault_on (&scenario, pipe->control, pipe->filler, sizeof pipe->filler);
}

//  The fault clears: the control file goes, or the tmpfs grows (the filler
//  stays).
static void
s_pipe_fault_off (s_pipe_t *pipe)
{
    if (pipe->fault)
        unlink (pipe->control);
    else if (mount (NULL, pipe->mount, NULL, MS_REMOUNT, "size=256m") != 0)
        fail_msg ("cannot grow the tmpfs at %s: %s", pipe->mount, strerror (errno));
}

static const char *
s_pipe_phase_name (s_phase_t phase)
{
    return phase == S_PIPE_WARMING ? "before the fault"
         : phase == S_PIPE_FAULTED ? "during the fault"
         : phase == S_PIPE_HEALING ? "after the fault cleared"
                                   : "draining";
}

//  The load: every client keeps its window full until the node has
//  acknowledged S_PIPE_WARM commands, the fault starts and lasts
//  S_PIPE_FAULT_MS from the first failed command, then clears; once
//  S_PIPE_HEALED more commands are acknowledged the clients stop sending
//  and every reply is waited for.
static void
s_pipe_run (s_pipe_t *pipe, s_daemon_t *daemon, s_problems_t *problems)
{
    zmq_pollitem_t items[S_PIPE_CLIENTS];
    for (int client = 0; client < S_PIPE_CLIENTS; client++)
        items[client]
            = (zmq_pollitem_t) { zsock_resolve (pipe->clients[client]), 0, ZMQ_POLLIN, 0 };
    int64_t phase_start = zclock_mono ();
    int64_t deadline = phase_start + S_PIPE_PHASE_MS;
    int64_t first_failure = 0;
    pipe->phase = S_PIPE_WARMING;
    while (true) {
        size_t outstanding = 0;
        for (int client = 0; client < S_PIPE_CLIENTS; client++) {
            while (pipe->phase != S_PIPE_DRAINING && pipe->outstanding[client] < S_PIPE_WINDOW)
                s_pipe_send (pipe, client);
            outstanding += pipe->outstanding[client];
        }
        if (pipe->phase == S_PIPE_DRAINING && outstanding == 0)
            break;
        //  waits for replies, not for time
        if (zmq_poll (items, S_PIPE_CLIENTS, 100) < 0 && zmq_errno () != EINTR)
            fail_msg ("zmq_poll: %s", zmq_strerror (zmq_errno ()));
        for (int client = 0; client < S_PIPE_CLIENTS; client++)
            if (items[client].revents & ZMQ_POLLIN)
                s_pipe_receive (pipe, client, problems);
        int64_t now = zclock_mono ();
        s_phase_t next = pipe->phase;
        if (pipe->phase == S_PIPE_WARMING && pipe->oks >= S_PIPE_WARM) {
            s_pipe_fault_on (pipe);
            next = S_PIPE_FAULTED;
        }
        else if (pipe->phase == S_PIPE_FAULTED) {
            if (!first_failure && pipe->failed_in_fault)
                first_failure = now;
            if (first_failure && now - first_failure >= S_PIPE_FAULT_MS) {
                s_pipe_fault_off (pipe);
                next = S_PIPE_HEALING;
            }
        }
        else if (pipe->phase == S_PIPE_HEALING && pipe->oks_after >= S_PIPE_HEALED)
            next = S_PIPE_DRAINING;
        if (next == pipe->phase && now >= deadline) {
            char status[128] = "still running";
            if (s_daemon_wait (daemon, 0))
                s_describe_status (daemon->status, status, sizeof status);
            s_problem (problems,
                       "%s: stuck for %d s (%zu commands sent, %zu ok, %zu internal, %zu other, "
                       "%zu without a reply; zcqrsd %s)",
                       s_pipe_phase_name (pipe->phase), S_PIPE_PHASE_MS / 1000, pipe->count,
                       pipe->oks, pipe->internals, pipe->others, outstanding, status);
            if (pipe->phase == S_PIPE_FAULTED)
                s_pipe_fault_off (pipe);
            if (pipe->phase == S_PIPE_DRAINING || !daemon->running)
                break;
            next = pipe->phase == S_PIPE_FAULTED ? S_PIPE_HEALING : S_PIPE_DRAINING;
        }
        if (next != pipe->phase) {
            pipe->phase_ms[pipe->phase] = now - phase_start;
            pipe->phase = next;
            phase_start = now;
            deadline = now + (next == S_PIPE_DRAINING ? S_REPLY_MS : S_PIPE_PHASE_MS);
        }
    }
    pipe->phase_ms[pipe->phase] = zclock_mono () - phase_start;
    if (pipe->failed_in_fault == 0)
        s_problem (problems, "no command failed during the storage fault");
}

//  What the log says, folded as the views should fold it.
typedef struct {
    bool opened;
    char owner[64];
    int64_t balance;
    uint64_t version;
} s_account_t;

typedef struct {
    s_pipe_t *pipe;
    zhashx_t *accounts;  //  key -> s_account_t
    zhashx_t *positions; //  position -> command id
    int64_t opened, balance, events;
    size_t strangers, mismatched;
    char first_stranger[128], first_mismatch[512];
} s_fold_t;

static void
s_fold_event (const zcq_value_t *event, void *arg)
{
    s_fold_t *fold = arg;
    char id[64], key[48], type[64], owner[64], position[32];
    zcq_value_get_str (event, "command", id, sizeof id, "?");
    zcq_value_get_str (event, "key", key, sizeof key, "?");
    zcq_value_get_str (event, "type", type, sizeof type, "?");
    const zcq_value_t *data = zcq_value_get (event, "data");
    int64_t amount = zcq_value_get_int (data, "amount", 0);
    zcq_value_get_str (data, "owner", owner, sizeof owner, "");
    snprintf (position, sizeof position, "%lld",
              (long long) zcq_value_get_int (event, "position", 0));
    zhashx_update (fold->positions, position, strdup (id));
    fold->events++;
    s_account_t *account = zhashx_lookup (fold->accounts, key);
    if (!account) {
        account = calloc (1, sizeof *account);
        assert_non_null (account);
        zhashx_insert (fold->accounts, key, account);
    }
    account->version = (uint64_t) zcq_value_get_int (event, "version", 0);
    if (strcmp (type, "opened") == 0) {
        account->opened = true;
        snprintf (account->owner, sizeof account->owner, "%s", owner);
        fold->opened++;
    }
    else if (strcmp (type, "deposited") == 0) {
        account->balance += amount;
        fold->balance += amount;
    }
    else if (strcmp (type, "withdrawn") == 0) {
        account->balance -= amount;
        fold->balance -= amount;
    }
    //  the event is what its command asked for
    s_sent_t *command = zhashx_lookup (fold->pipe->by_id, id);
    if (!command) {
        if (fold->strangers++ == 0)
            snprintf (fold->first_stranger, sizeof fold->first_stranger, "%s at position %s", id,
                      position);
    }
    else if (strcmp (type, command->open ? "opened" : "deposited") != 0
             || strcmp (key, command->key) != 0 || (!command->open && amount != command->amount)) {
        if (fold->mismatched++ == 0)
            snprintf (fold->first_mismatch, sizeof fold->first_mismatch,
                      "position %s: %s %s %lld by command %s, which was %s %s %lld", position, type,
                      key, (long long) amount, id, command->open ? "open" : "deposit", command->key,
                      (long long) command->amount);
    }
}

static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_fold_init (s_fold_t *fold, s_pipe_t *pipe)
{
    memset (fold, 0, sizeof *fold);
    fold->pipe = pipe;
    fold->accounts = zhashx_new ();
    zhashx_set_destructor (fold->accounts, s_free_item);
    fold->positions = zhashx_new ();
    zhashx_set_destructor (fold->positions, (zhashx_destructor_fn *) zstr_free);
}

static void
s_fold_release (s_fold_t *fold)
{
    zhashx_destroy (&fold->accounts);
    zhashx_destroy (&fold->positions);
}

//  The views `accounts` (every row, paged) and `totals`, once they applied
//  the head, against the fold of the log.
static void
s_pipe_check_views (zcq_client_t *client, s_fold_t *fold, uint64_t head, const char *when,
                    s_problems_t *problems)
{
    char min_position[32], after[300] = "";
    snprintf (min_position, sizeof min_position, "i:%llu", (unsigned long long) head);
    size_t rows = 0, wrong = 0;
    char first_wrong[512] = "";
    while (true) {
        char cursor[310];
        snprintf (cursor, sizeof cursor, "s:%s", after);
        const zcq_value_t *reply
            = after[0]
                ? s_query (client, "list", "view", "s:accounts", "limit", "i:1000", "after", cursor,
                           "min_position", min_position, "timeout_ms", "i:20000", NULL)
                : s_query (client, "list", "view", "s:accounts", "limit", "i:1000", "min_position",
                           min_position, "timeout_ms", "i:20000", NULL);
        if (!reply || strcmp (zcq_test_code (reply), "ok") != 0) {
            s_problem (problems, "%s: `list accounts` at position %llu: %s", when,
                       (unsigned long long) head, reply ? zcq_test_code (reply) : "no reply");
            return;
        }
        const zcq_value_t *list = zcq_value_get (reply, "rows");
        for (size_t index = 0; index < zcq_value_size (list); index++) {
            const zcq_value_t *row = zcq_value_at (list, index);
            char key[300], owner[64], status[32];
            zcq_value_get_str (row, "key", key, sizeof key, "?");
            zcq_value_get_str (row, "owner", owner, sizeof owner, "?");
            zcq_value_get_str (row, "status", status, sizeof status, "?");
            int64_t balance = zcq_value_get_int (row, "balance", -1);
            int64_t version = zcq_value_get_int (row, "version", -1);
            s_account_t *account = zhashx_lookup (fold->accounts, key);
            rows++;
            if (!account || !account->opened || strcmp (owner, account->owner) != 0
                || strcmp (status, "open") != 0 || balance != account->balance
                || version != (int64_t) account->version) {
                if (wrong++ == 0)
                    snprintf (first_wrong, sizeof first_wrong,
                              "row %s: owner %s, status %s, balance %lld, version %lld; the log "
                              "makes %s",
                              key, owner, status, (long long) balance, (long long) version,
                              account ? "" : "no such account");
                if (wrong == 1 && account) {
                    size_t len = strlen (first_wrong);
                    snprintf (first_wrong + len, sizeof first_wrong - len,
                              "owner %s, balance %lld, version %llu", account->owner,
                              (long long) account->balance, (unsigned long long) account->version);
                }
            }
        }
        if (!zcq_value_get_str (reply, "next", after, sizeof after, NULL))
            break;
    }
    if (wrong || rows != (size_t) fold->opened)
        s_problem (problems,
                   "%s: the accounts view has %zu rows, %zu of them differing from the log, "
                   "which opens %lld accounts%s%s",
                   when, rows, wrong, (long long) fold->opened, wrong ? "; first: " : "",
                   first_wrong);
    const zcq_value_t *reply = s_query (client, "get", "view", "s:totals", "key", "s:bank",
                                        "min_position", min_position, "timeout_ms", "i:20000",
                                        NULL);
    const zcq_value_t *row = reply ? zcq_value_get (reply, "row") : NULL;
    int64_t accounts = zcq_value_get_int (row, "accounts", -1);
    int64_t balance = zcq_value_get_int (row, "balance", -1);
    int64_t events = zcq_value_get_int (row, "events", -1);
    if (accounts != fold->opened || balance != fold->balance || events != fold->events)
        s_problem (problems,
                   "%s: the totals view says %lld accounts, balance %lld, %lld events; the log "
                   "makes %lld, %lld, %lld (%s)",
                   when, (long long) accounts, (long long) balance, (long long) events,
                   (long long) fold->opened, (long long) fold->balance, (long long) fold->events,
                   reply ? zcq_test_code (reply) : "no reply");
}

//  Rebuild both views and wait until the new copies are live at the head.
static void
s_pipe_rebuild (zcq_client_t *client, uint64_t head, const char *when, s_problems_t *problems)
{
    const char *views[] = { "accounts", "totals" };
    for (size_t index = 0; index < 2; index++) {
        char view[64];
        snprintf (view, sizeof view, "s:%s", views[index]);
        const zcq_value_t *reply = s_query (client, "rebuild", "view", view, NULL);
        if (!reply || strcmp (zcq_test_code (reply), "ok") != 0) {
            s_problem (problems, "%s: `rebuild %s`: %s", when, views[index],
                       reply ? zcq_test_code (reply) : "no reply");
            return;
        }
    }
    int64_t deadline = zclock_mono () + S_REPLY_MS;
    while (true) {
        const zcq_value_t *reply = s_query (client, "views", NULL);
        const zcq_value_t *list = reply ? zcq_value_get (reply, "views") : NULL;
        size_t done = 0;
        for (size_t index = 0; index < zcq_value_size (list); index++) {
            const zcq_value_t *entry = zcq_value_at (list, index);
            uint64_t position = 0;
            zcq_value_uint (zcq_value_get (entry, "position"), &position);
            const zcq_value_t *name = zcq_value_get (entry, "name");
            if ((zcq_value_streq (name, views[0]) || zcq_value_streq (name, views[1]))
                && zcq_value_streq (zcq_value_get (entry, "status"), "live") && position >= head)
                done++;
        }
        if (done == 2)
            return;
        if (zclock_mono () >= deadline) {
            s_problem (problems, "%s: the views were not rebuilt within %d s", when,
                       S_REPLY_MS / 1000);
            return;
        }
        zclock_sleep (20); //  polling the rebuild, with a deadline
    }
}

//  The log holds exactly the commands answered `ok`, each at the position
//  its reply gave; in fsync mode a command answered `internal` may be there
//  too (a failed sync: outcome unknown). The views equal the fold of the
//  log, and so do rebuilt ones. Returns the head.
static uint64_t
s_pipe_check (s_pipe_t *pipe, zcq_client_t *client, const char *when, s_problems_t *problems,
              size_t *unknown_applied)
{
    s_fold_t fold;
    s_fold_init (&fold, pipe);
    s_log_t log;
    s_read_log_with (client, &log, s_fold_event, &fold);
    if (log.problem[0])
        s_problem (problems, "%s: %s", when, log.problem);
    bool unknown_allowed = strcmp (pipe->durability, "fsync") == 0;
    size_t missing = 0, misplaced = 0, present = 0, unanswered = 0, applied = 0;
    char missing_text[1024] = "", misplaced_text[1024] = "", present_text[1024] = "";
    for (size_t index = 0; index < pipe->count; index++) {
        s_sent_t *command = pipe->sent[index];
        const char *found = zhashx_lookup (log.ids, command->id);
        if (!command->replied)
            unanswered++;
        else if (command->ok && !found) {
            if (missing++ < S_PIPE_EXAMPLES) {
                char position[32];
                snprintf (position, sizeof position, "%llu",
                          (unsigned long long) command->position);
                const char *holder = zhashx_lookup (fold.positions, position);
                size_t len = strlen (missing_text);
                snprintf (missing_text + len, sizeof missing_text - len,
                          "\n    %s (ok%s at position %s, which holds %s)", command->id,
                          command->duplicate ? ", duplicate" : "", position,
                          holder ? holder : "nothing");
            }
        }
        else if (command->ok && strtoull (found, NULL, 10) != command->position) {
            if (misplaced++ < S_PIPE_EXAMPLES) {
                size_t len = strlen (misplaced_text);
                snprintf (misplaced_text + len, sizeof misplaced_text - len,
                          "\n    %s answered position %llu, in the log at %s", command->id,
                          (unsigned long long) command->position, found);
            }
        }
        else if (!command->ok && found) {
            if (unknown_allowed && strcmp (command->code, "internal") == 0)
                applied++;
            else if (present++ < S_PIPE_EXAMPLES) {
                size_t len = strlen (present_text);
                snprintf (present_text + len, sizeof present_text - len,
                          "\n    %s answered `%s`, in the log at position %s", command->id,
                          command->code, found);
            }
        }
    }
    if (unanswered)
        s_problem (problems, "%s: %zu commands never got a reply", when, unanswered);
    if (missing)
        s_problem (problems, "%s: %zu commands answered `ok` are not in the log (log head %llu):%s",
                   when, missing, (unsigned long long) log.head, missing_text);
    if (misplaced)
        s_problem (problems, "%s: %zu commands answered `ok` are in the log at another position:%s",
                   when, misplaced, misplaced_text);
    if (present)
        s_problem (
            problems, "%s: %zu commands not answered `ok` are in the log%s:%s", when, present,
            unknown_allowed ? " (other than `internal` ones, outcome unknown in fsync mode)" : "",
            present_text);
    if (fold.strangers)
        s_problem (problems, "%s: %zu events in the log are of commands never sent (first: %s)",
                   when, fold.strangers, fold.first_stranger);
    if (fold.mismatched)
        s_problem (problems, "%s: %zu events differ from what their command asked (first: %s)",
                   when, fold.mismatched, fold.first_mismatch);
    if (unknown_applied)
        *unknown_applied = applied;
    uint64_t head = log.head;
    s_log_release (&log);
    s_pipe_check_views (client, &fold, head, when, problems);
    char rebuilt[256];
    snprintf (rebuilt, sizeof rebuilt, "%s, views rebuilt", when);
    s_pipe_rebuild (client, head, rebuilt, problems);
    s_pipe_check_views (client, &fold, head, rebuilt, problems);
    s_fold_release (&fold);
    return head;
}

static void
s_pipelined_scenario (const char *workdir, const char *durability, const char *fault,
                      const char *mount_dir)
{
    s_problems_t problems = { .size = 0 };
    s_pipe_t pipe = { .durability = durability, .fault = fault, .mount = mount_dir };
    snprintf (pipe.control, sizeof pipe.control, "%s/fault", workdir);
    snprintf (pipe.tag, sizeof pipe.tag, "p%04lx", random () & 0xffff);
    pipe.by_id = zhashx_new ();
    pipe.doc = zcq_doc_new ();
    pipe.request = zcq_writer_new ();
    pipe.data = zcq_writer_new ();
    pipe.meta = zcq_writer_new ();
    const char *what = fault ? fault : "disk full";
    char data[4096];
    snprintf (data, sizeof data, "%s/data", mount_dir ? mount_dir : workdir);
    const char *const extra[] = { "--shards", S_PIPE_SHARDS, NULL };
    s_daemon_t daemon;
    assert_true (s_daemon_start_args (&daemon, workdir, data, durability,
                                      fault ? pipe.control : NULL, extra));
    for (int client = 0; client < S_PIPE_CLIENTS; client++) {
        pipe.clients[client] = zsock_new (ZMQ_DEALER);
        assert_non_null (pipe.clients[client]);
        zsock_set_sndhwm (pipe.clients[client], 0);
        zsock_set_rcvhwm (pipe.clients[client], 0);
        zsock_set_linger (pipe.clients[client], 0);
        assert_int_equal (zsock_connect (pipe.clients[client], "%s", daemon.command), 0);
    }
    s_pipe_run (&pipe, &daemon, &problems);
    print_message ("pipelined %s (%s): %zu commands sent, %zu ok, %zu internal, %zu other; "
                   "%zu failed during the fault; %.1f s before the fault, %.1f s of fault, "
                   "%.1f s to heal, %.1f s to drain\n",
                   durability, what, pipe.count, pipe.oks, pipe.internals, pipe.others,
                   pipe.failed_in_fault, pipe.phase_ms[S_PIPE_WARMING] / 1000.0,
                   pipe.phase_ms[S_PIPE_FAULTED] / 1000.0, pipe.phase_ms[S_PIPE_HEALING] / 1000.0,
                   pipe.phase_ms[S_PIPE_DRAINING] / 1000.0);
    for (int client = 0; client < S_PIPE_CLIENTS; client++)
        zsock_destroy (&pipe.clients[client]);

    size_t applied = 0;
    uint64_t head = 0, restarted_head = 0;
    if (daemon.running) {
        zcq_client_t *client = zcq_client_new (daemon.command, daemon.query);
        assert_non_null (client);
        head = s_pipe_check (&pipe, client, "after the fault cleared", &problems, &applied);
        zcq_client_destroy (&client);
    }
    int status = s_daemon_stop (&daemon, SIGTERM);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        char text[128];
        s_describe_status (status, text, sizeof text);
        s_problem (&problems, "zcqrsd stopped with %s after SIGTERM, expected exit 0", text);
    }
    if (fault)
        unlink (pipe.control);

    //  a restart on the same data: the same log, the same views
    assert_true (s_daemon_start_args (&daemon, workdir, data, durability, NULL, extra));
    zcq_client_t *client = zcq_client_new (daemon.command, daemon.query);
    assert_non_null (client);
    size_t applied_after = 0;
    restarted_head = s_pipe_check (&pipe, client, "after a restart", &problems, &applied_after);
    if (head && restarted_head != head)
        s_problem (&problems,
                   "after a restart the log head is %llu, was %llu before the stop (the node had "
                   "healed: its reopen had replayed whatever a failed sync left in the WAL)",
                   (unsigned long long) restarted_head, (unsigned long long) head);
    zcq_client_destroy (&client);
    status = s_daemon_stop (&daemon, SIGTERM);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        s_problem (&problems, "zcqrsd did not exit 0 after the final SIGTERM");
    print_message ("pipelined %s (%s): log head %llu; %zu commands answered `internal` were "
                   "applied after all (outcome unknown)\n",
                   durability, what, (unsigned long long) restarted_head, applied_after);
    for (size_t index = 0; index < pipe.count; index++)
        free (pipe.sent[index]);
    free (pipe.sent);
    zhashx_destroy (&pipe.by_id);
    zcq_doc_destroy (&pipe.doc);
    zcq_writer_destroy (&pipe.request);
    zcq_writer_destroy (&pipe.data);
    zcq_writer_destroy (&pipe.meta);
    if (problems.size)
        fail_msg ("pipelined load, storage fault (%s, durability %s):\n%s", what, durability,
                  problems.text);
}

//  WAL writes (wal mode) or WAL syncs (fsync mode) fail for a while.
static void
s_pipelined_shim (void **state, const char *durability)
{
    s_dir_fixture_t *fixture = *state;
    if (!s_shim) {
        print_message ("pipelined %s: skipped (ZCQ_FAULT_SHIM is not set)\n", durability);
        skip ();
    }
    s_pipelined_scenario (fixture->dir, durability,
                          strcmp (durability, "wal") == 0 ? "write 5 wal" : "sync 5 wal", NULL);
}

//  A real full disk: a 32 MiB tmpfs filled by a filler file, then grown.
static void
s_pipelined_disk_full (void **state, const char *durability)
{
    s_dir_fixture_t *fixture = *state;
    char mount_dir[4096];
    snprintf (mount_dir, sizeof mount_dir, "%s/tmpfs", fixture->dir);
    assert_int_equal (zsys_dir_create ("%s", mount_dir), 0);
    if (!s_mount_tmpfs (mount_dir, "size=32m", 0)) {
        print_message ("pipelined %s, disk full: skipped (needs root and tmpfs)\n", durability);
        skip ();
    }
    s_pipelined_scenario (fixture->dir, durability, NULL, mount_dir);
    umount2 (mount_dir, MNT_DETACH);
}

static void
test_pipelined_wal_write_error (void **state)
{
    s_pipelined_shim (state, "wal");
}

static void
test_pipelined_wal_disk_full (void **state)
{
    s_pipelined_disk_full (state, "wal");
}

static void
test_pipelined_fsync_sync_error (void **state)
{
    s_pipelined_shim (state, "fsync");
}

static void
test_pipelined_fsync_disk_full (void **state)
{
    s_pipelined_disk_full (state, "fsync");
}

//  --------------------------------------------------------------------------
//  Group readonly: a data dir zcqrsd cannot write

//  zcqrsd must exit 2 with a message on stderr that contains `expect`.
static void
s_expect_refusal (const char *workdir, const char *data, const char *expect)
{
    s_daemon_t daemon;
    if (s_daemon_start (&daemon, workdir, data, "wal", NULL)) {
        s_daemon_stop (&daemon, SIGTERM);
        fail_msg ("zcqrsd started on %s, which it cannot write", data);
    }
    char *err = s_read_file (daemon.err_path);
    char status[128];
    s_describe_status (daemon.status, status, sizeof status);
    print_message ("readonly %s: %s: %s", data, status, s_tail (err, 1));
    if (!WIFEXITED (daemon.status) || WEXITSTATUS (daemon.status) != 2)
        fail_msg ("zcqrsd on %s: %s, expected exit code 2; stderr:\n%s", data, status, err);
    if (!strstr (err, "cannot start") || !strstr (err, expect))
        fail_msg ("zcqrsd on %s: the message does not say what is wrong (want '%s'):\n%s", data,
                  expect, err);
    free (err);
}

//  A regular file where the data dir should be.
static void
test_readonly_file_in_place_of_dir (void **state)
{
    s_dir_fixture_t *fixture = *state;
    char data[4096];
    snprintf (data, sizeof data, "%s/not-a-dir", fixture->dir);
    s_write_file (data, "a file, not a directory\n");
    s_expect_refusal (fixture->dir, data, data);
}

//  A dir without write permission (meaningful when not root: root's
//  writes ignore the mode).
static void
test_readonly_chmod (void **state)
{
    s_dir_fixture_t *fixture = *state;
    if (s_is_root ()) {
        print_message ("readonly chmod: skipped as root (a mode does not stop root's writes; "
                       "the read-only mount tests cover it)\n");
        skip ();
    }
    char data[4096];
    snprintf (data, sizeof data, "%s/ro", fixture->dir);
    assert_int_equal (zsys_dir_create ("%s", data), 0);
    assert_int_equal (chmod (data, 0500), 0);
    s_expect_refusal (fixture->dir, data, data);
    chmod (data, 0700);
}

//  An empty read-only file system as the data dir.
static void
test_readonly_mount_empty (void **state)
{
    s_dir_fixture_t *fixture = *state;
    char mount_dir[4096];
    snprintf (mount_dir, sizeof mount_dir, "%s/ro-empty", fixture->dir);
    assert_int_equal (zsys_dir_create ("%s", mount_dir), 0);
    if (!s_mount_tmpfs (mount_dir, "size=1m", MS_RDONLY))
        skip ();
    s_expect_refusal (fixture->dir, mount_dir, "Read-only file system");
    umount2 (mount_dir, MNT_DETACH);
}

//  A data dir holding a node's data, remounted read-only: refused with a
//  message; once writable again the node starts with everything.
static void
test_readonly_mount_with_data (void **state)
{
    s_dir_fixture_t *fixture = *state;
    char mount_dir[4096], data[8192];
    snprintf (mount_dir, sizeof mount_dir, "%s/ro-data", fixture->dir);
    snprintf (data, sizeof data, "%s/data", mount_dir);
    assert_int_equal (zsys_dir_create ("%s", mount_dir), 0);
    if (!s_mount_tmpfs (mount_dir, "size=16m", 0))
        skip ();
    s_daemon_t daemon;
    assert_true (s_daemon_start (&daemon, fixture->dir, data, "wal", NULL));
    zcq_client_t *client = zcq_client_new (daemon.command, daemon.query);
    assert_string_equal (s_command (client, "ro-open", "open", "a", 0).code, "ok");
    assert_string_equal (s_command (client, "ro-dep", "deposit", "a", 5).code, "ok");
    zcq_client_destroy (&client);
    assert_int_equal (s_daemon_stop (&daemon, SIGTERM), 0);

    assert_int_equal (mount (NULL, mount_dir, NULL, MS_REMOUNT | MS_RDONLY, "size=16m"), 0);
    s_expect_refusal (fixture->dir, data, "Read-only file system");
    assert_int_equal (mount (NULL, mount_dir, NULL, MS_REMOUNT, "size=16m"), 0);

    assert_true (s_daemon_start (&daemon, fixture->dir, data, "wal", NULL));
    client = zcq_client_new (daemon.command, daemon.query);
    s_log_t log;
    s_read_log (client, &log);
    assert_string_equal (log.problem, "");
    assert_int_equal (log.head, 2);
    s_log_release (&log);
    zcq_client_destroy (&client);
    assert_int_equal (s_daemon_stop (&daemon, SIGTERM), 0);
    umount2 (mount_dir, MNT_DETACH);
}

static int
s_readonly_teardown (void **state)
{
    s_dir_fixture_t *fixture = *state;
    char mount_dir[4096];
    snprintf (mount_dir, sizeof mount_dir, "%s/ro-empty", fixture->dir);
    umount2 (mount_dir, MNT_DETACH);
    snprintf (mount_dir, sizeof mount_dir, "%s/ro-data", fixture->dir);
    umount2 (mount_dir, MNT_DETACH);
    return s_dir_teardown (state);
}

//  --------------------------------------------------------------------------
//  Group corrupt: a damaged data dir

#define S_PRISTINE_HEAD 401 //  1 open + 300 deposits + 100 deposits

typedef struct {
    char *dir;
    char pristine[4096];
    int serial;
} s_corrupt_fixture_t;

//  A good data dir as crashes leave it: 301 commands, SIGKILL, a start
//  (RocksDB recovers the WAL and flushes it into .sst files, adding an edit
//  to the MANIFEST), 100 more, SIGKILL: those 100 acknowledged commands are
//  only in the WAL. So it has .sst files, a MANIFEST with edits after its
//  snapshot, and a WAL with acknowledged data.
static int
s_corrupt_setup (void **state)
{
    s_corrupt_fixture_t *fixture = calloc (1, sizeof *fixture);
    fixture->dir = zcq_test_dir ("faults-corrupt");
    snprintf (fixture->pristine, sizeof fixture->pristine, "%s/pristine", fixture->dir);
    int number = 0;
    for (int run = 0; run < 2; run++) {
        s_daemon_t daemon;
        if (!s_daemon_start (&daemon, fixture->dir, fixture->pristine, "wal", NULL))
            return -1;
        zcq_client_t *client = zcq_client_new (daemon.command, daemon.query);
        if (run == 0 && !s_command (client, "open-a", "open", "a", 0).ok)
            return -1;
        char id[32];
        for (int index = 0; index < (run == 0 ? 300 : 100); index++) {
            snprintf (id, sizeof id, "dep-%d", ++number);
            if (!s_command (client, id, "deposit", "a", 1).ok)
                return -1;
        }
        zcq_client_destroy (&client);
        s_daemon_stop (&daemon, SIGKILL);
    }
    char *wal = s_find_file (fixture->pristine, "", ".log", true);
    struct stat info;
    if (!wal || stat (wal, &info) != 0 || info.st_size < 4096) {
        print_message ("corrupt: the pristine dir has no WAL with data (%s)\n", wal ? wal : "none");
        free (wal);
        return -1;
    }
    free (wal);
    *state = fixture;
    return 0;
}

static int
s_corrupt_teardown (void **state)
{
    s_corrupt_fixture_t *fixture = *state;
    zcq_test_rmdir (&fixture->dir);
    free (fixture);
    return 0;
}

typedef void (s_damage_fn) (const char *data);

//  Damage a copy of the pristine dir; zcqrsd must refuse it (non-zero
//  exit, a message naming the problem) or start with every event intact.
//  Returns what is wrong ("" when nothing is), in verdict.
static void
s_corrupt_run (s_corrupt_fixture_t *fixture, const char *name, s_damage_fn *damage, char *verdict,
               size_t size)
{
    verdict[0] = 0;
    char data[4096];
    snprintf (data, sizeof data, "%s/%s", fixture->dir, name);
    s_copy_dir (fixture->pristine, data);
    damage (data);
    s_daemon_t daemon;
    if (!s_daemon_start (&daemon, fixture->dir, data, "wal", NULL)) {
        char *err = s_read_file (daemon.err_path);
        char status[128];
        s_describe_status (daemon.status, status, sizeof status);
        print_message ("corrupt %s: refused, %s: %s", name, status, s_tail (err, 1));
        if (!WIFEXITED (daemon.status) || WEXITSTATUS (daemon.status) == 0)
            snprintf (verdict, size,
                      "corrupt %s: zcqrsd ended with %s, expected a non-zero "
                      "exit code",
                      name, status);
        else if (!strstr (err, "cannot start"))
            snprintf (verdict, size, "corrupt %s: no clear message on stderr:\n%s", name, err);
        free (err);
        return;
    }
    //  it started: then nothing may be missing
    zcq_client_t *client = zcq_client_new (daemon.command, daemon.query);
    s_log_t log;
    s_read_log (client, &log);
    char head[32];
    snprintf (head, sizeof head, "i:%d", S_PRISTINE_HEAD);
    const zcq_value_t *row = s_query (client, "get", "view", "s:totals", "key", "s:bank",
                                      "min_position", head, "timeout_ms", "i:5000", NULL);
    int64_t events = row ? zcq_value_get_int (zcq_value_get (row, "row"), "events", -1) : -1;
    char view[160];
    snprintf (view, sizeof view, "%s", row ? zcq_test_code (row) : "no reply");
    bool intact = !log.problem[0] && log.head == S_PRISTINE_HEAD && log.events == S_PRISTINE_HEAD
               && events == S_PRISTINE_HEAD;
    bool unreadable = !log.answered || strstr (log.problem, "failed");
    char problem[600];
    snprintf (problem, sizeof problem, "%s", log.problem);
    uint64_t log_head = log.head, log_count = log.events;
    s_log_release (&log);
    zcq_client_destroy (&client);
    s_daemon_stop (&daemon, SIGTERM);
    print_message ("corrupt %s: zcqrsd started; head %llu, %llu events readable, totals view "
                   "%s (events %lld)%s%s\n",
                   name, (unsigned long long) log_head, (unsigned long long) log_count, view,
                   (long long) events, problem[0] ? "; " : "", problem);
    if (!intact)
        snprintf (verdict, size,
                  "corrupt %s: zcqrsd started (no error, ready for commands) on a damaged data "
                  "dir %s: log head %llu, %llu events readable%s%s, totals view %s with %lld "
                  "events; the good dir had %d events",
                  name, unreadable ? "whose log it cannot read" : "and lost data silently",
                  (unsigned long long) log_head, (unsigned long long) log_count,
                  problem[0] ? ", " : "", problem, view, (long long) events, S_PRISTINE_HEAD);
}

static void
s_corrupt_case (s_corrupt_fixture_t *fixture, const char *name, s_damage_fn *damage)
{
    char verdict[2048];
    s_corrupt_run (fixture, name, damage, verdict, sizeof verdict);
    if (verdict[0])
        fail_msg ("%s", verdict);
}

static void
s_damage_current_garbled (const char *data)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/CURRENT", data);
    s_write_file (path, "garbage\n");
}

static void
s_damage_current_missing (const char *data)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/CURRENT", data);
    assert_int_equal (unlink (path), 0);
}

static void
s_damage_manifest_garbled (const char *data)
{
    char *path = s_find_file (data, "MANIFEST-", "", false);
    assert_non_null (path);
    s_garble (path, 0.5, 16);
    free (path);
}

static double s_cut;

static void
s_damage_manifest_truncated (const char *data)
{
    char *path = s_find_file (data, "MANIFEST-", "", false);
    assert_non_null (path);
    s_truncate (path, s_cut);
    free (path);
}

static void
s_damage_manifest_missing (const char *data)
{
    char *path = s_find_file (data, "MANIFEST-", "", false);
    assert_non_null (path);
    assert_int_equal (unlink (path), 0);
    free (path);
}

//  The biggest .sst holds the log (event bodies); 30% in is a data block.
static void
s_damage_sst_garbled (const char *data)
{
    char *path = s_find_file (data, "", ".sst", true);
    assert_non_null (path);
    s_garble (path, 0.3, 16);
    free (path);
}

static void
s_damage_sst_truncated (const char *data)
{
    char *path = s_find_file (data, "", ".sst", true);
    assert_non_null (path);
    s_truncate (path, 0.5);
    free (path);
}

static void
s_damage_sst_missing (const char *data)
{
    char *path = s_find_file (data, "", ".sst", true);
    assert_non_null (path);
    assert_int_equal (unlink (path), 0);
    free (path);
}

//  Bytes of a record in the middle of the WAL (acknowledged commands
//  follow it).
static void
s_damage_wal_garbled (const char *data)
{
    char *path = s_find_file (data, "", ".log", true);
    assert_non_null (path);
    s_garble (path, 0.3, 8);
    free (path);
}

#define S_CORRUPT_TEST(name)                             \
    static void test_corrupt_##name (void **state)       \
    {                                                    \
        s_corrupt_case (*state, #name, s_damage_##name); \
    }

S_CORRUPT_TEST (current_garbled)
S_CORRUPT_TEST (current_missing)
S_CORRUPT_TEST (manifest_garbled)

//  The MANIFEST cut at 20%, 30%, ... 90%: where the cut leaves the
//  snapshot at its start but drops later edits (the .sst files a crash
//  recovery flushed), RocksDB may open a DB without those files.
static void
test_corrupt_manifest_truncated (void **state)
{
    s_problems_t problems = { .size = 0 };
    for (int percent = 20; percent <= 90; percent += 10) {
        char name[64], verdict[2048];
        snprintf (name, sizeof name, "manifest_truncated_%d", percent);
        s_cut = percent / 100.0;
        s_corrupt_run (*state, name, s_damage_manifest_truncated, verdict, sizeof verdict);
        if (verdict[0])
            s_problem (&problems, "%s", verdict);
    }
    if (problems.size)
        fail_msg ("%s", problems.text);
}
S_CORRUPT_TEST (manifest_missing)
S_CORRUPT_TEST (sst_garbled)
S_CORRUPT_TEST (sst_truncated)
S_CORRUPT_TEST (sst_missing)
S_CORRUPT_TEST (wal_garbled)

//  --------------------------------------------------------------------------

int
main (int argc, char *argv[])
{
    signal (SIGPIPE, SIG_IGN);
    srandom ((unsigned) (getpid () ^ zclock_usecs ()));
    snprintf (s_endpoint, sizeof s_endpoint, "tcp://127.%ld.%ld.%ld:*", 1 + random () % 254,
              random () % 256, 1 + random () % 254);
    s_zcqrsd = getenv ("ZCQRSD");
    s_shim = getenv ("ZCQ_FAULT_SHIM");
    if (s_shim && access (s_shim, R_OK) != 0)
        s_shim = NULL;
    const char *group = argc > 1 ? argv[1] : "all";
    bool all = strcmp (group, "all") == 0;
    int failed = 0;
    bool known = false;

    if (all || strcmp (group, "store") == 0) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown (test_store_wal_write_error, s_store_setup,
                                             s_store_teardown),
            cmocka_unit_test_setup_teardown (test_store_wal_sync_error, s_store_setup,
                                             s_store_teardown),
        };
        failed += cmocka_run_group_tests_name ("faults_store", tests, NULL, NULL);
    }
    if (!all && !known && !s_zcqrsd) {
        fprintf (stderr, "test_faults: set ZCQRSD to the zcqrsd binary\n");
        return 2;
    }
    if ((all || strcmp (group, "node") == 0) && s_zcqrsd) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown (test_node_wal_write_error, s_dir_setup,
                                             s_dir_teardown),
            cmocka_unit_test_setup_teardown (test_node_wal_sync_error, s_dir_setup, s_dir_teardown),
        };
        failed += cmocka_run_group_tests_name ("faults_node", tests, NULL, NULL);
    }
    if ((all || strcmp (group, "disk_full") == 0) && s_zcqrsd) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown (test_node_disk_full, s_dir_setup,
                                             s_disk_full_teardown),
        };
        failed += cmocka_run_group_tests_name ("faults_disk_full", tests, NULL, NULL);
    }
    if ((all || strcmp (group, "pipelined_wal") == 0) && s_zcqrsd) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown (test_pipelined_wal_write_error, s_dir_setup,
                                             s_dir_teardown),
            cmocka_unit_test_setup_teardown (test_pipelined_wal_disk_full, s_dir_setup,
                                             s_disk_full_teardown),
        };
        failed += cmocka_run_group_tests_name ("faults_pipelined_wal", tests, NULL, NULL);
    }
    if ((all || strcmp (group, "pipelined_fsync") == 0) && s_zcqrsd) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown (test_pipelined_fsync_sync_error, s_dir_setup,
                                             s_dir_teardown),
            cmocka_unit_test_setup_teardown (test_pipelined_fsync_disk_full, s_dir_setup,
                                             s_disk_full_teardown),
        };
        failed += cmocka_run_group_tests_name ("faults_pipelined_fsync", tests, NULL, NULL);
    }
    if ((all || strcmp (group, "readonly") == 0) && s_zcqrsd) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown (test_readonly_file_in_place_of_dir, s_dir_setup,
                                             s_readonly_teardown),
            cmocka_unit_test_setup_teardown (test_readonly_chmod, s_dir_setup, s_readonly_teardown),
            cmocka_unit_test_setup_teardown (test_readonly_mount_empty, s_dir_setup,
                                             s_readonly_teardown),
            cmocka_unit_test_setup_teardown (test_readonly_mount_with_data, s_dir_setup,
                                             s_readonly_teardown),
        };
        failed += cmocka_run_group_tests_name ("faults_readonly", tests, NULL, NULL);
    }
    if ((all || strcmp (group, "corrupt") == 0) && s_zcqrsd) {
        known = true;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test (test_corrupt_current_garbled),
            cmocka_unit_test (test_corrupt_current_missing),
            cmocka_unit_test (test_corrupt_manifest_garbled),
            cmocka_unit_test (test_corrupt_manifest_truncated),
            cmocka_unit_test (test_corrupt_manifest_missing),
            cmocka_unit_test (test_corrupt_sst_garbled),
            cmocka_unit_test (test_corrupt_sst_truncated),
            cmocka_unit_test (test_corrupt_sst_missing),
            cmocka_unit_test (test_corrupt_wal_garbled),
        };
        failed += cmocka_run_group_tests_name ("faults_corrupt", tests, s_corrupt_setup,
                                               s_corrupt_teardown);
    }
    if (!known) {
        fprintf (stderr,
                 "test_faults: unknown group '%s' (store, node, disk_full, pipelined_wal, "
                 "pipelined_fsync, readonly, corrupt, all)%s\n",
                 group, s_zcqrsd ? "" : "; ZCQRSD is not set");
        return 2;
    }
    return failed ? 1 : 0;
}
