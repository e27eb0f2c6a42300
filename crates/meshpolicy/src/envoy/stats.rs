//! Envoy's per-cluster upstream counters, as the admin `/stats` endpoint prints them.
//!
//! A client behind an Istio sidecar always gets its TCP connection accepted by
//! that sidecar, so whether the connection really reached the destination is
//! only visible in the sidecar's outbound cluster counters: a `tcp_proxy`
//! counts a new upstream connection at once (`upstream_cx_total`), bytes it
//! forwarded only once that connection is established
//! (`upstream_cx_tx_bytes_total`), and a failed connect in
//! `upstream_cx_connect_fail` (plus `upstream_cx_connect_timeout` after the
//! cluster's connect timeout). npexec reads them around a probe and meshsim
//! prints them for its simulated outbound side; both need the same cluster
//! name (Istio's `outbound|PORT|SUBSET|HOST`) and the same reading of the
//! text format, so both live here. The measured behaviour is in
//! `tests/fixtures/npexec-tcp-sidecar/`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Istio's name of the outbound cluster for port `port` of Service `name` in
/// `namespace`, with no subset: `outbound|PORT||NAME.NS.svc.DOMAIN` (Istio's
/// `direction|port|subset|hostname` subset key).
pub fn outbound_cluster_name(
    name: &str,
    namespace: &str,
    cluster_domain: &str,
    port: u16,
) -> String {
    format!("outbound|{port}||{name}.{namespace}.svc.{cluster_domain}")
}

/// A regular expression (RE2 syntax, as the admin `filter` parameter takes)
/// that matches the `upstream_cx_` counters of `cluster` and nothing else.
pub fn cluster_stats_filter(cluster: &str) -> String {
    let mut re = String::from("^cluster\\.");
    for c in cluster.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            re.push('\\');
        }
        re.push(c);
    }
    re.push_str("\\.upstream_cx_");
    re
}

/// The admin path that asks for [`cluster_stats_filter`]`(cluster)`:
/// `stats?filter=REGEX`, the regex percent-encoded (Envoy's admin decodes
/// query parameters; measured with Envoy 1.40), so it survives any HTTP client.
pub fn cluster_stats_path(cluster: &str) -> String {
    let mut path = String::from("stats?filter=");
    for b in cluster_stats_filter(cluster).bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// The `filter` parameter of an admin `stats` path (`/stats?filter=...`,
/// percent-decoded), `Some("")` for `stats` without one, `None` for another path.
pub fn stats_path_filter(path: &str) -> Option<String> {
    let (p, query) = path.split_once('?').unwrap_or((path, ""));
    if p.trim_start_matches('/') != "stats" {
        return None;
    }
    let Some(raw) = query.split('&').find_map(|kv| kv.strip_prefix("filter=")) else {
        return Some(String::new());
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Whether the admin `filter` regex `filter` finds a match in stat `name`, for
/// the regexes [`cluster_stats_filter`] writes: `^`, `$`, `.` (any character),
/// backslash escapes and literal characters. `None` for a regex using
/// anything else (groups, classes, repetition, alternation), which this
/// does not evaluate. Envoy searches (RE2 partial match), as here.
pub fn filter_matches(filter: &str, name: &str) -> Option<bool> {
    #[derive(Clone, Copy)]
    enum Atom {
        Any,
        Char(char),
    }
    let mut chars = filter.chars().peekable();
    let anchored = chars.next_if_eq(&'^').is_some();
    let mut atoms = Vec::new();
    let mut to_end = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => atoms.push(Atom::Char(chars.next()?)),
            '.' => atoms.push(Atom::Any),
            '$' if chars.peek().is_none() => to_end = true,
            '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => return None,
            c => atoms.push(Atom::Char(c)),
        }
    }
    let name: Vec<char> = name.chars().collect();
    let matches_at = |start: usize| {
        let end = start + atoms.len();
        end <= name.len()
            && (!to_end || end == name.len())
            && atoms.iter().zip(&name[start..end]).all(|(a, c)| match a {
                Atom::Any => true,
                Atom::Char(x) => x == c,
            })
    };
    let last = name.len().saturating_sub(atoms.len());
    Some(if anchored {
        matches_at(0)
    } else {
        (0..=last).any(matches_at)
    })
}

/// The counters of one cluster that say what happened to its upstream connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClusterCounters {
    /// Upstream connections started (counted when the connect begins).
    pub upstream_cx_total: u64,
    /// Upstream connections open now (a pending connect counts too).
    pub upstream_cx_active: u64,
    /// Connects that failed (refused, reset, or timed out).
    pub upstream_cx_connect_fail: u64,
    /// Connects that hit the cluster's connect timeout (also in `connect_fail`).
    pub upstream_cx_connect_timeout: u64,
    /// Bytes sent upstream (only once the connection is established).
    pub upstream_cx_tx_bytes_total: u64,
    /// Bytes received from upstream.
    pub upstream_cx_rx_bytes_total: u64,
    /// Upstream connections closed by the upstream side.
    pub upstream_cx_destroy_remote: u64,
    /// Upstream connections closed by Envoy.
    pub upstream_cx_destroy_local: u64,
}

impl ClusterCounters {
    /// What changed from `before` to `self` (saturating: a counter never goes back,
    /// a gauge may; `upstream_cx_active` is kept as the after value).
    pub fn since(&self, before: &ClusterCounters) -> ClusterCounters {
        ClusterCounters {
            upstream_cx_total: self
                .upstream_cx_total
                .saturating_sub(before.upstream_cx_total),
            upstream_cx_active: self.upstream_cx_active,
            upstream_cx_connect_fail: self
                .upstream_cx_connect_fail
                .saturating_sub(before.upstream_cx_connect_fail),
            upstream_cx_connect_timeout: self
                .upstream_cx_connect_timeout
                .saturating_sub(before.upstream_cx_connect_timeout),
            upstream_cx_tx_bytes_total: self
                .upstream_cx_tx_bytes_total
                .saturating_sub(before.upstream_cx_tx_bytes_total),
            upstream_cx_rx_bytes_total: self
                .upstream_cx_rx_bytes_total
                .saturating_sub(before.upstream_cx_rx_bytes_total),
            upstream_cx_destroy_remote: self
                .upstream_cx_destroy_remote
                .saturating_sub(before.upstream_cx_destroy_remote),
            upstream_cx_destroy_local: self
                .upstream_cx_destroy_local
                .saturating_sub(before.upstream_cx_destroy_local),
        }
    }

    /// The `/stats` text lines for these counters, in Envoy's order (sorted by name).
    pub fn to_stats_text(&self, cluster: &str) -> String {
        let mut lines: Vec<(String, u64)> = self
            .fields()
            .into_iter()
            .map(|(k, v)| (format!("cluster.{cluster}.{k}"), v))
            .collect();
        lines.sort();
        lines
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    }

    fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("upstream_cx_total", self.upstream_cx_total),
            ("upstream_cx_active", self.upstream_cx_active),
            ("upstream_cx_connect_fail", self.upstream_cx_connect_fail),
            (
                "upstream_cx_connect_timeout",
                self.upstream_cx_connect_timeout,
            ),
            (
                "upstream_cx_tx_bytes_total",
                self.upstream_cx_tx_bytes_total,
            ),
            (
                "upstream_cx_rx_bytes_total",
                self.upstream_cx_rx_bytes_total,
            ),
            (
                "upstream_cx_destroy_remote",
                self.upstream_cx_destroy_remote,
            ),
            ("upstream_cx_destroy_local", self.upstream_cx_destroy_local),
        ]
    }

    fn set(&mut self, name: &str, value: u64) -> bool {
        let slot = match name {
            "upstream_cx_total" => &mut self.upstream_cx_total,
            "upstream_cx_active" => &mut self.upstream_cx_active,
            "upstream_cx_connect_fail" => &mut self.upstream_cx_connect_fail,
            "upstream_cx_connect_timeout" => &mut self.upstream_cx_connect_timeout,
            "upstream_cx_tx_bytes_total" => &mut self.upstream_cx_tx_bytes_total,
            "upstream_cx_rx_bytes_total" => &mut self.upstream_cx_rx_bytes_total,
            "upstream_cx_destroy_remote" => &mut self.upstream_cx_destroy_remote,
            "upstream_cx_destroy_local" => &mut self.upstream_cx_destroy_local,
            _ => return false,
        };
        *slot = value;
        true
    }
}

/// Every `name: value` line of a `/stats` text answer whose value is an
/// integer (histograms such as `... : No recorded values` or `P0(...)` are skipped).
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(": ")?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The counters of `cluster` in a `/stats` text answer; `None` when the answer
/// has no `upstream_cx_total` for it (the cluster does not exist, or the
/// answer is not Envoy stats).
pub fn cluster_counters(text: &str, cluster: &str) -> Option<ClusterCounters> {
    let prefix = format!("cluster.{cluster}.");
    let mut counters = ClusterCounters::default();
    let mut seen_total = false;
    for (name, value) in parse_stats(text) {
        if let Some(stat) = name.strip_prefix(&prefix)
            && counters.set(stat, value)
        {
            seen_total |= stat == "upstream_cx_total";
        }
    }
    seen_total.then_some(counters)
}

/// What the counters' change around one TCP probe says about its upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamOutcome {
    /// One connection, established: the probe's bytes were forwarded upstream.
    Forwarded,
    /// One connection, whose connect is still pending when the probe ended
    /// (no bytes forwarded, no failure yet): a drop on the way.
    ConnectPending,
    /// One connection that hit the connect timeout.
    ConnectTimeout,
    /// One connection whose connect failed otherwise (refused or reset).
    ConnectFailed,
    /// Not exactly one new connection, or counters that fit none of the
    /// above: other traffic used the cluster, or the probe never reached it.
    Ambiguous,
}

/// Reads the change of one cluster's counters around a probe that sent
/// `probe_bytes` bytes over one connection (curl's `gopher://` probe sends 2;
/// None: a client whose request length is not known, as wget's HTTP
/// request, where any byte forwarded means the connection was made).
pub fn upstream_outcome(delta: &ClusterCounters, probe_bytes: Option<u64>) -> UpstreamOutcome {
    if delta.upstream_cx_total != 1 {
        return UpstreamOutcome::Ambiguous;
    }
    let tx = delta.upstream_cx_tx_bytes_total;
    match (
        delta.upstream_cx_connect_fail,
        delta.upstream_cx_connect_timeout,
    ) {
        (0, 0) if tx > 0 && probe_bytes.is_none_or(|n| tx == n) => UpstreamOutcome::Forwarded,
        (0, 0) if tx == 0 && delta.upstream_cx_active >= 1 => UpstreamOutcome::ConnectPending,
        (1, 1) if tx == 0 => UpstreamOutcome::ConnectTimeout,
        (1, 0) if tx == 0 => UpstreamOutcome::ConnectFailed,
        _ => UpstreamOutcome::Ambiguous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "outbound|6379||redis.ns.svc.cluster.local";

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/npexec-tcp-sidecar/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The `before` and `after (immediately)` stats of one measured case.
    fn before_after(name: &str) -> (ClusterCounters, ClusterCounters, String) {
        let text = fixture(name);
        let section = |title: &str| -> String {
            let start = text
                .find(title)
                .unwrap_or_else(|| panic!("{name}: no {title}"));
            let rest = &text[start..];
            let body = &rest[rest.find('\n').unwrap() + 1..];
            body[..body.find("\n### ").map_or(body.len(), |e| e + 1)].to_string()
        };
        let before = cluster_counters(&section("### before"), CLUSTER).unwrap();
        let after = cluster_counters(&section("### after (immediately)"), CLUSTER).unwrap();
        let probe = section("### probe");
        (before, after, probe)
    }

    #[test]
    fn cluster_name_is_istios_subset_key() {
        assert_eq!(
            outbound_cluster_name("redis", "ns", "cluster.local", 6379),
            CLUSTER
        );
    }

    #[test]
    fn filter_escapes_the_cluster_name() {
        assert_eq!(
            cluster_stats_filter(CLUSTER),
            r"^cluster\.outbound\|6379\|\|redis\.ns\.svc\.cluster\.local\.upstream_cx_"
        );
    }

    #[test]
    fn stats_path_round_trips_the_filter() {
        let path = cluster_stats_path(CLUSTER);
        assert!(
            path.starts_with("stats?filter=%5Ecluster%5C.outbound%5C%7C6379"),
            "{path}"
        );
        assert_eq!(
            stats_path_filter(&path),
            Some(cluster_stats_filter(CLUSTER))
        );
        assert_eq!(stats_path_filter("/stats"), Some(String::new()));
        assert_eq!(
            stats_path_filter("stats?usedonly&filter=a%7Cb"),
            Some("a|b".into())
        );
        assert_eq!(stats_path_filter("config_dump"), None);
        assert_eq!(
            stats_path_filter("stats?filter=%é%zz%"),
            Some("%é%zz%".into())
        );
    }

    #[test]
    fn filter_matching_is_a_regex_search() {
        let f = cluster_stats_filter(CLUSTER);
        let name = format!("cluster.{CLUSTER}.upstream_cx_total");
        assert_eq!(filter_matches(&f, &name), Some(true));
        assert_eq!(
            filter_matches(&f, "cluster.outbound|6379||redis.ns.svc.cluster.localX"),
            Some(false)
        );
        assert_eq!(filter_matches(&f, &format!("x{name}")), Some(false));
        assert_eq!(filter_matches("upstream_cx_total$", &name), Some(true));
        assert_eq!(
            filter_matches("upstream_cx_total$", &format!("{name}_x")),
            Some(false)
        );
        assert_eq!(filter_matches("cluster.out", &name), Some(true));
        assert_eq!(filter_matches("a|b", &name), None);
        assert_eq!(filter_matches("(a)", &name), None);
    }

    #[test]
    fn parses_counters_and_skips_histograms() {
        let text = "cluster.a.upstream_cx_total: 3\ncluster.a.upstream_cx_connect_ms: No recorded values\n\
                    cluster.a.upstream_cx_tx_bytes_total: 7\ncluster.b.upstream_cx_total: 9\nnot a stat\n";
        let c = cluster_counters(text, "a").unwrap();
        assert_eq!(c.upstream_cx_total, 3);
        assert_eq!(c.upstream_cx_tx_bytes_total, 7);
        assert_eq!(cluster_counters(text, "c"), None);
        assert_eq!(cluster_counters("upstream connect error", "a"), None);
    }

    #[test]
    fn stats_text_round_trips() {
        let c = ClusterCounters {
            upstream_cx_total: 2,
            upstream_cx_active: 1,
            upstream_cx_tx_bytes_total: 4,
            ..ClusterCounters::default()
        };
        assert_eq!(
            cluster_counters(&c.to_stats_text(CLUSTER), CLUSTER),
            Some(c)
        );
    }

    #[test]
    fn measured_silent_server_is_forwarded() {
        let (before, after, probe) = before_after("a-silent");
        assert!(probe.contains("curl exit 28"), "{probe}");
        assert_eq!(
            upstream_outcome(&after.since(&before), Some(2)),
            UpstreamOutcome::Forwarded
        );
    }

    #[test]
    fn measured_pending_connect_is_pending() {
        let (before, after, probe) = before_after("b-noconnect");
        assert!(probe.contains("curl exit 28"), "{probe}");
        assert_eq!(
            upstream_outcome(&after.since(&before), Some(2)),
            UpstreamOutcome::ConnectPending
        );
    }

    #[test]
    fn measured_connect_timeout() {
        let (before, after, probe) = before_after("b-noconnect-12s");
        assert!(probe.contains("curl exit 56"), "{probe}");
        assert_eq!(
            upstream_outcome(&after.since(&before), Some(2)),
            UpstreamOutcome::ConnectTimeout
        );
    }

    #[test]
    fn measured_refused_is_a_failed_connect() {
        let (before, after, probe) = before_after("c-refused");
        assert!(probe.contains("curl exit 0"), "{probe}");
        assert_eq!(
            upstream_outcome(&after.since(&before), Some(2)),
            UpstreamOutcome::ConnectFailed
        );
    }

    #[test]
    fn other_traffic_is_ambiguous() {
        let delta = ClusterCounters {
            upstream_cx_total: 2,
            upstream_cx_tx_bytes_total: 2,
            ..ClusterCounters::default()
        };
        assert_eq!(
            upstream_outcome(&delta, Some(2)),
            UpstreamOutcome::Ambiguous
        );
        let more_bytes = ClusterCounters {
            upstream_cx_total: 1,
            upstream_cx_tx_bytes_total: 40,
            ..ClusterCounters::default()
        };
        assert_eq!(
            upstream_outcome(&more_bytes, Some(2)),
            UpstreamOutcome::Ambiguous
        );
        assert_eq!(
            upstream_outcome(&ClusterCounters::default(), Some(2)),
            UpstreamOutcome::Ambiguous
        );
    }
}
