-- Access tokens revoked before their expiry (RFC 7009), by their `jti`. A row is
-- useless once the token has expired, and is purged then.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    expires_at TIMESTAMP NOT NULL
);
