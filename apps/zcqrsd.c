/*  zcqrsd: the zcqrs daemon. Runs one node with a domain loaded from a
    plugin, until SIGTERM or SIGINT, then stops gracefully: it stops taking
    commands, finishes the commits in flight, closes the store and exits 0.

    Exit codes: 0 after a clean stop, 1 when the node fails at run time,
    2 for bad flags, an unreadable config or a node that cannot start.
    With --restore DIR it starts no node: it makes the data dir of --data
    from the backup in DIR and exits 0, or 1 when it cannot.
*/
#include <limits.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <czmq.h>
#include <zcqrs.h>
#include "bank.h"

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: zcqrsd [options]\n"
             "\n"
             "Runs a zcqrs node (ZCQ/1 command, events and query endpoints).\n"
             "\n"
             "  --data DIR            data directory (default ./zcqrs-data)\n"
             "  --command EP          command endpoint (default tcp://127.0.0.1:7400)\n"
             "  --events EP           events endpoint (default tcp://127.0.0.1:7401)\n"
             "  --query EP            query endpoint (default tcp://127.0.0.1:7402)\n"
             "  --http HOST:PORT      serve /metrics (Prometheus) there (default auto:\n"
             "                        127.0.0.1 at the command port + 80, 7480 for 7400,\n"
             "                        skipped with a warning when taken; none: no HTTP)\n"
             "  --domain NAME|PATH    domain plugin: a name (NAME.so in $ZCQRS_PLUGIN_DIR or\n"
             "                        the plugin dir; `bank` is also built in), or a .so\n"
             "                        exporting zcq_domain_plugin (default bank)\n"
             "  --allow-domain-change open a data dir recorded with another domain (a node\n"
             "                        records its domain in a new data dir, refuses others)\n"
             "  --durability MODE     wal (default) or fsync\n"
             "  --shards N            aggregate shard actors (default: cores)\n"
             "  --node ID             node id (default node1)\n"
             "  --cache N             aggregates cached per shard (default 100000)\n"
             "  --dedup-window S      seconds command ids are kept (default 86400)\n"
             "  --request-limit B     largest request body (default 1048576)\n"
             "  --heartbeat-ms MS     heartbeat interval (default 500)\n"
             "  --max-inflight N      commands in flight before `unavailable` (default 65536)\n"
             "  --max-inflight-per-client N  the same, per connection (default 4096)\n"
             "  --max-connections N   connections taken on the three endpoints (default:\n"
             "                        the file limit less the store's share)\n"
             "  --view-snapshot-every N  events between view snapshots (default 1000000;\n"
             "                        0: none; one is also saved at a clean stop)\n"
             "  --view-threads N      threads hosting the asynchronous views (default 0:\n"
             "                        one per view)\n"
             "  --write-plan PLAN     auto (default), one-loop or split: whether the\n"
             "                        command router, the shards and the log writer share\n"
             "                        one thread (auto: one loop on 1-2 cores)\n"
             "\n"
             "In a cluster (docs/cluster.md):\n"
             "  --cluster HOST:PORT[,HOST:PORT...]/PATH\n"
             "                        join the cluster at PATH in ZooKeeper (made by\n"
             "                        `zcqrs cluster create`); needs --node, and --group\n"
             "                        or --role views; endpoints as others reach them\n"
             "  --group N             the group this node replicates\n"
             "  --role ROLE           replica (default) or views (a read replica of the\n"
             "                        views, in no group)\n"
             "  --views SCOPE         cluster (default), group or none: which groups'\n"
             "                        events feed this node's views\n"
             "  --replication EP      replication endpoint\n"
             "  --zk-session-ms MS    ZooKeeper session timeout (default 4000)\n"
             "\n"
             "  --restore DIR         restore the backup in DIR (made by `zcqrs backup`)\n"
             "                        into the data dir given by --data, which must not\n"
             "                        exist or be empty, check it, and exit\n"
             "  --config FILE         settings from a ZPL file (flags after it override);\n"
             "                        every flag with a value is a setting there, e.g.\n"
             "                        `domain = bank` (examples/zcqrsd.conf)\n"
             "  --log-level LEVEL     error, warn, info (default) or debug: the lines\n"
             "                        written to stderr\n"
             "  --verbose             the same as --log-level debug\n"
             "  --version             the version\n"
             "  --help                this text\n"
             "\n"
             "Endpoints may use port * to let the system choose; the bound ones are\n"
             "printed on start.\n");
}

//  The directories a domain name is looked up in, in order: $ZCQRS_PLUGIN_DIR,
//  the build's plugins/ when this is the zcqrsd of the build tree, the
//  installed plugin dir next to this executable (<bin>/ZCQ_PLUGIN_RELDIR, so
//  an install under any prefix finds its own plugins), and the plugin dir
//  the build was configured with. Returns how many it wrote.
static int
s_plugin_dirs (char dirs[][4096], int max)
{
    int count = 0;
    const char *env = getenv ("ZCQRS_PLUGIN_DIR");
    if (env && *env && count < max)
        snprintf (dirs[count++], sizeof dirs[0], "%s", env);
    char exe[2048]; //  half of a dir's room: exe/RELDIR fits
    ssize_t len = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr (exe, '/');
        if (slash)
            *slash = 0;
        char build[4096];
        if (realpath (ZCQ_BUILD_DIR, build) && strcmp (build, exe) == 0 && count < max)
            snprintf (dirs[count++], sizeof dirs[0], "%s", ZCQ_BUILD_PLUGIN_DIR);
        else if (count < max) {
            char beside[4096];
            snprintf (beside, sizeof beside, "%s/%s", exe, ZCQ_PLUGIN_RELDIR);
            //  shown without the bin/.. when the dir is there
            if (!realpath (beside, dirs[count]))
                snprintf (dirs[count], sizeof dirs[0], "%s", beside);
            count++;
        }
    }
    char configured[4096], beside[4096];
    bool same = count > 0 && realpath (ZCQ_PLUGIN_DIR, configured)
             && realpath (dirs[count - 1], beside) && strcmp (configured, beside) == 0;
    if (!same && count < max)
        snprintf (dirs[count++], sizeof dirs[0], "%s", ZCQ_PLUGIN_DIR);
    return count;
}

//  Load a domain: a path to a shared object, or a name looked up in the
//  plugin directories (and, for `bank`, the copy built into zcqrsd). On
//  failure says why, with every path tried.
static const zcq_domain_t *
s_load_domain (const char *name, void **handle_p)
{
    if (strlen (name) > 255) {
        fprintf (stderr, "zcqrsd: --domain: a name or path of 1 to 255 characters\n");
        return NULL;
    }
    char dirs[4][4096];
    int dir_count = 0;
    char found[4][4096 + 264];
    const char *candidates[4];
    int count = 0;
    if (strchr (name, '/') || strstr (name, ".so"))
        candidates[count++] = name;
    else {
        dir_count = s_plugin_dirs (dirs, 4);
        for (int index = 0; index < dir_count; index++) {
            snprintf (found[index], sizeof found[0], "%.4095s/%.255s.so", dirs[index], name);
            candidates[count++] = found[index];
        }
    }
    for (int index = 0; index < count; index++) {
        const char *path = candidates[index];
        if (dir_count && access (path, F_OK) != 0) {
            zsys_debug ("zcqrsd: no plugin at %s", path);
            continue;
        }
        char error[1024];
        const zcq_domain_t *domain = zcq_domain_open (path, handle_p, error, sizeof error);
        if (!domain) {
            fprintf (stderr, "zcqrsd: %s\n", error);
            return NULL;
        }
        zsys_debug ("zcqrsd: domain %s from %s", domain->name, path);
        return domain;
    }
    if (strcmp (name, "bank") == 0) {
        zsys_debug ("zcqrsd: domain bank built into zcqrsd");
        return zcq_bank_domain ();
    }
    fprintf (stderr, "zcqrsd: no domain plugin named '%s'; looked in:\n", name);
    for (int index = 0; index < count; index++)
        fprintf (stderr, "  %s\n", candidates[index]);
    fprintf (stderr, "give --domain the path of a .so, or set ZCQRS_PLUGIN_DIR\n");
    return NULL;
}

//  --restore: make the data dir of config from the backup in dir, check
//  it, and say so. Returns the exit code: 0 done, 1 refused or failed.
static int
s_restore (const char *dir, zcq_config_t *config)
{
    const char *data = zcq_config_get (config, "data");
    zcq_backup_info_t info;
    char error[1024];
    zcq_err_t err = zcq_backup_restore (dir, data, &info, error, sizeof error);
    if (err != ZCQ_OK) {
        fprintf (stderr, "zcqrsd: cannot restore %s: %s\n", dir, error);
        zcq_config_destroy (&config);
        return 1;
    }
    printf ("zcqrsd: restored %s into %s: log position %llu (node %s, domain %s, taken %s), "
            "%llu bytes\n",
            dir, data, (unsigned long long) info.position, info.node, info.domain, info.time,
            (unsigned long long) info.bytes);
    zcq_backup_info_clear (&info);
    zcq_config_destroy (&config);
    return 0;
}

int
main (int argc, char *argv[])
{
    //  signals are taken by sigwait below, never by a thread (czmq's own
    //  handler is turned off so it does not swallow them)
    zsys_handler_set (NULL);
    zsys_set_logstream (stderr); //  stdout carries the endpoints only
    //  every file the daemon makes (the store's, view snapshots) is the
    //  owner's alone, like the data dir itself (node.c)
    umask (077);
    //  connections cost a descriptor each: take every one the system
    //  allows (the node keeps its connections under what is left after
    //  its store's files: setting max-connections)
    struct rlimit files;
    if (getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit (RLIMIT_NOFILE, &files);
    }
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);

    const char *restore = NULL; //  --restore DIR

    zcq_config_t *config = zcq_config_new ();
    char error[512];
    //  the daemon serves /metrics by default (docs/operations.md); the
    //  library's nodes only when told
    if (config)
        zcq_config_set (config, "http", "auto", error, sizeof error);
    for (int index = 1; index < argc; index++) {
        const char *flag = argv[index];
        if (strcmp (flag, "--version") == 0) {
            printf ("zcqrsd %d.%d.%d\n", ZCQ_VERSION_MAJOR, ZCQ_VERSION_MINOR, ZCQ_VERSION_PATCH);
            zcq_config_destroy (&config);
            return 0;
        }
        if (strcmp (flag, "--help") == 0 || strcmp (flag, "-h") == 0) {
            s_usage (stdout);
            zcq_config_destroy (&config);
            return 0;
        }
        if (strcmp (flag, "--verbose") == 0 || strcmp (flag, "--allow-domain-change") == 0) {
            //  flags without a value: settings set to one
            bool verbose = flag[2] == 'v';
            zcq_config_set (config, verbose ? "log-level" : "allow-domain-change",
                            verbose ? "debug" : "true", error, sizeof error);
            continue;
        }
        if (strcmp (flag, "--restore") == 0 && index + 1 < argc) {
            restore = argv[++index];
            continue;
        }
        if (strncmp (flag, "--", 2) != 0 || index + 1 >= argc) {
            fprintf (stderr, "zcqrsd: %s: %s\n", flag,
                     strncmp (flag, "--", 2) ? "unexpected argument" : "needs a value");
            s_usage (stderr);
            zcq_config_destroy (&config);
            return 2;
        }
        const char *value = argv[++index];
        zcq_err_t err = ZCQ_OK;
        if (strcmp (flag, "--config") == 0)
            err = zcq_config_load (config, value, error, sizeof error);
        else
            err = zcq_config_set (config, flag + 2, value, error, sizeof error);
        if (err != ZCQ_OK) {
            fprintf (stderr, "zcqrsd: %s\n", error);
            if (err == ZCQ_UNKNOWN)
                s_usage (stderr);
            zcq_config_destroy (&config);
            return 2;
        }
    }
    //  the log level first: the lines below are filtered by it
    zcq_log_level_t level = ZCQ_LOG_INFO;
    zcq_log_level_parse (zcq_config_get (config, "log-level"), &level);
    zcq_log_set_level (level);
    for (const char *const *name = zcq_config_names (); *name; name++)
        zsys_debug ("zcqrsd: setting %s = %s", *name, zcq_config_get (config, *name));
    if (restore)
        return s_restore (restore, config);
    void *plugin = NULL;
    const zcq_domain_t *domain = s_load_domain (zcq_config_get (config, "domain"), &plugin);
    if (!domain) {
        zcq_config_destroy (&config);
        return 2;
    }
    zcq_node_t *node;
    zcq_err_t err = zcq_node_start (&node, config, domain, error, sizeof error);
    if (err != ZCQ_OK) {
        fprintf (stderr, "zcqrsd: cannot start: %s\n", error);
        zcq_config_destroy (&config);
        if (plugin)
            zcq_domain_close (&plugin);
        return 2;
    }
    printf ("zcqrsd: node %s ready (domain %s, durability %s, data %s)\n", zcq_node_id (node),
            domain->name, zcq_config_get (config, "durability"), zcq_config_get (config, "data"));
    printf ("command %s\nevents %s\nquery %s\n", zcq_node_endpoint (node, ZCQ_ENDPOINT_COMMAND),
            zcq_node_endpoint (node, ZCQ_ENDPOINT_EVENTS),
            zcq_node_endpoint (node, ZCQ_ENDPOINT_QUERY));
    if (zcq_node_http (node))
        printf ("http %s\n", zcq_node_http (node));
    fflush (stdout);

    int signal_number = 0;
    sigwait (&signals, &signal_number);
    if (zcq_log_enabled (ZCQ_LOG_INFO))
        fprintf (stderr, "zcqrsd: %s: stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    zcq_node_drain (node);
    uint64_t head = zcq_node_head (node); //  final: nothing is in flight
    zcq_node_destroy (&node);
    if (zcq_log_enabled (ZCQ_LOG_INFO))
        fprintf (stderr, "zcqrsd: stopped cleanly at log head %llu\n", (unsigned long long) head);
    zcq_config_destroy (&config);
    if (plugin)
        zcq_domain_close (&plugin);
    return 0;
}
