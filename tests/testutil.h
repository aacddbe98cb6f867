/*  testutil.h: what the tests share: temporary data dirs, a node on
    ephemeral loopback ports, and request builders. */
#ifndef ZCQ_TESTUTIL_H_INCLUDED
#define ZCQ_TESTUTIL_H_INCLUDED

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <czmq.h>
#include <zcqrs.h>
#include "bank.h"

//  A fresh empty directory for one test (removed by zcq_test_rmdir).
char *zcq_test_dir (const char *name);
void zcq_test_rmdir (char **path_p);

//  Open a store in dir with the default options (a failed open fails the
//  test).
zcq_store_t *zcq_test_store (const char *dir);

//  Start a bank node on tcp://127.0.0.1:* in dir, with extra settings as
//  name, value pairs ending with NULL. ZCQ_TEST_WRITE_PLAN, when set,
//  gives its write plan.
zcq_node_t *zcq_test_node (const char *dir, ...);

//  A node of any domain in a fresh test directory, with a client to it.
typedef struct {
    char *dir;
    zcq_node_t *node;     //  NULL while stopped
    zcq_client_t *client; //  to node
    zcq_writer_t *writer; //  scratch for requests
} zcq_test_rig_t;
zcq_test_rig_t *zcq_test_rig_new (const char *name);
//  Stops the node, removes the directory.
void zcq_test_rig_destroy (zcq_test_rig_t **self_p);
//  Start a node of domain on the directory (as zcq_test_node does); the
//  reason of a failure goes to error, or is printed when error is NULL.
zcq_err_t zcq_test_rig_start (zcq_test_rig_t *self, const zcq_domain_t *domain, char *error,
                              size_t size);
void zcq_test_rig_stop (zcq_test_rig_t *self);
//  Send a command whose data is name, typed-value pairs ending with NULL;
//  the reply, valid until the next call on the client (no reply fails).
const zcq_value_t *zcq_test_rig_send (zcq_test_rig_t *self, const char *id, const char *aggregate,
                                      const char *key, const char *type, ...);
const zcq_value_t *zcq_test_rig_vsend (zcq_test_rig_t *self, const char *id, const char *aggregate,
                                       const char *key, const char *type, va_list args);
//  A row of a view once it has applied min_position (0: as it is), or
//  NULL when there is none.
const zcq_value_t *zcq_test_rig_row (zcq_test_rig_t *self, const char *view, const char *key,
                                     int64_t min_position);
//  The message of a reply ("" when none).
const char *zcq_test_message (const zcq_value_t *reply);

//  Typed values on the test command lines are strings: "s:text",
//  "i:123", "b:true", "n:" (nil), "f:1.5" (float), "x:N" (a string of N
//  bytes), "B:N" (N bytes of bin), "D:N" (N nested arrays), "a:" (an empty
//  array), "m:" (the map {amount: 100}).
void zcq_test_write_typed (zcq_writer_t *writer, const char *value);
//  Write name, typed-value pairs (ending with NULL) as one map.
void zcq_test_write_map (zcq_writer_t *writer, va_list args);

//  Send a bank command (aggregate `account`) whose data map is given as
//  name, typed-value pairs ending with NULL; expect < 0 = absent. Returns
//  the reply, valid until the next call on the client.
//  zcq_test_send (client, "id1", "open", "42", -1, "owner", "s:ann", NULL)
const zcq_value_t *zcq_test_send (zcq_client_t *client, const char *id, const char *type,
                                  const char *key, int64_t expect, ...);
//  Send a query map built from name, typed-value pairs ending with NULL:
//  zcq_test_query (client, "op", "s:get", "view", "s:accounts", NULL)
const zcq_value_t *zcq_test_query (zcq_client_t *client, ...);
//  The reply's error code as a string ("ok" for success).
const char *zcq_test_code (const zcq_value_t *reply);
//  The next number of a xorshift sequence (seed must not be 0): seeded,
//  repeatable randomness for the tests.
uint64_t zcq_test_next (uint64_t *seed);
//  How many events the store's log holds, whatever their size.
uint64_t zcq_test_log_events (zcq_store_t *store);

#endif
