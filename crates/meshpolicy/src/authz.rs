//! Istio AuthorizationPolicy evaluation with Envoy-style policy ids.
