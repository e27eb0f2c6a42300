//! End-to-end with the real kubectl: 1 MB through `kubectl exec -i` (the
//! v5.channel.k8s.io WebSocket protocol kubectl speaks) arrives intact,
//! `kubectl logs --since` really leaves out older lines, and the typed
//! `kubectl create ...` commands, which send protobuf bodies, work.

use crate::common;

use common::Sim;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_through_kubectl_exec_is_intact() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.walkthrough_pod().await?;
    let input: Vec<u8> = (0..1_048_576u32)
        .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz\n"[(i % 37) as usize])
        .collect();
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
            input.clone(),
        )
        .await?;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.len(), input.len());
    assert!(o.stdout == input, "stdout differs from stdin");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_since_leaves_out_older_lines() -> anyhow::Result<()> {
    let c = Sim::in_process_walkthrough().await?;
    let pod = c.walkthrough_pod().await?;
    let logs = c.handle().cluster.logs();
    let old = "2020-01-01T00:00:00Z".parse()?;
    logs.append_at("np-test-1", &pod, "np-test-nginx-1", old, "an old line");
    logs.append("np-test-1", &pod, "np-test-nginx-1", "a recent line");
    let args = ["logs", "-n", "np-test-1", &pod, "-c", "np-test-nginx-1"];
    let all = c.ok(&args).await?;
    assert!(
        all.contains("an old line") && all.contains("a recent line"),
        "{all}"
    );
    let recent = c.ok(&[&args[..], &["--since=1h"]].concat()).await?;
    assert!(!recent.contains("an old line"), "{recent}");
    assert!(recent.contains("a recent line"), "{recent}");
    let by_time = c
        .ok(&[
            &args[..],
            &["--since-time=2021-01-01T00:00:00Z", "--timestamps"],
        ]
        .concat())
        .await?;
    assert!(!by_time.contains("an old line"), "{by_time}");
    assert!(by_time.contains("a recent line"), "{by_time}");
    let since_2019 = c
        .ok(&[
            &args[..],
            &["--since-time=2019-12-31T00:00:00Z", "--timestamps"],
        ]
        .concat())
        .await?;
    assert!(
        since_2019.contains("2020-01-01T00:00:00") && since_2019.contains("an old line"),
        "{since_2019}"
    );
    // Deleting the pod deletes its logs (the kubelet removes the log files).
    assert!(!logs.lines("np-test-1", &pod, "np-test-nginx-1").is_empty());
    c.ok(&["delete", "pod", &pod, "-n", "np-test-1", "--wait=false"])
        .await?;
    assert!(logs.lines("np-test-1", &pod, "np-test-nginx-1").is_empty());
    assert!(logs.lines("np-test-1", &pod, "istio-proxy").is_empty());
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_typed_objects_sent_as_protobuf() -> anyhow::Result<()> {
    let c = Sim::in_process(common::fast_config()).await?;
    c.ok(&["create", "namespace", "pb"]).await?;
    let d = c
        .ok(&[
            "create",
            "deployment",
            "web",
            "-n",
            "pb",
            "--image=nginx:1.27",
            "--port=80",
            "--replicas=2",
        ])
        .await?;
    assert!(d.contains("deployment.apps/web created"), "{d}");
    c.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "pb",
        "--tcp=8080:80",
    ])
    .await?;
    c.ok(&["create", "serviceaccount", "robot", "-n", "pb"])
        .await?;
    c.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "pb",
        "--from-literal=k=v",
    ])
    .await?;
    let spec = c
        .ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "pb",
            "-o",
            "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}",
        ])
        .await?;
    assert_eq!(spec, "2 web nginx:1.27 80");
    let svc = c
        .ok(&[
            "get",
            "service",
            "web",
            "-n",
            "pb",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.selector.app}",
        ])
        .await?;
    assert_eq!(svc, "ClusterIP 8080 80 web");
    let cm = c
        .ok(&[
            "get",
            "configmap",
            "cfg",
            "-n",
            "pb",
            "-o",
            "jsonpath={.data.k}",
        ])
        .await?;
    assert_eq!(cm, "v");
    c.ok(&["get", "serviceaccount", "robot", "-n", "pb"])
        .await?;
    // The deployment's pods come up and back the service's endpoints.
    c.wait_ready_pod("pb", "app=web").await?;
    let mut ips = String::new();
    for _ in 0..200 {
        ips = c
            .ok(&[
                "get",
                "endpoints",
                "web",
                "-n",
                "pb",
                "-o",
                "jsonpath={.subsets[0].addresses[*].ip}",
            ])
            .await?;
        if ips.split(' ').count() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ips.split(' ').count(), 2, "{ips}");
    c.shutdown().await;
    Ok(())
}
