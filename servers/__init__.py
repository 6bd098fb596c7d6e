"""kaa-wire services: Bootstrap, Operations, the registry store and the Control tool.

Layout (each module one job):

    servers/__main__.py        python -m servers: both services + default app + SDK export
    servers/standalone.py      python -m servers.bootstrap / servers.operations
    servers/runtime.py         wiring, binding, signals, clean shutdown (uvloop)
    servers/net.py             the thin asyncio.Protocol feeding the kaa_wire sans-IO core
    servers/bootstrap/         resolution: registry view, signing, cached signatures
    servers/operations/        registration: checks, store write, node lease, lookups
    servers/balancing.py       load-balancing strategies (docs/balancing.md)
    servers/store/             backend-neutral registry interface; SQLite backend
    servers/control/           python -m servers.control, SDK export (JSON + C header)
    servers/config.py          flags > KAA_* env > TOML settings
    servers/limits.py          bounded counters and thread pools
    servers/metrics.py         Prometheus metrics; servers/admin.py serves /metrics
    servers/logs.py            structured logs, text or JSON
"""
