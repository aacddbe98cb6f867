/*  zcq_error.h: the one error enum of zcqrs.

    Codes mirror the ZCQ/1 wire errors (spec section 6) so that an engine
    error turns into a reply without translation tables scattered around;
    the last four are engine-side causes that travel as `internal`.
*/
#ifndef ZCQ_ERROR_H_INCLUDED
#define ZCQ_ERROR_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ZCQ_BUILDING)
#define ZCQ_EXPORT __attribute__ ((visibility ("default")))
#else
#define ZCQ_EXPORT
#endif

typedef enum {
    ZCQ_OK = 0,
    ZCQ_INVALID,     //  malformed request or payload
    ZCQ_UNKNOWN,     //  unknown op, aggregate, command, view or index
    ZCQ_REJECTED,    //  the domain refused the command
    ZCQ_CONFLICT,    //  `expect` did not match the stream version
    ZCQ_TIMEOUT,     //  a wait ran out of time
    ZCQ_UNAVAILABLE, //  overloaded, shutting down, or not the owner
    ZCQ_DENIED,      //  not authenticated or not allowed
    ZCQ_INTERNAL,    //  a bug or an unexpected failure
    ZCQ_NOT_FOUND,   //  the thing looked up does not exist
    ZCQ_IO,          //  the storage failed to read or write
    ZCQ_CORRUPT,     //  stored bytes do not decode
    ZCQ_NOMEM,       //  out of memory
} zcq_err_t;

//  Return a human-readable sentence for an error code.
ZCQ_EXPORT const char *zcq_strerror (zcq_err_t err);

//  Return the ZCQ/1 wire code for an error: "invalid", "unknown", ...;
//  engine-side causes (not-found, I/O, corrupt, no memory) map to
//  "internal".
ZCQ_EXPORT const char *zcq_err_code (zcq_err_t err);

//  Parse a ZCQ/1 wire code back into an error; unrecognised codes give
//  ZCQ_INTERNAL.
ZCQ_EXPORT zcq_err_t zcq_err_parse (const char *code);

//  Propagate an error from an expression: ZCQ_TRY (zcq_arg_int (...));
#define ZCQ_TRY(expr)                   \
    do {                                \
        zcq_err_t zcq_try_rc_ = (expr); \
        if (zcq_try_rc_ != ZCQ_OK)      \
            return zcq_try_rc_;         \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
