//! Kubernetes NetworkPolicy (networking.k8s.io/v1) evaluation with explanations.
