#!/usr/bin/env bash
# Server instructions per request (valgrind's callgrind), for comparing changes to the request
# path whatever else the machine is doing. Builds a 100 000-slot SQLite database through the
# API (as run.sh does), then for each endpoint runs the server under callgrind, sends 300
# warm-up requests, switches instrumentation on, sends N keep-alive requests one at a time over
# 500 patient points, and prints instructions per request.
#   bash benches/http/callgrind.sh            (N=2000 SLOTS=100000 to change)
# Installs valgrind when missing. Keeps its files in a temporary directory; with KEEP=dir the
# callgrind outputs are copied there (for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-2000}
SLOTS=${SLOTS:-100000}
command -v valgrind >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
# BIN=path measures an already built binary (e.g. the one before a change, kept aside).
if [ -z "${BIN:-}" ]; then
  cargo build --release --all-features --bin sasnp >&2
  BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')/release/sasnp
fi
W=$(mktemp -d /tmp/sasnp-callgrind.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
export SASNP_DATABASE_URL="sqlite://$W/sasnp.db"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 600); do curl -fs "127.0.0.1:$1/ready" >/dev/null 2>&1 && return; sleep 0.2; done; echo "server not ready" >&2; exit 1; }

PORT=$(free_port)
"$BIN" serve --bind "127.0.0.1:$PORT" >"$W/server.log" 2>&1 & PID=$!
wait_ready "$PORT"
ADMIN=$("$BIN" token create --role admin --name bench-admin | tail -n1)
CPTS=$(curl -fs "127.0.0.1:$PORT/v1/territories/at?lat=47.2184&lon=-1.5536" | python3 -c 'import json,sys;print(json.load(sys.stdin)["cpts"]["id"])')
SOURCE=$(curl -fs -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"bench\",\"format\":\"smart-sl\",\"cpts\":\"$CPTS\"}" "127.0.0.1:$PORT/v1/sources" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
"$BIN" feed generate --format smart-sl --slots "$SLOTS" --places $((SLOTS / 50)) --seed 9 >"$W/feed.ndjson"
"$BIN" feed push --source "$SOURCE" --format smart-sl --server "http://127.0.0.1:$PORT" --token "$ADMIN" "$W/feed.ndjson" >/dev/null
"$BIN" token create --role operator --name bench-op | tail -n1 >"$W/op.token"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
python3 - "$W" <<'PY'
import random, sqlite3, sys
w = sys.argv[1]
places = sqlite3.connect(f"{w}/sasnp.db").execute("SELECT lat, lon FROM places").fetchall()
random.seed(5)
with open(f"{w}/points.txt", "w") as f:
    for lat, lon in random.sample(places, min(500, len(places))):
        f.write(f"{lat:.6f} {lon:.6f}\n")
PY
cat >"$W/client.py" <<'PY'
import http.client, sys
port, n, path, w = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
token = open(f"{w}/op.token").read().strip()
points = [l.split() for l in open(f"{w}/points.txt")]
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    lat, lon = points[i % len(points)]
    c.request("GET", f"{path}?lat={lat}&lon={lon}&limit=10", headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); body = r.read()
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {body[:200]!r}")
PY
for path in /health /v1/search; do
  PORT=$(free_port)
  OUT="$W/callgrind.$(echo "$path" | tr -c 'a-z0-9\n' '_')"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" "$BIN" serve --bind "127.0.0.1:$PORT" >"$W/cg-server.log" 2>&1 & PID=$!
  wait_ready "$PORT"
  python3 "$W/client.py" "$PORT" 300 "$path" "$W"
  callgrind_control -i on "$PID" >/dev/null
  python3 "$W/client.py" "$PORT" "$N" "$path" "$W"
  callgrind_control -i off "$PID" >/dev/null
  kill -INT "$PID"; wait "$PID" 2>/dev/null || true; PID=
  TOTAL=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$path: $((TOTAL / N)) instructions per request ($N requests)"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$OUT" "$KEEP/"; fi
done
