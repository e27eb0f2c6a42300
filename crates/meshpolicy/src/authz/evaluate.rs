//! Evaluation of a request against the policies that apply to a workload, as
//! Istio documents it: CUSTOM (reported as delegated), then DENY, then ALLOW,
//! where "ALLOW policies apply and none matched" denies with policy id `none`;
//! AUDIT never decides; dry-run policies are evaluated as shadow; a workload
//! without a sidecar enforces nothing. Conditions the model cannot know (JWT
//! claims, SNI, unknown `when` keys) give an explicit "cannot evaluate"
//! outcome rather than a guess.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::compile::{CompiledAuthz, parse_ip_or_cidr};
use super::path::{PathNormalization, PathOutcome, rbac_path};
use super::schema::{
    Action, Condition, Operation, Rule, Source, envoy_policy_id, ext_authz_rule_name,
};
use crate::netpol::PolicyRef;

/// What the request looks like to the destination sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzRequest {
    /// Peer identity from mTLS, without `spiffe://` (`cluster.local/ns/NS/sa/SA`).
    /// None when the source has no sidecar (plain text, no identity).
    pub source_principal: Option<String>,
    /// Namespace of the peer; Istio derives it from the principal, so it is
    /// only known with mTLS. When None it is derived from `source_principal`.
    pub source_namespace: Option<String>,
    /// The direct peer address (`source.ip`, `ipBlocks`).
    pub source_ip: Option<IpAddr>,
    /// The original client address (`remote.ip`, `remoteIpBlocks`); defaults to `source_ip`.
    pub remote_ip: Option<IpAddr>,
    /// JWT principal `ISS/SUB` (`requestPrincipals`) when known. None means
    /// unknown: rules that depend on the JWT are reported as needing it.
    pub request_principal: Option<String>,
    /// The destination workload.
    pub destination_namespace: String,
    pub destination_pod: String,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: u16,
    /// HTTP attributes; None for plain TCP traffic.
    pub http: Option<HttpAttributes>,
}

/// HTTP request attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAttributes {
    pub method: String,
    /// The request-target as the client sent it (path and query); the
    /// engine normalizes it as the sidecar's Envoy does ([`rbac_path`]).
    pub path: String,
    /// `:authority` as sent (with a port if the client wrote one).
    pub host: String,
    /// Header names are compared case-insensitively; a header sent several
    /// times is given once, its values joined by `,` (as Envoy's matcher sees it).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl AuthzRequest {
    /// `namespaces` / `source.namespace`: Envoy matches Istio's regex on the
    /// peer's URI SAN; without a principal, an explicit `source_namespace`
    /// is compared as a plain namespace.
    fn namespace_field(&self, values: &[String], not_values: &[String]) -> M {
        match (&self.source_principal, &self.source_namespace) {
            (Some(p), _) => field(values, not_values, Some(&spiffe_uri(p)), namespace_match),
            (None, Some(ns)) => field(values, not_values, Some(ns), istio_match),
            (None, None) => field(values, not_values, None, istio_match),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.http.as_ref().and_then(|h| {
            h.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    }
}

/// The final decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Allow,
    Deny,
    /// A policy that could decide depends on something the model cannot know.
    CannotEvaluate,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
            Self::CannotEvaluate => "CANNOT_EVALUATE",
        })
    }
}

/// A CUSTOM policy whose rule matched: the request goes to the ext-authz provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    pub provider: String,
    pub policy_id: String,
}

/// The outcome a dry-run policy set would have had, as Envoy's shadow engine logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowResult {
    pub action: Action,
    /// `shadow allowed` or `shadow denied`.
    pub outcome: String,
    /// Matched policy id, or `none`.
    pub policy_id: String,
}

/// A rule that could not be evaluated and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unevaluable {
    pub policy_id: String,
    pub reason: String,
}

/// A policy that applies to the destination workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedPolicy {
    pub policy: PolicyRef,
    pub action: Action,
    pub dry_run: bool,
}

/// The AuthorizationPolicy verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzVerdict {
    pub decision: Decision,
    /// False when the destination has no sidecar: nothing is enforced.
    pub enforced: bool,
    /// Envoy id of the deciding rule (`ns[NS]-policy[NAME]-rule[N]`), `none`
    /// when ALLOW policies exist and none matched, None when nothing decided.
    pub policy_id: Option<String>,
    /// One-line explanation.
    pub reason: String,
    pub applicable: Vec<AppliedPolicy>,
    /// CUSTOM policies that matched: the provider decides first.
    pub delegated: Vec<Delegation>,
    /// AUDIT rules that matched (logged, not decisive).
    pub audited: Vec<String>,
    /// Dry-run results per action.
    pub shadow: Vec<ShadowResult>,
    pub cannot_evaluate: Vec<Unevaluable>,
    /// Notes such as policies skipped because they use targetRef.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Unknown(String),
}

fn all(items: impl IntoIterator<Item = M>) -> M {
    let mut unknown = None;
    for m in items {
        match m {
            M::No => return M::No,
            M::Unknown(r) => {
                unknown.get_or_insert(r);
            }
            M::Yes => {}
        }
    }
    unknown.map_or(M::Yes, M::Unknown)
}

fn any(items: impl IntoIterator<Item = M>) -> M {
    let mut unknown = None;
    for m in items {
        match m {
            M::Yes => return M::Yes,
            M::Unknown(r) => {
                unknown.get_or_insert(r);
            }
            M::No => {}
        }
    }
    unknown.map_or(M::No, M::Unknown)
}

fn b(x: bool) -> M {
    if x { M::Yes } else { M::No }
}

/// Istio string matching as Envoy applies the generated `StringMatcher`:
/// `*` any non-empty (regex `.+`), `abc*` prefix, `*abc` suffix, else exact.
pub fn istio_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

/// Istio's header matcher (`request.headers[...]`, `:method`): `*` is a
/// presence match (an empty value is present), else as [`istio_match`].
fn header_value_match(pattern: &str, value: &str) -> bool {
    pattern == "*" || istio_match(pattern, value)
}

/// Istio's host matcher on `:authority`: presence for `*`, else
/// exact/prefix/suffix ignoring ASCII case.
fn host_match(pattern: &str, value: &str) -> bool {
    pattern == "*" || istio_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// A field with positive and negative value lists; `get` yields the attribute.
fn field(
    values: &[String],
    not_values: &[String],
    attr: Option<&str>,
    matcher: impl Fn(&str, &str) -> bool,
) -> M {
    let pos = if values.is_empty() {
        M::Yes
    } else {
        b(attr.is_some_and(|a| values.iter().any(|p| matcher(p, a))))
    };
    let neg = if not_values.is_empty() {
        M::Yes
    } else {
        b(!attr.is_some_and(|a| not_values.iter().any(|p| matcher(p, a))))
    };
    all([pos, neg])
}

fn ip_field(values: &[String], not_values: &[String], ip: Option<IpAddr>) -> M {
    let hit = |list: &[String]| {
        ip.is_some_and(|ip| {
            list.iter()
                .filter_map(|v| parse_ip_or_cidr(v))
                .any(|n| n.contains(&ip))
        })
    };
    let pos = if values.is_empty() {
        M::Yes
    } else {
        b(hit(values))
    };
    let neg = if not_values.is_empty() {
        M::Yes
    } else {
        b(!hit(not_values))
    };
    all([pos, neg])
}

/// The peer's URI SAN as Envoy's `authenticated` matcher sees it.
fn spiffe_uri(principal: &str) -> String {
    if principal.starts_with("spiffe://") {
        principal.to_string()
    } else {
        format!("spiffe://{principal}")
    }
}

/// `principals` / `source.principal`: Istio's `StringMatcherWithPrefix(v,
/// "spiffe://")` on the URI SAN (`*` is `.+`, `*x` is `spiffe://.*x`).
fn principal_match(pattern: &str, uri: &str) -> bool {
    if pattern == "*" {
        return !uri.is_empty();
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return uri.starts_with("spiffe://") && uri["spiffe://".len()..].ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return uri.starts_with(&format!("spiffe://{prefix}"));
    }
    uri == format!("spiffe://{pattern}")
}

/// Full match of a glob whose only metacharacter is `*` (any characters,
/// `/` included), as Istio's `.*` regexes over quoted literals behave.
fn glob_full(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// `namespaces` / `source.namespace`: Istio's regex `.*/ns/NS/.*` (a `*` in
/// NS is `.*`) over the URI SAN.
fn namespace_match(pattern: &str, uri: &str) -> bool {
    glob_full(&format!("*/ns/{pattern}/*"), uri)
}

/// `serviceAccounts`: Istio's regex `spiffe://.+/ns/NS/(.+/|)sa/SA(/.+)?`,
/// NS defaulting to the policy's namespace.
fn service_account_match(policy_ns: &str, value: &str, uri: &str) -> bool {
    let (ns, sa) = value.split_once('/').unwrap_or((policy_ns, value));
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    let needle = format!("/ns/{ns}/");
    let sa_part = format!("sa/{sa}");
    let tail_ok = |t: &str| t.is_empty() || (t.starts_with('/') && t.len() > 1);
    let mut from = 0;
    while let Some(at) = rest[from..].find(&needle) {
        let i = from + at;
        from = i + 1;
        if i == 0 {
            continue;
        }
        let after = &rest[i + needle.len()..];
        if let Some(t) = after.strip_prefix(&sa_part)
            && tail_ok(t)
        {
            return true;
        }
        // `(.+/)` then `sa/SA`: some `/` at index j >= 1 followed by `sa/SA`.
        for (j, _) in after.match_indices('/') {
            if j >= 1
                && let Some(t) = after[j + 1..].strip_prefix(&sa_part)
                && tail_ok(t)
            {
                return true;
            }
        }
    }
    false
}

/// `trustDomains`: `*` any SPIFFE id, `td` exactly that trust domain, one
/// `*` inside for a wildcard within the trust-domain segment.
fn trust_domain_match(pattern: &str, uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    if pattern == "*" {
        return true;
    }
    let Some((td, _)) = rest.split_once('/') else {
        return false;
    };
    match pattern.split_once('*') {
        None => td == pattern,
        Some((a, b)) => td.len() >= a.len() + b.len() && td.starts_with(a) && td.ends_with(b),
    }
}

/// Trust domain and aliases (Istio's `trustdomain.Bundle`): policies naming
/// `cluster.local` or any listed domain cover all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainBundle {
    /// The mesh trust domain first, then its aliases.
    pub domains: Vec<String>,
}

impl TrustDomainBundle {
    pub fn new(trust_domain: &str, aliases: &[String]) -> Self {
        let mut domains = vec![trust_domain.to_string()];
        domains.extend(aliases.iter().cloned());
        Self { domains }
    }

    /// Istio's `ReplaceTrustDomainAliases` for principals (`TD/ns/NS/sa/SA`).
    pub fn replace_aliases(&self, principals: &[String]) -> Vec<String> {
        fn prefix_m(a: &str, p: &str) -> bool {
            p.strip_suffix('*').is_some_and(|x| a.starts_with(x))
        }
        fn suffix_m(a: &str, p: &str) -> bool {
            p.strip_prefix('*').is_some_and(|x| a.ends_with(x))
        }
        let mut out = Vec::new();
        for p in principals {
            let parts: Vec<&str> = p.split('/').collect();
            if parts.len() != 5 || parts[0] == "*" {
                out.push(p.clone());
                continue;
            }
            let td = parts[0];
            let listed = self.domains.iter().any(|s| {
                td == s
                    || s == "*"
                    || prefix_m(td, s)
                    || prefix_m(s, td)
                    || suffix_m(td, s)
                    || suffix_m(s, td)
            });
            if !(listed || td == crate::workload::DEFAULT_TRUST_DOMAIN) {
                out.push(p.clone());
                continue;
            }
            let mut these: Vec<String> = Vec::new();
            for d in &self.domains {
                let np = if suffix_m(d, td) {
                    p.clone()
                } else {
                    format!("{d}/{}", parts[1..].join("/"))
                };
                if !these.contains(&np) {
                    these.push(np);
                }
            }
            out.extend(these);
        }
        out
    }

    /// Istio's `ExpandTrustDomainAliases` for `trustDomains` values.
    pub fn expand_aliases(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            if self.domains.contains(v) {
                out.extend(self.domains.iter().cloned());
            } else {
                out.push(v.clone());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|v| seen.insert(v.clone()));
        out
    }
}

/// Mesh settings evaluation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    pub trust_domains: TrustDomainBundle,
    /// How the sidecar's HTTP connection manager rewrites the path before RBAC.
    pub path_normalization: PathNormalization,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            trust_domains: TrustDomainBundle::new(crate::workload::DEFAULT_TRUST_DOMAIN, &[]),
            path_normalization: PathNormalization::ISTIO_DEFAULT,
        }
    }
}

/// What one rule is evaluated with.
struct Ctx<'a> {
    action: Action,
    policy_ns: &'a str,
    opts: &'a EvalOptions,
    /// The path RBAC sees (normalized, without query), for HTTP requests.
    rbac_path: Option<&'a str>,
}

const NEEDS_JWT: &str = "needs the request's JWT (request principal and claims are not known)";

fn source_matches(s: &Source, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    let uri = req.source_principal.as_deref().map(spiffe_uri);
    let uri = uri.as_deref();
    let has_jwt_fields = !(s.request_principals.is_empty() && s.not_request_principals.is_empty());
    let request_principals = match (&req.http, has_jwt_fields, ctx.action) {
        (_, false, _) => M::Yes,
        // Istio's TCP filter chain: ALLOW rules with HTTP-only fields are
        // skipped (never match); DENY/AUDIT/CUSTOM rules drop those fields.
        (None, true, Action::Allow) => M::No,
        (None, true, _) => M::Yes,
        (Some(_), true, _) => match req.request_principal.as_deref() {
            Some(rp) => field(
                &s.request_principals,
                &s.not_request_principals,
                Some(rp),
                request_principal_match,
            ),
            None => M::Unknown(NEEDS_JWT.into()),
        },
    };
    let bundle = &ctx.opts.trust_domains;
    let principals = bundle.replace_aliases(&s.principals);
    let not_principals = bundle.replace_aliases(&s.not_principals);
    let tds = bundle.expand_aliases(&s.trust_domains);
    let not_tds = bundle.expand_aliases(&s.not_trust_domains);
    all([
        field(&principals, &not_principals, uri, principal_match),
        request_principals,
        field(&s.service_accounts, &s.not_service_accounts, uri, |p, u| {
            service_account_match(ctx.policy_ns, p, u)
        }),
        field(&tds, &not_tds, uri, trust_domain_match),
        req.namespace_field(&s.namespaces, &s.not_namespaces),
        ip_field(
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            req.remote_ip.or(req.source_ip),
        ),
        ip_field(&s.ip_blocks, &s.not_ip_blocks, req.source_ip),
    ])
}

/// `requestPrincipals` against a known `ISS/SUB` (Istio splits at the last `/`).
fn request_principal_match(pattern: &str, value: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.rfind('/') {
            Some(i) => (s[..i].to_string(), s[i + 1..].to_string()),
            None => (s.to_string(), String::new()),
        }
    };
    let (iss, sub) = split(value);
    let found = pattern.contains('/');
    let (pi, ps) = split(pattern);
    let any = |v: &str| !v.is_empty();
    if pattern == "*" {
        return any(&iss) && any(&sub);
    }
    if let Some(rest) = pattern.strip_prefix('*') {
        return if found {
            (pi == "*" && any(&iss) || pi != "*" && iss.ends_with(&pi[1..])) && sub == ps
        } else {
            any(&iss) && sub.ends_with(rest)
        };
    }
    if let Some(rest) = pattern.strip_suffix('*') {
        return if found {
            iss == pi
                && (ps == "*" && any(&sub)
                    || ps != "*" && sub.starts_with(ps.trim_end_matches('*')))
        } else {
            iss.starts_with(rest) && any(&sub)
        };
    }
    iss == pi && sub == ps
}

fn operation_matches(o: &Operation, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    let port = req.destination_port.to_string();
    let ports = field(&o.ports, &o.not_ports, Some(&port), |p, v| p == v);
    match &req.http {
        Some(h) => all([
            ports,
            field(&o.hosts, &o.not_hosts, Some(&h.host), host_match),
            field(
                &o.methods,
                &o.not_methods,
                Some(&h.method),
                header_value_match,
            ),
            field(&o.paths, &o.not_paths, ctx.rbac_path, path_pattern_match),
        ]),
        None if o.has_http_fields() => match ctx.action {
            // Istio's TCP filter chain: ALLOW rules with HTTP fields are
            // dropped (never match); DENY/AUDIT/CUSTOM rules drop only the HTTP fields.
            Action::Allow => M::No,
            Action::Deny | Action::Audit | Action::Custom => ports,
        },
        None => ports,
    }
}

/// A `paths` value against the path RBAC sees: Istio path templates
/// (`{*}`, `{**}`) as Envoy's uri_template, else [`istio_match`].
pub fn path_pattern_match(pattern: &str, path: &str) -> bool {
    if pattern.contains("{*}") || pattern.contains("{**}") {
        let t = pattern.replace("{**}", "**").replace("{*}", "*");
        return uri_template_match(&t, path);
    }
    istio_match(pattern, path)
}

/// Characters allowed in a uri_template literal (RFC 3986 pchar without `*=`).
fn template_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@".contains(c)
}

/// Characters Envoy 1.40's `*` / `**` operators match in a path (measured:
/// the literal set plus `*` and `=`; not `[`, `]`).
fn template_glob_char(c: char) -> bool {
    template_literal_char(c) || c == '*' || c == '='
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    One,
    Any,
}

/// Envoy's uri_template matcher (`/a/*/b`, `/**`, `/x/**.json`): `*` is one
/// non-empty segment, `**` any text including `/`, literals exact; the query
/// and fragment are ignored. A template Envoy would refuse never matches.
pub fn uri_template_match(template: &str, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let Some(body) = template.strip_prefix('/') else {
        return false;
    };
    let mut toks = vec![Tok::Lit("/".into())];
    let segs: Vec<&str> = body.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        if i > 0 {
            toks.push(Tok::Lit("/".into()));
        }
        let (op, rest) = if let Some(r) = seg.strip_prefix("**") {
            (Some(Tok::Any), r)
        } else if let Some(r) = seg.strip_prefix('*') {
            (Some(Tok::One), r)
        } else {
            (None, *seg)
        };
        if let Some(op) = op {
            toks.push(op);
        }
        if !rest.is_empty() {
            if rest.contains('*') || !rest.chars().all(template_literal_char) {
                return false;
            }
            toks.push(Tok::Lit(rest.to_string()));
        }
    }
    fn go(toks: &[Tok], s: &str) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Lit(l), rest)) => s.strip_prefix(l.as_str()).is_some_and(|r| go(rest, r)),
            Some((Tok::One, rest)) => {
                let n = s.find(|c: char| !template_glob_char(c)).unwrap_or(s.len());
                (1..=n).any(|k| go(rest, &s[k..]))
            }
            Some((Tok::Any, rest)) => {
                let n = s
                    .find(|c: char| !(template_glob_char(c) || c == '/'))
                    .unwrap_or(s.len());
                (0..=n).any(|k| s.is_char_boundary(k) && go(rest, &s[k..]))
            }
        }
    }
    go(&toks, path)
}

fn condition_matches(c: &Condition, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    let key = c.key.as_str();
    if !crate::authz::is_istio_when_key(key) {
        // Istio's builder skips the whole rule (any action).
        return M::No;
    }
    let http_only = key.starts_with("request.");
    if req.http.is_none() && http_only {
        // HTTP-only attribute on a TCP connection: as Istio's TCP builder does,
        // an ALLOW rule never matches, other actions drop the condition.
        return if ctx.action == Action::Allow {
            M::No
        } else {
            M::Yes
        };
    }
    let uri = req.source_principal.as_deref().map(spiffe_uri);
    let uri = uri.as_deref();
    let port = req.destination_port.to_string();
    let bundle = &ctx.opts.trust_domains;
    match key {
        "source.ip" => ip_field(&c.values, &c.not_values, req.source_ip),
        "remote.ip" => ip_field(&c.values, &c.not_values, req.remote_ip.or(req.source_ip)),
        "destination.ip" => ip_field(&c.values, &c.not_values, req.destination_ip),
        "source.namespace" => req.namespace_field(&c.values, &c.not_values),
        "source.principal" => field(
            &bundle.replace_aliases(&c.values),
            &bundle.replace_aliases(&c.not_values),
            uri,
            principal_match,
        ),
        "source.serviceAccount" => field(&c.values, &c.not_values, uri, |p, u| {
            service_account_match(ctx.policy_ns, p, u)
        }),
        "source.trustDomain" => field(
            &bundle.expand_aliases(&c.values),
            &bundle.expand_aliases(&c.not_values),
            uri,
            trust_domain_match,
        ),
        "request.auth.principal" => match req.request_principal.as_deref() {
            Some(rp) => field(&c.values, &c.not_values, Some(rp), request_principal_match),
            None => M::Unknown(NEEDS_JWT.into()),
        },
        "destination.port" => field(&c.values, &c.not_values, Some(&port), |p, v| p == v),
        k if k.starts_with("request.auth.") => M::Unknown(format!("when key {k:?} {NEEDS_JWT}")),
        k if k.starts_with("request.headers") => {
            match k
                .strip_prefix("request.headers[")
                .and_then(|r| r.strip_suffix(']'))
            {
                Some(name) => field(
                    &c.values,
                    &c.not_values,
                    req.header(name),
                    header_value_match,
                ),
                // Istio cannot build the matcher: an ALLOW rule is skipped,
                // other actions drop the condition.
                None if ctx.action == Action::Allow => M::No,
                None => M::Yes,
            }
        }
        _ => M::Unknown(format!(
            "when key {key:?} cannot be evaluated by this model (it needs the TLS SNI or Envoy metadata)"
        )),
    }
}

fn rule_matches(r: &Rule, req: &AuthzRequest, ctx: &Ctx<'_>) -> M {
    // Istio skips a rule with an unknown `when` key, whatever its action.
    if r.when.iter().any(|c| !is_istio_when_key(&c.key)) {
        return M::No;
    }
    // On a TCP filter chain Istio's builder fails the whole rule of an ALLOW
    // policy when any of its parts (an operation, a source, a condition) names
    // an HTTP-only attribute, so the rule never matches there; other actions
    // only drop those attributes (below, per field). Checked against real Envoy
    // by tests/e2e/envoy_differential.rs.
    if req.http.is_none() && ctx.action == Action::Allow && rule_has_http_only(r) {
        return M::No;
    }
    let from = if r.from.is_empty() {
        M::Yes
    } else {
        any(r.from.iter().map(|f| match &f.source {
            Some(s) => source_matches(s, req, ctx),
            None => M::Yes,
        }))
    };
    let to = if r.to.is_empty() {
        M::Yes
    } else {
        any(r.to.iter().map(|t| match &t.operation {
            Some(o) => operation_matches(o, req, ctx),
            None => M::Yes,
        }))
    };
    let when = all(r.when.iter().map(|c| condition_matches(c, req, ctx)));
    all([from, to, when])
}

/// Whether any part of a rule names an attribute only HTTP requests have.
fn rule_has_http_only(r: &Rule) -> bool {
    r.to.iter()
        .filter_map(|t| t.operation.as_ref())
        .any(Operation::has_http_fields)
        || r.from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .any(|s| !(s.request_principals.is_empty() && s.not_request_principals.is_empty()))
        || r.when.iter().any(|c| c.key.starts_with("request."))
}

/// The `when` keys Istio's builder knows; a rule using another is skipped.
pub fn is_istio_when_key(key: &str) -> bool {
    matches!(
        key,
        "destination.ip"
            | "destination.port"
            | "connection.sni"
            | "source.ip"
            | "remote.ip"
            | "source.namespace"
            | "source.trustDomain"
            | "source.serviceAccount"
            | "source.principal"
            | "request.auth.principal"
            | "request.auth.audiences"
            | "request.auth.presenter"
    ) || key.starts_with("experimental.envoy.filters.")
        || key.starts_with("request.headers")
        || key.starts_with("request.auth.claims")
}
/// Outcome of one set of policies (one Envoy RBAC engine).
struct EngineResult {
    /// First matching id, in Envoy's (lexicographic) order.
    matched: Option<String>,
    unknown: Vec<Unevaluable>,
}

impl EngineResult {
    /// What a DENY or ALLOW engine decides on its own, as (decision, policy
    /// id, reason): its first matching rule decides; otherwise a rule it
    /// cannot evaluate leaves the request undecided; `None` when no rule can
    /// match. The rules it could not evaluate go to `cannot` either way.
    fn verdict(
        self,
        action: Action,
        delegated_note: &str,
        cannot: &mut Vec<Unevaluable>,
    ) -> Option<(Decision, String, String)> {
        let (on_match, verb) = match action {
            Action::Deny => (Decision::Deny, "denied by DENY"),
            _ => (Decision::Allow, "allowed by ALLOW"),
        };
        let found = if let Some(id) = self.matched {
            let reason = format!("{verb} rule {id}{delegated_note}");
            Some((on_match, id, reason))
        } else {
            self.unknown.first().map(|first| {
                let reason = format!(
                    "cannot evaluate: {action} rule {} may match: {}",
                    first.policy_id, first.reason
                );
                (Decision::CannotEvaluate, first.policy_id.clone(), reason)
            })
        };
        cannot.extend(self.unknown);
        found
    }
}

fn run_engine(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    opts: &EvalOptions,
    rbac_path: Option<&str>,
) -> EngineResult {
    let mut ids: Vec<(String, &Rule, &CompiledAuthz)> = Vec::new();
    for p in policies {
        for (i, r) in p.rules.iter().enumerate() {
            ids.push((envoy_policy_id(&p.namespace, &p.name, i), r, p));
        }
    }
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unknown = Vec::new();
    for (id, r, p) in ids {
        let ctx = Ctx {
            action: p.action,
            policy_ns: &p.namespace,
            opts,
            rbac_path,
        };
        match rule_matches(r, req, &ctx) {
            M::Yes => {
                return EngineResult {
                    matched: Some(id),
                    unknown,
                };
            }
            M::No => {}
            M::Unknown(reason) => unknown.push(Unevaluable {
                policy_id: id,
                reason,
            }),
        }
    }
    EngineResult {
        matched: None,
        unknown,
    }
}

/// Evaluates a request against an explicit list of policies (already
/// targeted at the destination). `has_sidecar` false means nothing is enforced.
pub fn evaluate_policies(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    has_sidecar: bool,
    notes: Vec<String>,
) -> AuthzVerdict {
    evaluate_policies_with(policies, req, has_sidecar, notes, &EvalOptions::default())
}

/// [`evaluate_policies`] with the mesh's trust domains and the sidecar's
/// path normalization. The path is matched as Envoy's RBAC filter sees it
/// ([`rbac_path`]); a path Envoy rejects or may not survive gives
/// `CannotEvaluate`.
pub fn evaluate_policies_with(
    policies: &[&CompiledAuthz],
    req: &AuthzRequest,
    has_sidecar: bool,
    mut notes: Vec<String>,
    opts: &EvalOptions,
) -> AuthzVerdict {
    let applicable: Vec<AppliedPolicy> = policies
        .iter()
        .map(|p| AppliedPolicy {
            policy: p.policy_ref(),
            action: p.action,
            dry_run: p.dry_run,
        })
        .collect();
    let dst = format!("{}/{}", req.destination_namespace, req.destination_pod);
    if !has_sidecar {
        if !policies.is_empty() {
            notes.push(format!(
                "{} AuthorizationPolicies target pod {dst} but none is enforced",
                policies.len()
            ));
        }
        return AuthzVerdict {
            decision: Decision::Allow,
            enforced: false,
            policy_id: None,
            reason: format!(
                "pod {dst} has no Istio sidecar, so AuthorizationPolicy is not enforced"
            ),
            applicable,
            delegated: Vec::new(),
            audited: Vec::new(),
            shadow: Vec::new(),
            cannot_evaluate: Vec::new(),
            notes,
        };
    }
    let rbac_path_owned = match req
        .http
        .as_ref()
        .map(|h| rbac_path(&h.path, &opts.path_normalization))
    {
        None => None,
        Some(PathOutcome::Path(p)) => Some(p),
        Some(PathOutcome::Rejected(why)) | Some(PathOutcome::Unpredictable(why)) => {
            return AuthzVerdict {
                decision: Decision::CannotEvaluate,
                enforced: true,
                policy_id: None,
                reason: format!("the request never reaches RBAC as predicted: {why}"),
                applicable,
                delegated: Vec::new(),
                audited: Vec::new(),
                shadow: Vec::new(),
                cannot_evaluate: Vec::new(),
                notes,
            };
        }
    };
    let rbac_path = rbac_path_owned.as_deref();
    let pick = |action: Action, dry: bool| -> Vec<&CompiledAuthz> {
        policies
            .iter()
            .copied()
            .filter(|p| p.action == action && (p.dry_run == dry || action == Action::Custom))
            .collect()
    };
    let mut cannot = Vec::new();

    // CUSTOM: each provider is asked; the model cannot know its answer.
    let mut delegated = Vec::new();
    let custom = pick(Action::Custom, false);
    let mut providers: Vec<&str> = custom.iter().filter_map(|p| p.provider()).collect();
    providers.sort();
    providers.dedup();
    for prov in providers {
        let ps: Vec<&CompiledAuthz> = custom
            .iter()
            .copied()
            .filter(|p| p.provider() == Some(prov))
            .collect();
        let r = run_engine(&ps, req, opts, rbac_path);
        cannot.extend(r.unknown);
        if let Some(id) = r.matched {
            delegated.push(Delegation {
                provider: prov.to_string(),
                policy_id: ext_authz_rule_name(prov, &id),
            });
        }
    }

    // AUDIT: logged only.
    let audit = run_engine(&pick(Action::Audit, false), req, opts, rbac_path);
    let audited: Vec<String> = audit.matched.into_iter().collect();

    // Shadow (dry-run) engines.
    let mut shadow = Vec::new();
    for action in [Action::Deny, Action::Allow] {
        let ps = pick(action, true);
        if ps.is_empty() {
            continue;
        }
        let r = run_engine(&ps, req, opts, rbac_path);
        cannot.extend(r.unknown.iter().cloned());
        let (outcome, id) = match (action, r.matched) {
            (Action::Deny, Some(id)) => ("shadow denied", id),
            (Action::Deny, None) => ("shadow allowed", "none".to_string()),
            (_, Some(id)) => ("shadow allowed", id),
            (_, None) => ("shadow denied", "none".to_string()),
        };
        shadow.push(ShadowResult {
            action,
            outcome: outcome.into(),
            policy_id: id,
        });
    }

    let finish = |decision, policy_id: Option<String>, reason: String, cannot| AuthzVerdict {
        decision,
        enforced: true,
        policy_id,
        reason,
        applicable: applicable.clone(),
        delegated: delegated.clone(),
        audited: audited.clone(),
        shadow: shadow.clone(),
        cannot_evaluate: cannot,
        notes: notes.clone(),
    };
    let delegated_note = if delegated.is_empty() {
        String::new()
    } else {
        let p: Vec<&str> = delegated.iter().map(|d| d.provider.as_str()).collect();
        format!(
            " (first delegated to ext-authz provider {}, whose answer the model cannot know)",
            p.join(", ")
        )
    };

    // DENY.
    let deny = run_engine(&pick(Action::Deny, false), req, opts, rbac_path);
    if let Some((decision, id, reason)) = deny.verdict(Action::Deny, &delegated_note, &mut cannot) {
        return finish(decision, Some(id), reason, cannot);
    }

    // ALLOW.
    let allow_ps = pick(Action::Allow, false);
    if allow_ps.is_empty() {
        let reason = if policies.is_empty() {
            format!("allowed: no AuthorizationPolicy applies to pod {dst}")
        } else {
            format!(
                "allowed: no DENY rule matched and no ALLOW policy applies to pod {dst}{delegated_note}"
            )
        };
        return finish(Decision::Allow, None, reason, cannot);
    }
    let allow = run_engine(&allow_ps, req, opts, rbac_path);
    if let Some((decision, id, reason)) = allow.verdict(Action::Allow, &delegated_note, &mut cannot)
    {
        return finish(decision, Some(id), reason, cannot);
    }
    let names: Vec<String> = allow_ps
        .iter()
        .map(|p| p.policy_ref().to_string())
        .collect();
    let reason = format!(
        "denied: ALLOW policies apply to pod {dst} ({}) and none matched (policy none)",
        names.join(", ")
    );
    finish(Decision::Deny, Some("none".into()), reason, cannot)
}
