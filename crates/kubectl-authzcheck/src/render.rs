//! The render layer: a [`Report`] as sections of kubectl-style tables, or as
//! JSON. The only place authzcheck writes to stdout.
//!
//! Each section is a small table (kubeplugin's grid: no borders, control
//! characters from names and rules escaped, color only when allowed) under a
//! one-line title saying which layer it shows and who enforces it, so a
//! reader never confuses "the API says" with "Envoy loaded".

use std::io::Write;

use kubeplugin::render::{Cell, Renderer, Tone, json_err, write_str};
use kubeplugin::{OutputFormat, PluginError};

use crate::report::{Change, ProxySource, Report, Severity};

/// The CHANGE cell of a row (with -f / --delete-f).
fn change_cell(c: Option<Change>) -> Cell {
    match c {
        None => Cell::new(""),
        Some(c) => Cell::new(c.as_str()).tone(match c {
            Change::New => Tone::Good,
            Change::Gone => Tone::Bad,
            Change::Changed => Tone::Warn,
            Change::Unchanged => Tone::Dim,
        }),
    }
}

/// Puts the CHANGE column first when the report has one.
fn with_change(marks: bool, c: Option<Change>, mut row: Vec<Cell>) -> Vec<Cell> {
    if marks {
        row.insert(0, change_cell(c));
    }
    row
}

fn change_headers<'a>(marks: bool, headers: &[&'a str]) -> Vec<&'a str> {
    let mut h = Vec::with_capacity(headers.len() + 1);
    if marks {
        h.push("CHANGE");
    }
    h.extend_from_slice(headers);
    h
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn section(r: &Renderer, out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<Cell>>) {
    if !r.no_headers {
        // Titles can carry untrusted text (istioctl's detail, pod names).
        out.push_str(&kubeplugin::render::escape_control(title));
        out.push('\n');
    }
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    out.push_str(&r.grid(&headers, &rows));
    out.push('\n');
}

/// One report as text sections.
pub fn report_text(r: &Renderer, rep: &Report) -> String {
    let wide = r.format == OutputFormat::Wide;
    let marks = rep.what_if.is_some();
    let mut out = String::new();
    if let Some(pod) = &rep.pod {
        let injection = pod
            .namespace_injection
            .clone()
            .unwrap_or_else(|| "no injection label".into());
        out.push_str(&kubeplugin::render::escape_control(&format!(
            "Pod {}/{} ({}, sidecar: {}, namespace: {})",
            pod.namespace,
            pod.name,
            pod.phase,
            yes_no(pod.sidecar),
            injection
        )));
        out.push('\n');
        if let Some(note) = &rep.what_if {
            out.push_str(note);
            out.push('\n');
        }
        out.push('\n');

        // NetworkPolicy.
        let mut rows = Vec::new();
        let iso = rep.network_isolation.unwrap_or(crate::report::Isolation {
            ingress: false,
            egress: false,
        });
        for (dir, isolated) in [("ingress", iso.ingress), ("egress", iso.egress)] {
            let mut any = false;
            for np in &rep.network_policies {
                let lines = if dir == "ingress" {
                    &np.ingress
                } else {
                    &np.egress
                };
                if !np.directions.iter().any(|d| d == dir) {
                    continue;
                }
                any = true;
                for (i, l) in lines.iter().enumerate() {
                    let first = i == 0;
                    let change = if first { np.change } else { None };
                    rows.push(with_change(
                        marks,
                        change,
                        vec![
                            Cell::new(if first { dir } else { "" }),
                            Cell::new(if first { yes_no(isolated) } else { "" })
                                .tone(if isolated { Tone::Warn } else { Tone::Plain }),
                            Cell::new(if first {
                                format!("{}/{}", np.namespace, np.name)
                            } else {
                                String::new()
                            }),
                            Cell::new(l.clone()),
                        ],
                    ));
                }
            }
            if !any {
                rows.push(with_change(
                    marks,
                    None,
                    vec![
                        Cell::new(dir),
                        Cell::new("no"),
                        Cell::new("-"),
                        Cell::new(format!(
                            "no policy selects the pod for {dir}: all {dir} allowed"
                        ))
                        .tone(Tone::Dim),
                    ],
                ));
            }
        }
        section(
            r,
            &mut out,
            "Kubernetes NetworkPolicy (enforced by the CNI plugin)",
            &change_headers(marks, &["DIRECTION", "ISOLATED", "POLICY", "RULES"]),
            rows,
        );

        if let Some(amb) = &rep.ambient {
            ambient_sections(r, &mut out, amb);
        }

        // AuthorizationPolicy from the API.
        let mut headers = change_headers(
            marks,
            &[
                "POLICY", "ACTION", "RULES", "SCOPE", "DRY-RUN", "LOADED", "MEANING",
            ],
        );
        if wide {
            headers.push("ENVOY NAMES");
        }
        let rows: Vec<Vec<Cell>> = rep
            .authorization_policies
            .iter()
            .map(|a| {
                let scope = match (&a.scope[..], &a.selector) {
                    ("mesh", Some(s)) => format!("mesh, {s}"),
                    ("mesh", None) => "mesh (root namespace)".into(),
                    (_, Some(s)) => s.clone(),
                    (other, None) => other.to_string(),
                };
                let (loaded, tone) = match a.loaded {
                    Some(true) => ("yes", Tone::Good),
                    Some(false) => ("NO", Tone::Bad),
                    None => ("?", Tone::Dim),
                };
                let mut row = vec![
                    Cell::new(format!("{}/{}", a.namespace, a.name)),
                    Cell::new(a.action.clone()),
                    Cell::new(a.rules.to_string()),
                    Cell::new(scope),
                    Cell::new(yes_no(a.dry_run)),
                    Cell::new(loaded).tone(tone),
                    Cell::new(a.meaning.clone()),
                ];
                if wide {
                    row.push(Cell::new(a.envoy_names.join(",")));
                }
                with_change(marks, a.change, row)
            })
            .collect();
        let title = "Istio AuthorizationPolicy from the API (enforced by the sidecar)";
        if rep.ambient.is_some() {
            // An ambient pod has no sidecar: the ztunnel and waypoint sections say it all.
        } else if rows.is_empty() {
            if !r.no_headers {
                out.push_str(title);
                out.push('\n');
            }
            out.push_str("(none applies to this pod)\n\n");
        } else {
            section(r, &mut out, title, &headers, rows);
        }
        if wide {
            for a in &rep.authorization_policies {
                for d in &a.details {
                    // Escape the detail only: the line's own newline stays one.
                    out.push_str("  ");
                    out.push_str(&kubeplugin::render::escape_control(d));
                    out.push('\n');
                }
            }
            if rep
                .authorization_policies
                .iter()
                .any(|a| !a.details.is_empty())
            {
                out.push('\n');
            }
        }
    }

    // PeerAuthentication.
    if let Some(pa) = &rep.peer_authentication {
        let enforced = if rep.ambient.is_some() {
            "enforced by ztunnel"
        } else if pa.enforced {
            "enforced by the sidecar"
        } else {
            "NOT enforced: no sidecar"
        };
        let title = format!("Istio PeerAuthentication (mTLS, {enforced})");
        let mut rows: Vec<Vec<Cell>> = pa
            .policies
            .iter()
            .map(|p| {
                let mut scope = p.scope.clone();
                if let Some(sel) = &p.selector {
                    scope = format!("{scope}, {sel}");
                }
                vec![
                    Cell::new(format!("{}/{}", p.namespace, p.name)),
                    Cell::new(scope),
                    Cell::new(p.mode.clone()),
                    Cell::new(if p.port_level.is_empty() {
                        "-".to_string()
                    } else {
                        p.port_level.join(",")
                    }),
                    Cell::new(yes_no(p.decides)),
                ]
            })
            .collect();
        if rows.is_empty() {
            rows.push(vec![
                Cell::new("-"),
                Cell::new("-"),
                Cell::new("-"),
                Cell::new("-"),
                Cell::new("none applies: PERMISSIVE by default").tone(Tone::Dim),
            ]);
        }
        section(
            r,
            &mut out,
            &title,
            &["POLICY", "SCOPE", "MODE", "PORT-LEVEL", "DECIDES"],
            rows,
        );
        let mut rows: Vec<Vec<Cell>> = pa
            .ports
            .iter()
            .map(|p| {
                let port = match &p.name {
                    Some(n) => format!("{} ({n})", p.port),
                    None if !p.declared => format!("{} (not declared)", p.port),
                    None => p.port.to_string(),
                };
                let tone = match p.mode.as_str() {
                    "STRICT" => Tone::Good,
                    "DISABLE" => Tone::Warn,
                    _ => Tone::Plain,
                };
                let by = match (&p.decided_by, p.port_level) {
                    (Some(b), true) => format!("{b} (port-level)"),
                    (Some(b), false) => b.clone(),
                    (None, _) => "default".to_string(),
                };
                vec![
                    Cell::new(port),
                    Cell::new(p.mode.clone()).tone(tone),
                    Cell::new(by),
                ]
            })
            .collect();
        rows.insert(
            0,
            vec![
                Cell::new("*"),
                Cell::new(pa.mode.clone()),
                Cell::new(pa.decided_by.clone().unwrap_or_else(|| "default".into())),
            ],
        );
        section(
            r,
            &mut out,
            "Effective mTLS mode per port (container port; * = every other port)",
            &["PORT", "MODE", "DECIDED BY"],
            rows,
        );
    }

    // Envoy.
    let p = &rep.proxy;
    let title = match &rep.ambient {
        Some(_) => format!(
            "What the waypoint's Envoy loaded ({}: {})",
            p.source.as_str(),
            p.detail
        ),
        None => format!("What Envoy loaded ({}: {})", p.source.as_str(), p.detail),
    };
    if p.source == ProxySource::Unavailable {
        if !r.no_headers {
            out.push_str(&kubeplugin::render::escape_control(&title));
            out.push('\n');
        }
        out.push_str("(nothing to show)\n\n");
    } else {
        let rows = p
            .rows
            .iter()
            .map(|row| {
                let name = match &row.namespace {
                    Some(ns) => format!("{ns}/{}", row.policy),
                    None => row.policy.clone(),
                };
                vec![
                    Cell::new(row.action.clone()),
                    Cell::new(name),
                    Cell::new(row.rules.to_string()),
                ]
            })
            .collect();
        section(
            r,
            &mut out,
            &title,
            &["ACTION", "AuthorizationPolicy", "RULES"],
            rows,
        );
        if let Some(hidden) = &p.hidden
            && !hidden.is_empty()
        {
            let rows = hidden
                .iter()
                .map(|h| {
                    let name = match &h.namespace {
                        Some(ns) => format!("{ns}/{}", h.policy),
                        None => h.policy.clone(),
                    };
                    vec![
                        Cell::new(h.action.clone()),
                        Cell::new(name),
                        Cell::new(h.kind.clone()),
                        Cell::new(h.provider.clone().unwrap_or_else(|| "-".into())),
                        Cell::new(h.rules.to_string()),
                        Cell::new(h.where_.join("; ")),
                    ]
                })
                .collect();
            section(
                r,
                &mut out,
                "Not shown by istioctl (dry-run shadow rules, CUSTOM providers)",
                &["ACTION", "POLICY", "KIND", "PROVIDER", "RULES", "WHERE"],
                rows,
            );
        }
    }

    // Findings.
    let rows = rep
        .findings
        .iter()
        .map(|f| {
            let tone = match f.severity {
                Severity::Error => Tone::Bad,
                Severity::Warning => Tone::Warn,
                Severity::Info => Tone::Plain,
            };
            let mut row = vec![Cell::new(f.severity.as_str()).tone(tone)];
            if wide {
                row.push(Cell::new(f.code.clone()));
            }
            row.push(Cell::new(f.message.clone()));
            with_change(marks, f.change, row)
        })
        .collect();
    let headers: &[&str] = if wide {
        &["SEVERITY", "CODE", "MESSAGE"]
    } else {
        &["SEVERITY", "MESSAGE"]
    };
    section(
        r,
        &mut out,
        "Findings",
        &change_headers(marks, headers),
        rows,
    );
    out
}

/// The ztunnel (L4) and waypoint (L7) sections of an ambient pod.
fn ambient_sections(r: &Renderer, out: &mut String, amb: &crate::report::AmbientSection) {
    let rows: Vec<Vec<Cell>> = amb
        .ztunnel
        .iter()
        .map(|z| {
            let scope = match (&z.scope[..], &z.selector) {
                ("mesh", _) => "mesh (root namespace)".to_string(),
                (_, Some(s)) => s.clone(),
                (other, None) => other.to_string(),
            };
            let tone = if z.omissions.is_empty() {
                Tone::Plain
            } else {
                Tone::Warn
            };
            vec![
                Cell::new(z.policy.to_string()),
                Cell::new(z.action.clone()),
                Cell::new(format!("{}/{}", z.l4_rules, z.rules)),
                Cell::new(scope),
                Cell::new(z.effect.clone()).tone(tone),
            ]
        })
        .collect();
    let title = "Istio AuthorizationPolicy enforced by ztunnel (L4 only: selector, namespace-wide or root namespace)";
    if rows.is_empty() {
        if !r.no_headers {
            out.push_str(title);
            out.push('\n');
        }
        out.push_str("(none: ztunnel allows every connection that NetworkPolicy lets through)\n\n");
    } else {
        section(
            r,
            out,
            title,
            &["POLICY", "ACTION", "L4 RULES", "SCOPE", "WHAT ZTUNNEL DOES"],
            rows,
        );
    }
    let mut rows = Vec::new();
    for w in &amb.waypoints {
        let wp = w.waypoint.clone().unwrap_or_else(|| "-".into());
        let state = match (&w.state[..], &w.bound_by) {
            ("uses", Some(b)) => format!("uses (istio.io/use-waypoint on the {b})"),
            ("missing", _) => "MISSING (no such waypoint)".into(),
            ("not-for-services", _) => "not for Service traffic".into(),
            (s, _) => s.to_string(),
        };
        if w.policies.is_empty() {
            rows.push(vec![
                Cell::new(w.service.clone()),
                Cell::new(wp.clone()),
                Cell::new(state.clone()),
                Cell::new("-"),
                Cell::new("-"),
                Cell::new("-"),
                Cell::new(if w.state == "uses" {
                    "no policy attached: the waypoint allows everything"
                } else {
                    "no waypoint: no L7 policy is enforced"
                })
                .tone(Tone::Dim),
            ]);
        }
        for (i, p) in w.policies.iter().enumerate() {
            let (loaded, tone) = match p.loaded {
                Some(true) => ("yes", Tone::Good),
                Some(false) => ("NO", Tone::Bad),
                None => ("?", Tone::Dim),
            };
            let first = i == 0;
            rows.push(vec![
                Cell::new(if first {
                    w.service.clone()
                } else {
                    String::new()
                }),
                Cell::new(if first { wp.clone() } else { String::new() }),
                Cell::new(if first { state.clone() } else { String::new() }),
                Cell::new(format!("{}/{} ({})", p.namespace, p.name, p.via)),
                Cell::new(p.action.clone()),
                Cell::new(loaded).tone(tone),
                Cell::new(p.meaning.clone()),
            ]);
        }
    }
    let title = "Waypoints of the pod's Services (L7: policies attached with targetRefs)";
    if rows.is_empty() {
        if !r.no_headers {
            out.push_str(title);
            out.push('\n');
        }
        out.push_str("(no Service selects this pod)\n\n");
    } else {
        section(
            r,
            out,
            title,
            &[
                "SERVICE", "WAYPOINT", "STATE", "POLICY", "ACTION", "LOADED", "MEANING",
            ],
            rows,
        );
    }
    if !r.no_headers {
        out.push_str(&kubeplugin::render::escape_control(&format!(
            "ztunnel's configuration: {}",
            amb.ztunnel_config
        )));
        out.push_str("\n\n");
    }
}

/// Writes the reports: sections (several pods one after another), one JSON
/// value (an object, or an array when `many`), or one JSON object per line.
pub fn write_reports(
    r: &Renderer,
    reports: &[Report],
    many: bool,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    match r.format {
        OutputFormat::Table | OutputFormat::Wide => {
            let text: Vec<String> = reports.iter().map(|rep| report_text(r, rep)).collect();
            write_str(out, text.join("\n").trim_end_matches('\n'))?;
            write_str(out, "\n")?;
        }
        OutputFormat::Json => {
            // -o yaml, jsonpath, custom-columns and name work over this same value.
            let value = if many {
                serde_json::to_value(reports)
            } else {
                match reports.first() {
                    Some(rep) => serde_json::to_value(rep),
                    None => serde_json::to_value(reports),
                }
            }
            .map_err(json_err)?;
            r.write_value(&value, out)?;
        }
        OutputFormat::Jsonl => {
            for rep in reports {
                kubeplugin::render::write_json_line(rep, out)?;
            }
        }
    }
    out.flush()
        .map_err(|e| PluginError::io("writing output", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{AuthzEntry, PodInfo, ProxyRow, ProxyView};

    const EVIL: &str = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\ry";

    fn report() -> Report {
        Report {
            pod: Some(PodInfo {
                namespace: "ns".into(),
                name: format!("pod-{EVIL}"),
                sidecar: true,
                phase: "Running".into(),
                labels: vec![format!("app={EVIL}")],
                namespace_injection: Some(EVIL.into()),
            }),
            network_isolation: None,
            network_policies: vec![],
            authorization_policies: vec![AuthzEntry {
                namespace: "ns".into(),
                name: format!("ap-{EVIL}"),
                action: "DENY".into(),
                rules: 1,
                scope: "workload".into(),
                selector: Some(format!("app={EVIL}")),
                dry_run: false,
                provider: None,
                envoy_names: vec![],
                meaning: EVIL.into(),
                details: vec![format!("first {EVIL}"), "second".into()],
                loaded: None,
                age_seconds: None,
                change: None,
            }],
            peer_authentication: None,
            proxy: ProxyView {
                source: ProxySource::Istioctl,
                detail: format!("istioctl said {EVIL}"),
                rows: vec![ProxyRow {
                    action: "DENY".into(),
                    policy: format!("ns-{EVIL}"),
                    namespace: Some(EVIL.into()),
                    rules: 1,
                }],
                hidden: None,
                anonymous: vec![],
            },
            findings: vec![],
            what_if: None,
            ambient: None,
        }
    }

    fn renderer(format: OutputFormat) -> Renderer {
        Renderer {
            format,
            no_headers: false,
            color: false,
            transform: None,
        }
    }

    #[test]
    fn tables_escape_control_characters_and_keep_line_structure() {
        for format in [OutputFormat::Table, OutputFormat::Wide] {
            let text = report_text(&renderer(format), &report());
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{format:?}: raw control character in {text:?}"
            );
            assert!(text.contains("istioctl said x\\u{1b}]0;pwned"), "{text}");
            if format == OutputFormat::Wide {
                // Each detail on its own line, the newline not escaped.
                assert!(
                    text.lines().any(|l| l.starts_with("  first x\\u{1b}")),
                    "{text}"
                );
                assert!(text.lines().any(|l| l == "  second"), "{text}");
            }
        }
    }

    #[test]
    fn json_keeps_control_characters_as_data() {
        let mut buf = Vec::new();
        write_reports(&renderer(OutputFormat::Json), &[report()], false, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["proxy"]["detail"], format!("istioctl said {EVIL}"));
        assert_eq!(
            v["authorization_policies"][0]["details"][0],
            format!("first {EVIL}")
        );
    }
}
