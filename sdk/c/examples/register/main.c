/* register: a POSIX device registering with kaa-wire, built on the exported sdk.h.
 *
 *   ./register --state DIR [--key-type rsa-2048|p256] [--profile TEXT]
 *              [--max-failures N] [--deadline-ms N] [--base-delay-ms N]
 *              [--max-delay-ms N] [--timeout-ms N]
 *
 * The key (key.der, 0600) and the state (state.bin, 0600) live in DIR; both are
 * replaced atomically. One JSON object on stdout; one line per attempt on stderr.
 * Exit codes, as python -m client register's: 0 registered, 1 gave up, 2 usage or cannot
 * start (no key, unreadable or corrupt state), 3 revoked (sealed). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kaa/kaa.h"
#include "kaa_mbedtls.h"
#include "kaa_posix.h"

#include KAA_SDK_H /* the exported configuration: make SDK_H=path/to/sdk.h */

static const kaa_config config = KAA_CONFIG_FROM_SDK_H;

static void print_json_string(const uint8_t *s, size_t n)
{
    size_t i;
    putchar('"');
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') printf("\\%c", s[i]);
        else if (s[i] < 0x20) printf("\\u%04x", s[i]);
        else putchar(s[i]);
    }
    putchar('"');
}

static void print_hex(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) printf("%02x", p[i]);
}

static void on_event(void *user, const kaa_event *e)
{
    (void)user;
    if (e->kind == KAA_EVENT_ATTEMPT) {
        fprintf(stderr, "%s %.*s:%u: %s%s%s\n", e->stage == KAA_STAGE_RESOLVE ? "resolve" : "register",
                (int)e->host_len, e->host, e->port, e->err ? kaa_err_name(e->err) : "ok",
                e->sealed && e->err ? " (sealed)" : "",
                e->reconnect ? " [key hash]" : "");
    } else if (e->kind == KAA_EVENT_WAITING) {
        fprintf(stderr, "waiting %u ms\n", (unsigned)e->delay_ms);
    } else if (e->kind == KAA_EVENT_KEY_ROTATED) {
        fprintf(stderr, "bootstrap key rotated to generation %u via %.*s:%u\n",
                (unsigned)e->generation, (int)e->host_len, e->host, e->port);
    }
    fflush(stderr);
}

static int usage(void)
{
    fputs("usage: register --state DIR [--key-type rsa-2048|p256] [--profile TEXT] "
          "[--max-failures N] [--deadline-ms N] [--base-delay-ms N] [--max-delay-ms N] "
          "[--timeout-ms N]\n", stderr);
    return 2;
}

static int number(const char *text, uint32_t *out)
{
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno || *end || !*text || v > 0xFFFFFFFFul) return 0;
    *out = (uint32_t)v;
    return 1;
}

static const char *STATUS[] = {"", "new", "existing", "profile_updated"};

/* Counts every call into the crypto port (printed as "crypto" in the JSON): the figures of
 * docs/c-sdk.md, "Cost on a device", are measured with it. */
static kaa_crypto_port inner;
static struct {
    unsigned random, sha1, sha256, check_key, verify, x25519_keypair, x25519, hkdf, seal, open,
        endpoint_key, sign;
} calls;

static int c_random(void *s, uint8_t *o, size_t n) { calls.random++; return inner.random(s, o, n); }
static int c_hash(void *s, int w, const kaa_bytes *p, size_t n, uint8_t *o)
{
    if (w == KAA_HASH_SHA1) calls.sha1++; else calls.sha256++;
    return inner.hash(s, w, p, n, o);
}
static int c_check_key(void *s, uint8_t a, const uint8_t *d, size_t n)
{
    calls.check_key++;
    return inner.check_key(s, a, d, n);
}
static int c_verify(void *s, uint8_t a, const uint8_t *d, size_t dn, const kaa_bytes *m, size_t mn,
                    const uint8_t *sig, size_t sn)
{
    calls.verify++;
    return inner.verify(s, a, d, dn, m, mn, sig, sn);
}
static int c_keypair(void *s, uint8_t priv[32], uint8_t pub[32])
{
    calls.x25519_keypair++;
    return inner.x25519_keypair(s, priv, pub);
}
static int c_x25519(void *s, const uint8_t priv[32], const uint8_t peer[32], uint8_t out[32])
{
    calls.x25519++;
    return inner.x25519(s, priv, peer, out);
}
static int c_hkdf(void *s, const uint8_t *salt, size_t sn, const uint8_t *ikm, size_t in,
                  const uint8_t *info, size_t fn, uint8_t *out, size_t on)
{
    calls.hkdf++;
    return inner.hkdf_sha256(s, salt, sn, ikm, in, info, fn, out, on);
}
static int c_seal(void *s, const uint8_t k[32], const uint8_t nonce[12], const uint8_t *aad,
                  size_t an, uint8_t *d, size_t n, uint8_t tag[16])
{
    calls.seal++;
    return inner.aead_seal(s, k, nonce, aad, an, d, n, tag);
}
static int c_open(void *s, const uint8_t k[32], const uint8_t nonce[12], const uint8_t *aad,
                  size_t an, uint8_t *d, size_t n, const uint8_t tag[16])
{
    calls.open++;
    return inner.aead_open(s, k, nonce, aad, an, d, n, tag);
}
static int c_endpoint_key(void *s, uint8_t *der, size_t cap, size_t *n, uint8_t *alg)
{
    calls.endpoint_key++;
    return inner.endpoint_key(s, der, cap, n, alg);
}
static int c_sign(void *s, const kaa_bytes *m, size_t mn, uint8_t *sig, size_t cap, size_t *n)
{
    calls.sign++;
    return inner.endpoint_sign(s, m, mn, sig, cap, n);
}

static void counting_port(const kaa_crypto_port *real, kaa_crypto_port *port)
{
    inner = *real;
    *port = *real;
    port->random = c_random;
    port->hash = c_hash;
    port->check_key = c_check_key;
    port->verify = c_verify;
    port->x25519_keypair = c_keypair;
    port->x25519 = c_x25519;
    port->hkdf_sha256 = c_hkdf;
    port->aead_seal = c_seal;
    port->aead_open = c_open;
    port->endpoint_key = c_endpoint_key;
    port->endpoint_sign = c_sign;
}

static void print_calls(int key_created)
{
    printf("\"crypto\": {\"key_generation\": %d, \"verify\": %u, \"check_key\": %u, "
           "\"x25519_keypair\": %u, \"x25519\": %u, \"sign\": %u, \"hkdf\": %u, "
           "\"aead_seal\": %u, \"aead_open\": %u, \"sha256\": %u, \"sha1\": %u, "
           "\"random\": %u}, ",
           key_created, calls.verify, calls.check_key, calls.x25519_keypair, calls.x25519,
           calls.sign, calls.hkdf, calls.seal, calls.open, calls.sha256, calls.sha1, calls.random);
}

int main(int argc, char **argv)
{
    static kaa_context ctx; /* everything the SDK needs: sizeof(kaa_context) bytes */
    static kaa_mbedtls crypto_backend;
    kaa_crypto_port crypto, mbedtls_port;
    kaa_store_port key_store, state_store;
    kaa_posix_file key_file, state_file;
    kaa_policy policy;
    kaa_step final;
    const char *state_dir = NULL, *profile = "";
    int key_type = KAA_KEY_RSA_2048, created = 0, i, err = KAA_ERR_CRYPTO;
    uint32_t timeout_ms = 10000;

    kaa_policy_default(&policy);
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value) return usage();
        if (!strcmp(arg, "--state")) state_dir = value;
        else if (!strcmp(arg, "--profile")) profile = value;
        else if (!strcmp(arg, "--key-type")) {
            if (!strcmp(value, "rsa-2048")) key_type = KAA_KEY_RSA_2048;
            else if (!strcmp(value, "p256")) key_type = KAA_KEY_P256;
            else return usage();
        } else if (!strcmp(arg, "--max-failures")) { if (!number(value, &policy.max_failures)) return usage(); }
        else if (!strcmp(arg, "--deadline-ms")) { if (!number(value, &policy.deadline_ms)) return usage(); }
        else if (!strcmp(arg, "--base-delay-ms")) { if (!number(value, &policy.base_delay_ms)) return usage(); }
        else if (!strcmp(arg, "--max-delay-ms")) { if (!number(value, &policy.max_delay_ms)) return usage(); }
        else if (!strcmp(arg, "--timeout-ms")) { if (!number(value, &timeout_ms) || !timeout_ms) return usage(); }
        else return usage();
        i++;
    }
    if (!state_dir) return usage();
    if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", state_dir, strerror(errno));
        return 2;
    }
    kaa_posix_file_init(&key_file, state_dir, "key.der", &key_store);
    kaa_posix_file_init(&state_file, state_dir, "state.bin", &state_store);
    if (kaa_mbedtls_init(&crypto_backend, "kaa-register") ||
        (err = kaa_mbedtls_load_or_create_key(&crypto_backend, &key_store, key_type, &created))) {
        fprintf(stderr, "error: endpoint key: %s\n", kaa_err_name(err));
        return 2;
    }
    kaa_mbedtls_port(&crypto_backend, &mbedtls_port);
    counting_port(&mbedtls_port, &crypto);
    err = kaa_init(&ctx, &config, &crypto, &state_store, &policy);
    if (err) {
        fprintf(stderr, "error: cannot start: %s\n", kaa_err_name(err));
        return 2;
    }
    kaa_set_event_handler(&ctx, on_event, NULL);
    err = kaa_start(&ctx, (const uint8_t *)profile, strlen(profile), kaa_posix_now_ms());
    if (!err) err = kaa_posix_run(&ctx, timeout_ms, &final);
    if (err) {
        fprintf(stderr, "error: %s\n", kaa_err_name(err));
        return 2;
    }
    printf("{\"endpoint_id\": \"");
    print_hex(kaa_endpoint_id(&ctx), KAA_KEY_HASH_SIZE);
    printf("\", \"key_created\": %s, ", created ? "true" : "false");
    print_calls(created);
    if (final.kind == KAA_STEP_CONNECTED) {
        size_t off = 0;
        kaa_topic topic;
        printf("\"status\": \"%s\", \"registered\": true, \"operations_server\": ",
               STATUS[final.result.status]);
        print_json_string((const uint8_t *)final.host, final.host_len);
        printf(", \"port\": %u, \"config_version\": %lu, \"config\": ", final.port,
               (unsigned long)final.result.config_version);
        print_json_string(final.result.config.data, final.result.config.len);
        printf(", \"topics\": [");
        for (i = 0; i < final.result.topic_count && !kaa_topic_next(final.result.topics, &off, &topic); i++) {
            printf("%s{\"topic_id\": %lu, \"name\": ", i ? ", " : "", (unsigned long)topic.topic_id);
            print_json_string((const uint8_t *)topic.name, topic.name_len);
            putchar('}');
        }
        printf("], \"reconnect_after_s\": %lu}\n", (unsigned long)final.result.reconnect_after_s);
        return 0;
    }
    if (final.kind == KAA_STEP_REVOKED) {
        printf("\"status\": \"revoked\", \"registered\": false, \"message\": ");
        print_json_string(final.message.data, final.message.len);
        printf("}\n");
        return 3;
    }
    printf("\"status\": \"failed\", \"registered\": false, \"reason\": \"%s\"}\n", kaa_err_name(final.err));
    return 1;
}
