/*  zcq_metrics.h: the command counters a node keeps for its /metrics
    endpoint (actors/http.c, docs/operations.md), beside the plain counters
    of zcq_stats_t: commands by aggregate, type and outcome, and the
    latency from a command's arrival to its reply.

    The table is fixed when the node starts, sized from its domain: one row
    per (aggregate, command type) and a first row, `other`, for commands
    whose aggregate or type is not the domain's (their names come from the
    network and never become labels). Counting a command costs no
    allocation and no lock: a row index, an outcome column and a bucket
    found by comparing integers.

    THREAD SAFETY: the command router's thread is the only writer of a
    table (every reply leaves from there); the counters are relaxed
    atomics that any thread (the HTTP endpoint's) reads at scrape time.
    A reader may see a command in its outcome row before it sees it in the
    latency histogram, never the histogram's buckets and count apart.
*/
#ifndef ZCQ_METRICS_H_INCLUDED
#define ZCQ_METRICS_H_INCLUDED

#include "zcq_internal.h"
#include <stdatomic.h>
#include <stdio.h>

//  The outcome label of a reply: a duplicate is an ok answered from the
//  id's stored result; timeout comes from a command forwarded to another
//  group's leader that did not answer in time.
typedef enum {
    ZCQ_OUTCOME_OK,
    ZCQ_OUTCOME_DUPLICATE,
    ZCQ_OUTCOME_REJECTED,
    ZCQ_OUTCOME_CONFLICT,
    ZCQ_OUTCOME_INVALID,
    ZCQ_OUTCOME_UNKNOWN,
    ZCQ_OUTCOME_UNAVAILABLE,
    ZCQ_OUTCOME_TIMEOUT,
    ZCQ_OUTCOME_INTERNAL,
    ZCQ_OUTCOME_COUNT
} zcq_outcome_t;

//  The upper bounds of the latency buckets, in nanoseconds (0.1 ms to 10 s);
//  a last bucket takes the rest (+Inf).
#define ZCQ_LATENCY_BUCKETS 16

typedef struct zcq_metrics_t zcq_metrics_t;

//  A table for domain's aggregates and command types; NULL when out of
//  memory.
zcq_metrics_t *zcq_metrics_new (const zcq_domain_t *domain);
void zcq_metrics_destroy (zcq_metrics_t **self_p);

//  The label of an outcome, and the outcome of a reply.
const char *zcq_outcome_name (zcq_outcome_t outcome);
zcq_outcome_t zcq_outcome_of (zcq_err_t err, bool duplicate);

//  Count one reply: aggregate and handler as the command router found
//  them (either NULL: the `other` row), its outcome and how long it took
//  from arrival to reply, in ns. One writer (see the top).
void zcq_metrics_command (zcq_metrics_t *self, const zcq_aggregate_def_t *aggregate,
                          const zcq_command_def_t *handler, zcq_outcome_t outcome,
                          int64_t latency_ns);

//  Write the table in the Prometheus text format (0.0.4):
//  zcqrs_commands_total{aggregate,type,outcome} and the histogram
//  zcqrs_command_ack_seconds, with their HELP and TYPE lines.
void zcq_metrics_write (const zcq_metrics_t *self, FILE *out);

//  Write a label value with the text format's escapes (\\, \", \n).
void zcq_metrics_label (FILE *out, const char *value);

//  A monotonic clock in ns, for latencies.
int64_t zcq_mono_ns (void);

#endif
