//! Line prefixes that log tools add in front of each pod's line.
//!
//! People save logs with `kubectl logs --prefix` (`[pod/NAME/CONTAINER] LINE`),
//! with stern (`POD CONTAINER LINE`, coloured on a terminal) and with
//! `kubectl logs --timestamps` (the kubelet's RFC 3339 time first; split off by
//! [`crate::lines::KubeletClock`]). The prefix names the pod the line came from,
//! which fills `pod` in the output and keeps each pod's lines apart for pairing.

/// What a tool's prefix said, and the line after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixed<'a> {
    /// The pod named by the prefix.
    pub pod: Option<&'a [u8]>,
    /// The container named by the prefix.
    pub container: Option<&'a [u8]>,
    /// The line without the prefix.
    pub rest: &'a [u8],
}

fn is_name(tok: &[u8]) -> bool {
    !tok.is_empty()
        && tok.len() <= 253
        && tok
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && tok[0].is_ascii_alphanumeric()
}

fn starts_like_log(s: &[u8]) -> bool {
    match s.first() {
        Some(b'[') | Some(b'{') => true,
        Some(b'0'..=b'9') => s.len() >= 5 && s[..4].iter().all(u8::is_ascii_digit) && s[4] == b'-',
        _ => false,
    }
}

/// Splits a tool's prefix off `line`, if it has one.
pub fn split(line: &[u8]) -> Prefixed<'_> {
    let none = Prefixed {
        pod: None,
        container: None,
        rest: line,
    };
    // kubectl logs --prefix: `[pod/NAME/CONTAINER] `
    if let Some(inner) = line.strip_prefix(b"[pod/") {
        let Some(close) = memchr::memchr(b']', inner) else {
            return none;
        };
        let path = &inner[..close];
        let rest = inner[close + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&inner[close + 1..]);
        return match memchr::memchr(b'/', path) {
            Some(slash) => Prefixed {
                pod: Some(&path[..slash]),
                container: Some(&path[slash + 1..]),
                rest,
            },
            None => Prefixed {
                pod: Some(path),
                container: None,
                rest,
            },
        };
    }
    // stern: `POD CONTAINER ` then a log line in a known layout.
    let Some(sp1) = memchr::memchr(b' ', line) else {
        return none;
    };
    let pod = &line[..sp1];
    if !is_name(pod) || starts_like_log(pod) {
        return none;
    }
    let after = &line[sp1 + 1..];
    let Some(sp2) = memchr::memchr(b' ', after) else {
        return none;
    };
    let container = &after[..sp2];
    let rest = &after[sp2 + 1..];
    // A multi-line entry's continuation (`'header', 'value'`, `\tthread=N`) is
    // prefixed too.
    let continuation = !rest.is_empty() && meshpolicy::envoy::rbac_log::is_continuation(rest);
    if is_name(container) && (starts_like_log(rest) || continuation) {
        return Prefixed {
            pod: Some(pod),
            container: Some(container),
            rest,
        };
    }
    none
}

/// Removes terminal colour sequences (`ESC [ ... m`), as stern prints on a terminal.
pub fn strip_colours(line: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < line.len() {
        if line[i] == 0x1b && line.get(i + 1) == Some(&b'[') {
            let mut j = i + 2;
            while j < line.len() && (line[j].is_ascii_digit() || line[j] == b';') {
                j += 1;
            }
            if line.get(j) == Some(&b'm') {
                i = j + 1;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_prefix() {
        let p = split(b"[pod/httpbin-7d5b/istio-proxy] 2026-01-01T00:00:00Z x");
        assert_eq!(p.pod, Some(&b"httpbin-7d5b"[..]));
        assert_eq!(p.container, Some(&b"istio-proxy"[..]));
        assert_eq!(p.rest, b"2026-01-01T00:00:00Z x");
    }

    #[test]
    fn stern_prefix_only_before_a_log_line() {
        let p = split(b"httpbin-7d5b istio-proxy 2026-01-01T00:00:00.1Z\tdebug\tenvoy rbac\tx");
        assert_eq!(p.pod, Some(&b"httpbin-7d5b"[..]));
        assert_eq!(p.rest, b"2026-01-01T00:00:00.1Z\tdebug\tenvoy rbac\tx");
        let p = split(b"httpbin istio-proxy [2026-01-01T00:00:00.000Z] \"GET / HTTP/1.1\"");
        assert_eq!(p.pod, Some(&b"httpbin"[..]));
        // Not a prefix: a bare message, an Istio line, words.
        for l in [
            &b"enforced denied, matched policy none"[..],
            b"2026-01-01T00:00:00Z debug envoy rbac enforced denied",
            b"error access connection complete src.addr=1",
        ] {
            assert_eq!(split(l).pod, None, "{}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn colours_are_removed() {
        let mut out = Vec::new();
        strip_colours(
            b"\x1b[31mpod-a\x1b[0m \x1b[32mistio-proxy\x1b[0m x",
            &mut out,
        );
        assert_eq!(out, b"pod-a istio-proxy x");
    }
}
