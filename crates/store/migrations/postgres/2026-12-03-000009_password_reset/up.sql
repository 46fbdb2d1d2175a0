-- What a link of password_tokens is for: `set_password` (a partner's welcome, SPEC §4
-- and §6) or `reset` (forgot password, SPEC §7). A token works only at the page of its
-- purpose, and a newer link retires the older unused ones of the same purpose.
ALTER TABLE password_tokens ADD COLUMN purpose TEXT NOT NULL DEFAULT 'set_password';
