-- The same "nearest free slots" query answered by PostgreSQL + PostGIS: GiST KNN over places,
-- LATERAL lookup of each place's next free slots (pgbench script; :i picks a patient point).
\set i random(1, :npoints)
SELECT s.id, p.id AS place, ST_Distance(p.geog, pt.geog) AS metres, s.start_at
FROM (SELECT geog FROM bench_points WHERE id = :i) AS pt
CROSS JOIN LATERAL (
    SELECT id, geog FROM bench_places p
    WHERE ST_DWithin(p.geog, pt.geog, 30000)
    ORDER BY p.geog <-> pt.geog
    LIMIT 50
) AS p
CROSS JOIN LATERAL (
    SELECT id, start_at FROM bench_slots s
    WHERE s.place_id = p.id AND s.start_at > :now AND s.free
    ORDER BY s.start_at
    LIMIT 10
) AS s
ORDER BY metres, s.start_at
LIMIT 10;
