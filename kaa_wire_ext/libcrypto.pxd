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
    void OPENSSL_cleanse(void *ptr, size_t len)
    ctypedef struct OSSL_LIB_CTX:
        pass

    # bn.h
    ctypedef struct BIGNUM:
        pass
    ctypedef struct BN_CTX:
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

    # ec.h, ecdsa.h (legacy API, as for RSA): P-256 endpoint keys and their verify
    ctypedef struct EC_GROUP:
        pass
    ctypedef struct EC_POINT:
        pass
    ctypedef struct EC_KEY:
        pass
    ctypedef struct ECDSA_SIG:
        pass
    int NID_X9_62_prime256v1
    EC_GROUP *EC_GROUP_new_by_curve_name(int nid)
    void EC_GROUP_free(EC_GROUP *group)
    EC_POINT *EC_POINT_new(const EC_GROUP *group)
    void EC_POINT_free(EC_POINT *point)
    int EC_POINT_oct2point(const EC_GROUP *group, EC_POINT *p, const unsigned char *buf,
                           size_t len, BN_CTX *ctx)
    EC_KEY *EC_KEY_new()
    int EC_KEY_set_group(EC_KEY *key, const EC_GROUP *group)
    void EC_KEY_free(EC_KEY *key)
    int EC_KEY_oct2key(EC_KEY *key, const unsigned char *buf, size_t len, BN_CTX *ctx)
    ECDSA_SIG *ECDSA_SIG_new()
    void ECDSA_SIG_free(ECDSA_SIG *sig)
    int ECDSA_SIG_set0(ECDSA_SIG *sig, BIGNUM *r, BIGNUM *s)
    int ECDSA_do_verify(const unsigned char *dgst, int dgst_len, const ECDSA_SIG *sig,
                        EC_KEY *eckey)
    int EVP_PKEY_set1_EC_KEY(EVP_PKEY *pkey, EC_KEY *key)
    const EC_KEY *EVP_PKEY_get0_EC_KEY(const EVP_PKEY *pkey)
    EVP_PKEY *EVP_PKEY_new()

    # sha.h (one-shot digests)
    unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md)
    unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md)
    int SHA_DIGEST_LENGTH
    int SHA256_DIGEST_LENGTH

    # sha.h, the low-level SHA-256 (deprecated in 3.0, silenced by the shim): unlike SHA256()
    # and EVP_Digest*, no provider fetch per call, which HKDF's six small hashes would feel.
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t len)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)

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

    # evp.h: X25519 key agreement, for opening registrations
    int EVP_PKEY_X25519
    EVP_PKEY *EVP_PKEY_new_raw_private_key(int type, ENGINE *e,
                                           const unsigned char *priv, size_t len)
    EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, ENGINE *e)
    void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_derive_init(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_derive_set_peer(EVP_PKEY_CTX *ctx, EVP_PKEY *peer)
    int EVP_PKEY_derive(EVP_PKEY_CTX *ctx, unsigned char *key, size_t *keylen)
    EVP_PKEY_CTX *EVP_PKEY_CTX_dup(const EVP_PKEY_CTX *ctx)
    EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_name(OSSL_LIB_CTX *libctx, const char *name,
                                             const char *propquery)
    int EVP_PKEY_fromdata_init(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_fromdata(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey, int selection,
                          OSSL_PARAM *params)
    int EVP_PKEY_PUBLIC_KEY

    # params.h, core_names.h
    ctypedef struct OSSL_PARAM:
        pass
    OSSL_PARAM OSSL_PARAM_construct_octet_string(const char *key, void *buf, size_t bsize)
    OSSL_PARAM OSSL_PARAM_construct_end()
    const char *OSSL_PKEY_PARAM_PUB_KEY

    # evp.h: ChaCha20-Poly1305 AEAD
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    int EVP_CTRL_AEAD_SET_IVLEN
    int EVP_CTRL_AEAD_GET_TAG
    int EVP_CTRL_AEAD_SET_TAG
    EVP_CIPHER *EVP_CIPHER_fetch(OSSL_LIB_CTX *ctx, const char *algorithm,
                                 const char *properties)
    EVP_CIPHER_CTX *EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)
    int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr)
    int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl,
                          const unsigned char *key, const unsigned char *iv, int enc)
    int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                         const unsigned char *in_, int inl)
    int EVP_CipherFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl)

    # x509.h / evp.h: private key decoding (PKCS#8 DER) for the signer
    EVP_PKEY *d2i_AutoPrivateKey(EVP_PKEY **a, const unsigned char **pp, long length)

    # Only for the reference loops of _bench.pyx (key-build alternatives).
    ctypedef struct BN_MONT_CTX:
        pass
    BN_CTX *BN_CTX_new()
    void BN_CTX_free(BN_CTX *c)
    BN_MONT_CTX *BN_MONT_CTX_new()
    int BN_MONT_CTX_set(BN_MONT_CTX *mont, const BIGNUM *mod, BN_CTX *ctx)
    void BN_MONT_CTX_free(BN_MONT_CTX *mont)
    EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length)
