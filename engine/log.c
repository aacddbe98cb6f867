/*  log.c: the level filter on czmq's log (zcq_log.h).

    DESIGN
    1. czmq formats each line itself ("L: yy-mm-dd HH:MM:SS text", after
       "ident: " when an ident is set; L is E, W, N, I or D) and writes it
       to its log stream with one fprintf and a flush. The filter is that
       stream: a cookie FILE whose write function reads L and writes the
       line to stderr, or drops it.
    2. A line whose level cannot be read passes: the filter never hides
       what it does not understand.
    3. THREAD SAFETY: every actor logs. stdio locks the FILE for each call,
       so the write function sees one thread at a time; the level is an
       atomic read on each line.
*/
#include "zcq_internal.h"
#include "zcq_log.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int s_level = ZCQ_LOG_INFO;
static FILE *s_stream;
static pthread_once_t s_stream_once = PTHREAD_ONCE_INIT;

static const char *const s_names[] = { "error", "warn", "info", "debug" };

zcq_err_t
zcq_log_level_parse (const char *name, zcq_log_level_t *level)
{
    for (int index = 0; name && index <= ZCQ_LOG_DEBUG; index++)
        if (strcmp (name, s_names[index]) == 0) {
            *level = (zcq_log_level_t) index;
            return ZCQ_OK;
        }
    return ZCQ_INVALID;
}

const char *
zcq_log_level_name (zcq_log_level_t level)
{
    return level >= ZCQ_LOG_ERROR && level <= ZCQ_LOG_DEBUG ? s_names[level] : "info";
}

zcq_log_level_t
zcq_log_level (void)
{
    return (zcq_log_level_t) atomic_load (&s_level);
}

bool
zcq_log_enabled (zcq_log_level_t level)
{
    return (int) level <= atomic_load (&s_level);
}

//  --------------------------------------------------------------------------
//  The level of one of czmq's lines (DESIGN 1), or -1 when it has none.

static int
s_line_level (const char *line, size_t len)
{
    const char *mark = line;
    if (!(len >= 3 && line[1] == ':' && line[2] == ' ')) {
        //  "ident: L: ..."
        const char *colon = memchr (line, ':', len);
        if (!colon || (size_t) (colon - line) + 5 > len || colon[1] != ' ' || colon[3] != ':'
            || colon[4] != ' ')
            return -1;
        mark = colon + 2;
    }
    switch (*mark) {
        case 'E': return ZCQ_LOG_ERROR;
        case 'W': return ZCQ_LOG_WARN;
        case 'N':
        case 'I': return ZCQ_LOG_INFO;
        case 'D': return ZCQ_LOG_DEBUG;
        default: return -1;
    }
}

static void
s_write_all (const char *data, size_t len)
{
    while (len > 0) {
        ssize_t written = write (STDERR_FILENO, data, len);
        if (written <= 0)
            return; //  stderr gone: the log is lost, the node goes on
        data += written;
        len -= (size_t) written;
    }
}

//  The cookie's write function: each line whose level passes, to stderr.
static ssize_t
s_filter_write (void *cookie, const char *data, size_t size)
{
    size_t at = 0;
    while (at < size) {
        const char *end = memchr (data + at, '\n', size - at);
        size_t len = end ? (size_t) (end - (data + at)) + 1 : size - at;
        int level = s_line_level (data + at, len);
        if (level < 0 || level <= atomic_load (&s_level))
            s_write_all (data + at, len);
        at += len;
    }
    return (ssize_t) size;
}

static void
s_open_stream (void)
{
    cookie_io_functions_t functions = { .write = s_filter_write };
    s_stream = fopencookie (NULL, "w", functions);
    if (s_stream)
        setvbuf (s_stream, NULL, _IOLBF, 4096);
}

void
zcq_log_set_level (zcq_log_level_t level)
{
    if (level < ZCQ_LOG_ERROR || level > ZCQ_LOG_DEBUG)
        level = ZCQ_LOG_INFO;
    atomic_store (&s_level, (int) level);
    pthread_once (&s_stream_once, s_open_stream);
    if (s_stream)
        zsys_set_logstream (s_stream);
}
