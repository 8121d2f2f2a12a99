-- What a feed last said of a row, as a fingerprint (computed by the service, see
-- `store::slots::feed_hash`): a snapshot compares it and writes only the rows that changed.
-- NULL (rows written before this migration) reads as "changed": each source's rows are
-- written once more by its next snapshot.
ALTER TABLE slots ADD COLUMN feed_hash BIGINT;

-- Every row that has left its feed is now marked `removed_from_feed_at`, whatever its start:
-- a snapshot no longer rewrites the rows it holds unchanged, so the rows it does not hold can
-- no longer be told by a `snapshot_seq` older than their source's. Until now only held or
-- booked future rows were marked; the others that left before this migration (history) are
-- marked with their source's last success, the latest moment they can have left.
UPDATE slots SET removed_from_feed_at = COALESCE(s.last_success_at, 0)
FROM sources s
WHERE s.id = slots.source_id
  AND slots.removed_from_feed_at IS NULL
  AND slots.snapshot_seq < s.snapshot_seq;
