//! The shared `main`: parse flags, set up logging and the runtime, run the
//! plugin, map the outcome to an exit code.
//!
//! Each plugin's `main.rs` is a one-liner calling [`main`], so all of them
//! treat usage errors (exit 2 via clap), Ctrl-C (130), SIGTERM (143), broken
//! pipes (quiet) and failures (one `error:` line, no backtrace) the same way.
//! Shell completion (`__complete ...`, `completion SHELL`) is answered here
//! too, before parsing, so no plugin needs code of its own for it.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::error::{EXIT_FAILED, EXIT_NEGATIVE, EXIT_OK, PluginError};
use crate::render::print_error;

/// A plugin's command line: clap-parsed, and telling how verbose to log.
pub trait PluginCli: Parser {
    /// The log level from `-v` (0 warn, 1 info, 2 debug, 3 trace, 4 trace with HTTP internals).
    fn verbosity(&self) -> u8;
}

/// How a run that did not fail ends: 0, 1 (negative result asked for) or 3
/// (results printed, but some probes could not run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    pub const OK: Exit = Exit(EXIT_OK);
    pub const NEGATIVE: Exit = Exit(EXIT_NEGATIVE);
    pub const FAILED: Exit = Exit(EXIT_FAILED);
}

/// Installs the stderr tracing subscriber for `-v` levels. Noisy HTTP/TLS
/// internals stay at warn unless -vvvv, so headers and tokens are never logged.
pub fn init_tracing(verbosity: u8) {
    // At the default level kube-client's own error logs would duplicate the
    // one-line error the plugin prints, so they show only with -v.
    let level = match verbosity {
        0 => "warn,kube_client=off,kube=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let quiet_internals = if verbosity >= 4 {
        String::new()
    } else {
        ",hyper=warn,hyper_util=warn,h2=warn,rustls=warn,tower=warn,tungstenite=warn,tokio_tungstenite=warn".to_string()
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("{level}{quiet_internals}"));
    // Colours only on a terminal and without NO_COLOR: logs piped to a file or
    // a CI log must not carry escape sequences.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(verbosity >= 2)
        .try_init();
}

/// How a plugin's error ends the process: its exit code and the one stderr
/// line, if any. A plugin with an error type of its own implements this, so
/// every plugin reports failures through the same [`main`].
pub trait Failure {
    fn exit_code(&self) -> u8;
    /// The `error: ...; hint: ...` line, or `None` when the exit code says
    /// everything (a closed pipe, Ctrl-C).
    fn error_line(&self) -> Option<String>;
}

impl Failure for PluginError {
    fn exit_code(&self) -> u8 {
        match self {
            PluginError::BrokenPipe => EXIT_OK,
            e => PluginError::exit_code(e),
        }
    }
    fn error_line(&self) -> Option<String> {
        (!matches!(self, PluginError::BrokenPipe)).then(|| self.one_line())
    }
}

/// Who answers SIGINT/SIGTERM during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signals {
    /// [`main`] drops the run's future at the first signal (exit 130/143).
    Shared,
    /// The plugin handles them itself, e.g. to restore state it changed in
    /// the cluster before it exits (rbaclog's `--enable-debug`).
    ByPlugin,
}

/// Runs a plugin: `fn main() -> ExitCode { kubeplugin::main(my_plugin::run) }`.
pub fn main<C, F, Fut>(run: F) -> ExitCode
where
    C: PluginCli,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<Exit, PluginError>>,
{
    main_with(Signals::Shared, run)
}

/// [`main`] for a plugin with its own error type or its own signal handling:
/// `kubeplugin::run::main_with(Signals::ByPlugin, my_plugin::run)`.
pub fn main_with<C, E, F, Fut>(signals: Signals, run: F) -> ExitCode
where
    C: PluginCli,
    E: Failure + From<PluginError>,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<Exit, E>>,
{
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = crate::complete::intercept(C::command(), &args) {
        return code;
    }
    // kubectl's -v=N / -v N / -vvv forms become the one clap reads.
    let cli = match C::try_parse_from(crate::flags::normalize_verbosity(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    init_tracing(cli.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            print_error(&PluginError::io("starting the async runtime", e));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = match signals {
        Signals::Shared => runtime.block_on(run_until_signal(run(cli))),
        Signals::ByPlugin => runtime.block_on(run(cli)),
    };
    // Cancelled probes and streams end here; child processes are killed on drop.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(exit) => ExitCode::from(exit.0),
        Err(e) => {
            if let Some(line) = e.error_line() {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs `fut` unless SIGINT or SIGTERM arrives first (then it is dropped and
/// the result is [`PluginError::Interrupted`] or [`PluginError::Terminated`],
/// converted into the caller's error type).
pub async fn run_until_signal<T, E, Fut>(fut: Fut) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: From<PluginError>,
{
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => Err(PluginError::Interrupted.into()),
        _ = term => Err(PluginError::Terminated.into()),
    }
}
