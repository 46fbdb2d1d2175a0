-- The test-account purge finds expired test accounts, and the mail records of their
-- addresses, without scanning the tables.
CREATE INDEX accounts_test_expiry_idx ON accounts (expires_at) WHERE account_type = 'test';
CREATE INDEX mail_messages_recipient_idx ON mail_messages (recipient);
