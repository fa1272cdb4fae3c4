-- 0001 init: the records of the redb layout (SCHEMA_VERSION 1) as SQL tables.
-- Payloads (inputs, results, chunks, metadata) are JSON text, stored byte for byte.
-- Text keys use SQLite's BINARY collation, so they sort byte-wise like the redb keys.

CREATE TABLE agents (
    id          TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,              -- AgentSpec as JSON
    source      TEXT NOT NULL CHECK (source IN ('catalog', 'runtime')),
    removed     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    principal   TEXT NOT NULL,
    agent_id    TEXT,
    metadata    TEXT NOT NULL,              -- JSON text
    created_at  INTEGER NOT NULL,
    closed_at   INTEGER
) STRICT;

CREATE TABLE requests (
    id              TEXT PRIMARY KEY NOT NULL,
    agent_id        TEXT NOT NULL,
    capability      TEXT NOT NULL,
    input           TEXT NOT NULL,          -- JSON text
    session_id      TEXT,
    parent_id       TEXT,
    idempotency_key TEXT,
    principal       TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'error', 'canceled')),
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    result          TEXT,                   -- JSON text
    error           TEXT,
    attempts        INTEGER NOT NULL
) STRICT;

-- Non-terminal requests, in creation (id) order: recovery at start-up.
CREATE INDEX requests_active ON requests (id) WHERE state IN ('queued', 'running');
-- Terminal requests by finish time: the retention sweeper.
CREATE INDEX requests_finished ON requests (coalesce(finished_at, created_at), id)
    WHERE state IN ('done', 'error', 'canceled');
CREATE INDEX requests_by_session ON requests (session_id, id) WHERE session_id IS NOT NULL;

CREATE TABLE events (
    request_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('start', 'chunk', 'final', 'error', 'canceled')),
    data        TEXT,                       -- JSON text (chunk, final) or message (error, canceled)
    PRIMARY KEY (request_id, seq)
) STRICT;

CREATE TABLE idempotency (
    scope       TEXT PRIMARY KEY NOT NULL,
    request_id  TEXT NOT NULL,
    args_hash   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX idempotency_expiry ON idempotency (expires_at, scope);

-- Auxiliary tables (api_keys, grants, permission_requests, audit, push_configs) in one:
-- values are opaque bytes encoded by their owners.
CREATE TABLE aux (
    tbl         TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,
    PRIMARY KEY (tbl, key)
) STRICT;
