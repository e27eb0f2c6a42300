//! Istio PeerAuthentication: which mTLS mode a workload's port accepts.
