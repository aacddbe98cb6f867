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
#include <errno.h>
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

static inline void
s_count_one (void)
{
    if (atomic_load_explicit (&s_counting, memory_order_relaxed) && !s_uncounted)
        atomic_fetch_add_explicit (&s_count, 1, memory_order_relaxed);
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
    atomic_store (&s_count, 0);
    atomic_store (&s_counting, true);
}

uint64_t
bench_alloc_stop (void)
{
    atomic_store (&s_counting, false);
    return atomic_load (&s_count);
}

void
bench_alloc_uncounted (void)
{
    s_uncounted = true;
}
