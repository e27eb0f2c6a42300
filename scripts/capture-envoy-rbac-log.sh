#!/usr/bin/env bash
# Captures what a real Envoy 1.40 sidecar writes while it allows and denies requests, for
# scripts/bench-rbaclog.sh to replay into many pods instead of generated lines.
#
# The Envoy is target/envoy/envoy (`make envoy`) run by meshsim as a pod's istio-proxy: its
# listener is meshpolicy's Istio translation (meshpolicy::istio::listener around
# meshpolicy::istio::rbac), its command line Istio's (`-l warning --component-log-level
# misc:error` and pilot-agent's --log-format), with the debug levels Istio documents for
# RBAC set by the pod's `sidecar.istio.io/componentLogLevel` annotation (LEVELS, default
# `rbac:debug,http:debug`: the RBAC decisions and each request's local reply); access
# logging on (Istio's default TEXT format). Policies on the `web` pod:
#   DENY  deny-admin   paths /admin/*             -> "enforced denied, matched policy ..."
#   ALLOW allow-reads  methods GET, HEAD          -> a POST is denied (no ALLOW matched)
# Requests, from the `client` pod (with its own sidecar, so over mTLS), through meshsim's
# curl, REQUESTS of each kind: GET /api/items/N (allowed; the app answers 404), GET /admin/N
# (denied, 403),
# POST /api/items/N (denied, 403). The status codes the client saw are checked.
#
# Writes OUT_DIR/istio-proxy.log (the web pod's istio-proxy log from just before the first
# request: Envoy's lines in its write order, nothing else) and OUT_DIR/capture.env
# (ALLOWED=, DENIED=, REQUESTS=, LEVELS=, ENVOY_VERSION=).
#
# Usage: scripts/capture-envoy-rbac-log.sh OUT_DIR
# Env:   REQUESTS (per kind, default 20), LEVELS, BENCH_PROFILE (debug, default, or release),
#        BENCH_SKIP_BUILD=1, CARGO_TARGET_DIR, KUBECTL (default kubectl).
# Never touches ~/.kube: meshsim writes a kubeconfig into a temp dir; meshsim, its Envoys and
# the temp dir are removed on exit.
set -euo pipefail

OUT=${1:?usage: $0 OUT_DIR}
REQUESTS=${REQUESTS:-20}
case $REQUESTS in '' | *[!0-9]* | 0) echo "REQUESTS must be a positive number, not '$REQUESTS'" >&2; exit 2 ;; esac
LEVELS=${LEVELS:-rbac:debug,http:debug}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${BENCH_PROFILE:-debug}
KUBECTL=${KUBECTL:-kubectl}
WORK=$(mktemp -d)
SIM_PID=

cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PROFILE_FLAG=--release
[ "$PROFILE" = debug ] && PROFILE_FLAG=
# shellcheck disable=SC2086
[ -n "${BENCH_SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build $PROFILE_FLAG -q -p meshsim --bin meshsim)
BIN=$TARGET/$PROFILE
ENVOY=${MESHSIM_ENVOY:-$TARGET/envoy/envoy}
[ -x "$ENVOY" ] || { echo "no Envoy at $ENVOY; run 'make envoy'" >&2; exit 2; }
mkdir -p "$OUT"
export KUBECONFIG="$WORK/kubeconfig" HOME="$WORK" NO_COLOR=1

cat >"$WORK/scenario.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: capture, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: capture
  labels: {app: web}
  annotations: {sidecar.istio.io/componentLogLevel: "$LEVELS"}
spec:
  containers: [{name: web, image: nginx:latest, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: capture}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: capture, labels: {app: client}}
spec:
  containers: [{name: client, image: curlimages/curl:latest}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: capture}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-reads, namespace: capture}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{to: [{operation: {methods: ["GET", "HEAD"]}}]}]
EOF

ENVOY_VERSION=$("$ENVOY" --version 2>/dev/null | sed -n 's/.*version: \([^ ]*\).*/\1/p' | head -1)
"$BIN/meshsim" serve --scenario "$WORK/scenario.yaml" --envoy "$ENVOY" --ready-delay 0s \
  --propagation-delay 0s --kubeconfig-out "$KUBECONFIG" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 600); do [ -s "$KUBECONFIG" ] && break; sleep 0.1; done
"$KUBECTL" wait --for=condition=Ready pod/web pod/client -n capture --timeout=120s >/dev/null

# One exec, all requests in order: allowed, denied by DENY, denied by the ALLOW miss.
URL=http://web.capture.svc.cluster.local
cmd=
for i in $(seq 1 "$REQUESTS"); do
  cmd+="curl -s -o /dev/null -w '%{http_code}\n' $URL/api/items/$i; "
  cmd+="curl -s -o /dev/null -w '%{http_code}\n' $URL/admin/$i; "
  cmd+="curl -s -o /dev/null -w '%{http_code}\n' -X POST $URL/api/items/$i; "
done
SINCE=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
"$KUBECTL" exec client -n capture -- sh -c "$cmd" >"$WORK/codes.txt"
# Allowed: whatever the app answered (nginx's 404 for /api/items/N), never Envoy's 403.
allowed=$(grep -cv '^\(403\|000\)$' "$WORK/codes.txt" || true)
denied=$(grep -c '^403$' "$WORK/codes.txt" || true)
total=$((3 * REQUESTS))
if [ "$allowed" -ne "$REQUESTS" ] || [ "$denied" -ne $((2 * REQUESTS)) ]; then
  echo "the client saw $allowed answers from the app and $denied x 403, expected $REQUESTS and $((2 * REQUESTS)):" >&2
  sort "$WORK/codes.txt" | uniq -c >&2
  exit 1
fi

# Envoy flushes access log lines every few milliseconds: wait until every request's line
# (Istio's TEXT format starts with [START_TIME]) is in the log.
for _ in $(seq 1 300); do
  "$KUBECTL" logs web -c istio-proxy -n capture --since-time "$SINCE" >"$WORK/log.txt"
  n=$(grep -c '^\[' "$WORK/log.txt" || true)
  [ "$n" -ge "$total" ] && break
  sleep 0.1
done
[ "$n" -ge "$total" ] || { echo "only $n of $total access log lines reached the istio-proxy log" >&2; exit 1; }
cp "$WORK/log.txt" "$OUT/istio-proxy.log"
cat >"$OUT/capture.env" <<EOF
ALLOWED=$allowed
DENIED=$denied
REQUESTS=$total
LEVELS=$LEVELS
ENVOY_VERSION=$ENVOY_VERSION
EOF
echo "captured $(wc -l <"$OUT/istio-proxy.log") lines ($(wc -c <"$OUT/istio-proxy.log") bytes) for $total requests ($allowed allowed, $denied denied) from Envoy $ENVOY_VERSION into $OUT" >&2
