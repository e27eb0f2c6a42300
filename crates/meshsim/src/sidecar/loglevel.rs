//! Envoy logger levels of one sidecar.
//!
//! Envoy's RBAC decision lines are printed by the `rbac` logger at debug
//! level, and the local reply line by the `http` logger, so whether a
//! decision shows in `kubectl logs -c istio-proxy` depends on these levels.
//! They start from what Istio passes to Envoy (`-l warning
//! --component-log-level misc:error`), changed by the pod annotations
//! `sidecar.istio.io/logLevel` (every logger), `sidecar.istio.io/componentLogLevel`
//! (`logger:level,...`) and `sidecar.istio.io/proxyLogLevel` (accepted in
//! either form, as the walk-through uses it), and at run time through Envoy's
//! admin `logging` endpoint (`istioctl proxy-config log`).

use std::fmt;
use std::str::FromStr;

/// An Envoy log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
    Off,
}

impl LogLevel {
    /// Every level, in spdlog's order.
    pub const ALL: [LogLevel; 7] = [
        Self::Trace,
        Self::Debug,
        Self::Info,
        Self::Warning,
        Self::Error,
        Self::Critical,
        Self::Off,
    ];

    /// The name Envoy prints (`warning`, not `warn`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Off => "off",
        }
    }

    /// Whether a message at `level` is printed by a logger at `self`.
    pub fn enables(self, level: LogLevel) -> bool {
        self != Self::Off && level >= self
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name Envoy does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {0:?} (expected trace, debug, info, warning, error, critical or off)")]
pub struct UnknownLevel(pub String);

impl FromStr for LogLevel {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(Self::Trace),
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warning" | "warn" => Ok(Self::Warning),
            "error" => Ok(Self::Error),
            "critical" => Ok(Self::Critical),
            "off" => Ok(Self::Off),
            other => Err(UnknownLevel(other.to_string())),
        }
    }
}

/// Envoy's logger names, in the order its admin `logging` endpoint lists them
/// (the registry order of Envoy 1.33, which is not alphabetical).
pub const ENVOY_LOGGERS: &[&str] = &[
    "admin",
    "alternate_protocols_cache",
    "aws",
    "assert",
    "backtrace",
    "basic_auth",
    "cache_filter",
    "client",
    "config",
    "connection",
    "conn_handler",
    "compression",
    "credential_injector",
    "decompression",
    "dns",
    "dubbo",
    "envoy_bug",
    "ext_authz",
    "ext_proc",
    "rocketmq",
    "file",
    "filter",
    "forward_proxy",
    "geolocation",
    "golang",
    "grpc",
    "happy_eyeballs",
    "hc",
    "health_checker",
    "http",
    "http2",
    "http3",
    "hystrix",
    "init",
    "io",
    "jwt",
    "kafka",
    "key_value_store",
    "lua",
    "main",
    "matcher",
    "misc",
    "mongo",
    "multi_connection",
    "oauth2",
    "quic",
    "quic_stream",
    "pool",
    "rate_limit_quota",
    "rbac",
    "rds",
    "redis",
    "router",
    "runtime",
    "stats",
    "secret",
    "stateful_session",
    "tap",
    "testing",
    "thrift",
    "tracing",
    "upstream",
    "udp",
    "wasm",
    "websocket",
];

/// Why a logger level could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("unknown logger {0:?}")]
    UnknownLogger(String),
    #[error(transparent)]
    Level(#[from] UnknownLevel),
}

/// Every logger's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerLevels {
    /// Parallel to [`ENVOY_LOGGERS`].
    levels: Vec<LogLevel>,
}

impl Default for LoggerLevels {
    /// What Istio starts Envoy with: `-l warning --component-log-level misc:error`.
    fn default() -> Self {
        let mut l = Self::all(LogLevel::Warning);
        l.put("misc", LogLevel::Error);
        l
    }
}

fn logger_index(name: &str) -> Option<usize> {
    ENVOY_LOGGERS.iter().position(|l| *l == name)
}

impl LoggerLevels {
    /// Every logger at `level`.
    pub fn all(level: LogLevel) -> Self {
        Self {
            levels: vec![level; ENVOY_LOGGERS.len()],
        }
    }

    fn put(&mut self, logger: &str, level: LogLevel) {
        if let Some(i) = logger_index(logger) {
            self.levels[i] = level;
        }
    }

    /// The starting levels for a pod with these annotations (name -> value).
    /// Unknown loggers or levels in annotations are ignored, as pilot-agent
    /// passes them to Envoy which then refuses only that entry.
    pub fn from_annotations(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut l = Self::default();
        if let Some(v) = get("sidecar.istio.io/logLevel")
            && let Ok(level) = v.parse()
        {
            l.set_all(level);
            l.put("misc", LogLevel::Error);
        }
        for key in [
            "sidecar.istio.io/componentLogLevel",
            "sidecar.istio.io/proxyLogLevel",
        ] {
            if let Some(v) = get(key) {
                let _ = l.apply_spec(&v);
            }
        }
        l
    }

    /// Applies `logger:level,...` or a bare `level` (every logger). Entries
    /// that fail are skipped; the first error is returned.
    pub fn apply_spec(&mut self, spec: &str) -> Result<(), LevelError> {
        let mut first_err = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let r = match part.split_once(':') {
                Some((logger, level)) => self.set(logger.trim(), level),
                None => part
                    .parse()
                    .map(|lv| self.set_all(lv))
                    .map_err(LevelError::from),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sets one logger.
    pub fn set(&mut self, logger: &str, level: &str) -> Result<(), LevelError> {
        let i =
            logger_index(logger).ok_or_else(|| LevelError::UnknownLogger(logger.to_string()))?;
        self.levels[i] = level.parse()?;
        Ok(())
    }

    /// Sets every logger.
    pub fn set_all(&mut self, level: LogLevel) {
        self.levels.fill(level);
    }

    /// The level of one logger (None when Envoy has no such logger).
    pub fn get(&self, logger: &str) -> Option<LogLevel> {
        logger_index(logger).map(|i| self.levels[i])
    }

    /// Whether `logger` prints messages at `level`.
    pub fn enabled(&self, logger: &str, level: LogLevel) -> bool {
        self.get(logger).is_some_and(|l| l.enables(level))
    }

    /// Every logger and its level, in Envoy's listing order.
    pub fn list(&self) -> Vec<(String, LogLevel)> {
        ENVOY_LOGGERS
            .iter()
            .zip(&self.levels)
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_annotations() {
        let d = LoggerLevels::default();
        assert_eq!(d.get("rbac"), Some(LogLevel::Warning));
        assert_eq!(d.get("misc"), Some(LogLevel::Error));
        assert!(!d.enabled("rbac", LogLevel::Debug));

        let walk = LoggerLevels::from_annotations(|k| match k {
            "sidecar.istio.io/proxyLogLevel" => Some("rbac:debug".into()),
            _ => None,
        });
        assert!(walk.enabled("rbac", LogLevel::Debug));
        assert!(!walk.enabled("http", LogLevel::Debug));

        let all = LoggerLevels::from_annotations(|k| match k {
            "sidecar.istio.io/logLevel" => Some("debug".into()),
            _ => None,
        });
        assert!(all.enabled("http", LogLevel::Debug));
        assert_eq!(all.get("misc"), Some(LogLevel::Error));
    }

    #[test]
    fn spec_errors_name_the_entry() {
        let mut l = LoggerLevels::default();
        assert_eq!(
            l.apply_spec("nosuch:debug,rbac:debug"),
            Err(LevelError::UnknownLogger("nosuch".into()))
        );
        assert_eq!(l.get("rbac"), Some(LogLevel::Debug));
        assert!(l.apply_spec("rbac:loud").is_err());
        assert!(!LogLevel::Off.enables(LogLevel::Critical));
    }
}
