//! The object store: every API object keyed by resource type, namespace and
//! name, with a global resourceVersion counter, optimistic concurrency (409 on
//! a stale resourceVersion), owner-reference garbage collection, namespace
//! cascade deletion and a watch event feed (a broadcast channel plus a short
//! history so `kubectl get -w` can resume from a list's resourceVersion).
//!
//! Memory: objects are held as their serialized JSON (a pod with sidecars is
//! about 9 KB that way, against 40 KB or more as a `serde_json::Value` tree),
//! so 10,000 pods fit in well under 200 MB. [`Store::get`] and [`Store::list`]
//! still hand out `&Value`: they parse on first use and cache the tree, and
//! every write (and the server's ticker, through [`Store::trim_cache`]) drops
//! the cached trees once more than [`CACHE_LIMIT`] are held. The API layer
//! reads the serialized form directly (`Store::list_raw`, [`Store::get_raw`])
//! and never fills the cache. The event history keeps serialized objects too,
//! bounded by count and bytes; the broadcast ring is short, and watchers that
//! fall behind catch up from the history.
//!
//! Beside it: [`resources`], the registry of served types, and
//! [`controllers`], admission defaults and the controllers that run on writes.

pub mod controllers;
pub mod resources;

use std::cell::{Cell, OnceCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use resources::{ResKey, ResourceDef};

/// A change to one object, as sent to watchers.
#[derive(Debug, Clone)]
pub struct Event {
    pub key: ResKey,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub rv: u64,
    pub object: EventObject,
}

/// The object of an [`Event`]: its serialized JSON (shared with the store),
/// parsed on first use. It derefs to [`Value`]. Each clone (every watcher
/// gets one) parses for itself, so the broadcast ring never holds parsed
/// trees, only the shared bytes.
pub struct EventObject {
    raw: Bytes,
    parsed: OnceLock<Value>,
}

impl EventObject {
    /// Wrap serialized JSON.
    pub fn from_raw(raw: Bytes) -> Self {
        Self {
            raw,
            parsed: OnceLock::new(),
        }
    }

    /// The parsed object, by value.
    pub fn into_value(self) -> Value {
        match self.parsed.into_inner() {
            Some(v) => v,
            None => serde_json::from_slice(&self.raw).unwrap_or(Value::Null),
        }
    }
}

impl Clone for EventObject {
    fn clone(&self) -> Self {
        Self::from_raw(self.raw.clone())
    }
}

impl std::fmt::Debug for EventObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::ops::Deref for EventObject {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_slice(&self.raw).unwrap_or(Value::Null))
    }
}

/// One stored object: its serialized JSON plus, while in use, the parsed tree.
struct Stored {
    raw: Bytes,
    parsed: OnceCell<Value>,
}

impl Stored {
    fn new(obj: &Value) -> Self {
        Self {
            raw: Bytes::from(serde_json::to_vec(obj).unwrap_or_default()),
            parsed: OnceCell::new(),
        }
    }
}

/// A past event in compact form (see [`Store::events_since`]).
struct PastEvent {
    key: ResKey,
    kind: &'static str,
    rv: u64,
    raw: Bytes,
}

/// Timing knobs for simulated behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long after creation a pod becomes Running and Ready (simulated time).
    pub ready_delay: Duration,
    /// Multiplier applied to simulated waits.
    pub time_scale: f64,
}

/// Most events kept for watches that resume from an older resourceVersion.
const HISTORY: usize = 4096;
/// Most bytes of serialized objects kept in that history.
const HISTORY_BYTES: usize = 8 * 1024 * 1024;
/// Slots in the broadcast ring (each holds serialized bytes shared with the
/// history); slower watchers catch up from the history.
const BROADCAST: usize = 1024;
/// Parsed trees kept cached before a write or a tick drops them all.
pub const CACHE_LIMIT: usize = 256;

/// All objects of the simulated cluster.
pub struct Store {
    rv: u64,
    objects: HashMap<ResKey, BTreeMap<(String, String), Stored>>,
    events: broadcast::Sender<Event>,
    history: VecDeque<PastEvent>,
    history_bytes: usize,
    /// How many [`Stored::parsed`] cells are filled.
    cached: Cell<usize>,
    /// Pods removed since the last [`Store::take_removed_pods`] (their logs go too).
    removed_pods: Vec<(String, String)>,
    pub(crate) next_pod_ip: u32,
    pub(crate) next_svc_ip: u32,
    pub(crate) next_node_port: u32,
    /// Pods waiting to become ready: (when, namespace, name, uid).
    pub(crate) ready_queue: Vec<(Instant, String, String, String)>,
    pub timing: Timing,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("rv", &self.rv)
            .finish_non_exhaustive()
    }
}

/// Current time as Kubernetes writes it (RFC 3339, seconds).
pub fn now_ts() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random UUID (v4 layout) for metadata.uid.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::rng().random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// Characters Kubernetes uses for generated name suffixes.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix like the ones generateName and ReplicaSets produce.
pub fn random_suffix(n: usize) -> String {
    let mut r = rand::rng();
    (0..n)
        .map(|_| SAFE_ALPHABET[r.random_range(0..SAFE_ALPHABET.len())] as char)
        .collect()
}

/// Rejects objects whose structural fields have the wrong JSON type, as the real
/// API server does when it decodes a body into its Go type (400). The controllers
/// and the mesh assign into these fields (`obj["spec"]["replicas"] = ...`), which
/// panics on an array or a string; checking at the store's door keeps every stored
/// object safe to index.
pub fn check_shape(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    const OBJECTS: &[&str] = &[
        "metadata",
        "metadata/labels",
        "metadata/annotations",
        "spec",
        "status",
        "spec/selector",
        "spec/template",
        "spec/template/metadata",
        "spec/template/metadata/labels",
        "spec/template/metadata/annotations",
        "spec/template/spec",
    ];
    const ARRAYS_OF_OBJECTS: &[&str] = &[
        "spec/ports",
        "spec/containers",
        "spec/initContainers",
        "spec/volumes",
        "spec/template/spec/containers",
        "spec/template/spec/initContainers",
        "spec/template/spec/volumes",
        "status/conditions",
        "status/containerStatuses",
    ];
    let bad = |path: &str, want: &str| {
        ApiError::bad_request(format!(
            "{} in version \"v1\" cannot be handled: {}: expected {want}",
            def.plural,
            path.replace('/', ".")
        ))
    };
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    for path in OBJECTS {
        match obj.pointer(&format!("/{path}")) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(bad(path, "an object")),
        }
    }
    for path in ARRAYS_OF_OBJECTS {
        match obj.pointer(&format!("/{path}")) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_object) => {}
            Some(_) => return Err(bad(path, "a list of objects")),
        }
    }
    Ok(())
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A JSON object of strings (labels, annotations) as a map; values that are
/// not strings are skipped.
pub fn string_map(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The labels of a stored object.
pub fn labels_of(obj: &Value) -> std::collections::BTreeMap<String, String> {
    string_map(&obj["metadata"]["labels"])
}

/// Whether one of `obj`'s ownerReferences names the object with `uid`.
pub(crate) fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|r| r.iter().any(|o| o["uid"].as_str() == Some(uid)))
}

/// Sets `apiVersion` and `kind` from the type it is stored as.
fn stamp_type(obj: &mut Value, def: &ResourceDef) {
    obj["apiVersion"] = json!(def.api_version());
    obj["kind"] = json!(def.kind);
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let o = obj.as_object_mut().expect("object ensured above");
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("object ensured above")
}

impl Store {
    pub fn new(timing: Timing) -> Self {
        let (events, _) = broadcast::channel(BROADCAST);
        let mut s = Self {
            rv: 1000,
            objects: HashMap::new(),
            events,
            history: VecDeque::new(),
            history_bytes: 0,
            cached: Cell::new(0),
            removed_pods: Vec::new(),
            next_pod_ip: 2,
            next_svc_ip: 10,
            next_node_port: 30000,
            ready_queue: Vec::new(),
            timing,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = s.create(
                resources::preferred(resources::NAMESPACES),
                "",
                json!({"metadata": {"name": ns}}),
            );
        }
        let _ = s.create(
            resources::preferred(resources::SERVICES),
            "default",
            json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
        );
        for class in resources::default_gateway_classes() {
            let _ = s.create(resources::preferred(resources::GATEWAYCLASSES), "", class);
        }
        s
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Events newer than `rv`, or None when the history no longer reaches back that far.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Event>> {
        if rv >= self.rv {
            return Some(Vec::new());
        }
        match self.history.front() {
            Some(first) if first.rv <= rv + 1 => Some(
                self.history
                    .iter()
                    .filter(|e| e.rv > rv)
                    .map(|e| Event {
                        key: e.key,
                        kind: e.kind,
                        rv: e.rv,
                        object: EventObject::from_raw(e.raw.clone()),
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    fn emit(&mut self, key: ResKey, kind: &'static str, raw: Bytes) {
        while !self.history.is_empty()
            && (self.history.len() >= HISTORY || self.history_bytes + raw.len() > HISTORY_BYTES)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_bytes -= old.raw.len();
            }
        }
        self.history_bytes += raw.len();
        self.history.push_back(PastEvent {
            key,
            kind,
            rv: self.rv,
            raw: raw.clone(),
        });
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Event {
                key,
                kind,
                rv: self.rv,
                object: EventObject::from_raw(raw),
            });
        }
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn parsed<'a>(&self, s: &'a Stored) -> &'a Value {
        s.parsed.get_or_init(|| {
            self.cached.set(self.cached.get() + 1);
            serde_json::from_slice(&s.raw).unwrap_or(Value::Null)
        })
    }

    /// Drop the cached parsed trees when more than `keep` are held.
    pub fn trim_cache(&mut self, keep: usize) {
        if self.cached.get() <= keep {
            return;
        }
        for m in self.objects.values_mut() {
            for s in m.values_mut() {
                s.parsed.take();
            }
        }
        self.cached.set(0);
    }

    /// Pods removed (deleted, garbage-collected, or with their namespace)
    /// since the last call, as (namespace, name).
    pub fn take_removed_pods(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.removed_pods)
    }

    fn stored(&self, key: ResKey, ns: &str, name: &str) -> Option<&Stored> {
        self.objects
            .get(&key)?
            .get(&(ns.to_string(), name.to_string()))
    }

    pub fn get(&self, key: ResKey, ns: &str, name: &str) -> Option<&Value> {
        self.stored(key, ns, name).map(|s| self.parsed(s))
    }

    /// The serialized JSON of one object.
    pub fn get_raw(&self, key: ResKey, ns: &str, name: &str) -> Option<Bytes> {
        self.stored(key, ns, name).map(|s| s.raw.clone())
    }

    /// Objects of a type, in one namespace or (None) everywhere, sorted by namespace/name.
    pub fn list<'a>(
        &'a self,
        key: ResKey,
        ns: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
        Box::new(self.list_raw(key, ns).map(move |(_, _, s)| self.parsed(s)))
    }

    /// Visit objects like [`Store::list`] but without filling the parse
    /// cache: each object is parsed for the call and dropped after it. Use
    /// this for scans over many objects (every pod of a large cluster).
    pub fn for_each(&self, key: ResKey, ns: Option<&str>, mut f: impl FnMut(&Value)) {
        for (_, _, s) in self.list_raw(key, ns) {
            match s.parsed.get() {
                Some(v) => f(v),
                None => f(&serde_json::from_slice(&s.raw).unwrap_or(Value::Null)),
            }
        }
    }

    /// Like [`Store::list`], as (namespace, name, serialized JSON), without parsing.
    pub fn list_raw_bytes<'a>(
        &'a self,
        key: ResKey,
        ns: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Bytes)> + 'a {
        self.list_raw(key, ns).map(|(n, m, s)| (n, m, &s.raw))
    }

    fn list_raw<'a>(
        &'a self,
        key: ResKey,
        ns: Option<&str>,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a str, &'a Stored)> + 'a> {
        let Some(m) = self.objects.get(&key) else {
            return Box::new(std::iter::empty());
        };
        match ns {
            None => Box::new(m.iter().map(|((n, nm), s)| (n.as_str(), nm.as_str(), s))),
            Some(ns) => {
                let ns = ns.to_string();
                Box::new(
                    m.range((ns.clone(), String::new())..)
                        .take_while(move |((n, _), _)| *n == ns)
                        .map(|((n, nm), s)| (n.as_str(), nm.as_str(), s)),
                )
            }
        }
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.get(resources::NAMESPACES, "", ns).is_some()
    }

    /// Write an object directly (controllers), bumping resourceVersion and notifying watchers.
    pub(crate) fn put(&mut self, key: ResKey, mut obj: Value, added: bool) -> Value {
        let rv = self.bump();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let stored = Stored::new(&obj);
        self.emit(
            key,
            if added { "ADDED" } else { "MODIFIED" },
            stored.raw.clone(),
        );
        self.trim_cache(CACHE_LIMIT);
        if let Some(old) = self
            .objects
            .entry(key)
            .or_default()
            .insert((ns, name), stored)
            && old.parsed.get().is_some()
        {
            self.cached.set(self.cached.get().saturating_sub(1));
        }
        obj
    }

    /// Create an object (POST).
    pub fn create(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        check_shape(def, &obj)?;
        let key = def.key();
        let body_ns = meta_str(&obj, "namespace").to_string();
        let ns = if def.namespaced {
            if !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let ns = if ns.is_empty() {
                body_ns
            } else {
                ns.to_string()
            };
            if !self.namespace_exists(&ns) {
                return Err(ApiError::not_found("namespaces", "", &ns));
            }
            if self
                .get(resources::NAMESPACES, "", &ns)
                .and_then(|n| n.get("metadata"))
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some()
            {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        def.plural,
                        meta_str(&obj, "name")
                    ),
                ));
            }
            ns
        } else {
            String::new()
        };
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let gen_name = meta_str(&obj, "generateName").to_string();
            if gen_name.is_empty() {
                return Err(ApiError::invalid(
                    def.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{gen_name}{}", random_suffix(5));
        }
        if !meshpolicy::names::is_dns_subdomain(&name) {
            return Err(ApiError::invalid(
                def.kind,
                &name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        if self.get(key, &ns, &name).is_some() {
            return Err(ApiError::already_exists(def.plural, def.group, &name));
        }
        stamp_type(&mut obj, def);
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            if def.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(new_uid()));
            m.insert("creationTimestamp".into(), json!(now_ts()));
            m.remove("deletionTimestamp");
            m.remove("resourceVersion");
            m.remove("managedFields");
            if obj.get("spec").is_some() {
                meta_mut(&mut obj).insert("generation".into(), json!(1));
            }
        }
        self.admit(def, &ns, &mut obj)?;
        let out = self.put(key, obj, true);
        self.after_create(def, &ns, &out);
        Ok(out)
    }

    /// Replace an object (PUT). `status_only` for the `/status` subresource.
    pub fn update(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let key = def.key();
        let Some(existing) = self.get(key, ns, name).cloned() else {
            return Err(ApiError::not_found(def.plural, def.group, name));
        };
        check_shape(def, &obj)?;
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let rv = meta_str(&obj, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&existing, "resourceVersion") {
            return Err(ApiError::conflict(def.plural, def.group, name));
        }
        let mut next = if status_only {
            let mut n = existing.clone();
            n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            n
        } else {
            if let Some(status) = existing.get("status")
                && def.subresources.contains(&"status")
            {
                obj["status"] = status.clone();
            }
            obj
        };
        stamp_type(&mut next, def);
        {
            let old_meta = existing.get("metadata").cloned().unwrap_or(json!({}));
            let m = meta_mut(&mut next);
            m.insert("name".into(), json!(name));
            if def.namespaced {
                m.insert("namespace".into(), json!(ns));
            }
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                match old_meta.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.remove("resourceVersion");
        }
        if existing.get("spec") != next.get("spec") {
            let g = existing["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut next).insert("generation".into(), json!(g));
        }
        self.admit_update(def, &existing, &mut next);
        let mut cmp = existing.clone();
        meta_mut(&mut cmp).remove("resourceVersion");
        if cmp == next {
            return Ok(existing);
        }
        Ok(self.put(key, next, false))
    }

    /// Delete an object and, through ownerReferences and namespaces, its dependents.
    pub fn delete(&mut self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = def.key();
        let Some(obj) = self.remove(key, ns, name) else {
            return Err(ApiError::not_found(def.plural, def.group, name));
        };
        if key == resources::NAMESPACES {
            let keys: Vec<ResKey> = self.objects.keys().copied().collect();
            for k in keys {
                let names: Vec<String> = self
                    .list(k, Some(name))
                    .map(|o| meta_str(o, "name").to_string())
                    .collect();
                for n in names {
                    self.remove(k, name, &n);
                }
            }
        } else {
            self.collect_garbage(ns, meta_str(&obj, "uid").to_string());
        }
        Ok(obj)
    }

    fn collect_garbage(&mut self, ns: &str, owner_uid: String) {
        let mut pending = vec![owner_uid];
        while let Some(uid) = pending.pop() {
            let keys: Vec<ResKey> = self.objects.keys().copied().collect();
            for k in keys {
                let owned: Vec<(String, String)> = self
                    .list(k, Some(ns))
                    .filter(|o| owned_by(o, &uid))
                    .map(|o| {
                        (
                            meta_str(o, "name").to_string(),
                            meta_str(o, "uid").to_string(),
                        )
                    })
                    .collect();
                for (n, u) in owned {
                    self.remove(k, ns, &n);
                    pending.push(u);
                }
            }
        }
    }

    fn remove(&mut self, key: ResKey, ns: &str, name: &str) -> Option<Value> {
        let stored = self
            .objects
            .get_mut(&key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        let mut obj = match stored.parsed.into_inner() {
            Some(v) => {
                self.cached.set(self.cached.get().saturating_sub(1));
                v
            }
            None => serde_json::from_slice(&stored.raw).unwrap_or(Value::Null),
        };
        let rv = self.bump();
        let m = meta_mut(&mut obj);
        m.insert("resourceVersion".into(), json!(rv.to_string()));
        let raw = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        self.emit(key, "DELETED", raw);
        if key == resources::PODS {
            self.ready_queue
                .retain(|(_, n, p, _)| !(n == ns && p == name));
            self.removed_pods.push((ns.to_string(), name.to_string()));
        }
        Some(obj)
    }

    /// Total number of stored objects (benchmarks, tests).
    pub fn len(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Timing {
            ready_delay: Duration::from_millis(0),
            time_scale: 1.0,
        })
    }

    #[test]
    fn create_conflict_and_stale_update() {
        let mut s = store();
        let cm = resources::preferred(resources::CONFIGMAPS);
        let a = s
            .create(
                cm,
                "default",
                json!({"metadata":{"name":"a"},"data":{"k":"1"}}),
            )
            .unwrap();
        let err = s
            .create(cm, "default", json!({"metadata":{"name":"a"}}))
            .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "AlreadyExists");
        let mut upd = a.clone();
        upd["data"]["k"] = json!("2");
        let b = s.update(cm, "default", "a", upd.clone(), false).unwrap();
        assert_ne!(
            meta_str(&a, "resourceVersion"),
            meta_str(&b, "resourceVersion")
        );
        let stale = s.update(cm, "default", "a", upd, false).unwrap_err();
        assert_eq!(stale.reason, "Conflict");
    }

    #[test]
    fn parse_cache_is_bounded_and_scans_do_not_fill_it() {
        let mut s = store();
        let cm = resources::preferred(resources::CONFIGMAPS);
        for i in 0..(CACHE_LIMIT + 100) {
            s.create(
                cm,
                "default",
                json!({"metadata":{"name": format!("c{i}")}, "data": {"i": i.to_string()}}),
            )
            .unwrap();
        }
        s.trim_cache(0);
        let mut seen = 0;
        s.for_each(resources::CONFIGMAPS, Some("default"), |o| {
            if o["data"]["i"].is_string() {
                seen += 1;
            }
        });
        assert_eq!(seen, CACHE_LIMIT + 100);
        assert_eq!(s.cached.get(), 0);
        let listed = s.list(resources::CONFIGMAPS, Some("default")).count();
        assert!(listed > CACHE_LIMIT);
        assert_eq!(s.cached.get(), listed);
        // The next write drops the parsed trees; reads still see the data.
        s.create(cm, "default", json!({"metadata":{"name":"after"}}))
            .unwrap();
        assert_eq!(s.cached.get(), 0);
        assert_eq!(
            s.get(resources::CONFIGMAPS, "default", "c7").unwrap()["data"]["i"],
            "7"
        );
        let raw = s.get_raw(resources::CONFIGMAPS, "default", "c7").unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&raw).unwrap()["data"]["i"],
            "7"
        );
    }

    #[test]
    fn history_serves_events_since_and_expires() {
        let mut s = store();
        let cm = resources::preferred(resources::CONFIGMAPS);
        let rv = s.resource_version();
        s.create(cm, "default", json!({"metadata":{"name":"a"}}))
            .unwrap();
        s.delete(cm, "default", "a").unwrap();
        let evs = s.events_since(rv).unwrap();
        let kinds: Vec<&str> = evs.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["ADDED", "DELETED"]);
        assert_eq!(meta_str(&evs[1].object, "name"), "a");
        for i in 0..HISTORY {
            s.create(cm, "default", json!({"metadata":{"name": format!("x{i}")}}))
                .unwrap();
        }
        assert!(s.events_since(rv).is_none(), "history must have moved on");
        assert!(s.history.len() <= HISTORY);
    }

    #[test]
    fn missing_namespace_and_cascade() {
        let mut s = store();
        let cm = resources::preferred(resources::CONFIGMAPS);
        let e = s
            .create(cm, "nope", json!({"metadata":{"name":"a"}}))
            .unwrap_err();
        assert_eq!(e.message, "namespaces \"nope\" not found");
        let ns = resources::preferred(resources::NAMESPACES);
        s.create(ns, "", json!({"metadata":{"name":"x"}})).unwrap();
        s.create(cm, "x", json!({"metadata":{"name":"a"}})).unwrap();
        s.delete(ns, "", "x").unwrap();
        assert!(s.get(resources::CONFIGMAPS, "x", "a").is_none());
    }
}
