//! A request's resource path, parsed: which resource, namespace, name and
//! subresource. Its own module because the API server parses it and the
//! kubelet side (exec, logs) reads it, and neither should depend on the other.

use crate::resources::ResourceDef;

/// A parsed resource path.
#[derive(Debug, Clone)]
pub struct Target {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}
