-- Confirmations of a pending account's contacts (SPEC §3 `is_enabled=false`): the
-- link of a "confirm your address" email, or the code of a text message to a phone.
-- `id` is the id of the message that carries it: the link's token and the code are
-- derived from it by the mailer, and only `digest` is kept (the SHA-256 of a link's
-- token; for a code, an HMAC under the link key of the row and the code). Single use
-- (`used_at`, also set when a newer code replaces this one), expiring, and a code
-- answers at most a few wrong tries (`attempts`).
CREATE TABLE confirmations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    contact TEXT NOT NULL,
    digest TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE UNIQUE INDEX confirmations_digest ON confirmations (digest);
CREATE INDEX confirmations_contact ON confirmations (kind, contact);
CREATE INDEX confirmations_account ON confirmations (account_id);
