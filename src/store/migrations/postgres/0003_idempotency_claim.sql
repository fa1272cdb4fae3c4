-- 0003 idempotency_claim: an invocation claims its idempotency key in the same transaction
-- that stores its request. Two replicas that accept the same key at the same moment both
-- find no record and both try to insert one; the loser's insert meets the winner's row and
-- calls idempotency_taken(), which fails its whole transaction (no second request is stored),
-- and the replica answers with the winner's request instead. An expired record is replaced.

CREATE FUNCTION idempotency_taken(scope text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'idempotency scope % is held by another request', scope
        USING ERRCODE = 'A2A02';
END
$$;
