DROP TRIGGER grants_deleted_logged;
DROP TRIGGER grants_revoked_logged;
DROP TRIGGER revoked_tokens_logged;
DROP TABLE revocation_log;
