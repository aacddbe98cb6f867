/*  main.c: zcqrs-bench, the benchmark harness of zcqrs.

    Runs a node of the bank domain in this process (data dir under a temp
    dir, endpoints on tcp://127.0.0.1:*), drives it from client threads
    over DEALER sockets, measures the baselines in the same run, and writes
    one JSON document (--json), a Markdown report (--md) and gnuplot data
    (--plots). `zcqrs-bench --help` lists the workloads and options;
    scripts/bench.sh is the one command that builds, runs and plots.

    The suite, in order:
        baselines   raw ZeroMQ echo round trips, raw RocksDB appends (wal,
                    fsync), a PostgreSQL event store (wal, fsync)
        rebuild     cold start and view rebuild from 1M events the node
                    wrote (as it left them) and from 10M written through the
                    store, RSS per 1M view rows, bytes on disk per event
        workloads   each workload x durability x shards, closed loop, on
                    copies of data dirs with 1k / 100k / 1M accounts opened
                    through the node once (the opening rate is a figure too)
        open-loop   deposit-100k at fractions of its closed-loop peak, on the
                    node of that peak
        snapshot    aggregate load of a 10,000-event stream with and
                    without its snapshot
*/
#include "bench.h"
#include "bank.h"
#include <arpa/inet.h>
#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Workloads

typedef struct {
    const char *name;
    const char *title;
    uint64_t accounts; //  accounts opened before the run
    bool hot_key;
    double query_share;
} s_workload_t;

static const s_workload_t s_workloads[] = {
    { "deposit-1k", "open+deposit, 1k accounts", 1000, false, 0.0 },
    { "deposit-100k", "open+deposit, 100k accounts", 100000, false, 0.0 },
    { "deposit-1m", "open+deposit, 1M accounts", 1000000, false, 0.0 },
    { "mix-80-20", "80% deposits / 20% gets, 100k accounts", 100000, false, 0.2 },
    { "read-95", "5% deposits / 95% gets, 100k accounts", 100000, false, 0.95 },
    { "hot-key", "deposits to one account", 1000, true, 0.0 },
};
#define S_WORKLOADS (sizeof s_workloads / sizeof s_workloads[0])
#define S_HEADLINE  1 //  deposit-100k

static const char *s_sections[] = { "baselines", "open-loop", "rebuild", "snapshot", "cluster" };
#define S_SECTIONS (sizeof s_sections / sizeof s_sections[0])

//  --------------------------------------------------------------------------
//  Options

typedef struct {
    bool quick;
    bool selected[S_WORKLOADS];
    bool sections[S_SECTIONS];
    double seconds; //  0 = the suite's default
    double warmup;
    int window;
    int clients;
    double rate; //  > 0: matrix workloads in open loop at this rate
    int shards[8];
    int shard_count;
    zcq_durability_t durabilities[2];
    int durability_count;
    uint64_t accounts; //  0 = the workload's own
    double probe_rate;
    const char *json_path;
    const char *md_path;
    const char *plots; //  DIR/PREFIX for the .dat files
    const char *pg;
    int pg_connections[8]; //  tried in turn; the best counts
    int pg_connection_count;
    const char *workdir;
    const char *label;
    const char *from_json;   //  only render the reports of an earlier run
    const char *rebuild_dir; //  the rebuild section on a copy of this data dir
    int groups;              //  the cluster section's
    const char *cluster_views;
    bool keep;
    bool scrape; //  nodes serve /metrics, read every second (s_scraper)
} s_options_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: zcqrs-bench [options]\n"
             "\n"
             "Benchmarks a zcqrs node (bank domain, in this process, tcp loopback) and its\n"
             "baselines; writes JSON, Markdown and gnuplot data. scripts/bench.sh runs the\n"
             "whole thing (PostgreSQL, plots) in one command.\n"
             "\n"
             "workloads (closed loop with a window, each in every durability and shard count):\n");
    for (size_t index = 0; index < S_WORKLOADS; index++)
        fprintf (out, "  %-14s %s\n", s_workloads[index].name, s_workloads[index].title);
    fprintf (out,
             "sections:\n"
             "  baselines      raw ZeroMQ DEALER/ROUTER echo, raw RocksDB WriteBatch appends,\n"
             "                 PostgreSQL event store over libpq (--pg)\n"
             "  open-loop      deposit-100k at 10..90%% of its closed-loop peak (latency vs load)\n"
             "  rebuild        cold start and view rebuild from 1M and 10M events, RSS per 1M\n"
             "                 rows, bytes on disk per event\n"
             "  snapshot       aggregate load of a 10,000-event stream with and without snapshot\n"
             "  cluster        deposit-100k's load on one zcqrsd, on 3 clustered zcqrsd (groups)\n"
             "                 with each command sent to its group's leader, and with each\n"
             "                 command sent to a node that forwards it (private ZooKeeper\n"
             "                 through scripts/zk.sh; the first --durability, the headline\n"
             "                 shards; --groups N for another group count)\n"
             "  all            everything (the default)\n"
             "\n"
             "options:\n"
             "  --quick              smoke run under 2 minutes: fewer runs, shorter, smaller\n"
             "  --workload NAME      run only these (repeat, or a comma list)\n"
             "  --seconds S          measured seconds per run (default 5, quick 1.5)\n"
             "  --warmup S           seconds before measuring (default 1, quick 0.5)\n"
             "  --window N           requests in flight per client, closed loop (256)\n"
             "  --clients N          client threads (1)\n"
             "  --rate R             run the workloads open loop at R operations/s\n"
             "  --shards LIST        shard counts, e.g. 1,2,4 (default 1,2,4)\n"
             "  --durability MODE    wal, fsync or both (default both)\n"
             "  --accounts N         accounts for the deposit and query workloads\n"
             "  --probe-rate N       read-your-writes probes per second (default 1000)\n"
             "  --json FILE          write the results as JSON\n"
             "  --md FILE            write the Markdown report\n"
             "  --plots DIR/PREFIX   write gnuplot data as PREFIX-{shards,latency,lag}.dat\n"
             "  --pg CONNINFO        libpq connection string of the PostgreSQL baseline\n"
             "  --pg-connections LIST  PostgreSQL client connections to try, the best counts\n"
             "                       (default 16,64,256; quick 16,128)\n"
             "  --workdir DIR        where the temporary data dirs go (default /tmp)\n"
             "  --label TEXT         a label for the report (e.g. the git revision)\n"
             "  --keep               keep the temporary data dirs\n"
             "  --scrape             the nodes under test serve /metrics (setting http) and a\n"
             "                       thread reads it every second, as Prometheus would: the\n"
             "                       cost of metrics on the write path\n"
             "  --from-json FILE     run nothing: write --md, --plots and the headline of an\n"
             "                       earlier run's JSON\n"
             "  --groups N           groups of the cluster section (default 3)\n"
             "  --cluster-views MODE the clustered nodes' --views: cluster (default; each\n"
             "                       node's views follow every group), group or none\n"
             "  --rebuild-dir DIR    the rebuild section on a copy of DIR, a data dir a node\n"
             "                       wrote and stopped cleanly (kept with --keep), instead\n"
             "                       of opening accounts first; no synthetic log (implies\n"
             "                       --workload rebuild when no workload is given)\n"
             "  --help               this text\n");
}

static int
s_parse_list (const char *text, int *values, int max)
{
    int count = 0;
    char *copy = strdup (text), *save = NULL;
    for (char *item = strtok_r (copy, ",", &save); item && count < max;
         item = strtok_r (NULL, ",", &save))
        values[count++] = atoi (item);
    free (copy);
    return count;
}

static bool
s_select (s_options_t *options, const char *text)
{
    char *copy = strdup (text), *save = NULL;
    bool ok = true;
    for (char *item = strtok_r (copy, ",", &save); item; item = strtok_r (NULL, ",", &save)) {
        bool found = false;
        if (streq (item, "all")) {
            for (size_t index = 0; index < S_WORKLOADS; index++)
                options->selected[index] = true;
            for (size_t index = 0; index < S_SECTIONS; index++)
                options->sections[index] = true;
            found = true;
        }
        for (size_t index = 0; index < S_WORKLOADS; index++)
            if (streq (item, s_workloads[index].name))
                options->selected[index] = found = true;
        for (size_t index = 0; index < S_SECTIONS; index++)
            if (streq (item, s_sections[index]))
                options->sections[index] = found = true;
        if (!found) {
            fprintf (stderr, "zcqrs-bench: unknown workload '%s' (see --help)\n", item);
            ok = false;
        }
    }
    free (copy);
    return ok;
}

static int
s_parse (int argc, char **argv, s_options_t *options)
{
    *options = (s_options_t) { .window = 256,
                               .clients = 1,
                               .shards = { 1, 2, 4 },
                               .shard_count = 3,
                               .durabilities = { ZCQ_DURABILITY_WAL, ZCQ_DURABILITY_FSYNC },
                               .durability_count = 2,
                               .probe_rate = 1000,
                               .groups = 3,
                               .workdir = "/tmp" };
    static const struct option longs[] = { { "quick", no_argument, NULL, 'q' },
                                           { "workload", required_argument, NULL, 'w' },
                                           { "seconds", required_argument, NULL, 's' },
                                           { "warmup", required_argument, NULL, 'W' },
                                           { "window", required_argument, NULL, 'n' },
                                           { "clients", required_argument, NULL, 'c' },
                                           { "rate", required_argument, NULL, 'r' },
                                           { "shards", required_argument, NULL, 'S' },
                                           { "durability", required_argument, NULL, 'd' },
                                           { "accounts", required_argument, NULL, 'a' },
                                           { "probe-rate", required_argument, NULL, 'p' },
                                           { "json", required_argument, NULL, 'j' },
                                           { "md", required_argument, NULL, 'm' },
                                           { "plots", required_argument, NULL, 'P' },
                                           { "pg", required_argument, NULL, 'g' },
                                           { "pg-connections", required_argument, NULL, 'G' },
                                           { "workdir", required_argument, NULL, 'D' },
                                           { "label", required_argument, NULL, 'l' },
                                           { "keep", no_argument, NULL, 'k' },
                                           { "scrape", no_argument, NULL, 'X' },
                                           { "from-json", required_argument, NULL, 'F' },
                                           { "rebuild-dir", required_argument, NULL, 'R' },
                                           { "groups", required_argument, NULL, 'C' },
                                           { "cluster-views", required_argument, NULL, 'V' },
                                           { "help", no_argument, NULL, 'h' },
                                           { NULL, 0, NULL, 0 } };
    bool any = false;
    int option;
    while ((option = getopt_long (argc, argv, "", longs, NULL)) != -1) {
        switch (option) {
            case 'q': options->quick = true; break;
            case 'w':
                if (!s_select (options, optarg))
                    return 2;
                any = true;
                break;
            case 's': options->seconds = atof (optarg); break;
            case 'W': options->warmup = atof (optarg); break;
            case 'n': options->window = atoi (optarg); break;
            case 'c': options->clients = atoi (optarg); break;
            case 'r': options->rate = atof (optarg); break;
            case 'S': options->shard_count = s_parse_list (optarg, options->shards, 8); break;
            case 'd':
                if (streq (optarg, "wal") || streq (optarg, "fsync")) {
                    options->durabilities[0] = streq (optarg, "wal") ? ZCQ_DURABILITY_WAL
                                                                     : ZCQ_DURABILITY_FSYNC;
                    options->durability_count = 1;
                }
                else if (!streq (optarg, "both")) {
                    fprintf (stderr, "zcqrs-bench: --durability is wal, fsync or both\n");
                    return 2;
                }
                break;
            case 'a': options->accounts = strtoull (optarg, NULL, 10); break;
            case 'p': options->probe_rate = atof (optarg); break;
            case 'j': options->json_path = optarg; break;
            case 'm': options->md_path = optarg; break;
            case 'P': options->plots = optarg; break;
            case 'g': options->pg = optarg; break;
            case 'G':
                options->pg_connection_count = s_parse_list (optarg, options->pg_connections, 8);
                break;
            case 'D': options->workdir = optarg; break;
            case 'l': options->label = optarg; break;
            case 'k': options->keep = true; break;
            case 'X': options->scrape = true; break;
            case 'F': options->from_json = optarg; break;
            case 'R': options->rebuild_dir = optarg; break;
            case 'C': options->groups = atoi (optarg); break;
            case 'V':
                if (!streq (optarg, "cluster") && !streq (optarg, "group")
                    && !streq (optarg, "none")) {
                    fprintf (stderr, "zcqrs-bench: --cluster-views is cluster, group or none\n");
                    return 2;
                }
                options->cluster_views = optarg;
                break;
            case 'h': s_usage (stdout); exit (0);
            default: s_usage (stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "zcqrs-bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!any)
        s_select (options, options->rebuild_dir ? "rebuild" : "all");
    if (options->window < 1 || options->clients < 1 || options->shard_count < 1) {
        fprintf (stderr, "zcqrs-bench: --window, --clients and --shards must be positive\n");
        return 2;
    }
    for (int index = 0; index < options->shard_count; index++)
        if (options->shards[index] < 1 || options->shards[index] > 64) {
            fprintf (stderr, "zcqrs-bench: a shard count is 1 to 64\n");
            return 2;
        }
    if (options->pg_connection_count == 0) {
        static const int full[] = { 16, 64, 256 }, quick[] = { 16, 128 };
        options->pg_connection_count = options->quick ? 2 : 3;
        memcpy (options->pg_connections, options->quick ? quick : full,
                sizeof (int) * (size_t) options->pg_connection_count);
    }
    for (int index = 0; index < options->pg_connection_count; index++)
        if (options->pg_connections[index] < 1 || options->pg_connections[index] > 1000) {
            fprintf (stderr, "zcqrs-bench: --pg-connections takes 1 to 1000\n");
            return 2;
        }
    if (options->seconds <= 0)
        options->seconds = options->quick ? 1.5 : 5.0;
    if (options->warmup <= 0)
        options->warmup = options->quick ? 0.5 : 1.0;
    return 0;
}

//  --------------------------------------------------------------------------
//  The suite's state

typedef struct {
    s_options_t *options;
    json_t *results;
    json_t *notes;      //  anything that looked wrong
    char *templates[3]; //  data dirs with 1k, 100k, 1M accounts opened
    uint64_t template_accounts[3];
    int headline_shards;
} s_suite_t;

static void s_note (s_suite_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static double s_number (json_t *object, const char *path);

static void
s_note (s_suite_t *self, const char *format, ...)
{
    char text[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    bench_log ("NOTE: %s", text);
    json_array_append_new (self->notes, json_string (text));
}

//  The 1-minute load average: other work on the machine skews every figure.
static double
s_loadavg (void)
{
    double load = -1;
    FILE *file = fopen ("/proc/loadavg", "r");
    if (file) {
        if (fscanf (file, "%lf", &load) != 1)
            load = -1;
        fclose (file);
    }
    return load;
}

//  --------------------------------------------------------------------------
//  The scraper (--scrape): the latest node's /metrics, every second, over
//  plain HTTP/1.0 on loopback

static struct {
    bool enabled;
    pthread_t thread;
    pthread_mutex_t lock;
    char address[64]; //  HOST:PORT of the latest node; "" when none
    atomic_bool stop;
    atomic_uint_fast64_t scrapes; //  whole 200 answers
    atomic_uint_fast64_t bytes;
    atomic_uint_fast64_t failures; //  a node was there and did not answer 200
} s_scraper = { .lock = PTHREAD_MUTEX_INITIALIZER };

//  One GET /metrics; the bytes of a 200 answer, 0 when refused, -1 on
//  another failure.
static int64_t
s_scrape_once (const char *address)
{
    char host[64];
    snprintf (host, sizeof host, "%s", address);
    char *colon = strrchr (host, ':');
    if (!colon)
        return -1;
    *colon = 0;
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons (atoi (colon + 1)) };
    if (inet_pton (AF_INET, host, &peer.sin_addr) != 1)
        return -1;
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval timeout = { 5, 0 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (connect (fd, (struct sockaddr *) &peer, sizeof peer) != 0) {
        close (fd);
        return errno == ECONNREFUSED ? 0 : -1;
    }
    const char *request = "GET /metrics HTTP/1.0\r\nHost: zcqrs\r\n\r\n";
    int64_t total = 0;
    char buffer[16384], head[16] = "";
    if (send (fd, request, strlen (request), MSG_NOSIGNAL) == (ssize_t) strlen (request)) {
        ssize_t got;
        while ((got = recv (fd, buffer, sizeof buffer, 0)) > 0) {
            if (total == 0)
                snprintf (head, sizeof head, "%.12s", buffer);
            total += got;
        }
    }
    close (fd);
    return strncmp (head, "HTTP/1.1 200", 12) == 0 || strncmp (head, "HTTP/1.0 200", 12) == 0
             ? total
             : -1;
}

static void *
s_scraper_run (void *arg)
{
    while (!atomic_load (&s_scraper.stop)) {
        char address[64];
        pthread_mutex_lock (&s_scraper.lock);
        snprintf (address, sizeof address, "%s", s_scraper.address);
        pthread_mutex_unlock (&s_scraper.lock);
        if (address[0]) {
            int64_t bytes = s_scrape_once (address);
            if (bytes > 0) {
                atomic_fetch_add (&s_scraper.scrapes, 1);
                atomic_fetch_add (&s_scraper.bytes, (uint64_t) bytes);
            }
            else if (bytes < 0)
                atomic_fetch_add (&s_scraper.failures, 1);
        }
        for (int tick = 0; tick < 10 && !atomic_load (&s_scraper.stop); tick++) {
            struct timespec pause = { 0, 100 * 1000000 };
            nanosleep (&pause, NULL);
        }
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  The node under test

zcq_node_t *
bench_node_start (const char *dir, const bench_node_options_t *options)
{
    zcq_config_t *config = zcq_config_new ();
    if (!config)
        return NULL;
    char shards[16], error[512];
    snprintf (shards, sizeof shards, "%d", options->shards);
    const char *settings[][2] = { { "data", dir },
                                  { "command", "tcp://127.0.0.1:*" },
                                  { "events", "tcp://127.0.0.1:*" },
                                  { "query", "tcp://127.0.0.1:*" },
                                  { "durability", zcq_durability_name (options->durability) },
                                  { "shards", shards },
                                  { "http", s_scraper.enabled ? "127.0.0.1:0" : "none" } };
    for (size_t index = 0; index < sizeof settings / sizeof settings[0]; index++)
        if (zcq_config_set (config, settings[index][0], settings[index][1], error, sizeof error)
            != ZCQ_OK) {
            fprintf (stderr, "zcqrs-bench: config %s: %s\n", settings[index][0], error);
            zcq_config_destroy (&config);
            return NULL;
        }
    zcq_node_t *node = NULL;
    if (zcq_node_start (&node, config, options->domain ? options->domain : zcq_bank_domain (),
                        error, sizeof error)
        != ZCQ_OK)
        fprintf (stderr, "zcqrs-bench: cannot start a node on %s: %s\n", dir, error);
    zcq_config_destroy (&config);
    if (node && zcq_node_http (node)) {
        pthread_mutex_lock (&s_scraper.lock);
        snprintf (s_scraper.address, sizeof s_scraper.address, "%s", zcq_node_http (node));
        pthread_mutex_unlock (&s_scraper.lock);
    }
    return node;
}

//  A small query on a synchronous client; the reply lives until the next
//  call. NULL on timeout or an error reply.
static const zcq_value_t *
s_ask (zcq_client_t *client, const char *op, const char *view)
{
    static uint64_t rid;
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_writer_map (writer, view ? 3 : 2);
    zcq_writer_str (writer, "op");
    zcq_writer_str (writer, op);
    zcq_writer_str (writer, "rid");
    zcq_writer_uint (writer, ++rid);
    if (view) {
        zcq_writer_str (writer, "view");
        zcq_writer_str (writer, view);
    }
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_call (client, ZCQ_ENDPOINT_QUERY, zcq_writer_data (writer),
                                     zcq_writer_size (writer), 5000, &reply);
    zcq_writer_destroy (&writer);
    if (err != ZCQ_OK || zcq_reply_status (reply) != ZCQ_OK)
        return NULL;
    return reply;
}

//  True when every view is live at the reply's head.
static bool
s_views_live (const zcq_value_t *reply, const char *only)
{
    uint64_t head = 0;
    if (!reply || !zcq_value_uint (zcq_value_get (reply, "head"), &head))
        return false;
    const zcq_value_t *views = zcq_value_get (reply, "views");
    for (size_t index = 0; index < zcq_value_size (views); index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        uint64_t position = 0;
        if (only && !zcq_value_streq (zcq_value_get (view, "name"), only))
            continue;
        if (!zcq_value_streq (zcq_value_get (view, "status"), "live")
            || !zcq_value_uint (zcq_value_get (view, "position"), &position) || position < head)
            return false;
    }
    return true;
}

double
bench_views_wait (const char *query_endpoint, double timeout_s)
{
    uint64_t started = bench_now_ns ();
    zcq_client_t *client = zcq_client_new (NULL, query_endpoint);
    if (!client)
        return -1;
    double waited = -1;
    struct timespec pause = { 0, 1000000 };
    while ((double) (bench_now_ns () - started) / 1e9 < timeout_s) {
        if (s_views_live (s_ask (client, "views", NULL), NULL)) {
            waited = (double) (bench_now_ns () - started) / 1e9;
            break;
        }
        nanosleep (&pause, NULL);
    }
    zcq_client_destroy (&client);
    return waited;
}

//  A node counter from `stats`, or -1.
static int64_t
s_stat (const char *query_endpoint, const char *name)
{
    zcq_client_t *client = zcq_client_new (NULL, query_endpoint);
    const zcq_value_t *reply = client ? s_ask (client, "stats", NULL) : NULL;
    int64_t value = reply ? zcq_value_get_int (zcq_value_get (reply, "stats"), name, -1) : -1;
    zcq_client_destroy (&client);
    return value;
}

static const char *
s_endpoint (zcq_node_t *node, zcq_endpoint_t which)
{
    return zcq_node_endpoint (node, which);
}

//  --------------------------------------------------------------------------
//  Load shapes shared by the sections

static void
s_load_init (s_suite_t *self, bench_load_t *load, zcq_node_t *node, const char *tag)
{
    bench_load_defaults (load);
    load->command_endpoint = s_endpoint (node, ZCQ_ENDPOINT_COMMAND);
    load->query_endpoint = s_endpoint (node, ZCQ_ENDPOINT_QUERY);
    load->window = self->options->window;
    load->clients = self->options->clients;
    load->warmup_s = self->options->warmup;
    load->seconds = self->options->seconds;
    load->probe_rate = self->options->probe_rate;
    load->tag = tag;
}

//  Look at a load result and note what looks wrong.
static void
s_check (s_suite_t *self, const char *what, json_t *result)
{
    if (!result) {
        s_note (self, "%s: the load could not run", what);
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach (json_object_get (result, "command_errors"), key, value)
        s_note (self, "%s: %lld commands answered '%s'", what,
                (long long) json_integer_value (value), key);
    json_object_foreach (json_object_get (result, "query_errors"), key, value)
        s_note (self, "%s: %lld queries answered '%s'", what,
                (long long) json_integer_value (value), key);
    static const char *counters[][2]
        = { { "unanswered", "requests got no reply within 10 s of the end" },
            { "ryw_stale", "read-your-writes probes saw a row older than the ack" },
            { "ryw_errors", "read-your-writes probes failed (timeout or error)" },
            { "bad_replies", "replies could not be matched to a request" } };
    for (size_t index = 0; index < sizeof counters / sizeof counters[0]; index++) {
        json_int_t count = json_integer_value (json_object_get (result, counters[index][0]));
        if (count > 0)
            s_note (self, "%s: %lld %s", what, (long long) count, counters[index][1]);
    }
}

//  --------------------------------------------------------------------------
//  Templates: a data dir with N accounts opened through the node

static const char *
s_template (s_suite_t *self, uint64_t accounts, bool as_left)
{
    int slot = -1;
    for (int index = 0; index < 3; index++) {
        if (self->templates[index] && self->template_accounts[index] == accounts)
            return self->templates[index];
        if (!self->templates[index] && slot < 0)
            slot = index;
    }
    if (slot < 0)
        return NULL;
    char name[64];
    snprintf (name, sizeof name, "accounts-%llu", (unsigned long long) accounts);
    char *dir = bench_dir_new (name);
    bench_node_options_t node_options = { ZCQ_DURABILITY_WAL, self->headline_shards, NULL };
    zcq_node_t *node = bench_node_start (dir, &node_options);
    if (!node) {
        free (dir);
        return NULL;
    }
    bench_log ("opening %llu accounts through the node (wal, %d shards)",
               (unsigned long long) accounts, self->headline_shards);
    bench_load_t load;
    s_load_init (self, &load, node, name);
    load.ops = BENCH_OPS_OPEN;
    load.accounts = accounts;
    load.warmup_s = 0;
    load.probe_rate = 0;
    json_t *result = bench_load_run (&load);
    s_check (self, name, result);
    double wait = bench_views_wait (s_endpoint (node, ZCQ_ENDPOINT_QUERY), 300);
    zcq_node_destroy (&node);
    if (result) {
        json_object_set_new (result, "accounts", json_integer ((json_int_t) accounts));
        json_object_set_new (result, "durability", json_string ("wal"));
        json_object_set_new (result, "shards", json_integer (self->headline_shards));
        json_object_set_new (result, "views_caught_up_after_s", json_real (wait));
        json_array_append_new (json_object_get (self->results, "open_accounts"), result);
        bench_log ("  %.0f opens/s, views caught up %.2f s after the last ack",
                   json_real_value (json_object_get (result, "commands_per_s")), wait);
    }
    //  A node leaves its last writes in RocksDB's WAL, and the next open
    //  replays and flushes them. The rebuild section measures that (as_left);
    //  every other use gets a template whose WAL was replayed once, here.
    if (!as_left) {
        zcq_store_t *store = NULL;
        zcq_store_options_t store_options;
        zcq_store_options_init (&store_options);
        uint64_t before = bench_now_ns ();
        if (zcq_store_open (&store, dir, &store_options, NULL, 0) == ZCQ_OK)
            zcq_store_close (&store);
        bench_log ("  store opened once to replay its WAL: %.3f s",
                   (double) (bench_now_ns () - before) / 1e9);
    }
    self->templates[slot] = dir;
    self->template_accounts[slot] = accounts;
    return dir;
}

//  --------------------------------------------------------------------------
//  Workload runs. Workloads on the same accounts share one node per
//  durability and shard count, one after the other: a node starts once per
//  group (copy of the accounts template, store open, views rebuilt), and
//  the open-loop sweep follows deposit-100k on its node.

static bool
s_is_headline (s_suite_t *self, size_t workload, zcq_durability_t durability, int shards)
{
    return workload == S_HEADLINE && durability == ZCQ_DURABILITY_WAL
        && shards == self->headline_shards;
}

//  What the quick suite keeps: deposit-100k on every shard count in wal and
//  at the headline shards in fsync; the rest in wal at the headline shards.
static bool
s_quick_keeps (s_suite_t *self, size_t workload, zcq_durability_t durability, int shards)
{
    if (workload == S_HEADLINE)
        return durability == ZCQ_DURABILITY_WAL || shards == self->headline_shards;
    return durability == ZCQ_DURABILITY_WAL && shards == self->headline_shards;
}

//  The accounts a workload runs on.
static uint64_t
s_accounts (s_suite_t *self, size_t workload)
{
    if (self->options->accounts && !s_workloads[workload].hot_key)
        return self->options->accounts;
    return s_workloads[workload].accounts;
}

//  What a closed data dir holds on disk for its events: all files, and
//  the SST and WAL files apart.
static json_t *
s_disk_entry (const char *dir, uint64_t events)
{
    uint64_t bytes = bench_dir_bytes (dir);
    return json_pack ("{s:I, s:I, s:I, s:I, s:f}", "events", (json_int_t) events, "bytes",
                      (json_int_t) bytes, "sst_bytes",
                      (json_int_t) bench_dir_bytes_matching (dir, ".sst"), "wal_bytes",
                      (json_int_t) bench_dir_bytes_matching (dir, ".log"), "bytes_per_event",
                      events ? (double) bytes / (double) events : 0.0);
}

//  One closed-loop (or --rate) run of a workload on a running node.
static json_t *
s_run_workload (s_suite_t *self, zcq_node_t *node, size_t workload_index,
                zcq_durability_t durability, int shards, double ready_s)
{
    const s_workload_t *workload = &s_workloads[workload_index];
    const char *query = s_endpoint (node, ZCQ_ENDPOINT_QUERY);
    char tag[96];
    snprintf (tag, sizeof tag, "%s-%s-%d-%llx", workload->name, zcq_durability_name (durability),
              shards, (unsigned long long) bench_now_ns ());
    bench_load_t load;
    s_load_init (self, &load, node, tag);
    load.accounts = s_accounts (self, workload_index);
    load.hot_key = workload->hot_key;
    load.query_share = workload->query_share;
    if (self->options->rate > 0) {
        load.loop = BENCH_OPEN_LOOP;
        load.rate = self->options->rate;
    }
    bench_monitor_t *monitor = bench_monitor_start (query, 20, load.warmup_s);
    json_t *result = bench_load_run (&load);
    json_t *lag = bench_monitor_stop (&monitor);
    char what[128];
    snprintf (what, sizeof what, "%s %s %d shards", workload->name,
              zcq_durability_name (durability), shards);
    s_check (self, what, result);
    if (!result) {
        json_decref (lag);
        return NULL;
    }
    json_t *run = json_object ();
    json_object_set_new (run, "workload", json_string (workload->name));
    json_object_set_new (run, "title", json_string (workload->title));
    json_object_set_new (run, "durability", json_string (zcq_durability_name (durability)));
    json_object_set_new (run, "shards", json_integer (shards));
    json_object_set_new (run, "accounts", json_integer ((json_int_t) load.accounts));
    json_object_set_new (run, "node_ready_s", json_real (ready_s));
    json_object_update (run, result);
    json_decref (result);
    if (lag) {
        double still = json_real_value (json_object_get (lag, "head_still_max_ms"));
        if (still >= 100)
            s_note (self,
                    "%s: the log head stood still for %.0f ms (from %.2f s into the load) while "
                    "commands were waiting; in that run the longest hiccup of the process was "
                    "%.0f ms, the slowest 4 KiB write of the disk probe %.1f ms and its slowest "
                    "fdatasync %.0f ms",
                    what, still, json_real_value (json_object_get (lag, "head_still_at_s")),
                    s_number (run, "hiccup.max") / 1000, s_number (run, "disk_write.max") / 1000,
                    s_number (run, "disk_sync.max") / 1000);
        json_t *series = json_incref (json_object_get (lag, "series"));
        json_object_del (lag, "series");
        json_object_set_new (run, "lag", lag);
        if (s_is_headline (self, workload_index, durability, shards))
            json_object_set_new (self->results, "lag_series",
                                 json_pack ("{s:s, s:s, s:i, s:o}", "workload", workload->name,
                                            "durability", zcq_durability_name (durability),
                                            "shards", shards, "series", series));
        else
            json_decref (series);
    }
    json_array_append_new (json_object_get (self->results, "runs"), run);
    json_t *ack = json_object_get (run, "ack");
    bench_log (
        "  %-13s %-5s %d shards: %9.0f commands/s %9.0f queries/s %5.1f cpu us/op %5.1f "
        "mallocs/op  ack p50 %.3f p99 %.3f ms  lag p99 %lld events",
        workload->name, zcq_durability_name (durability), shards,
        json_real_value (json_object_get (run, "commands_per_s")),
        json_real_value (json_object_get (run, "queries_per_s")),
        json_number_value (json_object_get (run, "cpu_us_per_op")),
        json_number_value (json_object_get (run, "mallocs_per_op")),
        json_real_value (json_object_get (ack, "p50")) / 1000,
        json_real_value (json_object_get (ack, "p99")) / 1000,
        (long long) json_integer_value (json_object_get (json_object_get (lag, "events"), "p99")));
    return run;
}

//  Open loop: latency against offered load, at fractions of the peak.
static void
s_run_open_loop (s_suite_t *self, zcq_node_t *node, zcq_durability_t durability, double peak)
{
    static const double full[] = { 0.1, 0.25, 0.5, 0.75, 0.9 };
    static const double quick[] = { 0.25, 0.5, 0.9 };
    const double *fractions = self->options->quick ? quick : full;
    size_t count = self->options->quick ? 3 : 5;
    for (size_t index = 0; index < count; index++) {
        char tag[64];
        snprintf (tag, sizeof tag, "open-%s-%zu-%llx", zcq_durability_name (durability), index,
                  (unsigned long long) bench_now_ns ());
        bench_load_t load;
        s_load_init (self, &load, node, tag);
        load.loop = BENCH_OPEN_LOOP;
        load.rate = peak * fractions[index];
        load.accounts = 100000;
        bench_monitor_t *monitor
            = bench_monitor_start (s_endpoint (node, ZCQ_ENDPOINT_QUERY), 20, load.warmup_s);
        json_t *result = bench_load_run (&load);
        json_t *lag = bench_monitor_stop (&monitor);
        char what[96];
        snprintf (what, sizeof what, "open-loop %s at %.0f%% of peak",
                  zcq_durability_name (durability), fractions[index] * 100);
        s_check (self, what, result);
        if (!result) {
            json_decref (lag);
            continue;
        }
        if (lag) {
            double still = json_real_value (json_object_get (lag, "head_still_max_ms"));
            if (still >= 100)
                s_note (self,
                        "%s: the log head stood still for %.0f ms (from %.2f s into the load) "
                        "while commands were waiting; in that run the longest hiccup of the "
                        "process was %.0f ms, the slowest 4 KiB write of the disk probe %.1f ms "
                        "and its slowest fdatasync %.0f ms",
                        what, still, json_real_value (json_object_get (lag, "head_still_at_s")),
                        s_number (result, "hiccup.max") / 1000,
                        s_number (result, "disk_write.max") / 1000,
                        s_number (result, "disk_sync.max") / 1000);
            json_object_del (lag, "series");
            json_object_set_new (result, "lag", lag);
        }
        json_object_set_new (result, "durability", json_string (zcq_durability_name (durability)));
        json_object_set_new (result, "shards", json_integer (self->headline_shards));
        json_object_set_new (result, "fraction", json_real (fractions[index]));
        json_object_set_new (result, "peak_per_s", json_real (peak));
        json_t *ack = json_object_get (result, "ack");
        bench_log ("  open loop %-5s %3.0f%% (%8.0f/s): achieved %8.0f/s, ack p50 %.3f p99 %.3f "
                   "p99.9 %.3f ms",
                   zcq_durability_name (durability), fractions[index] * 100, load.rate,
                   json_real_value (json_object_get (result, "commands_per_s")),
                   json_real_value (json_object_get (ack, "p50")) / 1000,
                   json_real_value (json_object_get (ack, "p99")) / 1000,
                   json_real_value (json_object_get (ack, "p999")) / 1000);
        json_array_append_new (json_object_get (self->results, "open_loop"), result);
    }
}

//  Start a node on a copy of the accounts template and run the given
//  workloads on it, then the open-loop sweep when asked.
//  A node just started has no aggregate in memory, and the first command to
//  each account loads it from the store. The runs measure the steady state:
//  one deposit to every account the shards' caches can hold, in order,
//  before the first run (the cold start is measured on its own).
static void
s_warm_cache (s_suite_t *self, zcq_node_t *node, uint64_t accounts, int shards)
{
    zcq_config_t *config = zcq_config_new ();
    const char *cache = config ? zcq_config_get (config, "cache") : NULL;
    uint64_t capacity = (cache ? strtoull (cache, NULL, 10) : 0) * (uint64_t) shards;
    zcq_config_destroy (&config);
    bench_load_t load;
    s_load_init (self, &load, node, "warm");
    load.ops = BENCH_OPS_TOUCH;
    load.accounts = accounts < capacity ? accounts : capacity;
    load.warmup_s = 0;
    load.probe_rate = 0;
    uint64_t started = bench_now_ns ();
    json_t *result = bench_load_run (&load);
    s_check (self, "warming the aggregate cache", result);
    bench_log ("  one deposit to each of %llu accounts to fill the aggregate cache: %.2f s",
               (unsigned long long) load.accounts, (double) (bench_now_ns () - started) / 1e9);
    json_decref (result);
}

static void
s_run_group (s_suite_t *self, uint64_t accounts, const size_t *workloads, size_t count,
             zcq_durability_t durability, int shards, bool open_loop)
{
    const char *template = s_template (self, accounts, false);
    if (!template) {
        s_note (self, "cannot make the %llu-account data dir", (unsigned long long) accounts);
        return;
    }
    char name[64];
    snprintf (name, sizeof name, "run-%llu", (unsigned long long) accounts);
    char *dir = bench_dir_new (name);
    if (bench_dir_copy (template, dir) != 0) {
        s_note (self, "cannot copy the %llu-account data dir", (unsigned long long) accounts);
        free (dir);
        return;
    }
    bench_node_options_t node_options = { durability, shards, NULL };
    uint64_t started = bench_now_ns ();
    zcq_node_t *node = bench_node_start (dir, &node_options);
    if (!node) {
        s_note (self, "the node did not start (%s, %d shards)", zcq_durability_name (durability),
                shards);
        bench_dir_remove (dir);
        free (dir);
        return;
    }
    double start_s = (double) (bench_now_ns () - started) / 1e9;
    double views_s = bench_views_wait (s_endpoint (node, ZCQ_ENDPOINT_QUERY), 600);
    double ready_s = (double) (bench_now_ns () - started) / 1e9;
    bench_log ("node: %s, %d shards, %llu accounts: started in %.3f s, views live after %.3f s",
               zcq_durability_name (durability), shards, (unsigned long long) accounts, start_s,
               ready_s);
    if (views_s < 0)
        s_note (self, "the views of a %llu-account node did not catch up in 600 s",
                (unsigned long long) accounts);
    s_warm_cache (self, node, accounts, shards);
    double peak = 0;
    bool headline_group = false;
    for (size_t index = 0; index < count; index++) {
        json_t *run = s_run_workload (self, node, workloads[index], durability, shards, ready_s);
        if (run && workloads[index] == S_HEADLINE)
            peak = json_real_value (json_object_get (run, "commands_per_s"));
        if (s_is_headline (self, workloads[index], durability, shards))
            headline_group = true;
    }
    if (open_loop && peak > 0) {
        bench_log ("open loop: deposit-100k, latency against offered load (%s)",
                   zcq_durability_name (durability));
        s_run_open_loop (self, node, durability, peak);
    }
    else if (open_loop)
        s_note (self, "open loop %s: no closed-loop peak to scale the rates from",
                zcq_durability_name (durability));
    uint64_t head = zcq_node_head (node);
    zcq_node_destroy (&node);
    if (headline_group && head)
        json_object_set_new (json_object_get (self->results, "disk"), "after_headline_run",
                             s_disk_entry (dir, head));
    bench_dir_remove (dir);
    free (dir);
}

//  Every selected workload in every durability and shard count.
static void
s_run_matrix (s_suite_t *self)
{
    s_options_t *options = self->options;
    bool open_loop = options->sections[1] && options->rate <= 0;
    for (int mode = 0; mode < options->durability_count; mode++) {
        zcq_durability_t durability = options->durabilities[mode];
        for (int shard = 0; shard < options->shard_count; shard++) {
            int shards = options->shards[shard];
            //  the groups, by account count, in the order of first appearance
            uint64_t done[S_WORKLOADS];
            size_t groups = 0;
            for (size_t first = 0; first < S_WORKLOADS; first++) {
                uint64_t accounts = s_accounts (self, first);
                bool seen = false;
                for (size_t group = 0; group < groups; group++)
                    seen = seen || done[group] == accounts;
                if (seen)
                    continue;
                done[groups++] = accounts;
                size_t members[S_WORKLOADS], count = 0;
                bool with_open_loop = false;
                for (size_t workload = 0; workload < S_WORKLOADS; workload++) {
                    if (s_accounts (self, workload) != accounts)
                        continue;
                    bool wanted = options->selected[workload];
                    if (options->quick
                        && (s_workloads[workload].accounts >= 1000000
                            || !s_quick_keeps (self, workload, durability, shards)))
                        wanted = false;
                    //  the open-loop sweep needs deposit-100k's peak first
                    if (workload == S_HEADLINE && open_loop && shards == self->headline_shards) {
                        wanted = true;
                        with_open_loop = true;
                    }
                    if (wanted)
                        members[count++] = workload;
                }
                if (count)
                    s_run_group (self, accounts, members, count, durability, shards,
                                 with_open_loop);
            }
        }
    }
}

//  --------------------------------------------------------------------------
//  Baselines

static void
s_run_baselines (s_suite_t *self)
{
    json_t *baselines = json_object_get (self->results, "baselines");
    bench_load_t load;
    bench_load_defaults (&load);
    load.window = self->options->window;
    load.clients = self->options->clients;
    load.warmup_s = self->options->warmup;
    load.seconds = self->options->seconds;
    load.tag = "echo";
    bench_log ("baseline: raw ZeroMQ DEALER/ROUTER echo, window %d", load.window);
    json_t *zmq = bench_baseline_zmq (&load);
    if (zmq) {
        bench_log ("  %.0f round trips/s, p99 %.3f ms",
                   json_real_value (json_object_get (zmq, "commands_per_s")),
                   json_real_value (json_object_get (json_object_get (zmq, "ack"), "p99")) / 1000);
        json_object_set_new (baselines, "zmq", zmq);
    }
    json_t *rocksdb = json_object ();
    json_t *postgres = json_object ();
    for (int index = 0; index < self->options->durability_count; index++) {
        zcq_durability_t durability = self->options->durabilities[index];
        const char *name = zcq_durability_name (durability);
        bench_log ("baseline: raw RocksDB WriteBatch appends of %d events, %s", load.window, name);
        json_t *raw
            = bench_baseline_rocksdb (durability, load.window, self->options->seconds, false);
        if (raw) {
            bench_log ("  %.0f events/s", json_real_value (json_object_get (raw, "events_per_s")));
            json_object_set_new (rocksdb, name, raw);
        }
        bench_log ("baseline: raw RocksDB, each event with its stream index entry and command "
                   "id, %s",
                   name);
        raw = bench_baseline_rocksdb (durability, load.window, self->options->seconds, true);
        if (raw) {
            bench_log ("  %.0f events/s, %.1f us of CPU each",
                       json_real_value (json_object_get (raw, "events_per_s")),
                       json_real_value (json_object_get (raw, "cpu_us_per_event")));
            char indexed[32];
            snprintf (indexed, sizeof indexed, "%s_indexed", name);
            json_object_set_new (rocksdb, indexed, raw);
        }
        //  PostgreSQL is driven with several connection counts (group
        //  commit needs many for fsync, few are best without it): the best
        //  one is the baseline, the others stay in `sweep`
        json_t *best = NULL, *sweep = json_array ();
        for (int attempt = 0; attempt < self->options->pg_connection_count; attempt++) {
            int connections = self->options->pg_connections[attempt];
            bench_log ("baseline: PostgreSQL event store, synchronous_commit %s, %d connections",
                       durability == ZCQ_DURABILITY_FSYNC ? "on" : "off", connections);
            json_t *pg = bench_baseline_pg (self->options->pg, durability, 100000, load.window,
                                            connections, self->options->seconds);
            if (!json_is_true (json_object_get (pg, "available"))) {
                bench_log ("  absent: %s", json_string_value (json_object_get (pg, "reason")));
                if (!best)
                    best = pg;
                else
                    json_decref (pg);
                if (attempt == 0)
                    break; //  no server: no point trying other counts
                continue;
            }
            double rate = json_real_value (json_object_get (pg, "commands_per_s"));
            bench_log ("  %.0f commands/s, p99 %.3f ms", rate,
                       json_real_value (json_object_get (json_object_get (pg, "ack"), "p99"))
                           / 1000);
            json_array_append_new (sweep, json_pack ("{s:i, s:f, s:O}", "connections", connections,
                                                     "commands_per_s", rate, "ack",
                                                     json_object_get (pg, "ack")));
            if (!best || !json_is_true (json_object_get (best, "available"))
                || rate > json_real_value (json_object_get (best, "commands_per_s"))) {
                json_decref (best);
                best = pg;
            }
            else
                json_decref (pg);
        }
        json_t *pg = best ? best : json_pack ("{s:b, s:s}", "available", 0, "reason", "not run");
        if (json_array_size (sweep))
            json_object_set (pg, "sweep", sweep);
        json_decref (sweep);
        json_object_set_new (postgres, name, pg);
    }
    json_object_set_new (baselines, "rocksdb", rocksdb);
    json_object_set_new (baselines, "postgres", postgres);
}

//  --------------------------------------------------------------------------
//  Rebuild, cold start, memory, disk

//  Start a node on dir and wait for its views: seconds to open and to have
//  every view live (cold start); the node is left running in *node_p.
static bool
s_cold_start (s_suite_t *self, const char *dir, zcq_node_t **node_p, double *open_s, double *cold_s,
              uint64_t *events)
{
    bench_node_options_t node_options = { ZCQ_DURABILITY_WAL, self->headline_shards, NULL };
    uint64_t started = bench_now_ns ();
    *node_p = bench_node_start (dir, &node_options);
    if (!*node_p) {
        s_note (self, "rebuild: the node did not start on %s", dir);
        return false;
    }
    *open_s = (double) (bench_now_ns () - started) / 1e9;
    double views = bench_views_wait (s_endpoint (*node_p, ZCQ_ENDPOINT_QUERY), 900);
    *cold_s = (double) (bench_now_ns () - started) / 1e9;
    *events = zcq_node_head (*node_p);
    if (views < 0) {
        s_note (self, "rebuild: the views did not catch up with %llu events in 900 s",
                (unsigned long long) *events);
        return false;
    }
    return true;
}

//  Cold start on dir, as the node that wrote it left it (a clean shutdown)
//  and once more; then, with rebuild, a rebuild of the accounts view on the
//  running node. Fills entry.
static void
s_measure_rebuild (s_suite_t *self, const char *dir, json_t *entry, bool rebuild)
{
    zcq_node_t *node = NULL;
    double open_s = 0, cold_s = 0;
    uint64_t events = 0;
    uint64_t wal_bytes = bench_dir_bytes_matching (dir, ".log");
    json_object_set_new (entry, "wal_bytes_at_open", json_integer ((json_int_t) wal_bytes));
    bool live = s_cold_start (self, dir, &node, &open_s, &cold_s, &events);
    json_object_set_new (entry, "events", json_integer ((json_int_t) events));
    json_object_set_new (entry, "open_s", json_real (open_s));
    if (live) {
        json_object_set_new (entry, "cold_start_s", json_real (cold_s));
        json_object_set_new (entry, "cold_events_per_s", json_real (events / cold_s));
    }
    bench_log ("  %llu events: cold start %.3f s (store open %.3f s, then views live)",
               (unsigned long long) events, cold_s, open_s);
    zcq_node_destroy (&node);
    //  the read side's limit on the same dir, while no node holds it: a raw
    //  RocksDB scan of the log (the best of three)
    json_t *scan = bench_baseline_scan (dir, 3);
    double scan_rate = scan ? json_real_value (json_object_get (scan, "events_per_s")) : 0;
    if (scan) {
        json_object_set_new (entry, "raw_scan", scan);
        bench_log ("  raw RocksDB scan of the log: %.0f events/s", scan_rate);
    }
    else
        s_note (self, "rebuild: the raw RocksDB scan of %s failed", dir);
    if (!rebuild || !live)
        return;
    //  the second open finds the store as the first one left it
    if (!s_cold_start (self, dir, &node, &open_s, &cold_s, &events)) {
        zcq_node_destroy (&node);
        return;
    }
    json_object_set_new (entry, "open_again_s", json_real (open_s));
    json_object_set_new (entry, "cold_start_again_s", json_real (cold_s));
    bench_log ("  again: cold start %.3f s (store open %.3f s)", cold_s, open_s);
    double first_open = json_real_value (json_object_get (entry, "open_s"));
    if (first_open > 0.5 && first_open > 3 * open_s)
        s_note (self,
                "store open right after the writing node's clean shutdown took %.3f s, the next "
                "open %.3f s: the data dir held %.1f MiB of RocksDB WAL (*.log) at the first "
                "open, replayed and flushed there, so a restart pays for the writes the last "
                "run left unflushed (%llu events)",
                first_open, open_s, (double) wal_bytes / 1048576.0, (unsigned long long) events);
    //  a rebuild of `accounts` while the node runs
    zcq_client_t *client = zcq_client_new (NULL, s_endpoint (node, ZCQ_ENDPOINT_QUERY));
    //  the machine may be shared: what other processes took meanwhile, and
    //  the CPU this process spent (the rebuild is one thread's work)
    bench_cpu_t cpu;
    bench_cpu_start (&cpu);
    double cpu_started = bench_process_cpu_s ();
    uint64_t rebuild_started = bench_now_ns ();
    if (client && s_ask (client, "rebuild", "accounts")) {
        bool done = false;
        struct timespec pause = { 0, 1000000 };
        while (!done && bench_now_ns () - rebuild_started < 900000000000ull) {
            done = s_views_live (s_ask (client, "views", NULL), "accounts");
            if (!done)
                nanosleep (&pause, NULL);
        }
        double seconds = (double) (bench_now_ns () - rebuild_started) / 1e9;
        double cpu_s = bench_process_cpu_s () - cpu_started, others = bench_cpu_others (&cpu, NULL);
        json_object_set_new (entry, "rebuild_cpu_s", json_real (cpu_s));
        json_object_set_new (entry, "rebuild_other_cpu", json_real (others));
        bench_log ("  rebuild: %.3f s of this process's CPU; other processes used %.2f cores",
                   cpu_s, others);
        if (done) {
            json_object_set_new (entry, "rebuild_s", json_real (seconds));
            json_object_set_new (entry, "rebuild_events_per_s", json_real (events / seconds));
            bench_log ("  rebuild of accounts: %.3f s (%.0f events/s)", seconds, events / seconds);
            if (scan_rate > 0) {
                json_object_set_new (entry, "rebuild_per_raw_scan",
                                     json_real (events / seconds / scan_rate));
                bench_log ("  rebuild / raw scan: %.3f", events / seconds / scan_rate);
            }
        }
        else
            s_note (self, "rebuild: the accounts view did not come back live in 900 s");
    }
    else
        s_note (self, "rebuild: the node refused `rebuild` of the accounts view");
    zcq_client_destroy (&client);
    zcq_node_destroy (&node);
    //  the cold starts above load the view snapshots the stops left; this
    //  one has none and rebuilds every view from the log
    char views[1200];
    snprintf (views, sizeof views, "%s/views", dir);
    bench_dir_purge (views); //  (even with --keep: the figure needs them gone)
    if (s_cold_start (self, dir, &node, &open_s, &cold_s, &events)) {
        json_object_set_new (entry, "cold_start_replay_s", json_real (cold_s));
        json_object_set_new (entry, "cold_replay_events_per_s", json_real (events / cold_s));
        bench_log ("  without view snapshots: cold start %.3f s (%.0f events/s)", cold_s,
                   events / cold_s);
        if (scan_rate > 0)
            json_object_set_new (entry, "cold_replay_per_raw_scan",
                                 json_real (events / cold_s / scan_rate));
    }
    zcq_node_destroy (&node);
}

//  The memory probe, run as a child process (`zcqrs-bench --rss-probe DIR`)
//  so that nothing this process allocated before blurs the figure: start a
//  node on dir, wait for its views, print "rss_before rss_after rows
//  table_bytes".
static int
s_rss_probe (const char *dir)
{
    uint64_t before = bench_rss_bytes ();
    bench_node_options_t node_options = { ZCQ_DURABILITY_WAL, 2, NULL };
    zcq_node_t *node = bench_node_start (dir, &node_options);
    if (!node)
        return 1;
    const char *query = s_endpoint (node, ZCQ_ENDPOINT_QUERY);
    if (bench_views_wait (query, 600) < 0) {
        zcq_node_destroy (&node);
        return 1;
    }
    uint64_t after = bench_rss_bytes ();
    int64_t rows = s_stat (query, "view.accounts.rows") + s_stat (query, "view.totals.rows");
    int64_t tables
        = s_stat (query, "view.accounts.memory_bytes") + s_stat (query, "view.totals.memory_bytes");
    printf ("%llu %llu %lld %lld\n", (unsigned long long) before, (unsigned long long) after,
            (long long) rows, (long long) tables);
    fflush (stdout);
    zcq_node_destroy (&node);
    return 0;
}

//  Run the memory probe on dir; false when it failed.
static bool
s_probe_memory (const char *dir, uint64_t *before, uint64_t *after, int64_t *rows, int64_t *tables)
{
    char self_path[1024], command[2400];
    ssize_t len = readlink ("/proc/self/exe", self_path, sizeof self_path - 1);
    if (len <= 0)
        return false;
    self_path[len] = 0;
    snprintf (command, sizeof command, "'%s' --rss-probe '%s' 2>/dev/null", self_path, dir);
    FILE *child = popen (command, "r");
    if (!child)
        return false;
    unsigned long long first = 0, second = 0;
    long long count = 0, bytes = 0;
    int fields = fscanf (child, "%llu %llu %lld %lld", &first, &second, &count, &bytes);
    int status = pclose (child);
    *before = first;
    *after = second;
    *rows = count;
    *tables = bytes;
    return fields == 4 && status == 0;
}

//  RSS per 1M view rows: a node on dir against a node on an empty dir,
//  each in a fresh process.
static void
s_measure_memory (s_suite_t *self, const char *dir, json_t *memory)
{
    char *empty = bench_dir_new ("empty");
    uint64_t before, after, empty_before, empty_after;
    int64_t rows, tables, empty_rows, empty_tables;
    bool ok = s_probe_memory (empty, &empty_before, &empty_after, &empty_rows, &empty_tables)
           && s_probe_memory (dir, &before, &after, &rows, &tables);
    bench_dir_remove (empty);
    free (empty);
    if (!ok || rows <= 0) {
        s_note (self, "memory: the RSS probe failed");
        return;
    }
    double grown
        = ((double) after - (double) before) - ((double) empty_after - (double) empty_before);
    json_object_set_new (memory, "rows", json_integer (rows));
    json_object_set_new (memory, "rss_grown", json_integer ((json_int_t) (after - before)));
    json_object_set_new (memory, "rss_empty_node",
                         json_integer ((json_int_t) (empty_after - empty_before)));
    json_object_set_new (memory, "bytes_per_1m_rows", json_real (grown / (double) rows * 1e6));
    json_object_set_new (memory, "table_bytes_per_1m_rows",
                         json_real ((double) tables / (double) rows * 1e6));
    bench_log ("  memory: %.0f MiB RSS per 1M view rows (%.0f MiB counted by the tables)",
               grown / (double) rows * 1e6 / 1048576.0,
               (double) tables / (double) rows * 1e6 / 1048576.0);
}

static void
s_run_rebuild (s_suite_t *self)
{
    json_t *rebuilds = json_object_get (self->results, "rebuild");
    if (self->options->rebuild_dir) {
        //  the same data, run after run: a copy of the given dir
        char *copy = bench_dir_new ("given");
        if (bench_dir_copy (self->options->rebuild_dir, copy) != 0) {
            s_note (self, "rebuild: cannot copy %s", self->options->rebuild_dir);
            free (copy);
            return;
        }
        json_t *entry = json_pack ("{s:s}", "source", "given data dir");
        bench_log ("rebuild: a copy of %s", self->options->rebuild_dir);
        s_measure_rebuild (self, copy, entry, true);
        json_array_append_new (rebuilds, entry);
        bench_dir_remove (copy);
        free (copy);
        return;
    }
    //  a log the node wrote: 1M opened accounts (quick: 100k)
    uint64_t accounts = self->options->quick ? 100000 : 1000000;
    const char *template = s_template (self, accounts, true);
    if (template) {
        json_t *disk = s_disk_entry (template, accounts);
        json_t *entry = json_pack ("{s:s}", "source", "node (opened accounts)");
        json_t *memory = json_object ();

        bench_log ("rebuild: %llu events written by the node", (unsigned long long) accounts);
        s_measure_rebuild (self, template, entry, true);
        s_measure_memory (self, template, memory);
        json_object_set_new (json_object_get (self->results, "disk"), "opened_accounts", disk);
        json_object_set_new (self->results, "memory", memory);
        json_array_append_new (rebuilds, entry);
    }
    //  a larger log written straight through the store: 1M accounts x 10
    //  (quick: 10k x 10)
    uint64_t synthetic_accounts = self->options->quick ? 10000 : 1000000;
    char *dir = bench_dir_new ("synthetic");
    bench_log ("rebuild: writing %llu events through the store",
               (unsigned long long) synthetic_accounts * 10);
    double written = bench_dataset_write (dir, synthetic_accounts, 10);
    if (written > 0) {
        uint64_t events = synthetic_accounts * 10;
        json_t *entry = json_pack ("{s:s, s:f, s:f}", "source",
                                   "store (accounts x 10 events, no command ids)", "write_s",
                                   written, "write_events_per_s", events / written);
        bench_log ("  written in %.2f s (%.0f events/s)", written, events / written);
        json_object_set_new (json_object_get (self->results, "disk"), "synthetic",
                             s_disk_entry (dir, events));
        s_measure_rebuild (self, dir, entry, false);
        json_array_append_new (rebuilds, entry);
    }
    else
        s_note (self, "rebuild: writing the synthetic log failed");
    bench_dir_remove (dir);
    free (dir);
}

//  --------------------------------------------------------------------------
//  Aggregate load with and without a snapshot

//  The bank domain with another snapshot schema: its snapshots are
//  ignored, so an aggregate is replayed from its first event.
static const zcq_domain_t *
s_domain_without_snapshots (void)
{
    static zcq_aggregate_def_t account;
    static const zcq_aggregate_def_t *aggregates[2];
    static zcq_domain_t domain;
    const zcq_domain_t *bank = zcq_bank_domain ();
    account = *bank->aggregates[0];
    account.schema += 1000;
    aggregates[0] = &account;
    aggregates[1] = NULL;
    domain = *bank;
    domain.aggregates = aggregates;
    return &domain;
}

//  One deposit to account "0"; milliseconds to its ack, or -1.
static double
s_timed_deposit (zcq_client_t *client)
{
    zcq_writer_t *data = zcq_writer_new ();
    zcq_writer_map (data, 1);
    zcq_writer_str (data, "amount");
    zcq_writer_int (data, 1);
    zcq_command_req_t command = { .aggregate = "account",
                                  .key = "0",
                                  .type = "deposit",
                                  .data = zcq_writer_data (data),
                                  .data_len = zcq_writer_size (data) };
    const zcq_value_t *reply = NULL;
    uint64_t started = bench_now_ns ();
    zcq_err_t err = zcq_client_command (client, &command, 10000, &reply);
    double elapsed = (double) (bench_now_ns () - started) / 1e6;
    zcq_writer_destroy (&data);
    return err == ZCQ_OK && zcq_reply_status (reply) == ZCQ_OK ? elapsed : -1;
}

static void
s_run_snapshot (s_suite_t *self)
{
    const uint64_t stream_events = 10000;
    char *dir = bench_dir_new ("snapshot");
    bench_node_options_t node_options = { ZCQ_DURABILITY_WAL, 1, NULL };
    zcq_node_t *node = bench_node_start (dir, &node_options);
    if (!node) {
        free (dir);
        return;
    }
    bench_log ("snapshot: one stream of %llu events", (unsigned long long) stream_events);
    bench_load_t load;
    s_load_init (self, &load, node, "snapshot-open");
    load.ops = BENCH_OPS_OPEN;
    load.accounts = 1;
    load.warmup_s = 0;
    load.probe_rate = 0;
    json_decref (bench_load_run (&load));
    //  one command at a time (window 1) would take long; pipeline them
    s_load_init (self, &load, node, "snapshot-deposit");
    load.hot_key = true;
    load.accounts = 1;
    load.warmup_s = 0;
    load.probe_rate = 0;
    load.seconds = 120;
    load.max_ops = stream_events - 1;
    json_t *filled = bench_load_run (&load);
    s_check (self, "snapshot: filling the stream", filled);
    json_decref (filled);
    int64_t snapshots = s_stat (s_endpoint (node, ZCQ_ENDPOINT_QUERY), "snapshots_written");
    zcq_node_destroy (&node);

    json_t *entry = json_object ();
    json_object_set_new (entry, "stream_events", json_integer ((json_int_t) stream_events));
    json_object_set_new (entry, "snapshots_written", json_integer (snapshots));
    const char *names[2] = { "with_snapshot", "without_snapshot" };
    const zcq_domain_t *domains[2] = { NULL, s_domain_without_snapshots () };
    for (int variant = 0; variant < 2; variant++) {
        bench_hist_t *cold = bench_hist_new (), *warm = bench_hist_new ();
        for (int trial = 0; trial < 3; trial++) {
            node_options.domain = domains[variant];
            node = bench_node_start (dir, &node_options);
            if (!node)
                break;
            bench_views_wait (s_endpoint (node, ZCQ_ENDPOINT_QUERY), 120);
            zcq_client_t *client = zcq_client_new (s_endpoint (node, ZCQ_ENDPOINT_COMMAND), NULL);
            double first = client ? s_timed_deposit (client) : -1;
            double second = client ? s_timed_deposit (client) : -1;
            zcq_client_destroy (&client);
            zcq_node_destroy (&node);
            if (first >= 0 && second >= 0) {
                bench_hist_record (cold, (uint64_t) (first * 1e6));
                bench_hist_record (warm, (uint64_t) (second * 1e6));
            }
        }
        json_t *figures = json_object ();
        json_object_set_new (figures, "first_command_ms",
                             json_real (bench_hist_percentile (cold, 50) / 1e6));
        json_object_set_new (figures, "warm_command_ms",
                             json_real (bench_hist_percentile (warm, 50) / 1e6));
        json_object_set_new (figures, "load_ms",
                             json_real ((double) bench_hist_percentile (cold, 50) / 1e6
                                        - (double) bench_hist_percentile (warm, 50) / 1e6));
        json_object_set_new (figures, "trials",
                             json_integer ((json_int_t) bench_hist_count (cold)));
        json_object_set_new (entry, names[variant], figures);
        bench_log ("  %s: first command %.3f ms, next %.3f ms (median of %llu)", names[variant],
                   bench_hist_percentile (cold, 50) / 1e6, bench_hist_percentile (warm, 50) / 1e6,
                   (unsigned long long) bench_hist_count (cold));
        bench_hist_destroy (&cold);
        bench_hist_destroy (&warm);
    }
    json_object_set_new (self->results, "snapshot", entry);
    bench_dir_remove (dir);
    free (dir);
}

//  --------------------------------------------------------------------------
//  The cluster section (cluster.c): the same deposit load as deposit-100k

static void
s_run_cluster (s_suite_t *self)
{
    bench_load_t load;
    bench_load_defaults (&load);
    load.window = self->options->window;
    load.clients = self->options->clients;
    load.warmup_s = self->options->warmup;
    load.seconds = self->options->seconds;
    bench_cluster_t cluster = { .load = &load,
                                .accounts = s_accounts (self, S_HEADLINE),
                                .groups = self->options->groups,
                                .durability = self->options->durabilities[0],
                                .shards = self->headline_shards,
                                .zk_script = BENCH_ZK_SCRIPT,
                                .views = self->options->cluster_views };
    bench_log ("cluster: %d groups against one node, %llu accounts", cluster.groups,
               (unsigned long long) cluster.accounts);
    json_t *result = bench_cluster_run (&cluster);
    if (!result) {
        s_note (self, "cluster: the section could not run (reason above)");
        return;
    }
    const char *key;
    json_t *run;
    json_object_foreach (json_object_get (result, "runs"), key, run) {
        char what[64];
        snprintf (what, sizeof what, "cluster %s", key);
        s_check (self, what, run);
    }
    json_object_set_new (self->results, "cluster", result);
}

//  --------------------------------------------------------------------------
//  Targets of the issue, checked against what was measured

static json_t *
s_find_run (json_t *results, const char *workload, const char *durability, int shards)
{
    size_t index;
    json_t *run;
    json_array_foreach (json_object_get (results, "runs"), index, run) {
        if (streq (json_string_value (json_object_get (run, "workload")), workload)
            && streq (json_string_value (json_object_get (run, "durability")), durability)
            && json_integer_value (json_object_get (run, "shards")) == shards
            && streq (json_string_value (json_object_get (run, "loop")), "closed"))
            return run;
    }
    return NULL;
}

static json_t *
s_find_open_loop (json_t *results, const char *durability, double fraction)
{
    size_t index;
    json_t *run;
    json_array_foreach (json_object_get (results, "open_loop"), index, run) {
        if (streq (json_string_value (json_object_get (run, "durability")), durability)
            && json_real_value (json_object_get (run, "fraction")) > fraction - 0.01
            && json_real_value (json_object_get (run, "fraction")) < fraction + 0.01)
            return run;
    }
    return NULL;
}

static double
s_number (json_t *object, const char *path)
{
    //  a dotted path: "ack.p99"
    char copy[128], *save = NULL;
    snprintf (copy, sizeof copy, "%s", path);
    json_t *value = object;
    for (char *key = strtok_r (copy, ".", &save); key && value; key = strtok_r (NULL, ".", &save))
        value = json_object_get (value, key);
    return value && json_is_number (value) ? json_number_value (value) : -1;
}

static void
s_target (json_t *targets, const char *name, const char *goal, double measured, double limit,
          bool at_least, const char *unit, const char *note)
{
    json_t *target = json_object ();
    json_object_set_new (target, "name", json_string (name));
    json_object_set_new (target, "target", json_string (goal));
    json_object_set_new (target, "unit", json_string (unit));
    if (measured >= 0) {
        json_object_set_new (target, "measured", json_real (measured));
        json_object_set_new (target, "pass",
                             json_boolean (at_least ? measured >= limit : measured < limit));
    }
    else
        json_object_set_new (target, "pass", json_null ());
    if (note)
        json_object_set_new (target, "note", json_string (note));
    json_array_append_new (targets, target);
}

static void
s_check_targets (s_suite_t *self)
{
    json_t *results = self->results, *targets = json_array ();
    int shards = self->headline_shards;
    json_t *wal = s_find_run (results, "deposit-100k", "wal", shards);
    json_t *fsync = s_find_run (results, "deposit-100k", "fsync", shards);
    json_t *baselines = json_object_get (results, "baselines");
    double wal_rate = wal ? s_number (wal, "commands_per_s") : -1;
    double fsync_rate = fsync ? s_number (fsync, "commands_per_s") : -1;
    double zmq_rate = s_number (baselines, "zmq.commands_per_s");
    double pg_rate = s_number (baselines, "postgres.fsync.commands_per_s");
    s_target (targets, "wal commands/s", ">= 300,000", wal_rate, 300000, true, "/s", NULL);
    s_target (targets, "wal / raw ZeroMQ round trips", ">= 25%",
              wal_rate >= 0 && zmq_rate > 0 ? 100 * wal_rate / zmq_rate : -1, 25, true, "%", NULL);
    s_target (targets, "fsync commands/s", ">= 200,000", fsync_rate, 200000, true, "/s", NULL);
    s_target (targets, "fsync / wal", ">= 60%",
              fsync_rate >= 0 && wal_rate > 0 ? 100 * fsync_rate / wal_rate : -1, 60, true, "%",
              NULL);
    s_target (targets, "fsync / PostgreSQL (synchronous_commit on)", ">= 10x",
              fsync_rate >= 0 && pg_rate > 0 ? fsync_rate / pg_rate : -1, 10, true, "x",
              pg_rate > 0 ? NULL : "PostgreSQL baseline absent");
    json_t *half_wal = s_find_open_loop (results, "wal", 0.5);
    json_t *half_fsync = s_find_open_loop (results, "fsync", 0.5);
    s_target (targets, "wal ack p99 at 50% of peak", "< 1 ms",
              half_wal ? s_number (half_wal, "ack.p99") / 1000 : -1, 1.0, false, "ms", NULL);
    s_target (targets, "fsync ack p99 at 50% of peak", "< 2 ms",
              half_fsync ? s_number (half_fsync, "ack.p99") / 1000 : -1, 2.0, false, "ms", NULL);
    s_target (targets, "read-your-writes p99 (wal, 50% of peak)", "< 2 ms",
              half_wal ? s_number (half_wal, "ryw.p99") / 1000 : -1, 2.0, false, "ms", NULL);
    //  the rebuild and the cold start of the log the node wrote
    double rebuild_rate = -1, rebuild_events = 0, cold_1m = -1, cold_events = 0, cold_s = -1;
    size_t index;
    json_t *entry;
    json_array_foreach (json_object_get (results, "rebuild"), index, entry) {
        if (strncmp (json_string_value (json_object_get (entry, "source")), "node", 4) != 0)
            continue;
        rebuild_events = cold_events = s_number (entry, "events");
        rebuild_rate = s_number (entry, "rebuild_events_per_s");
        cold_s = s_number (entry, "cold_start_s");
        if (cold_events >= 1000000)
            cold_1m = cold_s;
    }
    char note[160] = "";
    if (rebuild_rate >= 0 && rebuild_events < 1000000)
        snprintf (note, sizeof note, "measured on %.0f events (quick run)", rebuild_events);
    s_target (targets, "rebuild of accounts", ">= 2,000,000 events/s", rebuild_rate, 2000000, true,
              "/s", note[0] ? note : NULL);
    note[0] = 0;
    if (cold_1m < 0 && cold_s >= 0)
        snprintf (note, sizeof note, "not measured at 1M (quick run): %.0f events took %.3f s",
                  cold_events, cold_s);
    s_target (targets, "cold start, 1M events", "< 1 s", cold_1m, 1.0, false, "s",
              note[0] ? note : NULL);
    json_object_set_new (results, "targets", targets);
}

//  Write the JSON, gnuplot data and Markdown the options ask for; 0 when
//  all went well.
static int
s_write_reports (const s_options_t *options, json_t *results)
{
    int status = 0;
    if (options->json_path
        && json_dump_file (results, options->json_path, JSON_INDENT (1) | JSON_REAL_PRECISION (6))
               != 0) {
        fprintf (stderr, "zcqrs-bench: cannot write %s\n", options->json_path);
        status = 1;
    }
    const char *plot_prefix = NULL;
    if (options->plots) {
        char *copy = strdup (options->plots);
        char *slash = strrchr (copy, '/');
        const char *dir = slash ? copy : ".";
        const char *prefix = slash ? slash + 1 : copy;
        if (slash)
            *slash = 0;
        if (bench_report_plot_data (results, dir, prefix) != 0)
            status = 1;
        plot_prefix = strrchr (options->plots, '/') ? strrchr (options->plots, '/') + 1
                                                    : options->plots;
        free (copy);
    }
    if (options->md_path && bench_report_markdown (results, options->md_path, plot_prefix) != 0) {
        fprintf (stderr, "zcqrs-bench: cannot write %s\n", options->md_path);
        status = 1;
    }
    return status;
}

//  --------------------------------------------------------------------------

int
main (int argc, char **argv)
{
    if (argc == 3 && streq (argv[1], "--rss-probe")) {
        zsys_init ();
        zsys_set_logstream (stderr);
        return s_rss_probe (argv[2]);
    }
    s_options_t options;
    int status = s_parse (argc, argv, &options);
    if (status)
        return status;
    if (options.from_json) {
        json_error_t error;
        json_t *results = json_load_file (options.from_json, 0, &error);
        if (!results) {
            fprintf (stderr, "zcqrs-bench: %s: %s\n", options.from_json, error.text);
            return 1;
        }
        options.json_path = NULL;
        status = s_write_reports (&options, results);
        bench_report_headline (results, stdout);
        json_decref (results);
        return status;
    }
    char workdir[1024];
    snprintf (workdir, sizeof workdir, "%s/zcqrs-bench-XXXXXX", options.workdir);
    if (!mkdtemp (workdir)) {
        fprintf (stderr, "zcqrs-bench: cannot make a directory under %s\n", options.workdir);
        return 1;
    }
    bench_workdir_set (workdir);
    bench_dir_keep (options.keep);
    zsys_init ();
    zsys_set_logstream (stderr);
    s_scraper.enabled = options.scrape;
    if (options.scrape && pthread_create (&s_scraper.thread, NULL, s_scraper_run, NULL) != 0) {
        fprintf (stderr, "zcqrs-bench: cannot start the scraper\n");
        return 1;
    }

    s_suite_t suite = { .options = &options, .results = json_object (), .notes = json_array () };
    suite.headline_shards = options.shards[0];
    for (int index = 0; index < options.shard_count; index++)
        if (options.shards[index] == 2)
            suite.headline_shards = 2;

    char date[32], host[256] = "unknown";
    time_t now = time (NULL);
    strftime (date, sizeof date, "%Y-%m-%d", localtime (&now));
    gethostname (host, sizeof host);
    json_t *results = suite.results;
    json_object_set_new (results, "tool", json_string ("zcqrs-bench"));
    json_object_set_new (results, "format", json_integer (1));
    json_object_set_new (results, "date", json_string (date));
    json_object_set_new (results, "host", json_string (host));
    json_object_set_new (results, "cores", json_integer (sysconf (_SC_NPROCESSORS_ONLN)));
    json_object_set_new (results, "zcqrs", json_string ("0.1.0"));
    if (options.label)
        json_object_set_new (results, "label", json_string (options.label));
    json_object_set_new (results, "quick", json_boolean (options.quick));
    json_object_set_new (results, "settings",
                         json_pack ("{s:i, s:i, s:f, s:f, s:f, s:i, s:s}", "window", options.window,
                                    "clients", options.clients, "seconds", options.seconds,
                                    "warmup", options.warmup, "probe_rate", options.probe_rate,
                                    "headline_shards", suite.headline_shards, "transport",
                                    "tcp://127.0.0.1"));
    json_object_set_new (results, "baselines", json_object ());
    json_object_set_new (results, "open_accounts", json_array ());
    json_object_set_new (results, "runs", json_array ());
    json_object_set_new (results, "open_loop", json_array ());
    json_object_set_new (results, "rebuild", json_array ());
    json_object_set_new (results, "disk", json_object ());
    json_object_set_new (results, "notes", json_incref (suite.notes));
    uint64_t started = bench_now_ns ();
    double load_before = s_loadavg ();
    //  one quiet second: how busy is the machine without us?
    bench_cpu_t quiet;
    bench_cpu_start (&quiet);
    struct timespec second = { 1, 0 };
    nanosleep (&second, NULL);
    double others_before = bench_cpu_others (&quiet, NULL);

    if (options.sections[0])
        s_run_baselines (&suite);
    //  the rebuild section first: it needs the node-written log as the node
    //  left it, before any other run opens (and so flushes) it
    if (options.sections[2])
        s_run_rebuild (&suite);
    s_run_matrix (&suite);
    if (options.sections[3])
        s_run_snapshot (&suite);
    if (options.sections[4])
        s_run_cluster (&suite);
    s_check_targets (&suite);
    //  what other processes took while zcqrs was measured (the load runs;
    //  not the PostgreSQL baseline, whose server is another process)
    double others_sum = 0, others_max = 0, steal_max = 0;
    size_t others_count = 0, index;
    json_t *run;
    json_t *lists[2]
        = { json_object_get (results, "runs"), json_object_get (results, "open_loop") };
    for (int list = 0; list < 2; list++)
        json_array_foreach (lists[list], index, run) {
            double others = json_number_value (json_object_get (run, "other_cpu"));
            double steal = json_number_value (json_object_get (run, "steal_cpu"));
            others_sum += others;
            others_count++;
            if (others > others_max)
                others_max = others;
            if (steal > steal_max)
                steal_max = steal;
        }
    double others_mean = others_count ? others_sum / (double) others_count : 0;
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    json_object_set_new (results, "machine",
                         json_pack ("{s:f, s:f, s:f, s:f, s:f, s:f}", "loadavg_before", load_before,
                                    "loadavg_after", s_loadavg (), "other_cpu_before",
                                    others_before, "other_cpu_mean", others_mean, "other_cpu_max",
                                    others_max, "steal_cpu_max", steal_max));
    if (others_mean > 0.1 * (double) cores || others_max > 0.25 * (double) cores)
        s_note (&suite,
                "other processes on the machine used %.2f of the %ld cores on average during the "
                "measured runs (up to %.2f in one run; %.2f in the second before the suite): "
                "they competed with the node and the clients, so the figures are lower, and the "
                "latencies noisier, than on an idle machine",
                others_mean, cores, others_max, others_before);
    if (steal_max > 0.05 * (double) cores)
        s_note (&suite,
                "the hypervisor took up to %.2f cores from this machine during a run (steal)",
                steal_max);
    if (options.scrape) {
        atomic_store (&s_scraper.stop, true);
        pthread_join (s_scraper.thread, NULL);
        uint64_t scrapes = atomic_load (&s_scraper.scrapes);
        s_note (&suite,
                "--scrape: every node under test served /metrics, read once a second: %" PRIu64
                " scrapes of %" PRIu64 " bytes on average, %" PRIu64 " failed",
                scrapes, scrapes ? (uint64_t) atomic_load (&s_scraper.bytes) / scrapes : 0,
                (uint64_t) atomic_load (&s_scraper.failures));
        json_object_set_new (results, "scrapes", json_integer ((json_int_t) scrapes));
    }
    json_object_set_new (results, "elapsed_s",
                         json_real ((double) (bench_now_ns () - started) / 1e9));

    for (int slot = 0; slot < 3; slot++) {
        bench_dir_remove (suite.templates[slot]);
        free (suite.templates[slot]);
    }
    bench_dir_remove (workdir);
    if (options.keep)
        bench_log ("data dirs kept in %s", workdir);

    status = s_write_reports (&options, results);
    bench_report_headline (results, stdout);
    json_decref (suite.notes);
    json_decref (results);
    return status;
}
