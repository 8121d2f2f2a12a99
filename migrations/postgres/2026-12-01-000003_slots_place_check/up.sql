-- A slot's place (same source) is checked once per inserting statement instead of once per row.
--
-- PostgreSQL checks a foreign key with one cached `SELECT … FOR KEY SHARE` per row written;
-- on a million-row snapshot `COPY` that query's executor set-up was about half of the
-- backend's time (BENCHMARKS.md, "where PostgreSQL's time goes"). The key `slots_place_fkey`
-- is replaced by triggers that keep each of its guarantees:
-- - every slot inserted (INSERT, COPY, the new rows of a re-upload's upsert) refers to an
--   existing place of its own source: after the statement, its transition table is
--   anti-joined with `places` (one hash join), and a missing place raises
--   `foreign_key_violation`, which rolls the whole statement back as the key did;
-- - an UPDATE that changes a slot's `(source_id, place_id)` is checked row by row, as the key
--   did; one that leaves them alone (holds, bookings, the upsert of unchanged rows) is not
--   checked at all, as the key skipped it too (a statement-level check there would copy every
--   updated row into a transition table: a re-upload updates a million);
-- - the places referred to are locked `FOR KEY SHARE`, as the key's check locked each of them:
--   a concurrent transaction deleting one (or changing its key) waits for this one;
-- - deleting places deletes their slots (the key's `ON DELETE CASCADE`), in one statement;
-- - a place's key `(source_id, id)` never changes, and `places` cannot be truncated while
--   slots remain (the key refused both).
-- SQLite keeps its two per-row keys (cheap there).
ALTER TABLE slots DROP CONSTRAINT slots_place_fkey;

-- The one refusal of both checks below.
CREATE FUNCTION slots_place_missing(slot BIGINT, place BIGINT, source BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'slot % refers to place % of source %, which does not exist',
            slot, place, source
        USING ERRCODE = 'foreign_key_violation', TABLE = 'slots';
END $$;

CREATE FUNCTION slots_check_places() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER slots_place_inserted AFTER INSERT ON slots
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION slots_check_places();

CREATE FUNCTION slot_check_place() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM places p WHERE p.source_id = NEW.source_id AND p.id = NEW.place_id
        FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM slots_place_missing(NEW.id, NEW.place_id, NEW.source_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER slots_place_moved AFTER UPDATE OF source_id, place_id ON slots
    FOR EACH ROW
    WHEN (OLD.source_id IS DISTINCT FROM NEW.source_id OR OLD.place_id IS DISTINCT FROM NEW.place_id)
    EXECUTE FUNCTION slot_check_place();

CREATE FUNCTION places_delete_slots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM gone) THEN
        DELETE FROM slots s USING gone g WHERE s.source_id = g.source_id AND s.place_id = g.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER places_deleted AFTER DELETE ON places
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION places_delete_slots();

CREATE FUNCTION places_key_unchanged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the key (source_id, id) of place % cannot change', OLD.id
        USING ERRCODE = 'foreign_key_violation', TABLE = 'places';
END $$;

CREATE TRIGGER places_key_fixed BEFORE UPDATE OF source_id, id ON places
    FOR EACH ROW WHEN (OLD.source_id IS DISTINCT FROM NEW.source_id OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION places_key_unchanged();

CREATE FUNCTION places_truncate_alone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM slots) THEN
        RAISE EXCEPTION 'places cannot be truncated while slots remain (truncate slots with it)'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'places';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER places_truncated AFTER TRUNCATE ON places
    FOR EACH STATEMENT EXECUTE FUNCTION places_truncate_alone();
