-- The partner's brand colour (#rrggbb), used for links and buttons in its emails.
ALTER TABLE partners ADD COLUMN brand_color TEXT;
-- The address a set-password link was sent to: using the link confirms it.
ALTER TABLE password_tokens ADD COLUMN sent_to TEXT;
