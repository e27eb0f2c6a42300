//! Thin entry point of kubectl-npexec.
fn main() {
    eprintln!("error: kubectl-npexec is not implemented yet");
    std::process::exit(2);
}
