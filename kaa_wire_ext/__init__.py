"""kaa_wire_ext: the compiled hot paths of kaa_wire (framing, registration verify, signing).

Never imported directly by applications: ``kaa_wire`` picks ``kaa_wire_ext._ext`` when it is
built (``kaa_wire.IMPLEMENTATION == "ext"``) and falls back to pure Python otherwise, or
when ``KAA_WIRE_PUREPYTHON=1``.
"""

# kaa_wire must finish initialising before _ext loads: kaa_wire._impl imports _ext, and _ext
# imports kaa_wire's exception and message classes. Importing the package first makes either
# import order work.
import kaa_wire  # noqa: F401
