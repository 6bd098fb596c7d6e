"""The SQLite schema of the registry store, as ordered, versioned migration steps.

The database's ``PRAGMA user_version`` is the last step applied (0: none).
``servers.store.sqlite.migrate`` applies the missing steps at open, in order, in one write
transaction: ``BEGIN IMMEDIATE`` holds the database's write lock, so two processes
starting at once apply each step exactly once (the second waits, then finds them applied),
and a step that fails leaves the database as it was. Never edit a released step: add the
next one. A step's statements are separated by ``;``, which no statement may contain.

Step 1 is the schema as databases got it whole before there were steps (they are at
version 1 already), ``IF NOT EXISTS`` and all.
"""

from __future__ import annotations

from servers.store._migrations import Migration

__all__ = ["MIGRATIONS", "LATEST"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        """
CREATE TABLE IF NOT EXISTS applications (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    config BLOB NOT NULL,
    config_version INTEGER NOT NULL,
    topics TEXT NOT NULL,
    balancing TEXT NOT NULL,
    cached_signature INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sdk_tokens (
    id INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    application TEXT NOT NULL REFERENCES applications(token),
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sdk_tokens_application ON sdk_tokens(application);
CREATE TABLE IF NOT EXISTS endpoints (
    id INTEGER PRIMARY KEY,
    endpoint_id BLOB NOT NULL,
    public_key BLOB NOT NULL,
    sdk_token_hash BLOB NOT NULL,
    application TEXT NOT NULL,
    profile BLOB NOT NULL,
    profile_hash BLOB NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    registration_status TEXT NOT NULL,
    last_request_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS endpoints_endpoint_id ON endpoints(endpoint_id);
CREATE INDEX IF NOT EXISTS endpoints_application ON endpoints(application, id);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    node_id TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    kex_public_key BLOB NOT NULL,
    priority INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    load INTEGER NOT NULL,
    lease_expires_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    renewed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
""",
    ),
    Migration(
        2,
        "SDK tokens can be revoked",
        "ALTER TABLE sdk_tokens ADD COLUMN revoked_ms INTEGER",
    ),
    Migration(
        3,
        "admin console: credentials; search indexes",
        """
CREATE TABLE admin_credentials (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX admin_credentials_secret ON admin_credentials(secret_hash);
CREATE INDEX endpoints_status ON endpoints(status, id);
CREATE INDEX audit_log_subject ON audit_log(subject, id)
""",
    ),
    Migration(
        4,
        "node leases name their holder",
        "ALTER TABLE nodes ADD COLUMN holder TEXT NOT NULL DEFAULT ''",
    ),
)

LATEST = MIGRATIONS[-1].version
