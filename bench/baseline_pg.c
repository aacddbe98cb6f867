/*  baseline_pg.c: what a user would pick instead: an event store on
    PostgreSQL, driven through libpq with the same workload and the same
    number of requests in flight.

    The store is the usual one (Marten, Commanded's EventStore): an events
    table with a bigserial position and UNIQUE (stream, version), and a
    table of command ids. A deposit is one transaction that appends the
    event at the stream's next version, so the unique constraint is the
    optimistic concurrency check, and records the command id:

        WITH event AS (INSERT INTO bench_events (stream, version, type, data, command_id)
                       VALUES ($1, $2, 'deposited', $3, $4) RETURNING position)
        INSERT INTO bench_commands (id, stream, version, position)
        SELECT $4, $1, $2, position FROM event

    The client keeps every stream's version in memory, as a zcqrs shard
    keeps its aggregates, so it never reads before writing; streams are
    split over the connections by account number, as zcqrs splits them
    over shards, so versions on one stream arrive in order. Each
    connection runs in libpq pipeline mode with window / connections
    transactions in flight (one sync point, so one transaction, each).
    Durability: synchronous_commit = on for fsync, off for wal (off is
    weaker than zcqrs's wal mode: PostgreSQL may lose the last few hundred
    ms of acknowledged commits if it crashes).

    Built only when pkg-config finds libpq (BENCH_HAVE_PG); otherwise the
    baseline reports itself absent.
*/
#include "bench.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BENCH_HAVE_PG

json_t *
bench_baseline_pg (const char *conninfo, zcq_durability_t durability, uint64_t accounts, int window,
                   int connections, double seconds)
{
    return json_pack ("{s:b, s:s}", "available", 0, "reason",
                      "zcqrs-bench was built without libpq (install libpq-dev and rebuild)");
}

#else

#include <libpq-fe.h>
#include <poll.h>

typedef struct {
    PGconn *conn;
    uint64_t *intended; //  FIFO of send times of the transactions in flight
    bool *measured;
    size_t head, tail; //  in flight: tail - head
    size_t capacity;
    bool failed_current; //  the transaction being read has failed
    int index;
} s_pg_conn_t;

static json_t *
s_absent (const char *format, const char *detail)
{
    char reason[512];
    snprintf (reason, sizeof reason, format, detail ? detail : "");
    //  PQerrorMessage has newlines and tabs, and ends with a newline
    for (char *cursor = reason; *cursor; cursor++)
        if (*cursor == '\n' || *cursor == '\t')
            *cursor = ' ';
    size_t len = strlen (reason);
    while (len && (reason[len - 1] == '\n' || reason[len - 1] == ' '))
        reason[--len] = 0;
    return json_pack ("{s:b, s:s}", "available", 0, "reason", reason);
}

static bool
s_exec (PGconn *conn, const char *sql)
{
    PGresult *result = PQexec (conn, sql);
    ExecStatusType status = PQresultStatus (result);
    bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (!ok)
        fprintf (stderr, "zcqrs-bench: postgres: %s: %s", sql, PQerrorMessage (conn));
    PQclear (result);
    return ok;
}

static const char s_append_sql[]
    = "WITH event AS (INSERT INTO bench_events (stream, version, type, data, command_id) "
      "VALUES ($1, $2, 'deposited', $3::jsonb, $4) RETURNING position) "
      "INSERT INTO bench_commands (id, stream, version, position) "
      "SELECT $4, $1, $2, position FROM event RETURNING position";

//  Create the tables and open `accounts` accounts in one statement (not
//  measured: only the deposits are).
static bool
s_setup (PGconn *conn, uint64_t accounts)
{
    char sql[1024];
    if (!s_exec (conn, "SET client_min_messages = warning")
        || !s_exec (conn, "DROP TABLE IF EXISTS bench_events, bench_commands")
        || !s_exec (conn, "CREATE TABLE bench_events ("
                          " position bigserial PRIMARY KEY,"
                          " stream text NOT NULL,"
                          " version integer NOT NULL,"
                          " type text NOT NULL,"
                          " data jsonb NOT NULL,"
                          " meta jsonb NOT NULL DEFAULT '{}',"
                          " command_id text NOT NULL,"
                          " created_at timestamptz NOT NULL DEFAULT now(),"
                          " UNIQUE (stream, version))")
        || !s_exec (conn, "CREATE TABLE bench_commands ("
                          " id text PRIMARY KEY,"
                          " stream text NOT NULL,"
                          " version integer NOT NULL,"
                          " position bigint NOT NULL,"
                          " created_at timestamptz NOT NULL DEFAULT now())"))
        return false;
    snprintf (sql, sizeof sql,
              "INSERT INTO bench_events (stream, version, type, data, command_id) "
              "SELECT 'account/' || g, 1, 'opened', "
              "jsonb_build_object('owner', 'owner-' || (g %% 1000), 'overdraft', 0), "
              "'open-' || g FROM generate_series(0, %llu) AS g",
              (unsigned long long) accounts - 1);
    return s_exec (conn, sql)
        && s_exec (conn, "INSERT INTO bench_commands (id, stream, version, position) "
                         "SELECT command_id, stream, version, position FROM bench_events")
        && s_exec (conn, "VACUUM ANALYZE bench_events")
        && s_exec (conn, "VACUUM ANALYZE bench_commands") && s_exec (conn, "CHECKPOINT");
}

//  Send one deposit transaction on a connection.
static bool
s_send (s_pg_conn_t *self, int connections, uint64_t accounts, uint32_t *versions, uint64_t *rng,
        uint64_t intended, bool measured, uint64_t seq)
{
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    uint64_t share = accounts / (uint64_t) connections;
    uint64_t account = ((*rng * 0x2545F4914F6CDD1Dull) % share) * (uint64_t) connections
                     + (uint64_t) self->index;
    char stream[40], version[16], data[40], id[48];
    snprintf (stream, sizeof stream, "account/%llu", (unsigned long long) account);
    snprintf (version, sizeof version, "%u", ++versions[account]);
    snprintf (data, sizeof data, "{\"amount\": %llu}", (unsigned long long) (1 + account % 100));
    snprintf (id, sizeof id, "bench-%d-%llu", self->index, (unsigned long long) seq);
    const char *values[4] = { stream, version, data, id };
    if (!PQsendQueryPrepared (self->conn, "append", 4, values, NULL, NULL, 0)
        || !PQpipelineSync (self->conn))
        return false;
    self->intended[self->tail % self->capacity] = intended;
    self->measured[self->tail % self->capacity] = measured;
    self->tail++;
    return true;
}

json_t *
bench_baseline_pg (const char *conninfo, zcq_durability_t durability, uint64_t accounts, int window,
                   int connections, double seconds)
{
    if (connections < 1)
        connections = 1;
    if (accounts < (uint64_t) connections)
        accounts = (uint64_t) connections;
    PGconn *admin = PQconnectdb (conninfo ? conninfo : "");
    if (PQstatus (admin) != CONNECTION_OK) {
        json_t *absent = s_absent ("cannot connect: %s", PQerrorMessage (admin));
        PQfinish (admin);
        return absent;
    }
    int server_version = PQserverVersion (admin);
    if (!s_setup (admin, accounts)) {
        json_t *absent = s_absent ("setup failed: %s", PQerrorMessage (admin));
        PQfinish (admin);
        return absent;
    }
    PQfinish (admin);

    s_pg_conn_t *pool = calloc ((size_t) connections, sizeof (s_pg_conn_t));
    uint32_t *versions = calloc (accounts, sizeof (uint32_t));
    size_t per_conn = (size_t) (window / connections > 0 ? window / connections : 1);
    bool ready = pool && versions;
    for (uint64_t account = 0; ready && account < accounts; account++)
        versions[account] = 1; //  opened
    const char *setting = durability == ZCQ_DURABILITY_FSYNC ? "SET synchronous_commit = on"
                                                             : "SET synchronous_commit = off";
    char failure[512] = "out of memory";
    for (int index = 0; ready && index < connections; index++) {
        s_pg_conn_t *self = &pool[index];
        self->index = index;
        self->capacity = per_conn + 1;
        self->intended = calloc (self->capacity, sizeof (uint64_t));
        self->measured = calloc (self->capacity, sizeof (bool));
        self->conn = PQconnectdb (conninfo ? conninfo : "");
        if (!self->intended || !self->measured || PQstatus (self->conn) != CONNECTION_OK
            || !s_exec (self->conn, setting)) {
            snprintf (failure, sizeof failure, "connection %d of %d: %s", index + 1, connections,
                      PQerrorMessage (self->conn));
            ready = false;
            break;
        }
        PGresult *prepared = PQprepare (self->conn, "append", s_append_sql, 4, NULL);
        ready = PQresultStatus (prepared) == PGRES_COMMAND_OK;
        PQclear (prepared);
        if (ready)
            ready = PQenterPipelineMode (self->conn) && PQsetnonblocking (self->conn, 1) == 0;
    }

    json_t *result = NULL;
    if (ready) {
        bench_hist_t *latency = bench_hist_new ();
        uint64_t rng = 0x9E3779B97F4A7C15ull ^ bench_now_ns (), seq = 0;
        uint64_t ok_count = 0, errors = 0, conflicts = 0;
        uint64_t start = bench_now_ns ();
        uint64_t measure = start + 1000000000ull; //  one second of warm-up
        uint64_t end = measure + (uint64_t) (seconds * 1e9);
        struct pollfd *fds = calloc ((size_t) connections, sizeof (struct pollfd));
        bool broken = !fds || !latency;
        while (!broken) {
            uint64_t now = bench_now_ns ();
            bool sending = now < end;
            size_t in_flight = 0;
            for (int index = 0; index < connections && !broken; index++) {
                s_pg_conn_t *self = &pool[index];
                while (sending && self->tail - self->head < per_conn) {
                    uint64_t sent = bench_now_ns ();
                    if (!s_send (self, connections, accounts, versions, &rng, sent,
                                 sent >= measure && sent < end, seq++)) {
                        broken = true;
                        break;
                    }
                }
                int flushing = PQflush (self->conn);
                if (flushing < 0)
                    broken = true;
                fds[index]
                    = (struct pollfd) { .fd = PQsocket (self->conn),
                                        .events = (short) (POLLIN | (flushing ? POLLOUT : 0)) };
                in_flight += self->tail - self->head;
            }
            if (broken || (!sending && in_flight == 0) || now > end + 10000000000ull)
                break;
            poll (fds, (nfds_t) connections, 100);
            for (int index = 0; index < connections && !broken; index++) {
                s_pg_conn_t *self = &pool[index];
                if (!PQconsumeInput (self->conn)) {
                    broken = true;
                    break;
                }
                bool after_null = false;
                while (self->tail > self->head && !PQisBusy (self->conn)) {
                    PGresult *answer = PQgetResult (self->conn);
                    if (!answer) {
                        if (after_null)
                            break;
                        after_null = true;
                        continue;
                    }
                    after_null = false;
                    ExecStatusType status = PQresultStatus (answer);
                    if (status == PGRES_PIPELINE_SYNC) {
                        //  one transaction done
                        uint64_t done = bench_now_ns ();
                        size_t slot = self->head % self->capacity;
                        if (!self->failed_current && done >= measure && done < end)
                            ok_count++;
                        if (!self->failed_current && self->measured[slot])
                            bench_hist_record (latency, done - self->intended[slot]);
                        self->head++;
                        self->failed_current = false;
                    }
                    else if (status == PGRES_FATAL_ERROR || status == PGRES_PIPELINE_ABORTED) {
                        const char *state = PQresultErrorField (answer, PG_DIAG_SQLSTATE);
                        if (state && strcmp (state, "23505") == 0)
                            conflicts++;
                        else
                            errors++;
                        if (errors == 1 && status == PGRES_FATAL_ERROR)
                            fprintf (stderr, "zcqrs-bench: postgres: %s",
                                     PQresultErrorMessage (answer));
                        self->failed_current = true;
                    }
                    PQclear (answer);
                }
            }
        }
        if (!broken) {
            result = json_object ();
            json_object_set_new (result, "available", json_true ());
            json_object_set_new (result, "server_version", json_integer (server_version));
            json_object_set_new (result, "synchronous_commit",
                                 json_string (durability == ZCQ_DURABILITY_FSYNC ? "on" : "off"));
            json_object_set_new (result, "connections", json_integer (connections));
            json_object_set_new (result, "window",
                                 json_integer ((json_int_t) per_conn * connections));
            json_object_set_new (result, "accounts", json_integer ((json_int_t) accounts));
            json_object_set_new (result, "seconds", json_real (seconds));
            json_object_set_new (result, "commands_per_s", json_real (ok_count / seconds));
            json_object_set_new (result, "ack", bench_hist_json (latency));
            json_object_set_new (result, "conflicts", json_integer ((json_int_t) conflicts));
            json_object_set_new (result, "errors", json_integer ((json_int_t) errors));
        }
        else
            result = s_absent ("the pipeline broke: %s", PQerrorMessage (pool[0].conn));
        free (fds);
        bench_hist_destroy (&latency);
    }
    else
        result = s_absent ("cannot prepare the client connections: %s", failure);
    for (int index = 0; pool && index < connections; index++) {
        if (pool[index].conn)
            PQfinish (pool[index].conn);
        free (pool[index].intended);
        free (pool[index].measured);
    }
    free (pool);
    free (versions);
    return result;
}

#endif
