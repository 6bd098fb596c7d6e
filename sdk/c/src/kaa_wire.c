/* kaa-wire frames and message bodies: docs/protocol.md sections 3, 4, 5, 7. */
#include "kaa/kaa_wire.h"

#include <string.h>

/* A bounds-checked reader: every take fails once the input ran out, and the parse
 * functions end with kaa_rd_done, so "consumed exactly" is one check. */
typedef struct rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
    int bad;
} rd;

static const uint8_t *take(rd *r, size_t n)
{
    const uint8_t *at;
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return NULL;
    }
    at = r->p + r->pos;
    r->pos += n;
    return at;
}

static uint32_t be(const uint8_t *p, unsigned n)
{
    uint32_t v = 0;
    unsigned i;
    for (i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static uint8_t u8(rd *r) { const uint8_t *p = take(r, 1); return p ? p[0] : 0; }
static uint16_t u16(rd *r) { const uint8_t *p = take(r, 2); return p ? (uint16_t)be(p, 2) : 0; }
static uint32_t u32(rd *r) { const uint8_t *p = take(r, 4); return p ? be(p, 4) : 0; }
static uint64_t u64(rd *r)
{
    const uint8_t *p = take(r, 8);
    return p ? ((uint64_t)be(p, 4) << 32) | be(p + 4, 4) : 0;
}
static kaa_bytes lenpre(rd *r, unsigned prefix)
{
    kaa_bytes b = {NULL, 0};
    uint32_t n = prefix == 1 ? u8(r) : prefix == 2 ? u16(r) : u32(r);
    if (r->bad) return b;
    b.data = take(r, n);
    b.len = b.data ? n : 0;
    return b;
}
static int done(const rd *r) { return !r->bad && r->pos == r->len ? KAA_OK : KAA_ERR_MALFORMED_FRAME; }

static void put(uint8_t *p, uint64_t v, unsigned n)
{
    while (n--) {
        p[n] = (uint8_t)v;
        v >>= 8;
    }
}

static int printable(const uint8_t *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7E) return 0;
    return 1;
}

int kaa_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1Fu; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0Fu; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07u; min = 0x10000; }
        else return 0;
        if (n > len - i - 1) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        /* overlong forms, surrogates and code points past U+10FFFF are not UTF-8 */
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n + 1;
    }
    return 1;
}

int kaa_token_valid(const char *token, size_t *len_out)
{
    size_t n = 0;
    if (token == NULL) return 0;
    while (n <= KAA_MAX_TOKEN_SIZE && token[n] != '\0') n++;
    if (n < 1 || n > KAA_MAX_TOKEN_SIZE || !printable((const uint8_t *)token, n)) return 0;
    if (len_out) *len_out = n;
    return 1;
}

const char *kaa_err_name(int err)
{
    switch (err) {
    case KAA_OK: return "OK";
    case KAA_ERR_MALFORMED_FRAME: return "MALFORMED_FRAME";
    case KAA_ERR_UNSUPPORTED_VERSION: return "UNSUPPORTED_VERSION";
    case KAA_ERR_UNSUPPORTED_ALGORITHM: return "UNSUPPORTED_ALGORITHM";
    case KAA_ERR_UNKNOWN_MESSAGE_TYPE: return "UNKNOWN_MESSAGE_TYPE";
    case KAA_ERR_FRAME_TOO_LARGE: return "FRAME_TOO_LARGE";
    case KAA_ERR_UNEXPECTED_MESSAGE: return "UNEXPECTED_MESSAGE";
    case KAA_ERR_UNKNOWN_APPLICATION: return "UNKNOWN_APPLICATION";
    case KAA_ERR_UNKNOWN_SDK_TOKEN: return "UNKNOWN_SDK_TOKEN";
    case KAA_ERR_BAD_SIGNATURE: return "BAD_SIGNATURE";
    case KAA_ERR_BAD_SEAL: return "BAD_SEAL";
    case KAA_ERR_STALE_REQUEST: return "STALE_REQUEST";
    case KAA_ERR_REPLAYED_REQUEST: return "REPLAYED_REQUEST";
    case KAA_ERR_REVOKED_ENDPOINT: return "REVOKED_ENDPOINT";
    case KAA_ERR_UNKNOWN_KEY_HASH: return "UNKNOWN_KEY_HASH";
    case KAA_ERR_TIMEOUT: return "TIMEOUT";
    case KAA_ERR_OVERLOADED: return "OVERLOADED";
    case KAA_ERR_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case KAA_ERR_NEED_DATA: return "NEED_DATA";
    case KAA_ERR_NO_ROOM: return "NO_ROOM";
    case KAA_ERR_TRANSPORT: return "TRANSPORT";
    case KAA_ERR_CRYPTO: return "CRYPTO";
    case KAA_ERR_STORAGE: return "STORAGE";
    case KAA_ERR_CORRUPT_STATE: return "CORRUPT_STATE";
    case KAA_ERR_NOT_FOUND: return "NOT_FOUND";
    case KAA_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KAA_ERR_NO_OPERATIONS: return "NO_OPERATIONS";
    case KAA_ERR_WRONG_ENDPOINT: return "WRONG_ENDPOINT";
    case KAA_ERR_BAD_STATE: return "BAD_STATE";
    default: return "UNKNOWN";
    }
}

int kaa_err_from_code(uint8_t code)
{
    switch (code) {
    case 0x01: case 0x02: case 0x03: case 0x04: case 0x05: case 0x06:
    case 0x10: case 0x11: case 0x12: case 0x13: case 0x14: case 0x15: case 0x16: case 0x17:
    case 0x20: case 0x21: case 0x22:
        return -(int)code;
    default:
        return KAA_ERR_INTERNAL_ERROR; /* section 11: an unknown code means INTERNAL_ERROR */
    }
}

/* -- framing -------------------------------------------------------------------------- */

static int known_type(uint8_t t)
{
    return t == KAA_MSG_RESOLVE_REQUEST || t == KAA_MSG_RESOLVE_RESPONSE ||
           t == KAA_MSG_REGISTER_REQUEST || t == KAA_MSG_REGISTER_RESPONSE || t == KAA_MSG_ERROR;
}

int kaa_frame_header(const uint8_t header[6], uint32_t max_frame_size, uint8_t *msg_type,
                     uint8_t *flags, uint32_t *body_len)
{
    uint8_t allowed;
    uint32_t len = be(header + 3, 3);
    if (header[0] != KAA_PROTOCOL_VERSION) return KAA_ERR_UNSUPPORTED_VERSION;
    if (!known_type(header[1])) return KAA_ERR_UNKNOWN_MESSAGE_TYPE;
    allowed = header[1] == KAA_MSG_ERROR ? KAA_FLAG_SEALED : 0;
    if (header[2] & (uint8_t)~allowed) return KAA_ERR_MALFORMED_FRAME;
    if ((uint64_t)KAA_HEADER_SIZE + len > max_frame_size) return KAA_ERR_FRAME_TOO_LARGE;
    *msg_type = header[1];
    *flags = header[2];
    *body_len = len;
    return KAA_OK;
}

int kaa_frame_header_write(uint8_t header[6], uint8_t msg_type, uint8_t flags,
                           size_t body_len, uint32_t max_frame_size)
{
    if (body_len > 0xFFFFFFu || KAA_HEADER_SIZE + body_len > max_frame_size)
        return KAA_ERR_FRAME_TOO_LARGE;
    header[0] = KAA_PROTOCOL_VERSION;
    header[1] = msg_type;
    header[2] = flags;
    put(header + 3, body_len, 3);
    return KAA_OK;
}

/* -- RESOLVE_REQUEST ------------------------------------------------------------------ */

int kaa_resolve_request_build(uint8_t *out, size_t cap, size_t *out_len,
                              const uint8_t nonce[16], uint32_t key_generation,
                              const char *app_token, uint32_t max_frame_size)
{
    size_t tlen, body, i;
    int zero = 1, err;
    for (i = 0; i < KAA_NONCE_SIZE; i++) zero &= nonce[i] == 0;
    if (!kaa_token_valid(app_token, &tlen) || zero || key_generation == 0)
        return KAA_ERR_INVALID_ARGUMENT;
    body = KAA_NONCE_SIZE + 4 + 1 + tlen + 2;
    if (KAA_HEADER_SIZE + body > cap) return KAA_ERR_NO_ROOM;
    err = kaa_frame_header_write(out, KAA_MSG_RESOLVE_REQUEST, 0, body, max_frame_size);
    if (err) return err;
    memcpy(out + 6, nonce, KAA_NONCE_SIZE);
    put(out + 22, key_generation, 4);
    out[26] = (uint8_t)tlen;
    memcpy(out + 27, app_token, tlen);
    out[27 + tlen] = 1; /* one transport: */
    out[28 + tlen] = KAA_TRANSPORT_TCP;
    *out_len = KAA_HEADER_SIZE + body;
    return KAA_OK;
}

/* -- RESOLVE_RESPONSE ----------------------------------------------------------------- */

static int read_node(rd *r, kaa_node *n)
{
    kaa_bytes host;
    n->priority = u8(r);
    n->weight = u16(r);
    n->access_point_id = u32(r);
    n->port = u16(r);
    n->kex_algorithm = u8(r);
    n->kex_public_key = take(r, KAA_X25519_SIZE);
    host = lenpre(r, 1);
    if (r->bad || host.len < 1 || !printable(host.data, host.len)) return KAA_ERR_MALFORMED_FRAME;
    n->host = (const char *)host.data;
    n->host_len = (uint8_t)host.len;
    return KAA_OK;
}

static int read_rotation(rd *r, kaa_rotation *c)
{
    size_t start = r->pos;
    c->generation = u32(r);
    c->signature_algorithm = u8(r);
    c->public_key = lenpre(r, 2);
    if (r->bad) return KAA_ERR_MALFORMED_FRAME;
    c->signed_part.data = r->p + start;
    c->signed_part.len = r->pos - start;
    c->signature = lenpre(r, 2);
    if (r->bad || c->generation < 2 || c->public_key.len < 1) return KAA_ERR_MALFORMED_FRAME;
    return KAA_OK;
}

int kaa_resolve_response_parse(const uint8_t *body, size_t len, kaa_resolve_response *out)
{
    rd r = {body, len, 0, 0};
    size_t start;
    unsigned i;
    kaa_node node;
    kaa_rotation cert;
    memset(out, 0, sizeof *out);
    out->nonce = take(&r, KAA_NONCE_SIZE);
    out->server_time_ms = u64(&r);
    out->valid_for_s = u32(&r);
    out->key_generation = u32(&r);
    out->signature_algorithm = u8(&r);
    out->node_count = u8(&r);
    start = r.pos;
    for (i = 0; i < out->node_count; i++)
        if (read_node(&r, &node)) return KAA_ERR_MALFORMED_FRAME;
    out->nodes.data = body + start;
    out->nodes.len = r.pos - start;
    out->rotation_count = u8(&r);
    start = r.pos;
    if (r.bad || out->rotation_count > KAA_MAX_ROTATION_CHAIN || out->key_generation < 1)
        return KAA_ERR_MALFORMED_FRAME;
    for (i = 0; i < out->rotation_count; i++) {
        /* the generations run one by one up to key_generation (4.2) */
        uint64_t want = (uint64_t)out->key_generation - out->rotation_count + 1 + i;
        if (read_rotation(&r, &cert) || cert.generation != want) return KAA_ERR_MALFORMED_FRAME;
    }
    out->rotations.data = body + start;
    out->rotations.len = r.pos - start;
    out->signed_part.data = body;
    out->signed_part.len = r.pos;
    out->signature = lenpre(&r, 2);
    return done(&r);
}

int kaa_node_next(kaa_bytes nodes, size_t *offset, kaa_node *out)
{
    rd r = {nodes.data, nodes.len, *offset, 0};
    int err = read_node(&r, out);
    *offset = r.pos;
    return err;
}

int kaa_rotation_next(kaa_bytes rotations, size_t *offset, kaa_rotation *out)
{
    rd r = {rotations.data, rotations.len, *offset, 0};
    int err = read_rotation(&r, out);
    *offset = r.pos;
    return err;
}

/* -- ERROR ---------------------------------------------------------------------------- */

int kaa_error_parse(const uint8_t *body, size_t len, kaa_error_body *out)
{
    rd r = {body, len, 0, 0};
    out->code = u8(&r);
    out->retry_after_ms = u32(&r);
    out->message = lenpre(&r, 1);
    if (done(&r) || !kaa_utf8_valid(out->message.data, out->message.len))
        return KAA_ERR_MALFORMED_FRAME;
    return KAA_OK;
}

/* -- REGISTER_REQUEST payload --------------------------------------------------------- */

int kaa_register_payload_head(uint8_t *out, size_t cap, size_t *out_len, int key_is_hash,
                              uint8_t signature_algorithm, uint64_t timestamp_ms,
                              const char *sdk_token, const uint8_t *key, size_t key_len,
                              const uint8_t *profile, size_t profile_len)
{
    size_t tlen, n, pos;
    if (!kaa_token_valid(sdk_token, &tlen) || (key_is_hash && key_len != KAA_KEY_HASH_SIZE) ||
        (!key_is_hash && (key_len < 1 || key_len > 0xFFFF)) || profile_len > 0xFFFF)
        return KAA_ERR_INVALID_ARGUMENT;
    n = 1 + 1 + 8 + 1 + tlen + (key_is_hash ? 0 : 2) + key_len + 2 + profile_len;
    if (n > cap) return KAA_ERR_NO_ROOM;
    out[0] = key_is_hash ? 1 : 0;
    out[1] = signature_algorithm;
    put(out + 2, timestamp_ms, 8);
    out[10] = (uint8_t)tlen;
    memcpy(out + 11, sdk_token, tlen);
    pos = 11 + tlen;
    if (!key_is_hash) {
        put(out + pos, key_len, 2);
        pos += 2;
    }
    memcpy(out + pos, key, key_len);
    pos += key_len;
    put(out + pos, profile_len, 2);
    pos += 2;
    if (profile_len) memcpy(out + pos, profile, profile_len);
    *out_len = pos + profile_len;
    return KAA_OK;
}

/* -- REGISTER_RESPONSE result --------------------------------------------------------- */

static int read_topic(rd *r, kaa_topic *t)
{
    kaa_bytes name;
    t->topic_id = u32(r);
    name = lenpre(r, 1);
    if (r->bad || !kaa_utf8_valid(name.data, name.len)) return KAA_ERR_MALFORMED_FRAME;
    t->name = (const char *)name.data;
    t->name_len = (uint8_t)name.len;
    return KAA_OK;
}

int kaa_result_parse(const uint8_t *plain, size_t len, kaa_result *out)
{
    rd r = {plain, len, 0, 0};
    size_t start;
    unsigned i;
    kaa_topic topic;
    memset(out, 0, sizeof *out);
    out->status = u8(&r);
    out->endpoint_id = take(&r, KAA_KEY_HASH_SIZE);
    out->server_time_ms = u64(&r);
    out->config_version = u32(&r);
    out->config = lenpre(&r, 4);
    out->topic_count = u16(&r);
    start = r.pos;
    for (i = 0; i < out->topic_count; i++)
        if (read_topic(&r, &topic)) return KAA_ERR_MALFORMED_FRAME;
    out->topics.data = plain + start;
    out->topics.len = r.pos - start;
    out->reconnect_after_s = u32(&r);
    out->retry_base_ms = u32(&r);
    if (done(&r) || out->status < KAA_STATUS_NEW || out->status > KAA_STATUS_PROFILE_UPDATED)
        return KAA_ERR_MALFORMED_FRAME;
    return KAA_OK;
}

int kaa_topic_next(kaa_bytes topics, size_t *offset, kaa_topic *out)
{
    rd r = {topics.data, topics.len, *offset, 0};
    int err = read_topic(&r, out);
    *offset = r.pos;
    return err;
}
