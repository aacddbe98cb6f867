/*  store.c: the event store on RocksDB. The only file that includes
    rocksdb/c.h; RocksDB's error strings become zcq_err_t here.

    DESIGN
    1.  Positions are assigned by the single committer, head + 1 upward,
        and a commit writes the log entries, the stream index, snapshots,
        command ids and metadata of a batch in one WriteBatch: all or none.
    2.  The head is derived from the log itself (its last key) when the
        store opens, so it can never disagree with what is stored.
    3.  A command id record carries its commit time; look-ups treat records
        older than the dedup window as absent, and a compaction filter on
        the `commands` family drops them when RocksDB compacts it (only the
        newest record of an id is seen there, so a reused id's newer record
        survives). Data dirs of earlier versions also kept a time-ordered
        `expiry` index, one more put a command; zcq_store_expire_commands
        still empties what is left of it.
    4.  Reads use their own iterators; RocksDB is thread-safe for
        concurrent reads and writes. The only lock is the handle's (DESIGN
        7): every read holds it shared, uncontended but during a reopen.
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
    7.  A failed write leaves RocksDB with a background error that refuses
        every later write until the DB is reopened (the C API has no
        Resume). So a failed commit marks the store broken: commits fail at
        once, reads keep using the open handle, and zcq_store_recover
        (called by the committing thread, with a backoff of 100 ms doubling
        to 500 ms, or four times what a failed attempt took if that is
        more) closes RocksDB and opens it again with the same column
        families and options. While that fails (the fault lasts), the store
        opens read-only, so that reads go on. The handle sits behind a
        read-write lock: readers take it shared, the reopen exclusive, and a
        long log read steps aside (drops and retakes it between keys) when a
        reopen waits. A reopened DB may hold more than the store had
        committed (in fsync mode a batch whose sync failed is in the WAL and
        comes back whole), so the head is read again and the epoch counter
        goes up: whoever caches state derived from the store (the log
        writer's head, the shards' aggregates) reloads it when the epoch
        changes.
    8.  RocksDB's point-in-time recovery stops at the first damaged WAL
        record and drops everything after it, silently. Before opening, the
        store checks the WAL files itself (s_check_wal): a damaged record
        followed, in the same file, by intact records means acknowledged
        data would be lost, and the open is refused, naming the file and the
        offset. A damaged or short stretch at the end of a file is what a
        crash or power cut leaves (a torn last write) and is accepted, as is
        a stretch of zeros (RocksDB skips those).
    9.  RocksDB checks an .sst block's checksum only when the block is read.
        A thread reads the `log` family through once after open (verify
        checksums, no block cache, readahead) and checks that its keys run
        1..head without a hole; zcq_store_verified waits for it. The node
        waits for it before it takes commands, while its views catch up.
    10. A stream's version is not stored: it is the highest version in the
        stream index, whose versions run 1..V without a hole. Loading an
        aggregate reads the snapshot and then the index from the snapshot's
        version on, so the last entry read gives V; a bare version query
        finds V by probing versions 1, 2, 4, ... until one is missing, then
        halving the gap. Data dirs of format 1 also kept a head record
        (stream NUL -> version) per stream, one more random-order put per
        commit; they are left where they are, unread, and opening such a
        dir for writing moves its format to 2 so that older builds, which
        would trust the stale records, refuse it.
*/
#include "zcq_internal.h"
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

#define S_FORMAT "2"
//  a data dir of format 1 (with stream head records, DESIGN 10) is read too
#define S_FORMAT_HEADS   "1"
#define S_DEFAULT_WINDOW (24 * 3600)
#define S_MULTIGET_CHUNK 256
#define S_BLOOM_MIN_BITS (1ULL << 26) //  8 MiB: 1% false hits up to ~6.7M ids
#define S_BLOOM_HASHES   7
#define S_RETRY_FIRST_MS 100 //  DESIGN 7: first reopen attempt after a failure
#define S_RETRY_MAX_MS   500
#define S_YIELD_EVERY    1024 //  log read: keys between looks for a waiting reopen
#define S_WAL_BLOCK      32768

typedef struct {
    _Atomic uint64_t *words;
    uint64_t bits; //  a power of two
} s_bloom_t;

struct zcq_store_t {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_options_t *streams_options; //  DESIGN 6
    rocksdb_options_t *commands_options;
    rocksdb_compactionfilter_t *expired_ids; //  DESIGN 3
    rocksdb_readoptions_t *scan_options;     //  total order, for whole-family scans
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
    atomic_bool closing;   //  tells the filling and verifying threads to stop
    pthread_t ids_filler;
    bool ids_filling;
    pthread_mutex_t threads; //  guards starting and joining those threads
    char *path;

    //  DESIGN 7
    pthread_rwlock_t lock;      //  the handle: readers shared, a reopen exclusive
    atomic_bool broken;         //  a write failed: commits refused until reopened
    atomic_bool reopen_waiting; //  long reads step aside
    bool read_only;             //  opened read-only while the fault lasts
    _Atomic uint64_t epoch;     //  reopens so far
    int64_t next_attempt;       //  zclock_mono () of the next reopen
    int64_t backoff_ms;

    //  DESIGN 9
    pthread_t verifier;
    bool verifying;   //  the thread runs (or ran and is not joined)
    bool verify;      //  asked for by the options
    bool verify_done; //  the whole log was read through
    zcq_err_t verify_err;
    char verify_error[512];
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

//  The compaction filter of `commands` (DESIGN 3): drop records older than
//  the dedup window. Called from RocksDB's compaction threads; reads only
//  the window, which never changes.
static unsigned char
s_expired_id (void *state, int level, const char *key, size_t key_len, const char *value,
              size_t value_len, char **new_value, size_t *new_value_len,
              unsigned char *value_changed)
{
    const zcq_store_t *self = state;
    *value_changed = 0;
    if (value_len < 8)
        return 0;
    int64_t time = (int64_t) zcq_get_be64 ((const uint8_t *) value);
    return time < zcq_now_us () - (int64_t) self->dedup_window_s * 1000000;
}

static void
s_expired_destroy (void *state)
{
}

static const char *
s_expired_name (void *state)
{
    return "zcqrs.expired-command-ids";
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
    options->verify = true;
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
    char *rocks_error = NULL;
    rocksdb_iter_get_error (iterator, &rocks_error);
    if (rocks_error) {
        rocksdb_iter_destroy (iterator);
        return s_error (rocks_error, error, size, "reading the log's first position");
    }
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
//  estimate, at least S_BLOOM_MIN_BITS).
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
    return ZCQ_OK;
}

//  Read the `log` family through, verifying block checksums, and check
//  that its keys run 1..head (DESIGN 9).
static void *
s_verify_log (void *args)
{
    zcq_store_t *self = args;
    uint64_t head = atomic_load (&self->head);
    rocksdb_readoptions_t *options = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_verify_checksums (options, 1);
    rocksdb_readoptions_set_fill_cache (options, 0);
    rocksdb_readoptions_set_readahead_size (options, 2 << 20);
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, options, self->cf[S_CF_LOG]);
    uint64_t expected = 1;
    zcq_err_t err = ZCQ_OK;
    for (rocksdb_iter_seek_to_first (iterator);
         rocksdb_iter_valid (iterator) && !atomic_load (&self->closing);
         rocksdb_iter_next (iterator), expected++) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        uint64_t position = key_len == 8 ? zcq_get_be64 ((const uint8_t *) key) : 0;
        if (position != expected) {
            snprintf (self->verify_error, sizeof self->verify_error,
                      "the log has %s at position %llu: events are missing",
                      key_len == 8 ? "a hole" : "a malformed key", (unsigned long long) expected);
            err = ZCQ_CORRUPT;
            break;
        }
    }
    char *rocks_error = NULL;
    rocksdb_iter_get_error (iterator, &rocks_error);
    bool interrupted = atomic_load (&self->closing);
    if (rocks_error)
        err = s_error (rocks_error, self->verify_error, sizeof self->verify_error,
                       "verifying the log");
    else if (err == ZCQ_OK && !interrupted && expected - 1 < head) {
        snprintf (self->verify_error, sizeof self->verify_error,
                  "the log ends at position %llu, its head is %llu: events are missing",
                  (unsigned long long) (expected - 1), (unsigned long long) head);
        err = ZCQ_CORRUPT;
    }
    rocksdb_iter_destroy (iterator);
    rocksdb_readoptions_destroy (options);
    self->verify_err = err;
    self->verify_done = err != ZCQ_OK || !interrupted;
    if (err != ZCQ_OK)
        zsys_error ("store: %s", self->verify_error);
    return NULL;
}

//  Start the threads that read the store after an open: the id filter
//  while it is not full, the log check while it has not run through.
static void
s_start_threads (zcq_store_t *self)
{
    pthread_mutex_lock (&self->threads);
    atomic_store (&self->closing, false);
    if (!atomic_load (&self->ids_ready) && !self->ids_filling
        && pthread_create (&self->ids_filler, NULL, s_fill_ids, self) == 0)
        self->ids_filling = true;
    if (self->verify && !self->verify_done && !self->verifying
        && pthread_create (&self->verifier, NULL, s_verify_log, self) == 0)
        self->verifying = true;
    pthread_mutex_unlock (&self->threads);
}

//  Stop and join them (they read the handle without its lock).
static void
s_stop_threads (zcq_store_t *self)
{
    pthread_mutex_lock (&self->threads);
    atomic_store (&self->closing, true);
    if (self->ids_filling)
        pthread_join (self->ids_filler, NULL);
    if (self->verifying)
        pthread_join (self->verifier, NULL);
    self->ids_filling = self->verifying = false;
    pthread_mutex_unlock (&self->threads);
}

static zcq_err_t
s_check_format (zcq_store_t *self, char *error, size_t size)
{
    void *format;
    size_t len;
    zcq_err_t err = zcq_store_meta (self, "format", &format, &len);
    bool write = err == ZCQ_NOT_FOUND; //  a new data dir
    if (err == ZCQ_OK) {
        bool same = len == strlen (S_FORMAT) && memcmp (format, S_FORMAT, len) == 0;
        bool heads = len == strlen (S_FORMAT_HEADS) && memcmp (format, S_FORMAT_HEADS, len) == 0;
        free (format);
        if (!same && !heads) {
            snprintf (error, size, "data dir has an unsupported format (this build reads %s)",
                      S_FORMAT);
            return ZCQ_CORRUPT;
        }
        //  DESIGN 10: from now on the head records go stale, so a build that
        //  still reads them must not open this dir
        write = heads && !self->read_only;
    }
    else if (!write) {
        snprintf (error, size, "reading the format: %s", zcq_strerror (err));
        return err;
    }
    if (!write)
        return ZCQ_OK;
    char *rocks_error = NULL;
    rocksdb_put_cf (self->db, self->write_options, self->cf[S_CF_DEFAULT], "format", 6, S_FORMAT,
                    strlen (S_FORMAT), &rocks_error);
    return rocks_error ? s_error (rocks_error, error, size, "writing the format") : ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  The WAL check (DESIGN 8). RocksDB's WAL is a sequence of 32 KiB blocks
//  of records: crc32c (4, masked), length (2), type (1), then for the
//  recyclable types the log number (4), then the payload. A record that
//  does not fit in its block's rest is split into first, middle and last
//  fragments; a block's tail shorter than a header is zero padding. A
//  record's payload is a WriteBatch.

static uint32_t s_crc_table[256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void
s_crc_init (void)
{
    for (uint32_t index = 0; index < 256; index++) {
        uint32_t crc = index;
        for (int bit = 0; bit < 8; bit++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78 : crc >> 1;
        s_crc_table[index] = crc;
    }
}

#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__ ((target ("sse4.2"))) static uint32_t
s_crc32c_sse42 (uint32_t crc, const uint8_t *bytes, size_t len)
{
    uint64_t wide = crc;
    for (; len >= 8; bytes += 8, len -= 8) {
        uint64_t word;
        memcpy (&word, bytes, 8);
        wide = _mm_crc32_u64 (wide, word);
    }
    crc = (uint32_t) wide;
    for (; len; bytes++, len--)
        crc = _mm_crc32_u8 (crc, *bytes);
    return crc;
}
#endif

//  crc32c (Castagnoli) of bytes, continuing from crc (0 to start).
static uint32_t
s_crc32c (uint32_t crc, const uint8_t *bytes, size_t len)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports ("sse4.2"))
        return ~s_crc32c_sse42 (crc, bytes, len);
#endif
    pthread_once (&s_crc_once, s_crc_init);
    for (; len; bytes++, len--)
        crc = s_crc_table[(crc ^ *bytes) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t
s_get_le32 (const uint8_t *bytes)
{
    return (uint32_t) bytes[0] | (uint32_t) bytes[1] << 8 | (uint32_t) bytes[2] << 16
         | (uint32_t) bytes[3] << 24;
}

typedef enum { S_RECORD_INTACT, S_RECORD_DAMAGED, S_RECORD_NONE } s_record_t;

//  The record at offset: intact (its type, payload and where the next one
//  starts), damaged (a header that fits its block, a payload that fails
//  its checksum; *next is still set), or none (no header that fits).
static s_record_t
s_wal_record (const uint8_t *file, size_t size, size_t offset, int *type, const uint8_t **payload,
              size_t *len, size_t *next)
{
    size_t block_left = S_WAL_BLOCK - offset % S_WAL_BLOCK;
    if (block_left < 7 || size - offset < 7)
        return S_RECORD_NONE;
    const uint8_t *header = file + offset;
    int kind = header[6];
    size_t header_size = kind >= 5 && kind <= 8 ? 11 : 7;
    size_t length = (size_t) header[4] | (size_t) header[5] << 8;
    if (kind < 1 || kind > 9 || header_size + length > block_left
        || header_size + length > size - offset)
        return S_RECORD_NONE;
    *next = offset + header_size + length;
    uint32_t crc = s_crc32c (0, header + 6, header_size - 6);
    crc = s_crc32c (crc, header + header_size, length);
    uint32_t masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
    if (masked != s_get_le32 (header))
        return S_RECORD_DAMAGED;
    *type = kind >= 5 && kind <= 8 ? kind - 4 : kind;
    *payload = header + header_size;
    *len = length;
    return S_RECORD_INTACT;
}

static bool
s_varint32 (const uint8_t **cursor, const uint8_t *end, uint32_t *value)
{
    *value = 0;
    for (int shift = 0; shift <= 28 && *cursor < end; shift += 7) {
        uint8_t byte = *(*cursor)++;
        *value |= (uint32_t) (byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return true;
    }
    return false;
}

static bool
s_varstring (const uint8_t **cursor, const uint8_t *end, const uint8_t **bytes, uint32_t *len)
{
    if (!s_varint32 (cursor, end, len) || *len > (size_t) (end - *cursor))
        return false;
    *bytes = *cursor;
    *cursor += *len;
    return true;
}

typedef struct {
    size_t damaged_at; //  offset of the first damaged record; SIZE_MAX: none
    size_t intact;     //  whole intact records after it
    uint64_t first;    //  log positions those records hold (0: none)
    uint64_t last;
} s_wal_scan_t;

//  Note the log positions a WriteBatch (an intact record after the damage)
//  holds: keys of the `log` family (column family 1, DESIGN 1). The
//  record tags are RocksDB's: value, deletion, merge, blob, and their
//  column family variants.
static void
s_wal_batch (s_wal_scan_t *scan, const uint8_t *batch, size_t len)
{
    scan->intact++;
    if (len < 12)
        return;
    const uint8_t *cursor = batch + 12, *end = batch + len;
    while (cursor < end) {
        uint8_t tag = *cursor++;
        uint32_t family = 0, key_len = 0, value_len = 0;
        const uint8_t *key = NULL, *value;
        bool cf = tag == 0x4 || tag == 0x5 || tag == 0x6 || tag == 0x8 || tag == 0xe;
        bool has_key = tag <= 0x2 || (tag >= 0x4 && tag <= 0x8) || tag == 0xe || tag == 0xf;
        bool has_value = tag == 0x1 || tag == 0x2 || tag == 0x5 || tag == 0x6 || tag == 0xe
                      || tag == 0xf;
        if (tag == 0x3) //  log data: one string
            has_key = true;
        else if (tag != 0xd && !has_key)
            return; //  a tag we do not write: stop here
        if ((cf && !s_varint32 (&cursor, end, &family))
            || (has_key && !s_varstring (&cursor, end, &key, &key_len))
            || (has_value && !s_varstring (&cursor, end, &value, &value_len)))
            return;
        if (tag == 0x5 && family == S_CF_LOG && key_len == 8) {
            uint64_t position = zcq_get_be64 (key);
            if (!scan->first || position < scan->first)
                scan->first = position;
            if (position > scan->last)
                scan->last = position;
        }
    }
}

//  Scan one WAL file: where its first damaged record is, and what whole
//  intact records follow it. Past a damaged record the scan goes on after
//  it when its header still fits its block (only the payload is bad), else
//  at the next block, which starts with a header: never inside a payload,
//  where an event body could hold bytes that look like a record. A torn
//  last record (its header promises more than the file holds) thus ends
//  the scan: nothing follows it.
static void
s_wal_scan (const uint8_t *file, size_t size, s_wal_scan_t *scan)
{
    memset (scan, 0, sizeof *scan);
    scan->damaged_at = SIZE_MAX;
    uint8_t *whole = NULL; //  fragments of the record being put together
    size_t whole_len = 0, whole_size = 0;
    bool assembling = false;
    size_t offset = 0;
    static const uint8_t zeros[7] = { 0 };
    while (offset < size) {
        size_t block_left = S_WAL_BLOCK - offset % S_WAL_BLOCK;
        if (block_left < 7 || (size - offset >= 7 && memcmp (file + offset, zeros, 7) == 0)) {
            //  padding, or a zeroed (preallocated) stretch: RocksDB skips
            //  to the next block
            offset += block_left;
            continue;
        }
        int type = 0;
        const uint8_t *payload = NULL;
        size_t len = 0, next = 0;
        s_record_t record = s_wal_record (file, size, offset, &type, &payload, &len, &next);
        if (record != S_RECORD_INTACT) {
            if (scan->damaged_at == SIZE_MAX)
                scan->damaged_at = offset;
            assembling = false;
            offset = record == S_RECORD_DAMAGED ? next : offset + block_left;
            continue;
        }
        offset = next;
        bool after = scan->damaged_at != SIZE_MAX;
        if (type == 1) {
            assembling = false;
            if (after)
                s_wal_batch (scan, payload, len);
            continue;
        }
        if (type == 2) {
            assembling = true;
            whole_len = 0;
        }
        else if (type == 9 || !assembling)
            continue; //  a compression record, or an orphan fragment
        if (after && whole_len + len > whole_size) {
            size_t grown = (whole_len + len) * 2;
            uint8_t *bigger = realloc (whole, grown);
            if (!bigger) {
                assembling = false;
                continue;
            }
            whole = bigger;
            whole_size = grown;
        }
        if (after)
            memcpy (whole + whole_len, payload, len);
        whole_len += len;
        if (type == 4) {
            assembling = false;
            if (after)
                s_wal_batch (scan, whole, whole_len);
        }
    }
    free (whole);
}

//  Check every WAL file in the data dir (DESIGN 8).
static zcq_err_t
s_check_wal (const char *path, char *error, size_t size)
{
    DIR *dir = opendir (path);
    if (!dir)
        return ZCQ_OK; //  a new data dir; RocksDB reports other problems
    zcq_err_t err = ZCQ_OK;
    struct dirent *entry;
    while (err == ZCQ_OK && (entry = readdir (dir))) {
        size_t digits = strspn (entry->d_name, "0123456789");
        if (digits == 0 || strcmp (entry->d_name + digits, ".log") != 0)
            continue;
        char file_path[4096];
        snprintf (file_path, sizeof file_path, "%s/%s", path, entry->d_name);
        int fd = open (file_path, O_RDONLY | O_CLOEXEC);
        struct stat info;
        if (fd < 0 || fstat (fd, &info) != 0) {
            snprintf (error, size, "cannot read the write-ahead log %s: %s", file_path,
                      strerror (errno));
            err = ZCQ_IO;
        }
        else if (S_ISREG (info.st_mode) && info.st_size > 0) {
            void *file = mmap (NULL, (size_t) info.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (file == MAP_FAILED) {
                snprintf (error, size, "cannot read the write-ahead log %s: %s", file_path,
                          strerror (errno));
                err = ZCQ_IO;
            }
            else {
                s_wal_scan_t scan;
                s_wal_scan (file, (size_t) info.st_size, &scan);
                munmap (file, (size_t) info.st_size);
                if (scan.damaged_at != SIZE_MAX && scan.intact) {
                    char events[96] = "";
                    if (scan.first)
                        snprintf (events, sizeof events, " (events at positions %llu-%llu)",
                                  (unsigned long long) scan.first, (unsigned long long) scan.last);
                    snprintf (error, size,
                              "the write-ahead log %s is damaged at byte %zu and %zu intact "
                              "records follow%s: RocksDB would drop them. To start without "
                              "them, cut the file there (truncate -s %zu %s)",
                              file_path, scan.damaged_at, scan.intact, events, scan.damaged_at,
                              file_path);
                    err = ZCQ_CORRUPT;
                }
            }
        }
        if (fd >= 0)
            close (fd);
    }
    closedir (dir);
    return err;
}

//  --------------------------------------------------------------------------
//  Opening and reopening (DESIGN 7)

//  Open RocksDB with the store's column families and options.
static zcq_err_t
s_open_db (zcq_store_t *self, bool read_only, char *error, size_t size)
{
    const rocksdb_options_t *cf_options[S_CF_COUNT];
    for (int index = 0; index < S_CF_COUNT; index++)
        cf_options[index] = self->options;
    cf_options[S_CF_STREAMS] = self->streams_options;
    cf_options[S_CF_COMMANDS] = self->commands_options;
    char *rocks_error = NULL;
    if (read_only)
        self->db = rocksdb_open_for_read_only_column_families (self->options, self->path,
                                                               S_CF_COUNT, s_cf_names, cf_options,
                                                               self->cf, 0, &rocks_error);
    else
        self->db = rocksdb_open_column_families (self->options, self->path, S_CF_COUNT, s_cf_names,
                                                 cf_options, self->cf, &rocks_error);
    if (rocks_error) {
        self->db = NULL;
        memset (self->cf, 0, sizeof self->cf);
        return s_error (rocks_error, error, size, "opening the store");
    }
    self->read_only = read_only;
    return ZCQ_OK;
}

static void
s_close_db (zcq_store_t *self)
{
    if (!self->db)
        return;
    for (int index = 0; index < S_CF_COUNT; index++)
        if (self->cf[index])
            rocksdb_column_family_handle_destroy (self->cf[index]);
    memset (self->cf, 0, sizeof self->cf);
    rocksdb_close (self->db);
    self->db = NULL;
}

//  A write failed: refuse commits until a reopen (DESIGN 7).
static void
s_broken (zcq_store_t *self, const char *doing, const char *rocks_error)
{
    if (!atomic_load (&self->broken))
        zsys_error ("store: %s failed: %s; reopening the store once the fault clears", doing,
                    rocks_error);
    self->backoff_ms = S_RETRY_FIRST_MS;
    self->next_attempt = zclock_mono () + self->backoff_ms;
    atomic_store (&self->broken, true);
}

zcq_err_t
zcq_store_recover (zcq_store_t *self)
{
    if (!atomic_load_explicit (&self->broken, memory_order_acquire))
        return ZCQ_OK;
    int64_t now = zclock_mono ();
    if (now < self->next_attempt)
        return ZCQ_IO;
    atomic_store (&self->reopen_waiting, true);
    pthread_rwlock_wrlock (&self->lock);
    atomic_store (&self->reopen_waiting, false);
    s_stop_threads (self);
    s_close_db (self);
    char error[512] = "";
    zcq_err_t err = s_open_db (self, false, error, sizeof error);
    if (err == ZCQ_OK)
        err = s_load_head (self, error, sizeof error);
    if (err == ZCQ_OK) {
        atomic_store (&self->broken, false);
        zsys_info ("store: reopened after a storage failure, log head %llu",
                   (unsigned long long) atomic_load (&self->head));
    }
    else {
        //  the fault lasts: read-only, so that reads go on meanwhile
        s_close_db (self);
        char read_error[512] = "";
        if (s_open_db (self, true, read_error, sizeof read_error) != ZCQ_OK
            || s_load_head (self, read_error, sizeof read_error) != ZCQ_OK) {
            s_close_db (self);
            zsys_warning ("store: cannot reopen (%s), nor read-only (%s)", error, read_error);
        }
        else if (self->backoff_ms == S_RETRY_FIRST_MS)
            zsys_warning ("store: cannot reopen yet (%s); reads go on read-only", error);
        if (self->backoff_ms < S_RETRY_MAX_MS)
            self->backoff_ms = self->backoff_ms * 2 < S_RETRY_MAX_MS ? self->backoff_ms * 2
                                                                     : S_RETRY_MAX_MS;
        //  a big WAL makes an attempt slow, and readers wait for it: keep
        //  them waiting a fifth of the time at most
        int64_t took = zclock_mono () - now;
        self->next_attempt
            = zclock_mono () + (self->backoff_ms > 4 * took ? self->backoff_ms : 4 * took);
    }
    atomic_fetch_add (&self->epoch, 1);
    if (self->db)
        s_start_threads (self);
    pthread_rwlock_unlock (&self->lock);
    return err == ZCQ_OK ? ZCQ_OK : ZCQ_IO;
}

uint64_t
zcq_store_epoch (const zcq_store_t *self)
{
    return atomic_load_explicit (&((zcq_store_t *) self)->epoch, memory_order_acquire);
}

bool
zcq_store_failed (const zcq_store_t *self)
{
    return atomic_load_explicit (&((zcq_store_t *) self)->broken, memory_order_relaxed);
}

zcq_err_t
zcq_store_verified (zcq_store_t *self, char *error, size_t size)
{
    pthread_mutex_lock (&self->threads);
    if (self->verifying) {
        pthread_join (self->verifier, NULL);
        self->verifying = false;
    }
    zcq_err_t err = self->verify_err;
    pthread_mutex_unlock (&self->threads);
    if (err != ZCQ_OK && error && size)
        snprintf (error, size, "%s", self->verify_error);
    return err;
}

//  Take the handle for a read; ZCQ_IO when the store has none (a reopen
//  failed). Pair with s_read_end.
static zcq_err_t
s_read_begin (zcq_store_t *self)
{
    pthread_rwlock_rdlock (&self->lock);
    if (self->db)
        return ZCQ_OK;
    pthread_rwlock_unlock (&self->lock);
    return ZCQ_IO;
}

static void
s_read_end (zcq_store_t *self)
{
    pthread_rwlock_unlock (&self->lock);
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
    //  readers wait for a reopen that waits, so that it cannot starve
    pthread_rwlockattr_t lock_attributes;
    pthread_rwlockattr_init (&lock_attributes);
    pthread_rwlockattr_setkind_np (&lock_attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init (&self->lock, &lock_attributes);
    pthread_rwlockattr_destroy (&lock_attributes);
    pthread_mutex_init (&self->threads, NULL);
    self->durability = options->durability;
    self->dedup_window_s = options->dedup_window_s ? options->dedup_window_s : S_DEFAULT_WINDOW;
    self->verify = options->verify;

    //  without `create`, a missing data dir is an error, and RocksDB must not
    //  be asked (it would make the directory and its lock file first)
    struct stat info;
    char current[4096];
    snprintf (current, sizeof current, "%s/CURRENT", path);
    if (!options->create && stat (current, &info) != 0) {
        snprintf (error, size, "%s is not a zcqrs data dir (no CURRENT file)", path);
        zcq_store_close (&self);
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
    self->expired_ids
        = rocksdb_compactionfilter_create (self, s_expired_destroy, s_expired_id, s_expired_name);
    rocksdb_options_set_compaction_filter (self->commands_options, self->expired_ids);
    rocksdb_options_set_prefix_extractor (self->commands_options,
                                          rocksdb_slicetransform_create_noop ());
    rocksdb_options_set_hash_skip_list_rep (self->commands_options, 200003, 4, 4);
    self->write_options = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->write_options, self->durability == ZCQ_DURABILITY_FSYNC);
    self->read_options = rocksdb_readoptions_create ();
    self->scan_options = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_total_order_seek (self->scan_options, 1);

    zcq_err_t err = s_check_wal (path, error, size);
    if (err == ZCQ_OK)
        err = s_open_db (self, false, error, size);
    if (err == ZCQ_OK)
        err = s_check_format (self, error, size);
    if (err == ZCQ_OK)
        err = s_load_head (self, error, size);
    if (err == ZCQ_OK)
        err = s_load_ids (self, error, size);
    if (err != ZCQ_OK) {
        zcq_store_close (&self);
        return err;
    }
    s_start_threads (self);
    *store_p = self;
    return ZCQ_OK;
}

void
zcq_store_close (zcq_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_store_t *self = *self_p;
    s_stop_threads (self);
    if (self->db && !self->read_only && !atomic_load (&self->broken)) {
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
    s_close_db (self);
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
    if (self->expired_ids)
        rocksdb_compactionfilter_destroy (self->expired_ids);
    if (self->options)
        rocksdb_options_destroy (self->options);
    if (self->table)
        rocksdb_block_based_options_destroy (self->table);
    if (self->cache)
        rocksdb_cache_destroy (self->cache);
    free (self->ids.words);
    free (self->path);
    pthread_rwlock_destroy (&self->lock);
    pthread_mutex_destroy (&self->threads);
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
    self->count++;
}

void
zcq_batch_snapshot (zcq_batch_t *self, const char *stream, size_t stream_len, uint32_t schema,
                    uint64_t version, const void *state, size_t len)
{
    uint8_t header[12];
    zcq_put_be32 (header, schema);
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
    //  DESIGN 7: refused until reopened
    if (atomic_load_explicit (&self->broken, memory_order_relaxed))
        return ZCQ_IO;
    ZCQ_TRY (s_read_begin (self));
    char *rocks_error = NULL;
    rocksdb_write (self->db, self->write_options, batch->batch, &rocks_error);
    zcq_err_t err = ZCQ_OK;
    if (rocks_error) {
        s_broken (self, "commit", rocks_error);
        err = s_error (rocks_error, NULL, 0, "commit");
    }
    else if (head > atomic_load (&self->head))
        atomic_store (&self->head, head);
    s_read_end (self);
    return err;
}

zcq_err_t
zcq_store_sync (zcq_store_t *self)
{
    if (atomic_load_explicit (&self->broken, memory_order_relaxed))
        return ZCQ_IO;
    ZCQ_TRY (s_read_begin (self));
    char *rocks_error = NULL;
    rocksdb_flush_wal (self->db, 1, &rocks_error);
    zcq_err_t err = ZCQ_OK;
    if (rocks_error) {
        s_broken (self, "sync", rocks_error);
        err = s_error (rocks_error, NULL, 0, "sync");
    }
    s_read_end (self);
    return err;
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
    ZCQ_TRY (zcq_store_recover (self));
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
    ZCQ_TRY (s_read_begin (self));
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_LOG]);
    uint8_t start[8];
    zcq_put_be64 (start, from);
    size_t delivered = 0;
    zcq_err_t err = ZCQ_OK;
    for (rocksdb_iter_seek (iterator, (const char *) start, 8);
         rocksdb_iter_valid (iterator) && (!limit || delivered < limit);) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        const char *value = rocksdb_iter_value (iterator, &value_len);
        if (key_len != 8) {
            err = ZCQ_CORRUPT;
            break;
        }
        uint64_t position = zcq_get_be64 ((const uint8_t *) key);
        delivered++;
        if (fn (arg, position, 0, value, value_len))
            break;
        if (delivered % S_YIELD_EVERY == 0 && atomic_load (&self->reopen_waiting)) {
            //  DESIGN 7: let the reopen in, then go on after this position
            err = s_iter_status (iterator);
            rocksdb_iter_destroy (iterator);
            iterator = NULL;
            s_read_end (self);
            if (err != ZCQ_OK)
                return err;
            ZCQ_TRY (s_read_begin (self));
            iterator
                = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_LOG]);
            zcq_put_be64 (start, position + 1);
            rocksdb_iter_seek (iterator, (const char *) start, 8);
        }
        else
            rocksdb_iter_next (iterator);
    }
    if (err == ZCQ_OK)
        err = s_iter_status (iterator);
    rocksdb_iter_destroy (iterator);
    s_read_end (self);
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
    ZCQ_TRY (s_read_begin (self));
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
    s_read_end (self);
    return err;
}

//  Whether the stream has an event at this version (its index entry is
//  there). The caller holds the handle.
static zcq_err_t
s_stream_has (zcq_store_t *self, char *key, size_t stream_len, uint64_t version, bool *has)
{
    zcq_put_be64 ((uint8_t *) key + stream_len + 1, version);
    char *rocks_error = NULL;
    size_t len;
    char *value = rocksdb_get_cf (self->db, self->read_options, self->cf[S_CF_STREAMS], key,
                                  stream_len + 9, &len, &rocks_error);
    if (rocks_error)
        return s_error (rocks_error, NULL, 0, "stream version");
    *has = value != NULL;
    zcq_err_t err = value && len != 8 ? ZCQ_CORRUPT : ZCQ_OK;
    rocksdb_free (value);
    return err;
}

//  DESIGN 10: a stream's versions run 1..V without holes, so V is found by
//  doubling the probe until it misses, then halving the gap: 2 log2 V
//  point look-ups, each answered by a memtable bucket or a Bloom filter.
zcq_err_t
zcq_store_stream_version (zcq_store_t *self, const char *stream, uint64_t *version)
{
    size_t stream_len = strlen (stream);
    if (stream_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    *version = 0;
    char key[ZCQ_STREAM_MAX + 9];
    s_stream_key (key, stream, stream_len, 0);
    ZCQ_TRY (s_read_begin (self));
    uint64_t present = 0, absent = 0; //  absent 0: no miss seen yet
    bool has = true;
    zcq_err_t err = ZCQ_OK;
    for (uint64_t probe = 1; err == ZCQ_OK && !absent; probe = probe * 2) {
        err = s_stream_has (self, key, stream_len, probe, &has);
        if (err == ZCQ_OK && has)
            present = probe;
        else if (err == ZCQ_OK)
            absent = probe;
        if (probe > UINT64_MAX / 2)
            break;
    }
    while (err == ZCQ_OK && absent && absent - present > 1) {
        uint64_t middle = present + (absent - present) / 2;
        err = s_stream_has (self, key, stream_len, middle, &has);
        if (err == ZCQ_OK && has)
            present = middle;
        else if (err == ZCQ_OK)
            absent = middle;
    }
    s_read_end (self);
    if (err == ZCQ_OK)
        *version = present;
    return err;
}

//  Get a value from a column family; caller frees *value with free. The
//  caller holds the handle (s_read_begin).
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
    ZCQ_TRY (s_read_begin (self));
    zcq_err_t err = s_get (self, S_CF_SNAPSHOTS, stream, strlen (stream), &value, &value_len);
    s_read_end (self);
    if (err != ZCQ_OK)
        return err;
    if (value_len < 12) {
        free (value);
        return ZCQ_CORRUPT;
    }
    const uint8_t *bytes = value;
    *schema = zcq_get_be32 (bytes);
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
    ZCQ_TRY (s_read_begin (self));
    zcq_err_t err = s_get (self, S_CF_COMMANDS, id, id_len, &value, &value_len);
    s_read_end (self);
    if (err != ZCQ_OK)
        return err;
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
zcq_store_compact_commands (zcq_store_t *self)
{
    ZCQ_TRY (s_read_begin (self));
    rocksdb_compact_range_cf (self->db, self->cf[S_CF_COMMANDS], NULL, 0, NULL, 0);
    s_read_end (self);
    return ZCQ_OK;
}

zcq_err_t
zcq_store_expire_commands (zcq_store_t *self, int64_t now_us, size_t max, size_t *expired)
{
    int64_t cutoff = now_us - (int64_t) self->dedup_window_s * 1000000;
    if (expired)
        *expired = 0;
    if (atomic_load_explicit (&self->broken, memory_order_relaxed))
        return ZCQ_IO;
    ZCQ_TRY (s_read_begin (self));
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
        if (rocks_error) {
            s_broken (self, "expiring command ids", rocks_error);
            err = s_error (rocks_error, NULL, 0, "expiring command ids");
        }
    }
    s_read_end (self);
    rocksdb_writebatch_destroy (batch);
    if (expired)
        *expired = err == ZCQ_OK ? count : 0;
    return err;
}

zcq_err_t
zcq_store_meta (zcq_store_t *self, const char *name, void **value, size_t *len)
{
    ZCQ_TRY (s_read_begin (self));
    zcq_err_t err = s_get (self, S_CF_DEFAULT, name, strlen (name), value, len);
    s_read_end (self);
    return err;
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
