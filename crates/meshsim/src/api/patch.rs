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
    json_patch::merge(target, patch);
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

/// RFC 6902 JSON patch, failing with the API server's messages (those of
/// the Go json-patch library it uses).
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
    use json_patch::{PatchErrorKind, PatchOperation as Op};
    let ops: json_patch::Patch = serde_json::from_value(ops.clone())
        .map_err(|e| PatchError::Invalid(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(doc, &ops).map_err(|e| {
        let path = e.path.to_string();
        match (e.kind, &ops.0[e.operation]) {
            (PatchErrorKind::TestFailed, _) => PatchError::Test,
            (_, Op::Replace(_)) => PatchError::Invalid(format!(
                "replace operation does not apply: doc is missing key: {path}"
            )),
            (_, Op::Remove(_)) => {
                PatchError::Invalid(format!("unable to remove nonexistent key: {path}"))
            }
            (PatchErrorKind::InvalidFromPointer, Op::Move(m)) => {
                PatchError::Invalid(format!("unable to remove nonexistent key: {}", m.from))
            }
            (PatchErrorKind::InvalidFromPointer, Op::Copy(c)) => {
                PatchError::Invalid(format!("doc is missing from path: {}", c.from))
            }
            _ => PatchError::Invalid(format!("doc is missing path: {path:?}")),
        }
    })
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
        let err = |ops: Value| {
            json_patch(&mut json!({"a": [1]}), &ops)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(json!([{"op":"replace","path":"/zz","value":1}])),
            "replace operation does not apply: doc is missing key: /zz"
        );
        assert_eq!(
            err(json!([{"op":"remove","path":"/zz"}])),
            "unable to remove nonexistent key: /zz"
        );
        assert_eq!(
            err(json!([{"op":"add","path":"/x/y","value":1}])),
            "doc is missing path: \"/x/y\""
        );
        assert_eq!(
            err(json!([{"op":"copy","from":"/q","path":"/b"}])),
            "doc is missing from path: /q"
        );
        assert_eq!(
            err(json!([{"op":"test","path":"/a/0","value":2}])),
            PatchError::Test.to_string()
        );
    }
}
