/*  zcq_backup.h: online backups of a node's data, and their restore.

    A backup is a directory, the node's own (owner-only):
        manifest    ZPL: `backup` with format, node, domain, position, time
        store/      a checkpoint of the store (zcq_store_checkpoint), whose
                    log ends at `position`
        views/      the view snapshots of the data dir whose position is at
                    most `position` (a restored node loads them and catches
                    up from the log it has; one ahead of the log would be
                    wrong, so none is taken)
    The store and the views are consistent with one log position: the
    store's head. A restore makes a data dir of it that a node opens as
    its own.
*/
#ifndef ZCQ_BACKUP_H_INCLUDED
#define ZCQ_BACKUP_H_INCLUDED

#include "zcq_store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ZCQ_BACKUP_FORMAT 1

typedef struct {
    char name[256]; //  the view's
    char file[256]; //  its snapshot's, in views/
    uint64_t position;
} zcq_backup_view_t;

//  What a backup holds. zcq_backup_info_clear frees views.
typedef struct {
    uint64_t position;
    uint64_t bytes; //  of every file in the backup
    char node[128];
    char domain[128];
    char time[32]; //  ISO 8601, UTC
    zcq_backup_view_t *views;
    size_t view_count;
} zcq_backup_info_t;

ZCQ_EXPORT void zcq_backup_info_clear (zcq_backup_info_t *info);

//  Back up the node whose store is store and data dir is data into dir,
//  while it serves. dir must be absolute, must not exist, its parent must,
//  and it must be outside data: ZCQ_INVALID otherwise. On any failure
//  nothing is left at dir. Any thread (the store's reads are).
ZCQ_EXPORT zcq_err_t zcq_backup_take (zcq_store_t *store, const char *data, const char *dir,
                                      const char *node, const char *domain, zcq_backup_info_t *info,
                                      char *error, size_t size);

//  Restore the backup in dir into the data dir data, which must not exist
//  or be empty (ZCQ_INVALID else): checks the manifest (ZCQ_CORRUPT when it
//  is missing or wrong), copies the store (.sst files hard-linked when on
//  the same filesystem) and the view snapshots, then opens the store once
//  and checks its log through: its head must be the manifest's position.
//  On failure, what it made in data is removed again.
ZCQ_EXPORT zcq_err_t zcq_backup_restore (const char *dir, const char *data, zcq_backup_info_t *info,
                                         char *error, size_t size);

#ifdef __cplusplus
}
#endif
#endif
