/* Unit tests of the C SDK: the shared vectors byte for byte, and the client policy.
 * Built with -fsanitize=address,undefined by `make test`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kaa/kaa.h"
#include "kaa_internal.h"
#include "kaa_mbedtls.h"
#include "vectors.h"

static int failures, checks;
#define CHECK(cond)                                                                      \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, current, #cond); \
        }                                                                                \
    } while (0)
#define CHECK_EQ(a, b) CHECK((long long)(a) == (long long)(b))
#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)
static const char *current = "";

/* -- a deterministic crypto port around the mbedTLS one -------------------------------- */

static kaa_mbedtls backend, backend_p256;
static kaa_crypto_port real, port, port_p256;
static const uint8_t *next_ephemeral; /* the ephemeral key the next registration uses */
static uint32_t draw_value;           /* what every policy draw (4 bytes) returns */

static int fixed_random(void *self, uint8_t *out, size_t len)
{
    (void)self;
    if (len == KAA_NONCE_SIZE) memcpy(out, X_NONCE, len);
    else if (len == 4) {
        out[0] = (uint8_t)(draw_value >> 24);
        out[1] = (uint8_t)(draw_value >> 16);
        out[2] = (uint8_t)(draw_value >> 8);
        out[3] = (uint8_t)draw_value;
    } else return real.random(real.self, out, len);
    return KAA_OK;
}

static int fixed_ephemeral(void *self, uint8_t priv[32], uint8_t pub[32])
{
    if (!next_ephemeral) return real.x25519_keypair(self, priv, pub);
    memcpy(priv, next_ephemeral, 32);
    return kaa_mbedtls_x25519_public(priv, pub);
}

/* -- an in-memory store with the atomic semantics ------------------------------------ */

typedef struct mem_store {
    uint8_t data[1024];
    size_t len;
    int present, fail_saves, saves;
} mem_store;

static int mem_load(void *self, uint8_t *buf, size_t cap, size_t *len)
{
    mem_store *m = self;
    if (!m->present) return KAA_ERR_NOT_FOUND;
    if (m->len > cap) return KAA_ERR_NO_ROOM;
    memcpy(buf, m->data, m->len);
    *len = m->len;
    return KAA_OK;
}

static int mem_save(void *self, const kaa_bytes *parts, size_t count)
{
    mem_store *m = self;
    uint8_t tmp[1024];
    size_t i, n = 0;
    if (m->fail_saves) return KAA_ERR_STORAGE; /* the old record stays, whole */
    for (i = 0; i < count; i++) {
        if (n + parts[i].len > sizeof tmp) return KAA_ERR_STORAGE;
        memcpy(tmp + n, parts[i].data, parts[i].len);
        n += parts[i].len;
    }
    memcpy(m->data, tmp, n);
    m->len = n;
    m->present = 1;
    m->saves++;
    return KAA_OK;
}

static mem_store store_mem;
static kaa_store_port store = {&store_mem, mem_load, mem_save};

/* -- the configuration: two Bootstraps with the vector key ----------------------------- */

static kaa_bootstrap_server_t servers[2];
static kaa_config config;
static kaa_context ctx;

static void setup_config(void)
{
    size_t i;
    for (i = 0; i < 2; i++) {
        servers[i].host = i ? "boot2.example.net" : "boot1.example.net";
        servers[i].port = (unsigned short)(9888 + i);
        servers[i].public_key_pem = "";
        servers[i].key_generation = 1;
        servers[i].public_key_der = X_BOOTSTRAP_PUBLIC_KEY;
        servers[i].public_key_der_size = X_BOOTSTRAP_PUBLIC_KEY_LEN;
        servers[i].signature_algorithm = KAA_SIG_RSA_PKCS1_SHA256;
    }
    config.application_token = X_APP_TOKEN;
    config.sdk_token = X_SDK_TOKEN;
    config.bootstrap_servers = servers;
    config.bootstrap_server_count = 2;
    config.max_frame_size = KAA_DEFAULT_MAX_FRAME_SIZE;
    config.accept_unbound_resolution = 0;
}

static int fresh(size_t server_count)
{
    kaa_policy policy;
    kaa_policy_default(&policy);
    memset(&store_mem, 0, sizeof store_mem);
    config.bootstrap_server_count = server_count;
    draw_value = 0;
    next_ephemeral = EPHEMERAL_X25519;
    return kaa_init(&ctx, &config, &port, &store, &policy);
}

/* Feeds a whole answer to the exchange in flight, in small pieces. */
static int feed(const uint8_t *frame, size_t len, uint64_t now)
{
    size_t off = 0;
    int rc = KAA_ERR_NEED_DATA;
    while (rc == KAA_ERR_NEED_DATA) {
        size_t room, n;
        uint8_t *p = kaa_rx_space(&ctx, &room);
        if (off == len) return kaa_rx_commit(&ctx, 0, now); /* the peer closed */
        n = len - off < room ? len - off : room;
        if (n > 7) n = 7;
        memcpy(p, frame + off, n);
        off += n;
        rc = kaa_rx_commit(&ctx, n, now);
    }
    return rc;
}

static int event_log[64], event_count;
static void on_event(void *user, const kaa_event *e)
{
    (void)user;
    if (e->kind == KAA_EVENT_ATTEMPT && event_count < 64) event_log[event_count++] = e->err;
}

/* -- the tests -------------------------------------------------------------------------- */

static void test_frames(void)
{
    size_t i;
    current = "frames.json";
    for (i = 0; i < sizeof FRAME_CASES / sizeof FRAME_CASES[0]; i++) {
        const frame_case *c = &FRAME_CASES[i];
        size_t off = 0;
        int n = 0, err = 0;
        current = c->name;
        /* what a receiver does: header first, then the body once it is all there */
        while (c->in_len - off >= KAA_HEADER_SIZE) {
            uint8_t type, flags;
            uint32_t body;
            err = kaa_frame_header(c->in + off, c->max, &type, &flags, &body);
            if (err || c->in_len - off - KAA_HEADER_SIZE < body) break;
            CHECK(n < c->nframes);
            if (n < c->nframes) {
                CHECK_EQ(type, c->frames[n].type);
                CHECK_EQ(flags, c->frames[n].flags);
                CHECK_EQ(body, c->frames[n].len);
                CHECK_MEM(c->in + off + 6, c->frames[n].body, body);
            }
            n++;
            off += KAA_HEADER_SIZE + body;
        }
        CHECK_EQ(err, c->error);
        CHECK_EQ(n, c->nframes);
        if (!c->error) CHECK_EQ(c->in_len - off, c->buffered);
    }
}

static void test_messages(void)
{
    size_t i;
    for (i = 0; i < sizeof MSG_CASES / sizeof MSG_CASES[0]; i++) {
        const msg_case *c = &MSG_CASES[i];
        const uint8_t *body = c->frame + 6;
        size_t len = c->len - 6;
        current = c->name;
        if (c->type == KAA_MSG_ERROR) {
            kaa_error_body e;
            int err = kaa_error_parse(body, len, &e);
            CHECK_EQ(err, c->error);
            if (!err) {
                CHECK_EQ(e.code, c->code);
                CHECK_EQ(kaa_err_from_code(e.code), KAA_ERR_REPLAYED_REQUEST);
                CHECK_EQ(e.retry_after_ms, c->retry);
                CHECK(e.message.len == strlen(c->message) && !memcmp(e.message.data, c->message, e.message.len));
            }
        } else {
            kaa_resolve_response r;
            int err = kaa_resolve_response_parse(body, len, &r), k;
            size_t off = 0;
            CHECK_EQ(err, c->error);
            if (err) continue;
            CHECK_MEM(r.nonce, c->nonce, 16);
            CHECK_EQ(r.server_time_ms, c->server_time_ms);
            CHECK_EQ(r.valid_for_s, c->valid_for_s);
            CHECK_EQ(r.key_generation, c->key_generation);
            CHECK_EQ(r.signature_algorithm, c->alg);
            CHECK_EQ(r.node_count, c->nnodes);
            for (k = 0; k < c->nnodes; k++) {
                kaa_node n;
                CHECK_EQ(kaa_node_next(r.nodes, &off, &n), 0);
                CHECK_EQ(n.priority, c->nodes[k].priority);
                CHECK_EQ(n.weight, c->nodes[k].weight);
                CHECK_EQ(n.access_point_id, c->nodes[k].ap);
                CHECK_EQ(n.port, c->nodes[k].port);
                CHECK_EQ(n.kex_algorithm, c->nodes[k].kex);
                CHECK_MEM(n.kex_public_key, c->nodes[k].key, 32);
                CHECK(n.host_len == strlen(c->nodes[k].host) && !memcmp(n.host, c->nodes[k].host, n.host_len));
            }
            CHECK_EQ(off, r.nodes.len);
            CHECK_EQ(r.rotation_count, c->nrot);
            off = 0;
            for (k = 0; k < c->nrot; k++) {
                kaa_rotation rot;
                CHECK_EQ(kaa_rotation_next(r.rotations, &off, &rot), 0);
                CHECK_EQ(rot.generation, c->rot[k].generation);
                CHECK_EQ(rot.signature_algorithm, c->rot[k].alg);
                CHECK(rot.public_key.len == c->rot[k].key_len && !memcmp(rot.public_key.data, c->rot[k].key, c->rot[k].key_len));
                CHECK(rot.signature.len == c->rot[k].sig_len && !memcmp(rot.signature.data, c->rot[k].sig, c->rot[k].sig_len));
            }
            CHECK(r.signature.len == c->sig_len && !memcmp(r.signature.data, c->sig, c->sig_len));
            CHECK_EQ(r.signed_part.len, len - 2 - c->sig_len);
        }
    }
}

static void test_registration_payloads(void)
{
    size_t i;
    for (i = 0; i < sizeof REG_CASES / sizeof REG_CASES[0]; i++) {
        const reg_case *c = &REG_CASES[i];
        uint8_t out[2048];
        size_t head = 0, sig_len = 0;
        kaa_bytes msg[2];
        current = c->name;
        const kaa_crypto_port *signer = c->alg == KAA_SIG_ECDSA_P256_SHA256 ? &port_p256 : &port;
        CHECK_EQ(kaa_register_payload_head(out, sizeof out, &head, c->key_is_hash, (uint8_t)c->alg, c->timestamp_ms,
                                           c->sdk_token, c->key, c->key_len, c->profile, c->profile_len), 0);
        msg[0].data = c->context;
        msg[0].len = c->context_len;
        msg[1].data = out;
        msg[1].len = head;
        CHECK_EQ(signer->endpoint_sign(signer->self, msg, 2, out + head + 2, sizeof out - head - 2, &sig_len), 0);
        out[head] = (uint8_t)(sig_len >> 8);
        out[head + 1] = (uint8_t)sig_len;
        CHECK_EQ(head + 2 + sig_len, c->len);
        CHECK_MEM(out, c->plaintext, c->len);
    }
    current = "payload arguments";
    {
        uint8_t out[64];
        size_t n;
        CHECK_EQ(kaa_register_payload_head(out, sizeof out, &n, 0, 1, 0, "", X_NONCE, 4, NULL, 0), KAA_ERR_INVALID_ARGUMENT);
        CHECK_EQ(kaa_register_payload_head(out, sizeof out, &n, 1, 1, 0, "t", X_NONCE, 16, NULL, 0), KAA_ERR_INVALID_ARGUMENT);
        CHECK_EQ(kaa_register_payload_head(out, 8, &n, 1, 1, 0, "t", X_ENDPOINT_ID, 20, NULL, 0), KAA_ERR_NO_ROOM);
    }
}

static void test_resolve_request(void)
{
    uint8_t out[128], zero[16] = {0};
    size_t n = 0;
    current = "resolve_request_frame";
    CHECK_EQ(kaa_resolve_request_build(out, sizeof out, &n, X_NONCE, 1, X_APP_TOKEN, 65536), 0);
    CHECK_EQ(n, X_RESOLVE_REQUEST_FRAME_LEN);
    CHECK_MEM(out, X_RESOLVE_REQUEST_FRAME, n);
    CHECK_EQ(kaa_resolve_request_build(out, sizeof out, &n, zero, 1, X_APP_TOKEN, 65536), KAA_ERR_INVALID_ARGUMENT);
    CHECK_EQ(kaa_resolve_request_build(out, sizeof out, &n, X_NONCE, 0, X_APP_TOKEN, 65536), KAA_ERR_INVALID_ARGUMENT);
    CHECK_EQ(kaa_resolve_request_build(out, sizeof out, &n, X_NONCE, 1, "bad\ttoken", 65536), KAA_ERR_INVALID_ARGUMENT);
    CHECK_EQ(kaa_resolve_request_build(out, 20, &n, X_NONCE, 1, X_APP_TOKEN, 65536), KAA_ERR_NO_ROOM);
    CHECK_EQ(kaa_resolve_request_build(out, sizeof out, &n, X_NONCE, 1, X_APP_TOKEN, 44), KAA_ERR_FRAME_TOO_LARGE);
}

/* The whole exchange of tests/vectors/exchange.json, through the core. */
static void test_exchange(void)
{
    kaa_step step;
    uint64_t t0 = 5000000;
    size_t off = 0;
    kaa_topic topic;
    current = "exchange.json";
    CHECK_EQ(fresh(1), 0);
    CHECK_MEM(kaa_endpoint_id(&ctx), X_ENDPOINT_ID, 20);
    CHECK_EQ(kaa_is_registered(&ctx), 0);
    CHECK_EQ(kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, t0), 0);
    CHECK_EQ(kaa_next(&ctx, t0, &step), 0);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK_EQ(step.stage, KAA_STAGE_RESOLVE);
    CHECK(step.host_len == 17 && !memcmp(step.host, "boot1.example.net", 17));
    CHECK_EQ(step.request_len, X_RESOLVE_REQUEST_FRAME_LEN);
    CHECK_MEM(step.request, X_RESOLVE_REQUEST_FRAME, step.request_len);
    CHECK_EQ(feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, t0), KAA_OK);
    /* 120 ms later: the request timestamp is the server time plus 120 ms */
    CHECK_EQ(kaa_next(&ctx, t0 + 120, &step), 0);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK_EQ(step.stage, KAA_STAGE_REGISTER);
    CHECK(step.host_len == 17 && !memcmp(step.host, "ops-1.example.net", 17)); /* priority 200 first */
    CHECK_EQ(step.request_len, X_REGISTER_REQUEST_FRAME_LEN);
    CHECK_MEM(step.request, X_REGISTER_REQUEST_FRAME, X_REGISTER_REQUEST_FRAME_LEN);
    CHECK_EQ(feed(X_REGISTER_RESPONSE_FRAME, X_REGISTER_RESPONSE_FRAME_LEN, t0 + 130), KAA_OK);
    CHECK_EQ(kaa_next(&ctx, t0 + 130, &step), 0);
    CHECK_EQ(step.kind, KAA_STEP_CONNECTED);
    CHECK_EQ(step.result.status, KAA_STATUS_NEW);
    CHECK_MEM(step.result.endpoint_id, X_ENDPOINT_ID, 20);
    CHECK_EQ(step.result.config_version, 3);
    CHECK(step.result.config.len == 22 && !memcmp(step.result.config.data, "{\"sample_period_s\":60}", 22));
    CHECK_EQ(step.result.topic_count, 2);
    CHECK_EQ(kaa_topic_next(step.result.topics, &off, &topic), 0);
    CHECK(topic.topic_id == 1 && topic.name_len == 8 && !memcmp(topic.name, "firmware", 8));
    CHECK_EQ(step.result.reconnect_after_s, 86400);
    CHECK_EQ(step.result.retry_base_ms, 500);
    CHECK_EQ(kaa_is_registered(&ctx), 1);
    CHECK_EQ(store_mem.saves, 1);

    /* The reconnect, 60 s later on the same (still valid) resolution: key hash, sealed
     * REVOKED_ENDPOINT. Restart from the stored state first, as after a reboot. */
    next_ephemeral = EPHEMERAL_X25519_RECONNECT;
    CHECK_EQ(kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, t0 + 60000), 0);
    CHECK_EQ(kaa_next(&ctx, t0 + 60120, &step), 0);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK_EQ(step.stage, KAA_STAGE_REGISTER);
    CHECK_EQ(step.request_len, X_RECONNECT_REQUEST_FRAME_LEN);
    CHECK_MEM(step.request, X_RECONNECT_REQUEST_FRAME, X_RECONNECT_REQUEST_FRAME_LEN);
    CHECK_EQ(feed(X_SEALED_ERROR_FRAME, X_SEALED_ERROR_FRAME_LEN, t0 + 60130), KAA_OK);
    CHECK_EQ(kaa_next(&ctx, t0 + 60130, &step), 0);
    CHECK_EQ(step.kind, KAA_STEP_REVOKED);
    CHECK(step.message.len == 16 && !memcmp(step.message.data, "endpoint revoked", 16));
    CHECK_EQ(kaa_is_registered(&ctx), 0);
    CHECK_EQ(store_mem.saves, 2);
}

/* The first registration of endpoint_p256: 64-byte r || s with an RFC 6979 nonce. */
static void test_exchange_p256(void)
{
    kaa_step step;
    kaa_policy policy;
    current = "register_request_p256_frame";
    kaa_policy_default(&policy);
    memset(&store_mem, 0, sizeof store_mem);
    config.bootstrap_server_count = 1;
    next_ephemeral = EPHEMERAL_X25519_P256;
    CHECK_EQ(kaa_init(&ctx, &config, &port_p256, &store, &policy), 0);
    CHECK_EQ(ctx.endpoint_der_len, 91);
    CHECK_MEM(ctx.endpoint_der, X_ENDPOINT_P256_PUBLIC_KEY, 91);
    CHECK_MEM(kaa_endpoint_id(&ctx), X_ENDPOINT_P256_ID, 20);
    kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, 0);
    kaa_next(&ctx, 0, &step);
    CHECK_EQ(feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, 0), KAA_OK);
    kaa_next(&ctx, 120, &step);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK_EQ(step.request_len, X_REGISTER_REQUEST_P256_FRAME_LEN);
    CHECK_MEM(step.request, X_REGISTER_REQUEST_P256_FRAME, X_REGISTER_REQUEST_P256_FRAME_LEN);
}

/* A state that survives a restart, and one that does not read back intact. */
static void test_state(void)
{
    kaa_step step;
    kaa_policy policy;
    current = "state";
    CHECK_EQ(fresh(1), 0);
    kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, 0);
    kaa_next(&ctx, 0, &step);
    feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, 0);
    kaa_next(&ctx, 120, &step);
    feed(X_REGISTER_RESPONSE_FRAME, X_REGISTER_RESPONSE_FRAME_LEN, 120);
    kaa_next(&ctx, 120, &step);
    CHECK_EQ(step.kind, KAA_STEP_CONNECTED);
    kaa_policy_default(&policy);
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), 0);
    CHECK_EQ(kaa_is_registered(&ctx), 1);
    CHECK_EQ(ctx.last_timestamp_ms, X_REGISTER_TIMESTAMP_MS);
    CHECK_EQ(ctx.retry_base_ms, 500);
    store_mem.data[10] ^= 1;
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), KAA_ERR_CORRUPT_STATE);
    store_mem.data[10] ^= 1;
    store_mem.len--;
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), KAA_ERR_CORRUPT_STATE);
    /* a save that fails leaves the plan FAILED (STORAGE) and the old record whole */
    store_mem.len++;
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), 0);
    store_mem.fail_saves = 1;
    next_ephemeral = EPHEMERAL_X25519_RECONNECT;
    kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, 0);
    kaa_next(&ctx, 0, &step);
    feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, 0);
    kaa_next(&ctx, 60120, &step);
    CHECK_EQ(step.request_len, X_RECONNECT_REQUEST_FRAME_LEN);
    feed(X_SEALED_ERROR_FRAME, X_SEALED_ERROR_FRAME_LEN, 60120);
    kaa_next(&ctx, 60120, &step);
    CHECK_EQ(step.kind, KAA_STEP_FAILED);
    CHECK_EQ(step.err, KAA_ERR_STORAGE);
    store_mem.fail_saves = 0;
}

/* Failover: tampered, refused or silent servers are failures of that server only. */
static void test_failover(void)
{
    kaa_step step;
    uint8_t bad[2048];
    uint64_t now = 0;
    current = "failover";
    CHECK_EQ(fresh(2), 0);
    event_count = 0;
    kaa_set_event_handler(&ctx, on_event, NULL);
    kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, now);
    /* boot1 answers with a tampered list: BAD_SIGNATURE, back off, then boot2 */
    kaa_next(&ctx, now, &step);
    CHECK(step.host[4] == '1');
    memcpy(bad, X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN);
    bad[60] ^= 1; /* inside the first node's record */
    CHECK_EQ(feed(bad, X_RESOLVE_RESPONSE_FRAME_LEN, now), KAA_OK);
    CHECK_EQ(event_log[0], KAA_ERR_BAD_SIGNATURE);
    kaa_next(&ctx, now, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP);
    CHECK(step.sleep_ms <= 1000); /* full jitter under the base delay */
    kaa_next(&ctx, now, &step);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK(step.host[4] == '2');
    /* boot2 answers with another request's nonce: REPLAYED_REQUEST */
    memcpy(bad, X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN);
    ctx.nonce[0] ^= 1;
    feed(bad, X_RESOLVE_RESPONSE_FRAME_LEN, now);
    CHECK_EQ(event_log[1], KAA_ERR_REPLAYED_REQUEST);
    kaa_next(&ctx, now, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP);
    CHECK(step.sleep_ms <= 2000);
    kaa_next(&ctx, now, &step);
    CHECK(step.host[4] == '1');
    feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, now);
    CHECK_EQ(event_log[2], KAA_OK);
    /* ops-1 does not answer; a plain REVOKED would be forgeable, so it is a failure too */
    kaa_next(&ctx, now + 1, &step);
    CHECK(step.stage == KAA_STAGE_REGISTER && step.host[0] == 'o');
    kaa_exchange_failed(&ctx, KAA_ERR_TIMEOUT, now + 1);
    CHECK_EQ(event_log[3], KAA_ERR_TIMEOUT);
    kaa_next(&ctx, now + 1, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP);
    kaa_next(&ctx, now + 2, &step);
    CHECK(step.stage == KAA_STAGE_REGISTER && step.host[0] == '1'); /* 10.0.0.2 */
    {
        /* a plain REVOKED_ENDPOINT with an OVERLOADED-like retry: not a verdict */
        static const uint8_t plain_revoked[] = {2, 0x7f, 0, 0, 0, 6, 0x16, 0, 0, 0, 0, 0};
        feed(plain_revoked, sizeof plain_revoked, now + 2);
        CHECK_EQ(event_log[4], KAA_ERR_REVOKED_ENDPOINT);
    }
    kaa_next(&ctx, now + 2, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP);
    /* every node failed: resolve again, through the next Bootstrap */
    kaa_next(&ctx, now + 3, &step);
    CHECK(step.stage == KAA_STAGE_RESOLVE && step.host[4] == '2');
    /* an OVERLOADED answer's retry_after is honoured */
    {
        static const uint8_t overloaded[] = {2, 0x7f, 0, 0, 0, 6, 0x21, 0, 0, 0x75, 0x30, 0};
        feed(overloaded, sizeof overloaded, now + 3);
        CHECK_EQ(event_log[5], KAA_ERR_OVERLOADED);
        kaa_next(&ctx, now + 3, &step);
        CHECK_EQ(step.kind, KAA_STEP_SLEEP);
        CHECK_EQ(step.sleep_ms, 30000);
    }
    /* a frame of version 1 and a closed connection are failures like any other */
    kaa_next(&ctx, now + 4, &step);
    {
        static const uint8_t v1[] = {1, 2, 0, 0, 0, 0};
        feed(v1, sizeof v1, now + 4);
        CHECK_EQ(event_log[6], KAA_ERR_UNSUPPORTED_VERSION);
    }
    kaa_next(&ctx, now + 4, &step);
    kaa_next(&ctx, now + 5, &step);
    CHECK_EQ(kaa_rx_commit(&ctx, 0, now + 5), KAA_OK);
    CHECK_EQ(event_log[7], KAA_ERR_TRANSPORT);
    CHECK_EQ(event_count, 8);
}

static void test_unknown_key_hash_and_stale(void)
{
    kaa_step step;
    static const uint8_t unknown[] = {2, 0x7f, 0, 0, 0, 6, 0x17, 0, 0, 0, 0, 0};
    static const uint8_t stale[] = {2, 0x7f, 0, 0, 0, 6, 0x14, 0, 0, 0, 0, 0};
    current = "unknown key hash";
    CHECK_EQ(fresh(1), 0);
    ctx.registered = 1;
    kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, 0);
    kaa_next(&ctx, 0, &step);
    feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, 0);
    kaa_next(&ctx, 120, &step);
    CHECK_EQ(step.request_len, X_RECONNECT_REQUEST_FRAME_LEN); /* the 20-byte id */
    feed(unknown, sizeof unknown, 120);
    /* the same node at once, with the full key */
    kaa_next(&ctx, 120, &step);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK(step.host[0] == 'o');
    CHECK_EQ(step.request_len, X_REGISTER_REQUEST_FRAME_LEN);
    /* STALE_REQUEST: back off, then resolve again */
    feed(stale, sizeof stale, 121);
    kaa_next(&ctx, 121, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP);
    kaa_next(&ctx, 122, &step);
    CHECK_EQ(step.stage, KAA_STAGE_RESOLVE);
    /* an expired resolution is resolved again without a failure */
    feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, 200);
    kaa_next(&ctx, 200 + 300000, &step);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    CHECK_EQ(step.stage, KAA_STAGE_RESOLVE);
    CHECK_EQ(ctx.failures, 1);
}

static void test_give_up(void)
{
    kaa_step step;
    kaa_policy policy;
    int i;
    current = "give up";
    CHECK_EQ(fresh(1), 0);
    kaa_policy_default(&policy);
    policy.max_failures = 3;
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), 0);
    kaa_start(&ctx, NULL, 0, 0);
    for (i = 0; i < 3; i++) {
        kaa_next(&ctx, 0, &step);
        if (step.kind == KAA_STEP_SLEEP) kaa_next(&ctx, 0, &step);
        CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
        kaa_exchange_failed(&ctx, KAA_ERR_TRANSPORT, 0);
    }
    kaa_next(&ctx, 0, &step);
    CHECK_EQ(step.kind, KAA_STEP_FAILED);
    CHECK_EQ(step.err, KAA_ERR_TRANSPORT);
    /* a deadline: the next wait would pass it */
    policy.max_failures = 0;
    policy.deadline_ms = 500;
    policy.base_delay_ms = 1000;
    draw_value = 0xFFFFFFFFu; /* the longest jitter */
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), 0);
    kaa_start(&ctx, NULL, 0, 0);
    kaa_next(&ctx, 0, &step);
    kaa_exchange_failed(&ctx, KAA_ERR_TRANSPORT, 0);
    kaa_next(&ctx, 0, &step);
    CHECK_EQ(step.kind, KAA_STEP_FAILED);
    draw_value = 0;
}

/* The initial hold-off comes first, and the deadline counts from its end. */
static void test_holdoff(void)
{
    kaa_step step;
    kaa_policy policy;
    current = "hold-off";
    fresh(1);
    kaa_policy_default(&policy);
    policy.initial_holdoff_ms = 30000;
    policy.deadline_ms = 5000;
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), 0);
    draw_value = 0x80000000u; /* the middle of the range */
    kaa_start(&ctx, NULL, 0, 0);
    kaa_next(&ctx, 0, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP);
    CHECK_EQ(step.sleep_ms, 15000);
    kaa_next(&ctx, 15000, &step);
    CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
    kaa_exchange_failed(&ctx, KAA_ERR_TRANSPORT, 15000);
    kaa_next(&ctx, 15000, &step);
    CHECK_EQ(step.kind, KAA_STEP_SLEEP); /* 500 ms: within the 5 s from the hold-off's end */
    CHECK_EQ(step.sleep_ms, 500);
    draw_value = 0;
}

static void test_backoff_growth(void)
{
    kaa_step step;
    kaa_policy policy;
    uint32_t expect[] = {1000, 2000, 4000, 8000, 10000, 10000};
    int i;
    current = "backoff";
    fresh(1);
    kaa_policy_default(&policy);
    policy.max_delay_ms = 10000;
    CHECK_EQ(kaa_init(&ctx, &config, &port, &store, &policy), 0);
    draw_value = 0xFFFFFFFFu; /* the top of each full-jitter range */
    kaa_start(&ctx, NULL, 0, 0);
    for (i = 0; i < 6; i++) {
        kaa_next(&ctx, 0, &step);
        CHECK_EQ(step.kind, KAA_STEP_EXCHANGE);
        kaa_exchange_failed(&ctx, KAA_ERR_TRANSPORT, 0);
        kaa_next(&ctx, 0, &step);
        CHECK_EQ(step.kind, KAA_STEP_SLEEP);
        CHECK_EQ(step.sleep_ms, expect[i]);
    }
    draw_value = 0;
}

/* Priority first; weighted random among ties; weight-0 standbys after. */
static void test_order(void)
{
    /* records: (priority, weight, host) */
    static const struct { uint8_t prio; uint16_t weight; char host; } spec[5] = {
        {100, 0, 'a'}, {200, 30, 'b'}, {200, 10, 'c'}, {200, 0, 'd'}, {50, 5, 'e'}};
    unsigned counts[5] = {0}, trial, i;
    current = "order";
    fresh(1);
    ctx.node_count = 5;
    ctx.nodes_len = 0;
    for (i = 0; i < 5; i++) {
        uint8_t *r = ctx.nodes + ctx.nodes_len;
        memset(r, 0, 44);
        r[0] = spec[i].prio;
        r[1] = (uint8_t)(spec[i].weight >> 8);
        r[2] = (uint8_t)spec[i].weight;
        r[9] = 1;
        r[42] = 1;
        r[43] = (uint8_t)spec[i].host;
        ctx.nodes_len = (uint16_t)(ctx.nodes_len + 44);
    }
    port.random = real.random; /* real randomness for the distribution */
    for (trial = 0; trial < 4000; trial++) {
        CHECK_EQ(kaa_order_nodes(&ctx), 0);
        /* b, c (weighted) then d (standby) then a then e */
        CHECK(ctx.order[0] == 1 || ctx.order[0] == 2);
        CHECK(ctx.order[1] == 1 || ctx.order[1] == 2);
        CHECK_EQ(ctx.order[2], 3);
        CHECK_EQ(ctx.order[3], 0);
        CHECK_EQ(ctx.order[4], 4);
        counts[ctx.order[0]]++;
    }
    port.random = fixed_random;
    /* b first with probability 30/40: 3000 of 4000 expected; 6 sigma is about 165 */
    CHECK(counts[1] > 2800 && counts[1] < 3200);
}

static void test_text_checks(void)
{
    static const uint8_t ok[] = {'a', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80};
    static const uint8_t overlong[] = {0xC0, 0xAF};
    static const uint8_t surrogate[] = {0xED, 0xA0, 0x80};
    static const uint8_t cut[] = {0xE2, 0x82};
    static const uint8_t too_big[] = {0xF4, 0x90, 0x80, 0x80};
    current = "utf-8";
    CHECK(kaa_utf8_valid(ok, sizeof ok));
    CHECK(!kaa_utf8_valid(overlong, sizeof overlong));
    CHECK(!kaa_utf8_valid(surrogate, sizeof surrogate));
    CHECK(!kaa_utf8_valid(cut, sizeof cut));
    CHECK(!kaa_utf8_valid(too_big, sizeof too_big));
    CHECK_EQ(kaa_err_from_code(0x99), KAA_ERR_INTERNAL_ERROR);
    CHECK(!strcmp(kaa_err_name(KAA_ERR_BAD_SEAL), "BAD_SEAL"));
}

/* The rotated vector leads to an Ed25519 key, which mbedTLS cannot verify: a failure of
 * that Bootstrap, and nothing learned. */
static void test_rotation_to_ed25519(void)
{
    kaa_step step;
    current = "rotation to Ed25519";
    CHECK_EQ(fresh(1), 0);
    event_count = 0;
    kaa_set_event_handler(&ctx, on_event, NULL);
    kaa_start(&ctx, NULL, 0, 0);
    kaa_next(&ctx, 0, &step);
    feed(X_RESOLVE_RESPONSE_ROTATED_FRAME, X_RESOLVE_RESPONSE_ROTATED_FRAME_LEN, 0);
    CHECK_EQ(event_log[0], KAA_ERR_UNSUPPORTED_ALGORITHM);
    CHECK_EQ(kaa_trusted_generation(&ctx, 0), 1);
    CHECK_EQ(store_mem.saves, 0);
}

/* A sealed answer with one bit flipped does not open: BAD_SEAL, next node. */
static void test_bad_seal(void)
{
    kaa_step step;
    uint8_t bad[256];
    current = "bad seal";
    CHECK_EQ(fresh(1), 0);
    event_count = 0;
    kaa_set_event_handler(&ctx, on_event, NULL);
    kaa_start(&ctx, X_PROFILE, X_PROFILE_LEN, 0);
    kaa_next(&ctx, 0, &step);
    feed(X_RESOLVE_RESPONSE_FRAME, X_RESOLVE_RESPONSE_FRAME_LEN, 0);
    kaa_next(&ctx, 120, &step);
    memcpy(bad, X_REGISTER_RESPONSE_FRAME, X_REGISTER_RESPONSE_FRAME_LEN);
    bad[X_REGISTER_RESPONSE_FRAME_LEN - 1] ^= 0x80;
    feed(bad, X_REGISTER_RESPONSE_FRAME_LEN, 120);
    CHECK_EQ(event_log[1], KAA_ERR_BAD_SEAL);
    CHECK_EQ(kaa_is_registered(&ctx), 0);
    kaa_next(&ctx, 120, &step);
    kaa_next(&ctx, 121, &step);
    CHECK(step.stage == KAA_STAGE_REGISTER && step.host[0] == '1');
}

int main(void)
{
    int err;
    setup_config();
    if (kaa_mbedtls_init(&backend, "kaa-test")) return 2;
    err = kaa_mbedtls_set_key(&backend, (const uint8_t *)ENDPOINT_RSA_PEM, sizeof ENDPOINT_RSA_PEM);
    if (err) {
        fprintf(stderr, "cannot load the endpoint key: %s\n", kaa_err_name(err));
        return 2;
    }
    kaa_mbedtls_port(&backend, &real);
    port = real;
    port.random = fixed_random;
    port.x25519_keypair = fixed_ephemeral;
    if (kaa_mbedtls_init(&backend_p256, "kaa-test-p256") ||
        kaa_mbedtls_set_key(&backend_p256, (const uint8_t *)ENDPOINT_P256_PEM, sizeof ENDPOINT_P256_PEM))
        return 2;
    kaa_mbedtls_port(&backend_p256, &port_p256);
    port_p256.random = fixed_random;
    port_p256.x25519_keypair = fixed_ephemeral;
    test_frames();
    test_messages();
    test_registration_payloads();
    test_resolve_request();
    test_exchange();
    test_exchange_p256();
    test_state();
    test_failover();
    test_unknown_key_hash_and_stale();
    test_give_up();
    test_backoff_growth();
    test_holdoff();
    test_order();
    test_text_checks();
    test_rotation_to_ed25519();
    test_bad_seal();
    kaa_mbedtls_free(&backend);
    kaa_mbedtls_free(&backend_p256);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
