//! `kubectl rbaclog` live on a mixed cluster, through the real kubectl and
//! meshsim: the walk-through's two sidecar namespaces (np-test-1, np-test-2,
//! RBAC debug logs on) beside two ambient ones (amb-1, amb-2: the same
//! workloads, renamed, enrolled with `istio.io/dataplane-mode=ambient`) and
//! the ztunnel DaemonSet in istio-system.
//!
//! - `rbaclog -n amb-2` reads the ztunnel pods (amb-2 has ambient workloads)
//!   and keeps the rejections whose destination is in amb-2: the ALLOW miss
//!   (`allow policies exist, but none allowed`) attributed to the ALLOW
//!   policy ztunnel enforces there, and the DENY named `NS/NAME`;
//! - `-n amb-1` (the source's namespace) shows none of them; `-f` follows
//!   the ztunnels too;
//! - `--summary` counts per policy and per proxy kind across the sidecar and
//!   ztunnel denials; `-A` finds them all, `--from-namespace`/`--to-namespace`
//!   split them by the source's and the destination's namespace.

use crate::common;

use common::sim::built;
use common::{Out, Sim, fast_config, repo_root};

/// The ambient half: examples/ambient's namespaces and workloads renamed
/// (np-test-N -> amb-N), and its ztunnel DaemonSet.
fn ambient_scenario(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let out = dir.join("ambient");
    std::fs::create_dir_all(&out)?;
    let src = repo_root().join("examples/ambient");
    for f in ["00-namespaces.yaml", "istio-np-1.yaml", "istio-np-2.yaml"] {
        let text = std::fs::read_to_string(src.join(f))?.replace("np-test-", "amb-");
        std::fs::write(out.join(f), text)?;
    }
    std::fs::copy(src.join("01-ztunnel.yaml"), out.join("01-ztunnel.yaml"))?;
    Ok(out)
}

const ALLOW_GET: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-get-on-ztunnel
  namespace: amb-2
spec:
  selector:
    matchLabels:
      app: amb-nginx-2
  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: [\"amb-1\"]
    to:
    - operation:
        methods: [\"GET\"]
";

const DENY_L4: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-amb-1-l4
  namespace: amb-2
spec:
  selector:
    matchLabels:
      app: amb-nginx-2
  action: DENY
  rules:
  - from:
    - source:
        namespaces: [\"amb-1\"]
";

async fn rbaclog(cl: &Sim, args: &[&str]) -> anyhow::Result<Out> {
    built(&["kubectl-rbaclog"]);
    cl.kubectl(&[&["rbaclog"], args].concat()).await
}

fn json(o: &Out) -> Vec<serde_json::Value> {
    assert_eq!(o.code, 0, "{o:?}");
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

async fn curl(cl: &Sim, ns: &str, pod: &str, url: &str) -> anyhow::Result<Out> {
    cl.kubectl(&[
        "exec",
        "-n",
        ns,
        pod,
        "--",
        "curl",
        "-sS",
        "--max-time",
        "3",
        url,
    ])
    .await
}

async fn ztunnel_log(cl: &Sim) -> anyhow::Result<String> {
    cl.ok(&[
        "logs",
        "-n",
        "istio-system",
        "-l",
        "app=ztunnel",
        "--tail=-1",
    ])
    .await
}

/// Probes from amb-1 to amb-2 until ztunnel's log holds `wanted` (the policy
/// reaches ztunnel after meshsim's scaled propagation delay); returns the last probe.
async fn probe_until_logged(cl: &Sim, client: &str, wanted: &str) -> anyhow::Result<Out> {
    for _ in 0..60 {
        let o = curl(cl, "amb-1", client, "http://svc-amb-nginx-2.amb-2").await?;
        if o.code != 0 && ztunnel_log(cl).await?.contains(wanted) {
            return Ok(o);
        }
    }
    anyhow::bail!(
        "ztunnel never logged {wanted:?}: {}",
        ztunnel_log(cl).await?
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn live_rbaclog_reads_ztunnel_for_ambient_destinations_beside_sidecars() -> anyhow::Result<()>
{
    let scen = tempfile::tempdir()?;
    let mut c = fast_config();
    c.scenarios = vec![
        repo_root().join("examples/walkthrough"),
        ambient_scenario(scen.path())?,
    ];
    let cl = Sim::in_process(c).await?;
    let ztunnel = cl.wait_ready_pod("istio-system", "app=ztunnel").await?;
    cl.wait_ready_pod("amb-2", "app=amb-nginx-2").await?;
    cl.wait_ready_pod("np-test-2", "app=np-test-nginx-2")
        .await?;
    let client = cl.wait_ready_pod("amb-1", "app=amb-nginx-1").await?;
    let sidecar_client = cl
        .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
        .await?;

    // Nothing denied yet: ztunnel was read (no Envoy debug advice for it).
    let o = rbaclog(&cl, &["-n", "amb-2"]).await?;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    assert!(
        o.stderr.contains("decisions found") && o.stderr.contains("(1 ztunnel)"),
        "{o:?}"
    );
    assert!(!o.stderr.contains("enable one of"), "{o:?}");

    // 1. An ALLOW rule with an HTTP attribute bound to ztunnel allows nothing:
    //    the connection is reset (curl exit 56) and ztunnel logs the ALLOW miss.
    let f = scen.path().join("allow.yaml");
    std::fs::write(&f, ALLOW_GET)?;
    cl.ok(&["apply", "-f", &f.display().to_string()]).await?;
    let o = probe_until_logged(&cl, &client, "allow policies exist, but none allowed").await?;
    assert_eq!(o.code, 56, "{o:?}");
    let v = json(&rbaclog(&cl, &["-n", "amb-2", "-o", "json"]).await?);
    assert!(!v.is_empty(), "{v:#?}");
    for d in &v {
        assert_eq!(d["proxy"], "ztunnel", "{d:#}");
        assert_eq!(d["namespace"], "istio-system", "{d:#}");
        assert_eq!(d["pod"], ztunnel.as_str(), "{d:#}");
        assert_eq!(d["decision"], "denied", "{d:#}");
        assert_eq!(d["policy_id"], "none", "{d:#}");
        assert_eq!(d["because"], "no ALLOW rule matched", "{d:#}");
        assert_eq!(
            d["allow_policies"],
            serde_json::json!(["amb-2/allow-get-on-ztunnel"]),
            "{d:#}"
        );
        assert!(
            d["to"]
                .as_str()
                .is_some_and(|t| t.starts_with("amb-2/amb-nginx-2-")),
            "{d:#}"
        );
        assert_eq!(d["from"], format!("amb-1/{client}"), "{d:#}");
    }
    let misses = v.len();
    // --policy matches the miss through its ALLOW candidate.
    let o = rbaclog(
        &cl,
        &["amb-2", "--policy", "allow-get-on-ztunnel", "-o", "json"],
    )
    .await?;
    assert_eq!(json(&o).len(), misses, "{o:?}");
    assert!(!o.stderr.contains("warning"), "{o:?}");
    // The source's namespace is not the destination: nothing there.
    assert!(json(&rbaclog(&cl, &["-n", "amb-1", "-o", "json"]).await?).is_empty());

    // 2. A DENY bound by selector: ztunnel names it.
    let f = scen.path().join("deny.yaml");
    std::fs::write(&f, DENY_L4)?;
    cl.ok(&["apply", "-f", &f.display().to_string()]).await?;
    let o = probe_until_logged(&cl, &client, "explicitly denied by: amb-2/deny-amb-1-l4").await?;
    assert_eq!(o.code, 56, "{o:?}");
    assert!(
        o.stderr.contains("Recv failure: Connection reset by peer"),
        "{o:?}"
    );
    let v = json(
        &rbaclog(
            &cl,
            &[
                "-n",
                "amb-2",
                "--policy",
                "amb-2/deny-amb-1-l4",
                "-o",
                "json",
            ],
        )
        .await?,
    );
    assert!(!v.is_empty(), "{v:#?}");
    let d = &v[v.len() - 1];
    assert_eq!(d["proxy"], "ztunnel", "{d:#}");
    assert_eq!(d["policy"]["namespace"], "amb-2", "{d:#}");
    assert_eq!(d["policy"]["name"], "deny-amb-1-l4", "{d:#}");
    assert_eq!(d["action"], "DENY", "{d:#}");
    // The table names the proxy kind and where the connection went.
    let o = rbaclog(&cl, &["-n", "amb-2"]).await?;
    assert!(
        o.stdout
            .contains(&format!("istio-system/{ztunnel} (ztunnel)"))
            && o.stdout.contains("amb-2/deny-amb-1-l4")
            && o.stdout.contains("tcp to amb-2/amb-nginx-2-"),
        "{o:?}"
    );

    // Following: a new rejection shows up as it is logged (no history: --tail 0).
    built(&["kubectl-rbaclog"]);
    let mut follow = cl
        .kubectl_async(&["rbaclog", "amb-2", "-f", "--tail", "0", "-o", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(follow.stdout.take().unwrap()));
    let mut followed = None;
    for _ in 0..20 {
        let o = curl(&cl, "amb-1", &client, "http://svc-amb-nginx-2.amb-2").await?;
        assert_eq!(o.code, 56, "{o:?}");
        if let Ok(line) =
            tokio::time::timeout(std::time::Duration::from_secs(3), lines.next_line()).await
        {
            followed = line?;
            break;
        }
    }
    let _ = follow.start_kill();
    let line = followed.expect("rbaclog -f printed no ztunnel rejection");
    let d: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(d["proxy"], "ztunnel", "{d:#}");
    assert_eq!(d["policy"]["name"], "deny-amb-1-l4", "{d:#}");

    // 3. A sidecar denial in the other half of the cluster (the walk-through's DENY).
    cl.ok(&[
        "apply",
        "-n",
        "np-test-2",
        "-f",
        &repo_root()
            .join("examples/walkthrough/policies/block-istio-ingress-np-test-2.yaml")
            .display()
            .to_string(),
    ])
    .await?;
    let mut sidecar_denied = false;
    for _ in 0..60 {
        let o = cl
            .kubectl(&[
                "exec",
                "-n",
                "np-test-1",
                &sidecar_client,
                "-c",
                "np-test-nginx-1",
                "--",
                "curl",
                "-sS",
                "-w",
                "\n%{http_code}",
                "--max-time",
                "3",
                "http://svc-np-test-nginx-2.np-test-2",
            ])
            .await?;
        if o.stdout.ends_with("\n403") {
            sidecar_denied = true;
            break;
        }
    }
    assert!(sidecar_denied, "the sidecar never denied");

    // --summary across both kinds: per policy, per proxy kind.
    let o = rbaclog(&cl, &["np-test-2", "amb-2", "--summary", "-o", "json"]).await?;
    assert_eq!(o.code, 0, "{o:?}");
    let s: serde_json::Value = serde_json::from_str(&o.stdout)?;
    let policies: Vec<&str> = s["by_policy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert!(
        policies.contains(&"np-test-2/deny-all-ingress-using-authorizationpolicy")
            && policies.contains(&"amb-2/deny-amb-1-l4")
            && policies.contains(&"none (allow: amb-2/allow-get-on-ztunnel)"),
        "{s:#}"
    );
    let proxies: Vec<&str> = s["by_proxy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["proxy"].as_str().unwrap())
        .collect();
    assert_eq!(proxies.len(), 2, "{s:#}");
    assert!(
        proxies.contains(&"sidecar") && proxies.contains(&"ztunnel"),
        "{s:#}"
    );
    let total = s["total"].as_u64().unwrap();
    // -A reads every proxy, the ztunnel included, and finds the same decisions.
    let all = json(&rbaclog(&cl, &["-A", "-o", "json"]).await?);
    assert_eq!(all.len() as u64, total, "{all:#?}");
    // Filtering them by the source's and the destination's namespace.
    let amb2 = json(&rbaclog(&cl, &["amb-2", "-o", "json"]).await?).len();
    let to = json(&rbaclog(&cl, &["-A", "--to-namespace", "amb-2", "-o", "json"]).await?);
    assert_eq!(to.len(), amb2, "{to:#?}");
    let from = json(&rbaclog(&cl, &["-A", "--from-namespace", "amb-1", "-o", "json"]).await?);
    assert_eq!(from.len(), amb2, "{from:#?}");
    let from = json(&rbaclog(&cl, &["-A", "--from-namespace", "np-test-1", "-o", "json"]).await?);
    assert_eq!(from.len() as u64, total - amb2 as u64, "{from:#?}");
    assert!(from.iter().all(|d| d["proxy"] == "sidecar"), "{from:#?}");

    // Without ztunnel an ambient namespace has nothing to read: the hint says
    // so, not "label the namespace for injection".
    cl.ok(&["delete", "daemonset", "ztunnel", "-n", "istio-system"])
        .await?;
    let mut last = None;
    for _ in 0..50 {
        let o = rbaclog(&cl, &["amb-2"]).await?;
        if o.code == 3 {
            last = Some(o);
            break;
        }
        cl.ok(&["get", "pods", "-n", "istio-system"]).await?;
    }
    let o = last.expect("rbaclog kept finding the deleted ztunnel");
    assert!(
        o.stderr.contains("namespace amb-2 is in ambient mode")
            && o.stderr.contains("-l app=ztunnel")
            && !o.stderr.contains("istio-injection"),
        "{o:?}"
    );
    Ok(())
}
