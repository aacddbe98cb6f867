/*  retention.c: applies the retention of the aggregate types that have one
    (zcq_aggregate_def_t max_count, max_age_s), every retention-interval-ms
    and on demand (zcq_node_retain).

    DESIGN
    1.  A pass lists the streams of each aggregate type with a retention
        (zcq_store_each_stream: the stream index in RocksDB; a stream whose
        first events are still in the index's recent part is found by a
        later pass), and works out for each the first version to keep:
        - max_count: the last max_count events, not counting a trailing
          `$truncated` (so a stream truncated by the last pass is left as
          it is: a pass is idempotent);
        - max_age_s: the first event not older than max_age_s (by its
          commit time); every event when all are older.
        A stream deleted ($deleted last) is left alone.
    2.  Where that is above the stream's first kept version, the pass
        sends `$truncate` {before} on the node's own command endpoint, as
        any client would: the shard decides it (with the stream's other
        commands, in order), the writer removes the events and appends
        `$truncated` in one commit, and views and subscribers are told by
        that event, in log order. Nothing is removed behind their back,
        which a RocksDB compaction filter would do. The command id is
        derived from the stream and `before`, so a pass repeated (after a
        crash, say) is answered as a duplicate.
    3.  A truncation refused `unavailable` (the stream had commands being
        committed) is left to the next pass.
*/
#include "zcq_actors.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    zsock_t *pipe;
    const zcq_node_env_t *env;
    zcq_client_t *client;
    zcq_doc_t *doc;
    zcq_writer_t *writer;
    zhashx_t *streams; //  names found by the current listing (a set)
    bool terminated;
} self_t;

static int
s_collect_stream (void *arg, const char *stream, size_t len)
{
    zhashx_t *streams = arg;
    char name[ZCQ_STREAM_MAX + 1];
    memcpy (name, stream, len);
    name[len] = 0;
    zhashx_insert (streams, name, (void *) 1);
    return 0;
}

//  The last event's type, into type.
typedef struct {
    self_t *self;
    char type[ZCQ_TYPE_MAX + 1];
} s_last_t;

static int
s_last_type (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    (void) position;
    (void) version;
    s_last_t *last = arg;
    if (zcq_doc_decode_trusted (last->self->doc, body, len) == ZCQ_OK)
        zcq_value_get_str (zcq_doc_root (last->self->doc), "type", last->type, sizeof last->type,
                           "");
    return 1;
}

//  max_age_s: the first version not older than the cutoff (DESIGN 1).
typedef struct {
    self_t *self;
    int64_t cutoff_us;
    uint64_t real; //  the last version that is not a trailing `$truncated`
    uint64_t keep; //  the first version to keep
} s_age_t;

static int
s_age_event (void *arg, uint64_t position, uint64_t version, const void *body, size_t len)
{
    (void) position;
    s_age_t *age = arg;
    if (version > age->real)
        return 1; //  only the trailing `$truncated` is left: remove all
    if (zcq_doc_decode_trusted (age->self->doc, body, len) != ZCQ_OK)
        return 1;
    int64_t time = zcq_value_get_int (zcq_doc_root (age->self->doc), "time", 0);
    if (time >= age->cutoff_us) {
        age->keep = version;
        return 1;
    }
    return 0;
}

//  Send `$truncate` for one stream (DESIGN 2). True when it was done.
static bool
s_truncate (self_t *self, const char *stream, uint64_t before)
{
    const char *slash = strchr (stream, '/');
    char aggregate[ZCQ_AGGREGATE_MAX + 1];
    size_t aggregate_len = (size_t) (slash - stream);
    if (aggregate_len > ZCQ_AGGREGATE_MAX)
        return false;
    memcpy (aggregate, stream, aggregate_len);
    aggregate[aggregate_len] = 0;
    char id[64];
    snprintf (id, sizeof id, "$retain-%016llx-%llu",
              (unsigned long long) zcq_stream_hash (stream, strlen (stream)),
              (unsigned long long) before);
    zcq_writer_reset (self->writer);
    zcq_writer_map (self->writer, 1);
    zcq_writer_str (self->writer, "before");
    zcq_writer_uint (self->writer, before);
    zcq_command_req_t command = {
        .id = id,
        .aggregate = aggregate,
        .key = slash + 1,
        .type = ZCQ_COMMAND_TRUNCATE,
        .data = zcq_writer_data (self->writer),
        .data_len = zcq_writer_size (self->writer),
    };
    const zcq_value_t *reply;
    if (zcq_client_command (self->client, &command, 10000, &reply) != ZCQ_OK) {
        zsys_warning ("retention: no reply truncating %s", stream);
        return false;
    }
    zcq_err_t status = zcq_reply_status (reply);
    if (status != ZCQ_OK && status != ZCQ_UNAVAILABLE) {
        char message[256];
        zsys_warning ("retention: truncating %s before %llu: %s", stream,
                      (unsigned long long) before,
                      zcq_value_get_str (reply, "message", message, sizeof message, "?"));
    }
    return status == ZCQ_OK;
}

//  Apply an aggregate type's retention to one stream (DESIGN 1).
static bool
s_retain_stream (self_t *self, const zcq_aggregate_def_t *def, const char *stream)
{
    zcq_store_t *store = self->env->store;
    uint64_t version, first;
    if (zcq_store_stream_version (store, stream, &version) != ZCQ_OK || version == 0
        || zcq_store_stream_first (store, stream, &first) != ZCQ_OK)
        return false;
    s_last_t last = { self, "" };
    if (zcq_store_read_stream (store, stream, version, 1, s_last_type, &last) != ZCQ_OK
        || strcmp (last.type, ZCQ_EVENT_DELETED) == 0)
        return false;
    uint64_t real = strcmp (last.type, ZCQ_EVENT_TRUNCATED) == 0 ? version - 1 : version;
    uint64_t before = first;
    if (def->max_count && real > def->max_count && real - def->max_count + 1 > before)
        before = real - def->max_count + 1;
    if (def->max_age_s) {
        s_age_t age = { self, zcq_now_us () - (int64_t) def->max_age_s * 1000000, real, real + 1 };
        if (zcq_store_read_stream (store, stream, before, 0, s_age_event, &age) == ZCQ_OK
            && age.keep > before)
            before = age.keep;
    }
    if (before <= first)
        return false;
    return s_truncate (self, stream, before);
}

//  One pass over every aggregate type with a retention; how many streams
//  it truncated.
static int
s_pass (self_t *self)
{
    int truncated = 0;
    const zcq_domain_t *domain = self->env->domain;
    for (size_t index = 0; domain->aggregates && domain->aggregates[index]; index++) {
        const zcq_aggregate_def_t *def = domain->aggregates[index];
        if (!def->max_count && !def->max_age_s)
            continue;
        char prefix[ZCQ_AGGREGATE_MAX + 2];
        snprintf (prefix, sizeof prefix, "%s/", def->name);
        zhashx_purge (self->streams);
        zcq_err_t err
            = zcq_store_each_stream (self->env->store, prefix, s_collect_stream, self->streams);
        if (err != ZCQ_OK)
            zsys_warning ("retention: listing the streams of %s: %s", def->name,
                          zcq_strerror (err));
        //  in name order
        zlistx_t *names = zhashx_keys (self->streams);
        if (!names)
            continue;
        zlistx_set_comparator (names, (zlistx_comparator_fn *) strcmp);
        zlistx_sort (names);
        for (const char *stream = zlistx_first (names); stream; stream = zlistx_next (names))
            if (s_retain_stream (self, def, stream))
                truncated++;
        zlistx_destroy (&names);
    }
    zhashx_purge (self->streams);
    return truncated;
}

static void
s_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    zcq_client_destroy (&self->client);
    zcq_doc_destroy (&self->doc);
    zcq_writer_destroy (&self->writer);
    zhashx_destroy (&self->streams);
    free (self);
    *self_p = NULL;
}

void
zcq_retention_actor (zsock_t *pipe, void *args)
{
    zsock_signal (pipe, 0);
    zcq_actor_name ("zcq-retention");
    const zcq_retention_args_t *arguments = args;
    self_t *self = calloc (1, sizeof (self_t));
    if (self) {
        self->pipe = pipe;
        self->env = arguments->env;
        self->client = zcq_client_new (arguments->command, NULL);
        self->doc = zcq_doc_new ();
        self->writer = zcq_writer_new ();
        self->streams = zhashx_new ();
    }
    if (!self || !self->client || !self->doc || !self->writer || !self->streams) {
        zcq_actor_failed (pipe, "retention: out of memory");
        s_destroy (&self);
        return;
    }
    zsock_send (pipe, "is", 0, "");
    uint64_t interval = self->env->config->retention_interval_ms;
    int64_t next = interval ? zclock_mono () + (int64_t) interval : 0;
    while (!self->terminated) {
        long timeout = -1;
        if (next) {
            int64_t left = next - zclock_mono ();
            timeout = left > 0 ? (long) left : 0;
        }
        zmq_pollitem_t item = { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, timeout);
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        if (rc > 0 && (item.revents & ZMQ_POLLIN)) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->terminated = true;
            else if (streq (command, "RETAIN"))
                zsock_send (pipe, "i", s_pass (self));
            else
                zsys_error ("retention: unknown pipe command '%s'", command);
            zstr_free (&command);
        }
        else if (next && zclock_mono () >= next) {
            s_pass (self);
            next = zclock_mono () + (int64_t) interval;
        }
    }
    s_destroy (&self);
}
