/*  report.c: the results document of zcqrs-bench as Markdown, as a
    headline table on stdout, and as gnuplot data files.

    Latencies in the document are microseconds; the report shows
    milliseconds. A figure that was not measured shows as "-".
*/
#include "bench.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Reading and formatting figures

static bool
s_same (const char *one, const char *other)
{
    return one && other && strcmp (one, other) == 0;
}

//  A number at a dotted path ("ack.p99"), or NAN when absent.
static double
s_num (const json_t *object, const char *path)
{
    char copy[160], *save = NULL;
    snprintf (copy, sizeof copy, "%s", path);
    const json_t *value = object;
    for (char *key = strtok_r (copy, ".", &save); key && value; key = strtok_r (NULL, ".", &save))
        value = json_object_get (value, key);
    return value && json_is_number (value) ? json_number_value (value) : NAN;
}

static const char *
s_str (const json_t *object, const char *key)
{
    const char *value = json_string_value (json_object_get (object, key));
    return value ? value : "";
}

//  Formatters write into one of a few rotating buffers so that several can
//  appear in one printf.
static char *
s_buffer (void)
{
    static char buffers[16][48];
    static int next;
    next = (next + 1) % 16;
    return buffers[next];
}

//  A rate with thousands separators: 123,456
static const char *
s_rate (double value)
{
    char *buffer = s_buffer ();
    if (isnan (value) || value < 0)
        return "-";
    char digits[32];
    snprintf (digits, sizeof digits, "%.0f", value);
    size_t len = strlen (digits), out = 0;
    for (size_t index = 0; index < len; index++) {
        if (index && (len - index) % 3 == 0)
            buffer[out++] = ',';
        buffer[out++] = digits[index];
    }
    buffer[out] = 0;
    return buffer;
}

//  Microseconds as milliseconds, three significant digits.
static const char *
s_ms (double us)
{
    char *buffer = s_buffer ();
    if (isnan (us))
        return "-";
    double ms = us / 1000.0;
    if (ms >= 100)
        snprintf (buffer, 48, "%.0f", ms);
    else if (ms >= 10)
        snprintf (buffer, 48, "%.1f", ms);
    else if (ms >= 1)
        snprintf (buffer, 48, "%.2f", ms);
    else
        snprintf (buffer, 48, "%.3f", ms);
    return buffer;
}

static const char *
s_ratio (double value, double base)
{
    char *buffer = s_buffer ();
    if (isnan (value) || isnan (base) || base <= 0 || value < 0)
        return "-";
    double ratio = value / base;
    snprintf (buffer, 48, ratio >= 10 ? "%.1fx" : "%.2fx", ratio);
    return buffer;
}

static const char *
s_real (double value, const char *format)
{
    char *buffer = s_buffer ();
    if (isnan (value))
        return "-";
    snprintf (buffer, 48, format, value);
    return buffer;
}

static const json_t *
s_find_run (const json_t *results, const char *workload, const char *durability, int shards)
{
    size_t index;
    const json_t *run;
    json_array_foreach (json_object_get (results, "runs"), index, run) {
        if (s_same (s_str (run, "workload"), workload)
            && s_same (s_str (run, "durability"), durability)
            && json_integer_value (json_object_get (run, "shards")) == shards
            && s_same (s_str (run, "loop"), "closed"))
            return run;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  The cluster section: one node, the cluster direct, the cluster forwarded

static void
s_cluster_table (const json_t *results, FILE *out)
{
    const json_t *cluster = json_object_get (results, "cluster");
    const json_t *runs = json_object_get (cluster, "runs");
    const json_t *single = json_object_get (runs, "single");
    const json_t *direct = json_object_get (runs, "direct");
    fprintf (out, "| run | commands/s | / single | / direct | ack p50 | ack p99 | ack p99.9 | "
                  "servers' CPU µs/command | commands forwarded |\n"
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    static const char *names[][2] = { { "single", "one node" },
                                      { "direct", "cluster, each command to its leader" },
                                      { "forwarded", "cluster, each command to a non-leader" } };
    for (size_t index = 0; index < 3; index++) {
        const json_t *run = json_object_get (runs, names[index][0]);
        if (!run)
            continue;
        double rate = s_num (run, "commands_per_s");
        const json_t *forwarded = json_object_get (run, "commands_forwarded");
        fprintf (out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", names[index][1],
                 s_rate (rate), s_ratio (rate, s_num (single, "commands_per_s")),
                 index ? s_ratio (rate, s_num (direct, "commands_per_s")) : "-",
                 s_ms (s_num (run, "ack.p50")), s_ms (s_num (run, "ack.p99")),
                 s_ms (s_num (run, "ack.p999")),
                 s_real (s_num (run, "server_cpu_us_per_command"), "%.1f"),
                 forwarded ? s_rate ((double) json_integer_value (forwarded)) : "-");
    }
    const json_t *ratios = json_object_get (cluster, "ratios");
    fprintf (out,
             "\nRatios: cluster direct / one node: %s commands/s, %s ack p50, %s ack p99, %s "
             "servers' CPU per command. Forwarded / direct: %s commands/s, %s ack p50, %s ack "
             "p99, %s servers' CPU per command.\n",
             s_real (s_num (ratios, "direct_per_single"), "%.2f"),
             s_real (s_num (ratios, "direct_per_single_p50"), "%.2f"),
             s_real (s_num (ratios, "direct_per_single_p99"), "%.2f"),
             s_real (s_num (ratios, "direct_per_single_cpu"), "%.2f"),
             s_real (s_num (ratios, "forwarded_per_direct"), "%.2f"),
             s_real (s_num (ratios, "forwarded_per_direct_p50"), "%.2f"),
             s_real (s_num (ratios, "forwarded_per_direct_p99"), "%.2f"),
             s_real (s_num (ratios, "forwarded_per_direct_cpu"), "%.2f"));
}

static void
s_cluster_section (const json_t *results, FILE *out)
{
    const json_t *cluster = json_object_get (results, "cluster");
    const json_t *settings = json_object_get (results, "settings");
    const json_t *spread = json_object_get (cluster, "accounts_per_group");
    char groups[160] = "";
    size_t index, used = 0;
    const json_t *count;
    json_array_foreach (spread, index, count)
        used += (size_t) snprintf (groups + used, used < sizeof groups ? sizeof groups - used : 0,
                                   "%s%lld", index ? " / " : "",
                                   (long long) json_integer_value (count));
    fprintf (out,
             "%lld groups of one replica each (one zcqrsd per group, views `%s`) and one "
             "plain zcqrsd, "
             "every one its own process on loopback, %s, %lld shards each, beside a private "
             "ZooKeeper (one server); %s accounts opened on each side (%s per group), then "
             "deposits to uniformly random accounts: closed loop, %lld client(s), window %lld, "
             "%.1f s measured after %.1f s of warm-up, the same load driver as the workloads "
             "above. The cluster-aware client computes each account's slot "
             "(CRC16 of `account/<key>`) and group from the map of the `cluster` query and "
             "sends to that group's leader (direct), or to the next node, which forwards it to "
             "the leader and relays the reply (forwarded). Servers' CPU: the zcqrsd processes' "
             "and ZooKeeper's, over the whole load, per acknowledged command. Every process of "
             "this section shares the machine's %lld cores with the load client: on fewer "
             "cores than processes the ratio is the figure (docs/cluster.md, Performance). "
             "Latencies in ms. Opening: %s/s on one node, %s/s through the cluster.\n\n",
             (long long) json_integer_value (json_object_get (cluster, "groups")),
             json_object_get (cluster, "views") ? s_str (cluster, "views") : "cluster",
             s_str (cluster, "durability"),
             (long long) json_integer_value (json_object_get (cluster, "shards")),
             s_rate (s_num (cluster, "accounts")), groups,
             (long long) json_integer_value (json_object_get (settings, "clients")),
             (long long) json_integer_value (json_object_get (settings, "window")),
             s_num (settings, "seconds"), s_num (settings, "warmup"),
             (long long) json_integer_value (json_object_get (results, "cores")),
             s_rate (s_num (cluster, "opens_per_s_single")),
             s_rate (s_num (cluster, "opens_per_s_cluster")));
    s_cluster_table (results, out);
}

//  --------------------------------------------------------------------------
//  The headline table: deposit-100k against every baseline, ratios first

void
bench_report_headline (const json_t *results, FILE *out)
{
    int shards = (int) json_integer_value (
        json_object_get (json_object_get (results, "settings"), "headline_shards"));
    int window = (int) json_integer_value (
        json_object_get (json_object_get (results, "settings"), "window"));
    const json_t *baselines = json_object_get (results, "baselines");
    const json_t *zmq = json_object_get (baselines, "zmq");
    fprintf (out,
             "Headline: deposit-100k (open+deposit over 100k accounts), one client, window %d, "
             "%d shards, closed loop over tcp loopback. Ratios are zcqrs / baseline.\n\n",
             window, shards);
    fprintf (out, "| figure | zcqrs | / raw ZeroMQ | / raw RocksDB | / PostgreSQL | raw ZeroMQ "
                  "| raw RocksDB | PostgreSQL |\n");
    fprintf (out, "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    static const char *modes[] = { "wal", "fsync" };
    for (int mode = 0; mode < 2; mode++) {
        const json_t *run = s_find_run (results, "deposit-100k", modes[mode], shards);
        const json_t *rocksdb
            = json_object_get (json_object_get (baselines, "rocksdb"), modes[mode]);
        const json_t *pg = json_object_get (json_object_get (baselines, "postgres"), modes[mode]);
        if (!run && !rocksdb && !pg)
            continue;
        double rate = s_num (run, "commands_per_s");
        double zmq_rate = s_num (zmq, "commands_per_s");
        double rocks_rate = s_num (rocksdb, "events_per_s");
        double pg_rate = s_num (pg, "commands_per_s");
        fprintf (out, "| commands/s, %s | %s | %s | %s | %s | %s | %s | %s |\n", modes[mode],
                 s_rate (rate), s_ratio (rate, zmq_rate), s_ratio (rate, rocks_rate),
                 s_ratio (rate, pg_rate), s_rate (zmq_rate), s_rate (rocks_rate), s_rate (pg_rate));
        double p99 = s_num (run, "ack.p99");
        double zmq_p99 = s_num (zmq, "ack.p99");
        double pg_p99 = s_num (pg, "ack.p99");
        double rocks_p99 = s_num (rocksdb, "write_latency.p99");
        fprintf (out, "| ack p99 ms at peak, %s | %s | %s | %s | %s | %s | %s | %s |\n",
                 modes[mode], s_ms (p99), s_ratio (p99, zmq_p99), s_ratio (p99, rocks_p99),
                 s_ratio (p99, pg_p99), s_ms (zmq_p99), s_ms (rocks_p99), s_ms (pg_p99));
    }
    if (json_object_get (results, "cluster")) {
        fprintf (out,
                 "\nCluster (%lld groups on this machine) against one node, the same "
                 "deposit load:\n\n",
                 (long long) json_integer_value (
                     json_object_get (json_object_get (results, "cluster"), "groups")));
        s_cluster_table (results, out);
    }
    fprintf (out, "\n| target | measured | goal | pass |\n|---|---:|---|---|\n");
    size_t index;
    const json_t *target;
    json_array_foreach (json_object_get (results, "targets"), index, target) {
        double measured = s_num (target, "measured");
        const char *unit = s_str (target, "unit");
        const char *shown;
        if (s_same (unit, "/s"))
            shown = s_rate (measured);
        else if (s_same (unit, "%"))
            shown = s_real (measured, "%.1f%%");
        else if (s_same (unit, "x"))
            shown = s_real (measured, "%.2fx");
        else if (s_same (unit, "ms"))
            shown = s_real (measured, "%.3f ms");
        else
            shown = s_real (measured, "%.3f s");
        const json_t *pass = json_object_get (target, "pass");
        const char *note = s_str (target, "note");
        fprintf (out, "| %s | %s | %s | %s%s%s |\n", s_str (target, "name"), shown,
                 s_str (target, "target"),
                 json_is_true (pass)    ? "yes"
                 : json_is_false (pass) ? "**no**"
                                        : "n/a",
                 note[0] ? ": " : "", note);
    }
}

//  --------------------------------------------------------------------------
//  Markdown report

static void
s_workloads_table (const json_t *results, FILE *out)
{
    fprintf (out, "| workload | durability | shards | commands/s | queries/s | CPU µs/op "
                  "| mallocs/op | ack p50 | p90 | p99 | p99.9 | max | errors |\n"
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    size_t index;
    const json_t *run;
    json_array_foreach (json_object_get (results, "runs"), index, run) {
        char errors[256] = "";
        size_t used = 0;
        const char *key;
        const json_t *value;
        json_object_foreach ((json_t *) json_object_get (run, "command_errors"), key, value)
            used += (size_t) snprintf (errors + used, sizeof errors - used, "%s%s %lld",
                                       used ? ", " : "", key,
                                       (long long) json_integer_value (value));
        json_int_t unanswered = json_integer_value (json_object_get (run, "unanswered"));
        if (unanswered && used < sizeof errors)
            used += (size_t) snprintf (errors + used, sizeof errors - used, "%sunanswered %lld",
                                       used ? ", " : "", (long long) unanswered);
        json_int_t stale = json_integer_value (json_object_get (run, "ryw_stale"));
        if (stale && used < sizeof errors)
            snprintf (errors + used, sizeof errors - used, "%sstale reads %lld", used ? ", " : "",
                      (long long) stale);
        fprintf (out, "| %s | %s | %lld | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                 s_str (run, "workload"), s_str (run, "durability"),
                 (long long) json_integer_value (json_object_get (run, "shards")),
                 s_rate (s_num (run, "commands_per_s")), s_rate (s_num (run, "queries_per_s")),
                 s_real (s_num (run, "cpu_us_per_op"), "%.1f"),
                 s_real (s_num (run, "mallocs_per_op"), "%.1f"), s_ms (s_num (run, "ack.p50")),
                 s_ms (s_num (run, "ack.p90")), s_ms (s_num (run, "ack.p99")),
                 s_ms (s_num (run, "ack.p999")), s_ms (s_num (run, "ack.max")),
                 errors[0] ? errors : "none");
    }
    fprintf (out, "\nThe read side of the same runs. RYW (read-your-writes): ack received to the "
                  "reply of a `get` with `min_position` = the ack's position. lag: head minus the "
                  "slowest view's position, sampled every 20 ms, in events and as the age of the "
                  "oldest event not yet applied. head still: the longest time the log head did "
                  "not move.\n\n");
    fprintf (out, "| workload | durability | shards | RYW p50 | RYW p99 | RYW max | query p50 | "
                  "query p99 | lag p99 (events) | lag max (events) | lag p99 (ms) | lag max (ms) "
                  "| head still max (ms) |\n"
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    json_array_foreach (json_object_get (results, "runs"), index, run)
        fprintf (out, "| %s | %s | %lld | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                 s_str (run, "workload"), s_str (run, "durability"),
                 (long long) json_integer_value (json_object_get (run, "shards")),
                 s_ms (s_num (run, "ryw.p50")), s_ms (s_num (run, "ryw.p99")),
                 s_ms (s_num (run, "ryw.max")), s_ms (s_num (run, "query.p50")),
                 s_ms (s_num (run, "query.p99")), s_rate (s_num (run, "lag.events.p99")),
                 s_rate (s_num (run, "lag.events.max")), s_real (s_num (run, "lag.ms.p99"), "%.1f"),
                 s_real (s_num (run, "lag.ms.max"), "%.1f"),
                 s_real (s_num (run, "lag.head_still_max_ms"), "%.0f"));
}

//  What the machine did to each run: other processes' CPU, the hypervisor's
//  steal, the process's hiccups and the disk probe.
static void
s_machine_table (const json_t *results, FILE *out)
{
    fprintf (out, "| run | durability | shards | other processes (cores) | steal (cores) | "
                  "hiccup p99 | hiccup max | disk write p99 | disk write max | fdatasync p99 | "
                  "fdatasync max |\n"
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    const char *lists[2] = { "runs", "open_loop" };
    for (int list = 0; list < 2; list++) {
        size_t index;
        const json_t *run;
        json_array_foreach (json_object_get (results, lists[list]), index, run) {
            char name[96];
            if (list == 0)
                snprintf (name, sizeof name, "%s", s_str (run, "workload"));
            else
                snprintf (name, sizeof name, "open loop %.0f%%", 100 * s_num (run, "fraction"));
            fprintf (out, "| %s | %s | %lld | %s | %s | %s | %s | %s | %s | %s | %s |\n", name,
                     s_str (run, "durability"),
                     (long long) json_integer_value (json_object_get (run, "shards")),
                     s_real (s_num (run, "other_cpu"), "%.2f"),
                     s_real (s_num (run, "steal_cpu"), "%.2f"), s_ms (s_num (run, "hiccup.p99")),
                     s_ms (s_num (run, "hiccup.max")), s_ms (s_num (run, "disk_write.p99")),
                     s_ms (s_num (run, "disk_write.max")), s_ms (s_num (run, "disk_sync.p99")),
                     s_ms (s_num (run, "disk_sync.max")));
        }
    }
}

static void
s_open_loop_table (const json_t *results, FILE *out)
{
    fprintf (out, "| durability | shards | %% of peak | offered/s | achieved/s | ack p50 | p90 | "
                  "p99 | p99.9 | max | RYW p50 | RYW p99 | lag p99 (ms) | head still max (ms) | "
                  "unanswered |\n");
    fprintf (out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    size_t index;
    const json_t *run;
    json_array_foreach (json_object_get (results, "open_loop"), index, run)
        fprintf (out,
                 "| %s | %lld | %.0f%% | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
                 "| %lld |\n",
                 s_str (run, "durability"),
                 (long long) json_integer_value (json_object_get (run, "shards")),
                 100 * s_num (run, "fraction"), s_rate (s_num (run, "offered_per_s")),
                 s_rate (s_num (run, "commands_per_s")), s_ms (s_num (run, "ack.p50")),
                 s_ms (s_num (run, "ack.p90")), s_ms (s_num (run, "ack.p99")),
                 s_ms (s_num (run, "ack.p999")), s_ms (s_num (run, "ack.max")),
                 s_ms (s_num (run, "ryw.p50")), s_ms (s_num (run, "ryw.p99")),
                 s_real (s_num (run, "lag.ms.p99"), "%.1f"),
                 s_real (s_num (run, "lag.head_still_max_ms"), "%.0f"),
                 (long long) json_integer_value (json_object_get (run, "unanswered")));
}

static void
s_baselines_table (const json_t *results, FILE *out)
{
    const json_t *baselines = json_object_get (results, "baselines");
    fprintf (out, "| baseline | durability | rate/s | latency p50 | p99 | p99.9 | max | "
                  "detail |\n|---|---|---:|---:|---:|---:|---:|---|\n");
    const json_t *zmq = json_object_get (baselines, "zmq");
    if (zmq)
        fprintf (out,
                 "| ZeroMQ DEALER/ROUTER echo | - | %s | %s | %s | %s | %s | round trips, "
                 "window %lld, same request bytes |\n",
                 s_rate (s_num (zmq, "commands_per_s")), s_ms (s_num (zmq, "ack.p50")),
                 s_ms (s_num (zmq, "ack.p99")), s_ms (s_num (zmq, "ack.p999")),
                 s_ms (s_num (zmq, "ack.max")),
                 (long long) json_integer_value (json_object_get (zmq, "window")));
    static const char *modes[] = { "wal", "fsync" };
    static const char *rocksdb_runs[] = { "wal", "fsync", "wal_indexed", "fsync_indexed" };
    for (int run = 0; run < 4; run++) {
        const json_t *rocksdb
            = json_object_get (json_object_get (baselines, "rocksdb"), rocksdb_runs[run]);
        if (rocksdb)
            fprintf (out,
                     "| RocksDB WriteBatch%s | %s | %s | %s | %s | %s | %s | events/s, %lld per "
                     "batch, %.0f bytes each; latency per batch%s%s%s |\n",
                     run < 2 ? "" : ", with stream index and command id", modes[run % 2],
                     s_rate (s_num (rocksdb, "events_per_s")),
                     s_ms (s_num (rocksdb, "write_latency.p50")),
                     s_ms (s_num (rocksdb, "write_latency.p99")),
                     s_ms (s_num (rocksdb, "write_latency.p999")),
                     s_ms (s_num (rocksdb, "write_latency.max")),
                     (long long) json_integer_value (json_object_get (rocksdb, "batch")),
                     s_num (rocksdb, "event_bytes"), run < 2 ? "" : "; ",
                     run < 2 ? "" : s_real (s_num (rocksdb, "cpu_us_per_event"), "%.1f"),
                     run < 2 ? "" : " µs of CPU per event, flushes included");
    }
    for (int mode = 0; mode < 2; mode++) {
        const json_t *pg = json_object_get (json_object_get (baselines, "postgres"), modes[mode]);
        if (!pg)
            continue;
        if (!json_is_true (json_object_get (pg, "available")))
            fprintf (out, "| PostgreSQL event store | %s | absent | | | | | %s |\n", modes[mode],
                     s_str (pg, "reason"));
        else {
            char sweep[256] = "";
            size_t used = 0, item;
            const json_t *entry;
            json_array_foreach (json_object_get (pg, "sweep"), item, entry)
                if (used < sizeof sweep)
                    used += (size_t) snprintf (
                        sweep + used, sizeof sweep - used, "%s%lld: %s/s", used ? ", " : "",
                        (long long) json_integer_value (json_object_get (entry, "connections")),
                        s_rate (s_num (entry, "commands_per_s")));
            fprintf (out,
                     "| PostgreSQL event store | %s | %s | %s | %s | %s | %s | commands/s, "
                     "synchronous_commit %s, best of the connection counts tried (%s), window "
                     "%lld, server %lld |\n",
                     modes[mode], s_rate (s_num (pg, "commands_per_s")),
                     s_ms (s_num (pg, "ack.p50")), s_ms (s_num (pg, "ack.p99")),
                     s_ms (s_num (pg, "ack.p999")), s_ms (s_num (pg, "ack.max")),
                     s_str (pg, "synchronous_commit"), sweep,
                     (long long) json_integer_value (json_object_get (pg, "window")),
                     (long long) json_integer_value (json_object_get (pg, "server_version")));
        }
    }
}

static void
s_storage_section (const json_t *results, FILE *out)
{
    size_t index;
    const json_t *entry;
    fprintf (out, "| accounts opened | opens/s | ack p50 | ack p99 | views caught up after |\n"
                  "|---:|---:|---:|---:|---:|\n");
    json_array_foreach (json_object_get (results, "open_accounts"), index, entry)
        fprintf (out, "| %s | %s | %s | %s | %s s |\n", s_rate (s_num (entry, "accounts")),
                 s_rate (s_num (entry, "commands_per_s")), s_ms (s_num (entry, "ack.p50")),
                 s_ms (s_num (entry, "ack.p99")),
                 s_real (s_num (entry, "views_caught_up_after_s"), "%.3f"));
    fprintf (out, "\nCold start: open the store, then every view live at the head, right after "
                  "the node that wrote the data dir stopped cleanly (views from the snapshots "
                  "that stop saved, plus the log after them; a log written through the store "
                  "has none and is replayed whole); \"again\": the next start on the same dir; "
                  "\"from the log\": a start with the view snapshots removed, every view "
                  "rebuilt from position 1. Rebuild: `rebuild` of the accounts view on the "
                  "running node, until it is live again.\n\n");
    fprintf (out, "| log | events | store open s | cold start s | cold events/s | store open "
                  "again s | cold start again s | cold start from the log s | rebuild of "
                  "accounts s | rebuild events/s |\n"
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    json_array_foreach (json_object_get (results, "rebuild"), index, entry)
        fprintf (out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                 s_str (entry, "source"), s_rate (s_num (entry, "events")),
                 s_real (s_num (entry, "open_s"), "%.3f"),
                 s_real (s_num (entry, "cold_start_s"), "%.3f"),
                 s_rate (s_num (entry, "cold_events_per_s")),
                 s_real (s_num (entry, "open_again_s"), "%.3f"),
                 s_real (s_num (entry, "cold_start_again_s"), "%.3f"),
                 s_real (s_num (entry, "cold_start_replay_s"), "%.3f"),
                 s_real (s_num (entry, "rebuild_s"), "%.3f"),
                 s_rate (s_num (entry, "rebuild_events_per_s")));
    fprintf (out, "\nAgainst the read side's limit: a raw RocksDB scan of the same log (its "
                  "column family in position order, the store's cache size, values touched "
                  "but not decoded; the best of three, after the node stopped).\n\n"
                  "| log | raw scan events/s | cold events/s / raw scan | cold start from the "
                  "log / raw scan | rebuild / raw scan |\n"
                  "|---|---:|---:|---:|---:|\n");
    json_array_foreach (json_object_get (results, "rebuild"), index, entry) {
        double scan = s_num (entry, "raw_scan.events_per_s");
        fprintf (out, "| %s | %s | %s | %s | %s |\n", s_str (entry, "source"), s_rate (scan),
                 s_real (s_num (entry, "cold_events_per_s") / scan, "%.3f"),
                 s_real (s_num (entry, "cold_replay_per_raw_scan"), "%.3f"),
                 s_real (s_num (entry, "rebuild_per_raw_scan"), "%.3f"));
    }
    fprintf (out, "\n");
    const json_t *snapshot = json_object_get (results, "snapshot");
    if (snapshot)
        fprintf (out,
                 "- Aggregate load, one stream of %s events (%s snapshots written): first command "
                 "after a restart %s ms with the snapshot, %s ms without (full replay); the next "
                 "command %s / %s ms. Load time: %s ms with, %s ms without.\n",
                 s_rate (s_num (snapshot, "stream_events")),
                 s_rate (s_num (snapshot, "snapshots_written")),
                 s_real (s_num (snapshot, "with_snapshot.first_command_ms"), "%.3f"),
                 s_real (s_num (snapshot, "without_snapshot.first_command_ms"), "%.3f"),
                 s_real (s_num (snapshot, "with_snapshot.warm_command_ms"), "%.3f"),
                 s_real (s_num (snapshot, "without_snapshot.warm_command_ms"), "%.3f"),
                 s_real (s_num (snapshot, "with_snapshot.load_ms"), "%.3f"),
                 s_real (s_num (snapshot, "without_snapshot.load_ms"), "%.3f"));
    const json_t *memory = json_object_get (results, "memory");
    if (memory && !isnan (s_num (memory, "bytes_per_1m_rows")))
        fprintf (out,
                 "- Memory per 1M view rows: %s MiB of process RSS (it grew by %s MiB while a "
                 "node started and built %s rows in its two views, less the %s MiB a node with "
                 "empty views adds; includes the RocksDB block cache, up to 64 MiB, filled by "
                 "the rebuild); the view tables count %s MiB per 1M rows themselves (without "
                 "allocator overhead).\n",
                 s_real (s_num (memory, "bytes_per_1m_rows") / 1048576.0, "%.0f"),
                 s_real (s_num (memory, "rss_grown") / 1048576.0, "%.0f"),
                 s_rate (s_num (memory, "rows")),
                 s_real (s_num (memory, "rss_empty_node") / 1048576.0, "%.0f"),
                 s_real (s_num (memory, "table_bytes_per_1m_rows") / 1048576.0, "%.0f"));
    const json_t *disk = json_object_get (results, "disk");
    static const struct {
        const char *key, *title;
    } disks[] = { { "after_headline_run", "data dir after the headline run (opens + deposits)" },
                  { "opened_accounts", "data dir of the opened accounts" },
                  { "synthetic", "log written through the store (no command ids)" } };
    for (size_t item = 0; item < sizeof disks / sizeof disks[0]; item++) {
        const json_t *figure = json_object_get (disk, disks[item].key);
        if (figure)
            fprintf (out,
                     "- Bytes on disk per event, %s: %s (%s bytes for %s events: %s in SST "
                     "files, %s in the WAL).\n",
                     disks[item].title, s_real (s_num (figure, "bytes_per_event"), "%.0f"),
                     s_rate (s_num (figure, "bytes")), s_rate (s_num (figure, "events")),
                     s_rate (s_num (figure, "sst_bytes")), s_rate (s_num (figure, "wal_bytes")));
    }
}

int
bench_report_markdown (const json_t *results, const char *path, const char *plot_prefix)
{
    FILE *out = fopen (path, "w");
    if (!out)
        return -1;
    fprintf (out, "# zcqrs benchmark, %s, %s%s\n\n", s_str (results, "date"),
             s_str (results, "host"),
             json_is_true (json_object_get (results, "quick")) ? " (quick run)" : "");
    const json_t *settings = json_object_get (results, "settings");
    fprintf (out,
             "%lld cores; %s%s; measured %.1f s per run after %.1f s of warm-up; %s read-your-"
             "writes probes/s; whole run %s s; other processes on the machine used %s "
             "cores on average while zcqrs was measured (up to %s in one run; %s just "
             "before the suite). Made by `scripts/bench.sh` (zcqrs-bench).\n\n",
             (long long) json_integer_value (json_object_get (results, "cores")),
             json_object_get (results, "label") ? "revision " : "",
             json_object_get (results, "label") ? s_str (results, "label") : "no revision label",
             s_num (settings, "seconds"), s_num (settings, "warmup"),
             s_rate (s_num (settings, "probe_rate")), s_real (s_num (results, "elapsed_s"), "%.0f"),
             s_real (s_num (results, "machine.other_cpu_mean"), "%.2f"),
             s_real (s_num (results, "machine.other_cpu_max"), "%.2f"),
             s_real (s_num (results, "machine.other_cpu_before"), "%.2f"));
    fprintf (out, "## Headline and targets\n\n");
    bench_report_headline (results, out);
    fprintf (out, "\n## Workloads (closed loop)\n\n");
    fprintf (
        out,
        "Latencies in ms. ack: a command sent to its acknowledgement. Workloads on the "
        "same accounts run one after the other on one node per durability and shard "
        "count, after one deposit to every account the aggregate caches can hold (the "
        "steady state; loading an aggregate from the store is measured under Storage). CPU µs/op: "
        "the process's CPU time (node and clients, every thread) over the measured "
        "seconds, per operation. mallocs/op: the node's heap allocations over the same "
        "seconds (every thread but the load generator's, ZeroMQ's I/O threads included), "
        "per operation (bench/alloc.c).\n\n");
    s_workloads_table (results, out);
    if (json_array_size (json_object_get (results, "open_loop"))) {
        fprintf (out, "\n## Latency against offered load (open loop, deposit-100k)\n\n");
        fprintf (out, "Requests are sent on a fixed schedule; latency runs from the intended "
                      "send time, so queueing behind a stall is counted (no coordinated "
                      "omission). Latencies in ms.\n\n");
        s_open_loop_table (results, out);
    }
    if (json_object_get (results, "cluster")) {
        fprintf (out, "\n## Cluster against one node\n\n");
        s_cluster_section (results, out);
    }
    fprintf (out, "\n## Baselines\n\n");
    s_baselines_table (results, out);
    fprintf (out, "\n## The machine during each run\n\n");
    fprintf (out, "Other processes: CPU the rest of the machine used while the run was measured "
                  "(cores). hiccup: how late a thread of this process that sleeps 1 ms woke "
                  "(the scheduler, not zcqrs). Disk probe: a 4 KiB write every 10 ms and an "
                  "fdatasync every 100 ms to a file next to the data dirs. A stall of the log "
                  "head that these saw too is the machine's; one they did not see is zcqrs's. "
                  "Latencies in ms.\n\n");
    s_machine_table (results, out);
    fprintf (out, "\n## Storage, rebuild, cold start, memory\n\n");
    s_storage_section (results, out);
    if (plot_prefix) {
        fprintf (out, "\n## Plots\n\n");
        fprintf (out, "![throughput against shards](%s-shards.png)\n\n", plot_prefix);
        fprintf (out, "![latency percentiles against offered load](%s-latency.png)\n\n",
                 plot_prefix);
        fprintf (out, "![projection lag over time](%s-lag.png)\n", plot_prefix);
    }
    const json_t *notes = json_object_get (results, "notes");
    fprintf (out, "\n## Observations\n\n");
    if (json_array_size (notes) == 0)
        fprintf (out, "Nothing unexpected: every request was answered, no errors, no stale "
                      "read.\n");
    size_t index;
    const json_t *note;
    json_array_foreach (notes, index, note)
        fprintf (out, "- %s\n", json_string_value (note));
    fprintf (out,
             "\n## Method\n\n"
             "- The node runs in the harness's process (bank domain, data dir under /tmp, "
             "endpoints on tcp://127.0.0.1:*); the load client runs on its own threads with its "
             "own ZeroMQ context and DEALER sockets, as a separate client process would.\n"
             "- Accounts are opened once through the node (the opening table) and the data dir "
             "copied for each run; deposits then go to uniformly random accounts.\n"
             "- Open loop: request i is due at start + i / rate and its latency runs from then; "
             "the sender wakes at most every 100 us and sends what is due, so that pacing does "
             "not take a core from the node (the wait is charged to the node).\n"
             "- Raw ZeroMQ: an echo server on a ROUTER, driven by the same client code with the "
             "same request bytes and window. Raw RocksDB: WriteBatches of window-many log "
             "appends of the same event bytes, the store's options and sync setting, the time "
             "inside rocksdb_write. PostgreSQL: events table with UNIQUE (stream, version) and a "
             "command-id table, one transaction per command in libpq pipeline mode, streams "
             "split over the connections; synchronous_commit on for fsync, off for wal (off "
             "is weaker than zcqrs's wal).\n"
             "- Histograms are log-linear with three significant digits (HdrHistogram-style); "
             "percentiles are the highest value of their bucket.\n");
    fclose (out);
    return 0;
}

//  --------------------------------------------------------------------------
//  gnuplot data

int
bench_report_plot_data (const json_t *results, const char *dir, const char *prefix)
{
    char path[1024];
    //  throughput against shards: one column per workload and durability
    snprintf (path, sizeof path, "%s/%s-shards.dat", dir, prefix);
    FILE *out = fopen (path, "w");
    if (!out)
        return -1;
    //  columns: every workload seen, each in wal then fsync (so the plot can
    //  give a workload one colour and a durability one dash pattern)
    const char *workloads[16];
    size_t workload_count = 0, index;
    const json_t *run;
    json_array_foreach (json_object_get (results, "runs"), index, run) {
        bool seen = false;
        for (size_t known = 0; known < workload_count; known++)
            if (s_same (workloads[known], s_str (run, "workload")))
                seen = true;
        if (!seen && workload_count < 16)
            workloads[workload_count++] = s_str (run, "workload");
    }
    const char *columns[32];
    const char *durabilities[32];
    size_t count = 0;
    for (size_t known = 0; known < workload_count; known++) {
        columns[count] = workloads[known];
        durabilities[count++] = "wal";
        columns[count] = workloads[known];
        durabilities[count++] = "fsync";
    }
    fprintf (out, "shards");
    for (size_t column = 0; column < count; column++)
        fprintf (out, " %s/%s", columns[column], durabilities[column]);
    fprintf (out, "\n");
    static const int shard_counts[] = { 1, 2, 3, 4, 6, 8, 12, 16 };
    for (size_t row = 0; row < sizeof shard_counts / sizeof shard_counts[0]; row++) {
        bool any = false;
        for (size_t column = 0; column < count; column++)
            if (s_find_run (results, columns[column], durabilities[column], shard_counts[row]))
                any = true;
        if (!any)
            continue;
        fprintf (out, "%d", shard_counts[row]);
        for (size_t column = 0; column < count; column++) {
            const json_t *found
                = s_find_run (results, columns[column], durabilities[column], shard_counts[row]);
            if (found)
                fprintf (out, " %.0f", s_num (found, "commands_per_s"));
            else
                fprintf (out, " -");
        }
        fprintf (out, "\n");
    }
    fclose (out);

    //  latency percentiles against offered load, one file per durability
    static const char *modes[] = { "wal", "fsync" };
    for (int mode = 0; mode < 2; mode++) {
        snprintf (path, sizeof path, "%s/%s-latency-%s.dat", dir, prefix, modes[mode]);
        out = fopen (path, "w");
        if (!out)
            return -1;
        fprintf (out, "# offered achieved p50 p90 p99 p99.9 max (ms)\n");
        json_array_foreach (json_object_get (results, "open_loop"), index, run) {
            if (!s_same (s_str (run, "durability"), modes[mode]))
                continue;
            fprintf (out, "%.0f %.0f %.4f %.4f %.4f %.4f %.4f\n", s_num (run, "offered_per_s"),
                     s_num (run, "commands_per_s"), s_num (run, "ack.p50") / 1000,
                     s_num (run, "ack.p90") / 1000, s_num (run, "ack.p99") / 1000,
                     s_num (run, "ack.p999") / 1000, s_num (run, "ack.max") / 1000);
        }
        fclose (out);
    }

    //  projection lag over time, headline run
    snprintf (path, sizeof path, "%s/%s-lag.dat", dir, prefix);
    out = fopen (path, "w");
    if (!out)
        return -1;
    const json_t *lag = json_object_get (results, "lag_series");
    fprintf (out, "# %s %s %lld shards\n# t head lag_events lag_ms\n", s_str (lag, "workload"),
             s_str (lag, "durability"),
             (long long) json_integer_value (json_object_get (lag, "shards")));
    const json_t *sample;
    json_array_foreach (json_object_get (lag, "series"), index, sample)
        fprintf (out, "%.3f %lld %lld %.3f\n", json_number_value (json_array_get (sample, 0)),
                 (long long) json_integer_value (json_array_get (sample, 1)),
                 (long long) json_integer_value (json_array_get (sample, 2)),
                 json_number_value (json_array_get (sample, 3)));
    fclose (out);
    return 0;
}
