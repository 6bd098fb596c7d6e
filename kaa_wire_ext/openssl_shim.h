/* kaa_wire_ext: the OpenSSL headers, configured once for the whole extension.
 *
 * The registration hot path builds endpoint RSA keys with the legacy RSA API
 * (RSA_new/RSA_set0_key/RSA_verify): on OpenSSL 3.0 it is 4-5x cheaper per fresh key than
 * d2i_PUBKEY or EVP_PKEY_fromdata (measured; see benchmarks/). Those functions are
 * deprecated in 3.0 but supported through 3.x, so the deprecation attributes are silenced
 * here rather than scattered over the build. P-256 endpoint keys likewise use the legacy
 * EC_KEY and ECDSA_do_verify, the same trade for the same reason.
 */
#ifndef KAA_WIRE_EXT_OPENSSL_SHIM_H
#define KAA_WIRE_EXT_OPENSSL_SHIM_H

#ifndef OPENSSL_API_COMPAT
#define OPENSSL_API_COMPAT 0x10101000L
#endif
#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED 1
#endif

#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "kaa_wire_ext needs OpenSSL 3.0 or newer (libcrypto headers)"
#endif

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

/* Debug checks (buffer and cursor invariants) compile away unless the build defines
 * KAA_WIRE_EXT_DEBUG=1 (setup.py build_ext --debug-checks). */
#ifndef KAA_WIRE_EXT_DEBUG
#define KAA_WIRE_EXT_DEBUG 0
#endif

#endif /* KAA_WIRE_EXT_OPENSSL_SHIM_H */
