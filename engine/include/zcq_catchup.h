/*  zcq_catchup.h: a catch-up subscription to a node, for programs that
    keep their own read models in another process or on another machine.

    It reads the log from a position with `read` on the query endpoint,
    then follows the events endpoint; when a live event shows a gap (PUB
    dropped something) or a heartbeat shows a head beyond what it has seen,
    it reads the missing range from the log. Each event is delivered once,
    in position order.

        zcq_catchup_t *feed = zcq_catchup_new (query, events, 1, NULL);
        const zcq_event_t *event;
        while (zcq_catchup_next (feed, 1000, &event) == ZCQ_OK)
            printf ("%llu %s\n", zcq_event_position (event), zcq_event_type (event));
*/
#ifndef ZCQ_CATCHUP_H_INCLUDED
#define ZCQ_CATCHUP_H_INCLUDED

#include "zcq_domain.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_catchup_t zcq_catchup_t;

//  Subscribe from position `from` (>= 1). topic, when not NULL, keeps only
//  events whose `<aggregate>/<key>/` starts with it. NULL on failure.
ZCQ_EXPORT zcq_catchup_t *zcq_catchup_new (const char *query_endpoint, const char *events_endpoint,
                                           uint64_t from, const char *topic);
ZCQ_EXPORT void zcq_catchup_destroy (zcq_catchup_t **self_p);
//  The next event, waiting up to timeout_ms. *event lives until the next
//  call. ZCQ_TIMEOUT when none came; ZCQ_UNAVAILABLE when the node did not
//  answer a read; ZCQ_CORRUPT when it sent something that is not an event.
ZCQ_EXPORT zcq_err_t zcq_catchup_next (zcq_catchup_t *self, int timeout_ms,
                                       const zcq_event_t **event);
//  The last position examined (delivered or filtered out).
ZCQ_EXPORT uint64_t zcq_catchup_position (const zcq_catchup_t *self);
//  The highest head the node has reported.
ZCQ_EXPORT uint64_t zcq_catchup_head (const zcq_catchup_t *self);

#ifdef __cplusplus
}
#endif
#endif
