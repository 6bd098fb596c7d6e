# Endpoint keys (endpoint_key.pyx): what the verifier, verify_batch and the benchmark loops of
# kaa_wire_ext._bench use.

cdef struct KeyMaterial:
    int kind                        # 0: not a key the fast path takes; else SIG_*
    const unsigned char *n          # RSA modulus, big-endian, no leading zero bytes
    Py_ssize_t n_len
    const unsigned char *e          # RSA public exponent, likewise (empty for zero)
    Py_ssize_t e_len
    const unsigned char *raw        # Ed25519 public key, 32 bytes; or the P-256 point,
                                    # 0x04 || X || Y, 65 bytes

# Fill `m` and return its kind (SIG_*) when `der` is an ordinary key the pure path accepts;
# else 0, and the pure loader decides.
cdef int _parse_endpoint_key(
    const unsigned char *der, Py_ssize_t size, KeyMaterial *m
) noexcept nogil

# An RSA public key from (n, e); -1 (error queue cleared) when OpenSSL fails.
cdef int _build_rsa(const KeyMaterial *m, ssl.RSA **out) noexcept nogil

# An Ed25519 public key, or NULL (error queue cleared).
cdef ssl.EVP_PKEY *_build_ed25519(const KeyMaterial *m) noexcept nogil

# A P-256 public key from its vetted point, or NULL (error queue cleared).
cdef ssl.EVP_PKEY *_build_p256(const KeyMaterial *m) noexcept nogil

# 1 when `signature` over `data` is valid for the key (rsa for RSA, pkey for Ed25519 and
# P-256, by kind), 0 when not,
# -1 when out of memory.
cdef int _verify_signature(
    int kind, ssl.RSA *rsa, ssl.EVP_PKEY *pkey,
    const unsigned char *data, size_t data_len,
    const unsigned char *signature, size_t signature_len,
) noexcept nogil
