/* kaa-wire C device SDK: the sans-IO core (docs/c-sdk.md).
 *
 * The application drives one registration plan with bytes in, bytes out and the time:
 *
 *     kaa_init(&ctx, &config, &crypto, &store, NULL);
 *     kaa_start(&ctx, profile, profile_len, now_ms());
 *     for (;;) {
 *         kaa_next(&ctx, now_ms(), &step);
 *         if (step.kind == KAA_STEP_EXCHANGE) { connect, send step.request, then
 *             loop: p = kaa_rx_space(&ctx, &room); n = recv(p, room);
 *                   kaa_rx_commit(&ctx, n, now_ms()) until it is not KAA_ERR_NEED_DATA;
 *             on any socket error or timeout: kaa_exchange_failed(&ctx, KAA_ERR_TRANSPORT); }
 *         else if (step.kind == KAA_STEP_SLEEP) sleep(step.sleep_ms);
 *         else break;  (CONNECTED, REVOKED or FAILED)
 *     }
 *
 * No heap: every byte lives in the caller's kaa_context, whose size is fixed at compile
 * time by the KAA_* sizes below (override them with -D). */
#ifndef KAA_H
#define KAA_H

#include "kaa/kaa_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The frame buffer: the largest request or answer this build sends or takes (a first
 * registration with an RSA-2048 key is 645 + profile bytes; docs/c-sdk.md). */
#ifndef KAA_BUFFER_SIZE
#define KAA_BUFFER_SIZE 2048
#endif
/* The raw node records of the resolution in use (43 + host bytes each). */
#ifndef KAA_NODES_SIZE
#define KAA_NODES_SIZE 512
#endif
#ifndef KAA_MAX_NODES
#define KAA_MAX_NODES 8
#endif
/* A Bootstrap key learned from a rotation: DER SPKI, 550 bytes for RSA-4096. */
#ifndef KAA_MAX_TRUST_DER
#define KAA_MAX_TRUST_DER 550
#endif
/* The endpoint's own public key: 294 bytes for RSA-2048, 91 for P-256. */
#ifndef KAA_MAX_ENDPOINT_DER
#define KAA_MAX_ENDPOINT_DER 294
#endif

/* One Bootstrap of the SDK configuration. The generated sdk.h declares the same struct
 * under the same guard (servers/control/export.py): whichever comes first wins, and
 * a generator that adds a member breaks the build instead of drifting silently. */
#ifndef KAA_BOOTSTRAP_SERVER_DECLARED
#define KAA_BOOTSTRAP_SERVER_DECLARED
typedef struct kaa_bootstrap_server {
    const char *host;
    unsigned short port;
    const char *public_key_pem;
    unsigned long key_generation;
    const unsigned char *public_key_der;
    unsigned long public_key_der_size;
    unsigned char signature_algorithm;
} kaa_bootstrap_server_t;
#endif

typedef struct kaa_config {
    const char *application_token;
    const char *sdk_token;
    const kaa_bootstrap_server_t *bootstrap_servers;
    size_t bootstrap_server_count;
    uint32_t max_frame_size;
    int accept_unbound_resolution;
} kaa_config;

/* The configuration from the macros of an exported sdk.h. */
#define KAA_CONFIG_FROM_SDK_H                                                            \
    {                                                                                    \
        KAA_APPLICATION_TOKEN, KAA_SDK_TOKEN, KAA_BOOTSTRAP_SERVERS,                     \
            KAA_BOOTSTRAP_SERVER_COUNT, KAA_MAX_FRAME_SIZE, KAA_ACCEPT_UNBOUND_RESOLUTION \
    }

/* -- ports ----------------------------------------------------------------------------- */

#define KAA_HASH_SHA1 1
#define KAA_HASH_SHA256 2

/* What the device provides for cryptography (port/mbedtls is one backend). Every
 * function returns KAA_OK or a negative kaa_err. Messages come as a list of pieces so
 * that nothing has to be copied together; the backend hashes them in order. */
typedef struct kaa_crypto_port {
    void *self;
    /* Cryptographically secure random bytes (nonces, ephemeral keys, the policy's draws). */
    int (*random)(void *self, uint8_t *out, size_t len);
    /* SHA-1 (20 bytes) or SHA-256 (32 bytes) over the pieces. */
    int (*hash)(void *self, int which, const kaa_bytes *parts, size_t count, uint8_t *out);
    /* A Bootstrap key certified by a rotation: canonical DER SPKI of the type alg names.
     * MALFORMED_FRAME (does not parse, not canonical) or UNSUPPORTED_ALGORITHM. */
    int (*check_key)(void *self, uint8_t alg, const uint8_t *der, size_t der_len);
    /* A Bootstrap signature over the pieces: BAD_SIGNATURE or UNSUPPORTED_ALGORITHM. */
    int (*verify)(void *self, uint8_t alg, const uint8_t *der, size_t der_len,
                  const kaa_bytes *msg, size_t count, const uint8_t *sig, size_t sig_len);
    int (*x25519_keypair)(void *self, uint8_t priv[32], uint8_t pub[32]);
    /* BAD_SEAL when the shared secret is all zero (a low-order peer key). */
    int (*x25519)(void *self, const uint8_t priv[32], const uint8_t peer[32], uint8_t shared[32]);
    int (*hkdf_sha256)(void *self, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                       size_t ikm_len, const uint8_t *info, size_t info_len, uint8_t *out,
                       size_t out_len);
    /* ChaCha20-Poly1305 in place; open returns BAD_SEAL when the tag does not match. */
    int (*aead_seal)(void *self, const uint8_t key[32], const uint8_t nonce[12],
                     const uint8_t *aad, size_t aad_len, uint8_t *data, size_t len,
                     uint8_t tag[16]);
    int (*aead_open)(void *self, const uint8_t key[32], const uint8_t nonce[12],
                     const uint8_t *aad, size_t aad_len, uint8_t *data, size_t len,
                     const uint8_t tag[16]);
    /* The endpoint key: its public DER SPKI and signature algorithm, and a signature
     * (RSA PKCS#1 v1.5 SHA-256, or ECDSA P-256 SHA-256 as r||s, 64 bytes) over the
     * pieces. A secure element implements these two (docs/c-sdk.md). */
    int (*endpoint_key)(void *self, uint8_t *der, size_t cap, size_t *der_len, uint8_t *alg);
    int (*endpoint_sign)(void *self, const kaa_bytes *msg, size_t count, uint8_t *sig,
                         size_t cap, size_t *sig_len);
} kaa_crypto_port;

/* Persistence of one small record (the state; the mbedTLS backend uses a second one for
 * the key). save must be atomic: once it returns KAA_OK a later load returns exactly
 * the pieces written, concatenated; if it fails or the power goes during it, a later load
 * returns exactly the previous record (or NOT_FOUND if there was none), never a mix
 * (docs/c-sdk.md, "Persistence"). */
typedef struct kaa_store_port {
    void *self;
    int (*load)(void *self, uint8_t *buf, size_t cap, size_t *len); /* NOT_FOUND if none */
    int (*save)(void *self, const kaa_bytes *parts, size_t count);
} kaa_store_port;

/* -- policy ---------------------------------------------------------------------------- */

typedef struct kaa_policy {
    uint32_t base_delay_ms;      /* default 1000 */
    uint32_t max_delay_ms;       /* default 300000 */
    uint32_t initial_holdoff_ms; /* default 0: off */
    uint32_t max_failures;       /* default 0: keep trying */
    uint32_t deadline_ms;        /* default 0: none; counted from the first attempt */
    int use_server_hints;        /* default 1: retry_base_ms of the last result raises the base */
} kaa_policy;

void kaa_policy_default(kaa_policy *policy);

/* -- what the plan reports ----------------------------------------------------------- */

enum kaa_stage { KAA_STAGE_RESOLVE = 1, KAA_STAGE_REGISTER = 2 };
enum kaa_event_kind { KAA_EVENT_ATTEMPT = 1, KAA_EVENT_WAITING, KAA_EVENT_KEY_ROTATED };

typedef struct kaa_event {
    int kind;
    int stage;
    const char *host;
    size_t host_len;
    uint16_t port;
    int err;        /* ATTEMPT: KAA_OK or why it failed */
    int sealed;     /* ATTEMPT: the error came sealed (authentic) */
    int reconnect;  /* ATTEMPT: a registration by key hash */
    uint32_t delay_ms;   /* WAITING */
    uint32_t generation; /* KEY_ROTATED */
} kaa_event;

typedef void (*kaa_event_fn)(void *user, const kaa_event *event);

enum kaa_step_kind {
    KAA_STEP_EXCHANGE = 1, /* connect to host:port, send request, feed the answer */
    KAA_STEP_SLEEP,        /* wait sleep_ms, then call kaa_next */
    KAA_STEP_CONNECTED,    /* done: registered; result is valid until the next kaa_ call */
    KAA_STEP_REVOKED,      /* done: a sealed REVOKED_ENDPOINT; message as sent */
    KAA_STEP_FAILED        /* done: gave up (err says why) */
};

typedef struct kaa_step {
    int kind;
    int stage;
    const char *host; /* not NUL-terminated */
    size_t host_len;
    uint16_t port;
    const uint8_t *request;
    size_t request_len;
    uint32_t sleep_ms;
    kaa_result result;
    kaa_bytes message;
    int err;
} kaa_step;

/* -- the context ----------------------------------------------------------------------- */

typedef struct kaa_trust {
    uint32_t generation; /* 0: nothing learned */
    uint8_t alg;
    uint8_t anchor_sha256[32];
    uint16_t der_len;
    uint8_t der[KAA_MAX_TRUST_DER];
} kaa_trust;

/* Every member is private to the SDK; it is declared here only so that its size is a
 * compile-time constant for the caller. */
typedef struct kaa_context {
    const kaa_config *config;
    const kaa_crypto_port *crypto;
    const kaa_store_port *store;
    kaa_policy policy;
    kaa_event_fn on_event;
    void *event_user;
    /* persisted state */
    uint8_t registered;
    uint64_t last_timestamp_ms;
    uint32_t retry_base_ms;
    kaa_trust trust;
    /* the endpoint */
    uint8_t endpoint_alg;
    uint16_t endpoint_der_len;
    uint8_t endpoint_der[KAA_MAX_ENDPOINT_DER];
    uint8_t endpoint_id[KAA_KEY_HASH_SIZE];
    /* the plan */
    const uint8_t *profile;
    size_t profile_len;
    uint8_t phase;
    uint8_t reconnect;
    uint8_t next_bootstrap;
    uint8_t have_deadline;
    uint32_t failures;
    uint32_t base_delay_ms;
    uint32_t pending_sleep_ms;
    uint64_t deadline_at_ms;
    uint64_t last_sent_ms;
    int outcome_err;
    /* the resolution in use */
    uint8_t resolved;
    uint64_t server_time_ms;
    uint64_t received_at_ms;
    uint32_t valid_for_s;
    uint8_t node_count;
    uint8_t node_pos;
    uint8_t order[KAA_MAX_NODES];
    uint16_t node_offset[KAA_MAX_NODES];
    uint16_t nodes_len;
    uint8_t nodes[KAA_NODES_SIZE];
    /* the exchange in flight */
    uint8_t stage;
    const char *host;
    size_t host_len;
    uint16_t port;
    uint8_t nonce[KAA_NONCE_SIZE];
    uint8_t bootstrap_index;
    uint8_t response_secret[32];
    uint64_t timestamp_ms;
    size_t rx_len;
    size_t rx_need;
    uint8_t rx_type;
    uint8_t rx_flags;
    uint8_t buf[KAA_BUFFER_SIZE];
} kaa_context;

/* Loads the state (a missing one is a fresh device) and the endpoint key.
 * KAA_ERR_CORRUPT_STATE: the stored state does not read back intact (an operator must
 * look: the device never silently forgets a Bootstrap key rotation). policy may be NULL. */
int kaa_init(kaa_context *ctx, const kaa_config *config, const kaa_crypto_port *crypto,
             const kaa_store_port *store, const kaa_policy *policy);
void kaa_set_event_handler(kaa_context *ctx, kaa_event_fn fn, void *user);

/* Starts a registration plan; profile must stay valid until it ends. */
int kaa_start(kaa_context *ctx, const uint8_t *profile, size_t profile_len, uint64_t now_ms);
/* The next thing to do (see the header comment). */
int kaa_next(kaa_context *ctx, uint64_t now_ms, kaa_step *step);
/* Where to receive the answer of the exchange in flight, and how many bytes at most. */
uint8_t *kaa_rx_space(kaa_context *ctx, size_t *room);
/* n bytes arrived (0: the peer closed). KAA_ERR_NEED_DATA, or KAA_OK: exchange over. */
int kaa_rx_commit(kaa_context *ctx, size_t n, uint64_t now_ms);
/* The exchange in flight failed in the transport (connect, send, timeout, reset). */
int kaa_exchange_failed(kaa_context *ctx, int err, uint64_t now_ms);

const uint8_t *kaa_endpoint_id(const kaa_context *ctx);
int kaa_is_registered(const kaa_context *ctx);
/* The Bootstrap key generation the device trusts for Bootstrap i. */
uint32_t kaa_trusted_generation(kaa_context *ctx, size_t i);

#ifdef __cplusplus
}
#endif
#endif /* KAA_H */
