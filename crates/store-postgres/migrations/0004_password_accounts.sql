-- Accounts that sign in with a password (the Singularity face): a name and the password's
-- Argon2id PHC string; per-organisation mail to unknown addresses; failed logins per address.
ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT; -- PHC string; the password itself is never stored

-- Whether a password reset for an address without an account mails that address.
ALTER TABLE orgs ADD COLUMN unknown_address_mail BOOLEAN NOT NULL DEFAULT TRUE;

-- Mail to an address without an account has no user.
ALTER TABLE outbox ALTER COLUMN user_id DROP NOT NULL;
CREATE INDEX outbox_by_user ON outbox (user_id, created_at);

-- Keyed by the cooldown subject of the address typed, so unknown addresses count too.
CREATE TABLE login_failures (
    subject        TEXT PRIMARY KEY,
    failures       BIGINT NOT NULL,
    window_ends_at BIGINT NOT NULL
);
