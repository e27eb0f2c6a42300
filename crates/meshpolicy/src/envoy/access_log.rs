//! Istio access log lines (TEXT default format and JSON encoding), classified as RBAC
//! denial, CUSTOM (ext_authz) denial, or not an RBAC decision.
//!
//! Access logs are on by default in most meshes and, unlike RBAC debug lines, need no
//! log-level change, so they are the first place a denial shows up: a server-side line
//! whose response code details (HTTP, code 403) or connection termination details (TCP,
//! code 0) read `rbac_access_denied_matched_policy[ID]`. The TEXT layout is Istio's
//! default since 1.9 (see [`ISTIO_TEXT_FORMAT`]); the pre-1.9 layout (no details
//! fields) is accepted too. This module also writes the TEXT layout for meshsim.

use serde::Serialize;
use serde_json::Value;

use super::header::lossy;
use super::local_reply::rbac_denied_policy;
use super::policy_id::PolicyId;

/// Istio's default TEXT access log format (since 1.9), for reference.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// How the access log line was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogEncoding {
    /// Istio's default TEXT format (1.9+).
    #[default]
    Text,
    /// The pre-1.9 TEXT format (no response code details / termination details).
    TextLegacy,
    /// Istio's JSON encoding.
    Json,
}

/// Whether the connection was HTTP or plain TCP (response code 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// HTTP request (a denial is a 403).
    Http,
    /// TCP connection (a denial closes it; response code 0).
    Tcp,
}

/// What the line says about authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AccessVerdict {
    /// Denied by an Envoy RBAC filter (ALLOW/DENY policies).
    RbacDenied {
        /// The matched policy (`none` when no ALLOW policy matched).
        policy: PolicyId,
        /// HTTP (403) or TCP (0).
        transport: Transport,
    },
    /// Denied by a CUSTOM policy's external authorizer (`UAEX` flag).
    CustomDenied {
        /// `ext_authz_denied` or `ext_authz_error`.
        details: String,
    },
    /// Not an RBAC decision (the request was not denied by authorization).
    #[default]
    NotRbac,
}

/// One access log line; text fields are `None` where Envoy printed `-` (or JSON null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AccessLogEntry {
    pub encoding: AccessLogEncoding,
    pub start_time: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub protocol: Option<String>,
    /// 0 for TCP connections.
    pub response_code: Option<u16>,
    /// Envoy's response flags, `-` when none (as Envoy prints them).
    pub response_flags: String,
    pub response_code_details: Option<String>,
    pub connection_termination_details: Option<String>,
    pub upstream_transport_failure_reason: Option<String>,
    pub bytes_received: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub duration: Option<u64>,
    pub upstream_service_time: Option<String>,
    pub x_forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub authority: Option<String>,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_local_address: Option<String>,
    pub downstream_local_address: Option<String>,
    pub downstream_remote_address: Option<String>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
    /// RBAC denial, CUSTOM denial, or not an RBAC decision.
    pub verdict: AccessVerdict,
}

/// Why an access log line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccessLogError {
    Fields(usize),
    UnterminatedQuote,
}

impl AccessLogEntry {
    /// Works out [`AccessLogEntry::verdict`] from code, flags and details.
    pub fn classify(&self) -> AccessVerdict {
        let rbac = [
            &self.response_code_details,
            &self.connection_termination_details,
        ]
        .into_iter()
        .flatten()
        .find_map(|d| rbac_denied_policy(d));
        if let Some(id) = rbac {
            let transport = if self.response_code == Some(0) {
                Transport::Tcp
            } else {
                Transport::Http
            };
            return AccessVerdict::RbacDenied {
                policy: PolicyId::parse(id),
                transport,
            };
        }
        // Envoy's ext_authz filter flags every request it refused (denied, or the
        // authorizer failed) with UAEX, whatever the status code (403, 401, ...).
        let uaex = self.response_flags.split(',').any(|f| f == "UAEX");
        if uaex {
            let details = self
                .response_code_details
                .clone()
                .unwrap_or_else(|| "-".to_owned());
            return AccessVerdict::CustomDenied { details };
        }
        AccessVerdict::NotRbac
    }

    /// The TEXT line (Istio's default format, no trailing newline) for this entry.
    pub fn format_text(&self) -> String {
        fn f(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("-")
        }
        fn n<T: ToString>(v: Option<T>) -> String {
            v.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }
        let flags = if self.response_flags.is_empty() {
            "-"
        } else {
            &self.response_flags
        };
        format!(
            "[{}] \"{} {} {}\" {} {} {} {} \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} {} {}",
            f(&self.start_time),
            f(&self.method),
            f(&self.path),
            f(&self.protocol),
            n(self.response_code),
            flags,
            f(&self.response_code_details),
            f(&self.connection_termination_details),
            f(&self.upstream_transport_failure_reason),
            n(self.bytes_received),
            n(self.bytes_sent),
            n(self.duration),
            f(&self.upstream_service_time),
            f(&self.x_forwarded_for),
            f(&self.user_agent),
            f(&self.request_id),
            f(&self.authority),
            f(&self.upstream_host),
            f(&self.upstream_cluster),
            f(&self.upstream_local_address),
            f(&self.downstream_local_address),
            f(&self.downstream_remote_address),
            f(&self.requested_server_name),
            f(&self.route_name),
        )
    }
}

/// One field of a TEXT line.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    text: &'a [u8],
    quoted: bool,
}

/// Splits the part after `[START_TIME] ` into fields. A quoted field ends at a quote
/// followed by a space or the end of the line, so quotes inside user agents survive.
fn tokenize<'a>(mut s: &'a [u8], out: &mut Vec<Tok<'a>>) -> Result<(), AccessLogError> {
    loop {
        while let [b' ', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return Ok(());
        }
        if let Some(body) = s.strip_prefix(b"\"") {
            let mut from = 0;
            let end = loop {
                let Some(q) = memchr::memchr(b'"', &body[from..]) else {
                    return Err(AccessLogError::UnterminatedQuote);
                };
                let q = from + q;
                if q + 1 == body.len() || body[q + 1] == b' ' {
                    break q;
                }
                from = q + 1;
            };
            out.push(Tok {
                text: &body[..end],
                quoted: true,
            });
            s = &body[end + 1..];
        } else {
            let end = memchr::memchr(b' ', s).unwrap_or(s.len());
            out.push(Tok {
                text: &s[..end],
                quoted: false,
            });
            s = &s[end..];
        }
    }
}

fn opt(t: &[u8]) -> Option<String> {
    if t == b"-" || t.is_empty() {
        None
    } else {
        Some(lossy(t))
    }
}

fn num<T: std::str::FromStr>(t: &[u8]) -> Option<T> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// Parses a TEXT line: `line` starts with `[`; `close` is the index of the first `]`.
pub(crate) fn parse_text(line: &[u8], close: usize) -> Result<AccessLogEntry, AccessLogError> {
    let mut toks = Vec::with_capacity(24);
    tokenize(&line[close + 1..], &mut toks)?;
    let legacy = toks.len() == 20 && toks[3].quoted && toks[4].quoted;
    if toks.len() < 21 && !legacy {
        return Err(AccessLogError::Fields(toks.len()));
    }
    let mut e = AccessLogEntry {
        encoding: if legacy {
            AccessLogEncoding::TextLegacy
        } else {
            AccessLogEncoding::Text
        },
        start_time: opt(&line[1..close]),
        ..AccessLogEntry::default()
    };
    // "METHOD PATH PROTOCOL": the path may hold spaces, method and protocol never do.
    let req = toks[0].text;
    let first = memchr::memchr(b' ', req);
    let last = memchr::memrchr(b' ', req);
    match (first, last) {
        (Some(a), Some(b)) if a < b => {
            e.method = opt(&req[..a]);
            e.path = opt(&req[a + 1..b]);
            e.protocol = opt(&req[b + 1..]);
        }
        _ => e.method = opt(req),
    }
    e.response_code = num(toks[1].text);
    e.response_flags = lossy(toks[2].text);
    let rest = if legacy {
        &toks[4..]
    } else {
        e.response_code_details = opt(toks[3].text);
        e.connection_termination_details = opt(toks[4].text);
        &toks[5..]
    };
    e.upstream_transport_failure_reason = opt(rest[0].text);
    e.bytes_received = num(rest[1].text);
    e.bytes_sent = num(rest[2].text);
    e.duration = num(rest[3].text);
    e.upstream_service_time = opt(rest[4].text);
    e.x_forwarded_for = opt(rest[5].text);
    e.user_agent = opt(rest[6].text);
    e.request_id = opt(rest[7].text);
    e.authority = opt(rest[8].text);
    e.upstream_host = opt(rest[9].text);
    e.upstream_cluster = opt(rest[10].text);
    e.upstream_local_address = opt(rest[11].text);
    e.downstream_local_address = opt(rest[12].text);
    e.downstream_remote_address = opt(rest[13].text);
    e.requested_server_name = opt(rest[14].text);
    e.route_name = opt(rest[15].text);
    e.verdict = e.classify();
    Ok(e)
}

fn json_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s != "-" && !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_num<T: std::str::FromStr>(v: Option<&Value>) -> Option<T> {
    match v? {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `true` when a JSON object looks like an Istio access log entry.
pub(crate) fn is_json_access_log(obj: &serde_json::Map<String, Value>) -> bool {
    obj.contains_key("response_code") || obj.contains_key("start_time")
}

/// Builds an entry from Istio's JSON encoding (keys as in Istio's default JSON format).
pub(crate) fn from_json(obj: &serde_json::Map<String, Value>) -> AccessLogEntry {
    let g = |k: &str| obj.get(k);
    let mut e = AccessLogEntry {
        encoding: AccessLogEncoding::Json,
        start_time: json_str(g("start_time")),
        method: json_str(g("method")),
        path: json_str(g("path")),
        protocol: json_str(g("protocol")),
        response_code: json_num(g("response_code")),
        response_flags: json_str(g("response_flags")).unwrap_or_else(|| "-".to_owned()),
        response_code_details: json_str(g("response_code_details")),
        connection_termination_details: json_str(g("connection_termination_details")),
        upstream_transport_failure_reason: json_str(g("upstream_transport_failure_reason")),
        bytes_received: json_num(g("bytes_received")),
        bytes_sent: json_num(g("bytes_sent")),
        duration: json_num(g("duration")),
        upstream_service_time: json_str(g("upstream_service_time")),
        x_forwarded_for: json_str(g("x_forwarded_for")),
        user_agent: json_str(g("user_agent")),
        request_id: json_str(g("request_id")),
        authority: json_str(g("authority")),
        upstream_host: json_str(g("upstream_host")),
        upstream_cluster: json_str(g("upstream_cluster")),
        upstream_local_address: json_str(g("upstream_local_address")),
        downstream_local_address: json_str(g("downstream_local_address")),
        downstream_remote_address: json_str(g("downstream_remote_address")),
        requested_server_name: json_str(g("requested_server_name")),
        route_name: json_str(g("route_name")),
        verdict: AccessVerdict::NotRbac,
    };
    e.verdict = e.classify();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<AccessLogEntry, AccessLogError> {
        let close = line.find(']').unwrap();
        parse_text(line.as_bytes(), close)
    }

    #[test]
    fn tcp_denial_is_read_from_termination_details() {
        let line = "[2024-01-01T00:00:00.000Z] \"- - -\" 0 - - rbac_access_denied_matched_policy[ns[a]-policy[b]-rule[0]] \"-\" 0 0 1 - \"-\" \"-\" \"-\" \"-\" \"-\" inbound|9000|| - 10.0.0.1:9000 10.0.0.2:5000 - -";
        let e = parse(line).unwrap();
        assert_eq!(e.response_code, Some(0));
        assert_eq!(e.method, None);
        match e.verdict {
            AccessVerdict::RbacDenied { policy, transport } => {
                assert_eq!(transport, Transport::Tcp);
                assert_eq!(policy.name.as_deref(), Some("b"));
            }
            other => panic!("unexpected verdict {other:?}"),
        }
    }

    #[test]
    fn custom_denial_needs_uaex() {
        let base = AccessLogEntry {
            response_code: Some(403),
            response_code_details: Some("ext_authz_denied".into()),
            response_flags: "UAEX".into(),
            ..AccessLogEntry::default()
        };
        assert!(matches!(
            base.classify(),
            AccessVerdict::CustomDenied { .. }
        ));
        let no_flag = AccessLogEntry {
            response_flags: "-".into(),
            ..base
        };
        assert_eq!(no_flag.classify(), AccessVerdict::NotRbac);
    }

    #[test]
    fn format_round_trips() {
        let e = AccessLogEntry {
            start_time: Some("2025-01-01T00:00:00.000Z".into()),
            method: Some("GET".into()),
            path: Some("/a b".into()),
            protocol: Some("HTTP/1.1".into()),
            response_code: Some(403),
            response_flags: "-".into(),
            response_code_details: Some("rbac_access_denied_matched_policy[none]".into()),
            bytes_sent: Some(19),
            user_agent: Some("Mozilla/5.0 (X11; Linux) \"x".into()),
            downstream_remote_address: Some("10.0.0.1:3456".into()),
            ..AccessLogEntry::default()
        };
        let mut e = e;
        e.verdict = e.classify();
        let parsed = parse(&e.format_text()).unwrap();
        assert_eq!(parsed, e);
    }

    #[test]
    fn reads_the_pre_1_9_layout() {
        let line = "[2020-06-10T10:00:00.000Z] \"GET /productpage HTTP/1.1\" 200 - \"-\" \"-\" 0 5183 43 42 \"-\" \"curl/7.64.0\" \"5c1b\" \"productpage:9080\" \"127.0.0.1:9080\" inbound|9080|http|productpage.default.svc.cluster.local 127.0.0.1:36406 10.1.1.5:9080 10.1.1.4:50250 outbound_.9080_._.productpage.default.svc.cluster.local default";
        let e = parse(line).unwrap();
        assert_eq!(e.encoding, AccessLogEncoding::TextLegacy);
        assert_eq!(e.response_code, Some(200));
        assert_eq!(e.response_code_details, None);
        assert_eq!(e.bytes_sent, Some(5183));
        assert_eq!(e.authority.as_deref(), Some("productpage:9080"));
        assert_eq!(
            e.downstream_remote_address.as_deref(),
            Some("10.1.1.4:50250")
        );
        assert_eq!(e.route_name.as_deref(), Some("default"));
        assert_eq!(e.verdict, AccessVerdict::NotRbac);
    }

    #[test]
    fn too_few_fields_is_an_error() {
        assert_eq!(
            parse("[2024-01-01T00:00:00Z] \"GET / HTTP/1.1\" 200"),
            Err(AccessLogError::Fields(2))
        );
        assert_eq!(
            parse("[2024-01-01T00:00:00Z] \"GET / HTTP/1.1"),
            Err(AccessLogError::UnterminatedQuote)
        );
    }
}
