//! Property test of the API router: arbitrary methods, paths, query strings,
//! headers and bodies never panic the server and never produce a 500; every
//! error is a Kubernetes `Status` JSON carrying the HTTP code, and a body
//! that is not JSON is a 400.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use tower::ServiceExt;

const SEGMENTS: &[&str] = &[
    "api",
    "apis",
    "v1",
    "v1beta1",
    "apps",
    "security.istio.io",
    "networking.k8s.io",
    "namespaces",
    "default",
    "np-test-1",
    "pods",
    "services",
    "configmaps",
    "deployments",
    "replicasets",
    "endpoints",
    "authorizationpolicies",
    "exec",
    "log",
    "status",
    "scale",
    "finalize",
    "version",
    "openapi",
    "v3",
    "",
    "..",
    "%zz",
    "%00",
    "ü",
    "x y",
];
const KEYS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "watch",
    "resourceVersion",
    "timeoutSeconds",
    "sinceSeconds",
    "sinceTime",
    "tailLines",
    "limitBytes",
    "container",
    "command",
    "follow",
    "previous",
    "dryRun",
    "fieldManager",
    "includeObject",
    "stdin",
];
const CTYPES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
];

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn request() -> impl Strategy<Value = (String, String, String, String, Vec<u8>)> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    ]);
    // Half the paths start like real resource paths so the resource
    // handlers (not only the 404 route) see arbitrary input.
    let prefix = prop::sample::select(vec![
        "",
        "/api/v1",
        "/api/v1/namespaces/np-test-1",
        "/api/v1/namespaces/np-test-1/pods",
        "/apis/apps/v1/namespaces/np-test-1/deployments",
        "/apis/security.istio.io/v1beta1",
        "/apis/networking.k8s.io/v1/namespaces/default",
    ]);
    let path = (
        prefix,
        prop::collection::vec(prop::sample::select(SEGMENTS), 0..5),
    )
        .prop_map(|(p, segs)| format!("{p}/{}", segs.join("/")));
    let query = prop::collection::vec(
        (
            prop::sample::select(KEYS),
            prop_oneof!["[ -~]{0,12}", "(0|1|-1|true|99999999999999999999)"],
        ),
        0..5,
    )
    .prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", encode(&v)))
            .collect::<Vec<_>>()
            .join("&")
    });
    let ctype = prop::sample::select(CTYPES).prop_map(str::to_string);
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,64}".prop_map(String::into_bytes),
        Just(br#"{"metadata":{"name":"x"}}"#.to_vec()),
        Just(br#"[{"op":"replace","path":"/metadata/labels","value":{}}]"#.to_vec()),
        Just(b"k8s\0\x0a\x03".to_vec()),
        Just(br#"{"metadata":[],"spec":"x"}"#.to_vec()),
        Just(br#"{"metadata":{"name":"x"},"spec":{"template":[],"ports":[1]}}"#.to_vec()),
    ];
    (method.prop_map(str::to_string), path, query, ctype, body)
}

#[test]
fn router_never_panics_and_errors_are_status_json() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt
        .block_on(meshsim::Server::start(meshsim::Config {
            scenarios: vec![
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/walkthrough"),
            ],
            time_scale: 0.01,
            ready_delay: Duration::from_millis(10),
            ..meshsim::Config::default()
        }))
        .unwrap();
    let app: Arc<meshsim::server::App> = handle.cluster.0.clone();
    let router = axum::Router::new()
        .fallback(meshsim::api::dispatch)
        .with_state(app);
    let mut runner = TestRunner::new(PtConfig {
        cases: 600,
        failure_persistence: None,
        ..PtConfig::default()
    });
    runner
        .run(&request(), |(method, path, query, ctype, body)| {
            let uri = if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            };
            let Ok(req) = http::Request::builder()
                .method(method.as_str())
                .uri(&uri)
                .header("content-type", &ctype)
                .body(Body::from(body.clone()))
            else {
                return Ok(());
            };
            let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
            let code = resp.status().as_u16();
            prop_assert!(code != 500, "{method} {uri}: 500");
            // HEAD answers carry no body, by HTTP's rules.
            if code >= 400 && method != "HEAD" {
                let bytes = rt
                    .block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
                    .unwrap();
                let status: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TestCaseError::fail(format!("{method} {uri}: not JSON ({e})")))?;
                prop_assert_eq!(&status["kind"], "Status", "{} {}", method, uri);
                prop_assert_eq!(status["code"].as_u64(), Some(u64::from(code)));
            }
            Ok(())
        })
        .unwrap();

    // A create whose body is not JSON is a 400 Status.
    for body in [&b"{not json"[..], b"\xff\xfe", b"[1,2", b""] {
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .unwrap();
        let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
        assert_eq!(resp.status(), 400);
        let bytes = rt
            .block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status["reason"], "BadRequest");
    }
    rt.block_on(handle.shutdown());
}

/// Bodies whose structural fields have the wrong type (an array where the API has an
/// object) are refused with 400 and leave the server working: the controllers assign
/// into those fields, which used to panic while holding the store's lock, and every
/// later request then failed with "store poisoned" (found by the property test above).
#[test]
fn wrongly_shaped_bodies_are_400_and_the_server_keeps_working() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt
        .block_on(meshsim::Server::start(meshsim::Config {
            scenarios: vec![
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/walkthrough"),
            ],
            time_scale: 0.01,
            ready_delay: Duration::from_millis(10),
            ..meshsim::Config::default()
        }))
        .unwrap();
    let app: Arc<meshsim::server::App> = handle.cluster.0.clone();
    let router = axum::Router::new()
        .fallback(meshsim::api::dispatch)
        .with_state(app);
    let send = |method: &str, uri: &str, ctype: &str, body: &[u8]| {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ctype)
            .body(Body::from(body.to_vec()))
            .unwrap();
        rt.block_on(router.clone().oneshot(req))
            .unwrap()
            .status()
            .as_u16()
    };
    let cases: [(&str, &str, &str, &[u8]); 4] = [
        (
            "PATCH",
            "/api/v1/namespaces/np-test-1/configmaps/new?fieldManager=t",
            "application/apply-patch+yaml",
            b"- op: replace",
        ),
        (
            "POST",
            "/apis/apps/v1/namespaces/np-test-1/deployments",
            "application/json",
            br#"{"metadata":{"name":"d"},"spec":{"template":[]}}"#,
        ),
        (
            "POST",
            "/api/v1/namespaces/np-test-1/services",
            "application/json",
            br#"{"metadata":{"name":"s"},"spec":{"ports":[80]}}"#,
        ),
        (
            "PUT",
            "/api/v1/namespaces/np-test-1",
            "application/json",
            br#"{"metadata":[]}"#,
        ),
    ];
    for (method, uri, ctype, body) in cases {
        assert_eq!(send(method, uri, ctype, body), 400, "{method} {uri}");
    }
    assert_eq!(
        send("GET", "/api/v1/namespaces/np-test-1/pods", "", b""),
        200
    );
}
