"""``python -m client`` that SIGKILLs itself at the N-th audited step (a child of the tests).

    python tests/hardening/killed_client.py N STATE_DIR register --sdk FILE --state STATE_DIR

The steps are the audit events (PEP 578) of everything that touches the device's state or
the network: ``os.mkdir``, ``open``, ``os.chmod`` and ``os.rename`` (``os.replace`` audits as
``os.rename``) of the state directory and its files, and ``socket.connect``. An audit hook
runs *before* the action, so the kill lands between two steps: after a temp file was written
and fsynced but before its rename, after a rename but before the directory fsync, after the
registration but before the state is saved, and so on. N = 0 never kills. At the end (if
still alive) the steps seen are printed to stderr, one per line, after a ``steps:`` line.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from client.__main__ import main  # after the path, before the hook

_FILE_EVENTS = {"os.mkdir", "open", "os.chmod", "os.rename"}


def run() -> int:
    kill_at = int(sys.argv[1])
    state_dir = os.path.realpath(sys.argv[2])
    seen: list[str] = []

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "socket.connect":
            step = event
        elif event in _FILE_EVENTS and args:
            target = args[0]
            if isinstance(target, int):  # fchmod of a file this process just created
                if event != "os.chmod":
                    return
                step = f"{event} fd"
            else:
                path = os.fsdecode(target)  # type: ignore[arg-type]
                if not os.path.realpath(path).startswith(state_dir):
                    return
                step = f"{event} {os.path.basename(path)}"
        else:
            return
        seen.append(step)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    try:
        return main(sys.argv[3:])
    finally:
        print("steps:", *seen, sep="\n", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run())
