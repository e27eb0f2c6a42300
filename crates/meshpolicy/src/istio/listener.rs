//! The inbound listener Istio builds around a sidecar's RBAC filters.
