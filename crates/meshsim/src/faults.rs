//! Faults on demand for reliability tests. A fault spec is a comma-separated
//! list of `key=value` pairs: match keys `verb`, `resource`, `namespace`,
//! `name`, `container` (absent = any; `container` matches only exec, attach
//! and log requests naming that container) and exactly one action:
//! `status=CODE` (500, 403, 429 with optional `retry-after=SECONDS`, any
//! 4xx/5xx), `hang=DURATION` (answer 504 only after the duration),
//! `cut-exec-after=BYTES` or `cut-log-after=BYTES` (cut the stream abruptly
//! after that much output).
//! Example: `verb=get,resource=pods,namespace=x,status=500`.

use std::time::Duration;

use crate::error::ApiError;

/// What a matching request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    Status { code: u16, retry_after: Option<u64> },
    Hang(Duration),
    CutExecAfter(usize),
    CutLogAfter(usize),
}

/// One `--fault` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Only requests whose `container` parameter names this container.
    pub container: Option<String>,
    pub action: FaultAction,
}

/// Why a fault spec was rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    #[error("fault {spec:?}: {message}")]
    Invalid { spec: String, message: String },
}

/// Parse `30s`, `100ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(Duration::from_millis);
    }
    if let Some(m) = s.strip_suffix('m') {
        return m
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(|x| Duration::from_secs_f64(x * 60.0));
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(Duration::from_secs_f64)
}

impl Fault {
    pub fn parse(spec: &str) -> Result<Self, FaultError> {
        let bad = |m: &str| FaultError::Invalid {
            spec: spec.to_string(),
            message: m.to_string(),
        };
        let (mut verb, mut resource, mut namespace, mut name) = (None, None, None, None);
        let mut container = None;
        let mut status = None;
        let mut retry_after = None;
        let mut action = None;
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(&format!("expected key=value, got {part:?}")))?;
            let v = v.trim().to_string();
            match k.trim() {
                "verb" => verb = Some(v),
                "resource" => resource = Some(v),
                "namespace" => namespace = Some(v),
                "name" => name = Some(v),
                "container" => container = Some(v),
                "status" => {
                    let c: u16 = v.parse().map_err(|_| bad("status must be an HTTP code"))?;
                    if !(400..=599).contains(&c) {
                        return Err(bad("status must be between 400 and 599"));
                    }
                    status = Some(c);
                }
                "retry-after" => {
                    retry_after = Some(
                        v.parse()
                            .map_err(|_| bad("retry-after must be whole seconds"))?,
                    )
                }
                "hang" => {
                    action = Some(FaultAction::Hang(
                        parse_duration(&v)
                            .ok_or_else(|| bad("hang must be a duration like 30s"))?,
                    ))
                }
                "cut-exec-after" => {
                    action = Some(FaultAction::CutExecAfter(
                        v.parse()
                            .map_err(|_| bad("cut-exec-after must be a byte count"))?,
                    ))
                }
                "cut-log-after" => {
                    action = Some(FaultAction::CutLogAfter(
                        v.parse()
                            .map_err(|_| bad("cut-log-after must be a byte count"))?,
                    ))
                }
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        let action = match (status, action) {
            (Some(code), None) => FaultAction::Status { code, retry_after },
            (None, Some(a)) => a,
            (None, None) => {
                return Err(bad(
                    "needs one of status, hang, cut-exec-after, cut-log-after",
                ));
            }
            (Some(_), Some(_)) => return Err(bad("status cannot be combined with another action")),
        };
        Ok(Self {
            verb,
            resource,
            namespace,
            name,
            container,
            action,
        })
    }

    /// Whether this fault applies to a request; `container` is the request's
    /// `container` parameter, when it has one.
    pub fn matches(
        &self,
        verb: &str,
        resource: &str,
        namespace: &str,
        name: &str,
        container: Option<&str>,
    ) -> bool {
        let ok = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        let res_ok = self.resource.as_deref().is_none_or(|r| {
            r == resource || resource.split('/').next() == Some(r) && !resource.contains('/')
        });
        let container_ok = self.container.is_none() || self.container.as_deref() == container;
        ok(&self.verb, verb)
            && res_ok
            && ok(&self.namespace, namespace)
            && ok(&self.name, name)
            && container_ok
    }

    /// The error a `status` fault answers with.
    pub fn error(code: u16, retry_after: Option<u64>) -> ApiError {
        let (reason, message) = match code {
            403 => ("Forbidden", "forbidden: injected by meshsim fault"),
            404 => ("NotFound", "not found: injected by meshsim fault"),
            409 => ("Conflict", "conflict: injected by meshsim fault"),
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            c if c >= 500 => (
                "InternalError",
                "Internal error occurred: injected by meshsim fault",
            ),
            _ => ("BadRequest", "injected by meshsim fault"),
        };
        let mut e = ApiError::new(code, reason, message);
        e.retry_after = retry_after;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let f = Fault::parse("verb=get,resource=pods,namespace=x,status=500").unwrap();
        assert!(f.matches("get", "pods", "x", "p", None));
        assert!(!f.matches("list", "pods", "x", "", None));
        let f = Fault::parse("verb=exec,container=istio-proxy,status=403").unwrap();
        assert!(f.matches("exec", "pods/exec", "x", "p", Some("istio-proxy")));
        assert!(!f.matches("exec", "pods/exec", "x", "p", Some("app")));
        assert!(!f.matches("exec", "pods/exec", "x", "p", None));
        let f = Fault::parse("status=429,retry-after=1").unwrap();
        assert_eq!(
            f.action,
            FaultAction::Status {
                code: 429,
                retry_after: Some(1)
            }
        );
        assert_eq!(
            Fault::parse("hang=30s").unwrap().action,
            FaultAction::Hang(Duration::from_secs(30))
        );
        assert_eq!(
            Fault::parse("cut-exec-after=100").unwrap().action,
            FaultAction::CutExecAfter(100)
        );
        assert!(Fault::parse("status=200").is_err());
        assert!(Fault::parse("verb=get").is_err());
        assert!(Fault::parse("bogus").is_err());
    }
}
