/*  zcq_read.h: the read side of a node: view hosts (projection actors)
    and the query router, started and stopped together as the reader.

        events (PUB, inproc) --> [view host 0..H-1] <--queries-- [query router] <-- clients
        log writer --COMMITTED--> [sync host] --COMMITTED--> command router

    Every asynchronous projection gets a host actor of its own; all
    synchronous projections share one host that sits in the write path, so
    their views change before the commands are acknowledged.
*/
#ifndef ZCQ_READ_H_INCLUDED
#define ZCQ_READ_H_INCLUDED

#include "zcq_actors.h"

typedef enum {
    ZCQ_VIEW_LIVE,
    ZCQ_VIEW_CATCHING_UP,
    ZCQ_VIEW_REBUILDING,
} zcq_view_status_t;

//  What the query router may read of a view while its host changes it.
//  THREAD SAFETY: the host writes these relaxed atomics, others read them.
typedef struct {
    const zcq_projection_def_t *def;
    uint32_t host;
    atomic_uint_fast64_t position;
    atomic_uint_fast64_t rows;
    atomic_uint_fast64_t memory;
    atomic_uint_fast64_t applied;  //  events applied (rebuilds included)
    atomic_uint_fast64_t snapshot; //  position of the last snapshot saved or loaded
    atomic_int status;
    //  a cluster-wide view (cluster.md section 5): the position in each
    //  group's log, groups entries (position is their sum); NULL, 0 else
    atomic_uint_fast64_t *positions;
    size_t groups;
    //  a handler failed (zcq_event_fail): error is written once, by the
    //  host, before failed is set (release), and read after it (acquire)
    atomic_bool failed;
    char error[320];
} zcq_view_info_t;

//  A query on its way to a view host and back.
typedef struct zcq_query_t zcq_query_t;
struct zcq_query_t {
    zmsg_t *envelope;
    zframe_t *body;
    zcq_doc_t *doc;
    const zcq_value_t *root;
    const zcq_value_t *rid;
    char op[16];
    zcq_view_info_t *view; //  the view asked
    uint64_t min_position;
    //  cluster-wide views (zcq_host_parse_wait): min_position is on group
    //  wait_group's position when >= 0, else on the sum; min_positions,
    //  when not NULL, holds a wanted position per group (0: none)
    int wait_group;
    uint64_t *min_positions;
    size_t min_positions_count;
    int64_t deadline; //  zclock_mono ms, for min_position
    void *reply;      //  encoded reply, set by the host
    size_t reply_size;
    zcq_query_t *next; //  parked list
    //  query router, in a cluster (query_router.c DESIGN 5)
    bool forwarded_in;     //  came from another node: answered here
    uint64_t sequence;     //  sent to another node under this number
    char forward_peer[16]; //  the routing id of that node's connection
    bool forward_sent;     //  else waiting for the connection
    int64_t forward_until; //  zclock_mono
};

void zcq_query_destroy (zcq_query_t **self_p);
//  The client a query came from: its routing identity in hex, cut to fit
//  size (ZCQ_PEER_MAX is enough for any).
#define ZCQ_PEER_MAX 520
void zcq_query_peer (const zcq_query_t *query, char *peer, size_t size);
//  An optional integer field of the query within [min, max] (fallback when
//  absent or nil); false, with the query failed `invalid`, when present
//  but wrong.
bool zcq_query_int (zcq_query_t *query, const char *name, int64_t min, int64_t max,
                    int64_t fallback, int64_t *value);
//  Encode an error reply into the query.
void zcq_query_fail (zcq_query_t *self, zcq_err_t err, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
//  Start a success reply map with ok, rid; returns the map mark. The caller
//  adds its own keys and counts them into *count.
size_t zcq_query_reply_open (zcq_query_t *self, zcq_writer_t *writer, size_t *count);
//  Move writer's bytes into the query as its reply.
void zcq_query_reply_close (zcq_query_t *self, zcq_writer_t *writer, size_t mark, size_t count);

typedef struct {
    const zcq_node_env_t *env;
    uint32_t host;
    bool synchronous;
    zcq_view_info_t **views; //  the views this host keeps
    size_t view_count;
} zcq_host_args_t;

//  The groups whose events feed this node's views: the cluster's group
//  count when the views are cluster-wide (a clustered node with setting
//  `views` = cluster, or any views node), else 0.
size_t zcq_host_groups (const zcq_node_env_t *env);
//  Parse min_position, group, min_positions and timeout_ms of a view
//  query into it; false when the query failed (invalid, with its reply).
bool zcq_host_parse_wait (zcq_query_t *query, const zcq_node_env_t *env);

//  A thread that answers queries handed to it as pointers on its zactor
//  pipe, each with answer, and sends each back; any other message ($TERM)
//  stops it. It owns a query from the moment it takes it until it sends it
//  back, and answers in order every query sent before $TERM. args (a
//  zcq_query_worker_t) must outlive the thread.
typedef void (zcq_query_answer_fn) (const zcq_node_env_t *env, zcq_writer_t *writer,
                                    zcq_query_t *query);
typedef struct {
    const zcq_node_env_t *env;
    const char *name; //  of the thread, for top -H
    zcq_query_answer_fn *answer;
} zcq_query_worker_t;
void zcq_query_worker (zsock_t *pipe, void *args);

//  Log reads (`read`, `stream`), answered by a thread of their own, the
//  clients in turn (log_reader.c). Used by the query router's thread only.
typedef struct zcq_log_reads_t zcq_log_reads_t;
//  true when a client (hex of its routing identity) must wait its turn
typedef bool (zcq_log_reads_blocked_fn) (void *arg, const char *peer);
zcq_log_reads_t *zcq_log_reads_new (const zcq_node_env_t *env);
//  Takes back every read handed to the thread, then stops it.
void zcq_log_reads_destroy (zcq_log_reads_t **self_p);
//  Queue a read for its client; false when a bound is reached: the query
//  is failed `unavailable` and stays the caller's, to reply.
bool zcq_log_reads_add (zcq_log_reads_t *self, zcq_query_t *query);
//  Hand waiting reads to the thread, one client at a time in turn,
//  passing over the clients blocked says must wait.
void zcq_log_reads_dispatch (zcq_log_reads_t *self, zcq_log_reads_blocked_fn *blocked, void *arg);
//  Readable when an answered read is back; take it with _take (NULL when
//  none is), then reply.
zsock_t *zcq_log_reads_socket (zcq_log_reads_t *self);
zcq_query_t *zcq_log_reads_take (zcq_log_reads_t *self);
size_t zcq_log_reads_waiting (const zcq_log_reads_t *self);

//  Backups (`backup`), taken by a thread of their own, one at a time
//  (backup.c). Used by the query router's thread only.
typedef struct zcq_backups_t zcq_backups_t;
zcq_backups_t *zcq_backups_new (const zcq_node_env_t *env);
//  Waits for a running backup to end, then stops the thread.
void zcq_backups_destroy (zcq_backups_t **self_p);
//  Hand a backup to the thread; false when one runs (the query is failed
//  `unavailable` and stays the caller's, to reply).
bool zcq_backups_add (zcq_backups_t *self, zcq_query_t *query);
//  Readable when the backup is answered; take it with _take, then reply.
zsock_t *zcq_backups_socket (zcq_backups_t *self);
zcq_query_t *zcq_backups_take (zcq_backups_t *self);

//  View host: keeps views, applies events, answers view queries.
//  Data socket (PAIR, inproc host endpoint): query pointers in and out.
void zcq_host_actor (zsock_t *pipe, void *args);

//  A view host's follower of another group's log on one of its replicas
//  (group_feed.c): the host polls its sockets and pumps it.
typedef struct zcq_feed_t zcq_feed_t;
typedef void (zcq_feed_apply_fn) (void *arg, int group, const zcq_event_t *event);
//  A feed of group that has applied its log up to position; NULL when out
//  of memory. It follows nothing until connected.
zcq_feed_t *zcq_feed_new (int group, uint64_t position);
//  A reader of group's log from position 1 through `read` alone, for a
//  rebuild (group_feed.c DESIGN 5); NULL when out of memory.
zcq_feed_t *zcq_feed_new_reader (int group);
//  Let a reader read up to position until (it only grows).
void zcq_feed_read_until (zcq_feed_t *self, uint64_t until);
void zcq_feed_destroy (zcq_feed_t **self_p);
//  Follow the replica with these endpoints, or none (NULL): a feed
//  without a replica keeps its position. True when that changed anything.
bool zcq_feed_connect (zcq_feed_t *self, const char *events, const char *query);
bool zcq_feed_connected (const zcq_feed_t *self);
//  The sockets to poll (at most 2 items written); returns how many.
size_t zcq_feed_poll_items (const zcq_feed_t *self, zmq_pollitem_t *items);
//  Take what arrived (up to budget live messages), hand the group's next
//  events to apply in order, ask for gaps (a reader: for what is left up to
//  its bound); returns the events handed over.
size_t zcq_feed_pump (zcq_feed_t *self, zcq_feed_apply_fn *apply, void *arg, size_t budget);
uint64_t zcq_feed_position (const zcq_feed_t *self);
uint64_t zcq_feed_head (const zcq_feed_t *self);
int zcq_feed_group (const zcq_feed_t *self);

typedef struct zcq_reader_t zcq_reader_t;

typedef struct {
    const zcq_node_env_t *env;
    zcq_view_info_t *views;
    size_t view_count;
    uint32_t host_count;
} zcq_query_args_t;

//  Query router: the query endpoint.
//  Pipe: zsock_send (router, "s", "ENDPOINT") / reply "s" query endpoint.
void zcq_query_actor (zsock_t *pipe, void *args);

zcq_err_t zcq_reader_start (zcq_reader_t **reader_p, zcq_node_env_t *env, char *error, size_t size);
void zcq_reader_destroy (zcq_reader_t **self_p);
const char *zcq_reader_endpoint (const zcq_reader_t *self);
//  The views the reader keeps, for the HTTP endpoint to read (their infos
//  live as long as the reader).
const zcq_view_info_t *zcq_reader_views (const zcq_reader_t *self, size_t *count);

#endif
