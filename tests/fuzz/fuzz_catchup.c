/*  fuzz_catchup: zcq_catchup_t (engine/catchup.c) against a hostile node.

    A fake node runs in this process: a ROUTER on an inproc query endpoint
    (in its own thread, answering `read` requests from a script) and a PUB
    on an inproc events endpoint. Each input is a script:

        byte 0      options: bits 0-2 pick `from` (0, 1, 2, 3, 1000,
                    2^64-2, 2^64-1, 7); bit 3 sets a topic filter, bit 4
                    picks "account/" or "account/1/"
        then records, each a tag byte and chunks of [u16 LE length][bytes]:
          tag % 4 == 0  read page: 1 byte head selector + chunk; the reply
                        is {rid, ok: true, head, events: chunk} (chunk as is
                        when it is one MessagePack value, else as bin)
          tag % 4 == 1  noise before the next reply: the chunk as a raw
                        reply frame (tag bit 2 clear) or as the `events` of
                        a reply to an older rid (tag bit 2 set)
          tag % 4 == 2  live event: topic chunk, body chunk
          tag % 4 == 3  live heartbeat: body chunk
        When the script has no page left, `read` gets an empty page.

    A fresh catch-up subscription runs the script: live messages are
    published, then zcq_catchup_next is called until it stops giving
    events. Every event delivered must come in position order, one more
    than the previous (unless a topic filter skipped some); nothing may crash, leak or hang.
*/
#include "fuzz_common.h"
#include "zcq_internal.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_RECORDS 64

typedef struct {
    int kind;     //  tag % 4
    int flags;    //  tag
    uint8_t head; //  page: head selector
    const uint8_t *chunk;
    size_t chunk_len;
    const uint8_t *topic;
    size_t topic_len;
} s_record_t;

static struct {
    pthread_mutex_t lock;
    s_record_t pages[S_MAX_RECORDS]; //  kinds 0 and 1, in order
    size_t page_count;
    size_t page_next;
} s_script = { .lock = PTHREAD_MUTEX_INITIALIZER };

static zactor_t *s_server;
static zsock_t *s_publisher;
static char s_query_endpoint[64], s_events_endpoint[64];

static uint64_t
s_head_value (uint8_t selector)
{
    switch (selector % 8) {
        case 0: return 0;
        case 1: return 1;
        case 2: return 2;
        case 3: return 5;
        case 4: return 1000;
        case 5: return 5000;
        case 6: return UINT64_MAX;
        default: return selector;
    }
}

//  The events value of a page reply: the chunk when it is one value.
static void
s_write_chunk (zcq_writer_t *writer, const uint8_t *chunk, size_t len)
{
    if (len && zcq_msgpack_check (chunk, len, NULL, NULL) == ZCQ_OK)
        zcq_writer_raw (writer, chunk, len);
    else
        zcq_writer_bin (writer, chunk, len);
}

static void
s_send_reply (zsock_t *router, zframe_t *identity, const void *body, size_t len)
{
    zmsg_t *reply = zmsg_new ();
    zmsg_append (reply, (zframe_t *[]) { zframe_dup (identity) });
    zmsg_addmem (reply, "", 0);
    zmsg_addmem (reply, body, len);
    zmsg_send (&reply, router);
}

//  Answer one request of the catch-up from the script.
static void
s_answer (zsock_t *router, zcq_writer_t *writer, zcq_doc_t *doc)
{
    zmsg_t *request = zmsg_recv (router);
    if (!request)
        return;
    zframe_t *identity = zmsg_first (request);
    zframe_t *body = zmsg_last (request);
    const zcq_value_t *rid = NULL;
    if (zcq_doc_decode (doc, zframe_data (body), zframe_size (body), NULL) == ZCQ_OK)
        rid = zcq_value_get (zcq_doc_root (doc), "rid");
    uint64_t rid_number = 0;
    zcq_value_uint (rid, &rid_number);
    pthread_mutex_lock (&s_script.lock);
    while (true) {
        zcq_writer_reset (writer);
        if (s_script.page_next >= s_script.page_count) {
            zcq_writer_map (writer, 4);
            zcq_writer_str (writer, "rid");
            zcq_writer_value (writer, rid);
            zcq_writer_str (writer, "ok");
            zcq_writer_bool (writer, true);
            zcq_writer_str (writer, "head");
            zcq_writer_uint (writer, 0);
            zcq_writer_str (writer, "events");
            zcq_writer_array (writer, 0);
            s_send_reply (router, identity, zcq_writer_data (writer), zcq_writer_size (writer));
            break;
        }
        s_record_t *record = &s_script.pages[s_script.page_next++];
        if (record->kind == 1 && !(record->flags & 4)) {
            s_send_reply (router, identity, record->chunk, record->chunk_len);
            continue;
        }
        bool stale = record->kind == 1;
        zcq_writer_map (writer, 4);
        zcq_writer_str (writer, "rid");
        if (stale)
            zcq_writer_uint (writer, rid_number - 1);
        else
            zcq_writer_value (writer, rid);
        zcq_writer_str (writer, "ok");
        zcq_writer_bool (writer, true);
        zcq_writer_str (writer, "head");
        zcq_writer_uint (writer, s_head_value (record->head));
        zcq_writer_str (writer, "events");
        s_write_chunk (writer, record->chunk, record->chunk_len);
        s_send_reply (router, identity, zcq_writer_data (writer), zcq_writer_size (writer));
        if (!stale)
            break;
    }
    pthread_mutex_unlock (&s_script.lock);
    zmsg_destroy (&request);
}

static void
s_server_actor (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new_router (s_query_endpoint);
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    zsock_signal (pipe, router ? 0 : 1);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (!which && !zpoller_terminated (poller))
            continue; //  EINTR
        if (which == pipe || !which)
            break;
        s_answer (router, writer, doc);
    }
    zpoller_destroy (&poller);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
    zsock_destroy (&router);
}

static void
s_cleanup (void)
{
    zactor_destroy (&s_server);
    zsock_destroy (&s_publisher);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    zsys_handler_set (NULL);
    zsys_set_logstream (NULL);
    zsys_set_logsystem (false);
    snprintf (s_query_endpoint, sizeof s_query_endpoint, "inproc://zcq-fuzz-cq-%d",
              (int) getpid ());
    snprintf (s_events_endpoint, sizeof s_events_endpoint, "inproc://zcq-fuzz-ce-%d",
              (int) getpid ());
    //  the fake node's threads (and zmq's) do not take libFuzzer's alarm
    sigset_t alarm, previous;
    sigemptyset (&alarm);
    sigaddset (&alarm, SIGALRM);
    pthread_sigmask (SIG_BLOCK, &alarm, &previous);
    s_publisher = zsock_new_pub (s_events_endpoint);
    s_server = zactor_new (s_server_actor, NULL);
    pthread_sigmask (SIG_SETMASK, &previous, NULL);
    if (!s_publisher || !s_server) {
        fprintf (stderr, "fuzz_catchup: cannot start the fake node\n");
        exit (1);
    }
    zsock_set_sndhwm (s_publisher, 0);
    atexit (s_cleanup);
    return 0;
}

//  Read a [u16 LE length][bytes] chunk.
static bool
s_chunk (const uint8_t **cursor, const uint8_t *end, const uint8_t **chunk, size_t *len)
{
    if (end - *cursor < 2)
        return false;
    size_t want = (size_t) (*cursor)[0] | (size_t) (*cursor)[1] << 8;
    *cursor += 2;
    size_t left = (size_t) (end - *cursor);
    *len = want < left ? want : left;
    *chunk = *cursor;
    *cursor += *len;
    return true;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint64_t froms[] = { 0, 1, 2, 3, 1000, UINT64_MAX - 1, UINT64_MAX, 7 };
    uint8_t options = data[0];
    uint64_t from = froms[options & 7];
    const char *topic = (options & 8) ? ((options & 16) ? "account/1/" : "account/") : NULL;

    //  parse the script
    s_record_t lives[S_MAX_RECORDS];
    size_t live_count = 0;
    pthread_mutex_lock (&s_script.lock);
    s_script.page_count = s_script.page_next = 0;
    const uint8_t *cursor = data + 1, *end = data + size;
    while (cursor < end && s_script.page_count < S_MAX_RECORDS && live_count < S_MAX_RECORDS) {
        s_record_t record = { .kind = *cursor % 4, .flags = *cursor };
        cursor++;
        if (record.kind == 0) {
            if (cursor >= end)
                break;
            record.head = *cursor++;
        }
        if (record.kind == 2 && !s_chunk (&cursor, end, &record.topic, &record.topic_len))
            break;
        if (!s_chunk (&cursor, end, &record.chunk, &record.chunk_len))
            break;
        if (record.kind <= 1)
            s_script.pages[s_script.page_count++] = record;
        else
            lives[live_count++] = record;
    }
    pthread_mutex_unlock (&s_script.lock);

    zcq_catchup_t *catchup = zcq_catchup_new (s_query_endpoint, s_events_endpoint, from, topic);
    FUZZ_ASSERT (catchup, "catchup_new failed");
    //  publish the live messages (inproc: the subscription is in place)
    for (size_t index = 0; index < live_count; index++) {
        s_record_t *record = &lives[index];
        zmsg_t *message = zmsg_new ();
        if (record->kind == 2)
            zmsg_addmem (message, record->topic, record->topic_len);
        else
            zmsg_addstr (message, "$heartbeat");
        zmsg_addmem (message, record->chunk, record->chunk_len);
        zmsg_send (&message, s_publisher);
    }
    uint64_t last = from > 0 ? from - 1 : 0;
    for (int round = 0; round < 256; round++) {
        const zcq_event_t *event = NULL;
        zcq_err_t err = zcq_catchup_next (catchup, 1, &event);
        if (err != ZCQ_OK) {
            FUZZ_ASSERT (event == NULL, "an event with error %s", zcq_err_code (err));
            break;
        }
        FUZZ_ASSERT (event != NULL, "ok without an event");
        uint64_t position = zcq_event_position (event);
        //  in order, and without gaps unless a topic filter skipped some
        FUZZ_ASSERT (topic ? position > last : position == last + 1, "event %llu after %llu",
                     (unsigned long long) position, (unsigned long long) last);
        FUZZ_ASSERT (zcq_catchup_position (catchup) == position, "position out of step");
        if (topic) {
            char prefixed[ZCQ_STREAM_MAX + 2];
            snprintf (prefixed, sizeof prefixed, "%s/", zcq_event_stream (event));
            FUZZ_ASSERT (strncmp (prefixed, topic, strlen (topic)) == 0,
                         "event of %s passes topic %s", zcq_event_stream (event), topic);
        }
        zcq_event_int (event, "amount", 0);
        zcq_event_str (event, "owner");
        last = position;
    }
    zcq_catchup_head (catchup);
    zcq_catchup_destroy (&catchup);
    return 0;
}
