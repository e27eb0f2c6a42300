#!/usr/bin/env bash
# Reproduces the "kubectl npexec" figures of BENCHMARKS.md, in one run, on one meshsim:
#  1. one probe: `kubectl npexec np-test-1 np-test-2` against the walk-through's pipeline
#     `kubectl exec $(kubectl get pod ... -o jsonpath=...) -- bash -c "curl ... || echo Failed"`
#     (two kubectl processes), N times each, on the walk-through scenario;
#  2. a 20-namespace matrix (380 probes, every destination pod with 50 ms simulated latency,
#     meshsim.dev/latency) against the same 380 probes run one by one (the walk-through's
#     pipeline, and `kubectl npexec FROM TO` per pair), with peak memory (/usr/bin/time -v).
#
# Usage: scripts/bench-npexec.sh [N]        (N single-probe repetitions, default 20)
# Env:   CARGO_TARGET_DIR (default target), KUBECTL (default kubectl on PATH),
#        SKIP_BUILD=1 to use the release binaries already in $CARGO_TARGET_DIR/release.
# Needs: the Google Cloud SDK kubectl (or any kubectl >= 1.32), /usr/bin/time, bash, awk, python3.
# Exits 4 when a cross-check fails (the plugin and the pipeline disagree on what they saw).
set -euo pipefail

N=${1:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KUBECTL=${KUBECTL:-kubectl}
WORK=$(mktemp -d)
SIM_PID=

cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "building release binaries (kubectl-npexec, meshsim) in $TARGET" >&2
  (cd "$ROOT" && cargo build --release -q -p kubectl-npexec -p meshsim)
fi
BIN=$TARGET/release
export PATH="$BIN:$PATH" HOME="$WORK" NO_COLOR=1
export KUBECONFIG="$WORK/kubeconfig"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

start_sim() {
  rm -f "$KUBECONFIG"
  "$BIN/meshsim" serve --time-scale 1 --ready-delay 10ms "$@" --kubeconfig-out "$KUBECONFIG" \
    >"$WORK/sim.log" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 1 200); do [ -s "$KUBECONFIG" ] && break; sleep 0.05; done
}

stop_sim() { kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=; }

wait_running() {
  local want=$1
  for _ in $(seq 1 400); do
    local n
    n=$("$KUBECTL" get pods -A --no-headers 2>/dev/null | grep -c Running || true)
    [ "$n" -ge "$want" ] && return 0
    sleep 0.1
  done
  echo "pods did not start" >&2; exit 3
}

# The walk-through's check, as typed in the seed (without -it: no terminal here).
pipeline() { # FROM_NS FROM_APP HOST
  "$KUBECTL" exec "$("$KUBECTL" get pod -n "$1" -l "app=$2" -o jsonpath="{.items[0].metadata.name}")" \
    -n "$1" -- bash -c "curl -sf --max-time 3 $3 || echo 'Failed calling $3'"
}

# ---------------------------------------------------------------- 1. one probe
start_sim --scenario "$ROOT/examples/walkthrough"
wait_running 2
# Warm-up (kubectl's discovery cache, first connections).
"$KUBECTL" npexec np-test-1 np-test-2 >/dev/null
pipeline np-test-1 np-test-nginx-1 svc-np-test-nginx-2.np-test-2.svc.cluster.local >/dev/null

# Cross-check before timing: the plugin's verdict and the pipeline's answer must agree
# (allowed exactly when curl did not fail), or the timings compare different work.
one_verdict=$("$KUBECTL" npexec np-test-1 np-test-2 -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d if isinstance(d,list) else d.get("probes",[d]); print(d[0]["verdict"])')
if pipeline np-test-1 np-test-nginx-1 svc-np-test-nginx-2.np-test-2.svc.cluster.local | grep -q '^Failed calling'; then
  pipe_verdict=failed
else
  pipe_verdict=allowed
fi
if { [ "$one_verdict" = allowed ] && [ "$pipe_verdict" != allowed ]; } || { [ "$one_verdict" != allowed ] && [ "$pipe_verdict" = allowed ]; }; then
  echo "cross-check failed: npexec says $one_verdict, the pipeline says $pipe_verdict" >&2
  exit 4
fi

t0=$(now)
for _ in $(seq 1 "$N"); do "$KUBECTL" npexec np-test-1 np-test-2 >/dev/null; done
t1=$(now)
for _ in $(seq 1 "$N"); do
  pipeline np-test-1 np-test-nginx-1 svc-np-test-nginx-2.np-test-2.svc.cluster.local >/dev/null
done
t2=$(now)
# The plugin binary alone, without kubectl's plugin dispatch (the Cloud SDK kubectl
# dispatcher asks the API server for its version and starts kubectl.1.<minor> first).
for _ in $(seq 1 "$N"); do "$BIN/kubectl-npexec" np-test-1 np-test-2 >/dev/null; done
t3=$(now)
direct_one=$(awk -v t="$(elapsed "$t2" "$t3")" -v n="$N" 'BEGIN { printf "%.1f", 1000 * t / n }')
plugin_one=$(awk -v t="$(elapsed "$t0" "$t1")" -v n="$N" 'BEGIN { printf "%.1f", 1000 * t / n }')
pipe_one=$(awk -v t="$(elapsed "$t1" "$t2")" -v n="$N" 'BEGIN { printf "%.1f", 1000 * t / n }')
stop_sim

# ---------------------------------------------------------------- 2. 20-namespace matrix
SCEN=$WORK/matrix.yaml
: >"$SCEN"
NS=()
for i in $(seq 0 19); do
  ns=$(printf 'bench-%02d' "$i")
  NS+=("$ns")
  cat >>"$SCEN" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: $ns
  labels: {app: web}
  annotations: {meshsim.dev/latency: 50ms, meshsim.dev/response: "web $ns"}
spec:
  containers: [{name: web, image: nginx:latest, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $ns}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 80}]}
---
EOF
done
start_sim --scenario "$SCEN"
wait_running 20
"$KUBECTL" npexec "${NS[0]}" "${NS[1]}" >/dev/null

t0=$(now)
"$KUBECTL" npexec --matrix "${NS[@]}" -o json >"$WORK/matrix.json"
t1=$(now)
# Cross-namespace pairs only: the one-by-one loops below probe exactly those.
read -r probes allowed < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
rows = d if isinstance(d, list) else d.get("probes", [])
cross = [r for r in rows if r["from"]["namespace"] != r["to"].get("namespace")]
print(len(cross), sum(r["verdict"] == "allowed" for r in cross))' "$WORK/matrix.json")
matrix_s=$(elapsed "$t0" "$t1")

# Peak memory of the plugin process itself (run directly, as kubectl would exec it).
/usr/bin/time -v "$BIN/kubectl-npexec" --matrix "${NS[@]}" -o json >/dev/null 2>"$WORK/time.txt"
rss_kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")

t0=$(now)
for from in "${NS[@]}"; do
  for to in "${NS[@]}"; do
    [ "$from" = "$to" ] && continue
    "$KUBECTL" npexec "$from" "$to" >/dev/null
  done
done
t1=$(now)
one_by_one_plugin_s=$(elapsed "$t0" "$t1")

t0=$(now)
for from in "${NS[@]}"; do
  for to in "${NS[@]}"; do
    [ "$from" = "$to" ] && continue
    pipeline "$from" web "web.$to.svc.cluster.local" || true
  done
done >"$WORK/pipeline-matrix.out"
t1=$(now)
one_by_one_pipe_s=$(elapsed "$t0" "$t1")
stop_sim
pipe_failed=$(grep -c '^Failed calling' "$WORK/pipeline-matrix.out" || true)
pipe_allowed=$(( ${#NS[@]} * (${#NS[@]} - 1) - pipe_failed ))
if [ "$allowed" -ne "$pipe_allowed" ] || [ "$probes" -ne $(( ${#NS[@]} * (${#NS[@]} - 1) )) ]; then
  echo "cross-check failed: the matrix has $allowed allowed of $probes probes, the pipeline $pipe_allowed allowed" >&2
  exit 4
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
cat <<EOF
one probe (mean of $N, walk-through scenario):
  kubectl npexec np-test-1 np-test-2          ${plugin_one} ms
  walk-through pipeline (2 kubectl processes) ${pipe_one} ms
  ratio                                       $(ratio "$pipe_one" "$plugin_one")x   (goal >= 3x)
  kubectl-npexec np-test-1 np-test-2 (direct) ${direct_one} ms   ratio $(ratio "$pipe_one" "$direct_one")x
20-namespace matrix ($probes probes, $allowed allowed, 50 ms latency each):
  kubectl npexec --matrix (--parallel 16)     ${matrix_s} s   peak RSS $((rss_kb / 1024)) MiB
  one by one, kubectl npexec FROM TO          ${one_by_one_plugin_s} s   ratio $(ratio "$one_by_one_plugin_s" "$matrix_s")x
  one by one, walk-through pipeline           ${one_by_one_pipe_s} s   ratio $(ratio "$one_by_one_pipe_s" "$matrix_s")x   (goal >= 10x)
EOF
