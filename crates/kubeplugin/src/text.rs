//! Untrusted text made safe to print.
//!
//! Pod names, log lines and HTTP bodies come from the cluster and may hold
//! control characters or terminal escape sequences. Both the render layer and
//! the one-line error messages print such text, so the escaping lives here,
//! below both of them.

use std::fmt::Write as _;

/// Escapes control characters (and the escape character) so untrusted text
/// cannot break table lines or send terminal sequences.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
