DROP TRIGGER places_truncated ON places;
DROP FUNCTION places_truncate_alone();
DROP TRIGGER places_key_fixed ON places;
DROP FUNCTION places_key_unchanged();
DROP TRIGGER places_deleted ON places;
DROP FUNCTION places_delete_slots();
DROP TRIGGER slots_place_moved ON slots;
DROP FUNCTION slot_check_place();
DROP TRIGGER slots_place_inserted ON slots;
DROP FUNCTION slots_check_places();
DROP FUNCTION slots_place_missing(BIGINT, BIGINT, BIGINT);
ALTER TABLE slots ADD CONSTRAINT slots_place_fkey FOREIGN KEY (source_id, place_id)
    REFERENCES places (source_id, id) ON DELETE CASCADE;
