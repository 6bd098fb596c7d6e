"""Build the optional extension of kaa-wire (the package metadata is in pyproject.toml).

The Cython extension ``kaa_wire_ext`` (the hot paths on OpenSSL 3 libcrypto) is optional. When
it cannot be built - no C compiler, no OpenSSL 3 headers, no Cython and no generated C - the
install still succeeds, a warning says why, and ``kaa_wire`` runs on pure Python
(``kaa_wire.IMPLEMENTATION == "py"``). ``KAA_WIRE_REQUIRE_EXT=1`` turns that into a hard error
(CI sets it).

``build_ext`` options, in the asyncpg/uvloop style (each also read from an environment
variable, for builds driven by pip)::

    --cython-always       KAA_WIRE_CYTHON_ALWAYS=1     regenerate C even when it is up to date
    --cython-annotate     KAA_WIRE_CYTHON_ANNOTATE=1   write the annotated HTML beside the .pyx
    --cython-directives   KAA_WIRE_CYTHON_DIRECTIVES   e.g. "boundscheck=True,profile=True"
    --debug-checks        KAA_WIRE_EXT_DEBUG=1         compile the internal invariant checks in

(The generated C does not record the directives it was made with: after a --debug-checks or
--cython-directives build, add --cython-always to get the plain build back.)

OpenSSL is found with ``pkg-config libcrypto``, or under ``KAA_WIRE_OPENSSL_DIR`` when set.

The benchmarks' reference loops (raw libcrypto verify, the key-build alternatives) are a
second module, ``kaa_wire_ext._bench``, built only when ``KAA_WIRE_BUILD_BENCH=1``: the
production extension carries no benchmark code, and an install on a device gets none.
Nothing in kaa_wire imports it; benchmarks/ uses it when it is there, and its tests skip
when it is not. CI sets the variable (.ci/run), so the loops are built and tested there. It
cimports the functions it times from ``_ext`` (``_ext.pxd``), so it needs ``_ext`` built in
the same run, and shares its fate: a failed build drops both.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

ROOT = Path(__file__).resolve().parent
EXT_DIR = "kaa_wire_ext"
#: The parts _ext.pyx includes, and the declarations every module cimports.
EXT_DEPENDS = [
    f"{EXT_DIR}/{name}"
    for name in (
        "_ext.pxd",
        "framing.pyx",
        "registration_payload.pyx",
        "der.pyx",
        "der.pxd",
        "endpoint_key.pyx",
        "endpoint_key.pxd",
        "verifier.pyx",
        "verify_batch.pyx",
        "signer.pyx",
        "resolution.pyx",
        "opener.pyx",
        "result.pyx",
        "server.pyx",
        "libcrypto.pxd",
        "protocol.pxd",
        "openssl_shim.h",
    )
]
IS_WINDOWS = sys.platform == "win32"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


#: Module name -> its .pyx: the production extension, and the benchmarks' loops on request.
MODULES = {"kaa_wire_ext._ext": f"{EXT_DIR}/_ext.pyx"}
if _flag("KAA_WIRE_BUILD_BENCH"):
    MODULES["kaa_wire_ext._bench"] = f"{EXT_DIR}/_bench.pyx"


def _openssl_dirs() -> tuple[list[str], list[str]]:
    """Include and library directories of OpenSSL libcrypto (empty: the compiler's default)."""
    prefix = os.environ.get("KAA_WIRE_OPENSSL_DIR")
    if prefix:
        lib_dirs = [str(Path(prefix, d)) for d in ("lib64", "lib") if Path(prefix, d).is_dir()]
        return [str(Path(prefix, "include"))], lib_dirs
    if shutil.which("pkg-config") is None:
        return [], []
    try:
        cflags = subprocess.run(
            ["pkg-config", "--cflags-only-I", "libcrypto"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
        libs = subprocess.run(
            ["pkg-config", "--libs-only-L", "libcrypto"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return [], []
    includes = [flag[2:] for flag in shlex.split(cflags) if flag.startswith("-I")]
    lib_dirs = [flag[2:] for flag in shlex.split(libs) if flag.startswith("-L")]
    return includes, lib_dirs


def _extensions() -> list[Extension]:
    include_dirs, library_dirs = _openssl_dirs()
    return [
        Extension(
            name,
            sources=[pyx],
            depends=EXT_DEPENDS,
            include_dirs=[EXT_DIR, *include_dirs],
            library_dirs=library_dirs,
            libraries=["libcrypto" if IS_WINDOWS else "crypto"],
            extra_compile_args=[] if IS_WINDOWS else ["-Wno-deprecated-declarations"],
        )
        for name, pyx in MODULES.items()
    ]


_WARNING = """
==============================================================================
WARNING: the optional extension kaa_wire_ext was NOT built:
    {reason}
kaa-wire is installed and works on its pure-Python path
(kaa_wire.IMPLEMENTATION == "py"), which is slower on framing, registration
verify and signing. To build the extension, install a C compiler, the OpenSSL 3
development headers and the Python headers (Debian/Ubuntu: apt-get install gcc
libssl-dev python3-dev) and Cython >= 3.0, then reinstall.
Set KAA_WIRE_REQUIRE_EXT=1 to make a failed build an error instead.
==============================================================================
"""


class build_ext(_build_ext):
    """build_ext that cythonizes on demand, and lets the extension fail softly."""

    user_options: ClassVar[list[tuple[str, str | None, str]]] = [
        *_build_ext.user_options,
        ("cython-always", None, "run Cython even when the generated C is up to date"),
        ("cython-annotate", None, "write Cython's annotated HTML next to each .pyx"),
        ("cython-directives=", None, "Cython directives, e.g. 'boundscheck=True,profile=True'"),
        ("debug-checks", None, "compile kaa_wire_ext's internal invariant checks in"),
    ]
    boolean_options: ClassVar[list[str]] = [
        *_build_ext.boolean_options, "cython-always", "cython-annotate", "debug-checks"
    ]

    def initialize_options(self) -> None:
        super().initialize_options()
        self.cython_always = False
        self.cython_annotate = False
        self.cython_directives: str | dict[str, object] | None = None
        self.debug_checks = False

    def finalize_options(self) -> None:
        super().finalize_options()
        self.cython_always = bool(self.cython_always) or _flag("KAA_WIRE_CYTHON_ALWAYS")
        self.cython_annotate = bool(self.cython_annotate) or _flag("KAA_WIRE_CYTHON_ANNOTATE")
        self.debug_checks = bool(self.debug_checks) or _flag("KAA_WIRE_EXT_DEBUG")
        # A dict from here on: setuptools may base this class on Cython's build_ext, which
        # reads the same attribute as a dict.
        given = self.cython_directives or os.environ.get("KAA_WIRE_CYTHON_DIRECTIVES")
        self._custom_directives = bool(given)
        self.cython_directives = self._directives(given)

    def _give_up(self, reason: str) -> None:
        """No extension: a hard error under KAA_WIRE_REQUIRE_EXT=1, else a loud warning."""
        if _flag("KAA_WIRE_REQUIRE_EXT"):
            raise SystemExit(f"kaa_wire_ext failed to build (KAA_WIRE_REQUIRE_EXT=1): {reason}")
        sys.stderr.write(_WARNING.format(reason=reason))
        sys.stderr.flush()
        # Nothing else (in-place copy, wheel contents) may expect the module any more.
        self.extensions = []
        self.distribution.ext_modules = []

    def _directives(self, given: str | dict[str, object] | None) -> dict[str, object]:
        directives: dict[str, object] = {"language_level": 3, "embedsignature": True}
        if self.debug_checks:
            directives.update(boundscheck=True, wraparound=True, initializedcheck=True)
        if isinstance(given, dict):
            directives.update(given)
            return directives
        for item in filter(None, (given or "").split(",")):
            name, _, value = item.partition("=")
            text = value.strip()
            directives[name.strip()] = {"True": True, "False": False}.get(text, text)
        return directives

    def _cythonize(self) -> None:
        """Turn the .pyx into C (when needed), or use the C generated before (sdist)."""
        pyx_files = [pyx for ext in self.extensions for pyx in ext.sources if pyx.endswith(".pyx")]
        newest_source = max(Path(p).stat().st_mtime for p in [*pyx_files, *EXT_DEPENDS])
        stale = any(
            not Path(pyx).with_suffix(".c").exists()
            or Path(pyx).with_suffix(".c").stat().st_mtime < newest_source
            for pyx in pyx_files
        )
        try:
            from Cython.Build import cythonize
        except ImportError:
            if stale or self.cython_always:
                raise RuntimeError("Cython >= 3.0 is not installed") from None
            for ext in self.extensions:
                ext.sources = [
                    str(Path(s).with_suffix(".c")) if s.endswith(".pyx") else s
                    for s in ext.sources
                ]
            return
        if self.debug_checks:
            for ext in self.extensions:
                ext.define_macros.append(("KAA_WIRE_EXT_DEBUG", "1"))
        cythonized = cythonize(
            self.extensions,
            compiler_directives=self.cython_directives,
            annotate=self.cython_annotate,
            force=self.cython_always or self.debug_checks or self._custom_directives,
            include_path=[str(ROOT)],
            quiet=True,
        )
        # Keep setuptools' own Extension objects (finalize_options annotated them); take
        # only the generated C sources from Cython's copies.
        by_name = {ext.name: ext for ext in cythonized}
        for ext in self.extensions:
            ext.sources = list(by_name[ext.name].sources)

    def run(self) -> None:
        if not self.extensions:
            return super().run()
        try:
            self._cythonize()
        except Exception as exc:  # any failure here means: no extension
            self._give_up(f"Cython step failed: {exc}")
        return super().run()

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as exc:  # no compiler, no headers, link errors...
            self._give_up(f"compiling or linking failed: {type(exc).__name__}: {exc}")


# The metadata (name, version, dependencies, packages) is in pyproject.toml's [project].
setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
