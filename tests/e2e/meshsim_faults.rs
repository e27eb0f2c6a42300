//! End-to-end: `--fault` rules seen through the real kubectl: 500, 429 with
//! Retry-After, 403, a hung request cut by kubectl's own timeout, an exec
//! stream cut after N bytes and a log stream cut after N bytes. Faults match
//! on namespace so the same cluster shows that unmatched requests still work.

use crate::common;

use common::{Sim, fast_config};
use meshsim::faults::Fault;

async fn cluster(faults: &[&str]) -> anyhow::Result<Sim> {
    let mut cfg = fast_config();
    cfg.scenarios = vec![common::repo_root().join("examples/walkthrough")];
    cfg.faults = faults
        .iter()
        .map(|f| Fault::parse(f))
        .collect::<Result<_, _>>()?;
    Sim::in_process(cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_faults_500_429_403() -> anyhow::Result<()> {
    let c = cluster(&[
        "verb=list,resource=services,namespace=np-test-1,status=500",
        "verb=list,resource=configmaps,namespace=np-test-1,status=429,retry-after=0",
        "verb=list,resource=endpoints,namespace=np-test-1,status=403",
    ])
    .await?;
    let e500 = c.kubectl(&["get", "svc", "-n", "np-test-1"]).await?;
    assert_eq!(e500.code, 1, "{e500:?}");
    assert!(
        e500.stderr
            .contains("Error from server (InternalError): Internal error occurred"),
        "{}",
        e500.stderr
    );
    let e429 = c.kubectl(&["get", "configmaps", "-n", "np-test-1"]).await?;
    assert_eq!(e429.code, 1, "{e429:?}");
    assert!(
        e429.stderr.contains("Error from server (TooManyRequests)"),
        "{}",
        e429.stderr
    );
    let e403 = c.kubectl(&["get", "endpoints", "-n", "np-test-1"]).await?;
    assert_eq!(e403.code, 1, "{e403:?}");
    assert!(
        e403.stderr.contains("Error from server (Forbidden)"),
        "{}",
        e403.stderr
    );
    // The same verbs elsewhere are untouched.
    let fine = c
        .ok(&["get", "svc,configmaps,endpoints", "-n", "np-test-2"])
        .await?;
    assert!(fine.contains("service/svc-np-test-nginx-2"), "{fine}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_header_is_sent_with_429() -> anyhow::Result<()> {
    let c =
        cluster(&["verb=get,resource=namespaces,name=np-test-2,status=429,retry-after=7"]).await?;
    // kubectl -v=8 prints response headers: the Retry-After the client-go retry logic reads.
    let o = c
        .kubectl(&["get", "ns", "np-test-2", "-v=8", "--request-timeout=1s"])
        .await?;
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Retry-After: 7"), "{}", o.stderr);
    assert!(o.stderr.contains("429 Too Many Requests"), "{}", o.stderr);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_request_is_ended_by_the_client_timeout() -> anyhow::Result<()> {
    let c = cluster(&["verb=get,resource=namespaces,name=np-test-2,hang=10m"]).await?;
    let o = c
        .kubectl(&["get", "ns", "np-test-2", "--request-timeout=1s"])
        .await?;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("context deadline exceeded") || o.stderr.contains("Timeout"),
        "{}",
        o.stderr
    );
    // Other requests are not blocked by the hanging one.
    c.ok(&["get", "ns", "np-test-1"]).await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stream_cut_after_n_bytes() -> anyhow::Result<()> {
    let c = cluster(&["verb=exec,namespace=np-test-1,cut-exec-after=1000"]).await?;
    let pod = c.walkthrough_pod().await?;
    let input = vec![b'x'; 100_000];
    let o = c
        .kubectl_io(
            &[
                "exec",
                "-i",
                "-n",
                "np-test-1",
                &pod,
                "-c",
                "np-test-nginx-1",
                "--",
                "cat",
            ],
            input,
        )
        .await?;
    assert_ne!(o.code, 0, "a cut exec must fail");
    assert!(o.stdout.len() <= 1000, "got {} bytes", o.stdout.len());
    assert!(o.stdout.iter().all(|b| *b == b'x'));
    assert!(
        // How the cut shows depends on where kubectl is when the socket closes.
        ["websocket", "EOF", "connection reset"]
            .iter()
            .any(|m| o.stderr.contains(m)),
        "{}",
        o.stderr
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_stream_cut_after_n_bytes() -> anyhow::Result<()> {
    let c = cluster(&["verb=log,namespace=np-test-1,cut-log-after=300"]).await?;
    let pod = c.walkthrough_pod().await?;
    for i in 0..100 {
        c.handle()
            .cluster
            .logs()
            .append("np-test-1", &pod, "istio-proxy", &format!("line {i}"));
    }
    let cut = c
        .kubectl_io(
            &["logs", "-n", "np-test-1", &pod, "-c", "istio-proxy"],
            Vec::new(),
        )
        .await?;
    assert_eq!(cut.code, 1, "{cut:?}");
    assert_eq!(cut.stdout.len(), 300);
    assert!(cut.stderr.contains("unexpected EOF"), "{}", cut.stderr);
    // Follow is cut the same way, and does not hang.
    let follow = c
        .kubectl_io(
            &["logs", "-f", "-n", "np-test-1", &pod, "-c", "istio-proxy"],
            Vec::new(),
        )
        .await?;
    assert_eq!(follow.code, 1);
    assert_eq!(follow.stdout.len(), 300);
    // Another namespace's logs are whole.
    let other = c.wait_ready_pod("np-test-2", "app=np-test-nginx-2").await?;
    let whole = c
        .ok(&["logs", "-n", "np-test-2", &other, "-c", "istio-proxy"])
        .await?;
    assert!(
        whole.len() > 300 && whole.contains("Envoy proxy is ready"),
        "{whole}"
    );
    c.shutdown().await;
    Ok(())
}
