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
