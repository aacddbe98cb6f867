/*  store.c: the event store on RocksDB. The only file that includes
    rocksdb/c.h; RocksDB's error strings become zcq_err_t here.

    DESIGN
    1.  Positions are assigned by the single committer, head + 1 upward,
        and a commit writes the log entries, the stream index, snapshots,
        command ids and metadata of a batch in one WriteBatch: all or none.
    2.  The head is derived from the log itself (its last key) when the
        store opens, so it can never disagree with what is stored.
    3.  A command id record carries its commit time; look-ups treat records
        older than the dedup window as absent, and zcq_store_expire_commands
        deletes them through the expiry index (time-ordered), checking that
        the record still has that time so a newer record for a reused id
        survives.
    4.  Reads use their own iterators and need no lock; RocksDB is
        thread-safe for concurrent reads and writes.
    6.  The two families written in random key order get hash-bucketed
        memtables (a small skip list per bucket) instead of one big skip
        list, since memtable inserts are most of the committer's work:
        `streams` buckets by stream name (the prefix up to the NUL), so a
        stream's entries stay together for its seeks; `commands` buckets by
        the whole id (point look-ups only). Seeks in `streams` stay inside
        one stream's prefix, which is all a stream read needs. A bucket's
        skip list may hold a hot stream's whole history, so it gets the
        height for millions of entries (16 levels, branching 4); ids are
        spread thin, so theirs stay short.
    5.  Most command ids are new, and a look-up that finds nothing still
        searches the memtables. A Bloom filter of the ids (built from the
        commands family on open, bits set before each commit, never
        cleared) answers "certainly new" without touching RocksDB; a
        "maybe" falls through to the real look-up, so it costs nothing in
        correctness. It is filled from the stored ids by a thread of its
        own after the store opens; until that is done (ids_ready), every
        look-up goes to RocksDB, so a node starts at once whatever the
        number of ids. THREAD SAFETY: its words are atomics, set with
        fetch_or by the committer and the filling thread and read by any
        thread.
*/
#include "zcq_internal.h"
#include <dirent.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum {
    S_CF_DEFAULT,
    S_CF_LOG,
    S_CF_STREAMS,
    S_CF_SNAPSHOTS,
    S_CF_COMMANDS,
    S_CF_EXPIRY,
    S_CF_COUNT
};
static const char *s_cf_names[S_CF_COUNT]
    = { "default", "log", "streams", "snapshots", "commands", "expiry" };

#define S_FORMAT         "1"
#define S_DEFAULT_WINDOW (24 * 3600)
#define S_MULTIGET_CHUNK 256
#define S_BLOOM_MIN_BITS (1ULL << 26) //  8 MiB: 1% false hits up to ~6.7M ids
#define S_BLOOM_HASHES   7

typedef struct {
    _Atomic uint64_t *words;
    uint64_t bits; //  a power of two
} s_bloom_t;

struct zcq_store_t {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_options_t *streams_options; //  DESIGN 6
    rocksdb_options_t *commands_options;
    rocksdb_readoptions_t *scan_options; //  total order, for whole-family scans
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table;
    rocksdb_column_family_handle_t *cf[S_CF_COUNT];
    rocksdb_writeoptions_t *write_options;
    rocksdb_readoptions_t *read_options;
    zcq_durability_t durability;
    uint64_t dedup_window_s;
    _Atomic uint64_t head;
    atomic_int fault_countdown;
    s_bloom_t ids;         //  DESIGN 5
    atomic_bool ids_ready; //  the filter holds every stored id
    atomic_bool closing;   //  tells the filling thread to stop
    pthread_t ids_filler;
    bool ids_filling;
    char *path;
};

struct zcq_batch_t {
    zcq_store_t *store;
    rocksdb_writebatch_t *batch;
    size_t count;
    bool failed; //  a put could not be staged (no memory)
};

//  --------------------------------------------------------------------------
//  Bloom filter of command ids (DESIGN 5)

//  The filter is blocked: all the bits of one id fall in one 64-byte line
//  (8 words), so an add or a look-up costs one cache miss, not seven.
static void
s_bloom_add (s_bloom_t *bloom, const char *bytes, size_t len)
{
    uint64_t hash = zcq_hash (bytes, len);
    uint64_t line = (hash & ((bloom->bits >> 9) - 1)) << 3;
    uint64_t bits = hash >> 20;
    for (int index = 0; index < S_BLOOM_HASHES; index++, bits = bits * 0x9e3779b97f4a7c15ULL + 1) {
        uint64_t bit = (bits >> 55) & 511;
        atomic_fetch_or_explicit (&bloom->words[line + (bit >> 6)], 1ULL << (bit & 63),
                                  memory_order_relaxed);
    }
}

static bool
s_bloom_maybe (const s_bloom_t *bloom, const char *bytes, size_t len)
{
    uint64_t hash = zcq_hash (bytes, len);
    uint64_t line = (hash & ((bloom->bits >> 9) - 1)) << 3;
    uint64_t bits = hash >> 20;
    for (int index = 0; index < S_BLOOM_HASHES; index++, bits = bits * 0x9e3779b97f4a7c15ULL + 1) {
        uint64_t bit = (bits >> 55) & 511;
        uint64_t word
            = atomic_load_explicit (&bloom->words[line + (bit >> 6)], memory_order_relaxed);
        if (!(word & (1ULL << (bit & 63))))
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  The stream-name prefix of a `streams` key: up to and including its NUL

static char *
s_stream_prefix (void *state, const char *key, size_t length, size_t *prefix_length)
{
    const char *nul = memchr (key, 0, length);
    *prefix_length = nul ? (size_t) (nul - key) + 1 : length;
    return (char *) key;
}

static unsigned char
s_stream_in_domain (void *state, const char *key, size_t length)
{
    return memchr (key, 0, length) != NULL;
}

static unsigned char
s_stream_in_range (void *state, const char *key, size_t length)
{
    return 0;
}

static void
s_stream_prefix_destroy (void *state)
{
}

static const char *
s_stream_prefix_name (void *state)
{
    return "zcqrs.stream-prefix";
}

//  Turn a RocksDB error string into an error code and a message; frees it.
static zcq_err_t
s_error (char *rocks_error, char *error, size_t size, const char *doing)
{
    zcq_err_t err = ZCQ_IO;
    if (strncmp (rocks_error, "Corruption", 10) == 0)
        err = ZCQ_CORRUPT;
    if (error && size)
        snprintf (error, size, "%s: %s", doing, rocks_error);
    rocksdb_free (rocks_error);
    return err;
}

void
zcq_store_options_init (zcq_store_options_t *options)
{
    memset (options, 0, sizeof *options);
    options->durability = ZCQ_DURABILITY_WAL;
    options->dedup_window_s = S_DEFAULT_WINDOW;
    options->cache_mb = 64;
    options->create = true;
}

const char *
zcq_durability_name (zcq_durability_t durability)
{
    return durability == ZCQ_DURABILITY_FSYNC ? "fsync" : "wal";
}

//  Read the last log key to find the head (DESIGN 2).
static zcq_err_t
s_load_head (zcq_store_t *self, char *error, size_t size)
{
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_LOG]);
    rocksdb_iter_seek_to_first (iterator);
    uint64_t first = 0;
    if (rocksdb_iter_valid (iterator)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        first = key_len == 8 ? zcq_get_be64 ((const uint8_t *) key) : 0;
    }
    rocksdb_iter_seek_to_last (iterator);
    uint64_t head = 0;
    zcq_err_t err = ZCQ_OK;
    if (rocksdb_iter_valid (iterator)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        if (key_len != 8) {
            snprintf (error, size, "log key of %zu bytes (expected 8)", key_len);
            err = ZCQ_CORRUPT;
        }
        else
            head = zcq_get_be64 ((const uint8_t *) key);
        //  the log starts at 1: anything else means lost files
        if (err == ZCQ_OK && first != 1) {
            snprintf (error, size, "the log starts at position %llu, not 1: files are missing",
                      (unsigned long long) first);
            err = ZCQ_CORRUPT;
        }
    }
    char *rocks_error = NULL;
    rocksdb_iter_get_error (iterator, &rocks_error);
    if (rocks_error)
        err = s_error (rocks_error, error, size, "reading the log head");
    rocksdb_iter_destroy (iterator);
    atomic_store (&self->head, head);
    return err;
}

//  Fill the id filter from the commands family (DESIGN 5).
static void *
s_fill_ids (void *args)
{
    zcq_store_t *self = args;
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->scan_options, self->cf[S_CF_COMMANDS]);
    for (rocksdb_iter_seek_to_first (iterator);
         rocksdb_iter_valid (iterator) && !atomic_load (&self->closing);
         rocksdb_iter_next (iterator)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        s_bloom_add (&self->ids, key, key_len);
    }
    char *rocks_error = NULL;
    rocksdb_iter_get_error (iterator, &rocks_error);
    if (rocks_error) {
        //  the filter stays unused: every look-up goes to RocksDB
        zsys_warning ("store: reading command ids for the filter: %s", rocks_error);
        rocksdb_free (rocks_error);
    }
    else if (!atomic_load (&self->closing))
        atomic_store_explicit (&self->ids_ready, true, memory_order_release);
    rocksdb_iter_destroy (iterator);
    return NULL;
}

//  Size the id filter for the ids stored (20 bits each by RocksDB's
//  estimate, at least S_BLOOM_MIN_BITS) and start filling it.
static zcq_err_t
s_load_ids (zcq_store_t *self, char *error, size_t size)
{
    uint64_t count = 0;
    char *estimate = rocksdb_property_value_cf (self->db, self->cf[S_CF_COMMANDS],
                                                "rocksdb.estimate-num-keys");
    if (estimate) {
        count = strtoull (estimate, NULL, 10);
        rocksdb_free (estimate);
    }
    uint64_t bits = S_BLOOM_MIN_BITS;
    while (bits < count * 20)
        bits <<= 1;
    self->ids.bits = bits;
    self->ids.words = calloc (bits / 64, sizeof (uint64_t));
    if (!self->ids.words) {
        snprintf (error, size, "out of memory for the command id filter");
        return ZCQ_NOMEM;
    }
    if (pthread_create (&self->ids_filler, NULL, s_fill_ids, self) == 0)
        self->ids_filling = true;
    return ZCQ_OK;
}

static zcq_err_t
s_check_format (zcq_store_t *self, char *error, size_t size)
{
    void *format;
    size_t len;
    zcq_err_t err = zcq_store_meta (self, "format", &format, &len);
    if (err == ZCQ_NOT_FOUND) {
        char *rocks_error = NULL;
        rocksdb_put_cf (self->db, self->write_options, self->cf[S_CF_DEFAULT], "format", 6,
                        S_FORMAT, strlen (S_FORMAT), &rocks_error);
        return rocks_error ? s_error (rocks_error, error, size, "writing the format") : ZCQ_OK;
    }
    if (err != ZCQ_OK) {
        snprintf (error, size, "reading the format: %s", zcq_strerror (err));
        return err;
    }
    bool same = len == strlen (S_FORMAT) && memcmp (format, S_FORMAT, len) == 0;
    free (format);
    if (!same) {
        snprintf (error, size, "data dir has an unsupported format (this build reads %s)",
                  S_FORMAT);
        return ZCQ_CORRUPT;
    }
    return ZCQ_OK;
}

zcq_err_t
zcq_store_open (zcq_store_t **store_p, const char *path, const zcq_store_options_t *options,
                char *error, size_t size)
{
    char dummy[8];
    if (!error) {
        error = dummy;
        size = sizeof dummy;
    }
    *store_p = NULL;
    zcq_store_options_t defaults;
    if (!options) {
        zcq_store_options_init (&defaults);
        options = &defaults;
    }
    zcq_store_t *self = calloc (1, sizeof (zcq_store_t));
    if (!self || !(self->path = strdup (path))) {
        free (self);
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    self->durability = options->durability;
    self->dedup_window_s = options->dedup_window_s ? options->dedup_window_s : S_DEFAULT_WINDOW;

    //  without `create`, a missing data dir is an error, and RocksDB must not
    //  be asked (it would make the directory and its lock file first)
    struct stat info;
    char current[4096];
    snprintf (current, sizeof current, "%s/CURRENT", path);
    if (!options->create && stat (current, &info) != 0) {
        snprintf (error, size, "%s is not a zcqrs data dir (no CURRENT file)", path);
        free (self->path);
        free (self);
        return ZCQ_NOT_FOUND;
    }
    self->options = rocksdb_options_create ();
    rocksdb_options_set_create_if_missing (self->options, options->create);
    rocksdb_options_set_create_missing_column_families (self->options, 1);
    rocksdb_options_increase_parallelism (self->options, 2);
    rocksdb_options_set_max_background_jobs (self->options, 2);
    rocksdb_options_set_write_buffer_size (self->options, 64 << 20);
    //  room for memtables waiting to be flushed, so that a slow flush (the
    //  hash memtables of DESIGN 6 sort on flush) does not stall commits
    rocksdb_options_set_max_write_buffer_number (self->options, 4);
    rocksdb_options_set_paranoid_checks (self->options, 1);
    //  RocksDB's own info log in the data dir would be the first thing to
    //  fail on a full disk, and its error path aborts: keep it quiet
    rocksdb_options_set_info_log_level (self->options, 4);
    rocksdb_options_set_compression (self->options, rocksdb_lz4_compression);
    //  one committer: no concurrent memtable inserts (and the hash
    //  memtables of DESIGN 6 do not support them)
    rocksdb_options_set_allow_concurrent_memtable_write (self->options, 0);
    self->cache = rocksdb_cache_create_lru ((options->cache_mb ? options->cache_mb : 64) << 20);
    self->table = rocksdb_block_based_options_create ();
    rocksdb_block_based_options_set_block_cache (self->table, self->cache);
    rocksdb_block_based_options_set_filter_policy (self->table,
                                                   rocksdb_filterpolicy_create_bloom (10));
    rocksdb_options_set_block_based_table_factory (self->options, self->table);

    //  DESIGN 6: hash-bucketed memtables where keys arrive in random order
    self->streams_options = rocksdb_options_create_copy (self->options);
    rocksdb_options_set_prefix_extractor (
        self->streams_options, rocksdb_slicetransform_create (
                                   NULL, s_stream_prefix_destroy, s_stream_prefix,
                                   s_stream_in_domain, s_stream_in_range, s_stream_prefix_name));
    rocksdb_options_set_hash_skip_list_rep (self->streams_options, 200003, 16, 4);
    self->commands_options = rocksdb_options_create_copy (self->options);
    rocksdb_options_set_prefix_extractor (self->commands_options,
                                          rocksdb_slicetransform_create_noop ());
    rocksdb_options_set_hash_skip_list_rep (self->commands_options, 200003, 4, 4);
    const rocksdb_options_t *cf_options[S_CF_COUNT];
    for (int index = 0; index < S_CF_COUNT; index++)
        cf_options[index] = self->options;
    cf_options[S_CF_STREAMS] = self->streams_options;
    cf_options[S_CF_COMMANDS] = self->commands_options;
    char *rocks_error = NULL;
    self->db = rocksdb_open_column_families (self->options, path, S_CF_COUNT, s_cf_names,
                                             cf_options, self->cf, &rocks_error);
    zcq_err_t err = ZCQ_OK;
    if (rocks_error)
        err = s_error (rocks_error, error, size, "opening the store");
    if (err == ZCQ_OK) {
        self->write_options = rocksdb_writeoptions_create ();
        rocksdb_writeoptions_set_sync (self->write_options,
                                       self->durability == ZCQ_DURABILITY_FSYNC);
        self->read_options = rocksdb_readoptions_create ();
        self->scan_options = rocksdb_readoptions_create ();
        rocksdb_readoptions_set_total_order_seek (self->scan_options, 1);
        err = s_check_format (self, error, size);
    }
    if (err == ZCQ_OK)
        err = s_load_head (self, error, size);
    if (err == ZCQ_OK)
        err = s_load_ids (self, error, size);
    if (err != ZCQ_OK) {
        zcq_store_close (&self);
        return err;
    }
    *store_p = self;
    return ZCQ_OK;
}

void
zcq_store_close (zcq_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_store_t *self = *self_p;
    if (self->ids_filling) {
        atomic_store (&self->closing, true);
        pthread_join (self->ids_filler, NULL);
    }
    if (self->db && self->write_options) {
        //  flush the memtables, so that the next open has no log to replay
        rocksdb_flushoptions_t *flush = rocksdb_flushoptions_create ();
        rocksdb_flushoptions_set_wait (flush, 1);
        for (int index = 0; index < S_CF_COUNT; index++) {
            char *rocks_error = NULL;
            rocksdb_flush_cf (self->db, flush, self->cf[index], &rocks_error);
            if (rocks_error) {
                zsys_warning ("store: flush at close failed: %s", rocks_error);
                rocksdb_free (rocks_error);
            }
        }
        rocksdb_flushoptions_destroy (flush);
    }
    if (self->db) {
        for (int index = 0; index < S_CF_COUNT; index++)
            if (self->cf[index])
                rocksdb_column_family_handle_destroy (self->cf[index]);
        rocksdb_close (self->db);
    }
    if (self->write_options)
        rocksdb_writeoptions_destroy (self->write_options);
    if (self->read_options)
        rocksdb_readoptions_destroy (self->read_options);
    if (self->scan_options)
        rocksdb_readoptions_destroy (self->scan_options);

    if (self->streams_options)
        rocksdb_options_destroy (self->streams_options);
    if (self->commands_options)
        rocksdb_options_destroy (self->commands_options);
    if (self->options)
        rocksdb_options_destroy (self->options);
    if (self->table)
        rocksdb_block_based_options_destroy (self->table);
    if (self->cache)
        rocksdb_cache_destroy (self->cache);
    free (self->ids.words);
    free (self->path);
    free (self);
    *self_p = NULL;
}

zcq_durability_t
zcq_store_durability (const zcq_store_t *self)
{
    return self->durability;
}

uint64_t
zcq_store_dedup_window_s (const zcq_store_t *self)
{
    return self->dedup_window_s;
}

uint64_t
zcq_store_head (const zcq_store_t *self)
{
    return atomic_load (&((zcq_store_t *) self)->head);
}

//  --------------------------------------------------------------------------
//  Batches

zcq_batch_t *
zcq_batch_new (zcq_store_t *store)
{
    zcq_batch_t *self = calloc (1, sizeof (zcq_batch_t));
    if (!self)
        return NULL;
    self->store = store;
    self->batch = rocksdb_writebatch_create ();
    return self;
}

void
zcq_batch_destroy (zcq_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rocksdb_writebatch_destroy ((*self_p)->batch);
    free (*self_p);
    *self_p = NULL;
}

void
zcq_batch_clear (zcq_batch_t *self)
{
    rocksdb_writebatch_clear (self->batch);
    self->count = 0;
    self->failed = false;
}

size_t
zcq_batch_count (const zcq_batch_t *self)
{
    return self->count;
}

//  stream NUL version(BE64)
static size_t
s_stream_key (char *key, const char *stream, size_t stream_len, uint64_t version)
{
    memcpy (key, stream, stream_len);
    key[stream_len] = 0;
    zcq_put_be64 ((uint8_t *) key + stream_len + 1, version);
    return stream_len + 9;
}

static void s_batch_stream_version (zcq_batch_t *self, const char *stream, size_t stream_len,
                                    uint64_t version);

void
zcq_batch_event (zcq_batch_t *self, uint64_t position, const char *stream, size_t stream_len,
                 uint64_t version, const void *body, size_t len)
{
    uint8_t position_key[8];
    zcq_put_be64 (position_key, position);
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_LOG], (const char *) position_key,
                               8, body, len);
    char buffer[ZCQ_STREAM_MAX + 9];
    char *stream_key = stream_len <= ZCQ_STREAM_MAX ? buffer : malloc (stream_len + 9);
    if (!stream_key) {
        self->failed = true;
        return;
    }
    size_t key_len = s_stream_key (stream_key, stream, stream_len, version);
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_STREAMS], stream_key, key_len,
                               (const char *) position_key, 8);
    if (stream_key != buffer)
        free (stream_key);
    //  events are staged in version order, so the last one sets the head
    s_batch_stream_version (self, stream, stream_len, version);
    self->count++;
}

//  The stream's head record: stream NUL -> version.
static void
s_batch_stream_version (zcq_batch_t *self, const char *stream, size_t stream_len, uint64_t version)
{
    char buffer[ZCQ_STREAM_MAX + 1];
    char *key = stream_len <= ZCQ_STREAM_MAX ? buffer : malloc (stream_len + 1);
    if (!key) {
        self->failed = true;
        return;
    }
    memcpy (key, stream, stream_len);
    key[stream_len] = 0;
    uint8_t value[8];
    zcq_put_be64 (value, version);
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_STREAMS], key, stream_len + 1,
                               (const char *) value, 8);
    if (key != buffer)
        free (key);
}

void
zcq_batch_snapshot (zcq_batch_t *self, const char *stream, size_t stream_len, uint32_t schema,
                    uint64_t version, const void *state, size_t len)
{
    uint8_t header[12];
    header[0] = (uint8_t) (schema >> 24);
    header[1] = (uint8_t) (schema >> 16);
    header[2] = (uint8_t) (schema >> 8);
    header[3] = (uint8_t) schema;
    zcq_put_be64 (header + 4, version);
    const char *parts[2] = { (const char *) header, state };
    size_t sizes[2] = { sizeof header, len };
    rocksdb_writebatch_putv_cf (self->batch, self->store->cf[S_CF_SNAPSHOTS], 1, &stream,
                                &stream_len, 2, parts, sizes);
    self->count++;
}

void
zcq_batch_command (zcq_batch_t *self, const char *id, size_t id_len, int64_t time_us,
                   const void *result, size_t len)
{
    uint8_t time_bytes[8];
    zcq_put_be64 (time_bytes, (uint64_t) time_us);
    const char *parts[2] = { (const char *) time_bytes, result };
    size_t sizes[2] = { 8, len };
    rocksdb_writebatch_putv_cf (self->batch, self->store->cf[S_CF_COMMANDS], 1, &id, &id_len, 2,
                                parts, sizes);
    s_bloom_add (&self->store->ids, id, id_len);
    char buffer[8 + ZCQ_ID_MAX];
    char *expiry_key = id_len <= ZCQ_ID_MAX ? buffer : malloc (8 + id_len);
    if (!expiry_key) {
        self->failed = true;
        return;
    }
    memcpy (expiry_key, time_bytes, 8);
    memcpy (expiry_key + 8, id, id_len);
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_EXPIRY], expiry_key, 8 + id_len,
                               "", 0);
    if (expiry_key != buffer)
        free (expiry_key);
    self->count++;
}

void
zcq_batch_meta (zcq_batch_t *self, const char *name, const void *value, size_t len)
{
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_DEFAULT], name, strlen (name),
                               value, len);
    self->count++;
}

zcq_err_t
zcq_store_commit (zcq_store_t *self, zcq_batch_t *batch, uint64_t head)
{
    if (batch->failed)
        return ZCQ_NOMEM;
    int countdown = atomic_load (&self->fault_countdown);
    if (countdown > 0 && atomic_fetch_sub (&self->fault_countdown, 1) == 1)
        return ZCQ_IO;
    char *rocks_error = NULL;
    rocksdb_write (self->db, self->write_options, batch->batch, &rocks_error);
    if (rocks_error) {
        zsys_error ("store: commit failed: %s", rocks_error);
        return s_error (rocks_error, NULL, 0, "commit");
    }
    if (head > atomic_load (&self->head))
        atomic_store (&self->head, head);
    return ZCQ_OK;
}

zcq_err_t
zcq_store_sync (zcq_store_t *self)
{
    char *rocks_error = NULL;
    rocksdb_flush_wal (self->db, 1, &rocks_error);
    return rocks_error ? s_error (rocks_error, NULL, 0, "sync") : ZCQ_OK;
}

void
zcq_store_inject_fault (zcq_store_t *self, int countdown)
{
    atomic_store (&self->fault_countdown, countdown);
}

zcq_err_t
zcq_store_append (zcq_store_t *self, const char *stream, int64_t expect, const void *const *bodies,
                  const size_t *lens, size_t count, uint64_t *version, uint64_t *position)
{
    uint64_t current;
    ZCQ_TRY (zcq_store_stream_version (self, stream, &current));
    if (expect >= 0 && (uint64_t) expect != current) {
        if (version)
            *version = current;
        return ZCQ_CONFLICT;
    }
    zcq_batch_t *batch = zcq_batch_new (self);
    if (!batch)
        return ZCQ_NOMEM;
    uint64_t head = zcq_store_head (self);
    size_t stream_len = strlen (stream);
    for (size_t index = 0; index < count; index++)
        zcq_batch_event (batch, head + 1 + index, stream, stream_len, current + 1 + index,
                         bodies[index], lens[index]);

    zcq_err_t err = zcq_store_commit (self, batch, head + count);
    zcq_batch_destroy (&batch);
    if (err == ZCQ_OK) {
        if (version)
            *version = current + count;
        if (position)
            *position = head + count;
    }
    return err;
}

//  --------------------------------------------------------------------------
//  Reads

static zcq_err_t
s_iter_status (rocksdb_iterator_t *iterator)
{
    char *rocks_error = NULL;
    rocksdb_iter_get_error (iterator, &rocks_error);
    return rocks_error ? s_error (rocks_error, NULL, 0, "read") : ZCQ_OK;
}

zcq_err_t
zcq_store_read_log (zcq_store_t *self, uint64_t from, size_t limit, zcq_store_event_fn *fn,
                    void *arg)
{
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_LOG]);
    uint8_t start[8];
    zcq_put_be64 (start, from);
    size_t delivered = 0;
    zcq_err_t err = ZCQ_OK;
    for (rocksdb_iter_seek (iterator, (const char *) start, 8);
         rocksdb_iter_valid (iterator) && (!limit || delivered < limit);
         rocksdb_iter_next (iterator)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        const char *value = rocksdb_iter_value (iterator, &value_len);
        if (key_len != 8) {
            err = ZCQ_CORRUPT;
            break;
        }
        delivered++;
        if (fn (arg, zcq_get_be64 ((const uint8_t *) key), 0, value, value_len))
            break;
    }
    if (err == ZCQ_OK)
        err = s_iter_status (iterator);
    rocksdb_iter_destroy (iterator);
    return err;
}

//  Fetch the log entries at positions[0..count) and hand them to fn.
static zcq_err_t
s_deliver_positions (zcq_store_t *self, const uint64_t *positions, const uint64_t *versions,
                     size_t count, zcq_store_event_fn *fn, void *arg, bool *stopped)
{
    uint8_t keys[S_MULTIGET_CHUNK][8];
    const char *key_ptrs[S_MULTIGET_CHUNK] = { 0 };
    size_t key_lens[S_MULTIGET_CHUNK] = { 0 };
    const rocksdb_column_family_handle_t *cfs[S_MULTIGET_CHUNK] = { 0 };
    char *values[S_MULTIGET_CHUNK];
    size_t value_lens[S_MULTIGET_CHUNK];
    char *errors[S_MULTIGET_CHUNK];
    if (count == 0 || count > S_MULTIGET_CHUNK)
        return ZCQ_OK;
    for (size_t index = 0; index < count; index++) {
        zcq_put_be64 (keys[index], positions[index]);
        key_ptrs[index] = (const char *) keys[index];
        key_lens[index] = 8;
        cfs[index] = self->cf[S_CF_LOG];
    }
    rocksdb_multi_get_cf (self->db, self->read_options, cfs, count, key_ptrs, key_lens, values,
                          value_lens, errors);
    zcq_err_t err = ZCQ_OK;
    for (size_t index = 0; index < count; index++) {
        if (errors[index]) {
            if (err == ZCQ_OK)
                err = s_error (errors[index], NULL, 0, "stream read");
            else
                rocksdb_free (errors[index]);
        }
        else if (!values[index] && err == ZCQ_OK)
            err = ZCQ_CORRUPT; //  the index names a position the log lacks
        if (err == ZCQ_OK && !*stopped
            && fn (arg, positions[index], versions[index], values[index], value_lens[index]))
            *stopped = true;
        if (values[index])
            rocksdb_free (values[index]);
    }
    return err;
}

zcq_err_t
zcq_store_read_stream (zcq_store_t *self, const char *stream, uint64_t from, size_t limit,
                       zcq_store_event_fn *fn, void *arg)
{
    size_t stream_len = strlen (stream);
    if (stream_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    char start[ZCQ_STREAM_MAX + 9];
    size_t start_len = s_stream_key (start, stream, stream_len, from ? from : 1);
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_STREAMS]);
    uint64_t positions[S_MULTIGET_CHUNK], versions[S_MULTIGET_CHUNK];
    size_t pending = 0, delivered = 0;
    bool stopped = false;
    zcq_err_t err = ZCQ_OK;
    for (rocksdb_iter_seek (iterator, start, start_len);
         rocksdb_iter_valid (iterator) && !stopped && (!limit || delivered < limit);
         rocksdb_iter_next (iterator)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        if (key_len != stream_len + 9 || memcmp (key, start, stream_len + 1) != 0)
            break;
        const char *value = rocksdb_iter_value (iterator, &value_len);
        if (value_len != 8) {
            err = ZCQ_CORRUPT;
            break;
        }
        positions[pending] = zcq_get_be64 ((const uint8_t *) value);
        versions[pending] = zcq_get_be64 ((const uint8_t *) key + stream_len + 1);
        pending++;
        delivered++;
        if (pending == S_MULTIGET_CHUNK) {
            err = s_deliver_positions (self, positions, versions, pending, fn, arg, &stopped);
            pending = 0;
            if (err != ZCQ_OK)
                break;
        }
    }
    if (err == ZCQ_OK && pending && !stopped)
        err = s_deliver_positions (self, positions, versions, pending, fn, arg, &stopped);
    if (err == ZCQ_OK)
        err = s_iter_status (iterator);
    rocksdb_iter_destroy (iterator);
    return err;
}

zcq_err_t
zcq_store_stream_version (zcq_store_t *self, const char *stream, uint64_t *version)
{
    size_t stream_len = strlen (stream);
    if (stream_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    *version = 0;
    char *rocks_error = NULL;
    size_t len;
    char *value = rocksdb_get_cf (self->db, self->read_options, self->cf[S_CF_STREAMS], stream,
                                  stream_len + 1, &len, &rocks_error);
    if (rocks_error)
        return s_error (rocks_error, NULL, 0, "stream version");
    zcq_err_t err = ZCQ_OK;
    if (value && len == 8)
        *version = zcq_get_be64 ((const uint8_t *) value);
    else if (value)
        err = ZCQ_CORRUPT;
    rocksdb_free (value);
    return err;
}

//  Get a value from a column family; caller frees *value with free.
static zcq_err_t
s_get (zcq_store_t *self, int cf, const char *key, size_t key_len, void **value, size_t *len)
{
    char *rocks_error = NULL;
    char *found = rocksdb_get_cf (self->db, self->read_options, self->cf[cf], key, key_len, len,
                                  &rocks_error);
    if (rocks_error)
        return s_error (rocks_error, NULL, 0, "get");
    if (!found)
        return ZCQ_NOT_FOUND;
    //  copy into malloc'd memory so callers free it the usual way
    void *copy = malloc (*len ? *len : 1);
    if (copy)
        memcpy (copy, found, *len);
    rocksdb_free (found);
    if (!copy)
        return ZCQ_NOMEM;
    *value = copy;
    return ZCQ_OK;
}

zcq_err_t
zcq_store_snapshot (zcq_store_t *self, const char *stream, uint32_t *schema, uint64_t *version,
                    void **state, size_t *len)
{
    void *value;
    size_t value_len;
    ZCQ_TRY (s_get (self, S_CF_SNAPSHOTS, stream, strlen (stream), &value, &value_len));
    if (value_len < 12) {
        free (value);
        return ZCQ_CORRUPT;
    }
    const uint8_t *bytes = value;
    *schema = (uint32_t) bytes[0] << 24 | (uint32_t) bytes[1] << 16 | (uint32_t) bytes[2] << 8
            | bytes[3];
    *version = zcq_get_be64 (bytes + 4);
    *len = value_len - 12;
    memmove (value, bytes + 12, *len);
    *state = value;
    return ZCQ_OK;
}

zcq_err_t
zcq_store_command (zcq_store_t *self, const char *id, size_t id_len, void **result, size_t *len)
{
    if (atomic_load_explicit (&self->ids_ready, memory_order_acquire)
        && !s_bloom_maybe (&self->ids, id, id_len))
        return ZCQ_NOT_FOUND;
    void *value;
    size_t value_len;
    ZCQ_TRY (s_get (self, S_CF_COMMANDS, id, id_len, &value, &value_len));
    if (value_len < 8) {
        free (value);
        return ZCQ_CORRUPT;
    }
    int64_t time = (int64_t) zcq_get_be64 (value);
    if (time < zcq_now_us () - (int64_t) self->dedup_window_s * 1000000) {
        free (value);
        return ZCQ_NOT_FOUND;
    }
    *len = value_len - 8;
    memmove (value, (char *) value + 8, *len);
    *result = value;
    return ZCQ_OK;
}

zcq_err_t
zcq_store_expire_commands (zcq_store_t *self, int64_t now_us, size_t max, size_t *expired)
{
    int64_t cutoff = now_us - (int64_t) self->dedup_window_s * 1000000;
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_EXPIRY]);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    size_t count = 0;
    for (rocksdb_iter_seek_to_first (iterator); rocksdb_iter_valid (iterator) && count < max;
         rocksdb_iter_next (iterator)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        if (key_len < 8 || (int64_t) zcq_get_be64 ((const uint8_t *) key) >= cutoff)
            break;
        rocksdb_writebatch_delete_cf (batch, self->cf[S_CF_EXPIRY], key, key_len);
        //  delete the id only if its record is this one (DESIGN 3)
        void *record;
        size_t record_len;
        if (s_get (self, S_CF_COMMANDS, key + 8, key_len - 8, &record, &record_len) == ZCQ_OK) {
            if (record_len >= 8 && memcmp (record, key, 8) == 0)
                rocksdb_writebatch_delete_cf (batch, self->cf[S_CF_COMMANDS], key + 8, key_len - 8);
            free (record);
        }
        count++;
    }
    zcq_err_t err = s_iter_status (iterator);
    rocksdb_iter_destroy (iterator);
    if (err == ZCQ_OK && count) {
        char *rocks_error = NULL;
        rocksdb_write (self->db, self->write_options, batch, &rocks_error);
        if (rocks_error)
            err = s_error (rocks_error, NULL, 0, "expiring command ids");
    }
    rocksdb_writebatch_destroy (batch);
    if (expired)
        *expired = err == ZCQ_OK ? count : 0;
    return err;
}

zcq_err_t
zcq_store_meta (zcq_store_t *self, const char *name, void **value, size_t *len)
{
    return s_get (self, S_CF_DEFAULT, name, strlen (name), value, len);
}

uint64_t
zcq_store_disk_bytes (zcq_store_t *self)
{
    DIR *dir = opendir (self->path);
    if (!dir)
        return 0;
    uint64_t total = 0;
    struct dirent *entry;
    char path[4096];
    while ((entry = readdir (dir))) {
        struct stat info;
        snprintf (path, sizeof path, "%s/%s", self->path, entry->d_name);
        if (stat (path, &info) == 0 && S_ISREG (info.st_mode))
            total += (uint64_t) info.st_size;
    }
    closedir (dir);
    return total;
}
