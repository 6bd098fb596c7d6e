"""Worst-case stack depth of the SDK from GCC's -fcallgraph-info=su output (.ci files).

Each function's frame (-fstack-usage, "N bytes (static)") is summed along every path of the
call graph, and the deepest path from each public entry point (kaa_*) is printed. Calls
GCC cannot see through are listed rather than guessed: calls through a port's function
pointers ("__indirect_call") run the device's own code (the crypto and persistence
ports), whose stack comes on top of the figure here, and the libc leaves (memcpy,
memset, memcmp, strlen) are counted as 0 bytes. A recursive cycle or a frame of dynamic
size fails the script, since no worst case would exist.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
SIZE = re.compile(r"\\n(\d+) bytes \((\w+)\)")


def main(files: list[str]) -> int:
    frame: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    external: set[str] = set()
    for name in files:
        for line in Path(name).read_text().splitlines():
            if node := NODE.search(line):
                title, label = node.groups()
                size = SIZE.search(label)
                if size is None:
                    external.add(title)
                    continue
                if size.group(2) != "static":
                    print(f"error: {title} has a {size.group(2)} frame", file=sys.stderr)
                    return 1
                frame[title] = int(size.group(1))
            elif edge := EDGE.search(line):
                calls.setdefault(edge.group(1), set()).add(edge.group(2))

    @cache
    def deepest(function: str, seen: frozenset[str] = frozenset()) -> tuple[int, tuple[str, ...]]:
        if function in seen:
            raise SystemExit(f"error: recursion through {function}")
        best: tuple[int, tuple[str, ...]] = (0, ())
        for callee in calls.get(function, ()):
            if callee in frame:
                depth, path = deepest(callee, seen | {function})
                best = max(best, (depth, path))
        return frame[function] + best[0], (function, *best[1])

    @cache
    def deepest_port_call(function: str) -> tuple[int, tuple[str, ...]]:
        """The SDK's stack when a port function is entered, on the deepest such path."""
        best: tuple[int, tuple[str, ...]] = (-1, ())
        if "__indirect_call" in calls.get(function, ()):
            best = (frame[function], (function,))
        for callee in calls.get(function, ()):
            if callee in frame:
                depth, path = deepest_port_call(callee)
                if depth >= 0:
                    best = max(best, (frame[function] + depth, (function, *path)))
        return best

    entries = sorted(f for f in frame if f.split(":")[-1].startswith("kaa_"))
    worst = (0, ())
    for entry in entries:
        depth, path = deepest(entry)
        worst = max(worst, (depth, path))
    print(f"worst-case stack: {worst[0]} bytes")
    print("  path: " + " -> ".join(f"{p.split(':')[-1]} ({frame[p]})" for p in worst[1]))
    port = max(deepest_port_call(entry) for entry in entries)
    print(f"SDK stack under a port call, worst case: {port[0]} bytes (the port's own comes on top)")
    print("  path: " + " -> ".join(f"{p.split(':')[-1]} ({frame[p]})" for p in port[1]))
    leaves = sorted(e for e in external - frame.keys() if e != "__indirect_call")
    print(
        "  not included: "
        + ", ".join(leaves)
        + " (libc leaves), and the ports' functions behind __indirect_call"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
