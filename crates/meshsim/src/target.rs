//! A request, parsed: which resource, namespace, name and subresource its
//! path names, and its query parameters. Its own module because the API
//! server parses them and the kubelet side (exec, logs) reads them, and
//! neither should depend on the other.

use std::collections::HashMap;

use crate::resources::ResourceDef;

/// Query parameters: every value of each key, in order.
pub type Query = HashMap<String, Vec<String>>;

/// A parsed resource path.
#[derive(Debug, Clone)]
pub struct Target {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
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
