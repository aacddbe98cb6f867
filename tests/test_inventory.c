/*  test_inventory.c: the inventory example (examples/inventory/inventory.c,
    linked in) on a real node, through the client: its rules, its reply
    field, its views, and a log that still holds version 1 of `received`. */
#include "testutil.h"
#include <stdio.h>
#include <string.h>

//  The plugin's entry point, defined by ZCQ_DOMAIN_PLUGIN in inventory.c.
zcq_domain_plugin_fn zcq_domain_plugin;

typedef zcq_test_rig_t s_fixture_t; //  testutil.h

static int
s_setup (void **state)
{
    *state = zcq_test_rig_new ("inventory");
    return 0;
}

static int
s_teardown (void **state)
{
    zcq_test_rig_destroy ((zcq_test_rig_t **) state);
    return 0;
}

//  Start a node of the domain; one that does not start fails the test.
static void
s_node_start (s_fixture_t *self, const zcq_domain_t *domain)
{
    assert_int_equal (zcq_test_rig_start (self, domain, NULL, 0), ZCQ_OK);
}

//  Send a command to item/sku with data as name, typed-value pairs ending
//  with NULL; the reply (valid until the next call on the client).
static const zcq_value_t *
s_send (s_fixture_t *self, const char *id, const char *sku, const char *type, ...)
{
    va_list args;
    va_start (args, type);
    const zcq_value_t *reply = zcq_test_rig_vsend (self, id, "item", sku, type, args);
    va_end (args);
    return reply;
}

//  Expect an `ok` reply; its position.
static int64_t
s_ok (const zcq_value_t *reply)
{
    assert_string_equal (zcq_test_code (reply), "ok");
    return zcq_value_get_int (reply, "position", -1);
}

static const char *
s_str (const zcq_value_t *row, const char *field)
{
    static char text[128];
    return zcq_value_get_str (row, field, text, sizeof text, "(absent)");
}

static bool
s_bool (const zcq_value_t *row, const char *field)
{
    bool value = false;
    assert_true (zcq_value_bool (zcq_value_get (row, field), &value));
    return value;
}

//  The stock row of a SKU is on_hand, reserved, available.
static void
s_assert_stock (s_fixture_t *self, const char *sku, int64_t position, int64_t on_hand,
                int64_t reserved)
{
    const zcq_value_t *row = zcq_test_rig_row (self, "stock", sku, position);
    assert_non_null (row);
    assert_int_equal (zcq_value_get_int (row, "on_hand", -1), on_hand);
    assert_int_equal (zcq_value_get_int (row, "reserved", -1), reserved);
    assert_int_equal (zcq_value_get_int (row, "available", -1), on_hand - reserved);
    assert_int_equal (s_bool (row, "low"), on_hand - reserved < 5);
}

//  --------------------------------------------------------------------------

//  Receive, reserve (the reply says what is left), ship: the state, the
//  reply and both views agree.
static void
test_walk_through (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self, zcq_domain_plugin ());
    s_ok (s_send (self, "w-1", "apple", "receive", "qty", "i:10", NULL));
    const zcq_value_t *reply
        = s_send (self, "w-2", "apple", "reserve", "order", "s:o-1", "qty", "i:4", NULL);
    int64_t position = s_ok (reply);
    assert_int_equal (zcq_value_get_int (reply, "available", -1), 6);
    s_assert_stock (self, "apple", position, 10, 4);
    const zcq_value_t *line = zcq_test_rig_row (self, "orders", "o-1/apple", position);
    assert_non_null (line);
    assert_string_equal (s_str (line, "order"), "o-1");
    assert_string_equal (s_str (line, "sku"), "apple");
    assert_int_equal (zcq_value_get_int (line, "qty", -1), 4);
    assert_string_equal (s_str (line, "status"), "reserved");

    position = s_ok (s_send (self, "w-3", "apple", "ship", "order", "s:o-1", NULL));
    s_assert_stock (self, "apple", position, 6, 0);
    line = zcq_test_rig_row (self, "orders", "o-1/apple", position);
    assert_string_equal (s_str (line, "status"), "shipped");
    assert_int_equal (zcq_value_get_int (line, "qty", -1), 4);
}

//  The rules of decide: each refusal is `rejected` with a message that says
//  why, and changes nothing; bad data is `invalid`.
static void
test_decide_rules (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self, zcq_domain_plugin ());
    s_ok (s_send (self, "r-1", "pear", "receive", "qty", "i:10", NULL));
    s_ok (s_send (self, "r-2", "pear", "reserve", "order", "s:o-1", "qty", "i:4", NULL));

    //  over-reserve: 6 available
    const zcq_value_t *reply
        = s_send (self, "r-3", "pear", "reserve", "order", "s:o-2", "qty", "i:7", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    assert_non_null (strstr (zcq_test_message (reply), "only 6 of pear available"));
    //  a second reservation of the same order
    reply = s_send (self, "r-4", "pear", "reserve", "order", "s:o-1", "qty", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    assert_non_null (
        strstr (zcq_test_message (reply), "order o-1 already holds a reservation on pear"));
    //  release or ship of an order that holds none
    reply = s_send (self, "r-5", "pear", "release", "order", "s:o-2", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    assert_non_null (strstr (zcq_test_message (reply), "order o-2 holds no reservation on pear"));
    reply = s_send (self, "r-6", "pear", "ship", "order", "s:o-2", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    //  bad data
    reply = s_send (self, "r-7", "pear", "reserve", "order", "s:o/2", "qty", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "invalid");
    assert_non_null (strstr (zcq_test_message (reply), "'/'"));
    reply = s_send (self, "r-8", "pear", "reserve", "order", "s:o-2", "qty", "i:0", NULL);
    assert_string_equal (zcq_test_code (reply), "invalid");
    reply = s_send (self, "r-9", "pear", "receive", NULL);
    assert_string_equal (zcq_test_code (reply), "invalid");

    //  exactly what is available; a duplicate of it gets the same reply
    reply = s_send (self, "r-10", "pear", "reserve", "order", "s:o-2", "qty", "i:6", NULL);
    s_ok (reply);
    assert_int_equal (zcq_value_get_int (reply, "available", -1), 0);
    reply = s_send (self, "r-10", "pear", "reserve", "order", "s:o-2", "qty", "i:6", NULL);
    bool duplicate = false;
    assert_true (zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate));
    assert_true (duplicate);
    assert_int_equal (zcq_value_get_int (reply, "available", -1), 0);

    //  release puts the goods back; the order may then reserve again
    int64_t position = s_ok (s_send (self, "r-11", "pear", "release", "order", "s:o-1", NULL));
    s_assert_stock (self, "pear", position, 10, 6);
    assert_string_equal (s_str (zcq_test_rig_row (self, "orders", "o-1/pear", position), "status"),
                         "released");
    reply = s_send (self, "r-12", "pear", "release", "order", "s:o-1", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    reply = s_send (self, "r-13", "pear", "reserve", "order", "s:o-1", "qty", "i:3", NULL);
    s_ok (reply);
    assert_int_equal (zcq_value_get_int (reply, "available", -1), 1);
    position = zcq_value_get_int (reply, "position", -1);
    const zcq_value_t *line = zcq_test_rig_row (self, "orders", "o-1/pear", position);
    assert_string_equal (s_str (line, "status"), "reserved");
    assert_int_equal (zcq_value_get_int (line, "qty", -1), 3);
}

//  An item keeps 32 open reservations; the 33rd is refused until one ends.
//  The table survives a restart (the stream replayed, or its snapshot).
static void
test_reservation_limit (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self, zcq_domain_plugin ());
    s_ok (s_send (self, "l-0", "fig", "receive", "qty", "i:100", NULL));
    char id[32], order[32];
    for (int index = 1; index <= 32; index++) {
        snprintf (id, sizeof id, "l-%d", index);
        snprintf (order, sizeof order, "s:o-%d", index);
        s_ok (s_send (self, id, "fig", "reserve", "order", order, "qty", "i:1", NULL));
    }
    const zcq_value_t *reply
        = s_send (self, "l-33", "fig", "reserve", "order", "s:o-33", "qty", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    assert_non_null (strstr (zcq_test_message (reply), "32 open reservations"));

    zcq_test_rig_stop (self);
    s_node_start (self, zcq_domain_plugin ());
    reply = s_send (self, "l-34", "fig", "reserve", "order", "s:o-33", "qty", "i:1", NULL);
    assert_string_equal (zcq_test_code (reply), "rejected");
    s_ok (s_send (self, "l-35", "fig", "ship", "order", "s:o-7", NULL));
    reply = s_send (self, "l-36", "fig", "reserve", "order", "s:o-33", "qty", "i:1", NULL);
    s_ok (reply);
    assert_int_equal (zcq_value_get_int (reply, "available", -1), 100 - 1 - 32);
    reply = s_send (self, "l-37", "fig", "ship", "order", "s:o-32", NULL);
    s_assert_stock (self, "fig", s_ok (reply), 98, 31);
}

//  The views' rows: `orders` lists an order's lines by its index, `stock`
//  lists the low items by its.
static void
test_views (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self, zcq_domain_plugin ());
    s_ok (s_send (self, "v-1", "apple", "receive", "qty", "i:20", NULL));
    s_ok (s_send (self, "v-2", "fig", "receive", "qty", "i:3", NULL));
    s_ok (s_send (self, "v-3", "kiwi", "receive", "qty", "i:8", NULL));
    s_ok (s_send (self, "v-4", "apple", "reserve", "order", "s:o-1", "qty", "i:2", NULL));
    s_ok (s_send (self, "v-5", "fig", "reserve", "order", "s:o-1", "qty", "i:1", NULL));
    s_ok (s_send (self, "v-6", "kiwi", "reserve", "order", "s:o-2", "qty", "i:4", NULL));
    int64_t position = s_ok (s_send (self, "v-7", "fig", "release", "order", "s:o-1", NULL));

    char position_arg[32];
    snprintf (position_arg, sizeof position_arg, "i:%lld", (long long) position);
    const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:list", "view", "s:orders",
                                               "index", "s:order", "value", "s:o-1", "min_position",
                                               position_arg, NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *rows = zcq_value_get (reply, "rows");
    assert_int_equal (zcq_value_size (rows), 2);
    assert_string_equal (s_str (zcq_value_at (rows, 0), "key"), "o-1/apple");
    assert_string_equal (s_str (zcq_value_at (rows, 0), "status"), "reserved");
    assert_string_equal (s_str (zcq_value_at (rows, 1), "key"), "o-1/fig");
    assert_string_equal (s_str (zcq_value_at (rows, 1), "status"), "released");

    //  low: fig (3 available) and kiwi (4); apple has 18
    reply = zcq_test_query (self->client, "op", "s:list", "view", "s:stock", "index", "s:low",
                            "value", "b:true", "min_position", position_arg, NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    rows = zcq_value_get (reply, "rows");
    assert_int_equal (zcq_value_size (rows), 2);
    assert_string_equal (s_str (zcq_value_at (rows, 0), "key"), "fig");
    assert_string_equal (s_str (zcq_value_at (rows, 1), "key"), "kiwi");
    s_assert_stock (self, "apple", position, 20, 2);
    s_assert_stock (self, "fig", position, 3, 0);
    s_assert_stock (self, "kiwi", position, 8, 4);
}

//  --------------------------------------------------------------------------
//  Version 1 of the inventory, as it was before `received` renamed its
//  field quantity to qty: receive only, enough to leave v1 events in a log.

typedef struct {
    int64_t on_hand;
} item_v1_t;

static zcq_err_t
s_receive_v1 (zcq_decide_t *decide, const void *state)
{
    int64_t quantity;
    ZCQ_TRY (zcq_arg_int (decide, "quantity", 1, INT32_MAX, &quantity));
    zcq_set_int (zcq_emit (decide, "received"), "quantity", quantity);
    return ZCQ_OK;
}

static void
s_received_v1 (void *state, const zcq_event_t *event)
{
    ((item_v1_t *) state)->on_hand += zcq_event_int_req (event, "quantity");
}

static const zcq_command_def_t s_item_v1_commands[] = {
    { .type = "receive", .decide = s_receive_v1 },
    { NULL },
};
static const zcq_event_def_t s_item_v1_events[] = {
    { .type = "received", .evolve = s_received_v1 },
    { NULL },
};
static const zcq_aggregate_def_t s_item_v1 = {
    .name = "item",
    .state_size = sizeof (item_v1_t),
    .schema = 1,
    .commands = s_item_v1_commands,
    .events = s_item_v1_events,
};
static const zcq_aggregate_def_t *const s_v1_aggregates[] = { &s_item_v1, NULL };
static const zcq_domain_t s_inventory_v1 = { .name = "inventory", .aggregates = s_v1_aggregates };

//  A log written by version 1, then by the example: evolve and the views
//  read the v1 events through the upcaster; the log keeps them as written.
static void
test_upcast_received (void **state)
{
    s_fixture_t *self = *state;
    s_node_start (self, &s_inventory_v1);
    s_ok (s_send (self, "u-1", "plum", "receive", "quantity", "i:7", NULL));
    s_ok (s_send (self, "u-2", "plum", "receive", "quantity", "i:3", NULL));
    zcq_test_rig_stop (self);

    s_node_start (self, zcq_domain_plugin ());
    s_ok (s_send (self, "u-3", "plum", "receive", "qty", "i:5", NULL));
    const zcq_value_t *reply
        = s_send (self, "u-4", "plum", "reserve", "order", "s:o-1", "qty", "i:15", NULL);
    int64_t position = s_ok (reply); //  all 15: the v1 ones count
    assert_int_equal (zcq_value_get_int (reply, "available", -1), 0);
    //  the stock view, new on this node, is built from the whole log
    s_assert_stock (self, "plum", position, 15, 15);
    char status[32];
    reply = zcq_test_query (self->client, "op", "s:views", NULL);
    const zcq_value_t *views = zcq_value_get (reply, "views");
    for (size_t index = 0; index < zcq_value_size (views); index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        zcq_value_get_str (view, "status", status, sizeof status, "");
        assert_string_not_equal (status, "failed");
    }

    //  as stored: two of version 1 {quantity}, one of version 2 {qty}
    reply = zcq_test_query (self->client, "op", "s:stream", "stream", "s:item/plum", NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), 4);
    const zcq_value_t *first = zcq_value_at (events, 0);
    assert_null (zcq_value_get (first, "event_version"));
    assert_int_equal (zcq_value_get_int (zcq_value_get (first, "data"), "quantity", -1), 7);
    const zcq_value_t *third = zcq_value_at (events, 2);
    assert_int_equal (zcq_value_get_int (third, "event_version", -1), 2);
    assert_int_equal (zcq_value_get_int (zcq_value_get (third, "data"), "qty", -1), 5);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_walk_through, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_decide_rules, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_reservation_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_views, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_upcast_received, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
