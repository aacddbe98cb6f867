/*  testutil.c: helpers shared by the tests. */
#include "testutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
zcq_test_dir (const char *name)
{
    const char *base = getenv ("ZCQ_TEST_TMP");
    char *path = NULL;
    zuuid_t *uuid = zuuid_new ();
    int rc = asprintf (&path, "%s/%s-%d-%s", base ? base : "/tmp", name, (int) getpid (),
                       zuuid_str (uuid));
    zuuid_destroy (&uuid);
    if (rc < 0)
        return NULL;
    zsys_dir_create ("%s", path);
    return path;
}

void
zcq_test_rmdir (char **path_p)
{
    if (!path_p || !*path_p)
        return;
    zdir_t *dir = zdir_new (*path_p, NULL);
    if (dir) {
        zdir_remove (dir, true);
        zdir_destroy (&dir);
    }
    free (*path_p);
    *path_p = NULL;
}

zcq_store_t *
zcq_test_store (const char *dir)
{
    zcq_store_options_t options;
    zcq_store_options_init (&options);
    char error[256];
    zcq_store_t *store = NULL;
    if (zcq_store_open (&store, dir, &options, error, sizeof error) != ZCQ_OK)
        fail_msg ("store did not open: %s", error);
    return store;
}

//  The settings of every test node: dir, loopback ports the system picks,
//  the write plan of ZCQ_TEST_WRITE_PLAN.
static zcq_config_t *
s_test_config (const char *dir)
{
    zcq_config_t *config = zcq_config_new ();
    zcq_config_set (config, "data", dir, NULL, 0);
    zcq_config_set (config, "command", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "events", "tcp://127.0.0.1:*", NULL, 0);
    zcq_config_set (config, "query", "tcp://127.0.0.1:*", NULL, 0);
    //  the suite runs once per write plan (tests/CMakeLists.txt)
    const char *plan = getenv ("ZCQ_TEST_WRITE_PLAN");
    if (plan && zcq_config_set (config, "write-plan", plan, NULL, 0) != ZCQ_OK)
        fail_msg ("ZCQ_TEST_WRITE_PLAN: '%s' is not a write plan", plan);
    return config;
}

zcq_node_t *
zcq_test_node (const char *dir, ...)
{
    zcq_config_t *config = s_test_config (dir);
    va_list args;
    va_start (args, dir);
    const char *name;
    char error[256];
    while ((name = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        if (zcq_config_set (config, name, value, error, sizeof error) != ZCQ_OK)
            fail_msg ("setting %s: %s", name, error);
    }
    va_end (args);
    zcq_node_t *node = NULL;
    if (zcq_node_start (&node, config, zcq_bank_domain (), error, sizeof error) != ZCQ_OK)
        fail_msg ("node did not start: %s", error);
    zcq_config_destroy (&config);
    return node;
}

zcq_test_rig_t *
zcq_test_rig_new (const char *name)
{
    zcq_test_rig_t *self = calloc (1, sizeof (zcq_test_rig_t));
    assert_non_null (self);
    self->dir = zcq_test_dir (name);
    self->writer = zcq_writer_new ();
    assert_non_null (self->writer);
    return self;
}

void
zcq_test_rig_destroy (zcq_test_rig_t **self_p)
{
    zcq_test_rig_t *self = *self_p;
    if (!self)
        return;
    zcq_test_rig_stop (self);
    zcq_writer_destroy (&self->writer);
    zcq_test_rmdir (&self->dir);
    free (self);
    *self_p = NULL;
}

zcq_err_t
zcq_test_rig_start (zcq_test_rig_t *self, const zcq_domain_t *domain, char *error, size_t size)
{
    char reason[256] = "";
    zcq_config_t *config = s_test_config (self->dir);
    zcq_err_t err = zcq_node_start (&self->node, config, domain, reason, sizeof reason);
    zcq_config_destroy (&config);
    if (error && size)
        snprintf (error, size, "%s", reason);
    if (err != ZCQ_OK) {
        if (!error)
            print_message ("the node did not start: %s\n", reason);
        return err;
    }
    self->client = zcq_client_new (zcq_node_endpoint (self->node, ZCQ_ENDPOINT_COMMAND),
                                   zcq_node_endpoint (self->node, ZCQ_ENDPOINT_QUERY));
    assert_non_null (self->client);
    return ZCQ_OK;
}

void
zcq_test_rig_stop (zcq_test_rig_t *self)
{
    zcq_client_destroy (&self->client);
    zcq_node_destroy (&self->node);
}

const zcq_value_t *
zcq_test_rig_vsend (zcq_test_rig_t *self, const char *id, const char *aggregate, const char *key,
                    const char *type, va_list args)
{
    zcq_writer_reset (self->writer);
    zcq_test_write_map (self->writer, args);
    zcq_command_req_t command = {
        .id = id,
        .aggregate = aggregate,
        .key = key,
        .type = type,
        .data = zcq_writer_data (self->writer),
        .data_len = zcq_writer_size (self->writer),
    };
    const zcq_value_t *reply = NULL;
    if (zcq_client_command (self->client, &command, 10000, &reply) != ZCQ_OK)
        fail_msg ("no reply to command %s", id);
    return reply;
}

const zcq_value_t *
zcq_test_rig_send (zcq_test_rig_t *self, const char *id, const char *aggregate, const char *key,
                   const char *type, ...)
{
    va_list args;
    va_start (args, type);
    const zcq_value_t *reply = zcq_test_rig_vsend (self, id, aggregate, key, type, args);
    va_end (args);
    return reply;
}

const zcq_value_t *
zcq_test_rig_row (zcq_test_rig_t *self, const char *view, const char *key, int64_t min_position)
{
    char view_arg[80], key_arg[80], position_arg[32];
    snprintf (view_arg, sizeof view_arg, "s:%s", view);
    snprintf (key_arg, sizeof key_arg, "s:%s", key);
    snprintf (position_arg, sizeof position_arg, "i:%lld", (long long) min_position);
    const zcq_value_t *reply
        = min_position > 0
            ? zcq_test_query (self->client, "op", "s:get", "view", view_arg, "key", key_arg,
                              "min_position", position_arg, NULL)
            : zcq_test_query (self->client, "op", "s:get", "view", view_arg, "key", key_arg, NULL);
    assert_string_equal (zcq_test_code (reply), "ok");
    const zcq_value_t *row = zcq_value_get (reply, "row");
    return zcq_value_type (row) == ZCQ_TYPE_MAP ? row : NULL;
}

const char *
zcq_test_message (const zcq_value_t *reply)
{
    static char message[512];
    return zcq_value_get_str (reply, "message", message, sizeof message, "");
}

//  One typed value, in the forms testutil.h lists.
void
zcq_test_write_typed (zcq_writer_t *writer, const char *value)
{
    if (strncmp (value, "i:", 2) == 0)
        zcq_writer_int (writer, atoll (value + 2));
    else if (strncmp (value, "f:", 2) == 0)
        zcq_writer_float (writer, atof (value + 2));
    else if (strncmp (value, "b:", 2) == 0)
        zcq_writer_bool (writer, strcmp (value + 2, "true") == 0);
    else if (strncmp (value, "n:", 2) == 0)
        zcq_writer_nil (writer);
    else if (strncmp (value, "s:", 2) == 0)
        zcq_writer_str (writer, value + 2);
    else if (strncmp (value, "x:", 2) == 0) {
        size_t len = (size_t) atol (value + 2);
        char *text = malloc (len + 1);
        assert_non_null (text);
        memset (text, 'k', len);
        zcq_writer_strn (writer, text, len);
        free (text);
    }
    else if (strncmp (value, "B:", 2) == 0) {
        size_t len = (size_t) atol (value + 2);
        char *bytes = calloc (1, len + 1);
        assert_non_null (bytes);
        zcq_writer_bin (writer, bytes, len);
        free (bytes);
    }
    else if (strncmp (value, "D:", 2) == 0) {
        for (int depth = atoi (value + 2); depth > 0; depth--)
            zcq_writer_array (writer, 1);
        zcq_writer_int (writer, 1);
    }
    else if (strncmp (value, "a:", 2) == 0)
        zcq_writer_array (writer, 0);
    else if (strncmp (value, "m:", 2) == 0) {
        zcq_writer_map (writer, 1);
        zcq_writer_str (writer, "amount");
        zcq_writer_int (writer, 100);
    }
    else
        fail_msg ("test value '%s' has no type prefix", value);
}

void
zcq_test_write_map (zcq_writer_t *writer, va_list args)
{
    size_t mark = zcq_writer_map_open (writer);
    size_t count = 0;
    const char *name;
    while ((name = va_arg (args, const char *))) {
        zcq_writer_str (writer, name);
        zcq_test_write_typed (writer, va_arg (args, const char *));
        count++;
    }
    zcq_writer_map_close (writer, mark, count);
}

const zcq_value_t *
zcq_test_send (zcq_client_t *client, const char *id, const char *type, const char *key,
               int64_t expect, ...)
{
    zcq_writer_t *data = zcq_writer_new ();
    va_list args;
    va_start (args, expect);
    zcq_test_write_map (data, args);
    va_end (args);
    zcq_command_req_t command = {
        .id = id,
        .aggregate = "account",
        .key = key,
        .type = type,
        .expect = expect < 0 ? 0 : ZCQ_EXPECT (expect),
        .data = zcq_writer_data (data),
        .data_len = zcq_writer_size (data),
    };
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_command (client, &command, 10000, &reply);
    zcq_writer_destroy (&data);
    if (err != ZCQ_OK)
        fail_msg ("no reply to command %s", id ? id : "(fresh id)");
    return reply;
}

const zcq_value_t *
zcq_test_query (zcq_client_t *client, ...)
{
    zcq_writer_t *body = zcq_writer_new ();
    va_list args;
    va_start (args, client);
    zcq_test_write_map (body, args);
    va_end (args);
    const zcq_value_t *reply = NULL;
    zcq_err_t err = zcq_client_call (client, ZCQ_ENDPOINT_QUERY, zcq_writer_data (body),
                                     zcq_writer_size (body), 10000, &reply);
    zcq_writer_destroy (&body);
    if (err != ZCQ_OK)
        fail_msg ("no reply to a query");
    return reply;
}

const char *
zcq_test_code (const zcq_value_t *reply)
{
    static char code[32];
    bool ok = false;
    zcq_value_bool (zcq_value_get (reply, "ok"), &ok);
    if (ok)
        return "ok";
    return zcq_value_get_str (reply, "error", code, sizeof code, "?");
}

uint64_t
zcq_test_next (uint64_t *seed)
{
    uint64_t x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    return x;
}

static int
s_count_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    (*(uint64_t *) arg)++;
    return 0;
}

uint64_t
zcq_test_log_events (zcq_store_t *store)
{
    uint64_t count = 0;
    assert_int_equal (zcq_store_read_log (store, 1, 0, s_count_event, &count), ZCQ_OK);
    return count;
}
