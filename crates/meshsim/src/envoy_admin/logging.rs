//! Envoy's `/logging` admin endpoint: logger names, levels and the
//! `active loggers:` listing.
//!
//! `istioctl proxy-config log` and `pilot-agent request POST logging?...` both
//! end here, and the walk-through turns RBAC debug lines on this way, so the
//! query syntax (`?NAME=LEVEL`, `?level=LEVEL`, `?paths=a:l,b:l`), the errors
//! and the listing follow Envoy's `LogsHandler` (component loggers, not
//! fine-grain logging, as Istio runs Envoy). The levels themselves live with
//! the sidecar's state (the mesh simulation honours them when it writes log
//! lines); this module only parses, validates and renders.

use crate::mesh::LogLevel;

/// Parses a level as Envoy's admin does: spdlog's names exactly as written,
/// plus `warn` and `err` (the sidecar annotations are read more leniently, see
/// [`LogLevel`]'s `FromStr`).
pub fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warning" | "warn" => LogLevel::Warning,
        "error" | "err" => LogLevel::Error,
        "critical" => LogLevel::Critical,
        "off" => LogLevel::Off,
        _ => return None,
    })
}

/// Why a `/logging` request was refused (Envoy's status messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid number of parameters")]
    ParameterCount,
    #[error("unknown log level")]
    UnknownLevel,
    #[error("unknown logger name")]
    UnknownLogger,
    #[error("empty logger name or empty logger level")]
    EmptyPair,
    #[error("group parameter requires fine-grain logging to be enabled")]
    Group,
}

/// What a valid `/logging` query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelChange {
    /// No (non-empty) parameter: only list.
    None,
    /// `?level=L`: every logger.
    All(LogLevel),
    /// `?NAME=L` or `?paths=a:L,b:L`.
    Named(Vec<(String, LogLevel)>),
}

/// Decodes `%XX` and `+` in a query component.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the query string of a `/logging` request (without `?`); `known`
/// says whether Envoy has a logger of that name.
pub fn parse_query(query: &str, known: impl Fn(&str) -> bool) -> Result<LevelChange, LoggingError> {
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(p), String::new()),
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let Some((key, value)) = params.first() else {
        return Ok(LevelChange::None);
    };
    if params.len() != 1 {
        return Err(LoggingError::ParameterCount);
    }
    let level = |s: &str| parse_level(s).ok_or(LoggingError::UnknownLevel);
    let known = |name: &str| {
        if known(name) {
            Ok(())
        } else {
            Err(LoggingError::UnknownLogger)
        }
    };
    match key.as_str() {
        "level" => Ok(LevelChange::All(level(value)?)),
        "group" => Err(LoggingError::Group),
        "paths" => {
            let mut out = Vec::new();
            for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, l) = pair.split_once(':').unwrap_or((pair, ""));
                let (name, l) = (name.trim(), l.trim());
                if name.is_empty() || l.is_empty() {
                    return Err(LoggingError::EmptyPair);
                }
                let l = level(l)?;
                out.push((name.to_string(), l));
            }
            for (name, _) in &out {
                known(name)?;
            }
            Ok(LevelChange::Named(out))
        }
        name => {
            let l = level(value)?;
            known(name)?;
            Ok(LevelChange::Named(vec![(name.to_string(), l)]))
        }
    }
}

/// The body Envoy answers a `/logging` request with: on error the message and
/// usage, then `active loggers:` with every logger's level.
pub fn render_listing(error: Option<&LoggingError>, loggers: &[(String, String)]) -> String {
    let mut out = String::new();
    if let Some(e) = error {
        out.push_str(&format!("error: {e}\n\n"));
        out.push_str("usage: /logging?<name>=<level> (change single level)\n");
        out.push_str(
            "usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n",
        );
        out.push_str("usage: /logging?level=<level> (change all levels)\n");
        out.push_str("usage: /logging?group=<group_name>:<level> (change group of loggers)\n");
        out.push_str("levels: ");
        for l in LogLevel::ALL {
            out.push_str(l.as_str());
            out.push(' ');
        }
        out.push('\n');
    }
    out.push_str("active loggers:\n");
    for (name, level) in loggers {
        out.push_str(&format!("  {name}: {level}\n"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(n: &str) -> bool {
        matches!(n, "rbac" | "http" | "admin")
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse_query("rbac=debug", known),
            Ok(LevelChange::Named(vec![("rbac".into(), LogLevel::Debug)]))
        );
        assert_eq!(
            parse_query("level=warning", known),
            Ok(LevelChange::All(LogLevel::Warning))
        );
        assert_eq!(parse_query("", known), Ok(LevelChange::None));
        assert_eq!(parse_query("level=", known), Ok(LevelChange::None));
        assert_eq!(
            parse_query("paths=rbac:debug,http:info", known),
            Ok(LevelChange::Named(vec![
                ("rbac".into(), LogLevel::Debug),
                ("http".into(), LogLevel::Info)
            ]))
        );
        assert_eq!(
            parse_query("rbac=loud", known),
            Err(LoggingError::UnknownLevel)
        );
        assert_eq!(
            parse_query("nope=debug", known),
            Err(LoggingError::UnknownLogger)
        );
        assert_eq!(
            parse_query("rbac=debug&http=debug", known),
            Err(LoggingError::ParameterCount)
        );
        assert_eq!(
            parse_query("paths=rbac:", known),
            Err(LoggingError::EmptyPair)
        );
        assert_eq!(parse_query("rbac%3Ddebug", known), Ok(LevelChange::None));
        assert_eq!(
            parse_query("rbac=%64ebug", known),
            Ok(LevelChange::Named(vec![("rbac".into(), LogLevel::Debug)]))
        );
        assert_eq!(
            parse_query("rbac=%e2%9", known),
            Err(LoggingError::UnknownLevel)
        );
    }

    #[test]
    fn listing() {
        let loggers = vec![
            ("admin".to_string(), "warning".to_string()),
            ("rbac".to_string(), "debug".to_string()),
        ];
        let text = render_listing(None, &loggers);
        assert_eq!(text, "active loggers:\n  admin: warning\n  rbac: debug\n\n");
        let err = render_listing(Some(&LoggingError::UnknownLevel), &loggers);
        assert!(err.starts_with("error: unknown log level\n\nusage: /logging?<name>=<level>"));
        assert!(err.ends_with("levels: trace debug info warning error critical off \nactive loggers:\n  admin: warning\n  rbac: debug\n\n"));
    }
}
