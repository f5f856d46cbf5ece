-- A resend voids the user's current code and issues the next. Each did so in `codes`: an update
-- of the old code that could not stay on its page's chain (its `state` is in the predicate of
-- `codes_one_active`, so every index took a new entry), then an insert into the same three
-- indexes and a check of the foreign key, beside the write of the user's row the transaction
-- makes anyway (docs/performance.md, change 43). The newest code of each purpose, which is the
-- only one a resend, a verification or a delivery reads, is kept in the user's row instead.
-- Codes it replaces, no longer active and never to change again, are appended to `past_codes`,
-- each naming the user's previous one, the user's row the newest; `code_ids` finds a code's
-- user and purpose from its id (a link token names only the code). Neither has a foreign key:
-- both are written only in the statement that writes the user's row, which holds its lock, and
-- users are never deleted. The rule of one active code per user and purpose becomes the shape
-- of the row: one place per purpose, which a new code takes only once the code in it is no
-- longer active.
CREATE TABLE code_ids (
    id      TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL
);
INSERT INTO code_ids (id, user_id, purpose) SELECT id, user_id, purpose FROM codes;

CREATE TABLE past_codes (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    hash            BYTEA NOT NULL, -- HMAC-SHA256; the code itself is never stored
    state           TEXT NOT NULL CHECK (state <> 'active'),
    failed_attempts BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    previous        TEXT -- the id of the user's code replaced before this one
);
ALTER TABLE users
    ADD COLUMN registration_code_id TEXT,
    ADD COLUMN registration_code_hash BYTEA,
    ADD COLUMN registration_code_state TEXT,
    ADD COLUMN registration_code_failed_attempts BIGINT,
    ADD COLUMN registration_code_created_at BIGINT,
    ADD COLUMN registration_code_expires_at BIGINT,
    ADD COLUMN email_verification_code_id TEXT,
    ADD COLUMN email_verification_code_hash BYTEA,
    ADD COLUMN email_verification_code_state TEXT,
    ADD COLUMN email_verification_code_failed_attempts BIGINT,
    ADD COLUMN email_verification_code_created_at BIGINT,
    ADD COLUMN email_verification_code_expires_at BIGINT,
    ADD COLUMN password_reset_code_id TEXT,
    ADD COLUMN password_reset_code_hash BYTEA,
    ADD COLUMN password_reset_code_state TEXT,
    ADD COLUMN password_reset_code_failed_attempts BIGINT,
    ADD COLUMN password_reset_code_created_at BIGINT,
    ADD COLUMN password_reset_code_expires_at BIGINT,
    ADD COLUMN last_past_code TEXT;

-- The current code of each user and purpose was the active one, or the newest when none was
-- (instances' clocks may disagree on which is newer; the active one is the current one).
CREATE TEMP TABLE numbered_codes ON COMMIT DROP AS
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY user_id, purpose ORDER BY state = 'active' DESC, created_at DESC, seq DESC
    ) AS newness
    FROM codes;
-- At most one code of a user and purpose was active (codes_one_active): the rest are final.
INSERT INTO past_codes (id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at, previous)
    SELECT id, user_id, purpose, hash, state, failed_attempts, created_at, expires_at,
           LAG(id) OVER (PARTITION BY user_id ORDER BY created_at, seq)
    FROM numbered_codes WHERE newness > 1;
UPDATE users SET last_past_code = newest.id
    FROM (
        SELECT DISTINCT ON (user_id) user_id, id FROM numbered_codes
        WHERE newness > 1 ORDER BY user_id, created_at DESC, seq DESC
    ) AS newest
    WHERE users.id = newest.user_id;
UPDATE users SET registration_code_id = c.id, registration_code_hash = c.hash,
        registration_code_state = c.state, registration_code_failed_attempts = c.failed_attempts,
        registration_code_created_at = c.created_at, registration_code_expires_at = c.expires_at
    FROM numbered_codes c
    WHERE users.id = c.user_id AND c.newness = 1 AND c.purpose = 'registration';
UPDATE users SET email_verification_code_id = c.id, email_verification_code_hash = c.hash,
        email_verification_code_state = c.state,
        email_verification_code_failed_attempts = c.failed_attempts,
        email_verification_code_created_at = c.created_at,
        email_verification_code_expires_at = c.expires_at
    FROM numbered_codes c
    WHERE users.id = c.user_id AND c.newness = 1 AND c.purpose = 'email_verification';
UPDATE users SET password_reset_code_id = c.id, password_reset_code_hash = c.hash,
        password_reset_code_state = c.state,
        password_reset_code_failed_attempts = c.failed_attempts,
        password_reset_code_created_at = c.created_at,
        password_reset_code_expires_at = c.expires_at
    FROM numbered_codes c
    WHERE users.id = c.user_id AND c.newness = 1 AND c.purpose = 'password_reset';
DROP TABLE codes;

-- Raises the error its trigger names: `TG_ARGV[0]` the SQLSTATE, `TG_ARGV[1]` the message.
CREATE FUNCTION enroll_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = TG_ARGV[0], MESSAGE = TG_ARGV[1];
END
$$;
CREATE TRIGGER past_codes_are_final BEFORE UPDATE ON past_codes
    FOR EACH ROW EXECUTE FUNCTION enroll_refuse('23514', 'a replaced code does not change');
-- A new code takes its purpose's place only from a code no longer active, or from one the same
-- write appends to the past codes (which are never active: a resend voids the code it replaces
-- and takes its place in one write); and a code is active only from its issue. So at most one
-- code per user and purpose is active. The conditions are the triggers' own, so a write that
-- keeps to the rule calls no function.
CREATE TRIGGER current_code_replaced_only_once_inactive
    BEFORE UPDATE OF registration_code_id, email_verification_code_id, password_reset_code_id
    ON users FOR EACH ROW
    WHEN (NEW.last_past_code IS NOT DISTINCT FROM OLD.last_past_code
        AND ((OLD.registration_code_state = 'active'
                AND NEW.registration_code_id IS DISTINCT FROM OLD.registration_code_id)
            OR (OLD.email_verification_code_state = 'active'
                AND NEW.email_verification_code_id IS DISTINCT FROM OLD.email_verification_code_id)
            OR (OLD.password_reset_code_state = 'active'
                AND NEW.password_reset_code_id IS DISTINCT FROM OLD.password_reset_code_id)))
    EXECUTE FUNCTION enroll_refuse('23505', 'one active code per user and purpose');
CREATE TRIGGER current_code_active_only_from_issue
    BEFORE UPDATE OF registration_code_state, email_verification_code_state,
        password_reset_code_state
    ON users FOR EACH ROW
    WHEN ((NEW.registration_code_state = 'active' AND OLD.registration_code_state <> 'active'
            AND NEW.registration_code_id IS NOT DISTINCT FROM OLD.registration_code_id)
        OR (NEW.email_verification_code_state = 'active'
            AND OLD.email_verification_code_state <> 'active'
            AND NEW.email_verification_code_id IS NOT DISTINCT FROM OLD.email_verification_code_id)
        OR (NEW.password_reset_code_state = 'active'
            AND OLD.password_reset_code_state <> 'active'
            AND NEW.password_reset_code_id IS NOT DISTINCT FROM OLD.password_reset_code_id))
    EXECUTE FUNCTION enroll_refuse('23514', 'a code is active only from its issue');

-- Every resend and verification writes its user's row, now a few hundred bytes: room on each
-- page for the new versions lets them stay there (heap-only), where a full page sends each to
-- another page and a new entry into both of the table's indexes. Pages written from now on
-- keep a quarter free.
ALTER TABLE users SET (fillfactor = 75);
