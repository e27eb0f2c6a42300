//! ztunnel's L4 authorization lines (Istio ambient mode), read offline.
//!
//! In ambient mode the node's ztunnel, not an Envoy sidecar, enforces
//! AuthorizationPolicies on L4, and it says so in its own log (Rust `tracing`
//! layout: `TIME LEVEL TARGET MESSAGE key=value ...`, TAB- or space-separated, the
//! time sometimes absent when pasted). Three forms are in use:
//! - the access line `connection complete ... error="connection closed due to policy
//!   rejection[: allow policies exist, but none allowed | : explicitly denied by: NS/NAME]"`,
//!   with `src.addr`, `src.workload`, `dst.addr`, `dst.workload` ... fields;
//! - the older `ztunnel::proxy::outbound: RBAC rejected conn=SRC(spiffe://...)->DST`;
//! - the dry-run `dry-run deny policy match policy="NS/NAME"` line.
//!
//! ztunnel writes rejections at error/info level with no log setting, so nothing
//! has to be enabled to see them. This module only reads; it knows no Envoy.

use serde::Serialize;

use super::header::{lossy, normalise_time, trim};

/// The phrase of an access line whose connection a policy closed.
const REJECTION: &[u8] = b"connection closed due to policy rejection";
const NONE_ALLOWED: &[u8] = b"allow policies exist, but none allowed";
const DENIED_BY: &[u8] = b"explicitly denied by: ";
const RBAC_REJECTED: &[u8] = b"RBAC rejected";
const DRY_RUN: &[u8] = b"dry-run deny policy match";

/// Which ztunnel line it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZtunnelKind {
    /// `connection complete ... error="connection closed due to policy rejection..."`.
    Access,
    /// The older `RBAC rejected conn=...`.
    RbacRejected,
    /// `dry-run deny policy match policy="NS/NAME"`: logged only.
    DryRun,
}

/// Why ztunnel rejected the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ZtunnelReason {
    /// ALLOW policies exist for the destination but none matched.
    NoAllowMatched,
    /// A DENY policy matched (`NS/NAME`, as ztunnel prints it).
    DeniedBy {
        /// `NS/NAME`.
        policy: String,
    },
    /// The line does not say (older forms, or a reason this parser does not know).
    Unspecified,
}

/// One ztunnel authorization line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZtunnelDecision {
    /// Which form.
    pub kind: ZtunnelKind,
    /// The time as printed (absent when pasted without it).
    pub time: Option<String>,
    /// The time as RFC 3339 when it carried a zone.
    pub time_rfc3339: Option<String>,
    /// Level as printed (`error`, `INFO`...).
    pub level: Option<String>,
    /// Why (access lines and `RBAC rejected`).
    pub reason: ZtunnelReason,
    /// The policy named by the line (`NS/NAME`): `explicitly denied by:` or the dry-run's `policy=`.
    pub policy: Option<String>,
    /// `src.addr` (or the address before `->`).
    pub src_addr: Option<String>,
    /// `src.workload`.
    pub src_workload: Option<String>,
    /// `src.namespace`.
    pub src_namespace: Option<String>,
    /// `src.identity` (or the SPIFFE id in `conn=`).
    pub src_identity: Option<String>,
    /// `dst.addr` (or the address after `->`).
    pub dst_addr: Option<String>,
    /// `dst.workload`.
    pub dst_workload: Option<String>,
    /// `dst.namespace`.
    pub dst_namespace: Option<String>,
    /// `dst.service`.
    pub dst_service: Option<String>,
}

/// Can this line be one of ztunnel's authorization lines? (cheap)
pub fn may_be_ztunnel(line: &[u8]) -> bool {
    memchr::memmem::find(line, REJECTION).is_some()
        || memchr::memmem::find(line, RBAC_REJECTED).is_some()
        || memchr::memmem::find(line, DRY_RUN).is_some()
}

/// Is this a line of ztunnel's own log that is not an authorization decision: an
/// access line (`src.addr=... dst.addr=...`, text or JSON) of a connection no
/// policy closed, or a line of a `ztunnel::` target? Cheap. It tells a ztunnel log
/// without rejections from an Envoy log without RBAC lines: ztunnel needs no log
/// setting to print its rejections, so "enable debug logs" is no advice for it.
pub fn is_ztunnel_log_line(line: &[u8]) -> bool {
    let has = |n: &[u8]| memchr::memmem::find(line, n).is_some();
    (has(b"src.addr") && has(b"dst.addr")) || has(b"ztunnel::")
}

/// Reads `key=value` or `key="value"` (value up to the next whitespace or closing
/// quote), or in ztunnel's JSON log format (`LOG_FORMAT=json`) `"key":"value"` / `"key":N`.
fn field(line: &[u8], key: &str) -> Option<String> {
    if line.first() == Some(&b'{') {
        return json_field(line, key);
    }
    let needle = format!("{key}=");
    let mut from = 0;
    while let Some(pos) = memchr::memmem::find(&line[from..], needle.as_bytes()) {
        let at = from + pos;
        let before_ok = at == 0 || matches!(line[at - 1], b' ' | b'\t' | b'{' | b',');
        let v = &line[at + needle.len()..];
        from = at + needle.len();
        if !before_ok {
            continue;
        }
        let text = if let Some(q) = v.strip_prefix(b"\"") {
            let end = memchr::memchr(b'"', q).unwrap_or(q.len());
            &q[..end]
        } else {
            let end = v
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .unwrap_or(v.len());
            &v[..end]
        };
        return (!text.is_empty()).then(|| lossy(text));
    }
    None
}

/// A string or number member of a one-line JSON object (`"key":"value"`); the
/// values ztunnel writes (addresses, names, SPIFFE ids) hold no escapes.
fn json_field(line: &[u8], key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let at = memchr::memmem::find(line, needle.as_bytes())?;
    let v = &line[at + needle.len()..];
    let v = v.strip_prefix(b":").or_else(|| {
        let ws = v.iter().position(|&b| b != b' ')?;
        v[ws..].strip_prefix(b":")
    })?;
    let ws = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    let v = &v[ws..];
    let text = if let Some(q) = v.strip_prefix(b"\"") {
        &q[..memchr::memchr(b'"', q)?]
    } else {
        let end = v
            .iter()
            .position(|&b| matches!(b, b',' | b'}' | b' '))
            .unwrap_or(v.len());
        &v[..end]
    };
    (!text.is_empty() && text != b"null").then(|| lossy(text))
}

/// Splits the first whitespace-delimited token: (token, rest after the whitespace).
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(s.len());
    let rest = &s[end..];
    let ws = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    (&s[..end], &rest[ws..])
}

fn is_level(w: &[u8]) -> bool {
    matches!(
        lossy(w).to_ascii_lowercase().as_str(),
        "trace" | "debug" | "info" | "warn" | "warning" | "error"
    )
}

/// The leading `TIME LEVEL` tokens, when the line has them.
fn time_and_level(line: &[u8]) -> (Option<String>, Option<String>) {
    let (first, rest) = split_token(line);
    let is_time =
        first.len() >= 19 && first[..4].iter().all(u8::is_ascii_digit) && first[4] == b'-';
    if is_time {
        let (second, _) = split_token(rest);
        (Some(lossy(first)), is_level(second).then(|| lossy(second)))
    } else {
        (None, is_level(first).then(|| lossy(first)))
    }
}

/// Parses a ztunnel authorization line (any of the three forms); `None` otherwise.
pub fn parse(line: &[u8]) -> Option<ZtunnelDecision> {
    let line = trim(line);
    let (time, level) = if line.first() == Some(&b'{') {
        (json_field(line, "time"), json_field(line, "level"))
    } else {
        time_and_level(line)
    };
    let time_rfc3339 = time
        .as_deref()
        .and_then(|t| normalise_time(t).filter(|_| t.ends_with('Z') || t.contains('+')));
    let mut d = ZtunnelDecision {
        kind: ZtunnelKind::Access,
        time,
        time_rfc3339,
        level,
        reason: ZtunnelReason::Unspecified,
        policy: None,
        src_addr: field(line, "src.addr"),
        src_workload: field(line, "src.workload"),
        src_namespace: field(line, "src.namespace"),
        src_identity: field(line, "src.identity"),
        dst_addr: field(line, "dst.addr"),
        dst_workload: field(line, "dst.workload"),
        dst_namespace: field(line, "dst.namespace"),
        dst_service: field(line, "dst.service"),
    };
    if let Some(at) = memchr::memmem::find(line, REJECTION) {
        let after = &line[at + REJECTION.len()..];
        if memchr::memmem::find(after, NONE_ALLOWED).is_some() {
            d.reason = ZtunnelReason::NoAllowMatched;
        } else if let Some(p) = memchr::memmem::find(after, DENIED_BY) {
            let v = &after[p + DENIED_BY.len()..];
            let end = v
                .iter()
                .position(|&b| b == b'"' || b == b' ' || b == b'\t')
                .unwrap_or(v.len());
            let policy = lossy(&v[..end]);
            d.policy = Some(policy.clone());
            d.reason = ZtunnelReason::DeniedBy { policy };
        }
        return Some(d);
    }
    if let Some(at) = memchr::memmem::find(line, RBAC_REJECTED) {
        d.kind = ZtunnelKind::RbacRejected;
        // conn=SRC_IP(spiffe://...)->DST or conn=SRC->DST
        if let Some(c) = memchr::memmem::find(&line[at..], b"conn=") {
            let v = &line[at + c + 5..];
            let end = v
                .iter()
                .position(|&b| b == b' ' || b == b'\t')
                .unwrap_or(v.len());
            let conn = &v[..end];
            if let Some(arrow) = memchr::memmem::find(conn, b"->") {
                let (src, dst) = (&conn[..arrow], &conn[arrow + 2..]);
                match (memchr::memchr(b'(', src), src.last()) {
                    (Some(open), Some(b')')) => {
                        d.src_addr = Some(lossy(&src[..open]));
                        d.src_identity = Some(lossy(&src[open + 1..src.len() - 1]));
                    }
                    _ => d.src_addr = Some(lossy(src)),
                }
                let dst = match (memchr::memchr(b'(', dst), dst.last()) {
                    (Some(open), Some(b')')) => &dst[..open],
                    _ => dst,
                };
                d.dst_addr = Some(lossy(dst));
            }
        }
        return Some(d);
    }
    if memchr::memmem::find(line, DRY_RUN).is_some() {
        d.kind = ZtunnelKind::DryRun;
        d.policy = field(line, "policy");
        return Some(d);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_quoted_and_bare() {
        let l = b"a src.addr=1.2.3.4:5 src.identity=\"spiffe://x/ns/a/sa/b\" x.src.addr=no";
        assert_eq!(field(l, "src.addr").as_deref(), Some("1.2.3.4:5"));
        assert_eq!(
            field(l, "src.identity").as_deref(),
            Some("spiffe://x/ns/a/sa/b")
        );
        assert_eq!(field(l, "dst.addr"), None);
    }

    #[test]
    fn reads_fields_of_the_json_log_format() {
        let l = br#"{"level":"error","time":"2024-01-24T18:27:07.590232Z","scope":"access","message":"connection complete","src.addr":"10.0.0.1:5","src.workload":"sleep-1","bytes_sent":0,"dst.addr": "10.0.0.2:15008","x":null}"#;
        assert_eq!(field(l, "src.addr").as_deref(), Some("10.0.0.1:5"));
        assert_eq!(field(l, "dst.addr").as_deref(), Some("10.0.0.2:15008"));
        assert_eq!(field(l, "bytes_sent").as_deref(), Some("0"));
        assert_eq!(field(l, "x"), None);
        assert_eq!(field(l, "dst.workload"), None);
        assert!(is_ztunnel_log_line(l));
        assert!(!is_ztunnel_log_line(
            b"2024-01-01T00:00:00Z info envoy main starting"
        ));
    }

    #[test]
    fn other_lines_are_not_ztunnel() {
        assert_eq!(
            parse(b"2024-01-01T00:00:00Z info access connection complete"),
            None
        );
    }
}
