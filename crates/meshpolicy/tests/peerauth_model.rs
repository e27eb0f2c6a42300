//! PeerAuthentication through the public model: manifests in, a mode per
//! (pod, port) and a predicted outcome per client out.

use meshpolicy::peerauth::{Addressed, ClientTransport, MtlsMode, MtlsOutcome, Scope};
use meshpolicy::{Cluster, ClusterOptions};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: legacy-port, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls:
    "9000": {mode: PERMISSIVE}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: web
        ports: [{containerPort: 8080}, {containerPort: 9000}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: outside}
spec: {containers: [{name: c, image: curl}]}
"#;

#[test]
fn manifests_load_peer_authentications_and_predict() {
    let c = Cluster::from_manifests(MANIFESTS, ClusterOptions::default()).unwrap();
    assert_eq!(c.peer_authentications().len(), 2);
    let web = c.pod("shop", "web-0").unwrap();
    assert!(web.has_sidecar);
    let m = c.mtls_mode(web, 8080);
    assert_eq!(m.mode, MtlsMode::Strict);
    assert_eq!(m.decided_by.as_ref().unwrap().scope, Scope::Mesh);
    let m = c.mtls_mode(web, 9000);
    assert_eq!(m.mode, MtlsMode::Permissive);
    assert!(m.decided_by.as_ref().unwrap().port_level);

    assert_eq!(c.peer_authentications_for(web).len(), 2);
    let merged = c.merged_peer_authentication(web);
    assert_eq!(merged.mode.mode, MtlsMode::Strict);
    assert_eq!(merged.per_port.keys().copied().collect::<Vec<_>>(), [9000]);

    let client = c.pod("outside", "client").unwrap();
    assert!(c.peer_authentications_for(client).len() == 1);
    let p = c.predict_mtls(Some(client), web, 8080, Addressed::Service);
    assert_eq!(p.client_sends, ClientTransport::Plaintext);
    assert_eq!(p.outcome, MtlsOutcome::PlaintextIntoStrict);
    let p = c.predict_mtls(Some(client), web, 9000, Addressed::Service);
    assert_eq!(p.outcome, MtlsOutcome::Ok);
    let p = c.predict_mtls(Some(web), web, 8080, Addressed::Service);
    assert_eq!(p.outcome, MtlsOutcome::Ok);
    assert_eq!(p.client_sends, ClientTransport::Mtls);
}

#[test]
fn invalid_peer_authentication_is_a_model_error() {
    let text = "kind: PeerAuthentication\nmetadata: {name: bad}\nspec: {portLevelMtls: {\"80\": {mode: STRICT}}}\n";
    let err = Cluster::from_manifests(text, ClusterOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("cannot have port level mTLS"),
        "{err}"
    );
}
