//! The HTTP front of the API server: path routing for discovery and for
//! `/api/v1/...` and `/apis/GROUP/VERSION/...` resource paths, verbs (get,
//! list, watch, create, update, patch, delete, deletecollection), query
//! parameters (selectors, limit/continue, watch, as=Table), authentication
//! and fault injection. Everything answers with JSON, errors as `Status`.
//!
//! The folder holds the API server's HTTP side: this router and its verbs,
//! `discovery`, `patch` (the patch formats), `table` (server-side
//! printing) and `watch` (event streams). The objects themselves live in
//! `crate::store` (with the type registry and the controllers), below this
//! layer, because the mesh, the sidecars and the kubelet side read them too;
//! putting them here would make those layers depend on the API server, which
//! depends on them through `App`.

mod discovery;
mod patch;
mod table;
mod watch;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::app::{App, ConnInfo};
use crate::error::ApiError;
use crate::faults::{Fault, FaultAction};
use crate::path::{Query, ResourcePath, q1, qbool, query_map};
use crate::store::resources::{self, ResourceDef};
use crate::store::{Store, meta_str};
use meshpolicy::selector::{FieldSelector, Selector};
use table::IncludeObject;

fn json_response(code: StatusCode, v: &Value) -> Response {
    json_body(code, serde_json::to_vec(v).unwrap_or_default())
}

/// A response whose body is JSON already encoded (or streamed).
fn json_body(code: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = (code, body.into()).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

/// Parse `/api/v1/...` or `/apis/G/V/...` after the group-version prefix.
fn parse_path(
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> Result<ResourcePath, ApiError> {
    let (ns, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some((*ns).to_string()), tail),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some((*n).to_string()), None),
        [p, n, s] => (*p, Some((*n).to_string()), Some((*s).to_string())),
        _ => return Err(ApiError::no_route(path)),
    };
    let def = resources::find(group, version, plural).ok_or_else(|| ApiError::no_route(path))?;
    if ns.is_some() && !def.namespaced {
        return Err(ApiError::no_route(path));
    }
    if let Some(s) = &sub
        && !def.subresources.contains(&s.as_str())
    {
        return Err(ApiError::no_route(path));
    }
    if name.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::no_route(path));
    }
    Ok(ResourcePath {
        def,
        namespace: ns,
        name,
        sub,
    })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn authorized(app: &App, req: &Request) -> bool {
    let auth = &app.auth;
    if auth.token.is_none() && !auth.client_cert {
        return true;
    }
    if auth.client_cert
        && req
            .extensions()
            .get::<ConnInfo>()
            .is_some_and(|c| c.client_cert)
    {
        return true;
    }
    if let Some(t) = &auth.token {
        let got = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if got == Some(t.as_str()) {
            return true;
        }
    }
    false
}

/// Entry point for every request.
pub async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    if !authorized(&app, &req) {
        return ApiError::unauthorized().into_response();
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let result = route(app.clone(), req).await;
    if method != Method::GET {
        app.forget_removed_pods();
    }
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, "request failed: {}", e.message);
            e.into_response()
        }
    }
}

async fn route(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get_only = |r: Option<Value>| -> Result<Response, ApiError> {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed(req.method().as_str(), &path));
        }
        r.map(|v| ok(&v)).ok_or_else(|| ApiError::no_route(&path))
    };
    match segs.as_slice() {
        ["version"] => get_only(Some(discovery::version())),
        ["healthz" | "readyz" | "livez"] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => get_only(Some(discovery::api_versions(&app.addr.to_string()))),
        ["apis"] => get_only(Some(discovery::api_group_list())),
        ["api", v] => get_only(discovery::resource_list("", v)),
        ["apis", g] => get_only(discovery::api_group(g)),
        ["apis", g, v] => get_only(discovery::resource_list(g, v)),
        ["openapi", "v3"] => get_only(Some(discovery::openapi_v3_root())),
        ["openapi", "v3", rest @ ..] => get_only(discovery::openapi_v3_doc(&rest.join("/"))),
        ["api", v, rest @ ..] => {
            let t = parse_path("", v, rest, &path)?;
            resource(app, t, req).await
        }
        ["apis", g, v, rest @ ..] => {
            let t = parse_path(g, v, rest, &path)?;
            resource(app, t, req).await
        }
        _ => Err(ApiError::no_route(&path)),
    }
}

fn verb_of(method: &Method, t: &ResourcePath, q: &Query) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if qbool(q, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type json): {e}"
        ))
    })
}

/// A resource request: faults first, then the pod subresources the kubelet
/// side serves, then one function per verb.
async fn resource(app: Arc<App>, t: ResourcePath, req: Request) -> Result<Response, ApiError> {
    let q = query_map(req.uri().query());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let verb = verb_of(&method, &t, &q);
    let container = q1(&q, "container");
    let cut_after = apply_faults(&app, &t, verb, &method, &path, container).await?;
    match t.sub.as_deref() {
        Some("exec") => return crate::kubelet::podexec::exec(app, t, q, req, cut_after).await,
        Some("log") if method == Method::GET => {
            return crate::kubelet::podexec::logs(app, t, q, cut_after);
        }
        Some("log") => return Err(ApiError::method_not_allowed(method.as_str(), &path)),
        _ => {}
    }
    let table = wants_table(req.headers()).then(|| IncludeObject::parse(q1(&q, "includeObject")));
    let ctype = media_type(req.headers());
    match verb {
        "get" => get(&app, &t, table),
        "list" => list(&app, &t, &q, table),
        "watch" => watch::watch(&app, &t, &q, table),
        "create" => create(&app, &t, &q, &ctype, &read_body(req).await?, &path),
        "update" => update(&app, &t, &read_body(req).await?),
        "patch" => patch_object(&app, &t, &q, &ctype, &read_body(req).await?),
        "delete" => delete(&app, &t),
        "deletecollection" => delete_collection(&app, &t, &q),
        _ => Err(ApiError::method_not_allowed(method.as_str(), &path)),
    }
}

/// Applies the `--fault`s matching this request: an error status, a hang
/// (then 504), or the byte count after which an exec or log stream is cut.
async fn apply_faults(
    app: &App,
    t: &ResourcePath,
    verb: &str,
    method: &Method,
    path: &str,
    container: Option<&str>,
) -> Result<Option<usize>, ApiError> {
    let res_name = match &t.sub {
        Some(s) => format!("{}/{s}", t.def.plural),
        None => t.def.plural.to_string(),
    };
    let fault_verb = match t.sub.as_deref() {
        Some("exec") => "exec",
        Some("log") => "log",
        _ => verb,
    };
    let (ns, name) = (t.ns(), t.name());
    let mut cut_after = None;
    for f in app
        .faults
        .iter()
        .filter(|f| f.matches(fault_verb, &res_name, ns, name, container))
    {
        match &f.action {
            FaultAction::Status { code, retry_after } => {
                return Err(Fault::error(*code, *retry_after));
            }
            FaultAction::Hang(d) => {
                // Said on stderr so a test can kill the server while a client
                // is provably waiting on this request (not after a guessed delay).
                tracing::warn!("meshsim: fault: holding {method} {path} for {d:?}");
                tokio::select! {
                    _ = tokio::time::sleep(*d) => {}
                    _ = app.cancel.cancelled() => {}
                }
                return Err(Fault::error(504, None));
            }
            FaultAction::CutExecAfter(n) if fault_verb == "exec" => cut_after = Some(*n),
            FaultAction::CutLogAfter(n) if fault_verb == "log" => cut_after = Some(*n),
            _ => {}
        }
    }
    Ok(cut_after)
}

/// The request's media type (`Content-Type` without parameters).
fn media_type(headers: &HeaderMap) -> String {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ctype.split(';').next().unwrap_or("").trim().to_string()
}

fn create(
    app: &App,
    t: &ResourcePath,
    q: &Query,
    ctype: &str,
    body: &[u8],
    path: &str,
) -> Result<Response, ApiError> {
    let obj = if ctype == "application/vnd.kubernetes.protobuf" {
        crate::protobuf::decode(body)
            .map_err(|e| ApiError::new(415, "UnsupportedMediaType", e.to_string()))?
    } else {
        parse_json(body)?
    };
    if t.name.is_some() {
        return Err(ApiError::method_not_allowed("POST", path));
    }
    let mut st = app.lock_store()?;
    if q1(q, "dryRun").is_some() {
        return Ok(json_response(StatusCode::CREATED, &obj));
    }
    store_new(&mut st, t, obj)
}

/// Creates `obj` at `t` and answers 201 with it.
fn store_new(st: &mut Store, t: &ResourcePath, obj: Value) -> Result<Response, ApiError> {
    let created = st.create(t.def, t.ns(), obj)?;
    st.reconcile(meta_str(&created, "namespace"));
    Ok(json_response(
        StatusCode::CREATED,
        &with_version(created, t.def),
    ))
}

/// Writes `replicas` into the object behind a `scale` subresource and
/// answers with its new Scale.
fn write_scale(
    st: &mut Store,
    t: &ResourcePath,
    mut current: Value,
    replicas: Option<i64>,
    missing: &str,
) -> Result<Response, ApiError> {
    let replicas = replicas.ok_or_else(|| ApiError::bad_request(missing.to_string()))?;
    current["spec"]["replicas"] = json!(replicas);
    let o = st.update(t.def, t.ns(), t.name(), current, false)?;
    st.reconcile(t.ns());
    Ok(ok(&scale_of(&o)))
}

/// PUT of an object or of its `status`, `scale`, `finalize` or
/// `ephemeralcontainers` subresource.
fn update(app: &App, t: &ResourcePath, body: &[u8]) -> Result<Response, ApiError> {
    let obj = parse_json(body)?;
    let (ns, name) = (t.ns(), t.name());
    let mut st = app.lock_store()?;
    let current = |st: &Store| {
        st.get(t.def.key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(t.def.plural, t.def.group, name))
    };
    let out = match t.sub.as_deref() {
        Some("scale") => {
            let cur = current(&st)?;
            let replicas = obj["spec"]["replicas"].as_i64();
            return write_scale(&mut st, t, cur, replicas, "spec.replicas is required");
        }
        Some("finalize") => current(&st)?,
        Some("status") => st.update(t.def, ns, name, obj, true)?,
        Some("ephemeralcontainers") => {
            crate::kubelet::podexec::add_ephemeral(&mut st, t.def, ns, name, &obj)?
        }
        _ => st.update(t.def, ns, name, obj, false)?,
    };
    st.reconcile(ns);
    Ok(ok(&with_version(out, t.def)))
}

fn delete(app: &App, t: &ResourcePath) -> Result<Response, ApiError> {
    let (ns, name) = (t.ns(), t.name());
    let mut st = app.lock_store()?;
    let mut out = st.delete(t.def, ns, name)?;
    st.reconcile(ns);
    if t.def.key() == resources::NAMESPACES {
        out["status"]["phase"] = json!("Terminating");
        out["metadata"]["deletionTimestamp"] = json!(crate::store::now_ts());
    }
    if t.def.key() == resources::NAMESPACES || t.def.key() == resources::PODS {
        return Ok(ok(&with_version(out, t.def)));
    }
    Ok(ok(&json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": t.def.group, "kind": t.def.plural, "uid": meta_str(&out, "uid")}
    })))
}

fn delete_collection(app: &App, t: &ResourcePath, q: &Query) -> Result<Response, ApiError> {
    let sel = Selectors::parse(q, t.def)?;
    let mut st = app.lock_store()?;
    let victims: Vec<(String, String)> = st
        .list(t.def.key(), t.namespace.as_deref())
        .filter(|o| sel.matches(o))
        .map(|o| {
            (
                meta_str(o, "namespace").to_string(),
                meta_str(o, "name").to_string(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (n, nm) in victims {
        if let Ok(o) = st.delete(t.def, &n, &nm) {
            items.push(with_version(o, t.def));
        }
    }
    st.reconcile(t.ns());
    Ok(ok(
        &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": {"resourceVersion": st.resource_version().to_string()}, "items": items}),
    ))
}

fn scale_of(o: &Value) -> Value {
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta_str(o, "name"), "namespace": meta_str(o, "namespace"), "uid": meta_str(o, "uid"),
                     "resourceVersion": meta_str(o, "resourceVersion"), "creationTimestamp": meta_str(o, "creationTimestamp")},
        "spec": {"replicas": o["spec"]["replicas"].clone()},
        "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": table::selector_string(&o["spec"]["selector"])},
    })
}

/// Set apiVersion to the version the client asked for (v1 vs v1beta1).
fn with_version(mut obj: Value, def: &ResourceDef) -> Value {
    if obj.is_object() {
        obj["apiVersion"] = json!(def.api_version());
    }
    obj
}

/// The `labelSelector` and `fieldSelector` query parameters, parsed by
/// meshpolicy (the one selector grammar) for objects of one kind.
struct Selectors {
    labels: Selector,
    fields: FieldSelector,
}

impl Selectors {
    fn parse(q: &Query, def: &ResourceDef) -> Result<Self, ApiError> {
        let bad = |e: meshpolicy::SelectorError| ApiError::bad_request(e.to_string());
        Ok(Self {
            labels: Selector::parse(q1(q, "labelSelector").unwrap_or("")).map_err(bad)?,
            fields: FieldSelector::parse(q1(q, "fieldSelector").unwrap_or(""), def.kind)
                .map_err(bad)?,
        })
    }

    fn is_everything(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    fn matches(&self, o: &Value) -> bool {
        self.labels.matches_json(o["metadata"].get("labels")) && self.fields.matches(o)
    }
}

fn get(app: &App, t: &ResourcePath, table: Option<IncludeObject>) -> Result<Response, ApiError> {
    let st = app.lock_store()?;
    let (ns, name) = (t.ns(), t.name());
    let obj = st
        .get_raw(t.def.key(), ns, name)
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .ok_or_else(|| ApiError::not_found(t.def.plural, t.def.group, name))?;
    if t.sub.as_deref() == Some("scale") {
        return Ok(ok(&scale_of(&obj)));
    }
    let obj = with_version(obj, t.def);
    if let Some(include) = table {
        let rv = st.resource_version().to_string();
        return Ok(ok(&table::table(t.def.key(), &[&obj], &rv, None, include)));
    }
    Ok(ok(&obj))
}

fn encode_continue(ns: &str, name: &str, rv: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(
        json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}")}).to_string(),
    )
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn list(
    app: &App,
    t: &ResourcePath,
    q: &Query,
    table: Option<IncludeObject>,
) -> Result<Response, ApiError> {
    let sel = Selectors::parse(q, t.def)?;
    let limit: usize = match q1(q, "limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let after = match q1(q, "continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_continue(c)?),
        None => None,
    };
    let st = app.lock_store()?;
    let rv = st.resource_version();
    // Without selectors nothing needs parsing: the stored JSON is spliced in.
    let filtered = !sel.is_everything();
    let mut picked: Vec<(&str, &str, &Bytes)> = Vec::new();
    let mut more = false;
    let mut remaining = 0usize;
    for (ons, oname, raw) in st.list_raw_bytes(t.def.key(), t.namespace.as_deref()) {
        if let Some((ans, aname)) = &after
            && (ons, oname) <= (ans.as_str(), aname.as_str())
        {
            continue;
        }
        if filtered {
            let o: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
            if !sel.matches(&o) {
                continue;
            }
        }
        if limit > 0 && picked.len() >= limit {
            more = true;
            if filtered {
                // Like Kubernetes: no remainingItemCount for filtered lists.
                break;
            }
            remaining += 1;
            continue;
        }
        picked.push((ons, oname, raw));
    }
    let cont = match picked.last() {
        Some((lns, lname, _)) if more => Some(encode_continue(lns, lname, rv)),
        _ => None,
    };
    if let Some(include) = table {
        let items: Vec<Value> = picked
            .iter()
            .map(|(_, _, raw)| {
                with_version(serde_json::from_slice(raw).unwrap_or(Value::Null), t.def)
            })
            .collect();
        let refs: Vec<&Value> = items.iter().collect();
        let mut tb = table::table(
            t.def.key(),
            &refs,
            &rv.to_string(),
            cont.as_deref(),
            include,
        );
        if remaining > 0 {
            tb["metadata"]["remainingItemCount"] = json!(remaining);
        }
        return Ok(ok(&tb));
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        if remaining > 0 {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let head = json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": meta});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let prefix = api_version_prefix(t.def);
    let mut body =
        Vec::with_capacity(head.len() + picked.iter().map(|p| p.2.len() + 1).sum::<usize>() + 16);
    body.extend_from_slice(&head[..head.len().saturating_sub(1)]);
    body.extend_from_slice(b",\"items\":[");
    for (i, (_, _, raw)) in picked.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        push_object(&mut body, raw, &prefix, t.def);
    }
    body.extend_from_slice(b"]}");
    Ok(json_body(StatusCode::OK, body))
}

/// How a stored object serialized for `def`'s version begins (serde_json
/// writes keys sorted, so `apiVersion` comes first).
fn api_version_prefix(def: &ResourceDef) -> Vec<u8> {
    let mut p = b"{\"apiVersion\":".to_vec();
    p.extend_from_slice(&serde_json::to_vec(&def.api_version()).unwrap_or_default());
    p
}

/// Append a stored object, rewriting apiVersion only when it differs from
/// the version the client asked for.
fn push_object(out: &mut Vec<u8>, raw: &[u8], prefix: &[u8], def: &ResourceDef) {
    if raw.starts_with(prefix) {
        out.extend_from_slice(raw);
    } else {
        let v = with_version(serde_json::from_slice(raw).unwrap_or(Value::Null), def);
        out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
    }
}

fn patch_object(
    app: &App,
    t: &ResourcePath,
    q: &Query,
    ctype: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (ns, name) = (t.ns(), t.name());
    let patch_doc: Value = if ctype == "application/apply-patch+yaml" {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        parse_json(body)?
    };
    let mut st = app.lock_store()?;
    let existing = st.get(t.def.key(), ns, name).cloned();
    let dry = q1(q, "dryRun").is_some();
    let Some(existing) = existing else {
        if ctype == "application/apply-patch+yaml" {
            if q1(q, "fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if dry {
                return Ok(json_response(StatusCode::CREATED, &patch_doc));
            }
            crate::store::check_shape(t.def, &patch_doc)?;
            let mut obj = patch_doc;
            obj["metadata"]["name"] = json!(name);
            return store_new(&mut st, t, obj);
        }
        return Err(ApiError::not_found(t.def.plural, t.def.group, name));
    };
    let scale = t.sub.as_deref() == Some("scale");
    let mut base = if scale {
        scale_of(&existing)
    } else {
        existing.clone()
    };
    apply_patch(&mut base, ctype, &patch_doc, t.def)?;
    if scale {
        let replicas = base["spec"]["replicas"].as_i64();
        return write_scale(
            &mut st,
            t,
            existing,
            replicas,
            "spec.replicas must be an integer",
        );
    }
    if dry {
        return Ok(ok(&base));
    }
    if t.sub.as_deref() == Some("ephemeralcontainers") {
        let out = crate::kubelet::podexec::add_ephemeral(&mut st, t.def, ns, name, &base)?;
        st.reconcile(ns);
        return Ok(ok(&with_version(out, t.def)));
    }
    // A patch never carries a stale resourceVersion check unless it sets one explicitly.
    if meta_str(&patch_doc, "resourceVersion").is_empty()
        && let Some(m) = base.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.remove("resourceVersion");
    }
    let out = st.update(t.def, ns, name, base, t.sub.as_deref() == Some("status"))?;
    st.reconcile(ns);
    Ok(ok(&with_version(out, t.def)))
}

/// The API server's 415 for a patch body it cannot read; `more` follows the
/// media types every resource accepts.
fn unknown_format(more: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{more}"
        ),
    )
}

/// Applies a patch document of media type `ctype` to `base`, as the API
/// server does for each patch type it accepts.
fn apply_patch(
    base: &mut Value,
    ctype: &str,
    patch_doc: &Value,
    def: &ResourceDef,
) -> Result<(), ApiError> {
    match ctype {
        "application/merge-patch+json" => patch::merge_patch(base, patch_doc),
        "application/json-patch+json" => {
            patch::json_patch(base, patch_doc).map_err(|e| match e {
                patch::PatchError::Test => ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                ),
                patch::PatchError::Invalid(m) => ApiError::new(422, "Invalid", m),
            })?
        }
        "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
            if def.group == "security.istio.io" && ctype == "application/strategic-merge-patch+json"
            {
                return Err(unknown_format(""));
            }
            patch::strategic_merge(base, patch_doc)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?
        }
        other => {
            return Err(unknown_format(&format!(
                ", application/strategic-merge-patch+json (got {other:?})"
            )));
        }
    }
    Ok(())
}
