/*  load.c: the load drivers of zcqrs-bench, and the projection lag sampler.

    A client is one thread with a DEALER to the command endpoint and, when
    the load has queries or read-your-writes probes, a DEALER to the query
    endpoint, in the harness's own ZeroMQ context (the node in the same
    process keeps its own), as a separate client process would have.

    DESIGN
    1.  Every request gets a sequence number; its slot in a ring of 2^17
        remembers its kind, its intended send time and what a probe needs.
        Commands carry the number in their id (`<tag>-<client>-<seq>`),
        queries as `rid`, so replies in any order find their slot. A slot
        still in use stalls the sender (never overwritten).
    2.  Closed loop: keep `window` commands and queries outstanding; the
        intended send time is the send time.
    3.  Open loop: request i is due at start + i / rate. The sender sends
        whatever is due when it wakes, and a request's latency runs from
        its due time, not from when it went out, so a stalled server is
        charged for the whole wait of every request it delayed (no
        coordinated omission). Waiting uses ppoll on the sockets' ZMQ_FD
        with nanosecond timeouts and a 1 us timer slack, not zmq_poll's
        milliseconds. The sender wakes at most once per S_PACING_NS for
        what is due (it shares the machine's cores with the node, and a
        wake per request at tens of thousands a second costs a good part
        of a core); the wait is charged to the requests, since their
        latency runs from their due time.
    4.  Requests due in the measured window are measured; replies received
        in it are the throughput. After the window the driver stops
        sending and waits up to S_DRAIN_S for the rest; a measured request
        still unanswered then is recorded with the time it has waited (a
        lower bound) and counted as unanswered; in the open loop, a request
        due in the window that the client never got to send likewise
        (unsent).
    5.  Read-your-writes: for a share of successful acks (probe_rate per
        second), a `get` of the same account with min_position = the ack's
        position; its latency runs from the ack's arrival to the reply, and
        a row whose version is below the acked version counts as stale.
    6.  A load with several command endpoints (a cluster) holds one DEALER
        per endpoint in each client, and the command to account k goes out
        on routes[k]'s; replies come back on the socket the command went
        out on and find their slot by id as ever. The routes are computed
        once, before the load (zcqrs-bench's cluster section), so routing
        costs the client one array lookup per command.
*/
#include "bench.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_RING_BITS 17
#define S_RING      (1u << S_RING_BITS)
#define S_MASK      (S_RING - 1)
#define S_DRAIN_S   10.0
#define S_BURST     256    //  requests sent per pass before looking at replies
#define S_PACING_NS 100000 //  open loop: one sending wake per 100 us at most
#define S_PROBES    1024   //  probes outstanding at most, per client
#define S_ERRORS    (ZCQ_NOMEM + 1)
#define S_ENDPOINTS 16 //  command endpoints of a load at most

typedef enum { S_FREE = 0, S_COMMAND, S_QUERY, S_PROBE } s_kind_t;

typedef struct {
    uint64_t seq;
    uint64_t intended_ns; //  DESIGN 2, 3; probes: when the ack arrived
    uint64_t version;     //  probe: the version the ack reported
    uint32_t key;
    uint8_t kind;
    bool measured;
} s_slot_t;

typedef struct {
    const bench_load_t *load;
    int client;
    void *context;
    void *commands[S_ENDPOINTS]; //  one DEALER per command endpoint (DESIGN 6)
    int command_sockets;
    void *queries;
    s_slot_t *ring;
    uint64_t next_seq;
    uint64_t outstanding; //  commands and queries (the window)
    uint64_t probes_outstanding;
    zcq_writer_t *writer;
    zcq_writer_t *data;
    zcq_doc_t *doc;
    uint64_t rng;
    uint64_t start_ns, measure_ns, end_ns;
    uint64_t op_index; //  open loop: next request due
    uint64_t paced_ns; //  open loop: the last sending wake
    uint64_t next_open, opens_total;
    uint64_t ops_sent, ops_total; //  ops_total 0 = no limit
    uint64_t probes_sent;
    uint64_t last_reply_ns;
    //  figures
    bench_hist_t *ack, *query, *ryw;
    uint64_t commands_ok, queries_ok;     //  received in the measured window
    uint64_t commands_ok_all;             //  every ok command reply
    uint64_t commands_sent, queries_sent; //  in the measured window
    uint64_t probes_ok, ryw_stale, probe_errors;
    uint64_t command_errors[S_ERRORS];
    uint64_t query_errors[S_ERRORS];
    uint64_t unanswered, unsent, stalls, bad_replies;
    bool failed;
} s_client_t;

//  --------------------------------------------------------------------------
//  Clocks and logging

uint64_t
bench_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000000000ull + (uint64_t) now.tv_nsec;
}

int64_t
bench_wall_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

void
bench_log (const char *format, ...)
{
    static uint64_t started;
    if (!started)
        started = bench_now_ns ();
    char line[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (line, sizeof line, format, args);
    va_end (args);
    fprintf (stderr, "[%7.1fs] %s\n", (double) (bench_now_ns () - started) / 1e9, line);
}

json_t *
bench_hist_json (const bench_hist_t *hist)
{
    json_t *object = json_object ();
    json_object_set_new (object, "count", json_integer ((json_int_t) bench_hist_count (hist)));
    if (bench_hist_count (hist) == 0)
        return object;
    static const struct {
        const char *name;
        double percentile;
    } points[] = { { "p50", 50.0 }, { "p90", 90.0 }, { "p99", 99.0 }, { "p999", 99.9 } };
    for (size_t index = 0; index < sizeof points / sizeof points[0]; index++)
        json_object_set_new (
            object, points[index].name,
            json_real (bench_hist_percentile (hist, points[index].percentile) / 1000.0));
    json_object_set_new (object, "max", json_real (bench_hist_max (hist) / 1000.0));
    json_object_set_new (object, "mean", json_real (bench_hist_mean (hist) / 1000.0));
    return object;
}

void
bench_load_defaults (bench_load_t *load)
{
    *load = (bench_load_t) { .loop = BENCH_CLOSED_LOOP,
                             .ops = BENCH_OPS_DEPOSIT,
                             .clients = 1,
                             .window = 256,
                             .rate = 10000,
                             .warmup_s = 1.0,
                             .seconds = 5.0,
                             .accounts = 100000,
                             .tag = "bench" };
}

//  --------------------------------------------------------------------------
//  A small fast random generator (xorshift64*), one per client.

static uint64_t
s_random (s_client_t *self)
{
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return self->rng * 0x2545F4914F6CDD1Dull;
}

static double
s_uniform (s_client_t *self)
{
    return (double) (s_random (self) >> 11) / 9007199254740992.0;
}

//  --------------------------------------------------------------------------
//  Sending

static void *
s_dealer (s_client_t *self, const char *endpoint)
{
    void *socket = zmq_socket (self->context, ZMQ_DEALER);
    if (!socket)
        return NULL;
    int zero = 0;
    zmq_setsockopt (socket, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_connect (socket, endpoint) != 0) {
        zmq_close (socket);
        return NULL;
    }
    return socket;
}

//  Send the writer's bytes as [empty][body], the REQ-style envelope.
static void
s_send (void *socket, zcq_writer_t *writer)
{
    zmq_send (socket, "", 0, ZMQ_SNDMORE);
    zmq_send (socket, zcq_writer_data (writer), zcq_writer_size (writer), 0);
}

//  Claim the slot of the next sequence number; NULL when it is still in
//  use (DESIGN 1).
static s_slot_t *
s_claim (s_client_t *self, s_kind_t kind, uint32_t key, uint64_t intended_ns)
{
    s_slot_t *slot = &self->ring[self->next_seq & S_MASK];
    if (slot->kind != S_FREE) {
        self->stalls++;
        return NULL;
    }
    *slot
        = (s_slot_t) { .seq = self->next_seq,
                       .intended_ns = intended_ns,
                       .key = key,
                       .kind = (uint8_t) kind,
                       .measured = intended_ns >= self->measure_ns && intended_ns < self->end_ns };
    self->next_seq++;
    return slot;
}

static bool
s_send_command (s_client_t *self, bool open, uint32_t key, uint64_t intended_ns)
{
    s_slot_t *slot = s_claim (self, S_COMMAND, key, intended_ns);
    if (!slot)
        return false;
    char id[64], key_text[16], owner[32];
    snprintf (id, sizeof id, "%s-%d-%llu", self->load->tag, self->client,
              (unsigned long long) slot->seq);
    snprintf (key_text, sizeof key_text, "%u", key);
    zcq_writer_reset (self->data);
    if (open) {
        snprintf (owner, sizeof owner, "owner-%u", key % 1000);
        zcq_writer_map (self->data, 2);
        zcq_writer_str (self->data, "owner");
        zcq_writer_str (self->data, owner);
        zcq_writer_str (self->data, "overdraft");
        zcq_writer_int (self->data, 0);
    }
    else {
        zcq_writer_map (self->data, 1);
        zcq_writer_str (self->data, "amount");
        zcq_writer_int (self->data, 1 + (int64_t) (key % 100));
    }
    zcq_command_req_t command = { .id = id,
                                  .aggregate = "account",
                                  .key = key_text,
                                  .type = open ? "open" : "deposit",
                                  .data = zcq_writer_data (self->data),
                                  .data_len = zcq_writer_size (self->data) };
    zcq_writer_reset (self->writer);
    zcq_command_encode (self->writer, &command);
    int route = self->load->routes ? self->load->routes[self->load->hot_key ? 0 : key] : 0;
    s_send (self->commands[route], self->writer);
    self->outstanding++;
    if (slot->measured)
        self->commands_sent++;
    return true;
}

//  A `get` on the accounts view; a probe waits for min_position.
static bool
s_send_query (s_client_t *self, s_kind_t kind, uint32_t key, uint64_t intended_ns,
              uint64_t min_position, uint64_t version)
{
    s_slot_t *slot = s_claim (self, kind, key, intended_ns);
    if (!slot)
        return false;
    char key_text[16];
    snprintf (key_text, sizeof key_text, "%u", key);
    zcq_writer_t *writer = self->writer;
    zcq_writer_reset (writer);
    zcq_writer_map (writer, kind == S_PROBE ? 6 : 4);
    zcq_writer_str (writer, "op");
    zcq_writer_str (writer, "get");
    zcq_writer_str (writer, "view");
    zcq_writer_str (writer, "accounts");
    zcq_writer_str (writer, "key");
    zcq_writer_str (writer, key_text);
    zcq_writer_str (writer, "rid");
    zcq_writer_uint (writer, slot->seq);
    if (kind == S_PROBE) {
        zcq_writer_str (writer, "min_position");
        zcq_writer_uint (writer, min_position);
        zcq_writer_str (writer, "timeout_ms");
        zcq_writer_int (writer, 10000);
        slot->version = version;
        self->probes_outstanding++;
        self->probes_sent++;
    }
    else {
        self->outstanding++;
        if (slot->measured)
            self->queries_sent++;
    }
    s_send (self->queries, writer);
    return true;
}

//  A pass over the accounts (opening them, or one deposit each), rather
//  than a timed load.
static bool
s_is_pass (const bench_load_t *load)
{
    return load->ops == BENCH_OPS_OPEN || load->ops == BENCH_OPS_TOUCH;
}

//  One operation of the load, due at intended_ns.
static bool
s_send_operation (s_client_t *self, uint64_t intended_ns)
{
    const bench_load_t *load = self->load;
    if (s_is_pass (load)) {
        uint32_t key = (uint32_t) (self->next_open * (uint64_t) load->clients + self->client);
        if (!s_send_command (self, load->ops == BENCH_OPS_OPEN, key, intended_ns))
            return false;
        self->next_open++;
        return true;
    }
    uint32_t key = load->hot_key ? 0 : (uint32_t) (s_random (self) % load->accounts);
    bool sent;
    if (self->queries && load->query_share > 0 && s_uniform (self) < load->query_share)
        sent = s_send_query (self, S_QUERY, key, intended_ns, 0, 0);
    else
        sent = s_send_command (self, false, key, intended_ns);
    if (sent)
        self->ops_sent++;
    return sent;
}

//  True while the load still has requests to send.
static bool
s_sending (s_client_t *self, uint64_t now)
{
    if (s_is_pass (self->load))
        return self->next_open < self->opens_total;
    if (self->ops_total && self->ops_sent >= self->ops_total)
        return false;
    return now < self->end_ns;
}

//  Send what is due: up to the window (closed loop) or every request whose
//  time has come (open loop), at most S_BURST per pass.
static void
s_fill (s_client_t *self)
{
    const bench_load_t *load = self->load;
    for (int sent = 0; sent < S_BURST; sent++) {
        uint64_t now = bench_now_ns ();
        if (!s_sending (self, now))
            return;
        if (load->loop == BENCH_CLOSED_LOOP) {
            if (self->outstanding >= (uint64_t) load->window || !s_send_operation (self, now))
                return;
        }
        else {
            if (sent == 0 && now < self->paced_ns + S_PACING_NS)
                return; //  DESIGN 3
            double interval = 1e9 * load->clients / load->rate;
            uint64_t due = self->start_ns + (uint64_t) (self->op_index * interval);
            if (due > now || due >= self->end_ns || !s_send_operation (self, due))
                return;
            if (sent == 0)
                self->paced_ns = now;
            self->op_index++;
        }
    }
}

//  --------------------------------------------------------------------------
//  Receiving

//  The next reply's body (the last frame) without waiting; false when none.
static bool
s_recv_body (void *socket, zmq_msg_t *body)
{
    while (true) {
        if (zmq_msg_recv (body, socket, ZMQ_DONTWAIT) < 0)
            return false;
        if (!zmq_msg_more (body))
            return true;
    }
}

//  The sequence number at the end of a command id `<tag>-<client>-<seq>`.
static bool
s_id_seq (const zcq_value_t *id, uint64_t *seq)
{
    const char *text;
    size_t len;
    if (!zcq_value_str (id, &text, &len) || len == 0)
        return false;
    size_t start = len;
    while (start > 0 && text[start - 1] >= '0' && text[start - 1] <= '9')
        start--;
    if (start == len)
        return false;
    uint64_t value = 0;
    for (size_t index = start; index < len; index++)
        value = value * 10 + (uint64_t) (text[index] - '0');
    *seq = value;
    return true;
}

static s_slot_t *
s_slot_of (s_client_t *self, uint64_t seq, s_kind_t kind)
{
    s_slot_t *slot = &self->ring[seq & S_MASK];
    if (slot->kind == S_FREE || slot->seq != seq)
        return NULL;
    if (kind == S_QUERY ? slot->kind == S_COMMAND : slot->kind != S_COMMAND)
        return NULL;
    return slot;
}

static bool
s_in_window (s_client_t *self, uint64_t now)
{
    if (s_is_pass (self->load))
        return true;
    return now >= self->measure_ns && now < self->end_ns;
}

static void
s_handle_command_reply (s_client_t *self, const zcq_value_t *reply, uint64_t now)
{
    uint64_t seq;
    s_slot_t *slot = NULL;
    if (s_id_seq (zcq_value_get (reply, "id"), &seq))
        slot = s_slot_of (self, seq, S_COMMAND);
    if (!slot) {
        self->bad_replies++;
        return;
    }
    zcq_err_t status = self->load->echo ? ZCQ_OK : zcq_reply_status (reply);
    if (status == ZCQ_OK) {
        self->commands_ok_all++;
        if (s_in_window (self, now))
            self->commands_ok++;
        if (slot->measured)
            bench_hist_record (self->ack, now - slot->intended_ns);
        //  DESIGN 5: a read-your-writes probe for a share of the acks
        uint64_t position = 0, version = 0;
        double allowed
            = (double) (now - self->start_ns) / 1e9 * self->load->probe_rate / self->load->clients;
        if (self->queries && slot->measured && self->load->probe_rate > 0
            && (double) self->probes_sent < allowed && self->probes_outstanding < S_PROBES
            && zcq_value_uint (zcq_value_get (reply, "position"), &position)
            && zcq_value_uint (zcq_value_get (reply, "version"), &version))
            s_send_query (self, S_PROBE, slot->key, now, position, version);
    }
    else if (s_in_window (self, now))
        self->command_errors[status < S_ERRORS ? status : ZCQ_INTERNAL]++;
    slot->kind = S_FREE;
    self->outstanding--;
    self->last_reply_ns = now;
}

static void
s_handle_query_reply (s_client_t *self, const zcq_value_t *reply, uint64_t now)
{
    uint64_t seq;
    s_slot_t *slot = NULL;
    if (zcq_value_uint (zcq_value_get (reply, "rid"), &seq))
        slot = s_slot_of (self, seq, S_QUERY);
    if (!slot) {
        self->bad_replies++;
        return;
    }
    zcq_err_t status = zcq_reply_status (reply);
    if (slot->kind == S_PROBE) {
        if (slot->measured) {
            bench_hist_record (self->ryw, now - slot->intended_ns);
            if (status == ZCQ_OK) {
                self->probes_ok++;
                int64_t version = zcq_value_get_int (zcq_value_get (reply, "row"), "version", -1);
                if (version < (int64_t) slot->version)
                    self->ryw_stale++;
            }
            else
                self->probe_errors++;
        }
        self->probes_outstanding--;
    }
    else {
        if (status == ZCQ_OK && s_in_window (self, now))
            self->queries_ok++;
        else if (status != ZCQ_OK && s_in_window (self, now))
            self->query_errors[status < S_ERRORS ? status : ZCQ_INTERNAL]++;
        if (slot->measured && status == ZCQ_OK)
            bench_hist_record (self->query, now - slot->intended_ns);
        self->outstanding--;
    }
    slot->kind = S_FREE;
}

//  The client's sockets: the command DEALERs, then the query one if any.
static int
s_sockets (s_client_t *self, void **sockets)
{
    int count = 0;
    for (int index = 0; index < self->command_sockets; index++)
        sockets[count++] = self->commands[index];
    if (self->queries)
        sockets[count++] = self->queries;
    return count;
}

//  Take every reply that has arrived, without waiting.
static void
s_drain (s_client_t *self)
{
    zmq_msg_t body;
    zmq_msg_init (&body);
    void *sockets[S_ENDPOINTS + 1];
    int count = s_sockets (self, sockets);
    for (int which = 0; which < count; which++) {
        for (int taken = 0; taken < 4 * S_BURST && s_recv_body (sockets[which], &body); taken++) {
            uint64_t now = bench_now_ns ();
            if (zcq_doc_decode (self->doc, zmq_msg_data (&body), zmq_msg_size (&body), NULL)
                != ZCQ_OK) {
                self->bad_replies++;
                continue;
            }
            const zcq_value_t *reply = zcq_doc_root (self->doc);
            if (sockets[which] != self->queries)
                s_handle_command_reply (self, reply, now);
            else
                s_handle_query_reply (self, reply, now);
        }
    }
    zmq_msg_close (&body);
}

//  Wait until a reply is ready or deadline_ns (DESIGN 3).
static void
s_wait (s_client_t *self, uint64_t deadline_ns)
{
    void *sockets[S_ENDPOINTS + 1];
    int total = s_sockets (self, sockets);
    struct pollfd fds[S_ENDPOINTS + 1];
    nfds_t count = 0;
    for (int which = 0; which < total; which++) {
        int events = 0;
        size_t size = sizeof events;
        zmq_getsockopt (sockets[which], ZMQ_EVENTS, &events, &size);
        if (events & ZMQ_POLLIN)
            return;
        int fd;
        size = sizeof fd;
        zmq_getsockopt (sockets[which], ZMQ_FD, &fd, &size);
        fds[count++] = (struct pollfd) { .fd = fd, .events = POLLIN };
    }
    uint64_t now = bench_now_ns ();
    if (deadline_ns <= now)
        return;
    uint64_t wait = deadline_ns - now;
    if (wait > 100000000ull)
        wait = 100000000ull;
    struct timespec timeout
        = { .tv_sec = (time_t) (wait / 1000000000ull), .tv_nsec = (long) (wait % 1000000000ull) };
    ppoll (fds, count, &timeout, NULL);
}

//  --------------------------------------------------------------------------
//  Hiccups (as jHiccup measures them): a thread that sleeps 1 ms at a time
//  and records how much longer than that it was away. What it sees, every
//  thread of the process (node and clients) may have suffered too: time
//  taken by the scheduler, other processes or the hypervisor, not by zcqrs.

typedef struct {
    pthread_t thread;
    atomic_bool stop;
    bench_hist_t *hist;
    uint64_t measure_ns;
} s_hiccup_t;

static void *
s_hiccup_run (void *arg)
{
    s_hiccup_t *self = arg;
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    prctl (PR_SET_NAME, "bench-hiccup", 0, 0, 0);
    struct timespec pause = { 0, 1000000 };
    while (!atomic_load (&self->stop)) {
        uint64_t before = bench_now_ns ();
        nanosleep (&pause, NULL);
        uint64_t after = bench_now_ns ();
        if (before >= self->measure_ns)
            bench_hist_record (self->hist, after - before > 1000000 ? after - before - 1000000 : 0);
    }
    return NULL;
}

//  The disk's hiccups: a thread that writes 4 KiB to a file next to the
//  data dirs every 10 ms (what a RocksDB WAL append meets: the page cache,
//  writeback throttling) and fdatasyncs it every 100 ms (what an fsync
//  commit meets). A stall of the node's log that these also saw is the
//  disk's, not zcqrs's.

typedef struct {
    pthread_t thread;
    atomic_bool stop;
    int fd;
    bench_hist_t *write, *sync;
    uint64_t measure_ns;
} s_io_probe_t;

static void *
s_io_probe_run (void *arg)
{
    s_io_probe_t *self = arg;
    prctl (PR_SET_NAME, "bench-io", 0, 0, 0);
    char block[4096];
    memset (block, 'z', sizeof block);
    struct timespec pause = { 0, 10000000 };
    for (uint64_t tick = 0; !atomic_load (&self->stop); tick++) {
        uint64_t before = bench_now_ns ();
        ssize_t written = pwrite (self->fd, block, sizeof block, (off_t) (tick % 256) * 4096);
        uint64_t after = bench_now_ns ();
        if (written > 0 && before >= self->measure_ns)
            bench_hist_record (self->write, after - before);
        if (tick % 10 == 9) {
            before = bench_now_ns ();
            int synced = fdatasync (self->fd);
            after = bench_now_ns ();
            if (synced == 0 && before >= self->measure_ns)
                bench_hist_record (self->sync, after - before);
        }
        nanosleep (&pause, NULL);
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  One client thread

static void *
s_client_run (void *arg)
{
    s_client_t *self = arg;
    const bench_load_t *load = self->load;
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    prctl (PR_SET_NAME, "bench-client", 0, 0, 0);
    bench_alloc_uncounted (); //  mallocs/op counts the node's
    uint64_t drain_deadline = 0;
    while (true) {
        s_drain (self);
        uint64_t now = bench_now_ns ();
        bool sending = s_sending (self, now);
        if (sending)
            s_fill (self);
        else {
            if (!drain_deadline)
                drain_deadline = now + (uint64_t) (S_DRAIN_S * 1e9);
            if ((self->outstanding == 0 && self->probes_outstanding == 0) || now >= drain_deadline)
                break;
        }
        now = bench_now_ns ();
        uint64_t deadline = sending ? self->end_ns : drain_deadline;
        if (sending && s_is_pass (load))
            deadline = now + 100000000ull;
        if (sending && load->loop == BENCH_CLOSED_LOOP
            && self->outstanding < (uint64_t) load->window
            && self->ring[self->next_seq & S_MASK].kind == S_FREE)
            deadline = now; //  room in the window: go round and send
        if (sending && load->loop == BENCH_OPEN_LOOP) {
            double interval = 1e9 * load->clients / load->rate;
            uint64_t due = self->start_ns + (uint64_t) (self->op_index * interval);
            if (due < self->paced_ns + S_PACING_NS)
                due = self->paced_ns + S_PACING_NS;
            if (due < deadline)
                deadline = due;
        }
        s_wait (self, deadline);
    }
    //  DESIGN 4: what never came back is charged with its wait so far, and
    //  so is what was due in the open loop but never went out
    uint64_t now = bench_now_ns ();
    if (load->loop == BENCH_OPEN_LOOP && load->ops == BENCH_OPS_DEPOSIT) {
        double interval = 1e9 * load->clients / load->rate;
        for (;; self->op_index++) {
            uint64_t due = self->start_ns + (uint64_t) (self->op_index * interval);
            if (due >= self->end_ns || (self->ops_total && self->ops_sent >= self->ops_total))
                break;
            if (due >= self->measure_ns) {
                self->unsent++;
                bench_hist_record (self->ack, now - due);
            }
        }
    }
    for (uint32_t index = 0; index < S_RING; index++) {
        s_slot_t *slot = &self->ring[index];
        if (slot->kind == S_FREE || !slot->measured)
            continue;
        self->unanswered++;
        if (slot->kind == S_COMMAND)
            bench_hist_record (self->ack, now - slot->intended_ns);
        else if (slot->kind == S_QUERY)
            bench_hist_record (self->query, now - slot->intended_ns);
        else
            bench_hist_record (self->ryw, now - slot->intended_ns);
    }
    return NULL;
}

static void
s_client_destroy (s_client_t *self)
{
    for (int index = 0; index < self->command_sockets; index++)
        if (self->commands[index])
            zmq_close (self->commands[index]);
    if (self->queries)
        zmq_close (self->queries);
    free (self->ring);
    zcq_writer_destroy (&self->writer);
    zcq_writer_destroy (&self->data);
    zcq_doc_destroy (&self->doc);
    bench_hist_destroy (&self->ack);
    bench_hist_destroy (&self->query);
    bench_hist_destroy (&self->ryw);
}

static const char *
s_error_name (int code)
{
    return zcq_err_code ((zcq_err_t) code);
}

json_t *
bench_load_run (const bench_load_t *load)
{
    int clients = load->clients > 0 ? load->clients : 1;
    void *context = zmq_ctx_new ();
    s_client_t *pool = calloc ((size_t) clients, sizeof (s_client_t));
    if (!context || !pool) {
        fprintf (stderr, "zcqrs-bench: out of memory\n");
        free (pool);
        if (context)
            zmq_ctx_term (context);
        return NULL;
    }
    bool ready = load->command_endpoint_count >= 0 && load->command_endpoint_count <= S_ENDPOINTS;
    if (!ready)
        fprintf (stderr, "zcqrs-bench: at most %d command endpoints\n", S_ENDPOINTS);
    for (int index = 0; ready && index < clients; index++) {
        s_client_t *self = &pool[index];
        self->load = load;
        self->client = index;
        self->context = context;
        self->rng = 0x9E3779B97F4A7C15ull * (uint64_t) (index + 1) ^ (uint64_t) bench_now_ns ();
        self->ring = calloc (S_RING, sizeof (s_slot_t));
        self->writer = zcq_writer_new ();
        self->data = zcq_writer_new ();
        self->doc = zcq_doc_new ();
        self->ack = bench_hist_new ();
        self->query = bench_hist_new ();
        self->ryw = bench_hist_new ();
        bool connected = true;
        if (load->command_endpoint_count > 0) {
            self->command_sockets = load->command_endpoint_count;
            for (int endpoint = 0; endpoint < self->command_sockets; endpoint++) {
                self->commands[endpoint] = s_dealer (self, load->command_endpoints[endpoint]);
                connected = connected && self->commands[endpoint];
            }
        }
        else {
            self->command_sockets = 1;
            self->commands[0] = s_dealer (self, load->command_endpoint);
            connected = self->commands[0] != NULL;
        }
        if (load->query_endpoint && !load->echo)
            self->queries = s_dealer (self, load->query_endpoint);
        if (s_is_pass (load))
            self->opens_total = load->accounts / (uint64_t) clients
                              + ((uint64_t) index < load->accounts % (uint64_t) clients);
        if (load->max_ops)
            self->ops_total = load->max_ops / (uint64_t) clients
                            + ((uint64_t) index < load->max_ops % (uint64_t) clients);
        if (!self->ring || !self->writer || !self->data || !self->doc || !self->ack || !self->query
            || !self->ryw || !connected || (load->query_endpoint && !load->echo && !self->queries))
            ready = false;
    }
    //  let the connections come up before the clock starts
    struct timespec pause = { 0, 50000000 };
    nanosleep (&pause, NULL);

    uint64_t start = bench_now_ns ();
    uint64_t measure = start + (uint64_t) (load->warmup_s * 1e9);
    uint64_t end = measure + (uint64_t) (load->seconds * 1e9);
    bench_cpu_t cpu;
    bench_cpu_start (&cpu);
    s_hiccup_t hiccup = { .hist = bench_hist_new (), .measure_ns = measure };
    atomic_init (&hiccup.stop, false);
    bool hiccups = hiccup.hist && pthread_create (&hiccup.thread, NULL, s_hiccup_run, &hiccup) == 0;
    char *io_path = bench_dir_new ("io-probe");
    s_io_probe_t io = { .fd = io_path ? open (io_path, O_CREAT | O_RDWR | O_TRUNC, 0600) : -1,
                        .write = bench_hist_new (),
                        .sync = bench_hist_new (),
                        .measure_ns = measure };
    atomic_init (&io.stop, false);
    bool io_probe = io.fd >= 0 && io.write && io.sync
                 && pthread_create (&io.thread, NULL, s_io_probe_run, &io) == 0;
    pthread_t *threads = calloc ((size_t) clients, sizeof (pthread_t));
    int started = 0;
    for (int index = 0; ready && threads && index < clients; index++) {
        pool[index].start_ns = start;
        pool[index].measure_ns = s_is_pass (load) ? start : measure;
        pool[index].end_ns = s_is_pass (load) ? UINT64_MAX : end;
        if (pthread_create (&threads[index], NULL, s_client_run, &pool[index]) != 0)
            break;
        started++;
    }
    //  what an operation costs in CPU: the process's CPU time (node and
    //  clients, every thread) from the start of the measured seconds to the
    //  last reply, over the operations measured
    //  the same seconds, the node's heap allocations (alloc.c)
    double cpu_s = -1, cpu_before = 0;
    int64_t mallocs = -1;
    if (!s_is_pass (load) && started == clients) {
        bench_sleep_until_ns (measure);
        cpu_before = bench_process_cpu_s ();
        bench_alloc_start ();
    }
    for (int index = 0; index < started; index++)
        pthread_join (threads[index], NULL);
    free (threads);
    if (!s_is_pass (load) && started == clients) {
        cpu_s = bench_process_cpu_s () - cpu_before;
        mallocs = (int64_t) bench_alloc_stop ();
    }
    if (hiccups) {
        atomic_store (&hiccup.stop, true);
        pthread_join (hiccup.thread, NULL);
    }
    double steal = 0, others = bench_cpu_others (&cpu, &steal);
    if (io_probe) {
        atomic_store (&io.stop, true);
        pthread_join (io.thread, NULL);
    }
    if (io.fd >= 0) {
        close (io.fd);
        unlink (io_path);
    }
    free (io_path);

    json_t *result = NULL;
    if (ready && started == clients) {
        bench_hist_t *ack = bench_hist_new (), *query = bench_hist_new (), *ryw = bench_hist_new ();
        uint64_t commands_ok = 0, queries_ok = 0, commands_sent = 0, queries_sent = 0;
        uint64_t commands_ok_all = 0;
        uint64_t probes_ok = 0, ryw_stale = 0, probe_errors = 0, unanswered = 0;
        uint64_t stalls = 0, bad_replies = 0, unsent = 0, last_reply = start;
        uint64_t command_errors[S_ERRORS] = { 0 }, query_errors[S_ERRORS] = { 0 };
        for (int index = 0; index < clients; index++) {
            s_client_t *self = &pool[index];
            bench_hist_merge (ack, self->ack);
            bench_hist_merge (query, self->query);
            bench_hist_merge (ryw, self->ryw);
            commands_ok += self->commands_ok;
            commands_ok_all += self->commands_ok_all;
            queries_ok += self->queries_ok;
            commands_sent += self->commands_sent;
            queries_sent += self->queries_sent;
            probes_ok += self->probes_ok;
            ryw_stale += self->ryw_stale;
            probe_errors += self->probe_errors;
            unanswered += self->unanswered;
            unsent += self->unsent;
            stalls += self->stalls;
            bad_replies += self->bad_replies;
            if (self->last_reply_ns > last_reply)
                last_reply = self->last_reply_ns;
            for (int code = 0; code < S_ERRORS; code++) {
                command_errors[code] += self->command_errors[code];
                query_errors[code] += self->query_errors[code];
            }
        }
        double seconds = s_is_pass (load) ? (double) (last_reply - start) / 1e9 : load->seconds;
        if (seconds <= 0)
            seconds = 1e-9;
        result = json_object ();
        json_object_set_new (result, "loop",
                             json_string (load->loop == BENCH_CLOSED_LOOP ? "closed" : "open"));
        json_object_set_new (result, "clients", json_integer (clients));
        if (load->loop == BENCH_CLOSED_LOOP)
            json_object_set_new (result, "window", json_integer (load->window));
        else
            json_object_set_new (result, "offered_per_s", json_real (load->rate));
        json_object_set_new (result, "seconds", json_real (seconds));
        json_object_set_new (result, "commands_per_s", json_real (commands_ok / seconds));
        json_object_set_new (result, "queries_per_s", json_real (queries_ok / seconds));
        json_object_set_new (result, "sent_per_s",
                             json_real ((commands_sent + queries_sent) / seconds));
        json_object_set_new (result, "commands_ok", json_integer ((json_int_t) commands_ok));
        json_object_set_new (result, "commands_ok_all",
                             json_integer ((json_int_t) commands_ok_all));
        if (cpu_s >= 0 && commands_ok + queries_ok)
            json_object_set_new (
                result, "cpu_us_per_op",
                json_real (round (cpu_s * 1e7 / (double) (commands_ok + queries_ok)) / 10));
        if (mallocs >= 0 && commands_ok + queries_ok)
            json_object_set_new (
                result, "mallocs_per_op",
                json_real (round ((double) mallocs * 10 / (double) (commands_ok + queries_ok))
                           / 10));
        json_object_set_new (result, "queries_ok", json_integer ((json_int_t) queries_ok));
        json_object_set_new (result, "ack", bench_hist_json (ack));
        if (bench_hist_count (query))
            json_object_set_new (result, "query", bench_hist_json (query));
        if (bench_hist_count (ryw)) {
            json_object_set_new (result, "ryw", bench_hist_json (ryw));
            json_object_set_new (result, "ryw_probes_ok", json_integer ((json_int_t) probes_ok));
            json_object_set_new (result, "ryw_stale", json_integer ((json_int_t) ryw_stale));
            json_object_set_new (result, "ryw_errors", json_integer ((json_int_t) probe_errors));
        }
        json_t *errors = json_object ();
        for (int code = 1; code < S_ERRORS; code++) {
            if (command_errors[code]) {
                json_t *old = json_object_get (errors, s_error_name (code));
                json_object_set_new (errors, s_error_name (code),
                                     json_integer ((old ? json_integer_value (old) : 0)
                                                   + (json_int_t) command_errors[code]));
            }
        }
        json_object_set_new (result, "command_errors", errors);
        errors = json_object ();
        for (int code = 1; code < S_ERRORS; code++) {
            if (query_errors[code]) {
                json_t *old = json_object_get (errors, s_error_name (code));
                json_object_set_new (errors, s_error_name (code),
                                     json_integer ((old ? json_integer_value (old) : 0)
                                                   + (json_int_t) query_errors[code]));
            }
        }
        json_object_set_new (result, "query_errors", errors);
        json_object_set_new (result, "unanswered", json_integer ((json_int_t) unanswered));
        json_object_set_new (result, "unsent", json_integer ((json_int_t) unsent));
        json_object_set_new (result, "sender_stalls", json_integer ((json_int_t) stalls));
        json_object_set_new (result, "bad_replies", json_integer ((json_int_t) bad_replies));
        if (hiccups)
            json_object_set_new (result, "hiccup", bench_hist_json (hiccup.hist));
        if (io_probe) {
            json_object_set_new (result, "disk_write", bench_hist_json (io.write));
            json_object_set_new (result, "disk_sync", bench_hist_json (io.sync));
        }
        json_object_set_new (result, "other_cpu", json_real (round (others * 100) / 100));
        json_object_set_new (result, "steal_cpu", json_real (round (steal * 100) / 100));
        bench_hist_destroy (&ack);
        bench_hist_destroy (&query);
        bench_hist_destroy (&ryw);
    }
    else
        fprintf (stderr, "zcqrs-bench: cannot start the load clients\n");
    bench_hist_destroy (&hiccup.hist);
    bench_hist_destroy (&io.write);
    bench_hist_destroy (&io.sync);
    for (int index = 0; index < clients; index++)
        s_client_destroy (&pool[index]);
    free (pool);
    zmq_ctx_term (context);
    return result;
}

//  --------------------------------------------------------------------------
//  Projection lag sampler

typedef struct {
    double t; //  seconds since the sampler started
    uint64_t head;
    uint64_t lag_events;
    double lag_ms;
} s_sample_t;

struct bench_monitor_t {
    pthread_t thread;
    atomic_bool stop;
    char *endpoint;
    int interval_ms;
    double skip_s;
    s_sample_t *samples;
    size_t count, capacity;
    int64_t started_wall_us;
    uint64_t queries_failed;
};

//  Ask one query, with a fresh rid; the reply lives until the next call.
static const zcq_value_t *
s_monitor_ask (zcq_client_t *client, zcq_writer_t *writer)
{
    const zcq_value_t *reply = NULL;
    if (zcq_client_call (client, ZCQ_ENDPOINT_QUERY, zcq_writer_data (writer),
                         zcq_writer_size (writer), 2000, &reply)
            != ZCQ_OK
        || zcq_reply_status (reply) != ZCQ_OK)
        return NULL;
    return reply;
}

static void *
s_monitor_run (void *arg)
{
    bench_monitor_t *self = arg;
    prctl (PR_SET_NAME, "bench-lag", 0, 0, 0);
    zcq_client_t *client = zcq_client_new (NULL, self->endpoint);
    zcq_writer_t *writer = zcq_writer_new ();
    uint64_t started = bench_now_ns (), rid = 1;
    while (client && writer && !atomic_load (&self->stop)) {
        uint64_t tick = bench_now_ns ();
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 2);
        zcq_writer_str (writer, "op");
        zcq_writer_str (writer, "views");
        zcq_writer_str (writer, "rid");
        zcq_writer_uint (writer, rid++);
        const zcq_value_t *reply = s_monitor_ask (client, writer);
        uint64_t head = 0, lowest = UINT64_MAX;
        const zcq_value_t *views = reply ? zcq_value_get (reply, "views") : NULL;
        if (reply && zcq_value_uint (zcq_value_get (reply, "head"), &head)) {
            for (size_t index = 0; index < zcq_value_size (views); index++) {
                uint64_t position = 0;
                if (zcq_value_uint (zcq_value_get (zcq_value_at (views, index), "position"),
                                    &position)
                    && position < lowest)
                    lowest = position;
            }
        }
        else
            self->queries_failed++;
        if (lowest == UINT64_MAX)
            lowest = head;
        double lag_ms = 0;
        if (lowest < head) {
            //  the age of the oldest event some view has not applied yet
            zcq_writer_reset (writer);
            zcq_writer_map (writer, 4);
            zcq_writer_str (writer, "op");
            zcq_writer_str (writer, "read");
            zcq_writer_str (writer, "from");
            zcq_writer_uint (writer, lowest + 1);
            zcq_writer_str (writer, "limit");
            zcq_writer_int (writer, 1);
            zcq_writer_str (writer, "rid");
            zcq_writer_uint (writer, rid++);
            reply = s_monitor_ask (client, writer);
            int64_t time_us = reply ? zcq_value_get_int (
                                  zcq_value_at (zcq_value_get (reply, "events"), 0), "time", 0)
                                    : 0;
            if (time_us > 0)
                lag_ms = (double) (bench_wall_us () - time_us) / 1000.0;
            if (lag_ms < 0)
                lag_ms = 0;
        }
        if (reply && self->count == self->capacity) {
            size_t capacity = self->capacity ? self->capacity * 2 : 1024;
            s_sample_t *grown = realloc (self->samples, capacity * sizeof (s_sample_t));
            if (grown) {
                self->samples = grown;
                self->capacity = capacity;
            }
        }
        if (reply && self->count < self->capacity)
            self->samples[self->count++]
                = (s_sample_t) { (double) (tick - started) / 1e9, head, head - lowest, lag_ms };
        uint64_t next = tick + (uint64_t) self->interval_ms * 1000000ull;
        uint64_t now = bench_now_ns ();
        if (next > now) {
            struct timespec pause = { (time_t) ((next - now) / 1000000000ull),
                                      (long) ((next - now) % 1000000000ull) };
            nanosleep (&pause, NULL);
        }
    }
    zcq_writer_destroy (&writer);
    zcq_client_destroy (&client);
    return NULL;
}

bench_monitor_t *
bench_monitor_start (const char *query_endpoint, int interval_ms, double skip_s)
{
    bench_monitor_t *self = calloc (1, sizeof (bench_monitor_t));
    if (!self)
        return NULL;
    self->endpoint = strdup (query_endpoint);
    self->interval_ms = interval_ms > 0 ? interval_ms : 50;
    self->skip_s = skip_s;
    self->started_wall_us = bench_wall_us ();
    atomic_init (&self->stop, false);
    if (!self->endpoint || pthread_create (&self->thread, NULL, s_monitor_run, self) != 0) {
        free (self->endpoint);
        free (self);
        return NULL;
    }
    return self;
}

json_t *
bench_monitor_stop (bench_monitor_t **self_p)
{
    if (!self_p || !*self_p)
        return NULL;
    bench_monitor_t *self = *self_p;
    atomic_store (&self->stop, true);
    pthread_join (self->thread, NULL);
    bench_hist_t *events = bench_hist_new (), *ms = bench_hist_new ();
    json_t *series = json_array ();
    //  the longest time the head stood still (under load: a write stall)
    double stall = 0, still_since = -1, stall_at = 0;
    for (size_t index = 0; index < self->count; index++) {
        s_sample_t *sample = &self->samples[index];
        if (index > 0 && sample->t >= self->skip_s
            && sample->head == self->samples[index - 1].head) {
            if (still_since < 0)
                still_since = self->samples[index - 1].t;
            if (sample->t - still_since > stall) {
                stall = sample->t - still_since;
                stall_at = still_since;
            }
        }
        else
            still_since = -1;
        json_t *row = json_array ();
        json_array_append_new (row, json_real (round (sample->t * 1000) / 1000));
        json_array_append_new (row, json_integer ((json_int_t) sample->head));
        json_array_append_new (row, json_integer ((json_int_t) sample->lag_events));
        json_array_append_new (row, json_real (round (sample->lag_ms * 1000) / 1000));
        json_array_append_new (series, row);
        if (sample->t >= self->skip_s && events && ms) {
            bench_hist_record (events, sample->lag_events);
            bench_hist_record (ms, (uint64_t) (sample->lag_ms * 1000.0)); //  in us
        }
    }
    json_t *result = json_object ();
    json_t *lag_events = json_object ();
    json_t *lag_ms = json_object ();
    if (events && ms && bench_hist_count (events)) {
        json_object_set_new (lag_events, "p50",
                             json_integer ((json_int_t) bench_hist_percentile (events, 50)));
        json_object_set_new (lag_events, "p99",
                             json_integer ((json_int_t) bench_hist_percentile (events, 99)));
        json_object_set_new (lag_events, "max",
                             json_integer ((json_int_t) bench_hist_max (events)));
        json_object_set_new (lag_ms, "p50", json_real (bench_hist_percentile (ms, 50) / 1000.0));
        json_object_set_new (lag_ms, "p99", json_real (bench_hist_percentile (ms, 99) / 1000.0));
        json_object_set_new (lag_ms, "max", json_real (bench_hist_max (ms) / 1000.0));
    }
    json_object_set_new (result, "samples", json_integer ((json_int_t) bench_hist_count (events)));
    json_object_set_new (result, "interval_ms", json_integer (self->interval_ms));
    json_object_set_new (result, "head_still_max_ms", json_real (round (stall * 1e4) / 10));
    json_object_set_new (result, "head_still_at_s", json_real (round (stall_at * 1e3) / 1e3));
    json_object_set_new (result, "started_wall_us", json_integer (self->started_wall_us));
    json_object_set_new (result, "events", lag_events);
    json_object_set_new (result, "ms", lag_ms);
    json_object_set_new (result, "series", series);
    if (self->queries_failed)
        json_object_set_new (result, "queries_failed",
                             json_integer ((json_int_t) self->queries_failed));
    bench_hist_destroy (&events);
    bench_hist_destroy (&ms);
    free (self->samples);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
    return result;
}
