//! `make install` end to end: scripts/install.sh puts the three plugins and
//! their completion helpers in PREFIX/bin, and the real kubectl, with only
//! that directory added to PATH, lists them without warnings, runs
//! `kubectl npexec --help` (found by name, flags after the name), and
//! completes through the installed helper.
//!
//! The script takes the debug binaries `make test` already built
//! (INSTALL_PREBUILT), linked rather than copied (INSTALL_LINK=1) because debug
//! binaries are hundreds of megabytes; copying is checked on small stand-ins.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::sim::target_bin_dir;

const PLUGINS: [&str; 3] = ["npexec", "rbaclog", "authzcheck"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the real kubectl, and the system directories the helper
/// scripts need (`sh`, `dirname`).
fn system_path() -> String {
    let kubectl = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| d.join("kubectl").exists())
        .expect("kubectl on PATH");
    format!("{}:/usr/bin:/bin", kubectl.display())
}

fn install(prefix: &Path, prebuilt: &Path, link: bool) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/install.sh"))
        .arg(prefix)
        .env("INSTALL_PREBUILT", prebuilt)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    if link {
        cmd.env("INSTALL_LINK", "1");
    }
    cmd.output().unwrap()
}

/// kubectl with PREFIX/bin first on PATH and a home and kubeconfig of its own.
fn kubectl(home: &Path, bin: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .env("PATH", format!("{}:{}", bin.display(), system_path()))
        .env("HOME", home)
        .env("KUBECONFIG", home.join("kubeconfig"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn installed_plugins_are_listed_run_and_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // A kubeconfig pointing at nothing: these commands need no cluster.
    std::fs::write(
        home.join("kubeconfig"),
        "apiVersion: v1\nkind: Config\ncurrent-context: none\nclusters:\n- name: none\n  cluster: {server: \"https://127.0.0.1:9\"}\ncontexts:\n- name: none\n  context: {cluster: none, user: none}\nusers:\n- name: none\n  user: {}\n",
    )
    .unwrap();
    for p in PLUGINS {
        assert!(
            target_bin_dir().join(format!("kubectl-{p}")).exists(),
            "kubectl-{p} not built: run `cargo build --workspace --bins` first"
        );
    }
    let o = install(&prefix, &target_bin_dir(), true);
    assert!(o.status.success(), "install.sh: {}", text(&o.stderr));
    let bin = prefix.join("bin");

    let o = kubectl(&home, &bin, &["plugin", "list"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "plugin list failed: {out}{err}");
    assert!(
        !out.contains("warning") && !err.contains("warning"),
        "{out}{err}"
    );
    let ours: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(bin.to_str().unwrap()))
        .collect();
    let want: Vec<String> = PLUGINS
        .iter()
        .map(|p| bin.join(format!("kubectl-{p}")).display().to_string())
        .collect();
    let mut got: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
    let mut want_sorted = want.clone();
    got.sort();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "{out}");

    let o = kubectl(&home, &bin, &["npexec", "--help"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("Usage: kubectl npexec"),
        "{}",
        text(&o.stdout)
    );
    for p in ["rbaclog", "authzcheck"] {
        let o = kubectl(&home, &bin, &[p, "--version"]);
        assert!(o.status.success(), "{p}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains(env!("CARGO_PKG_VERSION")), "{p}");
    }

    // The installed helper finds the installed plugin next to it.
    let o = kubectl(&home, &bin, &["__complete", "npexec", "-o", "j"]);
    assert_eq!(
        text(&o.stdout),
        "json\tOne JSON document\njsonl\tOne JSON object per line, streamed\njsonpath=\tkubectl's JSONPath template over the JSON output\n:4\n"
    );
}

#[test]
fn install_copies_binaries_and_helpers() {
    let tmp = tempfile::tempdir().unwrap();
    let prebuilt = tmp.path().join("built");
    std::fs::create_dir_all(&prebuilt).unwrap();
    for p in PLUGINS {
        let f = prebuilt.join(format!("kubectl-{p}"));
        std::fs::write(&f, format!("#!/bin/sh\necho {p}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let prefix = tmp.path().join("p");
    let o = install(&prefix, &prebuilt, false);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for p in PLUGINS {
        for (name, from) in [
            (
                format!("kubectl-{p}"),
                prebuilt.join(format!("kubectl-{p}")),
            ),
            (
                format!("kubectl_complete-{p}"),
                root()
                    .join("scripts/completion")
                    .join(format!("kubectl_complete-{p}")),
            ),
        ] {
            let installed = prefix.join("bin").join(&name);
            let meta = std::fs::symlink_metadata(&installed).unwrap();
            assert!(meta.file_type().is_file(), "{name} is not a regular file");
            assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{name}");
            assert_eq!(
                std::fs::read(&installed).unwrap(),
                std::fs::read(&from).unwrap(),
                "{name}"
            );
        }
    }
    // Installing again over an existing install works.
    let o = install(&prefix, &prebuilt, false);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // A missing binary is a one-line error with exit 2, and nothing half-done is claimed.
    std::fs::remove_file(prebuilt.join("kubectl-rbaclog")).unwrap();
    let o = install(&tmp.path().join("q"), &prebuilt, false);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("kubectl-rbaclog not built"),
        "{}",
        text(&o.stderr)
    );
    assert!(!tmp.path().join("q/bin").exists());
}
