/* The crypto port on mbedTLS 2.28: what docs/protocol.md section 8 asks of a device. */
#include "kaa_mbedtls.h"

#include <string.h>

#include <mbedtls/chachapoly.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>

#define RSA_MIN_BITS 2048u
#define RSA_MAX_BITS 4096u
#define MAX_KEY_DER 2400 /* an RSA-4096 private key in DER is about 2,350 bytes */

static int rng(void *self, unsigned char *out, size_t len)
{
    return mbedtls_ctr_drbg_random(&((kaa_mbedtls *)self)->drbg, out, len);
}

int kaa_mbedtls_init(kaa_mbedtls *m, const char *pers)
{
    memset(m, 0, sizeof *m);
    mbedtls_entropy_init(&m->entropy);
    mbedtls_ctr_drbg_init(&m->drbg);
    mbedtls_pk_init(&m->key);
    if (mbedtls_ctr_drbg_seed(&m->drbg, mbedtls_entropy_func, &m->entropy,
                              (const unsigned char *)pers, pers ? strlen(pers) : 0))
        return KAA_ERR_CRYPTO;
    return KAA_OK;
}

void kaa_mbedtls_free(kaa_mbedtls *m)
{
    mbedtls_pk_free(&m->key);
    mbedtls_ctr_drbg_free(&m->drbg);
    mbedtls_entropy_free(&m->entropy);
}

static int random_bytes(void *self, uint8_t *out, size_t len)
{
    return rng(self, out, len) ? KAA_ERR_CRYPTO : KAA_OK;
}

static int hash(void *self, int which, const kaa_bytes *parts, size_t count, uint8_t *out)
{
    size_t i;
    int err = 0;
    (void)self;
    if (which == KAA_HASH_SHA1) {
        mbedtls_sha1_context c;
        mbedtls_sha1_init(&c);
        err |= mbedtls_sha1_starts_ret(&c);
        for (i = 0; i < count; i++) err |= mbedtls_sha1_update_ret(&c, parts[i].data, parts[i].len);
        err |= mbedtls_sha1_finish_ret(&c, out);
        mbedtls_sha1_free(&c);
    } else if (which == KAA_HASH_SHA256) {
        mbedtls_sha256_context c;
        mbedtls_sha256_init(&c);
        err |= mbedtls_sha256_starts_ret(&c, 0);
        for (i = 0; i < count; i++) err |= mbedtls_sha256_update_ret(&c, parts[i].data, parts[i].len);
        err |= mbedtls_sha256_finish_ret(&c, out);
        mbedtls_sha256_free(&c);
    } else {
        return KAA_ERR_INVALID_ARGUMENT;
    }
    return err ? KAA_ERR_CRYPTO : KAA_OK;
}

/* Parses a Bootstrap key of algorithm alg as strictly as the servers do: canonical DER
 * (re-encoding gives the same bytes), RSA of 2048 to 4096 bits, e = 65537, n odd. */
static int parse_bootstrap_key(mbedtls_pk_context *pk, uint8_t alg, const uint8_t *der, size_t len)
{
    unsigned char out[600];
    mbedtls_mpi n, e;
    size_t bits;
    int written, ok;
    if (alg != KAA_SIG_RSA_PKCS1_SHA256) return KAA_ERR_UNSUPPORTED_ALGORITHM; /* no Ed25519 in mbedTLS */
    if (mbedtls_pk_parse_public_key(pk, der, len)) return KAA_ERR_MALFORMED_FRAME;
    if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA) return KAA_ERR_UNSUPPORTED_ALGORITHM;
    bits = mbedtls_pk_get_bitlen(pk);
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) return KAA_ERR_UNSUPPORTED_ALGORITHM;
    written = mbedtls_pk_write_pubkey_der(pk, out, sizeof out);
    if (written <= 0 || (size_t)written != len || memcmp(out + sizeof out - len, der, len) != 0)
        return KAA_ERR_MALFORMED_FRAME;
    mbedtls_mpi_init(&n);
    mbedtls_mpi_init(&e);
    ok = mbedtls_rsa_export(mbedtls_pk_rsa(*pk), &n, NULL, NULL, NULL, &e) == 0 &&
         mbedtls_mpi_cmp_int(&e, 65537) == 0 && mbedtls_mpi_get_bit(&n, 0) == 1;
    mbedtls_mpi_free(&n);
    mbedtls_mpi_free(&e);
    return ok ? KAA_OK : KAA_ERR_MALFORMED_FRAME;
}

static int check_key(void *self, uint8_t alg, const uint8_t *der, size_t len)
{
    mbedtls_pk_context pk;
    int err;
    (void)self;
    mbedtls_pk_init(&pk);
    err = parse_bootstrap_key(&pk, alg, der, len);
    mbedtls_pk_free(&pk);
    return err;
}

static int verify(void *self, uint8_t alg, const uint8_t *der, size_t der_len,
                  const kaa_bytes *msg, size_t count, const uint8_t *sig, size_t sig_len)
{
    mbedtls_pk_context pk;
    uint8_t digest[32];
    int err;
    mbedtls_pk_init(&pk);
    err = parse_bootstrap_key(&pk, alg, der, der_len);
    if (!err) err = hash(self, KAA_HASH_SHA256, msg, count, digest);
    /* PKCS#1 v1.5: mbedTLS re-encodes the digest and compares the whole block */
    if (!err && (sig_len != mbedtls_pk_get_len(&pk) ||
                 mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, digest, 32, sig, sig_len)))
        err = KAA_ERR_BAD_SIGNATURE;
    mbedtls_pk_free(&pk);
    return err == KAA_ERR_MALFORMED_FRAME ? KAA_ERR_BAD_SIGNATURE : err;
}

int kaa_mbedtls_x25519_public(const uint8_t priv[32], uint8_t pub[32])
{
    mbedtls_ecp_group grp;
    mbedtls_mpi d;
    mbedtls_ecp_point q;
    int err;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_ecp_point_init(&q);
    err = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519);
    /* clamp as RFC 7748 section 5 says */
    if (!err) err = mbedtls_mpi_read_binary_le(&d, priv, 32) || mbedtls_mpi_set_bit(&d, 0, 0) ||
                    mbedtls_mpi_set_bit(&d, 1, 0) || mbedtls_mpi_set_bit(&d, 2, 0) ||
                    mbedtls_mpi_set_bit(&d, 255, 0) || mbedtls_mpi_set_bit(&d, 254, 1);
    if (!err) err = mbedtls_ecp_mul(&grp, &q, &d, &grp.G, NULL, NULL) ||
                    mbedtls_mpi_write_binary_le(&q.X, pub, 32);
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
    return err ? KAA_ERR_CRYPTO : KAA_OK;
}

static int x25519_keypair(void *self, uint8_t priv[32], uint8_t pub[32])
{
    if (rng(self, priv, 32)) return KAA_ERR_CRYPTO;
    return kaa_mbedtls_x25519_public(priv, pub);
}

static int x25519(void *self, const uint8_t priv[32], const uint8_t peer[32], uint8_t shared[32])
{
    mbedtls_ecp_group grp;
    mbedtls_mpi d, z;
    mbedtls_ecp_point q;
    uint8_t u[32], acc = 0;
    int err, i;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&z);
    mbedtls_ecp_point_init(&q);
    memcpy(u, peer, 32);
    u[31] &= 0x7F; /* RFC 7748 5: the top bit of u is ignored */
    err = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519) ||
          mbedtls_mpi_read_binary_le(&d, priv, 32) || mbedtls_mpi_set_bit(&d, 0, 0) ||
          mbedtls_mpi_set_bit(&d, 1, 0) || mbedtls_mpi_set_bit(&d, 2, 0) ||
          mbedtls_mpi_set_bit(&d, 255, 0) || mbedtls_mpi_set_bit(&d, 254, 1) ||
          mbedtls_mpi_read_binary_le(&q.X, u, 32) || mbedtls_mpi_lset(&q.Z, 1);
    if (!err && mbedtls_ecdh_compute_shared(&grp, &z, &q, &d, rng, self)) err = KAA_ERR_BAD_SEAL;
    else if (!err && mbedtls_mpi_write_binary_le(&z, shared, 32)) err = KAA_ERR_CRYPTO;
    else if (err) err = KAA_ERR_CRYPTO;
    if (!err) {
        for (i = 0; i < 32; i++) acc |= shared[i];
        if (!acc) err = KAA_ERR_BAD_SEAL; /* a low-order node key (5.1) */
    }
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&z);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
    return err;
}

static int hkdf(void *self, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                size_t ikm_len, const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
    (void)self;
    return mbedtls_hkdf(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), salt, salt_len, ikm,
                        ikm_len, info, info_len, out, out_len)
               ? KAA_ERR_CRYPTO
               : KAA_OK;
}

static int aead_seal(void *self, const uint8_t key[32], const uint8_t nonce[12],
                     const uint8_t *aad, size_t aad_len, uint8_t *data, size_t len, uint8_t tag[16])
{
    mbedtls_chachapoly_context c;
    int err;
    (void)self;
    mbedtls_chachapoly_init(&c);
    err = mbedtls_chachapoly_setkey(&c, key) ||
          mbedtls_chachapoly_encrypt_and_tag(&c, len, nonce, aad, aad_len, data, data, tag);
    mbedtls_chachapoly_free(&c);
    return err ? KAA_ERR_CRYPTO : KAA_OK;
}

static int aead_open(void *self, const uint8_t key[32], const uint8_t nonce[12],
                     const uint8_t *aad, size_t aad_len, uint8_t *data, size_t len,
                     const uint8_t tag[16])
{
    mbedtls_chachapoly_context c;
    int err;
    (void)self;
    mbedtls_chachapoly_init(&c);
    err = mbedtls_chachapoly_setkey(&c, key) ||
          mbedtls_chachapoly_auth_decrypt(&c, len, nonce, aad, aad_len, tag, data, data);
    mbedtls_chachapoly_free(&c);
    return err ? KAA_ERR_BAD_SEAL : KAA_OK;
}

static int key_alg(kaa_mbedtls *m, uint8_t *alg)
{
    if (!m->have_key) return KAA_ERR_BAD_STATE;
    if (mbedtls_pk_get_type(&m->key) == MBEDTLS_PK_RSA && mbedtls_pk_get_bitlen(&m->key) >= RSA_MIN_BITS &&
        mbedtls_pk_get_bitlen(&m->key) <= RSA_MAX_BITS) {
        *alg = KAA_SIG_RSA_PKCS1_SHA256;
        return KAA_OK;
    }
    if (mbedtls_pk_get_type(&m->key) == MBEDTLS_PK_ECKEY &&
        mbedtls_pk_ec(m->key)->grp.id == MBEDTLS_ECP_DP_SECP256R1) {
        *alg = KAA_SIG_ECDSA_P256_SHA256;
        return KAA_OK;
    }
    return KAA_ERR_UNSUPPORTED_ALGORITHM;
}

static int endpoint_key(void *self, uint8_t *der, size_t cap, size_t *der_len, uint8_t *alg)
{
    kaa_mbedtls *m = self;
    unsigned char out[600];
    int n, err = key_alg(m, alg);
    if (err) return err;
    n = mbedtls_pk_write_pubkey_der(&m->key, out, sizeof out);
    if (n <= 0) return KAA_ERR_CRYPTO;
    if ((size_t)n > cap) return KAA_ERR_NO_ROOM;
    memcpy(der, out + sizeof out - (size_t)n, (size_t)n);
    *der_len = (size_t)n;
    return KAA_OK;
}

static int endpoint_sign(void *self, const kaa_bytes *msg, size_t count, uint8_t *sig,
                         size_t cap, size_t *sig_len)
{
    kaa_mbedtls *m = self;
    uint8_t digest[32], alg = 0;
    int err = key_alg(m, &alg);
    if (err) return err;
    if (hash(self, KAA_HASH_SHA256, msg, count, digest)) return KAA_ERR_CRYPTO;
    if (alg == KAA_SIG_RSA_PKCS1_SHA256) {
        if (cap < mbedtls_pk_get_len(&m->key)) return KAA_ERR_NO_ROOM;
        return mbedtls_pk_sign(&m->key, MBEDTLS_MD_SHA256, digest, 32, sig, sig_len, rng, m)
                   ? KAA_ERR_CRYPTO
                   : KAA_OK;
    } else {
        /* ECDSA P-256: fixed r || s, 32 bytes each, big-endian (the wire's encoding) */
        mbedtls_ecp_keypair *ec = mbedtls_pk_ec(m->key);
        mbedtls_mpi r, s;
        if (cap < 64) return KAA_ERR_NO_ROOM;
        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&s);
        err = mbedtls_ecdsa_sign_det_ext(&ec->grp, &r, &s, &ec->d, digest, 32, MBEDTLS_MD_SHA256, rng, m) ||
              mbedtls_mpi_write_binary(&r, sig, 32) || mbedtls_mpi_write_binary(&s, sig + 32, 32);
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&s);
        if (err) return KAA_ERR_CRYPTO;
        *sig_len = 64;
        return KAA_OK;
    }
}

int kaa_mbedtls_set_key(kaa_mbedtls *m, const uint8_t *key, size_t len)
{
    uint8_t alg;
    mbedtls_pk_free(&m->key);
    mbedtls_pk_init(&m->key);
    m->have_key = 0;
    if (mbedtls_pk_parse_key(&m->key, key, len, NULL, 0)) return KAA_ERR_CRYPTO;
    m->have_key = 1;
    if (key_alg(m, &alg)) {
        m->have_key = 0;
        return KAA_ERR_UNSUPPORTED_ALGORITHM;
    }
    return KAA_OK;
}

int kaa_mbedtls_load_or_create_key(kaa_mbedtls *m, const kaa_store_port *store, int type, int *created)
{
    static uint8_t der[MAX_KEY_DER]; /* host-side helper: a key file is read once */
    size_t len = 0;
    kaa_bytes part;
    int n, err = store->load(store->self, der, sizeof der, &len);
    *created = 0;
    if (err == KAA_OK) {
        err = kaa_mbedtls_set_key(m, der, len);
        memset(der, 0, sizeof der);
        return err;
    }
    if (err != KAA_ERR_NOT_FOUND) return KAA_ERR_STORAGE;
    mbedtls_pk_free(&m->key);
    mbedtls_pk_init(&m->key);
    if (type == KAA_KEY_RSA_2048) {
        err = mbedtls_pk_setup(&m->key, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) ||
              mbedtls_rsa_gen_key(mbedtls_pk_rsa(m->key), rng, m, 2048, 65537);
    } else if (type == KAA_KEY_P256) {
        err = mbedtls_pk_setup(&m->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) ||
              mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(m->key), rng, m);
    } else {
        return KAA_ERR_INVALID_ARGUMENT;
    }
    if (err) return KAA_ERR_CRYPTO;
    n = mbedtls_pk_write_key_der(&m->key, der, sizeof der);
    if (n <= 0) return KAA_ERR_CRYPTO;
    part.data = der + sizeof der - (size_t)n;
    part.len = (size_t)n;
    /* Saved before first use: an endpoint never registers a key it could lose. */
    err = store->save(store->self, &part, 1);
    memset(der, 0, sizeof der);
    if (err) return KAA_ERR_STORAGE;
    m->have_key = 1;
    *created = 1;
    return KAA_OK;
}

void kaa_mbedtls_port(kaa_mbedtls *m, kaa_crypto_port *port)
{
    port->self = m;
    port->random = random_bytes;
    port->hash = hash;
    port->check_key = check_key;
    port->verify = verify;
    port->x25519_keypair = x25519_keypair;
    port->x25519 = x25519;
    port->hkdf_sha256 = hkdf;
    port->aead_seal = aead_seal;
    port->aead_open = aead_open;
    port->endpoint_key = endpoint_key;
    port->endpoint_sign = endpoint_sign;
}
