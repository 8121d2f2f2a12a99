-- The cost of the check of a COPY's places (migration 2026-12-02-000001) on a million rows:
-- the same CSV copied into three tables shaped like `slots` (primary key, unique
-- (source_id, external_id), index on start_at): one without trigger, one with the check as
-- migration 2026-12-01-000003 wrote it (two passes over the transition table), one with the
-- check of 2026-12-02-000001 (one pass, then the distinct places only). Each is copied twice,
-- the tables emptied between rounds.
--   createdb scratch && psql -q -d scratch -f benches/pg/place_check.sql; dropdb scratch
-- (run as a superuser: `\copy` writes /tmp/place_check.csv). Read the `Time:` of each COPY.
\timing on
CREATE TABLE pl (id BIGINT PRIMARY KEY, source_id BIGINT NOT NULL, UNIQUE (source_id, id));
INSERT INTO pl SELECT g, 1 FROM generate_series(1, 20000) g;
CREATE TABLE s_none (id BIGINT PRIMARY KEY, source_id BIGINT NOT NULL, external_id TEXT NOT NULL,
    place_id BIGINT NOT NULL, start_at BIGINT NOT NULL, pad TEXT, UNIQUE (source_id, external_id));
CREATE INDEX ON s_none (start_at);
CREATE TABLE s_twice (LIKE s_none INCLUDING ALL);
CREATE TABLE s_once (LIKE s_none INCLUDING ALL);

CREATE FUNCTION check_twice() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing RECORD;
BEGIN
    PERFORM 1 FROM pl p
        WHERE (p.source_id, p.id) IN (SELECT DISTINCT w.source_id, w.place_id FROM written w)
        FOR KEY SHARE OF p;
    SELECT w.id INTO missing FROM written w
        WHERE NOT EXISTS (SELECT 1 FROM pl p WHERE p.source_id = w.source_id AND p.id = w.place_id)
        LIMIT 1;
    IF FOUND THEN RAISE EXCEPTION 'missing place'; END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER t AFTER INSERT ON s_twice REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION check_twice();

CREATE FUNCTION check_once() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    place_ids BIGINT[];
    source_ids BIGINT[];
    missing RECORD;
BEGIN
    SELECT array_agg(d.place_id), array_agg(d.source_id) INTO place_ids, source_ids
        FROM (SELECT DISTINCT w.place_id, w.source_id FROM written w) d;
    IF place_ids IS NULL THEN RETURN NULL; END IF;
    PERFORM 1 FROM pl p WHERE p.id = ANY (place_ids) FOR KEY SHARE;
    SELECT u.place_id INTO missing FROM unnest(place_ids, source_ids) AS u (place_id, source_id)
        WHERE NOT EXISTS (SELECT 1 FROM pl p WHERE p.source_id = u.source_id AND p.id = u.place_id)
        LIMIT 1;
    IF FOUND THEN RAISE EXCEPTION 'missing place'; END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER t AFTER INSERT ON s_once REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION check_once();

-- a million slots over 20 000 places, ids in key order (as the service sorts them)
\copy (SELECT g, 1, 'gen-1-' || lpad(g::text, 7, '0'), g % 20000 + 1, 1800000000::bigint + g * 60, repeat('x', 250) FROM generate_series(1, 1000000) g) TO '/tmp/place_check.csv' CSV

\echo none, twice, once
\copy s_none FROM '/tmp/place_check.csv' CSV
\copy s_twice FROM '/tmp/place_check.csv' CSV
\copy s_once FROM '/tmp/place_check.csv' CSV
TRUNCATE s_none, s_twice, s_once;
\echo once, twice, none
\copy s_once FROM '/tmp/place_check.csv' CSV
\copy s_twice FROM '/tmp/place_check.csv' CSV
\copy s_none FROM '/tmp/place_check.csv' CSV

\echo a missing place is refused by both checks
INSERT INTO s_twice VALUES (2000001, 1, 'ghost', 999999, 1, 'x');
INSERT INTO s_once VALUES (2000001, 1, 'ghost', 999999, 1, 'x');
\echo and a place of another source
INSERT INTO s_once VALUES (2000002, 2, 'crossed', 5, 1, 'x');
\! rm -f /tmp/place_check.csv
