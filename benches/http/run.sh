#!/usr/bin/env bash
# HTTP throughput of GET /v1/search, in one run, beside (1) GET /health of the same server — the
# framework ceiling — and (2) PostgreSQL + PostGIS answering the same query on the same data
# (pgbench, GiST KNN over places + LATERAL slot lookup). Everything on loopback.
#   bash benches/http/run.sh            (SLOTS=100000 DURATION=10 CONNECTIONS=32 to change)
# Installs wrk and postgresql-15-postgis-3 when missing. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SLOTS=${SLOTS:-100000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -e /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
if [ ${#missing[@]} -gt 0 ]; then apt-get update -qq; apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; fi

cargo build --release --all-features --bin sasnp >&2
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')/release/sasnp
WORK=$(mktemp -d /tmp/sasnp-http.XXXXXX)
DB=bench_http_$$
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export SASNP_DATABASE_URL="sqlite://$WORK/sasnp.db"
"$BIN" serve --bind "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break; sleep 0.2; done
ADMIN=$("$BIN" token create --role admin --name bench-admin | tail -n1)
CPTS=$(curl -fs "127.0.0.1:$PORT/v1/territories/at?lat=47.2184&lon=-1.5536" | python3 -c 'import json,sys;print(json.load(sys.stdin)["cpts"]["id"])')
SOURCE=$(curl -fs -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"bench\",\"format\":\"smart-sl\",\"cpts\":\"$CPTS\"}" "127.0.0.1:$PORT/v1/sources" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
"$BIN" feed generate --format smart-sl --slots "$SLOTS" --places $((SLOTS / 50)) --seed 9 >"$WORK/feed.ndjson"
"$BIN" feed push --source "$SOURCE" --format smart-sl --server "http://127.0.0.1:$PORT" --token "$ADMIN" "$WORK/feed.ndjson" >"$WORK/report.json"
python3 - "$WORK" <<'PY'
import json, random, sqlite3, sys
work = sys.argv[1]
db = sqlite3.connect(f"{work}/sasnp.db")
places = db.execute("SELECT id, lat, lon FROM places").fetchall()
random.seed(5)
# patient points: at 500 random places (people live where practices are; a place's position is
# inside the region by construction, so every request is a real search, never a 422)
with open(f"{work}/points.txt", "w") as f:
    for _, lat, lon in random.sample(places, min(500, len(places))):
        f.write(f"{lat:.6f} {lon:.6f}\n")
with open(f"{work}/places.csv", "w") as f:
    for pid, lat, lon in places:
        f.write(f"{pid},{lon},{lat}\n")
with open(f"{work}/slots.csv", "w") as f:
    for sid, pid, start, status, held, appt in db.execute(
            "SELECT id, place_id, start_at, feed_status, held_until, appointment_id FROM slots"):
        free = status == "free" and held is None and appt is None
        f.write(f"{sid},{pid},{start},{'t' if free else 'f'}\n")
PY
OP=$("$BIN" token create --role operator --name bench-op | tail -n1)
NOW=$(date +%s)
echo "accepted: $(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["accepted"])' "$WORK/report.json") slots" >&2

run_wrk() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$1" "http://127.0.0.1:$PORT$2" | grep '^RESULT'; }
HEALTH_STATIC=$(run_wrk benches/http/health.lua /health)
HEALTH=$(TOKEN=$OP POINTS=$WORK/points.txt PATH_ONLY=/health run_wrk benches/http/search.lua /health)
SEARCH=$(TOKEN=$OP POINTS=$WORK/points.txt run_wrk benches/http/search.lua /v1/search)
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

psql -q "$PG_URL" -c "CREATE DATABASE $DB" >/dev/null
PGDB="${PG_URL%/*}/$DB"
psql -q "$PGDB" >/dev/null <<SQL
CREATE EXTENSION postgis;
CREATE TABLE bench_places (id bigint PRIMARY KEY, geog geography(Point, 4326));
CREATE TABLE bench_slots (id bigint PRIMARY KEY, place_id bigint NOT NULL, start_at bigint NOT NULL, free boolean NOT NULL);
CREATE TABLE bench_points (id serial PRIMARY KEY, geog geography(Point, 4326));
CREATE TEMP TABLE raw_places (id bigint, lon float8, lat float8);
\copy raw_places FROM '$WORK/places.csv' CSV
INSERT INTO bench_places SELECT id, ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography FROM raw_places;
\copy bench_slots FROM '$WORK/slots.csv' CSV
CREATE TEMP TABLE raw_points (line text);
\copy raw_points FROM '$WORK/points.txt'
INSERT INTO bench_points (geog) SELECT ST_SetSRID(ST_MakePoint(split_part(line, ' ', 2)::float8, split_part(line, ' ', 1)::float8), 4326)::geography FROM raw_points;
CREATE INDEX ON bench_places USING gist (geog);
CREATE INDEX ON bench_slots (place_id, start_at) WHERE free;
VACUUM ANALYZE;
SQL
NPOINTS=$(psql -tAq "$PGDB" -c "SELECT count(*) FROM bench_points")
PGB=$(pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -D npoints="$NPOINTS" -D now="$NOW" -f benches/http/postgis.sql "$PGDB" 2>&1)
PG_TPS=$(echo "$PGB" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n1)
PG_LAT=$(echo "$PGB" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')

field() { echo "$1" | sed -n "s/.*$2=\([0-9]*\).*/\1/p"; }
H_RPS=$(field "$HEALTH" rps); S_RPS=$(field "$SEARCH" rps)
echo "| what | requests/s | p50 | p99 | errors (socket/status) |"
echo "|---|---:|---:|---:|---:|"
echo "| GET /health, one static request | $(field "$HEALTH_STATIC" rps) | $(field "$HEALTH_STATIC" p50_us) µs | $(field "$HEALTH_STATIC" p99_us) µs | $(field "$HEALTH_STATIC" errors)/$(field "$HEALTH_STATIC" status_errors) |"
echo "| GET /health, the search's requests (framework ceiling) | $H_RPS | $(field "$HEALTH" p50_us) µs | $(field "$HEALTH" p99_us) µs | $(field "$HEALTH" errors)/$(field "$HEALTH" status_errors) |"
echo "| GET /v1/search ($SLOTS slots) | $S_RPS | $(field "$SEARCH" p50_us) µs | $(field "$SEARCH" p99_us) µs | $(field "$SEARCH" errors)/$(field "$SEARCH" status_errors) |"
echo "| PostGIS KNN + LATERAL (pgbench) | ${PG_TPS%.*} | avg ${PG_LAT} ms | – | – |"
python3 - "$H_RPS" "$S_RPS" "$PG_TPS" <<'PY'
import sys
h, s, p = (float(x) for x in sys.argv[1:])
print(f"\nsearch / ceiling = {s / h:.0%}; search / PostGIS = {s / p:.1f}x")
PY
