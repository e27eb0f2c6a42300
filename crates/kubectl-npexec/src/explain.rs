//! The seam between probes and the policy engine (`--explain`, `--predict`).
//!
//! `--explain` names the policies behind each verdict and flags contradictions
//! (a NetworkPolicy that should block while traffic got through: "is the CNI
//! enforcing NetworkPolicy?"); `--predict` does the same without probing. Both
//! need crates/meshpolicy's evaluation API, which is being built in parallel.
//! Until it is wired in here, both flags fail with a clear "not yet available"
//! usage error rather than pretending; [`PolicyNote`] is the record shape that
//! `-o json` will carry in `policies`.

use kubeplugin::PluginError;
use serde::Serialize;

/// One policy that bears on a probe.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyNote {
    /// `network-policy` or `authorization-policy`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// For AuthorizationPolicy: the Envoy policy id (`ns[NS]-policy[NAME]-rule[N]`).
    pub policy_id: Option<String>,
    /// What this policy did to the probe, in words.
    pub effect: String,
    /// Where the note comes from: `engine`, `envoy-log`, `predicted`.
    pub source: String,
}

/// Which analysis the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    Explain,
    Predict,
}

/// Checks that the analysis can run; today it cannot (see the module doc).
pub fn ensure_available(analysis: Analysis) -> Result<(), PluginError> {
    let flag = match analysis {
        Analysis::Explain => "--explain",
        Analysis::Predict => "--predict",
    };
    Err(PluginError::usage(
        format!("{flag} is not available yet: the policy engine integration is not built"),
        Some("probe without it, and inspect policies with kubectl authzcheck".to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_analysis_is_a_clear_usage_error() {
        let e = ensure_available(Analysis::Explain).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--explain is not available yet"));
        let e = ensure_available(Analysis::Predict).unwrap_err();
        assert!(e.to_string().contains("--predict"));
    }
}
