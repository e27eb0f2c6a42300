//! AuthorizationPolicy -> Envoy RBAC filters, as Istio's builder emits them.
//!
//! Real Envoy must receive the filters istiod would send to a sidecar, body
//! and all, or a differential test checks our imitation instead of Istio's
//! behaviour. This module is a pure translation of the AuthorizationPolicies
//! that apply to one workload into the HTTP filters (`envoy.filters.http.rbac`,
//! `envoy.filters.http.ext_authz`) and network filters
//! (`envoy.filters.network.rbac`, `envoy.filters.network.ext_authz`) that
//! istio/istio `pilot/pkg/security/authz/{builder,model,matcher}` generates,
//! in the order a sidecar's filter chain holds them: CUSTOM (one RBAC +
//! ext_authz pair per provider), then AUDIT, DENY and ALLOW.
//!
//! The result is protojson (camelCase, proto3 defaults omitted), which is what
//! Envoy reads from a JSON/YAML config file. The matchers are built as data
//! first ([`Permission`], [`Principal`], ...) and rendered last. Rules Istio
//! skips (unknown `when` keys, an ALLOW rule with an invalid value or with
//! HTTP-only fields on a TCP chain) are reported in [`Translation::notes`].
//!
//! [`hcm_path_normalization`] publishes the HTTP connection manager settings
//! Istio gives a sidecar by default (its `pathNormalization: BASE`), which is
//! what decides the path RBAC sees; the engine applies the same
//! normalization ([`crate::authz::rbac_path`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::authz::{
    Action, AuthorizationPolicy, Condition, Operation, PathNormalization, Rule, Source,
    TrustDomainBundle,
};

/// HTTP RBAC filter name.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// Network RBAC filter name.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// HTTP ext_authz filter name.
pub const HTTP_EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// Network ext_authz filter name.
pub const NETWORK_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const NETWORK_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
const HTTP_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const NETWORK_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";
const URI_TEMPLATE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig";
/// `statPrefix` of every network RBAC / ext_authz filter.
pub const TCP_STAT_PREFIX: &str = "tcp.";
/// `shadowRulesStatPrefix` of dry-run ALLOW filters (and of filters without shadow rules).
pub const DRY_RUN_ALLOW_STAT_PREFIX: &str = "istio_dry_run_allow_";
/// `shadowRulesStatPrefix` of dry-run DENY filters.
pub const DRY_RUN_DENY_STAT_PREFIX: &str = "istio_dry_run_deny_";
/// `shadowRulesStatPrefix` of CUSTOM filters.
pub const EXT_AUTHZ_STAT_PREFIX: &str = "istio_ext_authz_";
/// Policy-name prefix of CUSTOM rules (followed by `-PROVIDER-`).
pub const EXT_AUTHZ_MATCH_PREFIX: &str = crate::authz::EXT_AUTHZ_ID_PREFIX;
/// Suffix of the DENY rules Istio emits when a CUSTOM provider is unusable.
pub const BAD_CUSTOM_SUFFIX: &str = "-deny-due-to-bad-CUSTOM-action";
/// The JWT filter whose metadata holds the request's claims.
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
/// Filter-state key Istio's waypoints read the peer principal from.
pub const PEER_PRINCIPAL_FILTER_STATE: &str = "io.istio.peer_principal";
use crate::workload::DEFAULT_TRUST_DOMAIN;

/// Mesh-wide settings the translation depends on (Istio's MeshConfig and
/// service registry, and istiod's feature flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateOptions {
    /// `meshConfig.trustDomain`.
    pub trust_domain: String,
    /// `meshConfig.trustDomainAliases`.
    pub trust_domain_aliases: Vec<String>,
    /// `meshConfig.extensionProviders` (only the ext_authz kinds matter).
    pub extension_providers: Vec<MeshExtensionProvider>,
    /// Services known to the registry, used to resolve a provider's `service`
    /// to its cluster (`outbound|PORT||HOST`) as Istio's `LookupCluster` does.
    pub services: Vec<ServiceHost>,
    /// istiod's `PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS` (default off:
    /// two CUSTOM providers on one workload give DENY filters only).
    pub multiple_custom_providers: bool,
    /// Match identities through the `io.istio.peer_principal` filter state
    /// (waypoints) instead of the TLS peer certificate (sidecars, the default).
    pub use_filter_state: bool,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
            trust_domain_aliases: Vec::new(),
            extension_providers: Vec::new(),
            services: Vec::new(),
            multiple_custom_providers: false,
            use_filter_state: false,
        }
    }
}

/// A service in the registry: its namespace and hostname.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceHost {
    pub namespace: String,
    pub hostname: String,
}

/// One `meshConfig.extensionProviders[]` entry (camelCase as in MeshConfig YAML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshExtensionProvider {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpcProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_http: Option<ExtAuthzHttpProvider>,
}

/// `envoyExtAuthzGrpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzGrpcProvider {
    pub service: String,
    #[serde(default)]
    pub port: u32,
    /// protojson duration (`"0.002s"`, `"10s"`); 600s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub status_on_error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<RequestBody>,
}

/// `envoyExtAuthzHttp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzHttpProvider {
    pub service: String,
    #[serde(default)]
    pub port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub status_on_error: String,
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Deprecated; used only when `includeRequestHeadersInCheck` is empty.
    #[serde(default)]
    pub include_headers_in_check: Vec<String>,
    #[serde(default)]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<RequestBody>,
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// `includeRequestBodyInCheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestBody {
    #[serde(default)]
    pub max_request_bytes: u32,
    #[serde(default)]
    pub allow_partial_message: bool,
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// Something the translation dropped or replaced, as istiod logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranslateNote {
    /// The policy id concerned (`ns[NS]-policy[NAME]-rule[N]`, with the CUSTOM
    /// prefix), or None for provider-level notes.
    pub policy_id: Option<String>,
    pub message: String,
}

/// Filters plus what was skipped on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translation {
    /// Envoy filters (`{"name", "typedConfig"}`), in filter-chain order.
    pub filters: Vec<Value>,
    pub notes: Vec<TranslateNote>,
}

// ---------------------------------------------------------------------------
// Envoy matchers as data.

/// `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringMatcher {
    pub pattern: StringPattern,
    pub ignore_case: bool,
}

/// The match pattern of a [`StringMatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    SafeRegex(String),
}

impl StringMatcher {
    fn new(pattern: StringPattern) -> Self {
        Self {
            pattern,
            ignore_case: false,
        }
    }
    fn regex(r: impl Into<String>) -> Self {
        Self::new(StringPattern::SafeRegex(r.into()))
    }
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        let (k, v) = match &self.pattern {
            StringPattern::Exact(s) => ("exact", json!(s)),
            StringPattern::Prefix(s) => ("prefix", json!(s)),
            StringPattern::Suffix(s) => ("suffix", json!(s)),
            StringPattern::SafeRegex(r) => ("safeRegex", json!({ "regex": r })),
        };
        m.insert(k.into(), v);
        if self.ignore_case {
            m.insert("ignoreCase".into(), json!(true));
        }
        Value::Object(m)
    }
}

/// `envoy.config.route.v3.HeaderMatcher` (the forms Istio uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    pub name: String,
    /// None: `presentMatch: true`.
    pub string_match: Option<StringMatcher>,
}

impl HeaderMatcher {
    fn to_json(&self) -> Value {
        match &self.string_match {
            None => json!({"name": self.name, "presentMatch": true}),
            Some(m) => json!({"name": self.name, "stringMatch": m.to_json()}),
        }
    }
}

/// `envoy.type.matcher.v3.ValueMatcher` (the forms Istio uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatcher {
    String(StringMatcher),
    /// `listMatch: {oneOf: ...}`.
    ListOneOf(Box<ValueMatcher>),
    Or(Vec<ValueMatcher>),
}

impl ValueMatcher {
    fn to_json(&self) -> Value {
        match self {
            Self::String(s) => json!({"stringMatch": s.to_json()}),
            Self::ListOneOf(v) => json!({"listMatch": {"oneOf": v.to_json()}}),
            Self::Or(vs) => json!({"orMatch": {"valueMatchers":
                vs.iter().map(Self::to_json).collect::<Vec<_>>()}}),
        }
    }
}

/// `envoy.type.matcher.v3.MetadataMatcher`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataMatcher {
    pub filter: String,
    pub path: Vec<String>,
    pub value: ValueMatcher,
}

impl MetadataMatcher {
    fn to_json(&self) -> Value {
        json!({
            "filter": self.filter,
            "path": self.path.iter().map(|k| json!({"key": k})).collect::<Vec<_>>(),
            "value": self.value.to_json(),
        })
    }
}

/// `envoy.config.core.v3.CidrRange`, the address kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Istio's `AddrStrToCidrRange`: `A.B.C.D` (/32), `A.B.C.D/N`, IPv6 alike.
    pub fn parse(v: &str) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        if v.contains('/') {
            let (a, n) = v.split_once('/')?;
            let address: IpAddr = a.parse().ok()?;
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_digit())
                || (n.len() > 1 && n.starts_with('0'))
            {
                return None;
            }
            let prefix_len: u8 = n.parse().ok()?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            (prefix_len <= max).then_some(Self {
                address,
                prefix_len,
            })
        } else {
            let address: IpAddr = v.parse().ok()?;
            let prefix_len = if address.is_ipv4() { 32 } else { 128 };
            Some(Self {
                address,
                prefix_len,
            })
        }
    }

    /// The network this range covers.
    pub fn net(&self) -> IpNet {
        IpNet::new(self.address, self.prefix_len)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(self.address))
    }

    fn to_json(&self) -> Value {
        json!({"addressPrefix": self.address.to_string(), "prefixLen": self.prefix_len})
    }
}

/// `envoy.config.rbac.v3.Permission` (the forms Istio uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderMatcher),
    UrlPath(StringMatcher),
    /// A `uri_template` path template (`/a/*/b`, `/**`).
    UriTemplate(String),
    DestinationIp(Cidr),
    DestinationPort(u32),
    RequestedServerName(StringMatcher),
    Metadata(MetadataMatcher),
}

impl Permission {
    fn to_json(&self) -> Value {
        match self {
            Self::Any => json!({"any": true}),
            Self::And(v) => {
                json!({"andRules": {"rules": v.iter().map(Self::to_json).collect::<Vec<_>>()}})
            }
            Self::Or(v) => {
                json!({"orRules": {"rules": v.iter().map(Self::to_json).collect::<Vec<_>>()}})
            }
            Self::Not(p) => json!({"notRule": p.to_json()}),
            Self::Header(h) => json!({"header": h.to_json()}),
            Self::UrlPath(m) => json!({"urlPath": {"path": m.to_json()}}),
            Self::UriTemplate(t) => json!({"uriTemplate": {
                "name": "uri-template",
                "typedConfig": {"@type": URI_TEMPLATE_TYPE, "pathTemplate": t}
            }}),
            Self::DestinationIp(c) => json!({"destinationIp": c.to_json()}),
            Self::DestinationPort(p) => json!({"destinationPort": p}),
            Self::RequestedServerName(m) => json!({"requestedServerName": m.to_json()}),
            Self::Metadata(m) => json!({"metadata": m.to_json()}),
        }
    }
}

/// `envoy.config.rbac.v3.Principal` (the forms Istio uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// `authenticated.principalName`: the peer certificate's URI SAN.
    Authenticated(StringMatcher),
    /// `filterState` on `io.istio.peer_principal`.
    PeerPrincipalFilterState(StringMatcher),
    DirectRemoteIp(Cidr),
    RemoteIp(Cidr),
    Header(HeaderMatcher),
    Metadata(MetadataMatcher),
}

impl Principal {
    fn to_json(&self) -> Value {
        match self {
            Self::Any => json!({"any": true}),
            Self::And(v) => {
                json!({"andIds": {"ids": v.iter().map(Self::to_json).collect::<Vec<_>>()}})
            }
            Self::Or(v) => {
                json!({"orIds": {"ids": v.iter().map(Self::to_json).collect::<Vec<_>>()}})
            }
            Self::Not(p) => json!({"notId": p.to_json()}),
            Self::Authenticated(m) => json!({"authenticated": {"principalName": m.to_json()}}),
            Self::PeerPrincipalFilterState(m) => json!({"filterState": {
                "key": PEER_PRINCIPAL_FILTER_STATE, "stringMatch": m.to_json()
            }}),
            Self::DirectRemoteIp(c) => json!({"directRemoteIp": c.to_json()}),
            Self::RemoteIp(c) => json!({"remoteIp": c.to_json()}),
            Self::Header(h) => json!({"header": h.to_json()}),
            Self::Metadata(m) => json!({"metadata": m.to_json()}),
        }
    }
}

/// `envoy.config.rbac.v3.Policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

impl Policy {
    /// Istio's explicit never-matching policy for a policy without rules.
    pub fn never() -> Self {
        Self {
            permissions: vec![Permission::Not(Box::new(Permission::Any))],
            principals: vec![Principal::Not(Box::new(Principal::Any))],
        }
    }
    fn to_json(&self) -> Value {
        json!({
            "permissions": self.permissions.iter().map(Permission::to_json).collect::<Vec<_>>(),
            "principals": self.principals.iter().map(Principal::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Envoy's RBAC action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EnvoyRbacAction {
    Allow,
    Deny,
    Log,
}

/// `envoy.config.rbac.v3.RBAC`: an action and named policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacRules {
    pub action: EnvoyRbacAction,
    pub policies: BTreeMap<String, Policy>,
}

impl RbacRules {
    fn new(action: EnvoyRbacAction) -> Self {
        Self {
            action,
            policies: BTreeMap::new(),
        }
    }
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self.action {
            EnvoyRbacAction::Allow => {}
            EnvoyRbacAction::Deny => {
                m.insert("action".into(), json!("DENY"));
            }
            EnvoyRbacAction::Log => {
                m.insert("action".into(), json!("LOG"));
            }
        }
        if !self.policies.is_empty() {
            let p: Map<String, Value> = self
                .policies
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            m.insert("policies".into(), Value::Object(p));
        }
        Value::Object(m)
    }
}

/// One RBAC filter's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacConfig {
    pub rules: Option<RbacRules>,
    pub shadow_rules: Option<RbacRules>,
    pub shadow_rules_stat_prefix: Option<String>,
}

/// A filter of the chain, as data.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Rbac {
        tcp: bool,
        config: RbacConfig,
    },
    /// The ext_authz filter of a CUSTOM provider, already rendered.
    ExtAuthz {
        tcp: bool,
        provider: String,
        typed_config: Value,
    },
}

impl Filter {
    /// The filter as Envoy's protojson.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Rbac { tcp, config } => {
                let mut m = Map::new();
                m.insert(
                    "@type".into(),
                    json!(if *tcp {
                        NETWORK_RBAC_TYPE
                    } else {
                        HTTP_RBAC_TYPE
                    }),
                );
                if let Some(r) = &config.rules {
                    m.insert("rules".into(), r.to_json());
                }
                if let Some(r) = &config.shadow_rules {
                    m.insert("shadowRules".into(), r.to_json());
                }
                if let Some(p) = &config.shadow_rules_stat_prefix {
                    m.insert("shadowRulesStatPrefix".into(), json!(p));
                }
                if *tcp {
                    m.insert("statPrefix".into(), json!(TCP_STAT_PREFIX));
                }
                json!({"name": if *tcp { NETWORK_RBAC } else { HTTP_RBAC }, "typedConfig": Value::Object(m)})
            }
            Self::ExtAuthz {
                tcp, typed_config, ..
            } => json!({
                "name": if *tcp { NETWORK_EXT_AUTHZ } else { HTTP_EXT_AUTHZ },
                "typedConfig": typed_config,
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Istio's string matcher forms.

/// Go's `regexp.QuoteMeta`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Istio's `StringMatcherWithPrefix`: `*` -> `.+`, `*x` -> suffix (regex when
/// a prefix is given), `x*` -> prefix, else exact.
fn string_with_prefix(v: &str, prefix: &str) -> StringMatcher {
    if v == "*" {
        StringMatcher::regex(".+")
    } else if let Some(rest) = v.strip_prefix('*') {
        if prefix.is_empty() {
            StringMatcher::new(StringPattern::Suffix(rest.into()))
        } else {
            StringMatcher::regex(format!("{prefix}.*{}", quote_meta(rest)))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        StringMatcher::new(StringPattern::Prefix(format!("{prefix}{rest}")))
    } else {
        StringMatcher::new(StringPattern::Exact(format!("{prefix}{v}")))
    }
}

fn string_matcher(v: &str) -> StringMatcher {
    string_with_prefix(v, "")
}

/// Istio's `HeaderMatcher` / `HostMatcher` (the latter ignoring case).
fn header_matcher(name: &str, v: &str, ignore_case: bool) -> HeaderMatcher {
    let pattern = if v == "*" {
        None
    } else if let Some(rest) = v.strip_prefix('*') {
        Some(StringPattern::Suffix(rest.into()))
    } else if let Some(rest) = v.strip_suffix('*') {
        Some(StringPattern::Prefix(rest.into()))
    } else {
        Some(StringPattern::Exact(v.into()))
    };
    HeaderMatcher {
        name: name.into(),
        string_match: pattern.map(|pattern| StringMatcher {
            pattern,
            ignore_case,
        }),
    }
}

fn string_or_matcher(values: &[String]) -> ValueMatcher {
    let mut v: Vec<ValueMatcher> = values
        .iter()
        .map(|s| ValueMatcher::String(string_matcher(s)))
        .collect();
    if v.len() == 1 {
        v.remove(0)
    } else {
        ValueMatcher::Or(v)
    }
}

/// Istio's JWT claim matcher: `payload.CLAIMS` is one of the values, or a list containing one.
fn jwt_claims(claims: &[String], value: ValueMatcher) -> MetadataMatcher {
    let mut path = vec!["payload".to_string()];
    path.extend(claims.iter().cloned());
    MetadataMatcher {
        filter: JWT_FILTER.into(),
        path,
        value: ValueMatcher::Or(vec![
            ValueMatcher::ListOneOf(Box::new(value.clone())),
            value,
        ]),
    }
}

fn jwt_claim_string(claim: &str, m: StringMatcher) -> Principal {
    Principal::Metadata(MetadataMatcher {
        filter: JWT_FILTER.into(),
        path: vec!["payload".into(), claim.into()],
        value: ValueMatcher::String(m),
    })
}

/// Whether a path value uses Istio's `{*}` / `{**}` templates.
pub fn contains_path_template(v: &str) -> bool {
    v.contains("{*}") || v.contains("{**}")
}

/// Istio's path template as an Envoy `uri_template` (`{*}` -> `*`, `{**}` -> `**`).
pub fn envoy_path_template(v: &str) -> String {
    v.replace("{**}", "**").replace("{*}", "*")
}

/// Go's `strconv.ParseUint(v, 10, 32)` then `<= 65535`.
fn parse_port(v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {v}"));
    }
    match v.parse::<u64>() {
        Ok(p) if p <= 65535 => Ok(p as u32),
        _ => Err(format!("invalid port {v}")),
    }
}

fn is_dry_run(p: &AuthorizationPolicy) -> bool {
    p.is_dry_run()
}

fn extract_name_in_brackets(s: &str) -> Result<String, String> {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .map(str::to_string)
        .ok_or_else(|| format!("expecting format [<NAME>], but found {s}"))
}

/// `[a][b]` -> `[a, b]`; a single `[a]` otherwise (Istio's `extractNameInNestedBrackets`).
pub fn extract_names_in_nested_brackets(s: &str) -> Result<Vec<String>, String> {
    let b = s.as_bytes();
    let find_end = |begin: usize| -> Option<usize> {
        if begin >= b.len() || b[begin] != b'[' {
            return None;
        }
        for (i, &c) in b.iter().enumerate().skip(begin + 1) {
            if c == b'[' {
                return None;
            }
            if c == b']' {
                return Some(i);
            }
        }
        None
    };
    let mut claims = Vec::new();
    let mut begin = 0;
    while begin < b.len() {
        match find_end(begin) {
            None => return Ok(vec![extract_name_in_brackets(s)?]),
            Some(end) => {
                claims.push(s[begin + 1..end].to_string());
                begin = end + 1;
            }
        }
    }
    Ok(claims)
}

// ---------------------------------------------------------------------------
// Istio's model: a rule as ordered keyed conditions.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DestIp,
    DestPort,
    ConnSni,
    EnvoyFilter,
    SrcIp,
    RemoteIp,
    SrcNamespace,
    SrcTrustDomain,
    SrcServiceAccount,
    SrcPrincipal,
    RequestPrincipal,
    RequestAudiences,
    RequestPresenter,
    RequestHeader,
    RequestClaims,
    Host,
    Method,
    Path,
}

impl Kind {
    /// Generators whose values are matched together (Istio's "extended" ones).
    fn extended(self) -> bool {
        matches!(
            self,
            Self::EnvoyFilter
                | Self::RequestPrincipal
                | Self::RequestAudiences
                | Self::RequestPresenter
                | Self::RequestClaims
        )
    }
}

#[derive(Debug, Clone)]
struct KeyedRule {
    kind: Kind,
    key: String,
    values: Vec<String>,
    not_values: Vec<String>,
}

fn keyed(kind: Kind, key: &str, values: &[String], not_values: &[String]) -> Option<KeyedRule> {
    (!(values.is_empty() && not_values.is_empty())).then(|| KeyedRule {
        kind,
        key: key.into(),
        values: values.to_vec(),
        not_values: not_values.to_vec(),
    })
}

/// Which side a `when` key belongs to, as Istio's `model.New` sorts it.
fn when_kind(key: &str) -> Option<(Kind, bool)> {
    // (kind, is_permission)
    Some(match key {
        "destination.ip" => (Kind::DestIp, true),
        "destination.port" => (Kind::DestPort, true),
        "connection.sni" => (Kind::ConnSni, true),
        k if k.starts_with("experimental.envoy.filters.") => (Kind::EnvoyFilter, true),
        "source.ip" => (Kind::SrcIp, false),
        "remote.ip" => (Kind::RemoteIp, false),
        "source.namespace" => (Kind::SrcNamespace, false),
        "source.trustDomain" => (Kind::SrcTrustDomain, false),
        "source.serviceAccount" => (Kind::SrcServiceAccount, false),
        "source.principal" => (Kind::SrcPrincipal, false),
        "request.auth.principal" => (Kind::RequestPrincipal, false),
        "request.auth.audiences" => (Kind::RequestAudiences, false),
        "request.auth.presenter" => (Kind::RequestPresenter, false),
        k if k.starts_with("request.headers") => (Kind::RequestHeader, false),
        k if k.starts_with("request.auth.claims") => (Kind::RequestClaims, false),
        _ => return None,
    })
}

/// The when keys Istio knows (others make it skip the rule).
pub fn is_known_when_key(key: &str) -> bool {
    when_kind(key).is_some()
}

struct Model {
    /// One AND-list per `to` (or one when `to` is empty).
    permissions: Vec<Vec<KeyedRule>>,
    /// One AND-list per `from` (or one when `from` is empty).
    principals: Vec<Vec<KeyedRule>>,
}

fn source_rules(s: &Source) -> Vec<KeyedRule> {
    [
        keyed(
            Kind::SrcPrincipal,
            "source.principal",
            &s.principals,
            &s.not_principals,
        ),
        keyed(
            Kind::RequestPrincipal,
            "request.auth.principal",
            &s.request_principals,
            &s.not_request_principals,
        ),
        keyed(
            Kind::SrcServiceAccount,
            "source.serviceAccount",
            &s.service_accounts,
            &s.not_service_accounts,
        ),
        keyed(
            Kind::SrcTrustDomain,
            "source.trustDomain",
            &s.trust_domains,
            &s.not_trust_domains,
        ),
        keyed(
            Kind::SrcNamespace,
            "source.namespace",
            &s.namespaces,
            &s.not_namespaces,
        ),
        keyed(
            Kind::RemoteIp,
            "remote.ip",
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
        ),
        keyed(Kind::SrcIp, "source.ip", &s.ip_blocks, &s.not_ip_blocks),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn operation_rules(o: &Operation) -> Vec<KeyedRule> {
    [
        keyed(Kind::Host, ":authority", &o.hosts, &o.not_hosts),
        keyed(Kind::Method, ":method", &o.methods, &o.not_methods),
        keyed(Kind::Path, "path-matcher", &o.paths, &o.not_paths),
        keyed(Kind::DestPort, "destination.port", &o.ports, &o.not_ports),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn migrate(bundle: &TrustDomainBundle, r: &mut KeyedRule) {
    match r.kind {
        Kind::SrcPrincipal => {
            if !r.values.is_empty() {
                r.values = bundle.replace_aliases(&r.values);
            }
            if !r.not_values.is_empty() {
                r.not_values = bundle.replace_aliases(&r.not_values);
            }
        }
        Kind::SrcTrustDomain => {
            if !r.values.is_empty() {
                r.values = bundle.expand_aliases(&r.values);
            }
            if !r.not_values.is_empty() {
                r.not_values = bundle.expand_aliases(&r.not_values);
            }
        }
        _ => {}
    }
}

fn new_model(rule: &Rule, bundle: &TrustDomainBundle) -> Result<Model, String> {
    let mut base_perm = Vec::new();
    let mut base_princ = Vec::new();
    for c in &rule.when {
        let Condition {
            key,
            values,
            not_values,
        } = c;
        let (kind, perm) = when_kind(key).ok_or_else(|| format!("unknown attribute {key}"))?;
        if let Some(r) = keyed(kind, key, values, not_values) {
            if perm {
                base_perm.push(r);
            } else {
                base_princ.push(r);
            }
        }
    }
    // Istio shares the `when` principal rules between every `from` entry and
    // migrates trust domains once per entry, so a shared rule is migrated as
    // many times as there are entries.
    let n_from = rule.from.len().max(1);
    for _ in 0..n_from {
        for r in &mut base_princ {
            migrate(bundle, r);
        }
    }
    let mut principals = Vec::new();
    for f in &rule.from {
        let mut rules = f.source.as_ref().map(source_rules).unwrap_or_default();
        for r in &mut rules {
            migrate(bundle, r);
        }
        rules.extend(base_princ.iter().cloned());
        principals.push(rules);
    }
    if rule.from.is_empty() {
        principals.push(base_princ);
    }
    let mut permissions = Vec::new();
    for t in &rule.to {
        let mut rules = t
            .operation
            .as_ref()
            .map(operation_rules)
            .unwrap_or_default();
        rules.extend(base_perm.iter().cloned());
        permissions.push(rules);
    }
    if rule.to.is_empty() {
        permissions.push(base_perm);
    }
    Ok(Model {
        permissions,
        principals,
    })
}

struct GenCtx<'a> {
    tcp: bool,
    use_authenticated: bool,
    policy_namespace: &'a str,
}

fn http_only(key: &str, ctx: &GenCtx<'_>) -> Result<(), String> {
    if ctx.tcp {
        Err(format!("{key:?} is HTTP only"))
    } else {
        Ok(())
    }
}

fn cidr_or_err(v: &str) -> Result<Cidr, String> {
    Cidr::parse(v).ok_or_else(|| format!("invalid IP address or CIDR {v:?}"))
}

fn permission_one(r: &KeyedRule, v: &str, ctx: &GenCtx<'_>) -> Result<Permission, String> {
    Ok(match r.kind {
        Kind::DestIp => Permission::DestinationIp(cidr_or_err(v)?),
        Kind::DestPort => Permission::DestinationPort(parse_port(v)?),
        Kind::ConnSni => Permission::RequestedServerName(string_matcher(v)),
        Kind::Host => {
            http_only(&r.key, ctx)?;
            Permission::Header(header_matcher(":authority", v, true))
        }
        Kind::Method => {
            http_only(&r.key, ctx)?;
            Permission::Header(header_matcher(":method", v, false))
        }
        Kind::Path => {
            http_only(&r.key, ctx)?;
            if contains_path_template(v) {
                Permission::UriTemplate(envoy_path_template(v))
            } else {
                Permission::UrlPath(string_matcher(v))
            }
        }
        _ => return Err("unimplemented".into()),
    })
}

fn envoy_filter_permission(key: &str, values: &[String]) -> Result<Permission, String> {
    let k = key.strip_prefix("experimental.").unwrap_or(key);
    let k = k.strip_suffix(']').unwrap_or(k);
    let Some((filter, field)) = k.split_once('[') else {
        return Err(format!("invalid key: {key}"));
    };
    let mut ms: Vec<ValueMatcher> = values
        .iter()
        .map(|v| {
            if v.starts_with('[') && v.ends_with(']') {
                let inner = v.trim_matches(|c| c == '[' || c == ']');
                ValueMatcher::ListOneOf(Box::new(ValueMatcher::String(string_matcher(inner))))
            } else {
                ValueMatcher::String(string_matcher(v))
            }
        })
        .collect();
    let value = if ms.len() == 1 {
        ms.remove(0)
    } else {
        ValueMatcher::Or(ms)
    };
    Ok(Permission::Metadata(MetadataMatcher {
        filter: filter.into(),
        path: vec![field.into()],
        value,
    }))
}

fn authenticated(m: StringMatcher, ctx: &GenCtx<'_>) -> Principal {
    if ctx.use_authenticated {
        Principal::Authenticated(m)
    } else {
        Principal::PeerPrincipalFilterState(m)
    }
}

/// Istio's `serviceAccountRegex`.
pub fn service_account_regex(default_namespace: &str, value: &str) -> String {
    let (ns, sa) = value.split_once('/').unwrap_or((default_namespace, value));
    format!(
        "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
        quote_meta(ns),
        quote_meta(sa)
    )
}

fn principal_one(r: &KeyedRule, v: &str, ctx: &GenCtx<'_>) -> Result<Principal, String> {
    Ok(match r.kind {
        Kind::SrcIp => Principal::DirectRemoteIp(cidr_or_err(v)?),
        Kind::RemoteIp => Principal::RemoteIp(cidr_or_err(v)?),
        Kind::SrcNamespace => {
            let parts: Vec<String> = v.split('*').map(quote_meta).collect();
            authenticated(
                StringMatcher::regex(format!(".*/ns/{}/.*", parts.join(".*"))),
                ctx,
            )
        }
        Kind::SrcServiceAccount => authenticated(
            StringMatcher::regex(service_account_regex(ctx.policy_namespace, v)),
            ctx,
        ),
        Kind::SrcTrustDomain => {
            let m = if v == "*" {
                StringMatcher::new(StringPattern::Prefix("spiffe://".into()))
            } else if !v.contains('*') {
                StringMatcher::new(StringPattern::Prefix(format!("spiffe://{v}/")))
            } else {
                let (a, b) = v.split_once('*').unwrap_or((v, ""));
                StringMatcher::regex(format!(
                    "spiffe://{}[^/]*{}/.*",
                    quote_meta(a),
                    quote_meta(b)
                ))
            };
            authenticated(m, ctx)
        }
        Kind::SrcPrincipal => authenticated(string_with_prefix(v, "spiffe://"), ctx),
        Kind::RequestHeader => {
            http_only(&r.key, ctx)?;
            let name =
                extract_name_in_brackets(r.key.strip_prefix("request.headers").unwrap_or(&r.key))?;
            Principal::Header(header_matcher(&name, v, false))
        }
        _ => return Err("unimplemented".into()),
    })
}

fn request_principal(values: &[String]) -> Principal {
    let any = || StringMatcher::regex(".+");
    let exact = |s: &str| StringMatcher::new(StringPattern::Exact(s.into()));
    let mut or: Vec<Principal> = Vec::new();
    for value in values {
        let idx = value.rfind('/');
        let (iss, sub) = match idx {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value.as_str(), ""),
        };
        let found = idx.is_some();
        let (mi, ms) = if value == "*" {
            (any(), any())
        } else if let Some(after_star) = value.strip_prefix('*') {
            if found {
                let mi = if iss == "*" {
                    any()
                } else {
                    StringMatcher::new(StringPattern::Suffix(iss[1..].into()))
                };
                (mi, exact(sub))
            } else {
                (
                    any(),
                    StringMatcher::new(StringPattern::Suffix(after_star.into())),
                )
            }
        } else if let Some(stripped) = value.strip_suffix('*') {
            if found {
                let ms = if sub == "*" {
                    any()
                } else {
                    StringMatcher::new(StringPattern::Prefix(
                        sub.strip_suffix('*').unwrap_or(sub).into(),
                    ))
                };
                (exact(iss), ms)
            } else {
                (
                    StringMatcher::new(StringPattern::Prefix(stripped.into())),
                    any(),
                )
            }
        } else {
            (exact(iss), exact(sub))
        };
        or.push(Principal::And(vec![
            jwt_claim_string("iss", mi),
            jwt_claim_string("sub", ms),
        ]));
    }
    if or.len() == 1 {
        or.remove(0)
    } else {
        Principal::Or(or)
    }
}

fn extended_principal(
    r: &KeyedRule,
    values: &[String],
    ctx: &GenCtx<'_>,
) -> Result<Principal, String> {
    http_only(&r.key, ctx)?;
    Ok(match r.kind {
        Kind::RequestPrincipal => request_principal(values),
        Kind::RequestAudiences => {
            Principal::Metadata(jwt_claims(&["aud".into()], string_or_matcher(values)))
        }
        Kind::RequestPresenter => {
            Principal::Metadata(jwt_claims(&["azp".into()], string_or_matcher(values)))
        }
        Kind::RequestClaims => {
            let claims = extract_names_in_nested_brackets(
                r.key.strip_prefix("request.auth.claims").unwrap_or(&r.key),
            )?;
            Principal::Metadata(jwt_claims(&claims, string_or_matcher(values)))
        }
        _ => return Err("unimplemented".into()),
    })
}

/// Istio's `checkError`: ALLOW propagates (the rule is skipped), others ignore the value.
fn check<T>(action: EnvoyRbacAction, r: Result<T, String>) -> Result<Option<T>, String> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if action == EnvoyRbacAction::Allow => Err(e),
        Err(_) => Ok(None),
    }
}

fn gen_permissions(
    r: &KeyedRule,
    ctx: &GenCtx<'_>,
    action: EnvoyRbacAction,
) -> Result<Vec<Permission>, String> {
    let mut out = Vec::new();
    if r.kind.extended() {
        if !r.values.is_empty()
            && let Some(p) = check(action, envoy_filter_permission(&r.key, &r.values))?
        {
            out.push(p);
        }
        if !r.not_values.is_empty()
            && let Some(p) = check(action, envoy_filter_permission(&r.key, &r.not_values))?
        {
            out.push(Permission::Not(Box::new(p)));
        }
        return Ok(out);
    }
    for (vals, neg) in [(&r.values, false), (&r.not_values, true)] {
        let mut or = Vec::new();
        for v in vals {
            if let Some(p) = check(action, permission_one(r, v, ctx))? {
                or.push(p);
            }
        }
        if !or.is_empty() {
            let p = Permission::Or(or);
            out.push(if neg { Permission::Not(Box::new(p)) } else { p });
        }
    }
    Ok(out)
}

fn gen_principals(
    r: &KeyedRule,
    ctx: &GenCtx<'_>,
    action: EnvoyRbacAction,
) -> Result<Vec<Principal>, String> {
    let mut out = Vec::new();
    if r.kind.extended() {
        if !r.values.is_empty()
            && let Some(p) = check(action, extended_principal(r, &r.values, ctx))?
        {
            out.push(p);
        }
        if !r.not_values.is_empty()
            && let Some(p) = check(action, extended_principal(r, &r.not_values, ctx))?
        {
            out.push(Principal::Not(Box::new(p)));
        }
        return Ok(out);
    }
    for (vals, neg) in [(&r.values, false), (&r.not_values, true)] {
        let mut or = Vec::new();
        for v in vals {
            if let Some(p) = check(action, principal_one(r, v, ctx))? {
                or.push(p);
            }
        }
        if !or.is_empty() {
            let p = Principal::Or(or);
            out.push(if neg { Principal::Not(Box::new(p)) } else { p });
        }
    }
    Ok(out)
}

fn generate(m: &Model, ctx: &GenCtx<'_>, action: EnvoyRbacAction) -> Result<Policy, String> {
    let mut permissions = Vec::new();
    for rl in &m.permissions {
        let mut and = Vec::new();
        for r in rl {
            and.extend(gen_permissions(r, ctx, action)?);
        }
        if and.is_empty() {
            and.push(Permission::Any);
        }
        permissions.push(Permission::And(and));
    }
    let mut principals = Vec::new();
    for rl in &m.principals {
        let mut and = Vec::new();
        for r in rl {
            and.extend(gen_principals(r, ctx, action)?);
        }
        if and.is_empty() {
            and.push(Principal::Any);
        }
        principals.push(Principal::And(and));
    }
    Ok(Policy {
        permissions,
        principals,
    })
}

/// Envoy's policy for one rule of an AuthorizationPolicy, as Istio generates
/// it for `action` on an HTTP (`tcp == false`) or TCP filter chain; Err with
/// Istio's reason when Istio skips the rule.
pub fn rule_policy(
    rule: &Rule,
    policy_namespace: &str,
    action: EnvoyRbacAction,
    tcp: bool,
    opts: &TranslateOptions,
) -> Result<Policy, String> {
    let bundle = TrustDomainBundle::new(&opts.trust_domain, &opts.trust_domain_aliases);
    let m = new_model(rule, &bundle)?;
    let ctx = GenCtx {
        tcp,
        use_authenticated: !opts.use_filter_state,
        policy_namespace,
    };
    generate(&m, &ctx, action)
}

fn ns_name(p: &AuthorizationPolicy) -> (&str, &str) {
    (
        p.metadata
            .namespace
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn policy_name(ns: &str, name: &str, rule: usize, provider: Option<&str>) -> String {
    crate::authz::envoy_rule_name(ns, name, rule, provider)
}

/// Fills `into` with the rules of `p` (Istio's `Builder.build` loop body).
fn add_policy(
    into: &mut RbacRules,
    p: &AuthorizationPolicy,
    provider: Option<&str>,
    tcp: bool,
    opts: &TranslateOptions,
    notes: &mut Vec<TranslateNote>,
) {
    let (ns, name) = ns_name(p);
    for (i, rule) in p.spec.rules.iter().enumerate() {
        let id = policy_name(ns, name, i, provider);
        match rule_policy(rule, ns, into.action, tcp, opts) {
            Ok(pol) => {
                into.policies.insert(id, pol);
            }
            Err(e) => notes.push(TranslateNote {
                policy_id: Some(id),
                message: format!("skipped rule: {e}"),
            }),
        }
    }
    if p.spec.rules.is_empty() {
        into.policies
            .insert(policy_name(ns, name, 0, provider), Policy::never());
    }
}

fn local_filter(
    policies: &[&AuthorizationPolicy],
    action: Action,
    tcp: bool,
    opts: &TranslateOptions,
    notes: &mut Vec<TranslateNote>,
) -> Option<Filter> {
    let group: Vec<&&AuthorizationPolicy> =
        policies.iter().filter(|p| p.action() == action).collect();
    if group.is_empty() {
        return None;
    }
    let envoy_action = match action {
        Action::Audit => EnvoyRbacAction::Log,
        Action::Deny => EnvoyRbacAction::Deny,
        _ => EnvoyRbacAction::Allow,
    };
    let mut enforce: Option<RbacRules> = None;
    let mut shadow: Option<RbacRules> = None;
    for p in group {
        let slot = if is_dry_run(p) {
            &mut shadow
        } else {
            &mut enforce
        };
        let rules = slot.get_or_insert_with(|| RbacRules::new(envoy_action));
        add_policy(rules, p, None, tcp, opts, notes);
    }
    // Istio reads the action of a possibly absent shadow rule set: absent reads as ALLOW.
    let prefix = match shadow.as_ref().map_or(EnvoyRbacAction::Allow, |s| s.action) {
        EnvoyRbacAction::Allow => Some(DRY_RUN_ALLOW_STAT_PREFIX.to_string()),
        EnvoyRbacAction::Deny => Some(DRY_RUN_DENY_STAT_PREFIX.to_string()),
        EnvoyRbacAction::Log => None,
    };
    Some(Filter::Rbac {
        tcp,
        config: RbacConfig {
            rules: enforce,
            shadow_rules: shadow,
            shadow_rules_stat_prefix: prefix,
        },
    })
}

// ---------------------------------------------------------------------------
// CUSTOM: ext_authz providers.

/// A resolved provider: the ext_authz filters Istio builds for it.
struct BuiltExtAuthz {
    http: Map<String, Value>,
    tcp: Option<Map<String, Value>>,
}

/// protojson `google.protobuf.Duration` text -> (seconds, nanos).
fn parse_duration(s: &str) -> Option<(i64, u32)> {
    let body = s.strip_suffix('s')?;
    let (secs, frac) = match body.split_once('.') {
        Some((a, b)) => (a, b),
        None => (body, ""),
    };
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some((seconds, nanos))
}

/// protojson's rendering of a Duration (0, 3, 6 or 9 fractional digits).
fn format_duration(seconds: i64, nanos: u32) -> String {
    if nanos == 0 {
        format!("{seconds}s")
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}s")
    }
}

fn timeout_json(t: &Option<String>) -> Result<Value, String> {
    match t {
        None => Ok(json!("600s")),
        Some(s) => parse_duration(s)
            .map(|(a, b)| json!(format_duration(a, b)))
            .ok_or_else(|| format!("invalid timeout {s:?}")),
    }
}

/// `envoy.type.v3.StatusCode` names by number.
pub fn status_code_name(code: i64) -> Option<&'static str> {
    Some(match code {
        0 => "Empty",
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "NonAuthoritativeInformation",
        204 => "NoContent",
        205 => "ResetContent",
        206 => "PartialContent",
        207 => "MultiStatus",
        208 => "AlreadyReported",
        226 => "IMUsed",
        300 => "MultipleChoices",
        301 => "MovedPermanently",
        302 => "Found",
        303 => "SeeOther",
        304 => "NotModified",
        305 => "UseProxy",
        307 => "TemporaryRedirect",
        308 => "PermanentRedirect",
        400 => "BadRequest",
        401 => "Unauthorized",
        402 => "PaymentRequired",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        407 => "ProxyAuthenticationRequired",
        408 => "RequestTimeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "LengthRequired",
        412 => "PreconditionFailed",
        413 => "PayloadTooLarge",
        414 => "URITooLong",
        415 => "UnsupportedMediaType",
        416 => "RangeNotSatisfiable",
        417 => "ExpectationFailed",
        421 => "MisdirectedRequest",
        422 => "UnprocessableEntity",
        423 => "Locked",
        424 => "FailedDependency",
        426 => "UpgradeRequired",
        428 => "PreconditionRequired",
        429 => "TooManyRequests",
        431 => "RequestHeaderFieldsTooLarge",
        500 => "InternalServerError",
        501 => "NotImplemented",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        505 => "HTTPVersionNotSupported",
        506 => "VariantAlsoNegotiates",
        507 => "InsufficientStorage",
        508 => "LoopDetected",
        510 => "NotExtended",
        511 => "NetworkAuthenticationRequired",
        _ => return None,
    })
}

fn status_json(s: &str) -> Result<Option<Value>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let code: i64 = s
        .parse()
        .map_err(|_| format!("invalid statusOnError {s:?}"))?;
    let name = status_code_name(code).ok_or_else(|| format!("unsupported statusOnError {s}"))?;
    Ok(Some(if code == 0 {
        json!({})
    } else {
        json!({"code": name})
    }))
}

/// Istio's `LookupCluster`: (hostname, `outbound|PORT||HOST`).
fn lookup_cluster(
    opts: &TranslateOptions,
    service: &str,
    port: u32,
) -> Result<(String, String), String> {
    if service.is_empty() {
        return Err("service must not be empty".into());
    }
    let found: Vec<&ServiceHost> = match service.split('/').collect::<Vec<_>>()[..] {
        [ns, host] => opts
            .services
            .iter()
            .filter(|s| s.namespace == ns && s.hostname == host)
            .take(1)
            .collect(),
        _ => {
            let v: Vec<&ServiceHost> = opts
                .services
                .iter()
                .filter(|s| s.hostname == service)
                .collect();
            let nss: BTreeSet<&str> = v.iter().map(|s| s.namespace.as_str()).collect();
            if nss.len() > 1 {
                return Err(format!("found {service} in multiple namespaces"));
            }
            v.into_iter().take(1).collect()
        }
    };
    match found.first() {
        Some(s) => Ok((
            s.hostname.clone(),
            format!("outbound|{port}||{}", s.hostname),
        )),
        None => Err(format!(
            "could not find service {service} in Istio service registry"
        )),
    }
}

fn header_patterns(headers: &[String]) -> Option<Value> {
    if headers.is_empty() {
        return None;
    }
    let patterns: Vec<Value> = headers
        .iter()
        .map(|h| {
            if let Some(s) = h.strip_prefix('*') {
                json!({"ignoreCase": true, "suffix": s})
            } else if let Some(p) = h.strip_suffix('*') {
                json!({"ignoreCase": true, "prefix": p})
            } else {
                json!({"ignoreCase": true, "exact": h})
            }
        })
        .collect();
    Some(json!({ "patterns": patterns }))
}

fn with_body(b: &Option<RequestBody>) -> Option<Value> {
    let b = b.as_ref()?;
    let mut m = Map::new();
    if b.max_request_bytes != 0 {
        m.insert("maxRequestBytes".into(), json!(b.max_request_bytes));
    }
    if b.allow_partial_message {
        m.insert("allowPartialMessage".into(), json!(true));
    }
    if b.pack_as_bytes {
        m.insert("packAsBytes".into(), json!(true));
    }
    Some(Value::Object(m))
}

fn valid_provider_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("invalid provider name {name:?}"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!("invalid provider name {name:?}"));
    }
    Ok(())
}

fn port_ok(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!(
            "port must be in the range [1, 65535], found: {port}"
        ))
    }
}

fn build_grpc(
    opts: &TranslateOptions,
    c: &ExtAuthzGrpcProvider,
) -> Result<BuiltExtAuthz, Vec<String>> {
    let mut errs = Vec::new();
    if let Err(e) = port_ok(c.port) {
        errs.push(e);
    }
    let looked = lookup_cluster(opts, &c.service, c.port)
        .map_err(|e| errs.push(e))
        .ok();
    let status = status_json(&c.status_on_error)
        .map_err(|e| errs.push(e))
        .ok()
        .flatten();
    let timeout = timeout_json(&c.timeout).map_err(|e| errs.push(e)).ok();
    let (Some((host, cluster)), Some(timeout), true) = (looked, timeout, errs.is_empty()) else {
        return Err(errs);
    };
    let grpc = json!({
        "envoyGrpc": {"clusterName": cluster, "authority": host},
        "timeout": timeout,
    });
    let mut http = Map::new();
    if let Some(s) = status {
        http.insert("statusOnError".into(), s);
    }
    if c.fail_open {
        http.insert("failureModeAllow".into(), json!(true));
    }
    http.insert("grpcService".into(), grpc.clone());
    http.insert("transportApiVersion".into(), json!("V3"));
    if let Some(b) = with_body(&c.include_request_body_in_check) {
        http.insert("withRequestBody".into(), b);
    }
    let mut tcp = Map::new();
    tcp.insert("statPrefix".into(), json!(TCP_STAT_PREFIX));
    if c.fail_open {
        tcp.insert("failureModeAllow".into(), json!(true));
    }
    tcp.insert("transportApiVersion".into(), json!("V3"));
    tcp.insert("grpcService".into(), grpc);
    Ok(BuiltExtAuthz {
        http,
        tcp: Some(tcp),
    })
}

fn build_http(
    opts: &TranslateOptions,
    c: &ExtAuthzHttpProvider,
) -> Result<BuiltExtAuthz, Vec<String>> {
    let mut errs = Vec::new();
    if let Err(e) = port_ok(c.port) {
        errs.push(e);
    }
    let looked = lookup_cluster(opts, &c.service, c.port)
        .map_err(|e| errs.push(e))
        .ok();
    let status = status_json(&c.status_on_error)
        .map_err(|e| errs.push(e))
        .ok()
        .flatten();
    if !c.path_prefix.is_empty() && !c.path_prefix.starts_with('/') {
        errs.push(format!(
            "pathPrefix must begin with `/`, found: {:?}",
            c.path_prefix
        ));
    }
    for (field, vals) in [
        (
            "IncludeRequestHeadersInCheck",
            &c.include_request_headers_in_check,
        ),
        ("IncludeHeadersInCheck", &c.include_headers_in_check),
        (
            "HeadersToDownstreamOnDeny",
            &c.headers_to_downstream_on_deny,
        ),
        (
            "HeadersToDownstreamOnAllow",
            &c.headers_to_downstream_on_allow,
        ),
        ("HeadersToUpstreamOnAllow", &c.headers_to_upstream_on_allow),
    ] {
        if vals.iter().any(|v| v == "*") {
            errs.push(format!(
                "a single wildcard (\"*\") is not supported: {field}"
            ));
        }
    }
    let timeout = timeout_json(&c.timeout).map_err(|e| errs.push(e)).ok();
    let (Some((host, cluster)), Some(timeout), true) = (looked, timeout, errs.is_empty()) else {
        return Err(errs);
    };
    let mut service = Map::new();
    if !c.path_prefix.is_empty() {
        service.insert("pathPrefix".into(), json!(c.path_prefix));
    }
    service.insert(
        "serverUri".into(),
        json!({"timeout": timeout, "uri": format!("http://{host}"), "cluster": cluster}),
    );
    if !c.include_additional_headers_in_check.is_empty() {
        let add: Vec<Value> = c
            .include_additional_headers_in_check
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        service.insert(
            "authorizationRequest".into(),
            json!({ "headersToAdd": add }),
        );
    }
    if !(c.headers_to_upstream_on_allow.is_empty()
        && c.headers_to_downstream_on_deny.is_empty()
        && c.headers_to_downstream_on_allow.is_empty())
    {
        let mut r = Map::new();
        for (k, v) in [
            ("allowedUpstreamHeaders", &c.headers_to_upstream_on_allow),
            ("allowedClientHeaders", &c.headers_to_downstream_on_deny),
            (
                "allowedClientHeadersOnSuccess",
                &c.headers_to_downstream_on_allow,
            ),
        ] {
            if let Some(p) = header_patterns(v) {
                r.insert(k.into(), p);
            }
        }
        service.insert("authorizationResponse".into(), Value::Object(r));
    }
    let mut http = Map::new();
    if let Some(s) = status {
        http.insert("statusOnError".into(), s);
    }
    if c.fail_open {
        http.insert("failureModeAllow".into(), json!(true));
    }
    http.insert("transportApiVersion".into(), json!("V3"));
    http.insert("httpService".into(), Value::Object(service));
    if let Some(b) = with_body(&c.include_request_body_in_check) {
        http.insert("withRequestBody".into(), b);
    }
    let allowed = header_patterns(&c.include_request_headers_in_check)
        .or_else(|| header_patterns(&c.include_headers_in_check));
    if let Some(a) = allowed {
        http.insert("allowedHeaders".into(), a);
    }
    Ok(BuiltExtAuthz { http, tcp: None })
}

/// Istio's `processExtensionProvider` + `getExtAuthz` for one provider name.
fn resolve_provider(opts: &TranslateOptions, name: &str) -> Result<BuiltExtAuthz, String> {
    let mut seen = BTreeSet::new();
    let mut resolved: BTreeMap<&str, Result<BuiltExtAuthz, String>> = BTreeMap::new();
    for p in &opts.extension_providers {
        let mut errs = Vec::new();
        if p.name.is_empty() {
            errs.push("extension provider name must not be empty".to_string());
        } else if !seen.insert(p.name.as_str()) {
            errs.push(format!(
                "extension provider name must be unique, found duplicate: {}",
                p.name
            ));
        }
        if !p.name.is_empty()
            && let Err(e) = valid_provider_name(&p.name)
        {
            errs.push(e);
        }
        let built = if let Some(h) = &p.envoy_ext_authz_http {
            build_http(opts, h)
        } else if let Some(g) = &p.envoy_ext_authz_grpc {
            build_grpc(opts, g)
        } else {
            continue;
        };
        let r = match built {
            Ok(b) if errs.is_empty() => Ok(b),
            Ok(_) => Err(errs.join("; ")),
            Err(e) => {
                errs.extend(e);
                Err(errs.join("; "))
            }
        };
        resolved.insert(p.name.as_str(), r);
    }
    match resolved.remove(name) {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => Err(format!("found errors in provider {name}: {e}")),
        None => Err(format!(
            "available providers are {:?} but found {name:?}",
            resolved.keys().collect::<Vec<_>>()
        )),
    }
}

fn filter_enabled_metadata(tcp: bool, provider: &str) -> Value {
    json!({
        "filter": if tcp { NETWORK_RBAC } else { HTTP_RBAC },
        "path": [{"key": format!("{EXT_AUTHZ_STAT_PREFIX}shadow_effective_policy_id")}],
        "value": {"stringMatch": {"prefix": format!("{EXT_AUTHZ_MATCH_PREFIX}-{provider}")}},
    })
}

fn bad_custom(rules: &RbacRules) -> RbacRules {
    RbacRules {
        action: EnvoyRbacAction::Deny,
        policies: rules
            .policies
            .iter()
            .map(|(k, v)| (format!("{k}{BAD_CUSTOM_SUFFIX}"), v.clone()))
            .collect(),
    }
}

fn custom_filters(
    policies: &[&AuthorizationPolicy],
    tcp: bool,
    opts: &TranslateOptions,
    notes: &mut Vec<TranslateNote>,
) -> Vec<Filter> {
    let mut enforce: BTreeMap<String, RbacRules> = BTreeMap::new();
    let mut dry: BTreeMap<String, RbacRules> = BTreeMap::new();
    for p in policies.iter().filter(|p| p.action() == Action::Custom) {
        let provider = p
            .spec
            .provider
            .as_ref()
            .map(|x| x.name.clone())
            .unwrap_or_default();
        enforce
            .entry(provider.clone())
            .or_insert_with(|| RbacRules::new(EnvoyRbacAction::Deny));
        dry.entry(provider.clone())
            .or_insert_with(|| RbacRules::new(EnvoyRbacAction::Deny));
        let slot = if is_dry_run(p) {
            dry.get_mut(&provider)
        } else {
            enforce.get_mut(&provider)
        };
        if let Some(rules) = slot {
            add_policy(rules, p, Some(&provider), tcp, opts, notes);
        }
    }
    let providers: Vec<String> = enforce.keys().cloned().collect();
    let bad = |rules: &RbacRules| Filter::Rbac {
        tcp,
        config: RbacConfig {
            rules: Some(bad_custom(rules)),
            shadow_rules: None,
            shadow_rules_stat_prefix: None,
        },
    };
    let mut out = Vec::new();
    if providers.len() > 1 && !opts.multiple_custom_providers {
        notes.push(TranslateNote {
            policy_id: None,
            message: format!(
                "multiple CUSTOM authorization providers per workload requires PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS, found {providers:?}"
            ),
        });
        for p in &providers {
            out.push(bad(&enforce[p]));
        }
        return out;
    }
    for p in &providers {
        let built = match resolve_provider(opts, p) {
            Ok(b) => b,
            Err(e) => {
                notes.push(TranslateNote {
                    policy_id: None,
                    message: format!(
                        "failed to process CUSTOM action for provider {p}, will generate deny configs: {e}"
                    ),
                });
                out.push(bad(&enforce[p]));
                continue;
            }
        };
        let mut typed = if tcp {
            match built.tcp {
                Some(t) => t,
                None => {
                    notes.push(TranslateNote {
                        policy_id: None,
                        message: format!(
                            "ignored CUSTOM action with HTTP provider on TCP filter chain for provider {p}"
                        ),
                    });
                    continue;
                }
            }
        } else {
            built.http
        };
        typed.insert(
            "@type".into(),
            json!(if tcp {
                NETWORK_EXT_AUTHZ_TYPE
            } else {
                HTTP_EXT_AUTHZ_TYPE
            }),
        );
        typed.insert(
            "filterEnabledMetadata".into(),
            filter_enabled_metadata(tcp, p),
        );
        let dry_rules = dry.remove(p).filter(|d| !d.policies.is_empty());
        out.push(Filter::Rbac {
            tcp,
            config: RbacConfig {
                rules: dry_rules,
                shadow_rules: enforce.remove(p),
                shadow_rules_stat_prefix: Some(EXT_AUTHZ_STAT_PREFIX.into()),
            },
        });
        out.push(Filter::ExtAuthz {
            tcp,
            provider: p.clone(),
            typed_config: Value::Object(typed),
        });
    }
    out
}

/// The filters as data, in filter-chain order: CUSTOM (Istio's custom
/// builder), then AUDIT, DENY, ALLOW (its local builder).
pub fn translate_filters<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    tcp: bool,
    opts: &TranslateOptions,
) -> (Vec<Filter>, Vec<TranslateNote>) {
    let policies: Vec<&AuthorizationPolicy> = policies.into_iter().collect();
    let mut notes = Vec::new();
    let mut out = custom_filters(&policies, tcp, opts, &mut notes);
    for action in [Action::Audit, Action::Deny, Action::Allow] {
        if let Some(f) = local_filter(&policies, action, tcp, opts, &mut notes) {
            out.push(f);
        }
    }
    (out, notes)
}

/// HTTP filters (`envoy.filters.http.rbac` / `ext_authz`) for the
/// AuthorizationPolicies that apply to one workload, with Istio's notes.
pub fn translate_http<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    opts: &TranslateOptions,
) -> Translation {
    let (f, notes) = translate_filters(policies, false, opts);
    Translation {
        filters: f.iter().map(Filter::to_json).collect(),
        notes,
    }
}

/// Network filters (`envoy.filters.network.rbac` / `ext_authz`) for a TCP chain.
pub fn translate_network<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    opts: &TranslateOptions,
) -> Translation {
    let (f, notes) = translate_filters(policies, true, opts);
    Translation {
        filters: f.iter().map(Filter::to_json).collect(),
        notes,
    }
}

/// [`translate_http`]'s filters alone.
pub fn http_filters<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    opts: &TranslateOptions,
) -> Vec<Value> {
    translate_http(policies, opts).filters
}

/// [`translate_network`]'s filters alone.
pub fn network_filters<'a>(
    policies: impl IntoIterator<Item = &'a AuthorizationPolicy>,
    opts: &TranslateOptions,
) -> Vec<Value> {
    translate_network(policies, opts).filters
}

/// The path settings istiod puts on a sidecar's HTTP connection manager by
/// default (`meshConfig.pathNormalization` unset), as HCM protojson fields to
/// merge into `envoy.filters.network.http_connection_manager`'s typed config.
/// The engine predicts RBAC decisions on paths normalized this way.
pub fn hcm_path_normalization() -> Value {
    hcm_path_settings(&PathNormalization::ISTIO_DEFAULT)
}

/// HCM protojson fields for any [`PathNormalization`] (`mergeSlashes` only when true).
pub fn hcm_path_settings(n: &PathNormalization) -> Value {
    let mut m = Map::new();
    m.insert("normalizePath".into(), json!(n.normalize_path));
    if n.merge_slashes {
        m.insert("mergeSlashes".into(), json!(true));
    }
    m.insert(
        "pathWithEscapedSlashesAction".into(),
        json!(n.escaped_slashes.as_str()),
    );
    Value::Object(m)
}
