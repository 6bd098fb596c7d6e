/* Internal entry points of kaa.c, for the unit tests. */
#ifndef KAA_INTERNAL_H
#define KAA_INTERNAL_H
#include "kaa/kaa.h"

/* Puts ctx->nodes (node_count raw records) in failover order into ctx->order. */
int kaa_order_nodes(kaa_context *ctx);

#endif
