/*  test_retention.c: an aggregate type's retention (max_count) on a real
    node: the retention pass truncates each stream to its last events, and
    `stream`, `read`, a view, a catch-up subscription and a restart all
    see the same log, holes included. */
#include "testutil.h"
#include <stdio.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  The test domain: `tally`, add {amount}, keeps its last 2 events

typedef struct {
    int64_t total;
} tally_t;

static zcq_err_t
s_add (zcq_decide_t *decide, const void *state)
{
    const tally_t *tally = state;
    int64_t amount;
    ZCQ_TRY (zcq_arg_int (decide, "amount", 1, INT32_MAX, &amount));
    zcq_set_int (zcq_emit (decide, "added"), "amount", amount);
    zcq_set_int (zcq_decide_reply (decide), "total", tally->total + amount);
    return ZCQ_OK;
}

static void
s_added (void *state, const zcq_event_t *event)
{
    ((tally_t *) state)->total += zcq_event_int_req (event, "amount");
}

static const zcq_command_def_t s_tally_commands[] = {
    { "add", s_add, NULL },
    { NULL },
};

static const zcq_event_def_t s_tally_events[] = {
    { .type = "added", .evolve = s_added },
    { NULL },
};

static const zcq_state_field_t s_tally_fields[] = {
    ZCQ_STATE_FIELD (tally_t, total),
    { NULL },
};

static const zcq_aggregate_def_t s_tally = {
    .name = "tally",
    .state_size = sizeof (tally_t),
    .state_fields = s_tally_fields,
    .schema = 1,
    .commands = s_tally_commands,
    .events = s_tally_events,
    .max_count = 2,
};

//  View `tallies`: per stream, the sum of the events it saw, how many, and
//  the `before` of the last `$truncated`.
static void
s_view_added (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_add_int (row, "total", zcq_event_int_req (event, "amount"));
    zcq_add_int (row, "events", 1);
}

static void
s_view_truncated (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_set_int (row, "before", zcq_event_int_req (event, "before"));
}

static const zcq_handler_def_t s_tallies_handlers[] = {
    { "tally", "added", s_view_added, NULL },
    { "tally", ZCQ_EVENT_TRUNCATED, s_view_truncated, NULL },
    { NULL },
};

static const zcq_projection_def_t s_tallies = {
    .view = "tallies",
    .version = 1,
    .handlers = s_tallies_handlers,
};

//  `aged`: the same, keeping no event older than a second
static const zcq_aggregate_def_t s_aged = {
    .name = "aged",
    .state_size = sizeof (tally_t),
    .state_fields = s_tally_fields,
    .schema = 1,
    .commands = s_tally_commands,
    .events = s_tally_events,
    .max_age_s = 1,
};

static const zcq_aggregate_def_t *const s_aggregates[] = { &s_tally, &s_aged, NULL };
static const zcq_projection_def_t *const s_projections[] = { &s_tallies, NULL };

static const zcq_domain_t s_domain = {
    .name = "tally",
    .aggregates = s_aggregates,
    .projections = s_projections,
};

//  --------------------------------------------------------------------------
//  A node of the domain, and a client

typedef struct {
    char *dir;
    zcq_node_t *node;
    zcq_client_t *client;
    zcq_writer_t *writer;
} s_fixture_t;

static void
s_node_start (s_fixture_t *self)
{
    zcq_config_t *config = zcq_config_new ();
    zcq_config_set (config, "data", self->dir, NULL, 0);
    zcq_config_set (config, "command", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "events", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "query", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "retention-interval-ms", "0", NULL, 0); //  on demand only
    const char *plan = getenv ("ZCQ_TEST_WRITE_PLAN");
    if (plan)
        zcq_config_set (config, "write-plan", plan, NULL, 0);
    char error[256];
    zcq_err_t err = zcq_node_start (&self->node, config, &s_domain, error, sizeof error);
    zcq_config_destroy (&config);
    if (err != ZCQ_OK)
        fail_msg ("node start: %s", error);
    self->client = zcq_client_new (zcq_node_endpoint (self->node, ZCQ_ENDPOINT_COMMAND),
                                   zcq_node_endpoint (self->node, ZCQ_ENDPOINT_QUERY));
    assert_non_null (self->client);
}

static void
s_node_stop (s_fixture_t *self)
{
    zcq_client_destroy (&self->client);
    zcq_node_destroy (&self->node);
}

static int
s_setup (void **state)
{
    s_fixture_t *self = calloc (1, sizeof (s_fixture_t));
    self->dir = zcq_test_dir ("retention");
    self->writer = zcq_writer_new ();
    *state = self;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fixture_t *self = *state;
    s_node_stop (self);
    zcq_writer_destroy (&self->writer);
    zcq_test_rmdir (&self->dir);
    free (self);
    return 0;
}

//  add {amount} to aggregate/key; the reply's position.
static uint64_t
s_send_add (s_fixture_t *self, const char *aggregate, const char *key, int64_t amount)
{
    zcq_writer_reset (self->writer);
    zcq_writer_map (self->writer, 1);
    zcq_writer_str (self->writer, "amount");
    zcq_writer_int (self->writer, amount);
    zcq_command_req_t command = {
        .aggregate = aggregate,
        .key = key,
        .type = "add",
        .data = zcq_writer_data (self->writer),
        .data_len = zcq_writer_size (self->writer),
    };
    const zcq_value_t *reply = NULL;
    assert_int_equal (zcq_client_command (self->client, &command, 10000, &reply), ZCQ_OK);
    assert_string_equal (zcq_test_code (reply), "ok");
    uint64_t position = 0;
    assert_true (zcq_value_uint (zcq_value_get (reply, "position"), &position));
    return position;
}

static uint64_t
s_add_to (s_fixture_t *self, const char *key, int64_t amount)
{
    return s_send_add (self, "tally", key, amount);
}

static uint64_t
s_uint (const zcq_value_t *map, const char *key)
{
    uint64_t value = 0;
    if (!zcq_value_uint (zcq_value_get (map, key), &value))
        fail_msg ("'%s' is not an unsigned integer", key);
    return value;
}

//  The versions of a stream from version 1, and its `first`.
static void
s_check_stream (s_fixture_t *self, const char *name, uint64_t first, uint64_t version)
{
    char stream[64];
    snprintf (stream, sizeof stream, "s:%s", name);
    const zcq_value_t *reply
        = zcq_test_query (self->client, "op", "s:stream", "stream", stream, "from", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    assert_int_equal (s_uint (reply, "first"), first);
    assert_int_equal (s_uint (reply, "version"), version);
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), version - first + 1);
    for (size_t index = 0; index < zcq_value_size (events); index++)
        assert_int_equal (s_uint (zcq_value_at (events, index), "version"), first + index);
    char type[32];
    zcq_value_get_str (zcq_value_at (events, zcq_value_size (events) - 1), "type", type,
                       sizeof type, "");
    assert_string_equal (type, ZCQ_EVENT_TRUNCATED);
}

//  The row of tally/key in `tallies`, once the view applied `position`.
static const zcq_value_t *
s_row (s_fixture_t *self, const char *key, uint64_t position)
{
    char key_arg[64], min[32];
    snprintf (key_arg, sizeof key_arg, "s:%s", key);
    snprintf (min, sizeof min, "i:%llu", (unsigned long long) position);
    const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:get", "view", "s:tallies",
                                               "key", key_arg, "min_position", min, "timeout_ms",
                                               "i:10000", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *row = zcq_value_get (reply, "row");
    assert_int_equal (zcq_value_type (row), ZCQ_TYPE_MAP);
    return row;
}

//  --------------------------------------------------------------------------

static void
test_max_count (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self);
    //  5 events on `a`, interleaved with 3 on `b`: positions a1 b1 a2 b2 a3 b3 a4 a5
    uint64_t a[5], b[3];
    for (int index = 0; index < 5; index++) {
        a[index] = s_add_to (self, "a", index + 1);
        if (index < 3)
            b[index] = s_add_to (self, "b", 10);
    }
    uint64_t head = a[4];
    assert_int_equal (head, 8);

    //  the pass truncates both: a keeps 4, 5; b keeps 2, 3
    assert_int_equal (zcq_node_retain (self->node), 2);
    //  idempotent: nothing more to do
    assert_int_equal (zcq_node_retain (self->node), 0);
    s_check_stream (self, "tally/a", 4, 6);
    s_check_stream (self, "tally/b", 2, 4);

    //  the state lives on: 1+2+3+4+5, and one more
    uint64_t position = s_add_to (self, "a", 100);
    assert_int_equal (position, head + 3);

    //  read skips a1, a2, a3 and b1 (positions 1, 3, 5 and 2) and says so
    const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:read", "from", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), position - 4);
    assert_int_equal (s_uint (zcq_value_at (events, 0), "position"), 4);
    const zcq_value_t *removed = zcq_value_get (reply, "removed");
    assert_int_equal (zcq_value_size (removed), 2);
    uint64_t range[4] = { 0 };
    for (size_t index = 0; index < 4; index++)
        assert_true (zcq_value_uint (zcq_value_at (zcq_value_at (removed, index / 2), index % 2),
                                     &range[index]));
    assert_int_equal (range[0], a[0]); //  a1, b1, a2
    assert_int_equal (range[1], a[1]);
    assert_int_equal (range[2], a[2]); //  a3
    assert_int_equal (range[3], a[2]);
    assert_int_equal (b[0], 2);

    //  the view saw every event, then the truncations, in log order
    const zcq_value_t *row = s_row (self, "a", position);
    assert_int_equal (zcq_value_get_int (row, "total", 0), 115);
    assert_int_equal (zcq_value_get_int (row, "events", 0), 6);
    assert_int_equal (zcq_value_get_int (row, "before", 0), 4);

    //  a catch-up subscription from position 1 reaches the head, crossing
    //  the holes without asking twice for them
    zcq_catchup_t *feed = zcq_catchup_new (zcq_node_endpoint (self->node, ZCQ_ENDPOINT_QUERY),
                                           zcq_node_endpoint (self->node, ZCQ_ENDPOINT_EVENTS), 1,
                                           "tally/a/");
    assert_non_null (feed);
    uint64_t versions[8];
    size_t seen = 0;
    const zcq_event_t *event;
    while (seen < 8 && zcq_catchup_position (feed) < position) {
        zcq_err_t err = zcq_catchup_next (feed, 10000, &event);
        assert_int_equal (err, ZCQ_OK);
        versions[seen++] = zcq_event_version (event);
    }
    assert_int_equal (zcq_catchup_position (feed), position);
    assert_int_equal (seen, 4); //  a4, a5, $truncated, the new one
    assert_int_equal (versions[0], 4);
    assert_int_equal (versions[3], 7);
    zcq_catchup_destroy (&feed);

    //  a restart keeps it all: the log check accepts the holes, the
    //  aggregate loads from the truncation's snapshot
    s_node_stop (self);
    s_node_start (self);
    s_check_stream (self, "tally/b", 2, 4);
    position = s_add_to (self, "b", 1);
    row = s_row (self, "b", position);
    assert_int_equal (zcq_value_get_int (row, "total", 0), 31);
    //  the retention goes on from where it was: a holds 4, 5, $truncated, 7
    assert_int_equal (zcq_node_retain (self->node), 2);
    s_check_stream (self, "tally/a", 6, 8);
    s_check_stream (self, "tally/b", 4, 6);
}

static void
test_max_age (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self);
    s_send_add (self, "aged", "x", 1);
    s_send_add (self, "aged", "x", 2);
    assert_int_equal (zcq_node_retain (self->node), 0); //  nothing is a second old yet
    //  the retention is about time: the events must be over a second old
    zclock_sleep (1200);
    uint64_t position = s_send_add (self, "aged", "x", 3);
    assert_int_equal (zcq_node_retain (self->node), 1);
    assert_int_equal (zcq_node_retain (self->node), 0); //  the fresh `$truncated` does not count
    s_check_stream (self, "aged/x", 3, 4);
    //  the state lives on
    assert_int_equal (s_send_add (self, "aged", "x", 4), position + 2);
    const zcq_value_t *reply
        = zcq_test_query (self->client, "op", "s:stream", "stream", "s:aged/x", NULL);
    assert_int_equal (s_uint (reply, "version"), 5);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_max_count, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_max_age, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
