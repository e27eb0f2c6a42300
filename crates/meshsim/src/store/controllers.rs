//! Simulated control plane: admission defaults (pod IPs from 10.244.0.0/16,
//! service cluster IPs from 10.96.0.0/12, Istio sidecar injection in
//! namespaces labelled `istio-injection=enabled`), and the controllers that
//! turn Deployments into ReplicaSets and pods, make pods Running/Ready after
//! the configured delay, and keep Endpoints in sync with ready pods.
//! Istio's waypoint deployment controller lives here too
//! ([`Store::reconcile_waypoints`]): a Gateway API `Gateway` of class
//! `istio-waypoint` becomes the ServiceAccount, Deployment and Service istiod
//! would make for it, owned by the Gateway (deleting it removes them).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::store::resources::{self, ResKey, ResourceDef};
use crate::store::{SAFE_ALPHABET, Store, meta_str, now_ts, owned_by, random_suffix};
use meshpolicy::Selector;

/// Image of the injected sidecar and init container.
pub const PROXY_IMAGE: &str = "docker.io/istio/proxyv2:1.25.0";

const SIDECAR_STATUS: &str = r#"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}"#;

/// A pod that just became Running (for log seeding).
#[derive(Debug, Clone)]
pub struct StartedPod {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<(String, String)>,
}

fn ip(base: [u8; 2], n: u32) -> String {
    format!("{}.{}.{}.{}", base[0], base[1], (n >> 8) & 0xff, n & 0xff)
}

/// FNV-1a 32 of the template, encoded like Kubernetes' pod-template-hash.
pub fn template_hash(template: &Value) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn labels(obj: &Value) -> Option<&Value> {
    obj.get("metadata").and_then(|m| m.get("labels"))
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|x| x["type"] == "Ready" && x["status"] == "True")
    })
}

fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
    json!([{
        "apiVersion": api_version, "kind": kind,
        "name": meta_str(owner, "name"), "uid": meta_str(owner, "uid"),
        "controller": true, "blockOwnerDeletion": true
    }])
}

impl Store {
    /// Defaults and side effects at creation (admission).
    pub(crate) fn admit(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        match def.key() {
            resources::PODS => self.admit_pod(ns, obj),
            resources::SERVICES => self.admit_service(obj),
            resources::NAMESPACES => {
                let name = meta_str(obj, "name").to_string();
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
                Ok(())
            }
            resources::DEPLOYMENTS => {
                let spec = &mut obj["spec"];
                if spec.get("replicas").is_none() {
                    spec["replicas"] = json!(1);
                }
                if spec.get("strategy").is_none() {
                    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
                }
                if spec.get("revisionHistoryLimit").is_none() {
                    spec["revisionHistoryLimit"] = json!(10);
                }
                if spec.get("progressDeadlineSeconds").is_none() {
                    spec["progressDeadlineSeconds"] = json!(600);
                }
                obj["status"] = json!({});
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn admit_update(&mut self, def: &ResourceDef, existing: &Value, next: &mut Value) {
        if def.key() == resources::SERVICES {
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if next["spec"].get(f).is_none()
                    && let Some(v) = existing["spec"].get(f)
                {
                    next["spec"][f] = v.clone();
                }
            }
            let _ = self.admit_service(next);
        }
        if def.key() == resources::NAMESPACES {
            let name = meta_str(existing, "name").to_string();
            next["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            if next.get("status").is_none() {
                next["status"] = existing["status"].clone();
            }
        }
    }

    fn admit_service(&mut self, obj: &mut Value) -> Result<(), ApiError> {
        let spec = &mut obj["spec"];
        if !spec.is_object() {
            *spec = json!({});
        }
        if spec.get("type").is_none() {
            spec["type"] = json!("ClusterIP");
        }
        if spec.get("sessionAffinity").is_none() {
            spec["sessionAffinity"] = json!("None");
        }
        if spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let n = self.next_svc_ip;
            self.next_svc_ip += 1;
            let a = ip([10, 96], n);
            spec["clusterIP"] = json!(a);
            spec["clusterIPs"] = json!([a]);
        } else if spec.get("clusterIPs").is_none() {
            spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
        }
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        let node_port = spec["type"] == "NodePort" || spec["type"] == "LoadBalancer";
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
                if p.get("targetPort").is_none() {
                    p["targetPort"] = p["port"].clone();
                }
                if node_port && p.get("nodePort").is_none() {
                    p["nodePort"] = json!(self.next_node_port);
                    self.next_node_port += 1;
                }
            }
        }
        if obj.get("status").is_none() {
            obj["status"] = json!({"loadBalancer": {}});
        }
        Ok(())
    }

    fn admit_pod(&mut self, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
        let name = meta_str(pod, "name").to_string();
        let containers = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if containers.is_empty() {
            return Err(ApiError::invalid(
                "Pod",
                &name,
                "spec.containers: Required value",
            ));
        }
        let ns_labels = self
            .get(resources::NAMESPACES, "", ns)
            .and_then(labels)
            .cloned()
            .unwrap_or(Value::Null);
        let str_map = crate::store::string_map;
        let pod_meta = pod["metadata"].clone();
        let has_proxy = containers.iter().any(|c| c["name"] == "istio-proxy");
        let inject = !has_proxy
            && meshpolicy::injection::PodInjection::new(
                Some(&str_map(&pod_meta["labels"])),
                Some(&str_map(&pod_meta["annotations"])),
                pod["spec"]["hostNetwork"] == true,
            )
            .injected(ns, &str_map(&ns_labels));
        let spec = &mut pod["spec"];
        for c in spec["containers"].as_array_mut().into_iter().flatten() {
            container_defaults(c);
        }
        for c in spec["initContainers"].as_array_mut().into_iter().flatten() {
            container_defaults(c);
        }
        for (f, v) in [
            ("restartPolicy", json!("Always")),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("serviceAccountName", json!("default")),
            ("serviceAccount", json!("default")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("securityContext", json!({})),
            ("enableServiceLinks", json!(true)),
            ("preemptionPolicy", json!("PreemptLowerPriority")),
            ("priority", json!(0)),
        ] {
            if spec.get(f).is_none() {
                spec[f] = v;
            }
        }
        spec["nodeName"] = json!("meshsim-node");
        let mode = meshpolicy::ambient::dataplane_mode(
            &str_map(&pod_meta["labels"]),
            inject || has_proxy,
            &str_map(&ns_labels),
        );
        let ambient = mode == meshpolicy::ambient::DataplaneMode::Ambient;
        if inject {
            let first = containers[0]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut init = json!({
                "name": "istio-init", "image": PROXY_IMAGE,
                "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"],
            });
            container_defaults(&mut init);
            let mut proxy = json!({
                "name": "istio-proxy", "image": PROXY_IMAGE,
                "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
                "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
                        {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}],
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}, "failureThreshold": 4, "periodSeconds": 15, "timeoutSeconds": 3},
            });
            container_defaults(&mut proxy);
            if !spec["initContainers"].is_array() {
                spec["initContainers"] = json!([]);
            }
            if let Some(a) = spec["initContainers"].as_array_mut() {
                a.push(init);
            }
            if let Some(a) = spec["containers"].as_array_mut() {
                a.push(proxy);
            }
            let app = pod_meta["labels"]["app"]
                .as_str()
                .unwrap_or(&name)
                .to_string();
            let version = pod_meta["labels"]["version"]
                .as_str()
                .unwrap_or("latest")
                .to_string();
            let md = &mut pod["metadata"];
            md["annotations"]["sidecar.istio.io/status"] = json!(SIDECAR_STATUS);
            md["annotations"]["istio.io/rev"] = json!("default");
            md["annotations"]["kubectl.kubernetes.io/default-container"] = json!(first);
            md["annotations"]["kubectl.kubernetes.io/default-logs-container"] = json!(first);
            md["annotations"]["prometheus.io/path"] = json!("/stats/prometheus");
            md["annotations"]["prometheus.io/port"] = json!("15020");
            md["annotations"]["prometheus.io/scrape"] = json!("true");
            md["labels"]["security.istio.io/tlsMode"] = json!("istio");
            md["labels"]["service.istio.io/canonical-name"] = json!(app);
            md["labels"]["service.istio.io/canonical-revision"] = json!(version);
        }
        if ambient {
            // istio-cni's mark on a pod whose traffic ztunnel captures.
            pod["metadata"]["annotations"]["ambient.istio.io/redirection"] = json!("enabled");
        }
        let n = self.next_pod_ip;
        self.next_pod_ip += 1;
        let pod_ip = ip([10, 244], n);
        let cstatus = |c: &Value, waiting: &str| {
            json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "restartCount": 0,
                   "started": false, "state": {"waiting": {"reason": waiting}}})
        };
        let inits: Vec<Value> = pod["spec"]["initContainers"]
            .as_array()
            .map(|a| a.iter().map(|c| cstatus(c, "PodInitializing")).collect())
            .unwrap_or_default();
        let conts: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        cstatus(
                            c,
                            if inits.is_empty() {
                                "ContainerCreating"
                            } else {
                                "PodInitializing"
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let now = now_ts();
        let mut status = json!({
            "phase": "Pending", "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "qosClass": "BestEffort", "startTime": now,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Initialized", "status": if inits.is_empty() { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": now, "reason": "ContainersNotReady"},
                {"type": "ContainersReady", "status": "False", "lastProbeTime": null, "lastTransitionTime": now, "reason": "ContainersNotReady"},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
            ],
            "containerStatuses": conts,
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(inits);
        }
        pod["status"] = status;
        let delay = self
            .timing
            .ready_delay
            .mul_f64(self.timing.time_scale.max(0.0));
        let uid = meta_str(pod, "uid").to_string();
        self.ready_queue
            .push((Instant::now() + delay, ns.to_string(), name, uid));
        Ok(())
    }

    /// Side effects after a create (namespace defaults, controllers).
    pub(crate) fn after_create(&mut self, def: &ResourceDef, _ns: &str, obj: &Value) {
        if def.key() == resources::NAMESPACES {
            let name = meta_str(obj, "name").to_string();
            let sa = resources::preferred(resources::SERVICEACCOUNTS);
            let _ = self.create(sa, &name, json!({"metadata": {"name": "default"}}));
            let cm = resources::preferred(resources::CONFIGMAPS);
            let _ = self.create(
                cm,
                &name,
                json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc.  No other usage is guaranteed across distributions of Kubernetes clusters."}},
                       "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nmeshsim\n-----END CERTIFICATE-----\n"}}),
            );
        }
    }

    /// Mark pods whose ready time has come as Running and Ready; returns them.
    pub fn tick(&mut self, now: Instant) -> Vec<StartedPod> {
        let due: Vec<(String, String, String)> = self
            .ready_queue
            .iter()
            .filter(|(t, ..)| *t <= now)
            .map(|(_, n, p, u)| (n.clone(), p.clone(), u.clone()))
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        self.ready_queue.retain(|(t, ..)| *t > now);
        let mut started = Vec::new();
        let mut namespaces = Vec::new();
        for (ns, name, uid) in due {
            let Some(mut pod) = self.get(resources::PODS, &ns, &name).cloned() else {
                continue;
            };
            if meta_str(&pod, "uid") != uid {
                continue;
            }
            let now_s = now_ts();
            let status = &mut pod["status"];
            status["phase"] = json!("Running");
            for c in status["conditions"].as_array_mut().into_iter().flatten() {
                c["status"] = json!("True");
                c["lastTransitionTime"] = json!(now_s);
                if let Some(o) = c.as_object_mut() {
                    o.remove("reason");
                }
            }
            // Init containers ran to completion; the others run.
            let start = |c: &mut Value, init: bool| {
                c["ready"] = json!(true);
                c["started"] = json!(!init);
                let image = c["image"].as_str().unwrap_or("");
                c["imageID"] = json!(format!("{image}@sha256:{}", "0".repeat(64)));
                c["containerID"] = json!(format!("containerd://{}", random_suffix(64)));
                c["state"] = if init {
                    json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now_s, "finishedAt": now_s}})
                } else {
                    json!({"running": {"startedAt": now_s}})
                };
            };
            for c in status["initContainerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                start(c, true);
            }
            let mut containers = Vec::new();
            for c in status["containerStatuses"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                start(c, false);
                containers.push((
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["image"].as_str().unwrap_or_default().to_string(),
                ));
            }
            self.put(resources::PODS, pod, false);
            started.push(StartedPod {
                namespace: ns.clone(),
                name,
                containers,
            });
            if !namespaces.contains(&ns) {
                namespaces.push(ns);
            }
        }
        for ns in namespaces {
            self.reconcile(&ns);
        }
        started
    }

    /// Next time a pod becomes ready, if any.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.ready_queue.iter().map(|(t, ..)| *t).min()
    }

    /// Every object of `key` in `ns`, cloned (a controller's work list).
    fn all(&self, key: ResKey, ns: &str) -> Vec<Value> {
        self.list(key, Some(ns)).cloned().collect()
    }

    /// The objects of `key` in `ns` owned by the object with `uid`.
    fn owned(&self, key: ResKey, ns: &str, uid: &str) -> Vec<Value> {
        self.list(key, Some(ns))
            .filter(|o| owned_by(o, uid))
            .cloned()
            .collect()
    }

    fn write_if_changed(&mut self, key: ResKey, old: &Value, new: Value) {
        if *old != new {
            self.put(key, new, false);
        }
    }

    /// Run the controllers for one namespace until they settle.
    pub fn reconcile(&mut self, ns: &str) {
        self.reconcile_waypoints(ns);
        self.reconcile_deployments(ns);
        self.reconcile_replicasets(ns);
        self.reconcile_daemonsets(ns);
        self.deployment_status(ns);
        self.reconcile_endpoints(ns);
    }

    fn reconcile_deployments(&mut self, ns: &str) {
        let deps = self.all(resources::DEPLOYMENTS, ns);
        for d in deps {
            let uid = meta_str(&d, "uid").to_string();
            let dname = meta_str(&d, "name").to_string();
            let template = d["spec"]["template"].clone();
            let hash = template_hash(&template);
            let rs_name = format!("{dname}-{hash}");
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let owned = self.owned(resources::REPLICASETS, ns, &uid);
            for r in &owned {
                if meta_str(r, "name") != rs_name && r["spec"]["replicas"].as_i64() != Some(0) {
                    let mut n = r.clone();
                    n["spec"]["replicas"] = json!(0);
                    self.put(resources::REPLICASETS, n, false);
                }
            }
            match owned.iter().find(|r| meta_str(r, "name") == rs_name) {
                Some(r) => {
                    if r["spec"]["replicas"].as_i64() != Some(replicas) {
                        let mut n = r.clone();
                        n["spec"]["replicas"] = json!(replicas);
                        self.put(resources::REPLICASETS, n, false);
                    }
                }
                None => {
                    let mut tpl = template.clone();
                    tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                    let mut sel = d["spec"]["selector"].clone();
                    sel["matchLabels"]["pod-template-hash"] = json!(hash);
                    let rs = json!({
                        "metadata": {
                            "name": rs_name,
                            "labels": tpl["metadata"]["labels"].clone(),
                            "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(), "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(), "deployment.kubernetes.io/revision": (owned.len() + 1).to_string()},
                            "ownerReferences": owner_ref(&d, "Deployment", "apps/v1"),
                        },
                        "spec": {"replicas": replicas, "selector": sel, "template": tpl},
                    });
                    let def = resources::preferred(resources::REPLICASETS);
                    let _ = self.create(def, ns, rs);
                }
            }
        }
    }

    /// A pod from `owner`'s template (a ReplicaSet's or DaemonSet's), named
    /// after it with a random suffix and owned by it; `revision` labels it
    /// `controller-revision-hash`. None when the create is refused.
    fn create_owned_pod(
        &mut self,
        ns: &str,
        owner: &Value,
        kind: &str,
        revision: Option<&str>,
    ) -> Option<Value> {
        let mut tpl = owner["spec"]["template"].clone();
        if !tpl.is_object() {
            tpl = json!({});
        }
        let name = meta_str(owner, "name");
        tpl["metadata"]["name"] = json!(format!("{name}-{}", random_suffix(5)));
        if let Some(hash) = revision {
            tpl["metadata"]["labels"]["controller-revision-hash"] = json!(hash);
        }
        tpl["metadata"]["ownerReferences"] = owner_ref(owner, kind, "apps/v1");
        self.create(resources::preferred(resources::PODS), ns, tpl)
            .ok()
    }

    fn reconcile_replicasets(&mut self, ns: &str) {
        let sets = self.all(resources::REPLICASETS, ns);
        let pod_def = resources::preferred(resources::PODS);
        for rs in sets {
            let uid = meta_str(&rs, "uid").to_string();
            let name = meta_str(&rs, "name").to_string();
            let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
            let mut pods = self.owned(resources::PODS, ns, &uid);
            while pods.len() > want {
                if let Some(p) = pods.pop() {
                    let _ = self.delete(pod_def, ns, meta_str(&p, "name"));
                }
            }
            let mut tries = 0;
            while pods.len() < want && tries < want * 4 + 8 {
                tries += 1;
                pods.extend(self.create_owned_pod(ns, &rs, "ReplicaSet", None));
            }
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            let mut n = rs.clone();
            n["status"] = json!({
                "replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
                "readyReplicas": ready, "availableReplicas": ready,
                "observedGeneration": rs["metadata"]["generation"].clone(),
            });
            if ready == 0
                && let Some(o) = n["status"].as_object_mut()
            {
                o.remove("readyReplicas");
                o.remove("availableReplicas");
            }
            let cur = self
                .get(resources::REPLICASETS, ns, &name)
                .cloned()
                .unwrap_or(Value::Null);
            self.write_if_changed(resources::REPLICASETS, &cur, n);
        }
    }

    /// A DaemonSet's pod on every node (meshsim has one: `meshsim-node`), as
    /// the DaemonSet controller keeps it (ztunnel in ambient mode runs so).
    fn reconcile_daemonsets(&mut self, ns: &str) {
        let sets = self.all(resources::DAEMONSETS, ns);
        let pod_def = resources::preferred(resources::PODS);
        for ds in sets {
            let uid = meta_str(&ds, "uid").to_string();
            let hash = template_hash(&ds["spec"]["template"]);
            let pods = self.owned(resources::PODS, ns, &uid);
            for p in &pods {
                if p["metadata"]["labels"]["controller-revision-hash"].as_str() != Some(&hash) {
                    let _ = self.delete(pod_def, ns, meta_str(p, "name"));
                }
            }
            let mut current: Vec<Value> = pods
                .into_iter()
                .filter(|p| {
                    p["metadata"]["labels"]["controller-revision-hash"].as_str() == Some(&hash)
                })
                .collect();
            let mut tries = 0;
            while current.is_empty() && tries < 8 {
                tries += 1;
                current.extend(self.create_owned_pod(ns, &ds, "DaemonSet", Some(&hash)));
            }
            let ready = current.iter().filter(|p| pod_ready(p)).count();
            let mut n = ds.clone();
            n["status"] = json!({
                "currentNumberScheduled": current.len(), "desiredNumberScheduled": 1,
                "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
                "updatedNumberScheduled": current.len(),
                "observedGeneration": ds["metadata"]["generation"].clone(),
            });
            if ready == 0 {
                n["status"]["numberUnavailable"] = json!(current.len());
            }
            self.write_if_changed(resources::DAEMONSETS, &ds, n);
        }
    }

    fn deployment_status(&mut self, ns: &str) {
        let deps = self.all(resources::DEPLOYMENTS, ns);
        for d in deps {
            let uid = meta_str(&d, "uid").to_string();
            let hash = template_hash(&d["spec"]["template"]);
            let current = format!("{}-{hash}", meta_str(&d, "name"));
            let sets = self.owned(resources::REPLICASETS, ns, &uid);
            let (mut total, mut ready, mut updated) = (0, 0, 0);
            for rs in &sets {
                let ruid = meta_str(rs, "uid").to_string();
                for p in self
                    .list(resources::PODS, Some(ns))
                    .filter(|p| owned_by(p, &ruid))
                {
                    total += 1;
                    if pod_ready(p) {
                        ready += 1;
                    }
                    if meta_str(rs, "name") == current {
                        updated += 1;
                    }
                }
            }
            let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let available = if ready >= want { "True" } else { "False" };
            let mut status = json!({
                "observedGeneration": d["metadata"]["generation"].clone(),
                "replicas": total, "updatedReplicas": updated,
                "readyReplicas": ready, "availableReplicas": ready,
                "conditions": [
                    {"type": "Available", "status": available, "reason": if available == "True" { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }, "message": if available == "True" { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{current}\" has successfully progressed.")},
                ],
            });
            if total > ready {
                status["unavailableReplicas"] = json!(total - ready);
            }
            if let Some(old) = d["status"]["conditions"].as_array() {
                // Keep transition times stable when nothing changed.
                if old
                    .iter()
                    .map(|c| (&c["type"], &c["status"]))
                    .eq(status["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| (&c["type"], &c["status"])))
                {
                    status["conditions"] = json!(old);
                }
            }
            let mut n = d.clone();
            if status["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x.get("lastUpdateTime").is_none()))
            {
                let t = now_ts();
                for c in status["conditions"].as_array_mut().into_iter().flatten() {
                    c["lastUpdateTime"] = json!(t);
                    c["lastTransitionTime"] = json!(t);
                }
            }
            n["status"] = status;
            self.write_if_changed(resources::DEPLOYMENTS, &d, n);
        }
    }

    fn reconcile_endpoints(&mut self, ns: &str) {
        let services = self.all(resources::SERVICES, ns);
        for svc in services {
            let Some(sel) = svc["spec"]["selector"]
                .as_object()
                .filter(|m| !m.is_empty())
            else {
                continue;
            };
            let Ok(selector) = Selector::from_json_labels(sel) else {
                continue;
            };
            let name = meta_str(&svc, "name").to_string();
            let mut ready = Vec::new();
            let mut not_ready = Vec::new();
            let mut first_pod: Option<Value> = None;
            for p in self.list(resources::PODS, Some(ns)) {
                if !selector.matches_json(labels(p)) {
                    continue;
                }
                let Some(ip) = p["status"]["podIP"].as_str() else {
                    continue;
                };
                let addr = json!({"ip": ip, "nodeName": "meshsim-node", "targetRef": {"kind": "Pod", "name": meta_str(p, "name"), "namespace": ns, "uid": meta_str(p, "uid")}});
                if pod_ready(p) {
                    ready.push(addr);
                } else {
                    not_ready.push(addr);
                }
                if first_pod.is_none() {
                    first_pod = Some(p.clone());
                }
            }
            let ports: Vec<Value> = svc["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let target = match &p["targetPort"] {
                        Value::String(named) => first_pod
                            .as_ref()
                            .and_then(|pod| {
                                pod["spec"]["containers"].as_array()?.iter().find_map(|c| {
                                    c["ports"].as_array()?.iter().find(|cp| cp["name"].as_str() == Some(named.as_str())).map(|cp| cp["containerPort"].clone())
                                })
                            })
                            .unwrap_or(p["port"].clone()),
                        Value::Null => p["port"].clone(),
                        other => other.clone(),
                    };
                    let mut e = json!({"port": target, "protocol": p["protocol"].as_str().unwrap_or("TCP")});
                    if let Some(n) = p.get("name") {
                        e["name"] = n.clone();
                    }
                    e
                })
                .collect();
            self.reconcile_slice(ns, &svc, &ready, &not_ready, &ports);
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            let subsets = if ready.is_empty() && not_ready.is_empty() {
                json!(null)
            } else {
                json!([subset])
            };
            let mut meta = json!({"name": name});
            if let Some(labels) = svc["metadata"].get("labels").filter(|l| !l.is_null()) {
                meta["labels"] = labels.clone();
            }
            let fresh = json!({ "metadata": meta });
            self.upsert(
                resources::ENDPOINTS,
                ns,
                &name,
                &[("subsets", subsets)],
                fresh,
            );
        }
    }
}

impl Store {
    /// The Service's EndpointSlice (discovery.k8s.io/v1), kept in step with
    /// its pods as the EndpointSlice controller does: one IPv4 slice named
    /// `SERVICE-meshsim`, labelled `kubernetes.io/service-name` and
    /// `endpointslice.kubernetes.io/managed-by`, one endpoint per pod with
    /// `conditions.ready` (and serving) from the pod's readiness.
    fn reconcile_slice(
        &mut self,
        ns: &str,
        svc: &Value,
        ready: &[Value],
        not_ready: &[Value],
        ports: &[Value],
    ) {
        let service = meta_str(svc, "name").to_string();
        let name = format!("{service}-meshsim");
        let endpoint = |a: &Value, ok: bool| {
            json!({
                "addresses": [a["ip"].clone()],
                "conditions": {"ready": ok, "serving": ok, "terminating": false},
                "nodeName": a["nodeName"].clone(),
                "targetRef": a["targetRef"].clone(),
            })
        };
        let endpoints: Vec<Value> = ready
            .iter()
            .map(|a| endpoint(a, true))
            .chain(not_ready.iter().map(|a| endpoint(a, false)))
            .collect();
        let fresh = json!({
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Service", "name": service,
                    "uid": meta_str(svc, "uid"), "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "addressType": "IPv4",
        });
        let fields = [("endpoints", json!(endpoints)), ("ports", json!(ports))];
        self.upsert(resources::ENDPOINTSLICES, ns, &name, &fields, fresh);
    }

    /// Keeps a controller's object `name` holding `fields` (Null removes
    /// one): changed in place when it exists, else created from `fresh`.
    fn upsert(
        &mut self,
        key: ResKey,
        ns: &str,
        name: &str,
        fields: &[(&str, Value)],
        fresh: Value,
    ) {
        let set = |o: &mut Value| {
            for (f, v) in fields {
                match (v, o.as_object_mut()) {
                    (Value::Null, Some(m)) => {
                        m.remove(*f);
                    }
                    _ => o[*f] = v.clone(),
                }
            }
        };
        match self.get(key, ns, name).cloned() {
            Some(cur) => {
                let mut n = cur.clone();
                set(&mut n);
                self.write_if_changed(key, &cur, n);
            }
            None => {
                let mut o = fresh;
                set(&mut o);
                let _ = self.create(resources::preferred(key), ns, o);
            }
        }
    }
}

fn container_defaults(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or_default().to_string();
    if c.get("imagePullPolicy").is_none() {
        let latest =
            image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':');
        c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
    }
    if c.get("resources").is_none() {
        c["resources"] = json!({});
    }
    if c.get("terminationMessagePath").is_none() {
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["terminationMessagePolicy"] = json!("File");
    }
}

/// Default ready delay when none is configured.
pub const DEFAULT_READY_DELAY: Duration = Duration::from_secs(2);

use meshpolicy::ambient::{
    GATEWAY_CLASS_LABEL, GATEWAY_MANAGED_LABEL as WAYPOINT_MANAGED_LABEL, GATEWAY_NAME_LABEL,
    WAYPOINT_MANAGED_VALUE,
};

/// HBONE port of a waypoint (its `mesh` listener).
pub const HBONE_PORT: u16 = 15008;

/// Whether `p` is a waypoint's pod (made by [`Store::reconcile_waypoints`]):
/// its container is `istio-proxy`, yet it is no sidecar.
pub fn is_waypoint_pod(p: &Value) -> bool {
    meshpolicy::ambient::is_waypoint_pod(&crate::store::labels_of(p))
}

/// The objects istiod's deployment controller makes for waypoint Gateway `gw`
/// (Istio's `waypoint.yaml` template, reduced to what a cluster shows):
/// ServiceAccount, Deployment and Service named like the Gateway.
fn waypoint_objects(gw: &Value) -> [(ResKey, Value); 3] {
    let name = meta_str(gw, "name").to_string();
    let owner = json!([{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "name": name, "uid": meta_str(gw, "uid"),
    }]);
    let class = meshpolicy::ambient::WAYPOINT_CLASS;
    let meta_labels = json!({GATEWAY_NAME_LABEL: name, GATEWAY_CLASS_LABEL: class});
    let mut dep_labels = meta_labels.clone();
    dep_labels[WAYPOINT_MANAGED_LABEL] = json!(WAYPOINT_MANAGED_VALUE);
    let mut pod_labels = dep_labels.clone();
    for (k, v) in [
        ("sidecar.istio.io/inject", "false"),
        ("istio.io/dataplane-mode", "none"),
        ("service.istio.io/canonical-name", name.as_str()),
        ("service.istio.io/canonical-revision", "latest"),
    ] {
        pod_labels[k] = json!(v);
    }
    let ann = &gw["metadata"]["annotations"];
    let pick = |key: &str, default: &str| ann[key].as_str().unwrap_or(default).to_string();
    // The proxy's log levels: istiod reads these annotations of the Gateway
    // into the container's args; meshsim's Envoy reads them off the pod.
    let mut pod_annotations = json!({
        "istio.io/rev": "default",
        "prometheus.io/path": "/stats/prometheus",
        "prometheus.io/port": "15020",
        "prometheus.io/scrape": "true",
    });
    for key in [
        "sidecar.istio.io/logLevel",
        "sidecar.istio.io/componentLogLevel",
    ] {
        if let Some(v) = ann[key].as_str() {
            pod_annotations[key] = json!(v);
        }
    }
    let env = |n: &str, path: &str| json!({"name": n, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let sa = json!({
        "metadata": {"name": name, "labels": meta_labels, "ownerReferences": owner},
    });
    let deployment = json!({
        "metadata": {"name": name, "labels": dep_labels, "ownerReferences": owner},
        "spec": {
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: name}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": pod_annotations,
                },
                "spec": {
                    "serviceAccountName": name,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "istio-proxy",
                        "image": PROXY_IMAGE,
                        "args": [
                            "proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                            "--serviceCluster", format!("{name}.$(POD_NAMESPACE)"),
                            "--proxyLogLevel", pick("sidecar.istio.io/logLevel", "warning"),
                            "--proxyComponentLogLevel", pick("sidecar.istio.io/componentLogLevel", "misc:error"),
                            "--log_output_level", pick("sidecar.istio.io/agentLogLevel", "default:info"),
                        ],
                        "ports": [
                            {"containerPort": 15020, "name": "metrics", "protocol": "TCP"},
                            {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
                            {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
                        ],
                        "env": [
                            env("POD_NAME", "metadata.name"),
                            env("POD_NAMESPACE", "metadata.namespace"),
                            env("INSTANCE_IP", "status.podIP"),
                            env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                            {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
                            {"name": "ISTIO_META_WORKLOAD_NAME", "value": name},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"}, "failureThreshold": 4, "periodSeconds": 15, "timeoutSeconds": 1},
                    }],
                },
            },
        },
    });
    let service = json!({
        "metadata": {
            "name": name, "labels": meta_labels, "ownerReferences": owner,
            "annotations": {"networking.istio.io/traffic-distribution": "PreferClose"},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {GATEWAY_NAME_LABEL: name},
            "ports": [
                {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP", "appProtocol": "tcp"},
                {"name": "mesh", "port": HBONE_PORT, "targetPort": HBONE_PORT, "protocol": "TCP", "appProtocol": "all"},
            ],
        },
    });
    [
        (resources::SERVICEACCOUNTS, sa),
        (resources::DEPLOYMENTS, deployment),
        (resources::SERVICES, service),
    ]
}

impl Store {
    /// Istio's waypoint deployment controller for namespace `ns`: every
    /// Gateway of class `istio-waypoint` gets its ServiceAccount, Deployment
    /// and Service (created when missing; owned by the Gateway, so deleting it
    /// removes them) and a status as istiod writes it (Accepted, Programmed
    /// once its Service has an address, `addresses` = the Service's cluster IP).
    pub fn reconcile_waypoints(&mut self, ns: &str) {
        let gateways: Vec<Value> = self
            .list(resources::GATEWAYS, Some(ns))
            .filter(|g| meshpolicy::ambient::waypoint_of_gateway(g).is_some())
            .cloned()
            .collect();
        for gw in gateways {
            let name = meta_str(&gw, "name").to_string();
            for (key, obj) in waypoint_objects(&gw) {
                match self.get(key, ns, &name).cloned() {
                    None => {
                        let _ = self.create(resources::preferred(key), ns, obj);
                    }
                    // As istiod re-renders it: a Gateway change that changes
                    // the pod template (log level annotations) rolls the pods.
                    Some(cur)
                        if key == resources::DEPLOYMENTS
                            && cur["spec"]["template"] != obj["spec"]["template"] =>
                    {
                        let mut n = cur.clone();
                        n["spec"]["template"] = obj["spec"]["template"].clone();
                        let _ = self.update(resources::preferred(key), ns, &name, n, false);
                    }
                    Some(_) => {}
                }
            }
            let ip = self
                .get(resources::SERVICES, ns, &name)
                .and_then(|s| s["spec"]["clusterIP"].as_str())
                .map(str::to_string);
            let mut n = gw.clone();
            let keep = |t: &str| {
                gw["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == t && c["status"] == "True")
                    .and_then(|c| c["lastTransitionTime"].as_str())
                    .map_or_else(now_ts, str::to_string)
            };
            let generation = gw["metadata"]["generation"].clone();
            let cond = |t: &str, ok: bool, reason: &str, message: String| {
                json!({"type": t, "status": if ok { "True" } else { "False" }, "reason": reason,
                       "message": message, "lastTransitionTime": keep(t), "observedGeneration": generation})
            };
            let fqdn = format!("{name}.{ns}.svc.cluster.local:{HBONE_PORT}");
            n["status"] = json!({
                "conditions": [
                    cond("Accepted", true, "Accepted", "Resource accepted".into()),
                    match &ip {
                        Some(_) => cond("Programmed", true, "Programmed",
                            format!("Resource programmed, assigned to service(s) {fqdn}")),
                        None => cond("Programmed", false, "AddressNotAssigned",
                            "Assigned to service, but no address is assigned yet".into()),
                    },
                ],
                "listeners": gw["spec"]["listeners"].as_array().into_iter().flatten().map(|l| json!({
                    "name": l["name"], "attachedRoutes": 0, "supportedKinds": [],
                    "conditions": [
                        cond("Accepted", true, "Accepted", "No errors found".into()),
                        cond("NoConflicts", false, "NoConflicts", "No errors found".into()),
                        cond("Programmed", true, "Programmed", "No errors found".into()),
                        cond("ResolvedRefs", true, "ResolvedRefs", "No errors found".into()),
                    ],
                })).collect::<Vec<_>>(),
            });
            if let Some(ip) = ip {
                n["status"]["addresses"] = json!([{"type": "IPAddress", "value": ip}]);
            }
            self.write_if_changed(resources::GATEWAYS, &gw, n);
        }
    }
}

#[cfg(test)]
mod waypoint_tests {
    use super::*;
    use crate::store::Timing;

    #[test]
    fn waypoint_gateway_becomes_deployment_service_and_pod_and_goes_away() {
        let mut s = Store::new(Timing {
            ready_delay: Duration::ZERO,
            time_scale: 1.0,
        });
        assert!(
            s.get(resources::GATEWAYCLASSES, "", "istio-waypoint")
                .is_some()
        );
        let gw = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "labels": {"istio.io/waypoint-for": "service"}},
            "spec": {"gatewayClassName": "istio-waypoint",
                     "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
        });
        let def = resources::preferred(resources::GATEWAYS);
        s.create(def, "default", gw).expect("gateway");
        s.reconcile("default");
        s.tick(Instant::now() + Duration::from_secs(1));
        let dep = s
            .get(resources::DEPLOYMENTS, "default", "waypoint")
            .expect("deployment");
        assert_eq!(
            dep["metadata"]["labels"][WAYPOINT_MANAGED_LABEL],
            WAYPOINT_MANAGED_VALUE
        );
        let svc = s
            .get(resources::SERVICES, "default", "waypoint")
            .expect("service");
        let ports: Vec<u64> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert_eq!(ports, vec![15021, 15008]);
        assert!(
            s.get(resources::SERVICEACCOUNTS, "default", "waypoint")
                .is_some()
        );
        let pods: Vec<Value> = s
            .list(resources::PODS, Some("default"))
            .filter(|p| is_waypoint_pod(p))
            .cloned()
            .collect();
        assert_eq!(pods.len(), 1);
        let pod = &pods[0];
        assert_eq!(pod["metadata"]["labels"]["istio.io/dataplane-mode"], "none");
        let containers = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "no sidecar injected into a waypoint");
        assert_eq!(containers[0]["args"][1], "waypoint");
        assert_eq!(pod["status"]["phase"], "Running");
        let gw = s
            .get(resources::GATEWAYS, "default", "waypoint")
            .expect("gw");
        let programmed = gw["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Programmed" && c["status"] == "True");
        assert!(programmed, "{gw}");
        assert_eq!(
            gw["status"]["addresses"][0]["value"],
            svc["spec"]["clusterIP"]
        );
        s.delete(def, "default", "waypoint").expect("delete");
        s.reconcile("default");
        assert!(
            s.get(resources::DEPLOYMENTS, "default", "waypoint")
                .is_none()
        );
        assert!(s.get(resources::SERVICES, "default", "waypoint").is_none());
        assert_eq!(
            s.list(resources::PODS, Some("default"))
                .filter(|p| is_waypoint_pod(p))
                .count(),
            0
        );
    }

    #[test]
    fn other_gateway_classes_are_left_alone() {
        let mut s = Store::new(Timing {
            ready_delay: Duration::ZERO,
            time_scale: 1.0,
        });
        let gw = json!({
            "metadata": {"name": "ingress"},
            "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        });
        s.create(resources::preferred(resources::GATEWAYS), "default", gw)
            .expect("gateway");
        s.reconcile("default");
        assert!(
            s.get(resources::DEPLOYMENTS, "default", "ingress")
                .is_none()
        );
    }
}
