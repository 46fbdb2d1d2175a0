-- Every revocation that introspection must honour, in commit order, written by the
-- database itself so that no writer can forget it: a revoked access token
-- (revoked_tokens), a grant revoked (grants.revoked_at set) or deleted (purges).
-- The oauth replicas keep what is revoked in memory and catch up from here
-- (admit_store::revocations, admit_runtime::revocations).
CREATE TABLE revocation_log (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    logged_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX revocation_log_logged_at ON revocation_log (logged_at);

-- The triggers are deferred to commit and take one transaction-scoped advisory lock
-- before they draw a sequence number: revoking transactions commit one after the
-- other in the order of their numbers, so a reader that sees number n has also seen
-- every number below it (or it was rolled back). The lock is taken last in the
-- transaction, when it holds every other lock it needs: no deadlock.
CREATE FUNCTION revocation_log_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7262000014);
    IF TG_TABLE_NAME = 'revoked_tokens' THEN
        INSERT INTO revocation_log (kind, key, expires_at) VALUES ('token', NEW.jti, NEW.expires_at);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO revocation_log (kind, key, expires_at) VALUES ('grant', OLD.id, OLD.expires_at);
    ELSE
        INSERT INTO revocation_log (kind, key, expires_at) VALUES ('grant', NEW.id, NEW.expires_at);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER revoked_tokens_logged AFTER INSERT ON revoked_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION revocation_log_append();
CREATE CONSTRAINT TRIGGER grants_revoked_logged AFTER UPDATE ON grants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION revocation_log_append();
CREATE CONSTRAINT TRIGGER grants_deleted_logged AFTER DELETE ON grants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION revocation_log_append();
