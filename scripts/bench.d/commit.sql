-- pgbench script for `scripts/bench oauth`: one single-row INSERT per transaction
-- (autocommit), rows the size of a refresh token's: what PostgreSQL commits per second
-- here, the ceiling of a grant that must durably spend one token and store the next.
INSERT INTO bench_commits (token_digest, grant_id) VALUES (md5(random()::text) || md5(random()::text), 'grant-0123456789abcdef0123456789');
