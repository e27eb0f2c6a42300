//! Finding the Envoy binary the sidecars run.
//!
//! meshsim's sidecars are the real Envoy (1.40, installed by `make envoy` at
//! `target/envoy/envoy`). The binary is looked for, first match wins: the
//! `--envoy PATH` flag, the `MESHSIM_ENVOY` environment variable, the
//! workspace's `target/envoy/envoy` (next to the running executable's
//! target directory, then relative to this crate's source for in-process
//! tests), then `envoy` on `PATH`. A missing binary is one error naming
//! `make envoy`.

use std::path::{Path, PathBuf};

/// The environment variable naming the Envoy binary.
pub const ENV_VAR: &str = "MESHSIM_ENVOY";

/// No usable Envoy binary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvoyNotFound {
    #[error(
        "Envoy binary {0} (from {1}) does not exist or is not executable; run `make envoy` to install Envoy 1.40 at target/envoy/envoy"
    )]
    Named(PathBuf, &'static str),
    #[error(
        "no Envoy binary found (--envoy, ${ENV_VAR}, target/envoy/envoy, PATH); run `make envoy` to install Envoy 1.40 at target/envoy/envoy"
    )]
    Missing,
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the workspace's `make envoy` puts Envoy, seen from the running
/// executable (`target/debug/meshsim` -> `target/envoy/envoy`, also from
/// `target/debug/deps/` for test binaries) and from this crate's sources.
fn workspace_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(3) {
            out.push(dir.join("envoy").join("envoy"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    out.push(target.join("envoy").join("envoy"));
    out
}

/// Finds Envoy: `explicit` (the `--envoy` flag), then [`ENV_VAR`], then the
/// workspace's `target/envoy/envoy`, then `PATH`.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf, EnvoyNotFound> {
    if let Some(p) = explicit {
        return if executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(EnvoyNotFound::Named(p.to_path_buf(), "--envoy"))
        };
    }
    if let Some(v) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(EnvoyNotFound::Named(p, "$MESHSIM_ENVOY"))
        };
    }
    if let Some(p) = workspace_candidates().into_iter().find(|p| executable(p)) {
        return Ok(p);
    }
    which::which("envoy").map_err(|_| EnvoyNotFound::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins_and_must_exist() {
        let err = find_envoy(Some(Path::new("/nonexistent/envoy"))).unwrap_err();
        assert!(err.to_string().contains("make envoy"), "{err}");
        assert!(matches!(err, EnvoyNotFound::Named(_, "--envoy")));
        let sh = which::which("sh").unwrap();
        assert_eq!(find_envoy(Some(&sh)).unwrap(), sh);
    }

    #[test]
    fn message_is_one_line() {
        assert!(!EnvoyNotFound::Missing.to_string().contains('\n'));
    }
}
