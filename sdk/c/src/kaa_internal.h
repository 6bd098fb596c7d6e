/* Internal entry points of kaa.c, for the unit tests. */
#ifndef KAA_INTERNAL_H
#define KAA_INTERNAL_H
#include "kaa/kaa.h"

/* Puts ctx->nodes (node_count raw records) in failover order into ctx->order. */
int kaa_order_nodes(kaa_context *ctx);
/* Puts the plan in the state "waiting for the answer of a stage exchange" without sending
 * anything (the fuzz target feeds registration answers this way: building a request per
 * input would cost an RSA signature each). */
void kaa_await_answer(kaa_context *ctx, int stage);

#endif
