/*  zcqrs: the command-line client of ZCQ/1.

        zcqrs send AGG KEY TYPE [JSON | name=value ...] [--expect N] [--id ID] [--meta JSON]
        zcqrs get VIEW KEY [--min-position P]
        zcqrs list VIEW [--index I --value V] [--after C] [--limit N] [--all]
        zcqrs count VIEW [--index I --value V]
        zcqrs read --from POS [--limit N]
        zcqrs stream STREAM [--from V] [--limit N]
        zcqrs tail [TOPIC] [--from POS] [--count N]
        zcqrs views | health | stats | cluster
        zcqrs rebuild VIEW
        zcqrs cluster create --zk HOST:PORT[,...]/PATH --groups G [--replicas R]
                             [--min-insync M] [--slots S]
        zcqrs cluster status --zk HOST:PORT[,...]/PATH

    Global options: --command EP, --query EP, --events EP, --timeout MS,
    --json (print the raw reply as JSON), --route (a cluster), --version.
    The endpoints default to ZCQRS_COMMAND, ZCQRS_QUERY and ZCQRS_EVENTS
    from the environment, else to 127.0.0.1:7400-7402. Any flag may be
    written --flag=value.
    Exit codes: 0 ok, 1 the node answered with an error, 2 usage (a bad
    flag value included: every number is checked whole, and the message
    names the flag), 3 no answer in time, 5 `health` of a node that is
    not healthy (its store failed, or a view is not live).

    Strings from the node (ids, keys, messages) reach a terminal: the text
    output escapes their control characters (s_print_text), and the JSON
    output is escaped by json.c.
*/
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>
#include <zcqrs.h>
#include "cluster_cli.h"
#include "json.h"

typedef struct {
    const char *command;
    const char *query;
    const char *events;
    int timeout;
    bool json;
    //  options of the subcommands
    const char *expect;
    const char *id;
    const char *meta;
    const char *index;
    const char *value;
    const char *after;
    const char *limit;
    const char *from;
    const char *count;
    const char *min_position;
    bool all;
    bool route; //  --route: commands straight to their group's leader
    const char *timeout_text;
    char *words[64];
    int word_count;
} s_args_t;

//  The cluster actions parse their own options (apps/cluster_cli.c).
static bool
subcommand_is_cluster (const char *subcommand)
{
    return subcommand && streq (subcommand, "cluster");
}

static void
s_usage (FILE *out)
{
    fprintf (out,
             "usage: zcqrs [--command EP] [--query EP] [--events EP] [--timeout MS] [--json] "
             "[--route] COMMAND ...\n"
             "\n"
             "  send AGG KEY TYPE [JSON | name=value ...] [--expect N] [--id ID] [--meta JSON]\n"
             "  get VIEW KEY [--min-position P]\n"
             "  list VIEW [--index I --value V] [--after CURSOR] [--limit N] [--all]\n"
             "  count VIEW [--index I --value V]\n"
             "  read --from POS [--limit N]\n"
             "  stream STREAM [--from VERSION] [--limit N]\n"
             "  tail [TOPIC] [--from POS] [--count N]    catch up, then follow live\n"
             "  views | health | stats | cluster\n"
             "  rebuild VIEW\n"
             "  cluster create --zk HOST:PORT[,...]/PATH --groups G [--replicas R]\n"
             "                 [--min-insync M] [--slots S]\n"
             "  cluster status --zk HOST:PORT[,...]/PATH\n"
             "\n"
             "Endpoints default to tcp://127.0.0.1:7400 (command), :7401 (events), :7402 "
             "(query).\n"
             "Index values and cursors are JSON when they parse as JSON, else strings.\n"
             "Exit codes: 0 ok, 1 the node refused, 2 usage (a bad flag value too), 3 no\n"
             "answer in time, 5 `health` of a node that is not healthy (a probe).\n"
             "Endpoints may also come from ZCQRS_COMMAND, ZCQRS_QUERY and ZCQRS_EVENTS; any\n"
             "flag may be written --flag=value. --version prints the version.\n"
             "--route (a cluster): send commands straight to their group's leader, found in\n"
             "the cluster map read through --query; without it, any node forwards them.\n");
}

static zcq_client_t *s_client;
static zcq_writer_t *s_writer;
static s_args_t s_args;

//  Print a string from the node so that it cannot drive the terminal:
//  control characters (C0, DEL, and C1 as UTF-8) and bytes that are not
//  UTF-8 print as \n, \r, \t or \xNN, a backslash as \\.
static void
s_print_text (FILE *out, const char *text, size_t len)
{
    const uint8_t *bytes = (const uint8_t *) text;
    size_t at = 0;
    while (at < len) {
        size_t end = at + zcq_utf8_prefix (bytes + at, len - at);
        for (; at < end; at++) {
            uint8_t byte = bytes[at];
            if (byte == '\\')
                fputs ("\\\\", out);
            else if (byte == '\n')
                fputs ("\\n", out);
            else if (byte == '\r')
                fputs ("\\r", out);
            else if (byte == '\t')
                fputs ("\\t", out);
            else if (byte < 0x20 || byte == 0x7f)
                fprintf (out, "\\x%02x", byte);
            else if (byte == 0xc2 && bytes[at + 1] < 0xa0) {
                //  U+0080..U+009F (valid UTF-8, so a second byte follows)
                fprintf (out, "\\xc2\\x%02x", bytes[at + 1]);
                at++;
            }
            else
                fputc (byte, out);
        }
        if (at < len)
            fprintf (out, "\\x%02x", bytes[at++]);
    }
}

//  A string field of a reply, escaped; fallback when absent.
static void
s_print_field (FILE *out, const zcq_value_t *reply, const char *key, const char *fallback)
{
    const char *text;
    size_t len;
    if (zcq_value_str (zcq_value_get (reply, key), &text, &len))
        s_print_text (out, text, len);
    else
        fputs (fallback, out);
}

//  Print a reply: readable by default, JSON with --json. Returns the exit
//  code it deserves.
static int
s_print_reply (const zcq_value_t *reply, void (*readable) (const zcq_value_t *reply))
{
    zcq_err_t status = zcq_reply_status (reply);
    if (s_args.json || (status == ZCQ_OK && !readable)) {
        zcq_json_print (stdout, reply, !s_args.json);
        return status == ZCQ_OK ? 0 : 1;
    }
    if (status != ZCQ_OK) {
        fputs ("error ", stderr);
        s_print_field (stderr, reply, "error", "internal");
        fputs (": ", stderr);
        s_print_field (stderr, reply, "message", "");
        fputc ('\n', stderr);
        const zcq_value_t *version = zcq_value_get (reply, "version");
        if (version)
            fprintf (stderr, "stream version %lld\n",
                     (long long) zcq_value_get_int (reply, "version", 0));
        return 1;
    }
    readable (reply);
    return 0;
}

static int
s_call (zcq_endpoint_t endpoint, const zcq_value_t **reply)
{
    if (!zcq_writer_ok (s_writer)) {
        fprintf (stderr, "zcqrs: out of memory\n");
        return 2;
    }
    zcq_err_t err = zcq_client_call (s_client, endpoint, zcq_writer_data (s_writer),
                                     zcq_writer_size (s_writer), s_args.timeout, reply);
    if (err != ZCQ_OK) {
        fprintf (stderr, "zcqrs: no reply from %s within %d ms\n",
                 endpoint == ZCQ_ENDPOINT_COMMAND ? s_args.command : s_args.query, s_args.timeout);
        return 3;
    }
    return 0;
}

//  Write a value given on the command line: JSON if it parses, else a
//  string.
static void
s_write_loose (const char *text)
{
    zcq_writer_t *probe = zcq_writer_new ();
    char error[128];
    if (probe && zcq_json_encode (text, probe, error, sizeof error))
        zcq_writer_raw (s_writer, zcq_writer_data (probe), zcq_writer_size (probe));
    else
        zcq_writer_str (s_writer, text);
    zcq_writer_destroy (&probe);
}

static void
s_print_sent (const zcq_value_t *reply)
{
    bool duplicate = false;
    zcq_value_bool (zcq_value_get (reply, "duplicate"), &duplicate);
    fputs ("ok ", stdout);
    s_print_field (stdout, reply, "stream", "?");
    printf (" version %lld position %lld events %lld%s\n",
            (long long) zcq_value_get_int (reply, "version", 0),
            (long long) zcq_value_get_int (reply, "position", 0),
            (long long) zcq_value_get_int (reply, "events", 0), duplicate ? " (duplicate)" : "");
}

static int
s_send (void)
{
    if (s_args.word_count < 3) {
        fprintf (stderr, "zcqrs send: needs AGG KEY TYPE\n");
        return 2;
    }
    zcq_writer_t *data = zcq_writer_new ();
    zcq_writer_t *meta = zcq_writer_new ();
    char error[256];
    bool ok = data && meta;
    if (ok && s_args.word_count == 4 && !strchr (s_args.words[3], '='))
        ok = zcq_json_encode (s_args.words[3], data, error, sizeof error);
    else if (ok && s_args.word_count >= 4)
        ok = zcq_json_encode_pairs (s_args.words + 3, s_args.word_count - 3, data, error,
                                    sizeof error);
    if (ok && s_args.meta)
        ok = zcq_json_encode (s_args.meta, meta, error, sizeof error);
    if (!ok) {
        fprintf (stderr, "zcqrs send: %s\n", error);
        zcq_writer_destroy (&data);
        zcq_writer_destroy (&meta);
        return 2;
    }
    zcq_command_req_t command = {
        .id = s_args.id,
        .aggregate = s_args.words[0],
        .key = s_args.words[1],
        .type = s_args.words[2],
        .expect = s_args.expect ? ZCQ_EXPECT (atoll (s_args.expect)) : 0,
        .data = zcq_writer_size (data) ? zcq_writer_data (data) : NULL,
        .data_len = zcq_writer_size (data),
        .meta = zcq_writer_size (meta) ? zcq_writer_data (meta) : NULL,
        .meta_len = zcq_writer_size (meta),
    };
    zcq_writer_reset (s_writer);
    zcq_command_encode (s_writer, &command);
    zcq_writer_destroy (&data);
    zcq_writer_destroy (&meta);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_COMMAND, &reply);
    return rc ? rc : s_print_reply (reply, s_print_sent);
}

//  Start a query map: op, view (when given); returns the mark and count.
static size_t
s_query_open (const char *op, size_t *count)
{
    zcq_writer_reset (s_writer);
    size_t mark = zcq_writer_map_open (s_writer);
    zcq_writer_str (s_writer, "op");
    zcq_writer_str (s_writer, op);
    *count = 1;
    return mark;
}

static void
s_query_int (const char *name, const char *value, size_t *count)
{
    if (!value)
        return;
    zcq_writer_str (s_writer, name);
    zcq_writer_int (s_writer, atoll (value));
    ++*count;
}

static void
s_query_str (const char *name, const char *value, size_t *count)
{
    if (!value)
        return;
    zcq_writer_str (s_writer, name);
    zcq_writer_str (s_writer, value);
    ++*count;
}

static void
s_query_index (size_t *count)
{
    if (!s_args.index)
        return;
    s_query_str ("index", s_args.index, count);
    zcq_writer_str (s_writer, "value");
    s_write_loose (s_args.value ? s_args.value : "");
    ++*count;
}

static void
s_print_row (const zcq_value_t *reply)
{
    const zcq_value_t *row = zcq_value_get (reply, "row");
    if (zcq_value_type (row) == ZCQ_TYPE_NIL)
        printf ("(no row)\n");
    else
        zcq_json_print (stdout, row, true);
}

static int
s_view_query (const char *op)
{
    if (s_args.word_count < 1) {
        fprintf (stderr, "zcqrs %s: needs VIEW\n", op);
        return 2;
    }
    size_t count;
    size_t mark = s_query_open (op, &count);
    s_query_str ("view", s_args.words[0], &count);
    s_query_int ("min_position", s_args.min_position, &count);
    if (streq (op, "get")) {
        if (s_args.word_count < 2) {
            fprintf (stderr, "zcqrs get: needs VIEW KEY\n");
            return 2;
        }
        s_query_str ("key", s_args.words[1], &count);
    }
    if (streq (op, "count"))
        s_query_index (&count);
    zcq_writer_map_close (s_writer, mark, count);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc)
        return rc;
    if (streq (op, "get"))
        return s_print_reply (reply, s_print_row);
    if (streq (op, "count") && zcq_reply_status (reply) == ZCQ_OK && !s_args.json) {
        printf ("%lld\n", (long long) zcq_value_get_int (reply, "count", 0));
        return 0;
    }
    return s_print_reply (reply, NULL);
}

static int
s_list (void)
{
    if (s_args.word_count < 1) {
        fprintf (stderr, "zcqrs list: needs VIEW\n");
        return 2;
    }
    char *after = s_args.after ? strdup (s_args.after) : NULL;
    int rc = 0;
    do {
        size_t count;
        size_t mark = s_query_open ("list", &count);
        s_query_str ("view", s_args.words[0], &count);
        s_query_index (&count);
        s_query_str ("after", after, &count);
        s_query_int ("limit", s_args.limit, &count);
        s_query_int ("min_position", s_args.min_position, &count);
        zcq_writer_map_close (s_writer, mark, count);
        const zcq_value_t *reply;
        if ((rc = s_call (ZCQ_ENDPOINT_QUERY, &reply)))
            break;
        if (s_args.json || zcq_reply_status (reply) != ZCQ_OK) {
            rc = s_print_reply (reply, NULL);
            if (rc || !s_args.all)
                break;
        }
        else {
            const zcq_value_t *rows = zcq_value_get (reply, "rows");
            for (size_t index = 0; index < zcq_value_size (rows); index++)
                zcq_json_print (stdout, zcq_value_at (rows, index), false);
        }
        free (after);
        after = NULL;
        const zcq_value_t *next = zcq_value_get (reply, "next");
        const char *text;
        size_t len;
        if (zcq_value_str (next, &text, &len))
            after = strndup (text, len);
        if (after && !s_args.all && !s_args.json) {
            fputs ("next: ", stdout);
            s_print_text (stdout, text, len);
            fputc ('\n', stdout);
        }
    } while (after && s_args.all);
    free (after);
    return rc;
}

//  A node fit to serve: its store takes commits and every view is live
//  (not catching up, not rebuilding). `zcqrs health` exits 5 otherwise, so
//  it serves as a readiness probe.
static bool
s_healthy (const zcq_value_t *reply)
{
    char text[32];
    if (!streq (zcq_value_get_str (reply, "store", text, sizeof text, "ok"), "ok"))
        return false;
    const zcq_value_t *views = zcq_value_get (reply, "views");
    for (size_t index = 0; index < zcq_value_size (views); index++)
        if (!streq (zcq_value_get_str (zcq_value_at (views, index), "status", text, sizeof text,
                                       "live"),
                    "live"))
            return false;
    return true;
}

static int
s_simple (const char *op)
{
    size_t count;
    size_t mark = s_query_open (op, &count);
    if (streq (op, "read")) {
        if (!s_args.from) {
            fprintf (stderr, "zcqrs read: needs --from POS\n");
            return 2;
        }
        s_query_int ("from", s_args.from, &count);
        s_query_int ("limit", s_args.limit, &count);
    }
    else if (streq (op, "stream")) {
        if (s_args.word_count < 1) {
            fprintf (stderr, "zcqrs stream: needs STREAM (aggregate/key)\n");
            return 2;
        }
        s_query_str ("stream", s_args.words[0], &count);
        s_query_int ("from", s_args.from, &count);
        s_query_int ("limit", s_args.limit, &count);
    }
    else if (streq (op, "rebuild")) {
        if (s_args.word_count < 1) {
            fprintf (stderr, "zcqrs rebuild: needs VIEW\n");
            return 2;
        }
        s_query_str ("view", s_args.words[0], &count);
    }
    zcq_writer_map_close (s_writer, mark, count);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc)
        return rc;
    if ((streq (op, "read") || streq (op, "stream")) && !s_args.json
        && zcq_reply_status (reply) == ZCQ_OK) {
        const zcq_value_t *events = zcq_value_get (reply, "events");
        for (size_t index = 0; index < zcq_value_size (events); index++)
            zcq_json_print (stdout, zcq_value_at (events, index), false);
        return 0;
    }
    int printed = s_print_reply (reply, NULL);
    if (printed == 0 && streq (op, "health") && !s_healthy (reply))
        return 5;
    return printed;
}

static int
s_tail (void)
{
    uint64_t from = s_args.from ? strtoull (s_args.from, NULL, 10) : 1;
    long long wanted = s_args.count ? atoll (s_args.count) : -1;
    zcq_catchup_t *feed = zcq_catchup_new (s_args.query, s_args.events, from ? from : 1,
                                           s_args.word_count ? s_args.words[0] : NULL);
    if (!feed) {
        fprintf (stderr, "zcqrs tail: cannot connect\n");
        return 3;
    }
    int rc = 0;
    while (wanted != 0 && !zsys_interrupted) {
        const zcq_event_t *event;
        zcq_err_t err = zcq_catchup_next (feed, 1000, &event);
        if (err == ZCQ_TIMEOUT)
            continue;
        if (err != ZCQ_OK) {
            fprintf (stderr, "zcqrs tail: %s\n", zcq_strerror (err));
            rc = 3;
            break;
        }
        zcq_json_print (stdout, zcq_event_body (event), false);
        fflush (stdout);
        if (wanted > 0)
            wanted--;
    }
    zcq_catchup_destroy (&feed);
    return rc;
}

//  A flag's number, whole or refused: a typo must not become a request
//  (`--expect abc` is not `expect 0`).
static bool
s_flag_number (const char *flag, const char *text, long long min, long long max)
{
    if (!text)
        return true;
    char *end = NULL;
    errno = 0;
    long long number = strtoll (text, &end, 10);
    if (!*text || *end || errno || number < min || number > max || isspace ((unsigned char) *text)
        || *text == '+') {
        fprintf (stderr, "zcqrs: %s: '%s' is not a whole number from %lld to %lld\n", flag, text,
                 min, max);
        return false;
    }
    return true;
}

//  Check every number-valued flag, and the pairs that go together.
static bool
s_flags_valid (void)
{
    if (!s_flag_number ("--timeout", s_args.timeout_text, 1, 3600000)
        || !s_flag_number ("--expect", s_args.expect, 0, INT64_MAX)
        || !s_flag_number ("--limit", s_args.limit, 1, 10000)
        || !s_flag_number ("--from", s_args.from, 1, INT64_MAX)
        || !s_flag_number ("--count", s_args.count, 0, INT64_MAX)
        || !s_flag_number ("--min-position", s_args.min_position, 0, INT64_MAX))
        return false;
    if (s_args.timeout_text)
        s_args.timeout = atoi (s_args.timeout_text);
    if (s_args.value && !s_args.index) {
        fprintf (stderr, "zcqrs: --value needs --index (the field it is a value of)\n");
        return false;
    }
    if (s_args.index && !s_args.value) {
        fprintf (stderr, "zcqrs: --index needs --value (the value to match)\n");
        return false;
    }
    return true;
}

int
main (int argc, char *argv[])
{
    //  endpoints: the flags, else the environment, else the defaults
    const char *command_env = getenv ("ZCQRS_COMMAND");
    const char *query_env = getenv ("ZCQRS_QUERY");
    const char *events_env = getenv ("ZCQRS_EVENTS");
    s_args = (s_args_t) { .command = command_env && *command_env ? command_env
                                                                 : "tcp://127.0.0.1:7400",
                          .query = query_env && *query_env ? query_env : "tcp://127.0.0.1:7402",
                          .events = events_env && *events_env ? events_env : "tcp://127.0.0.1:7401",
                          .timeout = 5000 };
    const char *subcommand = NULL;
    struct {
        const char *flag;
        const char **target;
    } options[] = {
        { "--command", &s_args.command },
        { "--query", &s_args.query },
        { "--events", &s_args.events },
        { "--expect", &s_args.expect },
        { "--id", &s_args.id },
        { "--meta", &s_args.meta },
        { "--index", &s_args.index },
        { "--value", &s_args.value },
        { "--after", &s_args.after },
        { "--limit", &s_args.limit },
        { "--from", &s_args.from },
        { "--count", &s_args.count },
        { "--min-position", &s_args.min_position },
    };
    for (int index = 1; index < argc; index++) {
        const char *word = argv[index];
        //  --flag=value is --flag value
        const char *inline_value = NULL;
        char *equals = strncmp (argv[index], "--", 2) == 0 ? strchr (argv[index], '=') : NULL;
        if (equals && !subcommand_is_cluster (subcommand)) {
            *equals = 0;
            inline_value = equals + 1;
        }
        if (streq (word, "--help") || streq (word, "-h")) {
            s_usage (stdout);
            return 0;
        }
        if (streq (word, "--version")) {
            printf ("zcqrs %d.%d.%d\n", ZCQ_VERSION_MAJOR, ZCQ_VERSION_MINOR, ZCQ_VERSION_PATCH);
            return 0;
        }
        if (streq (word, "--json")) {
            s_args.json = true;
            continue;
        }
        if (streq (word, "--all")) {
            s_args.all = true;
            continue;
        }
        if (streq (word, "--route")) {
            s_args.route = true;
            continue;
        }
        if (streq (word, "--timeout") && (inline_value || index + 1 < argc)) {
            s_args.timeout_text = inline_value ? inline_value : argv[++index];
            continue;
        }
        bool matched = false;
        for (size_t option = 0; option < sizeof options / sizeof options[0]; option++)
            if (streq (word, options[option].flag)) {
                if (!inline_value && index + 1 >= argc) {
                    fprintf (stderr, "zcqrs: %s needs a value\n", word);
                    return 2;
                }
                *options[option].target = inline_value ? inline_value : argv[++index];
                matched = true;
            }
        if (matched)
            continue;
        if (!subcommand && streq (word, "cluster")) {
            //  the operator's actions on ZooKeeper take their own options
            int rc
                = zcq_cluster_cli (argc - index - 1, argv + index + 1, s_args.timeout, s_args.json);
            if (rc >= 0)
                return rc;
        }
        if (strncmp (word, "--", 2) == 0) {
            fprintf (stderr, "zcqrs: unknown option %s\n", word);
            s_usage (stderr);
            return 2;
        }
        if (!subcommand)
            subcommand = word;
        else if (s_args.word_count < 64)
            s_args.words[s_args.word_count++] = argv[index];
    }
    if (!subcommand) {
        s_usage (stderr);
        return 2;
    }
    if (!s_flags_valid ())
        return 2;
    s_client = s_args.route ? zcq_client_new_cluster (s_args.query)
                            : zcq_client_new (s_args.command, s_args.query);
    s_writer = zcq_writer_new ();
    if (!s_client || !s_writer) {
        fprintf (stderr, "zcqrs: cannot connect\n");
        return 3;
    }
    int rc;
    if (streq (subcommand, "send"))
        rc = s_send ();
    else if (streq (subcommand, "get") || streq (subcommand, "count"))
        rc = s_view_query (subcommand);
    else if (streq (subcommand, "list"))
        rc = s_list ();
    else if (streq (subcommand, "tail"))
        rc = s_tail ();
    else if (streq (subcommand, "read") || streq (subcommand, "stream")
             || streq (subcommand, "views") || streq (subcommand, "health")
             || streq (subcommand, "stats") || streq (subcommand, "rebuild")
             || streq (subcommand, "cluster"))
        rc = s_simple (subcommand);
    else {
        fprintf (stderr, "zcqrs: unknown command '%s'\n", subcommand);
        s_usage (stderr);
        rc = 2;
    }
    zcq_client_destroy (&s_client);
    zcq_writer_destroy (&s_writer);
    return rc;
}
