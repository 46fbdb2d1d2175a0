DROP TABLE idempotency_keys;
DROP TABLE registration_failures;
DROP TABLE memberships;
DROP TABLE password_tokens;
