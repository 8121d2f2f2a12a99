DROP INDEX appointments_slot;
