/*  backup.c: the query op `backup`, answered by a thread of its own
    (engine/backup.c does the work).

        query router --backup--> [backup thread] --answered--> query router

    DESIGN
    1.  A backup takes seconds on a large store (a checkpoint, files
        copied and synced): on the query router's thread it would hold up
        every query behind it. The thread answers it when it is done, and
        the router goes on meanwhile.
    2.  One backup at a time: a second, while one runs, is answered
        `unavailable` at once; a node asked for backups in a loop does one.
    3.  The thread owns the query from the moment it is handed over until
        it sends it back answered; at stop the router waits for it (the
        backup then finishes, or fails and removes what it made).
    4.  Test hook: while the file $ZCQ_BACKUP_HOLD_FILE exists (at most
        S_HOLD_MS), a backup waits before it starts, so that a test can
        ask for a second one while the first surely runs.
*/
#include "zcq_read.h"
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#define S_DIR_MAX 3800  //  bytes of a backup dir's path (engine/backup.c keeps room)
#define S_HOLD_MS 60000 //  DESIGN 4

struct zcq_backups_t {
    zcq_query_worker_t args; //  the backup thread's (zcq_query_worker)
    zactor_t *worker;
    bool busy; //  DESIGN 2: a backup is on the thread
};

//  Answer one `backup` query: {op, dir} -> {dir, position, views, bytes}.
static void
s_op_backup (const zcq_node_env_t *env, zcq_writer_t *writer, zcq_query_t *query)
{
    const zcq_value_t *value = zcq_value_get (query->root, "dir");
    const char *text;
    size_t length;
    if (!value || !zcq_value_str (value, &text, &length)) {
        zcq_query_fail (query, ZCQ_INVALID, "'dir' (a string, an absolute path) is required");
        return;
    }
    char dir[S_DIR_MAX + 1];
    if (length == 0 || length > S_DIR_MAX || memchr (text, 0, length)) {
        zcq_query_fail (query, ZCQ_INVALID, "'dir' must be a path of 1 to %d bytes", S_DIR_MAX);
        return;
    }
    memcpy (dir, text, length);
    dir[length] = 0;
    const char *hold = getenv ("ZCQ_BACKUP_HOLD_FILE"); //  DESIGN 4
    for (int64_t until = zclock_mono () + S_HOLD_MS;
         hold && *hold && access (hold, F_OK) == 0 && zclock_mono () < until;)
        zclock_sleep (5);
    zcq_backup_info_t info;
    char error[512];
    zcq_err_t err = zcq_backup_take (env->store, env->config->data, dir, env->config->node,
                                     env->domain->name, &info, error, sizeof error);
    if (err != ZCQ_OK) {
        zcq_query_fail (query, err, "%s", error);
        return;
    }
    size_t count;
    size_t mark = zcq_query_reply_open (query, writer, &count);
    zcq_writer_str (writer, "dir");
    zcq_writer_str (writer, dir);
    zcq_writer_str (writer, "position");
    zcq_writer_uint (writer, info.position);
    zcq_writer_str (writer, "views");
    zcq_writer_array (writer, info.view_count);
    for (size_t index = 0; index < info.view_count; index++) {
        zcq_writer_map (writer, 2);
        zcq_writer_str (writer, "name");
        zcq_writer_str (writer, info.views[index].name);
        zcq_writer_str (writer, "position");
        zcq_writer_uint (writer, info.views[index].position);
    }
    zcq_writer_str (writer, "bytes");
    zcq_writer_uint (writer, info.bytes);
    count += 4;
    zcq_query_reply_close (query, writer, mark, count);
    zcq_backup_info_clear (&info);
}

//  --------------------------------------------------------------------------
//  On the query router's thread

zcq_backups_t *
zcq_backups_new (const zcq_node_env_t *env)
{
    zcq_backups_t *self = calloc (1, sizeof (zcq_backups_t));
    if (!self)
        return NULL;
    //  DESIGN 3: a thread of its own, answering with s_op_backup
    self->args = (zcq_query_worker_t) { env, "zcq-backup", s_op_backup };
    self->worker = zactor_new (zcq_query_worker, &self->args);
    if (!self->worker) {
        free (self);
        return NULL;
    }
    return self;
}

void
zcq_backups_destroy (zcq_backups_t **self_p)
{
    zcq_backups_t *self = *self_p;
    if (!self)
        return;
    if (self->busy) {
        //  DESIGN 3: the running backup first
        zcq_query_t *query = NULL;
        if (zmq_recv (zsock_resolve (self->worker), &query, sizeof query, 0) == sizeof query)
            zcq_query_destroy (&query);
    }
    zactor_destroy (&self->worker);
    free (self);
    *self_p = NULL;
}

bool
zcq_backups_add (zcq_backups_t *self, zcq_query_t *query)
{
    if (self->busy) {
        zcq_query_fail (query, ZCQ_UNAVAILABLE, "a backup is running; one at a time");
        return false;
    }
    if (zmq_send (zsock_resolve (self->worker), &query, sizeof query, 0) != sizeof query) {
        zcq_query_fail (query, ZCQ_INTERNAL, "cannot hand the backup to its thread");
        return false;
    }
    self->busy = true;
    return true;
}

zsock_t *
zcq_backups_socket (zcq_backups_t *self)
{
    return zactor_sock (self->worker);
}

zcq_query_t *
zcq_backups_take (zcq_backups_t *self)
{
    zcq_query_t *query = NULL;
    if (zmq_recv (zsock_resolve (self->worker), &query, sizeof query, ZMQ_DONTWAIT) != sizeof query)
        return NULL;
    self->busy = false;
    return query;
}
