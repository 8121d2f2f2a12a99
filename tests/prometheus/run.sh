#!/usr/bin/env bash
# End-to-end check of sasnp's metrics with a real Prometheus, everything on 127.0.0.1:
#   1. promtool checks the shipped config and rules, and runs the rules' unit tests;
#   2. sasnp starts on a free port with a temp SQLite database and a metrics token;
#   3. a CPTS pushes a known CSV feed, an operator searches and holds a slot;
#   4. Prometheus (the Debian package's binary, run directly, not the systemd service) scrapes
#      sasnp every second with a config derived from deploy/prometheus.yml;
#   5. PromQL answers are compared with the expected numbers, every dashboard query is run
#      through Prometheus, and the alert rules are loaded.
# Both processes are stopped on exit. Usage: tests/prometheus/run.sh (from anywhere).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive

say() { printf '[prometheus e2e] %s\n' "$*"; }
fail() { printf '[prometheus e2e] FAIL: %s\n' "$*" >&2; exit 1; }

# --- system packages -------------------------------------------------------------------
missing=()
[ -x /usr/bin/prometheus ] && command -v promtool >/dev/null || missing+=(prometheus)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- static checks ---------------------------------------------------------------------
promtool check config deploy/prometheus.yml
promtool check rules deploy/*.rules.yml
promtool test rules deploy/tests/*.test.yml

# --- build -------------------------------------------------------------------------------
say "building sasnp"
cargo build --all-features --bin sasnp --quiet
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/sasnp"
[ -x "$BIN" ] || fail "no binary at $BIN"

TMP=$(mktemp -d -t sasnp-prom-e2e.XXXXXX)
SASNP_PID= PROM_PID=
cleanup() {
  local rc=$?
  [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null || true
  [ -n "$SASNP_PID" ] && kill "$SASNP_PID" 2>/dev/null || true
  [ -n "$PROM_PID" ] && wait "$PROM_PID" 2>/dev/null || true
  [ -n "$SASNP_PID" ] && wait "$SASNP_PID" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    say "logs kept in $TMP"
    tail -n 30 "$TMP/sasnp.log" "$TMP/prometheus.log" 2>/dev/null || true
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT

free_port() { # a loopback port nobody listens on, below the ephemeral range (32768+)
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  fail "no free port"
}

wait_http() { # wait_http URL SECONDS PID
  for _ in $(seq 1 "$2"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || fail "the process behind $1 exited"
    sleep 1
  done
  fail "$1 did not answer within $2 s"
}

# --- sasnp -------------------------------------------------------------------------------
SASNP_PORT=$(free_port)
METRICS_TOKEN="e2e-$RANDOM$RANDOM-scrape"
export SASNP_DATABASE_URL="sqlite://$TMP/sasnp.db" SASNP_BIND="127.0.0.1:$SASNP_PORT" \
  SASNP_METRICS_TOKEN="$METRICS_TOKEN" SASNP_LOG=warn
unset SASNP_CONFIG || true
API="http://127.0.0.1:$SASNP_PORT"
say "starting sasnp on $API"
(cd "$TMP" && exec "$BIN" serve) >"$TMP/sasnp.log" 2>&1 &
SASNP_PID=$!
wait_http "$API/health" 120 "$SASNP_PID"

# the CPTS of Nantes centre
CPTS=$(curl -fsS "$API/v1/territories/at?lat=47.2184&lon=-1.5536" | jq -r '.cpts.id')
[ -n "$CPTS" ] && [ "$CPTS" != null ] || fail "no CPTS at Nantes"
token() { (cd "$TMP" && "$BIN" token create "$@") | tail -n 1; }
PUBLISHER=$(token --role cpts --cpts "$CPTS" --name e2e-cpts)
OPERATOR=$(token --role operator --name e2e-osnp)
say "CPTS $CPTS, tokens created"

# /metrics is protected
code=$(curl -s -o /dev/null -w '%{http_code}' "$API/metrics")
[ "$code" = 401 ] || fail "/metrics without the token answered $code, expected 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $METRICS_TOKEN" "$API/metrics")
[ "$code" = 200 ] || fail "/metrics with the token answered $code"

# a source and a feed of N slots, local Paris times computed from now
SOURCE=$(curl -fsS -H "Authorization: Bearer $PUBLISHER" -H 'Content-Type: application/json' \
  -d '{"name": "E2E agenda", "format": "csv"}' "$API/v1/sources" | jq -r '.id')
now=$(date +%s)
paris() { TZ=Europe/Paris date -d "@$1" '+%Y-%m-%d %H:%M'; }
FEED="$TMP/feed.csv"
echo 'slot_id;debut;duree;statut;rpps;praticien;profession;specialite;lieu;adresse;code_postal;ville;latitude;longitude;modalite;lien;telephone;en_sus' >"$FEED"
# offsets in hours: 3 slots within 4 h, 1 more within 24 h, 1 within 72 h
i=0
for h in 1 2 3 5 26; do
  i=$((i + 1))
  printf 'e2e-%s;%s;20;libre;1000000000%s;Dr E2E %s;10;SM54;Cabinet Graslin;2 rue Crébillon;44000;Nantes;47,2184;-1,5536;AMB;;02 40 00 00 0%s;non\n' \
    "$i" "$(paris $((now + h * 3600)))" "$i" "$i" "$i" >>"$FEED"
done
N=5
report=$(curl -fsS -X PUT -H "Authorization: Bearer $PUBLISHER" -H 'Content-Type: text/csv' \
  --data-binary "@$FEED" "$API/v1/sources/$SOURCE/slots")
[ "$(jq -r '.accepted' <<<"$report")" = "$N" ] || fail "feed not accepted as expected: $report"

# operators: two searches with results, one without, then a hold
S="$API/v1/search?lat=47.2184&lon=-1.5536&limit=50"
for _ in 1 2; do
  count=$(curl -fsS -H "Authorization: Bearer $OPERATOR" "$S" | jq -r '.count')
  [ "$count" = "$N" ] || fail "search found $count slots, expected $N"
done
count=$(curl -fsS -H "Authorization: Bearer $OPERATOR" "$S&profession=70" | jq -r '.count')
[ "$count" = 0 ] || fail "search for profession 70 found $count"
SLOT=$(curl -fsS -H "Authorization: Bearer $OPERATOR" "$S" | jq -r '.results[0].slot_id')
curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $OPERATOR" -H 'Content-Type: application/json' -d '{}' "$API/v1/slots/$SLOT/hold"
SEARCHES=4
say "feed of $N slots pushed, $SEARCHES searches, 1 hold"

# --- Prometheus --------------------------------------------------------------------------
PROM_PORT=$(free_port)
while [ "$PROM_PORT" = "$SASNP_PORT" ]; do PROM_PORT=$(free_port); done
PROM="http://127.0.0.1:$PROM_PORT"
printf '%s\n' "$METRICS_TOKEN" >"$TMP/sasnp-metrics-token"
chmod 600 "$TMP/sasnp-metrics-token"
cp deploy/*.rules.yml "$TMP/"
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$SASNP_PORT/" \
    -e 's/scrape_interval: 15s/scrape_interval: 1s/' \
    -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
    -e '/# authorization:/,/# *credentials_file:/ s/^\( *\)# /\1/' \
    deploy/prometheus.yml >"$TMP/prometheus.yml"
grep -q '^ *credentials_file: sasnp-metrics-token' "$TMP/prometheus.yml" || fail "could not enable the bearer token in the derived config"
promtool check config "$TMP/prometheus.yml" >/dev/null
say "starting Prometheus on $PROM"
/usr/bin/prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
wait_http "$PROM/-/ready" 60 "$PROM_PID"

query() { # query PROMQL → first sample's value ("" when the result is empty)
  curl -fsS -G --data-urlencode "query=$1" "$PROM/api/v1/query" | jq -r '.data.result[0].value[1] // ""'
}

expect() { # expect PROMQL OP VALUE: polls for up to 30 s (OP: == or >=)
  local q=$1 op=$2 want=$3 got=""
  for _ in $(seq 1 30); do
    got=$(query "$q")
    if [ -n "$got" ] && awk -v g="$got" -v w="$want" -v o="$op" 'BEGIN { d = g - w; exit !((o == "==" && d < 1e-9 && d > -1e-9) || (o == ">=" && g >= w)) }'; then
      say "ok  $q $op $want (got $got)"
      return 0
    fi
    sleep 1
  done
  fail "$q: got '${got}', expected $op $want"
}

expect 'up{job="sasnp"}' == 1
expect 'sum(sasnp_free_slots{horizon="72h"})' == $((N - 1))
expect 'sum(sasnp_free_slots{horizon="24h"})' == 3
expect 'sum(sasnp_free_slots{horizon="4h"})' == 2
expect "sum(sasnp_free_slots{horizon=\"72h\", cpts=\"$CPTS\", department=\"44\", profession=\"10\"})" == $((N - 1))
expect 'sum(sasnp_free_slot_hours{horizon="72h"})' == "$(awk -v n=$((N - 1)) 'BEGIN { printf "%.10f", n * 20 / 60 }')"
expect 'sum(sasnp_ingest_slots_total{outcome="accepted"})' == $N
expect "sasnp_source_stale{source=\"$SOURCE\"}" == 0
expect "time() - sasnp_source_last_success_timestamp_seconds{source=\"$SOURCE\"}" '>=' 0
expect 'sum(sasnp_searches_total{department="44"})' '>=' 3
expect 'sum(sasnp_search_duration_seconds_count)' == $SEARCHES
expect 'sum(sasnp_searches_without_result_total{stage="enlarged"})' == 1
expect "sum(sasnp_holds_total{cpts=\"$CPTS\"})" == 1
expect 'sum(sasnp_http_requests_total{route="/v1/search", status="200"})' == $SEARCHES
expect 'sum(sasnp_http_requests_total{route="/v1/sources/{id}/slots", method="PUT"})' == 1
expect 'count(sasnp_http_requests_total{route="unmatched"}) or vector(0)' == 0
expect 'sum(sasnp_search_duration_seconds_bucket{le="0.1"})' == $SEARCHES
expect 'sum(sasnp_db_pool_max_connections)' '>=' 1

# the alert rules are loaded and evaluated
groups=$(curl -fsS "$PROM/api/v1/rules" | jq -r '[.data.groups[].name] | sort | join(",")')
[ "$groups" = "sasnp-availability,sasnp-feeds,sasnp-operators,sasnp-supply" ] || fail "rule groups loaded: $groups"
health=$(curl -fsS "$PROM/api/v1/rules" | jq -r '[.data.groups[].rules[] | select(.health == "err")] | length')
[ "$health" = 0 ] || fail "$health rules fail to evaluate"
say "ok  alert rules loaded: $groups"

# every dashboard query is valid PromQL (Grafana variables replaced by neutral values)
n=0
for dash in deploy/grafana/dashboards/*.json; do
  jq -e '.uid and (.panels | length > 0)' "$dash" >/dev/null || fail "$dash is not a dashboard"
  while IFS= read -r q; do
    q=${q//\$__rate_interval/1m}; q=${q//\$__range/5m}; q=${q//\$__interval/1m}
    q=${q//\$department/.*}; q=${q//\$cpts/.*}; q=${q//\$indicator/consultations_done}
    status=$(curl -sS -G --data-urlencode "query=$q" "$PROM/api/v1/query" | jq -r '.status')
    [ "$status" = success ] || fail "$dash: query does not run: $q"
    n=$((n + 1))
  done < <(jq -r '.. | objects | select(has("expr")) | .expr' "$dash")
done
say "ok  $n dashboard queries run in Prometheus"
say "PASS"
