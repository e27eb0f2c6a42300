//! The simulated source sidecar's outbound cluster counters.
//!
//! meshsim's sidecars run real Envoy for the inbound side only; the outbound
//! side (the source sidecar's `tcp_proxy` towards a Service) is decided in
//! [`super::decide`]. Tools that read a sidecar's `/stats` to tell a drop
//! on the way from a silent server (npexec's TCP probe) need that side's
//! `cluster.outbound|PORT||HOST.upstream_cx_*` counters, so this ledger
//! keeps one entry per upstream connection a pod's sidecar opened and
//! derives the counters from them at read time, with the semantics measured
//! on real Envoy 1.40 (`tests/fixtures/npexec-tcp-sidecar/`): a connection
//! counts in `upstream_cx_total` when its connect starts; bytes count only
//! once it is established; a connect that never completes is
//! `upstream_cx_active` until the connect timeout, then
//! `upstream_cx_connect_fail` + `upstream_cx_connect_timeout` +
//! `upstream_cx_destroy_local`, whether or not its client is still there;
//! a refused one is `upstream_cx_connect_fail` + `upstream_cx_destroy_remote`.
//! Not simulated: HTTP connection pooling (only `tcp_proxy` connections are
//! recorded), and `upstream_cx_active` of established connections (they
//! count as closed once their request is over).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use meshpolicy::envoy::stats::{ClusterCounters, filter_matches};

use crate::mesh::sidecar::lock;
use crate::traffic::{NetOutcome, NetRequest};

/// The bytes a client's request puts on its connection: for curl's
/// `gopher://` the selector (the path after `/` and the item type) and
/// `\r\n`; for HTTP the request line, headers, blank line and body.
pub fn bytes_sent(req: &NetRequest) -> u64 {
    if req.scheme == "gopher" {
        let selector = req.path.strip_prefix('/').unwrap_or(&req.path);
        let selector = selector.get(1..).unwrap_or("");
        return selector.len() as u64 + 2;
    }
    let head: usize = req.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let line = req.method.len() + req.path.len() + " HTTP/1.1\r\n".len() + 1;
    (line + head + 2 + req.body.as_ref().map_or(0, Vec::len)) as u64
}

/// The bytes that came back on the connection for `out`.
pub fn bytes_received(out: &NetOutcome) -> u64 {
    match out {
        NetOutcome::Http {
            status,
            headers,
            body,
            ..
        } => {
            let head: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            (format!("HTTP/1.1 {status}\r\n").len() + head + 2 + body.len()) as u64
        }
        _ => 0,
    }
}

/// How one upstream connection's connect went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// Established; `tx` bytes sent upstream, `rx` received.
    Established { tx: u64, rx: u64 },
    /// Refused at once.
    Refused,
    /// Never completes: times out at `at` (the cluster's connect timeout).
    TimesOut { at: Instant },
}

/// One cluster's connections: the counters of those whose connect is over,
/// and the time-out times of those still pending (kept apart so the ledger
/// stays small however many connections a pod makes).
#[derive(Debug, Default, Clone)]
struct ClusterLedger {
    settled: ClusterCounters,
    pending: Vec<Instant>,
}

impl ClusterLedger {
    fn add(&mut self, connect: Connect) {
        self.settled.upstream_cx_total += 1;
        match connect {
            Connect::Established { tx, rx } => {
                self.settled.upstream_cx_tx_bytes_total += tx;
                self.settled.upstream_cx_rx_bytes_total += rx;
            }
            Connect::Refused => {
                self.settled.upstream_cx_connect_fail += 1;
                self.settled.upstream_cx_destroy_remote += 1;
            }
            Connect::TimesOut { at } => self.pending.push(at),
        }
    }

    /// Settles the connects that have timed out by `now`; the counters.
    fn at(&mut self, now: Instant) -> ClusterCounters {
        let before = self.pending.len();
        self.pending.retain(|at| now < *at);
        let timed_out = (before - self.pending.len()) as u64;
        self.settled.upstream_cx_connect_fail += timed_out;
        self.settled.upstream_cx_connect_timeout += timed_out;
        self.settled.upstream_cx_destroy_local += timed_out;
        ClusterCounters {
            upstream_cx_active: self.pending.len() as u64,
            ..self.settled
        }
    }
}

/// The upstream connections each pod's sidecar opened, by (namespace, pod),
/// then by cluster name.
#[derive(Debug, Default)]
pub struct Ledger {
    conns: Mutex<HashMap<(String, String), BTreeMap<String, ClusterLedger>>>,
}

impl Ledger {
    /// Records one upstream connection of `namespace/pod`'s sidecar.
    pub fn record(&self, namespace: &str, pod: &str, cluster: String, connect: Connect) {
        lock(&self.conns)
            .entry((namespace.to_string(), pod.to_string()))
            .or_default()
            .entry(cluster)
            .or_default()
            .add(connect);
    }

    /// The counters of every cluster `namespace/pod`'s sidecar used, at `now`.
    pub fn counters(
        &self,
        namespace: &str,
        pod: &str,
        now: Instant,
    ) -> BTreeMap<String, ClusterCounters> {
        let mut conns = lock(&self.conns);
        let Some(clusters) = conns.get_mut(&(namespace.to_string(), pod.to_string())) else {
            return BTreeMap::new();
        };
        clusters
            .iter_mut()
            .map(|(name, c)| (name.clone(), c.at(now)))
            .collect()
    }
}

/// The counters of one cluster's connections at `now`.
pub fn counters_of(conns: &[Connect], now: Instant) -> ClusterCounters {
    let mut c = ClusterLedger::default();
    for conn in conns {
        c.add(*conn);
    }
    c.at(now)
}

/// The `/stats` text lines of `clusters` that `filter` selects (all for an
/// empty filter; none for a regex meshpolicy cannot evaluate).
pub fn stats_lines(clusters: &BTreeMap<String, ClusterCounters>, filter: &str) -> Vec<String> {
    clusters
        .iter()
        .flat_map(|(name, c)| {
            c.to_stats_text(name)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|line| {
            let name = line.rsplit_once(": ").map_or(line.as_str(), |(n, _)| n);
            filter.is_empty() || filter_matches(filter, name) == Some(true)
        })
        .collect()
}

/// `real` (an Envoy admin `/stats` answer) with `extra` counter lines merged
/// in, counters sorted by name before the histograms, as Envoy prints them.
pub fn merge_stats(real: &str, extra: Vec<String>) -> String {
    let (mut counters, others): (Vec<String>, Vec<String>) = real
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .partition(|l| {
            l.rsplit_once(": ")
                .is_some_and(|(_, v)| v.trim().parse::<u64>().is_ok())
        });
    counters.extend(extra);
    counters.sort();
    counters.dedup_by(|a, b| a.rsplit_once(": ").map(|x| x.0) == b.rsplit_once(": ").map(|x| x.0));
    let mut out = String::new();
    for l in counters.iter().chain(&others) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshpolicy::envoy::stats::{
        UpstreamOutcome, cluster_counters, cluster_stats_filter, upstream_outcome,
    };
    use std::time::Duration;

    const CLUSTER: &str = "outbound|6379||redis.ns.svc.cluster.local";

    #[test]
    fn a_gopher_probe_sends_its_selector_line() {
        let req = |path: &str| NetRequest {
            method: "GET".into(),
            scheme: "gopher".into(),
            host: "h".into(),
            port: 6379,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        };
        assert_eq!(bytes_sent(&req("/")), 2);
        assert_eq!(bytes_sent(&req("/1abc")), 5);
    }

    #[test]
    fn counters_follow_the_measured_semantics() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(10);
        let pending = counters_of(&[Connect::TimesOut { at }], t0);
        assert_eq!(
            upstream_outcome(&pending, Some(2)),
            UpstreamOutcome::ConnectPending
        );
        let late = counters_of(&[Connect::TimesOut { at }], at);
        assert_eq!(
            upstream_outcome(&late, Some(2)),
            UpstreamOutcome::ConnectTimeout
        );
        let sent = counters_of(&[Connect::Established { tx: 2, rx: 0 }], t0);
        assert_eq!(upstream_outcome(&sent, Some(2)), UpstreamOutcome::Forwarded);
        let refused = counters_of(&[Connect::Refused], t0);
        assert_eq!(
            upstream_outcome(&refused, Some(2)),
            UpstreamOutcome::ConnectFailed
        );
    }

    #[test]
    fn filtered_lines_merge_into_the_real_answer() {
        let ledger = Ledger::default();
        ledger.record(
            "a",
            "p",
            CLUSTER.into(),
            Connect::Established { tx: 2, rx: 5 },
        );
        ledger.record(
            "a",
            "p",
            "outbound|80||web.a.svc.cluster.local".into(),
            Connect::Refused,
        );
        let clusters = ledger.counters("a", "p", Instant::now());
        let lines = stats_lines(&clusters, &cluster_stats_filter(CLUSTER));
        assert_eq!(lines.len(), 8, "{lines:?}");
        let real = "cluster.inbound|6379||.upstream_cx_total: 4\ncluster.x.upstream_cx_connect_ms: No recorded values\n";
        let text = merge_stats(real, lines);
        let c = cluster_counters(&text, CLUSTER).unwrap();
        assert_eq!((c.upstream_cx_total, c.upstream_cx_rx_bytes_total), (1, 5));
        assert!(text.ends_with("No recorded values\n"), "{text}");
        assert!(text.starts_with("cluster.inbound|6379||"), "{text}");
        assert!(stats_lines(&clusters, "a|b").is_empty());
        assert!(ledger.counters("a", "q", Instant::now()).is_empty());
    }
}
