//! `--port` as Kubernetes names ports: a number (1-65535) or a Service port
//! name (an IANA_SVC_NAME: at most 15 lower-case letters, digits and `-`,
//! with at least one letter, no leading, trailing or doubled `-`), so
//! `--port http` picks each Service's port named `http`.

use std::fmt;
use std::str::FromStr;

/// A Service port asked for by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    Number(u16),
    Name(String),
}

impl PortSpec {
    /// Whether a Service port (`number`, optional `name`) is the one asked for.
    pub fn matches(&self, number: u16, name: Option<&str>) -> bool {
        match self {
            PortSpec::Number(n) => *n == number,
            PortSpec::Name(want) => name == Some(want.as_str()),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Number(n) => write!(f, "{n}"),
            PortSpec::Name(s) => f.write_str(s),
        }
    }
}

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            return match s.parse::<u16>() {
                Ok(n) if n > 0 => Ok(PortSpec::Number(n)),
                _ => Err(format!("port {s} is not in 1-65535")),
            };
        }
        let valid = !s.is_empty()
            && s.len() <= 15
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && s.chars().any(|c| c.is_ascii_lowercase())
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--");
        if valid {
            Ok(PortSpec::Name(s.to_string()))
        } else {
            Err(format!(
                "\"{s}\" is neither a port number (1-65535) nor a port name (at most 15 lower-case letters, digits and '-')"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!("80".parse(), Ok(PortSpec::Number(80)));
        assert_eq!("http-web".parse(), Ok(PortSpec::Name("http-web".into())));
        for bad in ["0", "65536", "HTTP", "-x", "a--b", "sixteen-chars-xx", ""] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
        assert!(PortSpec::Name("http".into()).matches(8080, Some("http")));
        assert!(!PortSpec::Number(80).matches(8080, Some("http")));
    }
}
