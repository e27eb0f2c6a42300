//! `--summary`: counts per policy and rule, per pod, per proxy kind (sidecar,
//! waypoint, ztunnel), per log line kind, with first and last seen.
//!
//! A summary answers "which policy is denying, where, and since when" without
//! printing every request. It is built incrementally (one pass, one small map per
//! grouping), so it costs memory per distinct policy/pod/source, not per decision.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kubeplugin::render::{Cell, Renderer};
use serde::Serialize;

use crate::record::DecisionRecord;

/// One group's count and time span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub count: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    #[serde(skip)]
    first_ts: Option<Timestamp>,
    #[serde(skip)]
    last_ts: Option<Timestamp>,
}

impl Count {
    fn new() -> Self {
        Count {
            count: 0,
            first_seen: None,
            last_seen: None,
            first_ts: None,
            last_ts: None,
        }
    }

    fn add(&mut self, d: &DecisionRecord) {
        self.count += 1;
        let (ts, time) = (d.ts, d.time.clone());
        match (ts, self.first_ts) {
            (Some(t), Some(f)) if t >= f => {}
            (Some(t), _) => {
                self.first_ts = Some(t);
                self.first_seen = time.clone();
            }
            (None, _) if self.first_seen.is_none() => self.first_seen = time.clone(),
            _ => {}
        }
        match (ts, self.last_ts) {
            (Some(t), Some(l)) if t <= l => {}
            (Some(t), _) => {
                self.last_ts = Some(t);
                self.last_seen = time;
            }
            (None, _) if self.last_seen.is_none() => self.last_seen = time,
            _ => {}
        }
    }
}

/// Key of the per-policy grouping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PolicyKey {
    pub policy: String,
    pub rule: String,
    pub decision: String,
}

/// A row of a grouping, as serialised.
#[derive(Debug, Clone, Serialize)]
pub struct Row<K: Serialize> {
    #[serde(flatten)]
    pub key: K,
    #[serde(flatten)]
    pub count: Count,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodKey {
    pub pod: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProxyKey {
    /// The proxy kind that logged the decisions: `sidecar`, `gateway`, `waypoint`, `ztunnel`.
    pub proxy: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey {
    /// Which log lines the decisions came from, e.g. `rbac-debug+local-reply+access-log`.
    pub log: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DownstreamKey {
    /// The downstream address without its port (where requests came from).
    pub downstream: String,
}

/// The whole summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub total: u64,
    by_policy: BTreeMap<PolicyKey, Count>,
    by_pod: BTreeMap<PodKey, Count>,
    by_proxy: BTreeMap<ProxyKey, Count>,
    by_log: BTreeMap<LogKey, Count>,
    by_downstream: BTreeMap<DownstreamKey, Count>,
}

/// The summary as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryJson {
    pub total: u64,
    pub by_policy: Vec<Row<PolicyKey>>,
    pub by_pod: Vec<Row<PodKey>>,
    /// Per proxy kind, when the logs' proxy kinds are known (live, or ztunnel lines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_proxy: Vec<Row<ProxyKey>>,
    pub by_log: Vec<Row<LogKey>>,
    pub by_downstream: Vec<Row<DownstreamKey>>,
}

fn strip_port(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty() => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        _ => addr.to_string(),
    }
}

fn rows<K: Clone + Ord + Serialize>(m: &BTreeMap<K, Count>) -> Vec<Row<K>> {
    let mut v: Vec<Row<K>> = m
        .iter()
        .map(|(k, c)| Row {
            key: k.clone(),
            count: c.clone(),
        })
        .collect();
    // Most frequent first, then by key.
    v.sort_by(|a, b| {
        b.count
            .count
            .cmp(&a.count.count)
            .then_with(|| a.key.cmp(&b.key))
    });
    v
}

impl Summary {
    pub fn add(&mut self, d: &DecisionRecord) {
        self.total += 1;
        let key = PolicyKey {
            policy: d.policy_label(),
            rule: d
                .policy
                .as_ref()
                .and_then(|p| p.rule.clone())
                .unwrap_or_else(|| "-".into()),
            decision: d.decision_label(),
        };
        self.by_policy.entry(key).or_insert_with(Count::new).add(d);
        self.by_pod
            .entry(PodKey { pod: d.pod_label() })
            .or_insert_with(Count::new)
            .add(d);
        if let Some(kind) = d.proxy {
            self.by_proxy
                .entry(ProxyKey {
                    proxy: kind.to_string(),
                })
                .or_insert_with(Count::new)
                .add(d);
        }
        let origins: Vec<&str> = d.origins().into_iter().map(|o| o.as_str()).collect();
        self.by_log
            .entry(LogKey {
                log: origins.join("+"),
            })
            .or_insert_with(Count::new)
            .add(d);
        if let Some(ds) = &d.downstream {
            self.by_downstream
                .entry(DownstreamKey {
                    downstream: strip_port(ds),
                })
                .or_insert_with(Count::new)
                .add(d);
        }
    }

    pub fn to_json(&self) -> SummaryJson {
        SummaryJson {
            total: self.total,
            by_policy: rows(&self.by_policy),
            by_pod: rows(&self.by_pod),
            by_proxy: rows(&self.by_proxy),
            by_log: rows(&self.by_log),
            by_downstream: rows(&self.by_downstream),
        }
    }

    /// The summary as tables, one per grouping, separated by blank lines.
    pub fn render_tables(&self, renderer: &Renderer) -> String {
        let j = self.to_json();
        let span = |c: &Count| {
            vec![
                Cell::new(c.count.to_string()),
                Cell::new(c.first_seen.clone().unwrap_or_else(|| "-".into())),
                Cell::new(c.last_seen.clone().unwrap_or_else(|| "-".into())),
            ]
        };
        let h = |first: &[&str]| -> Vec<String> {
            first
                .iter()
                .chain(["COUNT", "FIRST SEEN", "LAST SEEN"].iter())
                .map(|s| s.to_string())
                .collect()
        };
        let mut out = String::new();
        let policy_rows: Vec<Vec<Cell>> = j
            .by_policy
            .iter()
            .map(|r| {
                let mut row = vec![
                    Cell::new(r.key.policy.clone()),
                    Cell::new(r.key.rule.clone()),
                    Cell::new(r.key.decision.clone()),
                ];
                row.extend(span(&r.count));
                row
            })
            .collect();
        out.push_str(&renderer.grid(&h(&["POLICY", "RULE", "DECISION"]), &policy_rows));
        let simple = |name: &str, rows: Vec<(String, &Count)>| {
            let rows: Vec<Vec<Cell>> = rows
                .into_iter()
                .map(|(k, c)| {
                    let mut row = vec![Cell::new(k)];
                    row.extend(span(c));
                    row
                })
                .collect();
            renderer.grid(&h(&[name]), &rows)
        };
        out.push('\n');
        out.push_str(&simple(
            "POD",
            j.by_pod
                .iter()
                .map(|r| (r.key.pod.clone(), &r.count))
                .collect(),
        ));
        if !j.by_proxy.is_empty() {
            out.push('\n');
            out.push_str(&simple(
                "PROXY",
                j.by_proxy
                    .iter()
                    .map(|r| (r.key.proxy.clone(), &r.count))
                    .collect(),
            ));
        }
        out.push('\n');
        out.push_str(&simple(
            "LOG",
            j.by_log
                .iter()
                .map(|r| (r.key.log.clone(), &r.count))
                .collect(),
        ));
        if !j.by_downstream.is_empty() {
            out.push('\n');
            out.push_str(&simple(
                "DOWNSTREAM",
                j.by_downstream
                    .iter()
                    .map(|r| (r.key.downstream.clone(), &r.count))
                    .collect(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("10.0.0.1:4321"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("unix"), "unix");
    }
}
