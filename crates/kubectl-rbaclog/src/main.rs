//! Thin entry point of kubectl-rbaclog: all logic is in the library's `run()`.
//!
//! It does not use `kubeplugin::main` because that drops the plugin's future on
//! Ctrl-C, and `--enable-debug` must still restore each sidecar's log level
//! after an interrupt: `run()` handles signals itself.
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kubectl_rbaclog::Cli;
use kubeplugin::PluginCli;

fn main() -> ExitCode {
    // kubectl's completion protocol (`__complete`) and `completion bash|zsh|fish`.
    if let Some(code) = kubeplugin::complete::handle::<Cli>() {
        return code;
    }
    // kubectl's -v=N / -v N / -vvv forms become the one clap reads.
    let args = kubeplugin::flags::normalize_verbosity(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    kubeplugin::run::init_tracing(cli.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            kubeplugin::render::print_error(&kubeplugin::PluginError::io(
                "starting the async runtime",
                e,
            ));
            return ExitCode::from(kubeplugin::error::EXIT_FAILED);
        }
    };
    let result = runtime.block_on(kubectl_rbaclog::run(cli));
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(exit) => ExitCode::from(exit.0),
        Err(e) => {
            let code = e.exit_code();
            // A closed pipe and Ctrl-C are the user's doing, not errors to report:
            // the exit code (0, 130) says what happened.
            if !matches!(
                e,
                kubectl_rbaclog::RbaclogError::Plugin(
                    kubeplugin::PluginError::BrokenPipe | kubeplugin::PluginError::Interrupted
                )
            ) {
                eprintln!("{}", e.one_line());
            }
            ExitCode::from(code)
        }
    }
}
