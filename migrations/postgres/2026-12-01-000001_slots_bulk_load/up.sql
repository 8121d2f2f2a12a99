-- A snapshot writes up to a million `slots` rows in one transaction. PostgreSQL checks a
-- foreign key with one trigger call per inserted row: measured on a 1 M-row load, the two
-- checks below took 6.2 s of 16.3 s (BENCHMARKS.md, "A 1 M-slot snapshot end to end").
-- Both references are kept by the only writer of `slots` instead (`store::slots`, one
-- transaction): `source_id` is the source row the snapshot just read and updates, and
-- `place_id` a place upserted in the same transaction; a place is deleted only when no slot
-- refers to it, and sources are never deleted. (SQLite keeps its checks: they are index
-- look-ups in process, and dropping them would mean rebuilding the table.)
ALTER TABLE slots DROP CONSTRAINT slots_source_id_fkey;
ALTER TABLE slots DROP CONSTRAINT slots_place_id_fkey;

-- Deleting a slot (one that left its feed) sets `appointments.slot_id` to NULL: without an
-- index each deleted slot scanned the whole appointments table.
CREATE INDEX appointments_slot ON appointments (slot_id);
