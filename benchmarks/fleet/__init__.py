"""``python -m benchmarks fleet``: registration cost against fleet-sized stores (issue 14).

``fill`` bulk-loads well-formed endpoint rows, ``measure`` loads a server on the filled
store with the load generator, ``storm`` brings 100,000 devices back at once with the
client's own policy, ``run`` ties them together and writes ``results/fleet.json``.
"""
