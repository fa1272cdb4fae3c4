-- 0002 cluster: what several replicas sharing one database need.
--
-- * cancel_requested: a replica asked to cancel a request that another replica owns; the owner
--   sees the reason when it renews its leases and cancels the job itself (only the owner writes
--   a request's state).
-- * requests_owner: the renewal (UPDATE ... WHERE lease_owner = $me AND state active).
-- * leader_leases: named leaderships with an expiry (scheduled backups and retention run on one
--   replica at a time).
-- * lease_lost(): raised by the request upsert when the writer no longer owns the request (its
--   lease ran out and another replica took the work over), so the stale write fails as a whole
--   instead of overwriting the new owner's state.

ALTER TABLE requests ADD COLUMN cancel_requested text;

CREATE INDEX requests_owner ON requests (lease_owner) WHERE state IN ('queued', 'running');

CREATE TABLE leader_leases (
    name        text COLLATE "C" PRIMARY KEY,
    owner       text NOT NULL,
    expires_at  bigint NOT NULL
);

CREATE FUNCTION lease_lost(request_id text, writer text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'request % is leased to another replica; % lost its lease', request_id, writer
        USING ERRCODE = 'A2A01';
END
$$;
