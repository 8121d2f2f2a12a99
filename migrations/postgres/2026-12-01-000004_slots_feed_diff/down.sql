-- The marks set by the up migration are read the same way by the code before it (a row
-- marked `removed_from_feed_at` is neither offered nor held; a past row never was): only the
-- fingerprint goes.
ALTER TABLE slots DROP COLUMN feed_hash;
