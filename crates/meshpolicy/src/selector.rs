//! Label selectors (matchLabels / matchExpressions) as Kubernetes evaluates them.
//!
//! NetworkPolicy peers, AuthorizationPolicy workload selectors, `kubectl -l`
//! and the simulated API server all select objects by labels. This module
//! compiles the two forms a selector takes (the structured `LabelSelector` of
//! the API and the kubectl string `a=b,c!=d,e in (x,y),!f`) into one
//! [`Selector`] that is validated once and then matched cheaply, so an invalid
//! operator is a typed error at load time rather than a silent mismatch later.
//! The API server's other query filter, the field selector
//! (`metadata.name=x,status.phase!=Running`), lives here too ([`FieldSelector`]),
//! with the fields each kind supports, so meshsim's API applies the same rules.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

/// Why a selector could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// `matchExpressions[].operator` is not In, NotIn, Exists or DoesNotExist.
    #[error(
        "invalid selector operator {operator:?} for key {key:?} (expected In, NotIn, Exists or DoesNotExist)"
    )]
    InvalidOperator { key: String, operator: String },
    /// In / NotIn need at least one value.
    #[error("selector operator {operator} for key {key:?} needs at least one value")]
    MissingValues { key: String, operator: String },
    /// Exists / DoesNotExist take no values.
    #[error("selector operator {operator} for key {key:?} takes no values")]
    UnexpectedValues { key: String, operator: String },
    /// A label key is empty or has characters Kubernetes does not allow.
    #[error("invalid label key {0:?}")]
    InvalidKey(String),
    /// A label value has characters Kubernetes does not allow.
    #[error("invalid label value {value:?} for key {key:?}")]
    InvalidValue { key: String, value: String },
    /// A kubectl-style selector string could not be parsed.
    #[error("cannot parse selector {input:?}: {reason}")]
    Parse { input: String, reason: String },
    /// A field selector names a field the kind cannot be filtered on
    /// (the API server's wording).
    #[error("field label not supported: {field}")]
    UnsupportedField { kind: String, field: String },
}

/// The operator of one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Operator {
    /// The label exists and its value is one of the values.
    In,
    /// The label is absent, or its value is none of the values.
    NotIn,
    /// The label exists (any value).
    Exists,
    /// The label does not exist.
    DoesNotExist,
}

/// One compiled requirement: `key op values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted, deduplicated; empty for Exists / DoesNotExist.
    pub values: Vec<String>,
}

impl Requirement {
    fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        validate_key(key)?;
        let op_name = format!("{operator:?}");
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::MissingValues {
                    key: key.to_string(),
                    operator: op_name,
                });
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues {
                    key: key.to_string(),
                    operator: op_name,
                });
            }
            _ => {}
        }
        for v in &values {
            validate_value(key, v)?;
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Self {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether the labels `get` looks up satisfy this requirement.
    fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let got = get(&self.key);
        let has = |v: &str| self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok();
        match self.operator {
            Operator::In => got.is_some_and(has),
            Operator::NotIn => !got.is_some_and(has),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.operator, self.values.as_slice()) {
            (Operator::In, [one]) => write!(f, "{}={}", self.key, one),
            (Operator::NotIn, [one]) => write!(f, "{}!={}", self.key, one),
            (Operator::In, vs) => write!(f, "{} in ({})", self.key, vs.join(",")),
            (Operator::NotIn, vs) => write!(f, "{} notin ({})", self.key, vs.join(",")),
            (Operator::Exists, _) => write!(f, "{}", self.key),
            (Operator::DoesNotExist, _) => write!(f, "!{}", self.key),
        }
    }
}

/// A compiled label selector: the AND of its requirements. An empty selector
/// matches everything (as `podSelector: {}` does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Selects label sets that carry every given `key=value`.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement::new(k, Operator::In, vec![v.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::normalized(requirements))
    }

    /// Selects what a JSON label map (a Service's `spec.selector`) names;
    /// non-string values select nothing but the empty string, as before.
    pub fn from_json_labels(
        labels: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, SelectorError> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Self::from_labels(&labels)
    }

    /// Compiles a Kubernetes `LabelSelector` (matchLabels AND matchExpressions).
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if let Some(ml) = &sel.match_labels {
            for (k, v) in ml {
                reqs.push(Requirement::new(k, Operator::In, vec![v.clone()])?);
            }
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidOperator {
                        key: expr.key.clone(),
                        operator: other.to_string(),
                    });
                }
            };
            reqs.push(Requirement::new(
                &expr.key,
                operator,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(Self::normalized(reqs))
    }

    /// Parses a kubectl-style selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x,y)`, `a` (exists), `!a` (does not exist), comma-separated.
    /// The empty string selects everything.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let err = |reason: &str| SelectorError::Parse {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let mut reqs = Vec::new();
        for part in split_top_level(input).map_err(|r| err(&r))? {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            reqs.push(parse_requirement(part).map_err(|e| match e {
                SelectorError::Parse { reason, .. } => err(&reason),
                other => other,
            })?);
        }
        Ok(Self::normalized(reqs))
    }

    fn normalized(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then_with(|| (a.operator as u8).cmp(&(b.operator as u8)))
                .then_with(|| a.values.cmp(&b.values))
        });
        requirements.dedup();
        Self { requirements }
    }

    /// Whether this selector matches every label set.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object's `metadata.labels` (JSON, absent = no labels)
    /// satisfies every requirement; non-string values count as absent.
    pub fn matches_json(&self, labels: Option<&serde_json::Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
        self.requirements.iter().all(|r| r.matches_with(get))
    }
}

impl fmt::Display for Selector {
    /// The kubectl string form (`app=x,tier in (a,b)`); empty when it selects everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => {
                if depth > 0 {
                    return Err("nested parentheses".into());
                }
                depth += 1;
            }
            ')' => {
                if depth == 0 {
                    return Err("unbalanced ')'".into());
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_err(reason: impl Into<String>) -> SelectorError {
    SelectorError::Parse {
        input: String::new(),
        reason: reason.into(),
    }
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(rest) = part.strip_prefix('!') {
        let key = rest.trim();
        if key.contains(['=', '(', ' ']) {
            return Err(parse_err(format!(
                "unexpected operator after '!' in {part:?}"
            )));
        }
        return Requirement::new(key, Operator::DoesNotExist, Vec::new());
    }
    if let Some(pos) = part.find("!=") {
        let key = part[..pos].trim();
        let value = part[pos + 2..].trim();
        return Requirement::new(key, Operator::NotIn, vec![value.to_string()]);
    }
    if let Some(pos) = part.find('=') {
        let key = part[..pos].trim();
        let mut value = &part[pos + 1..];
        if let Some(v) = value.strip_prefix('=') {
            value = v;
        }
        return Requirement::new(key, Operator::In, vec![value.trim().to_string()]);
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let close = part
            .rfind(')')
            .ok_or_else(|| parse_err(format!("missing ')' in {part:?}")))?;
        if !part[close + 1..].trim().is_empty() {
            return Err(parse_err(format!("text after ')' in {part:?}")));
        }
        let mut words = head.split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(parse_err(format!(
                "expected `key in (...)` or `key notin (...)`, got {part:?}"
            )));
        };
        let operator = match op {
            "in" => Operator::In,
            "notin" => Operator::NotIn,
            other => {
                return Err(SelectorError::InvalidOperator {
                    key: key.to_string(),
                    operator: other.to_string(),
                });
            }
        };
        let values: Vec<String> = part[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return Requirement::new(key, operator, values);
    }
    if part.contains(['<', '>']) {
        return Err(parse_err(format!(
            "operators < and > are not supported for labels in {part:?}"
        )));
    }
    if part.split_whitespace().count() != 1 {
        return Err(parse_err(format!("unexpected text in {part:?}")));
    }
    Requirement::new(part, Operator::Exists, Vec::new())
}

/// Kubernetes label keys: optional DNS-subdomain prefix and `/`, then a name
/// of at most 63 characters `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn validate_key(key: &str) -> Result<(), SelectorError> {
    let bad = || SelectorError::InvalidKey(key.to_string());
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !crate::names::is_dns_subdomain(p)
    {
        return Err(bad());
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(bad());
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || (value.len() <= 63 && is_label_name(value)) {
        Ok(())
    } else {
        Err(SelectorError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge_ok = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && edge_ok(b[0])
        && edge_ok(b[b.len() - 1])
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// One term of a field selector: `field=value` (or `==`), or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`): the AND
/// of its terms; empty selects everything. Backslash escapes `,`, `=`, `!` and
/// `\` in values, as in Kubernetes' `fields.ParseSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Fields every kind can be filtered on.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Extra fields per kind, as the API server's field label conversions list
/// them (the ones whose value is the JSON path of the same name).
const KIND_FIELDS: &[(&str, &[&str])] = &[
    (
        "Pod",
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    ),
    (
        "Event",
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "type",
        ],
    ),
    ("Namespace", &["status.phase"]),
    ("Secret", &["type"]),
    ("Node", &["spec.unschedulable"]),
    ("ReplicaSet", &["status.replicas"]),
    ("ReplicationController", &["status.replicas"]),
    ("Job", &["status.successful"]),
];

impl FieldSelector {
    /// Parses a field selector for objects of `kind`; a field the kind does
    /// not support is an error, as the API server answers.
    pub fn parse(input: &str, kind: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in split_unescaped(input, ',') {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, value)) = split_field_term(&part) else {
                return Err(SelectorError::Parse {
                    input: input.to_string(),
                    reason: format!("can't understand '{part}'"),
                });
            };
            let field = unescape(field.trim());
            let supported = COMMON_FIELDS.contains(&field.as_str())
                || KIND_FIELDS
                    .iter()
                    .any(|(k, fs)| *k == kind && fs.contains(&field.as_str()));
            if !supported {
                return Err(SelectorError::UnsupportedField {
                    kind: kind.to_string(),
                    field,
                });
            }
            terms.push(FieldTerm {
                field,
                value: unescape(value),
                equal: op != "!=",
            });
        }
        Ok(Self { terms })
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms, in the order written.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// Whether a JSON object satisfies every term. An absent field reads as
    /// the empty string; booleans and numbers as their text.
    pub fn matches(&self, obj: &serde_json::Value) -> bool {
        use serde_json::Value;
        self.terms.iter().all(|t| {
            let got = t
                .field
                .split('.')
                .try_fold(obj, |cur, seg| cur.get(seg))
                .unwrap_or(&Value::Null);
            let got = match got {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (got == t.value) == t.equal
        })
    }
}

/// Splits at `sep` not preceded by a backslash (escapes are kept).
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in input.chars() {
        if c == sep && !escaped {
            parts.push(String::new());
            continue;
        }
        escaped = c == '\\' && !escaped;
        parts.last_mut().expect("never empty").push(c);
    }
    parts
}

/// `field`, operator, `value` at the first unescaped `!=`, `==` or `=`.
fn split_field_term(term: &str) -> Option<(&str, &'static str, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn string_selector_semantics() {
        let s = Selector::parse("app=web, tier!=db,env in (prod,stage),!canary,team").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev"), ("team", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("canary", "1")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("tier", "db")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        let round = Selector::parse(&s.to_string()).unwrap();
        assert_eq!(round, s);
    }

    #[test]
    fn notin_matches_absent_key() {
        let s = Selector::parse("env notin (prod)").unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn empty_selects_everything() {
        assert!(Selector::parse("").unwrap().matches(&labels(&[("a", "b")])));
        assert!(
            Selector::from_label_selector(&LabelSelector::default())
                .unwrap()
                .is_everything()
        );
    }

    #[test]
    fn invalid_operator_is_typed() {
        let sel = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Contains".into(),
                values: Some(vec!["x".into()]),
            }]),
            ..Default::default()
        };
        assert!(matches!(
            Selector::from_label_selector(&sel),
            Err(SelectorError::InvalidOperator { .. })
        ));
        assert!(matches!(
            Selector::parse("a within (x)"),
            Err(SelectorError::InvalidOperator { .. })
        ));
    }

    #[test]
    fn malformed_strings_rejected() {
        for bad in [
            "a in (x", "a in x)", ",", "a b", "a>1", "=x", "a in ()", "-a=b",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_labels_and_service_selectors() {
        let s = Selector::parse("app=web,tier notin (db)").unwrap();
        let l = serde_json::json!({"app": "web", "tier": "fe"});
        assert!(s.matches_json(Some(&l)));
        assert!(!s.matches_json(None));
        let svc = serde_json::json!({"app": "web"});
        let s = Selector::from_json_labels(svc.as_object().unwrap()).unwrap();
        assert!(s.matches_json(Some(&l)));
        assert!(!s.matches_json(Some(&serde_json::json!({"app": "db"}))));
    }

    #[test]
    fn field_selectors_as_the_api_server_reads_them() {
        use serde_json::json;
        let f = FieldSelector::parse("metadata.name=p,status.phase!=Pending", "Pod").unwrap();
        assert!(f.matches(&json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}})));
        assert!(!f.matches(&json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}})));
        // Absent reads as "", booleans as text; empty terms are skipped.
        let f = FieldSelector::parse("spec.nodeName=,spec.hostNetwork==true,", "Pod").unwrap();
        assert!(f.matches(&json!({"spec": {"hostNetwork": true}})));
        assert!(!f.matches(&json!({"spec": {"hostNetwork": false}})));
        // Escapes.
        let f = FieldSelector::parse(r"metadata.name=a\,b\=c", "ConfigMap").unwrap();
        assert_eq!(f.terms()[0].value, "a,b=c");
        assert!(FieldSelector::parse("", "Pod").unwrap().is_everything());
        // Unsupported fields and garbage.
        assert_eq!(
            FieldSelector::parse("status.phase=Running", "Deployment")
                .unwrap_err()
                .to_string(),
            "field label not supported: status.phase"
        );
        assert!(matches!(
            FieldSelector::parse("metadata.name", "Pod"),
            Err(SelectorError::Parse { .. })
        ));
    }
}
