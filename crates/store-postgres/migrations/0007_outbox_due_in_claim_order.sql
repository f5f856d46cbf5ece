-- Claims take the due messages in (next_attempt_at, seq) order. The index held only
-- next_attempt_at, so each claim read every queued or leased message and sorted them to take
-- the first few: under load, with thousands queued, the claims alone kept PostgreSQL busy and
-- delivery fell behind. In claim order, a claim reads its few rows and stops.
CREATE INDEX outbox_due_in_order ON outbox (next_attempt_at, seq) WHERE state IN ('queued', 'sending');
DROP INDEX outbox_due;
