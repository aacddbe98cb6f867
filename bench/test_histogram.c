/*  test_histogram.c: the log-linear histogram of the benchmark harness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "histogram.h"

//  --------------------------------------------------------------------------
//  The walk-through: record, read percentiles, destroy.

static void
test_walkthrough (void **state)
{
    bench_hist_t *hist = bench_hist_new ();
    assert_non_null (hist);
    assert_int_equal (bench_hist_count (hist), 0);
    assert_int_equal (bench_hist_percentile (hist, 99.0), 0);
    for (uint64_t value = 1; value <= 100; value++)
        bench_hist_record (hist, value);
    assert_int_equal (bench_hist_count (hist), 100);
    assert_int_equal (bench_hist_min (hist), 1);
    assert_int_equal (bench_hist_max (hist), 100);
    assert_int_equal (bench_hist_percentile (hist, 50.0), 50);
    assert_int_equal (bench_hist_percentile (hist, 99.0), 99);
    assert_int_equal (bench_hist_percentile (hist, 100.0), 100);
    assert_true (bench_hist_mean (hist) > 50.49 && bench_hist_mean (hist) < 50.51);
    bench_hist_destroy (&hist);
    assert_null (hist);
    bench_hist_destroy (&hist);
}

//  --------------------------------------------------------------------------
//  Every counter covers the values that map to it, counters tile the range
//  without gaps, and the width stays below 1/1024 of the value.

static void
test_layout (void **state)
{
    assert_int_equal (bench_hist_index (0), 0);
    assert_int_equal (bench_hist_index (2047), 2047);
    assert_int_equal (bench_hist_index (2048), 2048);
    assert_int_equal (bench_hist_index (UINT64_MAX), BENCH_HIST_COUNTERS - 1);
    assert_int_equal (bench_hist_highest (BENCH_HIST_COUNTERS - 1), UINT64_MAX);
    for (size_t index = 0; index + 1 < BENCH_HIST_COUNTERS; index++) {
        uint64_t low = bench_hist_lowest (index), high = bench_hist_highest (index);
        assert_true (low <= high);
        assert_int_equal (bench_hist_lowest (index + 1), high + 1);
        assert_int_equal (bench_hist_index (low), index);
        assert_int_equal (bench_hist_index (high), index);
        if (low >= 2048)
            assert_true ((high - low + 1) * 1024 <= low);
    }
}

//  --------------------------------------------------------------------------
//  Three significant digits on a uniform spread of a million values.

static void
test_precision (void **state)
{
    bench_hist_t *hist = bench_hist_new ();
    for (uint64_t value = 1; value <= 1000000; value++)
        bench_hist_record (hist, value * 1000); //  1 us .. 1 s in ns
    double checks[][2] = {
        { 50.0, 500000000.0 }, { 90.0, 900000000.0 }, { 99.0, 990000000.0 }, { 99.9, 999000000.0 }
    };
    for (size_t index = 0; index < 4; index++) {
        double got = (double) bench_hist_percentile (hist, checks[index][0]);
        double want = checks[index][1];
        assert_true (got >= want);
        assert_true (got <= want * (1.0 + 1.0 / 1024));
    }
    assert_int_equal (bench_hist_max (hist), 1000000000);
    assert_int_equal (bench_hist_percentile (hist, 100.0), 1000000000);
    bench_hist_destroy (&hist);
}

//  --------------------------------------------------------------------------
//  Merge adds counts, min, max; record_n counts many at once; reset empties.

static void
test_merge (void **state)
{
    bench_hist_t *first = bench_hist_new ();
    bench_hist_t *second = bench_hist_new ();
    bench_hist_record_n (first, 10, 90);
    bench_hist_record_n (second, 5000000, 10);
    bench_hist_record (second, 3);
    bench_hist_merge (first, second);
    assert_int_equal (bench_hist_count (first), 101);
    assert_int_equal (bench_hist_min (first), 3);
    assert_int_equal (bench_hist_max (first), 5000000);
    assert_int_equal (bench_hist_percentile (first, 50.0), 10);
    assert_int_equal (bench_hist_percentile (first, 95.0), 5000000);
    bench_hist_reset (first);
    assert_int_equal (bench_hist_count (first), 0);
    assert_int_equal (bench_hist_max (first), 0);
    bench_hist_record (first, UINT64_MAX);
    assert_int_equal (bench_hist_percentile (first, 99.9), UINT64_MAX);
    bench_hist_destroy (&first);
    bench_hist_destroy (&second);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_walkthrough),
        cmocka_unit_test (test_layout),
        cmocka_unit_test (test_precision),
        cmocka_unit_test (test_merge),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
