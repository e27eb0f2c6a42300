//! Thin entry point of kubectl-npexec: all logic is in the library's `run()`.
fn main() -> std::process::ExitCode {
    kubeplugin::main(kubectl_npexec::run)
}
