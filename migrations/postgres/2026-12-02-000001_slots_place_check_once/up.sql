-- The check of the places of the slots an INSERT or COPY wrote reads the written rows once.
--
-- Until now it read the statement's transition table twice: once (hashed, ≈ 0.2 s per million
-- rows) to lock the places referred to, once to look for a missing one — planned as a nested
-- loop with one index probe per written row (`LIMIT 1` made the planner count on stopping
-- early; on a good snapshot nothing is missing, so every row is probed: ≈ 0.75 s per million,
-- auto_explain). In all, ≈ 1.2 s of a million-row `COPY` (BENCHMARKS.md, "Ninth session").
-- Now one pass collects the distinct (place, source) pairs — a few thousand for a whole
-- region's feed — and both the lock and the check work on those. The guarantees are
-- those of migration 2026-12-01-000003: every place referred to is locked `FOR KEY SHARE`
-- (by id, which is unique: the same rows as by (source, id)), and a pair with no place of that
-- source raises `foreign_key_violation` naming one slot that refers to it.
CREATE OR REPLACE FUNCTION slots_check_places() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    place_ids BIGINT[];
    source_ids BIGINT[];
    missing RECORD;
    slot BIGINT;
BEGIN
    SELECT array_agg(d.place_id), array_agg(d.source_id) INTO place_ids, source_ids
        FROM (SELECT DISTINCT w.place_id, w.source_id FROM written w) d;
    IF place_ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM places p WHERE p.id = ANY (place_ids) FOR KEY SHARE;
    SELECT u.place_id, u.source_id INTO missing
        FROM unnest(place_ids, source_ids) AS u (place_id, source_id)
        WHERE NOT EXISTS (
            SELECT 1 FROM places p WHERE p.source_id = u.source_id AND p.id = u.place_id)
        LIMIT 1;
    IF FOUND THEN
        SELECT w.id INTO slot FROM written w
            WHERE w.place_id = missing.place_id AND w.source_id = missing.source_id
            LIMIT 1;
        PERFORM slots_place_missing(slot, missing.place_id, missing.source_id);
    END IF;
    RETURN NULL;
END $$;
