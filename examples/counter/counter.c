/*  counter.c: the smallest domain, built out of tree against an installed
    zcqrs (CMakeLists.txt with find_package, or Makefile with pkg-config).

    counter   add {n: int}   -> added {n}
    views     counters       {key, total, version}: one row per counter
*/
#include <zcqrs.h>

typedef struct {
    int64_t total;
} counter_t;

//  --------------------------------------------------------------------------
//  Command add: n is a whole number, the total must not overflow

static zcq_err_t
s_add (zcq_decide_t *decide, const void *state)
{
    const counter_t *counter = state;
    int64_t n;
    ZCQ_TRY (zcq_arg_int (decide, "n", INT64_MIN, INT64_MAX, &n));
    int64_t total;
    if (__builtin_add_overflow (counter->total, n, &total))
        return zcq_reject (decide, "the total would overflow");
    zcq_set_int (zcq_emit (decide, "added"), "n", n);
    return ZCQ_OK;
}

//  Event added: the state's total moves by n

static void
s_added (void *state, const zcq_event_t *event)
{
    ((counter_t *) state)->total += zcq_event_int_req (event, "n");
}

static const zcq_command_def_t s_counter_commands[] = {
    { "add", s_add, NULL },
    { NULL },
};

static const zcq_event_def_t s_counter_events[] = {
    { .type = "added", .evolve = s_added },
    { NULL },
};

static const zcq_aggregate_def_t s_counter = {
    .name = "counter",
    .state_size = sizeof (counter_t),
    .schema = 1,
    .commands = s_counter_commands,
    .events = s_counter_events,
};

//  --------------------------------------------------------------------------
//  View counters: the total of each counter, updated before the command's
//  reply (synchronous), so a read after the reply sees it

static void
s_counter_added (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_add_int (row, "total", zcq_event_int_req (event, "n"));
    zcq_set_int (row, "version", (int64_t) zcq_event_version (event));
}

static const zcq_handler_def_t s_counters_handlers[] = {
    { "counter", "added", s_counter_added, NULL },
    { NULL },
};

static const zcq_projection_def_t s_counters = {
    .view = "counters",
    .version = 1,
    .synchronous = true,
    .handlers = s_counters_handlers,
};

static const zcq_aggregate_def_t *const s_aggregates[] = { &s_counter, NULL };
static const zcq_projection_def_t *const s_projections[] = { &s_counters, NULL };

static const zcq_domain_t s_domain = {
    .name = "counter",
    .aggregates = s_aggregates,
    .projections = s_projections,
};

ZCQ_DOMAIN_PLUGIN (&s_domain)
