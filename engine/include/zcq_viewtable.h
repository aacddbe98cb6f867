/*  zcq_viewtable.h: an in-memory view table: rows by key, in key order,
    with secondary indexes on named fields.

    Rows are MessagePack maps held as encoded bytes. Look-ups by key are
    O(1) (a hash table), ordered pages O(log n + k) (a skip list), and
    every index is a skip list ordered by (field value, key) with a count
    per value, so counts by value are O(1).

    Index values are compared as their encoded bytes, so an integer 5 and
    a float 5.0 are different values; use one type per indexed field.

    Not thread-safe: one owner (a projection actor, or a remote program).
*/
#ifndef ZCQ_VIEWTABLE_H_INCLUDED
#define ZCQ_VIEWTABLE_H_INCLUDED

#include "zcq_value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_viewtable_t zcq_viewtable_t;

//  Called for each row of a page; return non-zero to stop.
typedef int (zcq_row_fn) (void *arg, const char *key, size_t key_len, const void *row,
                          size_t row_len);

//  A table with the given indexed fields (NULL-terminated list, or NULL).
ZCQ_EXPORT zcq_viewtable_t *zcq_viewtable_new (const char *const *indexes);
ZCQ_EXPORT void zcq_viewtable_destroy (zcq_viewtable_t **self_p);
//  Store the row (an encoded map, copied) at key, replacing any row there
//  and updating the indexes.
ZCQ_EXPORT zcq_err_t zcq_viewtable_put (zcq_viewtable_t *self, const char *key, size_t key_len,
                                        const void *row, size_t row_len);
//  Remove the row at key; false when there was none.
ZCQ_EXPORT bool zcq_viewtable_delete (zcq_viewtable_t *self, const char *key, size_t key_len);
//  The row at key (borrowed until the next change), or NULL.
ZCQ_EXPORT const void *zcq_viewtable_get (const zcq_viewtable_t *self, const char *key,
                                          size_t key_len, size_t *row_len);
ZCQ_EXPORT size_t zcq_viewtable_count (const zcq_viewtable_t *self);
//  True when field is indexed.
ZCQ_EXPORT bool zcq_viewtable_has_index (const zcq_viewtable_t *self, const char *field);
//  Rows whose indexed field has the (encoded) value.
ZCQ_EXPORT size_t zcq_viewtable_count_value (const zcq_viewtable_t *self, const char *field,
                                             const void *value, size_t value_len);
//  Up to limit rows in key order, starting after the key `after` (NULL =
//  from the first). *more says whether rows remain after the last one
//  given. Returns how many rows were given.
ZCQ_EXPORT size_t zcq_viewtable_list (const zcq_viewtable_t *self, const char *after,
                                      size_t after_len, size_t limit, zcq_row_fn *fn, void *arg,
                                      bool *more);
//  As list, over the rows whose indexed field has the (encoded) value, in
//  key order.
ZCQ_EXPORT size_t zcq_viewtable_list_value (const zcq_viewtable_t *self, const char *field,
                                            const void *value, size_t value_len, const char *after,
                                            size_t after_len, size_t limit, zcq_row_fn *fn,
                                            void *arg, bool *more);
//  Bytes the table holds in memory (rows, keys, structure), excluding
//  allocator overhead.
ZCQ_EXPORT size_t zcq_viewtable_memory (const zcq_viewtable_t *self);

//  --------------------------------------------------------------------------
//  Snapshots: a table saved to a file with the log position its rows
//  reflect, so that a restart loads it and replays only the log after it.

typedef struct {
    uint32_t version;  //  the projection's version
    uint64_t position; //  the last log position applied to the rows
    uint64_t check;    //  the caller's check of that position (zcqrs: a
                       //  hash of the stored event there)
    //  a cluster-wide view's (format 2): the cluster's id and the position
    //  of every group's log its rows reflect; groups 0 and no positions in
    //  a single node's snapshot (format 1). Save reads positions; load
    //  allocates them, and zcq_viewsnap_clear frees them.
    char cluster[64];
    size_t groups;
    uint64_t *positions;
} zcq_viewsnap_t;

//  Free what a load put into snap (its positions). Safe twice.
ZCQ_EXPORT void zcq_viewsnap_clear (zcq_viewsnap_t *snap);

//  Save the table to path atomically (a temporary file, fsync, rename,
//  fsync of the directory). On error, error says why.
ZCQ_EXPORT zcq_err_t zcq_viewtable_save (const zcq_viewtable_t *self, const char *path,
                                         const char *view, const zcq_viewsnap_t *snap, char *error,
                                         size_t size);
//  Load a snapshot of view into a new table with the given indexes, and
//  its header into snap. ZCQ_NOT_FOUND when there is no file, ZCQ_INVALID
//  when it is another view's, ZCQ_CORRUPT when it is damaged (checksum,
//  bounds, key order, a row that is not a map); error says why.
ZCQ_EXPORT zcq_err_t zcq_viewtable_load (zcq_viewtable_t **self_p, const char *const *indexes,
                                         const char *path, const char *view, zcq_viewsnap_t *snap,
                                         char *error, size_t size);

#ifdef __cplusplus
}
#endif
#endif
