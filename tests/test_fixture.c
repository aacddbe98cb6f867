/*  test_fixture.c: zcq_fixture_t, decide and evolve without a node. The
    bank domain's rules through given/when/then, and a small test domain
    for what a fixture must get right: a state holding memory, an event of
    an older version, an evolve that fails. */
#include "testutil.h"
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  The bank

static void
test_bank_withdraw_rules (void **state)
{
    (void) state;
    zcq_fixture_t *fx = zcq_fixture_new (zcq_bank_domain (), "account", "42");
    assert_non_null (fx);
    zcq_set_str (zcq_fixture_given (fx, "opened"), "owner", "ann");
    zcq_set_int (zcq_fixture_given (fx, "deposited"), "amount", 500);

    zcq_set_int (zcq_fixture_when (fx, "withdraw"), "amount", 800);
    assert_int_equal (zcq_fixture_run (fx), ZCQ_REJECTED);
    assert_non_null (strstr (zcq_fixture_message (fx), "insufficient funds"));
    assert_int_equal (zcq_fixture_emitted_count (fx), 0);
    assert_int_equal (zcq_fixture_version (fx), 2);

    zcq_set_int (zcq_fixture_when (fx, "withdraw"), "amount", 200);
    assert_int_equal (zcq_fixture_run (fx), ZCQ_OK);
    assert_string_equal (zcq_fixture_message (fx), "");
    assert_int_equal (zcq_fixture_emitted_count (fx), 1);
    const zcq_event_t *event = zcq_fixture_emitted (fx, 0);
    assert_string_equal (zcq_event_type (event), "withdrawn");
    assert_string_equal (zcq_event_stream (event), "account/42");
    assert_int_equal (zcq_event_version (event), 3);
    assert_int_equal (zcq_event_int (event, "amount", 0), 200);
    assert_int_equal (zcq_value_get_int (zcq_fixture_reply (fx), "balance", -1), 300);
    assert_int_equal (zcq_fixture_version (fx), 3);

    //  the decided events are the stream's now: the next command sees them
    zcq_set_int (zcq_fixture_when (fx, "withdraw"), "amount", 301);
    assert_int_equal (zcq_fixture_run (fx), ZCQ_REJECTED);
    zcq_fixture_when (fx, "close");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_REJECTED); //  balance 300
    zcq_set_int (zcq_fixture_when (fx, "withdraw"), "amount", 300);
    assert_int_equal (zcq_fixture_run (fx), ZCQ_OK);
    zcq_fixture_when (fx, "close");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_OK);
    assert_string_equal (zcq_event_type (zcq_fixture_emitted (fx, 0)), "closed");
    zcq_fixture_destroy (&fx);
    assert_null (fx);
}

static void
test_bank_invalid_and_unknown (void **state)
{
    (void) state;
    zcq_fixture_t *fx = zcq_fixture_new (zcq_bank_domain (), "account", "7");
    zcq_set_str (zcq_fixture_when (fx, "deposit"), "amount", "ten");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_INVALID);
    assert_non_null (strstr (zcq_fixture_message (fx), "amount"));
    zcq_fixture_when (fx, "explode");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_UNKNOWN);
    assert_int_equal (zcq_fixture_run (fx), ZCQ_INVALID); //  no command given
    assert_int_equal (zcq_fixture_version (fx), 0);
    zcq_fixture_destroy (&fx);

    assert_null (zcq_fixture_new (zcq_bank_domain (), "nosuch", "7"));
    assert_null (zcq_fixture_new (zcq_bank_domain (), "account", "a/b"));
}

//  --------------------------------------------------------------------------
//  A test domain: `tally` keeps its names in memory it owns; `named` was
//  at version 1 {who}, is at version 2 {name}; `broken` has an evolve
//  that reads a field its events do not have.

typedef struct {
    char *names; //  "a,b,c": owned
    int64_t count;
} tally_t;

static void
s_tally_release (void *state)
{
    free (((tally_t *) state)->names);
    ((tally_t *) state)->names = NULL;
}

static zcq_err_t
s_name (zcq_decide_t *decide, const void *state)
{
    const char *name;
    ZCQ_TRY (zcq_arg_str (decide, "name", 1, 32, &name));
    zcq_set_str (zcq_emit (decide, "named"), "name", name);
    zcq_set_int (zcq_decide_reply (decide), "count", ((const tally_t *) state)->count + 1);
    return ZCQ_OK;
}

static zcq_err_t
s_break (zcq_decide_t *decide, const void *state)
{
    (void) state;
    zcq_emit (decide, "broken");
    return ZCQ_OK;
}

static zcq_err_t
s_typo (zcq_decide_t *decide, const void *state)
{
    (void) state;
    zcq_emit (decide, "nmaed");
    return ZCQ_OK;
}

static void
s_named (void *state, const zcq_event_t *event)
{
    tally_t *tally = state;
    const char *name = zcq_event_str_req (event, "name");
    size_t had = tally->names ? strlen (tally->names) : 0;
    char *names = realloc (tally->names, had + strlen (name) + 2);
    if (!names)
        return;
    snprintf (names + had, strlen (name) + 2, "%s%s", had ? "," : "", name);
    tally->names = names;
    tally->count++;
}

static void
s_broken (void *state, const zcq_event_t *event)
{
    ((tally_t *) state)->count += zcq_event_int_req (event, "missing");
}

//  version 1 {who} -> version 2 {name}
static zcq_err_t
s_named_upcast (const zcq_event_t *event, uint32_t version, zcq_fields_t *data)
{
    assert_int_equal (version, 1);
    zcq_set_str (data, "name", zcq_event_str_req (event, "who"));
    return ZCQ_OK;
}

static const zcq_command_def_t s_tally_commands[] = {
    { .type = "name", .decide = s_name },
    { .type = "break", .decide = s_break },
    { .type = "typo", .decide = s_typo },
    { NULL },
};

static const zcq_event_def_t s_tally_events[] = {
    { .type = "named", .evolve = s_named, .version = 2, .upcast = s_named_upcast },
    { .type = "broken", .evolve = s_broken },
    { NULL },
};

static const zcq_aggregate_def_t s_tally = {
    .name = "tally",
    .state_size = sizeof (tally_t),
    .release = s_tally_release,
    .commands = s_tally_commands,
    .events = s_tally_events,
    .schema = 1,
};

static const zcq_aggregate_def_t *const s_aggregates[] = { &s_tally, NULL };
static const zcq_projection_def_t *const s_projections[] = { NULL };
static const zcq_domain_t s_domain = { "tally", s_aggregates, s_projections };

static void
test_versions_memory_and_failures (void **state)
{
    (void) state;
    zcq_fixture_t *fx = zcq_fixture_new (&s_domain, "tally", "t");
    assert_non_null (fx);
    //  an event as an older node stored it, then one of the current version
    zcq_set_str (zcq_fixture_given_version (fx, "named", 1), "who", "ann");
    zcq_set_str (zcq_fixture_given (fx, "named"), "name", "bob");
    zcq_set_str (zcq_fixture_when (fx, "name"), "name", "cy");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_OK);
    assert_int_equal (zcq_value_get_int (zcq_fixture_reply (fx), "count", 0), 3);
    const zcq_event_t *event = zcq_fixture_emitted (fx, 0);
    assert_int_equal (zcq_event_type_version (event), 2);
    const tally_t *tally = zcq_fixture_state (fx);
    assert_string_equal (tally->names, "ann,bob,cy");
    assert_int_equal (tally->count, 3);

    //  an evolve that fails: internal, and the state is as it was
    zcq_fixture_when (fx, "break");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_INTERNAL);
    assert_non_null (strstr (zcq_fixture_message (fx), "missing"));
    assert_int_equal (zcq_fixture_emitted_count (fx), 0);
    tally = zcq_fixture_state (fx);
    assert_string_equal (tally->names, "ann,bob,cy");
    assert_int_equal (tally->count, 3);
    assert_int_equal (zcq_fixture_version (fx), 3);

    //  an undeclared event type is a bug of the domain
    zcq_fixture_when (fx, "typo");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_INTERNAL);
    assert_non_null (strstr (zcq_fixture_message (fx), "nmaed"));

    //  a given event the aggregate does not declare
    zcq_fixture_given (fx, "nmaed");
    zcq_set_str (zcq_fixture_when (fx, "name"), "name", "dee");
    assert_int_equal (zcq_fixture_run (fx), ZCQ_INTERNAL);
    assert_non_null (strstr (zcq_fixture_message (fx), "not declared"));
    assert_int_equal (zcq_fixture_version (fx), 3);
    zcq_fixture_destroy (&fx);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_bank_withdraw_rules),
        cmocka_unit_test (test_bank_invalid_and_unknown),
        cmocka_unit_test (test_versions_memory_and_failures),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
