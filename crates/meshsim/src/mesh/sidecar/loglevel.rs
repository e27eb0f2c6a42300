//! The log levels a sidecar's Envoy starts with.
//!
//! Envoy's RBAC decision lines are printed by the `rbac` logger at debug
//! level, and the local reply line by the `http` logger, so whether a
//! decision shows in `kubectl logs -c istio-proxy` depends on these levels.
//! They start from what Istio passes to Envoy (`-l warning
//! --component-log-level misc:error`), changed by the pod annotations
//! `sidecar.istio.io/logLevel` (every logger), `sidecar.istio.io/componentLogLevel`
//! (`logger:level,...`) and `sidecar.istio.io/proxyLogLevel` (accepted in
//! either form, as the walk-through uses it). Envoy itself changes them at
//! run time through its admin `logging` endpoint (`istioctl proxy-config log`).

use serde_json::Value;

/// Envoy's level names, in spdlog's order (Envoy prints `warning`, not `warn`).
const LEVELS: [&str; 7] = [
    "trace", "debug", "info", "warning", "error", "critical", "off",
];

/// A level name as Envoy reads it (any case, `warn` for `warning`).
fn level(s: &str) -> Option<&'static str> {
    let s = s.trim().to_ascii_lowercase();
    let s = if s == "warn" { "warning" } else { s.as_str() };
    LEVELS.iter().find(|l| **l == s).copied()
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

/// `-l` and `--component-log-level` as pilot-agent would pass them for a
/// pod with these annotations. Unknown loggers or levels are left out, as
/// Envoy would refuse only that entry.
pub fn log_args(annotations: &Value) -> (String, String) {
    let get = |k: &str| annotations[k].as_str();
    let base = get("sidecar.istio.io/logLevel").and_then(level);
    let mut levels = vec![base.unwrap_or("warning"); ENVOY_LOGGERS.len()];
    let index = |logger: &str| ENVOY_LOGGERS.iter().position(|l| *l == logger);
    if let Some(i) = index("misc") {
        levels[i] = "error";
    }
    for key in [
        "sidecar.istio.io/componentLogLevel",
        "sidecar.istio.io/proxyLogLevel",
    ] {
        let spec = get(key).unwrap_or("");
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once(':') {
                Some((logger, l)) => {
                    if let (Some(i), Some(l)) = (index(logger.trim()), level(l)) {
                        levels[i] = l;
                    }
                }
                None => {
                    if let Some(l) = level(part) {
                        levels.fill(l);
                    }
                }
            }
        }
    }
    let base = base.unwrap_or("warning");
    let parts: Vec<String> = ENVOY_LOGGERS
        .iter()
        .zip(&levels)
        .filter(|(_, l)| **l != base)
        .map(|(n, l)| format!("{n}:{l}"))
        .collect();
    let comp = if parts.is_empty() {
        "misc:error".to_string()
    } else {
        parts.join(",")
    };
    (base.to_string(), comp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_args_follow_annotations() {
        assert_eq!(
            log_args(&json!({})),
            ("warning".to_string(), "misc:error".to_string())
        );
        let (l, c) = log_args(&json!({"sidecar.istio.io/componentLogLevel": "rbac:debug"}));
        assert_eq!(l, "warning");
        assert!(c.contains("rbac:debug") && c.contains("misc:error"), "{c}");
        // The walk-through's annotation.
        let (_, c) = log_args(&json!({"sidecar.istio.io/proxyLogLevel": "rbac:debug"}));
        assert_eq!(c, "misc:error,rbac:debug");
        // Every logger, misc still at error.
        let (l, c) = log_args(&json!({"sidecar.istio.io/logLevel": "DEBUG"}));
        assert_eq!((l.as_str(), c.as_str()), ("debug", "misc:error"));
        // Entries Envoy would refuse are skipped, the others kept.
        let (_, c) = log_args(
            &json!({"sidecar.istio.io/componentLogLevel": "nosuch:debug,rbac:loud,http:warn,jwt:trace"}),
        );
        assert_eq!(c, "jwt:trace,misc:error");
    }
}
