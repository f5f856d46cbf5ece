-- Key credentials, tokens that act as a user, user permissions, spent single-use tokens, and
-- the credentials of server-signed apps.
ALTER TABLE users ADD COLUMN permissions TEXT NOT NULL DEFAULT '[]';

ALTER TABLE tokens ADD COLUMN user_id TEXT REFERENCES users (id);
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;
CREATE INDEX tokens_by_user ON tokens (user_id, kind);

CREATE TABLE credentials (
    id         TEXT PRIMARY KEY,
    cred_id    TEXT NOT NULL, -- the client's id for the key
    user_id    TEXT NOT NULL REFERENCES users (id),
    org_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    public_key TEXT NOT NULL, -- SPKI PEM as the client sent it
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, cred_id)
) STRICT;

-- Login and user-action challenges once answered, and user actions once used: a second use
-- hits the primary key. Kept until they expire, when their signatures refuse them anyway.
CREATE TABLE spent_tokens (
    id         TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX spent_tokens_by_expiry ON spent_tokens (expires_at);

-- Server-signed apps (X-DFNS-APPSECRET, X-DFNS-APISIGNATURE): the secret's SHA-256, the key.
ALTER TABLE apps ADD COLUMN secret_digest BLOB;
ALTER TABLE apps ADD COLUMN public_key TEXT;
