/*  test_signals: a signal the process handles must not stop a node.

    A program that embeds a node (the Python bindings, a service with a
    SIGCHLD or SIGALRM handler, a profiler) gets signals on any thread that
    does not block them. A handled signal interrupts a blocking zmq_poll
    with EINTR; an actor must poll again, not leave its loop (which would
    silently stop that part of the node: no more commands, queries or
    events).

    The test starts a bank node in-process, installs a SIGUSR1 handler, and
    sends SIGUSR1 to every other thread a few times; then every endpoint
    must still work: a command, a read-your-writes query, a live event.
*/
#include "testutil.h"
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int s_handled;

static void
s_handler (int signal_number)
{
    atomic_fetch_add (&s_handled, 1);
}

//  SIGUSR1 to every thread of the process but the caller; returns how many.
static int
s_signal_threads (void)
{
    pid_t self = (pid_t) syscall (SYS_gettid);
    DIR *tasks = opendir ("/proc/self/task");
    assert_non_null (tasks);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (tasks))) {
        pid_t tid = (pid_t) atoi (entry->d_name);
        if (tid > 0 && tid != self && syscall (SYS_tgkill, getpid (), tid, SIGUSR1) == 0)
            count++;
    }
    closedir (tasks);
    return count;
}

//  The names of this process's zcq-* threads, space-separated, sorted.
static void
s_actor_threads (char *names, size_t size)
{
    names[0] = 0;
    DIR *tasks = opendir ("/proc/self/task");
    struct dirent *entry;
    zlistx_t *list = zlistx_new ();
    zlistx_set_destructor (list, (czmq_destructor *) zstr_free);
    zlistx_set_duplicator (list, (czmq_duplicator *) strdup);
    zlistx_set_comparator (list, (czmq_comparator *) strcmp);
    while (tasks && (entry = readdir (tasks))) {
        char path[300], comm[32] = "";
        snprintf (path, sizeof path, "/proc/self/task/%s/comm", entry->d_name);
        FILE *file = fopen (path, "r");
        if (file && fgets (comm, sizeof comm, file) && strncmp (comm, "zcq-", 4) == 0) {
            comm[strcspn (comm, "\n")] = 0;
            zlistx_add_end (list, comm);
        }
        if (file)
            fclose (file);
    }
    if (tasks)
        closedir (tasks);
    zlistx_sort (list);
    for (char *name = zlistx_first (list); name; name = zlistx_next (list))
        snprintf (names + strlen (names), size - strlen (names), "%s ", name);
    zlistx_destroy (&list);
}

static void
test_signals_do_not_stop_actors (void **state)
{
    char *dir = zcq_test_dir ("signals");
    zcq_node_t *node = zcq_test_node (dir, "shards", "2", "heartbeat-ms", "100", NULL);
    zcq_client_t *client = zcq_client_new (zcq_node_endpoint (node, ZCQ_ENDPOINT_COMMAND),
                                           zcq_node_endpoint (node, ZCQ_ENDPOINT_QUERY));
    assert_non_null (client);
    const zcq_value_t *reply
        = zcq_test_send (client, "sig-open", "open", "s1", -1, "owner", "s:sig", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");

    char before[512], after[512];
    s_actor_threads (before, sizeof before);
    struct sigaction action = { .sa_handler = s_handler };
    sigemptyset (&action.sa_mask);
    struct sigaction previous;
    assert_int_equal (sigaction (SIGUSR1, &action, &previous), 0);
    int signalled = 0;
    for (int round = 0; round < 5; round++) {
        signalled += s_signal_threads ();
        zclock_sleep (50);
    }
    zclock_sleep (100);
    s_actor_threads (after, sizeof after);
    print_message ("signalled %d threads, %d signals handled\nactor threads before: %s\n"
                   "actor threads after:  %s\n",
                   signalled, atomic_load (&s_handled), before, after);

    assert_string_equal (before, after);

    //  commands, queries and events still flow
    zsock_t *events = zsock_new_sub (zcq_node_endpoint (node, ZCQ_ENDPOINT_EVENTS), "account/s1/");
    assert_non_null (events);
    zclock_sleep (200);
    reply = zcq_test_send (client, "sig-deposit", "deposit", "s1", -1, "amount", "i:5", NULL);
    char message[256];
    print_message ("deposit: %s %s\n", zcq_test_code (reply),
                   zcq_value_get_str (reply, "message", message, sizeof message, ""));
    assert_string_equal (zcq_test_code (reply), "ok");
    int64_t position = 0;
    zcq_value_int (zcq_value_get (reply, "position"), &position);
    char min_position[32];
    snprintf (min_position, sizeof min_position, "i:%lld", (long long) position);
    reply = zcq_test_query (client, "op", "s:get", "view", "s:accounts", "key", "s:s1",
                            "min_position", min_position, "timeout_ms", "i:5000", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (zcq_value_get (reply, "row"), "balance", -1), 5);
    zsock_set_rcvtimeo (events, 5000);
    zmsg_t *event = zmsg_recv (events);
    assert_non_null (event);
    zmsg_destroy (&event);

    zsock_destroy (&events);
    sigaction (SIGUSR1, &previous, NULL);
    zcq_client_destroy (&client);
    zcq_node_destroy (&node);
    zcq_test_rmdir (&dir);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_signals_do_not_stop_actors),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
