//! Minimal decoding of Kubernetes protobuf request bodies. kubectl's typed
//! clients (e.g. `kubectl create namespace`, `kubectl create configmap`)
//! send `application/vnd.kubernetes.protobuf`; meshsim stores JSON, so it
//! decodes the `k8s\0` envelope, the object's TypeMeta and ObjectMeta (name,
//! generateName, namespace, labels, annotations) and, for ConfigMaps, data.
//! Other protobuf bodies are answered with 415 so the client can resend JSON.

use serde_json::{Map, Value, json};

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("protobuf: {0}")]
pub struct ProtoError(pub String);

fn varint(b: &[u8], i: &mut usize) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b
            .get(*i)
            .ok_or_else(|| ProtoError("truncated varint".into()))?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtoError("varint too long".into()))
}

/// (field number, bytes) for length-delimited fields; other wire types skipped.
fn fields(b: &[u8]) -> Result<Vec<(u64, &[u8])>, ProtoError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(b, &mut i)?;
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let len = usize::try_from(varint(b, &mut i)?)
                    .map_err(|_| ProtoError("length overflow".into()))?;
                let end = i
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .ok_or_else(|| ProtoError("truncated field".into()))?;
                out.push((field, &b[i..end]));
                i = end;
            }
            w => return Err(ProtoError(format!("unsupported wire type {w}"))),
        }
        if i > b.len() {
            return Err(ProtoError("truncated field".into()));
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn map_entry(b: &[u8]) -> Result<(String, String), ProtoError> {
    let mut k = String::new();
    let mut v = String::new();
    for (f, d) in fields(b)? {
        match f {
            1 => k = string(d),
            2 => v = string(d),
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, ProtoError> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for (f, d) in fields(b)? {
        match f {
            1 => {
                m.insert("name".into(), json!(string(d)));
            }
            2 => {
                m.insert("generateName".into(), json!(string(d)));
            }
            3 => {
                m.insert("namespace".into(), json!(string(d)));
            }
            6 => {
                m.insert("resourceVersion".into(), json!(string(d)));
            }
            11 => {
                let (k, v) = map_entry(d)?;
                labels.insert(k, json!(v));
            }
            12 => {
                let (k, v) = map_entry(d)?;
                annotations.insert(k, json!(v));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(m))
}

/// Decode a protobuf-encoded object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ProtoError("missing k8s protobuf envelope".into()))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (f, d) in fields(rest)? {
        match f {
            1 => {
                for (tf, td) in fields(d)? {
                    match tf {
                        1 => api_version = string(td),
                        2 => kind = string(td),
                        _ => {}
                    }
                }
            }
            2 => raw = d,
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    match kind.as_str() {
        "Namespace" => {
            for (f, d) in fields(raw)? {
                if f == 1 {
                    obj["metadata"] = object_meta(d)?;
                }
            }
        }
        "ConfigMap" => {
            let mut data = Map::new();
            for (f, d) in fields(raw)? {
                match f {
                    1 => obj["metadata"] = object_meta(d)?,
                    2 => {
                        let (k, v) = map_entry(d)?;
                        data.insert(k, json!(v));
                    }
                    _ => {}
                }
            }
            if !data.is_empty() {
                obj["data"] = Value::Object(data);
            }
        }
        other => {
            return Err(ProtoError(format!(
                "meshsim cannot decode protobuf {other:?} bodies; send JSON"
            )));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, u8::try_from(data.len()).unwrap()];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn decodes_namespace() {
        let meta = [
            ld(1, b"np-test-1"),
            ld(11, &[ld(1, b"a"), ld(2, b"b")].concat()),
        ]
        .concat();
        let ns = ld(1, &meta);
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &ns)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "np-test-1");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert!(decode(b"nope").is_err());
    }
}
