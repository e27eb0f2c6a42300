//! meshsim binary entry point.
fn main() {
    eprintln!("error: meshsim is not implemented yet");
    std::process::exit(2);
}
