-- Every revocation that introspection must honour, in commit order (SQLite has one
-- writer at a time), written by triggers so that no writer can forget it: a revoked
-- access token, a grant revoked or deleted. See the PostgreSQL migration.
CREATE TABLE revocation_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    logged_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX revocation_log_logged_at ON revocation_log (logged_at);

CREATE TRIGGER revoked_tokens_logged AFTER INSERT ON revoked_tokens
BEGIN
    INSERT INTO revocation_log (kind, key, expires_at) VALUES ('token', NEW.jti, NEW.expires_at);
END;
CREATE TRIGGER grants_revoked_logged AFTER UPDATE OF revoked_at ON grants
    WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT INTO revocation_log (kind, key, expires_at) VALUES ('grant', NEW.id, NEW.expires_at);
END;
CREATE TRIGGER grants_deleted_logged AFTER DELETE ON grants
BEGIN
    INSERT INTO revocation_log (kind, key, expires_at) VALUES ('grant', OLD.id, OLD.expires_at);
END;
