/*  baseline_zmq.c: the physical limit of the transport: a C echo server on
    a ROUTER over tcp loopback, driven by the same load driver, with the
    same command bytes, window and client as the commands to a node.

    The server does nothing but send every message back, frames and all,
    so the figure is what ZeroMQ DEALER/ROUTER round trips cost on this
    machine: a node can only be slower.
*/
#include "bench.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <zmq.h>

typedef struct {
    void *context;
    void *router;
    atomic_bool stop;
    char endpoint[256];
} s_echo_t;

//  Echo every message back until told to stop (checked every 100 ms).
static void *
s_echo_run (void *arg)
{
    s_echo_t *self = arg;
    prctl (PR_SET_NAME, "bench-echo", 0, 0, 0);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (!atomic_load (&self->stop)) {
        if (zmq_msg_recv (&frame, self->router, 0) < 0)
            continue; //  the 100 ms receive timeout
        int more;
        do {
            more = zmq_msg_more (&frame);
            zmq_msg_send (&frame, self->router, more ? ZMQ_SNDMORE : 0);
            if (more)
                zmq_msg_recv (&frame, self->router, 0);
        } while (more);
    }
    zmq_msg_close (&frame);
    return NULL;
}

json_t *
bench_baseline_zmq (const bench_load_t *template)
{
    s_echo_t echo = { .context = zmq_ctx_new () };
    atomic_init (&echo.stop, false);
    echo.router = echo.context ? zmq_socket (echo.context, ZMQ_ROUTER) : NULL;
    if (!echo.router) {
        if (echo.context)
            zmq_ctx_term (echo.context);
        return NULL;
    }
    int zero = 0, timeout = 100;
    zmq_setsockopt (echo.router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (echo.router, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt (echo.router, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt (echo.router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    size_t size = sizeof echo.endpoint;
    json_t *result = NULL;
    pthread_t thread;
    if (zmq_bind (echo.router, "tcp://127.0.0.1:*") == 0
        && zmq_getsockopt (echo.router, ZMQ_LAST_ENDPOINT, echo.endpoint, &size) == 0
        && pthread_create (&thread, NULL, s_echo_run, &echo) == 0) {
        bench_load_t load = *template;
        load.command_endpoint = echo.endpoint;
        load.query_endpoint = NULL;
        load.echo = true;
        load.query_share = 0;
        load.probe_rate = 0;
        result = bench_load_run (&load);
        atomic_store (&echo.stop, true);
        pthread_join (thread, NULL);
    }
    zmq_close (echo.router);
    zmq_ctx_term (echo.context);
    return result;
}
