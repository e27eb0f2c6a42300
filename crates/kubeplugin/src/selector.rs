//! Validation of Kubernetes label selectors typed on the command line.
//!
//! An invalid `-l` must be a usage error (exit 2) naming the selector, found
//! before any API call; the API server would otherwise answer 400 with a
//! message that reads like a cluster failure.

use meshpolicy::selector::{Selector, SelectorError as ParseError};

/// Why a selector is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector \"{selector}\": {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// Checks `-l` syntax: comma-separated `k`, `!k`, `k=v`, `k==v`, `k!=v`,
/// `k in (a,b)`, `k notin (a,b)`, with Kubernetes' rules for keys and values.
/// The grammar is meshpolicy's [`Selector::parse`], the only one in the
/// workspace: the policy engine and meshsim's API server (`labelSelector`,
/// service and workload selectors) parse with it too; an empty selector is refused here, since
/// `-l ""` is almost certainly a mistake on a command line.
pub fn validate_selector(selector: &str) -> Result<(), SelectorError> {
    let fail = |reason: String| SelectorError {
        selector: selector.to_string(),
        reason,
    };
    if selector.trim().is_empty() {
        return Err(fail("empty".into()));
    }
    Selector::parse(selector).map(drop).map_err(|e| {
        fail(match e {
            // The selector is already named in front of the reason.
            ParseError::Parse { reason, .. } => reason,
            other => other.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_selectors() {
        for s in [
            "app=np-test-nginx-1",
            "app==x,tier!=web",
            "env in (prod, dev),!legacy",
            "app.kubernetes.io/name=nginx",
            "app notin (a)",
            "app",
            "app=",
        ] {
            assert!(
                validate_selector(s).is_ok(),
                "{s}: {:?}",
                validate_selector(s)
            );
        }
    }

    #[test]
    fn rejects_invalid_selectors() {
        for s in [
            "",
            "app=$(x)",
            "=x",
            "a in b",
            "a in (b",
            "a=b c",
            "-a=b",
            ",",
            "a==b==c",
            "a in ()",
            "A.Example/x=y",
            "a in ((b))",
        ] {
            assert!(validate_selector(s).is_err(), "{s} should be invalid");
        }
    }
}
