/*  store_wal.c: the store's check of RocksDB's write-ahead log before an
    open (store.c DESIGN 8). RocksDB's point-in-time recovery stops at the
    first damaged WAL record and drops everything after it, silently: this
    file finds a damaged record followed, in the same file, by intact
    records, and names the file, the offset and the log positions that
    would be lost.
*/
#include "zcq_internal.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_WAL_BLOCK 32768
#define S_CF_LOG    1 //  the `log` family's id: the second one the store creates

//  The WAL check. RocksDB's WAL is a sequence of 32 KiB blocks
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

//  Check every WAL file in the data dir (store.c DESIGN 8).
zcq_err_t
zcq_store_check_wal (const char *path, char *error, size_t size)
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
