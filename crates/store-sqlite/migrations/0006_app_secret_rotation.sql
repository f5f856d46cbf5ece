-- A rotated app secret keeps working beside the new one until its overlap ends, so that the
-- app's instances can change over without a refused request.
ALTER TABLE apps ADD COLUMN retired_secret_digest BLOB;
ALTER TABLE apps ADD COLUMN retired_secret_expires_at INTEGER;
