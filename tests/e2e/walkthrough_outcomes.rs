//! Every curl outcome class the mesh simulates, end to end through the real
//! kubectl, probed with exactly the argv `kubectl npexec` uses:
//! `curl -sS --globoff --max-time SECS [-X M] [-H h]... -w '\n<marker>%{http_code}\n' URL`.
//! The scenario (crates/meshsim/tests/mesh_scenarios/outcomes.yaml) has one
//! destination per class: DNS failure (6), refused (7), NetworkPolicy drop
//! without a sidecar (28), the client sidecar's 503s (connection timeout and
//! connection failure), 403 RBAC, mTLS STRICT reset (56), and the
//! application's answer.

use crate::common;

use common::{Sim, fast_config, repo_root};

const MARKER: &str = "__NPEXEC_7f3a__";

struct Probe {
    exit: i32,
    body: String,
    code: String,
    stderr: String,
}

async fn outcomes() -> anyhow::Result<Sim> {
    let mut c = fast_config();
    c.scenarios = vec![repo_root().join("crates/meshsim/tests/mesh_scenarios/outcomes.yaml")];
    let cl = Sim::in_process(c).await?;
    for (ns, app) in [
        ("mesh-a", "client-sidecar"),
        ("mesh-plain", "client-plain"),
        ("mesh-a", "web"),
        ("mesh-a", "strict"),
        ("mesh-a", "denied"),
        ("mesh-plain", "closed"),
        ("mesh-plain", "blocked"),
    ] {
        cl.wait_ready_pod(ns, &format!("app={app}")).await?;
    }
    Ok(cl)
}

/// `kubectl exec -n NS POD -- curl ...` as npexec builds it.
async fn probe(
    cl: &Sim,
    ns: &str,
    pod: &str,
    max_time: &str,
    extra: &[&str],
    url: &str,
) -> anyhow::Result<Probe> {
    let write_out = format!("\\n{MARKER}%{{http_code}}\\n");
    let mut args = vec![
        "exec",
        "-n",
        ns,
        pod,
        "--",
        "curl",
        "-sS",
        "--globoff",
        "--max-time",
        max_time,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-w", &write_out, url]);
    let o = cl.kubectl(&args).await?;
    let (body, code) = match o.stdout.rsplit_once(MARKER) {
        Some((b, c)) => (
            b.strip_suffix('\n').unwrap_or(b).to_string(),
            c.trim().to_string(),
        ),
        None => anyhow::bail!("no marker in stdout {:?} (stderr {:?})", o.stdout, o.stderr),
    };
    Ok(Probe {
        exit: o.code,
        body,
        code,
        stderr: o.stderr,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_outcome_class_through_kubectl() -> anyhow::Result<()> {
    let cl = outcomes().await?;
    let plain = ("mesh-plain", "client-plain");
    let side = ("mesh-a", "client-sidecar");

    // DNS failure: exit 6, no response.
    let p = probe(
        &cl,
        plain.0,
        plain.1,
        "3",
        &[],
        "http://nosuch.mesh-a.svc.cluster.local/",
    )
    .await?;
    assert_eq!((p.exit, p.code.as_str()), (6, "000"), "{}", p.stderr);
    assert!(
        p.stderr
            .contains("curl: (6) Could not resolve host: nosuch.mesh-a.svc.cluster.local"),
        "{}",
        p.stderr
    );

    // Refused: nothing listens on the port (no sidecar anywhere).
    let p = probe(&cl, plain.0, plain.1, "3", &[], "http://svc-closed:80/").await?;
    assert_eq!((p.exit, p.code.as_str()), (7, "000"), "{}", p.stderr);
    assert!(
        p.stderr
            .contains("curl: (7) Failed to connect to svc-closed port 80"),
        "{}",
        p.stderr
    );

    // NetworkPolicy drop without a sidecar: curl's own timeout (decimal seconds).
    let p = probe(
        &cl,
        plain.0,
        plain.1,
        "2.5",
        &[],
        "http://svc-blocked.mesh-plain/",
    )
    .await?;
    assert_eq!((p.exit, p.code.as_str()), (28, "000"), "{}", p.stderr);
    assert!(p.stderr.contains("curl: (28) "), "{}", p.stderr);

    // The same drop seen through a client sidecar: 503 after Envoy's 10 s connect timeout.
    let p = probe(
        &cl,
        side.0,
        side.1,
        "20",
        &[],
        "http://svc-blocked.mesh-plain/",
    )
    .await?;
    assert_eq!((p.exit, p.code.as_str()), (0, "503"), "{}", p.stderr);
    assert_eq!(
        p.body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection timeout"
    );
    // ... and when curl's limit comes first, curl times out.
    let p = probe(
        &cl,
        side.0,
        side.1,
        "3",
        &[],
        "http://svc-blocked.mesh-plain/",
    )
    .await?;
    assert_eq!((p.exit, p.code.as_str()), (28, "000"), "{}", p.stderr);

    // Nothing listening, through a client sidecar: 503 connection failure.
    let p = probe(
        &cl,
        side.0,
        side.1,
        "3",
        &[],
        "http://svc-closed.mesh-plain/",
    )
    .await?;
    assert_eq!((p.exit, p.code.as_str()), (0, "503"), "{}", p.stderr);
    assert!(p.body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure"), "{}", p.body);

    // 403 from the destination's AuthorizationPolicy (DENY on GET).
    for (ns, pod) in [plain, side] {
        let p = probe(&cl, ns, pod, "3", &[], "http://svc-denied.mesh-a/").await?;
        assert_eq!(
            (p.exit, p.code.as_str(), p.body.as_str()),
            (0, "403", "RBAC: access denied"),
            "{}",
            p.stderr
        );
    }
    // -X and -H reach the decision: POST is not denied.
    let p = probe(
        &cl,
        side.0,
        side.1,
        "3",
        &["-X", "POST", "-H", "x-probe: 1"],
        "http://svc-denied.mesh-a/",
    )
    .await?;
    assert_eq!(p.code, "200", "{}", p.stderr);

    // mTLS STRICT and a client without a sidecar: reset (56).
    let p = probe(&cl, plain.0, plain.1, "3", &[], "http://svc-strict.mesh-a/").await?;
    assert_eq!((p.exit, p.code.as_str()), (56, "000"), "{}", p.stderr);
    assert!(
        p.stderr
            .contains("curl: (56) Recv failure: Connection reset by peer"),
        "{}",
        p.stderr
    );
    // With a sidecar the request goes through over mTLS.
    let p = probe(&cl, side.0, side.1, "3", &[], "http://svc-strict.mesh-a/").await?;
    assert_eq!(
        (p.code.as_str(), p.body.as_str()),
        ("200", "hello from strict")
    );

    // The application's answer.
    let p = probe(
        &cl,
        plain.0,
        plain.1,
        "3",
        &[],
        "http://svc-web.mesh-a.svc.cluster.local/",
    )
    .await?;
    assert_eq!(
        (p.exit, p.code.as_str(), p.body.as_str()),
        (0, "200", "hello from web")
    );

    cl.shutdown().await;
    Ok(())
}
