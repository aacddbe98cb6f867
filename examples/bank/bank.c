/*  bank.c: the bank domain of ZCQ/1 section 8. Money is integer cents.

    account   open      {owner, overdraft?}  -> opened {owner, overdraft}
              deposit   {amount > 0}         -> deposited {amount}; reply balance
              withdraw  {amount > 0}         -> withdrawn {amount}; reply balance
              close     {}                   -> closed {}
    views     accounts  {key, owner, balance, status, version}, index owner
              totals    {key: "bank", accounts, balance, events}
*/
#include "bank.h"

typedef struct {
    bool opened;
    bool closed;
    int64_t balance;
    int64_t overdraft;
} account_t;

//  --------------------------------------------------------------------------
//  Commands: validate the payload (invalid), then the rules (rejected)

static zcq_err_t
s_open (zcq_decide_t *decide, const void *state)
{
    const account_t *account = state;
    const char *owner;
    int64_t overdraft;
    ZCQ_TRY (zcq_arg_str (decide, "owner", 1, 128, &owner));
    ZCQ_TRY (zcq_arg_int_or (decide, "overdraft", 0, INT64_MAX, 0, &overdraft));
    if (account->opened)
        return zcq_reject (decide, "account %s was already opened", zcq_decide_key (decide));
    zcq_fields_t *opened = zcq_emit (decide, "opened");
    zcq_set_str (opened, "owner", owner);
    zcq_set_int (opened, "overdraft", overdraft);
    return ZCQ_OK;
}

static zcq_err_t
s_deposit (zcq_decide_t *decide, const void *state)
{
    const account_t *account = state;
    int64_t amount;
    ZCQ_TRY (zcq_arg_int (decide, "amount", 1, INT64_MAX, &amount));
    if (!account->opened || account->closed)
        return zcq_reject (decide, "account %s is not open", zcq_decide_key (decide));
    if (account->balance > INT64_MAX - amount)
        return zcq_reject (decide, "the balance would overflow");
    zcq_set_int (zcq_emit (decide, "deposited"), "amount", amount);
    zcq_set_int (zcq_decide_reply (decide), "balance", account->balance + amount);
    return ZCQ_OK;
}

static zcq_err_t
s_withdraw (zcq_decide_t *decide, const void *state)
{
    const account_t *account = state;
    int64_t amount;
    ZCQ_TRY (zcq_arg_int (decide, "amount", 1, INT64_MAX, &amount));
    if (!account->opened || account->closed)
        return zcq_reject (decide, "account %s is not open", zcq_decide_key (decide));
    int64_t after;
    if (__builtin_sub_overflow (account->balance, amount, &after) || after < -account->overdraft)
        return zcq_reject (decide, "insufficient funds: balance %lld, overdraft %lld",
                           (long long) account->balance, (long long) account->overdraft);
    zcq_set_int (zcq_emit (decide, "withdrawn"), "amount", amount);
    zcq_set_int (zcq_decide_reply (decide), "balance", after);
    return ZCQ_OK;
}

static zcq_err_t
s_close (zcq_decide_t *decide, const void *state)
{
    const account_t *account = state;
    if (!account->opened || account->closed)
        return zcq_reject (decide, "account %s is not open", zcq_decide_key (decide));
    if (account->balance != 0)
        return zcq_reject (decide, "balance is %lld, not 0", (long long) account->balance);
    zcq_emit (decide, "closed");
    return ZCQ_OK;
}

//  --------------------------------------------------------------------------
//  Events: evolve the state

static void
s_opened (void *state, const zcq_event_t *event)
{
    account_t *account = state;
    account->opened = true;
    account->overdraft = zcq_event_int (event, "overdraft", 0);
}

//  The sign of a movement, as the context of the definitions of deposits
//  (+1) and withdrawals (-1): one handler serves both.
static const int64_t s_credit = 1;
static const int64_t s_debit = -1;
#define S_SIGN(context) (*(const int64_t *) (context))

static void
s_moved (void *state, const zcq_event_t *event)
{
    ((account_t *) state)->balance
        += S_SIGN (zcq_event_context (event)) * zcq_event_int_req (event, "amount");
}

static void
s_closed (void *state, const zcq_event_t *event)
{
    ((account_t *) state)->closed = true;
}

static const zcq_command_def_t s_account_commands[] = {
    { "open", s_open, NULL },
    { "deposit", s_deposit, NULL },
    { "withdraw", s_withdraw, NULL },
    { "close", s_close, NULL },
    { NULL },
};

static const zcq_event_def_t s_account_events[] = {
    { .type = "opened", .evolve = s_opened },
    { .type = "deposited", .evolve = s_moved, .context = (void *) &s_credit },
    { .type = "withdrawn", .evolve = s_moved, .context = (void *) &s_debit },
    { .type = "closed", .evolve = s_closed },
    { NULL },
};

//  The layout of account_t, checked against the bytes of its snapshots.
static const zcq_state_field_t s_account_fields[] = {
    ZCQ_STATE_FIELD (account_t, opened),
    ZCQ_STATE_FIELD (account_t, closed),
    ZCQ_STATE_FIELD (account_t, balance),
    ZCQ_STATE_FIELD (account_t, overdraft),
    { NULL },
};

static const zcq_aggregate_def_t s_account = {
    .name = "account",
    .state_size = sizeof (account_t),
    .state_fields = s_account_fields,
    .schema = 1,
    .snapshot_every = 100,
    .commands = s_account_commands,
    .events = s_account_events,
};

//  --------------------------------------------------------------------------
//  View `accounts`: one row per opened account

static void
s_account_opened (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_upsert (view, zcq_event_key (event));
    zcq_set_str (row, "owner", zcq_event_str (event, "owner"));
    zcq_set_int (row, "balance", 0);
    zcq_set_str (row, "status", "open");
    zcq_set_int (row, "version", (int64_t) zcq_event_version (event));
}

static void
s_account_moved (zcq_view_t *view, const zcq_event_t *event)
{
    int64_t amount = zcq_event_int_req (event, "amount");
    zcq_fields_t *row = zcq_view_patch (view, zcq_event_key (event));
    zcq_add_int (row, "balance", S_SIGN (zcq_view_context (view)) * amount);
    zcq_set_int (row, "version", (int64_t) zcq_event_version (event));
}

static void
s_account_closed (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_fields_t *row = zcq_view_patch (view, zcq_event_key (event));
    zcq_set_str (row, "status", "closed");
    zcq_set_int (row, "version", (int64_t) zcq_event_version (event));
}

//  A deleted account ($delete, ZCQ/1) leaves the view.
static void
s_account_deleted (zcq_view_t *view, const zcq_event_t *event)
{
    zcq_view_delete (view, zcq_event_key (event));
}

static const char *const s_accounts_indexes[] = { "owner", NULL };

static const zcq_handler_def_t s_accounts_handlers[] = {
    { "account", "opened", s_account_opened, NULL },
    { "account", "deposited", s_account_moved, (void *) &s_credit },
    { "account", "withdrawn", s_account_moved, (void *) &s_debit },
    { "account", "closed", s_account_closed, NULL },
    { "account", ZCQ_EVENT_DELETED, s_account_deleted, NULL },
    { NULL },
};

static const zcq_projection_def_t s_accounts = {
    .view = "accounts",
    .version = 1,
    .indexes = s_accounts_indexes,
    .handlers = s_accounts_handlers,
};

//  --------------------------------------------------------------------------
//  View `totals`: one row, key "bank"

//  What one event type changes in the totals (the handlers' context).
typedef struct {
    int64_t accounts; //  added to `accounts`
    int64_t sign;     //  times the amount, added to `balance`
} s_totals_change_t;

static const s_totals_change_t s_totals_opened = { 1, 0 };
static const s_totals_change_t s_totals_closed = { -1, 0 };
static const s_totals_change_t s_totals_deposited = { 0, 1 };
static const s_totals_change_t s_totals_withdrawn = { 0, -1 };

static void
s_totals (zcq_view_t *view, const zcq_event_t *event)
{
    const s_totals_change_t *change = zcq_view_context (view);
    zcq_fields_t *row = zcq_view_upsert (view, "bank");
    zcq_add_int (row, "events", 1);
    zcq_add_int (row, "accounts", change->accounts);
    zcq_add_int (row, "balance", change->sign * zcq_event_int (event, "amount", 0));
}

static const zcq_handler_def_t s_totals_handlers[] = {
    { "account", "opened", s_totals, (void *) &s_totals_opened },
    { "account", "deposited", s_totals, (void *) &s_totals_deposited },
    { "account", "withdrawn", s_totals, (void *) &s_totals_withdrawn },
    { "account", "closed", s_totals, (void *) &s_totals_closed },
    { NULL },
};

static const zcq_projection_def_t s_totals_view = {
    .view = "totals",
    .version = 1,
    .handlers = s_totals_handlers,
};

static const zcq_aggregate_def_t *const s_bank_aggregates[] = { &s_account, NULL };
static const zcq_projection_def_t *const s_bank_projections[]
    = { &s_accounts, &s_totals_view, NULL };

static const zcq_domain_t s_bank = {
    .name = "bank",
    .aggregates = s_bank_aggregates,
    .projections = s_bank_projections,
};

const zcq_domain_t *
zcq_bank_domain (void)
{
    return &s_bank;
}
