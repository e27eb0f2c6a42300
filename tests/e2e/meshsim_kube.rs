//! End-to-end: kube-rs (the client the plugins use) against meshsim: exec
//! with `take_status` over the WebSocket protocol kube-rs negotiates (v5),
//! 1 MB of stdout through exec, `log_stream`, and paginated lists with
//! `limit`/`continue`.

use crate::common;

use common::Sim;
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams, LogParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_take_status_success_and_exit_code() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.walkthrough_pod().await?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "np-test-1");

    let params = AttachParams::default()
        .container("np-test-nginx-1")
        .stderr(true);
    let mut ok = pods
        .exec(&pod, ["sh", "-c", "echo out; echo err >&2"], &params)
        .await?;
    let mut out = String::new();
    ok.stdout()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?
        .read_to_string(&mut out)
        .await?;
    let mut err = String::new();
    ok.stderr()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?
        .read_to_string(&mut err)
        .await?;
    let status = ok
        .take_status()
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .await
        .ok_or_else(|| anyhow::anyhow!("status channel closed"))?;
    ok.join().await?;
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    let mut failing = pods
        .exec(&pod, ["sh", "-c", "echo hi; exit 7"], &params)
        .await?;
    let mut out = String::new();
    failing
        .stdout()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?
        .read_to_string(&mut out)
        .await?;
    let status = failing
        .take_status()
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .await
        .ok_or_else(|| anyhow::anyhow!("status channel closed"))?;
    failing.join().await?;
    assert_eq!(out, "hi\n");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    assert!(
        causes
            .iter()
            .any(|c| c.reason.as_deref() == Some("ExitCode") && c.message.as_deref() == Some("7")),
        "{causes:?}"
    );

    // A command the image lacks fails like the real thing.
    let mut missing = pods.exec(&pod, ["nosuchtool"], &params).await?;
    let status = missing
        .take_status()
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .await
        .ok_or_else(|| anyhow::anyhow!("status channel closed"))?;
    let _ = missing.join().await;
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("executable file not found")),
        "{status:?}"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_through_exec_stdin_and_stdout_is_intact() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.walkthrough_pod().await?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "np-test-1");
    let input: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let params = AttachParams::default()
        .container("np-test-nginx-1")
        .stdin(true)
        .stderr(false);
    let mut p = pods.exec(&pod, ["cat"], &params).await?;
    let mut stdin = p.stdin().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut stdout = p.stdout().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let data = input.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&data).await?;
        stdin.shutdown().await?;
        anyhow::Ok(stdin)
    });
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await?;
    let _stdin = writer.await??;
    let status = p
        .take_status()
        .ok_or_else(|| anyhow::anyhow!("no status"))?
        .await;
    p.join().await?;
    assert_eq!(out.len(), input.len());
    assert!(out == input, "stdout differs from stdin");
    assert_eq!(status.and_then(|s| s.status).as_deref(), Some("Success"));
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_stream_reads_and_follows() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.walkthrough_pod().await?;
    let logs = c.handle().cluster.logs().clone();
    logs.append(
        "np-test-1",
        &pod,
        "np-test-nginx-1",
        "first line from the test",
    );
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "np-test-1");
    let lp = LogParams {
        container: Some("np-test-nginx-1".into()),
        ..LogParams::default()
    };
    let mut lines = pods.log_stream(&pod, &lp).await?.lines();
    let mut all = Vec::new();
    while let Some(l) = lines.try_next().await? {
        all.push(l);
    }
    assert!(
        all.iter().any(|l| l == "first line from the test"),
        "{all:?}"
    );
    assert!(
        all.iter().any(|l| l.contains("docker-entrypoint")),
        "{all:?}"
    );

    let follow = LogParams {
        container: Some("np-test-nginx-1".into()),
        follow: true,
        tail_lines: Some(1),
        ..LogParams::default()
    };
    let mut lines = pods.log_stream(&pod, &follow).await?.lines();
    assert_eq!(
        lines.try_next().await?.as_deref(),
        Some("first line from the test")
    );
    logs.append(
        "np-test-1",
        &pod,
        "np-test-nginx-1",
        "appended while following",
    );
    assert_eq!(
        lines.try_next().await?.as_deref(),
        Some("appended while following")
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_list_with_limit_and_continue() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    c.walkthrough_pod().await?;
    let client = c.client().await?;
    for api in [
        Api::<Pod>::all(client.clone()),
        Api::<Pod>::namespaced(client.clone(), "np-test-1"),
    ] {
        let full: Vec<String> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert!(!full.is_empty());
        let mut paged = Vec::new();
        let mut pages = 0;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(1);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = api.list(&lp).await?;
            pages += 1;
            assert!(page.items.len() <= 1);
            paged.extend(page.items.into_iter().filter_map(|p| p.metadata.name));
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() || pages > 100 {
                break;
            }
        }
        assert_eq!(paged, full);
        assert_eq!(pages, full.len());
    }
    // A bad continue token is a 400, not a crash.
    let bad = Api::<Pod>::all(client)
        .list(&ListParams::default().limit(1).continue_token("%%%"))
        .await;
    match bad {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 400, "{s:?}"),
        other => anyhow::bail!("expected a 400, got {other:?}"),
    }
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_watcher_sees_initial_list_and_changes() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher;
    let c = Sim::in_process_walkthrough().await?;
    let client = c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client, "np-test-1");
    // kube-runtime's watcher asks for allowWatchBookmarks; meshsim sends no
    // bookmarks, which the protocol allows.
    let mut events = Box::pin(watcher(cms.clone(), watcher::Config::default()));
    let mut initial = Vec::new();
    loop {
        match events.try_next().await? {
            Some(watcher::Event::InitApply(cm)) => initial.extend(cm.metadata.name),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => anyhow::bail!("watch ended during the initial list"),
        }
    }
    assert!(
        initial.iter().any(|n| n == "config-np-test-nginx-1"),
        "{initial:?}"
    );
    c.ok(&[
        "create",
        "configmap",
        "watched",
        "-n",
        "np-test-1",
        "--from-literal=a=b",
    ])
    .await?;
    loop {
        match events.try_next().await? {
            Some(watcher::Event::Apply(cm)) if cm.metadata.name.as_deref() == Some("watched") => {
                assert_eq!(
                    cm.data.and_then(|d| d.get("a").cloned()).as_deref(),
                    Some("b")
                );
                break;
            }
            Some(_) => {}
            None => anyhow::bail!("watch ended before the new ConfigMap arrived"),
        }
    }
    c.ok(&["delete", "configmap", "watched", "-n", "np-test-1"])
        .await?;
    loop {
        match events.try_next().await? {
            Some(watcher::Event::Delete(cm)) if cm.metadata.name.as_deref() == Some("watched") => {
                break;
            }
            Some(_) => {}
            None => anyhow::bail!("watch ended before the delete arrived"),
        }
    }
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_a_large_burst_in_order() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{WatchEvent, WatchParams};
    let c = Sim::in_process_walkthrough().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client().await?, "np-test-1");
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = Box::pin(cms.watch(&WatchParams::default(), &rv).await?);
    // More changes in one burst than the broadcast ring holds; if the watch
    // falls behind it fills the gap from the store's history (the lag path
    // itself is pinned by a unit test in meshsim's api module).
    const N: usize = 3000;
    c.handle().cluster.with_store(|s| {
        let def = meshsim::store::resources::preferred(meshsim::store::resources::CONFIGMAPS);
        (0..N).try_for_each(|i| {
            s.create(
                def,
                "np-test-1",
                serde_json::json!({"metadata": {"name": format!("burst-{i:05}")}}),
            )
            .map(|_| ())
        })
    })?;
    let mut seen = Vec::new();
    while seen.len() < N {
        match stream.try_next().await? {
            Some(WatchEvent::Added(cm)) => seen.extend(cm.metadata.name),
            Some(WatchEvent::Error(e)) => anyhow::bail!("watch error after {}: {e:?}", seen.len()),
            Some(_) => {}
            None => anyhow::bail!("watch ended after {} events", seen.len()),
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("burst-{i:05}")).collect();
    assert_eq!(seen, want);
    c.shutdown().await;
    Ok(())
}
