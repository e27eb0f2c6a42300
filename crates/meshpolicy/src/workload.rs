//! Workloads (pods, namespaces) as the engine sees them.
