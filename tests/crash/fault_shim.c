/*  fault_shim.c: storage faults for the fault tests, without a hook in the
    engine. Interposes write(), pwrite(), writev(), pwritev(), fsync() and
    fdatasync(): loaded into zcqrsd with LD_PRELOAD (or linked into a test
    executable that exports its symbols), it makes them fail on RocksDB's
    files while a control file exists, and passes everything else through.

    Environment: ZCQ_FAULT_FILE = path of the control file. While that file
    exists, its first line says what fails:

        <ops> <errno> <files>
        ops    write | sync | both      (write*: the data; sync: fsync/fdatasync)
        errno  a number, e.g. 5 (EIO) or 28 (ENOSPC)
        files  wal  = RocksDB's write-ahead logs (NNNNNN.log)
               data = every regular file except RocksDB's info log (LOG*)

    An empty or unreadable control file means "both 5 wal". Remove the file
    and the fault clears. Each call checks the file, so a fault can come
    and go while the process runs (that costs a syscall per write; it is a
    test tool).

    Power-loss simulation: with ZCQ_SYNC_JOURNAL = path, every successful
    fsync() or fdatasync() of a regular file appends "<size> <path>" to that
    journal, so that after a SIGKILL the test can cut each file back to the
    size it last synced (what a power cut does to data only in the page
    cache; RocksDB's own crash tests do the same with a fault-injection
    file system).
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef ssize_t (write_fn) (int, const void *, size_t);
typedef ssize_t (pwrite_fn) (int, const void *, size_t, off_t);
typedef ssize_t (writev_fn) (int, const struct iovec *, int);
typedef ssize_t (pwritev_fn) (int, const struct iovec *, int, off_t);
typedef int (sync_fn) (int);

//  The project builds with hidden visibility; these must be seen to interpose.
#define S_EXPORT __attribute__ ((visibility ("default")))

#define S_REAL(name, type) \
    static type *real;     \
    if (!real)             \
    real = (type *) dlsym (RTLD_NEXT, name)

//  The fault configured now for this fd and kind of call; 0 = none.
static int
s_fault (int fd, int is_sync)
{
    const char *control = getenv ("ZCQ_FAULT_FILE");
    if (!control || !*control)
        return 0;
    int saved = errno;
    int cfd = open (control, O_RDONLY | O_CLOEXEC);
    if (cfd < 0) {
        errno = saved;
        return 0;
    }
    char text[128] = "";
    ssize_t got = read (cfd, text, sizeof text - 1);
    close (cfd);
    text[got > 0 ? got : 0] = 0;
    char ops[16] = "both", files[16] = "wal";
    int code = 5;
    if (sscanf (text, "%15s %d %15s", ops, &code, files) < 1 || code <= 0)
        code = 5;
    errno = saved;
    if (strcmp (ops, "both") != 0 && strcmp (ops, is_sync ? "sync" : "write") != 0)
        return 0;
    char link[64], path[4096];
    snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink (link, path, sizeof path - 1);
    errno = saved;
    if (len <= 0)
        return 0;
    path[len] = 0;
    const char *base = strrchr (path, '/');
    base = base ? base + 1 : path;
    struct stat info;
    if (fstat (fd, &info) != 0 || !S_ISREG (info.st_mode)) {
        errno = saved;
        return 0;
    }
    errno = saved;
    if (strcmp (files, "data") == 0)
        return strncmp (base, "LOG", 3) == 0 ? 0 : code;
    //  wal: digits then ".log"
    size_t digits = strspn (base, "0123456789");
    return digits > 0 && strcmp (base + digits, ".log") == 0 ? code : 0;
}

S_EXPORT ssize_t
write (int fd, const void *buf, size_t count)
{
    S_REAL ("write", write_fn);
    int code = s_fault (fd, 0);
    if (code) {
        errno = code;
        return -1;
    }
    return real (fd, buf, count);
}

S_EXPORT ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
    S_REAL ("pwrite", pwrite_fn);
    int code = s_fault (fd, 0);
    if (code) {
        errno = code;
        return -1;
    }
    return real (fd, buf, count, offset);
}

S_EXPORT ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t offset)
{
    S_REAL ("pwrite64", pwrite_fn);
    int code = s_fault (fd, 0);
    if (code) {
        errno = code;
        return -1;
    }
    return real (fd, buf, count, offset);
}

S_EXPORT ssize_t
writev (int fd, const struct iovec *iov, int count)
{
    S_REAL ("writev", writev_fn);
    int code = s_fault (fd, 0);
    if (code) {
        errno = code;
        return -1;
    }
    return real (fd, iov, count);
}

S_EXPORT ssize_t
pwritev (int fd, const struct iovec *iov, int count, off_t offset)
{
    S_REAL ("pwritev", pwritev_fn);
    int code = s_fault (fd, 0);
    if (code) {
        errno = code;
        return -1;
    }
    return real (fd, iov, count, offset);
}

//  The size of fd before a sync: everything up to it is covered by the
//  sync (taken before, not after, so that a concurrent append cannot be
//  counted as synced). -1 when not journaling or not a regular file.
static long long
s_size_before_sync (int fd)
{
    const char *journal = getenv ("ZCQ_SYNC_JOURNAL");
    if (!journal || !*journal)
        return -1;
    int saved = errno;
    struct stat info;
    long long size = fstat (fd, &info) == 0 && S_ISREG (info.st_mode) ? (long long) info.st_size
                                                                      : -1;
    errno = saved;
    return size;
}

//  Record a successful sync in the journal (power-loss simulation).
static void
s_journal (int fd, long long size)
{
    const char *journal = getenv ("ZCQ_SYNC_JOURNAL");
    if (size < 0 || !journal || !*journal)
        return;
    int saved = errno;
    char link[64], path[4096], line[4200];
    snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink (link, path, sizeof path - 1);
    if (len > 0) {
        path[len] = 0;
        int count = snprintf (line, sizeof line, "%lld %s\n", size, path);
        int jfd = open (journal, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (jfd >= 0) {
            S_REAL ("write", write_fn);
            //  one append of a short line: atomic among concurrent syncs
            if (real (jfd, line, (size_t) count) != count)
                abort (); //  a journal that misses a sync would fake a loss
            close (jfd);
        }
    }
    errno = saved;
}

S_EXPORT int
fsync (int fd)
{
    S_REAL ("fsync", sync_fn);
    int code = s_fault (fd, 1);
    if (code) {
        errno = code;
        return -1;
    }
    long long size = s_size_before_sync (fd);
    int rc = real (fd);
    if (rc == 0)
        s_journal (fd, size);
    return rc;
}

S_EXPORT int
fdatasync (int fd)
{
    S_REAL ("fdatasync", sync_fn);
    int code = s_fault (fd, 1);
    if (code) {
        errno = code;
        return -1;
    }
    long long size = s_size_before_sync (fd);
    int rc = real (fd);
    if (rc == 0)
        s_journal (fd, size);
    return rc;
}
