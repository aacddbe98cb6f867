/*  zcq_http.h: a node's HTTP endpoint (http.c), which serves /metrics in
    the Prometheus text format (docs/operations.md). The node starts it
    last, when the setting `http` names an address, and stops it first.
*/
#ifndef ZCQ_HTTP_H_INCLUDED
#define ZCQ_HTTP_H_INCLUDED

#include "zcq_read.h"

typedef struct zcq_http_t zcq_http_t;

//  Bind address (HOST:PORT) and serve it from a thread of libmicrohttpd's.
//  views (view_count of them) are the reader's, read at each scrape; they
//  and env must outlive the endpoint. Fails, with the reason in error,
//  when the address does not resolve or cannot be bound.
zcq_err_t zcq_http_start (zcq_http_t **self_p, const zcq_node_env_t *env, const char *address,
                          const zcq_view_info_t *views, size_t view_count, char *error,
                          size_t size);
//  Stop serving: a scrape in progress ends first.
void zcq_http_destroy (zcq_http_t **self_p);
//  The address bound, as HOST:PORT with the port the system chose for 0.
const char *zcq_http_address (const zcq_http_t *self);

#endif
