#!/usr/bin/env bash
# meshdebug demo: the Istio/NetworkPolicy walk-through, run against meshsim
# (a simulated cluster) with the real kubectl, step by step, then the same
# story told with this project's plugins.
#
# Run it with `make demo` (which builds the workspace first) or directly after
# `cargo build --workspace --bins`. It starts meshsim on examples/walkthrough/,
# puts `istioctl` (meshsim-istioctl, a test double for the real istioctl) and
# the built kubectl plugins on PATH in a temporary directory, and never
# touches ~/.kube: KUBECONFIG and HOME point into that directory. Everything
# it started is stopped and the directory removed on exit, Ctrl-C included.
#
# Environment:
#   DEMO_TIME_SCALE   meshsim --time-scale (default 1: real time, the
#                     walk-through's `--max-time 3` takes 3 s; 0.05 = fast)
#   MESHDEBUG_BIN_DIR where the built binaries are
#                     (default ${CARGO_TARGET_DIR:-target}/debug)
#   KUBECTL           the kubectl to run (default: kubectl on PATH)

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${MESHDEBUG_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}"
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$ROOT/$BIN_DIR" ;; esac
SCALE="${DEMO_TIME_SCALE:-1}"
KUBECTL_BIN="${KUBECTL:-$(command -v kubectl || true)}"
WALK="examples/walkthrough"

die() { echo "demo: $*" >&2; exit 2; }

cd "$ROOT" || die "cannot enter $ROOT"

[ -x "$BIN_DIR/meshsim" ] || die "no $BIN_DIR/meshsim: run 'make demo' or 'cargo build --workspace --bins' first"
[ -x "$BIN_DIR/meshsim-istioctl" ] || die "no $BIN_DIR/meshsim-istioctl: run 'cargo build --workspace --bins' first"
[ -n "$KUBECTL_BIN" ] || die "kubectl not found on PATH (install kubectl, or set KUBECTL)"

# The walk-through runs `kubectl exec`. meshsim serves exec over WebSocket only,
# which kubectl uses by default from 1.30; 1.29 does with the (alpha) switch
# KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true, set here; 1.27 and 1.28 only speak SPDY
# and fail with "Upgrade request required". The supported range is 1.29 to 1.33.
KUBECTL_VERSION="$("$KUBECTL_BIN" version --client -o json 2>/dev/null | tr -d ' \n')"
KUBECTL_MAJOR="$(printf '%s' "$KUBECTL_VERSION" | sed -n 's/.*"major":"\([0-9]*\).*/\1/p')"
KUBECTL_MINOR="$(printf '%s' "$KUBECTL_VERSION" | sed -n 's/.*"minor":"\([0-9]*\).*/\1/p')"
if [ -z "$KUBECTL_MAJOR" ] || [ -z "$KUBECTL_MINOR" ]; then
    echo "demo: cannot tell the version of $KUBECTL_BIN; the demo needs kubectl 1.29 to 1.33" >&2
elif [ "$KUBECTL_MAJOR" -eq 1 ] && [ "$KUBECTL_MINOR" -lt 29 ]; then
    die "kubectl 1.$KUBECTL_MINOR runs 'kubectl exec' over SPDY only, which meshsim does not serve (it serves exec over WebSocket); use kubectl 1.29 to 1.33, e.g. KUBECTL=/path/to/kubectl-1.30 make demo"
elif [ "$KUBECTL_MAJOR" -eq 1 ] && [ "$KUBECTL_MINOR" -eq 29 ]; then
    export KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true
    echo "demo: kubectl 1.29: exec over WebSocket through KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true" >&2
fi
awk -v s="$SCALE" 'BEGIN { exit !(s + 0 == s && s >= 0) }' || die "DEMO_TIME_SCALE must be a non-negative number, got '$SCALE'"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/meshdebug-demo.XXXXXX")" || die "cannot create a temporary directory"
MESHSIM_PID=""

stop_meshsim() {
    if [ -n "$MESHSIM_PID" ] && kill -0 "$MESHSIM_PID" 2>/dev/null; then
        kill -TERM "$MESHSIM_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$MESHSIM_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$MESHSIM_PID" 2>/dev/null
        wait "$MESHSIM_PID" 2>/dev/null
    fi
    MESHSIM_PID=""
}
cleanup() {
    stop_meshsim
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM HUP

mkdir -p "$TMP/bin" "$TMP/home"
ln -s "$BIN_DIR/meshsim-istioctl" "$TMP/bin/istioctl"
# The walk-through's steps say `kubectl`: make that the chosen one.
ln -s "$KUBECTL_BIN" "$TMP/bin/kubectl"
export HOME="$TMP/home"
export KUBECONFIG="$TMP/kubeconfig"
export PATH="$TMP/bin:$(dirname "$KUBECTL_BIN"):$PATH"
export NO_COLOR="${NO_COLOR:-}"

# Seconds of real time for `secs` seconds of simulated time.
scaled() { awk -v s="$1" -v k="$SCALE" 'BEGIN { printf "%.3f", s * k }'; }

BOLD="" RESET=""
if [ -t 1 ] && [ -z "$NO_COLOR" ]; then BOLD=$'\033[1m'; RESET=$'\033[0m'; fi

section() { printf '\n%s== %s ==%s\n' "$BOLD" "$*" "$RESET"; }
say() { printf '%s\n' "$*"; }
# Prints a walk-through command, then runs it (the commands are this
# script's own fixed text; pod names come from kubectl, as in the walk-through).
step() {
    printf '\n%s$ %s%s\n' "$BOLD" "$1" "$RESET"
    bash -c "$1"
    local rc=$?
    [ "$rc" -eq 0 ] || printf '(exit code %s)\n' "$rc"
    return 0
}
wait_propagation() {
    say ""
    say "(waiting $(scaled 3)s for the change to reach the sidecars: meshsim's --propagation-delay is 2s of simulated time, scaled by $SCALE)"
    sleep "$(scaled 3)"
}

# Starts meshsim on a scenario folder and waits for its kubeconfig.
start_meshsim() {
    rm -f "$KUBECONFIG"
    "$BIN_DIR/meshsim" serve --scenario "$1" --kubeconfig-out "$KUBECONFIG" \
        --time-scale "$SCALE" >"$TMP/meshsim.log" 2>&1 &
    MESHSIM_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$KUBECONFIG" ] && break
        kill -0 "$MESHSIM_PID" 2>/dev/null || { cat "$TMP/meshsim.log" >&2; die "meshsim did not start"; }
        sleep 0.1
    done
    [ -s "$KUBECONFIG" ] || die "meshsim wrote no kubeconfig"
}
# Waits until at least $1 pods exist and every container is Ready.
wait_ready() {
    local ready="" states
    for _ in $(seq 1 300); do
        states="$(kubectl get pods -A -o jsonpath='{range .items[*]}{.status.containerStatuses[*].ready}{"\n"}{end}' 2>/dev/null)"
        if [ -n "$states" ] && ! grep -q false <<<"$states" && [ "$(wc -l <<<"$states")" -ge "$1" ]; then
            ready=yes
            break
        fi
        sleep 0.1
    done
    [ -n "$ready" ] || die "pods did not become Ready (see $TMP/meshsim.log)"
}

section "Starting meshsim (time scale $SCALE) on examples/walkthrough/"
start_meshsim "$WALK"
say "meshsim is serving $(awk '/server:/ { print $2; exit }' "$KUBECONFIG") (kubeconfig and HOME in $TMP)"
say "istioctl here is meshsim-istioctl, a test double for the real istioctl."

say ""
say "Waiting for the walk-through's pods to be Ready..."
wait_ready 2
step 'kubectl get pods -A'

P1='$(kubectl get pod -n np-test-1 -l app=np-test-nginx-1 -o jsonpath="{.items[0].metadata.name}")'
P2='$(kubectl get pod -n np-test-2 -l app=np-test-nginx-2 -o jsonpath="{.items[0].metadata.name}")'
say ""
say "(The walk-through runs 'kubectl exec -it'; this demo is not interactive, so -it is left out.)"

section "Confirm setup: pod 1 can call pod 2, pod 2 can call pod 1"
step "kubectl exec $P1 -n np-test-1 -- bash -c \"echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2 from np-test-nginx-1'\""
step "kubectl exec $P2 -n np-test-2 -- bash -c \"curl -sf --max-time 3 svc-np-test-nginx-1.np-test-1.svc.cluster.local || echo 'Failed calling np-test-nginx-1 from np-test-nginx-2' && echo ''\""

section "Istio AuthorizationPolicy: deny all ingress to np-test-2"
step "cat $WALK/policies/block-istio-ingress-np-test-2.yaml"
step "kubectl apply -f $WALK/policies/block-istio-ingress-np-test-2.yaml -n np-test-2"
wait_propagation
step "kubectl exec $P1 -n np-test-1 -- bash -c \"echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2'\""
step "kubectl exec $P2 -n np-test-2 -- bash -c \"curl -sf --max-time 3 svc-np-test-nginx-1.np-test-1.svc.cluster.local || echo 'Failed calling np-test-nginx-1' && echo ''\""

section "Confirm that Istio is blocking it: the sidecars' RBAC log lines"
step "kubectl logs $P1 -c istio-proxy -n np-test-1 | grep \"rbac\" | grep \"denied\""
step "kubectl logs $P2 -c istio-proxy -n np-test-2 | grep \"rbac\" | grep \"denied\""

section "Which policies does the sidecar enforce? (istioctl)"
step "istioctl x authz check $P2.np-test-2"
step "istioctl proxy-config log $P2.np-test-2 --level rbac:debug | grep -E ':\$|rbac'"

section "NetworkPolicy instead: remove the AuthorizationPolicy, block ingress to np-test-2"
step "kubectl delete -f $WALK/policies/block-istio-ingress-np-test-2.yaml -n np-test-2"
step "kubectl apply -f $WALK/policies/block-ingress-np-test-2.yaml -n np-test-2"
wait_propagation
step "kubectl exec $P1 -n np-test-1 -- bash -c \"echo '' && curl -sf --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2'\""
step "kubectl exec $P2 -n np-test-2 -- bash -c \"curl -sf --max-time 3 svc-np-test-nginx-1.np-test-1.svc.cluster.local || echo 'Failed calling np-test-nginx-1' && echo ''\""
step "istioctl x authz check $P2.np-test-2"

section "The same story with this project's kubectl plugins"
plugins=""
for p in npexec rbaclog authzcheck; do
    if [ -x "$BIN_DIR/kubectl-$p" ] && "$BIN_DIR/kubectl-$p" --help >/dev/null 2>&1; then
        ln -s "$BIN_DIR/kubectl-$p" "$TMP/bin/kubectl-$p"
        plugins="$plugins $p"
    else
        say "(kubectl $p is not built or not implemented yet in $BIN_DIR: its steps are skipped)"
    fi
done
has() { case " $plugins " in *" $1 "*) return 0 ;; esac; return 1; }
if [ -z "$plugins" ]; then
    section "Done (no plugin built yet)"
    say "Stopping meshsim and removing $TMP."
    exit 0
fi

say ""
say "Back to the start: no policy at all."
step "kubectl delete -f $WALK/policies/block-ingress-np-test-2.yaml -n np-test-2"
has npexec && step "kubectl npexec np-test-1 np-test-2"
has npexec && step "kubectl npexec np-test-2 np-test-1"

say ""
say "With the AuthorizationPolicy:"
step "kubectl apply -f $WALK/policies/block-istio-ingress-np-test-2.yaml -n np-test-2"
wait_propagation
has npexec && step "kubectl npexec np-test-1 np-test-2"
has rbaclog && step "kubectl rbaclog np-test-2"
has authzcheck && step "kubectl authzcheck np-test-2 deployment/np-test-nginx-2"

say ""
say "With the NetworkPolicy instead:"
step "kubectl delete -f $WALK/policies/block-istio-ingress-np-test-2.yaml -n np-test-2"
step "kubectl apply -f $WALK/policies/block-ingress-np-test-2.yaml -n np-test-2"
wait_propagation
has npexec && step "kubectl npexec np-test-1 np-test-2"
has npexec && step "kubectl npexec np-test-2 np-test-1"
has authzcheck && step "kubectl authzcheck np-test-2 deployment/np-test-nginx-2"

section "Second act: the same two namespaces in ambient mode (ztunnel and a waypoint, no sidecars)"
AMB="examples/ambient"
stop_meshsim
start_meshsim "$AMB"
say "meshsim restarted on $AMB/: np-test-1 and np-test-2 are labelled istio.io/dataplane-mode=ambient."
wait_ready 3
step 'kubectl get pods -A'

section "L4: an AuthorizationPolicy bound by selector is enforced by ztunnel"
step "cat $AMB/policies/deny-np-test-1-l4.yaml"
step "kubectl apply -f $AMB/policies/deny-np-test-1-l4.yaml"
wait_propagation
say "ztunnel does not answer 403: it resets the connection (curl exit 56)."
step "kubectl exec $P1 -n np-test-1 -- bash -c \"curl -sS --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local || echo 'Failed calling np-test-nginx-2'\""
step "kubectl logs -n istio-system -l app=ztunnel | grep 'policy rejection'"
has npexec && step "kubectl npexec np-test-1 np-test-2"
has rbaclog && step "kubectl rbaclog np-test-2"
has authzcheck && step "kubectl authzcheck np-test-2 deployment/np-test-nginx-2"

section "L7: a waypoint enforces HTTP rules (policies attached with targetRefs)"
step "kubectl delete -f $AMB/policies/deny-np-test-1-l4.yaml"
step "cat $AMB/waypoint/deny-l7-waypoint.yaml"
step "kubectl apply -f $AMB/waypoint/"
say "meshsim, as istiod, deploys the waypoint (a real Envoy) for the Gateway."
wait_ready 4
wait_propagation
step "istioctl waypoint list -n np-test-2"
step "kubectl exec $P1 -n np-test-1 -- bash -c \"curl -sS --max-time 3 svc-np-test-nginx-2.np-test-2.svc.cluster.local/private || echo 'Failed calling np-test-nginx-2'\""
step "kubectl logs -n np-test-2 -l gateway.networking.k8s.io/gateway-name=waypoint | grep rbac"
has npexec && step "kubectl npexec np-test-1 np-test-2 --service svc-np-test-nginx-2 --path /private"
has rbaclog && step "kubectl rbaclog np-test-2"
has authzcheck && step "kubectl authzcheck np-test-2 deployment/np-test-nginx-2"

section "Done"
say "Stopping meshsim and removing $TMP."
exit 0
