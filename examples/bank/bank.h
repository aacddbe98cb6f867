/*  bank.h: the reference domain of ZCQ/1 (spec section 8), linkable. */
#ifndef ZCQ_BANK_H_INCLUDED
#define ZCQ_BANK_H_INCLUDED

#include <zcqrs.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The bank domain: aggregate `account`, views `accounts` and `totals`.
const zcq_domain_t *zcq_bank_domain (void);

#ifdef __cplusplus
}
#endif
#endif
