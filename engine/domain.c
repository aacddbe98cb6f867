/*  domain.c: checks and look-ups over a domain's constant tables. */
#include "zcq_internal.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define S_DEFAULT_SNAPSHOT_EVERY 100

static bool
s_valid_aggregate_name (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > ZCQ_AGGREGATE_MAX)
        return false;
    for (size_t index = 0; index < len; index++) {
        char c = name[index];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool
zcq_system_event (const char *type)
{
    return type
        && (strcmp (type, ZCQ_EVENT_DELETED) == 0 || strcmp (type, ZCQ_EVENT_TRUNCATED) == 0);
}

//  True when aggregate (NULL: any aggregate) declares event type. Every
//  aggregate has the system events.
static bool
s_declared (const zcq_domain_t *domain, const char *aggregate, const char *type)
{
    if (zcq_system_event (type))
        return !aggregate || zcq_domain_aggregate (domain, aggregate, strlen (aggregate));
    for (size_t index = 0; domain->aggregates && domain->aggregates[index]; index++) {
        const zcq_aggregate_def_t *candidate = domain->aggregates[index];
        if ((!aggregate || strcmp (candidate->name, aggregate) == 0)
            && zcq_domain_event (candidate, type))
            return true;
    }
    return false;
}

zcq_err_t
zcq_domain_check (const zcq_domain_t *domain, char *error, size_t size)
{
#define S_FAIL(...)                              \
    do {                                         \
        if (error && size)                       \
            snprintf (error, size, __VA_ARGS__); \
        return ZCQ_INVALID;                      \
    } while (0)
    if (!domain || !domain->name)
        S_FAIL ("domain has no name");
    for (size_t index = 0; domain->aggregates && domain->aggregates[index]; index++) {
        const zcq_aggregate_def_t *aggregate = domain->aggregates[index];
        if (!aggregate->name || !s_valid_aggregate_name (aggregate->name))
            S_FAIL ("aggregate #%zu: name must match [a-z0-9_.-]{1,64}", index);
        if (aggregate->state_size == 0)
            S_FAIL ("aggregate %s: state_size must be > 0", aggregate->name);
        if (!aggregate->commands)
            S_FAIL ("aggregate %s: has no commands", aggregate->name);
        if ((aggregate->snapshot_encode == NULL) != (aggregate->snapshot_decode == NULL))
            S_FAIL ("aggregate %s: snapshot_encode and snapshot_decode go together",
                    aggregate->name);
        for (const zcq_state_field_t *field = aggregate->state_fields; field && field->name;
             field++)
            if (field->size == 0 || field->offset > aggregate->state_size
                || field->size > aggregate->state_size - field->offset)
                S_FAIL ("aggregate %s: state field %s lies outside state_size", aggregate->name,
                        field->name);
        for (size_t other = 0; other < index; other++)
            if (strcmp (domain->aggregates[other]->name, aggregate->name) == 0)
                S_FAIL ("aggregate %s: declared twice", aggregate->name);
        for (const zcq_command_def_t *command = aggregate->commands; command->type; command++) {
            size_t len = strlen (command->type);
            if (len == 0 || len > ZCQ_TYPE_MAX || !command->decide)
                S_FAIL ("aggregate %s: command '%s' needs a 1-64 byte name and decide",
                        aggregate->name, command->type);
            if (command->type[0] == '$')
                S_FAIL ("aggregate %s: command '%s': names starting with '$' are the node's",
                        aggregate->name, command->type);
        }
        for (const zcq_event_def_t *event = aggregate->events; event && event->type; event++) {
            size_t len = strlen (event->type);
            if (len == 0 || len > ZCQ_TYPE_MAX)
                S_FAIL ("aggregate %s: event '%s' needs a 1-64 byte name", aggregate->name,
                        event->type);
            if (event->type[0] == '$')
                S_FAIL ("aggregate %s: event '%s': names starting with '$' are the node's",
                        aggregate->name, event->type);
            if (zcq_domain_event (aggregate, event->type) != event)
                S_FAIL ("aggregate %s: event '%s' declared twice", aggregate->name, event->type);
            if (event->version > 1 && !event->upcast)
                S_FAIL ("aggregate %s: event '%s' of version %u needs an upcast from the "
                        "versions before",
                        aggregate->name, event->type, event->version);
        }
    }
    for (size_t index = 0; domain->projections && domain->projections[index]; index++) {
        const zcq_projection_def_t *projection = domain->projections[index];
        if (!projection->view || !*projection->view || strlen (projection->view) > 64)
            S_FAIL ("projection #%zu: view name must be 1-64 bytes", index);
        if (!projection->handlers)
            S_FAIL ("projection %s: has no handlers", projection->view);
        for (size_t other = 0; other < index; other++)
            if (strcmp (domain->projections[other]->view, projection->view) == 0)
                S_FAIL ("projection %s: declared twice", projection->view);
        //  a handler of an event no aggregate declares would never run
        for (const zcq_handler_def_t *handler = projection->handlers; handler->type; handler++) {
            if (!handler->apply)
                S_FAIL ("projection %s: handler of '%s' has no apply", projection->view,
                        handler->type);
            if (!s_declared (domain, handler->aggregate, handler->type)) {
                if (handler->aggregate)
                    S_FAIL ("projection %s: aggregate %s declares no event '%s'", projection->view,
                            handler->aggregate, handler->type);
                S_FAIL ("projection %s: no aggregate declares event '%s'", projection->view,
                        handler->type);
            }
        }
    }
    return ZCQ_OK;
#undef S_FAIL
}

const zcq_aggregate_def_t *
zcq_domain_aggregate (const zcq_domain_t *domain, const char *name, size_t len)
{
    for (size_t index = 0; domain->aggregates && domain->aggregates[index]; index++) {
        const char *candidate = domain->aggregates[index]->name;
        if (strncmp (candidate, name, len) == 0 && candidate[len] == 0)
            return domain->aggregates[index];
    }
    return NULL;
}

const zcq_command_def_t *
zcq_domain_command (const zcq_aggregate_def_t *aggregate, const char *type, size_t len)
{
    for (const zcq_command_def_t *command = aggregate->commands; command->type; command++)
        if (strncmp (command->type, type, len) == 0 && command->type[len] == 0)
            return command;
    return NULL;
}

const zcq_event_def_t *
zcq_domain_event (const zcq_aggregate_def_t *aggregate, const char *type)
{
    for (const zcq_event_def_t *event = aggregate->events; event && event->type; event++)
        if (strcmp (event->type, type) == 0)
            return event;
    return NULL;
}

uint32_t
zcq_aggregate_snapshot_every (const zcq_aggregate_def_t *aggregate)
{
    return aggregate->snapshot_every ? aggregate->snapshot_every : S_DEFAULT_SNAPSHOT_EVERY;
}

uint64_t
zcq_aggregate_fingerprint (const zcq_aggregate_def_t *aggregate)
{
    //  FNV-1a over a canonical text of the layout: size, then each field
    char text[256];
    int len = snprintf (text, sizeof text, "zcq-state/1 %zu", aggregate->state_size);
    uint64_t hash = zcq_hash (text, (size_t) len);
    for (const zcq_state_field_t *field = aggregate->state_fields; field && field->name; field++) {
        len = snprintf (text, sizeof text, "%016llx %s@%zu:%zu", (unsigned long long) hash,
                        field->name, field->offset, field->size);
        hash = zcq_hash (text,
                         len > 0 && (size_t) len < sizeof text ? (size_t) len : sizeof text - 1);
    }
    return hash;
}

//  The decision of a `$delete`: a stream that exists gets `$deleted`. (A
//  stream already deleted never gets here: the shard rejects it first.)
static zcq_err_t
s_decide_delete (zcq_decide_t *decide, const void *state)
{
    (void) state;
    const zcq_value_t *data = decide->data;
    if (data && zcq_value_type (data) != ZCQ_TYPE_NIL && zcq_value_type (data) != ZCQ_TYPE_MAP)
        return zcq_invalid (decide, "'data' of %s must be a map", ZCQ_COMMAND_DELETE);
    const zcq_value_t *hard = data ? zcq_value_get (data, "hard") : NULL;
    bool flag = false;
    if (hard && zcq_value_type (hard) != ZCQ_TYPE_NIL && !zcq_value_bool (hard, &flag))
        return zcq_invalid (decide, "'hard' must be a boolean");
    if (decide->version == 0)
        return zcq_reject (decide, "stream %s/%s does not exist", decide->aggregate->name,
                           decide->key);
    zcq_fields_t *event = zcq_emit (decide, ZCQ_EVENT_DELETED);
    if (!event)
        return ZCQ_INTERNAL;
    if (flag && decide->version + 1 > decide->first)
        decide->truncate_before = decide->version + 1; //  a hard delete: only $deleted stays
    return ZCQ_OK;
}

//  The decision of a `$truncate`: remove the versions below `before`,
//  when any is still kept (store.c DESIGN 14).
static zcq_err_t
s_decide_truncate (zcq_decide_t *decide, const void *state)
{
    (void) state;
    int64_t before;
    ZCQ_TRY (zcq_arg_int (decide, "before", 1, INT64_MAX, &before));
    if (decide->version == 0)
        return zcq_reject (decide, "stream %s/%s does not exist", decide->aggregate->name,
                           decide->key);
    if ((uint64_t) before > decide->version + 1)
        return zcq_invalid (decide, "'before' must be at most the stream's version + 1 (%llu)",
                            (unsigned long long) decide->version + 1);
    if ((uint64_t) before <= decide->first)
        return ZCQ_OK; //  already removed: nothing to do
    zcq_fields_t *event = zcq_emit (decide, ZCQ_EVENT_TRUNCATED);
    if (!event)
        return ZCQ_INTERNAL;
    zcq_set_int (event, "before", before);
    decide->truncate_before = (uint64_t) before;
    return ZCQ_OK;
}

const zcq_command_def_t zcq_truncate_command = {
    .type = ZCQ_COMMAND_TRUNCATE,
    .decide = s_decide_truncate,
};

const zcq_command_def_t zcq_delete_command = {
    .type = ZCQ_COMMAND_DELETE,
    .decide = s_decide_delete,
};

//  --------------------------------------------------------------------------
//  Plugins

const zcq_domain_t *
zcq_domain_open (const char *path, void **handle_p, char *error, size_t size)
{
    *handle_p = NULL;
    void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf (error, size, "cannot load %s: %s", path, dlerror ());
        return NULL;
    }
    zcq_domain_plugin_fn *entry = (zcq_domain_plugin_fn *) dlsym (handle, ZCQ_DOMAIN_PLUGIN_SYMBOL);
    unsigned (*abi) (void) = (unsigned (*) (void)) dlsym (handle, "zcq_domain_plugin_abi");
    const zcq_domain_t *domain = NULL;
    if (!entry)
        snprintf (error, size, "%s has no " ZCQ_DOMAIN_PLUGIN_SYMBOL " function", path);
    else if (!abi)
        snprintf (error, size,
                  "%s was built against an older zcqrs (no domain ABI; this one reads ABI %d): "
                  "rebuild it",
                  path, ZCQ_DOMAIN_ABI);
    else if (abi () != ZCQ_DOMAIN_ABI)
        snprintf (error, size,
                  "%s was built for domain ABI %u, this zcqrs reads ABI %d: rebuild it", path,
                  abi (), ZCQ_DOMAIN_ABI);
    else if (!(domain = entry ()))
        snprintf (error, size, "%s returned no domain from " ZCQ_DOMAIN_PLUGIN_SYMBOL, path);
    if (!domain) {
        dlclose (handle);
        return NULL;
    }
    *handle_p = handle;
    return domain;
}

void
zcq_domain_close (void **handle_p)
{
    if (handle_p && *handle_p) {
        dlclose (*handle_p);
        *handle_p = NULL;
    }
}
