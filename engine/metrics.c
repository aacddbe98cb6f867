/*  metrics.c: the command counters behind /metrics (zcq_metrics.h). */
#include "zcq_metrics.h"
#include <inttypes.h>
#include <string.h>
#include <time.h>

static const char *const s_outcome_names[ZCQ_OUTCOME_COUNT]
    = { "ok",      "duplicate",   "rejected", "conflict", "invalid",
        "unknown", "unavailable", "timeout",  "internal" };

//  bucket upper bounds in ns, and as the `le` labels say them
static const int64_t s_bounds_ns[ZCQ_LATENCY_BUCKETS] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000
};
static const char *const s_bounds_text[ZCQ_LATENCY_BUCKETS]
    = { "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
        "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10" };

//  The node's own commands, counted on every aggregate after its domain
//  commands (zcq_delete_command, zcq_truncate_command: not in its table).
static const zcq_command_def_t *const s_system_commands[]
    = { &zcq_delete_command, &zcq_truncate_command };
#define S_SYSTEM_COUNT (sizeof s_system_commands / sizeof s_system_commands[0])

struct zcq_metrics_t {
    const zcq_domain_t *domain;
    size_t aggregate_count;
    size_t *first; //  by aggregate: its first row (row 0 is `other`); then
                   //  its domain commands, then the S_SYSTEM_COUNT system ones
    size_t rows;
    atomic_uint_fast64_t *counts; //  rows x ZCQ_OUTCOME_COUNT
    atomic_uint_fast64_t buckets[ZCQ_LATENCY_BUCKETS + 1];
    atomic_uint_fast64_t latency_ns; //  the sum
};

zcq_metrics_t *
zcq_metrics_new (const zcq_domain_t *domain)
{
    zcq_metrics_t *self = calloc (1, sizeof (zcq_metrics_t));
    if (!self)
        return NULL;
    self->domain = domain;
    while (domain->aggregates && domain->aggregates[self->aggregate_count])
        self->aggregate_count++;
    self->first = calloc (self->aggregate_count + 1, sizeof (size_t));
    self->rows = 1;
    for (size_t index = 0; self->first && index < self->aggregate_count; index++) {
        self->first[index] = self->rows;
        for (const zcq_command_def_t *command = domain->aggregates[index]->commands;
             command && command->type; command++)
            self->rows++;
        self->rows += S_SYSTEM_COUNT;
    }
    self->counts = calloc (self->rows * ZCQ_OUTCOME_COUNT, sizeof (atomic_uint_fast64_t));
    if (!self->first || !self->counts) {
        zcq_metrics_destroy (&self);
        return NULL;
    }
    return self;
}

void
zcq_metrics_destroy (zcq_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->first);
    free ((*self_p)->counts);
    free (*self_p);
    *self_p = NULL;
}

const char *
zcq_outcome_name (zcq_outcome_t outcome)
{
    return (unsigned) outcome < ZCQ_OUTCOME_COUNT ? s_outcome_names[outcome] : "internal";
}

zcq_outcome_t
zcq_outcome_of (zcq_err_t err, bool duplicate)
{
    switch (err) {
        case ZCQ_OK: return duplicate ? ZCQ_OUTCOME_DUPLICATE : ZCQ_OUTCOME_OK;
        case ZCQ_REJECTED: return ZCQ_OUTCOME_REJECTED;
        case ZCQ_CONFLICT: return ZCQ_OUTCOME_CONFLICT;
        case ZCQ_INVALID: return ZCQ_OUTCOME_INVALID;
        case ZCQ_UNKNOWN: return ZCQ_OUTCOME_UNKNOWN;
        case ZCQ_UNAVAILABLE: return ZCQ_OUTCOME_UNAVAILABLE;
        case ZCQ_TIMEOUT: return ZCQ_OUTCOME_TIMEOUT;
        default: return ZCQ_OUTCOME_INTERNAL;
    }
}

//  One writer: a plain increment through relaxed atomics (no locked
//  instruction), which readers see whole.
static inline void
s_bump (atomic_uint_fast64_t *counter, uint64_t value)
{
    atomic_store_explicit (counter, atomic_load_explicit (counter, memory_order_relaxed) + value,
                           memory_order_relaxed);
}

void
zcq_metrics_command (zcq_metrics_t *self, const zcq_aggregate_def_t *aggregate,
                     const zcq_command_def_t *handler, zcq_outcome_t outcome, int64_t latency_ns)
{
    size_t row = 0;
    for (size_t index = 0; aggregate && handler && index < self->aggregate_count; index++) {
        if (self->domain->aggregates[index] != aggregate)
            continue;
        //  a domain command is in the aggregate's table; a system one not
        size_t rows = (index + 1 < self->aggregate_count ? self->first[index + 1] : self->rows)
                    - self->first[index];
        size_t domain_rows = rows - S_SYSTEM_COUNT;
        if (handler >= aggregate->commands && handler < aggregate->commands + domain_rows)
            row = self->first[index] + (size_t) (handler - aggregate->commands);
        for (size_t system = 0; system < S_SYSTEM_COUNT; system++)
            if (handler == s_system_commands[system])
                row = self->first[index] + domain_rows + system;
        break;
    }
    if ((unsigned) outcome >= ZCQ_OUTCOME_COUNT)
        outcome = ZCQ_OUTCOME_INTERNAL;
    s_bump (&self->counts[row * ZCQ_OUTCOME_COUNT + outcome], 1);
    if (latency_ns < 0)
        latency_ns = 0;
    size_t bucket = 0;
    while (bucket < ZCQ_LATENCY_BUCKETS && latency_ns > s_bounds_ns[bucket])
        bucket++;
    s_bump (&self->latency_ns, (uint64_t) latency_ns);
    s_bump (&self->buckets[bucket], 1);
}

void
zcq_metrics_label (FILE *out, const char *value)
{
    for (; *value; value++) {
        if (*value == '\\' || *value == '"')
            fputc ('\\', out);
        if (*value == '\n')
            fputs ("\\n", out);
        else
            fputc (*value, out);
    }
}

static void
s_write_row (const zcq_metrics_t *self, FILE *out, size_t row, const char *aggregate,
             const char *type)
{
    for (int outcome = 0; outcome < ZCQ_OUTCOME_COUNT; outcome++) {
        fputs ("zcqrs_commands_total{aggregate=\"", out);
        zcq_metrics_label (out, aggregate);
        fputs ("\",type=\"", out);
        zcq_metrics_label (out, type);
        fprintf (out, "\",outcome=\"%s\"} %" PRIu64 "\n", s_outcome_names[outcome],
                 (uint64_t) atomic_load_explicit (&self->counts[row * ZCQ_OUTCOME_COUNT + outcome],
                                                  memory_order_relaxed));
    }
}

void
zcq_metrics_write (const zcq_metrics_t *self, FILE *out)
{
    fputs ("# HELP zcqrs_commands_total Commands answered, by aggregate type, command type and "
           "outcome (aggregate and type empty: not the domain's).\n"
           "# TYPE zcqrs_commands_total counter\n",
           out);
    s_write_row (self, out, 0, "", "");
    for (size_t index = 0; index < self->aggregate_count; index++) {
        const zcq_aggregate_def_t *aggregate = self->domain->aggregates[index];
        size_t row = self->first[index];
        for (const zcq_command_def_t *command = aggregate->commands; command && command->type;
             command++)
            s_write_row (self, out, row++, aggregate->name, command->type);
        for (size_t system = 0; system < S_SYSTEM_COUNT; system++)
            s_write_row (self, out, row++, aggregate->name, s_system_commands[system]->type);
    }
    fputs ("# HELP zcqrs_command_ack_seconds Time from a command's arrival to its reply.\n"
           "# TYPE zcqrs_command_ack_seconds histogram\n",
           out);
    uint64_t cumulative = 0;
    for (int bucket = 0; bucket <= ZCQ_LATENCY_BUCKETS; bucket++) {
        cumulative += atomic_load_explicit (&self->buckets[bucket], memory_order_relaxed);
        fprintf (out, "zcqrs_command_ack_seconds_bucket{le=\"%s\"} %" PRIu64 "\n",
                 bucket < ZCQ_LATENCY_BUCKETS ? s_bounds_text[bucket] : "+Inf", cumulative);
    }
    uint64_t sum_ns = atomic_load_explicit (&self->latency_ns, memory_order_relaxed);
    fprintf (out, "zcqrs_command_ack_seconds_sum %" PRIu64 ".%09" PRIu64 "\n", sum_ns / 1000000000u,
             sum_ns % 1000000000u);
    fprintf (out, "zcqrs_command_ack_seconds_count %" PRIu64 "\n", cumulative);
}

int64_t
zcq_mono_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000000 + now.tv_nsec;
}
