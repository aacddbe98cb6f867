/*  zk.c: a ZooKeeper session through the C client (libzookeeper_mt), the
    only file that includes zookeeper.h.

    DESIGN
    1.  The C client runs watchers and completions one at a time on its
        completion thread. They never call a synchronous zoo_* function or
        zookeeper_close (they would wait for that very thread): s_watcher
        sets bits in a pending mask under a lock and writes a byte to a
        pipe when the mask was empty; s_ping_done moves an atomic lease.
        Everything else runs on the owner's thread.
    2.  Connection loss is not expiry: while CONNECTING the session may
        live on and watches survive; only ZOO_EXPIRED_SESSION_STATE makes
        the owner renew the handle (a new session) and redo what belonged
        to the old one (ephemeral znodes, watches).
    3.  The lease: each ping records its send time; when its answer comes
        back, the server had heard from the session at or after that time,
        so the session cannot expire before lease + timeout (the server
        rounds expiry up, never down). A leader that keeps the lease
        younger than two thirds of the timeout cannot outlive its session
        (cluster.md 6.5), whatever the client library notices and when.
    4.  The client connects without a chroot and this class prefixes PATH
        itself, so that `cluster create` can make PATH's parents.
    5.  Error codes become zcq_err_t plus a sentence naming the path.
*/
#include "zcq_zk.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#define THREADED //  the synchronous API of libzookeeper_mt
#include <zookeeper/zookeeper.h>

struct zcq_zk_t {
    zhandle_t *handle;
    char hosts[1024];
    char path[ZCQ_ZK_PATH_MAX];
    int session_ms; //  asked for
    int64_t previous_session;
    pthread_mutex_t lock; //  guards pending and expired (DESIGN 1)
    unsigned pending;
    bool expired;
    int signal[2]; //  pipe: readable while pending != 0
    atomic_int_fast64_t lease_us;
    atomic_bool ping_out;
    atomic_int_fast64_t ping_sent_us;
};

int64_t
zcq_zk_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

//  --------------------------------------------------------------------------
//  Errors (DESIGN 5)

static zcq_err_t
s_error (int rc, const char *what, const char *path, char *error, size_t size)
{
    zcq_err_t err;
    switch (rc) {
        case ZOK: return ZCQ_OK;
        case ZNONODE: err = ZCQ_NOT_FOUND; break;
        case ZNODEEXISTS:
        case ZBADVERSION:
        case ZNOTEMPTY: err = ZCQ_CONFLICT; break;
        case ZNOAUTH:
        case ZAUTHFAILED:
        case ZINVALIDACL: err = ZCQ_DENIED; break;
        case ZBADARGUMENTS: err = ZCQ_INVALID; break;
        case ZCONNECTIONLOSS:
        case ZOPERATIONTIMEOUT:
        case ZSESSIONEXPIRED:
        case ZINVALIDSTATE:
        case ZSESSIONMOVED:
        case ZCLOSING: err = ZCQ_UNAVAILABLE; break;
        case ZMARSHALLINGERROR: err = ZCQ_CORRUPT; break;
        default: err = ZCQ_INTERNAL; break;
    }
    if (error && size)
        snprintf (error, size, "zookeeper: %s %s: %s", what, path, zerror (rc));
    return err;
}

//  PATH + "/" + relative, or PATH for "".
static bool
s_full_path (zcq_zk_t *self, const char *relative, char *full, size_t capacity)
{
    int written = *relative ? snprintf (full, capacity, "%s/%s", self->path, relative)
                            : snprintf (full, capacity, "%s", self->path);
    return written > 0 && (size_t) written < capacity;
}

#define S_FULL_PATH(full, relative)                                                     \
    char full[ZCQ_ZK_PATH_MAX + 128];                                                   \
    if (!s_full_path (self, relative, full, sizeof full)) {                             \
        snprintf (error, size, "zookeeper: path %s/%s too long", self->path, relative); \
        return ZCQ_INVALID;                                                             \
    }

//  --------------------------------------------------------------------------
//  The completion thread's side (DESIGN 1)

static void
s_raise (zcq_zk_t *self, unsigned bits, bool expired)
{
    pthread_mutex_lock (&self->lock);
    bool was_idle = self->pending == 0;
    self->pending |= bits;
    if (expired)
        self->expired = true;
    if (was_idle) {
        char byte = 1;
        if (write (self->signal[1], &byte, 1) < 0) {
            //  a full pipe is readable already: nothing is lost
        }
    }
    pthread_mutex_unlock (&self->lock);
}

static void
s_watcher (zhandle_t *handle, int type, int state, const char *path, void *context)
{
    zcq_zk_t *self = (zcq_zk_t *) zoo_get_context (handle);
    if (!self)
        return;
    if (type == ZOO_SESSION_EVENT)
        s_raise (self, ZCQ_ZK_SESSION, state == ZOO_EXPIRED_SESSION_STATE);
    else
        //  a data or child watch: its bit travels as the watcher's context
        s_raise (self, (unsigned) (uintptr_t) context, false);
}

static void
s_ping_done (int rc, const struct Stat *stat, const void *data)
{
    zcq_zk_t *self = (zcq_zk_t *) data;
    if (rc == ZOK || rc == ZNONODE)
        atomic_store (&self->lease_us, atomic_load (&self->ping_sent_us));
    atomic_store (&self->ping_out, false);
}

//  --------------------------------------------------------------------------
//  Sessions

static bool
s_path_name_ok (const char *name, size_t len)
{
    if (len == 0 || (len == 1 && name[0] == '.') || (len == 2 && !memcmp (name, "..", 2)))
        return false;
    for (size_t at = 0; at < len; at++) {
        char ch = name[at];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

zcq_err_t
zcq_zk_parse (const char *connect, char *hosts, size_t hosts_size, char *path, size_t path_size,
              char *error, size_t size)
{
    const char *slash = connect ? strchr (connect, '/') : NULL;
    if (!slash || slash == connect) {
        snprintf (error, size,
                  "'%s' is not HOST:PORT[,HOST:PORT...]/PATH (the cluster's path is missing)",
                  connect ? connect : "");
        return ZCQ_INVALID;
    }
    size_t hosts_len = (size_t) (slash - connect);
    size_t path_len = strlen (slash);
    if (hosts_len >= hosts_size || path_len >= path_size) {
        snprintf (error, size, "'%s' is too long", connect);
        return ZCQ_INVALID;
    }
    //  hosts: HOST:PORT, comma-separated, a port on each
    for (const char *host = connect; host < slash;) {
        const char *comma = memchr (host, ',', (size_t) (slash - host));
        const char *end = comma ? comma : slash;
        const char *colon = NULL;
        for (const char *at = host; at < end; at++)
            if (*at == ':')
                colon = at;
        bool port_ok = colon && colon > host && colon + 1 < end;
        for (const char *at = colon ? colon + 1 : end; port_ok && at < end; at++)
            port_ok = *at >= '0' && *at <= '9';
        for (const char *at = host; port_ok && at < end; at++)
            port_ok = *at > ' ' && *at < 0x7f;
        if (!port_ok) {
            snprintf (error, size, "'%.*s' in '%s' is not HOST:PORT", (int) (end - host), host,
                      connect);
            return ZCQ_INVALID;
        }
        host = comma ? comma + 1 : slash;
    }
    //  path: /name/name..., not the root
    const char *name = slash + 1;
    while (true) {
        const char *next = strchr (name, '/');
        size_t len = next ? (size_t) (next - name) : strlen (name);
        if (!s_path_name_ok (name, len)) {
            snprintf (error, size,
                      "'%s' is not a cluster path: names of letters, digits, '.', '_' and '-' "
                      "separated by '/', such as /zcqrs/prod",
                      slash);
            return ZCQ_INVALID;
        }
        if (!next)
            break;
        name = next + 1;
    }
    memcpy (hosts, connect, hosts_len);
    hosts[hosts_len] = 0;
    memcpy (path, slash, path_len + 1);
    return ZCQ_OK;
}

static zcq_err_t
s_open (zcq_zk_t *self, char *error, size_t size)
{
    pthread_mutex_lock (&self->lock);
    self->expired = false;
    pthread_mutex_unlock (&self->lock);
    atomic_store (&self->ping_out, false);
    atomic_store (&self->lease_us, zcq_zk_now_us ()); //  DESIGN 3: before the session
    self->handle = zookeeper_init (self->hosts, s_watcher, self->session_ms, NULL, self, 0);
    if (!self->handle) {
        snprintf (error, size, "zookeeper: cannot start a session with %s: %s", self->hosts,
                  strerror (errno));
        return errno == EINVAL ? ZCQ_INVALID : ZCQ_UNAVAILABLE;
    }
    return ZCQ_OK;
}

zcq_err_t
zcq_zk_new (zcq_zk_t **self_p, const char *connect, int session_ms, char *error, size_t size)
{
    *self_p = NULL;
    zcq_zk_t *self = calloc (1, sizeof (zcq_zk_t));
    if (!self) {
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    zcq_err_t err = zcq_zk_parse (connect, self->hosts, sizeof self->hosts, self->path,
                                  sizeof self->path, error, size);
    if (err != ZCQ_OK) {
        free (self);
        return err;
    }
    self->session_ms = session_ms;
    pthread_mutex_init (&self->lock, NULL);
    if (pipe2 (self->signal, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf (error, size, "cannot make a pipe: %s", strerror (errno));
        pthread_mutex_destroy (&self->lock);
        free (self);
        return ZCQ_INTERNAL;
    }
    //  the library logs to stderr; its INFO lines are noise for zcqrs
    zoo_set_debug_level (ZOO_LOG_LEVEL_WARN);
    err = s_open (self, error, size);
    if (err != ZCQ_OK) {
        zcq_zk_destroy (&self);
        return err;
    }
    *self_p = self;
    return ZCQ_OK;
}

void
zcq_zk_destroy (zcq_zk_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zcq_zk_t *self = *self_p;
    if (self->handle)
        zookeeper_close (self->handle); //  runs the completions left, here
    close (self->signal[0]);
    close (self->signal[1]);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

zcq_err_t
zcq_zk_wait_connected (zcq_zk_t *self, int timeout_ms, char *error, size_t size)
{
    int64_t deadline = zcq_zk_now_us () + (int64_t) timeout_ms * 1000;
    while (zcq_zk_state (self) != ZCQ_ZK_CONNECTED) {
        if (zcq_zk_state (self) == ZCQ_ZK_EXPIRED || zcq_zk_now_us () >= deadline) {
            snprintf (error, size, "zookeeper: no session with %s within %d ms", self->hosts,
                      timeout_ms);
            return ZCQ_UNAVAILABLE;
        }
        usleep (5000);
    }
    return ZCQ_OK;
}

zcq_err_t
zcq_zk_renew (zcq_zk_t *self, char *error, size_t size)
{
    if (self->handle) {
        const clientid_t *client = zoo_client_id (self->handle);
        if (client && client->client_id)
            self->previous_session = client->client_id;
        zookeeper_close (self->handle);
        self->handle = NULL;
    }
    return s_open (self, error, size);
}

zcq_zk_state_t
zcq_zk_state (zcq_zk_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool expired = self->expired;
    pthread_mutex_unlock (&self->lock);
    if (expired || !self->handle)
        return ZCQ_ZK_EXPIRED;
    int state = zoo_state (self->handle);
    if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE)
        return ZCQ_ZK_EXPIRED;
    return state == ZOO_CONNECTED_STATE ? ZCQ_ZK_CONNECTED : ZCQ_ZK_CONNECTING;
}

int
zcq_zk_session_ms (zcq_zk_t *self)
{
    int granted = self->handle && zoo_state (self->handle) == ZOO_CONNECTED_STATE
                    ? zoo_recv_timeout (self->handle)
                    : 0;
    return granted > 0 ? granted : self->session_ms;
}

int64_t
zcq_zk_session (zcq_zk_t *self)
{
    const clientid_t *client = self->handle ? zoo_client_id (self->handle) : NULL;
    return client ? client->client_id : 0;
}

int64_t
zcq_zk_previous_session (zcq_zk_t *self)
{
    return self->previous_session;
}

const char *
zcq_zk_path (zcq_zk_t *self)
{
    return self->path;
}

int
zcq_zk_fd (zcq_zk_t *self)
{
    return self->signal[0];
}

unsigned
zcq_zk_events (zcq_zk_t *self)
{
    pthread_mutex_lock (&self->lock);
    unsigned events = self->pending;
    self->pending = 0;
    char bytes[64];
    while (read (self->signal[0], bytes, sizeof bytes) > 0) {
    }
    pthread_mutex_unlock (&self->lock);
    return events;
}

void
zcq_zk_ping (zcq_zk_t *self)
{
    if (!self->handle || atomic_load (&self->ping_out))
        return;
    atomic_store (&self->ping_sent_us, zcq_zk_now_us ());
    atomic_store (&self->ping_out, true);
    if (zoo_aexists (self->handle, self->path, 0, s_ping_done, self) != ZOK)
        atomic_store (&self->ping_out, false);
}

int64_t
zcq_zk_lease_us (zcq_zk_t *self)
{
    return atomic_load (&self->lease_us);
}

//  --------------------------------------------------------------------------
//  Reads and writes (the owner's thread only)

zcq_err_t
zcq_zk_get (zcq_zk_t *self, const char *path, unsigned watch, char **data, size_t *len,
            zcq_zk_stat_t *stat, char *error, size_t size)
{
    S_FULL_PATH (full, path);
    *data = NULL;
    int capacity = 4096;
    while (true) {
        char *buffer = malloc ((size_t) capacity + 1);
        if (!buffer) {
            snprintf (error, size, "out of memory");
            return ZCQ_NOMEM;
        }
        int got = capacity;
        struct Stat info;
        int rc = watch ? zoo_wget (self->handle, full, s_watcher, (void *) (uintptr_t) watch,
                                   buffer, &got, &info)
                       : zoo_get (self->handle, full, 0, buffer, &got, &info);
        if (rc != ZOK) {
            free (buffer);
            return s_error (rc, "get", full, error, size);
        }
        if (info.dataLength > capacity) {
            //  it grew past the buffer: read again with room for it
            free (buffer);
            capacity = info.dataLength;
            continue;
        }
        if (got < 0)
            got = 0; //  a znode without data
        buffer[got] = 0;
        *data = buffer;
        if (len)
            *len = (size_t) got;
        if (stat)
            *stat = (zcq_zk_stat_t) { info.version, info.ephemeralOwner };
        return ZCQ_OK;
    }
}

zcq_err_t
zcq_zk_exists (zcq_zk_t *self, const char *path, zcq_zk_stat_t *stat, char *error, size_t size)
{
    S_FULL_PATH (full, path);
    struct Stat info;
    int rc = zoo_exists (self->handle, full, 0, &info);
    if (rc == ZOK && stat)
        *stat = (zcq_zk_stat_t) { info.version, info.ephemeralOwner };
    return s_error (rc, "exists", full, error, size);
}

zcq_err_t
zcq_zk_children (zcq_zk_t *self, const char *path, unsigned watch, char ***names, char *error,
                 size_t size)
{
    S_FULL_PATH (full, path);
    *names = NULL;
    struct String_vector children = { 0, NULL };
    int rc = watch ? zoo_wget_children (self->handle, full, s_watcher, (void *) (uintptr_t) watch,
                                        &children)
                   : zoo_get_children (self->handle, full, 0, &children);
    if (rc != ZOK)
        return s_error (rc, "children", full, error, size);
    char **list = calloc ((size_t) children.count + 1, sizeof (char *));
    for (int32_t index = 0; list && index < children.count; index++) {
        list[index] = strdup (children.data[index]);
        if (!list[index]) {
            zcq_zk_names_free (&list);
            break;
        }
    }
    deallocate_String_vector (&children);
    if (!list) {
        snprintf (error, size, "out of memory");
        return ZCQ_NOMEM;
    }
    *names = list;
    return ZCQ_OK;
}

void
zcq_zk_names_free (char ***names_p)
{
    if (!names_p || !*names_p)
        return;
    for (char **name = *names_p; *name; name++)
        free (*name);
    free (*names_p);
    *names_p = NULL;
}

zcq_err_t
zcq_zk_create (zcq_zk_t *self, const char *path, const char *data, size_t len, bool ephemeral,
               char *error, size_t size)
{
    S_FULL_PATH (full, path);
    int rc = zoo_create (self->handle, full, data, data ? (int) len : -1, &ZOO_OPEN_ACL_UNSAFE,
                         ephemeral ? ZOO_EPHEMERAL : ZOO_PERSISTENT, NULL, 0);
    return s_error (rc, "create", full, error, size);
}

zcq_err_t
zcq_zk_create_root (zcq_zk_t *self, char *error, size_t size)
{
    char partial[ZCQ_ZK_PATH_MAX];
    for (const char *slash = strchr (self->path + 1, '/');; slash = strchr (slash + 1, '/')) {
        size_t len = slash ? (size_t) (slash - self->path) : strlen (self->path);
        memcpy (partial, self->path, len);
        partial[len] = 0;
        int rc = zoo_create (self->handle, partial, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
                             NULL, 0);
        if (rc != ZOK && rc != ZNODEEXISTS)
            return s_error (rc, "create", partial, error, size);
        if (!slash)
            return ZCQ_OK;
    }
}

zcq_err_t
zcq_zk_delete (zcq_zk_t *self, const char *path, int32_t version, char *error, size_t size)
{
    S_FULL_PATH (full, path);
    return s_error (zoo_delete (self->handle, full, version), "delete", full, error, size);
}

zcq_err_t
zcq_zk_multi (zcq_zk_t *self, const zcq_zk_op_t *ops, size_t count, char *error, size_t size)
{
    zoo_op_t *zoo_ops = calloc (count, sizeof (zoo_op_t));
    zoo_op_result_t *results = calloc (count, sizeof (zoo_op_result_t));
    char (*paths)[ZCQ_ZK_PATH_MAX + 128] = calloc (count, sizeof *paths);
    zcq_err_t err = ZCQ_OK;
    if (!zoo_ops || !results || !paths) {
        snprintf (error, size, "out of memory");
        err = ZCQ_NOMEM;
    }
    for (size_t index = 0; err == ZCQ_OK && index < count; index++) {
        const zcq_zk_op_t *op = &ops[index];
        if (!s_full_path (self, op->path, paths[index], sizeof paths[index])) {
            snprintf (error, size, "zookeeper: path %s/%s too long", self->path, op->path);
            err = ZCQ_INVALID;
            break;
        }
        if (op->type == ZCQ_ZK_OP_CREATE)
            zoo_create_op_init (&zoo_ops[index], paths[index], op->data,
                                op->data ? (int) op->len : -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
                                NULL, 0);
        else if (op->type == ZCQ_ZK_OP_SET)
            zoo_set_op_init (&zoo_ops[index], paths[index], op->data, (int) op->len, op->version,
                             NULL);
        else
            zoo_check_op_init (&zoo_ops[index], paths[index], op->version);
    }
    if (err == ZCQ_OK) {
        int rc = zoo_multi (self->handle, (int) count, zoo_ops, results);
        if (rc != ZOK) {
            //  name the op that failed (the others report a rollback)
            size_t failed = 0;
            for (size_t index = 0; index < count; index++)
                if (results[index].err != ZOK && results[index].err != ZRUNTIMEINCONSISTENCY) {
                    failed = index;
                    rc = results[index].err;
                    break;
                }
            static const char *const names[] = { "create", "set", "check" };
            err = s_error (rc, names[ops[failed].type], paths[failed], error, size);
        }
    }
    free (zoo_ops);
    free (results);
    free (paths);
    return err;
}
