-- Times are milliseconds since the Unix epoch (UTC), from the server's clock.
CREATE TABLE orgs (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    default_locale TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    name        TEXT NOT NULL,
    permissions TEXT NOT NULL, -- JSON array of permission names
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (id),
    kind        TEXT NOT NULL,
    digest      BYTEA NOT NULL UNIQUE, -- SHA-256 of the token; the token itself is never stored
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    username   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,
    locale     TEXT,
    sequence   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT users_username_unique UNIQUE (org_id, username)
);

CREATE TABLE codes (
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order, for ties in time
    user_id         TEXT NOT NULL REFERENCES users (id),
    purpose         TEXT NOT NULL,
    hash            BYTEA NOT NULL, -- HMAC-SHA256; the code itself is never stored
    state           TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX codes_by_user ON codes (user_id, purpose, created_at, seq);
-- Rule 1 as a constraint: at most one active code per user and purpose.
CREATE UNIQUE INDEX codes_one_active ON codes (user_id, purpose) WHERE state = 'active';

-- Keyed by a keyed digest of (org, address), so unknown addresses have cooldowns too and the
-- table holds no addresses.
CREATE TABLE cooldowns (
    subject TEXT NOT NULL,
    purpose TEXT NOT NULL,
    until   BIGINT NOT NULL,
    PRIMARY KEY (subject, purpose)
);

CREATE TABLE events (
    aggregate_id TEXT NOT NULL,
    sequence     BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    org_id       TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (aggregate_id, sequence)
);

CREATE TABLE nonces (
    key     TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX nonces_by_age ON nonces (seen_at);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order, for ties in time
    org_id          TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    code_id         TEXT,
    template        TEXT NOT NULL,
    locale          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    sealed          BYTEA, -- encrypted secrets of the message; erased once finished
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_by_recipient ON outbox (recipient, created_at);
CREATE INDEX outbox_by_age ON outbox (created_at, seq);

CREATE TABLE captured_mail (
    id         TEXT PRIMARY KEY,
    seq        BIGINT GENERATED ALWAYS AS IDENTITY, -- insertion order, for ties in time
    message_id TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    text_body  TEXT NOT NULL,
    html_body  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX captured_by_recipient ON captured_mail (recipient, created_at);
