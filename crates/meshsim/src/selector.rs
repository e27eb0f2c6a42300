//! Label and field selectors in kubectl's string syntax
//! (`a=b,c!=d,e in (x,y),f notin (z),g,!h`), parsed from the `labelSelector`
//! and `fieldSelector` query parameters, plus matching against objects and
//! against `matchLabels`/`matchExpressions` structures (service and
//! deployment selectors).

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// Why a selector string was rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Split at top-level commas (commas inside parentheses belong to sets).
fn split_top(s: &str) -> Result<Vec<&str>, SelectorError> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(SelectorError(format!("unbalanced ')' in {s:?}")));
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unbalanced '(' in {s:?}")));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, SelectorError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("found '{rest}', expected: '(' in {whole:?}")))?;
    let mut vals = Vec::new();
    for v in inner.split(',') {
        let v = v.trim();
        if !valid_value(v) {
            return Err(SelectorError(format!("invalid label value: {v:?}")));
        }
        vals.push(v.to_string());
    }
    Ok(vals)
}

impl LabelSelector {
    /// Parse kubectl's selector syntax. The empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { requirements });
        }
        for part in split_top(s)? {
            let p = part.trim();
            if p.is_empty() {
                return Err(SelectorError(format!("empty requirement in {s:?}")));
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                let k = k.trim();
                if !valid_key(k) {
                    return Err(SelectorError(format!("invalid label key {k:?}")));
                }
                Requirement::DoesNotExist(k.to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(check_key(k)?, check_value(v)?)
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Eq(check_key(k)?, check_value(v)?)
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Eq(check_key(k)?, check_value(v)?)
            } else if let Some((k, v)) = p.split_once('>') {
                Requirement::Gt(check_key(k)?, parse_int(v)?)
            } else if let Some((k, v)) = p.split_once('<') {
                Requirement::Lt(check_key(k)?, parse_int(v)?)
            } else if let Some(idx) = p.find(" notin") {
                Requirement::NotIn(check_key(&p[..idx])?, parse_set(&p[idx + 6..], s)?)
            } else if let Some(idx) = p.find(" in") {
                Requirement::In(check_key(&p[..idx])?, parse_set(&p[idx + 3..], s)?)
            } else {
                Requirement::Exists(check_key(p)?)
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// Build from a `metav1.LabelSelector` JSON value (`matchLabels`,
    /// `matchExpressions`), or a plain map (service selectors).
    pub fn from_json(v: &Value) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        let Some(obj) = v.as_object() else {
            return Ok(Self { requirements });
        };
        let structured = obj.contains_key("matchLabels") || obj.contains_key("matchExpressions");
        let labels = if structured {
            obj.get("matchLabels")
        } else {
            Some(v)
        };
        if let Some(m) = labels.and_then(Value::as_object) {
            for (k, val) in m {
                requirements.push(Requirement::Eq(
                    k.clone(),
                    val.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = obj.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let vals: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                requirements.push(match op {
                    "In" => Requirement::In(key, vals),
                    "NotIn" => Requirement::NotIn(key, vals),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => {
                        return Err(SelectorError(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                });
            }
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` (a JSON map or null) satisfies every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Requirement::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

fn check_key(k: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    if valid_key(k) {
        Ok(k.to_string())
    } else {
        Err(SelectorError(format!("invalid label key {k:?}")))
    }
}

fn check_value(v: &str) -> Result<String, SelectorError> {
    let v = v.trim();
    if valid_value(v) {
        Ok(v.to_string())
    } else {
        Err(SelectorError(format!("invalid label value: {v:?}")))
    }
}

fn parse_int(v: &str) -> Result<i64, SelectorError> {
    v.trim().parse().map_err(|_| {
        SelectorError(format!(
            "for 'Gt', 'Lt' operators, the value must be an integer: {v:?}"
        ))
    })
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field, value, equal?)
    pub terms: Vec<(String, String, bool)>,
}

/// Fields every resource supports in field selectors.
const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "status.phase",
    "spec.nodeName",
];

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { terms });
        }
        for part in s.split(',') {
            let (f, v, eq) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let f = f.trim();
            if !FIELDS.contains(&f) {
                return Err(SelectorError(format!("field label not supported: {f}")));
            }
            terms.push((f.to_string(), v.trim().to_string(), eq));
        }
        Ok(Self { terms })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(f, v, eq)| {
            let mut cur = obj;
            for seg in f.split('.') {
                cur = cur.get(seg).unwrap_or(&Value::Null);
            }
            let actual = cur.as_str().unwrap_or("");
            (actual == v) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_all_operators() {
        let s = LabelSelector::parse("a=b,c!=d,e in (x, y),f notin (z),g,!h,i==j,n>3,m<2").unwrap();
        assert_eq!(s.requirements.len(), 9);
        let l = json!({"a":"b","c":"q","e":"y","f":"w","g":"","i":"j","n":"4","m":"1"});
        assert!(s.matches(Some(&l)));
        let l2 = json!({"a":"b","c":"q","e":"y","f":"z","g":"","i":"j","n":"4","m":"1"});
        assert!(!s.matches(Some(&l2)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("a=(").is_err());
        assert!(LabelSelector::parse(",").is_err());
        assert!(FieldSelector::parse("spec.foo=1").is_err());
    }

    #[test]
    fn structured_selector() {
        let s = LabelSelector::from_json(&json!({"matchLabels":{"app":"x"},"matchExpressions":[{"key":"t","operator":"NotIn","values":["a"]}]})).unwrap();
        assert!(s.matches(Some(&json!({"app":"x","t":"b"}))));
        assert!(!s.matches(Some(&json!({"app":"x","t":"a"}))));
    }

    #[test]
    fn field_selector_matches() {
        let f = FieldSelector::parse("metadata.name=p,status.phase!=Pending").unwrap();
        assert!(f.matches(&json!({"metadata":{"name":"p"},"status":{"phase":"Running"}})));
        assert!(!f.matches(&json!({"metadata":{"name":"p"},"status":{"phase":"Pending"}})));
    }
}
