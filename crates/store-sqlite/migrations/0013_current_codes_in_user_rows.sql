-- A resend voids the user's current code and issues the next. Clustered on their user (0009),
-- a user's codes took a page at the user's place in their table, written in every resend's
-- commit beside the user's row: a third of the random pages a resend wrote (docs/
-- performance.md, change 33). The newest code of each purpose, which is the only one that can
-- be active (0010) and the only one a resend, a verification or a delivery reads, is kept in
-- the user's row instead, which those transactions write anyway. Codes it replaces, no longer
-- active and never to change again, are appended to `past_codes` in the order they are
-- replaced, each naming the user's previous one, as events are (0011); the user's row names
-- the newest. `code_ids` finds a code's user and purpose from its id (a link token names only
-- the code), appended in the order codes are issued, since ids begin with their creation time.
-- The rule of one active code per user and purpose is now the shape of the row: one place per
-- purpose, which a new code takes only once the code in it is no longer active.
CREATE TABLE code_ids (
    id      TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    purpose TEXT NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO code_ids (id, user_id, purpose) SELECT id, user_id, purpose FROM codes;

CREATE TABLE past_codes (
    entry           INTEGER PRIMARY KEY,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id),
    purpose         TEXT NOT NULL,
    hash            BLOB NOT NULL, -- HMAC-SHA256; the code itself is never stored
    state           TEXT NOT NULL CHECK (state <> 'active'),
    failed_attempts INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    previous        INTEGER -- the entry of the user's code replaced before this one
) STRICT;
ALTER TABLE users ADD COLUMN registration_code_id TEXT;
ALTER TABLE users ADD COLUMN registration_code_hash BLOB;
ALTER TABLE users ADD COLUMN registration_code_state TEXT;
ALTER TABLE users ADD COLUMN registration_code_failed_attempts INTEGER;
ALTER TABLE users ADD COLUMN registration_code_created_at INTEGER;
ALTER TABLE users ADD COLUMN registration_code_expires_at INTEGER;
ALTER TABLE users ADD COLUMN email_verification_code_id TEXT;
ALTER TABLE users ADD COLUMN email_verification_code_hash BLOB;
ALTER TABLE users ADD COLUMN email_verification_code_state TEXT;
ALTER TABLE users ADD COLUMN email_verification_code_failed_attempts INTEGER;
ALTER TABLE users ADD COLUMN email_verification_code_created_at INTEGER;
ALTER TABLE users ADD COLUMN email_verification_code_expires_at INTEGER;
ALTER TABLE users ADD COLUMN password_reset_code_id TEXT;
ALTER TABLE users ADD COLUMN password_reset_code_hash BLOB;
ALTER TABLE users ADD COLUMN password_reset_code_state TEXT;
ALTER TABLE users ADD COLUMN password_reset_code_failed_attempts INTEGER;
ALTER TABLE users ADD COLUMN password_reset_code_created_at INTEGER;
ALTER TABLE users ADD COLUMN password_reset_code_expires_at INTEGER;
ALTER TABLE users ADD COLUMN last_past_code INTEGER;

-- Each user's codes in the order they were issued (`seq`), the newest of each purpose apart.
CREATE TEMP TABLE numbered_codes AS
    SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id, purpose ORDER BY seq DESC) AS newness
    FROM codes;
-- The rules never left an older code active (0010): were one, it was replaced in effect.
INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at)
    SELECT id, user_id, purpose, hash,
           CASE state WHEN 'active' THEN 'superseded' ELSE state END,
           failed_attempts, created_at, expires_at
    FROM numbered_codes WHERE newness > 1
    ORDER BY user_id, seq;
UPDATE past_codes SET previous = chained.previous
    FROM (
        SELECT entry, LAG(entry) OVER (PARTITION BY user_id ORDER BY entry) AS previous
        FROM past_codes
    ) AS chained
    WHERE past_codes.entry = chained.entry;
UPDATE users SET last_past_code = newest.entry
    FROM (SELECT user_id, MAX(entry) AS entry FROM past_codes GROUP BY user_id) AS newest
    WHERE users.id = newest.user_id;
UPDATE users SET registration_code_id = c.id, registration_code_hash = c.hash,
        registration_code_state = c.state, registration_code_failed_attempts = c.failed_attempts,
        registration_code_created_at = c.created_at, registration_code_expires_at = c.expires_at
    FROM (SELECT * FROM numbered_codes WHERE newness = 1 AND purpose = 'registration') AS c
    WHERE users.id = c.user_id;
UPDATE users SET email_verification_code_id = c.id, email_verification_code_hash = c.hash,
        email_verification_code_state = c.state,
        email_verification_code_failed_attempts = c.failed_attempts,
        email_verification_code_created_at = c.created_at,
        email_verification_code_expires_at = c.expires_at
    FROM (SELECT * FROM numbered_codes WHERE newness = 1 AND purpose = 'email_verification') AS c
    WHERE users.id = c.user_id;
UPDATE users SET password_reset_code_id = c.id, password_reset_code_hash = c.hash,
        password_reset_code_state = c.state,
        password_reset_code_failed_attempts = c.failed_attempts,
        password_reset_code_created_at = c.created_at,
        password_reset_code_expires_at = c.expires_at
    FROM (SELECT * FROM numbered_codes WHERE newness = 1 AND purpose = 'password_reset') AS c
    WHERE users.id = c.user_id;
DROP TABLE numbered_codes;
DROP TABLE codes;

CREATE TRIGGER past_codes_are_final BEFORE UPDATE ON past_codes
BEGIN
    SELECT RAISE(ABORT, 'a replaced code does not change');
END;
-- A new code takes its purpose's place only once the code there is no longer active, and a
-- code is active only from its issue: at most one active code per user and purpose.
CREATE TRIGGER current_code_replaced_only_once_inactive
BEFORE UPDATE OF registration_code_id, email_verification_code_id, password_reset_code_id ON users
WHEN (OLD.registration_code_state = 'active' AND NEW.registration_code_id IS NOT OLD.registration_code_id)
    OR (OLD.email_verification_code_state = 'active'
        AND NEW.email_verification_code_id IS NOT OLD.email_verification_code_id)
    OR (OLD.password_reset_code_state = 'active'
        AND NEW.password_reset_code_id IS NOT OLD.password_reset_code_id)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: one active code per user and purpose');
END;
CREATE TRIGGER current_code_active_only_from_issue
BEFORE UPDATE OF registration_code_state, email_verification_code_state, password_reset_code_state
ON users
WHEN (NEW.registration_code_state = 'active' AND OLD.registration_code_state <> 'active'
        AND NEW.registration_code_id IS OLD.registration_code_id)
    OR (NEW.email_verification_code_state = 'active'
        AND OLD.email_verification_code_state <> 'active'
        AND NEW.email_verification_code_id IS OLD.email_verification_code_id)
    OR (NEW.password_reset_code_state = 'active' AND OLD.password_reset_code_state <> 'active'
        AND NEW.password_reset_code_id IS OLD.password_reset_code_id)
BEGIN
    SELECT RAISE(ABORT, 'a code is active only from its issue');
END;
