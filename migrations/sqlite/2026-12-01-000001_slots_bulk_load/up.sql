-- Deleting a slot (one that left its feed) sets `appointments.slot_id` to NULL: without an
-- index each deleted slot scanned the whole appointments table.
CREATE INDEX appointments_slot ON appointments (slot_id);
