/*  zcq_fixture.h: test an aggregate's decide and evolve without a node.

    Given the events a stream already has, when a command comes, then
    these events (or this error): the same calls a node makes, on one
    stream, in memory, with no socket, thread or store.

        zcq_fixture_t *fx = zcq_fixture_new (zcq_bank_domain (), "account", "42");
        zcq_set_str (zcq_fixture_given (fx, "opened"), "owner", "ann");
        zcq_set_int (zcq_fixture_given (fx, "deposited"), "amount", 500);
        zcq_set_int (zcq_fixture_when (fx, "withdraw"), "amount", 800);
        assert (zcq_fixture_run (fx) == ZCQ_REJECTED);
        puts (zcq_fixture_message (fx));          //  insufficient funds: ...

        zcq_set_int (zcq_fixture_when (fx, "withdraw"), "amount", 200);
        assert (zcq_fixture_run (fx) == ZCQ_OK);
        assert (zcq_fixture_emitted_count (fx) == 1);
        const zcq_event_t *e = zcq_fixture_emitted (fx, 0);
        assert (streq (zcq_event_type (e), "withdrawn"));
        assert (zcq_event_int (e, "amount", 0) == 200);
        assert (zcq_value_get_int (zcq_fixture_reply (fx), "balance", 0) == 300);
        zcq_fixture_destroy (&fx);

    Events are encoded and read back exactly as a node stores them, so
    evolve sees what it will see in production: the event's version,
    its definition's context, upcasters for an older version given with
    zcq_fixture_given_version, strict reads that fail.
*/
#ifndef ZCQ_FIXTURE_H_INCLUDED
#define ZCQ_FIXTURE_H_INCLUDED

#include "zcq_domain.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zcq_fixture_t zcq_fixture_t;

//  A stream <aggregate>/<key> of the domain at version 0: its state is
//  zeroed, then given to the aggregate's init. NULL when the domain fails
//  zcq_domain_check or has no such aggregate (a message on stderr).
ZCQ_EXPORT zcq_fixture_t *zcq_fixture_new (const zcq_domain_t *domain, const char *aggregate,
                                           const char *key);
ZCQ_EXPORT void zcq_fixture_destroy (zcq_fixture_t **self_p);

//  An event the stream already has: set its payload on the builder. It
//  is applied with evolve before the next given, when or run, and its
//  stream version is the next. given_version gives it as version
//  `version` of its type, as an older node stored it (upcast when read).
ZCQ_EXPORT zcq_fields_t *zcq_fixture_given (zcq_fixture_t *self, const char *type);
ZCQ_EXPORT zcq_fields_t *zcq_fixture_given_version (zcq_fixture_t *self, const char *type,
                                                    uint32_t version);

//  The command to decide: set its data on the builder (an empty map when
//  none is set), then zcq_fixture_run. Meta, if any, on zcq_fixture_meta.
ZCQ_EXPORT zcq_fields_t *zcq_fixture_when (zcq_fixture_t *self, const char *type);
ZCQ_EXPORT zcq_fields_t *zcq_fixture_meta (zcq_fixture_t *self);

//  Apply the given events, then decide the command as a node does:
//  ZCQ_OK (its events are applied to the state, and are the stream's
//  from now on), or the error the command would be answered: REJECTED
//  or INVALID from decide, UNKNOWN for a command type the aggregate does
//  not have, INTERNAL for a bug of the domain (an undeclared event type,
//  a failed strict read in evolve, a protocol name in the reply). After
//  an error the state is as it was before the command.
ZCQ_EXPORT zcq_err_t zcq_fixture_run (zcq_fixture_t *self);

//  What the last run gave: the message of an error ("" after ZCQ_OK),
//  the events it emitted (valid until the next run; their position is
//  their stream version, as if the log held this stream only), and the
//  fields decide added to the reply (a map; empty when none).
ZCQ_EXPORT const char *zcq_fixture_message (const zcq_fixture_t *self);
ZCQ_EXPORT size_t zcq_fixture_emitted_count (const zcq_fixture_t *self);
ZCQ_EXPORT const zcq_event_t *zcq_fixture_emitted (zcq_fixture_t *self, size_t index);
ZCQ_EXPORT const zcq_value_t *zcq_fixture_reply (const zcq_fixture_t *self);

//  The state struct now (the given events and every successful command
//  applied), and the stream's version.
ZCQ_EXPORT const void *zcq_fixture_state (zcq_fixture_t *self);
ZCQ_EXPORT uint64_t zcq_fixture_version (zcq_fixture_t *self);

#ifdef __cplusplus
}
#endif
#endif
