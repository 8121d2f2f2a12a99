-- A slot's place belongs to the slot's source, checked by one foreign key on
-- `(source_id, place_id)` instead of two (`source_id` → sources, `place_id` → places).
--
-- Every row a snapshot writes fires one referential check per foreign key; on a million-row
-- `COPY` the two checks cost about as much as the rows themselves (BENCHMARKS.md, "one
-- composite key"). The composite key keeps every guarantee of the two (the place exists, and
-- through `places.source_id` so does the source) and adds one: a slot cannot point at a place
-- of another source. Deleting a source still deletes its places and, through them, its slots.
--
-- SQLite keeps the two keys: rebuilding `slots` there would run an implicit DELETE through
-- `holds` and `appointments`, and its checks are cheap (its 1 M-row snapshot meets its target).
ALTER TABLE places ADD CONSTRAINT places_source_id_id_key UNIQUE (source_id, id);
ALTER TABLE slots
    DROP CONSTRAINT slots_source_id_fkey,
    DROP CONSTRAINT slots_place_id_fkey,
    ADD CONSTRAINT slots_place_fkey FOREIGN KEY (source_id, place_id)
        REFERENCES places (source_id, id) ON DELETE CASCADE;
