-- 0001 init: the records of the redb layout (SCHEMA_VERSION 1) as Postgres tables, in the
-- schema named by A2A_POSTGRES_SCHEMA (the migration runs with search_path set to it).
-- Payloads (inputs, results, chunks, metadata) are JSON text, stored byte for byte (jsonb
-- would re-format them); agent definitions are jsonb. Keys use COLLATE "C" so they sort
-- byte-wise like the redb keys, whatever the database's default collation.

CREATE TABLE agents (
    id          text COLLATE "C" PRIMARY KEY,
    spec        jsonb NOT NULL,
    source      text NOT NULL CHECK (source IN ('catalog', 'runtime')),
    removed     boolean NOT NULL,
    updated_at  bigint NOT NULL
);

CREATE TABLE sessions (
    id          text COLLATE "C" PRIMARY KEY,
    principal   text NOT NULL,
    agent_id    text,
    metadata    text NOT NULL,
    created_at  bigint NOT NULL,
    closed_at   bigint
);

-- Requests double as the job queue of a multi-replica deployment: a replica claims work with
--   SELECT id FROM requests WHERE state = 'queued' ORDER BY id
--   FOR UPDATE SKIP LOCKED LIMIT n
-- and records its claim in lease_owner / lease_expires_at (milliseconds since the epoch);
-- expired leases of running requests are found through requests_lease. The store's
-- PutRequest never touches the lease columns.
CREATE TABLE requests (
    id               text COLLATE "C" PRIMARY KEY,
    agent_id         text NOT NULL,
    capability       text NOT NULL,
    input            text NOT NULL,
    session_id       text COLLATE "C",
    parent_id        text,
    idempotency_key  text,
    principal        text NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'error', 'canceled')),
    created_at       bigint NOT NULL,
    started_at       bigint,
    finished_at      bigint,
    result           text,
    error            text,
    attempts         integer NOT NULL,
    lease_owner      text,
    lease_expires_at bigint
);

-- Non-terminal requests in creation (id) order: recovery, and the queue scan above.
CREATE INDEX requests_active ON requests (id) WHERE state IN ('queued', 'running');
-- Running requests by lease expiry: taking over the work of a replica that died.
CREATE INDEX requests_lease ON requests (lease_expires_at) WHERE state = 'running';
-- Terminal requests by finish time: the retention sweeper.
CREATE INDEX requests_finished ON requests ((coalesce(finished_at, created_at)), id)
    WHERE state IN ('done', 'error', 'canceled');
CREATE INDEX requests_by_session ON requests (session_id, id) WHERE session_id IS NOT NULL;

CREATE TABLE events (
    request_id  text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    ts          bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('start', 'chunk', 'final', 'error', 'canceled')),
    data        text,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE idempotency (
    scope       text COLLATE "C" PRIMARY KEY,
    request_id  text NOT NULL,
    args_hash   text NOT NULL,
    expires_at  bigint NOT NULL
);

CREATE INDEX idempotency_expiry ON idempotency (expires_at, scope);

-- Auxiliary tables (api_keys, grants, permission_requests, audit, push_configs) in one:
-- values are opaque bytes encoded by their owners.
CREATE TABLE aux (
    tbl         text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    value       bytea NOT NULL,
    PRIMARY KEY (tbl, key)
);
