-- The check as migration 2026-12-01-000003 wrote it.
CREATE OR REPLACE FUNCTION slots_check_places() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing RECORD;
BEGIN
    PERFORM 1 FROM places p
        WHERE (p.source_id, p.id) IN (SELECT DISTINCT w.source_id, w.place_id FROM written w)
        FOR KEY SHARE OF p;
    SELECT w.id, w.source_id, w.place_id INTO missing FROM written w
        WHERE NOT EXISTS (
            SELECT 1 FROM places p WHERE p.source_id = w.source_id AND p.id = w.place_id)
        LIMIT 1;
    IF FOUND THEN
        PERFORM slots_place_missing(missing.id, missing.place_id, missing.source_id);
    END IF;
    RETURN NULL;
END $$;
