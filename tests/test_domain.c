/*  test_domain.c: the domain API as a domain sees it, on a real node. A
    small test domain, `counter` (add, emit a typo, ...) with a synchronous
    view `counts`, is driven through the client; domain bugs must fail
    commands and views loudly, never store or show a wrong thing. */
#include "testutil.h"
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  The test domain

typedef struct {
    int64_t total;
    int64_t adds;
} counter_t;

//  Events evolved since the test last cleared it (loads included).
static atomic_int s_evolved;

//  The contexts of the definitions: add and sub share their handlers.
typedef struct {
    const char *event; //  the event a command emits
    int64_t sign;      //  what an amount counts for
} s_move_t;

static const s_move_t s_plus = { "added", 1 };
static const s_move_t s_minus = { "subtracted", -1 };
#define S_SIGN_OF(event) (((const s_move_t *) zcq_event_context (event))->sign)

//  add and sub {amount}: the total may not go below zero.
static zcq_err_t
s_add (zcq_decide_t *decide, const void *state)
{
    const counter_t *counter = state;
    const s_move_t *move = zcq_decide_context (decide);
    int64_t amount;
    ZCQ_TRY (zcq_arg_int (decide, "amount", 0, INT32_MAX, &amount));
    if (counter->total + move->sign * amount < 0)
        return zcq_reject (decide, "the total is %lld", (long long) counter->total);
    zcq_set_int (zcq_emit (decide, move->event), "amount", amount);
    zcq_set_int (zcq_decide_reply (decide), "total", counter->total + move->sign * amount);
    return ZCQ_OK;
}

//  shadow {}: a reply field with a name of the protocol's.
static zcq_err_t
s_shadow (zcq_decide_t *decide, const void *state)
{
    zcq_set_int (zcq_emit (decide, "added"), "amount", 1);
    zcq_set_int (zcq_decide_reply (decide), "version", 99);
    return ZCQ_OK;
}

//  peek {}: no event, a reply of the state.
static zcq_err_t
s_peek (zcq_decide_t *decide, const void *state)
{
    const counter_t *counter = state;
    zcq_fields_t *reply = zcq_decide_reply (decide);
    zcq_set_int (reply, "total", counter->total);
    zcq_set_str (reply, "note", "no event");
    return ZCQ_OK;
}

//  A decide with a typo in an event type.
static zcq_err_t
s_typo (zcq_decide_t *decide, const void *state)
{
    zcq_set_int (zcq_emit (decide, "added"), "amount", 1);
    zcq_set_int (zcq_emit (decide, "addded"), "amount", 1);
    return ZCQ_OK;
}

//  note {text}: noted {text}, which the view reads wrongly (as having an
//  amount); bad {}: broken {amount: "x"}, which evolve reads strictly.
static zcq_err_t
s_note (zcq_decide_t *decide, const void *state)
{
    const char *text;
    ZCQ_TRY (zcq_arg_str (decide, "text", 1, 64, &text));
    zcq_set_str (zcq_emit (decide, "noted"), "text", text);
    return ZCQ_OK;
}

static zcq_err_t
s_bad (zcq_decide_t *decide, const void *state)
{
    zcq_set_str (zcq_emit (decide, "broken"), "amount", "x");
    return ZCQ_OK;
}

static void
s_noted (void *state, const zcq_event_t *event)
{
    assert_true (strlen (zcq_event_str_req (event, "text")) > 0);
}

static void
s_broken (void *state, const zcq_event_t *event)
{
    ((counter_t *) state)->total += zcq_event_int_req (event, "amount");
}

static void
s_added (void *state, const zcq_event_t *event)
{
    counter_t *counter = state;
    const s_move_t *move = zcq_event_context (event);
    counter->total += move->sign * zcq_event_int (event, "amount", 0);
    counter->adds++;
    atomic_fetch_add (&s_evolved, 1);
}

static const zcq_command_def_t s_counter_commands[] = {
    { "add", s_add, (void *) &s_plus },
    { "sub", s_add, (void *) &s_minus },
    { "typo", s_typo, NULL },
    { "note", s_note, NULL },
    { "bad", s_bad, NULL },
    { "shadow", s_shadow, NULL },
    { "peek", s_peek, NULL },
    { NULL },
};

static const zcq_event_def_t s_counter_events[] = {
    { .type = "added", .evolve = s_added, .context = (void *) &s_plus },
    { .type = "subtracted", .evolve = s_added, .context = (void *) &s_minus },
    { .type = "noted", .evolve = s_noted, .context = NULL },
    { .type = "broken", .evolve = s_broken, .context = NULL },
    { NULL },
};

static const zcq_state_field_t s_counter_fields[] = {
    ZCQ_STATE_FIELD (counter_t, total),
    ZCQ_STATE_FIELD (counter_t, adds),
    { NULL },
};

static const zcq_aggregate_def_t s_counter = {
    .name = "counter",
    .state_size = sizeof (counter_t),
    .state_fields = s_counter_fields,
    .snapshot_every = 4,
    .schema = 1,
    .commands = s_counter_commands,
    .events = s_counter_events,
};

static void
s_count_added (zcq_view_t *view, const zcq_event_t *event)
{
    const s_move_t *move = zcq_view_context (view);
    int64_t amount = zcq_event_int (event, "amount", 0);
    //  two builders at once: the counter's row, and one row of all
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_fields_t *all = zcq_view_upsert (view, "all");
    zcq_add_int (all, "total", move->sign * amount);
    zcq_add_int (all, "moves", 1);
    zcq_add_int (row, "total", move->sign * amount);
    zcq_set_int (row, "last", amount);
}

//  A handler with a bug: noted has no amount.
static void
s_count_noted (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_set_str (row, "note", zcq_event_str_req (event, "text"));
    zcq_add_int (row, "total", zcq_event_int_req (event, "amount"));
}

static const zcq_handler_def_t s_counts_handlers[] = {
    { "counter", "added", s_count_added, (void *) &s_plus },
    { "counter", "subtracted", s_count_added, (void *) &s_minus },
    { "counter", "noted", s_count_noted, NULL },
    { NULL },
};

static const zcq_projection_def_t s_counts = {
    .view = "counts",
    .version = 1,
    .synchronous = true,
    .handlers = s_counts_handlers,
};

static const zcq_aggregate_def_t *const s_aggregates[] = { &s_counter, NULL };
static const zcq_projection_def_t *const s_projections[] = { &s_counts, NULL };

static const zcq_domain_t s_domain = {
    .name = "counter",
    .aggregates = s_aggregates,
    .projections = s_projections,
};

//  --------------------------------------------------------------------------
//  A node of a domain, and a client

typedef zcq_test_rig_t s_fixture_t; //  testutil.h

static int
s_setup (void **state)
{
    *state = zcq_test_rig_new ("domain");
    return 0;
}

static int
s_teardown (void **state)
{
    zcq_test_rig_destroy ((zcq_test_rig_t **) state);
    return 0;
}

//  --------------------------------------------------------------------------

static void
test_walk_through (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    const zcq_value_t *reply
        = zcq_test_rig_send (self, "c-1", "counter", "a", "add", "amount", "i:5", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    reply = zcq_test_rig_send (self, "c-2", "counter", "a", "add", "amount", "i:7", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (reply, "version", 0), 2);
    assert_int_equal (zcq_value_get_int (zcq_test_rig_row (self, "counts", "a", 0), "total", 0),
                      12);
}

//  An event type the aggregate does not declare fails the command
//  `internal`, naming the type; none of the command's events is stored.
static void
test_undeclared_event_fails_command (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "u-1", "counter", "a", "add",
                                                           "amount", "i:5", NULL)),
                         "ok");
    const zcq_value_t *reply = zcq_test_rig_send (self, "u-2", "counter", "a", "typo", NULL);
    assert_string_equal (zcq_test_code (reply), "internal");
    assert_non_null (strstr (zcq_test_message (reply), "'addded'"));
    assert_int_equal (zcq_node_head (self->node), 1);
    //  the stream goes on from where it was
    reply = zcq_test_rig_send (self, "u-3", "counter", "a", "add", "amount", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (reply, "version", 0), 2);
    assert_int_equal (zcq_value_get_int (zcq_test_rig_row (self, "counts", "a", 0), "total", 0), 6);
}

//  The start-up check refuses a projection handler of an event that no
//  aggregate (or not the one it names) declares.
static void
test_check_refuses_unknown_handler_events (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_domain_check (&s_domain, error, sizeof error), ZCQ_OK);

    static const zcq_handler_def_t typo_handlers[] = {
        { "counter", "added", s_count_added, (void *) &s_plus },
        { NULL, "removed", s_count_added, (void *) &s_minus },
        { NULL },
    };
    zcq_projection_def_t typo = s_counts;
    typo.handlers = typo_handlers;
    const zcq_projection_def_t *projections[] = { &typo, NULL };
    zcq_domain_t domain = s_domain;
    domain.projections = projections;
    assert_int_equal (zcq_domain_check (&domain, error, sizeof error), ZCQ_INVALID);
    assert_non_null (strstr (error, "'removed'"));
    assert_int_equal (zcq_test_rig_start (self, &domain, error, sizeof error), ZCQ_INVALID);
    assert_null (self->node);
    assert_non_null (strstr (error, "'removed'"));

    //  an event that exists, but not in the aggregate the handler names
    static const zcq_handler_def_t wrong_aggregate[] = {
        { "account", "added", s_count_added, (void *) &s_plus },
        { NULL },
    };
    typo.handlers = wrong_aggregate;
    assert_int_equal (zcq_domain_check (&domain, error, sizeof error), ZCQ_INVALID);
    assert_non_null (strstr (error, "account"));

    //  the node's $deleted: for any aggregate the domain has, declared or not
    static const zcq_handler_def_t deleted_handlers[] = {
        { "counter", ZCQ_EVENT_DELETED, s_count_added, (void *) &s_plus },
        { NULL, ZCQ_EVENT_DELETED, s_count_added, (void *) &s_plus },
        { NULL },
    };
    typo.handlers = deleted_handlers;
    assert_int_equal (zcq_domain_check (&domain, error, sizeof error), ZCQ_OK);
    static const zcq_handler_def_t deleted_nowhere[] = {
        { "nosuch", ZCQ_EVENT_DELETED, s_count_added, (void *) &s_plus },
        { NULL },
    };
    typo.handlers = deleted_nowhere;
    assert_int_equal (zcq_domain_check (&domain, error, sizeof error), ZCQ_INVALID);

    //  names starting with '$' are the node's, for commands and events
    static const zcq_event_def_t dollar_events[] = {
        { .type = "$deleted", .evolve = s_added, .context = (void *) &s_plus },
        { NULL },
    };
    static const zcq_command_def_t dollar_commands[] = {
        { "$delete", s_bad, NULL },
        { NULL },
    };
    zcq_aggregate_def_t dollar = s_counter;
    dollar.events = dollar_events;
    const zcq_aggregate_def_t *aggregates[] = { &dollar, NULL };
    zcq_domain_t reserved = { .name = "reserved", .aggregates = aggregates };
    assert_int_equal (zcq_domain_check (&reserved, error, sizeof error), ZCQ_INVALID);
    assert_non_null (strstr (error, "'$deleted'"));
    dollar.events = s_counter_events;
    dollar.commands = dollar_commands;
    assert_int_equal (zcq_domain_check (&reserved, error, sizeof error), ZCQ_INVALID);
    assert_non_null (strstr (error, "'$delete'"));
}

//  Each definition's context reaches its handler: add and sub share a
//  decide, an evolve and a projection handler, told apart by context.
static void
test_handler_context (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "x-1", "counter", "a", "add",
                                                           "amount", "i:5", NULL)),
                         "ok");
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "x-2", "counter", "a", "sub",
                                                           "amount", "i:2", NULL)),
                         "ok");
    //  the state says 3 (evolve told the two apart)
    const zcq_value_t *reply
        = zcq_test_rig_send (self, "x-3", "counter", "a", "sub", "amount", "i:4", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    assert_string_equal (zcq_test_message (reply), "the total is 3");
    assert_int_equal (zcq_value_get_int (zcq_test_rig_row (self, "counts", "a", 0), "total", 0), 3);
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "x-4", "counter", "a", "sub",
                                                           "amount", "i:3", NULL)),
                         "ok");
    assert_int_equal (zcq_value_get_int (zcq_test_rig_row (self, "counts", "a", 0), "total", -1),
                      0);
}

//  Two upserts in one handler have a builder each: what is written through
//  the first after the second was asked for still goes to the first row.
static void
test_separate_row_builders (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "r-1", "counter", "a", "add",
                                                           "amount", "i:5", NULL)),
                         "ok");
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "r-2", "counter", "b", "add",
                                                           "amount", "i:7", NULL)),
                         "ok");
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "r-3", "counter", "a", "sub",
                                                           "amount", "i:1", NULL)),
                         "ok");
    const zcq_value_t *row = zcq_test_rig_row (self, "counts", "a", 0);
    assert_int_equal (zcq_value_get_int (row, "total", 0), 4);
    assert_int_equal (zcq_value_get_int (row, "last", 0), 1);
    assert_null (zcq_value_get (row, "moves"));
    row = zcq_test_rig_row (self, "counts", "b", 0);
    assert_int_equal (zcq_value_get_int (row, "total", 0), 7);
    assert_int_equal (zcq_value_get_int (row, "last", 0), 7);
    row = zcq_test_rig_row (self, "counts", "all", 0);
    assert_int_equal (zcq_value_get_int (row, "total", 0), 11);
    assert_int_equal (zcq_value_get_int (row, "moves", 0), 3);
    assert_null (zcq_value_get (row, "last"));
}

//  The `views` entry of a view: its status and error (or "").
static void
s_view_status (s_fixture_t *self, const char *name, char *status, char *error, size_t size)
{
    const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:views", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *views = zcq_value_get (reply, "views");
    for (size_t index = 0; index < zcq_value_size (views); index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        if (zcq_value_streq (zcq_value_get (view, "name"), name)) {
            char found[512];
            snprintf (status, size, "%s",
                      zcq_value_get_str (view, "status", found, sizeof found, ""));
            snprintf (error, size, "%s",
                      zcq_value_get_str (view, "error", found, sizeof found, ""));
            return;
        }
    }
    fail_msg ("no view %s", name);
}

//  A strict read of a mistyped field fails evolve, so the command fails
//  `internal` naming the field, and nothing is stored.
static void
test_strict_read_in_evolve (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "e-1", "counter", "a", "add",
                                                           "amount", "i:5", NULL)),
                         "ok");
    const zcq_value_t *reply = zcq_test_rig_send (self, "e-2", "counter", "a", "bad", NULL);
    assert_string_equal (zcq_test_code (reply), "internal");
    assert_non_null (strstr (zcq_test_message (reply), "data.amount is not an integer"));
    assert_non_null (strstr (zcq_test_message (reply), "broken"));
    assert_int_equal (zcq_node_head (self->node), 1);
    reply = zcq_test_rig_send (self, "e-3", "counter", "a", "add", "amount", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (reply, "version", 0), 2);
}

//  A strict read of a missing field fails a projection handler: none of
//  its changes is applied, the view is `failed` with the reason, and later
//  events are still applied.
static void
test_strict_read_in_projection (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    char status[256], reason[256];
    s_view_status (self, "counts", status, reason, sizeof status);
    assert_string_equal (status, "live");
    assert_string_equal (reason, "");
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "p-1", "counter", "n", "note",
                                                           "text", "s:hello", NULL)),
                         "ok");
    assert_null (zcq_test_rig_row (self, "counts", "n", 0));
    s_view_status (self, "counts", status, reason, sizeof status);
    assert_string_equal (status, "failed");
    assert_non_null (strstr (reason, "data.amount is missing"));
    assert_non_null (strstr (reason, "noted"));
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "p-2", "counter", "n", "add",
                                                           "amount", "i:3", NULL)),
                         "ok");
    assert_int_equal (zcq_value_get_int (zcq_test_rig_row (self, "counts", "n", 0), "total", 0), 3);
    assert_null (zcq_value_get (zcq_test_rig_row (self, "counts", "n", 0), "note"));
}

//  A request zeroed but for what it needs sends no `expect`;
//  ZCQ_EXPECT_NEW sends 0 (the stream must not exist), ZCQ_EXPECT (n) n.
static void
test_client_expect (void **state)
{
    s_fixture_t *self = *state;
    struct {
        int64_t expect;
        int64_t wire; //  -1: absent
    } cases[] = { { 0, -1 }, { ZCQ_EXPECT_NEW, 0 }, { ZCQ_EXPECT (0), 0 }, { ZCQ_EXPECT (3), 3 } };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        zcq_command_req_t command
            = { .id = "e", .aggregate = "counter", .key = "a", .type = "add" };
        command.expect = cases[index].expect;
        zcq_writer_reset (self->writer);
        zcq_command_encode (self->writer, &command);
        zcq_doc_t *doc = zcq_doc_new ();
        assert_int_equal (zcq_doc_decode (doc, zcq_writer_data (self->writer),
                                          zcq_writer_size (self->writer), NULL),
                          ZCQ_OK);
        const zcq_value_t *expect = zcq_value_get (zcq_doc_root (doc), "expect");
        if (cases[index].wire < 0)
            assert_null (expect);
        else {
            int64_t wire;
            assert_true (zcq_value_int (expect, &wire));
            assert_int_equal (wire, cases[index].wire);
        }
        zcq_doc_destroy (&doc);
    }
    //  and on a node: new-only conflicts on an existing stream
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "x-1", "counter", "a", "add",
                                                           "amount", "i:5", NULL)),
                         "ok");
    zcq_command_req_t again = {
        .id = "x-2", .aggregate = "counter", .key = "a", .type = "add", .expect = ZCQ_EXPECT_NEW
    };
    const zcq_value_t *reply;
    assert_int_equal (zcq_client_command (self->client, &again, 10000, &reply), ZCQ_OK);
    assert_string_equal (zcq_test_code (reply), "conflict");
    again.id = "x-3";
    again.expect = ZCQ_EXPECT (1);
    zcq_writer_reset (self->writer);
    zcq_writer_map (self->writer, 1);
    zcq_writer_str (self->writer, "amount");
    zcq_writer_int (self->writer, 1);
    again.data = zcq_writer_data (self->writer);
    again.data_len = zcq_writer_size (self->writer);
    assert_int_equal (zcq_client_command (self->client, &again, 10000, &reply), ZCQ_OK);
    assert_string_equal (zcq_test_code (reply), "ok");
}

//  The same counter in later code: its fields swapped (reordered), and a
//  field more (resized, without a declared layout). Same schema: only the
//  layout check stands between an old snapshot and a wrong state.
typedef struct {
    int64_t adds;
    int64_t total;
} counter_swapped_t;

typedef struct {
    int64_t total;
    int64_t adds;
    int64_t extra;
} counter_grown_t;

static zcq_err_t
s_sub_swapped (zcq_decide_t *decide, const void *state)
{
    const counter_swapped_t *counter = state;
    return zcq_reject (decide, "the total is %lld", (long long) counter->total);
}

static void
s_added_swapped (void *state, const zcq_event_t *event)
{
    counter_swapped_t *counter = state;
    counter->total += S_SIGN_OF (event) * zcq_event_int (event, "amount", 0);
    counter->adds++;
    atomic_fetch_add (&s_evolved, 1);
}

static zcq_err_t
s_sub_grown (zcq_decide_t *decide, const void *state)
{
    const counter_grown_t *counter = state;
    return zcq_reject (decide, "the total is %lld", (long long) counter->total);
}

static void
s_added_grown (void *state, const zcq_event_t *event)
{
    counter_grown_t *counter = state;
    counter->total += S_SIGN_OF (event) * zcq_event_int (event, "amount", 0);
    counter->adds++;
    atomic_fetch_add (&s_evolved, 1);
}

static const zcq_command_def_t s_swapped_commands[] = { { "sub", s_sub_swapped, NULL }, { NULL } };
static const zcq_command_def_t s_grown_commands[] = { { "sub", s_sub_grown, NULL }, { NULL } };
static const zcq_event_def_t s_swapped_events[] = {
    { .type = "added", .evolve = s_added_swapped, .context = (void *) &s_plus },
    { .type = "subtracted", .evolve = s_added_swapped, .context = (void *) &s_minus },
    { NULL },
};
static const zcq_event_def_t s_grown_events[] = {
    { .type = "added", .evolve = s_added_grown, .context = (void *) &s_plus },
    { .type = "subtracted", .evolve = s_added_grown, .context = (void *) &s_minus },
    { NULL },
};
static const zcq_state_field_t s_swapped_fields[] = {
    ZCQ_STATE_FIELD (counter_swapped_t, total),
    ZCQ_STATE_FIELD (counter_swapped_t, adds),
    { NULL },
};
static const zcq_aggregate_def_t s_counter_swapped = {
    .name = "counter",
    .state_size = sizeof (counter_swapped_t),
    .state_fields = s_swapped_fields,
    .snapshot_every = 4,
    .schema = 1,
    .commands = s_swapped_commands,
    .events = s_swapped_events,
};
static const zcq_aggregate_def_t s_counter_grown = {
    .name = "counter",
    .state_size = sizeof (counter_grown_t),
    .snapshot_every = 4,
    .schema = 1,
    .commands = s_grown_commands,
    .events = s_grown_events,
};

//  The rejection of a sub tells the state's total; the events evolved to
//  load it.
static void
s_assert_total (s_fixture_t *self, const char *id, int64_t total, int evolved)
{
    atomic_store (&s_evolved, 0);
    const zcq_value_t *reply
        = zcq_test_rig_send (self, id, "counter", "a", "sub", "amount", "i:1000", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    char expected[64];
    snprintf (expected, sizeof expected, "the total is %lld", (long long) total);
    assert_string_equal (zcq_test_message (reply), expected);
    assert_int_equal (atomic_load (&s_evolved), evolved);
}

//  A snapshot is used by the same layout, and ignored (the stream
//  replayed) by a reordered or a resized state struct.
static void
test_snapshot_layout (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    //  5 events: a snapshot at version 4 (total 10, adds 4)
    for (int index = 0; index < 4; index++) {
        char id[16];
        snprintf (id, sizeof id, "s-%d", index);
        assert_string_equal (zcq_test_code (zcq_test_rig_send (self, id, "counter", "a", "add",
                                                               "amount", "i:2", NULL)),
                             "ok");
    }
    assert_string_equal (zcq_test_code (zcq_test_rig_send (self, "s-4", "counter", "a", "sub",
                                                           "amount", "i:1", NULL)),
                         "ok");
    zcq_test_rig_stop (self);

    //  same code: the snapshot, then the one event after it
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    s_assert_total (self, "s-5", 7, 1);
    zcq_test_rig_stop (self);

    //  fields swapped: the raw bytes would say total 4; replayed, 7
    static const zcq_aggregate_def_t *const swapped[] = { &s_counter_swapped, NULL };
    zcq_domain_t domain = { .name = "counter", .aggregates = swapped };
    assert_int_equal (zcq_test_rig_start (self, &domain, error, sizeof error), ZCQ_OK);
    s_assert_total (self, "s-6", 7, 5);
    zcq_test_rig_stop (self);

    //  a field more, no layout declared: the size tells
    static const zcq_aggregate_def_t *const grown[] = { &s_counter_grown, NULL };
    domain.aggregates = grown;
    assert_int_equal (zcq_test_rig_start (self, &domain, error, sizeof error), ZCQ_OK);
    s_assert_total (self, "s-7", 7, 5);
}

//  decide adds fields to the ok reply; a duplicate gets them too, also
//  after a restart; the protocol's names are refused.
static void
test_reply_from_decide (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    const zcq_value_t *reply
        = zcq_test_rig_send (self, "d-1", "counter", "a", "add", "amount", "i:5", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 5);
    reply = zcq_test_rig_send (self, "d-2", "counter", "a", "sub", "amount", "i:2", NULL);
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 3);
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 2);
    reply = zcq_test_rig_send (self, "d-3", "counter", "a", "add", "amount", "i:10", NULL);
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 13);

    //  a retry of d-2: the stored reply, not today's state
    reply = zcq_test_rig_send (self, "d-2", "counter", "a", "sub", "amount", "i:2", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    bool duplicate = false;
    assert_true (zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate));
    assert_true (duplicate);
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 3);
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 2);

    //  a command without events replies too, and so do its duplicates
    reply = zcq_test_rig_send (self, "d-4", "counter", "a", "peek", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (reply, "events", -1), 0);
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 13);
    char note[32];
    assert_string_equal (zcq_value_get_str (reply, "note", note, sizeof note, ""), "no event");

    //  the protocol's names are not decide's
    reply = zcq_test_rig_send (self, "d-5", "counter", "a", "shadow", NULL);
    assert_string_equal (zcq_test_code (reply), "internal");
    assert_non_null (strstr (zcq_test_message (reply), "'version'"));
    assert_int_equal (zcq_node_head (self->node), 3);

    //  after a clean restart the stored replies are still there
    zcq_test_rig_stop (self);
    assert_int_equal (zcq_test_rig_start (self, &s_domain, error, sizeof error), ZCQ_OK);
    reply = zcq_test_rig_send (self, "d-3", "counter", "a", "add", "amount", "i:10", NULL);
    assert_true (zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate));
    assert_true (duplicate);
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 13);
    reply = zcq_test_rig_send (self, "d-4", "counter", "a", "peek", NULL);
    assert_true (zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate));
    assert_true (duplicate);
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 13);
}

//  --------------------------------------------------------------------------
//  Event versions: `meter` moves, in three versions of its code
//      1: moved {amount}
//      2: moved {cents}                   (upcast 1 -> 2: cents = amount)
//      3: moved {cents, currency}         (upcast 2 -> 3: currency "EUR")

typedef struct {
    int64_t total;
    int64_t eur;       //  cents moved in EUR
    uint32_t versions; //  bit n: evolve saw an event of version n
} meter_t;

static zcq_err_t
s_move_v1 (zcq_decide_t *decide, const void *state)
{
    zcq_set_int (zcq_emit (decide, "moved"), "amount", 100);
    return ZCQ_OK;
}

static zcq_err_t
s_move_v2 (zcq_decide_t *decide, const void *state)
{
    zcq_set_int (zcq_emit (decide, "moved"), "cents", 200);
    return ZCQ_OK;
}

static zcq_err_t
s_move_v3 (zcq_decide_t *decide, const void *state)
{
    const meter_t *meter = state;
    zcq_fields_t *moved = zcq_emit (decide, "moved");
    zcq_set_int (moved, "cents", 300);
    zcq_set_str (moved, "currency", "USD");
    zcq_fields_t *reply = zcq_decide_reply (decide);
    zcq_set_int (reply, "total", meter->total + 300);
    zcq_set_int (reply, "eur", meter->eur);
    zcq_set_int (reply, "versions", meter->versions);
    return ZCQ_OK;
}

static void
s_moved_v1 (void *state, const zcq_event_t *event)
{
    ((meter_t *) state)->total += zcq_event_int_req (event, "amount");
}

static void
s_moved_v2 (void *state, const zcq_event_t *event)
{
    ((meter_t *) state)->total += zcq_event_int_req (event, "cents");
}

static void
s_moved_v3 (void *state, const zcq_event_t *event)
{
    meter_t *meter = state;
    int64_t cents = zcq_event_int_req (event, "cents");
    meter->total += cents;
    if (strcmp (zcq_event_str_req (event, "currency"), "EUR") == 0)
        meter->eur += cents;
    meter->versions |= 1u << zcq_event_type_version (event);
}

static zcq_err_t
s_upcast_moved (const zcq_event_t *event, uint32_t version, zcq_fields_t *data)
{
    if (version == 1)
        zcq_set_int (data, "cents", zcq_event_int_req (event, "amount"));
    else if (version == 2) {
        zcq_set_int (data, "cents", zcq_event_int_req (event, "cents"));
        zcq_set_str (data, "currency", "EUR");
    }
    else
        return ZCQ_INVALID;
    return ZCQ_OK;
}

static const zcq_command_def_t s_meter_v1_commands[] = { { "move", s_move_v1, NULL }, { NULL } };
static const zcq_command_def_t s_meter_v2_commands[] = { { "move", s_move_v2, NULL }, { NULL } };
static const zcq_command_def_t s_meter_v3_commands[] = { { "move", s_move_v3, NULL }, { NULL } };
static const zcq_event_def_t s_meter_v1_events[]
    = { { .type = "moved", .evolve = s_moved_v1, .context = NULL }, { NULL } };
static const zcq_event_def_t s_meter_v2_events[] = {
    { .type = "moved",
      .evolve = s_moved_v2,
      .context = NULL,
      .version = 2,
      .upcast = s_upcast_moved },
    { NULL },
};
static const zcq_event_def_t s_meter_v3_events[] = {
    { .type = "moved",
      .evolve = s_moved_v3,
      .context = NULL,
      .version = 3,
      .upcast = s_upcast_moved },
    { NULL },
};

#define S_METER(commands_, events_)                                                            \
    {                                                                                          \
        .name = "meter", .state_size = sizeof (meter_t), .schema = 1, .commands = (commands_), \
        .events = (events_)                                                                    \
    }
static const zcq_aggregate_def_t s_meter_v1 = S_METER (s_meter_v1_commands, s_meter_v1_events);
static const zcq_aggregate_def_t s_meter_v2 = S_METER (s_meter_v2_commands, s_meter_v2_events);
static const zcq_aggregate_def_t s_meter_v3 = S_METER (s_meter_v3_commands, s_meter_v3_events);

//  The view of version 3: it must see version 3 only.
static void
s_meter_moved (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_add_int (row, "total", zcq_event_int_req (event, "cents"));
    zcq_set_str (row, "currency", zcq_event_str_req (event, "currency"));
    zcq_add_int (row, zcq_event_type_version (event) == 3 ? "current" : "stale", 1);
}

static const zcq_handler_def_t s_meters_handlers[] = {
    { "meter", "moved", s_meter_moved, NULL },
    { NULL },
};

static const zcq_projection_def_t s_meters = {
    .view = "meters",
    .version = 1,
    .synchronous = true,
    .handlers = s_meters_handlers,
};

//  One log with moved events of versions 1, 2 and 3: evolve and the view
//  see each as version 3; the stored bodies keep their versions.
static void
test_event_versions (void **state)
{
    s_fixture_t *self = *state;
    char error[256];
    const zcq_aggregate_def_t *aggregates[] = { &s_meter_v1, NULL };
    zcq_domain_t domain = { .name = "meter", .aggregates = aggregates };
    assert_int_equal (zcq_test_rig_start (self, &domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (
        zcq_test_code (zcq_test_rig_send (self, "v-1", "meter", "m", "move", NULL)), "ok");
    zcq_test_rig_stop (self);
    aggregates[0] = &s_meter_v2;
    assert_int_equal (zcq_test_rig_start (self, &domain, error, sizeof error), ZCQ_OK);
    assert_string_equal (
        zcq_test_code (zcq_test_rig_send (self, "v-2", "meter", "m", "move", NULL)), "ok");
    zcq_test_rig_stop (self);

    aggregates[0] = &s_meter_v3;
    const zcq_projection_def_t *projections[] = { &s_meters, NULL };
    domain.projections = projections;
    assert_int_equal (zcq_test_rig_start (self, &domain, error, sizeof error), ZCQ_OK);
    const zcq_value_t *reply = zcq_test_rig_send (self, "v-3", "meter", "m", "move", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (zcq_value_get_int (reply, "total", -1), 600);
    assert_int_equal (zcq_value_get_int (reply, "eur", -1), 300); //  the upcast ones
    assert_int_equal (zcq_value_get_int (reply, "versions", -1), 1 << 3);

    const zcq_value_t *row = zcq_test_rig_row (self, "meters", "m", 0);
    assert_non_null (row);
    assert_int_equal (zcq_value_get_int (row, "total", -1), 600);
    assert_int_equal (zcq_value_get_int (row, "current", -1), 3);
    assert_null (zcq_value_get (row, "stale"));
    char text[16];
    assert_string_equal (zcq_value_get_str (row, "currency", text, sizeof text, ""), "USD");
    char status[64], reason[256];
    s_view_status (self, "meters", status, reason, sizeof status);
    assert_string_equal (status, "live");

    //  as stored: version 1 without event_version, then 2 and 3
    reply = zcq_test_query (self->client, "op", "s:stream", "stream", "s:meter/m", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), 3);
    assert_null (zcq_value_get (zcq_value_at (events, 0), "event_version"));
    assert_int_equal (zcq_value_get_int (zcq_value_at (events, 1), "event_version", -1), 2);
    assert_int_equal (zcq_value_get_int (zcq_value_at (events, 2), "event_version", -1), 3);
    assert_int_equal (
        zcq_value_get_int (zcq_value_get (zcq_value_at (events, 0), "data"), "amount", -1), 100);

    //  a version 2 without an upcast is refused at start
    static const zcq_event_def_t no_upcast[] = {
        { .type = "moved", .evolve = s_moved_v2, .context = NULL, .version = 2, .upcast = NULL },
        { NULL }
    };
    zcq_aggregate_def_t broken = s_meter_v2;
    broken.events = no_upcast;
    aggregates[0] = &broken;
    domain.projections = NULL;
    assert_int_equal (zcq_domain_check (&domain, error, sizeof error), ZCQ_INVALID);
    assert_non_null (strstr (error, "upcast"));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_walk_through, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_undeclared_event_fails_command, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_check_refuses_unknown_handler_events, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_handler_context, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_separate_row_builders, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_strict_read_in_evolve, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_strict_read_in_projection, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_client_expect, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_snapshot_layout, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_reply_from_decide, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_event_versions, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
