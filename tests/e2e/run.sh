#!/usr/bin/env bash
# End-to-end test of the operator page: a real sasnp (temp SQLite db, fixture slots) driven by
# Debian's headless Chromium through playwright-core. Installs what it needs (chromium, npm
# packages), so CI can call it on a bare machine: `bash tests/e2e/run.sh`.
# Artifacts (screenshots, server log) go to target/e2e/. No variable of ours starts with SASNP_:
# sasnp reads that prefix as configuration and rejects unknown keys.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
E2E=$ROOT/tests/e2e
OUT=$ROOT/target/e2e
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$OUT"

step() { printf '\n--- e2e: %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "system packages"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
command -v npm >/dev/null || { echo "e2e: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
/usr/bin/chromium --version

step "npm ci (tests/e2e)"
(cd "$E2E" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error)

step "build sasnp"
# The executable's path comes from cargo itself (honours CARGO_TARGET_DIR).
BIN=$(cargo build --all-features --bin sasnp --message-format=json-render-diagnostics \
  | node -e 'let x="";process.stdin.on("data",d=>x+=d).on("end",()=>{for(const l of x.split("\n")){try{const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.executable&&m.target.name==="sasnp")console.log(m.executable)}catch{}}})' \
  | tail -n1)
[ -x "$BIN" ] || { echo "e2e: could not find the sasnp executable" >&2; exit 1; }

WORK=$(mktemp -d /tmp/sasnp-e2e.XXXXXX)
# Run a private copy: a target dir shared with other checkouts may get another build meanwhile.
cp "$BIN" "$WORK/sasnp"
BIN=$WORK/sasnp
export SASNP_DATABASE_URL="sqlite://$WORK/e2e.db"
PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
export E2E_URL="http://127.0.0.1:$PORT"
SERVER_PID=
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  cp "$WORK/server.log" "$OUT/server.log" 2>/dev/null || true
  if [ $rc -ne 0 ]; then echo "e2e: failed; server log tail:" >&2; tail -n 30 "$OUT/server.log" >&2 || true; fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

step "start sasnp on $E2E_URL"
SASNP_LOG=info "$BIN" serve --bind "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ready() { node -e 'fetch(process.argv[1]).then(async r=>{console.log(await r.text());process.exit(r.ok?0:1)},()=>process.exit(1))' "$E2E_URL/ready"; }
for _ in $(seq 1 100); do
  ready >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "e2e: sasnp exited at start" >&2; exit 1; }
  sleep 0.2
done
ready

step "tokens and fixture slots"
token() { "$BIN" token create "$@" | tail -n1; }
export ADMIN_TOKEN; ADMIN_TOKEN=$(token --role admin --name e2e-admin)
export OP1_TOKEN; OP1_TOKEN=$(token --role operator --name e2e-osnp-1)
export OP2_TOKEN; OP2_TOKEN=$(token --role operator --name e2e-osnp-2)
export E2E_EXPECTED="$WORK/expected.json" E2E_OUT="$OUT"
node "$E2E/seed.mjs" "$E2E_EXPECTED"

step "browser tests"
(cd "$E2E" && node --test --test-concurrency=1 --test-reporter=spec map.spec.mjs)
