DROP TRIGGER grants_deleted_logged ON grants;
DROP TRIGGER grants_revoked_logged ON grants;
DROP TRIGGER revoked_tokens_logged ON revoked_tokens;
DROP FUNCTION revocation_log_append();
DROP TABLE revocation_log;
