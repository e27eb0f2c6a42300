//! End-to-end: the real kubectl against meshsim (issue 4's Tests section).

use crate::common;

use common::{Sim, fast_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_all_namespaces_pods_and_services() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let out = c.ok(&["get", "ns,pods,svc", "-A"]).await?;
    assert!(out.contains("namespace/np-test-1"), "{out}");
    assert!(out.contains("service/svc-np-test-nginx-2"), "{out}");
    assert!(out.contains("pod/np-test-nginx-1-"), "{out}");
    assert!(out.contains("NAMESPACE   NAME"), "{out}");
    let missing = c
        .kubectl(&["get", "pod", "nope", "-n", "np-test-1"])
        .await?;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("pods \"nope\" not found"),
        "{}",
        missing.stderr
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_label_apply_twice_and_delete() -> anyhow::Result<()> {
    let c = Sim::in_process(fast_config()).await?;
    assert!(
        c.ok(&["create", "namespace", "np-test-1"])
            .await?
            .contains("namespace/np-test-1 created")
    );
    let again = c.kubectl(&["create", "namespace", "np-test-1"]).await?;
    assert!(
        again.stderr.contains("AlreadyExists") || again.stderr.contains("already exists"),
        "{}",
        again.stderr
    );
    c.ok(&[
        "label",
        "namespace",
        "np-test-1",
        "istio-injection=enabled",
        "--overwrite",
    ])
    .await?;
    let labels = c
        .ok(&[
            "get",
            "ns",
            "np-test-1",
            "-o",
            "jsonpath={.metadata.labels.istio-injection}",
        ])
        .await?;
    assert_eq!(labels, "enabled");
    let f = common::repo_root().join("examples/walkthrough/istio-np-1.yaml");
    let first = c
        .ok(&[
            "apply",
            "-f",
            f.to_str().unwrap_or_default(),
            "-n",
            "np-test-1",
        ])
        .await?;
    assert!(
        first.contains("deployment.apps/np-test-nginx-1 created"),
        "{first}"
    );
    // Second apply with a changed replica count is an update.
    let text =
        std::fs::read_to_string(&f)?.replace("  strategy:\n", "  replicas: 2\n  strategy:\n");
    let f2 = c.path().join("changed.yaml");
    std::fs::write(&f2, text)?;
    let second = c
        .ok(&[
            "apply",
            "-f",
            f2.to_str().unwrap_or_default(),
            "-n",
            "np-test-1",
        ])
        .await?;
    assert!(
        second.contains("deployment.apps/np-test-nginx-1 configured"),
        "{second}"
    );
    let pod = c.wait_ready_pod("np-test-1", "app=np-test-nginx-1").await?;
    let containers = c
        .ok(&[
            "get",
            "pod",
            &pod,
            "-n",
            "np-test-1",
            "-o",
            "jsonpath={.spec.containers[*].name} {.spec.initContainers[*].name}",
        ])
        .await?;
    assert_eq!(containers, "np-test-nginx-1 istio-proxy istio-init");
    let deleted = c
        .ok(&[
            "delete",
            "-f",
            f2.to_str().unwrap_or_default(),
            "-n",
            "np-test-1",
        ])
        .await?;
    assert!(
        deleted.contains("deployment.apps \"np-test-nginx-1\" deleted"),
        "{deleted}"
    );
    let pods = c
        .kubectl(&["get", "pods", "-n", "np-test-1", "-o", "name"])
        .await?;
    assert_eq!(pods.stdout.trim(), "");
    c.ok(&["delete", "namespace", "np-test-1"]).await?;
    let gone = c.kubectl(&["get", "ns", "np-test-1"]).await?;
    assert!(
        gone.stderr.contains("namespaces \"np-test-1\" not found"),
        "{}",
        gone.stderr
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_pods_ready() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut cfg = fast_config();
    cfg.time_scale = 0.2; // pods become ready after ~200 ms, after the watch starts
    let c = Sim::in_process(cfg).await?;
    c.ok(&["create", "namespace", "w"]).await?;
    let mut cmd = c.kubectl_async(&["get", "pods", "-Aw"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  namespace: w\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let f = c.path().join("p.yaml");
    std::fs::write(&f, yaml)?;
    c.ok(&["apply", "-f", f.to_str().unwrap_or_default()])
        .await?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut ready = false;
    while let Some(l) = lines.next_line().await? {
        seen.push(l.clone());
        if l.contains("p1") && l.contains("1/1") && l.contains("Running") {
            ready = true;
            break;
        }
        if seen.len() > 50 {
            break;
        }
    }
    let _ = child.kill().await;
    assert!(ready, "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("p1") && l.contains("ContainerCreating")),
        "{seen:?}"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exit_code_stdin_and_errors() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.wait_ready_pod("np-test-1", "app=np-test-nginx-1").await?;
    let o = c
        .kubectl(&[
            "exec",
            &pod,
            "-n",
            "np-test-1",
            "--",
            "sh",
            "-c",
            "echo hi; exit 7",
        ])
        .await?;
    assert_eq!(o.stdout, "hi\n");
    assert_eq!(o.code, 7, "{}", o.stderr);
    let o = c
        .kubectl_stdin(
            &["exec", "-i", &pod, "-n", "np-test-1", "--", "cat"],
            Some(b"from stdin\n"),
        )
        .await?;
    assert_eq!(o.stdout, "from stdin\n");
    assert_eq!(o.code, 0);
    let o = c
        .kubectl(&["exec", &pod, "-n", "np-test-1", "-c", "nope", "--", "true"])
        .await?;
    assert!(
        o.stderr.contains("container nope is not valid for pod"),
        "{}",
        o.stderr
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_previous_is_400() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.wait_ready_pod("np-test-2", "app=np-test-nginx-2").await?;
    let o = c
        .kubectl(&[
            "logs",
            &pod,
            "-n",
            "np-test-2",
            "-c",
            "istio-proxy",
            "--previous",
        ])
        .await?;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains(&format!(
            "previous terminated container \"istio-proxy\" in pod \"{pod}\" not found"
        )),
        "{}",
        o.stderr
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_token_auth() -> anyhow::Result<()> {
    let mut cfg = fast_config();
    cfg.tls = true;
    cfg.token = Some("s3cret".into());
    let c = Sim::in_process(cfg).await?;
    assert!(c.handle().url.starts_with("https://"));
    let out = c.ok(&["get", "ns"]).await?;
    assert!(out.contains("default"), "{out}");
    let bad = c.kubectl(&["get", "ns", "--token", "wrong"]).await?;
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("Unauthorized"), "{}", bad.stderr);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_auth() -> anyhow::Result<()> {
    let mut cfg = fast_config();
    cfg.client_ca = true;
    let c = Sim::in_process(cfg).await?;
    let out = c.ok(&["get", "ns", "-o", "name"]).await?;
    assert!(out.contains("namespace/default"), "{out}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_and_follow() -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.wait_ready_pod("np-test-2", "app=np-test-nginx-2").await?;
    let mut all = String::new();
    for _ in 0..100 {
        all = c
            .ok(&["logs", &pod, "-n", "np-test-2", "-c", "istio-proxy"])
            .await?;
        if all.contains("Envoy proxy is ready") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(all.contains("Envoy proxy is ready"), "{all}");
    let n = all.lines().count();
    assert!(n > 2);
    let tail = c
        .ok(&[
            "logs",
            &pod,
            "-n",
            "np-test-2",
            "-c",
            "istio-proxy",
            "--tail",
            "1",
        ])
        .await?;
    // Envoy keeps writing (its CDS poll every second logs at debug level), so
    // the last line is the last one of a log read after the tail, at or after
    // where the first read ended.
    let after = c
        .ok(&["logs", &pod, "-n", "np-test-2", "-c", "istio-proxy"])
        .await?;
    let lines_after: Vec<&str> = after.lines().collect();
    let pos = lines_after
        .iter()
        .rposition(|l| *l == tail.trim_end())
        .unwrap_or_else(|| panic!("--tail 1 gave {tail:?}, not a line of the log:\n{after}"));
    assert!(
        pos + 1 >= n,
        "--tail 1 gave line {} of {}, before the {n} lines read earlier",
        pos + 1,
        lines_after.len()
    );
    let since = c
        .ok(&[
            "logs",
            &pod,
            "-n",
            "np-test-2",
            "-c",
            "istio-proxy",
            "--since",
            "1h",
        ])
        .await?;
    // Envoy may have written more since the first read: the earlier read is
    // a prefix of this one.
    assert!(
        since.starts_with(&all),
        "--since 1h left out lines of the full log"
    );
    // Follow: a line appended after the stream started arrives.
    let mut cmd = c.kubectl_async(&["logs", "-f", &pod, "-n", "np-test-2", "-c", "istio-proxy"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let mut lines = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .lines();
    // The stream starts with the log so far, which the real Envoy may have
    // grown since it was read: wait for the first line, append, then read
    // until the appended line arrives (bounded).
    lines.next_line().await?;
    c.handle()
        .cluster
        .logs()
        .append("np-test-2", &pod, "istio-proxy", "appended while following");
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if line == "appended while following" {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    let _ = child.kill().await;
    assert!(
        matches!(found, Ok(Ok(true))),
        "the line appended while following never arrived: {found:?}"
    );
    c.shutdown().await;
    Ok(())
}
