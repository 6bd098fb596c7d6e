/* kaa-wire protocol version 2: frames and message bodies (docs/protocol.md).
 *
 * Pure byte code: no crypto, no I/O, no heap. Every parser takes server bytes, checks
 * them as strictly as the Python decoders do (exact consumption, ranges, printable
 * hosts, UTF-8 text) and returns views that point into the caller's buffer. These are
 * the functions the fuzz targets in fuzz/ run. */
#ifndef KAA_WIRE_H
#define KAA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KAA_PROTOCOL_VERSION 2u
#define KAA_HEADER_SIZE 6u
#define KAA_NONCE_SIZE 16u
#define KAA_X25519_SIZE 32u
#define KAA_KEY_HASH_SIZE 20u
#define KAA_AEAD_TAG_SIZE 16u
#define KAA_RESPONSE_NONCE_SIZE 32u
#define KAA_SEALED_ERROR_MESSAGE_SIZE 48u
#define KAA_MAX_TOKEN_SIZE 64u
#define KAA_MAX_HOST_SIZE 255u
#define KAA_MAX_ROTATION_CHAIN 16u
#define KAA_NODE_FIXED_SIZE 43u
#define KAA_DEFAULT_MAX_FRAME_SIZE 65536u
#define KAA_ABSOLUTE_MAX_FRAME_SIZE 16777221u
#define KAA_TRANSPORT_TCP 1u
#define KAA_KEX_X25519 1u
#define KAA_AEAD_CHACHA20_POLY1305 1u

enum kaa_msg_type {
    KAA_MSG_RESOLVE_REQUEST = 0x01,
    KAA_MSG_RESOLVE_RESPONSE = 0x02,
    KAA_MSG_REGISTER_REQUEST = 0x03,
    KAA_MSG_REGISTER_RESPONSE = 0x04,
    KAA_MSG_ERROR = 0x7F
};
#define KAA_FLAG_SEALED 0x01u

enum kaa_sig_alg {
    KAA_SIG_RSA_PKCS1_SHA256 = 1,
    KAA_SIG_ED25519 = 2,
    KAA_SIG_ECDSA_P256_SHA256 = 3
};

enum kaa_registration_status { KAA_STATUS_NEW = 1, KAA_STATUS_EXISTING = 2, KAA_STATUS_PROFILE_UPDATED = 3 };

/* Result codes: 0 is success, negative values are failures. Those in 1..0x22 range
 * mirror the protocol's error codes (docs/protocol.md section 7), negated. */
enum kaa_err {
    KAA_OK = 0,
    KAA_ERR_MALFORMED_FRAME = -0x01,
    KAA_ERR_UNSUPPORTED_VERSION = -0x02,
    KAA_ERR_UNSUPPORTED_ALGORITHM = -0x03,
    KAA_ERR_UNKNOWN_MESSAGE_TYPE = -0x04,
    KAA_ERR_FRAME_TOO_LARGE = -0x05,
    KAA_ERR_UNEXPECTED_MESSAGE = -0x06,
    KAA_ERR_UNKNOWN_APPLICATION = -0x10,
    KAA_ERR_UNKNOWN_SDK_TOKEN = -0x11,
    KAA_ERR_BAD_SIGNATURE = -0x12,
    KAA_ERR_BAD_SEAL = -0x13,
    KAA_ERR_STALE_REQUEST = -0x14,
    KAA_ERR_REPLAYED_REQUEST = -0x15,
    KAA_ERR_REVOKED_ENDPOINT = -0x16,
    KAA_ERR_UNKNOWN_KEY_HASH = -0x17,
    KAA_ERR_TIMEOUT = -0x20,
    KAA_ERR_OVERLOADED = -0x21,
    KAA_ERR_INTERNAL_ERROR = -0x22,
    /* local failures */
    KAA_ERR_NEED_DATA = -0x100,   /* not an error: feed more bytes */
    KAA_ERR_NO_ROOM = -0x101,     /* a buffer of this build is too small */
    KAA_ERR_TRANSPORT = -0x102,   /* connect/send/receive failed, or the peer closed early */
    KAA_ERR_CRYPTO = -0x103,      /* the crypto port failed */
    KAA_ERR_STORAGE = -0x104,     /* the persistence port failed */
    KAA_ERR_CORRUPT_STATE = -0x105, /* stored state does not read back intact */
    KAA_ERR_NOT_FOUND = -0x106,   /* persistence: nothing stored yet */
    KAA_ERR_INVALID_ARGUMENT = -0x107,
    KAA_ERR_NO_OPERATIONS = -0x108, /* a verified answer listed no Operations service */
    KAA_ERR_WRONG_ENDPOINT = -0x109, /* a result that names another endpoint */
    KAA_ERR_BAD_STATE = -0x10A      /* API called out of order */
};

/* The name of a result code ("MALFORMED_FRAME", ...), for logs. */
const char *kaa_err_name(int err);
/* A received error code (1..255) as a kaa_err; unknown codes are INTERNAL_ERROR. */
int kaa_err_from_code(uint8_t code);

/* A read-only view into a buffer. */
typedef struct kaa_bytes {
    const uint8_t *data;
    size_t len;
} kaa_bytes;

/* -- framing ------------------------------------------------------------------------- */

/* Checks a 6-byte header in the order of docs/protocol.md section 3. */
int kaa_frame_header(const uint8_t header[6], uint32_t max_frame_size, uint8_t *msg_type,
                     uint8_t *flags, uint32_t *body_len);
/* Writes a header; KAA_ERR_FRAME_TOO_LARGE if the body does not fit max_frame_size. */
int kaa_frame_header_write(uint8_t header[6], uint8_t msg_type, uint8_t flags,
                           size_t body_len, uint32_t max_frame_size);

/* -- RESOLVE_REQUEST (built by the endpoint) ----------------------------------------- */

/* Builds the whole frame into out; *out_len is its size. */
int kaa_resolve_request_build(uint8_t *out, size_t cap, size_t *out_len,
                              const uint8_t nonce[16], uint32_t key_generation,
                              const char *app_token, uint32_t max_frame_size);

/* -- RESOLVE_RESPONSE ---------------------------------------------------------------- */

typedef struct kaa_node {
    uint8_t priority;
    uint16_t weight;
    uint32_t access_point_id;
    uint16_t port;
    uint8_t kex_algorithm;
    const uint8_t *kex_public_key; /* 32 bytes */
    const char *host;              /* not NUL-terminated */
    uint8_t host_len;
} kaa_node;

typedef struct kaa_rotation {
    uint32_t generation;
    uint8_t signature_algorithm;
    kaa_bytes public_key;
    kaa_bytes signature;
    kaa_bytes signed_part; /* generation .. end of public_key */
} kaa_rotation;

typedef struct kaa_resolve_response {
    const uint8_t *nonce;
    uint64_t server_time_ms;
    uint32_t valid_for_s;
    uint32_t key_generation;
    uint8_t signature_algorithm;
    uint8_t node_count;
    kaa_bytes nodes;     /* the raw node records, node_count of them */
    uint8_t rotation_count;
    kaa_bytes rotations; /* the raw certificates */
    kaa_bytes signed_part; /* body[0 : end of rotations] */
    kaa_bytes signature;
} kaa_resolve_response;

/* Parses a RESOLVE_RESPONSE body exactly (no signature check: see kaa.c). */
int kaa_resolve_response_parse(const uint8_t *body, size_t len, kaa_resolve_response *out);
/* Iterates raw node records checked by the parse: *offset starts at 0. */
int kaa_node_next(kaa_bytes nodes, size_t *offset, kaa_node *out);
/* Iterates raw rotation certificates checked by the parse: *offset starts at 0. */
int kaa_rotation_next(kaa_bytes rotations, size_t *offset, kaa_rotation *out);

/* -- ERROR --------------------------------------------------------------------------- */

typedef struct kaa_error_body {
    uint8_t code;
    uint32_t retry_after_ms;
    kaa_bytes message; /* UTF-8, checked */
} kaa_error_body;

int kaa_error_parse(const uint8_t *body, size_t len, kaa_error_body *out);

/* -- REGISTER_REQUEST (built by the endpoint, kaa.c seals it) --------------------------- */

/* The signed part of the payload (docs/protocol.md 5.3): flags .. end of profile. */
int kaa_register_payload_head(uint8_t *out, size_t cap, size_t *out_len, int key_is_hash,
                              uint8_t signature_algorithm, uint64_t timestamp_ms,
                              const char *sdk_token, const uint8_t *key, size_t key_len,
                              const uint8_t *profile, size_t profile_len);

/* -- REGISTER_RESPONSE result (after opening) ------------------------------------------ */

typedef struct kaa_result {
    uint8_t status;
    const uint8_t *endpoint_id; /* 20 bytes */
    uint64_t server_time_ms;
    uint32_t config_version;
    kaa_bytes config;
    uint16_t topic_count;
    kaa_bytes topics; /* raw: per topic u32 id, bytes8 UTF-8 name */
    uint32_t reconnect_after_s;
    uint32_t retry_base_ms;
} kaa_result;

int kaa_result_parse(const uint8_t *plain, size_t len, kaa_result *out);

typedef struct kaa_topic {
    uint32_t topic_id;
    const char *name; /* UTF-8, not NUL-terminated */
    uint8_t name_len;
} kaa_topic;
int kaa_topic_next(kaa_bytes topics, size_t *offset, kaa_topic *out);

/* -- helpers ------------------------------------------------------------------------- */

int kaa_utf8_valid(const uint8_t *s, size_t len);
int kaa_token_valid(const char *token, size_t *len_out);

#ifdef __cplusplus
}
#endif
#endif /* KAA_WIRE_H */
