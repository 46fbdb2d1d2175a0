ALTER TABLE password_tokens DROP COLUMN purpose;
