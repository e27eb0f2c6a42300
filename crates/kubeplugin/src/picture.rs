//! What every picture (`-o dot`, `-o mermaid`, `-o html`) shares.
//!
//! Pictures are drawn from the same data as `-o json`, last, like every other
//! output. Names, HTTP bodies and annotations in that data come from the
//! cluster and may hold markup, quotes or control characters; each picture
//! language quotes text differently, so the quoting for all three lives here
//! once ([`escape_html`], [`dot_string`], [`mermaid_text`]), together with the
//! HTML page every report uses: a header naming the command line, the time,
//! the kubeconfig context and the tool's version, inline CSS, and no
//! reference to anything outside the file (a CI artifact opened years later,
//! offline, looks the same).

use std::fmt::Write as _;

use crate::client::load_kubeconfig;
use crate::flags::KubeFlags;

/// Text as HTML character data or a quoted attribute value: `& < > " '` as
/// entities, and control characters (other than newline and tab) shown as
/// `\u{..}` so they end up visible text, never raw bytes in the page.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A Graphviz double-quoted string (an ID or a label): `"` and `\` escaped,
/// newlines as dot's `\n`, other control characters as visible `\u{..}`.
pub fn dot_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a double-quoted Mermaid label (`A["..."]`, `-->|"..."|`):
/// Mermaid reads `#name;` / `#NN;` entity codes inside quotes, so every
/// character that could end the label or open markup becomes one; control
/// characters become visible `\u{..}`.
pub fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '|' => out.push_str("#124;"),
            '`' => out.push_str("#96;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// What the header of an HTML report says about how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageHeader {
    /// The page title (`npexec connectivity matrix`).
    pub title: String,
    /// The command line, as the user typed it through kubectl (`kubectl npexec ...`).
    pub command: String,
    /// When the report was made (RFC 3339, UTC).
    pub generated: String,
    /// The kubeconfig context used, when known.
    pub context: Option<String>,
    /// `NAME VERSION` of the plugin.
    pub version: String,
}

impl PageHeader {
    /// The header for this process: its arguments, now, the context the
    /// flags select (`--context`, else the kubeconfig's current-context).
    pub fn for_this_run(title: &str, flags: &KubeFlags, plugin: &str, version: &str) -> Self {
        let context = flags.context.clone().or_else(|| {
            load_kubeconfig(flags)
                .ok()
                .and_then(|k| k.current_context)
                .filter(|c| !c.is_empty())
        });
        let args: Vec<String> = std::env::args().skip(1).collect();
        PageHeader {
            title: title.to_string(),
            command: command_line(plugin, &args),
            generated: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string()),
            context,
            version: format!("kubectl-{plugin} {version}"),
        }
    }
}

/// `kubectl PLUGIN ARGS...`, each argument quoted for a POSIX shell when it
/// needs it (so the header can be copied back into a terminal).
pub fn command_line(plugin: &str, args: &[String]) -> String {
    let mut out = format!("kubectl {plugin}");
    for a in args {
        out.push(' ');
        let plain = !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b) || b >= 0x80);
        if plain {
            out.push_str(a);
        } else {
            out.push('\'');
            out.push_str(&a.replace('\'', "'\\''"));
            out.push('\'');
        }
    }
    out
}

/// The CSS every report shares (verdict colours are the plugin's own).
const BASE_CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d232a;background:#fff}\
header{background:#1d3557;color:#fff;padding:12px 20px}\
header h1{font-size:20px;margin:0 0 6px 0}\
header dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0;font-size:13px}\
header dt{opacity:.75}header dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}\
main{padding:16px 20px}\
h2{font-size:17px;margin:20px 0 8px 0;border-bottom:1px solid #ddd;padding-bottom:4px}\
table{border-collapse:collapse;font-size:13px}\
th,td{border:1px solid #ccd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f0f2f5}\
code,pre{font-family:ui-monospace,monospace;font-size:12px}\
pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:6px;margin:4px 0}\
.empty{color:#777;font-style:italic}\
";

/// A whole page: the header, `css` after the shared CSS, then `body`
/// (already HTML). Nothing in it loads from elsewhere.
pub fn html_page(header: &PageHeader, css: &str, body: &str) -> String {
    let e = escape_html;
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{}</title>\n<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<dl>\n\
         <dt>command</dt><dd id=\"command\">{}</dd>\n<dt>generated</dt><dd id=\"generated\">{}</dd>\n\
         <dt>context</dt><dd id=\"context\">{}</dd>\n<dt>version</dt><dd id=\"version\">{}</dd>\n</dl>\n</header>\n<main>\n",
        e(&header.title),
        e(&header.title),
        e(&header.command),
        e(&header.generated),
        e(header.context.as_deref().unwrap_or("(unknown)")),
        e(&header.version),
    );
    out.push_str(body);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_leaves_no_markup_and_no_raw_controls() {
        let s = escape_html("<script>alert('x')</script> & \"q\" \x1b[31m\x07");
        assert_eq!(
            s,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot; \\u{1b}[31m\\u{7}"
        );
    }

    #[test]
    fn dot_strings_cannot_end_early() {
        assert_eq!(dot_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(dot_string("\x1b"), "\"\\\\u{1b}\"");
    }

    #[test]
    fn mermaid_text_has_no_quote_or_markup() {
        let s = mermaid_text("<b>\"x\"|y#z</b>");
        assert!(!s.contains(['"', '<', '>', '|']), "{s}");
        assert_eq!(mermaid_text("\x1b"), "\\u{1b}");
    }

    #[test]
    fn command_line_quotes_what_a_shell_would_split() {
        let args = ["--matrix", "a b", "it's", "-o", "html"].map(String::from);
        assert_eq!(
            command_line("npexec", &args),
            "kubectl npexec --matrix 'a b' 'it'\\''s' -o html"
        );
    }

    #[test]
    fn page_has_header_and_no_external_reference() {
        let h = PageHeader {
            title: "T <x>".into(),
            command: "kubectl npexec '<script>'".into(),
            generated: "2026-01-01T00:00:00Z".into(),
            context: None,
            version: "kubectl-npexec 0.1.0".into(),
        };
        let page = html_page(&h, ".x{}", "<p>body</p>");
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>T &lt;x&gt;</title>"));
        assert!(page.contains("kubectl npexec &#39;&lt;script&gt;&#39;"));
        assert!(page.contains("(unknown)"));
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
    }
}
