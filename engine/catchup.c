/*  catchup.c: zcq_catchup_t, a catch-up subscription over ZCQ/1 alone
    (`read` plus the events endpoint).

    DESIGN
    1.  `position` is the last log position examined. Events come from one
        of two places: a page of `read` (when behind) or the SUB socket
        (when level). A live event at position + 1 is delivered; one beyond
        it means a gap, so the live message is dropped and the range is read
        from the log instead (the log has it: events are published only
        once durable). Anything at or below position is a duplicate.
    2.  The SUB socket takes every topic, so that positions are contiguous
        and gaps mean drops; the topic filter is applied here.
    3.  Events are read where they lie (engine/event.c): a page's events in
        the copy of its `events` array, a live event in its message. A live
        body is checked by the codec's rules first (it comes from the
        network); a page was, when the client decoded the reply.
    4.  A page may jump over positions the node removed (truncation,
        retention): its reply lists them in `removed`, and a jump is
        accepted when a listed range covers it exactly. Any other jump is
        corrupt, never retried: asking again would get the same page.
*/
#include "zcq_internal.h"
#include <string.h>

#define S_PAGE 1000

struct zcq_catchup_t {
    zcq_client_t *client;
    zsock_t *events;
    zcq_writer_t *request;
    zcq_writer_t *page; //  the events of the last `read` reply, encoded
    zcq_mp_t page_reader;
    size_t page_next;
    size_t page_size;
    zcq_doc_t *live; //  heartbeats
    zmq_msg_t live_body;
    bool live_held;
    zcq_event_t event;
    uint64_t position;
    uint64_t head;
    char *topic;
    size_t topic_len;
    uint64_t rid;
    uint64_t *removed; //  the last page's removed ranges, [from, to] pairs (DESIGN 4)
    size_t removed_count;
    size_t removed_slots;
};

zcq_catchup_t *
zcq_catchup_new (const char *query_endpoint, const char *events_endpoint, uint64_t from,
                 const char *topic)
{
    zcq_catchup_t *self = calloc (1, sizeof (zcq_catchup_t));
    if (!self)
        return NULL;
    self->position = from > 0 ? from - 1 : 0;
    self->client = zcq_client_new (NULL, query_endpoint);
    self->events = zsock_new (ZMQ_SUB);
    self->request = zcq_writer_new ();
    self->page = zcq_writer_new ();
    self->live = zcq_doc_new ();
    self->topic = topic ? strdup (topic) : NULL;
    self->topic_len = topic ? strlen (topic) : 0;
    zmq_msg_init (&self->live_body);
    if (!self->client || !self->events || !self->request || !self->page || !self->live
        || (topic && !self->topic)) {
        zcq_catchup_destroy (&self);
        return NULL;
    }
    zsock_set_rcvhwm (self->events, 100000);
    zsock_set_subscribe (self->events, "");
    if (zsock_connect (self->events, "%s", events_endpoint) < 0)
        zcq_catchup_destroy (&self);
    return self;
}

void
zcq_catchup_destroy (zcq_catchup_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_catchup_t *self = *self_p;
    zcq_client_destroy (&self->client);
    zsock_destroy (&self->events);
    zcq_writer_destroy (&self->request);
    zcq_writer_destroy (&self->page);
    zcq_doc_destroy (&self->live);
    zmq_msg_close (&self->live_body);
    zcq_event_release (&self->event);
    free (self->removed);
    free (self->topic);
    free (self);
    *self_p = NULL;
}

uint64_t
zcq_catchup_position (const zcq_catchup_t *self)
{
    return self->position;
}

uint64_t
zcq_catchup_head (const zcq_catchup_t *self)
{
    return self->head > self->position ? self->head : self->position;
}

//  Read the next page of the log after position, up to `until` (0 = a
//  full page). The page's events are kept in self->page (DESIGN 3).
static zcq_err_t
s_read_page (zcq_catchup_t *self, uint64_t until)
{
    uint64_t limit = S_PAGE;
    if (until && until - self->position < limit)
        limit = until - self->position;
    zcq_writer_reset (self->request);
    zcq_writer_map (self->request, 4);
    zcq_writer_str (self->request, "op");
    zcq_writer_str (self->request, "read");
    zcq_writer_str (self->request, "rid");
    zcq_writer_uint (self->request, ++self->rid);
    zcq_writer_str (self->request, "from");
    zcq_writer_uint (self->request, self->position + 1);
    zcq_writer_str (self->request, "limit");
    zcq_writer_uint (self->request, limit);
    const zcq_value_t *reply;
    zcq_err_t err = zcq_client_call (self->client, ZCQ_ENDPOINT_QUERY,
                                     zcq_writer_data (self->request),
                                     zcq_writer_size (self->request), 5000, &reply);
    if (err != ZCQ_OK)
        return ZCQ_UNAVAILABLE;
    if (zcq_reply_status (reply) != ZCQ_OK)
        return ZCQ_UNAVAILABLE;
    uint64_t head;
    if (zcq_value_uint (zcq_value_get (reply, "head"), &head) && head > self->head)
        self->head = head;
    //  DESIGN 4
    const zcq_value_t *removed = zcq_value_get (reply, "removed");
    self->removed_count = 0;
    for (size_t index = 0; index < zcq_value_size (removed); index++) {
        const zcq_value_t *range = zcq_value_at (removed, index);
        uint64_t from, to;
        if (!zcq_value_uint (zcq_value_at (range, 0), &from)
            || !zcq_value_uint (zcq_value_at (range, 1), &to) || to < from)
            continue;
        if (self->removed_count == self->removed_slots) {
            size_t slots = self->removed_slots ? self->removed_slots * 2 : 16;
            uint64_t *bigger = realloc (self->removed, slots * 2 * sizeof (uint64_t));
            if (!bigger)
                return ZCQ_NOMEM;
            self->removed = bigger;
            self->removed_slots = slots;
        }
        self->removed[2 * self->removed_count] = from;
        self->removed[2 * self->removed_count + 1] = to;
        self->removed_count++;
    }
    //  keep a copy: the client's reply lives only until its next call
    zcq_writer_reset (self->page);
    zcq_writer_value (self->page, zcq_value_get (reply, "events"));
    if (!zcq_writer_ok (self->page))
        return ZCQ_NOMEM;
    const uint8_t *events = zcq_writer_data (self->page);
    self->page_reader = (zcq_mp_t) { events, events + zcq_writer_size (self->page) };
    zcq_mp_item_t array;
    self->page_next = 0;
    self->page_size = 0;
    if (zcq_mp_read (&self->page_reader, &array) && array.type == ZCQ_TYPE_ARRAY)
        self->page_size = array.len;
    return ZCQ_OK;
}

//  True when the last page listed [from, to] as removed (DESIGN 4).
static bool
s_removed (const zcq_catchup_t *self, uint64_t from, uint64_t to)
{
    for (size_t index = 0; index < self->removed_count; index++)
        if (self->removed[2 * index] == from && self->removed[2 * index + 1] == to)
            return true;
    return false;
}

static bool
s_wanted (const zcq_catchup_t *self)
{
    if (!self->topic)
        return true;
    char topic[ZCQ_STREAM_MAX + 2];
    size_t len = strlen (self->event.stream);
    memcpy (topic, self->event.stream, len);
    topic[len] = '/';
    return len + 1 >= self->topic_len && memcmp (topic, self->topic, self->topic_len) == 0;
}

//  Take the next event of the current page; ZCQ_NOT_FOUND when the page
//  is used up.
static zcq_err_t
s_from_page (zcq_catchup_t *self, const zcq_event_t **event)
{
    while (self->page_next < self->page_size) {
        const uint8_t *body = self->page_reader.cursor;
        if (!zcq_mp_skip (&self->page_reader, 1))
            return ZCQ_CORRUPT;
        self->page_next++;
        ZCQ_TRY (zcq_event_read (&self->event, body, (size_t) (self->page_reader.cursor - body)));
        if (self->event.position <= self->position)
            continue;
        if (self->event.position != self->position + 1
            && !s_removed (self, self->position + 1, self->event.position - 1))
            return ZCQ_CORRUPT;
        self->position = self->event.position;
        if (s_wanted (self)) {
            *event = &self->event;
            return ZCQ_OK;
        }
    }
    return ZCQ_NOT_FOUND;
}

zcq_err_t
zcq_catchup_next (zcq_catchup_t *self, int timeout_ms, const zcq_event_t **event)
{
    *event = NULL;
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        zcq_err_t err = s_from_page (self, event);
        if (err != ZCQ_NOT_FOUND)
            return err;
        //  behind: read the next page (DESIGN 1)
        if (self->head > self->position || self->rid == 0) {
            ZCQ_TRY (s_read_page (self, self->head > self->position ? self->head : 0));
            if (self->page_size)
                continue;
        }
        //  level: follow the live events
        int64_t left = deadline - zclock_mono ();
        zmq_pollitem_t item = { zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 };
        if (left <= 0 || zmq_poll (&item, 1, left) <= 0)
            return ZCQ_TIMEOUT;
        zmq_msg_t topic;
        zmq_msg_init (&topic);
        if (zmq_msg_recv (&topic, zsock_resolve (self->events), 0) < 0) {
            zmq_msg_close (&topic);
            return ZCQ_UNAVAILABLE;
        }
        bool more = zmq_msg_more (&topic);
        bool heartbeat = zmq_msg_size (&topic) == 10
                      && memcmp (zmq_msg_data (&topic), "$heartbeat", 10) == 0;
        zmq_msg_close (&topic);
        if (!more)
            continue;
        zmq_msg_close (&self->live_body);
        zmq_msg_init (&self->live_body);
        if (zmq_msg_recv (&self->live_body, zsock_resolve (self->events), 0) < 0)
            return ZCQ_UNAVAILABLE;
        const void *body = zmq_msg_data (&self->live_body);
        size_t size = zmq_msg_size (&self->live_body);
        uint64_t position;
        if (heartbeat) {
            if (zcq_doc_decode (self->live, body, size, &zcq_stored_limits) == ZCQ_OK
                && zcq_value_uint (zcq_value_get (zcq_doc_root (self->live), "head"), &position)
                && position > self->head)
                self->head = position;
            continue;
        }
        //  from the network: the codec's rules first (DESIGN 3), any text
        //  since a node serves what its log holds, written maybe by a
        //  release that did not refuse text that is not UTF-8
        if (zcq_msgpack_check (body, size, &zcq_stored_limits, NULL) != ZCQ_OK
            || zcq_event_read (&self->event, body, size) != ZCQ_OK)
            continue;
        position = self->event.position;
        if (position > self->head)
            self->head = position;
        if (position <= self->position)
            continue; //  already seen
        if (position > self->position + 1)
            continue; //  a gap: the next loop reads it from the log
        self->position = position;
        if (s_wanted (self)) {
            *event = &self->event;
            return ZCQ_OK;
        }
    }
}
