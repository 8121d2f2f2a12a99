DROP INDEX appointments_slot;
ALTER TABLE slots ADD CONSTRAINT slots_place_id_fkey FOREIGN KEY (place_id) REFERENCES places (id);
ALTER TABLE slots ADD CONSTRAINT slots_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources (id) ON DELETE CASCADE;
