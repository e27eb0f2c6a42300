//! Envoy RBAC filter debug lines (`enforced denied, matched policy ID`) as typed decisions.
//!
//! These lines are the only place Envoy says which policy decided a request, and they
//! come in every envelope [`super::header`] knows. The messages themselves are few and
//! stable: `enforced allowed|denied, matched policy ID`, `shadow allowed|denied,
//! matched policy ID` (ID `none` when nothing matched), `no engine, allowed by default`,
//! and the pre-2020 bare `enforced denied` / `shadow denied`. This module also writes
//! the Istio >= 1.17 line, so meshsim emits exactly what is parsed here.

use serde::Serialize;

use super::header::{LogHeader, RawHeader, lossy, trim};
use super::policy_id::PolicyId;

/// Which RBAC engine made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// The enforcing rules (`rules`): the request really was allowed or denied.
    Enforced,
    /// The shadow rules (`shadow_rules`: Istio dry-run and CUSTOM): logged only.
    Shadow,
    /// No engine was configured for the direction (`no engine, allowed by default`).
    None,
}

/// What the engine decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed by a rule.
    Allowed,
    /// Denied.
    Denied,
    /// Allowed because no engine applied.
    AllowedByDefault,
}

/// Which Envoy RBAC filter logged the line, from the caller's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// `envoy.filters.http.rbac` (HTTP requests).
    Http,
    /// `envoy.filters.network.rbac` (TCP connections).
    Network,
}

/// One RBAC decision read from a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RbacDecision {
    /// The line's envelope (time, level, caller, thread, layout).
    #[serde(flatten)]
    pub header: LogHeader,
    /// Enforced, shadow (dry-run / CUSTOM), or none.
    pub engine: Engine,
    /// Allowed, denied, allowed by default.
    pub decision: Decision,
    /// The matched policy (`none` included); absent for `no engine` and legacy bare lines.
    pub policy: Option<PolicyId>,
    /// HTTP or network filter, when the caller's path says so.
    pub filter: Option<FilterKind>,
}

/// Why an RBAC message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageError {
    /// Not an RBAC decision message at all (e.g. `checking request: ...`).
    NotDecision,
    /// Starts like a decision but is cut short or garbled.
    Truncated,
}

/// Decodes the message part of an RBAC line: (engine, decision, policy id bytes).
pub(crate) fn parse_message(msg: &[u8]) -> Result<(Engine, Decision, Option<&[u8]>), MessageError> {
    let msg = trim(msg);
    if msg.starts_with(b"no engine") {
        return if msg == b"no engine, allowed by default" {
            Ok((Engine::None, Decision::AllowedByDefault, None))
        } else {
            Err(MessageError::Truncated)
        };
    }
    let (engine, rest) = if let Some(r) = msg.strip_prefix(b"enforced") {
        (Engine::Enforced, r)
    } else if let Some(r) = msg.strip_prefix(b"shadow") {
        (Engine::Shadow, r)
    } else {
        return Err(MessageError::NotDecision);
    };
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err(if rest.is_empty() {
            MessageError::Truncated
        } else {
            MessageError::NotDecision
        });
    };
    let (decision, rest) = if let Some(r) = rest.strip_prefix(b"allowed") {
        (Decision::Allowed, r)
    } else if let Some(r) = rest.strip_prefix(b"denied") {
        (Decision::Denied, r)
    } else {
        return Err(MessageError::Truncated);
    };
    if rest.is_empty() {
        // Legacy Envoy (before mid-2020) printed no policy.
        return Ok((engine, decision, None));
    }
    let Some(id) = rest.strip_prefix(b", matched policy ") else {
        return Err(MessageError::Truncated);
    };
    let id = trim(id);
    if id.is_empty() {
        return Err(MessageError::Truncated);
    }
    Ok((engine, decision, Some(id)))
}

pub(crate) fn filter_kind(caller: Option<&[u8]>) -> Option<FilterKind> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: constructing a finder costs more than a search of one line.
    static HTTP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"filters/http/rbac"));
    static NETWORK: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new(b"filters/network/rbac"));
    let caller = caller?;
    if HTTP.find(caller).is_some() {
        Some(FilterKind::Http)
    } else if NETWORK.find(caller).is_some() {
        Some(FilterKind::Network)
    } else {
        None
    }
}

pub(crate) fn build(
    header: RawHeader<'_>,
    engine: Engine,
    decision: Decision,
    id: Option<&[u8]>,
) -> RbacDecision {
    RbacDecision {
        filter: filter_kind(header.caller),
        header: header.to_owned_header(),
        engine,
        decision,
        policy: id.map(|id| PolicyId::parse(&lossy(id))),
    }
}

/// An RBAC logger line that is not a decision but belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// `checking request: ...` (the HTTP filter, before each decision).
    CheckingRequest,
    /// `checking connection: ...` (the network filter, before each decision).
    CheckingConnection,
    /// `allowed by default or by policy` (the HTTP filter, after an allowed request).
    AllowedByDefaultOrPolicy,
}

/// What a `checking request:` entry says about the request (Envoy 1.40 writes it over
/// several lines: one header per line, then the metadata, then `thread=N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckedRequest {
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub request_id: Option<String>,
    /// `sourceIP:` (the downstream address and port).
    pub source_ip: Option<String>,
}

impl CheckedRequest {
    /// Takes what one piece of the entry (its first line or a continuation) says.
    pub fn absorb(&mut self, text: &[u8]) {
        fn quoted(text: &[u8], key: &[u8]) -> Option<String> {
            let at = memchr::memmem::find(text, key)?;
            let v = &text[at + key.len()..];
            let end = memchr::memchr(b'\'', v)?;
            Some(lossy(&v[..end]))
        }
        if self.method.is_none() {
            self.method = quoted(text, b"':method', '");
        }
        if self.path.is_none() {
            self.path = quoted(text, b"':path', '");
        }
        if self.authority.is_none() {
            self.authority = quoted(text, b"':authority', '");
        }
        if self.request_id.is_none() {
            self.request_id = quoted(text, b"'x-request-id', '");
        }
        // `sourceIP:` since Envoy 1.13; `remoteAddress:` before (Istio <= 1.4).
        if self.source_ip.is_none()
            && let Some((at, key)) = [&b"sourceIP: "[..], b"remoteAddress: "]
                .into_iter()
                .find_map(|k| memchr::memmem::find(text, k).map(|at| (at, k)))
        {
            let v = &text[at + key.len()..];
            let end = v
                .iter()
                .position(|&b| b == b',' || b == b' ' || b == b'\t')
                .unwrap_or(v.len());
            if end > 0 {
                self.source_ip = Some(lossy(&v[..end]));
            }
        }
    }
}

/// One RBAC logger line that is not a decision (see [`NoteKind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RbacNote {
    #[serde(flatten)]
    pub header: LogHeader,
    pub kind: NoteKind,
    /// HTTP or network filter, when the caller's path (or the kind) says so.
    pub filter: Option<FilterKind>,
    /// For `checking request`: what the first line said (more may follow on the next lines).
    pub request: Option<CheckedRequest>,
    /// `false` when the entry continues on the next lines (it did not end with `thread=N`
    /// in a layout that prints one, or ended with an open `headers:` list).
    pub complete: bool,
}

/// Whether a continuation line of a multi-line `checking request:` entry ends it
/// (Istio's layout ends the entry with `thread=N`).
pub fn ends_entry(line: &[u8]) -> bool {
    let t = trim(line);
    match memchr::memmem::rfind(t, b"thread=") {
        Some(at) => {
            (at == 0 || matches!(t[at - 1], b' ' | b'\t'))
                && t.len() > at + 7
                && t[at + 7..].iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

/// A continuation line of a multi-line entry: a header (`'name', 'value'`), the
/// metadata lines, or the closing `thread=N`; never the start of another log line.
pub fn is_continuation(line: &[u8]) -> bool {
    match line.first() {
        None => true,
        Some(b'\'') | Some(b',') | Some(b' ') | Some(b'\t') | Some(b'}') => true,
        Some(_) => {
            line.starts_with(b"thread=")
                || line.starts_with(b"filter_metadata")
                || line.starts_with(b"typed_filter_metadata")
        }
    }
}

pub(crate) fn parse_note(header: RawHeader<'_>, msg: &[u8], thread_seen: bool) -> Option<RbacNote> {
    let msg = trim(msg);
    let (kind, filter) = if msg.starts_with(b"checking request:") {
        (NoteKind::CheckingRequest, Some(FilterKind::Http))
    } else if msg.starts_with(b"checking connection:") {
        (NoteKind::CheckingConnection, Some(FilterKind::Network))
    } else if msg == b"allowed by default or by policy" {
        (NoteKind::AllowedByDefaultOrPolicy, Some(FilterKind::Http))
    } else {
        return None;
    };
    let request = (kind == NoteKind::CheckingRequest).then(|| {
        let mut r = CheckedRequest::default();
        r.absorb(msg);
        r
    });
    // Istio's layout ends every entry with `thread=N`; without it the entry goes on.
    let complete = match header.layout {
        super::header::Layout::IstioTabs => thread_seen,
        _ => kind == NoteKind::AllowedByDefaultOrPolicy || !msg.ends_with(b"'"),
    };
    Some(RbacNote {
        filter: filter_kind(header.caller).or(filter),
        header: header.to_owned_header(),
        kind,
        request,
        complete,
    })
}

/// The source location Istio >= 1.17 prints for the HTTP RBAC filter's decision line.
pub const HTTP_RBAC_CALLER: &str =
    "external/envoy/source/extensions/filters/http/rbac/rbac_filter.cc:224";
/// The source location Istio >= 1.17 prints for the network RBAC filter's decision line.
pub const NETWORK_RBAC_CALLER: &str =
    "external/envoy/source/extensions/filters/network/rbac/rbac_filter.cc:168";

/// The message Envoy prints for a decision (`enforced denied, matched policy ID`).
///
/// `policy_id` is ignored for [`Engine::None`]; `None` prints Envoy's `none`.
pub fn format_rbac_message(engine: Engine, decision: Decision, policy_id: Option<&str>) -> String {
    let engine = match engine {
        Engine::None => return "no engine, allowed by default".to_owned(),
        Engine::Enforced => "enforced",
        Engine::Shadow => "shadow",
    };
    let decision = match decision {
        Decision::Denied => "denied",
        Decision::Allowed | Decision::AllowedByDefault => "allowed",
    };
    format!(
        "{engine} {decision}, matched policy {}",
        policy_id.unwrap_or("none")
    )
}

/// One Istio >= 1.17 RBAC debug line (no trailing newline), as istio-proxy prints it:
/// `TIME\tdebug\tenvoy rbac CALLER\tMESSAGE\tthread=N`.
pub fn format_rbac_debug_line(
    time: &str,
    filter: FilterKind,
    engine: Engine,
    decision: Decision,
    policy_id: Option<&str>,
    thread: u32,
) -> String {
    let caller = match filter {
        FilterKind::Http => HTTP_RBAC_CALLER,
        FilterKind::Network => NETWORK_RBAC_CALLER,
    };
    format!(
        "{time}\tdebug\tenvoy rbac {caller}\t{}\tthread={thread}",
        format_rbac_message(engine, decision, policy_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_downstream_under_both_names() {
        let mut new = CheckedRequest::default();
        new.absorb(b"checking request: requestedServerName: , sourceIP: 10.0.0.1:5, directRemoteIP: 10.0.0.2:6, remoteIP: 10.0.0.3:7,localAddress: 10.0.0.9:80, ssl: none");
        assert_eq!(new.source_ip.as_deref(), Some("10.0.0.1:5"));
        let mut old = CheckedRequest::default();
        old.absorb(
            b"checking request: remoteAddress: 10.0.0.4:8, localAddress: 10.0.0.9:80, ssl: none",
        );
        assert_eq!(old.source_ip.as_deref(), Some("10.0.0.4:8"));
    }

    #[test]
    fn decodes_messages() {
        assert_eq!(
            parse_message(b"enforced denied, matched policy none"),
            Ok((Engine::Enforced, Decision::Denied, Some(&b"none"[..])))
        );
        assert_eq!(
            parse_message(b"shadow allowed, matched policy ns[a]-policy[b]-rule[0]"),
            Ok((
                Engine::Shadow,
                Decision::Allowed,
                Some(&b"ns[a]-policy[b]-rule[0]"[..])
            ))
        );
        assert_eq!(
            parse_message(b"shadow denied"),
            Ok((Engine::Shadow, Decision::Denied, None))
        );
        assert_eq!(
            parse_message(b"enforced denied, matched pol"),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            parse_message(b"enforced denied, matched policy "),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            parse_message(b"checking request: requestedServerName: "),
            Err(MessageError::NotDecision)
        );
        assert_eq!(
            parse_message(b"no engine, allowed"),
            Err(MessageError::Truncated)
        );
    }

    #[test]
    fn formats_messages() {
        assert_eq!(
            format_rbac_message(Engine::Enforced, Decision::Denied, None),
            "enforced denied, matched policy none"
        );
        assert_eq!(
            format_rbac_message(Engine::None, Decision::AllowedByDefault, Some("x")),
            "no engine, allowed by default"
        );
    }
}
