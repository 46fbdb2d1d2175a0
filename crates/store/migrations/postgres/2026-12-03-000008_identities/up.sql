-- The social identities an account signed up with (POST /account, implicit method):
-- one row per provider and subject, so the same identity registers one account.
CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX identities_subject_key ON identities (provider, subject);
CREATE INDEX identities_account_idx ON identities (account_id);
