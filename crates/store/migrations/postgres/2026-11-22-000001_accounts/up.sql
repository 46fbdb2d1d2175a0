CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    username TEXT,
    username_normalized TEXT,
    full_name TEXT,
    locale TEXT,
    password_hash TEXT,
    account_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP
);
CREATE UNIQUE INDEX accounts_username_key ON accounts (username_normalized);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    value_normalized TEXT NOT NULL,
    is_primary BOOLEAN NOT NULL,
    verified_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX contacts_value_key ON contacts (kind, value_normalized);
CREATE INDEX contacts_account_idx ON contacts (account_id);

-- Every email that must go out is written here in the transaction of the change
-- that causes it; a relay (or, in one process, the queue itself) takes it from here.
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    lease_until TIMESTAMP,
    deliveries INTEGER NOT NULL DEFAULT 0,
    published_at TIMESTAMP
);
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;

-- The mailer's own record of each message: what it sent, so a redelivered message
-- is not sent twice, and what failed.
CREATE TABLE mail_messages (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    next_attempt_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
