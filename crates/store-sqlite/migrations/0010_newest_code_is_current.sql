-- A code is active from its issue until it is used, voided, exhausted or expires, and a code of
-- a purpose is issued only once the one before it is no longer active: so the active code of a
-- user and purpose, if there is one, is the newest of that purpose. The lookups of the current
-- code read that newest one, walking the user's codes back from the last, and the rule of one
-- active code checks it alone, where both read every code the user ever had: resends and
-- verifications slowed as a user's codes piled up. What makes the newest the only candidate is
-- now part of the rule: an active code is inserted as the user's newest, and a code never
-- becomes active again.
DROP TRIGGER codes_one_active_insert;
DROP TRIGGER codes_one_active_update;
CREATE TRIGGER codes_one_active_insert BEFORE INSERT ON codes
WHEN NEW.state = 'active' AND (
    NEW.seq <= (SELECT MAX(seq) FROM codes WHERE user_id = NEW.user_id)
    OR (SELECT state FROM codes WHERE user_id = NEW.user_id AND purpose = NEW.purpose
        ORDER BY seq DESC LIMIT 1) = 'active'
)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: one active code per user and purpose, the newest');
END;
CREATE TRIGGER codes_active_only_from_issue BEFORE UPDATE OF state, user_id, purpose ON codes
WHEN NEW.state = 'active'
    AND (OLD.state <> 'active' OR NEW.user_id <> OLD.user_id OR NEW.purpose <> OLD.purpose)
BEGIN
    SELECT RAISE(ABORT, 'a code is active only from its issue');
END;
