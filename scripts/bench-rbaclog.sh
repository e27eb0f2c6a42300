#!/usr/bin/env bash
# Reproduces the "kubectl rbaclog" figures of BENCHMARKS.md, in one run:
#  1. on one meshsim: 200 pods (10 namespaces x 20) with an istio-proxy sidecar whose log
#     is seeded (meshsim.dev/log.istio-proxy) with 5,000 generated lines each, as a sidecar
#     at the walk-through's debug log level writes them: Envoy debug lines of several
#     scopes, Istio agent info lines, RBAC "checking request" and "enforced allowed" lines
#     and, for ~1% of the lines, RBAC denials (the filter's decision and the local reply
#     of each denied request and its server-side access log line, plus a few dry-run
#     "shadow denied" lines; allowed requests leave an access log line too: access
#     logging is on, as with Istio's meshConfig.accessLogFile). meshsim stores each
#     seeded line with the time it starts with ([START_TIME] for access log lines).
#     `kubectl rbaclog -A` against the walk-through's
#     per-pod loop `for p in $(kubectl get pods -n NS -o name); do kubectl logs $p -c
#     istio-proxy -n NS | grep rbac | grep denied; done` over the same namespaces, with
#     hyperfine (or medians of repeated runs without it), and peak memory (/usr/bin/time -v);
#  2. 1 GiB of the same kind of log through `kubectl-rbaclog --file` with peak RSS.
#
# With REAL_ENVOY=1 (or CAPTURE=DIR) the pods are seeded with real Envoy 1.40 lines instead
# of the generator's: scripts/capture-envoy-rbac-log.sh runs a meshsim sidecar's Envoy (the
# listener from meshpolicy's translation, rbac:debug,http:debug) for known allowed and
# denied requests (or DIR holds such a capture); each pod's log is that capture repeated
# (timestamps shifted into the last 25 minutes) up to LINES_PER_POD lines. Part 2 still
# uses the generator.
#
# Cross-check, both modes: the decisions `kubectl rbaclog -A` finds must equal the denied
# requests in the logs (generated: denials + dry-run shadow denials; real: the capture's
# denied requests x copies x pods) and, with real lines, `--decision all` must find every
# request; the script exits 1 when they disagree.
#
# Usage: scripts/bench-rbaclog.sh [RUNS]     (timed runs per command, default 3)
# Env:   CARGO_TARGET_DIR (default target), KUBECTL (default kubectl on PATH),
#        BENCH_CARGO_ARGS (extra cargo build arguments, e.g.
#        "--config profile.release.lto=false"), FILE_GIB (size of part 2, default 1);
#        for a quick trial: BENCH_PROFILE=debug, BENCH_SKIP_BUILD=1 (use the binaries as
#        built), NAMESPACES, PODS_PER_NS, LINES_PER_POD (default 10, 20, 5000);
#        REAL_ENVOY=1 or CAPTURE=DIR (see above), FILE_GIB=0 skips part 2.
# Needs: the Google Cloud SDK kubectl (or any kubectl >= 1.32), python3, /usr/bin/time,
#        bash, awk, grep; hyperfine optional.
# Never touches ~/.kube: meshsim writes a kubeconfig into a temp dir (HOME is moved there
# too); the temp dir, the generated logs and meshsim are removed on exit.
set -euo pipefail

RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KUBECTL=${KUBECTL:-kubectl}
FILE_GIB=${FILE_GIB:-1}
NAMESPACES=${NAMESPACES:-10}
PODS_PER_NS=${PODS_PER_NS:-20}
LINES_PER_POD=${LINES_PER_POD:-5000}
PROFILE=${BENCH_PROFILE:-release}
WORK=$(mktemp -d)
SIM_PID=

cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The same package set as scripts/bench-authzcheck.sh, so both reuse one release build.
echo "building $PROFILE binaries in $TARGET" >&2
PROFILE_FLAG=--release
[ "$PROFILE" = debug ] && PROFILE_FLAG=
# shellcheck disable=SC2086
[ -n "${BENCH_SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build $PROFILE_FLAG -q -p kubectl-rbaclog -p kubectl-authzcheck -p meshsim --bins ${BENCH_CARGO_ARGS:-})
BIN=$TARGET/$PROFILE
export PATH="$BIN:$PATH" HOME="$WORK" NO_COLOR=1
export KUBECONFIG="$WORK/kubeconfig"

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_START=$(load)

# ---------------------------------------------------------------- data
# One log per pod, timestamps spread over the last ~25 minutes (so rbaclog's default
# --since 1h and plain `kubectl logs` see the same lines), deterministic per pod.
mkdir -p "$WORK/logs"
python3 - "$WORK/gen.py" <<'PY'
import sys
open(sys.argv[1], "w").write(r"""
import random, sys, time, datetime

# gen.py OUT_DIR NAMESPACES PODS LINES  -> OUT_DIR/NS.POD.log, one log per pod
# gen.py OUT_FILE 0 0 BYTES             -> one log of at least BYTES bytes
out, n_ns, n_pods, n_lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
RBAC = "external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224"
REPLY = "external/envoy/source/common/http/filter_manager.cc:1040"
now = time.time()

def us(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

def ms(t):
    # Envoy's %START_TIME%: milliseconds.
    return us(t)[:23] + "Z"

def access(r, t, ns, code, details):
    # Istio's default TEXT access log format (server side, inbound).
    return (f'[{ms(t)}] "GET /api/items/{r.randrange(1000)} HTTP/1.1" {code} - {details} - "-" 0 '
            f'{19 if code == 403 else 612} {r.randrange(5)} - "-" "curl/8.5.0" "{r.getrandbits(64):016x}" '
            f'"web.{ns}.svc.cluster.local" "-" inbound|8080|| - 10.244.1.{r.randrange(250)}:8080 '
            f'10.244.{r.randrange(8)}.{r.randrange(250)}:{30000 + r.randrange(30000)} - default\n')

stats = dict(lines=0, denied_requests=0, shadow_denied=0, grep_lines=0)

def pod_log(f, ns, pod, r, start, step, limit, by_bytes):
    written = n = conn = 0
    while (written if by_bytes else n) < limit:
        t = start + n * step + r.random() * step / 2
        thread = 20 + r.randrange(4)
        x = r.random()
        if x < 0.005:
            # A denied request: the RBAC filter's decision, then the local reply (2 lines).
            pid = f"ns[{ns}]-policy[deny-{['legacy', 'external', 'debug'][r.randrange(3)]}]-rule[{r.randrange(2)}]"
            conn += 1
            chunk = (f"{us(t)}\tdebug\tenvoy rbac {RBAC}\tenforced denied, matched policy {pid}\tthread={thread}\n"
                     f'{us(t + 0.000012)}\tdebug\tenvoy http {REPLY}\t[Tags: "ConnectionId":"{conn}","StreamId":"{r.getrandbits(63)}"] '
                     f"Preparing local reply with details rbac_access_denied_matched_policy[{pid}]\tthread={thread}\n"
                     + access(r, t, ns, 403, f"rbac_access_denied_matched_policy[{pid}]"))
            k, d, sh, g = 3, 1, 0, 3
        elif x < 0.006:
            chunk = f"{us(t)}\tdebug\tenvoy rbac {RBAC}\tshadow denied, matched policy ns[{ns}]-policy[audit-dry-run]-rule[0]\tthread={thread}\n"
            k, d, sh, g = 1, 0, 1, 1
        else:
            k, d, sh, g = 1, 0, 0, 0
            if x < 0.03:
                chunk = (f"{us(t)}\tdebug\tenvoy rbac {RBAC}\tenforced allowed, matched policy ns[{ns}]-policy[allow-frontend]-rule[0]\tthread={thread}\n"
                         + access(r, t, ns, 200, "via_upstream"))
                k = 2
            elif x < 0.06:
                chunk = f"{us(t)}\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:153\tchecking request: requestedServerName: , sourceIP: 10.244.{r.randrange(8)}.{r.randrange(250)}:{30000 + r.randrange(30000)}, directRemoteIP: 10.244.1.{r.randrange(250)}\tthread={thread}\n"
            elif x < 0.45:
                chunk = [
                    f"{us(t)}\tinfo\txdsproxy\tconnected to delta upstream XDS server: istiod.istio-system.svc:15012\n",
                    f"{us(t)}\tinfo\tads\tADS: new connection for node:{pod}.{ns}-{r.randrange(100)}\n",
                    f"{us(t)}\tinfo\tads\tSDS: PUSH request for node:{pod}.{ns} resources:1 size:4.0kB resource:default\n",
                    f"{us(t)}\tinfo\tcache\tgenerated new workload certificate\tlatency={r.randrange(200)}ms ttl=23h59m59s\n",
                ][r.randrange(4)]
            else:
                chunk = [
                    f'{us(t)}\tdebug\tenvoy http external/envoy/source/common/http/conn_manager_impl.cc:1183\t[Tags: "ConnectionId":"{conn}","StreamId":"{r.getrandbits(63)}"] request end stream\tthread={thread}\n',
                    f'{us(t)}\tdebug\tenvoy router external/envoy/source/common/router/router.cc:732\t[Tags: "ConnectionId":"{conn}","StreamId":"{r.getrandbits(63)}"] router decoding headers:\tthread={thread}\n',
                    f'{us(t)}\tdebug\tenvoy connection external/envoy/source/common/network/connection_impl.cc:714\t[Tags: "ConnectionId":"{conn}"] remote close\tthread={thread}\n',
                    f'{us(t)}\tdebug\tenvoy pool external/envoy/source/common/conn_pool/conn_pool_base.cc:215\t[Tags: "ConnectionId":"{conn}"] using existing connection\tthread={thread}\n',
                ][r.randrange(4)]
        if not by_bytes and n + k > limit:
            break
        f.write(chunk)
        written += len(chunk)
        n += k
        stats["lines"] += k; stats["denied_requests"] += d; stats["shadow_denied"] += sh; stats["grep_lines"] += g
    return written

if n_ns == 0:
    # One stream, time always moving forward (1 ms a line).
    with open(out, "w") as f:
        pod_log(f, "bench-00", "web-00", random.Random(0), now - 3 * 3600, 0.001, n_lines, True)
else:
    # Timestamps over the last ~25 minutes, so rbaclog's default --since 1h and plain
    # `kubectl logs` see the same lines; deterministic per pod.
    biggest = 0
    for i in range(n_ns):
        ns = f"bench-{i:02d}"
        for j in range(n_pods):
            pod = f"web-{j:02d}"
            with open(f"{out}/{ns}.{pod}.log", "w") as f:
                biggest = max(biggest, pod_log(f, ns, pod, random.Random(f"{ns}/{pod}"), now - 25 * 60, 24 * 60 / n_lines, n_lines, False))
    stats["largest_pod_log_bytes"] = biggest
print(" ".join(f"{k}={v}" for k, v in stats.items()))
""")
PY
CAPTURE=${CAPTURE:-}
if [ -n "${REAL_ENVOY:-}" ] && [ -z "$CAPTURE" ]; then
  CAPTURE=$WORK/capture
  BENCH_SKIP_BUILD=1 BENCH_PROFILE=$PROFILE "$ROOT/scripts/capture-envoy-rbac-log.sh" "$CAPTURE"
fi
if [ -n "$CAPTURE" ]; then
  # shellcheck disable=SC1091
  . "$CAPTURE/capture.env"
  # replay.py CAPTURE_LOG OUT_DIR NAMESPACES PODS LINES ALLOWED DENIED -> OUT_DIR/NS.POD.log
  python3 - "$CAPTURE/istio-proxy.log" "$WORK/logs" "$NAMESPACES" "$PODS_PER_NS" "$LINES_PER_POD" "$ALLOWED" "$DENIED" <<'PY' >"$WORK/expected.txt"
import datetime, re, sys, time

src, out, n_ns, n_pods, n_lines, allowed, denied = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
lines = open(src, encoding="utf-8", errors="surrogateescape").read().splitlines(keepends=True)
# Envoy's log lines start with its time (microseconds), access log lines with [START_TIME]
# (milliseconds); continuation lines of a multi-line entry with neither.
STAMP = re.compile(r"^(\[?)(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d+)Z)")
def parse(m):
    return datetime.datetime.strptime(m.group(2)[:26].rstrip("Z") + "Z", "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
times = [parse(m) for m in map(STAMP.match, lines) if m]
first, span = min(times), max(times) - min(times)
# meshsim keeps 1 MiB per container, counting 48 bytes per line on top of its text.
cost = sum(len(l) - 1 + 48 for l in lines)
copies = max(1, min(n_lines // len(lines), (1 << 20) * 95 // 100 // cost))
now = time.time()
step = max(span + 1, 24 * 60 / copies)
def shifted(line, delta):
    m = STAMP.match(line)
    if not m:
        return line
    t = datetime.datetime.fromtimestamp(parse(m) + delta, datetime.timezone.utc)
    text = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[: 20 + len(m.group(3))] + "Z"
    return m.group(1) + text + line[m.end():]
log = "".join(shifted(l, now - 25 * 60 + c * step - first) for c in range(copies) for l in lines)
for i in range(n_ns):
    for j in range(n_pods):
        open(f"{out}/bench-{i:02d}.web-{j:02d}.log", "w", encoding="utf-8", errors="surrogateescape").write(log)
grep = sum(1 for l in lines if "rbac" in l and "denied" in l)
pods = n_ns * n_pods
print(f"lines={len(lines) * copies * pods} denied_requests={denied * copies * pods} shadow_denied=0 "
      f"allowed_requests={allowed * copies * pods} grep_lines={grep * copies * pods} copies_per_pod={copies} "
      f"largest_pod_log_bytes={len(log.encode('utf-8', 'surrogateescape'))}")
PY
  SOURCE="real Envoy $ENVOY_VERSION lines ($LEVELS) replayed from a capture of $REQUESTS requests ($ALLOWED allowed, $DENIED denied)"
  echo "$SOURCE" >&2
else
  SOURCE="generated lines"
  python3 "$WORK/gen.py" "$WORK/logs" "$NAMESPACES" "$PODS_PER_NS" "$LINES_PER_POD" >"$WORK/expected.txt"
fi
cat "$WORK/expected.txt" >&2
# meshsim keeps the last 1 MiB of each container's log (as kubelet's rotation would):
# the whole log must fit for both tools to read all LINES_PER_POD lines.
largest=$(sed 's/.*largest_pod_log_bytes=//' "$WORK/expected.txt")
[ "$largest" -le 1048576 ] || echo "warning: a pod log is $largest bytes; meshsim keeps only its last 1 MiB" >&2
LOG_MB=$(du -sm "$WORK/logs" | cut -f1)

SCEN=$WORK/scenario.yaml
: >"$SCEN"
NS=()
for i in $(seq 0 $((NAMESPACES - 1))); do
  ns=$(printf 'bench-%02d' "$i")
  NS+=("$ns")
  cat >>"$SCEN" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns, labels: {istio-injection: enabled}}
---
EOF
  for j in $(seq 0 $((PODS_PER_NS - 1))); do
    pod=$(printf 'web-%02d' "$j")
    cat >>"$SCEN" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  namespace: $ns
  labels: {app: web}
  annotations: {meshsim.dev/log.istio-proxy: "logs/$ns.$pod.log"}
spec:
  containers: [{name: web, image: nginx:latest, ports: [{containerPort: 8080}]}]
---
EOF
  done
done

"$BIN/meshsim" serve --scenario "$SCEN" --ready-delay 10ms --kubeconfig-out "$KUBECONFIG" \
  >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 600); do [ -s "$KUBECONFIG" ] && break; sleep 0.1; done
want=$((NAMESPACES * PODS_PER_NS))
for _ in $(seq 1 600); do
  n=$("$KUBECTL" get pods -A --no-headers 2>/dev/null | grep -c Running || true)
  [ "$n" -ge "$want" ] && break
  sleep 0.2
done
[ "$n" -ge "$want" ] || { echo "pods did not start ($n of $want)" >&2; exit 3; }
SIM_RSS_MB=$(awk '/VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$SIM_PID/status")

# The walk-through's check, per pod, over the same namespaces (the seed's loop).
cat >"$WORK/loop.sh" <<EOF
for ns in ${NS[*]}; do
  for p in \$($KUBECTL get pods -n \$ns -o name); do
    $KUBECTL logs \$p -c istio-proxy -n \$ns | grep rbac | grep denied
  done
done
EOF

# Warm-up (kubectl's discovery cache, first connections) and a check that both read the
# same data: the loop prints every matching line, rbaclog one decision per request.
bash "$WORK/loop.sh" >"$WORK/loop.out"
"$KUBECTL" rbaclog -A -o jsonl >"$WORK/rbaclog.jsonl"
"$KUBECTL" rbaclog -A --summary >"$WORK/summary.txt"
loop_lines=$(wc -l <"$WORK/loop.out")
decisions=$(wc -l <"$WORK/rbaclog.jsonl")
enforced=$(grep -c '"engine":"enforced"' "$WORK/rbaclog.jsonl" || true)
paired=$(grep -c '"origin":"rbac-debug"' "$WORK/rbaclog.jsonl" || true)
# Enforced denials whose local reply and access log line were both paired in.
triples=$(python3 -c 'import json,sys; print(sum(1 for d in map(json.loads, open(sys.argv[1])) if [p["origin"] for p in d["paired"]] == ["local-reply", "access-log"]))' "$WORK/rbaclog.jsonl")
if [ -n "$CAPTURE" ]; then
  all_decisions=$("$KUBECTL" rbaclog -A --decision all -o jsonl | wc -l)
else
  all_decisions=-
fi
pods_seen=$(python3 -c 'import json,sys; print(len({(d["namespace"], d["pod"]) for d in map(json.loads, open(sys.argv[1]))}))' "$WORK/rbaclog.jsonl")

RBACLOG_CMD="$KUBECTL rbaclog -A"
DIRECT_CMD="$BIN/kubectl-rbaclog -A"
LOOP_CMD="bash $WORK/loop.sh"
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
LOAD_TIMED_START=$(load)
if command -v hyperfine >/dev/null; then
  TIMER="hyperfine $(hyperfine --version | cut -d' ' -f2), $RUNS runs each after 1 warm-up"
  hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$WORK/hf-plugins.json" \
    "$RBACLOG_CMD" "$DIRECT_CMD" >&2
  hyperfine --runs "$RUNS" --export-json "$WORK/hf-loop.json" "$LOOP_CMD" >&2
  hf_median() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f" % d["results"][int(sys.argv[2])]["median"])' "$@"; }
  t_plugin=$(hf_median "$WORK/hf-plugins.json" 0)
  t_direct=$(hf_median "$WORK/hf-plugins.json" 1)
  t_loop=$(hf_median "$WORK/hf-loop.json" 0)
else
  TIMER="median of $RUNS runs each (date +%s.%N)"
  time_cmd() {
    for _ in $(seq 1 "$RUNS"); do
      local a b
      a=$(date +%s.%N); $1 >/dev/null; b=$(date +%s.%N)
      awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f\n", b - a }'
    done | median
  }
  t_plugin=$(time_cmd "$RBACLOG_CMD")
  t_direct=$(time_cmd "$DIRECT_CMD")
  t_loop=$(time_cmd "$LOOP_CMD")
fi
LOAD_TIMED_END=$(load)

rss() { awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); printf "%.1f", $2 / 1024 }' "$1"; }
/usr/bin/time -v "$BIN/kubectl-rbaclog" -A >/dev/null 2>"$WORK/t1.txt"
/usr/bin/time -v "$BIN/kubectl-rbaclog" -A -o jsonl >/dev/null 2>"$WORK/t2.txt"
/usr/bin/time -v "$BIN/kubectl-rbaclog" -A --summary >/dev/null 2>"$WORK/t3.txt"
/usr/bin/time -v "$BIN/kubectl-rbaclog" -A --concurrency 4 >/dev/null 2>"$WORK/t4.txt"
/usr/bin/time -v "$BIN/kubectl-rbaclog" -A --concurrency 64 >/dev/null 2>"$WORK/t5.txt"
rss_table=$(rss "$WORK/t1.txt"); rss_jsonl=$(rss "$WORK/t2.txt"); rss_summary=$(rss "$WORK/t3.txt")
rss_c4=$(rss "$WORK/t4.txt"); rss_c64=$(rss "$WORK/t5.txt")
kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=

# ---------------------------------------------------------------- 1 GiB through --file
rm -rf "$WORK/logs"
if [ "$FILE_GIB" -gt 0 ]; then
# One generated stream of the same mix (time moving forward) of FILE_GIB GiB.
BIG=$WORK/big.log
python3 "$WORK/gen.py" "$BIG" 0 0 $((FILE_GIB * 1024 * 1024 * 1024)) >"$WORK/big-expected.txt"
big_bytes=$(stat -c %s "$BIG")
big_lines=$(wc -l <"$BIG")
LOAD_FILE_START=$(load)
/usr/bin/time -v "$BIN/kubectl-rbaclog" --file "$BIG" --summary -o json >"$WORK/big-summary.json" 2>"$WORK/f1.txt"
/usr/bin/time -v "$BIN/kubectl-rbaclog" --file "$BIG" -o jsonl 2>"$WORK/f2.txt" | wc -l >"$WORK/big-decisions.txt"
/usr/bin/time -v "$BIN/kubectl-rbaclog" --file "$BIG" >/dev/null 2>"$WORK/f3.txt"
a=$(date +%s.%N); { grep rbac "$BIG" | grep denied || true; } | wc -l >"$WORK/big-grep.txt"; b=$(date +%s.%N)
LOAD_FILE_END=$(load)
fi
wall() { awk '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s }' "$1"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
cat <<EOF
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average (1, 5, 15 min): start $LOAD_START, timed part $LOAD_TIMED_START -> $LOAD_TIMED_END, --file part ${LOAD_FILE_START:--} -> ${LOAD_FILE_END:--}
1. $NAMESPACES namespaces x $PODS_PER_NS pods x $LINES_PER_POD lines ($(cat "$WORK/expected.txt"), $LOG_MB MB of logs; meshsim RSS ${SIM_RSS_MB} MB)
  source: $SOURCE
  the loop printed $loop_lines lines (generated: $(sed 's/.*grep_lines=\([0-9]*\).*/\1/' "$WORK/expected.txt")); rbaclog -A found $decisions decisions ($enforced enforced, $paired with the RBAC debug line as origin, $triples with their local reply and access log line paired in) in $pods_seen distinct pods/namespaces
  timing: $TIMER
  walk-through loop (grep rbac | grep denied per pod)   ${t_loop} s
  kubectl rbaclog -A                                    ${t_plugin} s   ratio $(ratio "$t_loop" "$t_plugin")x   (goal >= 20x)
  kubectl-rbaclog -A (the plugin binary, no dispatch)   ${t_direct} s   ratio $(ratio "$t_loop" "$t_direct")x
  peak RSS of kubectl-rbaclog -A: table ${rss_table} MB, -o jsonl ${rss_jsonl} MB, --summary ${rss_summary} MB, --concurrency 4 ${rss_c4} MB, --concurrency 64 ${rss_c64} MB
EOF
if [ "$FILE_GIB" -gt 0 ]; then
cat <<EOF
2. --file: $big_bytes bytes, $big_lines lines
  generated: $(cat "$WORK/big-expected.txt")
  kubectl-rbaclog --file F --summary -o json   wall $(wall "$WORK/f1.txt") s   peak RSS $(rss "$WORK/f1.txt") MB
  kubectl-rbaclog --file F -o jsonl            wall $(wall "$WORK/f2.txt") s   peak RSS $(rss "$WORK/f2.txt") MB   $(cat "$WORK/big-decisions.txt") decisions
  kubectl-rbaclog --file F (table)             wall $(wall "$WORK/f3.txt") s   peak RSS $(rss "$WORK/f3.txt") MB
  grep rbac F | grep denied | wc -l            wall $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", b - a }') s   $(cat "$WORK/big-grep.txt") lines
EOF
fi

# Cross-check: every denied request in the logs is one decision (and, with real lines,
# every request one decision with --decision all).
want=$(python3 -c 'import sys; d=dict(kv.split("=") for kv in open(sys.argv[1]).read().split()); print(int(d["denied_requests"]) + int(d["shadow_denied"]), d.get("allowed_requests", "-"))' "$WORK/expected.txt")
read -r want_denied want_allowed <<<"$want"
status=0
if [ "$decisions" -ne "$want_denied" ]; then
  echo "cross-check FAILED: rbaclog -A found $decisions decisions, the logs hold $want_denied denied requests" >&2
  status=1
fi
if [ -n "$CAPTURE" ] && [ "$all_decisions" -ne $((want_denied + want_allowed)) ]; then
  echo "cross-check FAILED: rbaclog -A --decision all found $all_decisions decisions, the logs hold $((want_denied + want_allowed)) requests" >&2
  status=1
fi
[ "$status" -ne 0 ] || echo "cross-check: $decisions denied decisions = $want_denied denied requests${CAPTURE:+; $all_decisions decisions with --decision all = $((want_denied + want_allowed)) requests}"
exit "$status"
