/*  fuzz_request: the real request paths of a node, end to end.

    LLVMFuzzerInitialize starts one in-process bank node with inproc
    endpoints and a fresh data directory. Every input is then:
    1.  sent as a command body on one DEALER ([empty][input]), drives the
        command router, the shards and the log writer;
    2.  sent as a query body on another DEALER, drives the query router
        and the view hosts (skipped only when it asks to wait on
        min_position for longer than 2 s, which the node is entitled to do);
    3.  when the input is one valid MessagePack value, sent once more as
        the `data` of a well-formed bank command (open, deposit, withdraw
        or close on one of a few accounts), drives the domain's decide with
        a hostile payload.
    Each request must be answered within 10 s with a map that has `ok`; a
    failure has a known error code and a message; a body that is not a
    valid map is `invalid`; a command's string id and a query's rid come
    back; `internal` never happens.
*/
#include "fuzz_common.h"
#include "zcq_internal.h"
#include "bank.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define S_TIMEOUT_MS 10000
#define S_LIMIT      (1024 * 1024)

static zcq_node_t *s_node;
static zsock_t *s_commands, *s_queries;
static zcq_doc_t *s_request, *s_reply;
static zcq_writer_t *s_writer;
static zmsg_t *s_answer;
static char s_dir[64];
static uint64_t s_round;
static uint64_t s_sent[2]; //  requests sent: commands, queries
static const zcq_limits_t s_limits = { .max_bytes = S_LIMIT, .max_depth = 32 };

static void
s_cleanup (void)
{
    zmsg_destroy (&s_answer);
    zsock_destroy (&s_commands);
    zsock_destroy (&s_queries);
    zcq_node_destroy (&s_node);
    zcq_doc_destroy (&s_request);
    zcq_doc_destroy (&s_reply);
    zcq_writer_destroy (&s_writer);
    if (s_dir[0]) {
        char command[128];
        snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
        if (system (command) != 0)
            fprintf (stderr, "fuzz_request: could not remove %s\n", s_dir);
    }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    zsys_handler_set (NULL);
    zsys_set_logstream (NULL);
    zsys_set_logsystem (false);
    snprintf (s_dir, sizeof s_dir, "/tmp/zcq-fuzz-request-XXXXXX");
    if (!mkdtemp (s_dir)) {
        perror ("mkdtemp");
        exit (1);
    }
    zcq_config_t *config = zcq_config_new ();
    char error[256];
    char endpoint[64];
    const char *settings[][2] = {
        { "data", s_dir },   { "shards", "2" },  { "heartbeat-ms", "100" },
        { "command", NULL }, { "events", NULL }, { "query", NULL },
    };
    for (size_t index = 0; index < sizeof settings / sizeof settings[0]; index++) {
        const char *value = settings[index][1];
        if (!value) {
            snprintf (endpoint, sizeof endpoint, "inproc://zcq-fuzz-%s-%d", settings[index][0],
                      (int) getpid ());
            value = endpoint;
        }
        if (zcq_config_set (config, settings[index][0], value, error, sizeof error) != ZCQ_OK) {
            fprintf (stderr, "fuzz_request: %s\n", error);
            exit (1);
        }
    }
    //  The node's threads inherit this mask: libFuzzer's -timeout alarm
    //  (SIGALRM) then lands on this thread only. A handled signal that lands
    //  on an actor's zmq_poll ends that actor (reported, tests/hostile/
    //  test_signals.c); this target is about request bytes, not signals.
    sigset_t alarm, previous;
    sigemptyset (&alarm);
    sigaddset (&alarm, SIGALRM);
    pthread_sigmask (SIG_BLOCK, &alarm, &previous);
    zcq_err_t started = zcq_node_start (&s_node, config, zcq_bank_domain (), error, sizeof error);
    s_commands = zsock_new_dealer (zcq_node_endpoint (s_node, ZCQ_ENDPOINT_COMMAND));
    s_queries = zsock_new_dealer (zcq_node_endpoint (s_node, ZCQ_ENDPOINT_QUERY));
    pthread_sigmask (SIG_SETMASK, &previous, NULL);
    if (started != ZCQ_OK) {
        fprintf (stderr, "fuzz_request: node did not start: %s\n", error);
        exit (1);
    }
    zcq_config_destroy (&config);
    if (!s_commands || !s_queries) {
        fprintf (stderr, "fuzz_request: cannot connect to the node\n");
        exit (1);
    }
    zsock_set_linger (s_commands, 0);
    zsock_set_linger (s_queries, 0);
    s_request = zcq_doc_new ();
    s_reply = zcq_doc_new ();
    s_writer = zcq_writer_new ();
    atexit (s_cleanup);
    return 0;
}

//  Every thread of this process: name, state, what it waits in (for
//  diagnostics of a slow reply; reads /proc only, disturbs nothing).
static void
s_print_threads (void)
{
    DIR *tasks = opendir ("/proc/self/task");
    struct dirent *entry;
    while (tasks && (entry = readdir (tasks))) {
        if (entry->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "?", stat[512] = "", wchan[64] = "?", syscall_line[128] = "?";
        const char *names[] = { "comm", "stat", "wchan", "syscall" };
        char *buffers[] = { comm, stat, wchan, syscall_line };
        size_t sizes[] = { sizeof comm, sizeof stat, sizeof wchan, sizeof syscall_line };
        for (int index = 0; index < 4; index++) {
            snprintf (path, sizeof path, "/proc/self/task/%s/%s", entry->d_name, names[index]);
            FILE *file = fopen (path, "r");
            if (file) {
                if (!fgets (buffers[index], (int) sizes[index], file))
                    buffers[index][0] = 0;
                fclose (file);
            }
            buffers[index][strcspn (buffers[index], "\n")] = 0;
        }
        const char *state = strrchr (stat, ')');
        char *space = strchr (syscall_line, ' ');
        if (space)
            *space = 0;
        fprintf (stderr, "  thread %s %-16s state %c wchan %-20s syscall %s\n", entry->d_name, comm,
                 state && state[1] ? state[2] : '?', wchan, syscall_line);
    }
    if (tasks)
        closedir (tasks);
}

//  What the node says about itself, on a fresh socket (for diagnostics).
static void
s_print_stats (void)
{
    zsock_t *socket = zsock_new_dealer (zcq_node_endpoint (s_node, ZCQ_ENDPOINT_QUERY));
    zsock_set_linger (socket, 0);
    zstr_sendm (socket, "");
    zstr_send (socket, "\x81\xa2op\xa5stats");
    zmq_pollitem_t item = { zsock_resolve (socket), 0, ZMQ_POLLIN, 0 };
    zmsg_t *reply = zmq_poll (&item, 1, 5000) == 1 ? zmsg_recv (socket) : NULL;
    zcq_doc_t *doc = zcq_doc_new ();
    const zcq_value_t *stats = NULL;
    if (reply
        && zcq_doc_decode (doc, zframe_data (zmsg_last (reply)), zframe_size (zmsg_last (reply)),
                           NULL)
               == ZCQ_OK)
        stats = zcq_value_get (zcq_doc_root (doc), "stats");
    fprintf (stderr, "node stats:");
    for (size_t index = 0; index < zcq_value_size (stats); index++) {
        char name[64];
        int64_t value;
        if (zcq_value_copy_str (zcq_value_key_at (stats, index), name, sizeof name)
            && zcq_value_int (zcq_value_val_at (stats, index), &value))
            fprintf (stderr, " %s=%lld", name, (long long) value);
    }
    fprintf (stderr, "%s\n", stats ? "" : " (no answer to stats in 5 s)");
    zcq_doc_destroy (&doc);
    zmsg_destroy (&reply);
    zsock_destroy (&socket);
}

//  Wait up to timeout_ms for input on socket. A signal (libFuzzer's -timeout
//  alarm lands on this thread) interrupts zmq_poll with EINTR: wait on.
static bool
s_wait (zsock_t *socket, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    zmq_pollitem_t item = { zsock_resolve (socket), 0, ZMQ_POLLIN, 0 };
    while (true) {
        int64_t left = deadline - zclock_mono ();
        int rc = zmq_poll (&item, 1, left > 0 ? (long) left : 0);
        if (rc == 1)
            return true;
        if (rc == 0 || (rc < 0 && zmq_errno () != EINTR) || left <= 0)
            return false;
    }
}

//  Send [empty][body] and wait for the reply; returns its decoded root.
//  A reply later than S_TIMEOUT_MS is reported; none in 3 times that is a
//  failure (a loaded machine can be slow, a stuck node never answers).
static const zcq_value_t *
s_call (zsock_t *socket, const void *body, size_t size, const char *what)
{
    zmsg_t *message = zmsg_new ();
    zmsg_addmem (message, "", 0);
    zmsg_addmem (message, body, size);
    FUZZ_ASSERT (zmsg_send (&message, socket) == 0, "cannot send the %s", what);
    s_sent[socket == s_queries]++;
    if (!s_wait (socket, S_TIMEOUT_MS)) {
        int64_t start = zclock_mono ();
        fprintf (stderr,
                 "SLOW: no reply to the %s (round %llu) in %d ms; the socket has%s input; "
                 "sent so far: %llu commands, %llu queries; waiting on\n",
                 what, (unsigned long long) s_round, S_TIMEOUT_MS,
                 (zsock_events (socket) & ZMQ_POLLIN) ? "" : " no", (unsigned long long) s_sent[0],
                 (unsigned long long) s_sent[1]);
        s_print_threads ();
        s_print_stats ();
        bool late = s_wait (socket, 2 * S_TIMEOUT_MS);
        if (!late) {
            s_print_threads ();
            s_print_stats ();
        }
        FUZZ_ASSERT (late, "no reply to the %s in %d ms", what, 3 * S_TIMEOUT_MS);
        fprintf (stderr, "SLOW: the %s reply came after %lld ms\n", what,
                 (long long) (S_TIMEOUT_MS + zclock_mono () - start));
    }
    zmsg_destroy (&s_answer);
    s_answer = zmsg_recv (socket);
    FUZZ_ASSERT (s_answer && zmsg_size (s_answer) == 2, "the %s reply has %zu frames", what,
                 s_answer ? zmsg_size (s_answer) : 0);
    FUZZ_ASSERT (zframe_size (zmsg_first (s_answer)) == 0, "the %s reply lost its envelope", what);
    zframe_t *frame = zmsg_last (s_answer);
    FUZZ_ASSERT (zcq_doc_decode (s_reply, zframe_data (frame), zframe_size (frame), NULL) == ZCQ_OK,
                 "the %s reply does not decode: %s", what, zcq_doc_error (s_reply));
    const zcq_value_t *reply = zcq_doc_root (s_reply);
    FUZZ_ASSERT (zcq_value_type (reply) == ZCQ_TYPE_MAP, "the %s reply is not a map", what);
    bool ok;
    FUZZ_ASSERT (zcq_value_bool (zcq_value_get (reply, "ok"), &ok), "the %s reply has no ok", what);
    if (!ok) {
        char code[32];
        const char *error = zcq_value_get_str (reply, "error", code, sizeof code, NULL);
        FUZZ_ASSERT (error, "a failed %s reply without error", what);
        zcq_err_t err = zcq_err_parse (error);
        FUZZ_ASSERT (strcmp (zcq_err_code (err), error) == 0, "unknown error code '%s'", error);
        FUZZ_ASSERT (err != ZCQ_INTERNAL, "the %s got internal: %s", what,
                     zcq_value_get_str (reply, "message", (char[200]) { 0 }, 200, "?"));
        const char *text;
        size_t len;
        FUZZ_ASSERT (zcq_value_str (zcq_value_get (reply, "message"), &text, &len) && len > 0,
                     "a failed %s reply without message", what);
    }
    return reply;
}

static const char *
s_code (const zcq_value_t *reply)
{
    static char code[32];
    bool ok = false;
    zcq_value_bool (zcq_value_get (reply, "ok"), &ok);
    return ok ? "ok" : zcq_value_get_str (reply, "error", code, sizeof code, "?");
}

static bool
s_has_nan (const zcq_value_t *value)
{
    double number;
    if (zcq_value_type (value) == ZCQ_TYPE_FLOAT && zcq_value_float (value, &number))
        return isnan (number);
    for (size_t index = 0; index < zcq_value_size (value); index++)
        if (s_has_nan (zcq_value_at (value, index)) || s_has_nan (zcq_value_key_at (value, index))
            || s_has_nan (zcq_value_val_at (value, index)))
            return true;
    return false;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_round++;
    //  what the node will make of the body
    bool valid = zcq_doc_decode (s_request, data, size, &s_limits) == ZCQ_OK;
    const zcq_value_t *request = valid ? zcq_doc_root (s_request) : NULL;
    bool is_map = zcq_value_type (request) == ZCQ_TYPE_MAP;

    //  1. as a command
    const zcq_value_t *reply = s_call (s_commands, data, size, "command");
    if (!is_map)
        FUZZ_ASSERT (strcmp (s_code (reply), "invalid") == 0,
                     "a command body that is not a valid map got %s", s_code (reply));
    else {
        const char *id;
        size_t id_len;
        if (zcq_value_str (zcq_value_get (request, "id"), &id, &id_len) && id_len >= 1
            && id_len <= ZCQ_ID_MAX && !memchr (id, 0, id_len))
            FUZZ_ASSERT (
                zcq_value_equal (zcq_value_get (reply, "id"), zcq_value_get (request, "id")),
                "the command reply does not carry its id");
    }

    //  2. as a query, unless it may legitimately wait for long
    int64_t timeout_ms = 0;
    bool long_wait = is_map && zcq_value_get (request, "min_position")
                  && zcq_value_int (zcq_value_get (request, "timeout_ms"), &timeout_ms)
                  && timeout_ms > 2000;
    if (!long_wait) {
        reply = s_call (s_queries, data, size, "query");
        if (!is_map)
            FUZZ_ASSERT (strcmp (s_code (reply), "invalid") == 0,
                         "a query body that is not a valid map got %s", s_code (reply));
        else {
            const zcq_value_t *rid = zcq_value_get (request, "rid");
            if (rid && !s_has_nan (rid))
                FUZZ_ASSERT (zcq_value_equal (zcq_value_get (reply, "rid"), rid),
                             "the query reply does not carry its rid");
        }
    }

    //  3. as the payload of a well-formed bank command
    if (valid && size <= 4096) {
        static const char *types[] = { "open", "deposit", "withdraw", "close" };
        uint32_t hash = 2166136261u;
        for (size_t index = 0; index < size; index++)
            hash = (hash ^ data[index]) * 16777619u;
        char id[32], key[16];
        snprintf (id, sizeof id, "fz-%d-%llu", (int) getpid (), (unsigned long long) s_round);
        snprintf (key, sizeof key, "a%u", hash % 8);
        zcq_writer_reset (s_writer);
        zcq_command_req_t command = {
            .id = id,
            .aggregate = "account",
            .key = key,
            .type = types[(hash >> 8) % 4],
            .data = data,
            .data_len = size,
        };
        zcq_command_encode (s_writer, &command);
        reply = s_call (s_commands, zcq_writer_data (s_writer), zcq_writer_size (s_writer),
                        "bank command");
        const char *code = s_code (reply);
        FUZZ_ASSERT (strcmp (code, "ok") == 0 || strcmp (code, "invalid") == 0
                         || strcmp (code, "rejected") == 0,
                     "a well-formed bank command got %s", code);
    }
    return 0;
}
