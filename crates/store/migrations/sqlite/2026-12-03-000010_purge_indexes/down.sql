DROP INDEX mail_messages_recipient_idx;
DROP INDEX accounts_test_expiry_idx;
