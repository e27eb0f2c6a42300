//! The render layer: the only place rbaclog writes to stdout or stderr.
//!
//! Batch runs hand finished decisions (or the summary) to kubeplugin's renderer
//! for table, wide, JSON and JSON Lines. Follow mode cannot wait for the end, so
//! [`FollowPrinter`] prints the header once and then one aligned row per decision
//! as it completes (JSON formats print one object per line). Notes and the
//! "nothing found" explanation go to stderr, so stdout stays data.

use std::io::Write;

use kubeplugin::render::{Renderer, Tabular, escape_control, json_err, write_json_line, write_str};
use kubeplugin::{OutputFormat, PluginError};

use crate::pairing::Stats;
use crate::record::DecisionRecord;
use crate::summary::Summary;

/// Writes the decisions of a batch run.
pub fn write_decisions(
    renderer: &Renderer,
    decisions: &[DecisionRecord],
) -> Result<(), PluginError> {
    let mut out = std::io::stdout().lock();
    if decisions.is_empty() && matches!(renderer.format, OutputFormat::Table | OutputFormat::Wide) {
        // kubectl prints nothing on stdout when there is nothing (the note goes to stderr).
        return Ok(());
    }
    renderer.write_all(decisions, &mut out)
}

/// Writes one decision as a JSON line at once (streamed `-o jsonl`).
pub fn write_jsonl(d: &DecisionRecord) -> Result<(), PluginError> {
    let mut out = std::io::stdout().lock();
    let mut s = serde_json::to_string(d).map_err(json_err)?;
    s.push('\n');
    write_str(&mut out, &s)
}

/// Writes a summary.
pub fn write_summary(renderer: &Renderer, summary: &Summary) -> Result<(), PluginError> {
    let mut out = std::io::stdout().lock();
    match renderer.format {
        OutputFormat::Table | OutputFormat::Wide => {
            write_str(&mut out, &summary.render_tables(renderer))?
        }
        OutputFormat::Json => renderer.write_value(
            &serde_json::to_value(summary.to_json()).map_err(json_err)?,
            &mut out,
        )?,
        OutputFormat::Jsonl => write_json_line(&summary.to_json(), &mut out)?,
    }
    out.flush()
        .map_err(|e| PluginError::io("writing output", e))
}

/// One note line on stderr (escaped: it may quote log or file names).
pub fn note(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{}", escape_control(text));
}

/// The proxies a live run read, for the advice of [`nothing_found_in`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadProxies {
    /// Only ztunnels were read (no Envoy: no RBAC debug logger to raise).
    pub ztunnel_only: bool,
    /// The waypoint pods read, `NS/POD`.
    pub waypoints: Vec<String>,
}

/// The explanation printed when no decision matched: what was read, and why
/// nothing matched. Advice to enable RBAC debug logs is given only when the log
/// holds no RBAC line of any kind (ztunnel writes its rejections without it).
pub fn nothing_found(what: &str, scope: &str, stats: &Stats, decision: &str) -> Vec<String> {
    nothing_found_in(what, scope, stats, decision, &ReadProxies::default())
}

/// [`nothing_found`] for a live run that read `proxies`: no debug advice when
/// only ztunnels were read (they log rejections at error level, with no
/// setting); the waypoints' pods named when the advice is given.
pub fn nothing_found_in(
    what: &str,
    scope: &str,
    stats: &Stats,
    decision: &str,
    proxies: &ReadProxies,
) -> Vec<String> {
    let mut lines = Vec::new();
    let decisions = stats.rbac_debug + stats.local_reply + stats.ztunnel;
    let not_decisions = stats.rbac_notes + stats.no_engine + stats.shadow_none;
    let mut read = vec![format!("{} lines", stats.lines)];
    for (n, what) in [
        (stats.rbac_debug, "RBAC decision lines"),
        (stats.access_log, "access log lines"),
        (stats.local_reply, "RBAC local replies"),
        (stats.ztunnel, "ztunnel policy lines"),
        (stats.ztunnel_other, "other ztunnel lines"),
        (not_decisions, "RBAC lines that are not decisions"),
    ] {
        if n > 0 {
            read.push(format!("{n} {what}"));
        }
    }
    if decisions > 0 || stats.access_log > 0 {
        lines.push(format!(
            "No {decision} decisions found in {what}{scope} (read {}).",
            read.join(", ")
        ));
        if stats.rbac_debug == 0 && stats.ztunnel == 0 && decision != "denied" {
            lines.push(
                "Allowed requests are only logged by RBAC debug lines; try --enable-debug.".into(),
            );
        }
    } else {
        lines.push(format!(
            "No RBAC decisions found in {what}{scope} (read {}).",
            read.join(", ")
        ));
    }
    if not_decisions > 0 && decisions == 0 {
        let mut kinds = Vec::new();
        if stats.rbac_notes > 0 {
            kinds.push(format!(
                "{} `checking request`/`allowed by default or by policy` lines",
                stats.rbac_notes
            ));
        }
        if stats.no_engine > 0 {
            kinds.push(format!(
                "{} `no engine, allowed by default` lines (a TCP RBAC filter without enforced rules decides nothing)",
                stats.no_engine
            ));
        }
        if stats.shadow_none > 0 {
            kinds.push(format!(
                "{} `shadow allowed, matched policy none` lines (no dry-run policy matched)",
                stats.shadow_none
            ));
        }
        lines.push(format!(
            "RBAC lines that are not decisions: {}.",
            kinds.join("; ")
        ));
    }
    let unknown = stats.rbac_other + stats.unparsed;
    if unknown > 0 {
        lines.push(format!(
            "{unknown} lines mention RBAC in a form rbaclog does not read{}.",
            stats
                .first_unknown
                .as_deref()
                .map(|l| format!("; the first: {}", escape_control(l)))
                .unwrap_or_default()
        ));
    }
    if stats.foreign > 0 {
        lines.push(format!(
            "{} of {} lines are in no known log layout (istio-proxy, Envoy, access log TEXT/JSON, ztunnel, kubectl/stern prefixes){}.",
            stats.foreign,
            stats.lines,
            stats
                .first_foreign
                .as_deref()
                .map(|l| format!("; the first: {}", escape_control(l)))
                .unwrap_or_default()
        ));
    }
    let no_rbac_at_all = decisions == 0
        && stats.access_log == 0
        && not_decisions == 0
        && unknown == 0
        && stats.foreign < stats.lines.max(1);
    if decisions == 0 && stats.ztunnel_other > 0 {
        // A ztunnel log: enabling Envoy debug logs would change nothing.
        lines.push(format!(
            "ztunnel logs every connection a policy rejects (at error level, with no log setting needed): none of its {} lines in this log is a rejection.",
            stats.ztunnel_other
        ));
    } else if no_rbac_at_all && proxies.ztunnel_only {
        lines.push("ztunnel logs every connection a policy rejects (at error level, with no log setting needed): none was rejected.".into());
    } else if no_rbac_at_all {
        lines.push("The log holds no RBAC line at all: Envoy logs RBAC decisions only when asked to; enable one of:".into());
        lines.push("  - RBAC debug logs for the pod's lifetime: annotate the pod template with sidecar.istio.io/proxyLogLevel: rbac:debug (pods restart)".into());
        lines.push("  - RBAC debug logs for this run: kubectl rbaclog --enable-debug -f (restores each sidecar's level on exit), or istioctl proxy-config log POD.NS --level rbac:debug".into());
        lines.push("  - access logs (they name the policy of every denial): a Telemetry resource with spec.accessLogging: [{providers: [{name: envoy}]}]".into());
        for w in &proxies.waypoints {
            let (ns, pod) = w.split_once('/').unwrap_or(("default", w));
            lines.push(format!(
                "  - for the waypoint {w}: istioctl proxy-config log {pod}.{ns} --level rbac:debug (or kubectl rbaclog -n {ns} --pod {pod} --enable-debug -f)"
            ));
        }
    } else if stats.rbac_notes > 0 && stats.rbac_debug == 0 {
        // `checking request` without decisions: the entries were cut (--tail, --since).
        lines.push("The RBAC filter's `checking request` entries are there but no decision line follows them; widen --since/--tail.".into());
    }
    lines
}

/// Prints decisions one by one as they arrive (follow mode).
#[derive(Debug)]
pub struct FollowPrinter {
    renderer: Renderer,
    widths: Vec<usize>,
    header_done: bool,
}

impl FollowPrinter {
    pub fn new(renderer: Renderer) -> Self {
        let wide = renderer.format == OutputFormat::Wide;
        let widths = DecisionRecord::columns()
            .iter()
            .filter(|c| wide || !c.wide_only)
            .map(|c| match c.header {
                "TIME" => 27,
                "POD" => 36,
                "DECISION" => 16,
                "POLICY" => 40,
                "RULE" => 4,
                "REQUEST" => 24,
                h => h.len(),
            })
            .collect();
        FollowPrinter {
            renderer,
            widths,
            header_done: false,
        }
    }

    fn row(&mut self, cells: &[String]) -> String {
        let mut line = String::new();
        let n = cells.len();
        for (i, c) in cells.iter().enumerate() {
            let w = self
                .widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .max(c.chars().count());
            if let Some(slot) = self.widths.get_mut(i) {
                *slot = w;
            }
            line.push_str(c);
            if i + 1 < n {
                line.push_str(&" ".repeat(w - c.chars().count() + 3));
            }
        }
        line.push('\n');
        line
    }

    /// Prints the header now (table formats), so the user sees the run started.
    pub fn start(&mut self) -> Result<(), PluginError> {
        if self.header_done
            || self.renderer.no_headers
            || !matches!(
                self.renderer.format,
                OutputFormat::Table | OutputFormat::Wide
            )
        {
            self.header_done = true;
            return Ok(());
        }
        self.header_done = true;
        let wide = self.renderer.format == OutputFormat::Wide;
        let headers: Vec<String> = DecisionRecord::columns()
            .iter()
            .filter(|c| wide || !c.wide_only)
            .map(|c| c.header.to_string())
            .collect();
        let line = self.row(&headers);
        let mut out = std::io::stdout().lock();
        write_str(&mut out, &line)?;
        out.flush()
            .map_err(|e| PluginError::io("writing output", e))
    }

    pub fn print(&mut self, d: &DecisionRecord) -> Result<(), PluginError> {
        self.start()?;
        let mut out = std::io::stdout().lock();
        match self.renderer.format {
            OutputFormat::Json | OutputFormat::Jsonl => write_json_line(d, &mut out),
            OutputFormat::Table | OutputFormat::Wide => {
                let wide = self.renderer.format == OutputFormat::Wide;
                let cells: Vec<String> = DecisionRecord::columns()
                    .iter()
                    .zip(d.cells())
                    .filter(|(c, _)| wide || !c.wide_only)
                    .map(|(_, cell)| escape_control(&cell.text))
                    .collect();
                let line = self.row(&cells);
                write_str(&mut out, &line)?;
                out.flush()
                    .map_err(|e| PluginError::io("writing output", e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(stats: &Stats) -> String {
        nothing_found("x.log", "", stats, "denied").join("\n")
    }

    #[test]
    fn debug_advice_only_when_no_rbac_line_at_all() {
        let none = Stats {
            lines: 10,
            ..Stats::default()
        };
        assert!(text(&none).contains("enable one of"));
        let ztunnel = Stats {
            lines: 10,
            ztunnel: 2,
            ..Stats::default()
        };
        assert!(!text(&ztunnel).contains("enable"), "{}", text(&ztunnel));
        let notes = Stats {
            lines: 10,
            no_engine: 3,
            ..Stats::default()
        };
        let t = text(&notes);
        assert!(
            !t.contains("enable one of") && t.contains("no engine"),
            "{t}"
        );
    }

    #[test]
    fn no_debug_advice_for_ztunnels_and_the_waypoints_named() {
        let quiet = Stats {
            lines: 4,
            ..Stats::default()
        };
        let z = nothing_found_in(
            "x",
            "",
            &quiet,
            "denied",
            &ReadProxies {
                ztunnel_only: true,
                waypoints: vec![],
            },
        )
        .join("\n");
        assert!(
            !z.contains("enable") && z.contains("ztunnel logs every connection"),
            "{z}"
        );
        let w = nothing_found_in(
            "x",
            "",
            &quiet,
            "denied",
            &ReadProxies {
                ztunnel_only: false,
                waypoints: vec!["amb/waypoint-0".into()],
            },
        )
        .join("\n");
        assert!(
            w.contains("enable one of")
                && w.contains("istioctl proxy-config log waypoint-0.amb --level rbac:debug"),
            "{w}"
        );
    }

    #[test]
    fn unknown_and_foreign_lines_are_counted_with_the_first_escaped() {
        let s = Stats {
            lines: 5,
            foreign: 2,
            first_foreign: Some("bad\x1b[2Jline".into()),
            rbac_other: 1,
            first_unknown: Some("envoy rbac something".into()),
            ..Stats::default()
        };
        let t = text(&s);
        assert!(t.contains("2 of 5 lines are in no known log layout"), "{t}");
        assert!(t.contains("bad\\u{1b}[2Jline"), "{t}");
        assert!(t.contains("1 lines mention RBAC"), "{t}");
        assert!(!t.contains("enable one of"), "{t}");
        // Foreign lines only: nothing says RBAC was missing from a real log.
        let all_foreign = Stats {
            lines: 2,
            foreign: 2,
            first_foreign: Some("x".into()),
            ..Stats::default()
        };
        assert!(!text(&all_foreign).contains("enable one of"));
    }
}
