-- Emails of one purpose to one address are capped per window (24 h by default): the window's
-- start and its count sit beside the cooldown. Rows from before start no window.
ALTER TABLE cooldowns ADD COLUMN window_started_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cooldowns ADD COLUMN sends INTEGER NOT NULL DEFAULT 0;
