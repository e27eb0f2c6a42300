#!/usr/bin/env bash
# Reproduces a row of BENCHMARKS.md "meshsim with real Envoy sidecars": start-up time and
# memory of meshsim with N sidecar-injected pods, each running its own real Envoy.
#
#  1. `meshsim generate`: N pods (nginx, one HTTP port, a Service) in namespaces of up to
#     20 pods, every namespace labelled istio-injection=enabled;
#  2. `meshsim serve --ready-delay 0s` on it;
#  3. polls until every Envoy of this meshsim (found by its admin address file under
#     meshsim's sidecar directory) lists the inbound listener (`virtualInbound`) bound on
#     a port in its admin's /listeners: the time from starting meshsim to that point is
#     "all Envoys ready";
#  4. one second later reads VmRSS of meshsim and VmRSS and Pss (/proc/PID/smaps_rollup:
#     shared pages split between the processes sharing them) of every Envoy.
#
# Prints one Markdown table row: | N | ready s | meshsim RSS | Envoy RSS sum | Envoy PSS sum |
# (and the load average before and after on stderr).
#
# Usage: scripts/bench-meshsim-sidecars.sh N
# Env:   BENCH_PROFILE (debug, default, or release), BENCH_SKIP_BUILD=1 (use the binaries
#        as built), CARGO_TARGET_DIR (default target), READY_LIMIT_S (default 300).
# Needs: Envoy (`make envoy`), python3. Each Envoy takes one inotify instance
#        (fs.inotify.max_user_instances, 128 on many systems; .ci/run raises it to 1024).
# Never touches ~/.kube; meshsim and its Envoys are stopped and the temp dir removed on exit.
set -euo pipefail

N=${1:?usage: $0 N (number of sidecar pods)}
case $N in '' | *[!0-9]* | 0) echo "N must be a positive number of pods, not '$N'" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${BENCH_PROFILE:-debug}
READY_LIMIT_S=${READY_LIMIT_S:-300}
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
[ -x "$BIN/meshsim" ] || { echo "no meshsim at $BIN/meshsim (build it or set BENCH_PROFILE)" >&2; exit 2; }
want_instances=$((N + 16))
have_instances=$(cat /proc/sys/fs/inotify/max_user_instances)
[ "$have_instances" -ge "$want_instances" ] ||
  echo "warning: fs.inotify.max_user_instances is $have_instances; $N Envoys need one each" >&2

PER_NS=$((N < 20 ? N : 20))
NS=$(((N + PER_NS - 1) / PER_NS))
[ $((NS * PER_NS)) -eq "$N" ] || { echo "N must be at most 20 or a multiple of 20, not $N" >&2; exit 2; }
"$BIN/meshsim" generate --namespaces "$NS" --pods-per-namespace "$PER_NS" -o "$WORK/scenario" >/dev/null 2>&1

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(load)
# meshsim's sidecar files go under $TMPDIR/meshsim-PID-UID/; a private TMPDIR keeps other
# meshsims' Envoys out of the count.
mkdir -p "$WORK/tmp"
START=$(date +%s.%N)
TMPDIR="$WORK/tmp" "$BIN/meshsim" serve --scenario "$WORK/scenario" --ready-delay 0s \
  --kubeconfig-out "$WORK/kubeconfig" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!

# Polls every Envoy's admin; prints the time all N were ready, or fails.
python3 - "$WORK/tmp" "$N" "$START" "$READY_LIMIT_S" "$SIM_PID" <<'PY' >"$WORK/ready.txt"
import glob, json, os, sys, time, urllib.request

root, n, start, limit, sim = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ready = set()
while True:
    if not os.path.exists(f"/proc/{sim}"):
        sys.exit("meshsim exited before every Envoy was ready")
    for path in glob.glob(f"{root}/meshsim-*/*/admin-address"):
        if path in ready:
            continue
        try:
            admin = open(path).read().strip()
            with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as r:
                body = json.load(r)
        except (OSError, ValueError):
            continue
        for l in body.get("listener_statuses", []):
            if l.get("name") == "virtualInbound" and l["local_address"]["socket_address"].get("port_value"):
                ready.add(path)
    if len(ready) >= n:
        print(f"{time.time() - start:.2f}")
        break
    if time.time() - start > limit:
        sys.exit(f"only {len(ready)} of {n} Envoys ready after {limit:.0f} s")
    time.sleep(0.05)
PY
READY=$(cat "$WORK/ready.txt")
sleep 1

# Memory: meshsim, and every Envoy whose command line names this meshsim's sidecar files.
python3 - "$SIM_PID" "$WORK/tmp" <<'PY' >"$WORK/mem.txt"
import os, sys

sim, root = sys.argv[1], sys.argv[2]
def kb(path, key):
    for line in open(path):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
envoys = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        if os.path.basename(argv[0]) == b"envoy" and any(a.startswith(root.encode()) for a in argv):
            envoys.append(pid)
    except OSError:
        pass
rss = sum(kb(f"/proc/{p}/status", "VmRSS") for p in envoys)
pss = sum(kb(f"/proc/{p}/smaps_rollup", "Pss") for p in envoys)
print(len(envoys), kb(f"/proc/{sim}/status", "VmRSS") // 1024, rss // 1024, pss // 1024)
PY
read -r envoys sim_mb rss_mb pss_mb <"$WORK/mem.txt"
LOAD_END=$(load)
[ "$envoys" -eq "$N" ] || { echo "found $envoys Envoy processes, expected $N" >&2; exit 1; }
fmt() { printf "%'d" "$1"; }
echo "load average: $LOAD_START (start) -> $LOAD_END (end); $PROFILE build; $(nproc) cores" >&2
echo "| $N | ${READY} s | $(fmt "$sim_mb") MB | $(fmt "$rss_mb") MB | $(fmt "$pss_mb") MB |"
