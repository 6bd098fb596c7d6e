/* The client policy (the C twin of client/_policy.py; docs/client.md gives the reasons):
 *
 * 1. optional random initial hold-off;
 * 2. resolve through a Bootstrap chosen at random, then the next ones in list order; any
 *    failure there counts against that Bootstrap; a verified answer signed by a newer
 *    key generation makes that key the trusted one at once (persisted);
 * 3. nodes by priority, highest first; weighted random among equal priorities; weight-0
 *    standbys after the others of their priority, uniformly shuffled;
 * 4. a registered device sends its key hash; UNKNOWN_KEY_HASH makes it retry the same
 *    node at once with the full key;
 * 5. only a sealed REVOKED_ENDPOINT ends the plan as revoked;
 * 6. STALE_REQUEST / REPLAYED_REQUEST (after a backoff) and an expired resolution
 *    (at once) mean: resolve again, through the next Bootstrap;
 * 7. any other failure: back off, next node; list used up: resolve again;
 * 8. full-jitter exponential backoff, never below an OVERLOADED retry_after_ms;
 * 9. give up at max_failures or when the next wait passes the deadline (both off). */
#include "kaa/kaa.h"
#include "kaa_internal.h"

#include <string.h>

enum phase {
    PH_IDLE = 0,
    PH_START,
    PH_RUN,
    PH_AWAIT, /* an exchange in flight */
    PH_DONE_CONNECTED,
    PH_DONE_REVOKED,
    PH_DONE_FAILED
};

static const char RESOLVE_CTX[] = "KAA-WIRE/2 RESOLVE";   /* + NUL: 19 bytes */
static const char ROTATE_CTX[] = "KAA-WIRE/2 ROTATE";     /* + NUL: 18 bytes */
static const char REGISTER_CTX[] = "KAA-WIRE/2 REGISTER"; /* + NUL: 20 bytes */
static const char SEAL_INFO[] = "KAA-WIRE/2 SEAL";        /* no NUL */
static const char RESPONSE_INFO[] = "KAA-WIRE/2 RESPONSE"; /* no NUL */

#define STATE_MAGIC "KAAS"
#define STATE_VERSION 1u
#define STATE_FIXED (4 + 1 + 1 + 8 + 4 + 4 + 1 + 32 + 2)

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--) *v++ = 0;
}

static void put(uint8_t *p, uint64_t v, unsigned n)
{
    while (n--) {
        p[n] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    unsigned i;
    for (i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

void kaa_policy_default(kaa_policy *policy)
{
    policy->base_delay_ms = 1000;
    policy->max_delay_ms = 300000;
    policy->initial_holdoff_ms = 0;
    policy->max_failures = 0;
    policy->deadline_ms = 0;
    policy->use_server_hints = 1;
}

static void emit(kaa_context *ctx, const kaa_event *event)
{
    if (ctx->on_event) ctx->on_event(ctx->event_user, event);
}

void kaa_set_event_handler(kaa_context *ctx, kaa_event_fn fn, void *user)
{
    ctx->on_event = fn;
    ctx->event_user = user;
}

/* A uniform draw in [0, n) (n >= 1), from the crypto port's random source. */
static int draw(kaa_context *ctx, uint32_t n, uint32_t *out)
{
    uint8_t b[4];
    int err = ctx->crypto->random(ctx->crypto->self, b, sizeof b);
    if (err) return KAA_ERR_CRYPTO;
    *out = (uint32_t)((get(b, 4) * (uint64_t)n) >> 32);
    return KAA_OK;
}

/* -- persisted state ------------------------------------------------------------------- */

static int state_save(kaa_context *ctx)
{
    uint8_t head[STATE_FIXED];
    uint8_t sum[32];
    kaa_bytes parts[3];
    const kaa_crypto_port *c = ctx->crypto;
    memcpy(head, STATE_MAGIC, 4);
    head[4] = STATE_VERSION;
    head[5] = ctx->registered;
    put(head + 6, ctx->last_timestamp_ms, 8);
    put(head + 14, ctx->retry_base_ms, 4);
    put(head + 18, ctx->trust.generation, 4);
    head[22] = ctx->trust.alg;
    memcpy(head + 23, ctx->trust.anchor_sha256, 32);
    put(head + 55, ctx->trust.der_len, 2);
    parts[0].data = head;
    parts[0].len = sizeof head;
    parts[1].data = ctx->trust.der;
    parts[1].len = ctx->trust.der_len;
    /* The checksum tells a record that does not read back intact from a fresh device. */
    if (c->hash(c->self, KAA_HASH_SHA256, parts, 2, sum)) return KAA_ERR_CRYPTO;
    parts[2].data = sum;
    parts[2].len = sizeof sum;
    return ctx->store->save(ctx->store->self, parts, 3) ? KAA_ERR_STORAGE : KAA_OK;
}

static int state_load(kaa_context *ctx)
{
    size_t len = 0, der_len;
    uint8_t sum[32];
    kaa_bytes part;
    const kaa_crypto_port *c = ctx->crypto;
    int err = ctx->store->load(ctx->store->self, ctx->buf, sizeof ctx->buf, &len);
    if (err == KAA_ERR_NOT_FOUND) return KAA_OK; /* a fresh device */
    if (err == KAA_ERR_NO_ROOM) return KAA_ERR_CORRUPT_STATE;
    if (err) return KAA_ERR_STORAGE;
    if (len < STATE_FIXED + 32 || memcmp(ctx->buf, STATE_MAGIC, 4) != 0 ||
        ctx->buf[4] != STATE_VERSION)
        return KAA_ERR_CORRUPT_STATE;
    der_len = (size_t)get(ctx->buf + 55, 2);
    if (der_len > KAA_MAX_TRUST_DER || len != STATE_FIXED + der_len + 32)
        return KAA_ERR_CORRUPT_STATE;
    part.data = ctx->buf;
    part.len = STATE_FIXED + der_len;
    if (c->hash(c->self, KAA_HASH_SHA256, &part, 1, sum)) return KAA_ERR_CRYPTO;
    if (memcmp(sum, ctx->buf + part.len, 32) != 0 || ctx->buf[5] > 1)
        return KAA_ERR_CORRUPT_STATE;
    ctx->registered = ctx->buf[5];
    ctx->last_timestamp_ms = get(ctx->buf + 6, 8);
    ctx->retry_base_ms = (uint32_t)get(ctx->buf + 14, 4);
    ctx->trust.generation = (uint32_t)get(ctx->buf + 18, 4);
    ctx->trust.alg = ctx->buf[22];
    memcpy(ctx->trust.anchor_sha256, ctx->buf + 23, 32);
    ctx->trust.der_len = (uint16_t)der_len;
    memcpy(ctx->trust.der, ctx->buf + STATE_FIXED, der_len);
    return KAA_OK;
}

/* -- init ------------------------------------------------------------------------------ */

int kaa_init(kaa_context *ctx, const kaa_config *config, const kaa_crypto_port *crypto,
             const kaa_store_port *store, const kaa_policy *policy)
{
    size_t i, der_len = 0;
    kaa_bytes part;
    int err;
    if (!ctx || !config || !crypto || !store) return KAA_ERR_INVALID_ARGUMENT;
    memset(ctx, 0, sizeof *ctx);
    if (!kaa_token_valid(config->application_token, NULL) ||
        !kaa_token_valid(config->sdk_token, NULL) || config->bootstrap_server_count < 1 ||
        config->bootstrap_server_count > 255 || config->max_frame_size <= KAA_HEADER_SIZE ||
        config->max_frame_size > KAA_ABSOLUTE_MAX_FRAME_SIZE)
        return KAA_ERR_INVALID_ARGUMENT;
    for (i = 0; i < config->bootstrap_server_count; i++) {
        const kaa_bootstrap_server_t *b = &config->bootstrap_servers[i];
        if (!b->host || !b->host[0] || b->port == 0 || b->key_generation < 1 ||
            b->key_generation > 0xFFFFFFFFul || !b->public_key_der || !b->public_key_der_size)
            return KAA_ERR_INVALID_ARGUMENT;
    }
    ctx->config = config;
    ctx->crypto = crypto;
    ctx->store = store;
    if (policy) ctx->policy = *policy;
    else kaa_policy_default(&ctx->policy);
    if (ctx->policy.base_delay_ms == 0 || ctx->policy.base_delay_ms > ctx->policy.max_delay_ms)
        return KAA_ERR_INVALID_ARGUMENT;
    err = crypto->endpoint_key(crypto->self, ctx->endpoint_der, sizeof ctx->endpoint_der,
                               &der_len, &ctx->endpoint_alg);
    if (err) return err == KAA_ERR_NO_ROOM ? err : KAA_ERR_CRYPTO;
    ctx->endpoint_der_len = (uint16_t)der_len;
    part.data = ctx->endpoint_der;
    part.len = der_len;
    /* The endpoint id: SHA-1 of the DER SPKI (docs/protocol.md section 9). */
    if (crypto->hash(crypto->self, KAA_HASH_SHA1, &part, 1, ctx->endpoint_id)) return KAA_ERR_CRYPTO;
    return state_load(ctx);
}

const uint8_t *kaa_endpoint_id(const kaa_context *ctx) { return ctx->endpoint_id; }
int kaa_is_registered(const kaa_context *ctx) { return ctx->registered; }

/* The key to trust for Bootstrap i: the anchor's, or one learned from a rotation. */
typedef struct trusted {
    uint32_t generation;
    uint8_t alg;
    const uint8_t *der;
    size_t der_len;
    uint8_t anchor_sha256[32];
} trusted;

static int trusted_key(kaa_context *ctx, size_t i, trusted *t)
{
    const kaa_bootstrap_server_t *b = &ctx->config->bootstrap_servers[i];
    kaa_bytes part;
    part.data = b->public_key_der;
    part.len = b->public_key_der_size;
    if (ctx->crypto->hash(ctx->crypto->self, KAA_HASH_SHA256, &part, 1, t->anchor_sha256))
        return KAA_ERR_CRYPTO;
    if (ctx->trust.generation > b->key_generation &&
        memcmp(ctx->trust.anchor_sha256, t->anchor_sha256, 32) == 0) {
        t->generation = ctx->trust.generation;
        t->alg = ctx->trust.alg;
        t->der = ctx->trust.der;
        t->der_len = ctx->trust.der_len;
    } else {
        t->generation = (uint32_t)b->key_generation;
        t->alg = b->signature_algorithm;
        t->der = b->public_key_der;
        t->der_len = b->public_key_der_size;
    }
    return KAA_OK;
}

uint32_t kaa_trusted_generation(kaa_context *ctx, size_t i)
{
    trusted t;
    if (i >= ctx->config->bootstrap_server_count || trusted_key(ctx, i, &t)) return 0;
    return t.generation;
}

/* -- the plan ------------------------------------------------------------------------- */

int kaa_start(kaa_context *ctx, const uint8_t *profile, size_t profile_len, uint64_t now_ms)
{
    uint32_t first;
    (void)now_ms;
    if (profile_len > 0xFFFF || (profile_len && !profile)) return KAA_ERR_INVALID_ARGUMENT;
    ctx->profile = profile;
    ctx->profile_len = profile_len;
    ctx->failures = 0;
    ctx->pending_sleep_ms = 0;
    ctx->have_deadline = 0;
    ctx->last_sent_ms = 0;
    ctx->outcome_err = KAA_OK;
    ctx->reconnect = ctx->registered;
    ctx->base_delay_ms = ctx->policy.base_delay_ms;
    if (ctx->policy.use_server_hints && ctx->retry_base_ms) {
        uint32_t base = ctx->retry_base_ms > ctx->base_delay_ms ? ctx->retry_base_ms : ctx->base_delay_ms;
        ctx->base_delay_ms = base < ctx->policy.max_delay_ms ? base : ctx->policy.max_delay_ms;
    }
    if (draw(ctx, (uint32_t)ctx->config->bootstrap_server_count, &first)) return KAA_ERR_CRYPTO;
    ctx->next_bootstrap = (uint8_t)first;
    /* A resolution still valid from the last plan is used again (its expiry is checked
     * before every registration), with the nodes in a fresh order. */
    if (ctx->resolved) {
        ctx->node_pos = 0;
        if (kaa_order_nodes(ctx)) ctx->resolved = 0;
    }
    ctx->phase = PH_START;
    return KAA_OK;
}

static void finish(kaa_context *ctx, int phase, int err)
{
    ctx->phase = (uint8_t)phase;
    ctx->outcome_err = err;
    ctx->pending_sleep_ms = 0;
}

/* Schedule a wait, or give up when it would pass the deadline. */
static void wait_for(kaa_context *ctx, uint32_t delay_ms, uint64_t now_ms, int why)
{
    kaa_event ev;
    if (ctx->have_deadline && now_ms + delay_ms > ctx->deadline_at_ms) {
        finish(ctx, PH_DONE_FAILED, why ? why : KAA_ERR_TIMEOUT);
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.kind = KAA_EVENT_WAITING;
    ev.delay_ms = delay_ms;
    emit(ctx, &ev);
    ctx->pending_sleep_ms = delay_ms ? delay_ms : 1; /* a zero draw still yields once */
}

static void record(kaa_context *ctx, int err, int sealed)
{
    kaa_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = KAA_EVENT_ATTEMPT;
    ev.stage = ctx->stage;
    ev.host = ctx->host;
    ev.host_len = ctx->host_len;
    ev.port = ctx->port;
    ev.err = err;
    ev.sealed = sealed;
    ev.reconnect = ctx->stage == KAA_STAGE_REGISTER && ctx->reconnect;
    emit(ctx, &ev);
}

/* A failed attempt: count it and back off (full jitter, at least retry_after). */
static void failed(kaa_context *ctx, int err, int sealed, uint32_t retry_after_ms, uint64_t now_ms)
{
    uint64_t ceiling;
    uint32_t delay, n;
    record(ctx, err, sealed);
    ctx->failures++;
    if (ctx->policy.max_failures && ctx->failures >= ctx->policy.max_failures) {
        finish(ctx, PH_DONE_FAILED, err);
        return;
    }
    n = ctx->failures - 1;
    ceiling = n >= 40 ? ctx->policy.max_delay_ms : (uint64_t)ctx->base_delay_ms << n;
    if (ceiling > ctx->policy.max_delay_ms) ceiling = ctx->policy.max_delay_ms;
    if (draw(ctx, (uint32_t)ceiling + 1, &delay)) {
        finish(ctx, PH_DONE_FAILED, KAA_ERR_CRYPTO);
        return;
    }
    if (retry_after_ms > ctx->policy.max_delay_ms) retry_after_ms = ctx->policy.max_delay_ms;
    if (delay < retry_after_ms) delay = retry_after_ms;
    wait_for(ctx, delay, now_ms, err);
}

/* Docs/protocol.md 4.2 "Choosing a node": highest priority first; within one, weighted
 * random order of the nodes of weight > 0, then the standbys in uniform random order. */
int kaa_order_nodes(kaa_context *ctx)
{
    uint8_t placed[KAA_MAX_NODES];
    kaa_node nodes[KAA_MAX_NODES];
    kaa_bytes raw;
    size_t off = 0;
    unsigned i, count = ctx->node_count, out = 0;
    raw.data = ctx->nodes;
    raw.len = ctx->nodes_len;
    for (i = 0; i < count; i++) {
        ctx->node_offset[i] = (uint16_t)off;
        if (kaa_node_next(raw, &off, &nodes[i])) return KAA_ERR_MALFORMED_FRAME;
        placed[i] = 0;
    }
    while (out < count) {
        int top = -1;
        uint32_t total = 0, left = 0, pick;
        for (i = 0; i < count; i++)
            if (!placed[i] && (int)nodes[i].priority > top) top = nodes[i].priority;
        for (i = 0; i < count; i++)
            if (!placed[i] && nodes[i].priority == top) {
                total += nodes[i].weight;
                left++;
            }
        /* weighted draw among weight > 0, or uniform among the standbys */
        if (draw(ctx, total ? total : left, &pick)) return KAA_ERR_CRYPTO;
        for (i = 0; i < count; i++) {
            uint32_t share;
            if (placed[i] || nodes[i].priority != top) continue;
            share = total ? nodes[i].weight : 1;
            if (pick < share) break;
            pick -= share;
        }
        placed[i] = 1;
        ctx->order[out++] = (uint8_t)i;
    }
    return KAA_OK;
}

/* Sends ctx->buf[0..len) to ctx's current host and awaits its answer's header. */
static int exchange_step(kaa_context *ctx, kaa_step *step, int stage, size_t len)
{
    ctx->rx_len = 0;
    ctx->rx_need = KAA_HEADER_SIZE;
    ctx->phase = PH_AWAIT;
    step->kind = KAA_STEP_EXCHANGE;
    step->stage = stage;
    step->host = ctx->host;
    step->host_len = ctx->host_len;
    step->port = ctx->port;
    step->request = ctx->buf;
    step->request_len = len;
    return KAA_OK;
}

static int begin_resolve(kaa_context *ctx, uint64_t now_ms, kaa_step *step)
{
    size_t index = ctx->next_bootstrap, len;
    const kaa_bootstrap_server_t *b = &ctx->config->bootstrap_servers[index];
    trusted t;
    int err;
    ctx->next_bootstrap = (uint8_t)((index + 1) % ctx->config->bootstrap_server_count);
    ctx->bootstrap_index = (uint8_t)index;
    ctx->stage = KAA_STAGE_RESOLVE;
    ctx->host = b->host;
    ctx->host_len = strlen(b->host);
    ctx->port = b->port;
    if (trusted_key(ctx, index, &t)) return KAA_ERR_CRYPTO;
    /* A nonce must never repeat and never be all zero (4.1). */
    do {
        size_t i;
        int zero = 1;
        if (ctx->crypto->random(ctx->crypto->self, ctx->nonce, sizeof ctx->nonce)) return KAA_ERR_CRYPTO;
        for (i = 0; i < sizeof ctx->nonce; i++) zero &= ctx->nonce[i] == 0;
        if (!zero) break;
    } while (1);
    err = kaa_resolve_request_build(ctx->buf, sizeof ctx->buf, &len, ctx->nonce, t.generation,
                                    ctx->config->application_token, ctx->config->max_frame_size);
    if (err) return err;
    (void)now_ms;
    return exchange_step(ctx, step, KAA_STAGE_RESOLVE, len);
}

/* Builds and seals the REGISTER_REQUEST to node (docs/protocol.md 5.1-5.3) in ctx->buf. */
static int build_register(kaa_context *ctx, const kaa_node *node, size_t *frame_len)
{
    const kaa_crypto_port *c = ctx->crypto;
    uint8_t priv[32], shared[32], okm[64], *payload = ctx->buf + 40;
    uint8_t zero_nonce[12];
    size_t head_len, sig_len = 0, body_len, cap = sizeof ctx->buf - 40 - KAA_AEAD_TAG_SIZE;
    kaa_bytes msg[4], key;
    int err;
    if (node->kex_algorithm != KAA_KEX_X25519) return KAA_ERR_UNSUPPORTED_ALGORITHM;
    if (ctx->reconnect) {
        key.data = ctx->endpoint_id;
        key.len = KAA_KEY_HASH_SIZE;
    } else {
        key.data = ctx->endpoint_der;
        key.len = ctx->endpoint_der_len;
    }
    err = kaa_register_payload_head(payload, cap, &head_len, ctx->reconnect, ctx->endpoint_alg,
                                    ctx->timestamp_ms, ctx->config->sdk_token, key.data, key.len,
                                    ctx->profile, ctx->profile_len);
    if (err) return err;
    if (head_len + 2 > cap) return KAA_ERR_NO_ROOM;
    if (c->x25519_keypair(c->self, priv, ctx->buf + 8)) return KAA_ERR_CRYPTO;
    err = c->x25519(c->self, priv, node->kex_public_key, shared);
    wipe(priv, sizeof priv);
    if (err) return err == KAA_ERR_BAD_SEAL ? err : KAA_ERR_CRYPTO;
    /* HKDF salt = e.public || node key: copy the node key beside e.public first */
    memcpy(okm, ctx->buf + 8, 32);
    memcpy(okm + 32, node->kex_public_key, 32);
    err = c->hkdf_sha256(c->self, okm, 64, shared, 32, (const uint8_t *)SEAL_INFO,
                         sizeof SEAL_INFO - 1, okm, 64);
    wipe(shared, sizeof shared);
    if (err) return KAA_ERR_CRYPTO;
    memcpy(ctx->response_secret, okm + 32, 32);
    /* proof of possession over context || node key || e.public || payload head */
    msg[0].data = (const uint8_t *)REGISTER_CTX;
    msg[0].len = sizeof REGISTER_CTX; /* with its NUL */
    msg[1].data = node->kex_public_key;
    msg[1].len = 32;
    msg[2].data = ctx->buf + 8;
    msg[2].len = 32;
    msg[3].data = payload;
    msg[3].len = head_len;
    err = c->endpoint_sign(c->self, msg, 4, payload + head_len + 2, cap - head_len - 2, &sig_len);
    if (err || sig_len > 0xFFFF) {
        wipe(okm, sizeof okm);
        return err == KAA_ERR_NO_ROOM ? err : KAA_ERR_CRYPTO;
    }
    put(payload + head_len, sig_len, 2);
    body_len = 34 + head_len + 2 + sig_len + KAA_AEAD_TAG_SIZE;
    err = kaa_frame_header_write(ctx->buf, KAA_MSG_REGISTER_REQUEST, 0, body_len,
                                 ctx->config->max_frame_size);
    if (err) {
        wipe(okm, sizeof okm);
        return err;
    }
    ctx->buf[6] = KAA_KEX_X25519;
    ctx->buf[7] = KAA_AEAD_CHACHA20_POLY1305;
    memset(zero_nonce, 0, sizeof zero_nonce);
    err = c->aead_seal(c->self, okm, zero_nonce, ctx->buf, 40, payload, head_len + 2 + sig_len,
                       payload + head_len + 2 + sig_len);
    wipe(okm, sizeof okm);
    if (err) return KAA_ERR_CRYPTO;
    *frame_len = KAA_HEADER_SIZE + body_len;
    return KAA_OK;
}

static uint64_t server_time_at(const kaa_context *ctx, uint64_t now_ms)
{
    return ctx->server_time_ms + (now_ms > ctx->received_at_ms ? now_ms - ctx->received_at_ms : 0);
}

static int expired(const kaa_context *ctx, uint64_t now_ms)
{
    return now_ms - ctx->received_at_ms >= (uint64_t)ctx->valid_for_s * 1000u;
}

static int begin_register(kaa_context *ctx, uint64_t now_ms, kaa_step *step)
{
    kaa_node node;
    kaa_bytes raw;
    size_t off = ctx->node_offset[ctx->order[ctx->node_pos]], len = 0;
    uint64_t ts;
    int err;
    raw.data = ctx->nodes;
    raw.len = ctx->nodes_len;
    if (kaa_node_next(raw, &off, &node)) return KAA_ERR_MALFORMED_FRAME;
    ctx->stage = KAA_STAGE_REGISTER;
    ctx->host = node.host;
    ctx->host_len = node.host_len;
    ctx->port = node.port;
    /* Never a timestamp sent before, nor one not above the last accepted (section 6). */
    ts = server_time_at(ctx, now_ms);
    if (ts < ctx->last_timestamp_ms + 1) ts = ctx->last_timestamp_ms + 1;
    if (ts < ctx->last_sent_ms + 1) ts = ctx->last_sent_ms + 1;
    ctx->timestamp_ms = ts;
    ctx->last_sent_ms = ts;
    err = build_register(ctx, &node, &len);
    if (err) return err; /* a failure of this node; nothing was sent */
    return exchange_step(ctx, step, KAA_STAGE_REGISTER, len);
}

int kaa_next(kaa_context *ctx, uint64_t now_ms, kaa_step *step)
{
    memset(step, 0, sizeof *step);
    for (;;) {
        int err;
        if (ctx->phase >= PH_DONE_CONNECTED) {
            step->kind = ctx->phase == PH_DONE_CONNECTED ? KAA_STEP_CONNECTED
                         : ctx->phase == PH_DONE_REVOKED ? KAA_STEP_REVOKED : KAA_STEP_FAILED;
            step->err = ctx->outcome_err;
            if (step->kind != KAA_STEP_FAILED) {
                size_t body = 6 + KAA_RESPONSE_NONCE_SIZE;
                size_t plain = ctx->rx_len - body - KAA_AEAD_TAG_SIZE;
                if (step->kind == KAA_STEP_CONNECTED) {
                    kaa_result_parse(ctx->buf + body, plain, &step->result);
                } else {
                    kaa_error_body e;
                    kaa_error_parse(ctx->buf + body, plain, &e);
                    step->message = e.message;
                    while (step->message.len && step->message.data[step->message.len - 1] == ' ')
                        step->message.len--; /* the padding of a sealed message */
                }
                step->host = ctx->host;
                step->host_len = ctx->host_len;
                step->port = ctx->port;
            }
            return KAA_OK;
        }
        if (ctx->phase == PH_IDLE || ctx->phase == PH_AWAIT) return KAA_ERR_BAD_STATE;
        if (ctx->pending_sleep_ms) {
            step->kind = KAA_STEP_SLEEP;
            step->sleep_ms = ctx->pending_sleep_ms;
            ctx->pending_sleep_ms = 0;
            return KAA_OK;
        }
        if (ctx->phase == PH_START) {
            ctx->phase = PH_RUN;
            if (ctx->policy.initial_holdoff_ms) {
                uint32_t d;
                if (draw(ctx, ctx->policy.initial_holdoff_ms + 1, &d)) {
                    finish(ctx, PH_DONE_FAILED, KAA_ERR_CRYPTO);
                    continue;
                }
                wait_for(ctx, d, now_ms, 0);
                ctx->have_deadline = 0;
                ctx->deadline_at_ms = 0;
                /* the deadline counts from the end of the hold-off */
                ctx->phase = PH_RUN;
                ctx->have_deadline = 2; /* set when the first attempt starts */
                continue;
            }
            ctx->have_deadline = 2;
        }
        if (ctx->have_deadline == 2) {
            ctx->have_deadline = ctx->policy.deadline_ms ? 1 : 0;
            ctx->deadline_at_ms = now_ms + ctx->policy.deadline_ms;
        }
        if (!ctx->resolved || expired(ctx, now_ms)) {
            ctx->resolved = 0;
            err = begin_resolve(ctx, now_ms, step);
            if (err) {
                finish(ctx, PH_DONE_FAILED, err);
                continue;
            }
            return KAA_OK;
        }
        if (ctx->node_pos >= ctx->node_count) { /* every node failed: resolve again */
            ctx->resolved = 0;
            continue;
        }
        err = begin_register(ctx, now_ms, step);
        if (err == KAA_OK) return KAA_OK;
        ctx->node_pos++;
        failed(ctx, err, 0, 0, now_ms);
    }
}

void kaa_await_answer(kaa_context *ctx, int stage)
{
    ctx->stage = (uint8_t)stage;
    ctx->phase = PH_AWAIT;
    ctx->rx_len = 0;
    ctx->rx_need = KAA_HEADER_SIZE;
}

uint8_t *kaa_rx_space(kaa_context *ctx, size_t *room)
{
    if (ctx->phase != PH_AWAIT) {
        *room = 0;
        return NULL;
    }
    *room = ctx->rx_need - ctx->rx_len;
    return ctx->buf + ctx->rx_len;
}

/* -- handling answers ---------------------------------------------------------------- */

/* Opens a sealed body in place (5.1): r || ciphertext || tag, AAD = the header. */
static int open_sealed(kaa_context *ctx, uint8_t **plain, size_t *plain_len)
{
    const kaa_crypto_port *c = ctx->crypto;
    size_t body = ctx->rx_len - KAA_HEADER_SIZE, n;
    uint8_t okm[44], *r = ctx->buf + KAA_HEADER_SIZE;
    int err;
    if (body < KAA_RESPONSE_NONCE_SIZE + KAA_AEAD_TAG_SIZE) return KAA_ERR_MALFORMED_FRAME;
    n = body - KAA_RESPONSE_NONCE_SIZE - KAA_AEAD_TAG_SIZE;
    if (c->hkdf_sha256(c->self, r, 32, ctx->response_secret, 32, (const uint8_t *)RESPONSE_INFO,
                       sizeof RESPONSE_INFO - 1, okm, sizeof okm))
        return KAA_ERR_CRYPTO;
    err = c->aead_open(c->self, okm, okm + 32, ctx->buf, KAA_HEADER_SIZE, r + 32, n, r + 32 + n);
    wipe(okm, sizeof okm);
    if (err) return KAA_ERR_BAD_SEAL;
    *plain = r + 32;
    *plain_len = n;
    return KAA_OK;
}

static int verify_resolution(kaa_context *ctx, const kaa_resolve_response *resp, trusted *t)
{
    const kaa_crypto_port *c = ctx->crypto;
    kaa_bytes msg[4];
    kaa_rotation cert;
    size_t off = 0, i;
    uint8_t tlen;
    int err;
    /* a retired generation, or a chain that does not start at ours (4.5) */
    if (resp->key_generation < t->generation ||
        resp->rotation_count != resp->key_generation - t->generation)
        return KAA_ERR_BAD_SIGNATURE;
    for (i = 0; i < resp->rotation_count; i++) {
        if (kaa_rotation_next(resp->rotations, &off, &cert)) return KAA_ERR_MALFORMED_FRAME;
        msg[0].data = (const uint8_t *)ROTATE_CTX;
        msg[0].len = sizeof ROTATE_CTX;
        msg[1] = cert.signed_part;
        if (c->verify(c->self, t->alg, t->der, t->der_len, msg, 2, cert.signature.data,
                      cert.signature.len))
            return KAA_ERR_BAD_SIGNATURE;
        err = c->check_key(c->self, cert.signature_algorithm, cert.public_key.data, cert.public_key.len);
        if (err) return err == KAA_ERR_MALFORMED_FRAME ? err : KAA_ERR_UNSUPPORTED_ALGORITHM;
        t->generation = cert.generation;
        t->alg = cert.signature_algorithm;
        t->der = cert.public_key.data;
        t->der_len = cert.public_key.len;
    }
    if (resp->signature_algorithm != t->alg) return KAA_ERR_BAD_SIGNATURE;
    tlen = (uint8_t)strlen(ctx->config->application_token);
    msg[0].data = (const uint8_t *)RESOLVE_CTX;
    msg[0].len = sizeof RESOLVE_CTX;
    msg[1].data = &tlen;
    msg[1].len = 1;
    msg[2].data = (const uint8_t *)ctx->config->application_token;
    msg[2].len = tlen;
    msg[3] = resp->signed_part;
    if (c->verify(c->self, t->alg, t->der, t->der_len, msg, 4, resp->signature.data, resp->signature.len))
        return KAA_ERR_BAD_SIGNATURE;
    return KAA_OK;
}

static void on_resolve_answer(kaa_context *ctx, uint64_t now_ms)
{
    kaa_resolve_response resp;
    kaa_error_body e;
    trusted t = {0, 0, NULL, 0, {0}};
    size_t body = ctx->rx_len - KAA_HEADER_SIZE;
    const uint8_t *b = ctx->buf + KAA_HEADER_SIZE;
    static const uint8_t unbound[KAA_NONCE_SIZE] = {0};
    int err;
    uint32_t start_generation;
    if (ctx->rx_type == KAA_MSG_ERROR && !ctx->rx_flags) {
        err = kaa_error_parse(b, body, &e);
        if (err) { failed(ctx, err, 0, 0, now_ms); return; }
        err = kaa_err_from_code(e.code);
        failed(ctx, err, 0, err == KAA_ERR_OVERLOADED ? e.retry_after_ms : 0, now_ms);
        return;
    }
    if (ctx->rx_type != KAA_MSG_RESOLVE_RESPONSE) { failed(ctx, KAA_ERR_UNEXPECTED_MESSAGE, 0, 0, now_ms); return; }
    err = kaa_resolve_response_parse(b, body, &resp);
    if (!err && trusted_key(ctx, ctx->bootstrap_index, &t)) err = KAA_ERR_CRYPTO;

    start_generation = t.generation;
    if (!err) err = verify_resolution(ctx, &resp, &t);
    if (!err && memcmp(resp.nonce, ctx->nonce, KAA_NONCE_SIZE) != 0 &&
        !(ctx->config->accept_unbound_resolution && memcmp(resp.nonce, unbound, KAA_NONCE_SIZE) == 0))
        err = KAA_ERR_REPLAYED_REQUEST;
    if (!err && resp.valid_for_s == 0) err = KAA_ERR_STALE_REQUEST;
    if (err) { failed(ctx, err, 0, 0, now_ms); return; }
    /* Verified: learn a rotation (for every Bootstrap with this anchor), then the nodes. */
    if (t.generation > start_generation) {
        kaa_event ev;
        if (t.der_len > KAA_MAX_TRUST_DER) { failed(ctx, KAA_ERR_NO_ROOM, 0, 0, now_ms); return; }
        memmove(ctx->trust.der, t.der, t.der_len);
        ctx->trust.der_len = (uint16_t)t.der_len;
        ctx->trust.generation = t.generation;
        ctx->trust.alg = t.alg;
        memcpy(ctx->trust.anchor_sha256, t.anchor_sha256, 32);
        if (state_save(ctx)) { record(ctx, KAA_ERR_STORAGE, 0); finish(ctx, PH_DONE_FAILED, KAA_ERR_STORAGE); return; }
        memset(&ev, 0, sizeof ev);
        ev.kind = KAA_EVENT_KEY_ROTATED;
        ev.host = ctx->host;
        ev.host_len = ctx->host_len;
        ev.port = ctx->port;
        ev.generation = t.generation;
        emit(ctx, &ev);
    }
    if (resp.node_count == 0) { failed(ctx, KAA_ERR_NO_OPERATIONS, 0, 0, now_ms); return; }
    if (resp.node_count > KAA_MAX_NODES || resp.nodes.len > KAA_NODES_SIZE) {
        failed(ctx, KAA_ERR_NO_ROOM, 0, 0, now_ms);
        return;
    }
    memcpy(ctx->nodes, resp.nodes.data, resp.nodes.len);
    ctx->nodes_len = (uint16_t)resp.nodes.len;
    ctx->node_count = resp.node_count;
    ctx->node_pos = 0;
    ctx->server_time_ms = resp.server_time_ms;
    ctx->valid_for_s = resp.valid_for_s;
    ctx->received_at_ms = now_ms;
    if (kaa_order_nodes(ctx)) { finish(ctx, PH_DONE_FAILED, KAA_ERR_CRYPTO); return; }
    ctx->resolved = 1;
    record(ctx, KAA_OK, 0);
}

static void on_register_answer(kaa_context *ctx, uint64_t now_ms)
{
    uint8_t *plain;
    size_t plain_len;
    int err, sealed = 0;
    uint32_t retry_after = 0;
    if (ctx->rx_type == KAA_MSG_ERROR) {
        kaa_error_body e;
        if (ctx->rx_flags & KAA_FLAG_SEALED) {
            err = open_sealed(ctx, &plain, &plain_len);
            if (!err) err = kaa_error_parse(plain, plain_len, &e);
            sealed = !err;
        } else {
            err = kaa_error_parse(ctx->buf + KAA_HEADER_SIZE, ctx->rx_len - KAA_HEADER_SIZE, &e);
        }
        if (!err) {
            err = kaa_err_from_code(e.code);
            if (err == KAA_ERR_OVERLOADED) retry_after = e.retry_after_ms;
        }
    } else if (ctx->rx_type == KAA_MSG_REGISTER_RESPONSE) {
        kaa_result result;
        err = open_sealed(ctx, &plain, &plain_len);
        if (!err) err = kaa_result_parse(plain, plain_len, &result);
        if (!err && memcmp(result.endpoint_id, ctx->endpoint_id, KAA_KEY_HASH_SIZE) != 0)
            err = KAA_ERR_WRONG_ENDPOINT;
        if (!err) {
            uint8_t was_registered = ctx->registered;
            uint64_t was_ts = ctx->last_timestamp_ms;
            uint32_t was_retry = ctx->retry_base_ms;
            record(ctx, KAA_OK, 1);
            ctx->registered = 1;
            ctx->last_timestamp_ms = ctx->timestamp_ms;
            ctx->retry_base_ms = result.retry_base_ms;
            if (state_save(ctx)) {
                ctx->registered = was_registered;
                ctx->last_timestamp_ms = was_ts;
                ctx->retry_base_ms = was_retry;
                finish(ctx, PH_DONE_FAILED, KAA_ERR_STORAGE);
                return;
            }
            finish(ctx, PH_DONE_CONNECTED, KAA_OK);
            return;
        }
    } else {
        err = KAA_ERR_UNEXPECTED_MESSAGE;
    }
    if (err == KAA_ERR_UNKNOWN_KEY_HASH && ctx->reconnect) {
        /* The server lost us: send the key, now and from now on (sealed or not, obeying
         * costs only bytes: the key is public). Same node, at once. */
        record(ctx, err, sealed);
        ctx->reconnect = 0;
        return;
    }
    if (err == KAA_ERR_REVOKED_ENDPOINT && sealed) {
        record(ctx, err, 1);
        ctx->registered = 0;
        if (state_save(ctx)) { finish(ctx, PH_DONE_FAILED, KAA_ERR_STORAGE); return; }
        finish(ctx, PH_DONE_REVOKED, err);
        return;
    }
    if (err == KAA_ERR_STALE_REQUEST || err == KAA_ERR_REPLAYED_REQUEST) {
        failed(ctx, err, sealed, 0, now_ms);
        ctx->resolved = 0; /* resolve again to learn the time */
        return;
    }
    failed(ctx, err, sealed, retry_after, now_ms);
    ctx->node_pos++;
}

static void exchange_done(kaa_context *ctx, uint64_t now_ms)
{
    ctx->phase = PH_RUN;
    if (ctx->stage == KAA_STAGE_RESOLVE) on_resolve_answer(ctx, now_ms);
    else on_register_answer(ctx, now_ms);
}

int kaa_rx_commit(kaa_context *ctx, size_t n, uint64_t now_ms)
{
    uint32_t body_len;
    uint32_t max;
    int err;
    if (ctx->phase != PH_AWAIT) return KAA_ERR_BAD_STATE;
    if (n == 0) return kaa_exchange_failed(ctx, KAA_ERR_TRANSPORT, now_ms);
    if (n > ctx->rx_need - ctx->rx_len) return KAA_ERR_INVALID_ARGUMENT;
    ctx->rx_len += n;
    if (ctx->rx_len < ctx->rx_need) return KAA_ERR_NEED_DATA;
    if (ctx->rx_need == KAA_HEADER_SIZE) {
        max = ctx->config->max_frame_size < KAA_BUFFER_SIZE ? ctx->config->max_frame_size : KAA_BUFFER_SIZE;
        err = kaa_frame_header(ctx->buf, max, &ctx->rx_type, &ctx->rx_flags, &body_len);
        if (err) {
            ctx->phase = PH_RUN;
            if (ctx->stage == KAA_STAGE_REGISTER) ctx->node_pos++;
            failed(ctx, err, 0, 0, now_ms);
            return KAA_OK;
        }
        ctx->rx_need = KAA_HEADER_SIZE + body_len;
        if (body_len) return KAA_ERR_NEED_DATA;
    }
    exchange_done(ctx, now_ms);
    return KAA_OK;
}

int kaa_exchange_failed(kaa_context *ctx, int err, uint64_t now_ms)
{
    if (ctx->phase != PH_AWAIT) return KAA_ERR_BAD_STATE;
    ctx->phase = PH_RUN;
    if (ctx->stage == KAA_STAGE_REGISTER) ctx->node_pos++;
    failed(ctx, err < 0 ? err : KAA_ERR_TRANSPORT, 0, 0, now_ms);
    return KAA_OK;
}
