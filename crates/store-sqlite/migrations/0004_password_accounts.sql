-- Accounts that sign in with a password (the Singularity face): a name and the password's
-- Argon2id PHC string; per-organisation mail to unknown addresses; failed logins per address.
ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;

ALTER TABLE orgs ADD COLUMN unknown_address_mail INTEGER NOT NULL DEFAULT 1;

-- Mail to an address without an account has no user: the outbox is rebuilt with user_id
-- nullable (SQLite cannot drop NOT NULL in place).
CREATE TABLE outbox_new (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    user_id         TEXT,
    code_id         TEXT,
    template        TEXT NOT NULL,
    locale          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    sealed          BLOB,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
INSERT INTO outbox_new SELECT id, org_id, user_id, code_id, template, locale, recipient, sealed, state,
    attempts, next_attempt_at, lease_until, last_error, created_at, sent_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_by_recipient ON outbox (recipient, created_at);
CREATE INDEX outbox_by_user ON outbox (user_id, created_at);

-- Keyed by the cooldown subject of the address typed, so unknown addresses count too.
CREATE TABLE login_failures (
    subject        TEXT PRIMARY KEY,
    failures       INTEGER NOT NULL,
    window_ends_at INTEGER NOT NULL
) STRICT;
