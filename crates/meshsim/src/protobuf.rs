//! Decoding of the Kubernetes protobuf request bodies kubectl sends. kubectl's
//! typed clients (`kubectl create namespace|configmap|deployment|service|
//! serviceaccount`) always send `application/vnd.kubernetes.protobuf`, whatever
//! discovery says, and do not fall back to JSON on a 415. meshsim stores JSON,
//! so it unwraps the `k8s\0` envelope and turns the object into its JSON form
//! with a small schema per kind (field numbers from Kubernetes'
//! `generated.proto`), covering what those commands fill in. Like the Go
//! structs' `omitempty`, empty strings, zero numbers, false booleans and empty
//! messages are left out, except for pointer fields (e.g. `replicas`), which
//! are only on the wire when set. Unknown fields are skipped; kinds without a
//! schema are answered with 415.

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

/// One field as found on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn skip(b: &[u8], i: &mut usize, n: usize) -> Result<(), ProtoError> {
    *i = i
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| ProtoError("truncated field".into()))?;
    Ok(())
}

/// Every field of a message, in wire order.
pub(crate) fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtoError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((field, Wire::Varint(varint(b, &mut i)?))),
            1 => {
                skip(b, &mut i, 8)?;
                out.push((field, Wire::Fixed));
            }
            5 => {
                skip(b, &mut i, 4)?;
                out.push((field, Wire::Fixed));
            }
            2 => {
                let len = usize::try_from(varint(b, &mut i)?)
                    .map_err(|_| ProtoError("length overflow".into()))?;
                let start = i;
                skip(b, &mut i, len)?;
                out.push((field, Wire::Bytes(&b[start..i])));
            }
            w => return Err(ProtoError(format!("unsupported wire type {w}"))),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How one field is turned into JSON.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    /// A signed integer (int32/int64 as varint).
    Int,
    Bool,
    Msg(&'static [F]),
    /// `repeated` message.
    MsgList(&'static [F]),
    /// `repeated string`.
    StrList,
    /// `map<string, string>`.
    Map,
    /// `map<string, bytes>`, values base64 as in JSON.
    BytesMap,
    IntOrString,
    Meta,
}

/// (field number, JSON name, type, keep zero values: pointer fields).
type F = (u64, &'static str, Ty, bool);

const REQUIREMENT: &[F] = &[
    (1, "key", Ty::Str, false),
    (2, "operator", Ty::Str, false),
    (3, "values", Ty::StrList, false),
];
const LABEL_SELECTOR: &[F] = &[
    (1, "matchLabels", Ty::Map, false),
    (2, "matchExpressions", Ty::MsgList(REQUIREMENT), false),
];
const CONTAINER_PORT: &[F] = &[
    (1, "name", Ty::Str, false),
    (2, "hostPort", Ty::Int, false),
    (3, "containerPort", Ty::Int, true),
    (4, "protocol", Ty::Str, false),
    (5, "hostIP", Ty::Str, false),
];
const ENV_VAR: &[F] = &[(1, "name", Ty::Str, false), (2, "value", Ty::Str, false)];
const CONTAINER: &[F] = &[
    (1, "name", Ty::Str, false),
    (2, "image", Ty::Str, false),
    (3, "command", Ty::StrList, false),
    (4, "args", Ty::StrList, false),
    (5, "workingDir", Ty::Str, false),
    (6, "ports", Ty::MsgList(CONTAINER_PORT), false),
    (7, "env", Ty::MsgList(ENV_VAR), false),
    (13, "terminationMessagePath", Ty::Str, false),
    (14, "imagePullPolicy", Ty::Str, false),
    (16, "stdin", Ty::Bool, false),
    (17, "stdinOnce", Ty::Bool, false),
    (18, "tty", Ty::Bool, false),
    (20, "terminationMessagePolicy", Ty::Str, false),
];
const POD_SPEC: &[F] = &[
    (2, "containers", Ty::MsgList(CONTAINER), false),
    (3, "restartPolicy", Ty::Str, false),
    (4, "terminationGracePeriodSeconds", Ty::Int, true),
    (5, "activeDeadlineSeconds", Ty::Int, true),
    (6, "dnsPolicy", Ty::Str, false),
    (7, "nodeSelector", Ty::Map, false),
    (8, "serviceAccountName", Ty::Str, false),
    (9, "serviceAccount", Ty::Str, false),
    (10, "nodeName", Ty::Str, false),
    (11, "hostNetwork", Ty::Bool, false),
    (16, "hostname", Ty::Str, false),
    (17, "subdomain", Ty::Str, false),
    (19, "schedulerName", Ty::Str, false),
    (20, "initContainers", Ty::MsgList(CONTAINER), false),
];
const POD_TEMPLATE_SPEC: &[F] = &[
    (1, "metadata", Ty::Meta, false),
    (2, "spec", Ty::Msg(POD_SPEC), false),
];
const ROLLING_UPDATE: &[F] = &[
    (1, "maxUnavailable", Ty::IntOrString, false),
    (2, "maxSurge", Ty::IntOrString, false),
];
const DEPLOYMENT_STRATEGY: &[F] = &[
    (1, "type", Ty::Str, false),
    (2, "rollingUpdate", Ty::Msg(ROLLING_UPDATE), false),
];
const DEPLOYMENT_SPEC: &[F] = &[
    (1, "replicas", Ty::Int, true),
    (2, "selector", Ty::Msg(LABEL_SELECTOR), false),
    (3, "template", Ty::Msg(POD_TEMPLATE_SPEC), false),
    (4, "strategy", Ty::Msg(DEPLOYMENT_STRATEGY), false),
    (5, "minReadySeconds", Ty::Int, false),
    (6, "revisionHistoryLimit", Ty::Int, true),
    (7, "paused", Ty::Bool, false),
    (9, "progressDeadlineSeconds", Ty::Int, true),
];
const SERVICE_PORT: &[F] = &[
    (1, "name", Ty::Str, false),
    (2, "protocol", Ty::Str, false),
    (3, "port", Ty::Int, true),
    (4, "targetPort", Ty::IntOrString, false),
    (5, "nodePort", Ty::Int, false),
    (6, "appProtocol", Ty::Str, false),
];
const SERVICE_SPEC: &[F] = &[
    (1, "ports", Ty::MsgList(SERVICE_PORT), false),
    (2, "selector", Ty::Map, false),
    (3, "clusterIP", Ty::Str, false),
    (4, "type", Ty::Str, false),
    (5, "externalIPs", Ty::StrList, false),
    (7, "sessionAffinity", Ty::Str, false),
    (8, "loadBalancerIP", Ty::Str, false),
    (10, "externalName", Ty::Str, false),
    (18, "clusterIPs", Ty::StrList, false),
];
const LOCAL_OBJECT_REFERENCE: &[F] = &[(1, "name", Ty::Str, false)];
const OBJECT_REFERENCE: &[F] = &[
    (1, "kind", Ty::Str, false),
    (2, "namespace", Ty::Str, false),
    (3, "name", Ty::Str, false),
];

const NAMESPACE: &[F] = &[(1, "metadata", Ty::Meta, false)];
const CONFIG_MAP: &[F] = &[
    (1, "metadata", Ty::Meta, false),
    (2, "data", Ty::Map, false),
    (3, "binaryData", Ty::BytesMap, false),
    (4, "immutable", Ty::Bool, true),
];
const DEPLOYMENT: &[F] = &[
    (1, "metadata", Ty::Meta, false),
    (2, "spec", Ty::Msg(DEPLOYMENT_SPEC), false),
];
const SERVICE: &[F] = &[
    (1, "metadata", Ty::Meta, false),
    (2, "spec", Ty::Msg(SERVICE_SPEC), false),
];
const SERVICE_ACCOUNT: &[F] = &[
    (1, "metadata", Ty::Meta, false),
    (2, "secrets", Ty::MsgList(OBJECT_REFERENCE), false),
    (
        3,
        "imagePullSecrets",
        Ty::MsgList(LOCAL_OBJECT_REFERENCE),
        false,
    ),
    (4, "automountServiceAccountToken", Ty::Bool, true),
];
const POD: &[F] = &[
    (1, "metadata", Ty::Meta, false),
    (2, "spec", Ty::Msg(POD_SPEC), false),
];

/// ObjectMeta: the fields a create request can carry.
const OBJECT_META: &[F] = &[
    (1, "name", Ty::Str, false),
    (2, "generateName", Ty::Str, false),
    (3, "namespace", Ty::Str, false),
    (6, "resourceVersion", Ty::Str, false),
    (11, "labels", Ty::Map, false),
    (12, "annotations", Ty::Map, false),
];

fn map_entry(b: &[u8]) -> Result<(String, &[u8]), ProtoError> {
    let mut k = String::new();
    let mut v: &[u8] = &[];
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Bytes(d)) => k = string(d),
            (2, Wire::Bytes(d)) => v = d,
            _ => {}
        }
    }
    Ok((k, v))
}

fn int_or_string(b: &[u8]) -> Result<Value, ProtoError> {
    let (mut ty, mut int, mut s) = (0u64, 0i64, String::new());
    for (f, w) in fields(b)? {
        match (f, w) {
            (1, Wire::Varint(v)) => ty = v,
            (2, Wire::Varint(v)) => int = i64::from(v as i32),
            (3, Wire::Bytes(d)) => s = string(d),
            _ => {}
        }
    }
    Ok(if ty == 1 { json!(s) } else { json!(int) })
}

fn mismatch(name: &str) -> ProtoError {
    ProtoError(format!("field {name:?} has an unexpected wire type"))
}

/// Decode one message with its schema.
fn message(b: &[u8], schema: &[F]) -> Result<Map<String, Value>, ProtoError> {
    let mut out = Map::new();
    for (num, w) in fields(b)? {
        let Some(&(_, name, ty, keep)) = schema.iter().find(|f| f.0 == num) else {
            continue;
        };
        let value = match (ty, w) {
            (Ty::Str, Wire::Bytes(d)) => json!(string(d)),
            (Ty::Int, Wire::Varint(v)) => json!(v as i64),
            (Ty::Bool, Wire::Varint(v)) => json!(v != 0),
            (Ty::Msg(s), Wire::Bytes(d)) => Value::Object(message(d, s)?),
            (Ty::Meta, Wire::Bytes(d)) => Value::Object(message(d, OBJECT_META)?),
            (Ty::IntOrString, Wire::Bytes(d)) => int_or_string(d)?,
            (Ty::MsgList(s), Wire::Bytes(d)) => {
                let item = Value::Object(message(d, s)?);
                push(&mut out, name, item);
                continue;
            }
            (Ty::StrList, Wire::Bytes(d)) => {
                push(&mut out, name, json!(string(d)));
                continue;
            }
            (Ty::Map | Ty::BytesMap, Wire::Bytes(d)) => {
                let (k, v) = map_entry(d)?;
                let v = if matches!(ty, Ty::Map) {
                    json!(string(v))
                } else {
                    use base64::Engine;
                    json!(base64::engine::general_purpose::STANDARD.encode(v))
                };
                let m = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            _ => return Err(mismatch(name)),
        };
        let empty = match &value {
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_i64() == Some(0),
            Value::Bool(b) => !b,
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if keep || !empty {
            out.insert(name.to_string(), value);
        } else {
            out.remove(name);
        }
    }
    Ok(out)
}

fn push(out: &mut Map<String, Value>, name: &str, item: Value) {
    let list = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Some(a) = list.as_array_mut() {
        a.push(item);
    }
}

fn schema_of(kind: &str) -> Option<&'static [F]> {
    Some(match kind {
        "Namespace" => NAMESPACE,
        "ConfigMap" => CONFIG_MAP,
        "Deployment" => DEPLOYMENT,
        "Service" => SERVICE,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "Pod" => POD,
        _ => return None,
    })
}

/// Decode a protobuf-encoded object into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ProtoError("missing k8s protobuf envelope".into()))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (f, w) in fields(rest)? {
        match (f, w) {
            (1, Wire::Bytes(d)) => {
                for (tf, tw) in fields(d)? {
                    match (tf, tw) {
                        (1, Wire::Bytes(td)) => api_version = string(td),
                        (2, Wire::Bytes(td)) => kind = string(td),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(d)) => raw = d,
            _ => {}
        }
    }
    let schema = schema_of(&kind).ok_or_else(|| {
        ProtoError(format!(
            "meshsim cannot decode protobuf {kind:?} bodies; send JSON"
        ))
    })?;
    let mut obj = message(raw, schema)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    obj.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn ld(field: u8, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_varint(&mut v, (u64::from(field) << 3) | 2);
        put_varint(&mut v, data.len() as u64);
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

    fn vi(field: u8, v: u8) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, u64::from(field) << 3);
        put_varint(&mut out, u64::from(v));
        out
    }

    fn envelope(api_version: &[u8], kind: &[u8], obj: &[u8]) -> Vec<u8> {
        let tm = [ld(1, api_version), ld(2, kind)].concat();
        [b"k8s\0".to_vec(), ld(1, &tm), ld(2, obj)].concat()
    }

    #[test]
    fn decodes_deployment_as_kubectl_create_sends_it() {
        let labels = ld(11, &[ld(1, b"app"), ld(2, b"web")].concat());
        let meta = [ld(1, b"web"), ld(2, b""), labels.clone()].concat();
        let port = [vi(2, 0), vi(3, 80), ld(4, b"TCP")].concat();
        let container = [
            ld(1, b"nginx"),
            ld(2, b"nginx:1.27"),
            ld(3, b"sleep"),
            ld(3, b"60"),
            ld(5, b""),
            ld(6, &port),
            ld(8, b""),
            vi(16, 0),
        ]
        .concat();
        let pod_spec = [ld(2, &container), ld(3, b"")].concat();
        let template = [ld(1, &labels), ld(2, &pod_spec)].concat();
        let selector = ld(1, &[ld(1, b"app"), ld(2, b"web")].concat());
        let spec = [
            vi(1, 3),
            ld(2, &selector),
            ld(3, &template),
            ld(4, &ld(1, b"")),
            vi(5, 0),
        ]
        .concat();
        let body = envelope(
            b"apps/v1",
            b"Deployment",
            &[ld(1, &meta), ld(2, &spec)].concat(),
        );
        let v = decode(&body).unwrap();
        assert_eq!(v["apiVersion"], "apps/v1");
        assert_eq!(
            v["metadata"],
            json!({"name": "web", "labels": {"app": "web"}})
        );
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "web");
        assert!(v["spec"].get("strategy").is_none(), "{v}");
        assert!(v["spec"].get("minReadySeconds").is_none(), "{v}");
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            *c,
            json!({"name": "nginx", "image": "nginx:1.27", "command": ["sleep", "60"],
                   "ports": [{"containerPort": 80, "protocol": "TCP"}]})
        );
        assert_eq!(v["spec"]["template"]["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn decodes_service_and_service_account() {
        let target = [vi(1, 0), vi(2, 8), ld(3, b"")].concat();
        let named = [vi(1, 1), vi(2, 0), ld(3, b"http")].concat();
        let p1 = [
            ld(1, b"80-8"),
            ld(2, b"TCP"),
            vi(3, 80),
            ld(4, &target),
            vi(5, 0),
        ]
        .concat();
        let p2 = [ld(1, b"web"), vi(3, 81), ld(4, &named)].concat();
        let spec = [
            ld(1, &p1),
            ld(1, &p2),
            ld(2, &[ld(1, b"app"), ld(2, b"s")].concat()),
            ld(3, b"None"),
            ld(4, b"ClusterIP"),
        ]
        .concat();
        let body = envelope(
            b"v1",
            b"Service",
            &[ld(1, &ld(1, b"s")), ld(2, &spec)].concat(),
        );
        let v = decode(&body).unwrap();
        assert_eq!(
            v["spec"],
            json!({"ports": [{"name": "80-8", "protocol": "TCP", "port": 80, "targetPort": 8},
                             {"name": "web", "port": 81, "targetPort": "http"}],
                   "selector": {"app": "s"}, "clusterIP": "None", "type": "ClusterIP"})
        );
        let body = envelope(
            b"v1",
            b"ServiceAccount",
            &[ld(1, &ld(1, b"sa")), vi(4, 0)].concat(),
        );
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "sa");
        assert_eq!(v["automountServiceAccountToken"], false);
        let body = envelope(b"v1", b"Secret", &ld(1, &ld(1, b"x")));
        assert!(decode(&body).unwrap_err().0.contains("Secret"));
    }

    #[test]
    fn wrong_wire_type_is_an_error_not_a_panic() {
        // spec.replicas sent as a length-delimited field.
        let spec = ld(1, b"3");
        let body = envelope(b"apps/v1", b"Deployment", &ld(2, &spec));
        assert!(decode(&body).is_err());
    }
}
