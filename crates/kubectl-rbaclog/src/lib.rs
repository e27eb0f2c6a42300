//! kubectl-rbaclog library: `run()` holds the plugin; main.rs only maps its result to an exit code.
