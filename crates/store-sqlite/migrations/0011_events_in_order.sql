-- Every resend appends an event. Clustered on its user (0007), each event went to that user's
-- own page of the log, which filled and split every few rows: about a quarter of the resends
-- the store could take (docs/performance.md, change 28). Events are appended in the order they
-- happen instead, and a user's events are found without an index on the user, which would
-- write a page of its own per event again: the user's row, which every event's transaction
-- writes anyway, names the user's newest event, and each event the one before it.
CREATE TABLE events_in_order (
    id           INTEGER PRIMARY KEY,
    aggregate_id TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    org_id       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    previous     INTEGER
) STRICT;
-- Each user's events together and in their order: a chain in rowid order (every link points
-- to an earlier event, as for those appended from now on) then follows their sequence.
INSERT INTO events_in_order (aggregate_id, sequence, kind, payload, org_id, at)
    SELECT aggregate_id, sequence, kind, payload, org_id, at FROM events
    ORDER BY aggregate_id, sequence;
UPDATE events_in_order SET previous = chained.previous
    FROM (
        SELECT id, LAG(id) OVER (PARTITION BY aggregate_id ORDER BY id) AS previous
        FROM events_in_order
    ) AS chained
    WHERE events_in_order.id = chained.id;
ALTER TABLE users ADD COLUMN last_event INTEGER;
UPDATE users SET last_event = newest.id
    FROM (SELECT aggregate_id, MAX(id) AS id FROM events_in_order GROUP BY aggregate_id) AS newest
    WHERE users.id = newest.aggregate_id;
DROP TABLE events;
ALTER TABLE events_in_order RENAME TO events;
