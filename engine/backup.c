/*  backup.c: online backups of a node's data, and their restore
    (zcq_backup.h shows a backup's layout).

    DESIGN
    1.  The view snapshots are copied first, the store second, as a
        RocksDB checkpoint taken while commits go on; its position is the
        head of the copy itself (read by opening it), so whatever RocksDB
        took, the manifest says exactly what it holds. A view host
        snapshots only events the store has committed, and the head never
        goes back, so every snapshot copied before the checkpoint is at or
        below its position: a restored node loads them and catches up from
        its log. (Copied after, a snapshot saved meanwhile would be ahead
        of the log, pairing rows with events it does not hold; one that
        is, all the same, is dropped.) Cluster-wide snapshots (format 2)
        stay out: their positions are per group, and a backup holds one
        group's log.
    2.  The manifest is written last, then synced with its directory: a
        directory without one is no backup (a crash half way), and a
        restore refuses it. A failed backup removes what it made.
    3.  A restore never writes into the backup: .sst files (never changed
        once written) are hard-linked, everything else is copied, so the
        backup restores again as often as needed. It refuses a data dir
        that holds anything, and opens the store it made once, reading
        the log through (checksums, no holes) and checking the head
        against the manifest.
*/
#include "zcq_internal.h"
#include "zcq_backup.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_MANIFEST   "manifest"
#define S_PATH_MAX   4096
#define S_KEEP_IDS_S (100LL * 365 * 24 * 3600) //  past any dedup window (config: 1 year)

void
zcq_backup_info_clear (zcq_backup_info_t *info)
{
    if (!info)
        return;
    free (info->views);
    info->views = NULL;
    info->view_count = 0;
}

//  --------------------------------------------------------------------------
//  Files

static zcq_err_t
s_io_error (const char *what, const char *path, char *error, size_t size)
{
    snprintf (error, size, "%s %s: %s", what, path, strerror (errno));
    return ZCQ_IO;
}

static int
s_remove_entry (const char *path, const struct stat *info, int flag, struct FTW *walk)
{
    (void) info;
    (void) flag;
    (void) walk;
    remove (path);
    return 0;
}

//  Remove path and what is under it (symbolic links themselves, never
//  what they point at).
static void
s_remove_tree (const char *path)
{
    nftw (path, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  Remove what is under path, leaving path.
static void
s_empty_dir (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return;
    struct dirent *entry;
    char child[S_PATH_MAX + 256];
    while ((entry = readdir (dir)))
        if (strcmp (entry->d_name, ".") != 0 && strcmp (entry->d_name, "..") != 0) {
            snprintf (child, sizeof child, "%s/%.255s", path, entry->d_name);
            s_remove_tree (child);
        }
    closedir (dir);
}

static _Thread_local uint64_t s_bytes;

static int
s_count_entry (const char *path, const struct stat *info, int flag, struct FTW *walk)
{
    (void) path;
    (void) walk;
    if (flag == FTW_F && S_ISREG (info->st_mode))
        s_bytes += (uint64_t) info->st_size;
    return 0;
}

//  Bytes of the regular files under path (nftw takes no argument: the
//  count is the calling thread's).
static uint64_t
s_tree_bytes (const char *path)
{
    s_bytes = 0;
    nftw (path, s_count_entry, 16, FTW_PHYS);
    return s_bytes;
}

static int
s_sync_path (const char *path)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

//  Write bytes to a new file at path (owner-only) and sync it.
static zcq_err_t
s_write_file (const char *path, const void *bytes, size_t length, char *error, size_t size)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return s_io_error ("cannot create", path, error, size);
    size_t done = 0;
    while (done < length) {
        ssize_t wrote = write (fd, (const uint8_t *) bytes + done, length - done);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote <= 0)
            break;
        done += (size_t) wrote;
    }
    zcq_err_t err = ZCQ_OK;
    if (done != length || fsync (fd) != 0)
        err = s_io_error ("cannot write", path, error, size);
    close (fd);
    return err;
}

//  Copy the regular file from to a new file to (owner-only), synced.
static zcq_err_t
s_copy_file (const char *from, const char *to, char *error, size_t size)
{
    int in = open (from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return s_io_error ("cannot open", from, error, size);
    int out = open (to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        zcq_err_t err = s_io_error ("cannot create", to, error, size);
        close (in);
        return err;
    }
    zcq_err_t err = ZCQ_OK;
    char buffer[1 << 16];
    while (err == ZCQ_OK) {
        ssize_t got = read (in, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            err = s_io_error ("cannot read", from, error, size);
        if (got <= 0)
            break;
        size_t done = 0;
        while (err == ZCQ_OK && done < (size_t) got) {
            ssize_t wrote = write (out, buffer + done, (size_t) got - done);
            if (wrote < 0 && errno == EINTR)
                continue;
            if (wrote <= 0)
                err = s_io_error ("cannot write", to, error, size);
            else
                done += (size_t) wrote;
        }
    }
    if (err == ZCQ_OK && fsync (out) != 0)
        err = s_io_error ("cannot sync", to, error, size);
    close (in);
    close (out);
    return err;
}

//  --------------------------------------------------------------------------
//  Taking a backup

//  Check dir (DESIGN: absolute, new, its parent there, outside data).
static zcq_err_t
s_check_target (const char *data, const char *dir, char *error, size_t size)
{
    size_t length = strlen (dir);
    if (dir[0] != '/') {
        snprintf (error, size, "the backup dir must be an absolute path, not '%.200s'", dir);
        return ZCQ_INVALID;
    }
    if (length >= S_PATH_MAX - 256) {
        snprintf (error, size, "the backup dir's path is too long (%zu bytes)", length);
        return ZCQ_INVALID;
    }
    struct stat info;
    if (lstat (dir, &info) == 0) {
        snprintf (error, size, "%s exists: a backup goes into a new directory", dir);
        return ZCQ_INVALID;
    }
    char parent[S_PATH_MAX], base[S_PATH_MAX];
    snprintf (parent, sizeof parent, "%s", dir);
    size_t end = strlen (parent);
    while (end > 1 && parent[end - 1] == '/')
        parent[--end] = 0;
    char *slash = strrchr (parent, '/');
    snprintf (base, sizeof base, "%s", slash + 1);
    if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    if (!*base || strcmp (base, ".") == 0 || strcmp (base, "..") == 0) {
        snprintf (error, size, "'%.200s' does not name a new directory", dir);
        return ZCQ_INVALID;
    }
    char parent_real[PATH_MAX], data_real[PATH_MAX];
    if (!realpath (parent, parent_real) || stat (parent_real, &info) != 0
        || !S_ISDIR (info.st_mode)) {
        snprintf (error, size, "the backup dir's parent %.200s is not a directory", parent);
        return ZCQ_INVALID;
    }
    if (realpath (data, data_real)) {
        char target[2 * PATH_MAX + 2];
        snprintf (target, sizeof target, "%s/%s", strcmp (parent_real, "/") ? parent_real : "",
                  base);
        size_t data_len = strlen (data_real);
        if (strncmp (target, data_real, data_len) == 0
            && (target[data_len] == '/' || target[data_len] == 0)) {
            snprintf (error, size, "%s is inside the node's data dir", dir);
            return ZCQ_INVALID;
        }
    }
    return ZCQ_OK;
}

static bool
s_add_view (zcq_backup_info_t *info, const char *name, const char *file, uint64_t position)
{
    zcq_backup_view_t *views
        = realloc (info->views, (info->view_count + 1) * sizeof (zcq_backup_view_t));
    if (!views)
        return false;
    info->views = views;
    zcq_backup_view_t *view = &views[info->view_count++];
    snprintf (view->name, sizeof view->name, "%s", name);
    snprintf (view->file, sizeof view->file, "%s", file);
    view->position = position;
    return true;
}

//  Copy the view snapshots of data at or below position (DESIGN 1).
static zcq_err_t
s_copy_views (const char *data, const char *dir, uint64_t position, zcq_backup_info_t *info,
              char *error, size_t size)
{
    char from_dir[S_PATH_MAX], to_dir[S_PATH_MAX];
    snprintf (from_dir, sizeof from_dir, "%s/views", data);
    snprintf (to_dir, sizeof to_dir, "%s/views", dir);
    if (mkdir (to_dir, 0700) != 0)
        return s_io_error ("cannot create", to_dir, error, size);
    DIR *views = opendir (from_dir);
    if (!views)
        return ZCQ_OK; //  no snapshots yet
    zcq_err_t err = ZCQ_OK;
    struct dirent *entry;
    while (err == ZCQ_OK && (entry = readdir (views))) {
        if (fnmatch ("*.snap", entry->d_name, 0) != 0)
            continue;
        char from[S_PATH_MAX + 256], to[S_PATH_MAX + 256], name[256], why[512];
        snprintf (from, sizeof from, "%s/%.255s", from_dir, entry->d_name);
        snprintf (to, sizeof to, "%s/%.255s", to_dir, entry->d_name);
        uint8_t *bytes;
        size_t length;
        zcq_viewsnap_t snap;
        if (zcq_viewsnap_read (from, &bytes, &length, name, sizeof name, &snap, why, sizeof why)
            != ZCQ_OK) {
            zsys_warning ("backup: view snapshot left out: %s", why);
            continue;
        }
        if (snap.groups)
            zsys_info ("backup: %s left out: a cluster-wide view's", from);
        else if (snap.position > position)
            zsys_info ("backup: %s left out: at position %" PRIu64 ", past the store's %" PRIu64,
                       from, snap.position, position);
        else if ((err = s_write_file (to, bytes, length, error, size)) == ZCQ_OK
                 && !s_add_view (info, name, entry->d_name, snap.position)) {
            snprintf (error, size, "out of memory");
            err = ZCQ_NOMEM;
        }
        free (bytes);
        zcq_viewsnap_clear (&snap);
    }
    closedir (views);
    if (err == ZCQ_OK && s_sync_path (to_dir) != 0)
        err = s_io_error ("cannot sync", to_dir, error, size);
    return err;
}

//  Drop the copied snapshots ahead of the store's copy (DESIGN 1).
static void
s_drop_views_after (const char *dir, zcq_backup_info_t *info)
{
    size_t kept = 0;
    for (size_t index = 0; index < info->view_count; index++) {
        zcq_backup_view_t *view = &info->views[index];
        if (view->position <= info->position) {
            info->views[kept++] = *view;
            continue;
        }
        char path[S_PATH_MAX + 256];
        snprintf (path, sizeof path, "%s/views/%s", dir, view->file);
        unlink (path);
        zsys_warning ("backup: view %s left out: its snapshot at position %" PRIu64
                      " is past the store's %" PRIu64,
                      view->name, view->position, info->position);
    }
    info->view_count = kept;
}

//  Write the manifest, synced with its directory (DESIGN 2).
static zcq_err_t
s_write_manifest (const char *dir, const zcq_backup_info_t *info, char *error, size_t size)
{
    char text[1024];
    //  ZPL values in quotes: ids and names may hold any printable byte
    //  but a quote (node ids and domain names never do)
    int length = snprintf (text, sizeof text,
                           "#   zcqrs backup\n"
                           "backup\n"
                           "    format = %d\n"
                           "    node = \"%s\"\n"
                           "    domain = \"%s\"\n"
                           "    position = %" PRIu64 "\n"
                           "    time = \"%s\"\n",
                           ZCQ_BACKUP_FORMAT, info->node, info->domain, info->position, info->time);
    char path[S_PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", dir, S_MANIFEST);
    ZCQ_TRY (s_write_file (path, text, (size_t) length, error, size));
    if (s_sync_path (dir) != 0)
        return s_io_error ("cannot sync", dir, error, size);
    return ZCQ_OK;
}

zcq_err_t
zcq_backup_take (zcq_store_t *store, const char *data, const char *dir, const char *node,
                 const char *domain, zcq_backup_info_t *info, char *error, size_t size)
{
    memset (info, 0, sizeof *info);
    ZCQ_TRY (s_check_target (data, dir, error, size));
    if (mkdir (dir, 0700) != 0) {
        if (errno == EEXIST) {
            snprintf (error, size, "%s exists: a backup goes into a new directory", dir);
            return ZCQ_INVALID;
        }
        return s_io_error ("cannot create", dir, error, size);
    }
    snprintf (info->node, sizeof info->node, "%s", node);
    snprintf (info->domain, sizeof info->domain, "%s", domain);
    time_t now = time (NULL);
    struct tm utc;
    gmtime_r (&now, &utc);
    strftime (info->time, sizeof info->time, "%Y-%m-%dT%H:%M:%SZ", &utc);
    char store_dir[S_PATH_MAX];
    snprintf (store_dir, sizeof store_dir, "%s/store", dir);
    zcq_err_t err = s_copy_views (data, dir, UINT64_MAX, info, error, size);
    if (err == ZCQ_OK)
        err = zcq_store_checkpoint (store, store_dir, &info->position, error, size);
    if (err == ZCQ_OK)
        s_drop_views_after (dir, info);
    if (err == ZCQ_OK)
        err = s_write_manifest (dir, info, error, size);
    if (err != ZCQ_OK) {
        s_remove_tree (dir);
        zcq_backup_info_clear (info);
        return err;
    }
    info->bytes = s_tree_bytes (dir);
    zsys_info ("backup: %s at log position %" PRIu64 " (%zu view snapshots, %" PRIu64 " bytes)",
               dir, info->position, info->view_count, info->bytes);
    return ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  Restoring one

//  Read and check the manifest of the backup in dir into info.
static zcq_err_t
s_read_manifest (const char *dir, zcq_backup_info_t *info, char *error, size_t size)
{
    char path[S_PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", dir, S_MANIFEST);
    struct stat status;
    if (stat (path, &status) != 0 || !S_ISREG (status.st_mode)) {
        snprintf (error, size, "%s is no zcqrs backup: it has no manifest", dir);
        return ZCQ_CORRUPT;
    }
    if (status.st_size > 64 * 1024) {
        snprintf (error, size, "%s: the manifest is too large to be one", path);
        return ZCQ_CORRUPT;
    }
    zconfig_t *root = zconfig_load (path);
    const char *format = root ? zconfig_get (root, "backup/format", NULL) : NULL;
    const char *position = root ? zconfig_get (root, "backup/position", NULL) : NULL;
    const char *node = root ? zconfig_get (root, "backup/node", "") : "";
    const char *domain = root ? zconfig_get (root, "backup/domain", "") : "";
    const char *time = root ? zconfig_get (root, "backup/time", "") : "";
    char *end = NULL;
    errno = 0;
    unsigned long long head = position ? strtoull (position, &end, 10) : 0;
    zcq_err_t err = ZCQ_OK;
    if (!format || !position) {
        snprintf (error, size, "%s: not a backup manifest (no format or position)", path);
        err = ZCQ_CORRUPT;
    }
    else if (strcmp (format, "1") != 0) {
        snprintf (error, size, "%s: backup format '%.32s', this build restores format %d", path,
                  format, ZCQ_BACKUP_FORMAT);
        err = ZCQ_CORRUPT;
    }
    else if (errno || !*position || *end || *position == '-' || *position == '+') {
        snprintf (error, size, "%s: position '%.32s' is not a log position", path, position);
        err = ZCQ_CORRUPT;
    }
    else {
        info->position = head;
        snprintf (info->node, sizeof info->node, "%s", node);
        snprintf (info->domain, sizeof info->domain, "%s", domain);
        snprintf (info->time, sizeof info->time, "%s", time);
    }
    zconfig_destroy (&root);
    return err;
}

//  Make data a new, empty data dir; *created when this made it.
static zcq_err_t
s_claim_target (const char *data, bool *created, char *error, size_t size)
{
    *created = false;
    struct stat info;
    if (stat (data, &info) == 0) {
        if (!S_ISDIR (info.st_mode)) {
            snprintf (error, size, "%s exists and is not a directory", data);
            return ZCQ_INVALID;
        }
        DIR *dir = opendir (data);
        if (!dir)
            return s_io_error ("cannot open", data, error, size);
        struct dirent *entry;
        bool empty = true;
        while (empty && (entry = readdir (dir)))
            empty = strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0;
        closedir (dir);
        if (!empty) {
            snprintf (error, size, "%s is not empty: a backup is restored into a new data dir",
                      data);
            return ZCQ_INVALID;
        }
        return ZCQ_OK;
    }
    char parent[S_PATH_MAX];
    snprintf (parent, sizeof parent, "%s", data);
    char *slash = strrchr (parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        zsys_dir_create ("%s", parent);
    }
    if (mkdir (data, 0700) != 0)
        return s_io_error ("cannot create", data, error, size);
    *created = true;
    return ZCQ_OK;
}

//  Copy the files of from matching pattern into to: .sst files hard-linked
//  when the filesystem lets us, the others copied (DESIGN 3).
static zcq_err_t
s_copy_dir (const char *from, const char *to, const char *pattern, char *error, size_t size)
{
    DIR *dir = opendir (from);
    if (!dir)
        return s_io_error ("cannot open", from, error, size);
    zcq_err_t err = ZCQ_OK;
    struct dirent *entry;
    while (err == ZCQ_OK && (entry = readdir (dir))) {
        const char *name = entry->d_name;
        //  RocksDB's info logs (an open writes them) are no data
        if (fnmatch (pattern, name, 0) != 0 || strcmp (name, "LOCK") == 0
            || strcmp (name, "LOG") == 0 || fnmatch ("LOG.old.*", name, 0) == 0)
            continue;
        char source[S_PATH_MAX + 256], target[S_PATH_MAX + 256];
        snprintf (source, sizeof source, "%s/%.255s", from, name);
        snprintf (target, sizeof target, "%s/%.255s", to, name);
        struct stat info;
        if (lstat (source, &info) != 0 || !S_ISREG (info.st_mode))
            continue;
        if (fnmatch ("*.sst", name, 0) == 0 && link (source, target) == 0)
            continue;
        err = s_copy_file (source, target, error, size);
    }
    closedir (dir);
    if (err == ZCQ_OK && s_sync_path (to) != 0)
        err = s_io_error ("cannot sync", to, error, size);
    return err;
}

//  Open the store made in data once: read the log through and check its
//  head against the manifest (DESIGN 3).
static zcq_err_t
s_check_store (const char *data, uint64_t position, char *error, size_t size)
{
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    options.create = false;
    options.verify = true;
    //  drop no command id (the open indexes the log's tail, and may
    //  compact): the node that starts on it applies its own window
    options.dedup_window_s = S_KEEP_IDS_S;
    zcq_store_t *store = NULL;
    ZCQ_TRY (zcq_store_open (&store, data, &options, error, size));
    zcq_err_t err = zcq_store_verified (store, error, size);
    uint64_t head = zcq_store_head (store);
    if (err == ZCQ_OK && head != position) {
        snprintf (error, size,
                  "the restored log ends at position %" PRIu64 ", the manifest says %" PRIu64, head,
                  position);
        err = ZCQ_CORRUPT;
    }
    zcq_store_close (&store);
    return err;
}

zcq_err_t
zcq_backup_restore (const char *dir, const char *data, zcq_backup_info_t *info, char *error,
                    size_t size)
{
    memset (info, 0, sizeof *info);
    ZCQ_TRY (s_read_manifest (dir, info, error, size));
    char store_dir[S_PATH_MAX], views_from[S_PATH_MAX], views_to[S_PATH_MAX];
    snprintf (store_dir, sizeof store_dir, "%s/store", dir);
    snprintf (views_from, sizeof views_from, "%s/views", dir);
    snprintf (views_to, sizeof views_to, "%s/views", data);
    struct stat status;
    if (stat (store_dir, &status) != 0 || !S_ISDIR (status.st_mode)) {
        snprintf (error, size, "%s is no zcqrs backup: it has no store", dir);
        return ZCQ_CORRUPT;
    }
    bool created;
    ZCQ_TRY (s_claim_target (data, &created, error, size));
    zcq_err_t err = s_copy_dir (store_dir, data, "*", error, size);
    if (err == ZCQ_OK && mkdir (views_to, 0700) != 0)
        err = s_io_error ("cannot create", views_to, error, size);
    if (err == ZCQ_OK && stat (views_from, &status) == 0)
        err = s_copy_dir (views_from, views_to, "*.snap", error, size);
    if (err == ZCQ_OK)
        err = s_check_store (data, info->position, error, size);
    if (err == ZCQ_OK && s_sync_path (data) != 0)
        err = s_io_error ("cannot sync", data, error, size);
    if (err != ZCQ_OK) {
        if (created)
            s_remove_tree (data);
        else
            s_empty_dir (data);
        return err;
    }
    info->bytes = s_tree_bytes (data);
    return ZCQ_OK;
}
