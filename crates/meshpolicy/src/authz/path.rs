//! The path RBAC sees after Istio's HTTP connection manager normalization
//! (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`,
//! query stripped): Envoy matches rules against this path, not the raw one.

use serde::Serialize;

/// What Envoy's `path_with_escaped_slashes_action` does with `%2F`/`%5C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EscapedSlashesAction {
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

impl EscapedSlashesAction {
    /// The HCM enum name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepUnchanged => "KEEP_UNCHANGED",
            Self::RejectRequest => "REJECT_REQUEST",
            Self::UnescapeAndRedirect => "UNESCAPE_AND_REDIRECT",
            Self::UnescapeAndForward => "UNESCAPE_AND_FORWARD",
        }
    }
}

/// The HTTP connection manager's path settings (`normalize_path`,
/// `merge_slashes`, `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PathNormalization {
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashesAction,
}

impl PathNormalization {
    /// What istiod sets on every HTTP connection manager when
    /// `meshConfig.pathNormalization` is unset (DEFAULT, same as BASE):
    /// `normalize_path: true`, `merge_slashes` left false,
    /// `path_with_escaped_slashes_action: KEEP_UNCHANGED`
    /// (pilot/pkg/networking/core/listener_builder.go).
    pub const ISTIO_DEFAULT: Self = Self {
        normalize_path: true,
        merge_slashes: false,
        escaped_slashes: EscapedSlashesAction::KeepUnchanged,
    };
}

/// The path as Envoy's RBAC filter matches it, or why it cannot be predicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOutcome {
    /// Normalized, query and fragment removed.
    Path(String),
    /// Envoy answers 400 (or redirects) before any filter runs.
    Rejected(String),
    /// Envoy 1.40 was seen to abort on such paths; no prediction.
    Unpredictable(String),
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `%XX` at `i` of `s`, decoded.
fn pct_at(s: &[u8], i: usize) -> Option<u8> {
    if i + 2 < s.len() && s[i] == b'%' {
        Some(hex_val(s[i + 1])? * 16 + hex_val(s[i + 2])?)
    } else {
        None
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A segment's dot form: literal `.` or `%2e`, and whether all dots were literal.
fn dot_kind(seg: &[u8]) -> Option<(usize, bool, &[u8])> {
    let mut i = 0;
    let mut dots = 0;
    let mut literal = true;
    while dots < 2 && i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if pct_at(seg, i) == Some(b'.') {
            i += 3;
            literal = false;
        } else {
            break;
        }
        dots += 1;
    }
    (dots > 0).then_some((dots, literal, &seg[i..]))
}

/// Envoy's `normalize_path` (RFC 3986 normalization by the URL library
/// Envoy embeds), as measured on Envoy 1.40: `\` is `/`; `.`/`..` segments
/// (also as `%2e`, and literal dots followed by `;params`) are resolved,
/// never above the root; `%XX` of an unreserved character is decoded, other
/// escapes kept as written; `" < > ^ ` { | }` are escaped; empty segments
/// stay (that is `merge_slashes`).
fn canonicalize(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    if !matches!(bytes.first(), Some(b'/') | Some(b'\\')) {
        return Ok(path.to_string());
    }
    // Segments in order; `true` when the segment follows a literal `/`, the
    // only place where Envoy 1.40 reads `.;params` / `..;params` (up to the
    // next `/`, backslashes included) as a dot segment.
    let mut segs: Vec<(&[u8], bool)> = Vec::new();
    let body = &bytes[1..];
    let first_sep_slash = bytes[0] == b'/';
    for (k, s) in body.split(|&b| b == b'/').enumerate() {
        let after_slash = k > 0 || first_sep_slash;
        if after_slash
            && let Some((_, true, rest)) = dot_kind(s)
            && rest.first() == Some(&b';')
        {
            segs.push((s, true));
            continue;
        }
        for (j, sub) in s.split(|&b| b == b'\\').enumerate() {
            segs.push((sub, j == 0 && after_slash));
        }
    }
    let mut out: Vec<String> = Vec::new();
    let last = segs.len().saturating_sub(1);
    for (n, (seg, after_slash)) in segs.iter().enumerate() {
        if let Some((dots, literal, rest)) = dot_kind(seg) {
            let dir = if rest.is_empty() {
                Some(dots)
            } else if rest[0] == b';' && literal && *after_slash {
                if rest.get(1) == Some(&b';') {
                    return Err(format!(
                        "Envoy 1.40 was seen to abort on a dot segment followed by ';;' ({path:?})"
                    ));
                }
                Some(dots)
            } else if rest[0] == b';'
                && dots == 2
                && seg.starts_with(b"%")
                && seg[3..].starts_with(b"%")
            {
                return Err(format!(
                    "Envoy 1.40 was seen to abort on '%2e%2e;' segments ({path:?})"
                ));
            } else {
                None
            };
            if let Some(d) = dir {
                if d == 2 {
                    out.pop();
                }
                if n == last {
                    out.push(String::new());
                }
                continue;
            }
        }
        let mut s = String::new();
        let mut i = 0;
        while i < seg.len() {
            let c = seg[i];
            if c == b'%' {
                match pct_at(seg, i) {
                    Some(d) if is_unreserved(d) => {
                        s.push(d as char);
                        i += 3;
                    }
                    _ => {
                        s.push('%');
                        i += 1;
                    }
                }
                continue;
            }
            if matches!(c, b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}') {
                s.push_str(&format!("%{c:02X}"));
            } else {
                s.push(c as char);
            }
            i += 1;
        }
        out.push(s);
    }
    Ok(format!("/{}", out.join("/")))
}

/// The path Envoy's RBAC filter matches for a request-target sent as `raw`
/// through a connection manager configured with `norm` (query and fragment
/// removed, as RBAC's `url_path` does).
pub fn rbac_path(raw: &str, norm: &PathNormalization) -> PathOutcome {
    if let Some(c) = raw
        .bytes()
        .find(|&b| b <= b' ' || b == 0x7f || b == b'#' || b >= 0x80)
    {
        return PathOutcome::Rejected(format!(
            "Envoy's HTTP/1 codec rejects a request-target with byte 0x{c:02x} (400)"
        ));
    }
    if raw.contains("%00") {
        return PathOutcome::Rejected("Envoy rejects %00 in the path (400)".into());
    }
    let path = raw.split('?').next().unwrap_or("");
    let mut path = path.to_string();
    let has_escaped_slash = {
        let l = path.to_ascii_lowercase();
        l.contains("%2f") || l.contains("%5c")
    };
    if has_escaped_slash {
        match norm.escaped_slashes {
            EscapedSlashesAction::KeepUnchanged => {}
            EscapedSlashesAction::RejectRequest => {
                return PathOutcome::Rejected("escaped slashes are rejected (400)".into());
            }
            EscapedSlashesAction::UnescapeAndRedirect => {
                return PathOutcome::Rejected(
                    "escaped slashes are answered with a redirect to the unescaped path".into(),
                );
            }
            EscapedSlashesAction::UnescapeAndForward => {
                for (from, to) in [("%2F", "/"), ("%2f", "/"), ("%5C", "\\"), ("%5c", "\\")] {
                    path = path.replace(from, to);
                }
            }
        }
    }
    if norm.normalize_path {
        match canonicalize(&path) {
            Ok(p) => path = p,
            Err(why) => return PathOutcome::Unpredictable(why),
        }
    }
    if norm.merge_slashes && path.contains("//") {
        let trailing = path.ends_with('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut p = format!("/{}", segs.join("/"));
        if trailing && p != "/" {
            p.push('/');
        }
        path = p;
    }
    PathOutcome::Path(path)
}
