/*  zcqrs: the command-line client of ZCQ/1. docs/cli.md is its manual;
    `zcqrs --help` and `zcqrs COMMAND --help` print the usage below.

    OUTPUT CONTRACT
    1.  stdout carries results only. When stdout is not a terminal, or with
        --json, it is JSON Lines: one JSON object per line per result (a
        row, an event, a view, a command's reply, a query's reply), and
        nothing else. On a terminal (or with --text) it is text for people.
    2.  stderr carries everything else: errors, diagnostics, and the
        cursor of a page (`next: CURSOR`), so that `zcqrs list ... | jq`
        sees rows only.
    3.  A command's reply is its result, refused or not: with JSON it goes
        to stdout (`"ok": false` included), and a refusal is also said on
        stderr. A query the node refuses prints nothing on stdout.
    4.  Exit codes: 0 ok, 1 the node refused (an error reply), 2 usage,
        3 no answer in time, 4 not found (`get` of a missing row), 5
        `health` of a node that is not healthy.

    Strings from the node (ids, keys, messages) reach a terminal: the text
    output escapes their control characters (s_print_text), and the JSON
    output is escaped by json.c.
*/
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <czmq.h>
#include <zcqrs.h>
#include "cluster_cli.h"
#include "json.h"

#define S_WORDS_MAX     64
#define S_TIMEOUT       5000 //  ms the client waits for a reply by default
#define S_WINDOW        256  //  commands in flight of `send -` by default
#define S_WINDOW_MAX    4096 //  a node's max-inflight-per-client
#define S_ENDPOINT_SIZE 300

//  The options of the subcommands, as bits: each subcommand names the
//  ones it takes, and any other is a usage error.
enum {
    O_EXPECT = 1 << 0,
    O_ID = 1 << 1,
    O_META = 1 << 2,
    O_INDEX = 1 << 3,
    O_VALUE = 1 << 4,
    O_AFTER = 1 << 5,
    O_LIMIT = 1 << 6,
    O_FROM = 1 << 7,
    O_COUNT = 1 << 8,
    O_MIN_POSITION = 1 << 9,
    O_WAIT_MS = 1 << 10,
    O_WINDOW = 1 << 11,
    O_ALL = 1 << 12,
    O_PREFIX = 1 << 13,
};

typedef struct {
    const char *command; //  from the flags; resolved in s_endpoints
    const char *query;
    const char *events;
    const char *url;
    int timeout;
    bool json; //  the output is JSON Lines (resolved: --json, --text, isatty)
    bool json_flag;
    bool text_flag;
    bool help;
    bool route; //  --route: commands straight to their group's leader
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
    const char *wait_ms;
    const char *window;
    const char *timeout_text;
    bool all;
    bool prefix;
    unsigned given; //  O_* bits of the options given
    char *words[S_WORDS_MAX];
    int word_count;
    char endpoints[3][S_ENDPOINT_SIZE]; //  command, events, query from a URL
} s_args_t;

typedef struct {
    const char *name;
    int (*run) (void);
    int min_words;
    int max_words;
    unsigned options; //  O_* bits
    const char *synopsis;
    const char *help;
} s_subcommand_t;

static zcq_client_t *s_client;
static zcq_writer_t *s_writer;
static s_args_t s_args;
static const zcq_limits_t s_reply_limits = { .any_text = true };

static int s_send (void);
static int s_get (void);
static int s_list (void);
static int s_count (void);
static int s_read (void);
static int s_stream (void);
static int s_tail (void);
static int s_views (void);
static int s_health (void);
static int s_stats (void);
static int s_rebuild (void);
static int s_backup (void);
static int s_cluster (void);
static int s_help (void);

static const s_subcommand_t s_subcommands[] = {
    { "send", s_send, 1, S_WORDS_MAX, O_EXPECT | O_ID | O_META | O_WINDOW,
      "send AGG KEY TYPE [JSON | name=value | name:=JSON ...] [--expect N] [--id ID] [--meta "
      "JSON]\n"
      "  send - [--window N]",
      "Send one command; its data is one JSON value, or name=value pairs that\n"
      "make a map: after `=` a whole integer, true, false or null is typed, any\n"
      "other value is a string (owner=ann, amount=500); after `:=` the value is\n"
      "JSON (code:='\"42\"' is the string \"42\", tags:='[\"a\",\"b\"]' a list).\n"
      "  --expect N   the stream's version before the command (0: a new stream)\n"
      "  --id ID      the command id (a retry with the same id is applied once)\n"
      "  --meta JSON  caller metadata (a map) stored with the events\n"
      "`send -` reads commands from stdin, one JSON object a line, with the wire\n"
      "field names: aggregate and key (or stream \"AGG/KEY\"), type, and optional\n"
      "data, id, expect, meta. It keeps --window N (1-4096, default 256) in\n"
      "flight on one connection and prints one result per line in input order,\n"
      "each with \"line\" (its input line number). Blank lines are skipped. A\n"
      "malformed line stops the reading: the lines before it are sent, and the\n"
      "exit code is 2. Exit 1 when a command was refused, 3 when one got no\n"
      "answer (its id is printed on stderr: retry it with that id)." },
    { "get", s_get, 2, 2, O_MIN_POSITION | O_WAIT_MS,
      "get VIEW KEY [--min-position P [--wait-ms MS]]",
      "Print the row KEY of VIEW. Exit 4 when there is no such row (nothing on\n"
      "stdout, a message on stderr).\n"
      "  --min-position P  wait until the view has applied log position P (the\n"
      "                    position of your command's reply: read your writes)\n"
      "  --wait-ms MS      how long the node waits for it (0-3600000, default\n"
      "                    1000); a view still behind is error timeout, exit 1" },
    { "list", s_list, 1, 1,
      O_INDEX | O_VALUE | O_AFTER | O_LIMIT | O_ALL | O_MIN_POSITION | O_WAIT_MS,
      "list VIEW [--index I --value V] [--after CURSOR] [--limit N] [--all]\n"
      "       [--min-position P [--wait-ms MS]]",
      "Print the rows of VIEW in key order, one a line; with --index and\n"
      "--value, the rows whose field I equals V (V is JSON when it parses as\n"
      "JSON, else a string). A page holds --limit rows (1-1000, default 100);\n"
      "when more follow, `next: CURSOR` goes to stderr: pass it as --after, or\n"
      "use --all to read every page." },
    { "count", s_count, 1, 1, O_INDEX | O_VALUE | O_MIN_POSITION | O_WAIT_MS,
      "count VIEW [--index I --value V] [--min-position P [--wait-ms MS]]",
      "Print how many rows VIEW has (that match --index and --value). With\n"
      "JSON, the reply: {\"ok\", \"count\", \"position\", \"head\"}." },
    { "read", s_read, 0, 0, O_FROM | O_LIMIT, "read --from POS [--limit N]",
      "Print the log's events from position POS, one a line (--limit 1-10000,\n"
      "default 1000). When more follow, `next: POS` goes to stderr." },
    { "stream", s_stream, 1, 1, O_FROM | O_LIMIT, "stream AGG/KEY [--from VERSION] [--limit N]",
      "Print one stream's events from VERSION (default 1), one a line. When\n"
      "more follow, `next: VERSION` goes to stderr." },
    { "tail", s_tail, 0, 1, O_FROM | O_COUNT | O_PREFIX,
      "tail [TOPIC] [--prefix] [--from POS] [--count N]",
      "Catch up from log position POS (default 1), then follow live events, one\n"
      "a line, until interrupted or --count N events were printed. TOPIC keeps\n"
      "one stream (account/43: not account/430) or one aggregate type\n"
      "(account); --prefix matches TOPIC as a prefix of AGG/KEY/ instead\n"
      "(account/4 --prefix: account/4, account/43, account/430, ...)." },
    { "views", s_views, 0, 0, 0, "views",
      "Print the node's views (name, status, position, rows, snapshot), one a\n"
      "line." },
    { "health", s_health, 0, 0, 0, "health",
      "Print the node's health. Exit 5 when the node is not healthy (its store\n"
      "failed, or a view is not live), 3 when it does not answer: a probe." },
    { "stats", s_stats, 0, 0, 0, "stats", "Print the node's counters and gauges." },
    { "rebuild", s_rebuild, 1, 1, 0, "rebuild VIEW",
      "Rebuild VIEW from the log while the old copy keeps answering; `zcqrs\n"
      "views` shows it live again when done." },
    { "backup", s_backup, 1, 1, 0, "backup DIR",
      "Back up the node while it serves into DIR, a new directory (made\n"
      "absolute here; the node writes it, so DIR is on the node's machine): a\n"
      "checkpoint of its store and its view snapshots, consistent with one log\n"
      "position. Restore with `zcqrsd --restore DIR --data NEW_DIR`. Waits up to\n"
      "--timeout (default here 600000 ms). One backup at a time: a second is\n"
      "refused (unavailable, exit 1)." },
    { "cluster", s_cluster, 0, 0, 0,
      "cluster\n"
      "  cluster create --zk HOST:PORT[,...]/PATH --groups G [--replicas R]\n"
      "                 [--min-insync M] [--slots S]\n"
      "  cluster status --zk HOST:PORT[,...]/PATH",
      "`cluster` prints the cluster document of the node at --query (any node\n"
      "of a cluster). `cluster create` and `cluster status` act on ZooKeeper\n"
      "(see zcqrs cluster create --help)." },
    { "help", s_help, 0, 1, 0, "help [COMMAND]", "Print the usage of zcqrs or of one command." },
};

#define S_SUBCOMMANDS (sizeof s_subcommands / sizeof s_subcommands[0])

static const s_subcommand_t *
s_subcommand_find (const char *name)
{
    for (size_t index = 0; name && index < S_SUBCOMMANDS; index++)
        if (streq (s_subcommands[index].name, name))
            return &s_subcommands[index];
    return NULL;
}

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: zcqrs [--url tcp://HOST:PORT] [--command EP] [--query EP] [--events EP]\n"
                  "             [--timeout MS] [--json | --text] [--route] COMMAND ...\n\n");
    for (size_t index = 0; index < S_SUBCOMMANDS; index++)
        fprintf (out, "  %s\n", s_subcommands[index].synopsis);
    fprintf (out, "\n"
                  "`zcqrs COMMAND --help` tells more of one command; docs/cli.md has it all.\n"
                  "\n"
                  "Endpoints: --url tcp://HOST:PORT (or ZCQRS_URL) gives all three: command on\n"
                  "PORT, events on PORT+1, query on PORT+2. --command, --events, --query (or\n"
                  "ZCQRS_COMMAND, ZCQRS_EVENTS, ZCQRS_QUERY) set one and beat the URL. Default:\n"
                  "tcp://127.0.0.1:7400, so 7400 (command), 7401 (events), 7402 (query).\n"
                  "--timeout MS: how long to wait for a reply (default 5000). --route (a\n"
                  "cluster): send commands straight to their group's leader, found through\n"
                  "--query. Any flag may be written --flag=value, before or after the command;\n"
                  "after `--` every word is an argument (a key such as --x). --version prints\n"
                  "the version.\n"
                  "\n"
                  "Output: on a terminal, text; when stdout is not a terminal, or with --json,\n"
                  "JSON Lines: one object per result a line, nothing else (--text forces text).\n"
                  "Errors, diagnostics and page cursors (`next: ...`) go to stderr.\n"
                  "Exit codes: 0 ok, 1 the node refused (an error reply), 2 usage (a bad flag\n"
                  "value too), 3 no answer in time, 4 not found (`get` of a missing row), 5\n"
                  "`health` of a node that is not healthy.\n");
}

static void
s_usage_of (FILE *out, const s_subcommand_t *subcommand)
{
    fprintf (out, "usage: zcqrs [GLOBAL OPTIONS] %s\n\n%s\n\n", subcommand->synopsis,
             subcommand->help);
    fprintf (out, "Global options, output and exit codes: zcqrs --help.\n");
}

//  ---------------------------------------------------------------------
//  Output

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

//  An error reply, on stderr: `error CODE: MESSAGE`, and what the code
//  adds (a conflict's version, a timeout's position and head).
static void
s_print_error (const char *prefix, const zcq_value_t *reply)
{
    fflush (stdout); //  after the results before it, when both go to one file
    fputs (prefix, stderr);
    fputs ("error ", stderr);
    s_print_field (stderr, reply, "error", "internal");
    fputs (": ", stderr);
    s_print_field (stderr, reply, "message", "");
    if (zcq_value_get (reply, "version"))
        fprintf (stderr, " (stream version %lld)",
                 (long long) zcq_value_get_int (reply, "version", 0));
    if (zcq_value_get (reply, "position") && zcq_value_get (reply, "head"))
        fprintf (stderr, " (view at position %lld, head %lld)",
                 (long long) zcq_value_get_int (reply, "position", 0),
                 (long long) zcq_value_get_int (reply, "head", 0));
    if (zcq_value_get (reply, "reason")) {
        fputs (" (reason ", stderr);
        s_print_field (stderr, reply, "reason", "");
        fputc (')', stderr);
    }
    fputc ('\n', stderr);
}

//  One value as a result: a JSON line, or indented JSON on a terminal.
static void
s_print_value (const zcq_value_t *value)
{
    zcq_json_print (stdout, value, !s_args.json);
}

//  The cursor of a page, on stderr: a string (list) or a number (read,
//  stream); nothing when the reply says nothing follows.
static void
s_print_next (const zcq_value_t *reply)
{
    const zcq_value_t *next = zcq_value_get (reply, "next");
    const char *text;
    size_t len;
    fflush (stdout);
    if (zcq_value_str (next, &text, &len)) {
        fputs ("next: ", stderr);
        s_print_text (stderr, text, len);
        fputc ('\n', stderr);
    }
    else if (zcq_value_type (next) == ZCQ_TYPE_INT)
        fprintf (stderr, "next: %lld\n", (long long) zcq_value_get_int (reply, "next", 0));
}

//  An event: a JSON line, or `POSITION STREAM@VERSION TYPE DATA` on a
//  terminal.
static void
s_print_event (const zcq_value_t *event)
{
    if (s_args.json) {
        zcq_json_print (stdout, event, false);
        return;
    }
    printf ("%lld ", (long long) zcq_value_get_int (event, "position", 0));
    s_print_field (stdout, event, "stream", "?");
    printf ("@%lld ", (long long) zcq_value_get_int (event, "version", 0));
    s_print_field (stdout, event, "type", "?");
    fputc (' ', stdout);
    const zcq_value_t *data = zcq_value_get (event, "data");
    if (data)
        zcq_json_print (stdout, data, false);
    else
        fputs ("null\n", stdout);
}

//  ---------------------------------------------------------------------
//  Requests

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

//  A query's reply: 0 when ok, else 1 with the error on stderr (and
//  nothing on stdout).
static int
s_query_reply (const zcq_value_t *reply)
{
    if (zcq_reply_status (reply) == ZCQ_OK)
        return 0;
    s_print_error ("", reply);
    return 1;
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

//  Start a query map with its op; *count counts its pairs.
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

//  A view query's wait: min_position, and the node's timeout_ms.
static void
s_query_wait (size_t *count)
{
    s_query_int ("min_position", s_args.min_position, count);
    s_query_int ("timeout_ms", s_args.wait_ms, count);
}

//  ---------------------------------------------------------------------
//  send

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

//  A command's reply, its result: JSON (a refusal too) or text; a refusal
//  is also said on stderr. line > 0 numbers the result (`send -`).
static int
s_print_command_reply (const zcq_value_t *reply, long long line)
{
    bool ok = zcq_reply_status (reply) == ZCQ_OK;
    char prefix[48] = "";
    if (line > 0)
        snprintf (prefix, sizeof prefix, "line %lld: ", line);
    if (s_args.json) {
        if (line > 0)
            zcq_json_print_numbered (stdout, reply, "line", line);
        else
            zcq_json_print (stdout, reply, false);
    }
    else if (ok) {
        fputs (prefix, stdout);
        s_print_sent (reply);
    }
    if (!ok)
        s_print_error (prefix, reply);
    return ok ? 0 : 1;
}

static int s_send_lines (void);

static int
s_send (void)
{
    if (s_args.word_count == 1 && streq (s_args.words[0], "-"))
        return s_send_lines ();
    if (s_args.given & O_WINDOW) {
        fprintf (stderr, "zcqrs send: --window goes with `send -` only\n");
        return 2;
    }
    if (s_args.word_count < 3) {
        fprintf (stderr, "zcqrs send: needs AGG KEY TYPE (or - to read commands from stdin)\n");
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
        fprintf (stderr, "zcqrs send: %s\n", data && meta ? error : "out of memory");
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
    return rc ? rc : s_print_command_reply (reply, 0);
}

//  ---------------------------------------------------------------------
//  send -: a bulk loader
//
//  Commands in flight sit in a ring of --window slots, in input order;
//  replies (matched by id) fill their slot, and the oldest slots print as
//  soon as they are answered, so results come out in input order. Ids may
//  repeat in the input (a retry): the node answers one id's commands in
//  turn, so a reply goes to the oldest unanswered slot with its id, found
//  through `by_id` (id -> oldest slot) and each slot's `same_id` chain.

typedef struct {
    long long line;
    char id[72];
    int64_t deadline;
    zframe_t *reply;   //  NULL until answered
    long long same_id; //  the next slot with this id, or -1
} s_slot_t;

typedef struct {
    s_slot_t *slots;
    long window;
    long long oldest; //  sequence numbers: slots[sequence % window]
    long long next;
    zhashx_t *by_id; //  id -> (sequence + 1) of the oldest unanswered slot
    zsock_t *socket; //  NULL with --route: then one command at a time
    zcq_doc_t *doc;
    int refused;
    int unanswered;
} s_loader_t;

static s_slot_t *
s_loader_slot (s_loader_t *self, long long sequence)
{
    return &self->slots[sequence % self->window];
}

//  Print one answered slot's result and free its reply.
static void
s_loader_print (s_loader_t *self, s_slot_t *slot)
{
    if (zcq_doc_decode (self->doc, zframe_data (slot->reply), zframe_size (slot->reply),
                        &s_reply_limits)
        == ZCQ_OK)
        self->refused += s_print_command_reply (zcq_doc_root (self->doc), slot->line);
    else {
        fprintf (stderr, "line %lld: the reply is not MessagePack (%s)\n", slot->line,
                 zcq_doc_error (self->doc));
        self->refused++;
    }
    zframe_destroy (&slot->reply);
}

//  Print the answered slots at the head of the ring, in order.
static void
s_loader_flush (s_loader_t *self)
{
    while (self->oldest < self->next && s_loader_slot (self, self->oldest)->reply)
        s_loader_print (self, s_loader_slot (self, self->oldest++));
    fflush (stdout);
}

//  Take one reply off the socket, into the slot it answers.
static void
s_loader_receive (s_loader_t *self)
{
    zmsg_t *message = zmsg_recv (self->socket);
    if (!message)
        return;
    zframe_t *body = zmsg_last (message);
    zmsg_remove (message, body);
    zmsg_destroy (&message);
    char id[72];
    bool known = zcq_doc_decode (self->doc, zframe_data (body), zframe_size (body), &s_reply_limits)
              == ZCQ_OK;
    if (known)
        zcq_value_get_str (zcq_doc_root (self->doc), "id", id, sizeof id, "");
    void *found = known ? zhashx_lookup (self->by_id, id) : NULL;
    if (!found) {
        zframe_destroy (&body); //  not ours, or answered already
        return;
    }
    long long sequence = (long long) (intptr_t) found - 1;
    s_slot_t *slot = s_loader_slot (self, sequence);
    slot->reply = body;
    if (slot->same_id >= 0)
        zhashx_update (self->by_id, id, (void *) (intptr_t) (slot->same_id + 1));
    else
        zhashx_delete (self->by_id, id);
}

//  Send one command line, into the next slot of the ring.
static bool
s_loader_send (s_loader_t *self, const zcq_json_command_t *parsed, long long line)
{
    long long sequence = self->next;
    s_slot_t *slot = s_loader_slot (self, sequence);
    *slot = (s_slot_t) { .line = line, .same_id = -1 };
    if (parsed->id)
        snprintf (slot->id, sizeof slot->id, "%s", parsed->id);
    else
        zcq_command_id (slot->id, sizeof slot->id);
    zcq_command_req_t command = {
        .id = slot->id,
        .aggregate = parsed->aggregate,
        .key = parsed->key,
        .type = parsed->type,
        .expect = parsed->expect < 0 ? 0 : ZCQ_EXPECT (parsed->expect), //  -1: none given
        .data = parsed->data ? zcq_writer_data (parsed->data) : NULL,
        .data_len = parsed->data ? zcq_writer_size (parsed->data) : 0,
        .meta = parsed->meta ? zcq_writer_data (parsed->meta) : NULL,
        .meta_len = parsed->meta ? zcq_writer_size (parsed->meta) : 0,
    };
    zcq_writer_reset (s_writer);
    zcq_command_encode (s_writer, &command);
    if (!zcq_writer_ok (s_writer))
        return false;
    self->next++;
    if (!self->socket) {
        //  --route: the cluster client, one command at a time
        const zcq_value_t *reply;
        zcq_err_t err = zcq_client_call (s_client, ZCQ_ENDPOINT_COMMAND, zcq_writer_data (s_writer),
                                         zcq_writer_size (s_writer), s_args.timeout, &reply);
        if (err == ZCQ_OK) {
            zcq_writer_t *copy = zcq_writer_new ();
            if (copy)
                zcq_writer_value (copy, reply);
            if (copy && zcq_writer_ok (copy))
                slot->reply = zframe_new (zcq_writer_data (copy), zcq_writer_size (copy));
            zcq_writer_destroy (&copy);
        }
        return true;
    }
    //  an id already in flight: chain this slot behind its last one
    void *found = zhashx_lookup (self->by_id, slot->id);
    if (found) {
        long long last = (long long) (intptr_t) found - 1;
        while (s_loader_slot (self, last)->same_id >= 0)
            last = s_loader_slot (self, last)->same_id;
        s_loader_slot (self, last)->same_id = sequence;
    }
    else
        zhashx_insert (self->by_id, slot->id, (void *) (intptr_t) (sequence + 1));
    slot->deadline = zclock_mono () + s_args.timeout;
    zmsg_t *message = zmsg_new ();
    zmsg_addmem (message, "", 0);
    zmsg_addmem (message, zcq_writer_data (s_writer), zcq_writer_size (s_writer));
    return zmsg_send (&message, self->socket) == 0;
}

//  Wait for replies until the ring has room (or, at the end, is empty);
//  false when the oldest command got no answer in time.
static bool
s_loader_wait (s_loader_t *self, long long room)
{
    while (self->next - self->oldest > room) {
        s_loader_flush (self);
        if (self->next - self->oldest <= room)
            break;
        s_slot_t *oldest = s_loader_slot (self, self->oldest);
        int64_t left = oldest->deadline - zclock_mono ();
        if (!self->socket || left <= 0 || zsys_interrupted)
            return false;
        zmq_pollitem_t item = { zsock_resolve (self->socket), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, left) > 0)
            s_loader_receive (self);
    }
    s_loader_flush (self);
    return true;
}

//  Stop waiting: take the replies already here, print every answered
//  result, and say on stderr which lines got no answer, with the ids to
//  retry them with.
static void
s_loader_give_up (s_loader_t *self)
{
    while (self->socket && zsock_events (self->socket) & ZMQ_POLLIN)
        s_loader_receive (self);
    for (; self->oldest < self->next; self->oldest++) {
        s_slot_t *slot = s_loader_slot (self, self->oldest);
        if (slot->reply) {
            s_loader_print (self, slot);
            continue;
        }
        fprintf (stderr, "line %lld: no reply within %d ms (id ", slot->line, s_args.timeout);
        s_print_text (stderr, slot->id, strlen (slot->id));
        fputs ("): its outcome is unknown; send it again with that id\n", stderr);
        self->unanswered++;
    }
    fflush (stdout);
}

//  Read stdin and send each line's command; the exit code.
static int
s_loader_run (s_loader_t *self)
{
    int rc = 0;
    char *line = NULL;
    size_t capacity = 0;
    long long number = 0;
    bool answered = true;
    while (answered && !zsys_interrupted && getline (&line, &capacity, stdin) >= 0) {
        number++;
        const char *text = line;
        while (isspace ((unsigned char) *text))
            text++;
        if (!*text)
            continue; //  a blank line
        zcq_json_command_t parsed;
        char error[256];
        if (!zcq_json_command_parse (text, &parsed, error, sizeof error)) {
            fprintf (stderr, "zcqrs send: line %lld: %s\n", number, error);
            rc = 2;
            break;
        }
        answered = s_loader_wait (self, self->window - 1);
        if (!answered)
            fprintf (stderr, "zcqrs send: stopped: line %lld and those after it are not sent\n",
                     number);
        else if (!s_loader_send (self, &parsed, number)) {
            fprintf (stderr, "zcqrs send: line %lld: cannot send it\n", number);
            rc = 3;
        }
        zcq_json_command_clear (&parsed);
        if (rc)
            break;
    }
    free (line);
    if (answered)
        answered = s_loader_wait (self, 0);
    if (!answered || zsys_interrupted)
        s_loader_give_up (self);
    if (!rc)
        rc = self->unanswered ? 3 : self->refused ? 1 : 0;
    return rc;
}

static int
s_send_lines (void)
{
    if (s_args.given & (O_ID | O_EXPECT | O_META)) {
        fprintf (stderr, "zcqrs send -: --id, --expect and --meta go in each input line\n");
        return 2;
    }
    s_loader_t loader = { .window = s_args.window ? atol (s_args.window) : S_WINDOW };
    if (s_args.route)
        loader.window = 1; //  the cluster client takes one command at a time
    loader.slots = calloc ((size_t) loader.window, sizeof (s_slot_t));
    loader.by_id = zhashx_new ();
    loader.doc = zcq_doc_new ();
    if (!s_args.route && (loader.socket = zsock_new (ZMQ_DEALER))) {
        zsock_set_linger (loader.socket, 0);
        zsock_set_rcvhwm (loader.socket, 0);
        zsock_set_sndhwm (loader.socket, 0);
    }
    int rc;
    if (!loader.slots || !loader.by_id || !loader.doc || (!s_args.route && !loader.socket)) {
        fprintf (stderr, "zcqrs send: out of memory\n");
        rc = 2;
    }
    else if (loader.socket && zsock_connect (loader.socket, "%s", s_args.command) != 0) {
        fprintf (stderr, "zcqrs send: cannot connect to %s (a malformed endpoint?)\n",
                 s_args.command);
        rc = 2;
    }
    else
        rc = s_loader_run (&loader);
    zsock_destroy (&loader.socket);
    free (loader.slots);
    zhashx_destroy (&loader.by_id);
    zcq_doc_destroy (&loader.doc);
    return rc;
}

//  ---------------------------------------------------------------------
//  View queries

static int
s_get (void)
{
    size_t count;
    size_t mark = s_query_open ("get", &count);
    s_query_str ("view", s_args.words[0], &count);
    s_query_str ("key", s_args.words[1], &count);
    s_query_wait (&count);
    zcq_writer_map_close (s_writer, mark, count);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc || (rc = s_query_reply (reply)))
        return rc;
    const zcq_value_t *row = zcq_value_get (reply, "row");
    if (!row || zcq_value_type (row) == ZCQ_TYPE_NIL) {
        fputs ("zcqrs get: no row ", stderr);
        s_print_text (stderr, s_args.words[1], strlen (s_args.words[1]));
        fputs (" in ", stderr);
        s_print_text (stderr, s_args.words[0], strlen (s_args.words[0]));
        fprintf (stderr, " (view at position %lld)\n",
                 (long long) zcq_value_get_int (reply, "position", 0));
        return 4;
    }
    s_print_value (row);
    return 0;
}

static int
s_list (void)
{
    char *after = s_args.after ? strdup (s_args.after) : NULL;
    int rc = 0;
    do {
        size_t count;
        size_t mark = s_query_open ("list", &count);
        s_query_str ("view", s_args.words[0], &count);
        s_query_index (&count);
        s_query_str ("after", after, &count);
        s_query_int ("limit", s_args.limit, &count);
        s_query_wait (&count);
        zcq_writer_map_close (s_writer, mark, count);
        const zcq_value_t *reply;
        if ((rc = s_call (ZCQ_ENDPOINT_QUERY, &reply)) || (rc = s_query_reply (reply)))
            break;
        const zcq_value_t *rows = zcq_value_get (reply, "rows");
        for (size_t index = 0; index < zcq_value_size (rows); index++)
            zcq_json_print (stdout, zcq_value_at (rows, index), false);
        free (after);
        after = NULL;
        const char *text;
        size_t len;
        if (zcq_value_str (zcq_value_get (reply, "next"), &text, &len))
            after = strndup (text, len);
        if (!s_args.all)
            s_print_next (reply);
    } while (after && s_args.all);
    free (after);
    return rc;
}

static int
s_count (void)
{
    size_t count;
    size_t mark = s_query_open ("count", &count);
    s_query_str ("view", s_args.words[0], &count);
    s_query_index (&count);
    s_query_wait (&count);
    zcq_writer_map_close (s_writer, mark, count);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc || (rc = s_query_reply (reply)))
        return rc;
    if (s_args.json)
        zcq_json_print (stdout, reply, false);
    else
        printf ("%lld\n", (long long) zcq_value_get_int (reply, "count", 0));
    return 0;
}

//  ---------------------------------------------------------------------
//  The log

static int
s_print_events (void)
{
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc || (rc = s_query_reply (reply)))
        return rc;
    const zcq_value_t *events = zcq_value_get (reply, "events");
    for (size_t index = 0; index < zcq_value_size (events); index++)
        s_print_event (zcq_value_at (events, index));
    s_print_next (reply);
    return 0;
}

static int
s_read (void)
{
    if (!s_args.from) {
        fprintf (stderr, "zcqrs read: needs --from POS (1 for the first event)\n");
        return 2;
    }
    size_t count;
    size_t mark = s_query_open ("read", &count);
    s_query_int ("from", s_args.from, &count);
    s_query_int ("limit", s_args.limit, &count);
    zcq_writer_map_close (s_writer, mark, count);
    return s_print_events ();
}

static int
s_stream (void)
{
    size_t count;
    size_t mark = s_query_open ("stream", &count);
    s_query_str ("stream", s_args.words[0], &count);
    s_query_int ("from", s_args.from, &count);
    s_query_int ("limit", s_args.limit, &count);
    zcq_writer_map_close (s_writer, mark, count);
    return s_print_events ();
}

static int
s_tail (void)
{
    uint64_t from = s_args.from ? strtoull (s_args.from, NULL, 10) : 1;
    long long wanted = s_args.count ? atoll (s_args.count) : -1;
    //  the events endpoint's topics are AGG/KEY/: a topic given whole gets
    //  its trailing `/`, so that account/43 is not account/430
    char *topic = NULL;
    if (s_args.word_count) {
        const char *given = s_args.words[0];
        size_t len = strlen (given);
        bool whole = !s_args.prefix && len && given[len - 1] != '/';
        topic = malloc (len + 2);
        if (topic)
            snprintf (topic, len + 2, "%s%s", given, whole ? "/" : "");
    }
    zcq_catchup_t *feed = s_args.word_count && !topic
                            ? NULL
                            : zcq_catchup_new (s_args.query, s_args.events, from, topic);
    free (topic);
    if (!feed) {
        fprintf (stderr, "zcqrs tail: cannot connect to %s and %s\n", s_args.query, s_args.events);
        return 3;
    }
    int rc = 0;
    while (wanted != 0 && !zsys_interrupted) {
        const zcq_event_t *event;
        zcq_err_t err = zcq_catchup_next (feed, 1000, &event);
        if (err == ZCQ_TIMEOUT)
            continue;
        if (err != ZCQ_OK) {
            if (!zsys_interrupted) {
                fprintf (stderr, "zcqrs tail: %s (query %s, events %s)\n", zcq_strerror (err),
                         s_args.query, s_args.events);
                rc = 3;
            }
            break;
        }
        s_print_event (zcq_event_body (event));
        fflush (stdout);
        if (wanted > 0)
            wanted--;
    }
    zcq_catchup_destroy (&feed);
    return rc;
}

//  ---------------------------------------------------------------------
//  The node

//  A query with only its op; the reply, or an exit code.
static int
s_node_query (const char *op, const zcq_value_t **reply)
{
    size_t count;
    size_t mark = s_query_open (op, &count);
    zcq_writer_map_close (s_writer, mark, count);
    int rc = s_call (ZCQ_ENDPOINT_QUERY, reply);
    return rc ? rc : s_query_reply (*reply);
}

static int
s_views (void)
{
    const zcq_value_t *reply;
    int rc = s_node_query ("views", &reply);
    if (rc)
        return rc;
    const zcq_value_t *views = zcq_value_get (reply, "views");
    if (!s_args.json)
        printf ("%-24s %-12s %12s %12s %12s\n", "VIEW", "STATUS", "POSITION", "ROWS", "SNAPSHOT");
    for (size_t index = 0; index < zcq_value_size (views); index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        if (s_args.json) {
            zcq_json_print (stdout, view, false);
            continue;
        }
        char name[128], status[32];
        zcq_value_get_str (view, "name", name, sizeof name, "?");
        zcq_value_get_str (view, "status", status, sizeof status, "?");
        s_print_text (stdout, name, strlen (name));
        int pad = strlen (name) < 24 ? 24 - (int) strlen (name) : 0;
        printf ("%*s %-12s %12lld %12lld %12lld\n", pad, "", status,
                (long long) zcq_value_get_int (view, "position", 0),
                (long long) zcq_value_get_int (view, "rows", 0),
                (long long) zcq_value_get_int (view, "snapshot", 0));
    }
    return 0;
}

//  Why a node is not fit to serve, or NULL when it is: its store takes
//  commits and every view is live (not catching up, not rebuilding).
static const char *
s_unhealthy (const zcq_value_t *reply, char *why, size_t size)
{
    char text[32];
    if (!streq (zcq_value_get_str (reply, "store", text, sizeof text, "ok"), "ok")) {
        snprintf (why, size, "store %s", text);
        return why;
    }
    const zcq_value_t *views = zcq_value_get (reply, "views");
    for (size_t index = 0; index < zcq_value_size (views); index++) {
        const zcq_value_t *view = zcq_value_at (views, index);
        if (!streq (zcq_value_get_str (view, "status", text, sizeof text, "live"), "live")) {
            char name[64];
            zcq_value_get_str (view, "name", name, sizeof name, "?");
            snprintf (why, size, "view %s is %s", name, text);
            return why;
        }
    }
    return NULL;
}

static int
s_health (void)
{
    const zcq_value_t *reply;
    int rc = s_node_query ("health", &reply);
    if (rc)
        return rc;
    s_print_value (reply);
    char why[160];
    if (!s_unhealthy (reply, why, sizeof why))
        return 0;
    fputs ("zcqrs health: not healthy: ", stderr);
    s_print_text (stderr, why, strlen (why));
    fputc ('\n', stderr);
    return 5;
}

//  A node query whose reply is printed whole.
static int
s_print_node_query (const char *op)
{
    const zcq_value_t *reply;
    int rc = s_node_query (op, &reply);
    if (!rc)
        s_print_value (reply);
    return rc;
}

static int
s_stats (void)
{
    return s_print_node_query ("stats");
}

static int
s_cluster (void)
{
    return s_print_node_query ("cluster");
}

static int
s_rebuild (void)
{
    size_t count;
    size_t mark = s_query_open ("rebuild", &count);
    s_query_str ("view", s_args.words[0], &count);
    zcq_writer_map_close (s_writer, mark, count);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc || (rc = s_query_reply (reply)))
        return rc;
    if (s_args.json)
        zcq_json_print (stdout, reply, false);
    else {
        fputs ("rebuilding ", stdout);
        s_print_text (stdout, s_args.words[0], strlen (s_args.words[0]));
        printf (" (the old copy answers meanwhile; `zcqrs views` shows when it is live)\n");
    }
    return 0;
}

#define S_BACKUP_TIMEOUT 600000 //  ms: a backup of a large store takes a while

static int
s_backup (void)
{
    const char *dir = s_args.words[0];
    char absolute[4096];
    if (dir[0] != '/') {
        char cwd[4096];
        if (!getcwd (cwd, sizeof cwd)
            || snprintf (absolute, sizeof absolute, "%s/%s", cwd, dir) >= (int) sizeof absolute) {
            fprintf (stderr, "zcqrs backup: cannot make %s an absolute path\n", dir);
            return 2;
        }
        dir = absolute;
    }
    if (!s_args.timeout_text)
        s_args.timeout = S_BACKUP_TIMEOUT;
    size_t count;
    size_t mark = s_query_open ("backup", &count);
    s_query_str ("dir", dir, &count);
    zcq_writer_map_close (s_writer, mark, count);
    const zcq_value_t *reply;
    int rc = s_call (ZCQ_ENDPOINT_QUERY, &reply);
    if (rc || (rc = s_query_reply (reply)))
        return rc;
    if (s_args.json)
        zcq_json_print (stdout, reply, false);
    else {
        const zcq_value_t *views = zcq_value_get (reply, "views");
        fputs ("backup ", stdout);
        s_print_text (stdout, dir, strlen (dir));
        printf (" at log position %lld: %zu view snapshot%s, %lld bytes\n",
                (long long) zcq_value_get_int (reply, "position", 0), zcq_value_size (views),
                zcq_value_size (views) == 1 ? "" : "s",
                (long long) zcq_value_get_int (reply, "bytes", 0));
    }
    return 0;
}

static int
s_help (void)
{
    const s_subcommand_t *subcommand = s_subcommand_find (s_args.words[0]);
    if (s_args.word_count && !subcommand) {
        fprintf (stderr, "zcqrs help: no command '%s'\n", s_args.words[0]);
        return 2;
    }
    if (subcommand)
        s_usage_of (stdout, subcommand);
    else
        s_usage (stdout);
    return 0;
}

//  ---------------------------------------------------------------------
//  Arguments

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
        || !s_flag_number ("--min-position", s_args.min_position, 0, INT64_MAX)
        || !s_flag_number ("--wait-ms", s_args.wait_ms, 0, 3600000)
        || !s_flag_number ("--window", s_args.window, 1, S_WINDOW_MAX))
        return false;
    if (s_args.value && !s_args.index) {
        fprintf (stderr, "zcqrs: --value needs --index (the field it is a value of)\n");
        return false;
    }
    if (s_args.index && !s_args.value) {
        fprintf (stderr, "zcqrs: --index needs --value (the value to match)\n");
        return false;
    }
    if (s_args.wait_ms && !s_args.min_position) {
        fprintf (stderr, "zcqrs: --wait-ms needs --min-position (the position to wait for)\n");
        return false;
    }
    if (s_args.json_flag && s_args.text_flag) {
        fprintf (stderr, "zcqrs: --json and --text do not go together\n");
        return false;
    }
    //  the client waits for the node's wait, unless told otherwise
    if (s_args.timeout_text)
        s_args.timeout = atoi (s_args.timeout_text);
    else if (s_args.wait_ms)
        s_args.timeout = S_TIMEOUT + atoi (s_args.wait_ms);
    return true;
}

//  The three endpoints of a base address tcp://HOST:PORT: command on
//  PORT, events on PORT+1, query on PORT+2 (zcqrsd's defaults, 7400-7402).
static bool
s_url_endpoints (const char *source, const char *url)
{
    const char *host = strncmp (url, "tcp://", 6) == 0 ? url + 6 : NULL;
    const char *colon = host ? strrchr (host, ':') : NULL;
    char *end = NULL;
    long port = colon && colon[1] && isdigit ((unsigned char) colon[1])
                  ? strtol (colon + 1, &end, 10)
                  : 0;
    if (!colon || colon == host || colon - host > 255 || !end || *end || port < 1 || port > 65533) {
        fprintf (stderr,
                 "zcqrs: %s: '%s' is not tcp://HOST:PORT (PORT from 1 to 65533: "
                 "command PORT, events PORT+1, query PORT+2)\n",
                 source, url);
        return false;
    }
    for (int which = 0; which < 3; which++)
        snprintf (s_args.endpoints[which], S_ENDPOINT_SIZE, "tcp://%.*s:%ld", (int) (colon - host),
                  host, port + which);
    return true;
}

//  Each endpoint: its flag, else its variable, else the URL's (--url,
//  else ZCQRS_URL), else the default.
static bool
s_endpoints (void)
{
    const char *url = s_args.url, *source = "--url";
    if (!url && getenv ("ZCQRS_URL") && *getenv ("ZCQRS_URL")) {
        url = getenv ("ZCQRS_URL");
        source = "ZCQRS_URL";
    }
    if (!s_url_endpoints (source, url ? url : "tcp://127.0.0.1:7400"))
        return false;
    const char **targets[3] = { &s_args.command, &s_args.events, &s_args.query };
    const char *variables[3] = { "ZCQRS_COMMAND", "ZCQRS_EVENTS", "ZCQRS_QUERY" };
    for (int which = 0; which < 3; which++) {
        const char *variable = getenv (variables[which]);
        if (!*targets[which])
            *targets[which] = variable && *variable ? variable : s_args.endpoints[which];
    }
    return true;
}

//  The options that take a value, and the boolean ones.
static const struct {
    const char *flag;
    size_t offset; //  of a `const char *` in s_args_t, or of a bool
    unsigned bit;  //  O_* bit, 0 for a global option
    bool boolean;
} s_options[] = {
    { "--command", offsetof (s_args_t, command), 0, false },
    { "--query", offsetof (s_args_t, query), 0, false },
    { "--events", offsetof (s_args_t, events), 0, false },
    { "--url", offsetof (s_args_t, url), 0, false },
    { "--timeout", offsetof (s_args_t, timeout_text), 0, false },
    { "--json", offsetof (s_args_t, json_flag), 0, true },
    { "--text", offsetof (s_args_t, text_flag), 0, true },
    { "--route", offsetof (s_args_t, route), 0, true },
    { "--help", offsetof (s_args_t, help), 0, true },
    { "-h", offsetof (s_args_t, help), 0, true },
    { "--expect", offsetof (s_args_t, expect), O_EXPECT, false },
    { "--id", offsetof (s_args_t, id), O_ID, false },
    { "--meta", offsetof (s_args_t, meta), O_META, false },
    { "--index", offsetof (s_args_t, index), O_INDEX, false },
    { "--value", offsetof (s_args_t, value), O_VALUE, false },
    { "--after", offsetof (s_args_t, after), O_AFTER, false },
    { "--limit", offsetof (s_args_t, limit), O_LIMIT, false },
    { "--from", offsetof (s_args_t, from), O_FROM, false },
    { "--count", offsetof (s_args_t, count), O_COUNT, false },
    { "--min-position", offsetof (s_args_t, min_position), O_MIN_POSITION, false },
    { "--wait-ms", offsetof (s_args_t, wait_ms), O_WAIT_MS, false },
    { "--window", offsetof (s_args_t, window), O_WINDOW, false },
    { "--all", offsetof (s_args_t, all), O_ALL, true },
    { "--prefix", offsetof (s_args_t, prefix), O_PREFIX, true },
};

//  The output is JSON Lines unless it goes to a terminal (or --text).
static bool
s_json_output (void)
{
    return s_args.json_flag || (!s_args.text_flag && !isatty (STDOUT_FILENO));
}

//  Parse argv into s_args; the subcommand's name in *name. An exit code
//  when done already (a usage error, --version, `cluster create|status`),
//  else -1.
static int
s_parse (int argc, char *argv[], const char **name)
{
    bool options_end = false; //  after `--`, every word is an argument
    for (int index = 1; index < argc; index++) {
        char *word = argv[index];
        if (!options_end && streq (word, "--")) {
            options_end = true;
            continue;
        }
        //  --flag=value is --flag value
        const char *inline_value = NULL;
        char *equals = !options_end && strncmp (word, "--", 2) == 0 ? strchr (word, '=') : NULL;
        if (equals) {
            *equals = 0;
            inline_value = equals + 1;
        }
        if (streq (word, "--version")) {
            printf ("zcqrs %d.%d.%d\n", ZCQ_VERSION_MAJOR, ZCQ_VERSION_MINOR, ZCQ_VERSION_PATCH);
            return 0;
        }
        size_t option = options_end ? sizeof s_options / sizeof s_options[0] : 0;
        while (option < sizeof s_options / sizeof s_options[0]
               && !streq (word, s_options[option].flag))
            option++;
        if (option < sizeof s_options / sizeof s_options[0]) {
            char *target = (char *) &s_args + s_options[option].offset;
            s_args.given |= s_options[option].bit;
            if (s_options[option].boolean) {
                if (inline_value) {
                    fprintf (stderr, "zcqrs: %s takes no value\n", word);
                    return 2;
                }
                *(bool *) target = true;
            }
            else if (!inline_value && index + 1 >= argc) {
                fprintf (stderr, "zcqrs: %s needs a value\n", word);
                return 2;
            }
            else
                *(const char **) target = inline_value ? inline_value : argv[++index];
            continue;
        }
        if (equals)
            *equals = '=';
        if (!*name && !options_end && streq (word, "cluster") && !s_args.help) {
            //  the operator's actions on ZooKeeper take their own options
            int rc = zcq_cluster_cli (argc - index - 1, argv + index + 1,
                                      s_args.timeout_text ? atoi (s_args.timeout_text) : S_TIMEOUT,
                                      s_json_output ());
            if (rc >= 0)
                return rc;
        }
        if (!options_end && (strncmp (word, "--", 2) == 0 || streq (word, "-h"))) {
            fprintf (stderr,
                     "zcqrs: unknown option %s (zcqrs --help lists them; after `--` every word "
                     "is an argument)\n",
                     word);
            return 2;
        }
        if (!*name)
            *name = word;
        else if (s_args.word_count < S_WORDS_MAX)
            s_args.words[s_args.word_count++] = word;
        else {
            fprintf (stderr, "zcqrs: more than %d arguments\n", S_WORDS_MAX);
            return 2;
        }
    }
    return -1;
}

int
main (int argc, char *argv[])
{
    s_args = (s_args_t) { .timeout = S_TIMEOUT };
    const char *name = NULL;
    int rc = s_parse (argc, argv, &name);
    if (rc >= 0)
        return rc;
    const s_subcommand_t *subcommand = s_subcommand_find (name);
    if (name && !subcommand) {
        fprintf (stderr, "zcqrs: unknown command '%s' (zcqrs --help lists them)\n", name);
        return 2;
    }
    if (s_args.help) {
        if (subcommand)
            s_usage_of (stdout, subcommand);
        else
            s_usage (stdout);
        return 0;
    }
    if (!subcommand) {
        s_usage (stderr);
        return 2;
    }
    if (s_args.word_count < subcommand->min_words) {
        fprintf (stderr, "zcqrs %s: missing arguments; usage: zcqrs %s\n", subcommand->name,
                 subcommand->synopsis);
        return 2;
    }
    if (s_args.word_count > subcommand->max_words) {
        fprintf (stderr, "zcqrs %s: unexpected argument '%s'; usage: zcqrs %s\n", subcommand->name,
                 s_args.words[subcommand->max_words], subcommand->synopsis);
        return 2;
    }
    for (size_t option = 0; option < sizeof s_options / sizeof s_options[0]; option++)
        if ((s_args.given & s_options[option].bit)
            && !(subcommand->options & s_options[option].bit)) {
            fprintf (stderr, "zcqrs %s: %s does not apply here (zcqrs %s --help)\n",
                     subcommand->name, s_options[option].flag, subcommand->name);
            return 2;
        }
    if (subcommand->run == s_help)
        return s_help ();
    if (!s_flags_valid () || !s_endpoints ())
        return 2;
    s_args.json = s_json_output ();
    if (subcommand->run == s_tail)
        return s_tail ();
    s_client = s_args.route ? zcq_client_new_cluster (s_args.query)
                            : zcq_client_new (s_args.command, s_args.query);
    s_writer = zcq_writer_new ();
    if (!s_client || !s_writer) {
        fprintf (stderr, "zcqrs: cannot connect to %s and %s (a malformed endpoint?)\n",
                 s_args.command, s_args.query);
        rc = 2;
    }
    else
        rc = subcommand->run ();
    zcq_client_destroy (&s_client);
    zcq_writer_destroy (&s_writer);
    return rc;
}
