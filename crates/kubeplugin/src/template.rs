//! kubectl's JSONPath templates (`-o jsonpath=...`, `-o custom-columns=...`)
//! over the JSON a plugin prints.
//!
//! kubectl's dialect is a template: literal text, `{EXPR}` where EXPR is a
//! JSONPath with an optional `$` (`.items[*].metadata.name`, `@`, `..name`,
//! filters), `{"quoted text"}` with `\n`/`\t` escapes, and `{range EXPR}...{end}`
//! which renders the body once per result with that result as the root.
//! Several results print separated by one space; strings print bare, other
//! values as JSON; a path that matches nothing prints nothing (kubectl's
//! default `--allow-missing-template-keys`). The expressions themselves are
//! evaluated by the jsonpath-rust crate (RFC 9535, which kubectl's expressions
//! are a subset of in practice), so only the template layer is ours.

use jsonpath_rust::JsonPath;
use serde_json::Value;

/// A template that cannot be parsed or evaluated (a usage error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid jsonpath template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    /// An RFC 9535 query (`$...`).
    Expr(String),
    Range {
        expr: String,
        body: Vec<Node>,
    },
}

/// A parsed kubectl JSONPath template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

/// kubectl's expression (root optional) as an RFC 9535 query.
fn to_query(expr: &str) -> String {
    let e = expr.trim();
    if let Some(rest) = e.strip_prefix('$') {
        format!("${rest}")
    } else if let Some(rest) = e.strip_prefix('@') {
        format!("${rest}")
    } else if e.starts_with('.') || e.starts_with('[') {
        format!("${e}")
    } else {
        format!("$.{e}")
    }
}

fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl Template {
    /// Parses a template; every expression is checked against an empty
    /// document so a syntax error is reported before anything runs.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let fail = |reason: String| TemplateError {
            template: source.to_string(),
            reason,
        };
        // (nodes of the open block, the range expression that opened it)
        let mut stack: Vec<(Vec<Node>, Option<String>)> = vec![(Vec::new(), None)];
        let mut rest = source;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                stack
                    .last_mut()
                    .unwrap()
                    .0
                    .push(Node::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                stack
                    .last_mut()
                    .unwrap()
                    .0
                    .push(Node::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            // The closing brace, skipping braces inside quotes.
            let mut in_quote = false;
            let mut escaped = false;
            let close = after.char_indices().find(|&(_, c)| {
                if escaped {
                    escaped = false;
                    return false;
                }
                match c {
                    '\\' => escaped = true,
                    '"' => in_quote = !in_quote,
                    '}' if !in_quote => return true,
                    _ => {}
                }
                false
            });
            let Some((close, _)) = close else {
                return Err(fail("unclosed {".into()));
            };
            let inner = after[..close].trim();
            rest = &after[close + 1..];
            if let Some(text) = unquote(inner) {
                stack.last_mut().unwrap().0.push(Node::Text(text));
            } else if inner == "end" {
                let (body, expr) = stack.pop().unwrap();
                let Some(expr) = expr else {
                    return Err(fail("{end} without {range}".into()));
                };
                stack
                    .last_mut()
                    .ok_or_else(|| fail("{end} without {range}".into()))?
                    .0
                    .push(Node::Range { expr, body });
            } else if let Some(expr) = inner.strip_prefix("range ") {
                let q = to_query(expr);
                check(&q).map_err(fail)?;
                stack.push((Vec::new(), Some(q)));
            } else if inner.is_empty() {
                return Err(fail("empty {}".into()));
            } else {
                let q = to_query(inner);
                check(&q).map_err(fail)?;
                stack.last_mut().unwrap().0.push(Node::Expr(q));
            }
        }
        if stack.len() != 1 {
            return Err(fail("{range} without {end}".into()));
        }
        Ok(Template {
            source: source.to_string(),
            nodes: stack.pop().unwrap().0,
        })
    }

    /// The template as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template over `value`.
    pub fn render(&self, value: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        render_nodes(&self.nodes, value, &mut out).map_err(|reason| TemplateError {
            template: self.source.clone(),
            reason,
        })?;
        Ok(out)
    }

    /// The values one expression selects (for custom columns).
    pub fn values<'a>(&self, value: &'a Value) -> Result<Vec<&'a Value>, TemplateError> {
        let mut all = Vec::new();
        for n in &self.nodes {
            if let Node::Expr(q) = n {
                all.extend(query(q, value).map_err(|reason| TemplateError {
                    template: self.source.clone(),
                    reason,
                })?);
            }
        }
        Ok(all)
    }
}

fn check(q: &str) -> Result<(), String> {
    query(q, &Value::Null).map(drop)
}

fn query<'a>(q: &str, value: &'a Value) -> Result<Vec<&'a Value>, String> {
    value.query(q).map_err(|e| e.to_string())
}

/// kubectl's printing of one value: strings bare, the rest as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_nodes(nodes: &[Node], value: &Value, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Expr(q) => {
                let vals = query(q, value)?;
                let texts: Vec<String> = vals.into_iter().map(value_text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range { expr, body } => {
                for v in query(expr, value)? {
                    render_nodes(body, v, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The example document of kubectl's JSONPath reference page
    /// (kubernetes.io/docs/reference/kubectl/jsonpath), and its table of results.
    fn doc() -> Value {
        json!({
          "kind": "List",
          "items":[
            {"kind":"None","metadata":{"name":"127.0.0.1","labels":{"kubernetes.io/hostname":"127.0.0.1"}},
             "status":{"capacity":{"cpu":"4"},"addresses":[{"type":"LegacyHostIP","address":"127.0.0.1"}]}},
            {"kind":"None","metadata":{"name":"127.0.0.2"},
             "status":{"capacity":{"cpu":"8"},"addresses":[{"type":"LegacyHostIP","address":"127.0.0.2"},{"type":"another","address":"127.0.0.3"}]}}
          ],
          "users":[
            {"name":"myself","user":{}},
            {"name":"e2e","user":{"username":"admin","password":"secret"}}
          ]
        })
    }

    fn run(t: &str) -> String {
        Template::parse(t).unwrap().render(&doc()).unwrap()
    }

    #[test]
    fn kubectl_reference_examples() {
        assert_eq!(run("kind is {.kind}"), "kind is List");
        assert_eq!(run("{.kind}"), "List");
        assert_eq!(run("{['kind']}"), "List");
        assert_eq!(run("{.items[*].metadata.name}"), "127.0.0.1 127.0.0.2");
        assert_eq!(run("{.users[0].name}"), "myself");
        assert_eq!(run("{..name}"), "127.0.0.1 127.0.0.2 myself e2e");
        assert_eq!(run("{.users[?(@.name==\"e2e\")].user.password}"), "secret");
        assert_eq!(
            run("{range .items[*]}[{.metadata.name}, {.status.capacity}] {end}"),
            "[127.0.0.1, {\"cpu\":\"4\"}] [127.0.0.2, {\"cpu\":\"8\"}] "
        );
        assert_eq!(
            run("{range .items[*]}{.metadata.name}{\"\\t\"}{end}"),
            "127.0.0.1\t127.0.0.2\t"
        );
        assert_eq!(run("{$.kind}"), "List");
        assert_eq!(run("{.nothing}"), "");
        assert_eq!(run("{@.kind}"), "List");
    }

    #[test]
    fn bad_templates_are_errors() {
        for t in ["{.kind", "{range .items[*]}x", "{end}", "{}", "{.a[}"] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }
}
