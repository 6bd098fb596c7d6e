# RegistrationVerifier: checks a registration's proof of possession, with a bounded cache of
# loaded endpoint keys (endpoint_key.pyx). Mirrors kaa_wire/_registration.py's class of the
# same name, check for check; the errors come from kaa_wire._errors' factories.

from collections import OrderedDict


cdef bytes _sha1(object data):
    cdef Py_buffer view
    cdef bytes digest = PyBytes_FromStringAndSize(NULL, KEY_HASH_SIZE)  # SHA-1
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        ssl.SHA1(<const unsigned char *>view.buf, view.len,
                 <unsigned char *>PyBytes_AS_STRING(digest))
    finally:
        PyBuffer_Release(&view)
    return digest


cdef class RegistrationVerifier:
    """Checks proofs of possession, keeping recently used endpoint keys loaded.

    The cache is keyed by endpoint id and bounded (least recently used goes first), so a
    flood of new keys costs loads, never memory.
    """

    cdef public object cache_size
    cdef object _keys

    def __init__(self, cache_size=4096):
        if cache_size < 0:
            raise negative_cache_size()
        self.cache_size = cache_size
        self._keys = OrderedDict()

    def verify(self, payload, context, key_der=None):
        """Return the endpoint id once ``payload``'s signature verifies.

        ``context`` is the signature context of the exchange. On reconnect
        (``payload.key_is_hash``) the caller passes the stored ``key_der``; it must hash
        to the id the endpoint sent.
        """
        cdef _EndpointKey key
        if payload.key_is_hash:
            if key_der is None:
                raise reconnect_needs_stored_key()
            endpoint_id = _sha1(key_der)
            if endpoint_id != payload.key:
                raise stored_key_does_not_match()
        else:
            key_der = payload.key
            endpoint_id = _sha1(key_der)
        key = self._key(endpoint_id, key_der)
        if not _algorithm_fits(key.kind, payload.signature_algorithm):
            raise algorithm_does_not_fit_key(payload.signature_algorithm)
        if not key.verify(context + payload.signed_part, payload.signature):
            raise proof_does_not_verify()
        return endpoint_id

    cdef _EndpointKey _key(self, bytes endpoint_id, object key_der):
        cdef _EndpointKey key = self._keys.get(endpoint_id)
        if key is not None:
            self._keys.move_to_end(endpoint_id)
            return key
        key = _load_endpoint_key(key_der)
        if self.cache_size:
            self._keys[endpoint_id] = key
            if len(self._keys) > self.cache_size:
                self._keys.popitem(last=False)
        return key
