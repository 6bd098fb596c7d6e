# The parts of libcrypto (OpenSSL >= 3.0) that kaa_wire_ext uses, through openssl_shim.h.
# Every function here is safe to call without the GIL.

cdef extern from "openssl_shim.h" nogil:
    enum: KAA_WIRE_EXT_DEBUG
    unsigned long OPENSSL_VERSION_NUMBER

    # err.h: the per-thread error queue. Every failure path clears it.
    void ERR_clear_error()
    unsigned long ERR_peek_last_error()
    void ERR_error_string_n(unsigned long e, char *buf, size_t len)

    # crypto.h
    const char *OpenSSL_version(int type)
    int OPENSSL_VERSION

    # bn.h
    ctypedef struct BIGNUM:
        pass
    BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret)
    void BN_free(BIGNUM *a)
    int BN_num_bits(const BIGNUM *a)
    int BN_bn2binpad(const BIGNUM *a, unsigned char *to, int tolen)

    # rsa.h (legacy API: the cheapest way to build a public key from (n, e) on 3.0)
    ctypedef struct RSA:
        pass
    RSA *RSA_new()
    void RSA_free(RSA *r)
    int RSA_set0_key(RSA *r, BIGNUM *n, BIGNUM *e, BIGNUM *d)
    int RSA_verify(int type, const unsigned char *m, unsigned int m_length,
                   const unsigned char *sigbuf, unsigned int siglen, RSA *rsa)
    int RSA_size(const RSA *rsa)
    int NID_sha256

    # sha.h (one-shot digests)
    unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md)
    unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md)
    int SHA_DIGEST_LENGTH
    int SHA256_DIGEST_LENGTH

    # evp.h
    ctypedef struct EVP_PKEY:
        pass
    ctypedef struct EVP_MD:
        pass
    ctypedef struct EVP_MD_CTX:
        pass
    ctypedef struct EVP_PKEY_CTX:
        pass
    ctypedef struct ENGINE:
        pass
    int EVP_PKEY_RSA
    int EVP_PKEY_ED25519
    void EVP_PKEY_free(EVP_PKEY *pkey)
    int EVP_PKEY_get_base_id(const EVP_PKEY *pkey)
    int EVP_PKEY_get_bits(const EVP_PKEY *pkey)
    int EVP_PKEY_get_size(const EVP_PKEY *pkey)
    EVP_PKEY *EVP_PKEY_new_raw_public_key(int type, ENGINE *e,
                                          const unsigned char *pub, size_t len)
    const EVP_MD *EVP_sha256()
    EVP_MD_CTX *EVP_MD_CTX_new()
    void EVP_MD_CTX_free(EVP_MD_CTX *ctx)
    int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                           ENGINE *e, EVP_PKEY *pkey)
    int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                       const unsigned char *tbs, size_t tbslen)
    int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                             ENGINE *e, EVP_PKEY *pkey)
    int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen,
                         const unsigned char *tbs, size_t tbslen)

    # x509.h / evp.h: private key decoding (PKCS#8 DER) for the signer
    EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **a, const unsigned char **pp, long length)

    # Only for the reference loops of bench.pyx (key-build alternatives).
    ctypedef struct BN_CTX:
        pass
    ctypedef struct BN_MONT_CTX:
        pass
    BN_CTX *BN_CTX_new()
    void BN_CTX_free(BN_CTX *c)
    BN_MONT_CTX *BN_MONT_CTX_new()
    int BN_MONT_CTX_set(BN_MONT_CTX *mont, const BIGNUM *mod, BN_CTX *ctx)
    void BN_MONT_CTX_free(BN_MONT_CTX *mont)
    EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length)
