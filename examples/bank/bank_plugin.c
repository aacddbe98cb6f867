/*  bank_plugin.c: the bank domain as a plugin for `zcqrsd --domain bank`. */
#include "bank.h"

ZCQ_DOMAIN_PLUGIN (zcq_bank_domain ())
