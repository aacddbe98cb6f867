/*  histogram.h: a log-linear histogram of latencies (HdrHistogram-style).

    Values are unsigned 64-bit integers (the harness records nanoseconds).
    Values below 2048 are counted exactly; above, each power of two is cut
    into 1024 equal sub-buckets, so a value is known to within 1/1024 of
    itself (three significant digits) over the whole uint64 range, in a
    fixed array of 56,320 counters (440 KiB). Recording is O(1) and never
    allocates.

        bench_hist_t *hist = bench_hist_new ();
        bench_hist_record (hist, latency_ns);
        printf ("p99 %llu ns\n", (unsigned long long) bench_hist_percentile (hist, 99.0));
        bench_hist_destroy (&hist);

    Not thread-safe: one recording thread per histogram; merge them after.
*/
#ifndef BENCH_HISTOGRAM_H_INCLUDED
#define BENCH_HISTOGRAM_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct bench_hist_t bench_hist_t;

//  Sub-buckets per power of two (the linear part): 2^10.
#define BENCH_HIST_SUB_BITS 10
//  Number of counters: 2048 exact values, then 53 powers of two of 1024.
#define BENCH_HIST_COUNTERS (2048 + (64 - 11) * 1024)

//  An empty histogram; NULL when out of memory.
bench_hist_t *bench_hist_new (void);
void bench_hist_destroy (bench_hist_t **self_p);
void bench_hist_reset (bench_hist_t *self);
void bench_hist_record (bench_hist_t *self, uint64_t value);
void bench_hist_record_n (bench_hist_t *self, uint64_t value, uint64_t count);
//  Add every count of other to self.
void bench_hist_merge (bench_hist_t *self, const bench_hist_t *other);

uint64_t bench_hist_count (const bench_hist_t *self);
//  Exact smallest and largest value recorded (0 when empty).
uint64_t bench_hist_min (const bench_hist_t *self);
uint64_t bench_hist_max (const bench_hist_t *self);
double bench_hist_mean (const bench_hist_t *self);
//  The value at a percentile (0-100]: the highest value equivalent to the
//  counter that holds the percentile's rank, capped at the exact maximum;
//  100 gives the exact maximum, 0 when empty.
uint64_t bench_hist_percentile (const bench_hist_t *self, double percentile);

//  The counter a value falls in, and the range of values that counter
//  stands for (exposed for the unit test).
size_t bench_hist_index (uint64_t value);
uint64_t bench_hist_lowest (size_t index);
uint64_t bench_hist_highest (size_t index);

#endif
