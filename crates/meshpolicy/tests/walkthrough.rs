//! The walk-through the project starts from (`tests/fixtures/seed/`), replayed on the
//! engine. Its manifests, namespace commands and the Envoy log line it shows
//! are read from the text at test time: the template is instantiated the way
//! its `export SERVICE_NAME` / `envsubst` / `kubectl apply -n` lines say, the
//! namespaces get the labels its `kubectl label` lines set, and the policy id
//! expected in verdicts is the one its `enforced denied` log line prints.

mod common_engine;

use std::collections::BTreeMap;

use meshpolicy::istio::builder::{BuildOptions, EnvoyFilter};
use meshpolicy::{
    Cluster, ClusterOptions, Decision, Endpoint, HttpAttributes, Namespace, Protocol,
};

struct Walkthrough {
    text: String,
}

impl Walkthrough {
    fn load() -> Self {
        let p = common_engine::fixture("seed/istio-network-policies-walkthrough.txt");
        Self {
            text: common_engine::read(&p),
        }
    }

    /// YAML blocks: runs of non-empty lines starting at `apiVersion:`.
    fn yaml_blocks(&self) -> Vec<String> {
        let mut blocks = Vec::new();
        let mut cur: Option<Vec<&str>> = None;
        for line in self.text.lines() {
            if line.starts_with("apiVersion:") && cur.is_none() {
                cur = Some(vec![line]);
            } else if let Some(c) = cur.as_mut() {
                if line.trim().is_empty() {
                    blocks.push(c.join("\n"));
                    cur = None;
                } else {
                    c.push(line);
                }
            }
        }
        if let Some(c) = cur {
            blocks.push(c.join("\n"));
        }
        blocks
    }

    fn block_with(&self, needle: &str) -> String {
        self.yaml_blocks()
            .into_iter()
            .find(|b| b.contains(needle))
            .unwrap_or_else(|| panic!("no YAML block with {needle:?} in the walk-through"))
    }

    fn lines_after(&self, prefix: &str) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix).map(|s| s.trim().to_string()))
            .collect()
    }

    /// The policy id of the walk-through's `enforced denied` RBAC log line.
    fn logged_denying_policy(&self) -> String {
        let marker = "enforced denied, matched policy ";
        let line = self
            .text
            .lines()
            .find(|l| l.contains(marker))
            .expect("walk-through shows an enforced denied line");
        let rest = &line[line.find(marker).unwrap() + marker.len()..];
        rest.split_whitespace().next().unwrap().to_string()
    }

    /// Namespaces with the labels the walk-through's commands give them.
    fn namespaces(&self) -> Vec<Namespace> {
        let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ns in self.lines_after("kubectl create namespace ") {
            labels.entry(ns).or_default();
        }
        for rest in self.lines_after("kubectl label namespace ") {
            let mut w = rest.split_whitespace();
            let ns = w.next().unwrap().to_string();
            let (k, v) = w.next().unwrap().split_once('=').unwrap();
            labels
                .entry(ns)
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        labels
            .into_iter()
            .map(|(n, l)| Namespace::new(&n, l))
            .collect()
    }

    /// (service name, namespace) for each instantiation of the template.
    fn services(&self) -> Vec<(String, String)> {
        let names: Vec<String> = self
            .lines_after("export SERVICE_NAME=")
            .into_iter()
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        let files: Vec<String> = self
            .lines_after("envsubst < istio-np.yaml.template > ")
            .into_iter()
            .collect();
        assert_eq!(names.len(), files.len(), "one envsubst per export");
        let applies = self.lines_after("kubectl apply -f ");
        names
            .into_iter()
            .zip(files)
            .map(|(name, file)| {
                let ns = applies
                    .iter()
                    .find_map(|a| {
                        let mut w = a.split_whitespace();
                        (w.next() == Some(file.as_str()) && w.next() == Some("-n"))
                            .then(|| w.next().unwrap().to_string())
                    })
                    .unwrap_or_else(|| panic!("no `kubectl apply -f {file} -n NS`"));
                (name, ns)
            })
            .collect()
    }

    /// The cluster after deployment, plus the chosen policies.
    fn cluster(&self, with_authz: bool, with_netpol: bool) -> Cluster {
        let template = self.block_with("$SERVICE_NAME");
        let mut text = String::new();
        for ns in self.namespaces() {
            let labels: Vec<String> = ns
                .labels
                .iter()
                .map(|(k, v)| format!("    {k}: \"{v}\""))
                .collect();
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels:\n{}\n",
                ns.name,
                labels.join("\n")
            ));
        }
        for (name, ns) in self.services() {
            // `kubectl apply -n NS` puts the template's objects in NS.
            let docs = template.replace("$SERVICE_NAME", &name);
            for doc in docs.split("\n---") {
                let mut v: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
                v["metadata"]["namespace"] = serde_json::Value::String(ns.clone());
                text.push_str("---\n");
                text.push_str(&serde_yaml_ng::to_string(&v).unwrap());
            }
        }
        if with_authz {
            text.push_str("---\n");
            text.push_str(&self.block_with("kind: AuthorizationPolicy"));
            text.push('\n');
        }
        if with_netpol {
            text.push_str("---\n");
            text.push_str(&self.block_with("kind: NetworkPolicy"));
            text.push('\n');
        }
        Cluster::from_manifests(&text, ClusterOptions::default()).unwrap()
    }
}

fn pod_of(c: &Cluster, ns: &str) -> Endpoint {
    let p = c
        .pods()
        .iter()
        .find(|p| p.namespace == ns)
        .unwrap_or_else(|| panic!("no pod in {ns}"));
    Endpoint::pod(&p.namespace, &p.name)
}

fn http(host: &str) -> Option<HttpAttributes> {
    Some(HttpAttributes {
        method: "GET".into(),
        path: "/".into(),
        host: host.into(),
        headers: BTreeMap::new(),
    })
}

/// (network allowed, authz decision, authz policy id) for `from` -> `to` on port 80.
fn call(c: &Cluster, from: &str, to: &str) -> (bool, Decision, Option<String>, String) {
    let src = pod_of(c, from);
    let dst = pod_of(c, to);
    let port = 80;
    let net = c.evaluate_network(&src, &dst, port, Protocol::Tcp).unwrap();
    let Endpoint::Pod { namespace, name } = &dst else {
        unreachable!()
    };
    let req = c
        .authz_request(&src, namespace, name, port, http("svc.example"))
        .unwrap();
    let az = c.evaluate_authz(&req).unwrap();
    assert!(az.enforced, "walk-through pods are injected: {}", az.reason);
    (net.allowed, az.decision, az.policy_id, net.explanation)
}

#[test]
fn walkthrough_model_has_two_injected_pods_with_named_port() {
    let w = Walkthrough::load();
    let c = w.cluster(false, false);
    let pods = c.pods();
    assert_eq!(pods.len(), w.services().len());
    for p in pods {
        assert!(p.has_sidecar, "{} should be injected", p.name);
        assert_eq!(p.named_port("web", Protocol::Tcp), Some(80));
    }
    let (net, az, _, _) = call(&c, "np-test-1", "np-test-2");
    assert!(net);
    assert_eq!(az, Decision::Allow);
}

#[test]
fn deny_all_authorization_policy_blocks_1_to_2_only() {
    let w = Walkthrough::load();
    let c = w.cluster(true, false);
    let expected_id = w.logged_denying_policy();
    let (net, az, id, _) = call(&c, "np-test-1", "np-test-2");
    assert!(net, "no NetworkPolicy in this step");
    assert_eq!(az, Decision::Deny);
    assert_eq!(id.as_deref(), Some(expected_id.as_str()));
    let (net, az, _, _) = call(&c, "np-test-2", "np-test-1");
    assert!(net);
    assert_eq!(az, Decision::Allow);

    // What Envoy on np-test-2 loads: one DENY filter carrying that id.
    let dst = c
        .pods()
        .iter()
        .find(|p| p.namespace == "np-test-2")
        .unwrap();
    let filters = c.envoy_filters_for(dst, &BuildOptions::default());
    let ids: Vec<String> = filters
        .iter()
        .filter_map(|f| match f {
            EnvoyFilter::Rbac(r) => r.rules.as_ref(),
            _ => None,
        })
        .filter(|r| r.action.as_str() == "DENY")
        .flat_map(|r| r.policies.clone())
        .collect();
    assert_eq!(ids, vec![expected_id]);
}

#[test]
fn deny_all_ingress_network_policy_blocks_1_to_2_only() {
    let w = Walkthrough::load();
    let c = w.cluster(false, true);
    let (net, az, _, why) = call(&c, "np-test-1", "np-test-2");
    assert!(!net, "NetworkPolicy should block: {why}");
    assert!(
        why.contains("deny-all-ingress-using-networkpolicy"),
        "{why}"
    );
    assert_eq!(az, Decision::Allow, "no AuthorizationPolicy in this step");
    let (net, _, _, why) = call(&c, "np-test-2", "np-test-1");
    assert!(net, "{why}");
    let np = &c.network_policies_in("np-test-2")[0];
    assert!(
        np.summary()
            .iter()
            .any(|l| l == "ingress: denies all (no rules)"),
        "{:?}",
        np.summary()
    );
}

#[test]
fn both_layers_block_1_to_2_and_nothing_blocks_2_to_1() {
    let w = Walkthrough::load();
    let c = w.cluster(true, true);
    let (net, az, _, _) = call(&c, "np-test-1", "np-test-2");
    assert!(!net);
    assert_eq!(az, Decision::Deny);
    let (net, az, _, _) = call(&c, "np-test-2", "np-test-1");
    assert!(net);
    assert_eq!(az, Decision::Allow);
}
