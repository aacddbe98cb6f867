/*  zcq_node.h: a zcqrs node, all its actors wired together, in-process.

        #include "bank.h"              //  examples/bank: zcq_bank_domain ()

        zcq_config_t *config = zcq_config_new ();
        char error[256];
        zcq_config_set (config, "data", "/var/lib/zcqrs", error, sizeof error);
        zcq_node_t *node;
        if (zcq_node_start (&node, config, zcq_bank_domain (), error, sizeof error) != ZCQ_OK)
            fprintf (stderr, "node did not start: %s\n", error);
        else {
            printf ("commands on %s\n", zcq_node_endpoint (node, ZCQ_ENDPOINT_COMMAND));
            ...
            zcq_node_destroy (&node);  //  graceful stop
        }
        zcq_config_destroy (&config);  //  the node keeps a copy

    Endpoints may use port 0 or `*` (tcp://127.0.0.1:*): the node reports
    the endpoints it actually bound.
*/
#ifndef ZCQ_NODE_H_INCLUDED
#define ZCQ_NODE_H_INCLUDED

#include "zcq_config.h"
#include "zcq_domain.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_node_t zcq_node_t;

typedef enum {
    ZCQ_ENDPOINT_COMMAND,
    ZCQ_ENDPOINT_EVENTS,
    ZCQ_ENDPOINT_QUERY,
} zcq_endpoint_t;

//  Open the store, start every actor and bind the endpoints. On failure
//  everything started is stopped again, the error returned and a reason
//  written into error[size].
ZCQ_EXPORT zcq_err_t zcq_node_start (zcq_node_t **node_p, const zcq_config_t *config,
                                     const zcq_domain_t *domain, char *error, size_t size);
//  Stop taking commands (new ones get `unavailable`) and return once every
//  command in flight is committed and answered: the head is final then,
//  and queries are still answered. Returns how many commands were still in
//  flight when waiting gave up (0 = clean). zcq_node_destroy drains too.
ZCQ_EXPORT int zcq_node_drain (zcq_node_t *self);
//  Stop taking commands, finish the commits in flight, stop every actor and
//  close the store. Safe on NULL; nulls the pointer.
ZCQ_EXPORT void zcq_node_destroy (zcq_node_t **self_p);
//  Run a retention pass now (the aggregate types' max_count and
//  max_age_s) and wait for it: the number of streams it truncated, or -1
//  when the node runs no retention (no aggregate type has one, or the
//  node is clustered).
ZCQ_EXPORT int zcq_node_retain (zcq_node_t *self);
//  The endpoint actually bound (after port resolution).
ZCQ_EXPORT const char *zcq_node_endpoint (const zcq_node_t *self, zcq_endpoint_t which);
ZCQ_EXPORT const char *zcq_node_id (const zcq_node_t *self);
//  The HTTP endpoint's address bound (HOST:PORT, setting `http`), serving
//  /metrics; NULL when the node has none.
ZCQ_EXPORT const char *zcq_node_http (const zcq_node_t *self);
//  The node's log head: the position of the last durable event.
ZCQ_EXPORT uint64_t zcq_node_head (const zcq_node_t *self);

#ifdef __cplusplus
}
#endif
#endif
