# The C-level declarations of kaa_wire_ext._ext that its parts share (asyncpg style: one .pxd
# per part, included here). Cython reads this file with _ext.pyx; another extension module
# (kaa_wire_ext._bench) cimports these functions from it and calls them through _ext's C API.

from kaa_wire_ext cimport libcrypto as ssl

include "der.pxd"
include "endpoint_key.pxd"
