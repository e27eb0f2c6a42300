//! `-o dot` and `-o mermaid`: the probes as a graph of namespaces.
//!
//! A 10-namespace matrix is 90 cells; a graph pasted into a ticket or a pull
//! request reads faster. Nodes are the run's namespaces (and the URLs of
//! `--url` probes); there is one edge per (FROM, TO, port) class: the probes
//! from one namespace to one destination namespace on one port with the same
//! verdict. Each edge is coloured by verdict and labelled with the port, the
//! verdict, the layer that decided, the Service count and (with `--explain` /
//! `--predict`) the deciding policy; an edge where the engine's prediction
//! and the probe disagree is dashed. Verdict colours and layers are defined
//! here once and shared with the HTML report (`-o html`).

use std::fmt::Write as _;

use kubeplugin::picture::{dot_string, mermaid_text};

use crate::record::ProbeRecord;
use crate::verdict::Verdict;

/// The colour of a verdict in every picture.
pub fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Allowed => "#2e7d32",
        Verdict::DeniedRbac => "#c62828",
        Verdict::BlockedNetwork => "#6a1b9a",
        Verdict::Refused => "#8d6e63",
        Verdict::DnsFailure => "#00838f",
        Verdict::MtlsFailure => "#ad1457",
        Verdict::HttpError => "#e65100",
        Verdict::ExecFailed => "#546e7a",
        Verdict::NoEndpoints => "#f9a825",
        Verdict::Unknown => "#9e9e9e",
    }
}

/// The layer that decides a verdict, in a few words.
pub fn layer(v: Verdict) -> &'static str {
    match v {
        Verdict::Allowed => "both layers allow",
        Verdict::DeniedRbac => "Istio AuthorizationPolicy (Envoy)",
        Verdict::BlockedNetwork => "NetworkPolicy (CNI)",
        Verdict::Refused => "nothing listening",
        Verdict::DnsFailure => "DNS",
        Verdict::MtlsFailure => "mTLS (Envoy)",
        Verdict::HttpError => "the application",
        Verdict::ExecFailed => "the source pod (exec)",
        Verdict::NoEndpoints => "no ready endpoint (Service)",
        Verdict::Unknown => "undecided by the engine",
    }
}

/// Where a probe went, as a graph node: its namespace, or the URL.
pub fn to_node(r: &ProbeRecord) -> String {
    r.to.namespace.clone().unwrap_or_else(|| r.to.url.clone())
}

/// The engine's verdict when it disagrees with what the probe saw
/// (`--explain` only: `--predict` records are the engine's verdict).
pub fn disagreement(r: &ProbeRecord) -> Option<Verdict> {
    if r.predicted {
        return None;
    }
    let engine = r.analysis.as_ref()?.engine_verdict?;
    (engine != r.verdict && engine != Verdict::Unknown).then_some(engine)
}

/// One edge: the probes of one (FROM, TO, port, verdict) class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub port: Option<u16>,
    pub verdict: Verdict,
    /// The Services (or URLs) probed.
    pub services: Vec<String>,
    /// Deciding policies named by `--explain` / `--predict`.
    pub policies: Vec<String>,
    /// The engine expected another verdict for some probe of the class.
    pub disagrees_with: Option<Verdict>,
    pub predicted: bool,
}

impl Edge {
    /// `80 denied-rbac` + the layer, the Service count and the policy.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if let Some(p) = self.port {
            let _ = write!(s, "{p} ");
        }
        s.push_str(self.verdict.as_str());
        if self.predicted {
            s.push_str(" (predicted)");
        }
        let _ = write!(s, "\n{}", layer(self.verdict));
        if self.services.len() > 1 {
            let _ = write!(s, "\n{} Services", self.services.len());
        }
        for p in &self.policies {
            let _ = write!(s, "\n{p}");
        }
        if let Some(e) = self.disagrees_with {
            let _ = write!(s, "\nengine expected {e}");
        }
        s
    }
}

/// The edges, in the order their first probe appears.
pub fn edges(records: &[ProbeRecord]) -> Vec<Edge> {
    let mut out: Vec<Edge> = Vec::new();
    for r in records {
        let from = r.from.namespace.clone();
        let to = to_node(r);
        let service = r.to.service.clone().unwrap_or_else(|| r.to.url.clone());
        let i = match out.iter().position(|e| {
            e.from == from && e.to == to && e.port == r.to.port && e.verdict == r.verdict
        }) {
            Some(i) => i,
            None => {
                out.push(Edge {
                    from,
                    to,
                    port: r.to.port,
                    verdict: r.verdict,
                    services: Vec::new(),
                    policies: Vec::new(),
                    disagrees_with: None,
                    predicted: r.predicted,
                });
                out.len() - 1
            }
        };
        let e = &mut out[i];
        if !e.services.contains(&service) {
            e.services.push(service);
        }
        if let Some(p) = r.deciding_policy()
            && !e.policies.contains(&p)
        {
            e.policies.push(p);
        }
        if e.disagrees_with.is_none() {
            e.disagrees_with = disagreement(r);
        }
    }
    out
}

/// Every node: `namespaces` (the run's, in order) then any other destination.
pub fn nodes(namespaces: &[String], records: &[ProbeRecord]) -> Vec<String> {
    let mut out: Vec<String> = namespaces.to_vec();
    for r in records {
        for n in [r.from.namespace.clone(), to_node(r)] {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// A Graphviz digraph (`dot -Tsvg`).
pub fn dot(namespaces: &[String], records: &[ProbeRecord]) -> String {
    let mut out = String::from(
        "digraph npexec {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef1f5\", fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
    );
    for n in nodes(namespaces, records) {
        let _ = writeln!(out, "  {};", dot_string(&n));
    }
    for e in edges(records) {
        let c = colour(e.verdict);
        let style = if e.disagrees_with.is_some() {
            "dashed"
        } else if e.predicted {
            "dotted"
        } else {
            "solid"
        };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=\"{c}\", fontcolor=\"{c}\", style={style}, class={}];",
            dot_string(&e.from),
            dot_string(&e.to),
            dot_string(&e.label()),
            dot_string(e.verdict.as_str()),
        );
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart: nodes `n0..`, one link per edge, each link styled
/// with its verdict's colour (`linkStyle`); disagreements are dotted links.
pub fn mermaid(namespaces: &[String], records: &[ProbeRecord]) -> String {
    let nodes = nodes(namespaces, records);
    let id = |name: &str| nodes.iter().position(|n| n == name).unwrap_or(0);
    let mut out = String::from("flowchart LR\n");
    for (i, n) in nodes.iter().enumerate() {
        let _ = writeln!(out, "  n{i}[\"{}\"]", mermaid_text(n));
    }
    let edges = edges(records);
    for e in &edges {
        let arrow = if e.disagrees_with.is_some() || e.predicted {
            "-.->"
        } else {
            "-->"
        };
        let label = mermaid_text(&e.label()).replace('\n', "<br/>");
        let _ = writeln!(
            out,
            "  n{} {arrow}|\"{label}\"| n{}",
            id(&e.from),
            id(&e.to)
        );
    }
    for (i, e) in edges.iter().enumerate() {
        let c = colour(e.verdict);
        let _ = writeln!(out, "  linkStyle {i} stroke:{c},color:{c}");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::{FromRef, ToRef};

    pub(crate) fn record(from: &str, to: &str, svc: &str, port: u16, v: Verdict) -> ProbeRecord {
        ProbeRecord {
            from: FromRef {
                namespace: from.into(),
                pod: Some(format!("{from}-pod")),
                container: None,
                ..FromRef::default()
            },
            to: ToRef {
                namespace: Some(to.into()),
                service: Some(svc.into()),
                port: Some(port),
                url: format!("http://{svc}.{to}.svc.cluster.local:{port}/"),
            },
            verdict: v,
            detail: String::new(),
            http_status: None,
            curl_exit: None,
            tool: None,
            body: String::new(),
            duration_ms: 3,
            expected: None,
            met: None,
            hint: None,
            policies: None,
            analysis: None,
            predicted: false,
            sidecar_stats: None,
            started_at: None,
        }
    }

    #[test]
    fn one_edge_per_class() {
        let rs = vec![
            record("a", "b", "s1", 80, Verdict::Allowed),
            record("a", "b", "s2", 80, Verdict::Allowed),
            record("a", "b", "s3", 8080, Verdict::Allowed),
            record("a", "b", "s4", 80, Verdict::DeniedRbac),
            record("b", "a", "s1", 80, Verdict::BlockedNetwork),
        ];
        let es = edges(&rs);
        assert_eq!(es.len(), 4);
        assert_eq!(es[0].services, ["s1", "s2"]);
        assert!(es[0].label().contains("2 Services"));
        let d = dot(&["a".into(), "b".into()], &rs);
        assert_eq!(d.matches(" -> ").count(), 4, "{d}");
        assert!(d.contains("class=\"blocked-network\""));
        let m = mermaid(&["a".into(), "b".into()], &rs);
        assert_eq!(m.matches("-->|").count(), 4, "{m}");
        assert_eq!(m.matches("linkStyle").count(), 4);
    }

    #[test]
    fn hostile_names_stay_inside_their_quotes() {
        let rs = vec![record("a", "b\"];x[\"<script>", "s", 80, Verdict::Allowed)];
        let d = dot(&[], &rs);
        assert!(d.contains("\"b\\\"];x[\\\"<script>\""), "{d}");
        let m = mermaid(&[], &rs);
        assert!(!m.contains("<script>") && !m.contains("b\"];"), "{m}");
    }
}
