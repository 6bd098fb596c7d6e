/* The crypto port on mbedTLS 2.28 (Debian 12's libmbedtls-dev), and the endpoint key. */
#ifndef KAA_MBEDTLS_H
#define KAA_MBEDTLS_H

#include "kaa/kaa.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>

#ifdef __cplusplus
extern "C" {
#endif

enum kaa_key_type { KAA_KEY_RSA_2048 = 1, KAA_KEY_P256 = 3 };

typedef struct kaa_mbedtls {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context key;
    int have_key;
} kaa_mbedtls;

/* Seeds the DRBG from the platform entropy (personalised by pers). */
int kaa_mbedtls_init(kaa_mbedtls *m, const char *pers);
void kaa_mbedtls_free(kaa_mbedtls *m);
/* The endpoint key from store (DER PKCS#1/SEC1/PKCS#8); without one, a new key of type
 * is generated and saved (atomically, through the store) before it is used. *created
 * says which happened. A stored key of another type is used as it is: it is the
 * endpoint's identity. */
int kaa_mbedtls_load_or_create_key(kaa_mbedtls *m, const kaa_store_port *store, int type,
                                   int *created);
/* The endpoint key from DER or PEM bytes (tests, provisioning). */
int kaa_mbedtls_set_key(kaa_mbedtls *m, const uint8_t *key, size_t len);
/* Fills port with this backend's functions. */
void kaa_mbedtls_port(kaa_mbedtls *m, kaa_crypto_port *port);
/* X25519 public key of a private scalar (tests with fixed ephemeral keys). */
int kaa_mbedtls_x25519_public(const uint8_t priv[32], uint8_t pub[32]);

#ifdef __cplusplus
}
#endif
#endif
