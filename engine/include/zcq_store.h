/*  zcq_store.h: the event store on RocksDB.

    Column families, and the records a store writes in them:
        log          position (u64 BE)           -> event body (ZCQ/1 section 4)
        streams      stream NUL version (u64 BE) -> position (u64 BE), and
                     (empty key)                 -> indexed through (u64 BE)
        snapshots    stream                      -> schema (u32 BE), version
                                                    (u64 BE), state
        commands     command id                  -> commit time (u64 BE), result, and
                     (empty key)                 -> indexed through (u64 BE)
        default      metadata: format version, view checkpoints, the first
                     kept version of truncated streams, ...
    Data dirs of earlier versions also hold records that are no longer
    written: `streams` stream NUL -> version (format 1; never read), and
    the family `expiry`, commit time (u64 BE) id -> (empty), which
    zcq_store_expire_commands empties (ids now expire by compaction).

    A commit is one WriteBatch, written with the durability mode's sync
    setting, of what comes in log order: the events, snapshots, metadata,
    and the ids of commands that wrote no events. The stream index and the
    other command ids are derived from the log: kept in memory for the
    part of the log not yet indexed (the recent part), and written behind
    the log by the store's indexer thread; every read sees both parts.
    After a crash the open indexes the log's tail again from the event
    bodies, which must therefore be ZCQ/1 event maps (stream, version,
    command, time); a log entry that is not one stops the open.

    THREAD SAFETY: reads may run from any thread at the same time (RocksDB
    handles are thread-safe; each read holds the store's handle lock
    shared, and the recent part's lock shared while it looks there).
    Commits, syncs, expiry, zcq_store_index and zcq_store_recover are made
    by one thread at a time: the node's log writer (or the single user of
    zcq_store_append). The indexer thread is the store's own.

    Storage errors: a failed write leaves the store refusing commits
    (ZCQ_IO) until zcq_store_recover has reopened RocksDB, which it does
    once the fault clears; reads go on meanwhile. Every reopen raises
    zcq_store_epoch: state cached from the store must be reloaded then,
    since a reopened store may hold a batch whose commit reported an error
    (a failed sync in fsync mode: outcome unknown, never partial).
*/
#ifndef ZCQ_STORE_H_INCLUDED
#define ZCQ_STORE_H_INCLUDED

#include "zcq_value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_store_t zcq_store_t;
typedef struct zcq_batch_t zcq_batch_t;

typedef enum {
    ZCQ_DURABILITY_WAL = 0, //  in the WAL, not fsynced: survives a process crash
    ZCQ_DURABILITY_FSYNC,   //  in the WAL and fsynced: survives power loss
} zcq_durability_t;

typedef struct {
    zcq_durability_t durability;
    uint64_t dedup_window_s; //  keep command ids this long; 0 = 24 h
    size_t cache_mb;         //  block cache; 0 = 64
    bool create;             //  create the data dir when missing (default via options_init: true)
    bool verify; //  read the log through after open, checking checksums (default: true);
                 //  zcq_store_verified gives the outcome
} zcq_store_options_t;

ZCQ_EXPORT void zcq_store_options_init (zcq_store_options_t *options);
ZCQ_EXPORT const char *zcq_durability_name (zcq_durability_t durability);

//  Open (or create) a store in directory path. On failure returns the
//  error and a reason in error[size]; *store_p stays NULL.
//  Table files a store keeps open at most (plus its logs and manifest).
#define ZCQ_STORE_OPEN_FILES 512

ZCQ_EXPORT zcq_err_t zcq_store_open (zcq_store_t **store_p, const char *path,
                                     const zcq_store_options_t *options, char *error, size_t size);
ZCQ_EXPORT void zcq_store_close (zcq_store_t **self_p);
ZCQ_EXPORT zcq_durability_t zcq_store_durability (const zcq_store_t *self);
ZCQ_EXPORT uint64_t zcq_store_dedup_window_s (const zcq_store_t *self);

//  Position of the last committed event (0 for an empty log).
ZCQ_EXPORT uint64_t zcq_store_head (const zcq_store_t *self);

//  ---------------------------------------------------------------------
//  Writing: fill a batch, then commit it whole or not at all.

//  A batch writes into the column families of store.
ZCQ_EXPORT zcq_batch_t *zcq_batch_new (zcq_store_t *store);
ZCQ_EXPORT void zcq_batch_destroy (zcq_batch_t **self_p);
ZCQ_EXPORT void zcq_batch_clear (zcq_batch_t *self);
ZCQ_EXPORT size_t zcq_batch_count (const zcq_batch_t *self);
//  The event at position, version `version` of stream (which becomes the
//  stream's version: stage a stream's events in version order). The body
//  is a ZCQ/1 event map (the header says why).
ZCQ_EXPORT void zcq_batch_event (zcq_batch_t *self, uint64_t position, const char *stream,
                                 size_t stream_len, uint64_t version, const void *body, size_t len);
ZCQ_EXPORT void zcq_batch_snapshot (zcq_batch_t *self, const char *stream, size_t stream_len,
                                    uint32_t schema, uint64_t version, const void *state,
                                    size_t len);
//  Remember a successful command id (1 byte or more) with its encoded
//  result. Stage a command's events first, then its id: the id goes with
//  the events staged since the previous id. One without events is written
//  in the commit itself, since the log cannot give it back; the others
//  are indexed behind the log, and rebuilt from it after a crash as
//  [u64 version][u64 position][u32 events][stream] NUL: the layout of the
//  node's results, with no command type.
ZCQ_EXPORT void zcq_batch_command (zcq_batch_t *self, const char *id, size_t id_len,
                                   int64_t time_us, const void *result, size_t len);
ZCQ_EXPORT void zcq_batch_meta (zcq_batch_t *self, const char *name, const void *value, size_t len);
//  Remove the stream's events of versions below `before` from the log, in
//  this commit: their log entries are deleted (the stream index keeps its
//  entries) and `before` becomes the stream's first kept version. Stage it
//  with the commit that writes the stream's `$truncated` event. Nothing
//  when before is not above the first kept version. Reads the store: call
//  it from the committing thread, once the events to remove are committed.
ZCQ_EXPORT zcq_err_t zcq_batch_truncate (zcq_batch_t *self, const char *stream, size_t stream_len,
                                         uint64_t before);
//  Commit the batch; head becomes the highest event position in it (the
//  caller assigns positions head+1, head+2, ... without holes).
//  ZCQ_INVALID when a command id was empty, ZCQ_NOMEM when staging failed.
ZCQ_EXPORT zcq_err_t zcq_store_commit (zcq_store_t *self, zcq_batch_t *batch, uint64_t head);
//  Make every commit so far durable against power loss (one fsync).
ZCQ_EXPORT zcq_err_t zcq_store_sync (zcq_store_t *self);

//  Single-writer convenience: append events (their encoded bodies are
//  given whole) to stream if its version equals expect (-1 = any). The
//  bodies are stored as given. Returns ZCQ_CONFLICT with *version set to
//  the current version on a mismatch.
ZCQ_EXPORT zcq_err_t zcq_store_append (zcq_store_t *self, const char *stream, int64_t expect,
                                       const void *const *bodies, const size_t *lens, size_t count,
                                       uint64_t *version, uint64_t *position);

//  ---------------------------------------------------------------------
//  Reading. Callbacks get bytes valid only during the call; return
//  non-zero to stop early. A callback must not call the store (the read
//  holds the store's handle lock, which a waiting reopen blocks).

typedef int (zcq_store_event_fn) (void *arg, uint64_t position, uint64_t version, const void *body,
                                  size_t len);

//  Events with position >= from, at most limit (0 = all), in order.
ZCQ_EXPORT zcq_err_t zcq_store_read_log (zcq_store_t *self, uint64_t from, size_t limit,
                                         zcq_store_event_fn *fn, void *arg);
//  Events of a stream with version >= from, at most limit (0 = all).
ZCQ_EXPORT zcq_err_t zcq_store_read_stream (zcq_store_t *self, const char *stream, uint64_t from,
                                            size_t limit, zcq_store_event_fn *fn, void *arg);
//  The stream's current version (0 when it has no events).
ZCQ_EXPORT zcq_err_t zcq_store_stream_version (zcq_store_t *self, const char *stream,
                                               uint64_t *version);
//  The first version of stream the log keeps (1 unless truncated): reads
//  of the stream start there.
ZCQ_EXPORT zcq_err_t zcq_store_stream_first (zcq_store_t *self, const char *stream,
                                             uint64_t *first);
//  Call fn with the name of every stream whose name starts with prefix:
//  those of the index in RocksDB in name order, then those of the recent
//  part (so a stream may come more than once). fn returns non-zero to
//  stop; it must not call the store.
ZCQ_EXPORT zcq_err_t zcq_store_each_stream (zcq_store_t *self, const char *prefix,
                                            int (*fn) (void *arg, const char *stream, size_t len),
                                            void *arg);
//  How many log entries truncation has removed: the log's holes.
ZCQ_EXPORT uint64_t zcq_store_removed (const zcq_store_t *self);
//  The latest snapshot of stream; caller frees *state. ZCQ_NOT_FOUND when
//  there is none.
ZCQ_EXPORT zcq_err_t zcq_store_snapshot (zcq_store_t *self, const char *stream, uint32_t *schema,
                                         uint64_t *version, void **state, size_t *len);
//  The stored result of command id; caller frees *result. ZCQ_NOT_FOUND
//  when unknown or older than the deduplication window.
ZCQ_EXPORT zcq_err_t zcq_store_command (zcq_store_t *self, const char *id, size_t id_len,
                                        void **result, size_t *len);
//  Delete command ids committed before now_us - window that data dirs of
//  earlier versions listed in their `expiry` family, at most max of them;
//  *expired says how many went. (Ids are now dropped by compaction.)
ZCQ_EXPORT zcq_err_t zcq_store_expire_commands (zcq_store_t *self, int64_t now_us, size_t max,
                                                size_t *expired);
//  Compact the command ids now, dropping the records older than the dedup
//  window (RocksDB's own compactions drop them too, in their own time).
ZCQ_EXPORT zcq_err_t zcq_store_compact_commands (zcq_store_t *self);
//  A metadata value; caller frees. ZCQ_NOT_FOUND when absent.
ZCQ_EXPORT zcq_err_t zcq_store_meta (zcq_store_t *self, const char *name, void **value,
                                     size_t *len);
//  A RocksDB integer property (e.g. rocksdb.cur-size-all-mem-tables),
//  summed over the store's column families; ZCQ_NOT_FOUND when RocksDB
//  has no such integer property, ZCQ_IO while the store is closed for a
//  reopen. Safe from any thread.
ZCQ_EXPORT zcq_err_t zcq_store_property (zcq_store_t *self, const char *name, uint64_t *value);
//  Approximate bytes the store takes on disk.
ZCQ_EXPORT uint64_t zcq_store_disk_bytes (zcq_store_t *self);

//  ---------------------------------------------------------------------
//  Storage errors and damage

//  ZCQ_OK when the store takes commits. After a failed write, reopen
//  RocksDB when the backoff allows (100 ms, doubling to 500 ms) and
//  return ZCQ_OK once that worked, else ZCQ_IO at once. Call it from the
//  committing thread, before staging a batch (positions come from the head
//  the reopen read).
ZCQ_EXPORT zcq_err_t zcq_store_recover (zcq_store_t *self);
//  True from a failed write until a reopen succeeds.
ZCQ_EXPORT bool zcq_store_failed (const zcq_store_t *self);
//  How many times the store has reopened RocksDB. When it changes, the
//  head, stream versions and anything loaded from the store may differ.
ZCQ_EXPORT uint64_t zcq_store_epoch (const zcq_store_t *self);
//  Wait for the log check that the open started (options.verify): ZCQ_OK,
//  or ZCQ_CORRUPT (a checksum mismatch, a hole) with the reason in error.
ZCQ_EXPORT zcq_err_t zcq_store_verified (zcq_store_t *self, char *error, size_t size);

//  Test hook: make the next `count`-th commit fail with ZCQ_IO (0 = off).
ZCQ_EXPORT void zcq_store_inject_fault (zcq_store_t *self, int countdown);

//  ---------------------------------------------------------------------
//  The recent part of the index

//  Write the whole recent part of the index to RocksDB now (the indexer
//  does it in the background, and a close does it too). Call it from the
//  committing thread.
ZCQ_EXPORT zcq_err_t zcq_store_index (zcq_store_t *self);
//  Test hook: while held, the indexer thread writes nothing, as if it lagged
//  behind (zcq_store_index and the memory bound still write).
ZCQ_EXPORT void zcq_store_hold_index (zcq_store_t *self, bool hold);
//  Stream index entries and command ids held in memory, not yet indexed.
ZCQ_EXPORT size_t zcq_store_recent (zcq_store_t *self);

//  ---------------------------------------------------------------------
//  Online backups

//  Write a consistent copy of the store into dir (RocksDB's checkpoint:
//  .sst files hard-linked on the same filesystem, copied otherwise, and
//  the WAL copied), while commits go on. dir must not exist; it is made
//  owner-only. *position is the head the copy holds: read from the copy
//  itself, so it is exactly the last commit it contains. Any thread.
ZCQ_EXPORT zcq_err_t zcq_store_checkpoint (zcq_store_t *self, const char *dir, uint64_t *position,
                                           char *error, size_t size);

#ifdef __cplusplus
}
#endif
#endif
