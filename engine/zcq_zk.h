/*  zcq_zk.h: a ZooKeeper session, behind one class (zk.c is the only file
    that includes zookeeper.h, whose `zsock_t` clashes with czmq's: this
    header includes neither).

    Paths given to the class are relative to the cluster's PATH (the part
    of the connect string after the hosts): "map", "groups/0"; "" is PATH.
    Watches are one-shot; a fired watch sets its bit in a pending mask the
    owner takes with zcq_zk_events, and makes zcq_zk_fd readable.

    THREAD SAFETY: every function but zcq_zk_lease_us is for the owner's
    thread. The client's completion thread only runs s_watcher and
    s_ping_done, which touch the pending mask (under a lock), the signal
    pipe and the lease (an atomic).
*/
#ifndef ZCQ_ZK_H_INCLUDED
#define ZCQ_ZK_H_INCLUDED

#include "zcq_error.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct zcq_zk_t zcq_zk_t;

#define ZCQ_ZK_PATH_MAX 512

//  Watch bits: what changed. SESSION: the session's state changed.
enum {
    ZCQ_ZK_SESSION = 1u << 0,
    ZCQ_ZK_MAP = 1u << 1,
    ZCQ_ZK_GROUPS = 1u << 2,
    ZCQ_ZK_NODES = 1u << 3,
};

typedef enum {
    ZCQ_ZK_CONNECTING, //  no server now; the session may still live
    ZCQ_ZK_CONNECTED,
    ZCQ_ZK_EXPIRED, //  the session is gone: renew it (zcq_zk_renew)
} zcq_zk_state_t;

//  The monotonic clock (CLOCK_MONOTONIC, as zclock_usecs) in microseconds.
int64_t zcq_zk_now_us (void);

//  Split `HOST:PORT[,HOST:PORT...]/PATH` into hosts and PATH; ZCQ_INVALID
//  with a reason when the hosts or the path are missing or malformed (the
//  path: `/`-separated names of [A-Za-z0-9._-], not `.` or `..`, no `/`
//  at the end, not the root).
zcq_err_t zcq_zk_parse (const char *connect, char *hosts, size_t hosts_size, char *path,
                        size_t path_size, char *error, size_t size);

//  Start a session (it connects in the background). session_ms is asked
//  for; the server may grant another (zcq_zk_session_ms).
zcq_err_t zcq_zk_new (zcq_zk_t **self_p, const char *connect, int session_ms, char *error,
                      size_t size);
//  Close the session (its ephemeral znodes go at once). Safe on NULL.
void zcq_zk_destroy (zcq_zk_t **self_p);
//  Wait up to timeout_ms for the session to be connected; ZCQ_UNAVAILABLE
//  with a reason when it is not.
zcq_err_t zcq_zk_wait_connected (zcq_zk_t *self, int timeout_ms, char *error, size_t size);
//  After expiry: close the handle, start a new session. The old session's
//  id stays known (zcq_zk_previous_session) so that its leftovers can be
//  told from another process's.
zcq_err_t zcq_zk_renew (zcq_zk_t *self, char *error, size_t size);

zcq_zk_state_t zcq_zk_state (zcq_zk_t *self);
//  The session timeout the server granted (or the one asked for, before).
int zcq_zk_session_ms (zcq_zk_t *self);
int64_t zcq_zk_session (zcq_zk_t *self);
int64_t zcq_zk_previous_session (zcq_zk_t *self);
//  The cluster's PATH, e.g. "/zcqrs/prod".
const char *zcq_zk_path (zcq_zk_t *self);

//  A file descriptor that is readable while events are pending.
int zcq_zk_fd (zcq_zk_t *self);
//  Take the pending watch bits (and drain the fd).
unsigned zcq_zk_events (zcq_zk_t *self);

//  Send a ping (an exists on PATH) unless one is out. Each ping that comes
//  back moves the lease to the time it was sent: the server had heard from
//  this session then, so the session lives at least a timeout past it.
void zcq_zk_ping (zcq_zk_t *self);
//  The lease: the send time (zcq_zk_now_us) of the newest ping answered, or
//  of the session's start. Any thread.
int64_t zcq_zk_lease_us (zcq_zk_t *self);

//  The znode's data (malloc'ed, NUL-terminated, the caller frees), its
//  version and ephemeral owner (0: persistent); watch is 0 or one watch bit.
//  ZCQ_NOT_FOUND when there is no such znode.
typedef struct {
    int32_t version;
    int64_t owner;
} zcq_zk_stat_t;
zcq_err_t zcq_zk_get (zcq_zk_t *self, const char *path, unsigned watch, char **data, size_t *len,
                      zcq_zk_stat_t *stat, char *error, size_t size);
//  Whether a znode exists; ZCQ_NOT_FOUND when not.
zcq_err_t zcq_zk_exists (zcq_zk_t *self, const char *path, zcq_zk_stat_t *stat, char *error,
                         size_t size);
//  The children's names, a NULL-terminated array the caller frees with
//  zcq_zk_names_free.
zcq_err_t zcq_zk_children (zcq_zk_t *self, const char *path, unsigned watch, char ***names,
                           char *error, size_t size);
void zcq_zk_names_free (char ***names_p);
//  Create a znode; ZCQ_CONFLICT when it exists, ZCQ_NOT_FOUND when its
//  parent does not.
zcq_err_t zcq_zk_create (zcq_zk_t *self, const char *path, const char *data, size_t len,
                         bool ephemeral, char *error, size_t size);
//  Create PATH and its parents as empty persistent znodes where missing.
zcq_err_t zcq_zk_create_root (zcq_zk_t *self, char *error, size_t size);
//  Delete a znode at version (-1: any); ZCQ_CONFLICT on another version.
zcq_err_t zcq_zk_delete (zcq_zk_t *self, const char *path, int32_t version, char *error,
                         size_t size);

//  One transaction of creates, sets and checks: all happen or none.
typedef struct {
    enum { ZCQ_ZK_OP_CREATE, ZCQ_ZK_OP_SET, ZCQ_ZK_OP_CHECK } type;
    const char *path;
    const char *data; //  create, set
    size_t len;
    int32_t version; //  set, check: -1 for any (check: exists)
} zcq_zk_op_t;
//  ZCQ_CONFLICT when a version did not match or a znode to create exists,
//  ZCQ_NOT_FOUND when a znode to check or set is missing; the reason names
//  the op's path.
zcq_err_t zcq_zk_multi (zcq_zk_t *self, const zcq_zk_op_t *ops, size_t count, char *error,
                        size_t size);

#endif
