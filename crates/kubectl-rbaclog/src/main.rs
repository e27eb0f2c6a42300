//! Thin entry point of kubectl-rbaclog.
fn main() {
    eprintln!("error: kubectl-rbaclog is not implemented yet");
    std::process::exit(2);
}
