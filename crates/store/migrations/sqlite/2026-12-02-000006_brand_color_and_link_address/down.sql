ALTER TABLE password_tokens DROP COLUMN sent_to;
ALTER TABLE partners DROP COLUMN brand_color;
