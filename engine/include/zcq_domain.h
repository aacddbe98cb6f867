/*  zcq_domain.h: the domain API, how a program teaches zcqrs its business.

    A domain is a set of aggregate types and of projections, declared as
    constant tables. Domain code sees values and builders only: no
    MessagePack, ZeroMQ or RocksDB.

    Aggregate (write side):
        decide (state, command data) -> events, or an error with a message
        evolve (state, event)        -> state

    The state is a plain struct of state_size bytes, zeroed (then init) for
    a new stream. Snapshots store it every snapshot_every events, tagged
    with schema; a snapshot with another schema is ignored and the stream
    replayed. By default the snapshot is the struct's bytes, with the
    state's size and a fingerprint of its layout (state_fields); a snapshot
    whose size or fingerprint differs from the running code's is ignored
    too (with a warning naming the reason) and the stream replayed, so a
    struct that was resized, or whose declared fields moved, never gets
    another layout's bytes. A state that holds pointers supplies
    snapshot_encode, snapshot_decode and release instead.

    Projection (read side): one handler per event type turns the event into
    changes of one view's rows (upsert, patch, delete), through fields
    builders.
*/
#ifndef ZCQ_DOMAIN_H_INCLUDED
#define ZCQ_DOMAIN_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include "zcq_value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_decide_t zcq_decide_t; //  one decision in progress
typedef struct zcq_event_t zcq_event_t;   //  a recorded event, read-only
typedef struct zcq_fields_t zcq_fields_t; //  fields to write into a map
typedef struct zcq_view_t zcq_view_t;     //  a view, as a projection sees it

typedef zcq_err_t (zcq_decide_fn) (zcq_decide_t *decide, const void *state);
typedef void (zcq_evolve_fn) (void *state, const zcq_event_t *event);
typedef void (zcq_project_fn) (zcq_view_t *view, const zcq_event_t *event);
//  Turn the payload of event, of version `version` of its type, into the
//  payload of version + 1, set on data. The event reads as usual
//  (zcq_event_int, _str, _data, ...; a failed strict read fails it too).
//  Return ZCQ_OK, or an error: the handler about to run fails.
typedef zcq_err_t (zcq_upcast_fn) (const zcq_event_t *event, uint32_t version, zcq_fields_t *data);

//  Every handler definition ends with a user pointer, context, that the
//  engine never reads: the handler gets it back through zcq_decide_context,
//  zcq_event_context (evolve) or zcq_view_context (projection), so that one
//  function can serve several definitions. Omitted in an initialiser, NULL
//  (designated initialisers, as in examples/bank, keep -Wextra quiet as
//  fields are added).
typedef struct {
    const char *type; //  command name, e.g. "deposit"
    zcq_decide_fn *decide;
    void *context; //  zcq_decide_context
} zcq_command_def_t;

typedef struct {
    const char *type; //  event name, e.g. "deposited"
    zcq_evolve_fn *evolve;
    void *context; //  zcq_event_context, inside evolve
    //  The version of the type's payload that decide emits and evolve and
    //  projections read (0 counts as 1). An event is stored with its
    //  version (the body key event_version, absent for 1); one of an
    //  older version is brought to this one by upcast (version 1 to 2, 2
    //  to 3, ...) each time it is read, before evolve and before any
    //  projection handler sees it. No upcaster, an upcaster that fails,
    //  or an event of a newer version fail the handler (see
    //  zcq_event_int_req).
    uint32_t version;
    zcq_upcast_fn *upcast;
} zcq_event_def_t;

//  One field of a state struct, for the layout fingerprint of its default
//  snapshots: ZCQ_STATE_FIELD (account_t, balance). The fingerprint covers
//  every declared field's name, offset and size, and the struct's size: a
//  reordered, resized or renamed field changes it. A field's type changed
//  at the same size (int64_t to double) does not: bump schema for that.
typedef struct {
    const char *name; //  NULL ends the table
    size_t offset;
    size_t size;
} zcq_state_field_t;
// clang-format off
#define ZCQ_STATE_FIELD(type, member) \
    { .name = #member, .offset = offsetof (type, member), .size = sizeof (((type *) 0)->member) }
// clang-format on

typedef struct {
    const char *name;                  //  aggregate type, [a-z0-9_.-]{1,64}
    size_t state_size;                 //  bytes of the state struct
    void (*init) (void *state);        //  optional: after zeroing
    void (*release) (void *state);     //  optional: free what state holds
    const zcq_command_def_t *commands; //  ends with { NULL }
    const zcq_event_def_t *events;     //  ends with { NULL }
    uint32_t schema;                   //  snapshot layout version
    uint32_t snapshot_every;           //  events between snapshots; 0 = 100
    zcq_err_t (*snapshot_encode) (const void *state, zcq_fields_t *snapshot);
    zcq_err_t (*snapshot_decode) (void *state, const zcq_value_t *snapshot);
    //  optional: the state's fields, ends with { NULL }; without it the
    //  fingerprint of a default snapshot covers state_size only
    const zcq_state_field_t *state_fields;
    //  Retention, applied by the node every retention-interval-ms: keep at
    //  most the last max_count events of each stream (0: all), and no
    //  event older than max_age_s seconds (0: forever). Removed events
    //  leave the log; the stream gets ZCQ_EVENT_TRUNCATED, and its state
    //  lives on in a snapshot (docs/domain.md, "Deleting streams").
    uint64_t max_count;
    uint64_t max_age_s;
} zcq_aggregate_def_t;

//  System types, written by the node itself, never by a domain (type
//  names starting with '$' are reserved). A command of type
//  ZCQ_COMMAND_DELETE on any aggregate deletes its stream: the node
//  appends a ZCQ_EVENT_DELETED event (data {}) and rejects every later
//  command on the stream. Evolve never sees system events; a projection
//  handler may declare ZCQ_EVENT_DELETED (with its aggregate, or NULL) to
//  drop a deleted stream's rows (docs/domain.md, "Deleting streams").
#define ZCQ_COMMAND_DELETE "$delete"
#define ZCQ_EVENT_DELETED  "$deleted"
//  Truncation (`$truncate`, or the aggregate's retention: max_count,
//  max_age_s) removes a stream's earlier events from the log and appends
//  ZCQ_EVENT_TRUNCATED, data {before: the first version kept}.
#define ZCQ_COMMAND_TRUNCATE "$truncate"
#define ZCQ_EVENT_TRUNCATED  "$truncated"

typedef struct {
    const char *aggregate; //  NULL = events of every aggregate type
    const char *type;      //  event name
    zcq_project_fn *apply;
    void *context; //  zcq_view_context
} zcq_handler_def_t;

typedef struct {
    const char *view;                  //  view name, e.g. "accounts"
    uint32_t version;                  //  change it to rebuild the view
    bool synchronous;                  //  applied before the command's ack
    const char *const *indexes;        //  indexed row fields, ends with NULL
    const zcq_handler_def_t *handlers; //  ends with { NULL }
} zcq_projection_def_t;

typedef struct {
    const char *name;
    const zcq_aggregate_def_t *const *aggregates;   //  ends with NULL
    const zcq_projection_def_t *const *projections; //  ends with NULL
} zcq_domain_t;

//  A shared object that the daemon loads with --domain PATH.so exports
//  this function; ZCQ_DOMAIN_PLUGIN (&my_domain) defines it, and with it
//  zcq_domain_plugin_abi, the ZCQ_DOMAIN_ABI the plugin was built with.
typedef const zcq_domain_t *(zcq_domain_plugin_fn) (void);
#define ZCQ_DOMAIN_PLUGIN_SYMBOL "zcq_domain_plugin"
//  The layout of the structs above, as a number. It moves whenever one of
//  them changes (2: zcq_aggregate_def_t gained max_count and max_age_s),
//  and a plugin built with another is refused: the node would read its
//  tables with the wrong layout. Rebuild the plugin against this header.
#define ZCQ_DOMAIN_ABI 2
#define ZCQ_DOMAIN_PLUGIN(domain)                                                          \
    __attribute__ ((visibility ("default"))) const zcq_domain_t *zcq_domain_plugin (void); \
    const zcq_domain_t *zcq_domain_plugin (void)                                           \
    {                                                                                      \
        return (domain);                                                                   \
    }                                                                                      \
    __attribute__ ((visibility ("default"))) unsigned zcq_domain_plugin_abi (void);        \
    unsigned zcq_domain_plugin_abi (void)                                                  \
    {                                                                                      \
        return ZCQ_DOMAIN_ABI;                                                             \
    }

//  Load a domain plugin from the shared object at path: its domain, and
//  in *handle_p what zcq_domain_close takes; NULL with the reason in error
//  when it cannot be loaded, has no zcq_domain_plugin, was built with
//  another ZCQ_DOMAIN_ABI (or before there was one), or returns no domain.
ZCQ_EXPORT const zcq_domain_t *zcq_domain_open (const char *path, void **handle_p, char *error,
                                                size_t size);
//  Unload a plugin (only once no node uses its domain).
ZCQ_EXPORT void zcq_domain_close (void **handle_p);

//  Check a domain's tables (names, sizes, duplicates; every projection
//  handler names an event type that its aggregate, or with aggregate NULL
//  some aggregate, declares). On failure writes a reason into error. A
//  node runs it on start and refuses a domain that fails it.
ZCQ_EXPORT zcq_err_t zcq_domain_check (const zcq_domain_t *domain, char *error, size_t size);

//  ---------------------------------------------------------------------
//  Inside decide

//  The command's data (may be NIL when the client sent none), its meta map
//  (or NIL), its aggregate key and its command id (NUL-terminated).
ZCQ_EXPORT const zcq_value_t *zcq_decide_data (const zcq_decide_t *self);
ZCQ_EXPORT const zcq_value_t *zcq_decide_meta (const zcq_decide_t *self);
ZCQ_EXPORT const char *zcq_decide_key (const zcq_decide_t *self);
ZCQ_EXPORT const char *zcq_decide_command_id (const zcq_decide_t *self);
//  The stream's version before this command (0 for a new stream).
ZCQ_EXPORT uint64_t zcq_decide_version (const zcq_decide_t *self);
//  The context of the command's definition (zcq_command_def_t).
ZCQ_EXPORT void *zcq_decide_context (const zcq_decide_t *self);

//  Append an event of the given type to the decision; set its payload with
//  zcq_set_* on the returned fields. Events are applied to the state with
//  evolve only if the whole decision succeeds. A type the aggregate's
//  events table does not declare is a bug of the domain: zcq_emit returns
//  NULL and the command fails `internal` with a message naming the type,
//  whatever decide returns; nothing of it is stored.
ZCQ_EXPORT zcq_fields_t *zcq_emit (zcq_decide_t *self, const char *type);
//  Fields to add to the command's `ok` reply (Akka's thenReply): set them
//  with zcq_set_* on the returned builder (the same one on every call of
//  a decision; valid until decide returns). They are stored with the
//  command's result, so a duplicate of the command is answered with them
//  too. Ignored when the decision fails. The names the protocol gives the
//  reply (id, ok, stream, version, position, events, duplicate, group,
//  node, error, message, reason, owner, rid) and more than 1,024 encoded
//  bytes fail the command `internal`. NULL when out of memory.
ZCQ_EXPORT zcq_fields_t *zcq_decide_reply (zcq_decide_t *self);
//  End the decision with an error: `return zcq_reject (d, "...")`.
ZCQ_EXPORT zcq_err_t zcq_reject (zcq_decide_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
ZCQ_EXPORT zcq_err_t zcq_invalid (zcq_decide_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Read a field of the command's data, checking type and range; on failure
//  the decision becomes `invalid` with a message naming the field, and the
//  call returns ZCQ_INVALID: ZCQ_TRY (zcq_arg_int (d, "amount", 1, INT64_MAX, &amount));
ZCQ_EXPORT zcq_err_t zcq_arg_int (zcq_decide_t *self, const char *field, int64_t min, int64_t max,
                                  int64_t *value);
//  As zcq_arg_int, but an absent (or nil) field gives fallback.
ZCQ_EXPORT zcq_err_t zcq_arg_int_or (zcq_decide_t *self, const char *field, int64_t min,
                                     int64_t max, int64_t fallback, int64_t *value);
//  A string field of min_len to max_len bytes; value is NUL-terminated and
//  lives as long as the decision.
ZCQ_EXPORT zcq_err_t zcq_arg_str (zcq_decide_t *self, const char *field, size_t min_len,
                                  size_t max_len, const char **value);
ZCQ_EXPORT zcq_err_t zcq_arg_bool_or (zcq_decide_t *self, const char *field, bool fallback,
                                      bool *value);

//  ---------------------------------------------------------------------
//  Fields builders (event payloads, snapshots, view rows). A NULL self is
//  ignored, so calls can chain on zcq_emit's result.

ZCQ_EXPORT void zcq_set_int (zcq_fields_t *self, const char *field, int64_t value);
ZCQ_EXPORT void zcq_set_float (zcq_fields_t *self, const char *field, double value);
ZCQ_EXPORT void zcq_set_bool (zcq_fields_t *self, const char *field, bool value);
ZCQ_EXPORT void zcq_set_str (zcq_fields_t *self, const char *field, const char *value);
ZCQ_EXPORT void zcq_set_strn (zcq_fields_t *self, const char *field, const char *value, size_t len);
ZCQ_EXPORT void zcq_set_bin (zcq_fields_t *self, const char *field, const void *data, size_t len);
ZCQ_EXPORT void zcq_set_nil (zcq_fields_t *self, const char *field);
ZCQ_EXPORT void zcq_set_value (zcq_fields_t *self, const char *field, const zcq_value_t *value);
//  Add to an integer field of the row being patched (absent counts as 0).
//  On an event or snapshot, same as zcq_set_int.
ZCQ_EXPORT void zcq_add_int (zcq_fields_t *self, const char *field, int64_t delta);
//  Remove a field from the row being patched.
ZCQ_EXPORT void zcq_unset (zcq_fields_t *self, const char *field);

//  ---------------------------------------------------------------------
//  Recorded events (evolve and projections)

//  The whole event as the ZCQ/1 event map (section 4).
ZCQ_EXPORT const zcq_value_t *zcq_event_body (const zcq_event_t *self);
ZCQ_EXPORT const char *zcq_event_type (const zcq_event_t *self);
ZCQ_EXPORT const zcq_value_t *zcq_event_data (const zcq_event_t *self);
ZCQ_EXPORT const zcq_value_t *zcq_event_meta (const zcq_event_t *self);
ZCQ_EXPORT const char *zcq_event_stream (const zcq_event_t *self);
ZCQ_EXPORT const char *zcq_event_aggregate (const zcq_event_t *self);
ZCQ_EXPORT const char *zcq_event_key (const zcq_event_t *self);
ZCQ_EXPORT const char *zcq_event_command_id (const zcq_event_t *self);
ZCQ_EXPORT const char *zcq_event_node (const zcq_event_t *self);
ZCQ_EXPORT uint64_t zcq_event_position (const zcq_event_t *self);
ZCQ_EXPORT uint64_t zcq_event_version (const zcq_event_t *self);
ZCQ_EXPORT int64_t zcq_event_time (const zcq_event_t *self);
//  The version of its type's payload the event has (event_version; 1 when
//  absent), after any upcasting: in a handler, its definition's version.
ZCQ_EXPORT uint32_t zcq_event_type_version (const zcq_event_t *self);
//  Inside evolve: the context of the event's definition (zcq_event_def_t).
//  NULL elsewhere (a projection handler has zcq_view_context).
ZCQ_EXPORT void *zcq_event_context (const zcq_event_t *self);
//  Shorthands on the payload: zcq_value_get_int (zcq_event_data (e), ...)
ZCQ_EXPORT int64_t zcq_event_int (const zcq_event_t *self, const char *field, int64_t fallback);
//  A payload string as a NUL-terminated copy held by the event (valid
//  while the event is), or "" when absent.
ZCQ_EXPORT const char *zcq_event_str (const zcq_event_t *self, const char *field);
//  Strict forms, for fields an event of the type always has: a missing
//  field, or one of another type (a string with a NUL byte counts as
//  one), fails the handler with a reason naming the event and the field,
//  and the call returns 0 (""). A failed evolve fails the command that is
//  being decided or the stream being loaded, `internal` with that reason;
//  a failed projection handler has none of its changes applied and marks
//  its view failed (`views` status `failed`, `error` the reason; the view
//  goes on with later events). The first failure of a handler is kept.
ZCQ_EXPORT int64_t zcq_event_int_req (const zcq_event_t *self, const char *field);
ZCQ_EXPORT const char *zcq_event_str_req (const zcq_event_t *self, const char *field);
//  Fail the running handler (evolve or projection) as a strict read does,
//  with a reason of the handler's.
ZCQ_EXPORT void zcq_event_fail (const zcq_event_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  ---------------------------------------------------------------------
//  Inside a projection handler

//  Change the row at key: upsert creates it when absent (with its `key`
//  field), patch changes it only when present. Each call returns a builder
//  of its own (also for the same key): the fields set on it are merged
//  into the row when the handler returns. A builder is valid until the
//  handler returns, and the engine reuses it for a later event; do not
//  keep it. The changes (upserts, patches, deletes) are applied in the
//  order of the calls, and none of them when the handler failed (see
//  zcq_event_fail). NULL when out of memory (the handler then fails too).
ZCQ_EXPORT zcq_fields_t *zcq_view_upsert (zcq_view_t *self, const char *key);
ZCQ_EXPORT zcq_fields_t *zcq_view_patch (zcq_view_t *self, const char *key);
//  Delete the row at key (when the handler returns, in call order).
ZCQ_EXPORT void zcq_view_delete (zcq_view_t *self, const char *key);
//  The context of the running handler's definition (zcq_handler_def_t).
ZCQ_EXPORT void *zcq_view_context (const zcq_view_t *self);
//  The row at key as it is now (changes pending in this handler not yet
//  applied), or NULL.
ZCQ_EXPORT const zcq_value_t *zcq_view_row (zcq_view_t *self, const char *key);

#ifdef __cplusplus
}
#endif
#endif
