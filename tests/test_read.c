/*  test_read.c: the read side of a node over real sockets (ZCQ/1 sections
    4, 5 and 8): view queries and their errors, read-your-writes, parked
    queries and their timeout, pagination, log and stream reads, node
    status, the events endpoint and heartbeats, catch-up subscriptions
    (late start, topic filter, forced drops, bursts), restart and rebuild.

    Every node runs the bank domain on tcp://127.0.0.1:* ports. Nothing
    sleeps to wait: tests wait on a reply, an event or a subscription
    message, with a timeout as a safety net.
*/
#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_TIMEOUT_MS 10000 //  safety net for any one reply

//  --------------------------------------------------------------------------
//  Small helpers

//  "i:<value>" for the typed test values of zcq_test_query.
static const char *
s_typed_int (int64_t value)
{
    static char ring[16][32];
    static int next;
    char *buffer = ring[next++ % 16];
    snprintf (buffer, sizeof ring[0], "i:%lld", (long long) value);
    return buffer;
}

static int64_t
s_int (const zcq_value_t *map, const char *key)
{
    int64_t value = 0;
    if (!zcq_value_int (zcq_value_get (map, key), &value))
        fail_msg ("'%s' is missing or not an integer", key);
    return value;
}

//  A string field, NUL-terminated into buffer; fails when absent.
static const char *
s_str (const zcq_value_t *map, const char *key, char *buffer, size_t size)
{
    const char *text;
    size_t len;
    if (!zcq_value_str (zcq_value_get (map, key), &text, &len))
        fail_msg ("'%s' is missing or not a string", key);
    if (len >= size)
        fail_msg ("'%s' is longer than %zu bytes", key, size - 1);
    memcpy (buffer, text, len);
    buffer[len] = 0;
    return buffer;
}

static void
s_assert_str (const zcq_value_t *map, const char *key, const char *expected)
{
    char buffer[512];
    assert_string_equal (s_str (map, key, buffer, sizeof buffer), expected);
}

static void
s_assert_ok (const zcq_value_t *reply)
{
    assert_non_null (reply);
    bool ok = false;
    if (!zcq_value_bool (zcq_value_get (reply, "ok"), &ok))
        fail_msg ("a reply without a boolean 'ok'");
    if (!ok) {
        char code[32], message[512];
        fail_msg ("expected ok, got %s: %s",
                  zcq_value_get_str (reply, "error", code, sizeof code, "?"),
                  zcq_value_get_str (reply, "message", message, sizeof message, "?"));
    }
}

//  A failure reply with the given code and a message text.
static void
s_assert_error (const zcq_value_t *reply, const char *code)
{
    assert_non_null (reply);
    assert_string_equal (zcq_test_code (reply), code);
    const char *text;
    size_t len;
    assert_true (zcq_value_str (zcq_value_get (reply, "message"), &text, &len));
    assert_true (len > 0);
}

//  Every key of a NULL-terminated list is present in the map.
static void
s_assert_keys (const zcq_value_t *map, const char *const *keys)
{
    assert_int_equal (zcq_value_type (map), ZCQ_TYPE_MAP);
    for (; *keys; keys++)
        if (!zcq_value_get (map, *keys))
            fail_msg ("key '%s' is missing", *keys);
}

static int
s_strcmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

static int
s_int64cmp (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

//  xorshift64*, seeded, so that every run sends the same commands.
static uint64_t
s_random (uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

//  --------------------------------------------------------------------------
//  Requests

//  A request map built field by field.
typedef struct {
    zcq_writer_t *writer;
    size_t mark;
    size_t count;
} s_request_t;

static void
s_begin (s_request_t *request, zcq_writer_t *writer, const char *op)
{
    zcq_writer_reset (writer);
    request->writer = writer;
    request->mark = zcq_writer_map_open (writer);
    request->count = 0;
    if (op) {
        zcq_writer_str (writer, "op");
        zcq_writer_str (writer, op);
        request->count++;
    }
}

static void
s_put_str (s_request_t *request, const char *name, const char *value)
{
    zcq_writer_str (request->writer, name);
    zcq_writer_str (request->writer, value);
    request->count++;
}

static void
s_put_int (s_request_t *request, const char *name, int64_t value)
{
    zcq_writer_str (request->writer, name);
    zcq_writer_int (request->writer, value);
    request->count++;
}

static void
s_end (s_request_t *request)
{
    zcq_writer_map_close (request->writer, request->mark, request->count);
    assert_true (zcq_writer_ok (request->writer));
}

//  Send an encoded query on the client and wait for its reply.
static const zcq_value_t *
s_call (zcq_client_t *client, zcq_writer_t *writer)
{
    const zcq_value_t *reply = NULL;
    if (zcq_client_call (client, ZCQ_ENDPOINT_QUERY, zcq_writer_data (writer),
                         zcq_writer_size (writer), S_TIMEOUT_MS, &reply)
        != ZCQ_OK)
        fail_msg ("no reply to a query");
    return reply;
}

//  Encode a bank command: open {owner}, deposit/withdraw {amount}, close {}.
static void
s_encode_command (zcq_writer_t *out, const char *id, const char *type, const char *key,
                  const char *owner, int64_t amount, const zcq_writer_t *meta)
{
    zcq_writer_t *data = zcq_writer_new ();
    if (streq (type, "open")) {
        zcq_writer_map (data, 1);
        zcq_writer_str (data, "owner");
        zcq_writer_str (data, owner);
    }
    else if (streq (type, "close"))
        zcq_writer_map (data, 0);
    else {
        zcq_writer_map (data, 1);
        zcq_writer_str (data, "amount");
        zcq_writer_int (data, amount);
    }
    zcq_command_req_t command = {
        .id = id,
        .aggregate = "account",
        .key = key,
        .type = type,
        .data = zcq_writer_data (data),
        .data_len = zcq_writer_size (data),
        .meta = meta ? zcq_writer_data (meta) : NULL,
        .meta_len = meta ? zcq_writer_size (meta) : 0,
    };
    zcq_writer_reset (out);
    zcq_command_encode (out, &command);
    zcq_writer_destroy (&data);
    assert_true (zcq_writer_ok (out));
}

//  Send a bank command with a fresh id and wait for its reply.
static const zcq_value_t *
s_command (zcq_client_t *client, const char *type, const char *key, const char *owner,
           int64_t amount, const zcq_writer_t *meta)
{
    zcq_writer_t *writer = zcq_writer_new ();
    s_encode_command (writer, NULL, type, key, owner, amount, meta);
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_call (client, ZCQ_ENDPOINT_COMMAND, zcq_writer_data (writer),
                                     zcq_writer_size (writer), S_TIMEOUT_MS, &reply);
    zcq_writer_destroy (&writer);
    if (err != ZCQ_OK)
        fail_msg ("no reply to command %s %s", type, key);
    return reply;
}

//  --------------------------------------------------------------------------
//  A raw DEALER: pipelined requests, replies in any order

typedef struct {
    zsock_t *socket;
    zcq_doc_t *doc;
    zframe_t *frame;
    zcq_writer_t *writer;
} s_dealer_t;

static s_dealer_t *
s_dealer_new (const char *endpoint)
{
    s_dealer_t *self = calloc (1, sizeof (s_dealer_t));
    assert_non_null (self);
    self->socket = zsock_new (ZMQ_DEALER);
    assert_non_null (self->socket);
    zsock_set_sndhwm (self->socket, 0);
    zsock_set_rcvhwm (self->socket, 0);
    zsock_set_linger (self->socket, 0);
    assert_int_equal (zsock_connect (self->socket, "%s", endpoint), 0);
    self->doc = zcq_doc_new ();
    self->writer = zcq_writer_new ();
    return self;
}

static void
s_dealer_destroy (s_dealer_t **self_p)
{
    s_dealer_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->socket);
    zcq_doc_destroy (&self->doc);
    zframe_destroy (&self->frame);
    zcq_writer_destroy (&self->writer);
    free (self);
    *self_p = NULL;
}

//  Send [empty][body], the REQ-style envelope.
static void
s_dealer_send (s_dealer_t *self, const void *body, size_t size)
{
    zmsg_t *message = zmsg_new ();
    zmsg_addmem (message, "", 0);
    zmsg_addmem (message, body, size);
    assert_int_equal (zmsg_send (&message, self->socket), 0);
}

static void
s_dealer_send_writer (s_dealer_t *self, const zcq_writer_t *writer)
{
    s_dealer_send (self, zcq_writer_data (writer), zcq_writer_size (writer));
}

//  The next reply (valid until the next receive), or NULL after timeout_ms.
//  The envelope must come back as it went: one empty frame, then the body.
static const zcq_value_t *
s_dealer_recv (s_dealer_t *self, int timeout_ms)
{
    zmq_pollitem_t item = { zsock_resolve (self->socket), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return NULL;
    zmsg_t *message = zmsg_recv (self->socket);
    assert_non_null (message);
    assert_int_equal (zmsg_size (message), 2);
    assert_int_equal (zframe_size (zmsg_first (message)), 0);
    zframe_destroy (&self->frame);
    self->frame = zmsg_last (message);
    zmsg_remove (message, self->frame);
    zmsg_destroy (&message);
    if (zcq_doc_decode (self->doc, zframe_data (self->frame), zframe_size (self->frame), NULL)
        != ZCQ_OK)
        fail_msg ("a reply that does not decode: %s", zcq_doc_error (self->doc));
    return zcq_doc_root (self->doc);
}

//  Send a bank command without waiting for its reply.
static void
s_dealer_command (s_dealer_t *self, const char *id, const char *type, const char *key,
                  const char *owner, int64_t amount)
{
    s_encode_command (self->writer, id, type, key, owner, amount, NULL);
    s_dealer_send_writer (self, self->writer);
}

//  Wait for `count` command replies, all ok; returns the highest position.
static uint64_t
s_dealer_drain (s_dealer_t *self, size_t count)
{
    uint64_t highest = 0;
    for (size_t index = 0; index < count; index++) {
        const zcq_value_t *reply = s_dealer_recv (self, S_TIMEOUT_MS);
        if (!reply)
            fail_msg ("only %zu of %zu command replies came", index, count);
        s_assert_ok (reply);
        uint64_t position = (uint64_t) s_int (reply, "position");
        if (position > highest)
            highest = position;
    }
    return highest;
}

//  --------------------------------------------------------------------------
//  A node with a client

typedef struct {
    char *dir;
    zcq_node_t *node;
    zcq_client_t *client;
    zcq_writer_t *writer;     //  for building requests
    const char *view_threads; //  the setting, when not NULL
} s_fixture_t;

static void
s_node_up (s_fixture_t *self, const char *heartbeat_ms)
{
    self->node = zcq_test_node (self->dir, "heartbeat-ms", heartbeat_ms, NULL);
    assert_non_null (self->node);
    self->client = zcq_client_new (zcq_node_endpoint (self->node, ZCQ_ENDPOINT_COMMAND),
                                   zcq_node_endpoint (self->node, ZCQ_ENDPOINT_QUERY));
    assert_non_null (self->client);
}

static void
s_start (s_fixture_t *self, const char *name)
{
    memset (self, 0, sizeof *self);
    self->dir = zcq_test_dir (name);
    assert_non_null (self->dir);
    self->writer = zcq_writer_new ();
    s_node_up (self, "100");
}

static void
s_node_down (s_fixture_t *self)
{
    zcq_client_destroy (&self->client);
    zcq_node_destroy (&self->node);
}

static void
s_stop (s_fixture_t *self)
{
    s_node_down (self);
    zcq_writer_destroy (&self->writer);
    zcq_test_rmdir (&self->dir);
}

static const char *
s_endpoint (s_fixture_t *self, zcq_endpoint_t which)
{
    return zcq_node_endpoint (self->node, which);
}

//  `get` a row of a view, waiting for min_position (0 = no wait).
static const zcq_value_t *
s_get (s_fixture_t *self, const char *view, const char *key, uint64_t min_position)
{
    s_request_t request;
    s_begin (&request, self->writer, "get");
    s_put_str (&request, "view", view);
    s_put_str (&request, "key", key);
    if (min_position) {
        s_put_int (&request, "min_position", (int64_t) min_position);
        s_put_int (&request, "timeout_ms", S_TIMEOUT_MS);
    }
    s_end (&request);
    const zcq_value_t *reply = s_call (self->client, self->writer);
    s_assert_ok (reply);
    return reply;
}

//  `count` rows of a view, optionally by index value.
static int64_t
s_count (s_fixture_t *self, const char *view, const char *index, const char *value,
         uint64_t min_position)
{
    s_request_t request;
    s_begin (&request, self->writer, "count");
    s_put_str (&request, "view", view);
    if (index) {
        s_put_str (&request, "index", index);
        s_put_str (&request, "value", value);
    }
    if (min_position) {
        s_put_int (&request, "min_position", (int64_t) min_position);
        s_put_int (&request, "timeout_ms", S_TIMEOUT_MS);
    }
    s_end (&request);
    const zcq_value_t *reply = s_call (self->client, self->writer);
    s_assert_ok (reply);
    return s_int (reply, "count");
}

//  Wait until every view is live at the node's head: poll `views` (each
//  poll waits on its reply), with a deadline.
static void
s_wait_views_live (s_fixture_t *self, int deadline_ms)
{
    int64_t deadline = zclock_mono () + deadline_ms;
    while (true) {
        const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:views", NULL);
        s_assert_ok (reply);
        int64_t head = s_int (reply, "head");
        const zcq_value_t *views = zcq_value_get (reply, "views");
        bool live = zcq_value_size (views) > 0;
        for (size_t index = 0; index < zcq_value_size (views); index++) {
            const zcq_value_t *view = zcq_value_at (views, index);
            live = live && zcq_value_streq (zcq_value_get (view, "status"), "live")
                && s_int (view, "position") == head;
        }
        if (live)
            return;
        if (zclock_mono () > deadline)
            fail_msg ("the views did not become live at head %lld in %d ms", (long long) head,
                      deadline_ms);
    }
}

//  --------------------------------------------------------------------------
//  Listing a whole view page by page

typedef struct {
    zcq_writer_t *encoded; //  every row, encoded, in listing order
    char **keys;
    size_t count;
    size_t capacity;
    size_t pages;
    int64_t balance; //  sum of the rows' `balance`
    size_t open;     //  rows with status "open"
} s_listing_t;

static void
s_listing_free (s_listing_t *listing)
{
    for (size_t index = 0; index < listing->count; index++)
        free (listing->keys[index]);
    free (listing->keys);
    zcq_writer_destroy (&listing->encoded);
    memset (listing, 0, sizeof *listing);
}

//  List every row of a view (or of one index value) with `list` pages of
//  `limit` rows (0 = the default), following the cursors. Checks that keys
//  come once each in strictly increasing order, that `next` is the last
//  key of a page and nil only on the last page.
static void
s_list_all (s_fixture_t *self, const char *view, const char *index, const char *value,
            int64_t limit, uint64_t min_position, s_listing_t *listing)
{
    memset (listing, 0, sizeof *listing);
    listing->encoded = zcq_writer_new ();
    char *after = NULL;
    while (true) {
        s_request_t request;
        s_begin (&request, self->writer, "list");
        s_put_str (&request, "view", view);
        if (index) {
            s_put_str (&request, "index", index);
            s_put_str (&request, "value", value);
        }
        if (limit)
            s_put_int (&request, "limit", limit);
        if (after)
            s_put_str (&request, "after", after);
        if (min_position) {
            s_put_int (&request, "min_position", (int64_t) min_position);
            s_put_int (&request, "timeout_ms", S_TIMEOUT_MS);
        }
        s_end (&request);
        const zcq_value_t *reply = s_call (self->client, self->writer);
        s_assert_ok (reply);
        assert_true (s_int (reply, "position") >= (int64_t) min_position);
        assert_true (s_int (reply, "head") >= s_int (reply, "position"));
        const zcq_value_t *rows = zcq_value_get (reply, "rows");
        assert_int_equal (zcq_value_type (rows), ZCQ_TYPE_ARRAY);
        size_t size = zcq_value_size (rows);
        assert_true (size <= (size_t) (limit ? limit : 100));
        listing->pages++;
        for (size_t at = 0; at < size; at++) {
            const zcq_value_t *row = zcq_value_at (rows, at);
            char key[300];
            s_str (row, "key", key, sizeof key);
            if (listing->count && strcmp (listing->keys[listing->count - 1], key) >= 0)
                fail_msg ("key '%s' comes after '%s'", key, listing->keys[listing->count - 1]);
            if (index)
                s_assert_str (row, index, value);
            if (listing->count == listing->capacity) {
                listing->capacity = listing->capacity ? listing->capacity * 2 : 256;
                listing->keys = realloc (listing->keys, listing->capacity * sizeof (char *));
                assert_non_null (listing->keys);
            }
            listing->keys[listing->count++] = strdup (key);
            zcq_writer_value (listing->encoded, row);
            int64_t balance;
            if (zcq_value_int (zcq_value_get (row, "balance"), &balance))
                listing->balance += balance;
            if (zcq_value_streq (zcq_value_get (row, "status"), "open"))
                listing->open++;
        }
        const zcq_value_t *next = zcq_value_get (reply, "next");
        assert_non_null (next);
        if (zcq_value_type (next) == ZCQ_TYPE_NIL)
            break;
        assert_true (size > 0);
        char cursor[300];
        s_str (reply, "next", cursor, sizeof cursor);
        assert_string_equal (cursor, listing->keys[listing->count - 1]);
        free (after);
        after = strdup (cursor);
        assert_true (listing->pages < 100000);
    }
    free (after);
    assert_true (zcq_writer_ok (listing->encoded));
}

//  --------------------------------------------------------------------------
//  Reading the whole log with `read`

typedef struct {
    uint64_t head;
    uint64_t events;
    uint64_t pages;
    int64_t balance;       //  deposits - withdrawals
    int64_t open_accounts; //  opened - closed
} s_log_t;

static void
s_read_all (s_fixture_t *self, int64_t limit, s_log_t *log)
{
    memset (log, 0, sizeof *log);
    uint64_t from = 1;
    while (true) {
        s_request_t request;
        s_begin (&request, self->writer, "read");
        s_put_int (&request, "from", (int64_t) from);
        s_put_int (&request, "limit", limit);
        s_end (&request);
        const zcq_value_t *reply = s_call (self->client, self->writer);
        s_assert_ok (reply);
        log->head = (uint64_t) s_int (reply, "head");
        const zcq_value_t *events = zcq_value_get (reply, "events");
        assert_int_equal (zcq_value_type (events), ZCQ_TYPE_ARRAY);
        size_t size = zcq_value_size (events);
        log->pages++;
        if (size == 0) {
            assert_int_equal (from, log->head + 1);
            break;
        }
        assert_true (size <= (size_t) limit);
        for (size_t at = 0; at < size; at++) {
            const zcq_value_t *event = zcq_value_at (events, at);
            assert_int_equal (s_int (event, "position"), from + at);
            const zcq_value_t *type = zcq_value_get (event, "type");
            int64_t amount = zcq_value_get_int (zcq_value_get (event, "data"), "amount", 0);
            if (zcq_value_streq (type, "opened"))
                log->open_accounts++;
            else if (zcq_value_streq (type, "closed"))
                log->open_accounts--;
            else if (zcq_value_streq (type, "deposited"))
                log->balance += amount;
            else if (zcq_value_streq (type, "withdrawn"))
                log->balance -= amount;
            else
                fail_msg ("unexpected event type");
        }
        log->events += size;
        from += size;
    }
}

//  --------------------------------------------------------------------------
//  A model of the bank, driven by random commands

#define S_ACCOUNTS 200
#define S_OWNERS   6

typedef struct {
    bool opened;
    bool closed;
    int64_t balance;
    uint64_t version;
    int owner;
} s_account_t;

typedef struct {
    s_account_t accounts[S_ACCOUNTS];
    uint64_t random;
    uint64_t position; //  of the last accepted command
    int accepted;
    int rejected;
    int invalid;
    int closes;
} s_bank_t;

//  Send one command, check its outcome against the model, update it.
static void
s_bank_send (s_fixture_t *self, s_bank_t *bank, int account, const char *type, int64_t amount)
{
    s_account_t *model = &bank->accounts[account];
    char key[16], owner[16];
    snprintf (key, sizeof key, "%d", account);
    snprintf (owner, sizeof owner, "owner-%d", model->opened ? model->owner : account % S_OWNERS);
    const char *expected;
    bool open = model->opened && !model->closed;
    if (streq (type, "open"))
        expected = model->opened ? "rejected" : "ok";
    else if (streq (type, "close"))
        expected = open && model->balance == 0 ? "ok" : "rejected";
    else if (amount <= 0)
        expected = "invalid";
    else if (streq (type, "deposit"))
        expected = open ? "ok" : "rejected";
    else
        expected = open && model->balance >= amount ? "ok" : "rejected";

    const zcq_value_t *reply = s_command (self->client, type, key, owner, amount, NULL);
    if (!streq (zcq_test_code (reply), expected))
        fail_msg ("%s %s %lld: expected %s, got %s", type, key, (long long) amount, expected,
                  zcq_test_code (reply));
    if (streq (expected, "ok")) {
        model->version++;
        assert_int_equal (s_int (reply, "version"), model->version);
        uint64_t position = (uint64_t) s_int (reply, "position");
        assert_true (position > bank->position);
        bank->position = position;
        bank->accepted++;
        if (streq (type, "open")) {
            model->opened = true;
            model->owner = account % S_OWNERS;
        }
        else if (streq (type, "close")) {
            model->closed = true;
            bank->closes++;
        }
        else
            model->balance += streq (type, "deposit") ? amount : -amount;
    }
    else if (streq (expected, "rejected"))
        bank->rejected++;
    else
        bank->invalid++;
}

//  `count` random commands over S_ACCOUNTS accounts (the bank has no
//  overdraft here, so the model is exact).
static void
s_bank_random (s_fixture_t *self, s_bank_t *bank, int count)
{
    int sent = 0;
    while (sent < count) {
        int account = (int) (s_random (&bank->random) % S_ACCOUNTS);
        int choice = (int) (s_random (&bank->random) % 100);
        s_account_t *model = &bank->accounts[account];
        if (choice < 15)
            s_bank_send (self, bank, account, "open", 0);
        else if (choice < 55)
            s_bank_send (self, bank, account, "deposit",
                         1 + (int64_t) (s_random (&bank->random) % 1000));
        else if (choice < 85)
            s_bank_send (self, bank, account, "withdraw",
                         1 + (int64_t) (s_random (&bank->random) % 1500));
        else if (choice < 95) {
            //  half the time, empty the account first so the close passes
            if (model->opened && !model->closed && model->balance > 0
                && s_random (&bank->random) % 2) {
                s_bank_send (self, bank, account, "withdraw", model->balance);
                sent++;
            }
            s_bank_send (self, bank, account, "close", 0);
        }
        else
            s_bank_send (self, bank, account, "deposit", 0); //  invalid
        sent++;
    }
}

//  Check every view and the log against the model.
static void
s_bank_check (s_fixture_t *self, const s_bank_t *bank)
{
    int64_t balance = 0, open = 0, opened = 0;
    int64_t per_owner[S_OWNERS] = { 0 };
    for (int account = 0; account < S_ACCOUNTS; account++) {
        const s_account_t *model = &bank->accounts[account];
        balance += model->balance;
        open += model->opened && !model->closed;
        opened += model->opened;
        if (model->opened)
            per_owner[model->owner]++;
    }
    //  totals, once the views have every accepted command
    const zcq_value_t *reply = s_get (self, "totals", "bank", bank->position);
    const zcq_value_t *totals = zcq_value_get (reply, "row");
    s_assert_str (totals, "key", "bank");
    int64_t totals_balance = s_int (totals, "balance");
    int64_t totals_accounts = s_int (totals, "accounts");
    int64_t totals_events = s_int (totals, "events");
    uint64_t head = (uint64_t) s_int (reply, "head");
    assert_int_equal (totals_balance, balance);
    assert_int_equal (totals_accounts, open);
    assert_int_equal (totals_events, head);

    //  the accounts rows, paged
    s_listing_t listing;
    s_list_all (self, "accounts", NULL, NULL, 37, bank->position, &listing);
    assert_int_equal (listing.count, opened);
    assert_int_equal (listing.balance, totals_balance);
    assert_int_equal (listing.open, totals_accounts);
    assert_int_equal (s_count (self, "accounts", NULL, NULL, bank->position), listing.count);
    for (size_t index = 0; index < listing.count; index++) {
        int account = atoi (listing.keys[index]);
        const s_account_t *model = &bank->accounts[account];
        const zcq_value_t *row
            = zcq_value_get (s_get (self, "accounts", listing.keys[index], 0), "row");
        assert_int_equal (s_int (row, "balance"), model->balance);
        assert_int_equal (s_int (row, "version"), model->version);
        s_assert_str (row, "status", model->closed ? "closed" : "open");
        char owner[32];
        snprintf (owner, sizeof owner, "owner-%d", model->owner);
        s_assert_str (row, "owner", owner);
    }
    s_listing_free (&listing);

    //  the whole log, paged by from/limit
    s_log_t log;
    s_read_all (self, 333, &log);
    assert_int_equal (log.head, head);
    assert_int_equal (log.events, head);
    assert_int_equal (log.balance, totals_balance);
    assert_int_equal (log.open_accounts, totals_accounts);

    //  the owner index: count and list agree, and with the model
    for (int owner = 0; owner < S_OWNERS; owner++) {
        char value[32];
        snprintf (value, sizeof value, "owner-%d", owner);
        s_list_all (self, "accounts", "owner", value, 7, 0, &listing);
        assert_int_equal (s_count (self, "accounts", "owner", value, 0), listing.count);
        assert_int_equal (listing.count, per_owner[owner]);
        s_listing_free (&listing);
    }
}

//  --------------------------------------------------------------------------
//  Event subscribers

//  A SUB socket on the events endpoint with up to two subscriptions; it is
//  returned once a heartbeat came through, so its subscription is live.
//  Every subscription list here includes "" or "$heartbeat".
static zsock_t *
s_sub_new (const char *endpoint, const char *topic, const char *other)
{
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert_non_null (sub);
    zsock_set_rcvhwm (sub, 0);
    zsock_set_subscribe (sub, topic);
    if (other)
        zsock_set_subscribe (sub, other);
    assert_int_equal (zsock_connect (sub, "%s", endpoint), 0);
    int64_t deadline = zclock_mono () + 3000;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        zmq_pollitem_t item = { zsock_resolve (sub), 0, ZMQ_POLLIN, 0 };
        if (left <= 0 || zmq_poll (&item, 1, left) <= 0)
            fail_msg ("no heartbeat on %s within 3 s", endpoint);
        zmsg_t *message = zmsg_recv (sub);
        assert_non_null (message);
        bool heartbeat = zframe_streq (zmsg_first (message), "$heartbeat");
        zmsg_destroy (&message);
        if (heartbeat)
            return sub;
    }
}

//  The next message [topic][body] within timeout_ms, skipping heartbeats
//  when skip_heartbeats; NULL on timeout. The caller destroys it.
static zmsg_t *
s_sub_recv (zsock_t *sub, int timeout_ms, bool skip_heartbeats)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        zmq_pollitem_t item = { zsock_resolve (sub), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, left > 0 ? left : 0) <= 0)
            return NULL;
        zmsg_t *message = zmsg_recv (sub);
        assert_non_null (message);
        assert_int_equal (zmsg_size (message), 2);
        if (skip_heartbeats && zframe_streq (zmsg_first (message), "$heartbeat")) {
            zmsg_destroy (&message);
            continue;
        }
        return message;
    }
}

//  Decode the body of [topic][body] into doc (which borrows the message).
static const zcq_value_t *
s_body (zcq_doc_t *doc, zmsg_t *message)
{
    zframe_t *body = zmsg_last (message);
    if (zcq_doc_decode (doc, zframe_data (body), zframe_size (body), NULL) != ZCQ_OK)
        fail_msg ("an event body that does not decode: %s", zcq_doc_error (doc));
    return zcq_doc_root (doc);
}

static const char *const s_event_keys[] = { "position", "node",    "stream", "aggregate",
                                            "key",      "version", "type",   "time",
                                            "command",  "meta",    "data",   NULL };

//  An event body as section 4 has it.
static void
s_assert_event (const zcq_value_t *event, const char *node, const char *key)
{
    s_assert_keys (event, s_event_keys);
    char stream[300];
    snprintf (stream, sizeof stream, "account/%s", key);
    s_assert_str (event, "node", node);
    s_assert_str (event, "stream", stream);
    s_assert_str (event, "aggregate", "account");
    s_assert_str (event, "key", key);
    assert_true (s_int (event, "position") >= 1);
    assert_true (s_int (event, "version") >= 1);
    int64_t now = zclock_time () * 1000;
    int64_t time = s_int (event, "time");
    assert_true (time > now - 600000000LL && time <= now + 60000000LL);
    assert_int_equal (zcq_value_type (zcq_value_get (event, "meta")), ZCQ_TYPE_MAP);
    assert_int_equal (zcq_value_type (zcq_value_get (event, "command")), ZCQ_TYPE_STR);
    assert_int_equal (zcq_value_type (zcq_value_get (event, "type")), ZCQ_TYPE_STR);
}

//  --------------------------------------------------------------------------
//  The walk-through: a node, a write, a read of it

static void
test_walkthrough (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "walk");
    zcq_client_t *client = fixture.client;

    const zcq_value_t *reply
        = zcq_test_send (client, NULL, "open", "42", -1, "owner", "s:ann", NULL);
    s_assert_ok (reply);
    reply = zcq_test_send (client, NULL, "deposit", "42", -1, "amount", "i:250", NULL);
    s_assert_ok (reply);
    int64_t position = s_int (reply, "position");
    assert_int_equal (s_int (reply, "version"), 2);

    //  read-your-writes: wait for the deposit's position
    reply = zcq_test_query (client, "op", "s:get", "view", "s:accounts", "key", "s:42",
                            "min_position", s_typed_int (position), NULL);
    s_assert_ok (reply);
    assert_true (s_int (reply, "position") >= position);
    assert_true (s_int (reply, "head") >= s_int (reply, "position"));
    const zcq_value_t *row = zcq_value_get (reply, "row");
    static const char *const row_keys[] = { "key", "owner", "balance", "status", "version", NULL };
    s_assert_keys (row, row_keys);
    s_assert_str (row, "key", "42");
    s_assert_str (row, "owner", "ann");
    assert_int_equal (s_int (row, "balance"), 250);
    s_assert_str (row, "status", "open");
    assert_int_equal (s_int (row, "version"), 2);

    reply = zcq_test_query (client, "op", "s:get", "view", "s:totals", "key", "s:bank",
                            "min_position", s_typed_int (position), NULL);
    s_assert_ok (reply);
    row = zcq_value_get (reply, "row");
    s_assert_str (row, "key", "bank");
    assert_int_equal (s_int (row, "accounts"), 1);
    assert_int_equal (s_int (row, "balance"), 250);
    assert_int_equal (s_int (row, "events"), 2);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  Every query op, its reply keys, `rid`, and the error replies

//  Send a raw body on the dealer and return the reply.
static const zcq_value_t *
s_raw (s_dealer_t *dealer, const void *body, size_t size)
{
    s_dealer_send (dealer, body, size);
    const zcq_value_t *reply = s_dealer_recv (dealer, S_TIMEOUT_MS);
    if (!reply)
        fail_msg ("no reply to a raw query");
    return reply;
}

//  Send the request of writer with a rid of each kind (int, string, map)
//  and check each reply echoes it. Returns the last reply.
static const zcq_value_t *
s_with_rids (s_dealer_t *dealer, const zcq_writer_t *request, const char *code)
{
    //  re-encode the request with a rid added
    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (
        zcq_doc_decode (doc, zcq_writer_data (request), zcq_writer_size (request), NULL), ZCQ_OK);
    const zcq_value_t *root = zcq_doc_root (doc);
    zcq_writer_t *rid = zcq_writer_new ();
    zcq_writer_t *body = zcq_writer_new ();
    zcq_doc_t *rid_doc = zcq_doc_new ();
    const zcq_value_t *reply = NULL;
    for (int kind = 0; kind < 3; kind++) {
        zcq_writer_reset (rid);
        if (kind == 0)
            zcq_writer_int (rid, 424242);
        else if (kind == 1)
            zcq_writer_str (rid, "rid-string");
        else {
            zcq_writer_map (rid, 2);
            zcq_writer_str (rid, "client");
            zcq_writer_str (rid, "c7");
            zcq_writer_str (rid, "seq");
            zcq_writer_array (rid, 2);
            zcq_writer_int (rid, 1);
            zcq_writer_int (rid, 2);
        }
        assert_int_equal (
            zcq_doc_decode (rid_doc, zcq_writer_data (rid), zcq_writer_size (rid), NULL), ZCQ_OK);
        zcq_writer_reset (body);
        size_t count = zcq_value_size (root);
        zcq_writer_map (body, count + 1);
        for (size_t index = 0; index < count; index++) {
            zcq_writer_value (body, zcq_value_key_at (root, index));
            zcq_writer_value (body, zcq_value_val_at (root, index));
        }
        zcq_writer_str (body, "rid");
        zcq_writer_value (body, zcq_doc_root (rid_doc));
        reply = s_raw (dealer, zcq_writer_data (body), zcq_writer_size (body));
        assert_string_equal (zcq_test_code (reply), code);
        const zcq_value_t *echoed = zcq_value_get (reply, "rid");
        if (!echoed || !zcq_value_equal (echoed, zcq_doc_root (rid_doc)))
            fail_msg ("rid of kind %d was not echoed (reply %s)", kind, code);
    }
    zcq_doc_destroy (&rid_doc);
    zcq_writer_destroy (&body);
    zcq_writer_destroy (&rid);
    zcq_doc_destroy (&doc);
    return reply;
}

//  Build a request from typed name/value pairs (as zcq_test_query).
static void
s_typed_request (zcq_writer_t *writer, ...)
{
    zcq_writer_reset (writer);
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 0;
    va_list args;
    va_start (args, writer);
    const char *name;
    while ((name = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        zcq_writer_str (writer, name);
        if (strncmp (value, "i:", 2) == 0)
            zcq_writer_int (writer, atoll (value + 2));
        else if (strncmp (value, "s:", 2) == 0)
            zcq_writer_str (writer, value + 2);
        else if (strncmp (value, "n:", 2) == 0)
            zcq_writer_nil (writer);
        else if (strncmp (value, "b:", 2) == 0)
            zcq_writer_bool (writer, strcmp (value + 2, "true") == 0);
        else
            fail_msg ("test value '%s' has no type prefix", value);
        count++;
    }
    va_end (args);
    zcq_writer_map_close (writer, mark, count);
}

static void
test_query_ops (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "ops");
    zcq_client_t *client = fixture.client;
    s_dealer_t *dealer = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_QUERY));
    zcq_writer_t *request = zcq_writer_new ();
    static const char *const view_keys[] = { "ok", "position", "head", NULL };

    //  an empty node: empty views, an empty log
    const zcq_value_t *reply = zcq_test_query (client, "op", "s:list", "view", "s:accounts", NULL);
    s_assert_ok (reply);
    s_assert_keys (reply, view_keys);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "rows")), ZCQ_TYPE_ARRAY);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    assert_int_equal (s_int (reply, "position"), 0);
    assert_int_equal (s_int (reply, "head"), 0);
    reply = zcq_test_query (client, "op", "s:list", "view", "s:accounts", "index", "s:owner",
                            "value", "s:ann", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    assert_int_equal (s_count (&fixture, "accounts", NULL, NULL, 0), 0);
    assert_int_equal (s_count (&fixture, "totals", NULL, NULL, 0), 0);
    reply = s_get (&fixture, "totals", "bank", 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "row")), ZCQ_TYPE_NIL);
    reply = zcq_test_query (client, "op", "s:read", "from", "i:1", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 0);
    assert_int_equal (s_int (reply, "head"), 0);

    //  some data: three owners
    const char *owners[] = { "ann", "bob", "cy", "ann", "bob" };
    uint64_t position = 0;
    for (int account = 0; account < 5; account++) {
        char key[8];
        snprintf (key, sizeof key, "a%d", account);
        s_assert_ok (s_command (client, "open", key, owners[account], 0, NULL));
        reply = s_command (client, "deposit", key, NULL, 100 * (account + 1), NULL);
        s_assert_ok (reply);
        position = (uint64_t) s_int (reply, "position");
    }
    assert_int_equal (position, 10);

    //  get: row (a map, or nil when absent)
    s_typed_request (request, "op", "s:get", "view", "s:accounts", "key", "s:a1", "min_position",
                     "i:10", NULL);
    reply = s_with_rids (dealer, request, "ok");
    s_assert_keys (reply, view_keys);
    assert_int_equal (s_int (reply, "position"), 10);
    assert_int_equal (s_int (reply, "head"), 10);
    s_assert_str (zcq_value_get (reply, "row"), "key", "a1");
    assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), 200);
    s_typed_request (request, "op", "s:get", "view", "s:accounts", "key", "s:nobody", NULL);
    reply = s_with_rids (dealer, request, "ok");
    s_assert_keys (reply, view_keys);
    assert_non_null (zcq_value_get (reply, "row"));
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "row")), ZCQ_TYPE_NIL);

    //  list: rows + next, by key and by index
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "i:2", NULL);
    reply = s_with_rids (dealer, request, "ok");
    s_assert_keys (reply, view_keys);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 2);
    s_assert_str (reply, "next", "a1");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "index", "s:owner", "value",
                     "s:ann", NULL);
    reply = s_with_rids (dealer, request, "ok");
    const zcq_value_t *rows = zcq_value_get (reply, "rows");
    assert_int_equal (zcq_value_size (rows), 2);
    s_assert_str (zcq_value_at (rows, 0), "key", "a0");
    s_assert_str (zcq_value_at (rows, 1), "key", "a3");
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "i:1000", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 5);
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "i:1", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 1);
    s_assert_str (reply, "next", "a0");

    //  count, by key and by index
    s_typed_request (request, "op", "s:count", "view", "s:accounts", NULL);
    reply = s_with_rids (dealer, request, "ok");
    s_assert_keys (reply, view_keys);
    assert_int_equal (s_int (reply, "count"), 5);
    s_typed_request (request, "op", "s:count", "view", "s:accounts", "index", "s:owner", "value",
                     "s:bob", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (s_int (reply, "count"), 2);
    s_typed_request (request, "op", "s:count", "view", "s:accounts", "index", "s:owner", "value",
                     "s:nobody", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (s_int (reply, "count"), 0);
    s_typed_request (request, "op", "s:count", "view", "s:totals", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (s_int (reply, "count"), 1);

    //  read: events + head, no position
    s_typed_request (request, "op", "s:read", "from", "i:3", "limit", "i:4", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (s_int (reply, "head"), 10);
    assert_null (zcq_value_get (reply, "position"));
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), 4);
    for (size_t index = 0; index < 4; index++)
        assert_int_equal (s_int (zcq_value_at (events, index), "position"), 3 + index);

    //  stream: events + version
    s_typed_request (request, "op", "s:stream", "stream", "s:account/a2", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (s_int (reply, "version"), 2);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 2);

    //  views, health, stats
    s_typed_request (request, "op", "s:views", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "views")), ZCQ_TYPE_ARRAY);
    s_typed_request (request, "op", "s:health", NULL);
    reply = s_with_rids (dealer, request, "ok");
    static const char *const health_keys[]
        = { "node", "head", "uptime_ms", "durability", "views", NULL };
    s_assert_keys (reply, health_keys);
    s_typed_request (request, "op", "s:stats", NULL);
    reply = s_with_rids (dealer, request, "ok");
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "stats")), ZCQ_TYPE_MAP);

    //  unknown: op, view, index
    s_typed_request (request, "op", "s:frobnicate", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");
    s_typed_request (request, "op", "s:get", "view", "s:nope", "key", "s:a1", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");
    s_typed_request (request, "op", "s:list", "view", "s:nope", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");
    s_typed_request (request, "op", "s:count", "view", "s:nope", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "index", "s:color", "value",
                     "s:red", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");
    s_typed_request (request, "op", "s:count", "view", "s:accounts", "index", "s:color", "value",
                     "s:red", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");
    s_typed_request (request, "op", "s:list", "view", "s:totals", "index", "s:owner", "value",
                     "s:ann", NULL);
    s_assert_error (s_with_rids (dealer, request, "unknown"), "unknown");

    //  invalid: missing view, key, value; bad limits and positions
    s_typed_request (request, "op", "s:get", "key", "s:a1", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:count", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:get", "view", "s:accounts", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:get", "view", "s:accounts", "key", "i:7", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:get", "view", "i:1", "key", "s:a1", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "i:0", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "i:1001", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "i:-5", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "limit", "s:ten", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "index", "s:owner", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:count", "view", "s:accounts", "index", "s:owner", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:list", "view", "s:accounts", "after", "i:3", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:get", "view", "s:accounts", "key", "s:a1", "min_position",
                     "i:-1", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:get", "view", "s:accounts", "key", "s:a1", "min_position",
                     "s:soon", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:get", "view", "s:accounts", "key", "s:a1", "timeout_ms",
                     "s:long", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:read", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:read", "from", "i:0", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:read", "from", "i:1", "limit", "i:0", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:read", "from", "i:1", "limit", "i:10001", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:stream", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "op", "s:stream", "stream", "s:account/a1", "from", "i:0", NULL);
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");
    s_typed_request (request, "view", "s:accounts", NULL); //  no op
    s_assert_error (s_with_rids (dealer, request, "invalid"), "invalid");

    //  bodies that are not a map, or not MessagePack at all
    static const uint8_t not_maps[][4] = {
        { 0x05 },                 //  an integer
        { 0x92, 0x01, 0x02 },     //  an array
        { 0xa3, 'g', 'e', 't' },  //  a string
        { 0xc1 },                 //  a reserved byte
        { 0x82, 0xa2, 'o', 'p' }, //  a truncated map
        { 0x80, 0x80 },           //  trailing bytes
    };
    static const size_t not_map_sizes[] = { 1, 3, 4, 1, 4, 2 };
    for (size_t index = 0; index < sizeof not_map_sizes / sizeof not_map_sizes[0]; index++)
        s_assert_error (s_raw (dealer, not_maps[index], not_map_sizes[index]), "invalid");
    s_assert_error (s_raw (dealer, "", 0), "invalid");

    //  a body over the request limit (1 MiB): invalid, with no harm done
    size_t big_size = (1 << 20) + 64;
    char *big = malloc (big_size);
    assert_non_null (big);
    memset (big, 'x', big_size);
    zcq_writer_reset (request);
    zcq_writer_map (request, 2);
    zcq_writer_str (request, "op");
    zcq_writer_str (request, "health");
    zcq_writer_str (request, "pad");
    zcq_writer_strn (request, big, big_size);
    free (big);
    s_assert_error (s_raw (dealer, zcq_writer_data (request), zcq_writer_size (request)),
                    "invalid");

    //  after all that, the node still answers, and the data is intact
    reply = s_get (&fixture, "totals", "bank", 0);
    assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), 1500);

    zcq_writer_destroy (&request);
    s_dealer_destroy (&dealer);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  Random commands: the views, the log and the model agree

static void
test_random_consistency (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "random");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 0x5eed2024ULL;
    s_bank_random (&fixture, bank, 2000);
    printf ("  random: %d accepted, %d rejected, %d invalid, %d closes\n", bank->accepted,
            bank->rejected, bank->invalid, bank->closes);
    assert_true (bank->rejected > 50);
    assert_true (bank->invalid > 10);
    assert_true (bank->closes > 5);
    s_bank_check (&fixture, bank);
    free (bank);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  Read-your-writes: every query with min_position sees its command

static void
test_read_your_writes (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "ryw");
    enum { ACCOUNTS = 10, PAIRS = 1000 };
    int64_t balances[ACCOUNTS] = { 0 };
    for (int account = 0; account < ACCOUNTS; account++) {
        char key[16];
        snprintf (key, sizeof key, "ryw%d", account);
        s_assert_ok (s_command (fixture.client, "open", key, "ann", 0, NULL));
    }
    int64_t *latency = calloc (PAIRS, sizeof (int64_t));
    for (int pair = 0; pair < PAIRS; pair++) {
        int account = pair % ACCOUNTS;
        char key[16];
        snprintf (key, sizeof key, "ryw%d", account);
        int64_t amount = 1 + pair % 50;
        const zcq_value_t *reply = s_command (fixture.client, "deposit", key, NULL, amount, NULL);
        int64_t acked = zclock_usecs ();
        s_assert_ok (reply);
        balances[account] += amount;
        int64_t position = s_int (reply, "position");
        int64_t version = s_int (reply, "version");
        reply = s_get (&fixture, "accounts", key, (uint64_t) position);
        latency[pair] = zclock_usecs () - acked;
        assert_true (s_int (reply, "position") >= position);
        const zcq_value_t *row = zcq_value_get (reply, "row");
        assert_int_equal (s_int (row, "balance"), balances[account]);
        assert_int_equal (s_int (row, "version"), version);
    }
    qsort (latency, PAIRS, sizeof (int64_t), s_int64cmp);
    printf ("  ack->visible (query with min_position, round trip): median %lld us, p99 %lld us, "
            "max %lld us\n",
            (long long) latency[PAIRS / 2], (long long) latency[PAIRS * 99 / 100],
            (long long) latency[PAIRS - 1]);
    free (latency);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  A parked query times out, and never holds up the others

static void
test_timeout (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "timeout");
    s_assert_ok (s_command (fixture.client, "open", "t1", "ann", 0, NULL));
    const zcq_value_t *reply = s_command (fixture.client, "deposit", "t1", NULL, 5, NULL);
    s_assert_ok (reply);
    int64_t head = s_int (reply, "position");
    s_get (&fixture, "accounts", "t1", (uint64_t) head);

    s_dealer_t *parked = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_QUERY));
    s_typed_request (parked->writer, "op", "s:get", "view", "s:accounts", "key", "s:t1",
                     "min_position", s_typed_int (head + 1000000), "timeout_ms", "i:100", "rid",
                     "s:parked", NULL);
    int64_t sent = zclock_mono ();
    s_dealer_send_writer (parked, parked->writer);

    //  meanwhile, other queries on the same view (and others) are answered
    //  (that they come first is checked below without a race on the clock)
    reply = s_get (&fixture, "accounts", "t1", 0);
    assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), 5);
    assert_int_equal (s_count (&fixture, "accounts", NULL, NULL, 0), 1);
    s_get (&fixture, "totals", "bank", (uint64_t) head);
    s_assert_ok (zcq_test_query (fixture.client, "op", "s:health", NULL));

    reply = s_dealer_recv (parked, 3000);
    int64_t elapsed = zclock_mono () - sent;
    if (!reply)
        fail_msg ("the parked query got no reply in 3 s");
    s_assert_error (reply, "timeout");
    s_assert_str (reply, "rid", "parked");
    assert_int_equal (s_int (reply, "position"), head);
    assert_int_equal (s_int (reply, "head"), head);
    assert_true (elapsed >= 99);

    //  many parked queries, each answered at its own deadline with its rid
    enum { PARKED = 20 };
    for (int index = 0; index < PARKED; index++) {
        s_typed_request (parked->writer, "op", index % 2 ? "s:count" : "s:list", "view",
                         index % 3 ? "s:accounts" : "s:totals", "min_position",
                         s_typed_int (head + 1 + index), "timeout_ms",
                         s_typed_int (20 + 5 * (PARKED - index)), "rid", s_typed_int (index), NULL);
        s_dealer_send_writer (parked, parked->writer);
    }
    bool answered[PARKED] = { false };
    for (int index = 0; index < PARKED; index++) {
        reply = s_dealer_recv (parked, 3000);
        if (!reply)
            fail_msg ("only %d of %d parked queries were answered", index, PARKED);
        s_assert_error (reply, "timeout");
        int64_t rid = s_int (reply, "rid");
        assert_in_range (rid, 0, PARKED - 1);
        assert_false (answered[rid]);
        answered[rid] = true;
        assert_int_equal (s_int (reply, "position"), head);
    }

    //  timeout_ms 0: at once
    s_typed_request (parked->writer, "op", "s:count", "view", "s:totals", "min_position",
                     s_typed_int (head + 1), "timeout_ms", "i:0", NULL);
    s_dealer_send_writer (parked, parked->writer);
    reply = s_dealer_recv (parked, 3000);
    assert_non_null (reply);
    s_assert_error (reply, "timeout");
    assert_int_equal (s_int (reply, "position"), head);

    //  a parked query waits while others are answered, and is answered as
    //  soon as its position is reached
    zmq_pollitem_t item = { zsock_resolve (parked->socket), 0, ZMQ_POLLIN, 0 };
    s_typed_request (parked->writer, "op", "s:get", "view", "s:accounts", "key", "s:t1",
                     "min_position", s_typed_int (head + 1), "timeout_ms", "i:10000", "rid", "i:77",
                     NULL);
    s_dealer_send_writer (parked, parked->writer);
    for (int round = 0; round < 5; round++) {
        reply = s_get (&fixture, "accounts", "t1", 0);
        assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), 5);
        s_get (&fixture, "totals", "bank", (uint64_t) head);
        s_assert_ok (zcq_test_query (fixture.client, "op", "s:views", NULL));
    }
    assert_int_equal (zmq_poll (&item, 1, 0), 0); //  still parked: nothing moved
    reply = s_command (fixture.client, "deposit", "t1", NULL, 7, NULL);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "position"), head + 1);
    reply = s_dealer_recv (parked, S_TIMEOUT_MS);
    assert_non_null (reply);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "rid"), 77);
    assert_true (s_int (reply, "position") >= head + 1);
    assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), 12);

    s_dealer_destroy (&parked);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  Pagination through 10,000 accounts, by key and by index

static void
s_assert_listing (const s_listing_t *listing, char **expected, size_t count)
{
    assert_int_equal (listing->count, count);
    for (size_t index = 0; index < count; index++)
        if (strcmp (listing->keys[index], expected[index]) != 0)
            fail_msg ("row %zu is '%s', expected '%s'", index, listing->keys[index],
                      expected[index]);
}

static void
test_pagination (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "pages");
    enum { ACCOUNTS = 10000, OWNERS = 7 };
    s_dealer_t *commands = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_COMMAND));
    char **keys = calloc (ACCOUNTS, sizeof (char *));
    char **by_owner[OWNERS];
    size_t owner_count[OWNERS] = { 0 };
    for (int owner = 0; owner < OWNERS; owner++)
        by_owner[owner] = calloc (ACCOUNTS, sizeof (char *));
    for (int account = 0; account < ACCOUNTS; account++) {
        char key[16], owner[16], id[32];
        snprintf (key, sizeof key, "%d", account); //  not zero-padded: byte order
        snprintf (owner, sizeof owner, "o%d", account % OWNERS);
        snprintf (id, sizeof id, "page-%d", account);
        keys[account] = strdup (key);
        by_owner[account % OWNERS][owner_count[account % OWNERS]++] = keys[account];
        s_dealer_command (commands, id, "open", key, owner, 0);
    }
    uint64_t head = s_dealer_drain (commands, ACCOUNTS);
    assert_int_equal (head, ACCOUNTS);
    qsort (keys, ACCOUNTS, sizeof (char *), s_strcmp);
    for (int owner = 0; owner < OWNERS; owner++)
        qsort (by_owner[owner], owner_count[owner], sizeof (char *), s_strcmp);

    s_listing_t listing;
    s_list_all (&fixture, "accounts", NULL, NULL, 1000, head, &listing);
    s_assert_listing (&listing, keys, ACCOUNTS);
    assert_int_equal (listing.pages, 10);
    s_listing_free (&listing);
    s_list_all (&fixture, "accounts", NULL, NULL, 333, 0, &listing);
    s_assert_listing (&listing, keys, ACCOUNTS);
    assert_int_equal (listing.pages, (ACCOUNTS + 332) / 333);
    s_listing_free (&listing);
    s_list_all (&fixture, "accounts", NULL, NULL, 0, 0, &listing); //  default: 100
    s_assert_listing (&listing, keys, ACCOUNTS);
    assert_int_equal (listing.pages, ACCOUNTS / 100);
    s_listing_free (&listing);

    for (int owner = 0; owner < OWNERS; owner++) {
        char value[16];
        snprintf (value, sizeof value, "o%d", owner);
        s_list_all (&fixture, "accounts", "owner", value, 333, 0, &listing);
        s_assert_listing (&listing, by_owner[owner], owner_count[owner]);
        assert_int_equal (s_count (&fixture, "accounts", "owner", value, 0), owner_count[owner]);
        s_listing_free (&listing);
        s_list_all (&fixture, "accounts", "owner", value, 1000, 0, &listing);
        s_assert_listing (&listing, by_owner[owner], owner_count[owner]);
        s_listing_free (&listing);
    }
    assert_int_equal (s_count (&fixture, "accounts", NULL, NULL, 0), ACCOUNTS);

    //  edges: past the end, between keys, an absent index value
    const zcq_value_t *reply = zcq_test_query (fixture.client, "op", "s:list", "view", "s:accounts",
                                               "after", "s:~", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    char last[64];
    snprintf (last, sizeof last, "s:%s", keys[ACCOUNTS - 1]);
    reply = zcq_test_query (fixture.client, "op", "s:list", "view", "s:accounts", "after", last,
                            NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    reply = zcq_test_query (fixture.client, "op", "s:list", "view", "s:accounts", "after",
                            "s:5000a", "limit", "i:2", NULL); //  not a key: starts after it
    s_assert_ok (reply);
    const zcq_value_t *rows = zcq_value_get (reply, "rows");
    assert_int_equal (zcq_value_size (rows), 2);
    s_assert_str (zcq_value_at (rows, 0), "key", "5001");
    s_assert_str (zcq_value_at (rows, 1), "key", "5002");
    s_assert_str (reply, "next", "5002");
    reply = zcq_test_query (fixture.client, "op", "s:list", "view", "s:accounts", "index",
                            "s:owner", "value", "s:o3", "after", "s:~", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    reply = zcq_test_query (fixture.client, "op", "s:list", "view", "s:accounts", "index",
                            "s:owner", "value", "s:nobody", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "rows")), 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "next")), ZCQ_TYPE_NIL);
    assert_int_equal (s_count (&fixture, "accounts", "owner", "nobody", 0), 0);

    //  read limits over the same log: default 1000, at most 10000
    reply = zcq_test_query (fixture.client, "op", "s:read", "from", "i:1", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 1000);
    reply
        = zcq_test_query (fixture.client, "op", "s:read", "from", "i:1", "limit", "i:10000", NULL);
    s_assert_ok (reply);
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), ACCOUNTS);
    for (size_t index = 0; index < ACCOUNTS; index++)
        assert_int_equal (s_int (zcq_value_at (events, index), "position"), index + 1);

    for (int owner = 0; owner < OWNERS; owner++)
        free (by_owner[owner]);
    for (int account = 0; account < ACCOUNTS; account++)
        free (keys[account]);
    free (keys);
    s_dealer_destroy (&commands);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  `read` and `stream`

static void
test_read_stream (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "log");
    zcq_client_t *client = fixture.client;
    const char *keys[] = { "x", "y", "z" };
    int versions[3] = { 0 };
    uint64_t head = 0;
    for (int step = 0; step < 30; step++) {
        int account = step % 3;
        const zcq_value_t *reply
            = versions[account] ? s_command (client, "deposit", keys[account], NULL, step + 1, NULL)
                                : s_command (client, "open", keys[account], "ann", 0, NULL);
        s_assert_ok (reply);
        versions[account]++;
        head = (uint64_t) s_int (reply, "position");
        //  a rejected command in between writes nothing
        s_assert_error (s_command (client, "withdraw", keys[account], NULL, 1000000, NULL),
                        "rejected");
    }
    assert_int_equal (head, 30);

    //  the whole log: positions 1..head, contiguous, whatever the page size
    s_log_t log;
    for (int64_t limit = 1; limit <= 31; limit += 6) {
        s_read_all (&fixture, limit, &log);
        assert_int_equal (log.head, head);
        assert_int_equal (log.events, head);
        assert_int_equal (log.pages, (head + limit - 1) / limit + 1);
    }
    const zcq_value_t *reply = zcq_test_query (client, "op", "s:read", "from", "i:1", NULL);
    s_assert_ok (reply);
    const zcq_value_t *events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), head);
    for (size_t index = 0; index < head; index++) {
        const zcq_value_t *event = zcq_value_at (events, index);
        s_assert_event (event, zcq_node_id (fixture.node), keys[index % 3]);
        assert_int_equal (s_int (event, "position"), index + 1);
        assert_int_equal (s_int (event, "version"), index / 3 + 1);
    }
    reply = zcq_test_query (client, "op", "s:read", "from", "i:29", "limit", "i:10", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 2);
    reply = zcq_test_query (client, "op", "s:read", "from", "i:31", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 0);
    assert_int_equal (s_int (reply, "head"), head);
    reply = zcq_test_query (client, "op", "s:read", "from", "i:1000000", "limit", "i:1", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 0);

    //  a stream: versions 1..n in order, its version
    reply = zcq_test_query (client, "op", "s:stream", "stream", "s:account/y", NULL);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "version"), 10);
    events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), 10);
    int64_t previous = 0;
    for (size_t index = 0; index < 10; index++) {
        const zcq_value_t *event = zcq_value_at (events, index);
        s_assert_event (event, zcq_node_id (fixture.node), "y");
        assert_int_equal (s_int (event, "version"), index + 1);
        assert_true (s_int (event, "position") > previous);
        previous = s_int (event, "position");
        s_assert_str (event, "type", index ? "deposited" : "opened");
    }
    reply = zcq_test_query (client, "op", "s:stream", "stream", "s:account/y", "from", "i:4",
                            "limit", "i:3", NULL);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "version"), 10);
    events = zcq_value_get (reply, "events");
    assert_int_equal (zcq_value_size (events), 3);
    for (size_t index = 0; index < 3; index++)
        assert_int_equal (s_int (zcq_value_at (events, index), "version"), 4 + index);
    reply = zcq_test_query (client, "op", "s:stream", "stream", "s:account/y", "from", "i:10",
                            "limit", "i:5", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 1);
    reply
        = zcq_test_query (client, "op", "s:stream", "stream", "s:account/y", "from", "i:11", NULL);
    s_assert_ok (reply);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 0);
    assert_int_equal (s_int (reply, "version"), 10);
    reply = zcq_test_query (client, "op", "s:stream", "stream", "s:account/nobody", NULL);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "version"), 0);
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "events")), 0);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  views, health, stats

static void
test_views_health_stats (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "status");
    uint64_t position = 0;
    for (int account = 0; account < 12; account++) {
        char key[16];
        snprintf (key, sizeof key, "s%d", account);
        s_assert_ok (s_command (fixture.client, "open", key, "ann", 0, NULL));
        const zcq_value_t *reply = s_command (fixture.client, "deposit", key, NULL, 3, NULL);
        s_assert_ok (reply);
        position = (uint64_t) s_int (reply, "position");
    }
    s_get (&fixture, "accounts", "s0", position);
    s_get (&fixture, "totals", "bank", position);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);

    const zcq_value_t *reply = zcq_test_query (fixture.client, "op", "s:views", NULL);
    s_assert_ok (reply);
    const zcq_value_t *views = zcq_value_get (reply, "views");
    assert_int_equal (zcq_value_size (views), 2);
    bool seen_accounts = false, seen_totals = false;
    static const char *const view_keys[] = { "name", "position", "rows", "status", NULL };
    for (size_t index = 0; index < 2; index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        s_assert_keys (view, view_keys);
        s_assert_str (view, "status", "live");
        assert_int_equal (s_int (view, "position"), position);
        if (zcq_value_streq (zcq_value_get (view, "name"), "accounts")) {
            seen_accounts = true;
            assert_int_equal (s_int (view, "rows"), 12);
        }
        else if (zcq_value_streq (zcq_value_get (view, "name"), "totals")) {
            seen_totals = true;
            assert_int_equal (s_int (view, "rows"), 1);
        }
    }
    assert_true (seen_accounts && seen_totals);

    reply = zcq_test_query (fixture.client, "op", "s:health", NULL);
    s_assert_ok (reply);
    s_assert_str (reply, "node", zcq_node_id (fixture.node));
    assert_int_equal (s_int (reply, "head"), position);
    assert_int_equal (zcq_node_head (fixture.node), position);
    assert_true (s_int (reply, "uptime_ms") >= 0);
    s_assert_str (reply, "durability", "wal");
    assert_int_equal (zcq_value_size (zcq_value_get (reply, "views")), 2);

    reply = zcq_test_query (fixture.client, "op", "s:stats", NULL);
    s_assert_ok (reply);
    const zcq_value_t *stats = zcq_value_get (reply, "stats");
    assert_int_equal (zcq_value_type (stats), ZCQ_TYPE_MAP);
    assert_int_equal (s_int (stats, "commands_accepted"), 24);
    assert_int_equal (s_int (stats, "events_written"), position);
    assert_true (s_int (stats, "queries_served") >= 4);
    assert_int_equal (s_int (stats, "view.accounts.lag"), 0);
    assert_int_equal (s_int (stats, "view.totals.lag"), 0);
    assert_int_equal (s_int (stats, "view.accounts.rows"), 12);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  The events endpoint

static void
test_events_endpoint (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "events");
    const char *events = s_endpoint (&fixture, ZCQ_ENDPOINT_EVENTS);
    const char *node = zcq_node_id (fixture.node);
    zsock_t *all = s_sub_new (events, "", NULL);
    zsock_t *heartbeats = s_sub_new (events, "$heartbeat", NULL);
    zsock_t *one = s_sub_new (events, "account/e2/", "$heartbeat");
    zcq_doc_t *doc = zcq_doc_new ();

    //  a heartbeat, subscribed explicitly
    zmsg_t *message = s_sub_recv (heartbeats, 3000, false);
    if (!message)
        fail_msg ("no heartbeat within 3 s");
    assert_true (zframe_streq (zmsg_first (message), "$heartbeat"));
    const zcq_value_t *body = s_body (doc, message);
    static const char *const heartbeat_keys[] = { "node", "head", "time", NULL };
    s_assert_keys (body, heartbeat_keys);
    s_assert_str (body, "node", node);
    assert_int_equal (s_int (body, "head"), zcq_node_head (fixture.node));
    int64_t now = zclock_time () * 1000;
    assert_true (llabs (s_int (body, "time") - now) < 60000000LL);
    zmsg_destroy (&message);

    //  commands with and without meta
    zcq_writer_t *meta = zcq_writer_new ();
    zcq_writer_map (meta, 2);
    zcq_writer_str (meta, "user");
    zcq_writer_str (meta, "ann");
    zcq_writer_str (meta, "trace");
    zcq_writer_array (meta, 2);
    zcq_writer_str (meta, "t-1");
    zcq_writer_int (meta, 99);
    zcq_doc_t *meta_doc = zcq_doc_new ();
    assert_int_equal (
        zcq_doc_decode (meta_doc, zcq_writer_data (meta), zcq_writer_size (meta), NULL), ZCQ_OK);
    uint64_t head = zcq_node_head (fixture.node);
    struct {
        const char *type, *key, *event;
        int64_t amount;
        bool meta;
    } sent[] = {
        { "open", "e1", "opened", 0, true },       { "deposit", "e1", "deposited", 40, true },
        { "open", "e2", "opened", 0, false },      { "deposit", "e1", "deposited", 2, false },
        { "withdraw", "e2", NULL, 1, false }, //  rejected: no event
        { "deposit", "e2", "deposited", 9, true }, { "withdraw", "e1", "withdrawn", 42, false },
        { "close", "e1", "closed", 0, true },
    };
    size_t sent_count = sizeof sent / sizeof sent[0];
    char ids[16][64];
    for (size_t index = 0; index < sent_count; index++) {
        const zcq_value_t *reply = s_command (fixture.client, sent[index].type, sent[index].key,
                                              "ann", sent[index].amount,
                                              sent[index].meta ? meta : NULL);
        if (sent[index].event)
            s_assert_ok (reply);
        else
            s_assert_error (reply, "rejected");
        s_str (reply, "id", ids[index], sizeof ids[index]);
    }

    //  every event on "": [topic][body], positions consecutive
    uint64_t expected = head + 1;
    int versions[2] = { 0, 0 };
    for (size_t index = 0; index < sent_count; index++) {
        if (!sent[index].event)
            continue;
        message = s_sub_recv (all, 3000, true);
        if (!message)
            fail_msg ("event %zu did not come", index);
        char topic[64];
        snprintf (topic, sizeof topic, "account/%s/", sent[index].key);
        assert_true (zframe_streq (zmsg_first (message), topic));
        body = s_body (doc, message);
        s_assert_event (body, node, sent[index].key);
        assert_int_equal (s_int (body, "position"), expected++);
        int *version = &versions[sent[index].key[1] - '1'];
        assert_int_equal (s_int (body, "version"), ++*version);
        s_assert_str (body, "type", sent[index].event);
        s_assert_str (body, "command", ids[index]);
        const zcq_value_t *event_meta = zcq_value_get (body, "meta");
        if (sent[index].meta)
            assert_true (zcq_value_equal (event_meta, zcq_doc_root (meta_doc)));
        else
            assert_int_equal (zcq_value_size (event_meta), 0);
        const zcq_value_t *data = zcq_value_get (body, "data");
        assert_int_equal (zcq_value_type (data), ZCQ_TYPE_MAP);
        if (streq (sent[index].event, "opened")) {
            assert_true (zcq_value_streq (zcq_value_get (data, "owner"), "ann"));
            assert_int_equal (s_int (data, "overdraft"), 0);
        }
        else if (!streq (sent[index].event, "closed"))
            assert_int_equal (s_int (data, "amount"), sent[index].amount);
        zmsg_destroy (&message);
    }
    assert_int_equal (expected - 1, zcq_node_head (fixture.node));

    //  a stream subscriber gets only its stream
    for (int count = 0; count < 2; count++) {
        message = s_sub_recv (one, 3000, true);
        if (!message)
            fail_msg ("the e2 event %d did not come", count);
        assert_true (zframe_streq (zmsg_first (message), "account/e2/"));
        body = s_body (doc, message);
        s_assert_str (body, "stream", "account/e2");
        zmsg_destroy (&message);
    }
    //  the heartbeat subscriber got no events, only heartbeats with node/head
    while ((message = s_sub_recv (heartbeats, 0, false))) {
        assert_true (zframe_streq (zmsg_first (message), "$heartbeat"));
        zmsg_destroy (&message);
    }
    //  and the next heartbeat tells the new head
    int64_t deadline = zclock_mono () + 3000;
    while (true) {
        message = s_sub_recv (heartbeats, 3000, false);
        if (!message)
            fail_msg ("no heartbeat within 3 s");
        body = s_body (doc, message);
        int64_t reported = s_int (body, "head");
        zmsg_destroy (&message);
        if (reported == (int64_t) zcq_node_head (fixture.node))
            break;
        if (zclock_mono () > deadline)
            fail_msg ("the heartbeats do not report the head");
    }
    while ((message = s_sub_recv (one, 0, true))) {
        fail_msg ("an unexpected event for account/e2/");
        zmsg_destroy (&message);
    }

    zcq_doc_destroy (&meta_doc);
    zcq_writer_destroy (&meta);
    zcq_doc_destroy (&doc);
    zsock_destroy (&one);
    zsock_destroy (&heartbeats);
    zsock_destroy (&all);
    s_stop (&fixture);
}

//  Spec section 4: heartbeats "at least once a second", also while events
//  flow (a `$heartbeat`-only subscriber sees no events at all).
static void
test_heartbeat_under_load (void **state)
{
    s_fixture_t fixture;
    memset (&fixture, 0, sizeof fixture);
    fixture.dir = zcq_test_dir ("beat");
    fixture.writer = zcq_writer_new ();
    s_node_up (&fixture, "500"); //  the default
    zsock_t *heartbeats
        = s_sub_new (s_endpoint (&fixture, ZCQ_ENDPOINT_EVENTS), "$heartbeat", NULL);
    s_assert_ok (s_command (fixture.client, "open", "load", "ann", 0, NULL));
    s_dealer_t *commands = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_COMMAND));
    int inflight = 0, sent = 0, beats = 0;
    int64_t longest = 0, last_beat = zclock_mono ();
    int64_t start = zclock_mono ();
    while (zclock_mono () - start < 2500) {
        while (inflight < 16) {
            char id[32];
            snprintf (id, sizeof id, "load-%d", sent++);
            s_dealer_command (commands, id, "deposit", "load", NULL, 1);
            inflight++;
        }
        const zcq_value_t *reply = s_dealer_recv (commands, S_TIMEOUT_MS);
        assert_non_null (reply);
        s_assert_ok (reply);
        inflight--;
        zmsg_t *message;
        while ((message = s_sub_recv (heartbeats, 0, false))) {
            beats++;
            int64_t now = zclock_mono ();
            if (now - last_beat > longest)
                longest = now - last_beat;
            last_beat = now;
            zmsg_destroy (&message);
        }
    }
    if (zclock_mono () - last_beat > longest)
        longest = zclock_mono () - last_beat;
    s_dealer_drain (commands, (size_t) inflight);
    printf ("  heartbeats under load: %d in 2.5 s (%d commands), longest gap %lld ms\n", beats,
            sent, (long long) longest);
    s_dealer_destroy (&commands);
    zsock_destroy (&heartbeats);
    s_stop (&fixture);
    if (beats < 2)
        fail_msg ("only %d heartbeats in 2.5 s of continuous commands (spec: at least one a "
                  "second); longest gap %lld ms",
                  beats, (long long) longest);
}

//  --------------------------------------------------------------------------
//  Catch-up subscriptions (zcq_catchup_t)

//  Pull events until the feed's position reaches `until`, checking each is
//  the next position; with a stream filter, only that stream comes.
static void
s_follow (zcq_catchup_t *feed, uint64_t *position, uint64_t until)
{
    while (*position < until) {
        const zcq_event_t *event;
        zcq_err_t err = zcq_catchup_next (feed, 5000, &event);
        if (err != ZCQ_OK)
            fail_msg ("catch-up stopped at %llu of %llu: %s", (unsigned long long) *position,
                      (unsigned long long) until, zcq_strerror (err));
        if (zcq_event_position (event) != *position + 1)
            fail_msg ("catch-up gave position %llu after %llu",
                      (unsigned long long) zcq_event_position (event),
                      (unsigned long long) *position);
        *position = zcq_event_position (event);
    }
}

static void
test_catchup_late (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "late");
    const char *query = s_endpoint (&fixture, ZCQ_ENDPOINT_QUERY);
    const char *events = s_endpoint (&fixture, ZCQ_ENDPOINT_EVENTS);
    s_dealer_t *commands = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_COMMAND));
    enum { ACCOUNTS = 50, BEFORE = 500, DURING = 1000 };
    uint64_t random = 42;
    int sent = 0;
    char id[32], key[16];
    for (int account = 0; account < ACCOUNTS; account++) {
        snprintf (id, sizeof id, "late-%d", sent++);
        snprintf (key, sizeof key, "%d", account);
        s_dealer_command (commands, id, "open", key, "ann", 0);
    }
    //  "4" and "420" share a prefix with "42": the filter must not mix them
    s_dealer_command (commands, "late-open-420", "open", "420", "bob", 0);
    sent++;
    while (sent < BEFORE) {
        snprintf (id, sizeof id, "late-%d", sent++);
        snprintf (key, sizeof key, "%d", (int) (s_random (&random) % ACCOUNTS));
        s_dealer_command (commands, id, "deposit", sent % 5 ? key : "420", NULL, 1 + sent % 7);
    }
    assert_int_equal (s_dealer_drain (commands, BEFORE), BEFORE);

    //  start late, from 1, while commands keep coming
    zcq_catchup_t *feed = zcq_catchup_new (query, events, 1, NULL);
    assert_non_null (feed);
    uint64_t position = 0;
    uint8_t *seen = calloc (BEFORE + DURING + 1, 1);
    for (int during = 0; during < DURING; during++) {
        snprintf (id, sizeof id, "late-%d", sent++);
        snprintf (key, sizeof key, "%d", (int) (s_random (&random) % ACCOUNTS));
        s_dealer_command (commands, id, "deposit", key, NULL, 1);
        const zcq_event_t *event;
        zcq_err_t err = zcq_catchup_next (feed, 5000, &event);
        if (err != ZCQ_OK)
            fail_msg ("catch-up failed at %llu: %s", (unsigned long long) position,
                      zcq_strerror (err));
        uint64_t at = zcq_event_position (event);
        assert_int_equal (at, position + 1);
        assert_true (at <= BEFORE + DURING);
        assert_int_equal (seen[at], 0);
        seen[at] = 1;
        position = at;
        assert_string_equal (zcq_event_aggregate (event), "account");
        assert_true (zcq_event_version (event) >= 1);
    }
    uint64_t head = s_dealer_drain (commands, DURING);
    assert_int_equal (head, BEFORE + DURING);
    while (position < head) {
        const zcq_event_t *event;
        zcq_err_t err = zcq_catchup_next (feed, 5000, &event);
        if (err != ZCQ_OK)
            fail_msg ("catch-up stopped at %llu of %llu: %s", (unsigned long long) position,
                      (unsigned long long) head, zcq_strerror (err));
        uint64_t at = zcq_event_position (event);
        assert_int_equal (at, position + 1);
        assert_int_equal (seen[at], 0);
        seen[at] = 1;
        position = at;
    }
    for (uint64_t at = 1; at <= head; at++)
        assert_int_equal (seen[at], 1);
    //  nothing more, no duplicates of what it already gave
    const zcq_event_t *event;
    assert_int_equal (zcq_catchup_next (feed, 300, &event), ZCQ_TIMEOUT);
    assert_int_equal (zcq_catchup_position (feed), head);
    assert_int_equal (zcq_catchup_head (feed), head);
    //  live after catching up
    s_assert_ok (s_command (fixture.client, "deposit", "7", NULL, 1, NULL));
    s_follow (feed, &position, head + 1);
    head++;
    zcq_catchup_destroy (&feed);
    free (seen);

    //  from the middle of the log
    feed = zcq_catchup_new (query, events, 250, NULL);
    assert_non_null (feed);
    position = 249;
    s_follow (feed, &position, head);
    assert_int_equal (zcq_catchup_next (feed, 200, &event), ZCQ_TIMEOUT);
    zcq_catchup_destroy (&feed);

    //  a topic filter: only account/42, in order, then live
    const zcq_value_t *reply = zcq_test_query (fixture.client, "op", "s:stream", "stream",
                                               "s:account/42", "limit", "i:10000", NULL);
    s_assert_ok (reply);
    int64_t version = s_int (reply, "version");
    assert_true (version >= 2);
    int64_t *positions = calloc ((size_t) version + 4, sizeof (int64_t));
    const zcq_value_t *stream_events = zcq_value_get (reply, "events");
    for (int64_t index = 0; index < version; index++)
        positions[index] = s_int (zcq_value_at (stream_events, (size_t) index), "position");
    feed = zcq_catchup_new (query, events, 1, "account/42/");
    assert_non_null (feed);
    for (int64_t index = 0; index < version; index++) {
        zcq_err_t err = zcq_catchup_next (feed, 5000, &event);
        if (err != ZCQ_OK)
            fail_msg ("filtered catch-up stopped after %lld events: %s", (long long) index,
                      zcq_strerror (err));
        assert_string_equal (zcq_event_stream (event), "account/42");
        assert_int_equal (zcq_event_version (event), index + 1);
        assert_int_equal (zcq_event_position (event), positions[index]);
    }
    assert_int_equal (zcq_catchup_next (feed, 300, &event), ZCQ_TIMEOUT);
    assert_int_equal (zcq_catchup_position (feed), head);
    s_assert_ok (s_command (fixture.client, "deposit", "420", NULL, 1, NULL));
    s_assert_ok (s_command (fixture.client, "deposit", "4", NULL, 1, NULL));
    reply = s_command (fixture.client, "deposit", "42", NULL, 1, NULL);
    s_assert_ok (reply);
    int64_t live_position = s_int (reply, "position");
    s_assert_ok (s_command (fixture.client, "deposit", "420", NULL, 1, NULL));
    assert_int_equal (zcq_catchup_next (feed, 5000, &event), ZCQ_OK);
    assert_string_equal (zcq_event_stream (event), "account/42");
    assert_int_equal (zcq_event_position (event), live_position);
    assert_int_equal (zcq_event_version (event), version + 1);
    assert_int_equal (zcq_catchup_next (feed, 300, &event), ZCQ_TIMEOUT);
    assert_true (zcq_catchup_position (feed) >= (uint64_t) live_position);
    free (positions);
    zcq_catchup_destroy (&feed);
    s_dealer_destroy (&commands);
    s_stop (&fixture);
}

//  Drops forced deterministically: the feed follows a PUB of the test's
//  own (an XPUB, so the test sees the feed's subscription), which relays
//  the node's events but leaves some out, repeats one and adds a broken
//  one. The feed must fill every gap from the log, in order, once.
static void
test_catchup_forced_gap (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "gap");
    for (int step = 0; step < 100; step++)
        s_assert_ok (s_command (fixture.client, step ? "deposit" : "open", "g", "ann", 1, NULL));
    zsock_t *upstream = s_sub_new (s_endpoint (&fixture, ZCQ_ENDPOINT_EVENTS), "", NULL);
    zsock_t *relay = zsock_new (ZMQ_XPUB);
    assert_non_null (relay);
    zsock_set_sndhwm (relay, 0);
    assert_true (zsock_bind (relay, "tcp://127.0.0.1:*") >= 0);
    char *relay_endpoint = zsock_last_endpoint (relay);
    assert_non_null (relay_endpoint);
    zcq_catchup_t *feed
        = zcq_catchup_new (s_endpoint (&fixture, ZCQ_ENDPOINT_QUERY), relay_endpoint, 1, NULL);
    assert_non_null (feed);
    //  wait for the feed's subscription to reach the relay
    zmq_pollitem_t item = { zsock_resolve (relay), 0, ZMQ_POLLIN, 0 };
    assert_int_equal (zmq_poll (&item, 1, 3000), 1);
    zframe_t *subscription = zframe_recv (relay);
    assert_non_null (subscription);
    assert_int_equal (zframe_size (subscription), 1);
    assert_int_equal (zframe_data (subscription)[0], 1);
    zframe_destroy (&subscription);

    uint64_t position = 0;
    s_follow (feed, &position, 100); //  from the log

    for (int step = 0; step < 10; step++)
        s_assert_ok (s_command (fixture.client, "deposit", "g", NULL, 1, NULL));
    zmsg_t *live[10];
    zcq_doc_t *doc = zcq_doc_new ();
    for (int index = 0; index < 10; index++) {
        live[index] = s_sub_recv (upstream, 3000, true);
        if (!live[index])
            fail_msg ("live event %d did not come", 101 + index);
        assert_int_equal (s_int (s_body (doc, live[index]), "position"), 101 + index);
    }
    //  relay 101 102 . 104 105 106 107 105 (garbage) . 109 .
    static const int relayed[] = { 101, 102, 104, 105, 106, 107, 105, 0, 109 };
    for (size_t index = 0; index < sizeof relayed / sizeof relayed[0]; index++) {
        if (relayed[index] == 0) {
            zmsg_t *garbage = zmsg_new ();
            zmsg_addstr (garbage, "account/g/");
            zmsg_addmem (garbage, "\xc1\xc1", 2);
            assert_int_equal (zmsg_send (&garbage, relay), 0);
            continue;
        }
        zmsg_t *copy = zmsg_dup (live[relayed[index] - 101]);
        assert_int_equal (zmsg_send (&copy, relay), 0);
    }
    s_follow (feed, &position, 109);
    //  110 was dropped at the end of the burst: a heartbeat shows it
    int64_t deadline = zclock_mono () + 3000;
    while (true) {
        zmsg_t *message = s_sub_recv (upstream, 3000, false);
        if (!message)
            fail_msg ("no heartbeat within 3 s");
        if (zframe_streq (zmsg_first (message), "$heartbeat")
            && s_int (s_body (doc, message), "head") >= 110) {
            assert_int_equal (zmsg_send (&message, relay), 0);
            break;
        }
        zmsg_destroy (&message);
        if (zclock_mono () > deadline)
            fail_msg ("no heartbeat with head 110");
    }
    s_follow (feed, &position, 110);
    const zcq_event_t *event;
    assert_int_equal (zcq_catchup_next (feed, 200, &event), ZCQ_TIMEOUT);
    assert_int_equal (zcq_catchup_position (feed), 110);

    //  late duplicates of everything: all skipped
    for (int index = 0; index < 10; index++)
        assert_int_equal (zmsg_send (&live[index], relay), 0);
    assert_int_equal (zcq_catchup_next (feed, 200, &event), ZCQ_TIMEOUT);
    assert_int_equal (zcq_catchup_position (feed), 110);

    zcq_doc_destroy (&doc);
    zcq_catchup_destroy (&feed);
    zstr_free (&relay_endpoint);
    zsock_destroy (&relay);
    zsock_destroy (&upstream);
    s_stop (&fixture);
}

//  A feed starting at 1 after 5,000 events, during a pipelined burst of
//  5,000 more, delivers exactly 1..10,000.
static void
test_catchup_burst (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "burst");
    enum { ACCOUNTS = 100, BEFORE = 5000, BURST = 5000 };
    s_dealer_t *commands = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_COMMAND));
    char id[32], key[16];
    for (int index = 0; index < BEFORE + BURST; index++) {
        if (index == BEFORE)
            assert_int_equal (s_dealer_drain (commands, BEFORE), BEFORE);
        snprintf (id, sizeof id, "burst-%d", index);
        snprintf (key, sizeof key, "b%d", index % ACCOUNTS);
        s_dealer_command (commands, id, index < ACCOUNTS ? "open" : "deposit", key, "ann", 1);
    }
    zcq_catchup_t *feed = zcq_catchup_new (s_endpoint (&fixture, ZCQ_ENDPOINT_QUERY),
                                           s_endpoint (&fixture, ZCQ_ENDPOINT_EVENTS), 1, NULL);
    assert_non_null (feed);
    uint64_t position = 0;
    s_follow (feed, &position, BEFORE + BURST);
    assert_int_equal (s_dealer_drain (commands, BURST), BEFORE + BURST);
    const zcq_event_t *event;
    assert_int_equal (zcq_catchup_next (feed, 200, &event), ZCQ_TIMEOUT);
    assert_int_equal (zcq_catchup_position (feed), BEFORE + BURST);
    zcq_catchup_destroy (&feed);
    s_dealer_destroy (&commands);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  Restart and rebuild keep the views exactly

typedef struct {
    zcq_writer_t *rows;   //  every accounts row, encoded
    zcq_writer_t *totals; //  the totals row, encoded
    size_t count;
} s_snapshot_t;

static void
s_snapshot (s_fixture_t *self, uint64_t min_position, s_snapshot_t *snapshot)
{
    s_listing_t listing;
    s_list_all (self, "accounts", NULL, NULL, 1000, min_position, &listing);
    snapshot->rows = listing.encoded;
    listing.encoded = NULL;
    snapshot->count = listing.count;
    s_listing_free (&listing);
    const zcq_value_t *reply = s_get (self, "totals", "bank", min_position);
    snapshot->totals = zcq_writer_new ();
    zcq_writer_value (snapshot->totals, zcq_value_get (reply, "row"));
}

static void
s_snapshot_free (s_snapshot_t *snapshot)
{
    zcq_writer_destroy (&snapshot->rows);
    zcq_writer_destroy (&snapshot->totals);
}

static void
s_assert_same (const s_snapshot_t *before, const s_snapshot_t *after)
{
    assert_int_equal (after->count, before->count);
    assert_int_equal (zcq_writer_size (after->rows), zcq_writer_size (before->rows));
    assert_memory_equal (zcq_writer_data (after->rows), zcq_writer_data (before->rows),
                         zcq_writer_size (before->rows));
    assert_int_equal (zcq_writer_size (after->totals), zcq_writer_size (before->totals));
    assert_memory_equal (zcq_writer_data (after->totals), zcq_writer_data (before->totals),
                         zcq_writer_size (before->totals));
}

static void
test_restart (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "restart");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 7;
    s_bank_random (&fixture, bank, 800);
    uint64_t head = zcq_node_head (fixture.node);
    s_snapshot_t before, after;
    s_snapshot (&fixture, head, &before);
    assert_true (before.count > 50);

    s_node_down (&fixture);
    s_node_up (&fixture, "100"); //  the same data dir
    assert_int_equal (zcq_node_head (fixture.node), head);
    s_get (&fixture, "totals", "bank", head); //  waits for the catch-up
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    s_snapshot (&fixture, head, &after);
    s_assert_same (&before, &after);
    s_snapshot_free (&after);
    s_bank_check (&fixture, bank);

    //  the log goes on where it stopped
    const zcq_value_t *reply = s_command (fixture.client, "open", "after-restart", "zed", 0, NULL);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "position"), head + 1);
    s_log_t log;
    s_read_all (&fixture, 1000, &log);
    assert_int_equal (log.events, head + 1);
    s_snapshot_free (&before);
    free (bank);
    s_stop (&fixture);
}

static void
test_rebuild (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "rebuild");
    enum { ACCOUNTS = 300, COMMANDS = 60000 };
    s_dealer_t *commands = s_dealer_new (s_endpoint (&fixture, ZCQ_ENDPOINT_COMMAND));
    int64_t balances[ACCOUNTS] = { 0 };
    char id[32], key[16];
    for (int index = 0; index < COMMANDS; index++) {
        snprintf (id, sizeof id, "rebuild-%d", index);
        snprintf (key, sizeof key, "r%d", index % ACCOUNTS);
        s_dealer_command (commands, id, index < ACCOUNTS ? "open" : "deposit", key, "ann",
                          1 + index % 11);
        if (index >= ACCOUNTS)
            balances[index % ACCOUNTS] += 1 + index % 11;
    }
    uint64_t head = s_dealer_drain (commands, COMMANDS);
    s_snapshot_t before, after;
    s_snapshot (&fixture, head, &before);
    assert_int_equal (before.count, ACCOUNTS);

    const zcq_value_t *reply
        = zcq_test_query (fixture.client, "op", "s:rebuild", "view", "s:nope", NULL);
    s_assert_error (reply, "unknown");
    reply = zcq_test_query (fixture.client, "op", "s:rebuild", NULL);
    s_assert_error (reply, "invalid");

    //  rebuild: queries are answered all along, from the old table
    reply = zcq_test_query (fixture.client, "op", "s:rebuild", "view", "s:accounts", "rid", "i:5",
                            NULL);
    s_assert_ok (reply);
    assert_int_equal (s_int (reply, "rid"), 5);
    //  `views` is answered by the router at once; get and count go to the
    //  view's host, which rebuilds in chunks and answers between them
    int queries = 0, while_rebuilding = 0;
    int64_t started = zclock_mono ();
    int64_t deadline = started + S_TIMEOUT_MS;
    while (true) {
        reply = zcq_test_query (fixture.client, "op", "s:views", NULL);
        s_assert_ok (reply);
        const zcq_value_t *views = zcq_value_get (reply, "views");
        const zcq_value_t *accounts = NULL;
        for (size_t index = 0; index < zcq_value_size (views); index++)
            if (zcq_value_streq (zcq_value_get (zcq_value_at (views, index), "name"), "accounts"))
                accounts = zcq_value_at (views, index);
        assert_non_null (accounts);
        if (zcq_value_streq (zcq_value_get (accounts, "status"), "live"))
            break;
        s_assert_str (accounts, "status", "rebuilding");
        if (queries)
            while_rebuilding++; //  still rebuilding after queries were answered
        if (queries++ % 2 == 0) {
            reply = s_get (&fixture, "accounts", "r7", 0);
            assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), balances[7]);
        }
        else
            assert_int_equal (s_count (&fixture, "accounts", NULL, NULL, 0), ACCOUNTS);
        assert_true (zclock_mono () < deadline);
    }
    printf ("  rebuild of %d events: %lld ms, %d queries answered, %d views polls saw it still "
            "rebuilding after some\n",
            COMMANDS, (long long) (zclock_mono () - started), queries, while_rebuilding);
    assert_true (while_rebuilding >= 1);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    s_snapshot (&fixture, head, &after);
    s_assert_same (&before, &after);
    s_snapshot_free (&after);
    s_snapshot_free (&before);

    //  rebuild again while commands flow: the result still matches
    reply = zcq_test_query (fixture.client, "op", "s:rebuild", "view", "s:accounts", NULL);
    s_assert_ok (reply);
    s_assert_str (reply, "view", "accounts");
    s_assert_str (reply, "status", "rebuilding");
    for (int index = 0; index < 2000; index++) {
        snprintf (id, sizeof id, "rebuild-live-%d", index);
        snprintf (key, sizeof key, "r%d", index % ACCOUNTS);
        s_dealer_command (commands, id, "deposit", key, NULL, 3);
        balances[index % ACCOUNTS] += 3;
    }
    head = s_dealer_drain (commands, 2000);
    s_get (&fixture, "accounts", "r0", head);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    s_listing_t listing;
    s_list_all (&fixture, "accounts", NULL, NULL, 1000, head, &listing);
    assert_int_equal (listing.count, ACCOUNTS);
    int64_t total = 0;
    for (int account = 0; account < ACCOUNTS; account++)
        total += balances[account];
    assert_int_equal (listing.balance, total);
    s_listing_free (&listing);
    for (int account = 0; account < ACCOUNTS; account += 37) {
        snprintf (key, sizeof key, "r%d", account);
        const zcq_value_t *row = zcq_value_get (s_get (&fixture, "accounts", key, 0), "row");
        assert_int_equal (s_int (row, "balance"), balances[account]);
    }
    reply = s_get (&fixture, "totals", "bank", head);
    assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), total);
    s_dealer_destroy (&commands);
    s_stop (&fixture);
}

//  --------------------------------------------------------------------------
//  View snapshots: <data>/views/<view>.snap, saved every
//  view-snapshot-every events and at a clean stop, loaded on start when
//  whole, of the projection's version, not ahead of the log and matching
//  the event at its position; otherwise the view is rebuilt from the log.

static const char *const s_accounts_indexes[] = { "owner", NULL };

//  The bank domain with both views synchronous (one shared view host).
static const zcq_domain_t *
s_sync_domain (void)
{
    static zcq_projection_def_t accounts, totals;
    static const zcq_projection_def_t *projections[3];
    static zcq_domain_t domain;
    const zcq_domain_t *bank = zcq_bank_domain ();
    accounts = *bank->projections[0];
    totals = *bank->projections[1];
    assert_string_equal (accounts.view, "accounts");
    assert_string_equal (totals.view, "totals");
    accounts.synchronous = totals.synchronous = true;
    projections[0] = &accounts;
    projections[1] = &totals;
    projections[2] = NULL;
    domain = *bank;
    domain.projections = projections;
    return &domain;
}

//  Start a node on the fixture's dir: domain NULL = bank; every NULL =
//  the default view-snapshot-every.
static void
s_node_up_with (s_fixture_t *self, const zcq_domain_t *domain, const char *every)
{
    zcq_config_t *config = zcq_config_new ();
    char error[256];
    assert_int_equal (zcq_config_set (config, "data", self->dir, error, sizeof error), ZCQ_OK);
    zcq_config_set (config, "command", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "events", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "query", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "heartbeat-ms", "100", NULL, 0);
    if (every
        && zcq_config_set (config, "view-snapshot-every", every, error, sizeof error) != ZCQ_OK)
        fail_msg ("view-snapshot-every %s: %s", every, error);
    if (self->view_threads
        && zcq_config_set (config, "view-threads", self->view_threads, error, sizeof error)
               != ZCQ_OK)
        fail_msg ("view-threads %s: %s", self->view_threads, error);
    if (zcq_node_start (&self->node, config, domain ? domain : zcq_bank_domain (), error,
                        sizeof error)
        != ZCQ_OK)
        fail_msg ("node did not start: %s", error);
    zcq_config_destroy (&config);
    self->client = zcq_client_new (zcq_node_endpoint (self->node, ZCQ_ENDPOINT_COMMAND),
                                   zcq_node_endpoint (self->node, ZCQ_ENDPOINT_QUERY));
    assert_non_null (self->client);
}

static void
s_start_with (s_fixture_t *self, const char *name, const zcq_domain_t *domain, const char *every)
{
    memset (self, 0, sizeof *self);
    self->dir = zcq_test_dir (name);
    assert_non_null (self->dir);
    self->writer = zcq_writer_new ();
    s_node_up_with (self, domain, every);
}

typedef struct {
    int64_t position;
    int64_t rows;
    int64_t snapshot;
    char status[32];
} s_view_state_t;

//  One view's entry in `views` (which also checks every entry's fields);
//  returns the reply's head.
static int64_t
s_view_state (s_fixture_t *self, const char *name, s_view_state_t *state)
{
    const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:views", NULL);
    s_assert_ok (reply);
    const zcq_value_t *views = zcq_value_get (reply, "views");
    bool found = false;
    for (size_t index = 0; index < zcq_value_size (views); index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        int64_t snapshot = s_int (view, "snapshot");
        assert_true (snapshot >= 0);
        if (!zcq_value_streq (zcq_value_get (view, "name"), name))
            continue;
        found = true;
        state->position = s_int (view, "position");
        state->rows = s_int (view, "rows");
        state->snapshot = snapshot;
        s_str (view, "status", state->status, sizeof state->status);
    }
    if (!found)
        fail_msg ("no view %s in `views`", name);
    return s_int (reply, "head");
}

static int64_t
s_snapshot_of (s_fixture_t *self, const char *name)
{
    s_view_state_t state;
    s_view_state (self, name, &state);
    return state.snapshot;
}

//  Events a view applied since its node started (stats view.<name>.applied).
static int64_t
s_applied (s_fixture_t *self, const char *name)
{
    const zcq_value_t *reply = zcq_test_query (self->client, "op", "s:stats", NULL);
    s_assert_ok (reply);
    char key[64];
    snprintf (key, sizeof key, "view.%s.applied", name);
    return s_int (zcq_value_get (reply, "stats"), key);
}

static const char *
s_snap_file (s_fixture_t *self, const char *view, const char *suffix, char *path, size_t size)
{
    snprintf (path, size, "%s/views/%s.snap%s", self->dir, view, suffix ? suffix : "");
    return path;
}

static bool
s_exists (const char *path)
{
    return access (path, F_OK) == 0;
}

static void
s_copy_file (const char *from, const char *to)
{
    FILE *in = fopen (from, "rb");
    assert_non_null (in);
    FILE *out = fopen (to, "wb");
    assert_non_null (out);
    char buffer[65536];
    size_t got;
    while ((got = fread (buffer, 1, sizeof buffer, in)) > 0)
        assert_int_equal (fwrite (buffer, 1, got, out), got);
    fclose (in);
    assert_int_equal (fclose (out), 0);
}

//  Load a view's snapshot file as the node would; fails unless it loads.
static zcq_viewtable_t *
s_load_file (s_fixture_t *self, const char *view, zcq_viewsnap_t *snap)
{
    char path[1024], error[512];
    s_snap_file (self, view, NULL, path, sizeof path);
    zcq_viewtable_t *table = NULL;
    zcq_err_t err = zcq_viewtable_load (&table,
                                        streq (view, "accounts") ? s_accounts_indexes : NULL, path,
                                        view, snap, error, sizeof error);
    if (err != ZCQ_OK)
        fail_msg ("%s does not load: %s", path, error);
    return table;
}

static int
s_sum_versions (void *arg, const char *key, size_t key_len, const void *row, size_t row_len)
{
    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (zcq_doc_decode (doc, row, row_len, NULL), ZCQ_OK);
    *(int64_t *) arg += zcq_value_get_int (zcq_doc_root (doc), "version", -1000000);
    zcq_doc_destroy (&doc);
    return 0;
}

//  A snapshot file's rows are the views at its position: every bank event
//  moves one account's version by one, and counts once in totals.events.
static void
s_check_file_contents (s_fixture_t *self, uint64_t position_at_least, uint64_t head)
{
    zcq_viewsnap_t snap;
    zcq_viewtable_t *accounts = s_load_file (self, "accounts", &snap);
    assert_int_equal (snap.version, 1);
    assert_true (snap.position >= position_at_least && snap.position <= head);
    int64_t versions = 0;
    zcq_viewtable_list (accounts, NULL, 0, SIZE_MAX, s_sum_versions, &versions, NULL);
    assert_int_equal (versions, snap.position);
    zcq_viewtable_destroy (&accounts);
    zcq_viewtable_t *totals = s_load_file (self, "totals", &snap);
    assert_true (snap.position >= position_at_least && snap.position <= head);
    size_t row_len;
    const void *row = zcq_viewtable_get (totals, "bank", 4, &row_len);
    assert_non_null (row);
    zcq_doc_t *doc = zcq_doc_new ();
    assert_int_equal (zcq_doc_decode (doc, row, row_len, NULL), ZCQ_OK);
    assert_int_equal (zcq_value_get_int (zcq_doc_root (doc), "events", -1), snap.position);
    zcq_doc_destroy (&doc);
    zcq_viewtable_destroy (&totals);
}

//  (a) A clean stop saves both views at the head; a restart loads them,
//  applies nothing, and the views are as they were.
static void
test_view_snapshot_restart (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "snap-restart");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 11;
    s_bank_random (&fixture, bank, 500);
    uint64_t head = zcq_node_head (fixture.node);
    s_snapshot_t before, after;
    s_snapshot (&fixture, head, &before);
    assert_true (before.count > 50);
    //  the default (every 1000000 events): none yet
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), 0);
    assert_int_equal (s_snapshot_of (&fixture, "totals"), 0);

    s_node_down (&fixture);
    char path[1024];
    assert_true (s_exists (s_snap_file (&fixture, "accounts", NULL, path, sizeof path)));
    assert_true (s_exists (s_snap_file (&fixture, "totals", NULL, path, sizeof path)));
    assert_false (s_exists (s_snap_file (&fixture, "accounts", ".tmp", path, sizeof path)));
    zcq_viewsnap_t snap;
    zcq_viewtable_t *table = s_load_file (&fixture, "accounts", &snap);
    assert_int_equal (snap.position, head);
    assert_int_equal (zcq_viewtable_count (table), before.count);
    zcq_viewtable_destroy (&table);
    s_check_file_contents (&fixture, head, head);

    s_node_up (&fixture, "100");
    //  loaded before the node started: the position of the snapshot shows
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), head);
    assert_int_equal (s_snapshot_of (&fixture, "totals"), head);
    s_wait_views_live (&fixture, 2000);
    s_view_state_t view;
    assert_int_equal (s_view_state (&fixture, "accounts", &view), head);
    assert_int_equal (view.position, head);
    assert_int_equal (view.rows, before.count);
    assert_int_equal (view.snapshot, head);
    s_assert_str (zcq_test_query (fixture.client, "op", "s:health", NULL), "durability", "wal");
    //  nothing replayed
    assert_int_equal (s_applied (&fixture, "accounts"), 0);
    assert_int_equal (s_applied (&fixture, "totals"), 0);
    s_snapshot (&fixture, head, &after);
    s_assert_same (&before, &after);
    s_snapshot_free (&after);
    s_snapshot_free (&before);
    s_bank_check (&fixture, bank);

    //  the loaded views follow new events, and a rebuild of a loaded view
    //  gives the same rows
    s_bank_random (&fixture, bank, 150);
    s_bank_check (&fixture, bank);
    uint64_t head2 = zcq_node_head (fixture.node);
    assert_true (head2 > head);
    assert_int_equal (s_applied (&fixture, "accounts"), head2 - head);
    s_snapshot (&fixture, head2, &before);
    s_assert_ok (zcq_test_query (fixture.client, "op", "s:rebuild", "view", "s:accounts", NULL));
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    s_snapshot (&fixture, head2, &after);
    s_assert_same (&before, &after);
    s_snapshot_free (&after);
    s_snapshot_free (&before);

    //  the next clean stop saves at the new head
    s_node_down (&fixture);
    table = s_load_file (&fixture, "totals", &snap);
    assert_int_equal (snap.position, head2);
    zcq_viewtable_destroy (&table);
    s_check_file_contents (&fixture, head2, head2);
    free (bank);
    s_stop (&fixture);
}

//  (b) A snapshot older than the head: the view loads it and replays the
//  rest of the log; the result is what a rebuild from the log gives.
static void
test_view_snapshot_older (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "snap-older");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 12;
    s_bank_random (&fixture, bank, 300);
    uint64_t head1 = zcq_node_head (fixture.node);
    s_node_down (&fixture);
    char path[1024], old[1024];
    static const char *const views[] = { "accounts", "totals" };
    for (int index = 0; index < 2; index++)
        s_copy_file (s_snap_file (&fixture, views[index], NULL, path, sizeof path),
                     s_snap_file (&fixture, views[index], ".old", old, sizeof old));

    s_node_up (&fixture, "100");
    s_bank_random (&fixture, bank, 300);
    uint64_t head2 = zcq_node_head (fixture.node);
    assert_true (head2 > head1 + 50);
    s_snapshot_t truth, loaded, rebuilt;
    s_snapshot (&fixture, head2, &truth);
    s_node_down (&fixture);
    for (int index = 0; index < 2; index++)
        assert_int_equal (rename (s_snap_file (&fixture, views[index], ".old", old, sizeof old),
                                  s_snap_file (&fixture, views[index], NULL, path, sizeof path)),
                          0);

    s_node_up (&fixture, "100");
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), head1);
    assert_int_equal (s_snapshot_of (&fixture, "totals"), head1);
    s_snapshot (&fixture, head2, &loaded);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    assert_int_equal (s_applied (&fixture, "accounts"), head2 - head1);
    assert_int_equal (s_applied (&fixture, "totals"), head2 - head1);
    s_assert_same (&truth, &loaded);
    s_bank_check (&fixture, bank);
    s_node_down (&fixture);

    //  the same log without snapshots: a rebuild from position 1
    for (int index = 0; index < 2; index++)
        assert_int_equal (unlink (s_snap_file (&fixture, views[index], NULL, path, sizeof path)),
                          0);
    s_node_up (&fixture, "100");
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), 0);
    s_snapshot (&fixture, head2, &rebuilt);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    assert_int_equal (s_applied (&fixture, "accounts"), head2);
    s_assert_same (&rebuilt, &loaded);
    s_snapshot_free (&rebuilt);
    s_snapshot_free (&loaded);
    s_snapshot_free (&truth);
    free (bank);
    s_stop (&fixture);
}

//  Write <data>/views/accounts.snap from the table, with this header.
static void
s_write_accounts (s_fixture_t *self, const zcq_viewtable_t *table, uint32_t version,
                  uint64_t position, uint64_t check)
{
    char path[1024], error[512];
    zcq_viewsnap_t snap = { .version = version, .position = position, .check = check };
    if (zcq_viewtable_save (table, s_snap_file (self, "accounts", NULL, path, sizeof path),
                            "accounts", &snap, error, sizeof error)
        != ZCQ_OK)
        fail_msg ("cannot write %s: %s", path, error);
}

//  Start on the data dir and check how the accounts view came up: from
//  its snapshot (used) or rebuilt from the log; totals always from its
//  own (good) snapshot at head. Returns the views, stops the node.
static void
s_restart_and_capture (s_fixture_t *self, uint64_t head, bool used, s_snapshot_t *views)
{
    s_node_up (self, "100");
    assert_int_equal (s_snapshot_of (self, "accounts"), used ? (int64_t) head : 0);
    assert_int_equal (s_snapshot_of (self, "totals"), head);
    s_snapshot (self, head, views);
    s_wait_views_live (self, S_TIMEOUT_MS);
    assert_int_equal (s_applied (self, "accounts"), used ? 0 : head);
    assert_int_equal (s_applied (self, "totals"), 0);
    const zcq_value_t *reply = s_get (self, "accounts", "zz-bogus", 0);
    assert_int_equal (zcq_value_type (zcq_value_get (reply, "row")),
                      used ? ZCQ_TYPE_MAP : ZCQ_TYPE_NIL);
    s_node_down (self);
}

//  (c, d, e) Snapshots that must not be used: another version, ahead of
//  the log, another event at its position, damaged, another view's. Each
//  carries a row the log never made, which must not show.
static void
test_view_snapshot_refused (void **state)
{
    s_fixture_t fixture;
    s_start (&fixture, "snap-refused");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 13;
    s_bank_random (&fixture, bank, 300);
    uint64_t head = zcq_node_head (fixture.node);
    s_snapshot_t truth, views;
    s_snapshot (&fixture, head, &truth);
    s_node_down (&fixture);

    //  the genuine snapshot, and a doctored copy with one row too many
    zcq_viewsnap_t snap;
    zcq_viewtable_t *table = s_load_file (&fixture, "accounts", &snap);
    assert_int_equal (snap.position, head);
    zcq_writer_t *row = zcq_writer_new ();
    zcq_writer_map (row, 5);
    zcq_writer_str (row, "key");
    zcq_writer_str (row, "zz-bogus");
    zcq_writer_str (row, "owner");
    zcq_writer_str (row, "owner-0");
    zcq_writer_str (row, "balance");
    zcq_writer_int (row, 999999);
    zcq_writer_str (row, "status");
    zcq_writer_str (row, "open");
    zcq_writer_str (row, "version");
    zcq_writer_int (row, 1);
    assert_int_equal (
        zcq_viewtable_put (table, "zz-bogus", 8, zcq_writer_data (row), zcq_writer_size (row)),
        ZCQ_OK);
    zcq_writer_destroy (&row);

    //  the control: with the right header the node trusts the rows as
    //  they are (so the bogus row shows, and nothing is replayed)
    s_write_accounts (&fixture, table, snap.version, snap.position, snap.check);
    s_restart_and_capture (&fixture, head, true, &views);
    assert_int_equal (views.count, truth.count + 1);
    s_snapshot_free (&views);

    //  (c) another version of the projection
    s_write_accounts (&fixture, table, snap.version + 1, snap.position, snap.check);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);

    //  (d) ahead of the log: with the head's check, and with a check of 0
    //  (what the log gives for a position it does not hold)
    s_write_accounts (&fixture, table, snap.version, head + 100, snap.check);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);
    s_write_accounts (&fixture, table, snap.version, head + 100, 0);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);

    //  (e) the log holds another event at its position: a wrong check at
    //  the head, and the head's check at an earlier position
    s_write_accounts (&fixture, table, snap.version, snap.position, snap.check ^ 1);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);
    s_write_accounts (&fixture, table, snap.version, snap.position - 1, snap.check);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);
    //  position 0 has no event to match (and the node never saves there)
    s_write_accounts (&fixture, table, snap.version, 0, 0);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);

    //  damaged: one byte flipped in a good file
    char path[1024], other[1024];
    s_write_accounts (&fixture, table, snap.version, snap.position, snap.check);
    s_snap_file (&fixture, "accounts", NULL, path, sizeof path);
    FILE *file = fopen (path, "r+b");
    assert_non_null (file);
    assert_int_equal (fseek (file, 40, SEEK_SET), 0);
    int byte = fgetc (file);
    assert_int_equal (fseek (file, 40, SEEK_SET), 0);
    fputc (byte ^ 0x10, file);
    assert_int_equal (fclose (file), 0);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);

    //  another view's file
    s_copy_file (s_snap_file (&fixture, "totals", NULL, other, sizeof other), path);
    s_restart_and_capture (&fixture, head, false, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);

    //  after all that, the file the last clean stop wrote is the genuine
    //  one again
    zcq_viewtable_destroy (&table);
    table = s_load_file (&fixture, "accounts", &snap);
    assert_int_equal (snap.position, head);
    assert_int_equal (zcq_viewtable_count (table), truth.count);
    assert_null (zcq_viewtable_get (table, "zz-bogus", 8, &(size_t) { 0 }));
    zcq_viewtable_destroy (&table);
    s_snapshot_free (&truth);
    free (bank);
    s_stop (&fixture);
}

//  Poll `views` (each poll waits on its reply) until both views report a
//  snapshot at or past `least`; returns the smaller of the two.
static int64_t
s_wait_snapshots (s_fixture_t *self, int64_t least)
{
    int64_t deadline = zclock_mono () + S_TIMEOUT_MS;
    while (true) {
        s_view_state_t accounts, totals;
        int64_t head = s_view_state (self, "accounts", &accounts);
        s_view_state (self, "totals", &totals);
        assert_true (accounts.snapshot <= head && totals.snapshot <= head);
        int64_t smaller = accounts.snapshot < totals.snapshot ? accounts.snapshot : totals.snapshot;
        if (smaller >= least)
            return smaller;
        if (zclock_mono () > deadline)
            fail_msg ("no view snapshots at %lld or later within %d ms (accounts %lld, totals "
                      "%lld)",
                      (long long) least, S_TIMEOUT_MS, (long long) accounts.snapshot,
                      (long long) totals.snapshot);
    }
}

//  (f) view-snapshot-every=100: snapshots follow the log while it grows.
static void
test_view_snapshot_periodic (void **state)
{
    s_fixture_t fixture;
    s_start_with (&fixture, "snap-periodic", NULL, "100");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 14;
    //  (about half of the random commands make an event)
    while (zcq_node_head (fixture.node) < 300)
        s_bank_random (&fixture, bank, 100);
    uint64_t head1 = zcq_node_head (fixture.node);
    int64_t first = s_wait_snapshots (&fixture, 100);
    assert_true (first <= (int64_t) head1);
    //  the files are at least as new as what `views` reports
    s_check_file_contents (&fixture, (uint64_t) first, head1);

    while ((int64_t) zcq_node_head (fixture.node) < first + 300)
        s_bank_random (&fixture, bank, 100);
    uint64_t head2 = zcq_node_head (fixture.node);
    int64_t second = s_wait_snapshots (&fixture, first + 100);
    assert_true (second > first && second <= (int64_t) head2);
    s_check_file_contents (&fixture, (uint64_t) second, head2);
    s_bank_check (&fixture, bank);

    //  a clean stop saves at the head, and a restart loads it
    s_node_down (&fixture);
    s_check_file_contents (&fixture, head2, head2);
    s_node_up_with (&fixture, NULL, "100");
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), head2);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    assert_int_equal (s_applied (&fixture, "accounts"), 0);
    s_bank_check (&fixture, bank);
    free (bank);
    s_stop (&fixture);
}

static size_t
s_files_in (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return 0;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        count += strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..");
    closedir (dir);
    return count;
}

//  (g) view-snapshot-every=0: nothing written, nothing loaded.
static void
test_view_snapshot_off (void **state)
{
    s_fixture_t fixture;
    s_start_with (&fixture, "snap-off", NULL, "0");
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 15;
    s_bank_random (&fixture, bank, 200);
    uint64_t head = zcq_node_head (fixture.node);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), 0);
    s_node_down (&fixture);
    char views[1024];
    snprintf (views, sizeof views, "%s/views", fixture.dir);
    assert_int_equal (s_files_in (views), 0);

    //  snapshots from a node with them on are not read while they are off
    s_node_up_with (&fixture, NULL, NULL);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    assert_int_equal (s_applied (&fixture, "accounts"), head);
    s_node_down (&fixture);
    assert_int_equal (s_files_in (views), 2);
    char path[1024];
    struct stat before, after;
    assert_int_equal (stat (s_snap_file (&fixture, "accounts", NULL, path, sizeof path), &before),
                      0);
    s_node_up_with (&fixture, NULL, "0");
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), 0);
    s_wait_views_live (&fixture, S_TIMEOUT_MS);
    assert_int_equal (s_applied (&fixture, "accounts"), head);
    s_bank_check (&fixture, bank);
    s_bank_random (&fixture, bank, 20);
    s_node_down (&fixture);
    //  and not rewritten at its stop
    assert_int_equal (stat (path, &after), 0);
    assert_int_equal (after.st_ino, before.st_ino);
    assert_int_equal (after.st_size, before.st_size);
    assert_int_equal (s_files_in (views), 2);
    free (bank);
    s_stop (&fixture);
}

//  Synchronous views share one host: each view skips the events its own
//  snapshot already has, however old the other's is.
static void
test_view_snapshot_shared_host (void **state)
{
    const zcq_domain_t *domain = s_sync_domain ();
    s_fixture_t fixture;
    s_start_with (&fixture, "snap-shared", domain, NULL);
    s_bank_t *bank = calloc (1, sizeof (s_bank_t));
    bank->random = 16;
    s_bank_random (&fixture, bank, 300);
    uint64_t head1 = zcq_node_head (fixture.node);
    s_node_down (&fixture);
    char path[1024], old[1024];
    s_copy_file (s_snap_file (&fixture, "totals", NULL, path, sizeof path),
                 s_snap_file (&fixture, "totals", ".old", old, sizeof old));
    s_node_up_with (&fixture, domain, NULL);
    s_bank_random (&fixture, bank, 300);
    uint64_t head2 = zcq_node_head (fixture.node);
    s_snapshot_t truth, views;
    s_snapshot (&fixture, head2, &truth);
    s_node_down (&fixture);

    //  accounts at head2, totals at head1
    assert_int_equal (rename (old, path), 0);
    s_node_up_with (&fixture, domain, NULL);
    assert_int_equal (s_snapshot_of (&fixture, "accounts"), head2);
    assert_int_equal (s_snapshot_of (&fixture, "totals"), head1);
    assert_int_equal (s_applied (&fixture, "accounts"), 0);
    assert_int_equal (s_applied (&fixture, "totals"), head2 - head1);
    s_snapshot (&fixture, head2, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);
    s_bank_check (&fixture, bank);
    s_node_down (&fixture);

    //  accounts at head2, totals from the log
    assert_int_equal (unlink (path), 0);
    s_node_up_with (&fixture, domain, NULL);
    assert_int_equal (s_snapshot_of (&fixture, "totals"), 0);
    assert_int_equal (s_applied (&fixture, "accounts"), 0);
    assert_int_equal (s_applied (&fixture, "totals"), head2);
    s_snapshot (&fixture, head2, &views);
    s_assert_same (&truth, &views);
    s_snapshot_free (&views);
    //  and both follow what comes next
    s_bank_random (&fixture, bank, 100);
    s_bank_check (&fixture, bank);
    s_snapshot_free (&truth);
    free (bank);
    s_stop (&fixture);
}

//  Threads of this process whose name starts with prefix.
static int
s_threads_named (const char *prefix)
{
    DIR *tasks = opendir ("/proc/self/task");
    assert_non_null (tasks);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (tasks))) {
        if (entry->d_name[0] == '.')
            continue;
        char path[300], name[64] = "";
        snprintf (path, sizeof path, "/proc/self/task/%s/comm", entry->d_name);
        FILE *file = fopen (path, "r");
        if (!file)
            continue; //  the thread has ended
        if (fgets (name, sizeof name, file) && strncmp (name, prefix, strlen (prefix)) == 0)
            count++;
        fclose (file);
    }
    closedir (tasks);
    return count;
}

//  --------------------------------------------------------------------------
//  view-threads: the asynchronous views share that many hosts (in turn;
//  0, the default, gives each its own), the synchronous ones one more. Whatever the spread, every
//  view follows every event, answers its queries and agrees with the model.

static void
test_view_threads (void **state)
{
    //  the bank's two views, an asynchronous copy of accounts and a
    //  synchronous copy of totals
    static zcq_projection_def_t accounts_b, totals_s;
    static const zcq_projection_def_t *projections[5];
    static zcq_domain_t domain;
    const zcq_domain_t *bank = zcq_bank_domain ();
    accounts_b = *bank->projections[0];
    accounts_b.view = "accounts_b";
    totals_s = *bank->projections[1];
    totals_s.view = "totals_s";
    totals_s.synchronous = true;
    projections[0] = bank->projections[0];
    projections[1] = &totals_s;
    projections[2] = bank->projections[1];
    projections[3] = &accounts_b;
    projections[4] = NULL;
    domain = *bank;
    domain.projections = projections;

    const char *threads[] = { NULL, "1", "2", "3", "16" };
    const int hosts[] = { 4, 2, 3, 4, 4 }; //  three asynchronous views, one synchronous
    assert_int_equal (s_threads_named ("zcq-views-"), 0);
    for (size_t run = 0; run < sizeof threads / sizeof threads[0]; run++) {
        s_fixture_t fixture;
        memset (&fixture, 0, sizeof fixture);
        fixture.dir = zcq_test_dir ("view-threads");
        assert_non_null (fixture.dir);
        fixture.writer = zcq_writer_new ();
        fixture.view_threads = threads[run];
        s_node_up_with (&fixture, &domain, NULL);
        assert_int_equal (s_threads_named ("zcq-views-"), hosts[run]);
        s_bank_t *bank_model = calloc (1, sizeof (s_bank_t));
        assert_non_null (bank_model);
        bank_model->random = 40 + run;
        s_bank_random (&fixture, bank_model, 200);
        s_bank_check (&fixture, bank_model);

        //  the copies hold what the originals hold
        const zcq_value_t *reply = s_get (&fixture, "totals", "bank", bank_model->position);
        int64_t balance = s_int (zcq_value_get (reply, "row"), "balance");
        reply = s_get (&fixture, "totals_s", "bank", 0);
        assert_int_equal (s_int (zcq_value_get (reply, "row"), "balance"), balance);
        s_listing_t original, copy;
        s_list_all (&fixture, "accounts", NULL, NULL, 50, bank_model->position, &original);
        s_list_all (&fixture, "accounts_b", NULL, NULL, 50, bank_model->position, &copy);
        assert_int_equal (copy.count, original.count);
        assert_int_equal (copy.balance, original.balance);
        assert_int_equal (zcq_writer_size (copy.encoded), zcq_writer_size (original.encoded));
        assert_memory_equal (zcq_writer_data (copy.encoded), zcq_writer_data (original.encoded),
                             zcq_writer_size (original.encoded));
        s_listing_free (&original);
        s_listing_free (&copy);
        free (bank_model);
        s_stop (&fixture);
    }

    //  a number of threads the setting refuses
    zcq_config_t *config = zcq_config_new ();
    char error[256];
    assert_string_equal (zcq_config_get (config, "view-threads"), "0");
    assert_int_equal (zcq_config_set (config, "view-threads", "-1", error, sizeof error),
                      ZCQ_INVALID);
    assert_int_equal (zcq_config_set (config, "view-threads", "257", error, sizeof error),
                      ZCQ_INVALID);
    assert_int_equal (zcq_config_set (config, "view-threads", "4", error, sizeof error), ZCQ_OK);
    assert_string_equal (zcq_config_get (config, "view-threads"), "4");
    zcq_config_destroy (&config);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_walkthrough),
        cmocka_unit_test (test_query_ops),
        cmocka_unit_test (test_read_stream),
        cmocka_unit_test (test_views_health_stats),
        cmocka_unit_test (test_random_consistency),
        cmocka_unit_test (test_read_your_writes),
        cmocka_unit_test (test_timeout),
        cmocka_unit_test (test_pagination),
        cmocka_unit_test (test_events_endpoint),
        cmocka_unit_test (test_heartbeat_under_load),
        cmocka_unit_test (test_catchup_late),
        cmocka_unit_test (test_catchup_forced_gap),
        cmocka_unit_test (test_catchup_burst),
        cmocka_unit_test (test_restart),
        cmocka_unit_test (test_rebuild),
        cmocka_unit_test (test_view_snapshot_restart),
        cmocka_unit_test (test_view_snapshot_older),
        cmocka_unit_test (test_view_snapshot_refused),
        cmocka_unit_test (test_view_snapshot_periodic),
        cmocka_unit_test (test_view_snapshot_off),
        cmocka_unit_test (test_view_snapshot_shared_host),
        cmocka_unit_test (test_view_threads),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
