-- Dead letters of the embedded queue (production keeps them in the Redis stream
-- `{prefix}:mail:dead`): the original message as it was queued, and why it died, so
-- that `admit mail dead retry` can put it back.
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX dead_letters_created_idx ON dead_letters (created_at);
-- The last resend of a welcome (set-password) email per recipient (normalized
-- address), for the resend cooldown.
CREATE TABLE mail_resends (
    recipient TEXT PRIMARY KEY,
    resent_at TIMESTAMP NOT NULL
);
