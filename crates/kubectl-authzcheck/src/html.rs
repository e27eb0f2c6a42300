//! `-o html`: each pod's layers as one self-contained page.
//!
//! The same content as the table (NetworkPolicy, PeerAuthentication when the
//! report carries it, AuthorizationPolicy from the API, what Envoy loaded,
//! findings), as a page a CI job attaches and a reviewer opens offline. It is
//! drawn from the [`Report`] data `-o json` prints; a section of that JSON this
//! module does not know by name (a layer added later) is still shown, as a
//! generic table of its fields, so the page never silently drops content.
//! Every name, rule and message is escaped text.

use std::fmt::Write as _;

use kubeplugin::PluginError;
use kubeplugin::picture::{PageHeader, escape_html as e, html_page};
use kubeplugin::render::json_err;
use serde_json::Value;

use crate::report::{ProxySource, Report};

/// The report fields drawn by name; any other is drawn generically.
const KNOWN: [&str; 8] = [
    "pod",
    "ambient",
    "peer_authentication",
    "network_isolation",
    "network_policies",
    "authorization_policies",
    "proxy",
    "findings",
];

const CSS: &str = "\
section.report{margin-bottom:28px}\
td.yes{color:#b26a00;font-weight:600}td.loaded-no{color:#c62828;font-weight:700}td.loaded-yes{color:#2e7d32}\
tr.finding-error td{background:#fdecea}tr.finding-warning td{background:#fff8e1}tr.finding-info td{background:#f5f7fa}\
td.sev{font-weight:700;text-transform:uppercase}\
ul.details{margin:4px 0 0 0;padding-left:16px;font-size:12px}\
p.pod{font-size:15px}\
";

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn table(out: &mut String, class: &str, headers: &[&str], rows: &[Vec<(String, String)>]) {
    let _ = write!(out, "<table class=\"{class}\"><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", e(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for (cls, text) in row {
            let _ = write!(out, "<td class=\"{cls}\">{}</td>", e(text));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

fn cell(class: &str, text: impl Into<String>) -> (String, String) {
    (class.to_string(), text.into())
}

/// A JSON value as nested HTML (for sections without a dedicated view).
fn generic(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str("<span class=\"empty\">(empty)</span>"),
        Value::Object(m) => {
            out.push_str("<table class=\"generic\">");
            for (k, v) in m {
                let _ = write!(out, "<tr><th>{}</th><td>", e(k));
                generic(out, v);
                out.push_str("</td></tr>");
            }
            out.push_str("</table>");
        }
        Value::Array(a) if a.is_empty() => out.push_str("<span class=\"empty\">(none)</span>"),
        Value::Array(a) => {
            out.push_str("<ol class=\"generic\">");
            for v in a {
                out.push_str("<li>");
                generic(out, v);
                out.push_str("</li>");
            }
            out.push_str("</ol>");
        }
        Value::String(s) => out.push_str(&e(s)),
        Value::Null => out.push('-'),
        other => out.push_str(&e(&other.to_string())),
    }
}

/// A title for a report field drawn generically (`peer_authentication` ->
/// `Peer authentication`).
fn title_of(key: &str) -> String {
    let words = key.replace(['_', '-'], " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn report_section(out: &mut String, index: usize, rep: &Report) -> Result<(), PluginError> {
    let _ = write!(out, "<section class=\"report\" id=\"report-{index}\">");
    if let Some(pod) = &rep.pod {
        let _ = writeln!(
            out,
            "<h2 class=\"pod\">Pod {}</h2><p class=\"pod\">{}, sidecar: {}, namespace: {}<br><code>{}</code></p>",
            e(&format!("{}/{}", pod.namespace, pod.name)),
            e(&pod.phase),
            yes_no(pod.sidecar),
            e(pod
                .namespace_injection
                .as_deref()
                .unwrap_or("no injection label")),
            e(&pod.labels.join(", ")),
        );

        // NetworkPolicy.
        out.push_str(
            "<h2 class=\"layer\">Kubernetes NetworkPolicy (enforced by the CNI plugin)</h2>\n",
        );
        let iso = rep.network_isolation.unwrap_or(crate::report::Isolation {
            ingress: false,
            egress: false,
        });
        let mut rows = Vec::new();
        for (dir, isolated) in [("ingress", iso.ingress), ("egress", iso.egress)] {
            let mut any = false;
            for np in &rep.network_policies {
                if !np.directions.iter().any(|d| d == dir) {
                    continue;
                }
                any = true;
                let lines = if dir == "ingress" {
                    &np.ingress
                } else {
                    &np.egress
                };
                rows.push(vec![
                    cell("dir", dir),
                    cell(yes_no(isolated), yes_no(isolated)),
                    cell("policy", format!("{}/{}", np.namespace, np.name)),
                    cell("selects", np.selects.clone()),
                    cell("rules", lines.join("\n")),
                ]);
            }
            if !any {
                rows.push(vec![
                    cell("dir", dir),
                    cell("no", "no"),
                    cell("policy", "-"),
                    cell("selects", "-"),
                    cell(
                        "rules",
                        format!("no policy selects the pod for {dir}: all {dir} allowed"),
                    ),
                ]);
            }
        }
        table(
            out,
            "netpol",
            &["DIRECTION", "ISOLATED", "POLICY", "SELECTS", "RULES"],
            &rows,
        );
    }

    if let Some(pa) = &rep.peer_authentication {
        let _ = writeln!(
            out,
            "<h2 class=\"layer\">Istio PeerAuthentication (mTLS, enforced by the {})</h2>\n<p class=\"peerauth\">workload mode: <strong>{}</strong> ({}){}</p>",
            if rep.ambient.is_some() {
                "ztunnel"
            } else {
                "sidecar"
            },
            e(&pa.mode),
            e(pa.decided_by.as_deref().unwrap_or("Istio's default")),
            if pa.enforced {
                ""
            } else {
                "; no sidecar: plain text is always accepted"
            },
        );
        let rows: Vec<Vec<(String, String)>> = pa
            .ports
            .iter()
            .map(|p| {
                vec![
                    cell("port", p.port.to_string()),
                    cell("name", p.name.clone().unwrap_or_else(|| "-".into())),
                    cell("mode", p.mode.clone()),
                    cell(
                        "by",
                        p.decided_by.clone().unwrap_or_else(|| "default".into()),
                    ),
                ]
            })
            .collect();
        table(
            out,
            "peerauth-ports",
            &["PORT", "NAME", "MODE", "DECIDED BY"],
            &rows,
        );
        let rows: Vec<Vec<(String, String)>> = pa
            .policies
            .iter()
            .map(|p| {
                vec![
                    cell("policy", format!("{}/{}", p.namespace, p.name)),
                    cell("scope", p.scope.clone()),
                    cell("mode", p.mode.clone()),
                    cell("ports", p.port_level.join(", ")),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("<p class=\"empty\">(no PeerAuthentication applies to this pod)</p>\n");
        } else {
            table(
                out,
                "peerauth",
                &["POLICY", "SCOPE", "MODE", "PORT-LEVEL"],
                &rows,
            );
        }
    }

    // Layers the report carries that this page has no view of (PeerAuthentication, ...),
    // in the report's order, before the AuthorizationPolicies.
    let value = serde_json::to_value(rep).map_err(json_err)?;
    if let Value::Object(m) = &value {
        for (k, v) in m.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())) {
            let _ = write!(
                out,
                "<h2 class=\"layer extra\" data-field=\"{}\">{}</h2>\n<div class=\"extra\">",
                e(k),
                e(&title_of(k))
            );
            generic(out, v);
            out.push_str("</div>\n");
        }
    }

    if let Some(amb) = &rep.ambient {
        ambient_section(out, amb);
    }

    if rep.pod.is_some() && rep.ambient.is_none() {
        out.push_str("<h2 class=\"layer\">Istio AuthorizationPolicy from the API (enforced by the sidecar)</h2>\n");
        if rep.authorization_policies.is_empty() {
            out.push_str("<p class=\"empty\">(none applies to this pod)</p>\n");
        } else {
            out.push_str("<table class=\"authz\"><tr><th>POLICY</th><th>ACTION</th><th>RULES</th><th>SCOPE</th><th>DRY-RUN</th><th>LOADED</th><th>MEANING</th><th>ENVOY NAMES</th></tr>");
            for a in &rep.authorization_policies {
                let scope = match (&a.scope[..], &a.selector) {
                    ("mesh", Some(s)) => format!("mesh, {s}"),
                    ("mesh", None) => "mesh (root namespace)".into(),
                    (_, Some(s)) => s.clone(),
                    (other, None) => other.to_string(),
                };
                let (loaded, cls) = match a.loaded {
                    Some(true) => ("yes", "loaded-yes"),
                    Some(false) => ("NO", "loaded-no"),
                    None => ("?", "loaded-unknown"),
                };
                let _ = write!(
                    out,
                    "<tr><td class=\"policy\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{cls}\">{loaded}</td><td>{}",
                    e(&format!("{}/{}", a.namespace, a.name)),
                    e(&a.action),
                    a.rules,
                    e(&scope),
                    yes_no(a.dry_run),
                    e(&a.meaning),
                );
                if !a.details.is_empty() {
                    out.push_str("<ul class=\"details\">");
                    for d in &a.details {
                        let _ = write!(out, "<li>{}</li>", e(d));
                    }
                    out.push_str("</ul>");
                }
                let _ = write!(out, "</td><td>{}</td></tr>", e(&a.envoy_names.join(", ")));
            }
            out.push_str("</table>\n");
        }
    }

    // Envoy.
    let p = &rep.proxy;
    let _ = writeln!(
        out,
        "<h2 class=\"layer\">What Envoy loaded ({}: {})</h2>",
        e(p.source.as_str()),
        e(&p.detail)
    );
    if p.source == ProxySource::Unavailable {
        out.push_str("<p class=\"empty\">(nothing to show)</p>\n");
    } else {
        let name = |policy: &str, ns: &Option<String>| match ns {
            Some(ns) => format!("{ns}/{policy}"),
            None => policy.to_string(),
        };
        let rows: Vec<Vec<(String, String)>> = p
            .rows
            .iter()
            .map(|r| {
                vec![
                    cell("action", r.action.clone()),
                    cell("policy", name(&r.policy, &r.namespace)),
                    cell("rules", r.rules.to_string()),
                ]
            })
            .collect();
        table(
            out,
            "envoy",
            &["ACTION", "AuthorizationPolicy", "RULES"],
            &rows,
        );
        if let Some(hidden) = p.hidden.as_ref().filter(|h| !h.is_empty()) {
            out.push_str(
                "<h3>Not shown by istioctl (dry-run shadow rules, CUSTOM providers)</h3>\n",
            );
            let rows: Vec<Vec<(String, String)>> = hidden
                .iter()
                .map(|h| {
                    vec![
                        cell("action", h.action.clone()),
                        cell("policy", name(&h.policy, &h.namespace)),
                        cell("kind", h.kind.clone()),
                        cell("provider", h.provider.clone().unwrap_or_else(|| "-".into())),
                        cell("rules", h.rules.to_string()),
                        cell("where", h.where_.join("; ")),
                    ]
                })
                .collect();
            table(
                out,
                "hidden",
                &["ACTION", "POLICY", "KIND", "PROVIDER", "RULES", "WHERE"],
                &rows,
            );
        }
        if !p.anonymous.is_empty() {
            out.push_str("<h3>_anonymous_match_nothing_ entries</h3>\n");
            let rows: Vec<Vec<(String, String)>> = p
                .anonymous
                .iter()
                .map(|a| {
                    vec![
                        cell("action", a.action.clone()),
                        cell("origin", a.origin.clone()),
                        cell("location", a.location.clone().unwrap_or_else(|| "-".into())),
                        cell("explanation", a.explanation.clone()),
                    ]
                })
                .collect();
            table(
                out,
                "anonymous",
                &["ACTION", "ORIGIN", "WHERE", "EXPLANATION"],
                &rows,
            );
        }
    }

    // Findings.
    out.push_str("<h2 class=\"layer\">Findings</h2>\n");
    if rep.findings.is_empty() {
        out.push_str("<p class=\"empty\">(no findings)</p>\n");
    } else {
        out.push_str(
            "<table class=\"findings\"><tr><th>SEVERITY</th><th>CODE</th><th>MESSAGE</th></tr>",
        );
        for f in &rep.findings {
            let s = f.severity.as_str();
            let _ = write!(
                out,
                "<tr class=\"finding-{s}\"><td class=\"sev\">{s}</td><td><code>{}</code></td><td>{}</td></tr>",
                e(&f.code),
                e(&f.message)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

/// An ambient pod's ztunnel (L4) and waypoint (L7) sections, as the table draws them.
fn ambient_section(out: &mut String, amb: &crate::report::AmbientSection) {
    out.push_str("<h2 class=\"layer\">Istio AuthorizationPolicy enforced by ztunnel (L4 only: selector, namespace-wide or root namespace)</h2>\n");
    if amb.ztunnel.is_empty() {
        out.push_str("<p class=\"empty\">(none: ztunnel allows every connection that NetworkPolicy lets through)</p>\n");
    } else {
        let rows: Vec<Vec<(String, String)>> = amb
            .ztunnel
            .iter()
            .map(|z| {
                let scope = match (&z.scope[..], &z.selector) {
                    ("mesh", _) => "mesh (root namespace)".to_string(),
                    (_, Some(s)) => s.clone(),
                    (other, None) => other.to_string(),
                };
                vec![
                    cell("policy", z.policy.to_string()),
                    cell("action", z.action.clone()),
                    cell("rules", format!("{}/{}", z.l4_rules, z.rules)),
                    cell("scope", scope),
                    cell(
                        if z.omissions.is_empty() {
                            "effect"
                        } else {
                            "effect yes"
                        },
                        z.effect.clone(),
                    ),
                ]
            })
            .collect();
        table(
            out,
            "ztunnel",
            &["POLICY", "ACTION", "L4 RULES", "SCOPE", "WHAT ZTUNNEL DOES"],
            &rows,
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"ztunnel-config\">ztunnel's configuration: {}</p>",
        e(&amb.ztunnel_config)
    );
    out.push_str("<h2 class=\"layer\">Waypoints of the pod's Services (L7: policies attached with targetRefs)</h2>\n");
    if amb.waypoints.is_empty() {
        out.push_str("<p class=\"empty\">(no Service selects this pod)</p>\n");
        return;
    }
    let mut rows: Vec<Vec<(String, String)>> = Vec::new();
    for w in &amb.waypoints {
        let wp = w.waypoint.clone().unwrap_or_else(|| "-".into());
        let state = match &w.bound_by {
            Some(b) => format!("{} ({b})", w.state),
            None => w.state.clone(),
        };
        if w.policies.is_empty() {
            rows.push(vec![
                cell("service", w.service.clone()),
                cell("waypoint", wp.clone()),
                cell("state", state.clone()),
                cell("policy", "-"),
                cell("action", "-"),
                cell("loaded-unknown", "-"),
                cell("meaning", "(no policy attached)"),
            ]);
        }
        for p in &w.policies {
            let (loaded, cls) = match p.loaded {
                Some(true) => ("yes", "loaded-yes"),
                Some(false) => ("NO", "loaded-no"),
                None => ("?", "loaded-unknown"),
            };
            rows.push(vec![
                cell("service", w.service.clone()),
                cell("waypoint", wp.clone()),
                cell("state", state.clone()),
                cell("policy", format!("{}/{} ({})", p.namespace, p.name, p.via)),
                cell("action", p.action.clone()),
                cell(cls, loaded),
                cell("meaning", p.meaning.clone()),
            ]);
        }
    }
    table(
        out,
        "waypoints",
        &[
            "SERVICE", "WAYPOINT", "STATE", "POLICY", "ACTION", "LOADED", "MEANING",
        ],
        &rows,
    );
}

/// The page for `reports` (one section per pod).
pub fn page(header: &PageHeader, reports: &[Report]) -> Result<String, PluginError> {
    let mut body = String::new();
    if reports.is_empty() {
        body.push_str("<p class=\"empty\">no pod matched</p>\n");
    }
    for (i, rep) in reports.iter().enumerate() {
        report_section(&mut body, i, rep)?;
    }
    Ok(html_page(header, CSS, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AuthzEntry, Finding, PodInfo, ProxyRow, ProxyView, Severity};

    const EVIL: &str = "<script>alert('x')</script>\"\u{1b}[2J";

    #[test]
    fn every_layer_is_shown_and_hostile_text_is_text() {
        let rep = Report {
            pod: Some(PodInfo {
                namespace: "ns".into(),
                name: format!("pod-{EVIL}"),
                sidecar: true,
                phase: "Running".into(),
                labels: vec![format!("app={EVIL}")],
                namespace_injection: None,
            }),
            network_isolation: None,
            network_policies: vec![],
            authorization_policies: vec![AuthzEntry {
                namespace: "ns".into(),
                name: "deny".into(),
                action: "DENY".into(),
                rules: 1,
                scope: "namespace".into(),
                selector: None,
                dry_run: false,
                provider: None,
                envoy_names: vec!["ns[ns]-policy[deny]-rule[0]".into()],
                meaning: EVIL.into(),
                details: vec![EVIL.into()],
                loaded: Some(false),
                age_seconds: None,
                change: None,
            }],
            proxy: ProxyView {
                source: ProxySource::Istioctl,
                detail: EVIL.into(),
                rows: vec![ProxyRow {
                    action: "DENY".into(),
                    policy: "deny".into(),
                    namespace: Some("ns".into()),
                    rules: 1,
                }],
                hidden: None,
                anonymous: vec![],
            },
            peer_authentication: Some(crate::report::PeerAuthSection {
                enforced: true,
                policies: vec![crate::report::PeerAuthEntry {
                    namespace: "ns".into(),
                    name: format!("strict-{EVIL}"),
                    scope: "namespace".into(),
                    selector: None,
                    mode: "STRICT".into(),
                    port_level: vec!["8080=DISABLE".into()],
                    decides: true,
                }],
                mode: "STRICT".into(),
                decided_by: Some("ns/strict".into()),
                ports: vec![crate::report::PortMode {
                    port: 8080,
                    name: Some("http".into()),
                    declared: true,
                    mode: "DISABLE".into(),
                    decided_by: Some("ns/strict".into()),
                    port_level: true,
                }],
            }),
            findings: vec![Finding::new(Severity::Error, "not-loaded", EVIL)],
            what_if: None,
            ambient: None,
        };
        let h = PageHeader {
            title: "t".into(),
            command: "c".into(),
            generated: "g".into(),
            context: None,
            version: "v".into(),
        };
        let p = page(&h, &[rep]).unwrap();
        assert!(!p.contains("<script>") && !p.contains('\x1b'), "{p}");
        for layer in [
            "NetworkPolicy",
            "PeerAuthentication (mTLS",
            "8080=DISABLE",
            "AuthorizationPolicy from the API",
            "What Envoy loaded",
            "Findings",
        ] {
            assert!(p.contains(layer), "{layer}");
        }
        assert!(p.contains("class=\"loaded-no\""));
        assert!(p.contains("finding-error"));
        assert_eq!(title_of("peer_authentication"), "Peer authentication");
    }
}
