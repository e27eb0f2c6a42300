//! Thin entry point: the library's `run()` handles Ctrl-C itself (to restore sidecar log levels).
fn main() -> std::process::ExitCode {
    kubeplugin::run::main_with(kubeplugin::run::Signals::ByPlugin, kubectl_rbaclog::run)
}
