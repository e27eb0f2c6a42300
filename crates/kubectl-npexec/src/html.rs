//! `-o html`: the probes as one self-contained page.
//!
//! A CI job attaches one file that a reviewer opens in a browser, offline:
//! the matrix as a grid (rows FROM, columns TO) with one coloured entry per
//! probe, a legend of the verdicts present, and each entry opening its
//! details (pods, URL, status, body excerpt, and with `--explain` /
//! `--predict` both layers and the policies and rules). Where the engine's
//! prediction and the probe disagree the entry is marked and open, and the case
//! "NetworkPolicy should block but traffic passed" (a CNI that does not
//! enforce NetworkPolicy) gets its own banner. The data is exactly the
//! records `-o json` prints; everything from the cluster is escaped text.

use std::fmt::Write as _;

use kubeplugin::picture::{PageHeader, escape_html as e, html_page};

use crate::graph::{colour, disagreement, layer, nodes, to_node};
use crate::record::ProbeRecord;
use crate::verdict::Verdict;

/// The verdicts that occur, in the legend's order.
fn present(records: &[ProbeRecord]) -> Vec<Verdict> {
    Verdict::ALL
        .iter()
        .chain(std::iter::once(&Verdict::Unknown))
        .copied()
        .filter(|v| records.iter().any(|r| r.verdict == *v))
        .collect()
}

/// An observed pass where the engine says NetworkPolicy blocks: the CNI
/// does not enforce NetworkPolicy (or the policy is not applied yet).
fn cni_not_enforcing(r: &ProbeRecord) -> bool {
    disagreement(r) == Some(Verdict::BlockedNetwork) && r.verdict != Verdict::BlockedNetwork
}

fn css(records: &[ProbeRecord]) -> String {
    let mut s = String::from(
        ".grid td.cell{min-width:110px}.grid td.same,.grid td.none{color:#999;text-align:center}\
         .grid th{white-space:nowrap}.grid th.from{background:#f0f2f5}\
         details.probe{border-left:6px solid #999;background:#fafbfc;margin:2px 0;padding:2px 6px}\
         details.probe summary{cursor:pointer;font-weight:600}\
         details.probe dl{display:grid;grid-template-columns:max-content auto;gap:2px 10px;margin:6px 0;font-size:12px}\
         details.probe dd{margin:0;word-break:break-all}\
         details.disagree{outline:3px dashed #d32f2f;outline-offset:-1px}\
         details.cni-not-enforcing{outline:3px solid #ff6f00;background:#fff3e0}\
         .badge{display:inline-block;font-size:11px;font-weight:600;padding:0 5px;border-radius:3px;background:#d32f2f;color:#fff;margin-left:4px}\
         .banner{border:2px solid #ff6f00;background:#fff3e0;padding:8px 12px;margin:8px 0}\
         ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:6px 18px}\
         ul.legend li{font-size:13px}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px}\
         ul.policies{margin:0;padding-left:16px}\n",
    );
    for v in present(records) {
        let c = colour(v);
        let _ = write!(
            s,
            "details.v-{v}{{border-left-color:{c}}}details.v-{v} summary{{color:{c}}}li.v-{v} .swatch{{background:{c}}}"
        );
    }
    s
}

fn dd(out: &mut String, id: &str, name: &str, value: &str) {
    let _ = write!(
        out,
        "<dt>{}</dt><dd class=\"{id}\">{}</dd>",
        e(name),
        e(value)
    );
}

/// One probe's entry in its grid cell: a summary line, and its details.
fn probe_entry(out: &mut String, index: usize, r: &ProbeRecord) {
    let mut classes = format!("probe v-{}", r.verdict);
    let disagrees = disagreement(r);
    if disagrees.is_some()
        || r.analysis
            .as_ref()
            .is_some_and(|a| !a.contradictions.is_empty())
    {
        classes.push_str(" disagree");
    }
    if cni_not_enforcing(r) {
        classes.push_str(" cni-not-enforcing");
    }
    if r.predicted {
        classes.push_str(" predicted");
    }
    let what = match (&r.to.service, r.to.port) {
        (Some(s), Some(p)) => format!("{s}:{p}"),
        _ => r.to.url.clone(),
    };
    // What disagrees with the engine is what a reader must see first: open.
    let open = if classes.contains(" disagree") {
        " open"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<details class=\"{classes}\" id=\"probe-{index}\" data-verdict=\"{}\"{open}><summary>{} {}{}",
        r.verdict,
        r.verdict.symbol(),
        e(&what),
        e(&format!(
            " {}{}",
            r.verdict,
            if r.predicted { " (predicted)" } else { "" }
        )),
    );
    if let Some(x) = disagrees {
        let _ = write!(out, "<span class=\"badge\">engine: {x}</span>");
    }
    out.push_str("</summary><dl>");
    dd(out, "from", "from", &r.from_label());
    if let Some(c) = &r.from.container {
        dd(out, "container", "container", c);
    }
    dd(out, "to", "to", &r.to_label());
    dd(out, "url", "URL", &r.to.url);
    dd(out, "verdict", "verdict", r.verdict.as_str());
    dd(out, "layer", "layer", layer(r.verdict));
    if let Some(s) = r.http_status {
        dd(out, "status", "HTTP status", &s.to_string());
    }
    if let Some(x) = r.curl_exit {
        dd(out, "exit", "exit code", &x.to_string());
    }
    if !r.detail.is_empty() {
        dd(out, "detail", "detail", &r.detail);
    }
    if !r.predicted {
        dd(out, "time", "time", &format!("{} ms", r.duration_ms));
    }
    if let Some(x) = r.expected {
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "-",
        };
        dd(out, "expect", "expected", &format!("{x} ({met})"));
    }
    if let Some(h) = &r.hint {
        dd(out, "hint", "hint", h);
    }
    if !r.body.is_empty() {
        let _ = write!(
            out,
            "<dt>body</dt><dd><pre class=\"body\">{}</pre></dd>",
            e(&r.body)
        );
    }
    if let Some(a) = &r.analysis {
        if let Some(p) = &a.destination_pod {
            dd(out, "dest-pod", "destination pod", p);
        }
        if let Some(n) = &a.network {
            let state = if n.allowed { "allowed" } else { "BLOCKED" };
            dd(
                out,
                "network",
                "NetworkPolicy",
                &format!("{state} (TCP {}): {}; {}", n.port, n.egress, n.ingress),
            );
        }
        if let Some(z) = &a.authorization {
            let id = z
                .policy_id
                .as_deref()
                .map(|i| format!(" [{i}]"))
                .unwrap_or_default();
            dd(
                out,
                "authorization",
                "AuthorizationPolicy",
                &format!("{}{id}: {}", z.decision, z.reason),
            );
        }
        if let (Some(v), false) = (a.engine_verdict, r.predicted) {
            dd(out, "engine", "engine expects", v.as_str());
        }
    }
    if let Some(policies) = r.policies.as_ref().filter(|p| !p.is_empty()) {
        out.push_str("<dt>policies</dt><dd><ul class=\"policies\">");
        for p in policies {
            let src = match p.source {
                crate::analysis::NoteSource::Engine => "engine",
                crate::analysis::NoteSource::EnvoyLog => "envoy-log",
            };
            let dir = p
                .direction
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<li class=\"policy\">{}</li>",
                e(&format!(
                    "{}{dir}: {}: {} [{src}]",
                    p.label(),
                    p.effect.as_str(),
                    p.detail
                ))
            );
        }
        out.push_str("</ul></dd>");
    }
    if let Some(a) = &r.analysis {
        for c in &a.contradictions {
            dd(out, "contradiction", "disagreement", c);
        }
        for n in &a.notes {
            dd(out, "note", "note", n);
        }
    }
    out.push_str("</dl></details>");
}

/// The page for `records`; `namespaces` are the run's (matrix order),
/// `matrix` whether every pair of them was probed (`--matrix`).
pub fn page(
    header: &PageHeader,
    namespaces: &[String],
    matrix: bool,
    records: &[ProbeRecord],
) -> String {
    let mut body = String::new();
    let predicted = records.iter().any(|r| r.predicted);
    let counts: Vec<String> = present(records)
        .into_iter()
        .map(|v| format!("{} {v}", records.iter().filter(|r| r.verdict == v).count()))
        .collect();
    let _ = writeln!(
        body,
        "<p id=\"summary\">{} probe{}{}: {}</p>",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        if predicted {
            " (predicted by the policy engine; nothing was probed)"
        } else {
            ""
        },
        e(&counts.join(", "))
    );
    let cni: Vec<&ProbeRecord> = records.iter().filter(|r| cni_not_enforcing(r)).collect();
    if !cni.is_empty() {
        let _ = writeln!(
            body,
            "<div class=\"banner\" id=\"cni-not-enforcing\"><strong>NetworkPolicy is not enforced here:</strong> {} probe{} got through although the NetworkPolicies block {}. The CNI may not enforce NetworkPolicy (or the policy is not applied yet).</div>",
            cni.len(),
            if cni.len() == 1 { "" } else { "s" },
            if cni.len() == 1 { "it" } else { "them" },
        );
    }
    let disagreeing = records.iter().filter(|r| disagreement(r).is_some()).count();
    if disagreeing > 0 {
        let _ = writeln!(
            body,
            "<p class=\"disagreements\">{disagreeing} probe{} disagree{} with the policy engine (marked <span class=\"badge\">engine: ...</span>).</p>",
            if disagreeing == 1 { "" } else { "s" },
            if disagreeing == 1 { "s" } else { "" },
        );
    }
    body.push_str("<h2>Legend</h2>\n<ul class=\"legend\" id=\"legend\">");
    for v in present(records) {
        let _ = write!(
            body,
            "<li class=\"v-{v}\" data-verdict=\"{v}\"><span class=\"swatch\"></span><strong>{}</strong> {v}: {}</li>",
            v.symbol(),
            e(layer(v))
        );
    }
    body.push_str(
        "<li class=\"same\">- same namespace</li><li class=\"none\">. no Service</li></ul>\n",
    );

    // Rows: FROM namespaces; columns: destinations. A matrix shows every
    // namespace both ways (its diagonal and empty pairs included).
    let all = nodes(namespaces, records);
    let is_from = |n: &String| records.iter().any(|r| &r.from.namespace == n);
    let is_to = |n: &String| records.iter().any(|r| &to_node(r) == n);
    let rows: Vec<&String> = all
        .iter()
        .filter(|n| is_from(n) || (matrix && namespaces.contains(n)))
        .collect();
    let cols: Vec<&String> = all
        .iter()
        .filter(|n| is_to(n) || (matrix && namespaces.contains(n)))
        .collect();
    body.push_str(
        "<h2>Connectivity</h2>\n<table class=\"grid\" id=\"grid\">\n<tr><th>FROM \\ TO</th>",
    );
    for c in &cols {
        let _ = write!(body, "<th class=\"to\">{}</th>", e(c));
    }
    body.push_str("</tr>\n");
    for from in &rows {
        let _ = write!(body, "<tr><th class=\"from\">{}</th>", e(from));
        for to in &cols {
            let here: Vec<(usize, &ProbeRecord)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| &r.from.namespace == *from && to_node(r) == **to)
                .collect();
            if here.is_empty() {
                if from == to {
                    body.push_str("<td class=\"same\">-</td>");
                } else {
                    body.push_str("<td class=\"none\">.</td>");
                }
                continue;
            }
            let _ = write!(
                body,
                "<td class=\"cell\" data-from=\"{}\" data-to=\"{}\">",
                e(from),
                e(to)
            );
            for (i, r) in here {
                probe_entry(&mut body, i, r);
            }
            body.push_str("</td>");
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</table>\n");
    if records.is_empty() {
        body.push_str("<p class=\"empty\">no probes: no Service port matched</p>\n");
    }
    html_page(header, &css(records), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Analysis;
    use crate::graph::tests::record;

    fn header() -> PageHeader {
        PageHeader {
            title: "t".into(),
            command: "kubectl npexec".into(),
            generated: "now".into(),
            context: Some("ctx".into()),
            version: "v".into(),
        }
    }

    #[test]
    fn one_entry_per_probe_and_a_legend_of_what_is_present() {
        let mut rs = vec![
            record("a", "b", "s1", 80, Verdict::Allowed),
            record("a", "b", "s2", 80, Verdict::DeniedRbac),
            record("b", "a", "s1", 80, Verdict::BlockedNetwork),
        ];
        rs[0].body = "<script>alert(\"x\")</script>\x1b[2J".into();
        rs[0].analysis = Some(Analysis {
            engine_verdict: Some(Verdict::BlockedNetwork),
            ..Default::default()
        });
        let names = ["a".to_string(), "b".to_string()];
        let p = page(&header(), &names, true, &rs);
        assert_eq!(p.matches("<details class=\"probe ").count(), 3);
        assert_eq!(p.matches("<li class=\"v-").count(), 3);
        assert!(!p.contains("<script>") && !p.contains('\x1b'));
        assert!(p.contains("&lt;script&gt;alert(&quot;x&quot;)"));
        assert!(p.contains("id=\"cni-not-enforcing\""));
        assert!(p.contains("cni-not-enforcing\" id=\"probe-0\""));
        assert_eq!(p.matches("<td class=\"same\">").count(), 2);
    }
}
