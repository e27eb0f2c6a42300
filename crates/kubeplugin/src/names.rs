//! Kubernetes object-name rules the plugins check before asking the API.
//!
//! Each plugin rejects a malformed namespace or pod name on the command line
//! with a usage error (exit 2) instead of sending it to the API server and
//! reporting a confusing 404 or 400. The rules are Kubernetes' own, so they
//! live in meshpolicy (meshsim's API server checks names with them too).

pub use meshpolicy::names::{is_dns_label, is_dns_subdomain};
