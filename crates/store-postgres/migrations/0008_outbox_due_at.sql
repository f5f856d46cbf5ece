-- A message is due at its next attempt while queued, and when its lease ends while being sent.
-- Ordered by that moment, the messages in flight sit behind the queue instead of in front of
-- it, so that a claim reads only the rows it takes and `next_due` reads one entry. A claim's
-- one condition is then a range of the index's first column: however stale the statistics
-- (the queue can grow from nothing to thousands between two ANALYZEs), the plan is a walk of
-- the index that stops at the limit, where before it could be a sort of the whole queue.
CREATE INDEX outbox_due_at ON outbox
    ((CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END), seq)
    WHERE state IN ('queued', 'sending');
DROP INDEX outbox_due_in_order;
-- As on SQLite: the outbox is listed by recipient only from the command line, which reads it
-- through, and every index is one more entry written for each change of a message's state.
DROP INDEX outbox_by_recipient;
