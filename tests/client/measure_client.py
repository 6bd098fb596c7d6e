"""The client's footprint figures for docs/client.md: import time, RSS, bytes on the wire.

    PYTHONPATH=. python tests/client/measure_client.py [--runs 9] [--servers] [--cold]

Children run with a warm bytecode cache (as an installed package) unless ``--cold``.

Import time: the cumulative ``client`` line of ``python -X importtime -c "import client"``,
and the wall time of ``python -c "import client"`` minus that of ``python -c pass``; the
median (min..max) of ``--runs`` child processes each.

RSS: peak resident set (VmHWM, read by the child itself at its end) of ``python -c pass``
and of a child that imports client and opens a device (loads its RSA-2048 key pair, its
state and the SDK's Bootstrap key); median of ``--runs``. Then the same peak after each
layer alone (cryptography, construct, kaa_wire, client), to show where it goes.

Bytes on the wire (``--servers``): starts ``python -m servers`` on loopback in a temporary
directory and registers one device with a 200-byte profile through the blocking API,
fresh (NEW) then again (EXISTING, key hash); prints the TCP payload bytes of each exchange
as the client counted them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Children compile to bytecode once, as an installed package would have: into a private
# cache (PYTHONPYCACHEPREFIX) so the checkout stays clean, whatever PYTHONDONTWRITEBYTECODE
# says here. --cold measures without any bytecode for this checkout instead.
_PYCACHE = tempfile.mkdtemp(prefix="client-measure-pycache-")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=_PYCACHE)


# Printed by each child at its end: its own peak RSS. (wait4's ru_maxrss would not do: on
# Linux it survives exec, so it would include the forked copy of this parent.)
_PEAK = "\nprint([x for x in open('/proc/self/status') if x.startswith('VmHWM')][0])"


def _child(code: str, *args: str, flags: tuple[str, ...] = ()) -> tuple[float, int, str]:
    """Run ``python [flags] -c code args``: wall seconds, peak RSS in KiB, stderr."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *flags, "-c", code + _PEAK, *args],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {code}\n{proc.stderr}")
    peak_kib = int(proc.stdout.split("VmHWM:")[1].split()[0])
    return wall, peak_kib, proc.stderr


def _summary(values: Sequence[float], unit: str, scale: float = 1.0) -> str:
    scaled = [v * scale for v in values]
    return (
        f"{statistics.median(scaled):.1f} {unit} "
        f"(min {min(scaled):.1f}, max {max(scaled):.1f}, n={len(scaled)})"
    )


def _device_dir(tmp: Path) -> tuple[Path, Path]:
    import kaa_files
    from kaa_wire import _crypto
    from kaa_wire.sdk_config import BootstrapServer, SdkConfig

    device = tmp / "device"
    device.mkdir()
    key = _crypto.generate_rsa_key(2048)
    kaa_files.save_private_key(device / "key.private", key)
    kaa_files.save_public_key(device / "key.public", key)
    bootstrap = _crypto.public_key_pem(_crypto.generate_rsa_key(2048)).decode()
    sdk = tmp / "sdk.json"
    config = SdkConfig("app", "sdk", (BootstrapServer("127.0.0.1", 9, bootstrap),))
    sdk.write_text(config.to_json())
    return device, sdk


def footprint(runs: int) -> None:
    _child("import client")  # warm the bytecode cache
    import_lines: list[float] = []
    own_lines: list[float] = []
    layers: dict[str, list[float]] = {"kaa_wire": [], "construct": []}
    bare_wall: list[float] = []
    client_wall: list[float] = []
    for _ in range(runs):
        _, _, err = _child("import client", flags=("-X", "importtime"))
        rows = [x.split("|") for x in err.splitlines() if x.startswith("import time:")]
        by_name = {row[2].strip(): row for row in rows[1:]}
        import_lines.append(int(by_name["client"][1]) / 1e6)
        own = [int(row[0].split(":")[1]) for name, row in by_name.items()
               if name == "client" or name.startswith("client.")]  # fmt: skip
        own_lines.append(sum(own) / 1e6)
        for name, values in layers.items():
            values.append(int(by_name[name][1]) / 1e6)
    for _ in range(runs):
        bare_wall.append(_child("pass")[0])
        client_wall.append(_child("import client")[0])
    delta = [c - b for c, b in zip(sorted(client_wall), sorted(bare_wall), strict=True)]
    print("import time, -X importtime cumulative:", _summary(import_lines, "ms", 1e3))
    print("  of which client's own modules (self): ", _summary(own_lines, "ms", 1e3))
    for name, values in layers.items():
        print(f"  of which {name + ' (cumulative):':28}", _summary(values, "ms", 1e3))
    print("python -c pass wall:                   ", _summary(bare_wall, "ms", 1e3))
    print("python -c 'import client' wall:        ", _summary(client_wall, "ms", 1e3))
    print("difference (sorted pairs):             ", _summary(delta, "ms", 1e3))

    with tempfile.TemporaryDirectory() as tmp:
        device, sdk = _device_dir(Path(tmp))
        opened = (
            "import sys\nfrom client import Device\n"
            "d = Device.open(sys.argv[1], sys.argv[2])\nassert len(d.endpoint_id) == 40\n"
        )
        bare = [_child("pass")[1] for _ in range(runs)]
        loaded = [_child(opened, str(device), str(sdk))[1] for _ in range(runs)]
    print("peak RSS, python -c pass:              ", _summary(bare, "MiB", 1 / 1024))
    print("peak RSS, import client + open device: ", _summary(loaded, "MiB", 1 / 1024))
    added = statistics.median(loaded) - statistics.median(bare)
    print(f"RSS added over a bare interpreter:      {added / 1024:.1f} MiB (medians)")
    for layer in (
        "import cryptography.hazmat.primitives.asymmetric.rsa",
        "import construct",
        "import kaa_wire",
        "import client",
    ):
        peak = statistics.median(_child(layer)[1] for _ in range(3))
        print(f"  peak after {layer + ':':54} {peak / 1024:.1f} MiB")


def wire() -> None:
    from client import Connected, Device

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "servers"
        data.mkdir()
        server = subprocess.Popen(
            [sys.executable, "-m", "servers", "--data", str(data), "--host", "127.0.0.1",
             "--bootstrap-port", "0", "--operations-port", "0", "--admin-port", "0"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not (data / "sdk.json").exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("servers did not start")
                time.sleep(0.05)
            config = json.loads((data / "sdk.json").read_text())
            print(
                f"tokens: application {len(config['application_token'])} chars, "
                f"sdk {len(config['sdk_token'])} chars"
            )
            base = json.dumps({"model": "t1000", "fw": "1.0.0", "pad": ""})
            pad = "x" * (200 - len(base))
            profile = json.dumps({"model": "t1000", "fw": "1.0.0", "pad": pad}).encode()
            assert len(profile) == 200
            for run in ("first registration", "reconnect"):
                with Device.open(Path(tmp) / "device", data / "sdk.json") as device:
                    outcome = device.register(profile)
                assert isinstance(outcome, Connected), outcome
                print(f"{run} ({outcome.status}):")
                for attempt in outcome.attempts:
                    kind = "key hash" if attempt.reconnect else "full key"
                    extra = f", {kind}" if attempt.stage == "register" else ""
                    print(
                        f"  {attempt.stage:8} request {attempt.sent:5} B, "
                        f"response {attempt.received:5} B{extra}"
                    )
                state = outcome.application_state
                print(f"  application state: config {len(state.config)} B, "
                      f"{len(state.topics)} topics")  # fmt: skip
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--servers", action="store_true", help="also measure bytes on the wire")
    parser.add_argument(
        "--cold", action="store_true", help="no bytecode cache: every import compiles"
    )
    args = parser.parse_args()
    if args.cold:
        ENV.pop("PYTHONPYCACHEPREFIX")
        ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    from kaa_wire import IMPLEMENTATION

    cache = "none (cold)" if args.cold else "warm"
    print(f"python {sys.version.split()[0]}, kaa_wire {IMPLEMENTATION}, bytecode cache {cache}")
    footprint(args.runs)
    if args.servers:
        wire()


if __name__ == "__main__":
    main()
