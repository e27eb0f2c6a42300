//! Istio's protocol selection for a Service port: which protocol Istio gives
//! a port, from its `appProtocol` (which wins when set) or else its name
//! (`<protocol>[-<suffix>]`, compared without regard to case). It decides
//! the filters a sidecar puts in front of the port (HTTP connection manager
//! and HTTP RBAC, or `tcp_proxy` and network RBAC), so meshsim builds its
//! sidecars from it and npexec picks the probe (HTTP request, TLS handshake,
//! TCP connect) that the port's listener will actually see.
//!
//! The names are Istio's documented list (Operations, "Protocol Selection"):
//! `http`, `http2`, `https`, `grpc`, `grpc-web`, `tcp`, `tls`, `mongo`,
//! `mysql`, `redis`, `udp`; plus Kubernetes' standard application protocols
//! `kubernetes.io/h2c` (HTTP/2 over clear text), `kubernetes.io/ws` and
//! `kubernetes.io/wss`, which Istio maps to http2, http and https. `mysql`
//! and `redis` are proxied as plain TCP unless istiod enables their filters
//! (off by default), and a sidecar does not decrypt `https`: it is TLS to it.
//! Anything else (or no name) is left to Istio's sniffing on the first bytes.

use serde::Serialize;

/// The protocol Istio selects for a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortProtocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Mysql,
    Redis,
    Udp,
    /// Not declared (or not a protocol Istio knows): sniffed.
    Unknown,
}

/// What a sidecar does with the port's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// HTTP connection manager: HTTP RBAC, local replies (403, 503).
    Http,
    /// `tcp_proxy`: network RBAC, which closes a denied connection.
    Tcp,
    /// Sniffed from the first bytes: HTTP when they are HTTP, else TCP.
    Sniffed,
}

impl PortProtocol {
    /// Parses one protocol word (`http`, `GRPC`, `kubernetes.io/h2c`, ...).
    pub fn parse(word: &str) -> PortProtocol {
        match word.to_ascii_lowercase().as_str() {
            "http" | "kubernetes.io/ws" => PortProtocol::Http,
            "http2" | "kubernetes.io/h2c" => PortProtocol::Http2,
            "grpc" => PortProtocol::Grpc,
            "grpc-web" => PortProtocol::GrpcWeb,
            "https" | "kubernetes.io/wss" => PortProtocol::Https,
            "tls" => PortProtocol::Tls,
            "tcp" => PortProtocol::Tcp,
            "mongo" => PortProtocol::Mongo,
            "mysql" => PortProtocol::Mysql,
            "redis" => PortProtocol::Redis,
            "udp" => PortProtocol::Udp,
            _ => PortProtocol::Unknown,
        }
    }

    /// The protocol of a Service port: `appProtocol` when set, else the
    /// port name's prefix before the first `-` (`grpc-web` is whole).
    pub fn of_service_port(name: Option<&str>, app_protocol: Option<&str>) -> PortProtocol {
        if let Some(p) = app_protocol.filter(|p| !p.is_empty()) {
            return PortProtocol::parse(p);
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return PortProtocol::Unknown;
        };
        let lower = name.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return PortProtocol::GrpcWeb;
        }
        PortProtocol::parse(lower.split('-').next().unwrap_or(""))
    }

    /// The sidecar's filters for the port.
    pub fn stack(self) -> Stack {
        match self {
            PortProtocol::Http
            | PortProtocol::Http2
            | PortProtocol::Grpc
            | PortProtocol::GrpcWeb => Stack::Http,
            PortProtocol::Unknown => Stack::Sniffed,
            _ => Stack::Tcp,
        }
    }

    /// Whether clients speak HTTP/2 to it (gRPC, http2).
    pub fn is_http2(self) -> bool {
        matches!(
            self,
            PortProtocol::Http2 | PortProtocol::Grpc | PortProtocol::GrpcWeb
        )
    }

    /// Whether the application speaks TLS on it (the sidecar passes it through).
    pub fn is_tls(self) -> bool {
        matches!(self, PortProtocol::Https | PortProtocol::Tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_wins_then_the_name_prefix() {
        use PortProtocol::*;
        let of = PortProtocol::of_service_port;
        assert_eq!(of(Some("http-web"), None), Http);
        assert_eq!(of(Some("HTTP"), None), Http);
        assert_eq!(of(Some("http2"), None), Http2);
        assert_eq!(of(Some("grpc"), None), Grpc);
        assert_eq!(of(Some("grpc-web"), None), GrpcWeb);
        assert_eq!(of(Some("grpc-api"), None), Grpc);
        assert_eq!(of(Some("tcp-redis"), None), Tcp);
        assert_eq!(of(Some("redis"), None), Redis);
        assert_eq!(of(Some("https"), None), Https);
        assert_eq!(of(Some("tls-db"), None), Tls);
        assert_eq!(of(Some("database"), Some("mysql")), Mysql);
        assert_eq!(of(Some("http-x"), Some("tcp")), Tcp);
        assert_eq!(of(Some("web"), Some("kubernetes.io/h2c")), Http2);
        assert_eq!(of(Some("httpfoo"), None), Unknown);
        assert_eq!(of(None, None), Unknown);
        assert_eq!(of(Some("web"), Some("")), Unknown);
    }

    #[test]
    fn stacks() {
        use PortProtocol::*;
        for p in [Http, Http2, Grpc, GrpcWeb] {
            assert_eq!(p.stack(), Stack::Http, "{p:?}");
        }
        for p in [Https, Tls, Tcp, Mongo, Mysql, Redis] {
            assert_eq!(p.stack(), Stack::Tcp, "{p:?}");
        }
        assert_eq!(Unknown.stack(), Stack::Sniffed);
        assert!(Grpc.is_http2() && !Http.is_http2());
        assert!(Https.is_tls() && Tls.is_tls() && !Tcp.is_tls());
    }
}
