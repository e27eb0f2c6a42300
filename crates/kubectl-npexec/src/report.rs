//! The views of probe records ([`crate::record`]): table rows, the matrix
//! (one symbol per (FROM, TO) pair with a legend), explanations, hints and
//! unmet-expectation lines, rendered last by kubeplugin as table, wide, JSON
//! or JSON Lines.

use std::collections::BTreeMap;

use kubeplugin::render::{Cell, Column, Renderer, Tabular, Tone};

use crate::analysis::PolicyNote;
use crate::record::ProbeRecord;
use crate::verdict::{Expectation, Verdict};

fn verdict_tone(v: Verdict) -> Tone {
    match v {
        Verdict::Allowed => Tone::Good,
        Verdict::DeniedRbac | Verdict::BlockedNetwork => Tone::Bad,
        Verdict::ExecFailed => Tone::Warn,
        _ => Tone::Warn,
    }
}

impl Tabular for ProbeRecord {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("FROM"),
            Column::new("TO"),
            Column::new("VERDICT"),
            Column::new("CODE"),
            Column::new("DETAIL"),
            Column::new("TIME"),
            Column::wide("CONTAINER"),
            Column::wide("URL"),
            Column::wide("EXIT"),
            Column::wide("EXPECT"),
            Column::wide("MET"),
            Column::wide("HINT"),
            Column::wide("POLICY"),
        ]
    }

    fn cells(&self) -> Vec<Cell> {
        let mut verdict = self.verdict.to_string();
        if self.predicted {
            verdict.push_str(" (predicted)");
        }
        vec![
            Cell::new(self.from_label()),
            Cell::new(self.to_label()),
            Cell::new(verdict).tone(verdict_tone(self.verdict)),
            Cell::new(
                self.http_status
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(self.detail.clone()),
            Cell::new(format!("{}ms", self.duration_ms)),
            Cell::new(self.from.container.clone().unwrap_or_else(|| "-".into())),
            Cell::new(self.to.url.clone()),
            Cell::new(
                self.curl_exit
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(
                self.expected
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(match self.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            })
            .tone(match self.met {
                Some(false) => Tone::Bad,
                _ => Tone::Plain,
            }),
            Cell::new(self.hint.clone().unwrap_or_default()),
            Cell::new(self.deciding_policy().unwrap_or_else(|| "-".into())),
        ]
    }
}

/// The explanation lines printed under the table with `--explain` /
/// `--predict`: per probe, each layer in the order traffic meets it, each
/// policy once (the engine's reading, with what Envoy's log said about the
/// same policy on the same line), contradictions and notes.
pub fn explanation(records: &[ProbeRecord]) -> String {
    use crate::analysis::{NoteSource, PolicyKind};
    use kubeplugin::render::escape_control as esc;
    use std::fmt::Write;
    let mut out = String::new();
    for r in records {
        let (Some(a), Some(policies)) = (&r.analysis, &r.policies) else {
            continue;
        };
        let mut verdict = r.verdict.to_string();
        if r.predicted {
            verdict.push_str(" (predicted)");
        }
        let _ = writeln!(
            out,
            "\n{} -> {}: {}",
            esc(&r.from_label()),
            esc(&r.to_label()),
            verdict
        );
        if let Some(pod) = &a.destination_pod {
            let _ = writeln!(out, "  destination pod: {}", esc(pod));
        }
        let has = |kind: PolicyKind| {
            policies
                .iter()
                .any(|p| p.kind == kind && p.source == NoteSource::Engine)
        };
        if let Some(n) = &a.network {
            if has(PolicyKind::NetworkPolicy) {
                let state = if n.allowed { "allowed" } else { "BLOCKED" };
                let _ = writeln!(out, "  NetworkPolicy: {state} (TCP {})", n.port);
                let _ = writeln!(out, "    {}", esc(&n.egress));
                let _ = writeln!(out, "    {}", esc(&n.ingress));
            } else {
                let _ = writeln!(
                    out,
                    "  NetworkPolicy: no policy applies (TCP {} open both ways)",
                    n.port
                );
            }
        }
        if let Some(m) = &a.mtls {
            let state = if m.fails { "FAILS" } else { "ok" };
            let by = if has(PolicyKind::PeerAuthentication) {
                if m.port_level { " (port-level)" } else { "" }
            } else {
                " (no policy applies: the default)"
            };
            let _ = writeln!(
                out,
                "  PeerAuthentication: {state}: port {} is {}{by}; the client sends {}",
                m.port, m.mode, m.client_sends
            );
        }
        if let Some(z) = &a.authorization {
            if !has(PolicyKind::AuthorizationPolicy) {
                let what = if z.enforced {
                    "no policy applies (allowed)"
                } else {
                    "not enforced (no sidecar)"
                };
                let _ = writeln!(out, "  AuthorizationPolicy: {what}");
            } else {
                let _ = writeln!(out, "  AuthorizationPolicy: {}", z.decision);
            }
        }
        if let (Some(v), false) = (a.engine_verdict, r.predicted) {
            let _ = writeln!(out, "  engine expects: {v}");
        }
        // Each policy once: the engine's note, then what Envoy logged for it.
        let mut printed: Vec<String> = Vec::new();
        for p in policies {
            let label = p.label();
            if printed.contains(&label) {
                continue;
            }
            printed.push(label.clone());
            let same: Vec<&PolicyNote> = policies.iter().filter(|q| q.label() == label).collect();
            let engine = same.iter().find(|q| q.source == NoteSource::Engine);
            let envoy: Vec<String> = same
                .iter()
                .filter(|q| q.source == NoteSource::EnvoyLog)
                .map(|q| q.effect.as_str().to_string())
                .fold(Vec::new(), |mut v, e| {
                    if !v.contains(&e) {
                        v.push(e);
                    }
                    v
                });
            let dir = p
                .direction
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let envoy_says = if envoy.is_empty() {
                String::new()
            } else {
                format!(" [Envoy log: {}]", envoy.join(", "))
            };
            match engine {
                Some(e) => {
                    let _ = writeln!(
                        out,
                        "  - {}{dir}: {}: {}{envoy_says}",
                        esc(&label),
                        e.effect.as_str(),
                        esc(&e.detail)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  - {}: {} [Envoy log only]",
                        esc(&label),
                        esc(&p.detail)
                    );
                }
            }
        }
        if policies.is_empty() {
            let _ = writeln!(out, "  no policy applies");
        }
        for c in &a.contradictions {
            let _ = writeln!(out, "  ! {}", esc(c));
        }
        for n in &a.notes {
            let _ = writeln!(out, "  note: {}", esc(n));
        }
    }
    out
}

/// One line per probe whose expectation is not met: what was expected, what
/// came back, and the hint (stderr, every output format).
pub fn unmet_lines(records: &[ProbeRecord]) -> Vec<String> {
    use kubeplugin::render::escape_control as esc;
    records
        .iter()
        .filter(|r| r.met == Some(false))
        .map(|r| {
            let expected = r.expected.map(|e| e.to_string()).unwrap_or_default();
            let mut got = r.verdict.to_string();
            if r.predicted {
                got.push_str(" (predicted)");
            }
            if let Some(code) = r.http_status {
                got.push_str(&format!(" {code}"));
            }
            let mut hint = r
                .hint
                .as_deref()
                .map(|h| format!("; hint: {}", esc(h)))
                .unwrap_or_default();
            if r.expected == Some(Expectation::Allow) && r.verdict == Verdict::HttpError {
                hint.push_str(
                    "; --expect reachable accepts any answer of the application (allow needs a 2xx/3xx)",
                );
            }
            format!(
                "expectation not met: {} -> {}: expected {expected}, got {got}{hint}",
                esc(&r.from_label()),
                esc(&r.to_label()),
            )
        })
        .collect()
}

/// `--predict`/`--explain` under a matrix: one line per distinct
/// explanation (verdict and deciding policy), with the pairs it covers,
/// instead of one block per cell.
pub fn matrix_explanation(records: &[ProbeRecord]) -> String {
    use kubeplugin::render::escape_control as esc;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for r in records {
        let Some(a) = &r.analysis else { continue };
        let why = match r.deciding_policy() {
            None => "no policy applies".to_string(),
            // Envoy's log names no policy when none of its DENY rules matched.
            Some(p) if p == "authorizationpolicy none" => {
                "no AuthorizationPolicy rule matched (Envoy: policy none)".to_string()
            }
            Some(p) => p,
        };
        let mut key = format!("{} {}: {why}", r.verdict.symbol(), r.verdict);
        if r.predicted {
            key = format!("{} {} (predicted): {why}", r.verdict.symbol(), r.verdict);
        }
        if !a.contradictions.is_empty() {
            key.push_str(&format!(" ! {}", a.contradictions.join("; ")));
        }
        let pair = format!(
            "{} -> {}",
            r.from.namespace,
            r.to.namespace.as_deref().unwrap_or("?")
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, pairs)) => {
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
            None => groups.push((key, vec![pair])),
        }
    }
    let mut out = String::new();
    if !groups.is_empty() {
        out.push('\n');
    }
    for (key, pairs) in groups {
        out.push_str(&esc(&format!("{key}  [{}]", pairs.join(", "))));
        out.push('\n');
    }
    out
}

/// Prints [`unmet_lines`] on stderr.
pub fn print_unmet(records: &[ProbeRecord]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for l in unmet_lines(records) {
        let _ = writeln!(err, "{l}");
    }
}

/// `--wait` progress on stderr, redrawn in place; only on a terminal.
#[derive(Debug)]
pub struct WaitProgress {
    enabled: bool,
}

impl WaitProgress {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        WaitProgress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// `waiting: attempt N, M of K expectations unmet, Ts left`.
    pub fn attempt(&self, attempt: u32, unmet: usize, total: usize, left: std::time::Duration) {
        use std::io::Write;
        if self.enabled {
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\r\x1b[2Kwaiting: attempt {attempt}, {unmet} of {total} expectations unmet, {}s left",
                left.as_secs()
            );
            let _ = e.flush();
        }
    }

    pub fn finish(&mut self) {
        use std::io::Write;
        if self.enabled {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
            self.enabled = false;
        }
    }
}

impl Default for WaitProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WaitProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Prints each distinct hint of the non-allowed probes on stderr (table views
/// only; JSON carries hints in the records). Probes with an unmet expectation
/// are left out: their summary line already carries the hint.
pub fn print_hints(records: &[ProbeRecord], per_verdict: bool) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for h in hint_lines(records, per_verdict) {
        let _ = writeln!(err, "{h}");
    }
}

/// The hint lines: each distinct hint once; with `per_verdict` (a matrix,
/// where hints differ only by namespace) the first hint of each verdict,
/// with how many other cells it stands for.
pub fn hint_lines(records: &[ProbeRecord], per_verdict: bool) -> Vec<String> {
    use kubeplugin::render::escape_control as esc;
    let mut out: Vec<(Option<Verdict>, String, usize)> = Vec::new();
    for r in records {
        if r.verdict == Verdict::Allowed || r.met == Some(false) {
            continue;
        }
        let Some(h) = &r.hint else { continue };
        let key = per_verdict.then_some(r.verdict);
        match out.iter_mut().find(
            |(k, text, _)| {
                if per_verdict { *k == key } else { text == h }
            },
        ) {
            Some((_, text, more)) => {
                if text != h {
                    *more += 1;
                }
            }
            None => out.push((key, h.clone(), 0)),
        }
    }
    out.into_iter()
        .map(|(_, h, more)| match more {
            0 => format!("hint: {}", esc(&h)),
            n => format!(
                "hint: {} (and {n} more {} like it)",
                esc(&h),
                if n == 1 { "probe" } else { "probes" }
            ),
        })
        .collect()
}

/// The legend printed under a matrix (`? unknown` only when `--predict` could not decide).
pub fn legend(with_unknown: bool) -> String {
    let mut parts: Vec<String> = Verdict::ALL
        .iter()
        .chain(with_unknown.then_some(&Verdict::Unknown))
        .map(|v| format!("{} {}", v.symbol(), v))
        .collect();
    parts.push("~ mixed (see -o wide)".into());
    parts.push(". no Service".into());
    parts.push("- same namespace, not probed".into());
    format!("legend: {}\n", parts.join("  "))
}

/// The matrix: rows are FROM namespaces, columns TO namespaces.
pub fn matrix(namespaces: &[String], records: &[ProbeRecord], renderer: &Renderer) -> String {
    let mut cells: BTreeMap<(&str, &str), Vec<Verdict>> = BTreeMap::new();
    for r in records {
        if let Some(to) = &r.to.namespace {
            cells
                .entry((r.from.namespace.as_str(), to.as_str()))
                .or_default()
                .push(r.verdict);
        }
    }
    let mut headers = vec!["FROM\\TO".to_string()];
    headers.extend(namespaces.iter().cloned());
    let rows: Vec<Vec<Cell>> = namespaces
        .iter()
        .map(|from| {
            let mut row = vec![Cell::new(from.clone())];
            for to in namespaces {
                let cell = {
                    match cells.get(&(from.as_str(), to.as_str())) {
                        None if from == to => Cell::new("-").tone(Tone::Dim),
                        None => Cell::new(".").tone(Tone::Dim),
                        Some(vs) => {
                            let first = vs[0];
                            if vs.iter().all(|v| *v == first) {
                                Cell::new(first.symbol().to_string()).tone(verdict_tone(first))
                            } else {
                                Cell::new("~").tone(Tone::Warn)
                            }
                        }
                    }
                };
                row.push(cell);
            }
            row
        })
        .collect();
    let mut out = renderer.grid(&headers, &rows);
    if !renderer.no_headers {
        out.push_str(&legend(
            records.iter().any(|r| r.verdict == Verdict::Unknown),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FromRef, ToRef, body_excerpt};
    use crate::verdict::Tool;
    use kubeplugin::OutputFormat;

    pub(crate) fn sample() -> Vec<ProbeRecord> {
        let mk =
            |from: &str, to: &str, svc: &str, v: Verdict, code: Option<u16>, detail: &str, exit| {
                ProbeRecord {
                    from: FromRef {
                        namespace: from.into(),
                        pod: Some(format!("{from}-pod-7d9f")),
                        container: Some("app".into()),
                        ..Default::default()
                    },
                    to: ToRef {
                        namespace: Some(to.into()),
                        service: Some(svc.into()),
                        port: Some(80),
                        url: format!("http://{svc}.{to}.svc.cluster.local:80/"),
                    },
                    verdict: v,
                    detail: detail.into(),
                    http_status: code,
                    curl_exit: exit,
                    tool: Some(Tool::Curl),
                    body: detail.into(),
                    duration_ms: 17,
                    expected: Some(Expectation::Deny),
                    met: Some(Expectation::Deny.met_by(v)),
                    hint: (v != Verdict::Allowed).then(|| format!("hint for {v}")),
                    policies: None,
                    analysis: None,
                    predicted: false,
                    sidecar_stats: None,
                    started_at: None,
                }
            };
        vec![
            mk(
                "np-test-1",
                "np-test-2",
                "svc-np-test-nginx-2",
                Verdict::Allowed,
                Some(200),
                "Hello world - np-test-nginx-2!",
                Some(0),
            ),
            mk(
                "np-test-2",
                "np-test-1",
                "svc-np-test-nginx-1",
                Verdict::DeniedRbac,
                Some(403),
                "RBAC: access denied (Istio AuthorizationPolicy)",
                Some(0),
            ),
            mk(
                "np-test-1",
                "np-test-3",
                "svc-a",
                Verdict::BlockedNetwork,
                None,
                "no response within 3s\x1b[2J",
                Some(28),
            ),
            mk(
                "np-test-1",
                "np-test-3",
                "svc-b",
                Verdict::Allowed,
                Some(200),
                "ok",
                Some(0),
            ),
        ]
    }

    fn renderer(format: OutputFormat) -> Renderer {
        Renderer {
            format,
            no_headers: false,
            color: false,
            transform: None,
        }
    }

    fn render(format: OutputFormat) -> String {
        let mut out = Vec::new();
        renderer(format).write_all(&sample(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_snapshot() {
        insta::with_settings!({filters => vec![(r"\d+ms", "[TIME]")]}, {
            insta::assert_snapshot!("table", render(OutputFormat::Table));
            insta::assert_snapshot!("wide", render(OutputFormat::Wide));
        });
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_str(&render(OutputFormat::Json)).unwrap();
        let first = &v[0];
        for key in [
            "from",
            "to",
            "verdict",
            "http_status",
            "curl_exit",
            "body",
            "duration_ms",
            "expected",
            "met",
            "hint",
        ] {
            assert!(first.get(key).is_some(), "missing {key}");
        }
        for key in ["namespace", "pod", "container"] {
            assert!(first["from"].get(key).is_some(), "missing from.{key}");
        }
        for key in ["namespace", "service", "port", "url"] {
            assert!(first["to"].get(key).is_some(), "missing to.{key}");
        }
        assert_eq!(first["verdict"], "allowed");
        assert_eq!(v[1]["verdict"], "denied-rbac");
        assert_eq!(v[1]["expected"], "deny");
        assert_eq!(v[1]["met"], true);
        assert_eq!(v[0]["met"], false);
        assert!(first.get("policies").is_none());
        insta::with_settings!({filters => vec![(r#""duration_ms": \d+"#, r#""duration_ms": "[TIME]""#)]}, {
            insta::assert_snapshot!("json", render(OutputFormat::Json));
        });
    }

    #[test]
    fn matrix_symbols_and_legend() {
        let ns: Vec<String> = ["np-test-1", "np-test-2", "np-test-3"]
            .map(String::from)
            .to_vec();
        let m = matrix(&ns, &sample(), &renderer(OutputFormat::Table));
        insta::assert_snapshot!("matrix", m);
        let lines: Vec<&str> = m.lines().collect();
        // np-test-1 row: self, A, mixed.
        assert!(lines[1].starts_with("np-test-1"));
        assert!(lines[1].contains('~'));
        assert!(lines[2].contains('R'));
        assert!(m.contains("legend: A allowed  R denied-rbac"));
    }

    #[test]
    fn explanation_lines_name_policies_and_contradictions() {
        use crate::analysis::{
            Analysis, AuthzLayer, Effect, NetworkLayer, NoteSource, PolicyKind, PolicyNote,
        };
        let mut records = sample();
        let note = |source, effect, id: Option<&str>| PolicyNote {
            kind: PolicyKind::AuthorizationPolicy,
            namespace: Some("np-test-1".into()),
            name: Some("deny\x1b[31m".into()),
            direction: None,
            rule: Some(0),
            action: Some("DENY".into()),
            policy_id: id.map(str::to_string),
            effect,
            detail: "DENY rule 0 matches: denied".into(),
            source,
        };
        records[1].policies = Some(vec![
            note(NoteSource::Engine, Effect::Denied, None),
            PolicyNote {
                name: Some("from-envoy".into()),
                ..note(
                    NoteSource::EnvoyLog,
                    Effect::Denied,
                    Some("ns[np-test-1]-policy[from-envoy]-rule[0]"),
                )
            },
        ]);
        records[1].analysis = Some(Analysis {
            destination_pod: Some("np-test-nginx-1-abc".into()),
            network: Some(NetworkLayer {
                allowed: true,
                port: 80,
                egress: "egress open".into(),
                ingress: "ingress open".into(),
            }),
            mtls: None,
            authorization: Some(AuthzLayer {
                decision: "DENY".into(),
                enforced: true,
                policy_id: Some("ns[np-test-1]-policy[deny]-rule[0]".into()),
                reason: "denied by DENY policy".into(),
            }),
            engine_verdict: Some(Verdict::DeniedRbac),
            envoy_policy_ids: vec!["ns[np-test-1]-policy[deny]-rule[0]".into()],
            contradictions: vec!["something disagrees".into()],
            notes: vec!["a note".into()],
        });
        let text = explanation(&records);
        // Only the analysed record is explained.
        assert_eq!(text.matches(" -> ").count(), 1, "{text}");
        assert!(text.contains("  AuthorizationPolicy: DENY\n"), "{text}");
        // Each policy once; Envoy's word on a policy the engine did not name
        // gets its own line.
        assert_eq!(text.matches("np-test-1/deny").count(), 1, "{text}");
        assert!(text.contains("[Envoy log only]"), "{text}");
        assert!(!text.contains("\n  no policy applies"), "{text}");
        assert!(text.contains("  ! something disagrees"));
        assert!(
            !text.contains('\x1b'),
            "control characters are escaped: {text}"
        );
        // Envoy's word comes first.
        assert_eq!(
            records[1].deciding_policy().as_deref(),
            Some("authorizationpolicy np-test-1/from-envoy")
        );
        assert_eq!(records[0].deciding_policy(), None);
        insta::assert_snapshot!("explanation", text);
    }

    #[test]
    fn body_excerpt_is_bounded_on_char_boundary() {
        let body = "é".repeat(200); // 400 bytes
        let e = body_excerpt(body.as_bytes());
        assert!(e.len() <= 256);
        assert_eq!(e.chars().count(), 128);
    }

    #[test]
    fn unmet_expectations_get_one_line_each() {
        let records = sample();
        let lines = unmet_lines(&records);
        let unmet = records.iter().filter(|r| r.met == Some(false)).count();
        assert!(unmet > 0);
        assert_eq!(lines.len(), unmet, "{lines:?}");
        assert!(
            lines[0].starts_with("expectation not met: np-test-1/np-test-1-pod-7d9f -> np-test-2/svc-np-test-nginx-2:80: expected deny, got allowed 200"),
            "{lines:?}"
        );
    }

    #[test]
    fn matrix_hints_are_one_per_verdict() {
        let mut records = sample();
        for r in &mut records {
            r.met = None;
        }
        let mut extra = records[1].clone();
        extra.hint = Some("hint for denied-rbac in another namespace".into());
        records.push(extra);
        let per_pair = hint_lines(&records, false);
        let per_verdict = hint_lines(&records, true);
        assert_eq!(
            per_pair.len(),
            per_verdict.len() + 1,
            "{per_pair:?} {per_verdict:?}"
        );
        assert!(
            per_verdict
                .iter()
                .any(|l| l.ends_with("(and 1 more probe like it)")),
            "{per_verdict:?}"
        );
    }
}
