//! The kubectl-style flags every plugin accepts, defined once as clap `Args`.
//!
//! kubectl passes everything after the plugin name to the plugin, so users
//! expect `--context`, `-n`, `--as`, `-o` and friends to behave exactly like
//! kubectl's. Plugins `#[command(flatten)]` these structs; `-A` is a separate
//! struct because only some plugins make sense across all namespaces.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::duration::clap_duration;
use crate::template::Template;

/// Connection flags: which cluster, as whom, in which namespace.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, several files merged, then ~/.kube/config)
    #[arg(long, value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The kubeconfig cluster to use
    #[arg(long, value_name = "NAME", global = true)]
    pub cluster: Option<String>,
    /// The kubeconfig user to use
    #[arg(long, value_name = "NAME", global = true)]
    pub user: Option<String>,
    /// Namespace (default: the context's namespace, then "default")
    #[arg(short = 'n', long, value_name = "NS", global = true)]
    pub namespace: Option<String>,
    /// Time to wait for each API request (e.g. 5s, 1m; 0 = no limit)
    #[arg(long, value_name = "DURATION", value_parser = clap_duration, global = true)]
    pub request_timeout: Option<Duration>,
    /// User to impersonate
    #[arg(long = "as", value_name = "USER", global = true)]
    pub as_user: Option<String>,
    /// Group to impersonate (repeatable)
    #[arg(long = "as-group", value_name = "GROUP", global = true)]
    pub as_group: Vec<String>,
    /// Log to stderr, as kubectl: -v=N or -v N (1-4 info, 5-6 debug, 7-8 trace, 9+ also HTTP
    /// internals); -v, -vv, -vvv, -vvvv are 1, 6, 8, 9
    #[arg(
        short = 'v',
        long = "v",
        visible_alias = "verbose",
        value_name = "N",
        value_parser = kubectl_verbosity,
        default_value = "0",
        global = true
    )]
    pub verbose: u8,
}

/// The log level (0 warn, 1 info, 2 debug, 3 trace, 4 trace with HTTP
/// internals) for kubectl's `-v=N`, whose levels run 0 to 10.
pub fn kubectl_verbosity(s: &str) -> Result<u8, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a verbosity level (a number, as kubectl's -v=N)"))?;
    Ok(match n {
        0 => 0,
        1..=4 => 1,
        5..=6 => 2,
        7..=8 => 3,
        _ => 4,
    })
}

/// Rewrites kubectl's verbosity forms into the one clap reads (`--v=N`):
/// `-v N`, `-v=N`, `-vN`, `--v N`, `--v=N`, `--verbose[=N]`, and the counted
/// `-v`/`-vv`/`-vvv`/`-vvvv` (levels 1, 6, 8, 9). A bare `-v` followed by a
/// word that is not a number (`-v np-test-1`) is level 1 and leaves the word
/// alone. Several occurrences keep the highest level. Nothing after `--` is
/// touched.
pub fn normalize_verbosity(args: Vec<OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    let mut level: Option<u32> = None;
    let raise = |n: u32, level: &mut Option<u32>| *level = Some(level.map_or(n, |l| l.max(n)));
    let number = |s: &str| s.parse::<u32>().ok();
    let mut it = args.into_iter().enumerate().peekable();
    let mut rest = false;
    while let Some((i, a)) = it.next() {
        if i == 0 || rest {
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let flag_value = s
            .strip_prefix("--v=")
            .or_else(|| s.strip_prefix("-v="))
            .or_else(|| s.strip_prefix("--verbose="))
            .or_else(|| s.strip_prefix("-v").filter(|r| number(r).is_some()));
        if let Some(v) = flag_value {
            match number(v) {
                Some(n) => raise(n, &mut level),
                None => out.push(a),
            }
            continue;
        }
        if s == "-v" || s == "--v" || s == "--verbose" {
            let next = it.peek().and_then(|(_, n)| n.to_str()).and_then(number);
            match next {
                Some(n) if s != "--verbose" => {
                    it.next();
                    raise(n, &mut level);
                }
                _ => raise(1, &mut level),
            }
            continue;
        }
        if s.len() > 2 && s.starts_with("-v") && s[1..].bytes().all(|b| b == b'v') {
            let count = s.len() - 1;
            raise([1, 6, 8, 9][count.min(4) - 1], &mut level);
            continue;
        }
        out.push(a);
    }
    if let Some(n) = level {
        out.insert(out.len().min(1), OsString::from(format!("--v={n}")));
    }
    out
}

/// `-A/--all-namespaces`, for plugins where it makes sense.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct AllNamespacesFlag {
    /// Look in every namespace
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns
    #[default]
    Table,
    /// Aligned columns with more detail
    Wide,
    /// One JSON array
    Json,
    /// One JSON object per line, streamed
    Jsonl,
}

/// When to color output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is unset
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Decides from the choice, whether stdout is a terminal, and NO_COLOR.
    pub fn decide(self, stdout_is_terminal: bool, no_color_set: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout_is_terminal && !no_color_set,
        }
    }

    /// Decides for this process's stdout and environment.
    pub fn enabled(self) -> bool {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        self.decide(std::io::stdout().is_terminal(), no_color)
    }
}

/// What `-o` asks for: one of the formats each plugin renders itself, or a
/// transformation of its JSON output done once in the render layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// table, wide, json, jsonl.
    Format(OutputFormat),
    /// The JSON output as YAML.
    Yaml,
    /// `TYPE/NAME` per object (plugins whose rows are objects only).
    Name,
    /// kubectl's JSONPath template over the JSON output.
    JsonPath(Template),
    /// `HEADER:JSONPATH,...`: one column per spec, one row per JSON row.
    CustomColumns(Vec<(String, Template)>),
    /// A picture of the results (`-o dot|mermaid|html`), drawn by the
    /// plugins that can; the others refuse it.
    Picture(Picture),
}

/// The pictures `-o` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    /// A Graphviz graph (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (Markdown in GitHub/GitLab renders it).
    Mermaid,
    /// One self-contained HTML page (inline CSS, no external resources).
    Html,
}

impl Picture {
    pub fn name(self) -> &'static str {
        match self {
            Picture::Dot => "dot",
            Picture::Mermaid => "mermaid",
            Picture::Html => "html",
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Output::Format(OutputFormat::Table)
    }
}

impl Output {
    /// The name users type (`-o yaml`, `-o jsonpath=...`), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Output::Format(OutputFormat::Table) => "table",
            Output::Format(OutputFormat::Wide) => "wide",
            Output::Format(OutputFormat::Json) => "json",
            Output::Format(OutputFormat::Jsonl) => "jsonl",
            Output::Yaml => "yaml",
            Output::Name => "name",
            Output::JsonPath(_) => "jsonpath",
            Output::CustomColumns(_) => "custom-columns",
            Output::Picture(p) => p.name(),
        }
    }
}

/// The `-o` values, as in kubectl's help.
pub const OUTPUT_FORMATS: &str = "table, wide, json, jsonl, yaml, name, jsonpath=TEMPLATE, custom-columns=HEADER:JSONPATH,..., dot, mermaid, html";

/// Parses `-o`.
pub fn parse_output(s: &str) -> Result<Output, String> {
    let (kind, arg) = match s.split_once('=') {
        Some((k, a)) => (k, Some(a)),
        None => (s, None),
    };
    let need = |what: &str| format!("-o {kind} needs a value: -o {kind}={what}");
    Ok(match (kind, arg) {
        ("table", None) | ("", None) => Output::Format(OutputFormat::Table),
        ("wide", None) => Output::Format(OutputFormat::Wide),
        ("json", None) => Output::Format(OutputFormat::Json),
        ("jsonl", None) => Output::Format(OutputFormat::Jsonl),
        ("yaml", None) => Output::Yaml,
        ("name", None) => Output::Name,
        ("dot", None) => Output::Picture(Picture::Dot),
        ("mermaid", None) => Output::Picture(Picture::Mermaid),
        ("html", None) => Output::Picture(Picture::Html),
        ("jsonpath", Some(t)) => Output::JsonPath(Template::parse(t).map_err(|e| e.to_string())?),
        ("jsonpath", None) => return Err(need("TEMPLATE")),
        ("custom-columns", Some(spec)) => {
            let mut cols = Vec::new();
            for col in spec.split(',') {
                let (h, path) = col
                    .split_once(':')
                    .ok_or_else(|| format!("custom-columns: {col:?} is not HEADER:JSONPATH"))?;
                // kubectl accepts the path with or without braces.
                let path = path.trim();
                let t = if path.starts_with('{') {
                    path.to_string()
                } else {
                    format!("{{{path}}}")
                };
                cols.push((
                    h.to_string(),
                    Template::parse(&t).map_err(|e| e.to_string())?,
                ));
            }
            if cols.is_empty() {
                return Err(need("HEADER:JSONPATH,..."));
            }
            Output::CustomColumns(cols)
        }
        ("custom-columns", None) => return Err(need("HEADER:JSONPATH,...")),
        _ => {
            return Err(format!(
                "unknown output format {s:?}; one of: {OUTPUT_FORMATS}"
            ));
        }
    })
}

/// clap's parser for `-o`: [`parse_output`], with the format names declared
/// so shell completion offers them.
#[derive(Debug, Clone, Copy)]
pub struct OutputParser;

impl clap::builder::TypedValueParser for OutputParser {
    type Value = Output;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Output, clap::Error> {
        let s = value
            .to_str()
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidUtf8).with_cmd(cmd))?;
        parse_output(s).map_err(|reason| {
            let arg = arg.map(|a| a.to_string()).unwrap_or_else(|| "-o".into());
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{s}' for '{arg}': {reason}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::builder::PossibleValue;
        Some(Box::new(
            [
                ("table", "Aligned columns"),
                ("wide", "Aligned columns with more detail"),
                ("json", "One JSON document"),
                ("jsonl", "One JSON object per line, streamed"),
                ("yaml", "The JSON output as YAML"),
                ("name", "TYPE/NAME of each object"),
                (
                    "jsonpath=",
                    "kubectl's JSONPath template over the JSON output",
                ),
                (
                    "custom-columns=",
                    "HEADER:JSONPATH,... columns over the JSON rows",
                ),
            ]
            .into_iter()
            .map(|(v, h)| PossibleValue::new(v).help(h)),
        ))
    }
}

/// Output flags: format, headers, color.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Output format: table, wide, json, jsonl, yaml, name, jsonpath=TEMPLATE,
    /// custom-columns=HEADER:JSONPATH,... (see README for each plugin's)
    #[arg(short = 'o', long = "output", value_parser = OutputParser, default_value = "table", value_name = "FORMAT", hide_possible_values = true)]
    pub output: Output,
    /// Omit table headers (and legends)
    #[arg(long)]
    pub no_headers: bool,
    /// Color: auto (terminal and NO_COLOR unset), always, never
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kube: KubeFlags,
        #[command(flatten)]
        out: OutputArgs,
        #[command(flatten)]
        all: AllNamespacesFlag,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize_verbosity(
            args.iter().map(OsString::from).collect(),
        ))
    }

    #[test]
    fn verbosity_in_every_kubectl_form() {
        let level = |args: &[&str]| {
            let mut v = vec!["p"];
            v.extend_from_slice(args);
            parse(&v)
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
                .kube
                .verbose
        };
        assert_eq!(level(&[]), 0);
        for (args, want) in [
            (&["-v=6"][..], 2),
            (&["-v", "6"], 2),
            (&["-v6"], 2),
            (&["--v=6"], 2),
            (&["--v", "8"], 3),
            (&["-v=0"], 0),
            (&["-v=3"], 1),
            (&["-v=10"], 4),
            (&["-v"], 1),
            (&["--verbose"], 1),
            (&["-vv"], 2),
            (&["-vvv"], 3),
            (&["-vvvv"], 4),
            (&["-v", "-v=8"], 3),
            (&["-n", "x", "-v=6", "-o", "json"], 2),
        ] {
            assert_eq!(level(args), want, "{args:?}");
        }
        // A bare -v before a word that is not a number leaves the word alone.
        let cli = parse(&["p", "-v", "-n", "ns"]).unwrap();
        assert_eq!(
            (cli.kube.verbose, cli.kube.namespace.as_deref()),
            (1, Some("ns"))
        );
        assert_eq!(parse(&["p", "-v=x"]).unwrap_err().exit_code(), 2);
        // After --, nothing is rewritten.
        let args = normalize_verbosity(["p", "--", "-v=6"].iter().map(OsString::from).collect());
        assert_eq!(args, ["p", "--", "-v=6"]);
    }

    #[test]
    fn parses_kubectl_style_flags() {
        let cli = parse(&[
            "p",
            "-n",
            "np-test-1",
            "--context",
            "c",
            "--as",
            "alice",
            "--as-group",
            "g1",
            "--as-group",
            "g2",
            "--request-timeout",
            "5s",
            "-o",
            "jsonl",
            "--no-headers",
            "-vv",
            "-A",
        ])
        .unwrap();
        assert_eq!(cli.kube.namespace.as_deref(), Some("np-test-1"));
        assert_eq!(cli.kube.as_user.as_deref(), Some("alice"));
        assert_eq!(cli.kube.as_group, vec!["g1", "g2"]);
        assert_eq!(cli.kube.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(cli.out.output, Output::Format(OutputFormat::Jsonl));
        assert!(cli.out.no_headers);
        assert_eq!(cli.kube.verbose, 2);
        assert!(cli.all.all_namespaces);
    }

    #[test]
    fn every_output_form_parses() {
        let o = |s: &str| parse(&["p", "-o", s]).map(|c| c.out.output);
        assert_eq!(o("yaml").unwrap(), Output::Yaml);
        assert_eq!(o("name").unwrap(), Output::Name);
        assert_eq!(o("dot").unwrap(), Output::Picture(Picture::Dot));
        assert_eq!(o("mermaid").unwrap(), Output::Picture(Picture::Mermaid));
        assert_eq!(o("html").unwrap(), Output::Picture(Picture::Html));
        assert!(matches!(o("jsonpath={.a}").unwrap(), Output::JsonPath(_)));
        let Output::CustomColumns(cols) = o("custom-columns=POD:.pod.name,V:{.verdict}").unwrap()
        else {
            panic!()
        };
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0].0, "POD");
        // kubectl's --output=jsonpath=... form too.
        let c = parse(&["p", "--output=jsonpath={.a}"]).unwrap();
        assert!(matches!(c.out.output, Output::JsonPath(_)));
        for bad in [
            "yml",
            "jsonpath",
            "jsonpath={.a",
            "custom-columns",
            "custom-columns=X",
        ] {
            assert_eq!(o(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn bad_output_format_and_duration_are_usage_errors() {
        let e = Cli::try_parse_from(["p", "-o", "xml"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["p", "--request-timeout", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn color_auto_follows_terminal_and_no_color() {
        assert!(ColorChoice::Auto.decide(true, false));
        assert!(!ColorChoice::Auto.decide(true, true));
        assert!(!ColorChoice::Auto.decide(false, false));
        assert!(ColorChoice::Always.decide(false, true));
        assert!(!ColorChoice::Never.decide(true, false));
    }
}
