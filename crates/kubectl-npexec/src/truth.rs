//! `--expect-matrix FILE`: the expected `--matrix` as a truth table, and the
//! cells where the cluster disagrees with it.
//!
//! Users of cyclonus and netassert keep the connectivity they expect as a
//! table next to their policies and want CI to fail on a difference. The
//! format is deliberately plain text, one row per FROM namespace, one column
//! per TO namespace:
//!
//! ```text
//! # expected connectivity (comments start with #)
//!        te-a  te-b  te-c
//! te-a   .     .     X
//! te-b   .     .     .
//! te-c   .     .     .
//! ```
//!
//! The first non-comment line names the TO namespaces (an optional first
//! token such as `FROM\TO` is skipped); each following line is a FROM
//! namespace and one symbol per TO: `.` allowed, `X` denied by a policy
//! (`--expect deny`), `*` reachable (`--expect reachable`), `?` not checked,
//! or a verdict's matrix letter (`A R N C D T H E`) for that exact verdict.
//! Parsing is pure and errors are one-line usage errors naming file and line.

use std::collections::BTreeMap;
use std::path::Path;

use kubeplugin::PluginError;

use crate::record::ProbeRecord;
use crate::verdict::{Expectation, Verdict};

/// The parsed truth table: (FROM, TO) -> what is expected (None: not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthTable {
    /// Where it came from, for messages.
    pub source: String,
    /// Namespaces named in the table, rows then columns, each once.
    pub namespaces: Vec<String>,
    pub cells: BTreeMap<(String, String), Option<Expectation>>,
}

/// A cell whose probes disagree with the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellDiff {
    pub from: String,
    pub to: String,
    /// The symbol in the file.
    pub expected: char,
    pub expectation: Expectation,
    /// The distinct verdicts seen (empty: nothing was probed).
    pub got: Vec<Verdict>,
}

impl CellDiff {
    /// `te-a -> te-c: expected . (allow), got R (denied-rbac)`.
    pub fn line(&self) -> String {
        let got = if self.got.is_empty() {
            "nothing probed (no Service or no TCP port in the TO namespace)".to_string()
        } else {
            self.got
                .iter()
                .map(|v| format!("{} ({v})", v.symbol()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} -> {}: expected {} ({}), got {got}",
            self.from, self.to, self.expected, self.expectation
        )
    }
}

fn symbol(c: char) -> Option<Option<Expectation>> {
    match c {
        '.' => Some(Some(Expectation::Allow)),
        'X' | 'x' => Some(Some(Expectation::Deny)),
        '*' => Some(Some(Expectation::Reachable)),
        '?' => Some(None),
        c => Verdict::ALL
            .into_iter()
            .find(|v| v.symbol() == c)
            .map(|v| Some(Expectation::Exactly(v))),
    }
}

/// What a symbol in the file means, for the README and errors.
pub const SYMBOLS: &str = ". allowed, X denied (denied-rbac or blocked-network), * reachable, ? not checked, or a verdict letter A R N C D T H E";

fn bad(source: &str, line: usize, msg: impl std::fmt::Display) -> PluginError {
    PluginError::usage(
        format!("invalid --expect-matrix {source} line {line}: {msg}"),
        Some(format!(
            "a header line of TO namespaces, then one line per FROM namespace with one symbol per TO: {SYMBOLS}"
        )),
    )
}

/// Parses a truth table.
pub fn parse(text: &str, source: &str) -> Result<TruthTable, PluginError> {
    let mut header: Option<Vec<String>> = None;
    let mut table = TruthTable {
        source: source.to_string(),
        namespaces: Vec::new(),
        cells: BTreeMap::new(),
    };
    let note = |ns: &str, table: &mut TruthTable| {
        if !table.namespaces.iter().any(|n| n == ns) {
            table.namespaces.push(ns.to_string());
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(to) = &header else {
            let names: Vec<&str> = tokens
                .iter()
                .copied()
                .skip_while(|t| t.contains('\\') || t.eq_ignore_ascii_case("from"))
                .collect();
            if names.is_empty() {
                return Err(bad(source, n, "the header names no TO namespace"));
            }
            for t in &names {
                if !crate::cli::is_dns_label(t) {
                    return Err(bad(source, n, format!("{t:?} is not a namespace name")));
                }
            }
            header = Some(names.iter().map(|s| s.to_string()).collect());
            continue;
        };
        let from = tokens[0];
        if !crate::cli::is_dns_label(from) {
            return Err(bad(source, n, format!("{from:?} is not a namespace name")));
        }
        // Symbols may be separated by spaces or written together (`..X`).
        let symbols: Vec<char> = tokens[1..].iter().flat_map(|t| t.chars()).collect();
        if symbols.len() != to.len() {
            return Err(bad(
                source,
                n,
                format!(
                    "row {from} has {} symbols for {} TO namespaces",
                    symbols.len(),
                    to.len()
                ),
            ));
        }
        for (c, to_ns) in symbols.into_iter().zip(to) {
            let want = symbol(c)
                .ok_or_else(|| bad(source, n, format!("unknown symbol {c:?} in row {from}")))?;
            if table
                .cells
                .insert((from.to_string(), to_ns.clone()), want)
                .is_some()
            {
                return Err(bad(source, n, format!("row {from} appears twice")));
            }
        }
        note(from, &mut table);
    }
    let Some(to) = header else {
        return Err(bad(source, 1, "the file is empty"));
    };
    if table.cells.is_empty() {
        return Err(bad(source, 1, "no FROM row"));
    }
    for t in &to {
        note(t, &mut table);
    }
    Ok(table)
}

/// Reads and parses the file.
pub fn read(path: &Path) -> Result<TruthTable, PluginError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        PluginError::usage(
            format!("cannot read --expect-matrix {shown}: {e}"),
            Some("give the path of a truth table file (see kubectl npexec --help)".to_string()),
        )
    })?;
    parse(&text, &shown)
}

impl TruthTable {
    /// Refuses a table naming namespaces the matrix does not have.
    pub fn check_namespaces(&self, matrix: &[String]) -> Result<(), PluginError> {
        let missing: Vec<&str> = self
            .namespaces
            .iter()
            .filter(|n| !matrix.contains(n))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(PluginError::usage(
            format!(
                "--expect-matrix {} names namespaces not in the matrix: {}",
                self.source,
                missing.join(", ")
            ),
            Some(format!("the matrix has {}", matrix.join(", "))),
        ))
    }

    /// Sets `expected`/`met` on every record the table has a cell for and
    /// returns the cells that differ, in table order.
    pub fn apply(&self, records: &mut [ProbeRecord]) -> Vec<CellDiff> {
        let mut got: BTreeMap<(String, String), Vec<Verdict>> = BTreeMap::new();
        for r in records.iter_mut() {
            let Some(to) = r.to.namespace.clone() else {
                continue;
            };
            let key = (r.from.namespace.clone(), to);
            let Some(Some(want)) = self.cells.get(&key) else {
                continue;
            };
            r.expected = Some(*want);
            r.met = Some(want.met_by(r.verdict));
            let seen = got.entry(key).or_default();
            if !seen.contains(&r.verdict) {
                seen.push(r.verdict);
            }
        }
        let mut diffs = Vec::new();
        for ((from, to), want) in &self.cells {
            let Some(want) = want else { continue };
            let verdicts = got
                .get(&(from.clone(), to.clone()))
                .cloned()
                .unwrap_or_default();
            if verdicts.is_empty() || verdicts.iter().any(|v| !want.met_by(*v)) {
                diffs.push(CellDiff {
                    from: from.clone(),
                    to: to.clone(),
                    expected: expected_symbol(*want),
                    expectation: *want,
                    got: verdicts,
                });
            }
        }
        // Table order: rows as written, then columns.
        let pos = |ns: &str| self.namespaces.iter().position(|n| n == ns);
        diffs.sort_by_key(|d| (pos(&d.from), pos(&d.to)));
        diffs
    }
}

fn expected_symbol(e: Expectation) -> char {
    match e {
        Expectation::Allow => '.',
        Expectation::Deny => 'X',
        Expectation::Reachable => '*',
        Expectation::Exactly(v) => v.symbol(),
    }
}

/// The diff block printed under the matrix.
pub fn render_diff(table: &TruthTable, diffs: &[CellDiff]) -> String {
    use kubeplugin::render::escape_control as esc;
    if diffs.is_empty() {
        return format!(
            "--expect-matrix {}: every cell matches\n",
            esc(&table.source)
        );
    }
    let mut out = format!(
        "--expect-matrix {}: {} cell{} differ{}\n",
        esc(&table.source),
        diffs.len(),
        if diffs.len() == 1 { "" } else { "s" },
        if diffs.len() == 1 { "s" } else { "" }
    );
    for d in diffs {
        out.push_str("  ");
        out.push_str(&esc(&d.line()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FromRef, ToRef};

    const TABLE: &str = "\
# expected
FROM\\TO  a  b  c
a        .  .  X   # a cannot reach c
b        .  .  .
c        ?  R  .
";

    fn rec(from: &str, to: &str, v: Verdict) -> ProbeRecord {
        ProbeRecord {
            from: FromRef {
                namespace: from.into(),
                pod: Some("p".into()),
                container: None,
                ..FromRef::default()
            },
            to: ToRef {
                namespace: Some(to.into()),
                service: Some("web".into()),
                port: Some(80),
                url: String::new(),
            },
            verdict: v,
            detail: String::new(),
            http_status: None,
            curl_exit: None,
            tool: None,
            body: String::new(),
            duration_ms: 0,
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
    fn parses_header_rows_symbols_and_comments() {
        let t = parse(TABLE, "t.txt").unwrap();
        assert_eq!(t.namespaces, ["a", "b", "c"]);
        assert_eq!(t.cells.len(), 9);
        assert_eq!(t.cells[&("a".into(), "c".into())], Some(Expectation::Deny));
        assert_eq!(t.cells[&("c".into(), "a".into())], None);
        assert_eq!(
            t.cells[&("c".into(), "b".into())],
            Some(Expectation::Exactly(Verdict::DeniedRbac))
        );
        // Symbols written together.
        let t = parse("a b\na ..\nb .X\n", "t").unwrap();
        assert_eq!(t.cells[&("b".into(), "b".into())], Some(Expectation::Deny));
    }

    #[test]
    fn bad_tables_are_one_line_usage_errors() {
        for (text, want) in [
            ("", "empty"),
            ("a b\na .\n", "1 symbols for 2"),
            ("a b\na . Z\n", "unknown symbol 'Z'"),
            ("a b\nA_B . .\n", "not a namespace"),
            ("a b\na . .\na . .\n", "twice"),
            ("# only\n", "empty"),
        ] {
            let e = parse(text, "t.txt").unwrap_err();
            let s = e.to_string();
            assert!(s.contains("t.txt") && s.contains(want), "{text:?}: {s}");
            assert!(!s.contains('\n'), "{s}");
            assert_eq!(e.exit_code(), 2, "{s}");
        }
    }

    #[test]
    fn apply_marks_records_and_reports_differing_cells() {
        let t = parse(TABLE, "t.txt").unwrap();
        let mut records = vec![
            rec("a", "b", Verdict::Allowed),
            rec("a", "c", Verdict::DeniedRbac),
            rec("b", "c", Verdict::DeniedRbac),
            rec("c", "a", Verdict::BlockedNetwork),
        ];
        let diffs = t.apply(&mut records);
        assert_eq!(records[0].met, Some(true));
        assert_eq!(records[2].met, Some(false));
        assert_eq!(records[3].expected, None, "? is not checked");
        let lines: Vec<String> = diffs.iter().map(CellDiff::line).collect();
        assert!(
            lines.contains(&"b -> c: expected . (allow), got R (denied-rbac)".to_string()),
            "{lines:?}"
        );
        // Cells with nothing probed differ too (a, b and c have no diagonal records here).
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("a -> a:") && l.contains("nothing probed"))
        );
        assert!(t.check_namespaces(&["a".into(), "b".into()]).is_err());
        assert!(
            t.check_namespaces(&["a".into(), "b".into(), "c".into()])
                .is_ok()
        );
    }
}
