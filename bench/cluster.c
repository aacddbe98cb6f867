/*  cluster.c: the `cluster` section of zcqrs-bench (issue 14 point 7).

    Three groups of one replica each and one plain node, all zcqrsd
    processes on loopback, beside a private ZooKeeper (scripts/zk.sh); the
    same deposit load (load.c, same window, clients and seconds as the
    deposit workloads) run three ways:

        single      every command to the plain node
        direct      every command to its group's leader (a cluster-aware
                    client: the slot of "account/<key>" by the engine's
                    zcq_slot_of, the group by the map of the `cluster` query,
                    the leader's command endpoint from its `groups`)
        forwarded   every command to a node that is not its group's leader,
                    which forwards it to the leader and relays the reply

    with commands/s, ack percentiles, the CPU the servers (the zcqrsd
    processes and ZooKeeper) spent per command, and the ratios
    direct/single and forwarded/direct. The nodes' `commands_forwarded`
    counters are read after each run: a direct run must forward nothing, a
    forwarded one every command.

    DESIGN
    1.  Separate processes for every node, the plain one included, so the
        comparison is between like and like (the matrix's node runs in the
        harness's process; this one does not, and its figures are not
        meant to be compared with the matrix's).
    2.  Listening ports are picked below the ephemeral range (as
        tests/cluster/conftest.py does): the nodes' own outgoing
        connections (forwards, feeds, ZooKeeper) take ephemeral ports, and
        one could take a port picked there before its node binds it.
    3.  Everything started is stopped and removed: on every return path
        (s_teardown), and on SIGINT/SIGTERM while the section runs (a
        handler that kills the nodes, runs `zk.sh stop` and exits; fork,
        execv, kill and waitpid are async-signal-safe). Nodes get
        PR_SET_PDEATHSIG so they never outlive the harness.
*/
#include "bench.h"
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define S_NODES_MAX  (BENCH_CLUSTER_GROUPS_MAX + 1)
#define S_START_S    30.0
#define S_STOP_S     30.0
#define S_CLUSTER_ZK "/zcqrs-bench"

typedef struct {
    char name[16];
    int group; //  -1: the plain node
    pid_t pid;
    char data[1024];
    char log[1100];
    char command[64], events[64], query[64];
} s_node_t;

//  What the signal handler needs, in plain globals (DESIGN 3)
static volatile sig_atomic_t s_armed;
static pid_t s_pids[S_NODES_MAX];
static char s_zk_dir[1024];
static char s_zk_script[1024];
static char s_dir[900];     //  the section's dir, removed
static char s_workdir[900]; //  its parent, the harness's work dir, removed when empty

static const char *
s_zcqrsd (void)
{
    const char *path = getenv ("ZCQRSD");
    return path && *path ? path : BENCH_ZCQRSD;
}

static const char *
s_cli (void)
{
    const char *path = getenv ("ZCQRS_CLI");
    return path && *path ? path : BENCH_ZCQRS_CLI;
}

//  --------------------------------------------------------------------------
//  Processes

static void
s_on_signal (int signal_number)
{
    if (s_armed) {
        for (int index = 0; index < S_NODES_MAX; index++)
            if (s_pids[index] > 0)
                kill (s_pids[index], SIGKILL);
        if (s_zk_dir[0]) {
            pid_t child = fork ();
            if (child == 0) {
                char *argv[] = { "/bin/bash", s_zk_script, "stop", s_zk_dir, NULL };
                execv (argv[0], argv);
                _exit (127);
            }
            if (child > 0)
                waitpid (child, NULL, 0);
        }
        for (int index = 0; index < S_NODES_MAX; index++)
            if (s_pids[index] > 0)
                waitpid (s_pids[index], NULL, 0);
        if (s_dir[0]) {
            pid_t child = fork ();
            if (child == 0) {
                char *argv[] = { "/bin/rm", "-rf", s_dir, NULL };
                execv (argv[0], argv);
                _exit (127);
            }
            if (child > 0)
                waitpid (child, NULL, 0);
            rmdir (s_workdir);
        }
    }
    _exit (128 + signal_number);
}

//  Run argv to completion with stdout into out (NUL-terminated, may be
//  NULL) and stderr appended to log; the exit status, or -1.
static int
s_run (char *const argv[], char *out, size_t out_size, const char *log)
{
    int pipe_fds[2];
    if (pipe (pipe_fds) != 0)
        return -1;
    pid_t child = fork ();
    if (child < 0) {
        close (pipe_fds[0]);
        close (pipe_fds[1]);
        return -1;
    }
    if (child == 0) {
        int err = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (err >= 0)
            dup2 (err, 2);
        dup2 (pipe_fds[1], 1);
        close (pipe_fds[0]);
        close (pipe_fds[1]); //  or what argv starts in the background holds the pipe open
        execv (argv[0], argv);
        _exit (127);
    }
    close (pipe_fds[1]);
    size_t used = 0;
    char scratch[512];
    while (true) {
        char *into = out && used + 1 < out_size ? out + used : scratch;
        size_t room = out && used + 1 < out_size ? out_size - used - 1 : sizeof scratch;
        ssize_t got = read (pipe_fds[0], into, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (into != scratch)
            used += (size_t) got;
    }
    close (pipe_fds[0]);
    if (out && out_size)
        out[used] = 0;
    int status = 0;
    while (waitpid (child, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

//  A loopback port nobody listens on now, below the ephemeral range
//  (DESIGN 2); 0 when none was found.
static int
s_free_port (void)
{
    int low_ephemeral = 32768;
    FILE *file = fopen ("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (file) {
        if (fscanf (file, "%d", &low_ephemeral) != 1)
            low_ephemeral = 32768;
        fclose (file);
    }
    int high = (low_ephemeral < 65536 ? low_ephemeral : 65536) - 1;
    int low = high - 12000 > 1024 ? high - 12000 : 1024;
    for (int attempt = 0; attempt < 2000; attempt++) {
        int port = low + (int) (randof (high - 300 - low));
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return 0;
        struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
        address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        int bound = bind (fd, (struct sockaddr *) &address, sizeof address);
        close (fd);
        if (bound == 0)
            return port;
    }
    return 0;
}

//  Start a zcqrsd and wait for its four ready lines; false on failure (the
//  reason on stderr, the node's log kept in its data dir's parent).
static bool
s_node_start (s_node_t *node, const char *connect, zcq_durability_t durability, int shards,
              const char *views)
{
    int ports[3];
    for (int index = 0; index < 3; index++)
        if (!(ports[index] = s_free_port ()))
            return false;
    snprintf (node->command, sizeof node->command, "tcp://127.0.0.1:%d", ports[0]);
    snprintf (node->events, sizeof node->events, "tcp://127.0.0.1:%d", ports[1]);
    snprintf (node->query, sizeof node->query, "tcp://127.0.0.1:%d", ports[2]);
    char shards_text[16], group_text[16];
    snprintf (shards_text, sizeof shards_text, "%d", shards);
    snprintf (group_text, sizeof group_text, "%d", node->group);
    const char *argv[32];
    int count = 0;
    argv[count++] = s_zcqrsd ();
    const char *pairs[][2]
        = { { "--data", node->data },     { "--command", node->command },
            { "--events", node->events }, { "--query", node->query },
            { "--http", "none" },         { "--durability", zcq_durability_name (durability) },
            { "--shards", shards_text } };
    for (size_t index = 0; index < sizeof pairs / sizeof pairs[0]; index++) {
        argv[count++] = pairs[index][0];
        argv[count++] = pairs[index][1];
    }
    if (node->group >= 0) {
        argv[count++] = "--cluster";
        argv[count++] = connect;
        argv[count++] = "--node";
        argv[count++] = node->name;
        argv[count++] = "--group";
        argv[count++] = group_text;
        argv[count++] = "--views";
        argv[count++] = views;
    }
    argv[count] = NULL;
    int pipe_fds[2];
    if (pipe (pipe_fds) != 0)
        return false;
    pid_t parent = getpid ();
    pid_t child = fork ();
    if (child < 0) {
        close (pipe_fds[0]);
        close (pipe_fds[1]);
        return false;
    }
    if (child == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid () != parent)
            _exit (1);
        int err = open (node->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (err >= 0)
            dup2 (err, 2);
        dup2 (pipe_fds[1], 1);
        close (pipe_fds[0]);
        close (pipe_fds[1]);
        execv (argv[0], (char *const *) argv);
        _exit (127);
    }
    close (pipe_fds[1]);
    node->pid = child;
    //  ready: "zcqrsd: node ... ready", then command, events, query
    char text[2048];
    size_t used = 0;
    int lines = 0;
    uint64_t deadline = bench_now_ns () + (uint64_t) (S_START_S * 1e9);
    while (lines < 4 && bench_now_ns () < deadline && used + 1 < sizeof text) {
        struct pollfd fd = { .fd = pipe_fds[0], .events = POLLIN };
        if (poll (&fd, 1, 100) <= 0)
            continue;
        ssize_t got = read (pipe_fds[0], text + used, sizeof text - used - 1);
        if (got <= 0)
            break;
        for (ssize_t index = 0; index < got; index++)
            lines += text[used + (size_t) index] == '\n';
        used += (size_t) got;
    }
    close (pipe_fds[0]);
    if (lines < 4) {
        bench_log ("cluster: %s did not start (see %s)", node->name, node->log);
        return false;
    }
    return true;
}

static void
s_node_stop (s_node_t *node)
{
    if (node->pid <= 0)
        return;
    kill (node->pid, SIGTERM);
    uint64_t deadline = bench_now_ns () + (uint64_t) (S_STOP_S * 1e9);
    struct timespec pause = { 0, 10000000 };
    while (waitpid (node->pid, NULL, WNOHANG) == 0) {
        if (bench_now_ns () > deadline) {
            kill (node->pid, SIGKILL);
            waitpid (node->pid, NULL, 0);
            break;
        }
        nanosleep (&pause, NULL);
    }
    node->pid = 0;
}

//  CPU seconds a process has used (utime + stime), or 0.
static double
s_pid_cpu_s (pid_t pid)
{
    char path[64], line[2048];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t got = fread (line, 1, sizeof line - 1, file);
    fclose (file);
    line[got] = 0;
    const char *after = strrchr (line, ')'); //  the name may hold spaces
    unsigned long long user = 0, system = 0;
    if (!after
        || sscanf (after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &user,
                   &system)
               != 2)
        return 0;
    return (double) (user + system) / (double) sysconf (_SC_CLK_TCK);
}

//  --------------------------------------------------------------------------
//  Queries

//  One query op on a node, the reply kept in doc; NULL on failure.
static zcq_client_t *s_client;
static char s_client_endpoint[64];

static void
s_query_close (void)
{
    zcq_client_destroy (&s_client);
    s_client_endpoint[0] = 0;
}

static const zcq_value_t *
s_query (const char *endpoint, const char *op)
{
    zcq_client_t *client;
    if (!s_client || strcmp (s_client_endpoint, endpoint) != 0) {
        s_query_close ();
        s_client = zcq_client_new (NULL, endpoint);
        snprintf (s_client_endpoint, sizeof s_client_endpoint, "%s", endpoint);
    }
    client = s_client;
    if (!client)
        return NULL;
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_writer_map (writer, 2);
    zcq_writer_str (writer, "op");
    zcq_writer_str (writer, op);
    zcq_writer_str (writer, "rid");
    zcq_writer_uint (writer, (uint64_t) bench_now_ns ());
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_call (client, ZCQ_ENDPOINT_QUERY, zcq_writer_data (writer),
                                     zcq_writer_size (writer), 5000, &reply);
    zcq_writer_destroy (&writer);
    if (err != ZCQ_OK || zcq_reply_status (reply) != ZCQ_OK) {
        //  a fresh socket next time: a late reply must not be taken for the next
        s_query_close ();
        return NULL;
    }
    return reply;
}

static int64_t
s_forwarded (const s_node_t *nodes, int count)
{
    int64_t total = 0;
    for (int index = 0; index < count; index++) {
        const zcq_value_t *reply = s_query (nodes[index].query, "stats");
        int64_t value
            = reply ? zcq_value_get_int (zcq_value_get (reply, "stats"), "commands_forwarded", -1)
                    : -1;
        if (value < 0)
            return -1;
        total += value;
    }
    return total;
}

//  The cluster as a client sees it: the slot map and each group's leader
//  (its command endpoint), from the `cluster` query of any node.
typedef struct {
    uint32_t slots;
    uint16_t *slot_group;
    int groups;
    char leaders[BENCH_CLUSTER_GROUPS_MAX][64];
} s_map_t;

//  Parse a `cluster` reply; true when every slot has a group and every
//  group a leader with a command endpoint.
static bool
s_map_parse (const zcq_value_t *reply, int groups, s_map_t *map)
{
    uint64_t slots = 0;
    if (!reply || !zcq_value_uint (zcq_value_get (reply, "slots"), &slots) || slots == 0
        || slots > 65536)
        return false;
    free (map->slot_group);
    map->slot_group = malloc (slots * sizeof (uint16_t));
    if (!map->slot_group)
        return false;
    map->slots = (uint32_t) slots;
    map->groups = groups;
    for (uint64_t slot = 0; slot < slots; slot++)
        map->slot_group[slot] = UINT16_MAX;
    const zcq_value_t *ranges = zcq_value_get (reply, "map");
    for (size_t index = 0; index < zcq_value_size (ranges); index++) {
        const zcq_value_t *range = zcq_value_at (ranges, index);
        uint64_t first, last, group;
        if (!zcq_value_uint (zcq_value_at (range, 0), &first)
            || !zcq_value_uint (zcq_value_at (range, 1), &last)
            || !zcq_value_uint (zcq_value_at (range, 2), &group) || last >= slots
            || group >= (uint64_t) groups)
            return false;
        for (uint64_t slot = first; slot <= last; slot++)
            map->slot_group[slot] = (uint16_t) group;
    }
    for (uint64_t slot = 0; slot < slots; slot++)
        if (map->slot_group[slot] == UINT16_MAX)
            return false;
    for (int group = 0; group < groups; group++)
        map->leaders[group][0] = 0;
    const zcq_value_t *states = zcq_value_get (reply, "groups");
    for (size_t index = 0; index < zcq_value_size (states); index++) {
        const zcq_value_t *state = zcq_value_at (states, index);
        int64_t group = zcq_value_get_int (state, "group", -1);
        char leader[80];
        if (group < 0 || group >= groups
            || !zcq_value_get_str (state, "leader", leader, sizeof leader, NULL))
            continue;
        const zcq_value_t *replicas = zcq_value_get (state, "replicas");
        for (size_t replica = 0; replica < zcq_value_size (replicas); replica++) {
            const zcq_value_t *entry = zcq_value_at (replicas, replica);
            char name[80];
            if (zcq_value_get_str (entry, "node", name, sizeof name, NULL) && streq (name, leader))
                zcq_value_get_str (entry, "command", map->leaders[group],
                                   sizeof map->leaders[group], NULL);
        }
    }
    for (int group = 0; group < groups; group++)
        if (!map->leaders[group][0])
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  The section

typedef struct {
    s_node_t nodes[S_NODES_MAX]; //  the cluster's, then the plain node last
    int node_count;
    char dir[900];
    bool zk_started;
} s_setup_t;

//  The last lines of a log on stderr, when something failed.
static void
s_tail (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    char lines[8][512];
    int count = 0;
    while (fgets (lines[count % 8], sizeof lines[0], file))
        count++;
    fclose (file);
    fprintf (stderr, "--- %s\n", path);
    for (int index = count > 8 ? count - 8 : 0; index < count; index++)
        fputs (lines[index % 8], stderr);
}

static void
s_teardown (s_setup_t *setup, bool failed)
{
    s_query_close ();
    for (int index = 0; index < setup->node_count; index++) {
        s_node_stop (&setup->nodes[index]);
        s_pids[index] = 0;
    }
    if (setup->zk_started) {
        char log[1100];
        snprintf (log, sizeof log, "%s/zk.sh.log", setup->dir);
        char *argv[] = { "/bin/bash", s_zk_script, "stop", s_zk_dir, NULL };
        s_run (argv, NULL, 0, log);
        setup->zk_started = false;
    }
    s_armed = 0;
    s_zk_dir[0] = 0;
    s_dir[0] = 0;
    if (failed) {
        char path[1100];
        snprintf (path, sizeof path, "%s/zk.sh.log", setup->dir);
        s_tail (path);
        for (int index = 0; index < setup->node_count; index++)
            s_tail (setup->nodes[index].log);
    }
    bench_dir_remove (setup->dir); //  (kept with --keep)
}

//  One load on the running processes: the load's figures plus the CPU the
//  servers spent per command over the whole load (warmup included).
static json_t *
s_measure (const bench_load_t *load, const s_setup_t *setup, pid_t zk_pid, const char *what)
{
    double before = s_pid_cpu_s (zk_pid);
    for (int index = 0; index < setup->node_count; index++)
        before += s_pid_cpu_s (setup->nodes[index].pid);
    json_t *result = bench_load_run (load);
    double after = s_pid_cpu_s (zk_pid);
    for (int index = 0; index < setup->node_count; index++)
        after += s_pid_cpu_s (setup->nodes[index].pid);
    if (!result) {
        bench_log ("cluster: %s: the load could not run", what);
        return NULL;
    }
    json_int_t all = json_integer_value (json_object_get (result, "commands_ok_all"));
    if (all > 0)
        json_object_set_new (result, "server_cpu_us_per_command",
                             json_real ((after - before) * 1e6 / (double) all));
    json_t *ack = json_object_get (result, "ack");
    bench_log ("  %-9s %9.0f commands/s  ack p50 %.3f p99 %.3f ms  servers %.1f cpu us/command",
               what, json_real_value (json_object_get (result, "commands_per_s")),
               json_real_value (json_object_get (ack, "p50")) / 1000,
               json_real_value (json_object_get (ack, "p99")) / 1000,
               json_number_value (json_object_get (result, "server_cpu_us_per_command")));
    return result;
}

static double
s_get (json_t *object, const char *key, const char *sub)
{
    json_t *value = json_object_get (object, key);
    if (sub)
        value = json_object_get (value, sub);
    return json_is_number (value) ? json_number_value (value) : -1;
}

static void
s_ratio (json_t *ratios, const char *name, json_t *top, json_t *bottom, const char *key,
         const char *sub)
{
    double a = s_get (top, key, sub), b = s_get (bottom, key, sub);
    if (a >= 0 && b > 0)
        json_object_set_new (ratios, name, json_real (a / b));
}

json_t *
bench_cluster_run (const bench_cluster_t *options)
{
    int groups = options->groups;
    if (groups < 2 || groups > BENCH_CLUSTER_GROUPS_MAX || options->accounts == 0) {
        bench_log ("cluster: groups must be 2..%d", BENCH_CLUSTER_GROUPS_MAX);
        return NULL;
    }
    if (access (s_zcqrsd (), X_OK) != 0 || access (s_cli (), X_OK) != 0) {
        bench_log ("cluster: %s or %s is missing (build zcqrsd and zcqrs)", s_zcqrsd (), s_cli ());
        return NULL;
    }
    const char *views = options->views ? options->views : "cluster";
    snprintf (s_zk_script, sizeof s_zk_script, "%s", options->zk_script);
    s_setup_t setup = { .node_count = 0 };
    char *dir = bench_dir_new ("cluster");
    snprintf (setup.dir, sizeof setup.dir, "%s", dir);
    free (dir);
    snprintf (s_dir, sizeof s_dir, "%s", setup.dir);
    snprintf (s_workdir, sizeof s_workdir, "%s", setup.dir);
    if (strrchr (s_workdir, '/'))
        *strrchr (s_workdir, '/') = 0;
    if (zsys_dir_create ("%s", setup.dir) != 0) {
        bench_log ("cluster: cannot make %s", setup.dir);
        return NULL;
    }
    struct sigaction action = { .sa_handler = s_on_signal }, old_int, old_term;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, &old_int);
    sigaction (SIGTERM, &action, &old_term);
    json_t *section = NULL;
    s_map_t map = { 0 };
    uint8_t *direct = NULL, *forwarded = NULL;
    bool failed = true;

    //  ZooKeeper and the cluster
    int zk_port = s_free_port ();
    char port_text[16], log[1100], connect[512] = "", zk_pid_path[1100];
    snprintf (port_text, sizeof port_text, "%d", zk_port);
    snprintf (s_zk_dir, sizeof s_zk_dir, "%s/zk", setup.dir);
    snprintf (log, sizeof log, "%s/zk.sh.log", setup.dir);
    snprintf (zk_pid_path, sizeof zk_pid_path, "%s/server1/pid", s_zk_dir);
    s_armed = 1;
    setup.zk_started = true; //  zk.sh stop is harmless when start failed
    bench_log ("cluster: a private ZooKeeper on 127.0.0.1:%d", zk_port);
    char *zk_start[] = { "/bin/bash", s_zk_script, "start", s_zk_dir, port_text, NULL };
    char zk_out[512];
    if (!zk_port || s_run (zk_start, zk_out, sizeof zk_out, log) != 0) {
        bench_log ("cluster: ZooKeeper did not start (see %s)", log);
        goto done;
    }
    pid_t zk_pid = 0;
    FILE *pid_file = fopen (zk_pid_path, "r");
    if (pid_file) {
        int value = 0;
        if (fscanf (pid_file, "%d", &value) == 1)
            zk_pid = (pid_t) value;
        fclose (pid_file);
    }
    snprintf (connect, sizeof connect, "127.0.0.1:%d%s", zk_port, S_CLUSTER_ZK);
    char groups_text[16];
    snprintf (groups_text, sizeof groups_text, "%d", groups);
    char *create[] = { (char *) s_cli (), "cluster",  "create",    "--zk",
                       connect,           "--groups", groups_text, NULL };
    if (s_run (create, NULL, 0, log) != 0) {
        bench_log ("cluster: `zcqrs cluster create` failed (see %s)", log);
        goto done;
    }
    //  the nodes: n0..n<groups-1>, one per group, then the plain node
    for (int index = 0; index <= groups; index++) {
        s_node_t *node = &setup.nodes[index];
        node->group = index < groups ? index : -1;
        snprintf (node->name, sizeof node->name, index < groups ? "n%d" : "single", index);
        snprintf (node->data, sizeof node->data, "%s/%s", setup.dir, node->name);
        snprintf (node->log, sizeof node->log, "%s/%s.log", setup.dir, node->name);
        setup.node_count = index + 1;
        bool started = s_node_start (node, connect, options->durability, options->shards, views);
        s_pids[index] = node->pid;
        if (!started)
            goto done;
    }
    s_node_t *single = &setup.nodes[groups];
    //  every group led, seen from a node's `cluster` query
    uint64_t deadline = bench_now_ns () + 30000000000ull;
    bool mapped = false;
    while (!mapped && bench_now_ns () < deadline) {
        mapped = s_map_parse (s_query (setup.nodes[0].query, "cluster"), groups, &map);
        if (!mapped) {
            struct timespec pause = { 0, 50000000 };
            nanosleep (&pause, NULL);
        }
    }
    if (!mapped) {
        bench_log ("cluster: the groups got no leaders in 30 s");
        goto done;
    }
    bench_log ("cluster: %d groups, %u slots, %s, views %s; one plain node; %s, %d shards each",
               groups, map.slots, connect, views, zcq_durability_name (options->durability),
               options->shards);

    //  Routes: account k's command to the leader of its group (direct), or
    //  to the next node after that leader, which does not lead it (forwarded)
    const char *endpoints[BENCH_CLUSTER_GROUPS_MAX];
    for (int index = 0; index < groups; index++)
        endpoints[index] = setup.nodes[index].command;
    int leader_of[BENCH_CLUSTER_GROUPS_MAX];
    for (int group = 0; group < groups; group++) {
        leader_of[group] = -1;
        for (int index = 0; index < groups; index++)
            if (streq (map.leaders[group], endpoints[index]))
                leader_of[group] = index;
        if (leader_of[group] < 0) {
            bench_log ("cluster: the leader of group %d (%s) is none of the nodes started", group,
                       map.leaders[group]);
            goto done;
        }
    }
    direct = malloc (options->accounts);
    forwarded = malloc (options->accounts);
    if (!direct || !forwarded)
        goto done;
    uint64_t per_group[BENCH_CLUSTER_GROUPS_MAX] = { 0 };
    for (uint64_t key = 0; key < options->accounts; key++) {
        char stream[40];
        int len = snprintf (stream, sizeof stream, "account/%llu", (unsigned long long) key);
        int group = map.slot_group[zcq_slot_of (stream, (size_t) len, map.slots)];
        direct[key] = (uint8_t) leader_of[group];
        forwarded[key] = (uint8_t) ((leader_of[group] + 1) % groups);
        per_group[group]++;
    }

    bench_load_t load = *options->load;
    load.accounts = options->accounts;
    load.query_endpoint = NULL; //  no read-your-writes probes: positions are per group
    load.probe_rate = 0;
    load.query_share = 0;
    load.hot_key = false;
    load.loop = BENCH_CLOSED_LOOP;
    char tag[64];

    //  the accounts, opened once on each side
    bench_load_t open = load;
    open.ops = BENCH_OPS_OPEN;
    open.warmup_s = 0;
    open.command_endpoint = single->command;
    snprintf (tag, sizeof tag, "cluster-open-single-%llx", (unsigned long long) bench_now_ns ());
    open.tag = tag;
    bench_log ("cluster: opening %llu accounts on the plain node and through the cluster",
               (unsigned long long) options->accounts);
    json_t *opened_single = bench_load_run (&open);
    open.command_endpoints = endpoints;
    open.command_endpoint_count = groups;
    open.routes = direct;
    snprintf (tag, sizeof tag, "cluster-open-direct-%llx", (unsigned long long) bench_now_ns ());
    json_t *opened_cluster = bench_load_run (&open);
    if (!opened_single || !opened_cluster
        || json_integer_value (json_object_get (opened_single, "commands_ok"))
               != (json_int_t) options->accounts
        || json_integer_value (json_object_get (opened_cluster, "commands_ok"))
               != (json_int_t) options->accounts) {
        bench_log ("cluster: opening the accounts failed");
        json_decref (opened_single);
        json_decref (opened_cluster);
        goto done;
    }
    bench_log ("  %.0f opens/s on the plain node, %.0f through the cluster",
               json_real_value (json_object_get (opened_single, "commands_per_s")),
               json_real_value (json_object_get (opened_cluster, "commands_per_s")));

    //  the three runs, in the same conditions
    bench_log ("cluster: deposits, closed loop, window %d, %d client(s), %.1f s (+%.1f s warmup)",
               load.window, load.clients, load.seconds, load.warmup_s);
    json_t *runs = json_object ();
    static const char *names[] = { "single", "direct", "forwarded" };
    for (int way = 0; way < 3; way++) {
        bench_load_t run = load;
        if (way == 0)
            run.command_endpoint = single->command;
        else {
            run.command_endpoints = endpoints;
            run.command_endpoint_count = groups;
            run.routes = way == 1 ? direct : forwarded;
        }
        snprintf (tag, sizeof tag, "cluster-%s-%llx", names[way],
                  (unsigned long long) bench_now_ns ());
        run.tag = tag;
        int64_t forwards_before = way ? s_forwarded (setup.nodes, groups) : 0;
        json_t *result = s_measure (&run, &setup, zk_pid, names[way]);
        if (!result)
            continue;
        if (way) {
            int64_t forwards_after = s_forwarded (setup.nodes, groups);
            if (forwards_before >= 0 && forwards_after >= 0)
                json_object_set_new (result, "commands_forwarded",
                                     json_integer (forwards_after - forwards_before));
        }
        json_object_set_new (runs, names[way], result);
    }
    json_t *ratios = json_object ();
    json_t *one = json_object_get (runs, "single"), *straight = json_object_get (runs, "direct"),
           *relayed = json_object_get (runs, "forwarded");
    s_ratio (ratios, "direct_per_single", straight, one, "commands_per_s", NULL);
    s_ratio (ratios, "forwarded_per_direct", relayed, straight, "commands_per_s", NULL);
    s_ratio (ratios, "direct_per_single_p50", straight, one, "ack", "p50");
    s_ratio (ratios, "direct_per_single_p99", straight, one, "ack", "p99");
    s_ratio (ratios, "forwarded_per_direct_p50", relayed, straight, "ack", "p50");
    s_ratio (ratios, "forwarded_per_direct_p99", relayed, straight, "ack", "p99");
    s_ratio (ratios, "direct_per_single_cpu", straight, one, "server_cpu_us_per_command", NULL);
    s_ratio (ratios, "forwarded_per_direct_cpu", relayed, straight, "server_cpu_us_per_command",
             NULL);
    json_t *spread = json_array ();
    for (int group = 0; group < groups; group++)
        json_array_append_new (spread, json_integer ((json_int_t) per_group[group]));
    section = json_pack (
        "{s:i, s:i, s:s, s:I, s:s, s:i, s:s, s:o, s:f, s:f, s:o, s:o}", "groups", groups,
        "replicas", 1, "views", views, "accounts", (json_int_t) options->accounts, "durability",
        zcq_durability_name (options->durability), "shards", options->shards, "zookeeper",
        "1 server (scripts/zk.sh)", "accounts_per_group", spread, "opens_per_s_single",
        json_real_value (json_object_get (opened_single, "commands_per_s")), "opens_per_s_cluster",
        json_real_value (json_object_get (opened_cluster, "commands_per_s")), "runs", runs,
        "ratios", ratios);
    json_decref (opened_single);
    json_decref (opened_cluster);
    bench_log ("cluster: direct/single %.3f commands/s, forwarded/direct %.3f",
               s_get (ratios, "direct_per_single", NULL),
               s_get (ratios, "forwarded_per_direct", NULL));
    failed = json_object_size (runs) != 3;

done:
    s_teardown (&setup, failed);
    sigaction (SIGINT, &old_int, NULL);
    sigaction (SIGTERM, &old_term, NULL);
    free (map.slot_group);
    free (direct);
    free (forwarded);
    return section;
}
