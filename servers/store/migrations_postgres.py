"""The PostgreSQL schema of the registry store, as ordered, versioned migration steps.

Each step runs once, in its own transaction, and records its version in
``kaa_schema_migrations``. ``servers.store.postgres.migrate`` applies the missing steps at
open under a session-level advisory lock (``pg_advisory_lock``), taken before the first
step and released after the last, so two processes starting at once apply each step
exactly once (the second waits, then finds it applied). Never edit a released step: add
the next one.

The endpoint table is keyed by ``endpoint_id`` (the SHA-1 of the key), the column a
future Citus deployment distributes on (docs/deploy.md); ``seq`` orders listings oldest
first.
"""

from __future__ import annotations

from servers.store._migrations import Migration

__all__ = ["Migration", "MIGRATIONS", "ADVISORY_LOCK_KEY", "LATEST"]

#: pg_advisory_lock key of the migration run ("kaa-wire" as a number; any constant
#: unlikely to collide with another application's lock on the same database).
ADVISORY_LOCK_KEY = 0x6B61_612D_7769_7265


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        """
CREATE TABLE applications (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    token text PRIMARY KEY,
    name text NOT NULL,
    config bytea NOT NULL,
    config_version bigint NOT NULL,
    topics jsonb NOT NULL,
    balancing text NOT NULL,
    cached_signature boolean NOT NULL,
    created_ms bigint NOT NULL
);
CREATE TABLE sdk_tokens (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    token_hash bytea PRIMARY KEY,
    application text NOT NULL REFERENCES applications (token),
    created_ms bigint NOT NULL
);
CREATE INDEX sdk_tokens_application ON sdk_tokens (application, seq);
CREATE TABLE endpoints (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    endpoint_id bytea PRIMARY KEY,
    public_key bytea NOT NULL,
    sdk_token_hash bytea NOT NULL,
    application text NOT NULL,
    profile bytea NOT NULL,
    profile_hash bytea NOT NULL,
    first_seen_ms bigint NOT NULL,
    last_seen_ms bigint NOT NULL,
    status text NOT NULL,
    registration_status text NOT NULL,
    last_request_ms bigint NOT NULL,
    revoked_ms bigint
);
CREATE INDEX endpoints_seq ON endpoints (seq);
CREATE INDEX endpoints_application ON endpoints (application, seq);
CREATE TABLE nodes (
    node_id text PRIMARY KEY,
    host text NOT NULL,
    port integer NOT NULL,
    kex_public_key bytea NOT NULL,
    priority integer NOT NULL,
    weight integer NOT NULL,
    load bigint NOT NULL,
    lease_expires_ms bigint NOT NULL,
    started_ms bigint NOT NULL,
    renewed_ms bigint NOT NULL
);
CREATE TABLE audit_log (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms bigint NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    detail text NOT NULL
);
""",
    ),
    Migration(
        2, "SDK tokens can be revoked", "ALTER TABLE sdk_tokens ADD COLUMN revoked_ms bigint"
    ),
    Migration(
        3,
        "admin console: credentials; search indexes",
        """
CREATE TABLE admin_credentials (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    name text PRIMARY KEY,
    kind text NOT NULL,
    role text NOT NULL,
    secret_hash text NOT NULL,
    created_ms bigint NOT NULL,
    revoked_ms bigint
);
CREATE INDEX admin_credentials_secret ON admin_credentials (secret_hash);
CREATE INDEX endpoints_status ON endpoints (status, seq);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
""",
    ),
    Migration(
        4,
        "node leases name their holder",
        "ALTER TABLE nodes ADD COLUMN holder text NOT NULL DEFAULT ''",
    ),
    Migration(
        5,
        "admin console: a profile as JSON, or NULL, for the JSON field search",
        # A profile is bytes a device chose: invalid UTF-8, not JSON, a \u0000 escape, a
        # number out of numeric's range or nesting past the stack limit all raise in the
        # cast, and a search must not fail on them (PostgreSQL 15 has no
        # pg_input_is_valid). The exception block costs a subtransaction per call (about
        # 8 µs with the cast): the search examines a bounded window (docs/console.md).
        # PARALLEL UNSAFE (the default, said here): a parallel worker cannot start the
        # subtransaction ("cannot start subtransactions during a parallel operation").
        """
CREATE FUNCTION kaa_profile_json(profile bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL UNSAFE AS $body$
BEGIN
    RETURN convert_from(profile, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$body$
""",
    ),
)

LATEST = MIGRATIONS[-1].version
