/*  zcq_client.h: a small synchronous ZCQ/1 client.

    One DEALER to the command endpoint and one to the query endpoint. Used
    by the CLI, the tests and the benchmark; any other language uses the
    protocol directly.

        zcq_client_t *client = zcq_client_new ("tcp://127.0.0.1:7400", "tcp://127.0.0.1:7402");
        zcq_writer_t *data = zcq_writer_new ();
        zcq_writer_map (data, 1);
        zcq_writer_str (data, "amount");
        zcq_writer_int (data, 100);
        zcq_command_req_t command = { .aggregate = "account", .key = "42", .type = "deposit",
                                      .data = zcq_writer_data (data),
                                      .data_len = zcq_writer_size (data) };
        const zcq_value_t *reply;
        if (zcq_client_command (client, &command, 5000, &reply) == ZCQ_OK
            && zcq_reply_status (reply) == ZCQ_OK)
            printf ("at version %lld\n", (long long) zcq_value_get_int (reply, "version", 0));
        zcq_writer_destroy (&data);
        zcq_client_destroy (&client);

    A request zeroed but for the fields it needs has no expectation: set
    .expect = ZCQ_EXPECT_NEW for "the stream must not exist yet", or
    ZCQ_EXPECT (version) for "the stream is at version".
*/
#ifndef ZCQ_CLIENT_H_INCLUDED
#define ZCQ_CLIENT_H_INCLUDED

#include "zcq_node.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_client_t zcq_client_t;

//  zcq_command_req_t.expect: 0 (zero-initialised) sends no `expect`;
//  ZCQ_EXPECT_NEW: the stream must not exist yet (`expect: 0` on the
//  wire); n > 0: the stream is at version n (`expect: n`). ZCQ_EXPECT
//  (version) maps a version to these: ZCQ_EXPECT (0) is ZCQ_EXPECT_NEW.
#define ZCQ_EXPECT_NEW      ((int64_t) -1)
#define ZCQ_EXPECT(version) ((version) == 0 ? ZCQ_EXPECT_NEW : (int64_t) (version))

typedef struct {
    const char *id; //  NULL = a fresh unique id
    const char *aggregate;
    const char *key;
    const char *type;
    int64_t expect;   //  0 = none; ZCQ_EXPECT_NEW, or a version > 0
                      //  (below -1: sent as is, refused `invalid`)
    const void *data; //  encoded MessagePack value, or NULL
    size_t data_len;
    const void *meta; //  encoded MessagePack map, or NULL
    size_t meta_len;
} zcq_command_req_t;

//  Connect to either endpoint (NULL to skip one). NULL on failure.
ZCQ_EXPORT zcq_client_t *zcq_client_new (const char *command_endpoint, const char *query_endpoint);
//  A client of a cluster (cluster.md): queries go to query_endpoint (any
//  node's); each command goes straight to its group's leader, found in the
//  slot map read with the `cluster` op, read again when a reply or a
//  missing one says it is stale. A command is sent at most 4 times, always
//  with the same id. zcq_client_command then returns the last reply (ZCQ_OK
//  with an `unavailable` reply, say), or ZCQ_TIMEOUT / ZCQ_UNAVAILABLE
//  when none came.
ZCQ_EXPORT zcq_client_t *zcq_client_new_cluster (const char *query_endpoint);
ZCQ_EXPORT void zcq_client_destroy (zcq_client_t **self_p);
//  Send one encoded request to an endpoint and wait up to timeout_ms for
//  its reply. *reply lives until the next call on this client. Returns
//  ZCQ_OK when a reply arrived (whatever it says), ZCQ_TIMEOUT otherwise.
ZCQ_EXPORT zcq_err_t zcq_client_call (zcq_client_t *self, zcq_endpoint_t endpoint, const void *body,
                                      size_t len, int timeout_ms, const zcq_value_t **reply);
//  Encode and send a command, wait for the reply.
ZCQ_EXPORT zcq_err_t zcq_client_command (zcq_client_t *self, const zcq_command_req_t *command,
                                         int timeout_ms, const zcq_value_t **reply);
//  Encode a command request map into writer (appended).
ZCQ_EXPORT void zcq_command_encode (zcq_writer_t *writer, const zcq_command_req_t *command);
//  Write a fresh unique command id (at least 33 bytes) into buffer.
ZCQ_EXPORT void zcq_command_id (char *buffer, size_t size);
//  The reply's error code as zcq_err_t: ZCQ_OK when `ok` is true.
ZCQ_EXPORT zcq_err_t zcq_reply_status (const zcq_value_t *reply);

#ifdef __cplusplus
}
#endif
#endif
