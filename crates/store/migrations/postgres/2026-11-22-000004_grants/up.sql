-- Login sessions, the authorizations users give to clients, and what proves them.
-- Every secret here (session cookie, code, refresh token) is stored only as its
-- SHA-256 digest.

-- A login session: the cookie's value, digested. Shared by the account pages and the
-- authorize page.
CREATE TABLE sessions (
    id_digest TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    auth_time TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX sessions_account_idx ON sessions (account_id);

-- One authorization of a client by a user: what a code, its tokens and the refresh
-- tokens that follow them belong to. Revoking it ends all of them (a replayed code,
-- a reused refresh token).
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients (id),
    account_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    auth_time TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX grants_account_idx ON grants (account_id);

CREATE TABLE auth_codes (
    code_digest TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (id),
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX auth_codes_grant_idx ON auth_codes (grant_id);

-- Refresh tokens rotate: each use spends the token and issues the next one in the
-- same grant. A spent token presented again revokes the grant.
CREATE TABLE refresh_tokens (
    token_digest TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES grants (id),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX refresh_tokens_grant_idx ON refresh_tokens (grant_id);

-- Remembered consent: the scopes a user has allowed a client.
CREATE TABLE consents (
    account_id TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (id),
    scope TEXT NOT NULL,
    granted_at TIMESTAMP NOT NULL,
    PRIMARY KEY (account_id, client_id)
);
