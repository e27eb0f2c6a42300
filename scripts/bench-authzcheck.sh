#!/usr/bin/env bash
# Reproduces the "kubectl authzcheck" figures of BENCHMARKS.md, in one run, on one meshsim:
# one pod of the walk-through (np-test-nginx-2 in np-test-2, with its sidecar) under the
# walk-through's NetworkPolicy and DENY AuthorizationPolicy plus an ALLOW-nothing policy and
# a dry-run one, meshsim's istioctl stand-in linked as `istioctl` on PATH. Timed, all in
# one hyperfine invocation (or medians of repeated runs without hyperfine):
#  - the walk-through's pipeline: istioctl x authz check $(kubectl get pod -n np-test-2
#    -l app=np-test-nginx-2 -o jsonpath="{.items[0].metadata.name}").np-test-2
#  - kubectl authzcheck np-test-2 -l app=np-test-nginx-2            (istioctl path)
#  - kubectl authzcheck np-test-2 -l app=np-test-nginx-2 --native   (config dump via exec)
#  - the plugin binary itself (no kubectl plugin dispatch), both ways.
#
# Usage: scripts/bench-authzcheck.sh [RUNS]     (timed runs per command, default 20)
# Env:   CARGO_TARGET_DIR (default target), KUBECTL (default kubectl on PATH),
#        BENCH_CARGO_ARGS (extra cargo build arguments, e.g.
#        "--config profile.release.lto=false"); for a quick trial BENCH_PROFILE=debug and
#        BENCH_SKIP_BUILD=1 (use the binaries as built).
# Exits 4 when a cross-check fails (a policy istioctl lists is missing from authzcheck).
# Needs: the Google Cloud SDK kubectl (or any kubectl >= 1.32), bash, awk; hyperfine and
#        python3 optional (hyperfine's JSON is read with python3).
# Never touches ~/.kube: meshsim writes a kubeconfig into a temp dir (HOME is moved there
# too); the temp dir and meshsim are removed on exit.
set -euo pipefail

RUNS=${1:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KUBECTL=${KUBECTL:-kubectl}
PROFILE=${BENCH_PROFILE:-release}
WORK=$(mktemp -d)
SIM_PID=

cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The same package set as scripts/bench-rbaclog.sh, so both reuse one release build.
echo "building $PROFILE binaries in $TARGET" >&2
PROFILE_FLAG=--release
[ "$PROFILE" = debug ] && PROFILE_FLAG=
# shellcheck disable=SC2086
[ -n "${BENCH_SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build $PROFILE_FLAG -q -p kubectl-rbaclog -p kubectl-authzcheck -p meshsim --bins ${BENCH_CARGO_ARGS:-})
BIN=$TARGET/$PROFILE
mkdir -p "$WORK/bin"
ln -s "$BIN/meshsim-istioctl" "$WORK/bin/istioctl"
export PATH="$WORK/bin:$BIN:$PATH" HOME="$WORK" NO_COLOR=1
export KUBECONFIG="$WORK/kubeconfig"
[ "$(command -v istioctl)" = "$WORK/bin/istioctl" ] || { echo "istioctl stand-in not first on PATH" >&2; exit 2; }

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(load)

cat >"$WORK/policies.yaml" <<'EOF'
# The walk-through's two policies (examples/walkthrough/policies) ...
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress-using-networkpolicy, namespace: np-test-2}
spec: {podSelector: {}, policyTypes: [Ingress], ingress: []}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all-ingress-using-authorizationpolicy, namespace: np-test-2}
spec:
  action: DENY
  rules: [{}]
---
# ... the seed's "deny-all-ingress" that is really ALLOW with no rules (allow nothing) ...
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all-ingress, namespace: np-test-2}
spec: {}
---
# ... and a dry-run policy (istioctl's table hides it).
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: audit-admin
  namespace: np-test-2
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: np-test-nginx-2}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
EOF

"$BIN/meshsim" serve --scenario "$ROOT/examples/walkthrough" --scenario "$WORK/policies.yaml" \
  --time-scale 0.05 --ready-delay 10ms --kubeconfig-out "$KUBECONFIG" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 200); do [ -s "$KUBECONFIG" ] && break; sleep 0.05; done
for _ in $(seq 1 400); do
  n=$("$KUBECTL" get pods -A --no-headers 2>/dev/null | grep -c Running || true)
  [ "$n" -ge 2 ] && break
  sleep 0.1
done
[ "$n" -ge 2 ] || { echo "pods did not start" >&2; exit 3; }
# Policies reach the sidecars after the (scaled) propagation delay: wait until istioctl
# lists all three enforced ones.
PIPELINE='istioctl x authz check $(kubectl get pod -n np-test-2 -l app=np-test-nginx-2 -o jsonpath="{.items[0].metadata.name}").np-test-2'
for _ in $(seq 1 100); do
  rows=$(sh -c "$PIPELINE" 2>/dev/null | grep -c 'np-test-2' || true)
  [ "$rows" -ge 2 ] && break
  sleep 0.1
done

PLUGIN='kubectl authzcheck np-test-2 -l app=np-test-nginx-2'
NATIVE='kubectl authzcheck np-test-2 -l app=np-test-nginx-2 --native'
DIRECT="$BIN/kubectl-authzcheck np-test-2 -l app=np-test-nginx-2"
DIRECT_NATIVE="$DIRECT --native"
# What each prints (once, kept for the report), then the timings.
sh -c "$PIPELINE" >"$WORK/pipeline.out" 2>&1 || true
sh -c "$PLUGIN" >"$WORK/plugin.out" 2>&1 || true
sh -c "$NATIVE" >"$WORK/native.out" 2>&1 || true

# Cross-check before timing: every policy the pipeline (istioctl x authz check) lists
# must be in authzcheck's output (both paths), or the timings compare different work.
policies=$(awk '$1 ~ /^(ALLOW|DENY|CUSTOM|AUDIT)$/ && $2 ~ /\./ { print $2 }' "$WORK/pipeline.out" | sort -u)
[ -n "$policies" ] || { echo "cross-check failed: the pipeline listed no policy" >&2; cat "$WORK/pipeline.out" >&2; exit 4; }
for p in $policies; do
  name=${p%.*} ns=${p##*.}
  for out in plugin native; do
    grep -q -e "$p" -e "$ns/$name" "$WORK/$out.out" || {
      echo "cross-check failed: authzcheck ($out) does not show $p, which istioctl lists" >&2; exit 4; }
  done
done

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
LOAD_TIMED_START=$(load)
if command -v hyperfine >/dev/null && command -v python3 >/dev/null; then
  TIMER="hyperfine $(hyperfine --version | cut -d' ' -f2), $RUNS runs each after 2 warm-ups, commands run through sh (hyperfine subtracts the shell's start-up)"
  hyperfine --warmup 2 --runs "$RUNS" --export-json "$WORK/hf.json" \
    "$PIPELINE" "$PLUGIN" "$NATIVE" "$DIRECT" "$DIRECT_NATIVE" >&2
  stat_of() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]; print("%.1f %.1f %.1f" % (1000*r["median"], 1000*r["min"], 1000*r["max"]))' "$WORK/hf.json" "$1"; }
else
  TIMER="median of $RUNS runs each after 2 warm-ups (date +%s.%N around sh -c)"
  i=0
  for c in "$PIPELINE" "$PLUGIN" "$NATIVE" "$DIRECT" "$DIRECT_NATIVE"; do
    for _ in 1 2; do sh -c "$c" >/dev/null 2>&1 || true; done
    for _ in $(seq 1 "$RUNS"); do
      a=$(date +%s.%N); sh -c "$c" >/dev/null 2>&1 || true; b=$(date +%s.%N)
      awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f\n", 1000 * (b - a) }'
    done >"$WORK/t$i.txt"
    i=$((i + 1))
  done
  stat_of() { printf '%s %s %s\n' "$(median <"$WORK/t$1.txt")" "$(sort -n "$WORK/t$1.txt" | head -1)" "$(sort -n "$WORK/t$1.txt" | tail -1)"; }
fi
LOAD_TIMED_END=$(load)

speedup() { awk -v p="$1" -v c="$2" 'BEGIN { printf "%.2fx", p / c }'; }
read -r p_med p_min p_max < <(stat_of 0)
line() { # INDEX LABEL
  local med min max
  read -r med min max < <(stat_of "$1")
  printf '  %-72s median %7s ms  min %7s  max %7s  speed-up %s\n' "$2" "$med" "$min" "$max" "$(speedup "$p_med" "$med")"
}
cat <<EOF
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average (1, 5, 15 min): start $LOAD_START, timed part $LOAD_TIMED_START -> $LOAD_TIMED_END
timing: $TIMER
speed-up = the pipeline's median / this command's median (above 1: faster than the pipeline)
EOF
line 0 "walk-through pipeline (istioctl x authz check \$(kubectl get pod ...))"
line 1 "$PLUGIN"
line 2 "$NATIVE"
line 3 "kubectl-authzcheck np-test-2 -l app=np-test-nginx-2 (binary, no dispatch)"
line 4 "kubectl-authzcheck ... --native (binary, no dispatch)"
echo "--- pipeline output"; cat "$WORK/pipeline.out"
echo "--- $PLUGIN"; cat "$WORK/plugin.out"
echo "--- $NATIVE (proxy section)"; grep -A12 -i 'envoy\|proxy' "$WORK/native.out" | head -20 || true
