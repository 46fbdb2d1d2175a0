-- The partner's brand colour (#rrggbb), used for links and buttons in its emails.
ALTER TABLE partners ADD COLUMN brand_color TEXT;
