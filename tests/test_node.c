/*  test_node.c: end-to-end tests of a node's write side over real sockets.

    Every test starts a bank node (ZCQ/1 section 8) on tcp://127.0.0.1:*
    ephemeral ports in a fresh data dir and talks to its command endpoint
    through the public client (zcq_client_t) or through raw DEALER, REQ and
    ROUTER sockets speaking the protocol of ZCQ/1 sections 2 and 3. Nothing
    sleeps: every wait is a wait on a reply, with a timeout as a safety net.
*/
#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_TIMEOUT 10000 //  ms, the safety net on every reply

//  --------------------------------------------------------------------------
//  Fixture: one node, one client, and room for raw sockets that the
//  teardown closes even when a test fails half way.

typedef struct {
    char *dir;
    zcq_node_t *node;
    zcq_client_t *client;
    zsock_t *sockets[4];
} fixture_t;

//  The frames before the body of the last message s_recv_reply received.
static zmsg_t *s_last_envelope;

//  A fresh empty directory (as zcq_test_dir, whose zuuid is never freed).
static char *
s_test_dir (const char *name)
{
    const char *base = getenv ("ZCQ_TEST_TMP");
    zuuid_t *uuid = zuuid_new ();
    char *path = NULL;
    if (asprintf (&path, "%s/%s-%d-%s", base ? base : "/tmp", name, (int) getpid (),
                  zuuid_str (uuid))
        < 0)
        path = NULL;
    zuuid_destroy (&uuid);
    assert_non_null (path);
    assert_int_equal (zsys_dir_create ("%s", path), 0);
    return path;
}

static zcq_client_t *
s_client (zcq_node_t *node)
{
    zcq_client_t *client = zcq_client_new (zcq_node_endpoint (node, ZCQ_ENDPOINT_COMMAND),
                                           zcq_node_endpoint (node, ZCQ_ENDPOINT_QUERY));
    assert_non_null (client);
    return client;
}

static int
s_setup (void **state)
{
    fixture_t *fixture = calloc (1, sizeof (fixture_t));
    assert_non_null (fixture);
    fixture->dir = s_test_dir ("node");
    fixture->node = zcq_test_node (fixture->dir, NULL);
    fixture->client = s_client (fixture->node);
    *state = fixture;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fixture = *state;
    for (size_t index = 0; index < 4; index++)
        zsock_destroy (&fixture->sockets[index]);
    zmsg_destroy (&s_last_envelope);
    zcq_client_destroy (&fixture->client);
    zcq_node_destroy (&fixture->node);
    zcq_test_rmdir (&fixture->dir);
    free (fixture);
    return 0;
}

//  Stop the fixture's node and start a new one on the same data dir.
//  With a setting when name is not NULL.
static void
s_restart (fixture_t *fixture, const char *name, const char *value)
{
    zcq_client_destroy (&fixture->client);
    zcq_node_destroy (&fixture->node);
    assert_null (fixture->node);
    fixture->node = zcq_test_node (fixture->dir, name, value, NULL);
    fixture->client = s_client (fixture->node);
}

//  Keep a raw socket in the fixture so that teardown closes it.
static zsock_t *
s_keep (fixture_t *fixture, zsock_t *socket)
{
    assert_non_null (socket);
    for (size_t index = 0; index < 4; index++)
        if (!fixture->sockets[index]) {
            fixture->sockets[index] = socket;
            return socket;
        }
    fail_msg ("no room for another socket in the fixture");
    return NULL;
}

//  --------------------------------------------------------------------------
//  Reply checks

static const char *
s_message (const zcq_value_t *reply)
{
    static char message[512];
    return zcq_value_get_str (reply, "message", message, sizeof message, "(no message)");
}

//  An ok reply for stream at version; returns its position.
static uint64_t
s_assert_ok (const zcq_value_t *reply, const char *stream, int64_t version, bool duplicate,
             int line)
{
    if (!reply)
        fail_msg ("line %d: no reply", line);
    if (strcmp (zcq_test_code (reply), "ok") != 0)
        fail_msg ("line %d: expected ok, got %s: %s", line, zcq_test_code (reply),
                  s_message (reply));
    char text[400];
    const char *got = zcq_value_get_str (reply, "stream", text, sizeof text, "(none)");
    if (strcmp (got, stream) != 0)
        fail_msg ("line %d: expected stream %s, got %s", line, stream, got);
    int64_t got_version = zcq_value_get_int (reply, "version", -1);
    if (got_version != version)
        fail_msg ("line %d: expected version %lld, got %lld", line, (long long) version,
                  (long long) got_version);
    bool got_duplicate = !duplicate;
    if (!zcq_value_bool (zcq_value_get (reply, "duplicate"), &got_duplicate)
        || got_duplicate != duplicate)
        fail_msg ("line %d: expected duplicate %s", line, duplicate ? "true" : "false");
    int64_t events = zcq_value_get_int (reply, "events", -1);
    if (events < 0)
        fail_msg ("line %d: reply has no 'events'", line);
    int64_t position = zcq_value_get_int (reply, "position", -1);
    if (position < 0)
        fail_msg ("line %d: reply has no 'position'", line);
    return (uint64_t) position;
}

//  A failed reply with the given code and a non-empty message.
static void
s_assert_error (const zcq_value_t *reply, const char *code, int line)
{
    if (!reply)
        fail_msg ("line %d: no reply", line);
    if (strcmp (zcq_test_code (reply), code) != 0)
        fail_msg ("line %d: expected %s, got %s: %s", line, code, zcq_test_code (reply),
                  s_message (reply));
    bool ok = true;
    if (!zcq_value_bool (zcq_value_get (reply, "ok"), &ok) || ok)
        fail_msg ("line %d: 'ok' must be false", line);
    const char *message;
    size_t len;
    if (!zcq_value_str (zcq_value_get (reply, "message"), &message, &len) || len == 0)
        fail_msg ("line %d: a %s reply must carry a message", line, code);
}

#define ASSERT_OK(reply, stream, version) s_assert_ok (reply, stream, version, false, __LINE__)
#define ASSERT_DUPLICATE(reply, stream, version) \
    s_assert_ok (reply, stream, version, true, __LINE__)
#define ASSERT_ERROR(reply, code) s_assert_error (reply, code, __LINE__)

//  --------------------------------------------------------------------------
//  Request builders

//  Send raw bytes to the command endpoint, return the reply.
static const zcq_value_t *
s_call_raw (zcq_client_t *client, const void *body, size_t size)
{
    const zcq_value_t *reply = NULL;
    if (zcq_client_call (client, ZCQ_ENDPOINT_COMMAND, body, size, S_TIMEOUT, &reply) != ZCQ_OK) {
        char hex[2 * 48 + 1] = "";
        for (size_t index = 0; index < size && index < 48; index++)
            sprintf (hex + 2 * index, "%02x", ((const uint8_t *) body)[index]);
        fail_msg ("no reply to a raw request of %zu bytes: %s", size, hex);
    }
    return reply;
}

//  Send a whole request map built from name, typed-value pairs (NULL-ended).
static const zcq_value_t *
s_request (zcq_client_t *client, ...)
{
    zcq_writer_t *writer = zcq_writer_new ();
    va_list args;
    va_start (args, client);
    zcq_test_write_map (writer, args);
    va_end (args);
    const zcq_value_t *reply
        = s_call_raw (client, zcq_writer_data (writer), zcq_writer_size (writer));
    zcq_writer_destroy (&writer);
    return reply;
}

//  Send an account command whose data is one typed value (NULL = no data).
static const zcq_value_t *
s_send_data (zcq_client_t *client, const char *id, const char *type, const char *key,
             const char *data)
{
    zcq_writer_t *writer = zcq_writer_new ();
    if (data)
        zcq_test_write_typed (writer, data);
    zcq_command_req_t command = {
        .id = id,
        .aggregate = "account",
        .key = key,
        .type = type,
        .data = data ? zcq_writer_data (writer) : NULL,
        .data_len = zcq_writer_size (writer),
    };
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_command (client, &command, S_TIMEOUT, &reply);
    zcq_writer_destroy (&writer);
    if (err != ZCQ_OK)
        fail_msg ("no reply to command %s", id ? id : "(fresh id)");
    return reply;
}

//  Encode an account command into writer, replacing what it held: open
//  gets {owner: "o<key>"}, the others {amount: amount} ({} when amount is 0).
static void
s_encode_command (zcq_writer_t *writer, const char *id, const char *type, const char *key,
                  int64_t amount)
{
    zcq_writer_t *data = zcq_writer_new ();
    if (strcmp (type, "open") == 0) {
        char owner[300];
        snprintf (owner, sizeof owner, "o%s", key);
        zcq_writer_map (data, 1);
        zcq_writer_str (data, "owner");
        zcq_writer_str (data, owner);
    }
    else {
        zcq_writer_map (data, amount ? 1 : 0);
        if (amount) {
            zcq_writer_str (data, "amount");
            zcq_writer_int (data, amount);
        }
    }
    zcq_command_req_t command = {
        .id = id,
        .aggregate = "account",
        .key = key,
        .type = type,
        .data = zcq_writer_data (data),
        .data_len = zcq_writer_size (data),
    };
    zcq_writer_reset (writer);
    zcq_command_encode (writer, &command);
    assert_true (zcq_writer_ok (writer));
    zcq_writer_destroy (&data);
}

//  A view row or the totals, read back once the view has applied position.
static const zcq_value_t *
s_get_row (zcq_client_t *client, const char *view, const char *key, uint64_t position)
{
    char min_position[32];
    snprintf (min_position, sizeof min_position, "i:%llu", (unsigned long long) position);
    char key_value[300];
    snprintf (key_value, sizeof key_value, "s:%s", key);
    char view_value[64];
    snprintf (view_value, sizeof view_value, "s:%s", view);
    const zcq_value_t *reply = zcq_test_query (client, "op", "s:get", "view", view_value, "key",
                                               key_value, "min_position", min_position,
                                               "timeout_ms", "i:10000", NULL);
    if (strcmp (zcq_test_code (reply), "ok") != 0)
        fail_msg ("get %s/%s: %s: %s", view, key, zcq_test_code (reply), s_message (reply));
    return zcq_value_get (reply, "row");
}

//  --------------------------------------------------------------------------
//  Raw sockets

//  A DEALER to the command endpoint with unbounded queues.
static zsock_t *
s_dealer (zcq_node_t *node)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert_non_null (dealer);
    zsock_set_sndhwm (dealer, 0);
    zsock_set_rcvhwm (dealer, 0);
    zsock_set_linger (dealer, 0);
    assert_int_equal (zsock_connect (dealer, "%s", zcq_node_endpoint (node, ZCQ_ENDPOINT_COMMAND)),
                      0);
    return dealer;
}

//  Send frames as one message: count frames of (data, size).
static void
s_send_frames (zsock_t *socket, size_t count, const void *const *data, const size_t *sizes)
{
    for (size_t index = 0; index < count; index++)
        assert_true (zmq_send (zsock_resolve (socket), data[index], sizes[index],
                               index + 1 < count ? ZMQ_SNDMORE : 0)
                     >= 0);
}

//  The REQ-style envelope a DEALER puts before a body: [empty][body].
static void
s_send_body (zsock_t *dealer, const void *body, size_t size)
{
    const void *data[] = { "", body };
    size_t sizes[] = { 0, size };
    s_send_frames (dealer, 2, data, sizes);
}

//  Receive one message and decode its last frame into doc (which keeps a
//  copy). Returns the reply, or NULL when none came within timeout_ms.
static const zcq_value_t *
s_recv_reply (zsock_t *socket, zcq_doc_t *doc, int timeout_ms)
{
    zmq_pollitem_t item = { zsock_resolve (socket), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return NULL;
    zmsg_t *message = zmsg_recv (socket);
    if (!message)
        return NULL;
    zframe_t *body = zmsg_last (message);
    zmsg_remove (message, body);
    zmsg_destroy (&s_last_envelope);
    s_last_envelope = message;
    zcq_err_t err = zcq_doc_decode_copy (doc, zframe_data (body), zframe_size (body), NULL);
    zframe_destroy (&body);
    if (err != ZCQ_OK)
        fail_msg ("a reply is not valid MessagePack: %s", zcq_doc_error (doc));
    return zcq_doc_root (doc);
}

//  --------------------------------------------------------------------------
//  The walk-through: start a node, open an account, deposit, read the
//  reply, stop.

static void
test_walkthrough (void **state)
{
    char *dir = s_test_dir ("walkthrough");
    zcq_config_t *config = zcq_config_new ();
    assert_non_null (config);
    char error[256] = "";
    assert_int_equal (zcq_config_set (config, "data", dir, error, sizeof error), ZCQ_OK);
    assert_int_equal (zcq_config_set (config, "command", "tcp://127.0.0.1:*", error, sizeof error),
                      ZCQ_OK);
    assert_int_equal (zcq_config_set (config, "events", "tcp://127.0.0.1:*", error, sizeof error),
                      ZCQ_OK);
    assert_int_equal (zcq_config_set (config, "query", "tcp://127.0.0.1:*", error, sizeof error),
                      ZCQ_OK);
    zcq_node_t *node = NULL;
    if (zcq_node_start (&node, config, zcq_bank_domain (), error, sizeof error) != ZCQ_OK)
        fail_msg ("node did not start: %s", error);
    zcq_config_destroy (&config);
    const char *endpoint = zcq_node_endpoint (node, ZCQ_ENDPOINT_COMMAND);
    assert_non_null (strstr (endpoint, "tcp://127.0.0.1:"));
    assert_null (strstr (endpoint, "*"));
    assert_int_equal (zcq_node_head (node), 0);

    zcq_client_t *client = zcq_client_new (endpoint, NULL);
    assert_non_null (client);

    //  open account 42
    zcq_writer_t *data = zcq_writer_new ();
    zcq_writer_map (data, 1);
    zcq_writer_str (data, "owner");
    zcq_writer_str (data, "ann");
    zcq_command_req_t open = { .id = "walk-open",
                               .aggregate = "account",
                               .key = "42",
                               .type = "open",
                               .expect = ZCQ_EXPECT_NEW,
                               .data = zcq_writer_data (data),
                               .data_len = zcq_writer_size (data) };
    const zcq_value_t *reply;
    assert_int_equal (zcq_client_command (client, &open, S_TIMEOUT, &reply), ZCQ_OK);
    assert_int_equal (zcq_reply_status (reply), ZCQ_OK);

    //  deposit 250 cents
    zcq_writer_reset (data);
    zcq_writer_map (data, 1);
    zcq_writer_str (data, "amount");
    zcq_writer_int (data, 250);
    zcq_command_req_t deposit = { .id = "walk-deposit",
                                  .aggregate = "account",
                                  .key = "42",
                                  .type = "deposit",
                                  .data = zcq_writer_data (data),
                                  .data_len = zcq_writer_size (data) };
    assert_int_equal (zcq_client_command (client, &deposit, S_TIMEOUT, &reply), ZCQ_OK);

    //  every key of a success reply (ZCQ/1 section 3)
    char text[64];
    assert_string_equal (zcq_value_get_str (reply, "id", text, sizeof text, ""), "walk-deposit");
    bool flag = false;
    assert_true (zcq_value_bool (zcq_value_get (reply, "ok"), &flag));
    assert_true (flag);
    assert_string_equal (zcq_value_get_str (reply, "stream", text, sizeof text, ""), "account/42");
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 2);
    assert_int_equal (zcq_value_get_int (reply, "position", -1), 2);
    assert_int_equal (zcq_value_get_int (reply, "events", -1), 1);
    assert_true (zcq_value_bool (zcq_value_get (reply, "duplicate"), &flag));
    assert_false (flag);
    assert_null (zcq_value_get (reply, "error"));
    assert_int_equal (zcq_node_head (node), 2);

    zcq_writer_destroy (&data);
    zcq_client_destroy (&client);
    zcq_node_destroy (&node);
    assert_null (node);
    zcq_node_destroy (&node); //  safe twice
    zcq_test_rmdir (&dir);
}

//  --------------------------------------------------------------------------
//  open: owner 1-128 bytes, overdraft optional >= 0, re-open rejected

static void
test_open (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;

    //  invalid payloads, each appending nothing
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "1", -1, NULL), "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "1", -1, "owner", "s:", NULL), "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "1", -1, "owner", "x:129", NULL), "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "1", -1, "owner", "i:7", NULL), "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "1", -1, "owner", "n:", NULL), "invalid");
    ASSERT_ERROR (
        zcq_test_send (client, NULL, "open", "1", -1, "owner", "s:ann", "overdraft", "i:-1", NULL),
        "invalid");
    ASSERT_ERROR (
        zcq_test_send (client, NULL, "open", "1", -1, "owner", "s:ann", "overdraft", "s:100", NULL),
        "invalid");
    ASSERT_ERROR (
        zcq_test_send (client, NULL, "open", "1", -1, "owner", "s:ann", "overdraft", "f:1.5", NULL),
        "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "open", "1", "s:ann"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "open", "1", "a:"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "open", "1", "i:5"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "open", "1", NULL), "invalid");
    assert_int_equal (zcq_node_head (fixture->node), 0);

    //  boundaries: 1 byte, 128 bytes, overdraft 0, absent or nil overdraft
    ASSERT_OK (zcq_test_send (client, NULL, "open", "1", -1, "owner", "s:a", NULL), "account/1", 1);
    ASSERT_OK (zcq_test_send (client, NULL, "open", "2", -1, "owner", "x:128", NULL), "account/2",
               1);
    ASSERT_OK (
        zcq_test_send (client, NULL, "open", "3", -1, "owner", "s:bob", "overdraft", "i:0", NULL),
        "account/3", 1);
    uint64_t position = ASSERT_OK (zcq_test_send (client, NULL, "open", "4", -1, "owner", "s:cy",
                                                  "overdraft", "n:", "extra", "s:ignored", NULL),
                                   "account/4", 1);
    assert_int_equal (position, 4);

    //  re-open is rejected, whatever the payload, and appends nothing
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "1", -1, "owner", "s:a", NULL), "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "2", -1, "owner", "s:other", "overdraft",
                                 "i:50", NULL),
                  "rejected");
    assert_int_equal (zcq_node_head (fixture->node), 4);

    //  the default overdraft is 0: nothing can be withdrawn from account 4
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "4", -1, "amount", "i:1", NULL),
                  "rejected");
    //  and the version goes on from 1
    position = ASSERT_OK (zcq_test_send (client, NULL, "deposit", "1", -1, "amount", "i:5", NULL),
                          "account/1", 2);
    assert_int_equal (position, 5);
    assert_int_equal (zcq_node_head (fixture->node), 5);
}

//  --------------------------------------------------------------------------
//  deposit: amount > 0, account must be open

static void
test_deposit (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;

    //  before open: rejected, nothing appended
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "i:100", NULL),
                  "rejected");
    assert_int_equal (zcq_node_head (fixture->node), 0);
    ASSERT_OK (zcq_test_send (client, NULL, "open", "7", -1, "owner", "s:dee", NULL), "account/7",
               1);

    //  every invalid payload class
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, NULL), "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "i:0", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "i:-5", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "s:10", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "f:10.5", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "n:", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "b:true", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "7", -1, "sum", "i:10", NULL), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "deposit", "7", "i:10"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "deposit", "7", "a:"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "deposit", "7", "s:10"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "deposit", "7", "n:"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "deposit", "7", NULL), "invalid");
    //  invalid beats rejected: the payload is checked before the rules
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "8", -1, "amount", "i:0", NULL),
                  "invalid");
    assert_int_equal (zcq_node_head (fixture->node), 1);

    //  accepted: 1 cent and a large amount
    uint64_t position = ASSERT_OK (
        zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "i:1", NULL), "account/7", 2);
    assert_int_equal (position, 2);
    position = ASSERT_OK (
        zcq_test_send (client, NULL, "deposit", "7", -1, "amount", "i:1000000000000", NULL),
        "account/7", 3);
    assert_int_equal (position, 3);
    //  the balance is 1000000000001: withdrawing it all empties the account
    ASSERT_ERROR (
        zcq_test_send (client, NULL, "withdraw", "7", -1, "amount", "i:1000000000002", NULL),
        "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "7", -1, "amount", "i:1000000000001", NULL),
               "account/7", 4);
    assert_int_equal (zcq_node_head (fixture->node), 4);
}

//  --------------------------------------------------------------------------
//  withdraw: rejected when balance - amount < -overdraft; at the limit ok

static void
test_withdraw (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;

    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_OK (
        zcq_test_send (client, NULL, "open", "9", -1, "owner", "s:eve", "overdraft", "i:100", NULL),
        "account/9", 1);
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "9", -1, "amount", "i:50", NULL),
               "account/9", 2);

    //  invalid payloads
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, NULL), "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:0", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:-50", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "s:5", NULL),
                  "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "withdraw", "9", "a:"), "invalid");
    ASSERT_ERROR (s_send_data (client, NULL, "withdraw", "9", NULL), "invalid");

    //  balance 50, overdraft 100: 151 would leave -101 < -100
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:151", NULL),
                  "rejected");
    assert_int_equal (zcq_node_head (fixture->node), 2);
    //  150 leaves exactly -100: accepted
    uint64_t position = ASSERT_OK (
        zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:150", NULL), "account/9", 3);
    assert_int_equal (position, 3);
    //  at the limit, not one cent more
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "9", -1, "amount", "i:10", NULL),
               "account/9", 4);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:11", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "9", -1, "amount", "i:10", NULL),
               "account/9", 5);

    //  without overdraft, the balance is the limit
    ASSERT_OK (zcq_test_send (client, NULL, "open", "10", -1, "owner", "s:fay", NULL), "account/10",
               1);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "10", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "10", -1, "amount", "i:30", NULL),
               "account/10", 2);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "10", -1, "amount", "i:31", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "10", -1, "amount", "i:30", NULL),
               "account/10", 3);

    assert_int_equal (zcq_node_head (fixture->node), 8);
}

//  --------------------------------------------------------------------------
//  close: only open with balance 0; a closed account takes nothing more

static void
test_close (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;

    ASSERT_ERROR (zcq_test_send (client, NULL, "close", "12", -1, NULL), "rejected");
    ASSERT_OK (
        zcq_test_send (client, NULL, "open", "12", -1, "owner", "s:hal", "overdraft", "i:20", NULL),
        "account/12", 1);
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "12", -1, "amount", "i:5", NULL),
               "account/12", 2);
    //  positive balance
    ASSERT_ERROR (zcq_test_send (client, NULL, "close", "12", -1, NULL), "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "12", -1, "amount", "i:15", NULL),
               "account/12", 3);
    //  negative balance
    ASSERT_ERROR (zcq_test_send (client, NULL, "close", "12", -1, NULL), "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "12", -1, "amount", "i:10", NULL),
               "account/12", 4);
    assert_int_equal (zcq_node_head (fixture->node), 4);
    //  balance 0
    uint64_t position
        = ASSERT_OK (zcq_test_send (client, NULL, "close", "12", -1, NULL), "account/12", 5);
    assert_int_equal (position, 5);

    //  closed: every command is rejected and appends nothing
    ASSERT_ERROR (zcq_test_send (client, NULL, "close", "12", -1, NULL), "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "12", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "12", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "12", -1, "owner", "s:hal", NULL),
                  "rejected");
    //  a closed account still checks payloads first
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "12", -1, "amount", "i:0", NULL),
                  "invalid");
    assert_int_equal (zcq_node_head (fixture->node), 5);

    //  the stream did not move: expect 5 is still right
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "12", 5, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "12", 4, "amount", "i:1", NULL),
                  "conflict");
}

//  --------------------------------------------------------------------------
//  Envelope and request validation: `invalid` with a message; `unknown`
//  for an unknown aggregate type or command type. Nothing is appended.

//  The reply echoes the request's id.
static void
s_assert_id (const zcq_value_t *reply, const char *id)
{
    char text[80];
    assert_string_equal (zcq_value_get_str (reply, "id", text, sizeof text, "(none)"), id);
}

static void
test_request_validation (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;
    const zcq_value_t *reply;

    ASSERT_OK (zcq_test_send (client, "v-open", "open", "1", -1, "owner", "s:ann", NULL),
               "account/1", 1);
    //  the request that every case below spoils in one way
    reply = s_request (client, "id", "s:v-good", "aggregate", "s:account", "key", "s:1", "type",
                       "s:deposit", "data", "m:", NULL);
    ASSERT_OK (reply, "account/1", 2);
    s_assert_id (reply, "v-good");
    assert_int_equal (zcq_node_head (fixture->node), 2);

    //  missing fields
    ASSERT_ERROR (s_request (client, "aggregate", "s:account", "key", "s:1", "type", "s:deposit",
                             "data", "m:", NULL),
                  "invalid");
    reply = s_request (client, "id", "s:v1", "key", "s:1", "type", "s:deposit", "data", "m:", NULL);
    ASSERT_ERROR (reply, "invalid");
    s_assert_id (reply, "v1");
    reply = s_request (client, "id", "s:v2", "aggregate", "s:account", "type", "s:deposit", "data",
                       "m:", NULL);
    ASSERT_ERROR (reply, "invalid");
    s_assert_id (reply, "v2");
    reply = s_request (client, "id", "s:v3", "aggregate", "s:account", "key", "s:1", "data",
                       "m:", NULL);
    ASSERT_ERROR (reply, "invalid");
    s_assert_id (reply, "v3");

    //  id: a string of 1 to 64 bytes
    ASSERT_ERROR (s_request (client, "id", "s:", "aggregate", "s:account", "key", "s:1", "type",
                             "s:deposit", "data", "m:", NULL),
                  "invalid");
    ASSERT_ERROR (s_request (client, "id", "x:65", "aggregate", "s:account", "key", "s:1", "type",
                             "s:deposit", "data", "m:", NULL),
                  "invalid");
    //  an id that is no string cannot be echoed, so the client cannot
    //  match the reply by id: ask over a raw DEALER
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    zcq_doc_t *doc = zcq_doc_new ();
    const char *bad_ids[] = { "i:65", "n:", "a:", "B:3" };
    for (size_t index = 0; index < sizeof bad_ids / sizeof bad_ids[0]; index++) {
        zcq_writer_t *request = zcq_writer_new ();
        zcq_writer_map (request, 5);
        const char *pairs[] = { "id",  bad_ids[index], "aggregate", "s:account", "key",
                                "s:1", "type",         "s:deposit", "data",      "m:" };
        for (size_t pair = 0; pair < 10; pair += 2) {
            zcq_writer_str (request, pairs[pair]);
            zcq_test_write_typed (request, pairs[pair + 1]);
        }
        s_send_body (dealer, zcq_writer_data (request), zcq_writer_size (request));
        ASSERT_ERROR (s_recv_reply (dealer, doc, S_TIMEOUT), "invalid");
        zcq_writer_destroy (&request);
    }
    zcq_doc_destroy (&doc);
    assert_int_equal (zcq_node_head (fixture->node), 2);
    ASSERT_OK (s_request (client, "id", "x:64", "aggregate", "s:account", "key", "s:1", "type",
                          "s:deposit", "data", "m:", NULL),
               "account/1", 3);

    //  aggregate: [a-z0-9_.-]{1,64}
    const char *bad_aggregates[] = { "s:Account", "s:ACCOUNT", "s:account/1", "s:acc ount",
                                     "s:",        "x:65",      "i:1",         "s:compte\xc3\xa9" };
    for (size_t index = 0; index < sizeof bad_aggregates / sizeof bad_aggregates[0]; index++) {
        reply = s_request (client, "id", "s:v4", "aggregate", bad_aggregates[index], "key", "s:1",
                           "type", "s:deposit", "data", "m:", NULL);
        ASSERT_ERROR (reply, "invalid");
        s_assert_id (reply, "v4");
    }
    //  key: 1 to 256 bytes, no '/'
    const char *bad_keys[] = { "s:a/b", "s:/", "s:1/", "s:", "x:257", "i:1", "a:" };
    for (size_t index = 0; index < sizeof bad_keys / sizeof bad_keys[0]; index++) {
        reply = s_request (client, "id", "s:v5", "aggregate", "s:account", "key", bad_keys[index],
                           "type", "s:deposit", "data", "m:", NULL);
        ASSERT_ERROR (reply, "invalid");
        s_assert_id (reply, "v5");
    }
    //  type: a string of 1 to 64 bytes
    const char *bad_types[] = { "s:", "x:65", "i:1", "m:" };
    for (size_t index = 0; index < sizeof bad_types / sizeof bad_types[0]; index++) {
        reply = s_request (client, "id", "s:v6", "aggregate", "s:account", "key", "s:1", "type",
                           bad_types[index], "data", "m:", NULL);
        ASSERT_ERROR (reply, "invalid");
        s_assert_id (reply, "v6");
    }
    //  expect: an integer >= 0
    const char *bad_expects[]
        = { "i:-1", "i:-9223372036854775807", "s:3", "f:3.0", "b:true", "a:", "m:" };
    for (size_t index = 0; index < sizeof bad_expects / sizeof bad_expects[0]; index++) {
        reply = s_request (client, "id", "s:v7", "aggregate", "s:account", "key", "s:1", "type",
                           "s:deposit", "expect", bad_expects[index], "data", "m:", NULL);
        ASSERT_ERROR (reply, "invalid");
        s_assert_id (reply, "v7");
    }
    //  meta: a map
    const char *bad_metas[] = { "s:user", "i:1", "a:", "b:false" };
    for (size_t index = 0; index < sizeof bad_metas / sizeof bad_metas[0]; index++) {
        reply = s_request (client, "id", "s:v8", "aggregate", "s:account", "key", "s:1", "type",
                           "s:deposit", "meta", bad_metas[index], "data", "m:", NULL);
        ASSERT_ERROR (reply, "invalid");
        s_assert_id (reply, "v8");
    }
    //  too deep
    ASSERT_ERROR (s_request (client, "id", "s:v9", "aggregate", "s:account", "key", "s:1", "type",
                             "s:deposit", "data", "D:100", NULL),
                  "invalid");
    assert_int_equal (zcq_node_head (fixture->node), 3);

    //  the body: not a map, garbage, truncated, trailing bytes, empty
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_writer_array (writer, 2);
    zcq_writer_str (writer, "id");
    zcq_writer_str (writer, "v10");
    ASSERT_ERROR (s_call_raw (client, zcq_writer_data (writer), zcq_writer_size (writer)),
                  "invalid");
    const uint8_t not_maps[][3] = { { 0x01 }, { 0xc0 }, { 0xa1, 'x' }, { 0x90 }, { 0xc3 } };
    const size_t not_map_sizes[] = { 1, 1, 2, 1, 1 };
    for (size_t index = 0; index < 5; index++)
        ASSERT_ERROR (s_call_raw (client, not_maps[index], not_map_sizes[index]), "invalid");
    ASSERT_ERROR (s_call_raw (client, "hello, world", 12), "invalid");
    ASSERT_ERROR (s_call_raw (client, "\xc1\xc1\xc1", 3), "invalid");
    ASSERT_ERROR (s_call_raw (client, "", 0), "invalid");
    //  a map header that promises more than there is
    ASSERT_ERROR (s_call_raw (client, "\xdf\xff\xff\xff\xff", 5), "invalid");
    ASSERT_ERROR (s_call_raw (client, "\xdb\xff\xff\xff\xff", 5), "invalid");

    s_encode_command (writer, "v11", "deposit", "1", 100);
    size_t size = zcq_writer_size (writer);
    uint8_t *body = malloc (size + 1);
    assert_non_null (body);
    memcpy (body, zcq_writer_data (writer), size);
    for (size_t cut = 1; cut < size; cut += 7)
        ASSERT_ERROR (s_call_raw (client, body, size - cut), "invalid");
    body[size] = 0xc0;
    ASSERT_ERROR (s_call_raw (client, body, size + 1), "invalid");
    body[size] = 0x01;
    ASSERT_ERROR (s_call_raw (client, body, size + 1), "invalid");
    assert_int_equal (zcq_node_head (fixture->node), 3);
    //  the intact body is fine
    ASSERT_OK (s_call_raw (client, body, size), "account/1", 4);
    free (body);

    //  unknown keys are ignored; meta nil or a map is fine; expect nil is absent
    ASSERT_OK (s_request (client, "id", "s:v12", "aggregate", "s:account", "key", "s:1", "type",
                          "s:deposit", "data", "m:", "meta", "m:", "expect", "n:", "future",
                          "a:", NULL),
               "account/1", 5);
    ASSERT_OK (s_request (client, "id", "s:v13", "aggregate", "s:account", "key", "s:1", "type",
                          "s:deposit", "data", "m:", "meta", "n:", NULL),
               "account/1", 6);
    //  a key of 256 bytes and one of odd characters are fine
    char long_key[257], long_stream[300];
    memset (long_key, 'k', 256);
    long_key[256] = 0;
    snprintf (long_stream, sizeof long_stream, "account/%s", long_key);
    ASSERT_OK (zcq_test_send (client, NULL, "open", long_key, -1, "owner", "s:long", NULL),
               long_stream, 1);
    ASSERT_OK (
        zcq_test_send (client, NULL, "open", "Ann Smith: #1 ~ 100%", -1, "owner", "s:ann", NULL),
        "account/Ann Smith: #1 ~ 100%", 1);
    assert_int_equal (zcq_node_head (fixture->node), 8);

    //  unknown aggregate and command types
    reply = s_request (client, "id", "s:v14", "aggregate", "s:nosuch", "key", "s:1", "type",
                       "s:deposit", "data", "m:", NULL);
    ASSERT_ERROR (reply, "unknown");
    s_assert_id (reply, "v14");
    ASSERT_ERROR (s_request (client, "id", "s:v15", "aggregate", "x:64", "key", "s:1", "type",
                             "s:deposit", "data", "m:", NULL),
                  "unknown");
    reply = s_request (client, "id", "s:v16", "aggregate", "s:account", "key", "s:1", "type",
                       "s:transfer", "data", "m:", NULL);
    ASSERT_ERROR (reply, "unknown");
    s_assert_id (reply, "v16");
    ASSERT_ERROR (s_request (client, "id", "s:v17", "aggregate", "s:account", "key", "s:1", "type",
                             "s:Deposit", "data", "m:", NULL),
                  "unknown");
    ASSERT_ERROR (s_request (client, "id", "s:v18", "aggregate", "s:account", "key", "s:1", "type",
                             "s:deposited", "data", "m:", NULL),
                  "unknown");
    assert_int_equal (zcq_node_head (fixture->node), 8);
    zcq_writer_destroy (&writer);
}

//  The request limit (1 MiB by default): a body of exactly the limit is
//  taken, one byte more is `invalid`, and that reply still carries the id
//  so that a pipelining client can match it.

//  Encode a deposit of 100 to account 1 padded with an unknown bin field
//  so that the whole body is exactly size bytes.
static void
s_encode_padded (zcq_writer_t *writer, const char *id, size_t size)
{
    size_t padding = 70000; //  bin 32 from here on: size grows 1:1
    for (int pass = 0; pass < 2; pass++) {
        zcq_writer_reset (writer);
        zcq_writer_map (writer, 6);
        const char *pairs[] = { "id", id, "aggregate", "account", "key", "1", "type", "deposit" };
        for (size_t index = 0; index < 8; index++)
            zcq_writer_str (writer, pairs[index]);
        zcq_writer_str (writer, "data");
        zcq_test_write_typed (writer, "m:");
        zcq_writer_str (writer, "padding");
        char *bytes = calloc (1, padding);
        assert_non_null (bytes);
        zcq_writer_bin (writer, bytes, padding);
        free (bytes);
        assert_true (zcq_writer_ok (writer));
        padding = padding + size - zcq_writer_size (writer);
    }
    assert_int_equal (zcq_writer_size (writer), size);
}

static void
test_request_limit (void **state)
{
    fixture_t *fixture = *state;
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    const zcq_value_t *reply;
    ASSERT_OK (zcq_test_send (fixture->client, NULL, "open", "1", -1, "owner", "s:ann", NULL),
               "account/1", 1);

    //  at the limit: taken
    s_encode_padded (writer, "limit-at", 1048576);
    s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    reply = s_recv_reply (dealer, doc, S_TIMEOUT);
    ASSERT_OK (reply, "account/1", 2);
    s_assert_id (reply, "limit-at");

    //  over the limit: invalid, nothing appended, the node goes on
    s_encode_padded (writer, "limit-over", 1048577);
    s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    s_encode_padded (writer, "limit-far-over", 3 << 20);
    s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    char ids[2][32] = { "", "" };
    for (int index = 0; index < 2; index++) {
        reply = s_recv_reply (dealer, doc, S_TIMEOUT);
        ASSERT_ERROR (reply, "invalid");
        assert_non_null (strstr (s_message (reply), "limit"));
        zcq_value_get_str (reply, "id", ids[index], sizeof ids[index], "");
    }
    assert_int_equal (zcq_node_head (fixture->node), 2);
    ASSERT_OK (zcq_test_send (fixture->client, NULL, "deposit", "1", -1, "amount", "i:1", NULL),
               "account/1", 3);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);

    //  ZCQ/1 section 3: a failure reply has the request's id
    if (strcmp (ids[0], "limit-over") != 0 || strcmp (ids[1], "limit-far-over") != 0)
        fail_msg ("the `invalid` replies to oversized requests carry ids '%s' and '%s', not "
                  "'limit-over' and 'limit-far-over'",
                  ids[0], ids[1]);
}

//  --------------------------------------------------------------------------
//  expect: optimistic concurrency on the stream's version

static void
test_expect (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;
    const zcq_value_t *reply;

    //  0 on a new stream
    ASSERT_OK (zcq_test_send (client, NULL, "open", "e1", 0, "owner", "s:ivy", NULL), "account/e1",
               1);
    //  0 on an existing stream: conflict, with the stream's version
    reply = zcq_test_send (client, "x-1", "open", "e1", 0, "owner", "s:ivy", NULL);
    ASSERT_ERROR (reply, "conflict");
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 1);
    s_assert_id (reply, "x-1");
    reply = zcq_test_send (client, NULL, "deposit", "e1", 0, "amount", "i:5", NULL);
    ASSERT_ERROR (reply, "conflict");
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 1);
    //  the right version
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "e1", 1, "amount", "i:5", NULL),
               "account/e1", 2);
    reply = zcq_test_send (client, NULL, "deposit", "e1", 1, "amount", "i:5", NULL);
    ASSERT_ERROR (reply, "conflict");
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 2);
    reply = zcq_test_send (client, NULL, "deposit", "e1", 7, "amount", "i:5", NULL);
    ASSERT_ERROR (reply, "conflict");
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 2);
    assert_int_equal (zcq_node_head (fixture->node), 2);
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "e1", 2, "amount", "i:5", NULL),
               "account/e1", 3);

    //  a new stream is at version 0
    reply = zcq_test_send (client, NULL, "open", "e2", 1, "owner", "s:jo", NULL);
    ASSERT_ERROR (reply, "conflict");
    assert_int_equal (zcq_value_get_int (reply, "version", -1), 0);
    //  a matching expect still goes through the rules
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "e2", 0, "amount", "i:5", NULL),
                  "rejected");
    assert_int_equal (zcq_node_head (fixture->node), 3);

    //  a conflicting command's id can be retried with the right version
    ASSERT_ERROR (zcq_test_send (client, "x-2", "deposit", "e1", 9, "amount", "i:1", NULL),
                  "conflict");
    uint64_t position = ASSERT_OK (
        zcq_test_send (client, "x-2", "deposit", "e1", 3, "amount", "i:1", NULL), "account/e1", 4);
    assert_int_equal (position, 4);
    //  its retry is a duplicate, whatever it expects now
    assert_int_equal (
        ASSERT_DUPLICATE (zcq_test_send (client, "x-2", "deposit", "e1", 0, "amount", "i:1", NULL),
                          "account/e1", 4),
        4);
    assert_int_equal (zcq_node_head (fixture->node), 4);
}

//  --------------------------------------------------------------------------
//  Duplicates: a retried id is answered with the first result

static void
test_duplicates (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;
    const zcq_value_t *reply;

    ASSERT_OK (zcq_test_send (client, "d-open", "open", "20", -1, "owner", "s:kim", NULL),
               "account/20", 1);
    ASSERT_OK (zcq_test_send (client, "d-dep", "deposit", "20", -1, "amount", "i:100", NULL),
               "account/20", 2);
    assert_int_equal (zcq_node_head (fixture->node), 2);

    //  the retry gets the stored result and appends nothing
    reply = zcq_test_send (client, "d-dep", "deposit", "20", -1, "amount", "i:100", NULL);
    assert_int_equal (ASSERT_DUPLICATE (reply, "account/20", 2), 2);
    assert_int_equal (zcq_value_get_int (reply, "events", -1), 1);
    s_assert_id (reply, "d-dep");
    assert_int_equal (ASSERT_DUPLICATE (zcq_test_send (client, "d-open", "open", "20", -1, "owner",
                                                       "s:kim", NULL),
                                        "account/20", 1),
                      1);
    //  even when the retry's data says something else: the first success
    //  stands
    assert_int_equal (ASSERT_DUPLICATE (zcq_test_send (client, "d-dep", "deposit", "20", -1,
                                                       "amount", "i:5", NULL),
                                        "account/20", 2),
                      2);
    //  but the id for another command type or stream is not a retry
    ASSERT_ERROR (zcq_test_send (client, "d-dep", "withdraw", "20", -1, "amount", "i:5", NULL),
                  "invalid");
    ASSERT_ERROR (zcq_test_send (client, "d-dep", "deposit", "22", -1, "amount", "i:5", NULL),
                  "invalid");
    assert_int_equal (zcq_node_head (fixture->node), 2);
    //  the balance is 100: deposited once
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "20", -1, "amount", "i:101", NULL),
                  "rejected");

    //  a rejected command's id is not remembered: decided again
    ASSERT_ERROR (zcq_test_send (client, "d-early", "deposit", "21", -1, "amount", "i:40", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, "d-early", "deposit", "21", -1, "amount", "i:40", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, "d-open21", "open", "21", -1, "owner", "s:lou", NULL),
               "account/21", 1);
    uint64_t position
        = ASSERT_OK (zcq_test_send (client, "d-early", "deposit", "21", -1, "amount", "i:40", NULL),
                     "account/21", 2);
    assert_int_equal (position, 4);
    assert_int_equal (ASSERT_DUPLICATE (zcq_test_send (client, "d-early", "deposit", "21", -1,
                                                       "amount", "i:40", NULL),
                                        "account/21", 2),
                      4);
    //  nor is an invalid one
    ASSERT_ERROR (zcq_test_send (client, "d-invalid", "deposit", "21", -1, "amount", "i:0", NULL),
                  "invalid");
    ASSERT_OK (zcq_test_send (client, "d-invalid", "deposit", "21", -1, "amount", "i:2", NULL),
               "account/21", 3);
    assert_int_equal (zcq_node_head (fixture->node), 5);

    //  one pipelined burst: X, X, Y, X on one stream, all sent before the
    //  first is committed: X applied once, Y once
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    zcq_writer_t *writer = zcq_writer_new ();
    const char *ids[] = { "d-burst", "d-burst", "d-other", "d-burst" };
    const int64_t amounts[] = { 7, 7, 1, 7 };
    for (size_t index = 0; index < 4; index++) {
        s_encode_command (writer, ids[index], "deposit", "20", amounts[index]);
        s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    zcq_doc_t *doc = zcq_doc_new ();
    size_t applied = 0, duplicates = 0;
    int64_t burst_position = -1;
    for (size_t index = 0; index < 4; index++) {
        reply = s_recv_reply (dealer, doc, S_TIMEOUT);
        assert_non_null (reply);
        char id[32];
        zcq_value_get_str (reply, "id", id, sizeof id, "");
        bool duplicate = false;
        zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate);
        if (strcmp (id, "d-other") == 0)
            ASSERT_OK (reply, "account/20", 4);
        else {
            assert_string_equal (id, "d-burst");
            int64_t got = (int64_t) s_assert_ok (reply, "account/20", 3, duplicate, __LINE__);
            if (burst_position < 0)
                burst_position = got;
            assert_int_equal (got, burst_position);
            if (duplicate)
                duplicates++;
            else
                applied++;
        }
    }
    assert_int_equal (applied, 1);
    assert_int_equal (duplicates, 2);
    assert_int_equal (burst_position, 6);
    assert_int_equal (zcq_node_head (fixture->node), 7);
    //  the balance is 100 + 7 + 1
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "20", -1, "amount", "i:109", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "20", -1, "amount", "i:108", NULL),
               "account/20", 5);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  One id sent to many streams in one burst: spread over the shards, it
//  must still be applied at most once, and every other stream's command is
//  answered `invalid`, never with the first one's result.
static void
test_duplicates_across_streams (void **state)
{
    fixture_t *fixture = *state;
    //  4 shards, and fsync to widen the time a command is in flight
    zcq_client_destroy (&fixture->client);
    zcq_node_destroy (&fixture->node);
    fixture->node = zcq_test_node (fixture->dir, "shards", "4", "durability", "fsync", NULL);
    fixture->client = s_client (fixture->node);
    zcq_client_t *client = fixture->client;
    char key[16];
    for (int account = 0; account < 16; account++) {
        snprintf (key, sizeof key, "s%d", account);
        assert_string_equal (
            zcq_test_code (zcq_test_send (client, NULL, "open", key, -1, "owner", "s:x", NULL)),
            "ok");
    }
    uint64_t head = zcq_node_head (fixture->node);
    assert_int_equal (head, 16);

    //  one burst: the same id to each of the 16 streams, then 300 other
    //  commands
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    zcq_writer_t *writer = zcq_writer_new ();
    for (int account = 0; account < 16; account++) {
        snprintf (key, sizeof key, "s%d", account);
        s_encode_command (writer, "same-id", "deposit", key, 10);
        s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    const int busy = 300;
    for (int index = 0; index < busy; index++) {
        char id[32];
        snprintf (id, sizeof id, "busy-%d", index);
        snprintf (key, sizeof key, "s%d", index % 16);
        s_encode_command (writer, id, "deposit", key, 1);
        s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    zcq_doc_t *doc = zcq_doc_new ();
    size_t applied = 0, refused = 0;
    for (int index = 0; index < busy + 16; index++) {
        const zcq_value_t *reply = s_recv_reply (dealer, doc, S_TIMEOUT);
        assert_non_null (reply);
        char id[32];
        zcq_value_get_str (reply, "id", id, sizeof id, "");
        if (strcmp (id, "same-id") != 0) {
            assert_string_equal (zcq_test_code (reply), "ok");
            continue;
        }
        if (strcmp (zcq_test_code (reply), "invalid") == 0) {
            refused++;
            continue;
        }
        assert_string_equal (zcq_test_code (reply), "ok");
        bool duplicate = true;
        zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate);
        assert_false (duplicate);
        applied++;
    }
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
    head += busy;
    assert_int_equal (refused, 15);
    if (applied != 1 || zcq_node_head (fixture->node) != head + 1)
        fail_msg ("command id 'same-id' was applied %zu times (head %llu, expected %llu)", applied,
                  (unsigned long long) zcq_node_head (fixture->node),
                  (unsigned long long) head + 1);
}

//  --------------------------------------------------------------------------
//  A DEALER pipelining 10,000 commands, all sent before any reply is read

#define S_ACCOUNTS 1000
#define S_ROUNDS   9 //  deposits per account, after its open

static void
test_pipelined (void **state)
{
    fixture_t *fixture = *state;
    //  every command at once, from one client: more than its default share
    s_restart (fixture, "max-inflight-per-client", "1000000");
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    const size_t total = S_ACCOUNTS * (1 + S_ROUNDS);
    int64_t *versions = calloc (total, sizeof (int64_t));
    int64_t *positions = calloc (total, sizeof (int64_t));
    uint8_t *seen = calloc (total + 1, 1);
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    assert_true (versions && positions && seen && writer && doc);

    //  opens first, then round after round of deposits over every account
    int64_t expected_balance = 0;
    int64_t started = zclock_usecs ();
    for (size_t index = 0; index < total; index++) {
        size_t account = index % S_ACCOUNTS;
        size_t round = index / S_ACCOUNTS;
        char id[32], key[16];
        snprintf (id, sizeof id, "p-%zu", index);
        snprintf (key, sizeof key, "%zu", account);
        int64_t amount = (int64_t) (account + round);
        s_encode_command (writer, id, round ? "deposit" : "open", key, amount);
        if (round)
            expected_balance += amount;
        s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    for (size_t replies = 0; replies < total; replies++) {
        const zcq_value_t *reply = s_recv_reply (dealer, doc, S_TIMEOUT);
        if (!reply)
            fail_msg ("only %zu replies of %zu", replies, total);
        char id[80];
        zcq_value_get_str (reply, "id", id, sizeof id, "");
        char *end = NULL;
        size_t index = strncmp (id, "p-", 2) == 0 ? strtoul (id + 2, &end, 10) : total;
        if (index >= total || !end || *end)
            fail_msg ("a reply for an id never sent: '%s'", id);
        if (versions[index])
            fail_msg ("a second reply for %s", id);
        if (strcmp (zcq_test_code (reply), "ok") != 0)
            fail_msg ("%s: %s: %s", id, zcq_test_code (reply), s_message (reply));
        bool duplicate = true;
        zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate);
        assert_false (duplicate);
        assert_int_equal (zcq_value_get_int (reply, "events", -1), 1);
        char stream[32], expected[32];
        snprintf (expected, sizeof expected, "account/%zu", index % S_ACCOUNTS);
        assert_string_equal (zcq_value_get_str (reply, "stream", stream, sizeof stream, ""),
                             expected);
        versions[index] = zcq_value_get_int (reply, "version", -1);
        positions[index] = zcq_value_get_int (reply, "position", -1);
    }
    int64_t elapsed = zclock_usecs () - started;
    printf ("pipelined: %zu commands in %.1f ms over one DEALER: %.0f commands/s\n", total,
            elapsed / 1000.0, total * 1e6 / (double) (elapsed ? elapsed : 1));

    //  versions count the stream's events; positions are 1..total, once
    //  each, and in order within a stream
    for (size_t index = 0; index < total; index++) {
        assert_int_equal (versions[index], (int64_t) (index / S_ACCOUNTS) + 1);
        assert_in_range (positions[index], 1, total);
        assert_false (seen[positions[index]]);
        seen[positions[index]] = 1;
        if (index >= S_ACCOUNTS)
            assert_true (positions[index] > positions[index - S_ACCOUNTS]);
    }
    assert_int_equal (zcq_node_head (fixture->node), total);

    //  the balances add up, as the read side sees them at the head
    const zcq_value_t *totals = s_get_row (fixture->client, "totals", "bank", total);
    assert_non_null (totals);
    assert_int_equal (zcq_value_get_int (totals, "balance", -1), expected_balance);
    assert_int_equal (zcq_value_get_int (totals, "accounts", -1), S_ACCOUNTS);
    assert_int_equal (zcq_value_get_int (totals, "events", -1), total);
    const zcq_value_t *row = s_get_row (fixture->client, "accounts", "417", total);
    assert_non_null (row);
    assert_int_equal (zcq_value_get_int (row, "balance", -1), 417 * S_ROUNDS + 45);
    assert_int_equal (zcq_value_get_int (row, "version", -1), 1 + S_ROUNDS);
    //  and the write side agrees
    ASSERT_ERROR (
        zcq_test_send (fixture->client, NULL, "withdraw", "417", -1, "amount", "i:3799", NULL),
        "rejected");
    ASSERT_OK (
        zcq_test_send (fixture->client, NULL, "withdraw", "417", -1, "amount", "i:3798", NULL),
        "account/417", 2 + S_ROUNDS);

    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
    free (seen);
    free (positions);
    free (versions);
}

//  --------------------------------------------------------------------------
//  REQ and ROUTER clients; a client sending garbage does not disturb others

static void
test_clients (void **state)
{
    fixture_t *fixture = *state;
    const char *endpoint = zcq_node_endpoint (fixture->node, ZCQ_ENDPOINT_COMMAND);
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    const zcq_value_t *reply;

    //  REQ: the body as one frame, the reply as one frame
    zsock_t *req = s_keep (fixture, zsock_new (ZMQ_REQ));
    zsock_set_linger (req, 0);
    assert_int_equal (zsock_connect (req, "%s", endpoint), 0);
    s_encode_command (writer, "req-1", "open", "30", 0);
    assert_true (
        zmq_send (zsock_resolve (req), zcq_writer_data (writer), zcq_writer_size (writer), 0) >= 0);
    reply = s_recv_reply (req, doc, S_TIMEOUT);
    ASSERT_OK (reply, "account/30", 1);
    s_assert_id (reply, "req-1");
    assert_int_equal (zmsg_size (s_last_envelope), 0);
    //  an invalid request, then a good one on the same socket
    assert_true (zmq_send (zsock_resolve (req), "\xc1", 1, 0) >= 0);
    ASSERT_ERROR (s_recv_reply (req, doc, S_TIMEOUT), "invalid");
    s_encode_command (writer, "req-2", "deposit", "30", 60);
    assert_true (
        zmq_send (zsock_resolve (req), zcq_writer_data (writer), zcq_writer_size (writer), 0) >= 0);
    ASSERT_OK (s_recv_reply (req, doc, S_TIMEOUT), "account/30", 2);

    //  ROUTER: addresses the node by the routing id it gave it, and may
    //  carry a deeper envelope (as a broker chained before the node would)
    zsock_t *router = s_keep (fixture, zsock_new (ZMQ_ROUTER));
    zsock_set_linger (router, 0);
    zsock_set_connect_rid (router, "node");
    zsock_set_router_mandatory (router, 1);
    assert_int_equal (zsock_connect (router, "%s", endpoint), 0);
    zmq_pollitem_t writable = { zsock_resolve (router), 0, ZMQ_POLLOUT, 0 };
    assert_int_equal (zmq_poll (&writable, 1, S_TIMEOUT), 1);
    s_encode_command (writer, "router-1", "deposit", "30", 40);
    const void *frames[] = { "node", "hop-a", "hop-b", "", zcq_writer_data (writer) };
    size_t sizes[] = { 4, 5, 5, 0, zcq_writer_size (writer) };
    s_send_frames (router, 5, frames, sizes);
    reply = s_recv_reply (router, doc, S_TIMEOUT);
    ASSERT_OK (reply, "account/30", 3);
    s_assert_id (reply, "router-1");
    assert_int_equal (zmsg_size (s_last_envelope), 4);
    assert_true (zframe_streq (zmsg_first (s_last_envelope), "node"));
    assert_true (zframe_streq (zmsg_next (s_last_envelope), "hop-a"));
    assert_true (zframe_streq (zmsg_next (s_last_envelope), "hop-b"));
    assert_int_equal (zframe_size (zmsg_next (s_last_envelope)), 0);
    //  a plain [node][body] request
    s_encode_command (writer, "router-2", "withdraw", "30", 100);
    frames[1] = zcq_writer_data (writer);
    sizes[1] = zcq_writer_size (writer);
    s_send_frames (router, 2, frames, sizes);
    ASSERT_OK (s_recv_reply (router, doc, S_TIMEOUT), "account/30", 4);
    assert_int_equal (zmsg_size (s_last_envelope), 1);

    //  a DEALER sending garbage: every message gets one `invalid` reply
    zsock_t *bad = s_keep (fixture, s_dealer (fixture->node));
    s_encode_command (writer, "bad", "deposit", "30", 1);
    size_t good_size = zcq_writer_size (writer);
    uint8_t *good_body = malloc (good_size + 1);
    assert_non_null (good_body);
    memcpy (good_body, zcq_writer_data (writer), good_size);
    good_body[good_size] = 0xc0;
    const uint8_t no_id[] = { 0x81, 0xa4, 't', 'y', 'p', 'e', 0xa1, 'x' };
    const size_t kinds = 10, rounds = 40;
    for (size_t round = 0; round < rounds; round++)
        for (size_t kind = 0; kind < kinds; kind++) {
            const void *data[3] = { "" };
            size_t lens[3] = { 0 };
            size_t count = 2;
            switch (kind) {
                case 0:
                    data[0] = "garbage";
                    lens[0] = 7;
                    count = 1;
                    break;
                case 1:
                    data[1] = "\xc1";
                    lens[1] = 1;
                    break;
                case 2: count = 1; break; //  one empty frame
                case 3:
                    data[1] = "";
                    lens[1] = 0;
                    break; //  [empty][empty]
                case 4:
                    data[1] = good_body;
                    lens[1] = good_size / 2;
                    break;
                case 5:
                    data[1] = "\x92\x01";
                    lens[1] = 2;
                    break;
                case 6:
                    data[1] = no_id;
                    lens[1] = sizeof no_id;
                    break;
                case 7:
                    data[0] = "a";
                    lens[0] = 1;
                    data[1] = "b";
                    lens[1] = 1;
                    data[2] = good_body;
                    lens[2] = good_size + 1;
                    count = 3;
                    break;
                case 8:
                    data[1] = good_body;
                    lens[1] = good_size + 1;
                    break;
                default:
                    data[1] = "\xa5hello";
                    lens[1] = 6;
                    break;
            }
            s_send_frames (bad, count, data, lens);
        }
    //  meanwhile a well-behaved client goes on
    for (int64_t index = 0; index < 50; index++)
        ASSERT_OK (
            zcq_test_send (fixture->client, NULL, "deposit", "30", -1, "amount", "i:2", NULL),
            "account/30", 5 + index);
    for (size_t count = 0; count < kinds * rounds; count++) {
        reply = s_recv_reply (bad, doc, S_TIMEOUT);
        if (!reply)
            fail_msg ("garbage got only %zu replies of %zu", count, kinds * rounds);
        ASSERT_ERROR (reply, "invalid");
    }
    //  and after the garbage, good requests on the same socket still work
    s_encode_command (writer, "bad-then-good", "deposit", "30", 1);
    s_send_body (bad, zcq_writer_data (writer), zcq_writer_size (writer));
    ASSERT_OK (s_recv_reply (bad, doc, S_TIMEOUT), "account/30", 55);
    assert_int_equal (zcq_node_head (fixture->node), 55);
    //  balance: 60 + 40 - 100 + 50 * 2 + 1
    ASSERT_ERROR (
        zcq_test_send (fixture->client, NULL, "withdraw", "30", -1, "amount", "i:102", NULL),
        "rejected");
    ASSERT_OK (zcq_test_send (fixture->client, NULL, "withdraw", "30", -1, "amount", "i:101", NULL),
               "account/30", 56);

    free (good_body);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Restart: a new node on the same data dir takes over the state

static void
test_restart (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;
    ASSERT_OK (zcq_test_send (client, "r-open", "open", "40", -1, "owner", "s:max", NULL),
               "account/40", 1);
    ASSERT_OK (zcq_test_send (client, "r-open41", "open", "41", -1, "owner", "s:ned", "overdraft",
                              "i:25", NULL),
               "account/41", 1);
    ASSERT_OK (zcq_test_send (client, "r-dep", "deposit", "40", -1, "amount", "i:100", NULL),
               "account/40", 2);
    ASSERT_OK (zcq_test_send (client, "r-wd", "withdraw", "40", -1, "amount", "i:30", NULL),
               "account/40", 3);
    ASSERT_OK (zcq_test_send (client, "r-wd41", "withdraw", "41", -1, "amount", "i:20", NULL),
               "account/41", 2);
    ASSERT_OK (zcq_test_send (client, "r-open42", "open", "42", -1, "owner", "s:oz", NULL),
               "account/42", 1);
    ASSERT_OK (zcq_test_send (client, "r-close42", "close", "42", -1, NULL), "account/42", 2);
    uint64_t head = zcq_node_head (fixture->node);
    assert_int_equal (head, 7);

    s_restart (fixture, NULL, NULL);
    client = fixture->client;
    assert_int_equal (zcq_node_head (fixture->node), head);

    //  balances survive: 70 on account 40, -20 with an overdraft of 25 on 41
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "40", -1, "amount", "i:71", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "41", -1, "amount", "i:6", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "open", "40", -1, "owner", "s:max", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "42", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "40", 2, "amount", "i:1", NULL),
                  "conflict");
    assert_int_equal (zcq_node_head (fixture->node), head);
    //  versions and positions go on
    assert_int_equal (
        ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "40", 3, "amount", "i:70", NULL),
                   "account/40", 4),
        head + 1);
    assert_int_equal (
        ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "41", -1, "amount", "i:5", NULL),
                   "account/41", 3),
        head + 2);
    //  ids from before the restart are duplicates with their first result
    assert_int_equal (ASSERT_DUPLICATE (zcq_test_send (client, "r-dep", "deposit", "40", -1,
                                                       "amount", "i:100", NULL),
                                        "account/40", 2),
                      3);
    assert_int_equal (
        ASSERT_DUPLICATE (zcq_test_send (client, "r-close42", "close", "42", -1, NULL),
                          "account/42", 2),
        7);
    assert_int_equal (zcq_node_head (fixture->node), head + 2);
    ASSERT_OK (zcq_test_send (client, NULL, "close", "40", -1, NULL), "account/40", 5);

    //  and once more, with nothing written in between
    s_restart (fixture, NULL, NULL);
    s_restart (fixture, NULL, NULL);
    client = fixture->client;
    assert_int_equal (zcq_node_head (fixture->node), head + 3);
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "40", -1, "amount", "i:1", NULL),
                  "rejected");
    assert_int_equal (
        ASSERT_OK (zcq_test_send (client, NULL, "deposit", "41", -1, "amount", "i:25", NULL),
                   "account/41", 4),
        head + 4);
    ASSERT_OK (zcq_test_send (client, NULL, "close", "41", -1, NULL), "account/41", 5);
}

//  An aggregate past several snapshots (every 100 events) restarts right.
static void
test_restart_snapshots (void **state)
{
    fixture_t *fixture = *state;
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    ASSERT_OK (zcq_test_send (fixture->client, NULL, "open", "big", -1, "owner", "s:pat",
                              "overdraft", "i:500", NULL),
               "account/big", 1);
    //  250 deposits of 1..250 cents, pipelined: 251 events in all
    const int64_t deposits = 250;
    for (int64_t amount = 1; amount <= deposits; amount++) {
        char id[32];
        snprintf (id, sizeof id, "big-%lld", (long long) amount);
        s_encode_command (writer, id, "deposit", "big", amount);
        s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    for (int64_t count = 0; count < deposits; count++) {
        const zcq_value_t *reply = s_recv_reply (dealer, doc, S_TIMEOUT);
        assert_non_null (reply);
        char id[32];
        zcq_value_get_str (reply, "id", id, sizeof id, "");
        //  applied in the order sent: deposit n makes version n + 1
        ASSERT_OK (reply, "account/big", atoll (id + 4) + 1);
    }
    const int64_t balance = deposits * (deposits + 1) / 2;
    const zcq_value_t *stats = zcq_test_query (fixture->client, "op", "s:stats", NULL);
    assert_string_equal (zcq_test_code (stats), "ok");
    assert_int_equal (zcq_value_get_int (zcq_value_get (stats, "stats"), "snapshots_written", -1),
                      2);

    s_restart (fixture, NULL, NULL);
    zcq_client_t *client = fixture->client;
    assert_int_equal (zcq_node_head (fixture->node), 251);
    char amount[32];
    snprintf (amount, sizeof amount, "i:%lld", (long long) (balance + 500 + 1));
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "big", -1, "amount", amount, NULL),
                  "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "close", "big", -1, NULL), "rejected");
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "big", 250, "amount", "i:1", NULL),
                  "conflict");
    //  the last deposit before the restart is still a duplicate
    ASSERT_DUPLICATE (
        zcq_test_send (client, "big-250", "deposit", "big", -1, "amount", "i:250", NULL),
        "account/big", 251);
    snprintf (amount, sizeof amount, "i:%lld", (long long) (balance + 500));
    assert_int_equal (
        ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "big", 251, "amount", amount, NULL),
                   "account/big", 252),
        252);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "big", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "big", -1, "amount", "i:500", NULL),
               "account/big", 253);
    ASSERT_OK (zcq_test_send (client, NULL, "close", "big", -1, NULL), "account/big", 254);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  max-inflight: past the bound, commands get `unavailable` at once

static void
test_max_inflight (void **state)
{
    fixture_t *fixture = *state;
    s_restart (fixture, "max-inflight", "16");
    zsock_t *dealer = s_keep (fixture, s_dealer (fixture->node));
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    const size_t total = 2000;
    for (size_t index = 0; index < total; index++) {
        char id[32], key[32];
        snprintf (id, sizeof id, "m-%zu", index);
        snprintf (key, sizeof key, "m%zu", index);
        s_encode_command (writer, id, "open", key, 0);
        s_send_body (dealer, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    size_t accepted = 0, unavailable = 0;
    char refused_id[32] = "", refused_key[32] = "";
    for (size_t count = 0; count < total; count++) {
        const zcq_value_t *reply = s_recv_reply (dealer, doc, S_TIMEOUT);
        assert_non_null (reply);
        if (strcmp (zcq_test_code (reply), "ok") == 0)
            accepted++;
        else {
            ASSERT_ERROR (reply, "unavailable");
            unavailable++;
            zcq_value_get_str (reply, "id", refused_id, sizeof refused_id, "");
        }
    }
    printf ("max-inflight 16: %zu of %zu pipelined commands accepted, %zu unavailable\n", accepted,
            total, unavailable);
    assert_true (accepted >= 16);
    assert_true (unavailable > 0);
    assert_int_equal (zcq_node_head (fixture->node), accepted);
    //  an unavailable command was not applied nor remembered: retry it
    char refused_stream[48];
    snprintf (refused_key, sizeof refused_key, "m%s", refused_id + 2);
    snprintf (refused_stream, sizeof refused_stream, "account/%s", refused_key);
    ASSERT_OK (
        zcq_test_send (fixture->client, refused_id, "open", refused_key, 0, "owner", "s:q", NULL),
        refused_stream, 1);
    assert_int_equal (zcq_node_head (fixture->node), accepted + 1);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  max-inflight-per-client: one client's flood is `unavailable` for that
//  client alone; another client is served beside it
static void
test_max_inflight_per_client (void **state)
{
    fixture_t *fixture = *state;
    s_restart (fixture, "max-inflight-per-client", "16");
    zsock_t *flood = s_keep (fixture, s_dealer (fixture->node));
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    const size_t total = 5000;
    //  one account, one id repeated, then fresh ids: everything waits
    //  behind everything else, in this client's share
    for (size_t index = 0; index < total; index++) {
        char id[32];
        if (index == 0)
            snprintf (id, sizeof id, "open-hot");
        else if (index < total / 2)
            snprintf (id, sizeof id, "same");
        else
            snprintf (id, sizeof id, "f-%zu", index);
        s_encode_command (writer, id, index ? "deposit" : "open", "hot", 1);
        s_send_body (flood, zcq_writer_data (writer), zcq_writer_size (writer));
    }
    //  the other client, while the flood is being read
    ASSERT_OK (
        zcq_test_send (fixture->client, "other-1", "open", "other", -1, "owner", "s:o", NULL),
        "account/other", 1);
    size_t accepted = 0, unavailable = 0;
    for (size_t count = 0; count < total; count++) {
        const zcq_value_t *reply = s_recv_reply (flood, doc, S_TIMEOUT);
        assert_non_null (reply);
        if (strcmp (zcq_test_code (reply), "ok") == 0)
            accepted++;
        else {
            ASSERT_ERROR (reply, "unavailable");
            char reason[32];
            zcq_value_get_str (reply, "reason", reason, sizeof reason, "");
            assert_string_equal (reason, "overloaded");
            unavailable++;
        }
    }
    printf ("max-inflight-per-client 16: %zu of %zu accepted, %zu unavailable\n", accepted, total,
            unavailable);
    assert_true (accepted >= 16);
    assert_true (unavailable > 0);
    ASSERT_OK (
        zcq_test_send (fixture->client, "other-2", "deposit", "other", -1, "amount", "i:5", NULL),
        "account/other", 2);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  durability fsync: the same walk-through

static void
test_fsync (void **state)
{
    fixture_t *fixture = *state;
    s_restart (fixture, "durability", "fsync");
    zcq_client_t *client = fixture->client;
    const zcq_value_t *health = zcq_test_query (client, "op", "s:health", NULL);
    char text[16];
    assert_string_equal (zcq_value_get_str (health, "durability", text, sizeof text, ""), "fsync");
    ASSERT_OK (zcq_test_send (client, "f-open", "open", "50", 0, "owner", "s:rae", NULL),
               "account/50", 1);
    ASSERT_OK (zcq_test_send (client, "f-dep", "deposit", "50", 1, "amount", "i:75", NULL),
               "account/50", 2);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "50", -1, "amount", "i:76", NULL),
                  "rejected");
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "50", -1, "amount", "i:75", NULL),
               "account/50", 3);
    ASSERT_DUPLICATE (zcq_test_send (client, "f-dep", "deposit", "50", -1, "amount", "i:75", NULL),
                      "account/50", 2);
    assert_int_equal (zcq_node_head (fixture->node), 3);
    s_restart (fixture, "durability", "fsync");
    assert_int_equal (zcq_node_head (fixture->node), 3);
    ASSERT_OK (zcq_test_send (fixture->client, NULL, "close", "50", 3, NULL), "account/50", 4);
}

//  --------------------------------------------------------------------------
//  A node that cannot start says why, and leaves nothing behind

static void
test_start_failure (void **state)
{
    char *dir = s_test_dir ("start-failure");
    char *file = NULL, *data = NULL;
    assert_true (asprintf (&file, "%s/file", dir) > 0);
    assert_true (asprintf (&data, "%s/file/data", dir) > 0);
    FILE *handle = fopen (file, "w");
    assert_non_null (handle);
    fputs ("not a directory\n", handle);
    fclose (handle);

    zcq_config_t *config = zcq_config_new ();
    zcq_config_set (config, "data", data, NULL, 0);
    zcq_config_set (config, "command", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "events", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "query", "tcp://127.0.0.1:*", NULL, 0);
    char error[256] = "";
    zcq_node_t *node = NULL;
    assert_int_not_equal (zcq_node_start (&node, config, zcq_bank_domain (), error, sizeof error),
                          ZCQ_OK);
    assert_null (node);
    assert_true (strlen (error) > 0);
    //  no error buffer at all is fine too
    assert_int_not_equal (zcq_node_start (&node, config, zcq_bank_domain (), NULL, 0), ZCQ_OK);
    assert_null (node);

    //  an endpoint that cannot be bound: the store is closed again, so the
    //  next node can open the same data dir
    char *good = NULL;
    assert_true (asprintf (&good, "%s/data", dir) > 0);
    zcq_config_set (config, "data", good, NULL, 0);
    assert_int_equal (zcq_config_set (config, "command", "ipc:///nonexistent-zcq-dir/a/b.ipc",
                                      error, sizeof error),
                      ZCQ_OK);
    error[0] = 0;
    assert_int_not_equal (zcq_node_start (&node, config, zcq_bank_domain (), error, sizeof error),
                          ZCQ_OK);
    assert_null (node);
    assert_true (strlen (error) > 0);
    zcq_config_set (config, "command", "tcp://127.0.0.1:*", NULL, 0);
    if (zcq_node_start (&node, config, zcq_bank_domain (), error, sizeof error) != ZCQ_OK)
        fail_msg ("node did not start after a failed start: %s", error);
    zcq_node_destroy (&node);

    zcq_config_destroy (&config);
    free (good);
    free (data);
    free (file);
    zcq_test_rmdir (&dir);
}

//  --------------------------------------------------------------------------
//  The data dir: owner-only, one node at a time whatever the path, and
//  never a directory that holds something else

static zcq_err_t
s_start_on (const char *data, zcq_node_t **node, char *error, size_t size)
{
    zcq_config_t *config = zcq_config_new ();
    zcq_config_set (config, "data", data, NULL, 0);
    zcq_config_set (config, "command", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "events", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "query", "tcp://127.0.0.1:*", NULL, 0);
    error[0] = 0;
    zcq_err_t err = zcq_node_start (node, config, zcq_bank_domain (), error, size);
    zcq_config_destroy (&config);
    return err;
}

static void
test_data_dir (void **state)
{
    char *dir = s_test_dir ("data-dir");
    char *data = NULL, *link = NULL, *foreign = NULL, *note = NULL;
    assert_true (asprintf (&data, "%s/new/data", dir) > 0);
    assert_true (asprintf (&link, "%s/link", dir) > 0);
    assert_true (asprintf (&foreign, "%s/home", dir) > 0);
    assert_true (asprintf (&note, "%s/home/notes.txt", dir) > 0);
    char error[512];

    //  made owner-only
    zcq_node_t *node = NULL;
    if (s_start_on (data, &node, error, sizeof error) != ZCQ_OK)
        fail_msg ("node did not start: %s", error);
    struct stat info;
    assert_int_equal (stat (data, &info), 0);
    assert_int_equal (info.st_mode & 0777, 0700);

    //  a second node on the same dir, through a symlink, is refused: the
    //  lock is the directory's, not the path's
    assert_int_equal (symlink (data, link), 0);
    zcq_node_t *second = NULL;
    assert_int_equal (s_start_on (link, &second, error, sizeof error), ZCQ_UNAVAILABLE);
    assert_null (second);
    assert_non_null (strstr (error, "in use"));
    assert_int_equal (s_start_on (data, &second, error, sizeof error), ZCQ_UNAVAILABLE);
    zcq_node_destroy (&node);
    //  free again once the first stopped
    if (s_start_on (link, &second, error, sizeof error) != ZCQ_OK)
        fail_msg ("node did not start after the first stopped: %s", error);
    zcq_node_destroy (&second);

    //  a directory that holds other things is not made a store
    assert_int_equal (zsys_dir_create ("%s", foreign), 0);
    FILE *file = fopen (note, "w");
    assert_non_null (file);
    fputs ("keep me\n", file);
    fclose (file);
    assert_int_equal (s_start_on (foreign, &node, error, sizeof error), ZCQ_INVALID);
    assert_null (node);
    assert_non_null (strstr (error, "notes.txt"));
    assert_int_equal (access (note, F_OK), 0);
    char *current = NULL;
    assert_true (asprintf (&current, "%s/CURRENT", foreign) > 0);
    assert_int_not_equal (access (current, F_OK), 0);

    free (current);
    free (note);
    free (foreign);
    free (link);
    free (data);
    zcq_test_rmdir (&dir);
}

//  --------------------------------------------------------------------------
//  Extreme amounts: the overdraft rule and the totals at the int64 limits

static void
test_withdraw_huge_overdraft (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;
    //  balance 0, overdraft INT64_MAX: all of it, not a cent more
    ASSERT_OK (zcq_test_send (client, NULL, "open", "h1", -1, "owner", "s:gus", "overdraft",
                              "i:9223372036854775807", NULL),
               "account/h1", 1);
    ASSERT_OK (
        zcq_test_send (client, NULL, "withdraw", "h1", -1, "amount", "i:9223372036854775807", NULL),
        "account/h1", 2);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "h1", -1, "amount", "i:1", NULL),
                  "rejected");
    ASSERT_OK (
        zcq_test_send (client, NULL, "deposit", "h1", -1, "amount", "i:9223372036854775807", NULL),
        "account/h1", 3);
    //  a positive balance with overdraft INT64_MAX: 5 - 1 >= -INT64_MAX
    ASSERT_OK (zcq_test_send (client, NULL, "open", "h2", -1, "owner", "s:hub", "overdraft",
                              "i:9223372036854775807", NULL),
               "account/h2", 1);
    ASSERT_OK (zcq_test_send (client, NULL, "deposit", "h2", -1, "amount", "i:5", NULL),
               "account/h2", 2);
    ASSERT_OK (zcq_test_send (client, NULL, "withdraw", "h2", -1, "amount", "i:1", NULL),
               "account/h2", 3);
    ASSERT_OK (
        zcq_test_send (client, NULL, "withdraw", "h2", -1, "amount", "i:9223372036854775807", NULL),
        "account/h2", 4);
    ASSERT_ERROR (zcq_test_send (client, NULL, "withdraw", "h2", -1, "amount", "i:5", NULL),
                  "rejected");
}

//  Balances whose sum leaves int64: the node and its views go on.
static void
test_totals_overflow (void **state)
{
    fixture_t *fixture = *state;
    zcq_client_t *client = fixture->client;
    ASSERT_OK (zcq_test_send (client, NULL, "open", "t1", -1, "owner", "s:ida", NULL), "account/t1",
               1);
    ASSERT_OK (zcq_test_send (client, NULL, "open", "t2", -1, "owner", "s:jan", NULL), "account/t2",
               1);
    ASSERT_OK (
        zcq_test_send (client, NULL, "deposit", "t1", -1, "amount", "i:9223372036854775807", NULL),
        "account/t1", 2);
    //  the deposit rule keeps each balance in range
    ASSERT_ERROR (zcq_test_send (client, NULL, "deposit", "t1", -1, "amount", "i:1", NULL),
                  "rejected");
    uint64_t position = ASSERT_OK (
        zcq_test_send (client, NULL, "deposit", "t2", -1, "amount", "i:9223372036854775807", NULL),
        "account/t2", 2);
    //  every row is right once the views have applied the last deposit
    const zcq_value_t *row = s_get_row (client, "accounts", "t2", position);
    assert_non_null (row);
    assert_int_equal (zcq_value_get_int (row, "balance", -1), INT64_MAX);
    row = s_get_row (client, "accounts", "t1", position);
    assert_int_equal (zcq_value_get_int (row, "balance", -1), INT64_MAX);
    //  the totals change that would overflow is refused whole (and logged),
    //  so the row stays as it was after the third event
    row = s_get_row (client, "totals", "bank", position);
    assert_non_null (row);
    assert_int_equal (zcq_value_get_int (row, "events", -1), 3);
    assert_int_equal (zcq_value_get_int (row, "balance", -1), INT64_MAX);
    //  and the write side goes on
    ASSERT_OK (
        zcq_test_send (client, NULL, "withdraw", "t1", -1, "amount", "i:9223372036854775807", NULL),
        "account/t1", 3);
    ASSERT_OK (zcq_test_send (client, NULL, "close", "t1", -1, NULL), "account/t1", 4);
}

int
main (void)
{
    setvbuf (stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_walkthrough),
        cmocka_unit_test_setup_teardown (test_open, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_deposit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_withdraw, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_close, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_request_validation, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_request_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_expect, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_duplicates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_duplicates_across_streams, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_pipelined, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_clients, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_restart, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_restart_snapshots, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_max_inflight, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_max_inflight_per_client, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_fsync, s_setup, s_teardown),
        cmocka_unit_test (test_start_failure),
        cmocka_unit_test (test_data_dir),
        //  last: these hit undefined behaviour that a UBSan build aborts on
        cmocka_unit_test_setup_teardown (test_withdraw_huge_overdraft, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_totals_overflow, s_setup, s_teardown),
    };
    //  ZCQ_TEST_FILTER=test_restart* runs some tests, ZCQ_TEST_SKIP=... skips some
    if (getenv ("ZCQ_TEST_FILTER"))
        cmocka_set_test_filter (getenv ("ZCQ_TEST_FILTER"));
    if (getenv ("ZCQ_TEST_SKIP"))
        cmocka_set_skip_filter (getenv ("ZCQ_TEST_SKIP"));
    return cmocka_run_group_tests (tests, NULL, NULL);
}
