#!/usr/bin/env bash
# Asserts the walk-through's expectations with the plugins, the way a CI job or a
# runbook would: every check prints `ok:` or `FAILED:`, and the script exits 1 when
# any expectation was not met (3 when a check could not run at all).
#
# Needs: the walk-through deployed (examples/walkthrough/, no policy applied yet),
# kubectl pointing at that cluster, and kubectl-npexec / kubectl-rbaclog /
# kubectl-authzcheck on PATH. It applies and removes the walk-through's two policies.
set -uo pipefail

policies=$(cd "$(dirname "$0")/../walkthrough/policies" && pwd)
worst=0

# expect CODE DESCRIPTION COMMAND...: run COMMAND (output hidden) and require exit CODE.
expect() {
  local want=$1 what=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ]; then
    echo "ok: $what"
  else
    echo "FAILED: $what (exit $rc, wanted $want)"
    printf '%s\n' "$out" | sed 's/^/    /'
    # 1 = an expectation not met; anything else means the check itself could not run.
    if [ "$rc" -eq 1 ] || [ "$rc" -eq 0 ]; then [ "$worst" -eq 0 ] && worst=1; else worst=3; fi
  fi
}

echo "# No policy: both directions answer"
expect 0 "np-test-1 reaches np-test-2" kubectl npexec np-test-1 np-test-2 --expect allow
expect 0 "np-test-2 reaches np-test-1" kubectl npexec np-test-2 np-test-1 --expect allow

echo "# Istio AuthorizationPolicy: deny all ingress to np-test-2"
kubectl apply -f "$policies/block-istio-ingress-np-test-2.yaml" -n np-test-2 >/dev/null
expect 0 "np-test-1 -> np-test-2 denied by an AuthorizationPolicy" \
  kubectl npexec np-test-1 np-test-2 --expect denied-rbac --wait 20s
expect 0 "np-test-2 -> np-test-1 still allowed" kubectl npexec np-test-2 np-test-1 --expect allow
# --exit-code: 1 means at least one decision matched, which is what we want here.
expect 1 "np-test-2's sidecar logged the denial, naming the policy" \
  kubectl rbaclog np-test-2 --since 10m --policy deny-all-ingress-using-authorizationpolicy --exit-code
# A DENY of every request is an outage: authzcheck's error finding denies-everything.
expect 1 "authzcheck reports that nothing can reach np-test-nginx-2" \
  kubectl authzcheck np-test-2 deployment/np-test-nginx-2 --exit-code
kubectl delete -f "$policies/block-istio-ingress-np-test-2.yaml" -n np-test-2 >/dev/null

echo "# Kubernetes NetworkPolicy: deny all ingress to np-test-2"
kubectl apply -f "$policies/block-ingress-np-test-2.yaml" -n np-test-2 >/dev/null
expect 0 "np-test-1 -> np-test-2 blocked at the network" \
  kubectl npexec np-test-1 np-test-2 --expect blocked-network --wait 20s
expect 0 "np-test-2 -> np-test-1 still allowed" kubectl npexec np-test-2 np-test-1 --expect allow
kubectl delete -f "$policies/block-ingress-np-test-2.yaml" -n np-test-2 >/dev/null

exit "$worst"
