-- The send records and the event log are read and written by their key only: stored clustered
-- on it (WITHOUT ROWID), a write touches one B-tree page instead of a row's page and its key
-- index's page.
CREATE TABLE cooldowns_clustered (
    subject           TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    until             INTEGER NOT NULL,
    window_started_at INTEGER NOT NULL DEFAULT 0,
    sends             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, purpose)
) STRICT, WITHOUT ROWID;
INSERT INTO cooldowns_clustered SELECT subject, purpose, until, window_started_at, sends FROM cooldowns;
DROP TABLE cooldowns;
ALTER TABLE cooldowns_clustered RENAME TO cooldowns;

CREATE TABLE events_clustered (
    aggregate_id TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    org_id       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (aggregate_id, sequence)
) STRICT, WITHOUT ROWID;
INSERT INTO events_clustered SELECT aggregate_id, sequence, kind, payload, org_id, at FROM events;
DROP TABLE events;
ALTER TABLE events_clustered RENAME TO events;
