-- Set-password links (SPEC §4 and §6 step 2). Only the SHA-256 of the token is kept;
-- the token itself is derived from the email's message id by the mailer. Single use
-- (`used_at`), expiring, and a newer link of the same account retires the older ones.
-- `grant_id`: the grant a partner received with the account (SPEC §4), the one grant a
-- new password does not revoke.
CREATE TABLE password_tokens (
    token_digest TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    partner_id TEXT REFERENCES partners (id),
    grant_id TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX password_tokens_account ON password_tokens (account_id);

-- An account a partner registered or linked: the partner's identifier of the user
-- (`partner_EmployeeID`), the address it sent, how the registration came out
-- (`created` or `existing`, answered again for a retried row) and the partner's other
-- fields (a JSON object).
CREATE TABLE memberships (
    partner_id TEXT NOT NULL REFERENCES partners (id),
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    employee_id TEXT,
    email_normalized TEXT,
    outcome TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (partner_id, account_id)
);
CREATE UNIQUE INDEX memberships_employee ON memberships (partner_id, employee_id);
CREATE INDEX memberships_email ON memberships (partner_id, email_normalized);

-- Rows of user.create that failed, by the digest of the row as sent: the same row
-- sent again answers the same reasons and sends no second email; a corrected row is
-- a different row.
CREATE TABLE registration_failures (
    partner_id TEXT NOT NULL REFERENCES partners (id),
    row_digest TEXT NOT NULL,
    reasons TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (partner_id, row_digest)
);

-- Responses kept for `Idempotency-Key` replays (24 hours), with the digest of the
-- request they answered: the same key with another body is refused.
CREATE TABLE idempotency_keys (
    partner_id TEXT NOT NULL REFERENCES partners (id),
    idem_key TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (partner_id, idem_key)
);
