/* libFuzzer: every parser of server bytes, one per selector byte (docs/c-sdk.md, "Fuzzing"). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kaa/kaa_wire.h"

static volatile uint32_t sink; /* keeps the walks from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *body;
    size_t len, off = 0;
    if (size < 1) return 0;
    body = data + 1;
    len = size - 1;
    switch (data[0] % 5) {
    case 0: {
        uint8_t type, flags;
        uint32_t body_len;
        if (len >= 6 && kaa_frame_header(body, KAA_DEFAULT_MAX_FRAME_SIZE, &type, &flags, &body_len) == 0)
            sink += type + flags + body_len;
        break;
    }
    case 1: {
        kaa_resolve_response r;
        if (kaa_resolve_response_parse(body, len, &r) == 0) {
            kaa_node n;
            kaa_rotation c;
            unsigned i;
            for (i = 0; i < r.node_count; i++) {
                if (kaa_node_next(r.nodes, &off, &n)) __builtin_trap(); /* the parse checked them */
                sink += n.host_len + n.kex_public_key[31];
            }
            if (off != r.nodes.len) __builtin_trap();
            off = 0;
            for (i = 0; i < r.rotation_count; i++) {
                if (kaa_rotation_next(r.rotations, &off, &c)) __builtin_trap();
                sink += c.generation + (uint32_t)c.public_key.len;
            }
            if (off != r.rotations.len) __builtin_trap();
            if (r.signed_part.len + 2 + r.signature.len != len) __builtin_trap();
        }
        break;
    }
    case 2: {
        kaa_error_body e;
        if (kaa_error_parse(body, len, &e) == 0) sink += e.code + (uint32_t)e.message.len;
        break;
    }
    case 3: {
        kaa_result r;
        if (kaa_result_parse(body, len, &r) == 0) {
            kaa_topic t;
            unsigned i;
            for (i = 0; i < r.topic_count; i++) {
                if (kaa_topic_next(r.topics, &off, &t)) __builtin_trap();
                sink += t.topic_id + t.name_len;
            }
            if (off != r.topics.len) __builtin_trap();
        }
        break;
    }
    default:
        sink += (uint32_t)kaa_utf8_valid(body, len);
        break;
    }
    return 0;
}
