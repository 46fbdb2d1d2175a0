ALTER TABLE partners DROP COLUMN brand_color;
