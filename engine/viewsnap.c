/*  viewsnap.c: view snapshots, a view table saved to a file with the log
    position its rows reflect, so that a restart loads the rows and replays
    only the events after that position.

    DESIGN
    1.  The file is one buffer: magic "ZCQVIEW1", a MessagePack header
        (view, version, position, check, rows) behind its be32 length, the
        rows in key order as [be32 key length][key][be32 row length][row],
        then per index [be32 field length][field][be32 entries][be32 row
        number]*entries (the rows numbered 0, 1, ... in key order, listed in
        the index's order), and a be64 checksum of everything before it.
    2.  Saving is split in two: an image (the rows encoded into one
        buffer, taken by the table's owner between two changes; a memcpy
        of a row's bytes, or the encoding of its record) and a write (the
        slow part: write, fsync, rename, fsync of the directory) that any
        thread can do while the table moves on.
    3.  Loading trusts nothing: the checksum covers the whole file, every
        length is checked against the bytes left, every row must be a
        well-formed map and the keys strictly increasing (so rows go in by
        append, O(1) each, and a reordered file is refused). Index entries
        go in by append too, in the order the file gives, which must be
        strictly increasing and cover every row that has the field; an
        index the file lacks (new in the view) is built from the rows.
    4.  A cluster-wide view's snapshot (format 2, magic "ZCQVIEW2") adds
        `cluster` (the cluster's id) and `positions` (a map from group, as a
        decimal string, to the position in that group's log) to the header;
        everything else is as in format 1, which a single node still writes
        and every build loads. A build that knows only format 1 refuses a
        format 2 file rather than pair its rows with one group's log.
*/
#include "zcq_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAGIC       "ZCQVIEW1"
#define S_MAGIC2      "ZCQVIEW2" //  DESIGN 4
#define S_MAGIC_SIZE  8
#define S_HEADER_MAX  4096
#define S_HEADER2_MAX (1 << 20) //  DESIGN 4: a position per group, up to 16,384 groups
#define S_TRAILER     8
#define S_AHEAD       16 //  rows whose hash slots are fetched ahead of loading

struct zcq_viewimage_t {
    uint8_t *bytes;
    size_t size;
    size_t capacity;
    bool failed;
};

//  A checksum over 8-byte words (multiply, rotate, mix), several GB/s.
static uint64_t
s_checksum (const uint8_t *bytes, size_t len)
{
    const uint64_t prime1 = 0x9e3779b185ebca87ULL, prime2 = 0xc2b2ae3d27d4eb4fULL;
    uint64_t lanes[4] = { prime1, prime2, len, ~len };
    size_t index = 0;
    for (; index + 32 <= len; index += 32)
        for (int lane = 0; lane < 4; lane++) {
            uint64_t word;
            memcpy (&word, bytes + index + 8 * lane, 8);
            lanes[lane] += word * prime2;
            lanes[lane] = (lanes[lane] << 31 | lanes[lane] >> 33) * prime1;
        }
    uint64_t hash = lanes[0] ^ (lanes[1] << 7 | lanes[1] >> 57) ^ (lanes[2] << 12 | lanes[2] >> 52)
                  ^ (lanes[3] << 18 | lanes[3] >> 46);
    for (; index < len; index++)
        hash = (hash ^ bytes[index]) * prime1;
    hash ^= hash >> 33;
    hash *= prime2;
    hash ^= hash >> 29;
    return hash;
}

//  --------------------------------------------------------------------------
//  Images (DESIGN 2)

static uint8_t *
s_reserve (zcq_viewimage_t *self, size_t len)
{
    if (self->failed)
        return NULL;
    if (self->size + len > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 1 << 16;
        while (capacity < self->size + len)
            capacity *= 2;
        uint8_t *bytes = realloc (self->bytes, capacity);
        if (!bytes) {
            self->failed = true;
            return NULL;
        }
        self->bytes = bytes;
        self->capacity = capacity;
    }
    uint8_t *start = self->bytes + self->size;
    self->size += len;
    return start;
}

static int
s_add_row (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    zcq_viewimage_t *self = arg;
    uint8_t *bytes = s_reserve (self, 8 + key_len + row_len);
    if (!bytes)
        return 1;
    zcq_put_be32 (bytes, (uint32_t) key_len);
    memcpy (bytes + 4, key, key_len);
    zcq_put_be32 (bytes + 4 + key_len, (uint32_t) row_len);
    memcpy (bytes + 8 + key_len, row, row_len);
    return 0;
}

zcq_viewimage_t *
zcq_viewimage_new (const zcq_viewtable_t *table, const char *view, const zcq_viewsnap_t *snap)
{
    zcq_viewimage_t *self = calloc (1, sizeof (zcq_viewimage_t));
    zcq_writer_t *header = zcq_writer_new ();
    if (!self || !header) {
        free (self);
        zcq_writer_destroy (&header);
        return NULL;
    }
    size_t rows = zcq_viewtable_count (table);
    zcq_writer_map (header, snap->groups ? 7 : 5);
    if (snap->groups) {
        //  DESIGN 4
        zcq_writer_str (header, "cluster");
        zcq_writer_str (header, snap->cluster);
        zcq_writer_str (header, "positions");
        zcq_writer_map (header, snap->groups);
        for (size_t group = 0; group < snap->groups; group++) {
            char name[24];
            snprintf (name, sizeof name, "%zu", group);
            zcq_writer_str (header, name);
            zcq_writer_uint (header, snap->positions[group]);
        }
    }
    zcq_writer_str (header, "view");
    zcq_writer_str (header, view);
    zcq_writer_str (header, "version");
    zcq_writer_uint (header, snap->version);
    zcq_writer_str (header, "position");
    zcq_writer_uint (header, snap->position);
    zcq_writer_str (header, "check");
    zcq_writer_uint (header, snap->check);
    zcq_writer_str (header, "rows");
    zcq_writer_uint (header, rows);
    size_t header_len = zcq_writer_size (header);
    //  the table's own count of its bytes (rows, keys, structure: more
    //  than the rows need) sizes the buffer once, index sections included
    self->capacity
        = S_MAGIC_SIZE + 4 + header_len + zcq_viewtable_memory (table) + 8 * rows + S_TRAILER;
    for (size_t index = 0; index < zcq_viewtable_index_count (table); index++)
        self->capacity += 8 + strlen (zcq_viewtable_index_field (table, index))
                        + 4 * zcq_viewtable_index_size (table, index);
    self->bytes = malloc (self->capacity);
    uint8_t *start = NULL;
    if (!self->bytes)
        self->failed = true;
    else if (zcq_writer_ok (header) && header_len <= (snap->groups ? S_HEADER2_MAX : S_HEADER_MAX)
             && (start = s_reserve (self, S_MAGIC_SIZE + 4 + header_len))) {
        memcpy (start, snap->groups ? S_MAGIC2 : S_MAGIC, S_MAGIC_SIZE);
        zcq_put_be32 (start + S_MAGIC_SIZE, (uint32_t) header_len);
        memcpy (start + S_MAGIC_SIZE + 4, zcq_writer_data (header), header_len);
    }
    else
        self->failed = true;
    zcq_writer_destroy (&header);
    //  records are encoded into the image, not kept encoded in the table
    if (!self->failed && !zcq_viewtable_dump (table, s_add_row, self))
        self->failed = true;
    for (size_t index = 0; index < zcq_viewtable_index_count (table); index++) {
        const char *field = zcq_viewtable_index_field (table, index);
        size_t field_len = strlen (field);
        size_t entries = zcq_viewtable_index_size (table, index);
        uint8_t *bytes = s_reserve (self, 8 + field_len + 4 * entries);
        if (!bytes)
            break;
        zcq_put_be32 (bytes, (uint32_t) field_len);
        memcpy (bytes + 4, field, field_len);
        zcq_put_be32 (bytes + 4 + field_len, (uint32_t) entries);
        zcq_viewtable_index_order (table, index, bytes + 8 + field_len);
    }
    uint8_t *trailer = s_reserve (self, S_TRAILER);
    if (trailer)
        zcq_put_be64 (trailer, s_checksum (self->bytes, self->size - S_TRAILER));
    if (self->failed)
        zcq_viewimage_destroy (&self);
    return self;
}

void
zcq_viewimage_destroy (zcq_viewimage_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->bytes);
    free (*self_p);
    *self_p = NULL;
}

static zcq_err_t
s_io_error (const char *what, const char *path, char *error, size_t size)
{
    snprintf (error, size, "%s %s: %s", what, path, strerror (errno));
    return errno == ENOMEM ? ZCQ_NOMEM : ZCQ_IO;
}

//  fsync the directory that holds path, so that a rename in it is durable.
static int
s_sync_dir (const char *path)
{
    char *copy = strdup (path);
    if (!copy)
        return -1;
    int fd = open (dirname (copy), O_RDONLY | O_DIRECTORY);
    free (copy);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

zcq_err_t
zcq_viewimage_write (const zcq_viewimage_t *self, const char *path, char *error, size_t size)
{
    char temporary[4096];
    if (snprintf (temporary, sizeof temporary, "%s.tmp", path) >= (int) sizeof temporary) {
        snprintf (error, size, "snapshot path too long: %s", path);
        return ZCQ_INVALID;
    }
    //  a file (or a symlink planted) at the temporary name is removed, not
    //  followed: the new file is made here, by this call, or not at all
    if (unlink (temporary) != 0 && errno != ENOENT)
        return s_io_error ("cannot remove the stale", temporary, error, size);
    int fd = open (temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return s_io_error ("cannot create", temporary, error, size);
    size_t done = 0;
    while (done < self->size) {
        ssize_t written = write (fd, self->bytes + done, self->size - done);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            if (written == 0)
                errno = ENOSPC;
            zcq_err_t err = s_io_error ("cannot write", temporary, error, size);
            close (fd);
            unlink (temporary);
            return err;
        }
        done += (size_t) written;
    }
    if (fsync (fd) != 0) {
        zcq_err_t err = s_io_error ("cannot sync", temporary, error, size);
        close (fd);
        unlink (temporary);
        return err;
    }
    close (fd);
    if (rename (temporary, path) != 0) {
        zcq_err_t err = s_io_error ("cannot rename to", path, error, size);
        unlink (temporary);
        return err;
    }
    if (s_sync_dir (path) != 0)
        return s_io_error ("cannot sync the directory of", path, error, size);
    return ZCQ_OK;
}

zcq_err_t
zcq_viewtable_save (const zcq_viewtable_t *self, const char *path, const char *view,
                    const zcq_viewsnap_t *snap, char *error, size_t size)
{
    zcq_viewimage_t *image = zcq_viewimage_new (self, view, snap);
    if (!image) {
        snprintf (error, size, "out of memory for the snapshot of %s", view);
        return ZCQ_NOMEM;
    }
    zcq_err_t err = zcq_viewimage_write (image, path, error, size);
    zcq_viewimage_destroy (&image);
    return err;
}

//  --------------------------------------------------------------------------
//  Loading (DESIGN 3)

static zcq_err_t
s_corrupt (const char *path, const char *reason, char *error, size_t size)
{
    snprintf (error, size, "view snapshot %s is damaged: %s", path, reason);
    return ZCQ_CORRUPT;
}

//  Read the whole file; NOT_FOUND when there is none.
static zcq_err_t
s_read_file (const char *path, uint8_t **bytes_p, size_t *size_p, char *error, size_t size)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            snprintf (error, size, "no view snapshot at %s", path);
            return ZCQ_NOT_FOUND;
        }
        return s_io_error ("cannot open", path, error, size);
    }
    struct stat info;
    if (fstat (fd, &info) != 0) {
        zcq_err_t err = s_io_error ("cannot stat", path, error, size);
        close (fd);
        return err;
    }
    size_t length = (size_t) info.st_size;
    uint8_t *bytes = malloc (length ? length : 1);
    size_t done = 0;
    while (bytes && done < length) {
        ssize_t got = read (fd, bytes + done, length - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        done += (size_t) got;
    }
    zcq_err_t err = ZCQ_OK;
    if (!bytes) {
        snprintf (error, size, "out of memory reading %s", path);
        err = ZCQ_NOMEM;
    }
    else if (done != length) {
        err = s_io_error ("cannot read", path, error, size);
        free (bytes);
        bytes = NULL;
    }
    close (fd);
    *bytes_p = bytes;
    *size_p = length;
    return err;
}

void
zcq_viewsnap_clear (zcq_viewsnap_t *snap)
{
    if (!snap)
        return;
    free (snap->positions);
    snap->positions = NULL;
    snap->groups = 0;
}

//  The cluster id and the per-group positions of a format 2 header
//  (DESIGN 4): keys "0" .. "groups-1", each once (the codec refused a
//  repeated key, so a map of that many entries with every one is exact).
static zcq_err_t
s_header_positions (const zcq_value_t *root, zcq_viewsnap_t *snap)
{
    const zcq_value_t *positions = zcq_value_get (root, "positions");
    if (!zcq_value_copy_str (zcq_value_get (root, "cluster"), snap->cluster, sizeof snap->cluster)
        || zcq_value_type (positions) != ZCQ_TYPE_MAP)
        return ZCQ_CORRUPT;
    size_t groups = zcq_value_size (positions);
    if (groups == 0 || groups > 16384)
        return ZCQ_CORRUPT;
    uint64_t *values = calloc (groups, sizeof (uint64_t));
    if (!values)
        return ZCQ_NOMEM;
    for (size_t group = 0; group < groups; group++) {
        char name[24];
        snprintf (name, sizeof name, "%zu", group);
        if (!zcq_value_uint (zcq_value_get (positions, name), &values[group])) {
            free (values);
            return ZCQ_CORRUPT;
        }
    }
    free (snap->positions);
    snap->positions = values;
    snap->groups = groups;
    return ZCQ_OK;
}

//  Parse and check the header; the rows start at *rows_at.
static zcq_err_t
s_header (const uint8_t *bytes, size_t length, const char *path, const char *view,
          zcq_viewsnap_t *snap, uint64_t *rows, size_t *rows_at, char *error, size_t size,
          char *named, size_t named_size)
{
    if (length < S_MAGIC_SIZE + 4 + S_TRAILER
        || (memcmp (bytes, S_MAGIC, S_MAGIC_SIZE) != 0
            && memcmp (bytes, S_MAGIC2, S_MAGIC_SIZE) != 0))
        return s_corrupt (path, "not a zcqrs view snapshot", error, size);
    bool cluster_wide = memcmp (bytes, S_MAGIC2, S_MAGIC_SIZE) == 0;
    if (zcq_get_be64 (bytes + length - S_TRAILER) != s_checksum (bytes, length - S_TRAILER))
        return s_corrupt (path, "checksum mismatch", error, size);
    uint32_t header_len = zcq_get_be32 (bytes + S_MAGIC_SIZE);
    if (header_len > (cluster_wide ? S_HEADER2_MAX : S_HEADER_MAX)
        || header_len > length - S_MAGIC_SIZE - 4 - S_TRAILER)
        return s_corrupt (path, "header length out of bounds", error, size);
    zcq_doc_t *doc = zcq_doc_new ();
    if (!doc) {
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    zcq_err_t err = ZCQ_OK;
    const zcq_value_t *root = NULL;
    uint64_t version = 0;
    const char *name;
    size_t name_len;
    if (zcq_doc_decode (doc, bytes + S_MAGIC_SIZE + 4, header_len, &zcq_stored_limits) != ZCQ_OK
        || !(root = zcq_doc_root (doc))
        || !zcq_value_str (zcq_value_get (root, "view"), &name, &name_len)
        || !zcq_value_uint (zcq_value_get (root, "version"), &version) || version > UINT32_MAX
        || !zcq_value_uint (zcq_value_get (root, "position"), &snap->position)
        || !zcq_value_uint (zcq_value_get (root, "check"), &snap->check)
        || !zcq_value_uint (zcq_value_get (root, "rows"), rows))
        err = s_corrupt (path, "bad header", error, size);
    else if (view && !zcq_value_streq (zcq_value_get (root, "view"), view)) {
        snprintf (error, size, "view snapshot %s is not of view %s", path, view);
        err = ZCQ_INVALID;
    }
    else if (cluster_wide && s_header_positions (root, snap) != ZCQ_OK)
        err = s_corrupt (path, "bad cluster or positions in the header", error, size);
    snap->version = (uint32_t) version;
    if (err == ZCQ_OK && named)
        snprintf (named, named_size, "%.*s", (int) name_len, name);
    zcq_doc_destroy (&doc);
    *rows_at = S_MAGIC_SIZE + 4 + header_len;
    return err;
}

zcq_err_t
zcq_viewtable_load (zcq_viewtable_t **self_p, const char *const *indexes, const char *path,
                    const char *view, zcq_viewsnap_t *snap, char *error, size_t size)
{
    *self_p = NULL;
    snap->cluster[0] = 0;
    snap->groups = 0;
    snap->positions = NULL;
    uint8_t *bytes;
    size_t length;
    ZCQ_TRY (s_read_file (path, &bytes, &length, error, size));
    uint64_t rows = 0;
    size_t cursor = 0;
    zcq_err_t err
        = s_header (bytes, length, path, view, snap, &rows, &cursor, error, size, NULL, 0);
    zcq_viewtable_t *table = NULL;
    //  the header's row count sizes the hash table once (bounded by what
    //  the file can hold: 8 bytes a row at least)
    if (err == ZCQ_OK && rows > ((length - S_TRAILER) - cursor) / 8)
        err = s_corrupt (path, "more rows than the file holds", error, size);
    if (err == ZCQ_OK
        && (!(table = zcq_viewtable_new (indexes)) || !zcq_viewtable_reserve (table, rows))) {
        snprintf (error, size, "out of memory");
        err = ZCQ_NOMEM;
    }
    size_t end = length - S_TRAILER;
    //  a second cursor runs S_AHEAD rows ahead, fetching where each key's
    //  hash slot is: rows come in key order, slots in no order at all
    size_t ahead = cursor;
    uint64_t ahead_row = 0;
    for (uint64_t row = 0; err == ZCQ_OK && row < rows; row++) {
        for (; table && ahead_row < rows && ahead_row < row + S_AHEAD; ahead_row++) {
            if (end - ahead < 8 || zcq_get_be32 (bytes + ahead) > end - ahead - 8)
                break;
            size_t ahead_key_len = zcq_get_be32 (bytes + ahead);
            zcq_viewtable_prefetch (table, (const char *) bytes + ahead + 4, ahead_key_len);
            ahead += 4 + ahead_key_len;
            size_t ahead_row_len = zcq_get_be32 (bytes + ahead);
            if (ahead_row_len > end - ahead - 4)
                break;
            ahead += 4 + ahead_row_len;
        }
        if (end - cursor < 8 || zcq_get_be32 (bytes + cursor) > end - cursor - 8) {
            err = s_corrupt (path, "a key runs past the end", error, size);
            break;
        }
        size_t key_len = zcq_get_be32 (bytes + cursor);
        const char *key = (const char *) bytes + cursor + 4;
        cursor += 4 + key_len;
        size_t row_len = zcq_get_be32 (bytes + cursor);
        if (row_len > end - cursor - 4) {
            err = s_corrupt (path, "a row runs past the end", error, size);
            break;
        }
        const uint8_t *data = bytes + cursor + 4;
        cursor += 4 + row_len;
        bool map = row_len && ((data[0] & 0xf0) == 0x80 || data[0] == 0xde || data[0] == 0xdf);
        if (!map || zcq_msgpack_check (data, row_len, &zcq_stored_limits, NULL) != ZCQ_OK) {
            err = s_corrupt (path, "a row is not a map", error, size);
            break;
        }
        err = zcq_viewtable_load_row (table, key, key_len, data, row_len);
        if (err == ZCQ_INVALID)
            err = s_corrupt (path, "keys out of order", error, size);
        else if (err != ZCQ_OK)
            snprintf (error, size, "loading %s: %s", path, zcq_strerror (err));
    }
    //  the indexes, each in its order
    while (err == ZCQ_OK && cursor < end) {
        if (end - cursor < 8 || zcq_get_be32 (bytes + cursor) > end - cursor - 8) {
            err = s_corrupt (path, "an index name runs past the end", error, size);
            break;
        }
        size_t field_len = zcq_get_be32 (bytes + cursor);
        const char *field = (const char *) bytes + cursor + 4;
        cursor += 4 + field_len;
        size_t entries = zcq_get_be32 (bytes + cursor);
        cursor += 4;
        if (entries > (end - cursor) / 4) {
            err = s_corrupt (path, "an index runs past the end", error, size);
            break;
        }
        err = zcq_viewtable_load_index (table, field, field_len, bytes + cursor, entries);
        cursor += 4 * entries;
        if (err == ZCQ_INVALID)
            err = s_corrupt (path, "an index is out of order or names a missing row", error, size);
        else if (err != ZCQ_OK)
            snprintf (error, size, "loading %s: %s", path, zcq_strerror (err));
    }
    if (err == ZCQ_OK) {
        err = zcq_viewtable_load_done (table);
        if (err == ZCQ_INVALID)
            err = s_corrupt (path, "an index leaves out rows", error, size);
        else if (err != ZCQ_OK)
            snprintf (error, size, "loading %s: %s", path, zcq_strerror (err));
    }
    free (bytes);
    if (err != ZCQ_OK) {
        zcq_viewtable_destroy (&table);
        zcq_viewsnap_clear (snap);
    }
    *self_p = table;
    return err;
}

//  --------------------------------------------------------------------------
//  Reading a snapshot whole, of any view (backups copy them)

zcq_err_t
zcq_viewsnap_read (const char *path, uint8_t **bytes_p, size_t *length_p, char *view,
                   size_t view_size, zcq_viewsnap_t *snap, char *error, size_t size)
{
    *bytes_p = NULL;
    *length_p = 0;
    snap->cluster[0] = 0;
    snap->groups = 0;
    snap->positions = NULL;
    uint8_t *bytes;
    size_t length;
    ZCQ_TRY (s_read_file (path, &bytes, &length, error, size));
    uint64_t rows = 0;
    size_t cursor = 0;
    zcq_err_t err
        = s_header (bytes, length, path, NULL, snap, &rows, &cursor, error, size, view, view_size);
    if (err != ZCQ_OK) {
        free (bytes);
        zcq_viewsnap_clear (snap);
        return err;
    }
    *bytes_p = bytes;
    *length_p = length;
    return ZCQ_OK;
}
