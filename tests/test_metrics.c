/*  test_metrics.c: the command counters behind /metrics (engine/metrics.c):
    one row per aggregate and command type of the domain plus `other`, the
    outcome of every reply code, the latency buckets' edges, and the text
    the table writes. */
#include "testutil.h"
#include "zcq_metrics.h"
#include <stdlib.h>
#include <string.h>

//  The text the table writes, heap.
static char *
s_exposition (const zcq_metrics_t *metrics)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    assert_non_null (out);
    zcq_metrics_write (metrics, out);
    assert_int_equal (fclose (out), 0);
    return text;
}

//  The value of the sample line that starts with prefix (name and labels).
static long long
s_sample (const char *text, const char *prefix)
{
    size_t len = strlen (prefix);
    for (const char *line = text; line && *line; line = strchr (line, '\n') + 1) {
        if (strncmp (line, prefix, len) == 0 && line[len] == ' ')
            return strtoll (line + len + 1, NULL, 10);
        if (!strchr (line, '\n'))
            break;
    }
    fail_msg ("no sample %s in:\n%s", prefix, text);
    return -1;
}

static const zcq_aggregate_def_t *
s_aggregate (const char *name)
{
    const zcq_domain_t *domain = zcq_bank_domain ();
    const zcq_aggregate_def_t *aggregate = zcq_domain_aggregate (domain, name, strlen (name));
    assert_non_null (aggregate);
    return aggregate;
}

static void
test_metrics_rows_by_aggregate_type_and_outcome (void **state)
{
    zcq_metrics_t *metrics = zcq_metrics_new (zcq_bank_domain ());
    assert_non_null (metrics);
    const zcq_aggregate_def_t *account = s_aggregate ("account");
    const zcq_command_def_t *deposit = zcq_domain_command (account, "deposit", 7);
    const zcq_command_def_t *open = zcq_domain_command (account, "open", 4);
    assert_non_null (deposit);
    assert_non_null (open);
    for (int index = 0; index < 5; index++)
        zcq_metrics_command (metrics, account, deposit, ZCQ_OUTCOME_OK, 50000);
    zcq_metrics_command (metrics, account, deposit, ZCQ_OUTCOME_DUPLICATE, 50000);
    zcq_metrics_command (metrics, account, open, ZCQ_OUTCOME_REJECTED, 50000);
    //  a type the domain lacks, and no aggregate at all: the `other` row
    zcq_metrics_command (metrics, account, NULL, ZCQ_OUTCOME_UNKNOWN, 50000);
    zcq_metrics_command (metrics, NULL, NULL, ZCQ_OUTCOME_INVALID, 50000);
    char *text = s_exposition (metrics);
    assert_int_equal (s_sample (text, "zcqrs_commands_total{aggregate=\"account\",type=\"deposit\","
                                      "outcome=\"ok\"}"),
                      5);
    assert_int_equal (s_sample (text, "zcqrs_commands_total{aggregate=\"account\",type=\"deposit\","
                                      "outcome=\"duplicate\"}"),
                      1);
    assert_int_equal (s_sample (text, "zcqrs_commands_total{aggregate=\"account\",type=\"open\","
                                      "outcome=\"rejected\"}"),
                      1);
    assert_int_equal (s_sample (text, "zcqrs_commands_total{aggregate=\"account\",type=\"open\","
                                      "outcome=\"ok\"}"),
                      0);
    assert_int_equal (
        s_sample (text, "zcqrs_commands_total{aggregate=\"\",type=\"\",outcome=\"unknown\"}"), 1);
    assert_int_equal (
        s_sample (text, "zcqrs_commands_total{aggregate=\"\",type=\"\",outcome=\"invalid\"}"), 1);
    //  every command of every aggregate of the domain has its rows from the start
    const zcq_domain_t *domain = zcq_bank_domain ();
    for (size_t index = 0; domain->aggregates[index]; index++)
        for (const zcq_command_def_t *command = domain->aggregates[index]->commands; command->type;
             command++) {
            char prefix[256];
            snprintf (prefix, sizeof prefix,
                      "zcqrs_commands_total{aggregate=\"%s\",type=\"%s\",outcome=\"internal\"}",
                      domain->aggregates[index]->name, command->type);
            assert_int_equal (s_sample (text, prefix), 0);
        }
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_count"), 9);
    free (text);
    zcq_metrics_destroy (&metrics);
    zcq_metrics_destroy (&metrics);
    assert_null (metrics);
}

static void
test_metrics_outcomes (void **state)
{
    assert_int_equal (zcq_outcome_of (ZCQ_OK, false), ZCQ_OUTCOME_OK);
    assert_int_equal (zcq_outcome_of (ZCQ_OK, true), ZCQ_OUTCOME_DUPLICATE);
    assert_int_equal (zcq_outcome_of (ZCQ_REJECTED, false), ZCQ_OUTCOME_REJECTED);
    assert_int_equal (zcq_outcome_of (ZCQ_CONFLICT, false), ZCQ_OUTCOME_CONFLICT);
    assert_int_equal (zcq_outcome_of (ZCQ_INVALID, false), ZCQ_OUTCOME_INVALID);
    assert_int_equal (zcq_outcome_of (ZCQ_UNKNOWN, false), ZCQ_OUTCOME_UNKNOWN);
    assert_int_equal (zcq_outcome_of (ZCQ_UNAVAILABLE, false), ZCQ_OUTCOME_UNAVAILABLE);
    assert_int_equal (zcq_outcome_of (ZCQ_TIMEOUT, false), ZCQ_OUTCOME_TIMEOUT);
    assert_int_equal (zcq_outcome_of (ZCQ_INTERNAL, false), ZCQ_OUTCOME_INTERNAL);
    assert_int_equal (zcq_outcome_of (ZCQ_IO, false), ZCQ_OUTCOME_INTERNAL);
    assert_string_equal (zcq_outcome_name (ZCQ_OUTCOME_DUPLICATE), "duplicate");
    assert_string_equal (zcq_outcome_name (ZCQ_OUTCOME_COUNT), "internal");
}

static void
test_metrics_latency_buckets (void **state)
{
    zcq_metrics_t *metrics = zcq_metrics_new (zcq_bank_domain ());
    assert_non_null (metrics);
    //  on a bound counts in that bucket (le: less or equal), just over in the next
    int64_t latencies[] = { -5, 0, 100000, 100001, 1000000, 10000000000, 10000000001, 1LL << 50 };
    for (size_t index = 0; index < sizeof latencies / sizeof latencies[0]; index++)
        zcq_metrics_command (metrics, NULL, NULL, ZCQ_OUTCOME_OK, latencies[index]);
    char *text = s_exposition (metrics);
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_bucket{le=\"0.0001\"}"), 3);
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_bucket{le=\"0.00025\"}"), 4);
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_bucket{le=\"0.001\"}"), 5);
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_bucket{le=\"10\"}"), 6);
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_bucket{le=\"+Inf\"}"), 8);
    assert_int_equal (s_sample (text, "zcqrs_command_ack_seconds_count"), 8);
    //  the sum in seconds, to the ns: a negative latency counts as 0
    assert_non_null (strstr (text, "zcqrs_command_ack_seconds_sum 1125919.908042626\n"));
    assert_non_null (strstr (text, "# TYPE zcqrs_command_ack_seconds histogram\n"));
    assert_non_null (strstr (text, "# TYPE zcqrs_commands_total counter\n"));
    free (text);
    zcq_metrics_destroy (&metrics);
}

static void
test_metrics_label_escapes (void **state)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    assert_non_null (out);
    zcq_metrics_label (out, "a\"b\\c\nd");
    assert_int_equal (fclose (out), 0);
    assert_string_equal (text, "a\\\"b\\\\c\\nd");
    free (text);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_metrics_rows_by_aggregate_type_and_outcome),
        cmocka_unit_test (test_metrics_outcomes),
        cmocka_unit_test (test_metrics_latency_buckets),
        cmocka_unit_test (test_metrics_label_escapes),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
