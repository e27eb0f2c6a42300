//! AuthorizationPolicy -> Envoy RBAC filters, as Istio's builder emits them.
