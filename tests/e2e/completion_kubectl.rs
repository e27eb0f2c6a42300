//! Shell completion end to end: the real `kubectl __complete PLUGIN ...`
//! (what kubectl's own completion script runs on TAB) finds the
//! `kubectl_complete-PLUGIN` helper on PATH, which asks the plugin binary, which
//! reads the simulated cluster (meshsim, walk-through scenario) through the
//! kubeconfig. Also `kubectl npexec completion bash` and that script driven by
//! bash itself.
//!
//! Needs the plugin binaries built in the same target directory (`make test`
//! builds them first). Waits are bounded by attempts, never asserted on time.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::Sim;
use common::sim::{path_with, target_bin_dir};

const PLUGINS: [&str; 3] = ["npexec", "rbaclog", "authzcheck"];
/// The plugins whose `main` answers completion (all of them).
const COMPLETING: [&str; 3] = ["npexec", "rbaclog", "authzcheck"];

/// A PATH directory holding the three plugins (links to the built binaries)
/// and their completion helpers from scripts/completion, as installed.
fn plugin_dir(root: &Path) -> PathBuf {
    let dir = root.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for p in PLUGINS {
        let exe = target_bin_dir().join(format!("kubectl-{p}"));
        assert!(
            exe.exists(),
            "{} is not built: run `cargo build --workspace --bins` first",
            exe.display()
        );
        std::os::unix::fs::symlink(&exe, dir.join(format!("kubectl-{p}"))).unwrap();
        let helper = format!("kubectl_complete-{p}");
        std::os::unix::fs::symlink(
            common::repo_root().join("scripts/completion").join(&helper),
            dir.join(&helper),
        )
        .unwrap();
    }
    dir
}

struct Env {
    cluster: Sim,
    bin: PathBuf,
}

impl Env {
    async fn start() -> Env {
        let cluster = Sim::in_process_walkthrough().await.unwrap();
        cluster
            .wait_ready_pod("np-test-1", "app=np-test-nginx-1")
            .await
            .unwrap();
        cluster
            .wait_ready_pod("np-test-2", "app=np-test-nginx-2")
            .await
            .unwrap();
        let bin = plugin_dir(cluster.path());
        Env { cluster, bin }
    }

    fn path(&self) -> std::ffi::OsString {
        path_with(&[&self.bin])
    }

    /// `kubectl ARGS` with the plugins on PATH; the cluster through KUBECONFIG
    /// (kubectl allows no flag before a plugin's name).
    async fn kubectl(&self, args: &[&str]) -> Output {
        tokio::process::Command::from(self.cluster.command_on("kubectl", &self.path()))
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }

    /// Runs `kubectl __complete WORDS...` and returns (values, directive).
    async fn complete(&self, words: &[&str]) -> (Vec<String>, String) {
        let mut args = vec!["__complete"];
        args.extend_from_slice(words);
        let o = self.kubectl(&args).await;
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "kubectl {args:?}: {stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("About to call:"),
            "kubectl did not run the completion helper for {words:?}: {stderr}"
        );
        let mut lines: Vec<&str> = stdout.lines().collect();
        let directive = lines.pop().unwrap_or_default().to_string();
        let values = lines
            .iter()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect();
        (values, directive)
    }

    /// Names from `kubectl get RESOURCE -n NS -o name`, without the kind.
    async fn names(&self, resource: &str, ns: Option<&str>) -> Vec<String> {
        let mut args = vec!["get", resource, "-o", "name"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let o = self.kubectl(&args).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_pods_services_through_kubectl() {
    let env = Env::start().await;
    let namespaces = env.names("namespaces", None).await;
    assert!(
        namespaces.contains(&"np-test-1".to_string()),
        "{namespaces:?}"
    );

    // Positional namespaces, for every plugin.
    for plugin in COMPLETING {
        let (values, directive) = env.complete(&[plugin, ""]).await;
        assert_eq!(sorted(values), namespaces, "{plugin}");
        assert_eq!(directive, ":4", "{plugin}");
    }
    let (values, _) = env.complete(&["npexec", "np-test-1", "np-test-"]).await;
    assert_eq!(values, ["np-test-1", "np-test-2"]);
    let (values, _) = env.complete(&["npexec", "-n", "kube-"]).await;
    assert!(!values.is_empty() && values.iter().all(|v| v.starts_with("kube-")));

    // --pod: pods of the FROM namespace (or -n).
    let pods1 = env.names("pods", Some("np-test-1")).await;
    let pods2 = env.names("pods", Some("np-test-2")).await;
    assert!(!pods1.is_empty() && pods1 != pods2);
    let (values, _) = env
        .complete(&["npexec", "np-test-1", "np-test-2", "--pod", ""])
        .await;
    assert_eq!(sorted(values), pods1);
    let (values, _) = env
        .complete(&["npexec", "-n", "np-test-2", "np-test-1", "--pod", ""])
        .await;
    assert_eq!(sorted(values), pods2);

    // --service: Services of the TO namespaces.
    let svcs2 = env.names("services", Some("np-test-2")).await;
    assert!(!svcs2.is_empty());
    let (values, _) = env
        .complete(&["npexec", "np-test-1", "np-test-2", "--service", ""])
        .await;
    assert_eq!(sorted(values), svcs2);

    // authzcheck NAMESPACE POD: pods and deployment/NAME.
    let deploys2 = env.names("deployments", Some("np-test-2")).await;
    let (values, _) = env.complete(&["authzcheck", "np-test-2", ""]).await;
    let mut want: Vec<String> = pods2.clone();
    want.extend(deploys2.iter().map(|d| format!("deployment/{d}")));
    assert_eq!(sorted(values), sorted(want));
    let (values, _) = env.complete(&["authzcheck", "np-test-2", "deploy"]).await;
    assert_eq!(
        values,
        deploys2
            .iter()
            .map(|d| format!("deployment/{d}"))
            .collect::<Vec<_>>()
    );
    let (values, _) = env.complete(&["authzcheck", "-n", "np-test-1", ""]).await;
    assert!(values.contains(&pods1[0]), "{values:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn contexts_flags_and_values_through_kubectl() {
    let env = Env::start().await;
    // Contexts from the kubeconfig in use, and from a --kubeconfig typed on the line.
    let (values, directive) = env.complete(&["npexec", "--context", ""]).await;
    assert_eq!(values, ["meshsim"]);
    assert_eq!(directive, ":4");
    let other = env.cluster.path().join("other-kubeconfig");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: Config\ncurrent-context: blue\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\ncontexts:\n- name: blue\n  context: {cluster: c, user: u}\n- name: green\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {}\n",
    )
    .unwrap();
    let other = other.to_str().unwrap();
    let (values, _) = env
        .complete(&["authzcheck", "--kubeconfig", other, "--context", ""])
        .await;
    assert_eq!(values, ["blue", "green"]);
    // That kubeconfig's cluster does not answer: no namespaces, no error, no wait forever.
    let (values, directive) = env
        .complete(&["authzcheck", "--kubeconfig", other, ""])
        .await;
    assert!(values.is_empty(), "{values:?}");
    assert_eq!(directive, ":4");
    // A typed context that does not exist: nothing.
    let (values, _) = env.complete(&["npexec", "--context", "nope", ""]).await;
    assert!(values.is_empty(), "{values:?}");

    // -o values, also as --output=VALUE.
    for plugin in COMPLETING {
        let (values, _) = env.complete(&[plugin, "-o", ""]).await;
        assert_eq!(
            values,
            [
                "table",
                "wide",
                "json",
                "jsonl",
                "yaml",
                "name",
                "jsonpath=",
                "custom-columns="
            ],
            "{plugin}"
        );
    }
    let (values, _) = env.complete(&["npexec", "--output=j"]).await;
    assert_eq!(
        values,
        ["--output=json", "--output=jsonl", "--output=jsonpath="]
    );
    let (values, _) = env.complete(&["npexec", "--color", ""]).await;
    assert_eq!(values, ["auto", "always", "never"]);

    // Flag names, and file names left to the shell for paths.
    let (values, _) = env.complete(&["npexec", "--ser"]).await;
    assert_eq!(values, ["--service"]);
    let (values, _) = env.complete(&["authzcheck", "--"]).await;
    assert!(
        values.contains(&"--native".to_string()) && values.contains(&"--namespace".to_string())
    );
    let (_, directive) = env.complete(&["npexec", "--kubeconfig", ""]).await;
    assert_eq!(directive, ":0");
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_values_through_kubectl() {
    let env = Env::start().await;
    let (values, _) = env.complete(&["npexec", "np-test-1", "--expect", ""]).await;
    for v in ["allow", "deny", "denied-rbac", "blocked-network"] {
        assert!(values.contains(&v.to_string()), "{v}: {values:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rbaclog_values_through_kubectl() {
    let env = Env::start().await;
    let (values, directive) = env.complete(&["rbaclog", ""]).await;
    assert_eq!(sorted(values), env.names("namespaces", None).await);
    assert_eq!(directive, ":4");
    let pods2 = env.names("pods", Some("np-test-2")).await;
    let (values, _) = env.complete(&["rbaclog", "np-test-2", "--pod", ""]).await;
    assert_eq!(sorted(values), pods2);
    let (values, _) = env.complete(&["rbaclog", "-o", ""]).await;
    assert_eq!(
        values,
        [
            "table",
            "wide",
            "json",
            "jsonl",
            "yaml",
            "name",
            "jsonpath=",
            "custom-columns="
        ]
    );
    let (values, _) = env.complete(&["rbaclog", "--decision", ""]).await;
    assert_eq!(values, ["denied", "allowed", "all"]);
    let (values, _) = env.complete(&["rbaclog", "--engine", ""]).await;
    assert_eq!(values, ["enforced", "shadow"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_bash_script_completes_in_bash() {
    let env = Env::start().await;
    let o = env.kubectl(&["npexec", "completion", "bash"]).await;
    assert!(o.status.success());
    let script = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(script.contains("complete -F __kubectl_npexec_complete kubectl-npexec"));
    for shell in ["zsh", "fish"] {
        let o = env.kubectl(&["authzcheck", "completion", shell]).await;
        assert!(o.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("kubectl-authzcheck") && text.contains("__complete"),
            "{shell}: {text}"
        );
    }
    let file = env.cluster.path().join("npexec.bash");
    std::fs::write(&file, &script).unwrap();

    // Drive the function as bash's programmable completion would, with and
    // without '=' splitting (COMP_WORDBREAKS).
    let run = |line: &str| {
        let file = file.clone();
        let line = line.to_string();
        let path = env.path();
        let home = env.cluster.path().to_path_buf();
        let kubeconfig = env.cluster.kubeconfig().clone();
        async move {
            let body = format!(
                "source {file}\nCOMP_LINE={line:?}\nCOMP_POINT=${{#COMP_LINE}}\nread -ra COMP_WORDS <<<\"$COMP_LINE\"\n[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=(\"\")\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n__kubectl_npexec_complete\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
                file = file.display()
            );
            let o = tokio::process::Command::new("bash")
                .arg("-c")
                .arg(body)
                .env("PATH", path)
                .env("HOME", home)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .await
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        run("kubectl-npexec np-test-1 np-test-").await,
        ["np-test-1", "np-test-2"]
    );
    let pods = env.names("pods", Some("np-test-1")).await;
    assert_eq!(run("kubectl-npexec np-test-1 --pod ").await, pods);
    // `--output=js`: bash already has `--output=` (a word break), so only the value is offered.
    assert_eq!(
        run("kubectl-npexec --output=js").await,
        ["json", "jsonl", "jsonpath="]
    );
}
