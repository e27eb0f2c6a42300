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
    for (k, v) in form_urlencoded(q.unwrap_or("")) {
        m.entry(k).or_default().push(v);
    }
    m
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_urlencoded(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The first value of `k`.
pub fn q1<'a>(q: &'a Query, k: &str) -> Option<&'a str> {
    q.get(k).and_then(|v| v.first()).map(String::as_str)
}

/// Whether `k` is set to true (`true`, `True`, `1`).
pub fn qbool(q: &Query, k: &str) -> bool {
    matches!(q1(q, k), Some("true" | "1" | "True"))
}
