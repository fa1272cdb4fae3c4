-- 0002 owner_and_session_indexes: two indexes, no data change.
-- * requests_by_principal: one caller's requests in id (creation) order, either direction, so
--   listing them (REST GET /requests, A2A ListTasks) reads that caller's rows only instead of
--   scanning the whole table.
-- * sessions_by_activity: sessions by last change (closed_at, else created_at), for the
--   retention sweeper.

CREATE INDEX requests_by_principal ON requests (principal, id);
CREATE INDEX sessions_by_activity ON sessions (coalesce(closed_at, created_at), id);
