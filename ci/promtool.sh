#!/usr/bin/env bash
# Checks what operators deploy: the alert rules (syntax and unit tests), the metrics a real
# `weft serve` and `weft worker --metrics-listen` expose after a run, and the systemd units.
# Needs `promtool` (Debian package `prometheus`); installs it when missing and allowed to.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target}"

log() { printf '\n== %s\n' "$*"; }

if ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
fi
promtool --version | head -n1

log "promtool check rules / test rules"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

log "The dashboard and the alerts query only metrics weft exports"
python3 - <<'PY'
import json, re, pathlib
src = "".join(pathlib.Path(p).read_text() for p in [
    "crates/weft-engine/src/telemetry.rs", "crates/weft-server/src/metrics.rs",
    "crates/weft-server/src/events.rs", "crates/weft-server/src/auth.rs",
    "crates/weft-store/src/api.rs"])
exported = set(re.findall(r'"(weft_[a-z_]+)"', src))
d = json.load(open("deploy/grafana/weft.json"))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
exprs.append(open("deploy/prometheus/alerts.yml").read())
used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bweft_[a-z_]+", e)}
missing = sorted(used - exported)
assert not missing, f"not exported: {missing}"
print(f"{len(d['panels'])} panels; {len(used)} metrics used, all exported")
PY

cargo build -q -p weft
weft="$CARGO_TARGET_DIR/debug/weft"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "promtool check metrics on a real weft serve after a run"
port=$(free_port)
(cd "$work" && WEFT_METRICS_TOKEN=ci-metrics-token exec "$weft" serve --listen "127.0.0.1:$port" --db "$work/weft.db" --log-format json) \
  2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
key=$(cat "$work/admin.key")
run=$(curl -fsS -X POST "http://127.0.0.1:$port/v1/runs" -H "authorization: Bearer $key" \
  -H 'content-type: application/json' -d '{"template": "hello", "inputs": {"name": "ops"}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 300); do
  status=$(curl -fsS "http://127.0.0.1:$port/v1/runs/$run" -H "authorization: Bearer $key" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$status" = succeeded ] && break
  [ "$status" = failed ] && { echo "the run failed"; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/metrics" -H "authorization: Bearer ci-metrics-token" >"$work/serve.prom"
promtool check metrics <"$work/serve.prom"
# Without the operator's token: valid text, and no template or step names.
curl -fsS "http://127.0.0.1:$port/metrics" >"$work/public.prom"
promtool check metrics <"$work/public.prom"
if grep -q 'template=' "$work/public.prom"; then echo "public /metrics names templates"; exit 1; fi
grep -q 'weft_runs_finished_total{template="hello",status="succeeded"} 1' "$work/serve.prom"
grep -q 'weft_task_retries_total{tool="command",reason="error"} 1' "$work/serve.prom"
grep -q '^weft_queue_oldest_task_age_seconds 0' "$work/serve.prom"
grep -q '^weft_workers_alive 1' "$work/serve.prom"  # serve's own worker heart-beats
echo "serve: $(grep -c '^weft_' "$work/serve.prom") weft series"
grep -q '"\[WORKFLOW\] complete"' "$work/serve.log"
if grep -q "$key" "$work/serve.log"; then echo "the admin key reached the log"; exit 1; fi

log "promtool check metrics on weft worker --metrics-listen"
mport=$(free_port)
(cd "$work" && exec "$weft" worker --db "$work/weft.db" --metrics-listen "127.0.0.1:$mport") \
  2>"$work/worker.log" &
wpid=$!
pids+=($wpid)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$mport/metrics" >"$work/worker.prom" 2>/dev/null && break
  sleep 0.1
done
promtool check metrics <"$work/worker.prom"
grep -q '^weft_queue_depth ' "$work/worker.prom"

log "SIGTERM stops weft serve and weft worker gracefully"
kill -TERM "$wpid" "${pids[0]}"
for pid in "$wpid" "${pids[0]}"; do
  wait "$pid" || { echo "exit status $? after SIGTERM"; exit 1; }
done
pids=()

log "systemd-analyze verify deploy/systemd"
if command -v systemd-analyze >/dev/null 2>&1; then
  units=$(mktemp -d -p "$work")
  cp deploy/systemd/*.service "$units/"
  cp "$units/weft-worker@.service" "$units/weft-worker@1.service"
  touch "$units/weft.env"
  # The units name the installed binary and user; point them at this build and this user.
  sed -i "s#/usr/local/bin/weft#$weft#; s#^User=.*#User=$(id -un)#; s#^Group=.*#Group=$(id -gn)#; s#/etc/weft/weft.env#$units/weft.env#" "$units"/*.service
  out=$(systemd-analyze verify "$units/weft.service" "$units/weft-worker@1.service" 2>&1) || { echo "$out"; exit 1; }
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "units OK"
else
  echo "SKIPPED: systemd-analyze is not installed"
fi
