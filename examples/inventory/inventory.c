/*  inventory.c: stock with reservations, a domain written against
    zcq_domain.h alone (built in the zcqrs tree as plugins/inventory.so, or
    out of tree with this folder's CMakeLists.txt).

    item (key: the SKU)
        receive {qty > 0}            -> received {qty}           (version 2)
        reserve {order, qty > 0}     -> reserved {order, qty};   reply available
        release {order}              -> released {order, qty}
        ship    {order}              -> shipped {order, qty}
    views
        stock   {key: sku, on_hand, reserved, available, low}, index low
        orders  {key: "order/sku", order, sku, qty, status}, index order

    What it shows beyond the bank: a fixed-size state with a bounded table
    (declared field by field for the snapshot's layout check), handler
    contexts (one evolve for released and shipped, one stock handler for
    every event), a reply field from decide, strict reads, and an event type
    at version 2 with the upcaster that reads the version 1 still in the log.
*/
#include <stdio.h>
#include <string.h>
#include <zcqrs.h>

//  An item keeps at most this many open reservations: the state is a plain
//  struct (snapshots are its bytes), so its tables have a fixed size.
#define INVENTORY_RESERVATIONS 32
//  Order ids are 1-64 bytes without '/', so "order/sku" names one line (a
//  SKU is an aggregate key: at most 256 bytes, no '/').
#define INVENTORY_ORDER_MAX 64
#define INVENTORY_SKU_MAX   256
//  An item is low (the stock view's index) below this many available.
#define INVENTORY_LOW 5

typedef struct {
    char order[INVENTORY_ORDER_MAX + 1]; //  NUL-terminated
    int64_t qty;
} reservation_t;

typedef struct {
    int64_t on_hand;  //  received, less shipped
    int64_t reserved; //  the sum of the open reservations
    uint32_t open;    //  reservations[0 .. open-1] are in use
    reservation_t reservations[INVENTORY_RESERVATIONS];
} item_t;

//  The reservation the order holds on the item, or NULL.
static const reservation_t *
s_reservation_of (const item_t *item, const char *order)
{
    for (uint32_t index = 0; index < item->open; index++)
        if (strcmp (item->reservations[index].order, order) == 0)
            return &item->reservations[index];
    return NULL;
}

//  --------------------------------------------------------------------------
//  Commands: read the data (a bad field is `invalid`), then the rules
//  (`rejected`), then emit. Events carry what their readers need (release
//  and ship carry the qty) so that views never need the state.

static zcq_err_t
s_receive (zcq_decide_t *decide, const void *state)
{
    const item_t *item = state;
    int64_t qty;
    ZCQ_TRY (zcq_arg_int (decide, "qty", 1, INT32_MAX, &qty));
    if (item->on_hand > INT64_MAX - qty)
        return zcq_reject (decide, "the stock of %s would overflow", zcq_decide_key (decide));
    zcq_set_int (zcq_emit (decide, "received"), "qty", qty);
    return ZCQ_OK;
}

//  The order id of a command, checked: order ids go into view keys.
static zcq_err_t
s_arg_order (zcq_decide_t *decide, const char **order)
{
    ZCQ_TRY (zcq_arg_str (decide, "order", 1, INVENTORY_ORDER_MAX, order));
    if (strchr (*order, '/'))
        return zcq_invalid (decide, "field 'order': no '/' in an order id");
    return ZCQ_OK;
}

static zcq_err_t
s_reserve (zcq_decide_t *decide, const void *state)
{
    const item_t *item = state;
    const char *order;
    int64_t qty;
    ZCQ_TRY (s_arg_order (decide, &order));
    ZCQ_TRY (zcq_arg_int (decide, "qty", 1, INT32_MAX, &qty));
    if (s_reservation_of (item, order))
        return zcq_reject (decide, "order %s already holds a reservation on %s", order,
                           zcq_decide_key (decide));
    int64_t available = item->on_hand - item->reserved;
    if (available < qty)
        return zcq_reject (decide, "only %lld of %s available", (long long) available,
                           zcq_decide_key (decide));
    if (item->open == INVENTORY_RESERVATIONS)
        return zcq_reject (decide, "%s has %d open reservations, the most an item keeps",
                           zcq_decide_key (decide), INVENTORY_RESERVATIONS);
    zcq_fields_t *reserved = zcq_emit (decide, "reserved");
    zcq_set_str (reserved, "order", order);
    zcq_set_int (reserved, "qty", qty);
    //  the caller learns what is left without a read of the view
    zcq_set_int (zcq_decide_reply (decide), "available", available - qty);
    return ZCQ_OK;
}

//  release and ship: end the order's reservation, with the event named by
//  the command's context.
static zcq_err_t
s_settle (zcq_decide_t *decide, const void *state)
{
    const char *event_type = zcq_decide_context (decide);
    const char *order;
    ZCQ_TRY (s_arg_order (decide, &order));
    const reservation_t *reservation = s_reservation_of (state, order);
    if (!reservation)
        return zcq_reject (decide, "order %s holds no reservation on %s", order,
                           zcq_decide_key (decide));
    zcq_fields_t *settled = zcq_emit (decide, event_type);
    zcq_set_str (settled, "order", order);
    zcq_set_int (settled, "qty", reservation->qty);
    return ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  Events: what each does to the stock, as the context of its definitions
//  (evolve and both views read it): one table instead of one function each.

typedef struct {
    int on_hand;        //  the event's qty counts this many times in on_hand
    int reserved;       //  ... and in reserved
    const char *status; //  the order line's status after it (NULL: no line)
} effect_t;

static const effect_t s_received_effect = { .on_hand = 1, .reserved = 0, .status = NULL };
static const effect_t s_reserved_effect = { .on_hand = 0, .reserved = 1, .status = "reserved" };
//  released: the goods stay on the shelf; shipped: they leave it
static const effect_t s_released_effect = { .on_hand = 0, .reserved = -1, .status = "released" };
static const effect_t s_shipped_effect = { .on_hand = -1, .reserved = -1, .status = "shipped" };

//  Strict reads (_req): every event of these types has these fields, so a
//  missing one is a bug that must fail loudly, not count as 0.
static void
s_received (void *state, const zcq_event_t *event)
{
    ((item_t *) state)->on_hand += zcq_event_int_req (event, "qty");
}

static void
s_reserved (void *state, const zcq_event_t *event)
{
    item_t *item = state;
    const char *order = zcq_event_str_req (event, "order");
    if (item->open == INVENTORY_RESERVATIONS || strlen (order) > INVENTORY_ORDER_MAX) {
        zcq_event_fail (event, "reserved: no room for order '%s'", order);
        return;
    }
    reservation_t *reservation = &item->reservations[item->open++];
    strcpy (reservation->order, order);
    reservation->qty = zcq_event_int_req (event, "qty");
    item->reserved += reservation->qty;
}

//  released and shipped: the reservation ends (its slot takes the last
//  one's); what happens to the stock is the definition's context.
static void
s_settled (void *state, const zcq_event_t *event)
{
    item_t *item = state;
    const effect_t *effect = zcq_event_context (event);
    const reservation_t *reservation = s_reservation_of (item, zcq_event_str_req (event, "order"));
    if (!reservation) {
        zcq_event_fail (event, "%s: order holds no reservation", zcq_event_type (event));
        return;
    }
    int64_t qty = zcq_event_int_req (event, "qty");
    item->on_hand += effect->on_hand * qty;
    item->reserved += effect->reserved * qty;
    size_t index = (size_t) (reservation - item->reservations);
    item->reservations[index] = item->reservations[--item->open];
    memset (&item->reservations[item->open], 0, sizeof (reservation_t));
}

//  received was {quantity} in version 1 and is {qty} since version 2: old
//  events stay in the log as they were written, and are read through this.
static zcq_err_t
s_upcast_received (const zcq_event_t *event, uint32_t version, zcq_fields_t *data)
{
    if (version != 1)
        return ZCQ_INVALID;
    zcq_set_int (data, "qty", zcq_event_int_req (event, "quantity"));
    return ZCQ_OK;
}

static const zcq_command_def_t s_item_commands[] = {
    { .type = "receive", .decide = s_receive },
    { .type = "reserve", .decide = s_reserve },
    { .type = "release", .decide = s_settle, .context = (void *) "released" },
    { .type = "ship", .decide = s_settle, .context = (void *) "shipped" },
    { NULL },
};

static const zcq_event_def_t s_item_events[] = {
    //  received is at version 2: one of version 1 is upcast before evolve
    //  and the views see it
    { .type = "received", .evolve = s_received, .version = 2, .upcast = s_upcast_received },
    { .type = "reserved", .evolve = s_reserved },
    { .type = "released", .evolve = s_settled, .context = (void *) &s_released_effect },
    { .type = "shipped", .evolve = s_settled, .context = (void *) &s_shipped_effect },
    { NULL },
};

//  The layout of item_t: a snapshot written by a build whose item_t differs
//  (say a larger table) is ignored and the stream replayed.
static const zcq_state_field_t s_item_fields[] = {
    ZCQ_STATE_FIELD (item_t, on_hand),
    ZCQ_STATE_FIELD (item_t, reserved),
    ZCQ_STATE_FIELD (item_t, open),
    ZCQ_STATE_FIELD (item_t, reservations),
    { NULL },
};

static const zcq_aggregate_def_t s_item = {
    .name = "item",
    .state_size = sizeof (item_t),
    .state_fields = s_item_fields,
    .schema = 1,
    .snapshot_every = 50,
    .commands = s_item_commands,
    .events = s_item_events,
};

//  --------------------------------------------------------------------------
//  View `stock`: one row per SKU. The row is read (zcq_view_row) to derive
//  available and low, which a patch of counters alone could not set.

static void
s_stock (zcq_view_t *view, const zcq_event_t *event)
{
    const effect_t *effect = zcq_view_context (view);
    const char *sku = zcq_event_key (event);
    int64_t qty = zcq_event_int_req (event, "qty");
    const zcq_value_t *row = zcq_view_row (view, sku);
    int64_t on_hand = zcq_value_get_int (row, "on_hand", 0) + effect->on_hand * qty;
    int64_t reserved = zcq_value_get_int (row, "reserved", 0) + effect->reserved * qty;
    zcq_fields_t *stock = zcq_view_upsert (view, sku);
    zcq_set_int (stock, "on_hand", on_hand);
    zcq_set_int (stock, "reserved", reserved);
    zcq_set_int (stock, "available", on_hand - reserved);
    zcq_set_bool (stock, "low", on_hand - reserved < INVENTORY_LOW);
}

static const char *const s_stock_indexes[] = { "low", NULL };

static const zcq_handler_def_t s_stock_handlers[] = {
    { "item", "received", s_stock, (void *) &s_received_effect },
    { "item", "reserved", s_stock, (void *) &s_reserved_effect },
    { "item", "released", s_stock, (void *) &s_released_effect },
    { "item", "shipped", s_stock, (void *) &s_shipped_effect },
    { NULL },
};

//  Synchronous: applied before the command's reply, so a read right after
//  it sees the change (an asynchronous view is read with min_position).
static const zcq_projection_def_t s_stock_view = {
    .view = "stock",
    .version = 1,
    .synchronous = true,
    .indexes = s_stock_indexes,
    .handlers = s_stock_handlers,
};

//  --------------------------------------------------------------------------
//  View `orders`: one row per order and SKU, "order/sku", indexed by order
//  so that `list orders order=o-1` gives an order's lines.

//  The line's key; false (the handler failed) when it does not fit, rather
//  than a cut key that could name another line.
static bool
s_order_key (char *key, size_t size, const zcq_event_t *event)
{
    const char *order = zcq_event_str_req (event, "order");
    if ((size_t) snprintf (key, size, "%s/%s", order, zcq_event_key (event)) < size)
        return true;
    zcq_event_fail (event, "%s: order id '%s' is too long", zcq_event_type (event), order);
    return false;
}

//  reserved: the line, new or again after a release
static void
s_order_line (zcq_view_t *view, const zcq_event_t *event)
{
    const effect_t *effect = zcq_view_context (view);
    char key[INVENTORY_ORDER_MAX + 1 + INVENTORY_SKU_MAX + 1];
    if (!s_order_key (key, sizeof key, event))
        return;
    zcq_fields_t *line = zcq_view_upsert (view, key);
    zcq_set_str (line, "order", zcq_event_str_req (event, "order"));
    zcq_set_str (line, "sku", zcq_event_key (event));
    zcq_set_int (line, "qty", zcq_event_int_req (event, "qty"));
    zcq_set_str (line, "status", effect->status);
}

//  released and shipped: the line keeps its qty, its status is the context's
static void
s_order_settled (zcq_view_t *view, const zcq_event_t *event)
{
    const effect_t *effect = zcq_view_context (view);
    char key[INVENTORY_ORDER_MAX + 1 + INVENTORY_SKU_MAX + 1];
    if (s_order_key (key, sizeof key, event))
        zcq_set_str (zcq_view_patch (view, key), "status", effect->status);
}

static const char *const s_orders_indexes[] = { "order", NULL };

static const zcq_handler_def_t s_orders_handlers[] = {
    { "item", "reserved", s_order_line, (void *) &s_reserved_effect },
    { "item", "released", s_order_settled, (void *) &s_released_effect },
    { "item", "shipped", s_order_settled, (void *) &s_shipped_effect },
    { NULL },
};

//  Asynchronous: the reply does not wait for it; read it with the
//  command's position as min_position to see your own write.
static const zcq_projection_def_t s_orders_view = {
    .view = "orders",
    .version = 1,
    .indexes = s_orders_indexes,
    .handlers = s_orders_handlers,
};

static const zcq_aggregate_def_t *const s_aggregates[] = { &s_item, NULL };
static const zcq_projection_def_t *const s_projections[] = { &s_stock_view, &s_orders_view, NULL };

static const zcq_domain_t s_inventory = {
    .name = "inventory",
    .aggregates = s_aggregates,
    .projections = s_projections,
};

ZCQ_DOMAIN_PLUGIN (&s_inventory)
