# verify_batch: many (key, algorithm, data, signature) at once, the keys vetted with the GIL
# held, then every key build and verify in one stretch without it. Mirrors
# kaa_wire/_registration.py's verify_batch.


cdef struct _BatchEntry:
    KeyMaterial key
    Py_buffer key_view
    Py_buffer data_view
    Py_buffer signature_view
    bint has_key_view
    bint has_data_view
    bint has_signature_view
    bint check           # key loaded and fits the algorithm: verify in the nogil pass
    int result


cdef int _batch_verify_one(_BatchEntry *entry) noexcept nogil:
    cdef ssl.RSA *rsa = NULL
    cdef ssl.EVP_PKEY *pkey = NULL
    cdef int result
    if entry.key.kind == SIG_RSA_PKCS1V15_SHA256:
        if _build_rsa(&entry.key, &rsa) < 0:
            return -1
    elif entry.key.kind == SIG_ECDSA_P256_SHA256:
        pkey = _build_p256(&entry.key)
        if pkey == NULL:
            return -1
    else:
        pkey = _build_ed25519(&entry.key)
    result = _verify_signature(
        entry.key.kind, rsa, pkey,
        <const unsigned char *>entry.data_view.buf, entry.data_view.len,
        <const unsigned char *>entry.signature_view.buf, entry.signature_view.len,
    )
    if rsa != NULL:
        ssl.RSA_free(rsa)
    if pkey != NULL:
        ssl.EVP_PKEY_free(pkey)
    return result


def verify_batch(items):
    """Verify many (key_der, algorithm, data, signature) at once; True where valid.

    A key that does not load, or an algorithm that does not fit it, gives False. The keys are
    vetted first with the GIL held (cheap); then every key build and verify of the batch runs
    in one stretch with the GIL released, so a worker thread can carry the whole batch.
    """
    cdef list batch = list(items)
    cdef list keep = []
    cdef Py_ssize_t count = len(batch), i
    cdef _BatchEntry *entries
    cdef _BatchEntry *entry
    cdef bint out_of_memory = False
    if count == 0:
        return []
    entries = <_BatchEntry *>PyMem_Calloc(count, sizeof(_BatchEntry))
    if entries == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            entry = &entries[i]
            key_der, algorithm, data, signature = batch[i]
            if PyObject_CheckBuffer(key_der):
                PyObject_GetBuffer(key_der, &entry.key_view, PyBUF_SIMPLE)
                entry.has_key_view = True
                _parse_endpoint_key(
                    <const unsigned char *>entry.key_view.buf, entry.key_view.len, &entry.key
                )
            if not entry.key.kind:
                try:
                    _material_from_pure(key_der, &entry.key, keep)
                except (MalformedFrame, UnsupportedAlgorithm):
                    continue
            if not _algorithm_fits(entry.key.kind, algorithm):
                continue
            PyObject_GetBuffer(signature, &entry.signature_view, PyBUF_SIMPLE)
            entry.has_signature_view = True
            PyObject_GetBuffer(data, &entry.data_view, PyBUF_SIMPLE)
            entry.has_data_view = True
            entry.check = True
        with nogil:
            for i in range(count):
                if entries[i].check:
                    entries[i].result = _batch_verify_one(&entries[i])
                    if entries[i].result < 0:
                        out_of_memory = True
        if out_of_memory:
            raise MemoryError()
        return [entries[i].result == 1 for i in range(count)]
    finally:
        for i in range(count):
            if entries[i].has_key_view:
                PyBuffer_Release(&entries[i].key_view)
            if entries[i].has_data_view:
                PyBuffer_Release(&entries[i].data_view)
            if entries[i].has_signature_view:
                PyBuffer_Release(&entries[i].signature_view)
        PyMem_Free(entries)
