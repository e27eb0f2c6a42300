//! Validation of Kubernetes label selectors typed on the command line.
//!
//! An invalid `-l` must be a usage error (exit 2) naming the selector, found
//! before any API call; the API server would otherwise answer 400 with a
//! message that reads like a cluster failure.

/// Why a selector is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector \"{selector}\": {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// Checks `-l` syntax: comma-separated `k`, `!k`, `k=v`, `k==v`, `k!=v`,
/// `k in (a,b)`, `k notin (a,b)`.
pub fn validate_selector(selector: &str) -> Result<(), SelectorError> {
    let fail = |reason: String| SelectorError {
        selector: selector.to_string(),
        reason,
    };
    if selector.trim().is_empty() {
        return Err(fail("empty".into()));
    }
    for term in split_terms(selector).map_err(|r| fail(r.into()))? {
        let term = term.trim();
        if term.is_empty() {
            return Err(fail("empty requirement".into()));
        }
        if let Some(key) = term.strip_prefix('!') {
            check_key(key.trim()).map_err(fail)?;
            continue;
        }
        if let Some((key, values)) = split_set(term) {
            check_key(key).map_err(fail)?;
            let values = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| fail(format!("expected (values) in \"{term}\"")))?;
            for v in values.split(',') {
                check_value(v.trim()).map_err(fail)?;
            }
            continue;
        }
        let (key, value) = if let Some((k, v)) = term.split_once("!=") {
            (k, Some(v))
        } else if let Some((k, v)) = term.split_once("==") {
            (k, Some(v))
        } else if let Some((k, v)) = term.split_once('=') {
            (k, Some(v))
        } else {
            (term, None)
        };
        check_key(key.trim()).map_err(fail)?;
        if let Some(v) = value {
            check_value(v.trim()).map_err(fail)?;
        }
    }
    Ok(())
}

fn split_terms(s: &str) -> Result<Vec<&str>, &'static str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses");
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
        return Err("unbalanced parentheses");
    }
    out.push(&s[start..]);
    Ok(out)
}

fn split_set(term: &str) -> Option<(&str, &str)> {
    for op in [" notin ", " in "] {
        if let Some((k, v)) = term.split_once(op) {
            return Some((k.trim(), v.trim()));
        }
    }
    None
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(format!("invalid key prefix \"{p}\""));
    }
    if name.is_empty() || name.len() > 63 || !is_label_chars(name) {
        return Err(format!("invalid key \"{key}\""));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.len() > 63 || (!value.is_empty() && !is_label_chars(value)) {
        return Err(format!("invalid value \"{value}\""));
    }
    Ok(())
}

fn is_label_chars(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.last().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_selectors() {
        for s in [
            "app=np-test-nginx-1",
            "app==x,tier!=web",
            "env in (prod, dev),!legacy",
            "app.kubernetes.io/name=nginx",
            "app notin (a)",
            "app",
            "app=",
        ] {
            assert!(
                validate_selector(s).is_ok(),
                "{s}: {:?}",
                validate_selector(s)
            );
        }
    }

    #[test]
    fn rejects_invalid_selectors() {
        for s in [
            "", "app=$(x)", "=x", "a in b", "a in (b", "a=b c", "-a=b", ",", "a==b==c",
        ] {
            assert!(validate_selector(s).is_err(), "{s} should be invalid");
        }
    }
}
