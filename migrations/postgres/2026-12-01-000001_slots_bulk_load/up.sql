-- Deleting a slot (one that left its feed) sets `appointments.slot_id` to NULL: without an
-- index each deleted slot scanned the whole appointments table.
--
-- Considered and not done: dropping the two foreign keys of `slots` (their per-row checks
-- took 6.2 s of a 16.3 s 1 M-row load, BENCHMARKS.md). The database keeps checking them: a
-- snapshot's speed is not worth references that only the application guarantees.
CREATE INDEX appointments_slot ON appointments (slot_id);
