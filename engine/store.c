/*  store.c: the event store on RocksDB. The store's files (store.c,
    store_recent.c, store_wal.c) are the only ones that include
    rocksdb/c.h; RocksDB's error strings become zcq_err_t here.

    DESIGN
    1.  Positions are assigned by the single committer, head + 1 upward.
        A commit writes, in one WriteBatch (all or none), only what comes
        in log order: the log entries, and the rare snapshot, metadata
        value, and id of a command that wrote no events (DESIGN 13). The
        stream index (`streams`) and the command ids (`commands`) are
        derived from the log, kept in memory for its recent part and
        written behind it by the indexer (DESIGN 11, 12).
    2.  The head is derived from the log itself (its last key) when the
        store opens, so it can never disagree with what is stored.
    3.  A command id record carries its commit time; look-ups treat records
        older than the dedup window as absent, the indexer does not write
        them, and a compaction filter on the `commands` family drops them
        when RocksDB compacts it (only the newest record of an id is seen
        there, so a reused id's newer record survives; the filter leaves
        the index marker of DESIGN 12 alone). Data dirs of earlier versions
        also kept a time-ordered `expiry` index, one more put a command;
        zcq_store_expire_commands still empties what is left of it.
    4.  Reads use their own iterators; RocksDB is thread-safe for
        concurrent reads and writes. Two locks: the handle's (DESIGN 7),
        held shared by every read, uncontended but during a reopen; and
        the recent part's (DESIGN 11), held shared for a look-up in memory.
        Always in that order.
    5.  Most command ids are new, and a look-up that finds nothing still
        searches the memtables. A Bloom filter of the ids (built from the
        commands family and the recent part on open, bits set as each id
        is staged, never cleared) answers "certainly new" without touching
        RocksDB; a "maybe" falls through to the real look-up, so it costs
        nothing in correctness. It is filled from the stored ids by a
        thread of its own after the store opens; until that is done
        (ids_ready), every look-up goes to the recent part and RocksDB, so
        a node starts at once whatever the number of ids. THREAD SAFETY:
        its words are atomics, set with fetch_or by the committer, the
        open and the filling thread and read by any thread.
    6.  RocksDB gets the two index families through the files the indexer
        ingests (DESIGN 11), and their memtables see only the rare record
        of DESIGN 13 and the markers a new data dir starts with: plain skip
        lists do. `streams` keeps a prefix extractor (the stream name, up
        to its NUL), so that its .sst files have a Bloom filter per stream
        and a seek stays inside one stream. Data dirs of format 2 wrote
        both families in random key order in every commit, which is what
        made memtable inserts most of the committer's work.
    7.  A failed write leaves RocksDB with a background error that refuses
        every later write until the DB is reopened (the C API has no
        Resume). So a failed commit, or a failed index write, marks the
        store broken: commits fail at once, reads keep using the open handle
        and the recent part, and zcq_store_recover (called by the
        committing thread, with a backoff of 100 ms doubling to 500 ms, or
        four times what a failed attempt took if that is more) stops the
        indexer, closes RocksDB and opens it again with the same column
        families and options. While that fails (the fault lasts), the store
        opens read-only, so that reads go on. The handle sits behind a
        read-write lock: readers take it shared, the reopen exclusive, and a
        long log read steps aside (drops and retakes it between keys) when a
        reopen waits. A reopened DB may hold more than the store had
        committed (in fsync mode a batch whose sync failed is in the WAL and
        comes back whole), so the head is read again and the epoch counter
        goes up: whoever caches state derived from the store (the log
        writer's head, the shards' aggregates) reloads it when the epoch
        changes. The recent part stays: what it holds was committed, and a
        committed batch is in the WAL the reopened DB replays. The log past
        it (the batch that came back) is indexed on the reopen: from the
        index the store kept of the failed batch when the head is that
        batch's last position (so its command types stay), else from the
        log (DESIGN 12). Then the indexer starts again.
    8.  RocksDB's point-in-time recovery stops at the first damaged WAL
        record and drops everything after it, silently. Before opening, the
        store checks the WAL files itself (store_wal.c): a damaged record
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
        version on, so the last entry read gives V. A bare version query
        takes V from the recent part when the stream has events there (its
        newest ones are there), else finds it in RocksDB by probing
        versions 1, 2, 4, ... until one is missing, then halving the gap.
        Formats: 1 kept a head record (stream NUL -> version) per stream,
        left unread since; 2 wrote the stream index and the ids in every
        commit; 3 writes them behind the log, with markers (DESIGN 12).
        Opening a dir of format 1 or 2 for writing makes it format 3,
        indexed through its head, so that an older build, which would miss
        the index entries still in memory, refuses it.
    11. The recent part. A commit adds the stream index entries of its
        events and its command ids to the newest segment of the recent part
        (zcq_recent_t, store_recent.c: hash tables in an arena), in memory,
        before it returns and before the head moves: whoever sees the head
        sees their index. The indexer, a thread of its own, seals the
        newest segment (a new one takes the commits) once it holds
        S_INDEX_ENTRIES entries or S_INDEX_BYTES bytes or its first entry
        is S_INDEX_MS old, and moves the oldest sealed segment to RocksDB:
        one .sst file per family, its keys sorted, built with
        rocksdb_sstfilewriter and ingested; then drops it from memory.
        Measured (1M and 3M events of 260 bytes, 100k streams, random ids,
        the store's options, process CPU with flushes and compactions):
        writing the index in the commit costs 16 us an event, sorted
        WriteBatches behind the log 6 us, sorted .sst files 4 us, the log
        alone 1.5 us; the WriteBatches also hold up the commits queued
        behind them in RocksDB's write thread for as long as their inserts
        take, where an ingestion holds them only for its manifest write.
        Reads see both parts: memory is read first, RocksDB after, and a
        segment leaves memory only once its files are in RocksDB, so
        nothing falls between. A stream's versions below the lowest one in
        memory come from RocksDB, the others from memory; an id is looked
        up in the segments, newest first, then in RocksDB. Bound: when the
        recent part holds S_RECENT_MAX_ENTRIES entries or
        S_RECENT_MAX_BYTES bytes (4 segments' worth, about 64 MiB), a
        commit waits for the indexer (or indexes itself when no indexer
        runs): the writer slows to the indexer's pace. THREAD SAFETY: the
        segments are read under recent_lock shared and changed under it
        exclusive; the newest one is changed only by the committing thread,
        which holds `active` from its reservation to its merge, as the
        indexer does to seal it; one indexing at a time (`indexing`).
        Test hooks, read at open: $ZCQ_STORE_INDEX_ENTRIES seals at that
        many entries, $ZCQ_STORE_INDEX_DELAY_MS holds the indexer thread
        back that long before each segment, $ZCQ_STORE_INDEX_CRASH ends the
        process between a segment's two ingestions.
    12. Indexed through. Each file the indexer ingests carries, under the
        empty key, the position through which its family is indexed (its
        marker): a file is ingested whole or not at all, so a family never
        holds entries without the marker that covers them, and the two
        families may differ only for a crash between their ingestions.
        Before ingesting, the indexer syncs the WAL in wal mode: an index
        durable ahead of the log it points into would outlive a power cut
        that takes the log's tail. On open the store reads both markers and
        indexes the log from the lower one + 1 to the head into the recent
        part (stream entries above the `streams` marker, ids above the
        `commands` one) before open returns: every event body carries its
        stream, version, command id and time (the ZCQ/1 event map,
        ZCQ_EVENT_*), ahead of meta and data, the map's first containers,
        which are not parsed. A command's record is rebuilt from its consecutive
        events as [u64 version][u64 position][u32 events][stream] NUL,
        zcq_result_encode's layout with an empty type: the type is not in
        the log (zcq_result_parse accepts that; a duplicate check then
        compares the stream only). A log entry that is not an event body
        stops the open. A data dir without markers (format 1 or 2, whose
        commits wrote the index) is indexed through its head.
    13. A command that wrote no events leaves nothing in the log to rebuild
        its id from, so its record is written in the commit itself (a
        random-order put, but rare). It is kept in the recent part too and
        ingested with the others: RocksDB puts an ingested file above its
        memtable, so the files must carry the newest record of every id
        they hold. An older record of a reused id is expired (that is when
        an id can be used again), and expired records are neither ingested
        nor rebuilt (DESIGN 3), so it never covers the newer one.
    14. Truncation (a stream's `$truncate`, or retention) removes a stream's
        events below a version from the log: zcq_batch_truncate stages the
        deletes of their log entries in the commit that writes the
        stream's `$truncated` event, with the stream's first kept version
        (default family, first/<stream>) and the count of removed entries
        (`removed`), so removal and its record are one atomic batch. Before
        that, the recent part is indexed to RocksDB when it holds entries
        of the versions removed: after a crash the recent part is rebuilt
        from the log, which no longer has them. The
        stream index keeps its entries (a version is still found by
        probing 1, 2, 4, ...: DESIGN 10); stream reads start at the first
        kept version. The log's only holes are removed entries: the check
        after open (DESIGN 9) accepts as many holes as `removed` counts.
        RocksDB's deletes are tombstones: compaction reclaims the space.
*/
#include "zcq_internal.h"
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
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

//  DESIGN 10: formats 1 (head records) and 2 (index in the commit) are
//  read too, and moved to 3 when opened for writing
#define S_FORMAT             "3"
#define S_META_REMOVED       "removed" //  DESIGN 14
#define S_DEFAULT_WINDOW     (24 * 3600)
#define S_MULTIGET_CHUNK     256
#define S_BLOOM_MIN_BITS     (1ULL << 26) //  8 MiB: 1% false hits up to ~6.7M ids
#define S_BLOOM_HASHES       7
#define S_RETRY_FIRST_MS     100 //  DESIGN 7: first reopen attempt after a failure
#define S_RETRY_MAX_MS       500
#define S_YIELD_EVERY        1024   //  log read: keys between looks for a waiting reopen
#define S_INDEX_ENTRIES      131072 //  DESIGN 11: seal the newest segment at this many
#define S_INDEX_BYTES        (16u << 20)
#define S_INDEX_MS           5000
#define S_RECENT_MAX_ENTRIES (4 * S_INDEX_ENTRIES) //  then commits wait for the indexer
#define S_RECENT_MAX_BYTES   (4 * S_INDEX_BYTES)
#define S_SEGMENTS_MAX       16
#define S_INDEX_POLL_MS      100          //  the indexer looks at the age of the newest segment
#define S_INDEX_FILE         "zcq-index-" //  the indexer's files, before ingestion:
#define S_INDEX_FILE_END     ".dbtmp"     //  named as RocksDB names its temporary files
#define S_MARKER             ""           //  DESIGN 12: the key of a family's indexed-through

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
    rocksdb_envoptions_t *env_options;                   //  DESIGN 11: the indexer's files
    rocksdb_ingestexternalfileoptions_t *ingest_options; //  and their ingestion
    zcq_durability_t durability;
    uint64_t dedup_window_s;
    _Atomic uint64_t head;
    atomic_int fault_countdown;
    s_bloom_t ids;         //  DESIGN 5
    atomic_bool ids_ready; //  the filter holds every stored id
    atomic_bool closing;   //  tells the store's threads to stop
    pthread_t ids_filler;
    bool ids_filling;
    pthread_mutex_t threads; //  guards starting and joining those threads
    char *path;

    //  DESIGN 7
    pthread_rwlock_t lock;      //  the handle: readers shared, a reopen exclusive
    atomic_bool broken;         //  a write failed: commits refused until reopened
    _Atomic int64_t broken_at;  //  zclock_mono () when it broke
    atomic_bool reopen_waiting; //  long reads step aside
    bool read_only;             //  opened read-only while the fault lasts
    _Atomic uint64_t epoch;     //  reopens so far
    int64_t next_attempt;       //  zclock_mono () of the next reopen
    int64_t backoff_ms;         //  0: no attempt since it broke
    zcq_recent_t *pending;      //  the index of the batch whose commit failed
    uint64_t pending_after;     //  the head that batch was staged on

    //  DESIGN 9
    pthread_t verifier;
    bool verifying;   //  the thread runs (or ran and is not joined)
    bool verify;      //  asked for by the options
    bool verify_done; //  the whole log was read through
    zcq_err_t verify_err;
    char verify_error[512];

    //  DESIGN 11, 12: the recent part and the indexer
    pthread_rwlock_t recent_lock;           //  the segments and the markers
    zcq_recent_t *segments[S_SEGMENTS_MAX]; //  oldest first; commits add to the last
    size_t segment_count;
    _Atomic uint64_t removed; //  log entries removed by truncation (DESIGN 14)
    uint64_t streams_through; //  the markers in RocksDB
    uint64_t commands_through;
    pthread_mutex_t active;      //  a commit's reservation to its merge; sealing
    pthread_mutex_t indexing;    //  one segment is moved to RocksDB at a time
    pthread_mutex_t index_mutex; //  with index_cond: wakes the indexer, and
    pthread_cond_t index_cond;   //  the commits that wait for it
    pthread_t indexer;
    bool indexer_running; //  guarded by `threads`
    atomic_bool index_held;
    size_t index_entries;   //  S_INDEX_ENTRIES, or $ZCQ_STORE_INDEX_ENTRIES
    int64_t index_delay_ms; //  $ZCQ_STORE_INDEX_DELAY_MS (tests)
    bool index_crash;       //  $ZCQ_STORE_INDEX_CRASH (tests): die between two ingestions
    uint64_t index_serial;  //  names the indexer's files
};

//  What a batch stages for the recent part (DESIGN 11): offsets into its
//  bytes, which move when they grow
typedef struct {
    size_t stream;
    size_t stream_len;
    uint64_t version;
    uint64_t position;
} s_staged_event_t;

typedef struct {
    size_t id;
    size_t id_len;
    size_t result;
    size_t result_len;
    int64_t time;
} s_staged_command_t;

struct zcq_batch_t {
    zcq_store_t *store;
    rocksdb_writebatch_t *batch;
    size_t count;
    bool failed;  //  a put could not be staged (no memory)
    bool invalid; //  an empty command id
    s_staged_event_t *events;
    size_t event_count;
    size_t event_slots;
    s_staged_command_t *commands;
    size_t command_count;
    size_t command_slots;
    char *bytes;
    size_t bytes_used;
    size_t bytes_size;
    size_t unclaimed; //  events staged since the last command id (DESIGN 13)
    uint64_t removed; //  log entries staged for removal (DESIGN 14)
};

static zcq_err_t s_read_begin (zcq_store_t *self);
static zcq_err_t s_iter_status (rocksdb_iterator_t *iterator);
static zcq_err_t s_get (zcq_store_t *self, int cf, const char *key, size_t key_len, void **value,
                        size_t *len);
static void s_read_end (zcq_store_t *self);
static void s_broken (zcq_store_t *self, const char *doing, const char *rocks_error);
static size_t s_stream_key (char *key, const char *stream, size_t stream_len, uint64_t version);
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
    if (key_len == 0 || value_len < 8)
        return 0; //  the marker (DESIGN 12), or not a record
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
        //  the log starts at 1: anything else means lost files, or
        //  entries removed by truncation (DESIGN 14)
        void *removed;
        size_t len;
        if (s_get (self, S_CF_DEFAULT, S_META_REMOVED, strlen (S_META_REMOVED), &removed, &len)
            == ZCQ_OK) {
            atomic_store (&self->removed, len == 8 ? zcq_get_be64 (removed) : 0);
            free (removed);
        }
        if (err == ZCQ_OK && first != 1 && first - 1 > atomic_load (&self->removed)) {
            snprintf (error, size, "the log starts at position %llu, not 1: files are missing",
                      (unsigned long long) first);
            err = ZCQ_CORRUPT;
        }
    }
    rocksdb_iter_get_error (iterator, &rocks_error);
    if (rocks_error)
        err = s_error (rocks_error, error, size, "reading the log head");
    rocksdb_iter_destroy (iterator);
    //  a head read half way (an error) is not the log's: keep the last one
    if (err == ZCQ_OK)
        atomic_store (&self->head, head);
    return err;
}

//  Fill the id filter from the commands family (DESIGN 5); the open put
//  the ids of the recent part in it.
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
        if (key_len) //  not the marker
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
    uint64_t holes = 0, removed = atomic_load (&self->removed);
    zcq_err_t err = ZCQ_OK;
    for (rocksdb_iter_seek_to_first (iterator);
         rocksdb_iter_valid (iterator) && !atomic_load (&self->closing);
         rocksdb_iter_next (iterator), expected++) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        uint64_t position = key_len == 8 ? zcq_get_be64 ((const uint8_t *) key) : 0;
        if (position > expected && position - expected <= removed - holes) {
            //  DESIGN 14: entries removed by truncation, as many as recorded
            holes += position - expected;
            expected = position;
        }
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
    else if (err == ZCQ_OK && !interrupted && expected - 1 < head && head > 0) {
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

//  Get a value from a column family; caller frees *value with free. The
//  caller holds the handle (s_read_begin), or opens the store.
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

//  --------------------------------------------------------------------------
//  Indexing the log (DESIGN 12): what an event body says about itself

typedef struct {
    const uint8_t *stream;
    size_t stream_len;
    const uint8_t *command;
    size_t command_len;
    uint64_t version;
    int64_t time;
    bool has_stream, has_version, has_command, has_time;
} s_fields_t;

//  A msgpack string at *cursor: its bytes; the cursor moves past it.
static bool
s_mp_str (const uint8_t **cursor, const uint8_t *end, const uint8_t **bytes, size_t *len)
{
    const uint8_t *at = *cursor;
    if (at >= end)
        return false;
    uint8_t tag = *at++;
    size_t length, width = tag == 0xd9 ? 1 : tag == 0xda ? 2 : tag == 0xdb ? 4 : 0;
    if ((tag & 0xe0) == 0xa0)
        length = tag & 0x1f;
    else if (width && (size_t) (end - at) >= width) {
        length = 0;
        for (size_t index = 0; index < width; index++)
            length = length << 8 | at[index];
        at += width;
    }
    else
        return false;
    if (length > (size_t) (end - at))
        return false;
    *bytes = at;
    *len = length;
    *cursor = at + length;
    return true;
}

//  A msgpack integer at *cursor (as 64 bits, two's complement).
static bool
s_mp_int (const uint8_t **cursor, const uint8_t *end, uint64_t *value)
{
    const uint8_t *at = *cursor;
    if (at >= end)
        return false;
    uint8_t tag = *at++;
    if (tag <= 0x7f || tag >= 0xe0) { //  a positive or negative fixint
        *value = tag <= 0x7f ? tag : (uint64_t) (int64_t) (int8_t) tag;
        *cursor = at;
        return true;
    }
    size_t width = 0;
    bool is_signed = tag >= 0xd0 && tag <= 0xd3;
    if (tag >= 0xcc && tag <= 0xcf)
        width = (size_t) 1 << (tag - 0xcc);
    else if (is_signed)
        width = (size_t) 1 << (tag - 0xd0);
    if (!width || (size_t) (end - at) < width)
        return false;
    uint64_t bits = 0;
    for (size_t index = 0; index < width; index++)
        bits = bits << 8 | at[index];
    if (is_signed && width < 8 && (bits >> (8 * width - 1)) & 1)
        bits |= ~0ULL << (8 * width); //  sign-extend
    *value = bits;
    *cursor = at + width;
    return true;
}

static bool
s_key_is (const uint8_t *key, size_t len, const char *name)
{
    return len == strlen (name) && memcmp (key, name, len) == 0;
}

//  Read stream, version, command and time from an event body (ZCQ/1 event
//  map; they come before meta and data, which are not parsed). False when
//  the body is not such a map or lacks a stream or a version.
static bool
s_event_fields (const uint8_t *body, size_t len, s_fields_t *fields)
{
    memset (fields, 0, sizeof *fields);
    const uint8_t *cursor = body, *end = body + len;
    if (cursor >= end)
        return false;
    uint8_t tag = *cursor++;
    size_t count;
    if ((tag & 0xf0) == 0x80)
        count = tag & 0x0f;
    else if (tag == 0xde && end - cursor >= 2) {
        count = (size_t) cursor[0] << 8 | cursor[1];
        cursor += 2;
    }
    else if (tag == 0xdf && end - cursor >= 4) {
        count = zcq_get_be32 (cursor);
        cursor += 4;
    }
    else
        return false;
    for (size_t entry = 0; entry < count; entry++) {
        if (fields->has_stream && fields->has_version && fields->has_command && fields->has_time)
            break;
        const uint8_t *key, *text;
        size_t key_len, text_len;
        uint64_t number;
        if (!s_mp_str (&cursor, end, &key, &key_len) || cursor >= end)
            return false;
        uint8_t value = *cursor;
        if ((value & 0xe0) == 0xa0 || (value >= 0xd9 && value <= 0xdb)) {
            if (!s_mp_str (&cursor, end, &text, &text_len))
                return false;
            if (s_key_is (key, key_len, "stream")) {
                fields->stream = text;
                fields->stream_len = text_len;
                fields->has_stream = true;
            }
            else if (s_key_is (key, key_len, "command")) {
                fields->command = text;
                fields->command_len = text_len;
                fields->has_command = true;
            }
        }
        else if (value <= 0x7f || value >= 0xe0 || (value >= 0xcc && value <= 0xd3)) {
            if (!s_mp_int (&cursor, end, &number))
                return false;
            if (s_key_is (key, key_len, "version")) {
                fields->version = number;
                fields->has_version = true;
            }
            else if (s_key_is (key, key_len, "time")) {
                fields->time = (int64_t) number;
                fields->has_time = true;
            }
        }
        else if (value == 0xc0 || value == 0xc2 || value == 0xc3)
            cursor++;
        else if ((value == 0xca || value == 0xcb) && end - cursor > (value == 0xca ? 4 : 8))
            cursor += value == 0xca ? 5 : 9;
        else
            break; //  a container: meta or data, past the fields looked for
    }
    return fields->has_stream && fields->has_version && fields->stream_len > 0;
}

//  The command whose consecutive events are being read
typedef struct {
    char *id;
    size_t id_len;
    char *stream;
    size_t stream_len;
    size_t size; //  of each of the two buffers
    int64_t time;
    uint32_t events;
    uint64_t version; //  of its last event so far
    uint64_t position;
} s_command_t;

static bool
s_command_copy (s_command_t *command, const s_fields_t *fields)
{
    size_t wanted = fields->command_len > fields->stream_len ? fields->command_len
                                                             : fields->stream_len;
    if (wanted > command->size) {
        char *id = realloc (command->id, wanted),
             *stream = id ? realloc (command->stream, wanted) : NULL;
        if (id)
            command->id = id;
        if (stream)
            command->stream = stream;
        if (!id || !stream)
            return false;
        command->size = wanted;
    }
    memcpy (command->id, fields->command, fields->command_len);
    command->id_len = fields->command_len;
    memcpy (command->stream, fields->stream, fields->stream_len);
    command->stream_len = fields->stream_len;
    return true;
}

//  Remember the command read (DESIGN 12): its record as the committer
//  would have stored it, less the type.
static bool
s_command_done (zcq_store_t *self, zcq_recent_t *segment, const s_command_t *command,
                uint64_t commands_through, int64_t expired_before)
{
    if (!command->events || command->position <= commands_through || command->time < expired_before
        || !command->id_len)
        return true;
    size_t len = 20 + command->stream_len + 1;
    uint8_t buffer[20 + ZCQ_STREAM_MAX + 1];
    uint8_t *result = len <= sizeof buffer ? buffer : malloc (len);
    if (!result)
        return false;
    zcq_put_be64 (result, command->version);
    zcq_put_be64 (result + 8, command->position);
    zcq_put_be32 (result + 16, command->events);
    memcpy (result + 20, command->stream, command->stream_len);
    result[20 + command->stream_len] = 0;
    bool added
        = zcq_recent_command (segment, command->id, command->id_len, command->time, result, len);
    if (result != buffer)
        free (result);
    if (added)
        s_bloom_add (&self->ids, command->id, command->id_len);
    return added;
}

//  Index the log after position `after` up to head into a new segment
//  (DESIGN 12): stream entries above the `streams` marker, command ids
//  above the `commands` one. The caller holds the handle, or opens the
//  store.
static zcq_err_t
s_index_log (zcq_store_t *self, uint64_t after, uint64_t head, zcq_recent_t **segment_p,
             char *error, size_t size)
{
    zcq_recent_t *segment = zcq_recent_new ();
    if (!segment) {
        snprintf (error, size, "out of memory indexing the log");
        return ZCQ_NOMEM;
    }
    int64_t expired_before = zcq_now_us () - (int64_t) self->dedup_window_s * 1000000;
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_LOG]);
    uint8_t start[8];
    zcq_put_be64 (start, after + 1);
    s_command_t command = { 0 };
    zcq_err_t err = ZCQ_OK;
    uint64_t indexed = 0;
    for (rocksdb_iter_seek (iterator, (const char *) start, 8); rocksdb_iter_valid (iterator);
         rocksdb_iter_next (iterator)) {
        size_t key_len, len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        const uint8_t *body = (const uint8_t *) rocksdb_iter_value (iterator, &len);
        uint64_t position = key_len == 8 ? zcq_get_be64 ((const uint8_t *) key) : 0;
        if (key_len != 8) {
            snprintf (error, size, "log key of %zu bytes (expected 8)", key_len);
            err = ZCQ_CORRUPT;
            break;
        }
        if (position > head)
            break;
        s_fields_t fields;
        if (!s_event_fields (body, len, &fields)) {
            snprintf (error, size,
                      "the log entry at position %llu is not an event (no stream or version): "
                      "the stream index cannot be rebuilt from it",
                      (unsigned long long) position);
            err = ZCQ_CORRUPT;
            break;
        }
        //  a command's events are consecutive, with one stream, time and
        //  command id and versions that follow each other
        bool same = command.events && fields.has_command && fields.command_len == command.id_len
                 && memcmp (fields.command, command.id, command.id_len) == 0
                 && fields.stream_len == command.stream_len
                 && memcmp (fields.stream, command.stream, command.stream_len) == 0
                 && fields.time == command.time && fields.version == command.version + 1
                 && position == command.position + 1;
        if (!same) {
            if (!s_command_done (self, segment, &command, self->commands_through, expired_before)) {
                err = ZCQ_NOMEM;
                break;
            }
            command.events = 0;
            if (fields.has_command && !s_command_copy (&command, &fields)) {
                err = ZCQ_NOMEM;
                break;
            }
            command.time = fields.has_time ? fields.time : 0;
            if (!fields.has_command)
                command.id_len = 0;
        }
        if (fields.has_command) {
            command.events++;
            command.version = fields.version;
            command.position = position;
        }
        if (position > self->streams_through
            && !zcq_recent_event (segment, (const char *) fields.stream, fields.stream_len,
                                  fields.version, position)) {
            err = ZCQ_NOMEM;
            break;
        }
        indexed++;
    }
    if (err == ZCQ_OK
        && !s_command_done (self, segment, &command, self->commands_through, expired_before))
        err = ZCQ_NOMEM;
    if (err == ZCQ_NOMEM)
        snprintf (error, size, "out of memory indexing the log");
    char *rocks_error = NULL;
    rocksdb_iter_get_error (iterator, &rocks_error);
    if (rocks_error)
        err = s_error (rocks_error, error, size, "indexing the log");
    rocksdb_iter_destroy (iterator);
    free (command.id);
    free (command.stream);
    if (err != ZCQ_OK) {
        zcq_recent_destroy (&segment);
        return err;
    }
    zcq_recent_cover (segment, head);
    if (indexed)
        zsys_info ("store: indexed %llu events of the log (positions %llu-%llu)",
                   (unsigned long long) indexed, (unsigned long long) after + 1,
                   (unsigned long long) head);
    *segment_p = segment;
    return ZCQ_OK;
}

//  Add a segment as the newest; the caller holds recent_lock exclusive.
static bool
s_push_segment (zcq_store_t *self, zcq_recent_t *segment)
{
    if (self->segment_count == S_SEGMENTS_MAX)
        return false;
    self->segments[self->segment_count++] = segment;
    return true;
}

//  --------------------------------------------------------------------------
//  The indexer (DESIGN 11, 12)

//  Entries and bytes of the whole recent part; the caller holds recent_lock.
static void
s_recent_size (const zcq_store_t *self, size_t *entries, size_t *bytes)
{
    *entries = *bytes = 0;
    for (size_t index = 0; index < self->segment_count; index++) {
        *entries += zcq_recent_entries (self->segments[index]);
        *bytes += zcq_recent_bytes (self->segments[index]);
    }
}

//  Whether the newest segment is to be sealed; the caller holds recent_lock.
static bool
s_seal_due (const zcq_store_t *self)
{
    if (!self->segment_count)
        return false;
    const zcq_recent_t *newest = self->segments[self->segment_count - 1];
    size_t entries = zcq_recent_entries (newest);
    return entries
        && (entries >= self->index_entries || zcq_recent_bytes (newest) >= S_INDEX_BYTES
            || zclock_mono () - zcq_recent_started (newest) >= S_INDEX_MS);
}

//  Whether the indexer has work: a sealed segment, or one to seal.
static bool
s_index_due (zcq_store_t *self)
{
    if (atomic_load (&self->index_held) || atomic_load (&self->broken) || self->read_only)
        return false;
    pthread_rwlock_rdlock (&self->recent_lock);
    bool due = self->segment_count > 1 || s_seal_due (self);
    pthread_rwlock_unlock (&self->recent_lock);
    return due;
}

static zcq_err_t
s_sst_put (void *arg, const char *key, size_t key_len, const void *value, size_t value_len)
{
    char *rocks_error = NULL;
    rocksdb_sstfilewriter_put (arg, key, key_len, value, value_len, &rocks_error);
    return rocks_error ? s_error (rocks_error, NULL, 0, "index file") : ZCQ_OK;
}

//  Write one family's part of a segment to a sorted .sst file at path,
//  with the family's marker first (the empty key sorts first).
static zcq_err_t
s_write_file (zcq_store_t *self, const rocksdb_options_t *options, const char *path,
              const zcq_recent_t *segment, uint64_t through, bool streams, char *error, size_t size)
{
    rocksdb_sstfilewriter_t *writer = rocksdb_sstfilewriter_create (self->env_options, options);
    char *rocks_error = NULL;
    rocksdb_sstfilewriter_open (writer, path, &rocks_error);
    zcq_err_t err = rocks_error ? s_error (rocks_error, error, size, "creating an index file")
                                : ZCQ_OK;
    uint8_t marker[8];
    zcq_put_be64 (marker, through);
    if (err == ZCQ_OK)
        err = s_sst_put (writer, S_MARKER, 0, marker, 8);
    if (err == ZCQ_OK && streams)
        err = zcq_recent_sorted_streams (segment, s_sst_put, writer);
    else if (err == ZCQ_OK) {
        int64_t expired_before = zcq_now_us () - (int64_t) self->dedup_window_s * 1000000;
        err = zcq_recent_sorted_commands (segment, expired_before, s_sst_put, writer);
    }
    if (err == ZCQ_OK) {
        rocksdb_sstfilewriter_finish (writer, &rocks_error);
        if (rocks_error)
            err = s_error (rocks_error, error, size, "writing an index file");
    }
    else if (error[0] == 0)
        snprintf (error, size, "writing an index file: %s", zcq_strerror (err));
    rocksdb_sstfilewriter_destroy (writer);
    return err;
}

//  Move a sealed segment to RocksDB: both files written, the WAL synced
//  (wal mode), then each file ingested (DESIGN 12).
static zcq_err_t
s_write_segment (zcq_store_t *self, const zcq_recent_t *segment, uint64_t streams_through,
                 uint64_t commands_through)
{
    char error[512] = "";
    char streams_path[4096], commands_path[4096];
    uint64_t serial = ++self->index_serial;
    snprintf (streams_path, sizeof streams_path, "%s/" S_INDEX_FILE "%llu-streams" S_INDEX_FILE_END,
              self->path, (unsigned long long) serial);
    snprintf (commands_path, sizeof commands_path,
              "%s/" S_INDEX_FILE "%llu-commands" S_INDEX_FILE_END, self->path,
              (unsigned long long) serial);
    zcq_err_t err = s_write_file (self, self->streams_options, streams_path, segment,
                                  streams_through, true, error, sizeof error);
    if (err == ZCQ_OK)
        err = s_write_file (self, self->commands_options, commands_path, segment, commands_through,
                            false, error, sizeof error);
    char *rocks_error = NULL;
    if (err == ZCQ_OK && self->durability == ZCQ_DURABILITY_WAL) {
        rocksdb_flush_wal (self->db, 1, &rocks_error);
        if (rocks_error)
            err = s_error (rocks_error, error, sizeof error, "syncing the WAL");
    }
    const int families[2] = { S_CF_STREAMS, S_CF_COMMANDS };
    const char *paths[2] = { streams_path, commands_path };
    for (int index = 0; index < 2 && err == ZCQ_OK; index++) {
        rocksdb_ingest_external_file_cf (self->db, self->cf[families[index]], &paths[index], 1,
                                         self->ingest_options, &rocks_error);
        if (rocks_error)
            err = s_error (rocks_error, error, sizeof error, "ingesting an index file");
        if (err == ZCQ_OK && index == 0 && self->index_crash)
            _exit (3); //  a test hook: a crash with the families indexed apart
    }
    unlink (streams_path); //  moved into the DB by the ingestion, else stray
    unlink (commands_path);
    if (err != ZCQ_OK)
        s_broken (self, "indexing", error);
    return err;
}

//  Seal the newest segment when it is due (or has anything, with `all`),
//  and move the oldest sealed one to RocksDB. *done: nothing was left to
//  move.
static zcq_err_t
s_index_one (zcq_store_t *self, bool all, bool *done)
{
    pthread_mutex_lock (&self->indexing);
    pthread_mutex_lock (&self->active);
    pthread_rwlock_wrlock (&self->recent_lock);
    zcq_err_t err = ZCQ_OK;
    if (self->segment_count == 1
        && (all ? zcq_recent_entries (self->segments[0]) > 0 : s_seal_due (self))) {
        zcq_recent_t *fresh = zcq_recent_new ();
        if (!fresh || !s_push_segment (self, fresh)) {
            zcq_recent_destroy (&fresh);
            err = ZCQ_NOMEM;
        }
    }
    zcq_recent_t *oldest = self->segment_count > 1 ? self->segments[0] : NULL;
    uint64_t through = oldest ? zcq_recent_through (oldest) : 0;
    uint64_t streams_through = through > self->streams_through ? through : self->streams_through;
    uint64_t commands_through = through > self->commands_through ? through : self->commands_through;
    pthread_rwlock_unlock (&self->recent_lock);
    pthread_mutex_unlock (&self->active);
    *done = !oldest;
    if (oldest && err == ZCQ_OK)
        err = s_write_segment (self, oldest, streams_through, commands_through);
    if (oldest && err == ZCQ_OK) {
        pthread_rwlock_wrlock (&self->recent_lock);
        memmove (self->segments, self->segments + 1,
                 (self->segment_count - 1) * sizeof (zcq_recent_t *));
        self->segment_count--;
        self->streams_through = streams_through;
        self->commands_through = commands_through;
        pthread_rwlock_unlock (&self->recent_lock);
        zcq_recent_destroy (&oldest);
    }
    pthread_mutex_unlock (&self->indexing);
    return err;
}

//  Move the whole recent part to RocksDB; the caller holds the handle.
static zcq_err_t
s_index_all (zcq_store_t *self)
{
    bool done = false;
    zcq_err_t err = ZCQ_OK;
    while (err == ZCQ_OK && !done)
        err = s_index_one (self, true, &done);
    return err;
}

//  Wait on index_cond (with index_mutex held) until woken or `ms` passed;
//  with `whole`, until `ms` passed or the store closes.
static void
s_wait (zcq_store_t *self, int64_t ms, bool whole)
{
    struct timespec until;
    clock_gettime (CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    while (pthread_cond_timedwait (&self->index_cond, &self->index_mutex, &until) != ETIMEDOUT
           && whole && !atomic_load (&self->closing))
        ;
}

static void
s_wait_ms (zcq_store_t *self, int64_t ms)
{
    s_wait (self, ms, true);
}

//  The indexer's thread: waits until a segment is due, then moves it.
static void *
s_indexer (void *args)
{
    zcq_store_t *self = args;
    pthread_mutex_lock (&self->index_mutex);
    while (!atomic_load (&self->closing)) {
        if (!s_index_due (self)) {
            s_wait (self, S_INDEX_POLL_MS, false);
            continue;
        }
        if (self->index_delay_ms > 0) {
            s_wait_ms (self, self->index_delay_ms); //  a test hook: the index lags behind
            if (atomic_load (&self->closing))
                break;
        }
        pthread_mutex_unlock (&self->index_mutex);
        bool done;
        //  a failed write marks the store broken (no work until a reopen);
        //  out of memory, it waits a while before it tries again
        zcq_err_t err = s_index_one (self, false, &done);
        pthread_mutex_lock (&self->index_mutex);
        pthread_cond_broadcast (&self->index_cond);
        if (err != ZCQ_OK && !atomic_load (&self->closing))
            s_wait_ms (self, S_INDEX_POLL_MS);
    }
    pthread_cond_broadcast (&self->index_cond);
    pthread_mutex_unlock (&self->index_mutex);
    return NULL;
}

//  After a commit: wake the indexer when a segment is due; when the recent
//  part is at its bound, wait for the indexer, or index here when none
//  runs (DESIGN 11). The caller holds nothing.
static void
s_after_commit (zcq_store_t *self, size_t newest_entries)
{
    if (newest_entries >= self->index_entries) {
        pthread_mutex_lock (&self->index_mutex);
        pthread_cond_broadcast (&self->index_cond);
        pthread_mutex_unlock (&self->index_mutex);
    }
    for (;;) {
        size_t entries, bytes;
        pthread_rwlock_rdlock (&self->recent_lock);
        s_recent_size (self, &entries, &bytes);
        pthread_rwlock_unlock (&self->recent_lock);
        if ((entries < S_RECENT_MAX_ENTRIES && bytes < S_RECENT_MAX_BYTES)
            || atomic_load (&self->broken))
            return;
        pthread_mutex_lock (&self->threads);
        bool running = self->indexer_running && !atomic_load (&self->index_held)
                    && !self->index_delay_ms;
        pthread_mutex_unlock (&self->threads);
        if (!running) {
            bool done;
            if (s_read_begin (self) != ZCQ_OK)
                return;
            zcq_err_t err = s_index_one (self, true, &done);
            s_read_end (self);
            if (err != ZCQ_OK || done)
                return;
            continue;
        }
        pthread_mutex_lock (&self->index_mutex);
        pthread_cond_broadcast (&self->index_cond);
        s_wait (self, S_INDEX_POLL_MS, false);
        pthread_mutex_unlock (&self->index_mutex);
    }
}

//  --------------------------------------------------------------------------
//  The store's threads

//  Start the threads that work beside the store after an open: the id
//  filter while it is not full, the log check while it has not run
//  through, and the indexer when the store can write.
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
    if (!self->read_only && !self->indexer_running
        && pthread_create (&self->indexer, NULL, s_indexer, self) == 0)
        self->indexer_running = true;
    pthread_mutex_unlock (&self->threads);
}

//  Stop and join them (they use the handle without its lock).
static void
s_stop_threads (zcq_store_t *self)
{
    pthread_mutex_lock (&self->threads);
    atomic_store (&self->closing, true);
    pthread_mutex_lock (&self->index_mutex);
    pthread_cond_broadcast (&self->index_cond);
    pthread_mutex_unlock (&self->index_mutex);
    if (self->ids_filling)
        pthread_join (self->ids_filler, NULL);
    if (self->verifying)
        pthread_join (self->verifier, NULL);
    if (self->indexer_running)
        pthread_join (self->indexer, NULL);
    self->ids_filling = self->verifying = self->indexer_running = false;
    pthread_mutex_unlock (&self->threads);
}

//  --------------------------------------------------------------------------
//  The format and the markers (DESIGN 10, 12)

//  A family's marker; ZCQ_NOT_FOUND when it has none.
static zcq_err_t
s_load_marker (zcq_store_t *self, int cf, uint64_t *through)
{
    void *value;
    size_t len;
    zcq_err_t err = s_get (self, cf, S_MARKER, 0, &value, &len);
    if (err != ZCQ_OK)
        return err;
    if (len == 8)
        *through = zcq_get_be64 (value);
    free (value);
    return len == 8 ? ZCQ_OK : ZCQ_CORRUPT;
}

//  Read the format and the markers after the head: a data dir of an earlier
//  format, or a new one, is indexed through its head, and becomes format 3
//  when the store can write.
static zcq_err_t
s_load_index (zcq_store_t *self, char *error, size_t size)
{
    uint64_t head = atomic_load (&self->head);
    void *format;
    size_t len;
    zcq_err_t err = s_get (self, S_CF_DEFAULT, "format", 6, &format, &len);
    bool current = false;
    if (err == ZCQ_OK) {
        current = len == 1 && *(char *) format == S_FORMAT[0];
        bool earlier = len == 1 && (*(char *) format == '1' || *(char *) format == '2');
        free (format);
        if (!current && !earlier) {
            snprintf (error, size, "data dir has an unsupported format (this build reads %s)",
                      S_FORMAT);
            return ZCQ_CORRUPT;
        }
    }
    else if (err != ZCQ_NOT_FOUND) {
        snprintf (error, size, "reading the format: %s", zcq_strerror (err));
        return err;
    }
    if (current) {
        err = s_load_marker (self, S_CF_STREAMS, &self->streams_through);
        if (err == ZCQ_OK)
            err = s_load_marker (self, S_CF_COMMANDS, &self->commands_through);
        if (err != ZCQ_OK) {
            snprintf (error, size, "reading how far the index goes: %s",
                      err == ZCQ_NOT_FOUND ? "its marker is missing" : zcq_strerror (err));
            return err == ZCQ_NOT_FOUND ? ZCQ_CORRUPT : err;
        }
        uint64_t through = self->streams_through > self->commands_through ? self->streams_through
                                                                          : self->commands_through;
        if (through > head) {
            snprintf (error, size,
                      "the index goes to position %llu, the log only to %llu: events are missing",
                      (unsigned long long) through, (unsigned long long) head);
            return ZCQ_CORRUPT;
        }
        return ZCQ_OK;
    }
    //  DESIGN 10: commits of earlier formats wrote the index
    self->streams_through = self->commands_through = head;
    if (self->read_only)
        return ZCQ_OK;
    uint8_t marker[8];
    zcq_put_be64 (marker, head);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    rocksdb_writebatch_put_cf (batch, self->cf[S_CF_STREAMS], S_MARKER, 0, (const char *) marker,
                               8);
    rocksdb_writebatch_put_cf (batch, self->cf[S_CF_COMMANDS], S_MARKER, 0, (const char *) marker,
                               8);
    rocksdb_writebatch_put_cf (batch, self->cf[S_CF_DEFAULT], "format", 6, S_FORMAT,
                               strlen (S_FORMAT));
    char *rocks_error = NULL;
    rocksdb_write (self->db, self->write_options, batch, &rocks_error);
    rocksdb_writebatch_destroy (batch);
    return rocks_error ? s_error (rocks_error, error, size, "writing the format") : ZCQ_OK;
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

//  A write failed: refuse commits until a reopen (DESIGN 7). Called by the
//  committing thread and by the indexer.
static void
s_broken (zcq_store_t *self, const char *doing, const char *rocks_error)
{
    if (!atomic_exchange (&self->broken, true)) {
        atomic_store (&self->broken_at, zclock_mono ());
        zsys_error ("store: %s failed: %s; reopening the store once the fault clears", doing,
                    rocks_error);
    }
}

//  Remove the indexer's files that an interrupted run left (a file is
//  moved into RocksDB by its ingestion, else removed).
static void
s_remove_index_files (zcq_store_t *self)
{
    DIR *dir = opendir (self->path);
    if (!dir)
        return;
    struct dirent *entry;
    char path[4096];
    size_t end_len = strlen (S_INDEX_FILE_END);
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        if (strncmp (entry->d_name, S_INDEX_FILE, strlen (S_INDEX_FILE)) != 0 || len < end_len
            || strcmp (entry->d_name + len - end_len, S_INDEX_FILE_END) != 0)
            continue;
        snprintf (path, sizeof path, "%s/%s", self->path, entry->d_name);
        unlink (path);
    }
    closedir (dir);
}

//  After a reopen (DESIGN 7): drop the segments the reopened index holds
//  whole, and index what the log holds past the recent part (`before`, the
//  head the store had): the failed batch when it came back, else read from
//  the log. The caller holds the handle exclusive; the indexer is stopped.
static zcq_err_t
s_reconcile (zcq_store_t *self, uint64_t before, char *error, size_t size)
{
    uint64_t head = atomic_load (&self->head);
    zcq_err_t err = s_load_index (self, error, size);
    uint64_t indexed = self->streams_through < self->commands_through ? self->streams_through
                                                                      : self->commands_through;
    pthread_rwlock_wrlock (&self->recent_lock);
    if (err == ZCQ_OK && head < before) {
        //  the reopened log lost committed events: what is in memory may
        //  point past it, so index again from the log
        while (self->segment_count)
            zcq_recent_destroy (&self->segments[--self->segment_count]);
        before = indexed;
    }
    while (self->segment_count && zcq_recent_through (self->segments[0]) <= indexed) {
        zcq_recent_destroy (&self->segments[0]);
        memmove (self->segments, self->segments + 1,
                 --self->segment_count * sizeof (zcq_recent_t *));
    }
    zcq_recent_t *segment = NULL;
    if (err == ZCQ_OK && head > before) {
        if (self->pending && self->pending_after == before
            && zcq_recent_through (self->pending) == head) {
            segment = self->pending; //  the failed batch came back whole
            self->pending = NULL;
        }
        else
            err = s_index_log (self, before > indexed ? before : indexed, head, &segment, error,
                               size);
    }
    if (segment && !s_push_segment (self, segment)) {
        zcq_recent_destroy (&segment);
        snprintf (error, size, "too many segments of the index in memory");
        err = ZCQ_NOMEM;
    }
    pthread_rwlock_unlock (&self->recent_lock);
    return err;
}

zcq_err_t
zcq_store_recover (zcq_store_t *self)
{
    if (!atomic_load_explicit (&self->broken, memory_order_acquire))
        return ZCQ_OK;
    int64_t now = zclock_mono ();
    if (!self->backoff_ms) {
        self->backoff_ms = S_RETRY_FIRST_MS;
        self->next_attempt = atomic_load (&self->broken_at) + self->backoff_ms;
    }
    if (now < self->next_attempt)
        return ZCQ_IO;
    atomic_store (&self->reopen_waiting, true);
    pthread_rwlock_wrlock (&self->lock);
    atomic_store (&self->reopen_waiting, false);
    s_stop_threads (self);
    //  the recent part covers the log up to the head the store had (a
    //  read-only open in between may have taken the failed batch in)
    uint64_t before = atomic_load (&self->head);
    s_close_db (self);
    char error[512] = "";
    zcq_err_t err = s_open_db (self, false, error, sizeof error);
    if (err == ZCQ_OK)
        err = s_load_head (self, error, sizeof error);
    if (err == ZCQ_OK)
        err = s_reconcile (self, before, error, sizeof error);
    if (err == ZCQ_OK) {
        zcq_recent_destroy (&self->pending); //  back whole, or never
        atomic_store (&self->broken, false);
        self->backoff_ms = 0;
        zsys_info ("store: reopened after a storage failure, log head %llu",
                   (unsigned long long) atomic_load (&self->head));
    }
    else {
        //  the fault lasts: read-only, so that reads go on meanwhile
        s_close_db (self);
        atomic_store (&self->head, before);
        char read_error[512] = "";
        if (s_open_db (self, true, read_error, sizeof read_error) != ZCQ_OK
            || s_load_head (self, read_error, sizeof read_error) != ZCQ_OK
            || s_reconcile (self, before, read_error, sizeof read_error) != ZCQ_OK) {
            s_close_db (self);
            atomic_store (&self->head, before);
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

//  A number from the environment (tests), or fallback.
static int64_t
s_env_number (const char *name, int64_t fallback)
{
    const char *text = getenv (name);
    char *end = NULL;
    long long value = text && *text ? strtoll (text, &end, 10) : 0;
    return end && *end == 0 && value > 0 ? (int64_t) value : fallback;
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
    pthread_rwlock_init (&self->recent_lock, &lock_attributes);
    pthread_rwlockattr_destroy (&lock_attributes);
    pthread_mutex_init (&self->threads, NULL);
    pthread_mutex_init (&self->active, NULL);
    pthread_mutex_init (&self->indexing, NULL);
    pthread_mutex_init (&self->index_mutex, NULL);
    pthread_cond_init (&self->index_cond, NULL);
    self->durability = options->durability;
    self->dedup_window_s = options->dedup_window_s ? options->dedup_window_s : S_DEFAULT_WINDOW;
    self->verify = options->verify;
    self->index_entries = (size_t) s_env_number ("ZCQ_STORE_INDEX_ENTRIES", S_INDEX_ENTRIES);
    self->index_delay_ms = s_env_number ("ZCQ_STORE_INDEX_DELAY_MS", 0);
    self->index_crash = s_env_number ("ZCQ_STORE_INDEX_CRASH", 0) > 0;

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
    //  room for memtables waiting to be flushed, so that a slow flush does
    //  not stall commits
    rocksdb_options_set_max_write_buffer_number (self->options, 4);
    //  a bounded share of the file limit: the rest is for connections
    //  (actors/gate.c), and RocksDB failing to open a file fails the store
    rocksdb_options_set_max_open_files (self->options, ZCQ_STORE_OPEN_FILES);
    rocksdb_options_set_paranoid_checks (self->options, 1);
    //  RocksDB's own info log in the data dir would be the first thing to
    //  fail on a full disk, and its error path aborts: keep it quiet
    rocksdb_options_set_info_log_level (self->options, 4);
    rocksdb_options_set_compression (self->options, rocksdb_lz4_compression);
    //  one committer: no concurrent memtable inserts
    rocksdb_options_set_allow_concurrent_memtable_write (self->options, 0);
    self->cache = rocksdb_cache_create_lru ((options->cache_mb ? options->cache_mb : 64) << 20);
    self->table = rocksdb_block_based_options_create ();
    rocksdb_block_based_options_set_block_cache (self->table, self->cache);
    rocksdb_block_based_options_set_filter_policy (self->table,
                                                   rocksdb_filterpolicy_create_bloom (10));
    rocksdb_options_set_block_based_table_factory (self->options, self->table);

    //  DESIGN 6: the index families
    self->streams_options = rocksdb_options_create_copy (self->options);
    rocksdb_options_set_prefix_extractor (
        self->streams_options, rocksdb_slicetransform_create (
                                   NULL, s_stream_prefix_destroy, s_stream_prefix,
                                   s_stream_in_domain, s_stream_in_range, s_stream_prefix_name));
    self->commands_options = rocksdb_options_create_copy (self->options);
    self->expired_ids
        = rocksdb_compactionfilter_create (self, s_expired_destroy, s_expired_id, s_expired_name);
    rocksdb_options_set_compaction_filter (self->commands_options, self->expired_ids);
    self->write_options = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (self->write_options, self->durability == ZCQ_DURABILITY_FSYNC);
    self->read_options = rocksdb_readoptions_create ();
    self->scan_options = rocksdb_readoptions_create ();
    rocksdb_readoptions_set_total_order_seek (self->scan_options, 1);
    self->env_options = rocksdb_envoptions_create ();
    self->ingest_options = rocksdb_ingestexternalfileoptions_create ();
    rocksdb_ingestexternalfileoptions_set_move_files (self->ingest_options, 1);

    zcq_err_t err = zcq_store_check_wal (path, error, size);
    if (err == ZCQ_OK)
        err = s_open_db (self, false, error, size);
    if (err == ZCQ_OK)
        err = s_load_head (self, error, size);
    if (err == ZCQ_OK)
        err = s_load_index (self, error, size);
    if (err == ZCQ_OK) {
        s_remove_index_files (self);
        err = s_load_ids (self, error, size);
    }
    //  DESIGN 12: the log past the index, before anything reads the index
    uint64_t indexed = self->streams_through < self->commands_through ? self->streams_through
                                                                      : self->commands_through;
    zcq_recent_t *segment = NULL;
    if (err == ZCQ_OK && indexed < atomic_load (&self->head))
        err = s_index_log (self, indexed, atomic_load (&self->head), &segment, error, size);
    if (segment)
        s_push_segment (self, segment);
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
        //  DESIGN 11: the whole index in RocksDB, so that the next open
        //  has nothing to index; then the memtables flushed, so that it
        //  has no log to replay
        zcq_err_t err = s_index_all (self);
        if (err != ZCQ_OK)
            zsys_warning ("store: indexing at close failed (%s): the next open indexes the log",
                          zcq_strerror (err));
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
    while (self->segment_count)
        zcq_recent_destroy (&self->segments[--self->segment_count]);
    zcq_recent_destroy (&self->pending);
    if (self->write_options)
        rocksdb_writeoptions_destroy (self->write_options);
    if (self->read_options)
        rocksdb_readoptions_destroy (self->read_options);
    if (self->scan_options)
        rocksdb_readoptions_destroy (self->scan_options);
    if (self->env_options)
        rocksdb_envoptions_destroy (self->env_options);
    if (self->ingest_options)
        rocksdb_ingestexternalfileoptions_destroy (self->ingest_options);
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
    pthread_rwlock_destroy (&self->recent_lock);
    pthread_mutex_destroy (&self->threads);
    pthread_mutex_destroy (&self->active);
    pthread_mutex_destroy (&self->indexing);
    pthread_mutex_destroy (&self->index_mutex);
    pthread_cond_destroy (&self->index_cond);
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
    zcq_batch_t *self = *self_p;
    rocksdb_writebatch_destroy (self->batch);
    free (self->events);
    free (self->commands);
    free (self->bytes);
    free (self);
    *self_p = NULL;
}

void
zcq_batch_clear (zcq_batch_t *self)
{
    rocksdb_writebatch_clear (self->batch);
    self->count = 0;
    self->failed = self->invalid = false;
    self->event_count = self->command_count = self->bytes_used = self->unclaimed = 0;
    self->removed = 0;
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

//  Copy bytes into the batch; their offset, or SIZE_MAX without memory.
static size_t
s_stage_bytes (zcq_batch_t *self, const void *bytes, size_t len)
{
    if (len > self->bytes_size - self->bytes_used) {
        size_t size = self->bytes_size ? self->bytes_size : 4096;
        while (size - self->bytes_used < len)
            size *= 2;
        char *bigger = realloc (self->bytes, size);
        if (!bigger)
            return SIZE_MAX;
        self->bytes = bigger;
        self->bytes_size = size;
    }
    size_t offset = self->bytes_used;
    if (len)
        memcpy (self->bytes + offset, bytes, len);
    self->bytes_used += len;
    return offset;
}

//  Room for one more item in an array of slots.
static bool
s_stage_slot (void **items, size_t *slots, size_t count, size_t size)
{
    if (count < *slots)
        return true;
    size_t wanted = *slots ? *slots * 2 : 256;
    void *bigger = realloc (*items, wanted * size);
    if (!bigger)
        return false;
    *items = bigger;
    *slots = wanted;
    return true;
}

void
zcq_batch_event (zcq_batch_t *self, uint64_t position, const char *stream, size_t stream_len,
                 uint64_t version, const void *body, size_t len)
{
    uint8_t position_key[8];
    zcq_put_be64 (position_key, position);
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_LOG], (const char *) position_key,
                               8, body, len);
    self->count++;
    //  DESIGN 11: the stream index entry goes to the recent part
    size_t offset = s_stage_bytes (self, stream, stream_len);
    if (offset == SIZE_MAX
        || !s_stage_slot ((void **) &self->events, &self->event_slots, self->event_count,
                          sizeof (s_staged_event_t))) {
        self->failed = true;
        return;
    }
    self->events[self->event_count++]
        = (s_staged_event_t) { offset, stream_len, version, position };
    self->unclaimed++;
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
    if (id_len == 0) {
        self->invalid = true; //  the empty key is the index marker's (DESIGN 12)
        return;
    }
    uint8_t time_bytes[8];
    zcq_put_be64 (time_bytes, (uint64_t) time_us);
    if (!self->unclaimed) {
        //  DESIGN 13: no event to rebuild it from
        const char *parts[2] = { (const char *) time_bytes, result };
        size_t sizes[2] = { 8, len };
        rocksdb_writebatch_putv_cf (self->batch, self->store->cf[S_CF_COMMANDS], 1, &id, &id_len, 2,
                                    parts, sizes);
    }
    self->unclaimed = 0;
    s_bloom_add (&self->store->ids, id, id_len);
    self->count++;
    size_t id_at = s_stage_bytes (self, id, id_len);
    size_t result_at = id_at == SIZE_MAX ? SIZE_MAX : s_stage_bytes (self, result, len);
    if (result_at == SIZE_MAX
        || !s_stage_slot ((void **) &self->commands, &self->command_slots, self->command_count,
                          sizeof (s_staged_command_t))) {
        self->failed = true;
        return;
    }
    self->commands[self->command_count++]
        = (s_staged_command_t) { id_at, id_len, result_at, len, time_us };
}

void
zcq_batch_meta (zcq_batch_t *self, const char *name, const void *value, size_t len)
{
    rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_DEFAULT], name, strlen (name),
                               value, len);
    self->count++;
}

//  DESIGN 14: the first version a stream keeps, under first/<stream>
static size_t
s_first_key (char *key, const char *stream, size_t stream_len)
{
    memcpy (key, "first/", 6);
    memcpy (key + 6, stream, stream_len);
    return stream_len + 6;
}

typedef struct {
    uint64_t *positions;
    size_t count;
    size_t slots;
    bool nomem;
} s_positions_t;

static int
s_collect_position (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    (void) version;
    (void) body;
    (void) len;
    s_positions_t *positions = arg;
    if (!s_stage_slot ((void **) &positions->positions, &positions->slots, positions->count,
                       sizeof (uint64_t))) {
        positions->nomem = true;
        return 1;
    }
    positions->positions[positions->count++] = position;
    return 0;
}

zcq_err_t
zcq_batch_truncate (zcq_batch_t *self, const char *stream, size_t stream_len, uint64_t before)
{
    if (stream_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    char name[ZCQ_STREAM_MAX + 1];
    memcpy (name, stream, stream_len);
    name[stream_len] = 0;
    uint64_t first;
    ZCQ_TRY (zcq_store_stream_first (self->store, name, &first));
    if (before <= first)
        return ZCQ_OK;
    //  the index entries of the events to remove must be in RocksDB first:
    //  after a crash the recent part is rebuilt from the log, which will
    //  not have them (DESIGN 14)
    uint64_t lowest = 0;
    pthread_rwlock_rdlock (&self->store->recent_lock);
    for (size_t index = 0; index < self->store->segment_count; index++) {
        uint64_t low, high;
        if (zcq_recent_find_stream (self->store->segments[index], stream, stream_len, &low, &high)
            && (!lowest || low < lowest))
            lowest = low;
    }
    pthread_rwlock_unlock (&self->store->recent_lock);
    zcq_err_t err = lowest && lowest < before ? zcq_store_index (self->store) : ZCQ_OK;
    if (err != ZCQ_OK) {
        self->failed = true;
        return err;
    }
    s_positions_t positions = { 0 };
    err = zcq_store_read_stream (self->store, name, first, (size_t) (before - first),
                                 s_collect_position, &positions);
    if (err == ZCQ_OK && positions.nomem)
        err = ZCQ_NOMEM;
    if (err == ZCQ_OK) {
        for (size_t index = 0; index < positions.count; index++) {
            uint8_t key[8];
            zcq_put_be64 (key, positions.positions[index]);
            rocksdb_writebatch_delete_cf (self->batch, self->store->cf[S_CF_LOG],
                                          (const char *) key, 8);
        }
        self->removed += positions.count;
        char key[ZCQ_STREAM_MAX + 6];
        uint8_t value[8];
        zcq_put_be64 (value, before);
        rocksdb_writebatch_put_cf (self->batch, self->store->cf[S_CF_DEFAULT], key,
                                   s_first_key (key, stream, stream_len), (const char *) value, 8);
        self->count++;
    }
    free (positions.positions);
    if (err != ZCQ_OK)
        self->failed = true; //  the commit fails whole
    return err;
}

zcq_err_t
zcq_store_stream_first (zcq_store_t *self, const char *stream, uint64_t *first)
{
    size_t stream_len = strlen (stream);
    *first = 1;
    if (stream_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    char key[ZCQ_STREAM_MAX + 6];
    size_t key_len = s_first_key (key, stream, stream_len);
    ZCQ_TRY (s_read_begin (self));
    void *value;
    size_t len;
    zcq_err_t err = s_get (self, S_CF_DEFAULT, key, key_len, &value, &len);
    s_read_end (self);
    if (err == ZCQ_NOT_FOUND)
        return ZCQ_OK;
    if (err != ZCQ_OK)
        return err;
    if (len == 8)
        *first = zcq_get_be64 (value);
    else
        err = ZCQ_CORRUPT;
    free (value);
    return err;
}

typedef struct {
    const char *prefix;
    size_t prefix_len;
    int (*fn) (void *arg, const char *stream, size_t len);
    void *arg;
    char last[ZCQ_STREAM_MAX + 1]; //  the stream last handed to fn
    size_t last_len;
    bool any;
} s_each_stream_t;

static zcq_err_t
s_each_recent_stream (void *arg, const char *key, size_t key_len, const void *value,
                      size_t value_len)
{
    (void) value;
    (void) value_len;
    s_each_stream_t *each = arg;
    size_t len = key_len - 9; //  stream NUL version
    if (key_len < 9 || len > ZCQ_STREAM_MAX || len < each->prefix_len
        || memcmp (key, each->prefix, each->prefix_len) != 0)
        return ZCQ_OK;
    if (each->any && len == each->last_len && memcmp (key, each->last, len) == 0)
        return ZCQ_OK;
    memcpy (each->last, key, len);
    each->last_len = len;
    each->any = true;
    return each->fn (each->arg, key, len) ? ZCQ_NOT_FOUND : ZCQ_OK;
}

zcq_err_t
zcq_store_each_stream (zcq_store_t *self, const char *prefix,
                       int (*fn) (void *arg, const char *stream, size_t len), void *arg)
{
    size_t prefix_len = strlen (prefix);
    if (prefix_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    ZCQ_TRY (s_read_begin (self));
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (self->db, self->scan_options, self->cf[S_CF_STREAMS]);
    char next[ZCQ_STREAM_MAX + 2];
    rocksdb_iter_seek (iterator, prefix, prefix_len);
    while (rocksdb_iter_valid (iterator)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        if (key_len < prefix_len || memcmp (key, prefix, prefix_len) != 0)
            break;
        const char *nul = memchr (key, 0, key_len);
        size_t len = nul ? (size_t) (nul - key) : key_len;
        if (len > ZCQ_STREAM_MAX || fn (arg, key, len))
            break;
        //  past every key of this stream: name, then a byte above NUL
        memcpy (next, key, len);
        next[len] = 1;
        rocksdb_iter_seek (iterator, next, len + 1);
    }
    zcq_err_t err = s_iter_status (iterator);
    rocksdb_iter_destroy (iterator);
    //  and the recent part, segment by segment (DESIGN 11)
    s_each_stream_t each = { prefix, prefix_len, fn, arg, "", 0, false };
    pthread_rwlock_rdlock (&self->recent_lock);
    for (size_t index = 0; index < self->segment_count && err == ZCQ_OK; index++) {
        each.any = false;
        zcq_err_t stop
            = zcq_recent_sorted_streams (self->segments[index], s_each_recent_stream, &each);
        if (stop == ZCQ_NOMEM)
            err = stop;
        else if (stop != ZCQ_OK)
            break;
    }
    pthread_rwlock_unlock (&self->recent_lock);
    s_read_end (self);
    return err;
}

uint64_t
zcq_store_removed (const zcq_store_t *self)
{
    return atomic_load (&((zcq_store_t *) self)->removed);
}

//  Add what a batch staged to a segment (reserved for: it cannot fail).
static bool
s_merge (zcq_recent_t *segment, const zcq_batch_t *batch, uint64_t head)
{
    bool merged = true;
    for (size_t index = 0; index < batch->event_count; index++) {
        const s_staged_event_t *event = &batch->events[index];
        merged &= zcq_recent_event (segment, batch->bytes + event->stream, event->stream_len,
                                    event->version, event->position);
    }
    for (size_t index = 0; index < batch->command_count; index++) {
        const s_staged_command_t *command = &batch->commands[index];
        merged &= zcq_recent_command (segment, batch->bytes + command->id, command->id_len,
                                      command->time, batch->bytes + command->result,
                                      command->result_len);
    }
    zcq_recent_cover (segment, head);
    return merged;
}

//  Reserve room in the newest segment for what a batch staged (DESIGN
//  11); the caller holds `active`.
static zcq_err_t
s_reserve (zcq_store_t *self, const zcq_batch_t *batch)
{
    pthread_rwlock_wrlock (&self->recent_lock);
    zcq_err_t err = ZCQ_OK;
    if (!self->segment_count) {
        zcq_recent_t *segment = zcq_recent_new ();
        if (!segment || !s_push_segment (self, segment)) {
            zcq_recent_destroy (&segment);
            err = ZCQ_NOMEM;
        }
    }
    if (err == ZCQ_OK
        && !zcq_recent_reserve (self->segments[self->segment_count - 1], batch->event_count,
                                batch->command_count, batch->bytes_used))
        err = ZCQ_NOMEM;
    pthread_rwlock_unlock (&self->recent_lock);
    return err;
}

zcq_err_t
zcq_store_commit (zcq_store_t *self, zcq_batch_t *batch, uint64_t head)
{
    if (batch->failed)
        return ZCQ_NOMEM;
    if (batch->invalid)
        return ZCQ_INVALID;
    int countdown = atomic_load (&self->fault_countdown);
    if (countdown > 0 && atomic_fetch_sub (&self->fault_countdown, 1) == 1)
        return ZCQ_IO;
    //  DESIGN 7: refused until reopened
    if (atomic_load_explicit (&self->broken, memory_order_relaxed))
        return ZCQ_IO;
    ZCQ_TRY (s_read_begin (self));
    pthread_mutex_lock (&self->active);
    uint64_t before = atomic_load (&self->head);
    zcq_err_t err = s_reserve (self, batch);
    size_t newest_entries = 0;
    uint64_t removed = atomic_load (&self->removed) + batch->removed;
    if (err == ZCQ_OK && batch->removed) {
        //  DESIGN 14: the count of removed entries goes with the removal
        uint8_t value[8];
        zcq_put_be64 (value, removed);
        rocksdb_writebatch_put_cf (batch->batch, self->cf[S_CF_DEFAULT], S_META_REMOVED,
                                   strlen (S_META_REMOVED), (const char *) value, 8);
    }
    if (err == ZCQ_OK) {
        char *rocks_error = NULL;
        rocksdb_write (self->db, self->write_options, batch->batch, &rocks_error);
        if (rocks_error) {
            s_broken (self, "commit", rocks_error);
            err = s_error (rocks_error, NULL, 0, "commit");
            //  DESIGN 7: the batch may come back with a reopen; keep its
            //  index for then (without it, it would be read from the log)
            zcq_recent_destroy (&self->pending);
            self->pending = zcq_recent_new ();
            if (self->pending && !s_merge (self->pending, batch, head))
                zcq_recent_destroy (&self->pending);
            self->pending_after = before;
        }
        else {
            pthread_rwlock_wrlock (&self->recent_lock);
            zcq_recent_t *newest = self->segments[self->segment_count - 1];
            bool merged = s_merge (newest, batch, head);
            assert (merged); //  s_reserve made room for all of it
            (void) merged;
            newest_entries = zcq_recent_entries (newest);
            if (head > before)
                atomic_store (&self->head, head);
            atomic_store (&self->removed, removed);
            pthread_rwlock_unlock (&self->recent_lock);
        }
    }
    pthread_mutex_unlock (&self->active);
    s_read_end (self);
    if (err == ZCQ_OK)
        s_after_commit (self, newest_entries);
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
//  The index now, and the recent part (tests, tools)

zcq_err_t
zcq_store_index (zcq_store_t *self)
{
    if (atomic_load (&self->broken) || self->read_only)
        return ZCQ_IO;
    ZCQ_TRY (s_read_begin (self));
    zcq_err_t err = s_index_all (self);
    s_read_end (self);
    return err;
}

void
zcq_store_hold_index (zcq_store_t *self, bool hold)
{
    atomic_store (&self->index_held, hold);
    pthread_mutex_lock (&self->index_mutex);
    pthread_cond_broadcast (&self->index_cond);
    pthread_mutex_unlock (&self->index_mutex);
}

size_t
zcq_store_recent (zcq_store_t *self)
{
    size_t entries, bytes;
    pthread_rwlock_rdlock (&self->recent_lock);
    s_recent_size (self, &entries, &bytes);
    pthread_rwlock_unlock (&self->recent_lock);
    return entries;
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

//  A stream's events in the recent part, in version order
typedef struct {
    uint64_t *versions;
    uint64_t *positions;
    size_t count;
    size_t slots;
    size_t limit; //  0 = all
    bool nomem;
} s_memory_t;

static int
s_memory_add (void *arg, uint64_t version, uint64_t position)
{
    s_memory_t *memory = arg;
    if (memory->limit && memory->count >= memory->limit)
        return 1;
    if (memory->count == memory->slots) {
        size_t slots = memory->slots ? memory->slots * 2 : 64;
        uint64_t *versions = realloc (memory->versions, slots * sizeof (uint64_t));
        if (versions)
            memory->versions = versions;
        uint64_t *positions = versions ? realloc (memory->positions, slots * sizeof (uint64_t))
                                       : NULL;
        if (positions)
            memory->positions = positions;
        if (!versions || !positions) {
            memory->nomem = true;
            return 1;
        }
        memory->slots = slots;
    }
    memory->versions[memory->count] = version;
    memory->positions[memory->count++] = position;
    return 0;
}

//  Take a stream's events from version `from` on out of the recent part,
//  and the lowest version it holds of the stream (0: none): RocksDB has
//  the ones below. The caller holds the handle.
static zcq_err_t
s_memory_stream (zcq_store_t *self, const char *stream, size_t stream_len, uint64_t from,
                 s_memory_t *memory, uint64_t *lowest)
{
    *lowest = 0;
    pthread_rwlock_rdlock (&self->recent_lock);
    for (size_t index = 0; index < self->segment_count && !memory->nomem; index++) {
        const zcq_recent_t *segment = self->segments[index];
        uint64_t first, last;
        if (!zcq_recent_find_stream (segment, stream, stream_len, &first, &last))
            continue;
        if (!*lowest || first < *lowest)
            *lowest = first;
        zcq_recent_each_event (segment, stream, stream_len, from, s_memory_add, memory);
    }
    pthread_rwlock_unlock (&self->recent_lock);
    return memory->nomem ? ZCQ_NOMEM : ZCQ_OK;
}

zcq_err_t
zcq_store_read_stream (zcq_store_t *self, const char *stream, uint64_t from, size_t limit,
                       zcq_store_event_fn *fn, void *arg)
{
    size_t stream_len = strlen (stream);
    if (stream_len > ZCQ_STREAM_MAX)
        return ZCQ_INVALID;
    if (!from)
        from = 1;
    uint64_t first;
    ZCQ_TRY (zcq_store_stream_first (self, stream, &first));
    if (from < first)
        from = first; //  DESIGN 14: the versions below were removed
    char start[ZCQ_STREAM_MAX + 9];
    size_t start_len = s_stream_key (start, stream, stream_len, from);
    ZCQ_TRY (s_read_begin (self));
    //  DESIGN 11: memory first, then RocksDB below what memory holds
    s_memory_t memory = { .limit = limit };
    uint64_t lowest;
    zcq_err_t err = s_memory_stream (self, stream, stream_len, from, &memory, &lowest);
    uint64_t positions[S_MULTIGET_CHUNK], versions[S_MULTIGET_CHUNK];
    size_t pending = 0, delivered = 0;
    bool stopped = false;
    rocksdb_iterator_t *iterator = NULL;
    if (err == ZCQ_OK && (!lowest || from < lowest)) {
        iterator
            = rocksdb_create_iterator_cf (self->db, self->read_options, self->cf[S_CF_STREAMS]);
        for (rocksdb_iter_seek (iterator, start, start_len);
             rocksdb_iter_valid (iterator) && !stopped && (!limit || delivered < limit);
             rocksdb_iter_next (iterator)) {
            size_t key_len, value_len;
            const char *key = rocksdb_iter_key (iterator, &key_len);
            if (key_len != stream_len + 9 || memcmp (key, start, stream_len + 1) != 0)
                break;
            uint64_t version = zcq_get_be64 ((const uint8_t *) key + stream_len + 1);
            if (lowest && version >= lowest)
                break; //  memory has it, and what follows
            const char *value = rocksdb_iter_value (iterator, &value_len);
            if (value_len != 8) {
                err = ZCQ_CORRUPT;
                break;
            }
            positions[pending] = zcq_get_be64 ((const uint8_t *) value);
            versions[pending] = version;
            pending++;
            delivered++;
            if (pending == S_MULTIGET_CHUNK) {
                err = s_deliver_positions (self, positions, versions, pending, fn, arg, &stopped);
                pending = 0;
                if (err != ZCQ_OK)
                    break;
            }
        }
        if (err == ZCQ_OK)
            err = s_iter_status (iterator);
        rocksdb_iter_destroy (iterator);
    }
    for (size_t index = 0; err == ZCQ_OK && index < memory.count; index++) {
        if (stopped || (limit && delivered >= limit))
            break;
        positions[pending] = memory.positions[index];
        versions[pending] = memory.versions[index];
        pending++;
        delivered++;
        if (pending == S_MULTIGET_CHUNK) {
            err = s_deliver_positions (self, positions, versions, pending, fn, arg, &stopped);
            pending = 0;
        }
    }
    if (err == ZCQ_OK && pending && !stopped)
        err = s_deliver_positions (self, positions, versions, pending, fn, arg, &stopped);
    s_read_end (self);
    free (memory.versions);
    free (memory.positions);
    return err;
}

//  Whether the stream has an event at this version in RocksDB (its index
//  entry is there). The caller holds the handle.
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

//  DESIGN 10: the newest version in the recent part; else, a stream's
//  versions running 1..V without holes, V is found in RocksDB by doubling
//  the probe until it misses, then halving the gap: 2 log2 V point
//  look-ups, each answered by a Bloom filter or a block.
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
    uint64_t newest = 0;
    pthread_rwlock_rdlock (&self->recent_lock);
    for (size_t index = self->segment_count; index-- > 0 && !newest;) {
        uint64_t first;
        zcq_recent_find_stream (self->segments[index], stream, stream_len, &first, &newest);
    }
    pthread_rwlock_unlock (&self->recent_lock);
    if (newest) {
        s_read_end (self);
        *version = newest;
        return ZCQ_OK;
    }
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
    if (id_len == 0) //  the marker's key (DESIGN 12), no id
        return ZCQ_NOT_FOUND;
    if (atomic_load_explicit (&self->ids_ready, memory_order_acquire)
        && !s_bloom_maybe (&self->ids, id, id_len))
        return ZCQ_NOT_FOUND;
    void *value = NULL;
    size_t value_len = 0;
    ZCQ_TRY (s_read_begin (self));
    //  DESIGN 11: the newest record is in the newest segment that has one,
    //  else in RocksDB
    zcq_err_t err = ZCQ_NOT_FOUND;
    int64_t time = 0;
    pthread_rwlock_rdlock (&self->recent_lock);
    for (size_t index = self->segment_count; index-- > 0 && err == ZCQ_NOT_FOUND;) {
        const void *found;
        size_t found_len;
        if (!zcq_recent_find_command (self->segments[index], id, id_len, &time, &found, &found_len))
            continue;
        value = malloc (found_len ? found_len : 1);
        err = value ? ZCQ_OK : ZCQ_NOMEM;
        if (value) {
            memcpy (value, found, found_len);
            value_len = found_len;
        }
    }
    pthread_rwlock_unlock (&self->recent_lock);
    if (err == ZCQ_NOT_FOUND) {
        err = s_get (self, S_CF_COMMANDS, id, id_len, &value, &value_len);
        if (err == ZCQ_OK && value_len < 8) {
            free (value);
            err = ZCQ_CORRUPT;
        }
        if (err == ZCQ_OK) {
            time = (int64_t) zcq_get_be64 (value);
            value_len -= 8;
            memmove (value, (char *) value + 8, value_len);
        }
    }
    s_read_end (self);
    if (err != ZCQ_OK)
        return err;
    if (time < zcq_now_us () - (int64_t) self->dedup_window_s * 1000000) {
        free (value);
        return ZCQ_NOT_FOUND;
    }
    *len = value_len;
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

zcq_err_t
zcq_store_property (zcq_store_t *self, const char *name, uint64_t *value)
{
    *value = 0;
    ZCQ_TRY (s_read_begin (self));
    zcq_err_t err = ZCQ_OK;
    for (int index = 0; err == ZCQ_OK && index < S_CF_COUNT; index++) {
        uint64_t family = 0;
        if (rocksdb_property_int_cf (self->db, self->cf[index], name, &family) != 0)
            err = ZCQ_NOT_FOUND;
        *value += family;
    }
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

//  --------------------------------------------------------------------------
//  Checkpoints (online backups)

//  The head of the store RocksDB holds in dir, opened read-only with this
//  store's families and options (which replays its WAL, as a restore will).
static zcq_err_t
s_checkpoint_head (zcq_store_t *self, const char *dir, uint64_t *head, char *error, size_t size)
{
    const rocksdb_options_t *cf_options[S_CF_COUNT];
    for (int index = 0; index < S_CF_COUNT; index++)
        cf_options[index] = self->options;
    cf_options[S_CF_STREAMS] = self->streams_options;
    cf_options[S_CF_COMMANDS] = self->commands_options;
    rocksdb_column_family_handle_t *cf[S_CF_COUNT] = { NULL };
    char *rocks_error = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only_column_families (
        self->options, dir, S_CF_COUNT, s_cf_names, cf_options, cf, 0, &rocks_error);
    if (rocks_error)
        return s_error (rocks_error, error, size, "opening the checkpoint");
    rocksdb_iterator_t *iterator
        = rocksdb_create_iterator_cf (db, self->read_options, cf[S_CF_LOG]);
    rocksdb_iter_seek_to_last (iterator);
    zcq_err_t err = ZCQ_OK;
    *head = 0;
    if (rocksdb_iter_valid (iterator)) {
        size_t key_len;
        const char *key = rocksdb_iter_key (iterator, &key_len);
        if (key_len == 8)
            *head = zcq_get_be64 ((const uint8_t *) key);
        else {
            snprintf (error, size, "checkpoint log key of %zu bytes (expected 8)", key_len);
            err = ZCQ_CORRUPT;
        }
    }
    rocksdb_iter_get_error (iterator, &rocks_error);
    if (rocks_error)
        err = s_error (rocks_error, error, size, "reading the checkpoint's log head");
    rocksdb_iter_destroy (iterator);
    for (int index = 0; index < S_CF_COUNT; index++)
        if (cf[index])
            rocksdb_column_family_handle_destroy (cf[index]);
    rocksdb_close (db);
    return err;
}

//  The handle is held shared while RocksDB makes the copy (a reopen, DESIGN
//  7, waits for it); commits and reads go on.
zcq_err_t
zcq_store_checkpoint (zcq_store_t *self, const char *dir, uint64_t *position, char *error,
                      size_t size)
{
    assert (self);
    *position = 0;
    struct stat info;
    if (lstat (dir, &info) == 0) {
        snprintf (error, size, "%s exists: a checkpoint goes into a new directory", dir);
        return ZCQ_INVALID;
    }
    if (s_read_begin (self) != ZCQ_OK) {
        snprintf (error, size, "the store is closed after a storage failure");
        return ZCQ_IO;
    }
    //  no flush: the checkpoint takes the WAL files (the last one up to
    //  its size then), so a commit that returned before is in it whole
    char *rocks_error = NULL;
    rocksdb_checkpoint_t *checkpoint = rocksdb_checkpoint_object_create (self->db, &rocks_error);
    if (!rocks_error)
        rocksdb_checkpoint_create (checkpoint, dir, UINT64_MAX, &rocks_error);
    if (checkpoint)
        rocksdb_checkpoint_object_destroy (checkpoint);
    s_read_end (self);
    if (rocks_error)
        return s_error (rocks_error, error, size, "taking a checkpoint");
    chmod (dir, 0700);
    //  its position is read from the checkpoint itself, not from the head
    //  we had: commits go on meanwhile, and only what it holds counts
    return s_checkpoint_head (self, dir, position, error, size);
}
