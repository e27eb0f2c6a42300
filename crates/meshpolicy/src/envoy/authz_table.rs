//! `istioctl x authz check` output: parsing its table into rows and rendering rows
//! back into exactly the table istioctl prints.
//!
//! `kubectl authzcheck` runs istioctl when it is installed and must read its table;
//! when it is not, it analyses the config dump itself ([`super::config_dump`]) and must
//! print the same table, byte for byte, so users and scripts cannot tell the
//! difference. istioctl prints through Go's `tabwriter` (min width 0, padding 3, pad
//! with spaces): each column is as wide as its widest cell plus 3 spaces, and the last
//! column is not padded. Before 1.7.1 the command printed a different, per-listener
//! table; it is recognised and refused with [`AuthzTableError::Unsupported`].

use serde::Serialize;

/// The header istioctl prints (before padding).
pub const HEADER: [&str; 3] = ["ACTION", "AuthorizationPolicy", "RULES"];
/// The name istioctl gives an RBAC filter without policies.
pub const ANONYMOUS_NAME: &str = "_anonymous_match_nothing_";

/// An AuthorizationPolicy action as istioctl prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    /// DENY policies (printed first).
    Deny,
    /// ALLOW policies.
    Allow,
    /// AUDIT policies (Envoy's `LOG` action).
    Log,
    /// CUSTOM policies (ext_authz shadow rules).
    Custom,
}

impl AuthzAction {
    /// The word istioctl prints.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Deny => "DENY",
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Log => "LOG",
            AuthzAction::Custom => "CUSTOM",
        }
    }

    /// Reads the word istioctl prints (or Envoy's RBAC action).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DENY" => AuthzAction::Deny,
            "ALLOW" => AuthzAction::Allow,
            "LOG" => AuthzAction::Log,
            "CUSTOM" => AuthzAction::Custom,
            _ => return None,
        })
    }
}

impl std::fmt::Display for AuthzAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzRow {
    /// DENY, ALLOW, LOG or CUSTOM.
    pub action: AuthzAction,
    /// The cell as printed: `NAME.NAMESPACE` or `_anonymous_match_nothing_`.
    pub policy: String,
    /// The AuthorizationPolicy name (`policy` up to its last dot).
    pub name: String,
    /// The namespace (after the last dot); `None` for `_anonymous_match_nothing_`.
    pub namespace: Option<String>,
    /// Number of distinct rules istioctl counted for this policy.
    pub rules: u32,
}

impl AuthzRow {
    /// A row from the printed policy cell (`NAME.NS` is split at the last dot, since
    /// namespaces have no dots and policy names may).
    pub fn new(action: AuthzAction, policy: &str, rules: u32) -> Self {
        let (name, namespace) = match policy.rsplit_once('.') {
            Some((n, ns)) if policy != ANONYMOUS_NAME && !n.is_empty() && !ns.is_empty() => {
                (n.to_owned(), Some(ns.to_owned()))
            }
            _ => (policy.to_owned(), None),
        };
        AuthzRow {
            action,
            policy: policy.to_owned(),
            name,
            namespace,
            rules,
        }
    }

    /// `true` for `_anonymous_match_nothing_`.
    pub fn is_anonymous(&self) -> bool {
        self.policy == ANONYMOUS_NAME
    }
}

/// Why istioctl output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzTableError {
    /// The pre-1.7.1 per-listener table.
    #[error(
        "line {line_no}: this is the per-listener table of istioctl before 1.7.1 (`{line}`), which is not supported: use istioctl >= 1.7.1 or pass the config dump instead"
    )]
    Unsupported {
        /// 1-based line number.
        line_no: usize,
        /// The line.
        line: String,
    },
    /// No header line.
    #[error(
        "no `ACTION   AuthorizationPolicy   RULES` header: is this `istioctl x authz check` output?"
    )]
    NoHeader,
    /// A line that is not a row.
    #[error("line {line_no}: cannot read `{line}` as an authz check row (ACTION POLICY RULES)")]
    BadLine {
        /// 1-based line number.
        line_no: usize,
        /// The line.
        line: String,
    },
}

fn is_old_format(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("LISTENER[FilterChain]")
        || (t.starts_with("LISTENER") && t.contains("CERTIFICATE"))
        || (t.starts_with("Checked ") && t.contains(" listeners"))
}

/// Reads `istioctl x authz check` output into rows. Blank lines are ignored; any other
/// line that is not the header or a row is an error that quotes it.
pub fn parse_authz_check(text: &str) -> Result<Vec<AuthzRow>, AuthzTableError> {
    let mut rows = Vec::new();
    let mut seen_header = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if is_old_format(line) {
            return Err(AuthzTableError::Unsupported {
                line_no,
                line: line.to_owned(),
            });
        }
        if fields == HEADER {
            if seen_header {
                return Err(AuthzTableError::BadLine {
                    line_no,
                    line: line.to_owned(),
                });
            }
            seen_header = true;
            continue;
        }
        let bad = || AuthzTableError::BadLine {
            line_no,
            line: line.to_owned(),
        };
        if !seen_header {
            return Err(AuthzTableError::NoHeader);
        }
        let [action, policy, rules] = fields[..] else {
            return Err(bad());
        };
        let action = AuthzAction::parse(action).ok_or_else(bad)?;
        let rules = rules.parse().map_err(|_| bad())?;
        rows.push(AuthzRow::new(action, policy, rules));
    }
    if !seen_header {
        return Err(AuthzTableError::NoHeader);
    }
    Ok(rows)
}

/// Replaces control characters so untrusted names cannot break the table or the terminal.
fn escape_cell(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Renders rows as istioctl prints them (rows in the order given; [`super::config_dump`]
/// produces istioctl's order). Control characters in names are escaped.
pub fn render_authz_table(rows: &[AuthzRow]) -> String {
    let cells: Vec<[String; 3]> = std::iter::once(HEADER.map(str::to_owned))
        .chain(rows.iter().map(|r| {
            [
                r.action.as_str().to_owned(),
                escape_cell(&r.policy),
                r.rules.to_string(),
            ]
        }))
        .collect();
    let width = |col: usize| {
        cells
            .iter()
            .map(|c| c[col].chars().count())
            .max()
            .unwrap_or(0)
            + 3
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    for [a, p, r] in &cells {
        for (cell, w) in [(a, w0), (p, w1)] {
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(r);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_splits_names() {
        let text = "ACTION   AuthorizationPolicy         RULES\nALLOW    _anonymous_match_nothing_   1\nDENY     my.policy.ns              2\n";
        let rows = parse_authz_check(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].is_anonymous());
        assert_eq!(rows[0].namespace, None);
        assert_eq!(rows[1].action, AuthzAction::Deny);
        assert_eq!(rows[1].name, "my.policy");
        assert_eq!(rows[1].namespace.as_deref(), Some("ns"));
        assert_eq!(rows[1].rules, 2);
    }

    #[test]
    fn refuses_old_table_and_quotes_bad_lines() {
        let old = "Checked 2/2 listeners with node IP 10.48.2.5.\nLISTENER[FilterChain]     CERTIFICATE   mTLS (MODE)\n";
        assert!(matches!(
            parse_authz_check(old),
            Err(AuthzTableError::Unsupported { line_no: 1, .. })
        ));
        let bad = "ACTION   AuthorizationPolicy   RULES\nALLOW x\n";
        let err = parse_authz_check(bad).unwrap_err();
        assert_eq!(
            err,
            AuthzTableError::BadLine {
                line_no: 2,
                line: "ALLOW x".into()
            }
        );
        assert!(err.to_string().contains("`ALLOW x`"));
        assert_eq!(parse_authz_check(""), Err(AuthzTableError::NoHeader));
        assert!(parse_authz_check("ACTION AuthorizationPolicy RULES\nPERMIT a.b 1").is_err());
    }

    #[test]
    fn renders_header_only_and_round_trips() {
        assert_eq!(
            render_authz_table(&[]),
            "ACTION   AuthorizationPolicy   RULES\n"
        );
        let rows = vec![
            AuthzRow::new(AuthzAction::Deny, "a-long-policy-name.default", 12),
            AuthzRow::new(AuthzAction::Custom, "x.y", 1),
        ];
        let text = render_authz_table(&rows);
        assert_eq!(parse_authz_check(&text).unwrap(), rows);
        assert!(text.contains(&format!("\nCUSTOM   x.y{}1\n", " ".repeat(26))));
    }

    #[test]
    fn escapes_control_characters() {
        let rows = vec![AuthzRow::new(AuthzAction::Allow, "a\u{1b}[31m.b", 1)];
        assert!(!render_authz_table(&rows).contains('\u{1b}'));
    }
}
