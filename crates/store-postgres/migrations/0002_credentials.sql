-- Key credentials, tokens that act as a user, user permissions, spent single-use tokens, and
-- the credentials of server-signed apps.
ALTER TABLE users ADD COLUMN permissions TEXT NOT NULL DEFAULT '[]';

ALTER TABLE tokens ADD COLUMN user_id TEXT REFERENCES users (id);
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
CREATE INDEX tokens_by_user ON tokens (user_id, kind);

CREATE TABLE credentials (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    id         TEXT PRIMARY KEY,
    cred_id    TEXT NOT NULL, -- the client's id for the key
    user_id    TEXT NOT NULL REFERENCES users (id),
    org_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    public_key TEXT NOT NULL, -- SPKI PEM as the client sent it
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, cred_id)
);

-- Login and user-action challenges once answered, and user actions once used: a second use
-- hits the primary key. Kept until they expire, when their signatures refuse them anyway.
CREATE TABLE spent_tokens (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX spent_tokens_by_expiry ON spent_tokens (expires_at);

-- Server-signed apps (X-DFNS-APPSECRET, X-DFNS-APISIGNATURE): the secret's SHA-256, the key.
ALTER TABLE apps ADD COLUMN secret_digest BYTEA;
ALTER TABLE apps ADD COLUMN public_key TEXT;
