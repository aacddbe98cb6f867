/*  baseline_rocksdb.c: the physical limit of the storage: raw RocksDB
    WriteBatch appends of the same event bytes a deposit writes, with the
    same options as the store and the same sync setting.

    The engine's rule "only store.c includes rocksdb/c.h" is about the
    engine: this baseline deliberately sits outside it and talks to
    librocksdb directly, because what it measures is RocksDB without
    zcqrs.

    Each write is one WriteBatch of `batch` log appends (position -> body),
    the largest group a closed-loop client with that window can give the
    node's log writer; the engine adds the stream index, command ids and
    snapshots to its batches, so it can only be slower.

    The `indexed` run writes what a commit writes per deposit: the log
    entry, the stream index entry (stream NUL version -> position) and the
    command id (id -> time and result), into column families with the
    store's options (hash-bucketed memtables for the two random-order
    ones). It also reports the process's CPU time per event, the memtable
    flushes at the end included, since most of what those keys cost is
    paid by RocksDB's background threads.
*/
#include "bench.h"
#include <math.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The stream-name prefix of a stream index key, as the store's
static char *
s_prefix (void *state, const char *key, size_t length, size_t *prefix_length)
{
    const char *nul = memchr (key, 0, length);
    *prefix_length = nul ? (size_t) (nul - key) + 1 : length;
    return (char *) key;
}

static unsigned char
s_in_domain (void *state, const char *key, size_t length)
{
    return 1;
}

static unsigned char
s_in_range (void *state, const char *key, size_t length)
{
    return 0;
}

static const char *
s_prefix_name (void *state)
{
    return "zcqrs.stream";
}

static void
s_prefix_destroy (void *state)
{
}

//  Options as engine/store.c sets them (LZ4, 64 MiB memtables, Bloom
//  filters, a 64 MiB block cache, two background jobs).
static rocksdb_options_t *
s_options (rocksdb_cache_t *cache, rocksdb_block_based_table_options_t *table)
{
    rocksdb_options_t *options = rocksdb_options_create ();
    rocksdb_options_set_create_if_missing (options, 1);
    rocksdb_options_increase_parallelism (options, 2);
    rocksdb_options_set_max_background_jobs (options, 2);
    rocksdb_options_set_write_buffer_size (options, 64 << 20);
    rocksdb_options_set_paranoid_checks (options, 1);
    rocksdb_options_set_compression (options, rocksdb_lz4_compression);
    rocksdb_block_based_options_set_block_cache (table, cache);
    rocksdb_block_based_options_set_filter_policy (table, rocksdb_filterpolicy_create_bloom (10));
    rocksdb_options_set_block_based_table_factory (options, table);
    return options;
}

json_t *
bench_baseline_rocksdb (zcq_durability_t durability, int batch_size, double seconds, bool indexed)
{
    char *path = bench_dir_new ("rocksdb");
    rocksdb_cache_t *cache = rocksdb_cache_create_lru (64 << 20);
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create ();
    rocksdb_options_t *options = s_options (cache, table);
    rocksdb_options_set_create_missing_column_families (options, 1);
    rocksdb_options_set_max_write_buffer_number (options, 4);
    rocksdb_options_set_allow_concurrent_memtable_write (options, 0);
    rocksdb_options_t *streams = rocksdb_options_create_copy (options);
    rocksdb_options_set_prefix_extractor (
        streams, rocksdb_slicetransform_create (NULL, s_prefix_destroy, s_prefix, s_in_domain,
                                                s_in_range, s_prefix_name));
    rocksdb_options_set_hash_skip_list_rep (streams, 200003, 16, 4);
    rocksdb_options_t *commands = rocksdb_options_create_copy (options);
    rocksdb_options_set_prefix_extractor (commands, rocksdb_slicetransform_create_noop ());
    rocksdb_options_set_hash_skip_list_rep (commands, 200003, 4, 4);
    const char *names[4] = { "default", "log", "streams", "commands" };
    const rocksdb_options_t *family_options[4] = { options, options, streams, commands };
    rocksdb_column_family_handle_t *families[4] = { NULL, NULL, NULL, NULL };
    char *error = NULL;
    rocksdb_t *db = indexed ? rocksdb_open_column_families (options, path, 4, names, family_options,
                                                            families, &error)
                            : rocksdb_open (options, path, &error);
    if (error) {
        fprintf (stderr, "zcqrs-bench: raw RocksDB: %s\n", error);
        rocksdb_free (error);
        rocksdb_options_destroy (streams);
        rocksdb_options_destroy (commands);
        rocksdb_options_destroy (options);
        rocksdb_block_based_options_destroy (table);
        rocksdb_cache_destroy (cache);
        free (path);
        return NULL;
    }
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (write, durability == ZCQ_DURABILITY_FSYNC);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    zcq_writer_t *body = zcq_writer_new ();
    zcq_writer_t *data = zcq_writer_new ();
    bench_hist_t *latency = bench_hist_new ();
    uint64_t position = 0, bytes = 0, failures = 0, writing_ns = 0;
    uint64_t started = bench_now_ns (), deadline = started + (uint64_t) (seconds * 1e9);
    uint64_t now = started;
    double cpu_started = bench_process_cpu_s ();
    uint64_t *versions = indexed ? calloc (100000, sizeof (uint64_t)) : NULL;
    if (indexed && !versions)
        now = deadline;
    while (now < deadline && body && data && latency) {
        rocksdb_writebatch_clear (batch);
        for (int index = 0; index < batch_size; index++) {
            position++;
            char key[24], command[64];
            snprintf (key, sizeof key, "%llu", (unsigned long long) (position * 7919 % 100000));
            snprintf (command, sizeof command, "bench-0-%llu", (unsigned long long) position);
            zcq_writer_reset (data);
            zcq_writer_map (data, 1);
            zcq_writer_str (data, "amount");
            zcq_writer_int (data, 1 + (int64_t) (position % 100));
            zcq_writer_reset (body);
            bench_event_encode (body, position, bench_wall_us (), "node1", "account", key,
                                position / 100000 + 2, "deposited", command, zcq_writer_data (data),
                                zcq_writer_size (data));
            uint8_t log_key[8];
            for (int byte = 0; byte < 8; byte++)
                log_key[byte] = (uint8_t) (position >> (56 - 8 * byte));
            if (!indexed) {
                rocksdb_writebatch_put (batch, (const char *) log_key, sizeof log_key,
                                        zcq_writer_data (body), zcq_writer_size (body));
                bytes += zcq_writer_size (body);
                continue;
            }
            rocksdb_writebatch_put_cf (batch, families[1], (const char *) log_key, sizeof log_key,
                                       zcq_writer_data (body), zcq_writer_size (body));
            bytes += zcq_writer_size (body);
            uint64_t account = position * 7919 % 100000, version = ++versions[account];
            char stream[48];
            int stream_len = snprintf (stream, sizeof stream - 9, "account/%llu",
                                       (unsigned long long) account);
            stream[stream_len] = 0;
            for (int byte = 0; byte < 8; byte++)
                stream[stream_len + 1 + byte] = (char) (version >> (56 - 8 * byte));
            rocksdb_writebatch_put_cf (batch, families[2], stream, (size_t) stream_len + 9,
                                       (const char *) log_key, sizeof log_key);
            char result[8 + 20 + 48] = { 0 };
            memcpy (result + 28, stream, (size_t) stream_len);
            rocksdb_writebatch_put_cf (batch, families[3], command, strlen (command), result,
                                       28 + (size_t) stream_len);
        }
        uint64_t before = bench_now_ns ();
        rocksdb_write (db, write, batch, &error);
        now = bench_now_ns ();
        if (error) {
            failures++;
            rocksdb_free (error);
            error = NULL;
        }
        bench_hist_record (latency, now - before);
        writing_ns += now - before;
    }
    //  the memtables' flushes belong to what the writes cost
    rocksdb_flushoptions_t *flush = rocksdb_flushoptions_create ();
    rocksdb_flushoptions_set_wait (flush, 1);
    if (indexed)
        for (int family = 1; family < 4 && !error; family++)
            rocksdb_flush_cf (db, flush, families[family], &error);
    else
        rocksdb_flush (db, flush, &error);
    rocksdb_flushoptions_destroy (flush);
    if (error) {
        failures++;
        rocksdb_free (error);
        error = NULL;
    }
    double cpu_s = bench_process_cpu_s () - cpu_started;
    free (versions);
    //  the limit is the time spent in rocksdb_write; encoding the bodies
    //  (another thread's work in a node) is left out
    double elapsed = (double) writing_ns / 1e9;
    if (elapsed <= 0)
        elapsed = 1e-9;
    json_t *result = json_object ();
    json_object_set_new (result, "durability", json_string (zcq_durability_name (durability)));
    json_object_set_new (result, "layout",
                         json_string (indexed ? "log, stream index, command id" : "log"));
    //  CPU of the whole process, encoding the bodies included
    json_object_set_new (result, "cpu_us_per_event",
                         json_real (position ? round (cpu_s * 1e7 / (double) position) / 10 : 0));
    json_object_set_new (result, "batch", json_integer (batch_size));
    json_object_set_new (result, "seconds", json_real (elapsed));
    json_object_set_new (result, "events_per_s", json_real (position / elapsed));
    json_object_set_new (result, "events_per_s_with_encoding",
                         json_real (position / ((double) (now - started) / 1e9)));
    json_object_set_new (result, "event_bytes",
                         json_real (position ? (double) bytes / position : 0));
    json_object_set_new (result, "write_latency", bench_hist_json (latency));
    json_object_set_new (result, "failures", json_integer ((json_int_t) failures));
    bench_hist_destroy (&latency);
    zcq_writer_destroy (&body);
    zcq_writer_destroy (&data);
    rocksdb_writebatch_destroy (batch);
    rocksdb_writeoptions_destroy (write);
    for (int family = 0; family < 4; family++)
        if (families[family])
            rocksdb_column_family_handle_destroy (families[family]);
    rocksdb_close (db);
    rocksdb_options_destroy (streams);
    rocksdb_options_destroy (commands);
    rocksdb_options_destroy (options);
    rocksdb_block_based_options_destroy (table);
    rocksdb_cache_destroy (cache);
    bench_dir_remove (path);
    free (path);
    return result;
}

//  --------------------------------------------------------------------------
//  The read side's limit: a raw scan of a data dir's log column family, in
//  position order, with the store's block cache size and default read
//  options (what a view rebuild reads through the store). Each value is
//  touched (its length and first byte), nothing decoded.

//  Scan the log once; events seen, or -1 on failure.
static int64_t
s_scan_once (rocksdb_t *db, rocksdb_column_family_handle_t *log, uint64_t *bytes, double *seconds)
{
    rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
    uint64_t started = bench_now_ns ();
    rocksdb_iterator_t *iterator = rocksdb_create_iterator_cf (db, read, log);
    int64_t events = 0;
    uint64_t touched = 0;
    for (rocksdb_iter_seek_to_first (iterator); rocksdb_iter_valid (iterator);
         rocksdb_iter_next (iterator)) {
        size_t key_len, value_len;
        rocksdb_iter_key (iterator, &key_len);
        const char *value = rocksdb_iter_value (iterator, &value_len);
        touched += value_len + (value_len ? (uint8_t) value[0] : 0);
        events++;
    }
    char *error = NULL;
    rocksdb_iter_get_error (iterator, &error);
    rocksdb_iter_destroy (iterator);
    rocksdb_readoptions_destroy (read);
    *seconds = (double) (bench_now_ns () - started) / 1e9;
    *bytes = touched;
    if (error) {
        fprintf (stderr, "zcqrs-bench: raw RocksDB scan: %s\n", error);
        rocksdb_free (error);
        return -1;
    }
    return events;
}

json_t *
bench_baseline_scan (const char *path, int runs)
{
    rocksdb_cache_t *cache = rocksdb_cache_create_lru (64 << 20);
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create ();
    rocksdb_options_t *options = s_options (cache, table);
    rocksdb_options_set_create_if_missing (options, 0);
    //  the families as the store opens them (their memtables need the same
    //  prefix extractors even read-only, for the WAL a crash left)
    rocksdb_options_t *streams = rocksdb_options_create_copy (options);
    rocksdb_options_set_prefix_extractor (
        streams, rocksdb_slicetransform_create (NULL, s_prefix_destroy, s_prefix, s_in_domain,
                                                s_in_range, s_prefix_name));
    rocksdb_options_set_hash_skip_list_rep (streams, 200003, 16, 4);
    rocksdb_options_t *commands = rocksdb_options_create_copy (options);
    rocksdb_options_set_prefix_extractor (commands, rocksdb_slicetransform_create_noop ());
    rocksdb_options_set_hash_skip_list_rep (commands, 200003, 4, 4);
    char *error = NULL;
    size_t count = 0;
    char **names = rocksdb_list_column_families (options, path, &count, &error);
    json_t *result = NULL;
    const rocksdb_options_t **family_options = calloc (count ? count : 1, sizeof (void *));
    rocksdb_column_family_handle_t **families = calloc (count ? count : 1, sizeof (void *));
    rocksdb_t *db = NULL;
    size_t log = count;
    if (!error && family_options && families) {
        for (size_t index = 0; index < count; index++) {
            family_options[index] = strcmp (names[index], "streams") == 0  ? streams
                                  : strcmp (names[index], "commands") == 0 ? commands
                                                                           : options;
            if (strcmp (names[index], "log") == 0)
                log = index;
        }
        db = rocksdb_open_for_read_only_column_families (options, path, (int) count,
                                                         (const char *const *) names,
                                                         family_options, families, 0, &error);
    }
    if (error)
        fprintf (stderr, "zcqrs-bench: raw RocksDB scan of %s: %s\n", path, error);
    else if (log == count)
        fprintf (stderr, "zcqrs-bench: raw RocksDB scan: %s has no log family\n", path);
    else {
        //  the best of the runs: the first one may read the files from disk
        double best = 0;
        int64_t events = 0;
        uint64_t bytes = 0;
        for (int run = 0; run < runs; run++) {
            double seconds;
            events = s_scan_once (db, families[log], &bytes, &seconds);
            if (events < 0)
                break;
            if (run == 0 || seconds < best)
                best = seconds;
        }
        if (events >= 0 && best > 0) {
            result = json_object ();
            json_object_set_new (result, "events", json_integer ((json_int_t) events));
            json_object_set_new (result, "seconds", json_real (best));
            json_object_set_new (result, "events_per_s", json_real ((double) events / best));
            json_object_set_new (result, "runs", json_integer (runs));
        }
    }
    rocksdb_free (error);
    for (size_t index = 0; families && index < count; index++)
        if (families[index])
            rocksdb_column_family_handle_destroy (families[index]);
    if (db)
        rocksdb_close (db);
    if (names)
        rocksdb_list_column_families_destroy (names, count);
    free (families);
    free (family_options);
    rocksdb_options_destroy (streams);
    rocksdb_options_destroy (commands);
    rocksdb_options_destroy (options);
    rocksdb_block_based_options_destroy (table);
    rocksdb_cache_destroy (cache);
    return result;
}
