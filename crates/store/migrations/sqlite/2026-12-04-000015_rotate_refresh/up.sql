-- PostgreSQL only: the function that rotates refresh tokens in groups. SQLite has one
-- writer at a time and rotates each refresh in its own transaction. This migration
-- keeps the two backends at the same version.
SELECT 1;
