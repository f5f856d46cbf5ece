-- Every index on the outbox is one more page written per email queued. The outbox is listed by
-- recipient only from the command line, which reads it through; a user's messages keep their
-- index (users ask for their last email themselves).
DROP INDEX outbox_by_recipient;
