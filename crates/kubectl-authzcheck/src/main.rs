//! Thin entry point of kubectl-authzcheck.
fn main() {
    eprintln!("error: kubectl-authzcheck is not implemented yet");
    std::process::exit(2);
}
