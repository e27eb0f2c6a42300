//! Shell completion for every plugin, with no code in the plugins.
//!
//! kubectl (1.26 or later) completes `kubectl NAME ...` by running the
//! executable `kubectl_complete-NAME` with the words typed after the plugin
//! name and the word under the cursor; it expects one candidate per line
//! (`value` or `value<TAB>description`) and a last line `:DIRECTIVE` (cobra's
//! protocol: 4 = no file completion, 0 = the shell's default). Our helpers
//! forward to `kubectl-NAME __complete WORDS...`, which [`intercept`] answers
//! before clap parses anything, from the plugin's own clap `Command`: flag
//! names, clap's possible values, and namespaces, pods, Services and contexts
//! looked up through the kubeconfig flags typed on the line, within
//! [`cluster::LOOKUP_LIMIT`]. `kubectl-NAME completion bash|zsh|fish` prints a
//! script for using the binary directly.

pub mod cluster;
pub mod line;
pub mod scripts;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Command;

pub use line::{Candidate, Request, Want, analyse};
pub use scripts::Shell;

/// The hidden argument kubectl's helpers call the plugin with.
pub const COMPLETE_ARG: &str = "__complete";

/// Cobra's directive: do not fall back to file names.
pub const DIRECTIVE_NO_FILE: u8 = 4;
/// Cobra's directive: let the shell complete file names if nothing matches.
pub const DIRECTIVE_DEFAULT: u8 = 0;

/// Candidates plus the directive, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub candidates: Vec<Candidate>,
    pub directive: u8,
}

impl Completion {
    /// Renders the protocol: `value[\tdescription]` lines, then `:DIRECTIVE`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.candidates {
            out.push_str(&clean(&c.value));
            if let Some(d) = &c.description {
                out.push('\t');
                out.push_str(&clean(d));
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// Candidates come from the cluster (untrusted): no tabs, newlines or other
/// control characters may break the line protocol or the terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Completes `words` (after the plugin name; the last is the word under the
/// cursor) for `cmd`, looking names up within `limit`.
pub async fn complete(cmd: &Command, words: &[String], limit: Duration) -> Completion {
    let request = analyse(cmd, words);
    let directive = if request.want == Want::Files {
        DIRECTIVE_DEFAULT
    } else {
        DIRECTIVE_NO_FILE
    };
    let flags = cluster::kube_flags(&request.flags);
    let found = cluster::lookup(&request.want, &flags, limit).await;
    let candidates = found
        .into_iter()
        .filter(|c| c.value.starts_with(&request.prefix))
        .map(|c| Candidate {
            value: format!("{}{}", request.insert_before, c.value),
            description: c.description,
        })
        .collect();
    Completion {
        candidates,
        directive,
    }
}

/// The binary's name from the command's name (`kubectl npexec` -> `kubectl-npexec`).
pub fn binary_name(cmd: &Command) -> String {
    cmd.get_name().replace(' ', "-")
}

fn write_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error worth reporting.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    ExitCode::SUCCESS
}

/// Answers `__complete ...` and `completion SHELL` before normal parsing.
/// Returns `None` when the command line is an ordinary one.
pub fn intercept(cmd: Command, args: &[OsString]) -> Option<ExitCode> {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match words.first().map(String::as_str) {
        Some(COMPLETE_ARG) => {
            let rest = &words[1..];
            let completion = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let c = rt.block_on(complete(&cmd, rest, cluster::LOOKUP_LIMIT));
                    // Do not wait for a lookup stuck in a blocking task.
                    rt.shutdown_background();
                    c
                }
                Err(_) => Completion {
                    candidates: Vec::new(),
                    directive: DIRECTIVE_NO_FILE,
                },
            };
            Some(write_stdout(&completion.render()))
        }
        // Exactly `completion bash|zsh|fish`: any other use of the word
        // `completion` (say, a namespace of that name) is left to the plugin.
        Some("completion") if words.len() == 2 => {
            let shell = Shell::from_name(&words[1])?;
            Some(write_stdout(&scripts::script(shell, &binary_name(&cmd))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "kubectl demo")]
    struct Demo {
        #[arg(value_name = "NAMESPACE")]
        namespaces: Vec<String>,
        /// Output format
        #[arg(short = 'o', long, value_parser = ["table", "json"])]
        output: Option<String>,
        #[arg(long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn run(words: &[&str]) -> Completion {
        use clap::CommandFactory;
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(complete(&Demo::command(), &words, Duration::from_secs(1)))
    }

    #[test]
    fn possible_values_filtered_by_prefix() {
        let c = run(&["-o", "j"]);
        assert_eq!(c.render(), "json\n:4\n");
        let c = run(&["--output=t"]);
        assert_eq!(c.render(), "--output=table\n:4\n");
        let c = run(&["--fi"]);
        assert_eq!(c.candidates.len(), 1);
        assert!(c.render().starts_with("--file\n"), "{}", c.render());
    }

    #[test]
    fn paths_let_the_shell_complete_files() {
        assert_eq!(run(&["--file", ""]).directive, DIRECTIVE_DEFAULT);
        assert_eq!(run(&["-o", ""]).directive, DIRECTIVE_NO_FILE);
    }

    #[test]
    fn render_cleans_untrusted_text() {
        let c = Completion {
            candidates: vec![Candidate::described("a\tb\nc", "d\x1b[31m")],
            directive: 4,
        };
        assert_eq!(c.render(), "a b c\td [31m\n:4\n");
    }

    #[test]
    fn intercept_only_its_own_forms() {
        use clap::CommandFactory;
        let cmd = Demo::command();
        assert!(intercept(cmd.clone(), &os(&["kubectl-demo", "np-1"])).is_none());
        assert!(intercept(cmd.clone(), &os(&["kubectl-demo", "completion", "np-2"])).is_none());
        assert!(
            intercept(
                cmd.clone(),
                &os(&["kubectl-demo", "completion", "bash", "x"])
            )
            .is_none()
        );
        assert!(intercept(cmd.clone(), &os(&["kubectl-demo"])).is_none());
        assert_eq!(binary_name(&cmd), "kubectl-demo");
    }
}
