/*  histogram.c: a log-linear histogram of latencies (HdrHistogram-style).

    DESIGN
    1.  Counter layout. Values 0..2047 have one counter each (index = value).
        A value v >= 2048 with highest set bit e (11..63) falls in the
        power-of-two range [2^e, 2^(e+1)), cut into 1024 sub-buckets of width
        2^(e-10): index = 2048 + (e - 11) * 1024 + ((v >> (e - 10)) - 1024).
    2.  Precision. A sub-bucket of width 2^(e-10) holds values >= 2^e, so
        the error of any reported value is below 2^-10 of it: three
        significant digits, the HdrHistogram guarantee.
    3.  Percentiles report the highest value equivalent to the counter that
        holds the rank (as HdrHistogram does), never above the exact max,
        so a reported percentile is never below the true one.
*/
#include "histogram.h"
#include <stdlib.h>
#include <string.h>

struct bench_hist_t {
    uint64_t counts[BENCH_HIST_COUNTERS];
    uint64_t total;
    uint64_t min;
    uint64_t max;
    long double sum;
};

//  --------------------------------------------------------------------------
//  Create an empty histogram, or NULL when out of memory.

bench_hist_t *
bench_hist_new (void)
{
    bench_hist_t *self = calloc (1, sizeof (bench_hist_t));
    if (self)
        self->min = UINT64_MAX;
    return self;
}

void
bench_hist_destroy (bench_hist_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

void
bench_hist_reset (bench_hist_t *self)
{
    memset (self, 0, sizeof (bench_hist_t));
    self->min = UINT64_MAX;
}

//  --------------------------------------------------------------------------
//  The counter of a value (DESIGN 1) and the values a counter stands for.

size_t
bench_hist_index (uint64_t value)
{
    if (value < 2048)
        return (size_t) value;
    unsigned highest_bit = 63u - (unsigned) __builtin_clzll (value);
    unsigned shift = highest_bit - BENCH_HIST_SUB_BITS;
    return 2048 + (size_t) (highest_bit - 11) * 1024 + (size_t) ((value >> shift) - 1024);
}

uint64_t
bench_hist_lowest (size_t index)
{
    if (index < 2048)
        return index;
    size_t range = (index - 2048) / 1024; //  highest bit = range + 11
    uint64_t sub = 1024 + (index - 2048) % 1024;
    return sub << (range + 1);
}

uint64_t
bench_hist_highest (size_t index)
{
    if (index < 2048)
        return index;
    size_t range = (index - 2048) / 1024;
    uint64_t width = (uint64_t) 1 << (range + 1);
    return bench_hist_lowest (index) + (width - 1);
}

//  --------------------------------------------------------------------------
//  Record values

void
bench_hist_record_n (bench_hist_t *self, uint64_t value, uint64_t count)
{
    if (count == 0)
        return;
    self->counts[bench_hist_index (value)] += count;
    self->total += count;
    self->sum += (long double) value * count;
    if (value < self->min)
        self->min = value;
    if (value > self->max)
        self->max = value;
}

void
bench_hist_record (bench_hist_t *self, uint64_t value)
{
    bench_hist_record_n (self, value, 1);
}

void
bench_hist_merge (bench_hist_t *self, const bench_hist_t *other)
{
    if (other->total == 0)
        return;
    for (size_t index = 0; index < BENCH_HIST_COUNTERS; index++)
        self->counts[index] += other->counts[index];
    self->total += other->total;
    self->sum += other->sum;
    if (other->min < self->min)
        self->min = other->min;
    if (other->max > self->max)
        self->max = other->max;
}

//  --------------------------------------------------------------------------
//  Read figures

uint64_t
bench_hist_count (const bench_hist_t *self)
{
    return self->total;
}

uint64_t
bench_hist_min (const bench_hist_t *self)
{
    return self->total ? self->min : 0;
}

uint64_t
bench_hist_max (const bench_hist_t *self)
{
    return self->max;
}

double
bench_hist_mean (const bench_hist_t *self)
{
    return self->total ? (double) (self->sum / self->total) : 0.0;
}

uint64_t
bench_hist_percentile (const bench_hist_t *self, double percentile)
{
    if (self->total == 0)
        return 0;
    if (percentile >= 100.0)
        return self->max;
    if (percentile < 0.0)
        percentile = 0.0;
    //  the rank of the percentile, at least 1 (the smallest value)
    long double exact = (long double) percentile / 100.0L * (long double) self->total;
    uint64_t rank = (uint64_t) exact;
    if ((long double) rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t index = 0; index < BENCH_HIST_COUNTERS; index++) {
        seen += self->counts[index];
        if (seen >= rank) {
            uint64_t value = bench_hist_highest (index);
            return value < self->max ? value : self->max;
        }
    }
    return self->max;
}
