/*  group_feed.c: zcq_feed_t, a view host's follower of another group's log
    (cluster.md section 5: cluster-wide views), driven by the host's own
    poll loop so that a slow or dead replica never holds up its queries.

    DESIGN
    1.  A feed follows one group through one replica: the SUB socket on its
        events endpoint (every topic, so that positions are contiguous and a
        gap means a drop) and a DEALER on its query endpoint for `read`.
        `position` is the last event of the group handed to the host, in
        the group's order; `head` the highest position the replica has
        shown (events, heartbeats' `hw` or `head`, `read` replies).
    2.  A live event at position + 1 is handed over; one beyond it means
        messages were dropped: it is dropped too, and the range is read
        from the replica's log. At most one `read` is in flight (its `rid`
        is the feed's counter: a reply to an older one is ignored); it asks
        for up to S_PAGE events from position + 1, and its events at
        position + 1, + 2, ... are handed over, those at or below position
        (taken live meanwhile) skipped. A reply out of order, or one that
        does not come within S_READ_MS, drops the DEALER (a new one asks
        again), so nothing stale is ever applied.
    3.  Everything from the replica is untrusted: live bodies pass the
        codec's rules and the event reader, replies are decoded by the codec
        with its limits, and an event whose position is not the next one is
        never applied.
    4.  No replica (the group has no live node in the coordinator's view):
        the feed has no sockets and does not move; it keeps its position
        and picks up from there when the host points it at a replica again
        (zcq_feed_connect, whenever the view shows other endpoints).
    5.  A reader (zcq_feed_new_reader) is a feed without the SUB: the
        rebuild of a cluster-wide view (projection.c DESIGN 3, 6) reads a
        group's log from position 1 with it, up to a bound the host raises
        as its live feed moves (zcq_feed_read_until), never past it, with
        the same `read`s, rids, timeouts and checks as gap filling (DESIGN
        2, 3). A reply with nothing new while short of the bound (a replica
        that does not have it yet) holds the next read off S_RETRY_MS, so
        that an empty log is not asked again and again.
*/
#include "zcq_read.h"
#include <string.h>

#define S_PAGE     1000
#define S_READ_MS  3000
#define S_RETRY_MS 100 //  DESIGN 5

struct zcq_feed_t {
    int group;
    uint64_t position;
    uint64_t head;
    char *events_endpoint; //  NULL: no replica (DESIGN 4)
    char *query_endpoint;
    zsock_t *events; //  SUB
    zsock_t *reads;  //  DEALER
    uint64_t rid;
    bool reading;
    bool probe;        //  a read is due to learn a new replica's head
    int64_t read_sent; //  zclock_mono
    zcq_writer_t *request;
    zcq_writer_t *page; //  the events of the last `read` reply, encoded
    zcq_doc_t *doc;
    zcq_event_t event;
    //  DESIGN 5: a reader
    bool reader;
    uint64_t until;     //  hand nothing past it over
    int64_t idle_until; //  zclock_mono: no read before it
};

zcq_feed_t *
zcq_feed_new (int group, uint64_t position)
{
    zcq_feed_t *self = calloc (1, sizeof (zcq_feed_t));
    if (!self)
        return NULL;
    self->group = group;
    self->position = self->head = position;
    self->request = zcq_writer_new ();
    self->page = zcq_writer_new ();
    self->doc = zcq_doc_new ();
    if (!self->request || !self->page || !self->doc)
        zcq_feed_destroy (&self);
    return self;
}

zcq_feed_t *
zcq_feed_new_reader (int group)
{
    zcq_feed_t *self = zcq_feed_new (group, 0);
    if (self)
        self->reader = true;
    return self;
}

void
zcq_feed_read_until (zcq_feed_t *self, uint64_t until)
{
    if (self->reader && until > self->until)
        self->until = until;
}

static void
s_disconnect (zcq_feed_t *self)
{
    zsock_destroy (&self->events);
    zsock_destroy (&self->reads);
    self->reading = false;
}

void
zcq_feed_destroy (zcq_feed_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_feed_t *self = *self_p;
    s_disconnect (self);
    free (self->events_endpoint);
    free (self->query_endpoint);
    zcq_writer_destroy (&self->request);
    zcq_writer_destroy (&self->page);
    zcq_doc_destroy (&self->doc);
    zcq_event_release (&self->event);
    free (self);
    *self_p = NULL;
}

//  A DEALER for reads; NULL when it cannot be had (the next pump retries).
static zsock_t *
s_dealer (const char *endpoint)
{
    zsock_t *socket = zsock_new (ZMQ_DEALER);
    if (!socket)
        return NULL;
    zsock_set_linger (socket, 0);
    zsock_set_sndhwm (socket, 16);
    zsock_set_rcvhwm (socket, 16);
    if (zsock_connect (socket, "%s", endpoint) < 0)
        zsock_destroy (&socket);
    return socket;
}

bool
zcq_feed_connected (const zcq_feed_t *self)
{
    return self->events_endpoint != NULL;
}

bool
zcq_feed_connect (zcq_feed_t *self, const char *events, const char *query)
{
    bool same = events && query && self->events_endpoint
             && strcmp (events, self->events_endpoint) == 0
             && strcmp (query, self->query_endpoint) == 0;
    if (same || (!events && !self->events_endpoint))
        return false;
    s_disconnect (self);
    free (self->events_endpoint);
    free (self->query_endpoint);
    self->events_endpoint = self->query_endpoint = NULL;
    //  the new replica's head is learnt from it (a failover may have a
    //  shorter committed log than the old replica showed)
    self->head = self->position;
    if (!events || !query)
        return true;
    self->events_endpoint = strdup (events);
    self->query_endpoint = strdup (query);
    self->events = self->reader ? NULL : zsock_new (ZMQ_SUB);
    if (self->events) {
        zsock_set_rcvhwm (self->events, 100000);
        zsock_set_linger (self->events, 0);
        zsock_set_subscribe (self->events, "");
        if (zsock_connect (self->events, "%s", events) < 0)
            zsock_destroy (&self->events);
    }
    self->reads = s_dealer (query);
    if (!self->events_endpoint || !self->query_endpoint || (!self->events && !self->reader)
        || !self->reads) {
        zsys_warning ("view host: cannot follow group %d at %s / %s", self->group, events, query);
        s_disconnect (self);
    }
    //  ask at once: the replica's head may be far ahead (DESIGN 2)
    self->probe = true;
    return true;
}

size_t
zcq_feed_poll_items (const zcq_feed_t *self, zmq_pollitem_t *items)
{
    size_t count = 0;
    if (self->events)
        items[count++] = (zmq_pollitem_t) { zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 };
    if (self->reads)
        items[count++] = (zmq_pollitem_t) { zsock_resolve (self->reads), 0, ZMQ_POLLIN, 0 };
    return count;
}

uint64_t
zcq_feed_position (const zcq_feed_t *self)
{
    return self->position;
}

uint64_t
zcq_feed_head (const zcq_feed_t *self)
{
    return self->head > self->position ? self->head : self->position;
}

int
zcq_feed_group (const zcq_feed_t *self)
{
    return self->group;
}

//  Hand the event in self->event over when it is the next one.
static bool
s_deliver (zcq_feed_t *self, zcq_feed_apply_fn *apply, void *arg)
{
    if (self->event.position != self->position + 1)
        return false;
    self->position = self->event.position;
    apply (arg, self->group, &self->event);
    return true;
}

//  Send a `read` from position + 1 (DESIGN 2).
static void
s_send_read (zcq_feed_t *self)
{
    if (!self->reads) {
        self->reads = self->query_endpoint ? s_dealer (self->query_endpoint) : NULL;
        if (!self->reads)
            return;
    }
    uint64_t limit = (self->reader ? self->until : self->head) - self->position;
    if (limit > S_PAGE || limit == 0)
        limit = S_PAGE;
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
    if (!zcq_writer_ok (self->request)
        || zmq_send (zsock_resolve (self->reads), zcq_writer_data (self->request),
                     zcq_writer_size (self->request), ZMQ_DONTWAIT)
               < 0)
        return;
    self->reading = true;
    self->read_sent = zclock_mono ();
}

//  A `read` reply: hand its events over in order (DESIGN 2, 3).
static void
s_take_reply (zcq_feed_t *self, const void *bytes, size_t size, zcq_feed_apply_fn *apply, void *arg)
{
    if (zcq_doc_decode (self->doc, bytes, size, &zcq_stored_limits) != ZCQ_OK)
        return;
    const zcq_value_t *reply = zcq_doc_root (self->doc);
    uint64_t rid, head;
    if (!zcq_value_uint (zcq_value_get (reply, "rid"), &rid) || rid != self->rid)
        return; //  an answer to a read given up on
    self->reading = false;
    //  DESIGN 5: a reader waits a little after a reply that brings nothing
    uint64_t before = self->position;
    if (self->reader)
        self->idle_until = zclock_mono () + S_RETRY_MS;
    if (zcq_reply_status (reply) != ZCQ_OK)
        return;
    self->probe = false;
    const zcq_value_t *hw = zcq_value_get (reply, "hw");
    if ((zcq_value_uint (hw, &head) || zcq_value_uint (zcq_value_get (reply, "head"), &head))
        && head > self->head)
        self->head = head;
    //  a copy to read the bodies where they lie: the doc holds values
    zcq_writer_reset (self->page);
    zcq_writer_value (self->page, zcq_value_get (reply, "events"));
    if (!zcq_writer_ok (self->page))
        return;
    const uint8_t *page = zcq_writer_data (self->page);
    zcq_mp_t reader = { page, page + zcq_writer_size (self->page) };
    zcq_mp_item_t array;
    if (!zcq_mp_read (&reader, &array) || array.type != ZCQ_TYPE_ARRAY)
        return;
    //  nothing more to read there now: whatever showed a higher head (a
    //  log end past what is committed) is not to be asked for again and again
    if (array.len == 0 && self->head > self->position)
        self->head = self->position;
    for (size_t index = 0; index < array.len; index++) {
        const uint8_t *body = reader.cursor;
        if (!zcq_mp_skip (&reader, 1)
            || zcq_event_read (&self->event, body, (size_t) (reader.cursor - body)) != ZCQ_OK)
            break;
        if (self->event.position > self->head)
            self->head = self->event.position;
        if (self->event.position <= self->position)
            continue;
        if (self->reader && self->event.position > self->until)
            break; //  DESIGN 5
        if (!s_deliver (self, apply, arg)) {
            zsys_warning ("view host: group %d's replica %s answered a read out of order",
                          self->group, self->query_endpoint);
            break;
        }
    }
    if (self->position != before)
        self->idle_until = 0;
}

//  A live message: an event or a heartbeat (DESIGN 2, 3).
static void
s_take_live (zcq_feed_t *self, zcq_feed_apply_fn *apply, void *arg)
{
    void *socket = zsock_resolve (self->events);
    zmq_msg_t topic, body;
    zmq_msg_init (&topic);
    zmq_msg_init (&body);
    if (zmq_msg_recv (&topic, socket, ZMQ_DONTWAIT) < 0 || !zmq_msg_more (&topic)
        || zmq_msg_recv (&body, socket, 0) < 0) {
        zmq_msg_close (&topic);
        zmq_msg_close (&body);
        return;
    }
    //  anything after the body belongs to no protocol: drop it
    while (zmq_msg_more (&body)) {
        zmq_msg_close (&body);
        zmq_msg_init (&body);
        if (zmq_msg_recv (&body, socket, 0) < 0)
            break;
    }
    bool heartbeat = zmq_msg_size (&topic) == 10
                  && memcmp (zmq_msg_data (&topic), "$heartbeat", 10) == 0;
    const void *bytes = zmq_msg_data (&body);
    size_t size = zmq_msg_size (&body);
    uint64_t head;
    if (heartbeat) {
        if (zcq_doc_decode (self->doc, bytes, size, &zcq_stored_limits) == ZCQ_OK) {
            const zcq_value_t *root = zcq_doc_root (self->doc);
            //  `hw` in a cluster (cluster.md section 4): what may be read
            if ((zcq_value_uint (zcq_value_get (root, "hw"), &head)
                 || zcq_value_uint (zcq_value_get (root, "head"), &head))
                && head > self->head)
                self->head = head;
        }
    }
    else if (zcq_msgpack_check (bytes, size, &zcq_stored_limits, NULL) == ZCQ_OK
             && zcq_event_read (&self->event, bytes, size) == ZCQ_OK) {
        if (self->event.position > self->head)
            self->head = self->event.position;
        s_deliver (self, apply, arg);
    }
    zmq_msg_close (&topic);
    zmq_msg_close (&body);
}

size_t
zcq_feed_pump (zcq_feed_t *self, zcq_feed_apply_fn *apply, void *arg, size_t budget)
{
    uint64_t before = self->position;
    if (!self->events_endpoint)
        return 0; //  DESIGN 4
    if (self->reads) {
        zmq_msg_t reply;
        zmq_msg_init (&reply);
        while (zmq_msg_recv (&reply, zsock_resolve (self->reads), ZMQ_DONTWAIT) >= 0) {
            if (!zmq_msg_more (&reply))
                s_take_reply (self, zmq_msg_data (&reply), zmq_msg_size (&reply), apply, arg);
            zmq_msg_close (&reply);
            zmq_msg_init (&reply);
        }
        zmq_msg_close (&reply);
    }
    for (size_t count = 0; self->events && count < budget; count++) {
        zmq_pollitem_t item = { zsock_resolve (self->events), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 0) <= 0 || !(item.revents & ZMQ_POLLIN))
            break;
        s_take_live (self, apply, arg);
    }
    if (self->reading && zclock_mono () - self->read_sent > S_READ_MS) {
        //  DESIGN 2: a new DEALER, so that a late answer is never taken
        zsock_destroy (&self->reads);
        self->reading = false;
    }
    bool wanted = self->reader ? self->position < self->until && zclock_mono () >= self->idle_until
                               : self->probe || self->head > self->position;
    if (!self->reading && wanted)
        s_send_read (self);
    return (size_t) (self->position - before);
}
