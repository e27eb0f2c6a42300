//! The HTTP filter manager's `Preparing local reply with details ...` debug lines.
//!
//! When the RBAC filter denies a request, Envoy's filter manager logs the local reply
//! it sends, tagged with the connection and stream ids. The RBAC line itself carries no
//! ids, so this line is what lets `kubectl rbaclog` tie a decision to one request (the
//! details also repeat the matched policy: `rbac_access_denied_matched_policy[ID]`).
//! Ids come as `[Tags: "ConnectionId":"21","StreamId":"..."]` (Envoy >= 1.25) or as
//! the older `[C21][S...]` prefix.

use serde::Serialize;

use super::header::{LogHeader, RawHeader, lossy, trim};
use super::policy_id::PolicyId;

/// The phrase that marks a local reply line.
pub(crate) const MARKER: &[u8] = b"Preparing local reply with details ";
/// The older Envoys' phrase (before the filter manager split preparing from sending).
pub(crate) const LEGACY_MARKER: &[u8] = b"Sending local reply with details ";
/// The details of an RBAC denial from Envoys that did not name the policy.
pub const RBAC_DENIED: &str = "rbac_access_denied";
/// The details prefix of an RBAC denial.
pub const RBAC_DENIED_PREFIX: &str = "rbac_access_denied_matched_policy[";

/// One `Preparing local reply` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalReply {
    /// The line's envelope (time, level, caller, thread, layout).
    #[serde(flatten)]
    pub header: LogHeader,
    /// Envoy's response code details, e.g. `rbac_access_denied_matched_policy[none]`.
    pub details: String,
    /// The matched policy when the details are an RBAC denial.
    pub policy: Option<PolicyId>,
    /// `true` when the details are an RBAC denial (with or without the policy).
    pub rbac_denied: bool,
    /// Downstream connection id.
    pub connection_id: Option<u64>,
    /// HTTP stream id.
    pub stream_id: Option<u64>,
}

/// The policy id inside `rbac_access_denied_matched_policy[ID]`, if `details` is one.
pub fn rbac_denied_policy(details: &str) -> Option<&str> {
    details.strip_prefix(RBAC_DENIED_PREFIX)?.strip_suffix(']')
}

fn digits(s: &[u8]) -> Option<u64> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    std::str::from_utf8(&s[..end]).ok()?.parse().ok()
}

/// Reads `"KEY":"N"` anywhere in `s`.
fn tag(s: &[u8], key: &[u8]) -> Option<u64> {
    let pos = memchr::memmem::find(s, key)?;
    digits(&s[pos + key.len()..])
}

/// Reads the ids in front of the marker: `[Tags: ...]` or `[C21][S42]`.
fn ids(prefix: &[u8]) -> (Option<u64>, Option<u64>) {
    let conn = tag(prefix, b"\"ConnectionId\":\"");
    let stream = tag(prefix, b"\"StreamId\":\"");
    if conn.is_some() || stream.is_some() {
        return (conn, stream);
    }
    let conn = memchr::memmem::find(prefix, b"[C").and_then(|p| digits(&prefix[p + 2..]));
    let stream = memchr::memmem::find(prefix, b"[S").and_then(|p| digits(&prefix[p + 2..]));
    (conn, stream)
}

/// Decodes a local reply message; `None` when the details are missing (truncated line).
pub(crate) fn parse(
    header: RawHeader<'_>,
    msg: &[u8],
    marker_at: usize,
    marker_len: usize,
) -> Option<LocalReply> {
    let details = trim(&msg[marker_at + marker_len..]);
    // Details never contain spaces (Envoy replaces them); anything after is noise.
    let end = details
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(details.len());
    let details = &details[..end];
    if details.is_empty() {
        return None;
    }
    let details = lossy(details);
    let (connection_id, stream_id) = ids(&msg[..marker_at]);
    let policy = rbac_denied_policy(&details).map(PolicyId::parse);
    if details.starts_with(RBAC_DENIED_PREFIX) && policy.is_none() {
        // `rbac_access_denied_matched_policy[...` without its closing bracket.
        return None;
    }
    let rbac_denied = policy.is_some() || details == RBAC_DENIED;
    Some(LocalReply {
        header: header.to_owned_header(),
        details,
        policy,
        rbac_denied,
        connection_id,
        stream_id,
    })
}

/// The source location Istio >= 1.17 prints for the local reply line.
pub const LOCAL_REPLY_CALLER: &str = "external/envoy/source/common/http/filter_manager.cc:1040";

/// One Istio >= 1.17 local reply debug line (no trailing newline), as istio-proxy prints it.
pub fn format_local_reply_line(
    time: &str,
    connection_id: u64,
    stream_id: u64,
    details: &str,
    thread: u32,
) -> String {
    format!(
        "{time}\tdebug\tenvoy http {LOCAL_REPLY_CALLER}\t[Tags: \"ConnectionId\":\"{connection_id}\",\"StreamId\":\"{stream_id}\"] Preparing local reply with details {details}\tthread={thread}"
    )
}

/// `rbac_access_denied_matched_policy[ID]` for a policy id (`none` when `None`).
pub fn format_rbac_denied_details(policy_id: Option<&str>) -> String {
    format!("{RBAC_DENIED_PREFIX}{}]", policy_id.unwrap_or("none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_id_styles() {
        assert_eq!(
            ids(br#"[Tags: "ConnectionId":"21","StreamId":"6947102628293500817"] "#),
            (Some(21), Some(6_947_102_628_293_500_817))
        );
        assert_eq!(ids(b"[C7][S99] "), (Some(7), Some(99)));
        assert_eq!(ids(b""), (None, None));
    }

    #[test]
    fn extracts_policy_from_details() {
        assert_eq!(
            rbac_denied_policy("rbac_access_denied_matched_policy[ns[a]-policy[b]-rule[0]]"),
            Some("ns[a]-policy[b]-rule[0]")
        );
        assert_eq!(rbac_denied_policy("via_upstream"), None);
        assert_eq!(
            rbac_denied_policy("rbac_access_denied_matched_policy[none"),
            None
        );
    }
}
