/* libFuzzer: server bytes into the whole core, as the answer to a resolution (checked with
 * the real mbedTLS port: parse, rotation chain, RSA verification) or to a registration
 * (error frames, sealed answers opened with a fixed response secret). The input's first
 * byte chooses; the rest is fed in pieces of up to 64 bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kaa/kaa.h"
#include "kaa_internal.h"
#include "kaa_mbedtls.h"
#include "vectors.h"

static kaa_mbedtls backend;
static kaa_crypto_port port;
static kaa_bootstrap_server_t server;
static kaa_config config;
static kaa_context ctx;
static int ready;

static int no_load(void *self, uint8_t *buf, size_t cap, size_t *len)
{
    (void)self; (void)buf; (void)cap; (void)len;
    return KAA_ERR_NOT_FOUND;
}
static int no_save(void *self, const kaa_bytes *parts, size_t count)
{
    (void)self; (void)parts; (void)count;
    return KAA_OK;
}
static kaa_store_port store = {NULL, no_load, no_save};

static void setup(void)
{
    server.host = "boot.example.net";
    server.port = 9888;
    server.public_key_pem = "";
    server.key_generation = 1;
    server.public_key_der = X_BOOTSTRAP_PUBLIC_KEY;
    server.public_key_der_size = X_BOOTSTRAP_PUBLIC_KEY_LEN;
    server.signature_algorithm = KAA_SIG_RSA_PKCS1_SHA256;
    config.application_token = X_APP_TOKEN;
    config.sdk_token = X_SDK_TOKEN;
    config.bootstrap_servers = &server;
    config.bootstrap_server_count = 1;
    config.max_frame_size = KAA_DEFAULT_MAX_FRAME_SIZE;
    if (kaa_mbedtls_init(&backend, "kaa-fuzz") ||
        kaa_mbedtls_set_key(&backend, (const uint8_t *)ENDPOINT_RSA_PEM, sizeof ENDPOINT_RSA_PEM))
        __builtin_trap();
    kaa_mbedtls_port(&backend, &port);
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kaa_step step;
    size_t off = 1;
    int rc = KAA_ERR_NEED_DATA;
    if (!ready) setup();
    if (size < 1) return 0;
    if (kaa_init(&ctx, &config, &port, &store, NULL)) __builtin_trap();
    kaa_start(&ctx, NULL, 0, 0);
    if (data[0] & 1) {
        /* a registration in flight to the vector's node, with its response secret */
        static const uint8_t secret[32] = {
            0x09, 0x64, 0xda, 0x7b, 0x3c, 0x73, 0x6d, 0x91, 0xc9, 0xf6, 0xbd, 0x75, 0x0a, 0x0f, 0x1e, 0x5a,
            0x58, 0x75, 0xf0, 0x06, 0x71, 0x2a, 0x3c, 0x0a, 0xbd, 0xc4, 0x3e, 0x6d, 0x90, 0x79, 0x2d, 0xc3};
        memcpy(ctx.response_secret, secret, 32);
        ctx.registered = (data[0] >> 1) & 1;
        ctx.reconnect = ctx.registered;
        kaa_await_answer(&ctx, KAA_STAGE_REGISTER);
    } else if (kaa_next(&ctx, 0, &step) || step.kind != KAA_STEP_EXCHANGE) {
        __builtin_trap();
    }
    while (rc == KAA_ERR_NEED_DATA) {
        size_t room, n;
        uint8_t *p = kaa_rx_space(&ctx, &room);
        if (!p) __builtin_trap();
        n = size - off < room ? size - off : room;
        if (n > 64) n = 64;
        memcpy(p, data + off, n);
        off += n;
        rc = kaa_rx_commit(&ctx, n, 0);
    }
    if (rc != KAA_OK) __builtin_trap();
    /* whatever came, the plan goes on or ends: never a crash, never a bad state */
    if (kaa_next(&ctx, 1, &step) != KAA_OK) __builtin_trap();
    return 0;
}
