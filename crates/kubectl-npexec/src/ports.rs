//! `--port` as Kubernetes names ports: a number (1-65535) or a Service port
//! name (an IANA_SVC_NAME: at most 15 lower-case letters, digits and `-`,
//! with at least one letter, no leading, trailing or doubled `-`), so
//! `--port http` picks each Service's port named `http`.
//!
//! And which probe a port gets ([`ProbeKind`]): the protocol Istio gives the
//! port (meshpolicy's protocol selection, from its `appProtocol` or name)
//! decides what the destination sidecar does with it, so the probe speaks
//! what that listener expects: an HTTP request to HTTP ports (HTTP/2 with
//! prior knowledge to `grpc*`/`http2`), a TLS handshake to `https`/`tls`
//! ports, and a TCP connection that sends one line to every other declared
//! protocol. A port Istio sniffs (no known name) gets HTTP on port 80 and
//! with `--http`, TCP otherwise.

use std::fmt;
use std::str::FromStr;

use meshpolicy::protocol::{PortProtocol, Stack};
use serde::Serialize;

/// What a probe speaks to a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// An HTTP/1.1 request.
    #[default]
    Http,
    /// An HTTP/2 request with prior knowledge (gRPC ports: enough to reach
    /// Envoy's HTTP filters, which answer a denial with a 403).
    Http2,
    /// A TLS handshake (then an HTTP request over it), SNI = the Service host.
    Tls,
    /// A TCP connection that sends one line: the first bytes are what
    /// Envoy's network RBAC filter decides on.
    Tcp,
}

impl ProbeKind {
    /// The probe for a Service port: by the protocol Istio gives it, and for
    /// a sniffed port by its number (80: HTTP) or `--http`.
    pub fn for_port(protocol: PortProtocol, port: u16, force_http: bool) -> ProbeKind {
        match protocol.stack() {
            Stack::Http if protocol.is_http2() => ProbeKind::Http2,
            Stack::Http => ProbeKind::Http,
            Stack::Tcp if protocol.is_tls() => ProbeKind::Tls,
            Stack::Tcp => ProbeKind::Tcp,
            Stack::Sniffed if force_http || port == 80 => ProbeKind::Http,
            Stack::Sniffed => ProbeKind::Tcp,
        }
    }

    /// The URL scheme the probe uses (`gopher`: curl's TCP line probe).
    pub fn scheme(self) -> &'static str {
        match self {
            ProbeKind::Http | ProbeKind::Http2 => "http",
            ProbeKind::Tls => "https",
            ProbeKind::Tcp => "gopher",
        }
    }

    /// The kind a URL asks for (`--url`): by its scheme.
    pub fn of_url(url: &str) -> ProbeKind {
        let scheme = url.split_once("://").map_or("http", |(s, _)| s);
        match scheme.to_ascii_lowercase().as_str() {
            "https" => ProbeKind::Tls,
            "gopher" => ProbeKind::Tcp,
            _ => ProbeKind::Http,
        }
    }

    /// Whether the destination sees HTTP requests (so AuthorizationPolicy's
    /// HTTP fields apply), as opposed to a TCP stream.
    pub fn speaks_http(self) -> bool {
        matches!(self, ProbeKind::Http | ProbeKind::Http2)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Http2 => "http2",
            ProbeKind::Tls => "tls",
            ProbeKind::Tcp => "tcp",
        }
    }
}

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

    #[test]
    fn probe_per_port_protocol() {
        let kind = |name: Option<&str>, app: Option<&str>, port, force| {
            ProbeKind::for_port(PortProtocol::of_service_port(name, app), port, force)
        };
        assert_eq!(kind(Some("http-web"), None, 8080, false), ProbeKind::Http);
        assert_eq!(kind(Some("grpc"), None, 9090, false), ProbeKind::Http2);
        assert_eq!(
            kind(Some("x"), Some("http2"), 9090, false),
            ProbeKind::Http2
        );
        assert_eq!(kind(Some("https"), None, 443, false), ProbeKind::Tls);
        assert_eq!(kind(Some("tls-db"), None, 5432, false), ProbeKind::Tls);
        for name in ["tcp-redis", "redis", "mongo", "mysql"] {
            assert_eq!(kind(Some(name), None, 6379, true), ProbeKind::Tcp, "{name}");
        }
        assert_eq!(kind(None, None, 80, false), ProbeKind::Http);
        assert_eq!(kind(None, None, 8080, false), ProbeKind::Tcp);
        assert_eq!(kind(Some("web"), None, 8080, true), ProbeKind::Http);
        assert_eq!(ProbeKind::of_url("https://x/"), ProbeKind::Tls);
        assert_eq!(ProbeKind::of_url("x:80/"), ProbeKind::Http);
        assert!(ProbeKind::Http2.speaks_http() && !ProbeKind::Tls.speaks_http());
        assert_eq!(ProbeKind::Tcp.scheme(), "gopher");
    }
}
