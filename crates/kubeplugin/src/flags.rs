//! The kubectl-style flags every plugin accepts, defined once as clap `Args`.
//!
//! kubectl passes everything after the plugin name to the plugin, so users
//! expect `--context`, `-n`, `--as`, `-o` and friends to behave exactly like
//! kubectl's. Plugins `#[command(flatten)]` these structs; `-A` is a separate
//! struct because only some plugins make sense across all namespaces.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::duration::clap_duration;

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
    /// Log to stderr (-v info, -vv debug, -vvv trace); secrets are never logged
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
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

/// Output flags: format, headers, color.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
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

    #[test]
    fn parses_kubectl_style_flags() {
        let cli = Cli::try_parse_from([
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
        assert_eq!(cli.out.output, OutputFormat::Jsonl);
        assert!(cli.out.no_headers);
        assert_eq!(cli.kube.verbose, 2);
        assert!(cli.all.all_namespaces);
    }

    #[test]
    fn bad_output_format_and_duration_are_usage_errors() {
        let e = Cli::try_parse_from(["p", "-o", "yaml"]).unwrap_err();
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
