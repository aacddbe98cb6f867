/*  bench.h: what the files of zcqrs-bench share.

    The harness is one program: main.c runs the suite, load.c drives a
    node (or an echo server) over DEALER sockets in closed or open loop and
    samples projection lag, dataset.c makes data dirs and measures them,
    baseline_*.c measure what zcqrs is compared with, report.c turns the
    results (one JSON document, built with jansson) into Markdown and
    gnuplot data. Latencies are recorded in nanoseconds and reported in
    microseconds.
*/
#ifndef BENCH_H_INCLUDED
#define BENCH_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include <zcqrs.h>
#include "histogram.h"

//  --------------------------------------------------------------------------
//  Clocks

//  Monotonic nanoseconds, for latencies and schedules.
uint64_t bench_now_ns (void);
//  Wall-clock microseconds since the epoch, to compare with event `time`.
int64_t bench_wall_us (void);
//  Print a progress line on stderr: "[  12.3s] text".
void bench_log (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  --------------------------------------------------------------------------
//  Load drivers (load.c)

typedef enum {
    BENCH_CLOSED_LOOP, //  keep `window` requests outstanding per client
    BENCH_OPEN_LOOP,   //  send at a fixed rate; latency from the intended send time
} bench_loop_t;

typedef enum {
    BENCH_OPS_DEPOSIT, //  deposits to accounts already opened (plus queries by query_share)
    BENCH_OPS_OPEN,    //  open accounts 0..accounts-1 once each, then stop
    BENCH_OPS_TOUCH,   //  one deposit to accounts 0..accounts-1 each, then stop
} bench_ops_t;

typedef struct {
    const char *command_endpoint; //  ROUTER taking commands (or the echo server)
    const char *query_endpoint;   //  NULL: no queries and no read-your-writes probes
    bench_loop_t loop;
    bench_ops_t ops;
    int clients;        //  client threads, each with its own sockets
    int window;         //  closed loop: requests outstanding per client
    double rate;        //  open loop: operations per second, all clients together
    double warmup_s;    //  before the measured window
    double seconds;     //  the measured window
    uint64_t accounts;  //  keys "0" .. accounts-1
    bool hot_key;       //  every command goes to account "0"
    double query_share; //  share of operations that are view queries (0..1)
    double probe_rate;  //  read-your-writes probes per second, all clients (0 = none)
    bool echo;          //  the server echoes each request (raw ZeroMQ baseline)
    const char *tag;    //  prefix that makes this run's command ids unique
    uint64_t max_ops;   //  stop sending after this many operations (0 = by time only)
    //  Several command endpoints (a cluster): each client holds a DEALER
    //  to every one, and a command to account k goes to
    //  command_endpoints[routes[k]]. Count 0: command_endpoint alone.
    const char *const *command_endpoints;
    int command_endpoint_count;
    const uint8_t *routes; //  accounts entries (hot_key: entry 0)
} bench_load_t;

void bench_load_defaults (bench_load_t *load);

//  Run a load and return its figures as a JSON object (caller owns):
//  {commands_per_s, queries_per_s, ack, query, ryw (latency objects),
//   errors {code: count}, unanswered, ryw_stale, commands_ok_all (every
//   ok reply, warmup included), ...}. NULL on a setup
//  failure (reason on stderr).
json_t *bench_load_run (const bench_load_t *load);

//  Projection lag sampler: a thread that asks the node for `views` every
//  interval_ms, and for the commit time of the first event a view has not
//  applied yet. Samples taken before skip_s are kept in the series but left
//  out of the lag figures.
typedef struct bench_monitor_t bench_monitor_t;
bench_monitor_t *bench_monitor_start (const char *query_endpoint, int interval_ms, double skip_s);
//  Stop sampling; returns {events {p50,p99,max}, ms {...}, head_still_max_ms
//  (the longest time the log head did not move), series [[t, head,
//  lag_events, lag_ms], ...]} (caller owns).
json_t *bench_monitor_stop (bench_monitor_t **self_p);

//  A latency histogram as {count, p50, p90, p99, p999, max, mean} in us.
json_t *bench_hist_json (const bench_hist_t *hist);

//  --------------------------------------------------------------------------
//  Data dirs and process figures (dataset.c)

//  Encode one event body exactly as the engine lays it out (fixed-width
//  position and time first, then node, stream, aggregate, key, version,
//  type, command, meta {}, data).
void bench_event_encode (zcq_writer_t *writer, uint64_t position, int64_t time_us, const char *node,
                         const char *aggregate, const char *key, uint64_t version, const char *type,
                         const char *command_id, const void *data, size_t data_len);
//  Write a log of accounts x rounds bank events straight through the store
//  (round 0 opens every account, later rounds deposit 1 into each), with
//  stream index entries; no command ids and no snapshots. Returns seconds
//  taken, or a negative number on failure.
double bench_dataset_write (const char *path, uint64_t accounts, uint64_t rounds);
//  Where bench_dir_new makes its paths (default /tmp).
void bench_workdir_set (const char *path);
//  A fresh directory path under the harness's work dir (not created).
char *bench_dir_new (const char *name);
int bench_dir_copy (const char *from, const char *to);
//  Remove a directory tree, unless told to keep every one (--keep).
void bench_dir_remove (const char *path);
//  Remove a directory tree whatever --keep says (a part of a data dir that
//  a measurement needs gone).
void bench_dir_purge (const char *path);
void bench_dir_keep (bool keep);
uint64_t bench_dir_bytes (const char *path);
//  Bytes of the files whose names end with suffix (".log": RocksDB's WAL).
uint64_t bench_dir_bytes_matching (const char *path, const char *suffix);
//  Resident set size of this process, bytes.
uint64_t bench_rss_bytes (void);

//  What other processes take from the machine over a span: start, then ask
//  for the cores' worth of CPU they used since (and the hypervisor's steal).
typedef struct {
    uint64_t busy, steal, self;
    uint64_t started_ns;
} bench_cpu_t;
void bench_cpu_start (bench_cpu_t *cpu);
//  CPU seconds this process has used, all its threads
double bench_process_cpu_s (void);
//  Heap allocations (alloc.c): count every allocation of threads that did
//  not opt out, from start to stop.
void bench_alloc_start (void);
uint64_t bench_alloc_stop (void);
//  The calling thread's allocations are not counted (the load generator's).
void bench_alloc_uncounted (void);
//  sleep until bench_now_ns () reaches when_ns
void bench_sleep_until_ns (uint64_t when_ns);
double bench_cpu_others (const bench_cpu_t *cpu, double *steal);

//  --------------------------------------------------------------------------
//  The node under test (main.c)

typedef struct {
    zcq_durability_t durability;
    int shards;
    const zcq_domain_t *domain; //  NULL = the bank domain
} bench_node_options_t;

//  Start a node on dir with endpoints on tcp://127.0.0.1:*; NULL on failure.
zcq_node_t *bench_node_start (const char *dir, const bench_node_options_t *options);
//  Wait until every view is live at the node's head; seconds waited, or a
//  negative number after timeout_s.
double bench_views_wait (const char *query_endpoint, double timeout_s);

//  --------------------------------------------------------------------------
//  Baselines

//  Raw ZeroMQ DEALER/ROUTER round trips against a C echo server, with the
//  same request bytes and driver as the commands.
json_t *bench_baseline_zmq (const bench_load_t *load);
//  Raw RocksDB WriteBatch appends of deposit event bodies, `batch` events
//  per write, synced or not; indexed: with the stream index and command id
//  a commit writes beside each event, in the store's column families.
json_t *bench_baseline_rocksdb (zcq_durability_t durability, int batch, double seconds,
                                bool indexed);
//  Raw RocksDB scan of the log column family of a closed data dir, the
//  store's cache size and read options, values touched but not decoded:
//  {events, seconds, events_per_s, runs} of the fastest of `runs` scans,
//  or NULL on failure (reason on stderr).
json_t *bench_baseline_scan (const char *path, int runs);
//  A PostgreSQL event store through libpq; {available: false, reason} when
//  the harness was built without libpq or the server is unreachable.
json_t *bench_baseline_pg (const char *conninfo, zcq_durability_t durability, uint64_t accounts,
                           int window, int connections, double seconds);

//  --------------------------------------------------------------------------
//  The cluster section (cluster.c)

#define BENCH_CLUSTER_GROUPS_MAX 8

typedef struct {
    const bench_load_t *load; //  window, clients, warmup, seconds of the deposit runs
    uint64_t accounts;
    int groups; //  2 .. BENCH_CLUSTER_GROUPS_MAX
    zcq_durability_t durability;
    int shards;            //  per node
    const char *zk_script; //  scripts/zk.sh
    const char *views;     //  the clustered nodes' --views: cluster (default), group, none
} bench_cluster_t;

//  A private ZooKeeper, `groups` clustered zcqrsd processes (one replica
//  each) and one plain zcqrsd on loopback; the deposit load on the plain
//  node, on the cluster with every command sent to its group's leader, and
//  with every command sent to a node that must forward it. Returns
//  {groups, accounts, ..., runs {single, direct, forwarded}, ratios {...}}
//  (caller owns), or NULL when the cluster could not be set up (reason on
//  stderr). Everything it started is stopped and removed before it
//  returns, and on SIGINT/SIGTERM meanwhile.
json_t *bench_cluster_run (const bench_cluster_t *cluster);

//  --------------------------------------------------------------------------
//  Reports (report.c)

//  Write the Markdown report of a results document; plot_prefix names the
//  PNGs next to it (NULL: no plot section). Returns 0 on success.
int bench_report_markdown (const json_t *results, const char *path, const char *plot_prefix);
//  Write the gnuplot data files <dir>/<prefix>-{shards,latency,lag}.dat.
int bench_report_plot_data (const json_t *results, const char *dir, const char *prefix);
//  Print the headline table (ratios first) on stdout.
void bench_report_headline (const json_t *results, FILE *out);

#endif
