/*  alloc.c: how many heap allocations an operation costs (the bench's
    mallocs/op).

    The bench runs the node in its own process, so it interposes the C
    allocator: malloc, calloc, realloc and the aligned allocators are
    defined here and forward to glibc's (__libc_*); RocksDB's operator new
    and every library's allocations pass through them. While counting is on
    (bench_alloc_start), each call from a thread that did not opt out adds
    one to a relaxed atomic counter: the load generator's client threads
    opt out (bench_alloc_uncounted), so the count is the node's, ZeroMQ's
    I/O threads included (they serve both sides of the loopback). Outside a
    measurement the cost is one predictable branch per call.
*/
#include "bench.h"
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

extern void *__libc_malloc (size_t size);
extern void *__libc_calloc (size_t count, size_t size);
extern void *__libc_realloc (void *pointer, size_t size);
extern void *__libc_memalign (size_t alignment, size_t size);
extern void __libc_free (void *pointer);

//  the project builds with hidden visibility: these must be seen
#define S_EXPORT __attribute__ ((visibility ("default")))

static atomic_bool s_counting;
static atomic_uint_fast64_t s_count;
static __thread bool s_uncounted;

//  BENCH_ALLOC_SITES=1: keep the call sites of every 64th counted
//  allocation and print the most frequent at bench_alloc_stop (to find
//  what allocates per operation).
#define S_SITES     4096
#define S_SITE_SKIP 2 //  s_count_one and the allocator itself
static void *s_sites[S_SITES][4];
static atomic_uint_fast64_t s_site_hits[S_SITES];
static atomic_uint s_site_count;
static bool s_tracing;
static __thread bool s_in_trace;

static void
s_trace (void)
{
    void *frames[S_SITE_SKIP + 4];
    s_in_trace = true;
    int depth = backtrace (frames, S_SITE_SKIP + 4);
    s_in_trace = false;
    if (depth <= S_SITE_SKIP)
        return;
    void **site = frames + S_SITE_SKIP;
    unsigned count = atomic_load (&s_site_count);
    for (unsigned index = 0; index < count; index++)
        if (memcmp (s_sites[index], site, sizeof s_sites[index]) == 0) {
            atomic_fetch_add (&s_site_hits[index], 1);
            return;
        }
    unsigned index = atomic_fetch_add (&s_site_count, 1);
    if (index < S_SITES) {
        memset (s_sites[index], 0, sizeof s_sites[index]);
        memcpy (s_sites[index], site, sizeof (void *) * (size_t) (depth - S_SITE_SKIP));
        atomic_store (&s_site_hits[index], 1);
    }
}

static inline void
s_count_one (void)
{
    if (atomic_load_explicit (&s_counting, memory_order_relaxed) && !s_uncounted) {
        uint64_t count = atomic_fetch_add_explicit (&s_count, 1, memory_order_relaxed);
        if (s_tracing && !s_in_trace && count % 64 == 0)
            s_trace ();
    }
}

S_EXPORT void *
malloc (size_t size)
{
    s_count_one ();
    return __libc_malloc (size);
}

S_EXPORT void *
calloc (size_t count, size_t size)
{
    s_count_one ();
    return __libc_calloc (count, size);
}

S_EXPORT void *
realloc (void *pointer, size_t size)
{
    s_count_one ();
    return __libc_realloc (pointer, size);
}

S_EXPORT void
free (void *pointer)
{
    __libc_free (pointer);
}

S_EXPORT void *
memalign (size_t alignment, size_t size)
{
    s_count_one ();
    return __libc_memalign (alignment, size);
}

S_EXPORT void *
aligned_alloc (size_t alignment, size_t size)
{
    s_count_one ();
    return __libc_memalign (alignment, size);
}

S_EXPORT int
posix_memalign (void **pointer, size_t alignment, size_t size)
{
    if (alignment < sizeof (void *) || (alignment & (alignment - 1)))
        return EINVAL;
    s_count_one ();
    void *memory = __libc_memalign (alignment, size);
    if (!memory)
        return ENOMEM;
    *pointer = memory;
    return 0;
}

void
bench_alloc_start (void)
{
    const char *sites = getenv ("BENCH_ALLOC_SITES");
    s_tracing = sites && *sites == '1';
    atomic_store (&s_site_count, 0);
    atomic_store (&s_count, 0);
    atomic_store (&s_counting, true);
}

static int
s_by_hits (const void *a, const void *b)
{
    uint64_t left = atomic_load (&s_site_hits[*(const unsigned *) a]);
    uint64_t right = atomic_load (&s_site_hits[*(const unsigned *) b]);
    return left < right ? 1 : left > right ? -1 : 0;
}

uint64_t
bench_alloc_stop (void)
{
    atomic_store (&s_counting, false);
    uint64_t count = atomic_load (&s_count);
    unsigned sites = atomic_load (&s_site_count);
    if (s_tracing && sites) {
        sites = sites > S_SITES ? S_SITES : sites;
        static unsigned order[S_SITES];
        for (unsigned index = 0; index < sites; index++)
            order[index] = index;
        qsort (order, sites, sizeof order[0], s_by_hits);
        fprintf (stderr, "alloc sites (1 in 64 of %llu allocations):\n",
                 (unsigned long long) count);
        for (unsigned rank = 0; rank < sites && rank < 25; rank++) {
            unsigned index = order[rank];
            fprintf (stderr, "%6llu ", (unsigned long long) atomic_load (&s_site_hits[index]));
            for (int frame = 0; frame < 4 && s_sites[index][frame]; frame++) {
                Dl_info info;
                if (dladdr (s_sites[index][frame], &info) && info.dli_sname)
                    fprintf (stderr, " %s", info.dli_sname);
                else if (info.dli_fname) //  for addr2line -f -e LIB OFFSET
                    fprintf (
                        stderr, " %s+%#lx", strrchr (info.dli_fname, '/') + 1,
                        (unsigned long) ((char *) s_sites[index][frame] - (char *) info.dli_fbase));
                else
                    fprintf (stderr, " %p", s_sites[index][frame]);
            }
            fprintf (stderr, "\n");
        }
    }
    return count;
}

void
bench_alloc_uncounted (void)
{
    s_uncounted = true;
}
