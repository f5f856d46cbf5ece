-- A user's messages are read when they ask how their last email fared (`send_status`). They
-- were found through an index on the user (0004), which took a page at the user's place in it
-- for every message queued: a random page in every resend's commit, a fifth of the resends
-- the store could take (docs/performance.md, change 30). As for events (0011), the user's
-- row, which a send's transaction writes anyway, names the user's newest message, and each
-- message the one before it. Chained by message id, not rowid: the outbox's rowid is not a
-- column of its own, and VACUUM may renumber it.
ALTER TABLE outbox ADD COLUMN previous_for_user TEXT;
ALTER TABLE users ADD COLUMN last_message TEXT;
UPDATE outbox SET previous_for_user = chained.previous
    FROM (
        SELECT id, LAG(id) OVER (PARTITION BY user_id ORDER BY created_at, rowid) AS previous
        FROM outbox WHERE user_id IS NOT NULL
    ) AS chained
    WHERE outbox.id = chained.id;
UPDATE users SET last_message = newest.id
    FROM (
        SELECT user_id, id,
               ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY created_at DESC, rowid DESC) AS n
        FROM outbox WHERE user_id IS NOT NULL
    ) AS newest
    WHERE users.id = newest.user_id AND newest.n = 1;
DROP INDEX outbox_by_user;
