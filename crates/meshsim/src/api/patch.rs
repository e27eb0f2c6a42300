//! PATCH support: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a
//! strategic merge patch that knows the merge keys of the lists the
//! walk-through and kubectl apply touch (containers, ports, env, volumes...).
//! Server-side apply is approximated by a strategic merge of the applied
//! configuration (no field ownership tracking).

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
    #[error("the server rejected our request due to an error in our request")]
    Test,
}

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        if let Value::Object(t) = target {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
    } else {
        *target = patch.clone();
    }
}

/// Merge key of a list field, by field name (strategic merge patch).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "ports" => "__port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "tolerations" => return None,
        "ownerReferences" => "uid",
        "finalizers" => "__primitive",
        _ => return None,
    })
}

fn item_key(item: &Value, key: &str) -> Option<Value> {
    if key == "__port" {
        item.get("containerPort")
            .or_else(|| item.get("port"))
            .cloned()
    } else {
        item.get(key).cloned()
    }
}

/// Strategic merge patch, as kubectl apply and `kubectl patch` send it.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut v = patch.clone();
        strip_directives(&mut v);
        *target = v;
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(keys) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with('$') {
            if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(cur)), Some(del)) = (t.get_mut(field), v.as_array())
            {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v) {
            (Some(mk), Value::Array(items)) => {
                let cur = t.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                if !cur.is_array() {
                    *cur = Value::Array(vec![]);
                }
                let Value::Array(cur) = cur else { continue };
                if mk == "__primitive" {
                    for it in items {
                        if !cur.contains(it) {
                            cur.push(it.clone());
                        }
                    }
                    continue;
                }
                for it in items {
                    let directive = it.get("$patch").and_then(Value::as_str);
                    let key = item_key(it, mk);
                    let pos = key.as_ref().and_then(|kv| {
                        cur.iter()
                            .position(|c| item_key(c, mk).as_ref() == Some(kv))
                    });
                    match (directive, pos) {
                        (Some("delete"), Some(i)) => {
                            cur.remove(i);
                        }
                        (Some("delete"), None) => {}
                        (_, Some(i)) => strategic_merge(&mut cur[i], it)?,
                        (_, None) => {
                            let mut n = it.clone();
                            strip_directives(&mut n);
                            cur.push(n);
                        }
                    }
                }
            }
            (_, Value::Object(_)) => {
                strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v)?;
            }
            _ => {
                let mut n = v.clone();
                strip_directives(&mut n);
                t.insert(k.clone(), n);
            }
        }
    }
    Ok(())
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

fn pointer_parent<'a>(
    doc: &'a mut Value,
    path: &str,
) -> Result<(&'a mut Value, String), PatchError> {
    if !path.starts_with('/') {
        return Err(PatchError::Invalid(format!(
            "invalid JSON pointer {path:?}"
        )));
    }
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    let target = if parent.is_empty() {
        doc
    } else {
        doc.pointer_mut(parent)
            .ok_or_else(|| PatchError::Invalid(format!("doc is missing path: {path:?}")))?
    };
    Ok((target, unescape(last)))
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| PatchError::Invalid("json patch must be an array of operations".into()))?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::Invalid("operation is missing path".into()))?
            .to_string();
        match kind {
            "add" | "replace" | "test" => {
                let value = op.get("value").cloned().ok_or_else(|| {
                    PatchError::Invalid(format!("{kind} operation is missing value"))
                })?;
                if kind == "test" {
                    if doc.pointer(&path) != Some(&value) {
                        return Err(PatchError::Test);
                    }
                    continue;
                }
                if path.is_empty() {
                    *doc = value;
                    continue;
                }
                if kind == "replace" && doc.pointer(&path).is_none() {
                    return Err(PatchError::Invalid(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    )));
                }
                insert_at(doc, &path, value, kind == "add")?;
            }
            "remove" => {
                remove_at(doc, &path)?;
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).ok_or_else(|| {
                    PatchError::Invalid(format!("{kind} operation is missing from"))
                })?;
                let v = if kind == "move" {
                    remove_at(doc, from)?
                } else {
                    doc.pointer(from).cloned().ok_or_else(|| {
                        PatchError::Invalid(format!("doc is missing from path: {from}"))
                    })?
                };
                insert_at(doc, &path, v, true)?;
            }
            other => return Err(PatchError::Invalid(format!("unexpected kind: {other:?}"))),
        }
    }
    Ok(())
}

fn insert_at(doc: &mut Value, path: &str, value: Value, add: bool) -> Result<(), PatchError> {
    let (parent, last) = pointer_parent(doc, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| PatchError::Invalid(format!("invalid array index {last:?}")))?;
            if add {
                if i > a.len() {
                    return Err(PatchError::Invalid(format!(
                        "array index {i} out of bounds"
                    )));
                }
                a.insert(i, value);
            } else {
                let slot = a
                    .get_mut(i)
                    .ok_or_else(|| PatchError::Invalid(format!("array index {i} out of bounds")))?;
                *slot = value;
            }
            Ok(())
        }
        _ => Err(PatchError::Invalid(format!(
            "doc is missing path: {path:?}"
        ))),
    }
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = pointer_parent(doc, path)?;
    let missing = || PatchError::Invalid(format!("unable to remove nonexistent key: {path}"));
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_removes_nulls() {
        let mut t = json!({"a":{"b":1,"c":2}});
        merge_patch(&mut t, &json!({"a":{"b":null,"d":3}}));
        assert_eq!(t, json!({"a":{"c":2,"d":3}}));
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut t =
            json!({"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y"}]}});
        let p = json!({"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"name":"b","image":"z"},{"name":"a","$patch":"delete"}]}});
        strategic_merge(&mut t, &p).unwrap();
        assert_eq!(t, json!({"spec":{"containers":[{"name":"b","image":"z"}]}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"a":[1,2],"b":{"c":1}});
        json_patch(&mut t, &json!([{"op":"add","path":"/a/1","value":9},{"op":"remove","path":"/b/c"},{"op":"replace","path":"/a/0","value":0}])).unwrap();
        assert_eq!(t, json!({"a":[0,9,2],"b":{}}));
        assert!(json_patch(&mut t, &json!([{"op":"remove","path":"/zz"}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op":"test","path":"/a/0","value":5}])).is_err());
    }
}
