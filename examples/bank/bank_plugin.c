/*  bank_plugin.c: the bank domain as a plugin for `zcqrsd --domain bank`. */
#include "bank.h"

const zcq_domain_t *
zcq_domain_plugin (void) __attribute__ ((visibility ("default")));

const zcq_domain_t *
zcq_domain_plugin (void)
{
    return zcq_bank_domain ();
}
