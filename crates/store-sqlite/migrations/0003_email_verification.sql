-- When a user proved control of their address (ZITADEL's email verification, Dfns registration).
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
