#!/usr/bin/env bash
# Runs schemathesis against /openapi.json of a real `weft serve`: no 5xx, every response
# matches its schema. Usage: crates/weft-server/ci/schemathesis.sh [WEFT_BINARY] [ST_BINARY]
# (defaults: target/debug/weft or $CARGO_TARGET_DIR/debug/weft, and `st` on PATH).
#
# `positive_data_acceptance` is left out: a template body or a cursor can be schema-valid
# text and still be refused (422) with reasons a schema cannot state.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
weft="${1:-${CARGO_TARGET_DIR:-$root/target}/debug/weft}"
st="${2:-st}"
work="$(mktemp -d)"
port="${WEFT_ST_PORT:-18499}"
cd "$work"
"$weft" serve --listen "127.0.0.1:$port" 2> serve.log &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  [ -s .weft/admin.key ] && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
key="$(cat .weft/admin.key)"
"$st" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "${WEFT_ST_EXAMPLES:-100}" --seed 1
