//! The per-line cost of reading a pod's istio-proxy log: every line `kubectl
//! rbaclog` reads from a cluster goes through `PodStream::line` (kubelet time,
//! resume bookkeeping, pairing). The input is the mix `scripts/bench-rbaclog.sh`
//! seeds into meshsim (Envoy debug lines of several scopes, Istio agent lines,
//! RBAC lines, ~0.5% denied requests), one line every 0.3 s as a pod at the
//! walk-through's debug level writes them, with the kubelet's `timestamps=true`
//! prefix. Figures go to BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use kubectl_rbaclog::lines::{KubeletClock, split_kubelet_time};
use kubectl_rbaclog::pairing::{Pairer, StreamId};
use kubectl_rbaclog::stream::PodStream;

const LINES: usize = 50_000;
const RBAC: &str = "external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224";
const REPLY: &str = "external/envoy/source/common/http/filter_manager.cc:1040";

/// A small deterministic generator (xorshift), so the input is the same each run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rfc3339(t: Timestamp) -> String {
    // Go's RFC3339Nano: trailing zeros of the fraction dropped.
    let s = format!("{t:.9}");
    let (head, frac) = s.trim_end_matches('Z').split_once('.').unwrap_or((&s, ""));
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}Z", head.trim_end_matches('Z'))
    } else {
        format!("{head}.{frac}Z")
    }
}

fn pod_log() -> Vec<String> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let start: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let mut lines = Vec::with_capacity(LINES);
    let mut conn = 0;
    while lines.len() < LINES {
        let n = lines.len() as i64;
        let t = start + SignedDuration::from_micros(n * 288_000 + r.below(144_000) as i64);
        let kt = rfc3339(t + SignedDuration::from_micros(40));
        let it = format!("{t:.6}");
        let thread = 20 + r.below(4);
        let x = r.below(1000);
        if x < 5 {
            conn += 1;
            let pid = format!(
                "ns[bench-00]-policy[deny-{}]-rule[{}]",
                r.below(3),
                r.below(2)
            );
            lines.push(format!("{kt} {it}\tdebug\tenvoy rbac {RBAC}\tenforced denied, matched policy {pid}\tthread={thread}"));
            lines.push(format!("{kt} {it}\tdebug\tenvoy http {REPLY}\t[Tags: \"ConnectionId\":\"{conn}\",\"StreamId\":\"{}\"] Preparing local reply with details rbac_access_denied_matched_policy[{pid}]\tthread={thread}", r.next() >> 1));
        } else if x < 30 {
            lines.push(format!("{kt} {it}\tdebug\tenvoy rbac {RBAC}\tenforced allowed, matched policy ns[bench-00]-policy[allow-frontend]-rule[0]\tthread={thread}"));
        } else if x < 60 {
            lines.push(format!("{kt} {it}\tdebug\tenvoy rbac external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:153\tchecking request: requestedServerName: , sourceIP: 10.244.{}.{}:{}, directRemoteIP: 10.244.1.{}\tthread={thread}", r.below(8), r.below(250), 30000 + r.below(30000), r.below(250)));
        } else if x < 450 {
            lines.push(format!("{kt} {it}\tinfo\tads\tSDS: PUSH request for node:web-00.bench-00 resources:1 size:4.0kB resource:default"));
        } else {
            lines.push(format!("{kt} {it}\tdebug\tenvoy http external/envoy/source/common/http/conn_manager_impl.cc:1183\t[Tags: \"ConnectionId\":\"{conn}\",\"StreamId\":\"{}\"] request end stream\tthread={thread}", r.next() >> 1));
        }
    }
    lines
}

fn bench(c: &mut Criterion) {
    let log = pod_log();
    let bytes: usize = log.iter().map(|l| l.len() + 1).sum();
    let id = || StreamId {
        namespace: Some("bench-00".into()),
        pod: Some("web-00".into()),
        file: None,
        ..StreamId::default()
    };
    let mut g = c.benchmark_group("pod_stream");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("PodStream::line (what rbaclog runs per line)", |b| {
        b.iter(|| {
            let mut s = PodStream::new(id());
            let mut out = Vec::new();
            let mut found = 0;
            for l in &log {
                s.line(l.as_bytes(), &mut out);
                found += out.len();
                out.clear();
            }
            black_box(s.finish(&mut out));
            found + out.len()
        })
    });
    g.bench_function("split_kubelet_time (full RFC 3339 parse)", |b| {
        b.iter(|| {
            log.iter()
                .filter_map(|l| split_kubelet_time(l.as_bytes()))
                .count()
        })
    });
    g.bench_function("KubeletClock::split", |b| {
        b.iter(|| {
            let mut clock = KubeletClock::default();
            log.iter().filter_map(|l| clock.split(l.as_bytes())).count()
        })
    });
    g.bench_function("Pairer::push alone", |b| {
        let stripped: Vec<(Timestamp, &[u8])> = log
            .iter()
            .map(|l| split_kubelet_time(l.as_bytes()).unwrap())
            .collect();
        b.iter(|| {
            let mut p = Pairer::new(id());
            let mut out = Vec::new();
            for (ts, rest) in &stripped {
                p.push(rest, Some(*ts), &mut out);
            }
            p.finish(&mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
