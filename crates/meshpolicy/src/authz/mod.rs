//! Istio AuthorizationPolicy: schema, validation, evaluation and description.
//!
//! The sidecar enforces AuthorizationPolicy after NetworkPolicy let the
//! connection through, and Envoy's RBAC logs name the deciding rule as
//! `ns[NS]-policy[NAME]-rule[N]`. The submodules follow the policy's life:
//! [`schema`] (the types as written), [`compile`] (validated into
//! [`CompiledAuthz`]), [`evaluate`] (a request against the policies of a
//! workload), [`describe`] (summaries for people), [`path`] (the path RBAC
//! matches after Envoy's normalization). Everything is re-exported here, so
//! callers name `authz::X`. The istio::rbac module translates the same
//! policies into Envoy filters.

pub mod compile;
pub mod describe;
pub mod evaluate;
pub mod path;
pub mod schema;

pub use compile::*;
pub use describe::*;
pub use evaluate::*;
pub use path::*;
pub use schema::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(yaml: &str) -> AuthorizationPolicy {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn matching_forms() {
        assert!(istio_match("/api/*", "/api/x"));
        assert!(!istio_match("/api/*", "/apx"));
        assert!(istio_match("*.svc", "a.svc"));
        assert!(istio_match("*", "x"));
        assert!(!istio_match("*", ""));
        assert!(istio_match("GET", "GET"));
        assert!(!istio_match("GET", "get"));
    }

    #[test]
    fn custom_without_provider_rejected() {
        let p = ap("metadata: {name: x, namespace: a}\nspec: {action: CUSTOM}\n");
        assert!(matches!(
            CompiledAuthz::compile(&p),
            Err(AuthzError::Invalid { .. })
        ));
        let p = ap(
            "metadata: {name: x, namespace: a}\nspec: {rules: [{from: [{source: {ipBlocks: [\"10.0.0/8\"]}}]}]}\n",
        );
        let e = CompiledAuthz::compile(&p).unwrap_err().to_string();
        assert!(
            e.contains("authorizationpolicy a/x") && e.contains("10.0.0/8"),
            "{e}"
        );
    }

    #[test]
    fn unknown_action_is_an_error() {
        let r: Result<AuthorizationPolicy, _> =
            serde_yaml_ng::from_str("metadata: {name: x}\nspec: {action: PERMIT}\n");
        assert!(r.is_err());
    }

    #[test]
    fn summaries() {
        let p =
            CompiledAuthz::compile(&ap("metadata: {name: x, namespace: a}\nspec: {}\n")).unwrap();
        assert_eq!(
            p.summary("istio-system")[1],
            "ALLOW with no rules: allows nothing, so every request is denied"
        );
    }
}
