"""kaa-wire services: Bootstrap, Operations, the registry store and the Control tool.

Layout (each module one job):

    servers/__main__.py        python -m servers: both services + default app + SDK export
    servers/standalone.py      python -m servers.bootstrap / servers.operations
    servers/embedded.py        the default application and SDK export of python -m servers
    servers/runtime.py         wiring, binding, signals, clean shutdown (uvloop)
    servers/workers.py         --workers: processes sharing each port (SO_REUSEPORT)
    servers/net.py             the thin asyncio.Protocol feeding the kaa_wire sans-IO core
    servers/bootstrap/         resolution: registry view, signing, cached signatures, key reload
    servers/operations/        registration: checks, store write, node lease, lookups
    servers/balancing.py       load-balancing strategies (docs/balancing.md)
    servers/store/             registry interface (base.py), one registration rule
                               (_decision.py), limits, factory; sqlite.py and its migrations;
                               postgres/ (store, group-commit writer, batch, LISTEN/NOTIFY,
                               migrations); the SQLite group commit (_group_commit.py)
    servers/control/           python -m servers.control, SDK export (JSON + C header)
    servers/datadir.py         the data directory: keys, permissions, what is where
    servers/keyring.py         the Bootstrap key ring: generations, rotation, chain file
    servers/config.py          flags > KAA_* env > TOML settings
    servers/limits.py          bounded counters and thread pools, the descriptor budget
    servers/caching.py         bounded lookup caches in front of the store
    servers/clock.py           the wall clock, in one place
    servers/tasks.py           stopping a background task
    servers/metrics.py         Prometheus metrics
    servers/admin.py           the admin HTTP port (aiohttp): /metrics, /healthz, /livez
    servers/console/           the web console and /api/v1 on it (docs/console.md)
    servers/logs.py            structured logs, text or JSON
"""
