/*  cluster_cli.c: `zcqrs cluster create` and `zcqrs cluster status`, the
    operator's actions on a cluster's metadata in ZooKeeper (cluster.md
    section 2; docs/cluster.md has the znode layout).

        zcqrs cluster create --zk HOST:PORT[,...]/PATH --groups G --replicas R
                             [--min-insync M] [--slots S]
        zcqrs cluster status --zk HOST:PORT[,...]/PATH

    `status` prints the document of the `cluster` query op (ok, id, slots,
    map_version, map, groups, nodes) as JSON: one line when stdout is not
    a terminal (or with --json), indented on a terminal (or with --text).
    `create` prints what it created: a sentence on a terminal, else one
    JSON line {ok, cluster, slots, groups, replicas, min_insync}. Errors go
    to stderr. Exit codes as the rest of zcqrs: 0 ok, 1 refused (a cluster
    exists, no cluster, damaged metadata), 2 usage, 3 ZooKeeper did not
    answer.
*/
#include "cluster_cli.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: zcqrs cluster create --zk HOST:PORT[,HOST:PORT...]/PATH --groups G\n"
                  "                            [--replicas R] [--min-insync M] [--slots S]\n"
                  "       zcqrs cluster status --zk HOST:PORT[,HOST:PORT...]/PATH\n"
                  "\n"
                  "  --groups G      groups (replicated logs), 1..S\n"
                  "  --replicas R    replicas of each group, 1..9 (default 1)\n"
                  "  --min-insync M  copies a commit needs, 1..R (default min(2, R))\n"
                  "  --slots S       slots, 1..16384 (default 16384)\n"
                  "  --json, --text  the output: JSON Lines or text (default: text on a\n"
                  "                  terminal, JSON Lines otherwise)\n");
}

//  A whole decimal number in min..max, or false with a message.
static bool
s_number (const char *flag, const char *text, long min, long max, long *number)
{
    char *end;
    errno = 0;
    //  digits only (strtol alone would take leading spaces and a `+`)
    bool digits = text && ((text[0] >= '0' && text[0] <= '9') || text[0] == '-');
    long parsed = digits ? strtol (text, &end, 10) : 0;
    if (!digits || errno || end == text || *end || parsed < min || parsed > max) {
        fprintf (stderr, "zcqrs cluster: %s '%s' is not a whole number from %ld to %ld\n", flag,
                 text ? text : "", min, max);
        return false;
    }
    *number = parsed;
    return true;
}

static int
s_exit_code (zcq_err_t err)
{
    return err == ZCQ_OK ? 0 : err == ZCQ_UNAVAILABLE ? 3 : err == ZCQ_INVALID ? 2 : 1;
}

static int
s_create (const char *zk, const char *groups_text, const char *replicas_text,
          const char *min_insync_text, const char *slots_text, int timeout_ms, bool json)
{
    long slots = ZCQ_CLUSTER_SLOTS_MAX, groups, replicas = 1, min_insync;
    if (!groups_text) {
        fprintf (stderr, "zcqrs cluster create: needs --groups G\n");
        return 2;
    }
    if ((slots_text && !s_number ("--slots", slots_text, 1, ZCQ_CLUSTER_SLOTS_MAX, &slots))
        || !s_number ("--groups", groups_text, 1, slots, &groups)
        || (replicas_text
            && !s_number ("--replicas", replicas_text, 1, ZCQ_CLUSTER_REPLICAS_MAX, &replicas)))
        return 2;
    min_insync = replicas < 2 ? replicas : 2;
    if (min_insync_text && !s_number ("--min-insync", min_insync_text, 1, replicas, &min_insync))
        return 2;
    zcq_cluster_config_t config
        = { (uint32_t) slots, (int) groups, (int) replicas, (int) min_insync };
    char error[512];
    zcq_err_t err = zcq_cluster_create (zk, &config, timeout_ms, error, sizeof error);
    if (err != ZCQ_OK) {
        fprintf (stderr, "zcqrs cluster create: %s\n", error);
        return s_exit_code (err);
    }
    const char *path = strchr (zk, '/');
    if (!json) {
        printf ("cluster created at %s: %ld slots, %ld groups, %ld replicas, min-insync %ld\n",
                path, slots, groups, replicas, min_insync);
        return 0;
    }
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    if (writer && doc) {
        zcq_writer_map (writer, 6);
        zcq_writer_str (writer, "ok");
        zcq_writer_bool (writer, true);
        zcq_writer_str (writer, "cluster");
        zcq_writer_str (writer, path);
        zcq_writer_str (writer, "slots");
        zcq_writer_int (writer, slots);
        zcq_writer_str (writer, "groups");
        zcq_writer_int (writer, groups);
        zcq_writer_str (writer, "replicas");
        zcq_writer_int (writer, replicas);
        zcq_writer_str (writer, "min_insync");
        zcq_writer_int (writer, min_insync);
    }
    //  the cluster is created: only the printing can fail now
    if (writer && doc && zcq_writer_ok (writer)
        && zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL) == ZCQ_OK)
        zcq_json_print (stdout, zcq_doc_root (doc), false);
    else
        fprintf (stderr, "zcqrs cluster create: created at %s, but out of memory\n", path);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
    return 0;
}

static int
s_status (const char *zk, int timeout_ms, bool json)
{
    zcq_cluster_view_t *view;
    char error[512];
    zcq_err_t err = zcq_cluster_status (zk, timeout_ms, &view, error, sizeof error);
    if (err != ZCQ_OK) {
        fprintf (stderr, "zcqrs cluster status: %s\n", error);
        return s_exit_code (err);
    }
    zcq_writer_t *writer = zcq_writer_new ();
    zcq_doc_t *doc = zcq_doc_new ();
    int rc = 0;
    if (writer && doc) {
        size_t mark = zcq_writer_map_open (writer);
        zcq_writer_str (writer, "ok");
        zcq_writer_bool (writer, true);
        size_t pairs = 1 + zcq_cluster_view_encode (view, writer, NULL);
        zcq_writer_map_close (writer, mark, pairs);
    }
    if (!writer || !doc || !zcq_writer_ok (writer)
        || zcq_doc_decode (doc, zcq_writer_data (writer), zcq_writer_size (writer), NULL)) {
        fprintf (stderr, "zcqrs cluster status: out of memory\n");
        rc = 1;
    }
    else
        zcq_json_print (stdout, zcq_doc_root (doc), !json);
    zcq_doc_destroy (&doc);
    zcq_writer_destroy (&writer);
    zcq_cluster_view_release (&view);
    return rc;
}

int
zcq_cluster_cli (int argc, char **argv, int timeout_ms, bool json)
{
    if (argc < 1 || (strcmp (argv[0], "create") && strcmp (argv[0], "status")))
        return -1; //  not an operator action: the `cluster` query op
    const char *zk = NULL, *groups = NULL, *replicas = NULL, *min_insync = NULL, *slots = NULL;
    struct {
        const char *flag;
        const char **target;
        bool create_only;
    } options[] = {
        { "--zk", &zk, false },
        { "--groups", &groups, true },
        { "--replicas", &replicas, true },
        { "--min-insync", &min_insync, true },
        { "--slots", &slots, true },
    };
    bool create = strcmp (argv[0], "create") == 0;
    for (int index = 1; index < argc; index++) {
        const char *word = argv[index];
        if (strcmp (word, "--help") == 0 || strcmp (word, "-h") == 0) {
            s_usage (stdout);
            return 0;
        }
        if (strcmp (word, "--json") == 0 || strcmp (word, "--text") == 0) {
            json = word[2] == 'j';
            continue;
        }
        bool matched = false;
        for (size_t option = 0; option < sizeof options / sizeof options[0]; option++)
            if (strcmp (word, options[option].flag) == 0
                && (create || !options[option].create_only)) {
                if (index + 1 >= argc) {
                    fprintf (stderr, "zcqrs cluster: %s needs a value\n", word);
                    return 2;
                }
                *options[option].target = argv[++index];
                matched = true;
            }
        if (!matched) {
            fprintf (stderr, "zcqrs cluster %s: unexpected %s\n", argv[0], word);
            s_usage (stderr);
            return 2;
        }
    }
    if (!zk) {
        fprintf (stderr, "zcqrs cluster %s: needs --zk HOST:PORT[,HOST:PORT...]/PATH\n", argv[0]);
        return 2;
    }
    return create ? s_create (zk, groups, replicas, min_insync, slots, timeout_ms, json)
                  : s_status (zk, timeout_ms, json);
}
