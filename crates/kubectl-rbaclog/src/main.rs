//! Thin entry point of kubectl-rbaclog: all logic is in the library's `run()`, which
//! handles Ctrl-C itself so `--enable-debug` can restore each sidecar's log level.
fn main() -> std::process::ExitCode {
    kubeplugin::run::main_with(kubeplugin::run::Signals::ByPlugin, kubectl_rbaclog::run)
}
