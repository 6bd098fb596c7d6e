"""The PostgreSQL backend of the registry store (asyncpg), for more than one machine.

Same interface and rules as the SQLite backend (``base.py``); what differs is how:

* **Durable acknowledgement.** Every connection runs with ``synchronous_commit = on``: a
  COMMIT returns after the WAL is flushed on the primary (and on synchronous standbys, if
  the cluster has any). A write is awaited until its COMMIT returned, never before.
* **Atomic checks without a global lock.** ``register_endpoint`` locks the endpoint's row
  (``SELECT ... FOR UPDATE``) before it reads the stored status, application and last
  request timestamp, and writes in the same transaction. A first registration has no row
  to lock: its INSERT is ``ON CONFLICT DO NOTHING``, and an endpoint another node inserted
  meanwhile is re-read, locked, and judged again (so two copies of one request on two
  nodes give one NEW and one REPLAYED). Revocation updates the same row, so it waits for,
  or is seen by, the registration transaction.
* **Group commit, one statement per step.** Registrations queue on the event loop; one
  writer task gathers them for ``group_commit_ms`` (or ``max_batch`` of them; while a
  commit is in flight the next batch fills), then runs the whole batch in one transaction
  on its own connection: one SELECT ... FOR UPDATE of every endpoint in the batch, one
  INSERT of the new ones and one UPDATE of the changed ones (``unnest`` of arrays, rows in
  endpoint-id order so two nodes' batches cannot deadlock), then one COMMIT for all.
  Outcomes are decided in Python in arrival order, exactly as one-by-one transactions
  would. (``servers/store/_group_commit.py`` is the SQLite writer: a thread running
  blocking sqlite3 jobs; asyncpg is a coroutine API on the loop, so the same idea is
  written here as a task, and shares its ``WriterStats``.)
* **Node changes are pushed.** A node that joins, leaves, moves or comes back from a
  lapsed lease commits a ``pg_notify('kaa_nodes', node_id)``; ``subscribe_nodes`` keeps a
  LISTEN connection and calls back, so a Bootstrap re-reads the node table at once
  instead of at its next poll.
* **Schema migrations** (``migrations_postgres.py``) are applied at open under a
  session-level advisory lock, each step in its own transaction: two processes starting at
  once apply each step once.

Connection trouble (server down, restarting, out of connections) raises StoreBusy, which
the services answer with OVERLOADED and a retry hint; other database errors raise
StoreError.

One module per job:

    store.py        PostgresStore: open and close, reads, control writes
    writer.py       the group-commit writer task and the transaction of one batch
    batch.py        a batch's decisions and its column arrays (pure: no database)
    notify.py       node change notifications (LISTEN/NOTIFY)
    migrate.py      the migration runner (the steps: servers/store/migrations_postgres.py)
    connection.py   connection settings, failures as StoreBusy or StoreError, redact_dsn
"""

from servers.store.postgres.connection import redact_dsn
from servers.store.postgres.migrate import migrate
from servers.store.postgres.notify import NODES_CHANNEL
from servers.store.postgres.store import PostgresStore

__all__ = ["PostgresStore", "NODES_CHANNEL", "redact_dsn", "migrate"]
