ALTER TABLE slots
    DROP CONSTRAINT slots_place_fkey,
    ADD CONSTRAINT slots_source_id_fkey FOREIGN KEY (source_id) REFERENCES sources (id) ON DELETE CASCADE,
    ADD CONSTRAINT slots_place_id_fkey FOREIGN KEY (place_id) REFERENCES places (id);
ALTER TABLE places DROP CONSTRAINT places_source_id_id_key;
