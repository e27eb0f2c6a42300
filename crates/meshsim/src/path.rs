//! A request, parsed: which resource, namespace, name and subresource its
//! path names ([`ResourcePath`]), and its query parameters. The API server
//! (`api`) parses them and hands pod subresource requests to the kubelet side
//! (`podexec`, `logstream`), which reads them; living outside `api/` keeps
//! that hand-over from making a module cycle.

use std::collections::HashMap;

use crate::store::resources::ResourceDef;

/// Query parameters: every value of each key, in order.
pub type Query = HashMap<String, Vec<String>>;

/// A parsed resource path: `/api/v1/namespaces/NS/pods/NAME/log` is the
/// pods type, namespace NS, name NAME, subresource `log`.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

impl ResourcePath {
    /// The namespace, or "" for cluster-scoped and all-namespace paths.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// The object's name, or "" for a collection.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// Decodes a query string (`a=1&a=2&b`): every value of each key, in order.
pub fn query_map(q: Option<&str>) -> Query {
    let mut m = Query::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        m.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    m
}

/// The first value of `k`.
pub fn q1<'a>(q: &'a Query, k: &str) -> Option<&'a str> {
    q.get(k).and_then(|v| v.first()).map(String::as_str)
}

/// Whether `k` is set to true (`true`, `True`, `1`).
pub fn qbool(q: &Query, k: &str) -> bool {
    matches!(q1(q, k), Some("true" | "1" | "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_like_url_forms() {
        let q = query_map(Some("a=1&a=2&&b&c=%41+b%2"));
        assert_eq!(q["a"], ["1", "2"]);
        assert_eq!(q["b"], [""]);
        assert_eq!(q1(&q, "c"), Some("A b%2"));
    }
}
