-- Refresh rotations in groups (admit_store::grants::rotate_refresh): one call, one
-- round trip and one commit for a group of refreshes. Each rotation of the group is
-- the single-row statement that spends a refresh token if it is unspent, unexpired,
-- of the presenting client and of a live grant, and inserts its successor (expiring
-- with the grant or at `until`, whichever is first); it answers the live grant of
-- each rotation that won, numbered from 1 in the order given.
--
-- A loop of single-row statements, not one join over the arrays: each statement
-- finds its token by primary key whatever the planner knows of the table (a join
-- planned while the table was small could scan it). The rotations run in the order
-- of their tokens' digests, so two groups that share tokens lock them in the same
-- order and cannot deadlock; a token named twice in a group is spent by its first
-- rotation, and the second sees it spent and changes nothing. Under READ COMMITTED
-- a concurrent spender blocks on the row and then re-checks `used_at IS NULL`
-- against the winner's committed version: one winner. A lock held for over 2 s ends
-- the call with an error (the whole group rolled back): its rotations then take the
-- caller's transaction one by one instead of all waiting behind the lock.
CREATE FUNCTION rotate_refresh(
    p_digests TEXT[],
    p_client_ids TEXT[],
    p_next_digests TEXT[],
    p_at TIMESTAMP,
    p_until TIMESTAMP
) RETURNS TABLE (
    i BIGINT,
    id TEXT,
    client_id TEXT,
    account_id TEXT,
    scope TEXT,
    nonce TEXT,
    auth_time TIMESTAMP,
    created_at TIMESTAMP,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
) LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
#variable_conflict use_column
DECLARE
    n BIGINT;
BEGIN
    FOR n IN SELECT u.o FROM unnest(p_digests) WITH ORDINALITY AS u (d, o) ORDER BY u.d, u.o LOOP
        RETURN QUERY
        WITH spent AS (
            UPDATE refresh_tokens AS r SET used_at = p_at
            FROM grants AS g
            WHERE r.token_digest = p_digests[n] AND r.used_at IS NULL
                AND r.expires_at > p_at AND g.id = r.grant_id
                AND g.client_id = p_client_ids[n] AND g.revoked_at IS NULL
                AND g.expires_at > p_at
            RETURNING g.id, g.client_id, g.account_id, g.scope, g.nonce, g.auth_time,
                g.created_at, g.expires_at, g.revoked_at
        ), next AS (
            INSERT INTO refresh_tokens (token_digest, grant_id, created_at, expires_at, used_at)
            SELECT p_next_digests[n], spent.id, p_at, LEAST(spent.expires_at, p_until), NULL
            FROM spent
        )
        SELECT n, spent.id, spent.client_id, spent.account_id, spent.scope,
            spent.nonce, spent.auth_time, spent.created_at, spent.expires_at,
            spent.revoked_at
        FROM spent;
    END LOOP;
END
$$;
