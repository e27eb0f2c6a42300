//! What-if: the model after a change, before the change reaches a cluster.
//!
//! A pull request edits manifests; reviewers want to know which connections
//! that opens or cuts. This module builds the AFTER model from the BEFORE one
//! plus the manifests of the change (an overlay: an object with the same
//! kind, namespace and name replaces the old one, a new one is added, a
//! deleted one is removed), so that [`crate::connectivity::diff`] can compare
//! the two. It is pure: reading files and the live cluster is the plugins' job.

use crate::workload::Objects;

/// Appends every object of `from` to `into` (no replacement).
pub fn merge_objects(into: &mut Objects, from: Objects) {
    into.namespaces.extend(from.namespaces);
    into.pods.extend(from.pods);
    into.template_pods.extend(from.template_pods);
    into.network_policies.extend(from.network_policies);
    into.authorization_policies
        .extend(from.authorization_policies);
}
