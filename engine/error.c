/*  error.c: names and sentences for zcq_err_t. */
#include "zcq_error.h"
#include <string.h>

static const struct {
    const char *code;
    const char *text;
} s_errors[] = {
    [ZCQ_OK] = { "ok", "success" },
    [ZCQ_INVALID] = { "invalid", "malformed request" },
    [ZCQ_UNKNOWN] = { "unknown", "unknown operation, type or name" },
    [ZCQ_REJECTED] = { "rejected", "rejected by the domain" },
    [ZCQ_CONFLICT] = { "conflict", "stream version conflict" },
    [ZCQ_TIMEOUT] = { "timeout", "timed out" },
    [ZCQ_UNAVAILABLE] = { "unavailable", "unavailable, try again" },
    [ZCQ_DENIED] = { "denied", "access denied" },
    [ZCQ_INTERNAL] = { "internal", "internal error" },
    [ZCQ_NOT_FOUND] = { "internal", "not found" },
    [ZCQ_IO] = { "internal", "storage I/O error" },
    [ZCQ_CORRUPT] = { "internal", "stored data is corrupt" },
    [ZCQ_NOMEM] = { "internal", "out of memory" },
};
#define S_ERROR_COUNT (sizeof (s_errors) / sizeof (s_errors[0]))

const char *
zcq_strerror (zcq_err_t err)
{
    if ((unsigned) err >= S_ERROR_COUNT)
        return "unrecognised error";
    return s_errors[err].text;
}

const char *
zcq_err_code (zcq_err_t err)
{
    if ((unsigned) err >= S_ERROR_COUNT)
        return "internal";
    return s_errors[err].code;
}

zcq_err_t
zcq_err_parse (const char *code)
{
    for (unsigned index = 0; index <= ZCQ_INTERNAL; index++)
        if (code && strcmp (code, s_errors[index].code) == 0)
            return (zcq_err_t) index;
    return ZCQ_INTERNAL;
}
