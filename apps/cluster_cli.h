/*  cluster_cli.h: `zcqrs cluster create|status` (cluster_cli.c). */
#ifndef ZCQ_APPS_CLUSTER_CLI_H_INCLUDED
#define ZCQ_APPS_CLUSTER_CLI_H_INCLUDED

#include <stdbool.h>
#include <zcqrs.h>

//  Run `zcqrs cluster WORDS...` (argv after `cluster`): the exit code, or
//  -1 when argv is no operator action (then `cluster` is the query op).
//  json: the output is JSON Lines (else text), unless argv says --json or
//  --text.
int zcq_cluster_cli (int argc, char **argv, int timeout_ms, bool json);

#endif
