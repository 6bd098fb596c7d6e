"""Coverage-guided fuzzing of the framer, codec, payload parser and registration opener, both
implementations.

    python tests/fuzz/fuzz_wire.py tests/fuzz/corpus -runs=10000000

atheris (libFuzzer) mutates the committed corpus; any divergence between the
implementations or any exception other than a RemoteProtocolError is a crash. Run it from
the repository root. New interesting inputs are written to the first corpus directory
given; commit the small ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["kaa_wire", "tests.fuzz"]):
    from tests.fuzz.harness import _ext, check


def main() -> None:
    print(f"fuzzing with extension: {_ext is not None}", flush=True)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
