/*  zcq_log.h: the level of the node's log lines.

    The engine logs through czmq (zsys_error, zsys_warning, zsys_notice,
    zsys_info, zsys_debug). zcq_log_set_level puts a filter on that log:
    lines below the level are dropped, the others go to stderr. It is one
    setting per process (czmq's log is), which a node applies when it
    starts with the setting `log-level` given, and zcqrsd at once.

        error   errors only
        warn    and warnings
        info    and notices and information (the default)
        debug   everything
*/
#ifndef ZCQ_LOG_H_INCLUDED
#define ZCQ_LOG_H_INCLUDED

#include "zcq_error.h"
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ZCQ_LOG_ERROR = 0,
    ZCQ_LOG_WARN,
    ZCQ_LOG_INFO,
    ZCQ_LOG_DEBUG,
} zcq_log_level_t;

//  The level of a name (error, warn, info, debug); ZCQ_INVALID for another.
ZCQ_EXPORT zcq_err_t zcq_log_level_parse (const char *name, zcq_log_level_t *level);
//  The name of a level.
ZCQ_EXPORT const char *zcq_log_level_name (zcq_log_level_t level);
//  Filter czmq's log to level and above, written to stderr.
ZCQ_EXPORT void zcq_log_set_level (zcq_log_level_t level);
//  The level in force (ZCQ_LOG_INFO until set).
ZCQ_EXPORT zcq_log_level_t zcq_log_level (void);
//  True when a line of this level is written: for a program's own lines.
ZCQ_EXPORT bool zcq_log_enabled (zcq_log_level_t level);

#ifdef __cplusplus
}
#endif
#endif
