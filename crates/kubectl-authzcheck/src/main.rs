//! Thin entry point of kubectl-authzcheck: all logic is in the library's `run()`.
fn main() -> std::process::ExitCode {
    kubeplugin::main(kubectl_authzcheck::run)
}
