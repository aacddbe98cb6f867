/*  zcqrs.h: the umbrella header of libzcqrs, a CQRS and event-sourcing
    engine built from ZeroMQ actors. Include this one.
*/
#ifndef ZCQRS_H_INCLUDED
#define ZCQRS_H_INCLUDED

#define ZCQ_VERSION_MAJOR 0
#define ZCQ_VERSION_MINOR 1
#define ZCQ_VERSION_PATCH 0

#include "zcq_error.h"
#include "zcq_log.h"
#include "zcq_value.h"
#include "zcq_domain.h"
#include "zcq_fixture.h"
#include "zcq_store.h"
#include "zcq_backup.h"
#include "zcq_config.h"
#include "zcq_node.h"
#include "zcq_client.h"
#include "zcq_catchup.h"
#include "zcq_viewtable.h"
#include "zcq_cluster.h"

#endif
