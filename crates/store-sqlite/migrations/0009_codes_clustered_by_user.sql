-- A resend voids the user's active code and issues the next; a verification reads the newest.
-- Stored clustered on the user, both touch one page of codes, where the row of the old code,
-- the row of the new one, and their entries in the indexes by user and by active code each
-- took a page of their own. `seq` numbers a user's codes in the order they were issued (the
-- rowid gave that order before). Codes are still found by id through the unique index, whose
-- ids begin with their creation time, so its new entries go to its last page.
CREATE TABLE codes_clustered (
    user_id         TEXT NOT NULL REFERENCES users (id),
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    purpose         TEXT NOT NULL,
    hash            BLOB NOT NULL, -- HMAC-SHA256; the code itself is never stored
    state           TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO codes_clustered
    SELECT user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY created_at, rowid),
           id, purpose, hash, state, failed_attempts, created_at, expires_at
    FROM codes;
DROP TABLE codes;
ALTER TABLE codes_clustered RENAME TO codes;

-- Rule 1 as a constraint, as the unique partial index `codes_one_active` held it: at most one
-- active code per user and purpose. The check reads the page the write goes to anyway.
CREATE TRIGGER codes_one_active_insert BEFORE INSERT ON codes
WHEN NEW.state = 'active' AND EXISTS (
    SELECT 1 FROM codes WHERE user_id = NEW.user_id AND purpose = NEW.purpose AND state = 'active'
)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: one active code per user and purpose');
END;
CREATE TRIGGER codes_one_active_update BEFORE UPDATE OF state, user_id, purpose ON codes
WHEN NEW.state = 'active' AND EXISTS (
    SELECT 1 FROM codes
    WHERE user_id = NEW.user_id AND purpose = NEW.purpose AND state = 'active' AND id <> NEW.id
)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: one active code per user and purpose');
END;
