//! `--enable-debug`: raise each sidecar's `rbac` logger to debug for the run, then
//! put back exactly the level it had.
//!
//! The walk-through turns RBAC debug logs on with `istioctl proxy-config log
//! POD.NS --level rbac:debug` and never turns them off again; at debug level a
//! busy sidecar logs every request. So rbaclog asks each sidecar for its current
//! level first (`istioctl proxy-config log POD.NS`, which lists the active
//! loggers), changes only those below debug, remembers what it changed in a
//! [`DebugGuard`], and restores them when the run ends: normally, on an error and
//! on Ctrl-C/SIGTERM (the caller restores after the interrupted work has been
//! dropped). `--keep-debug` skips the restore. istioctl is located before any
//! change, so a missing istioctl changes nothing.

use std::sync::{Arc, Mutex};

use kubeplugin::istioctl::Istioctl;
use kubeplugin::{KubeFlags, PluginError};

/// One sidecar whose level was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub namespace: String,
    pub pod: String,
    pub previous: String,
}

/// Levels changed so far; shared so an interrupted run still knows what to restore.
#[derive(Debug, Clone, Default)]
pub struct DebugGuard {
    changed: Arc<Mutex<Vec<Changed>>>,
}

/// Reads the `rbac` logger's level from istioctl's `active loggers:` listing.
pub fn parse_rbac_level(listing: &str) -> Option<String> {
    listing
        .lines()
        .find_map(|l| {
            let (name, level) = l.trim().split_once(':')?;
            (name.trim() == "rbac").then(|| level.trim().to_string())
        })
        .filter(|l| !l.is_empty())
}

/// Whether a level already shows debug lines.
pub fn is_debug_or_finer(level: &str) -> bool {
    matches!(level, "debug" | "trace")
}

fn target(namespace: &str, pod: &str) -> String {
    format!("{pod}.{namespace}")
}

impl DebugGuard {
    pub fn changed(&self) -> Vec<Changed> {
        self.changed.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Sets `rbac:debug` on each pod (those already at debug or trace are left alone).
    pub async fn enable(
        &self,
        istioctl: &Istioctl,
        flags: &KubeFlags,
        pods: &[(String, String)],
    ) -> Result<(), PluginError> {
        let conn = Istioctl::connection_args(flags);
        for (ns, pod) in pods {
            let mut args = vec!["proxy-config".to_string(), "log".into(), target(ns, pod)];
            args.extend(conn.iter().cloned());
            let out = istioctl.run(&args).await?;
            let previous = parse_rbac_level(&out.stdout).unwrap_or_else(|| "warning".into());
            if is_debug_or_finer(&previous) {
                tracing::info!(pod = %target(ns, pod), level = %previous, "rbac logger already at debug");
                continue;
            }
            // Record before changing: if the change half-happens, restoring is harmless.
            if let Ok(mut g) = self.changed.lock() {
                g.push(Changed {
                    namespace: ns.clone(),
                    pod: pod.clone(),
                    previous: previous.clone(),
                });
            }
            args.extend(["--level".into(), "rbac:debug".into()]);
            istioctl.run(&args).await?;
            tracing::info!(pod = %target(ns, pod), from = %previous, "rbac logger set to debug");
        }
        Ok(())
    }

    /// Puts every changed sidecar back to its previous level; returns the failures.
    pub async fn restore(&self, istioctl: &Istioctl, flags: &KubeFlags) -> Vec<PluginError> {
        let changed = match self.changed.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(_) => Vec::new(),
        };
        let conn = Istioctl::connection_args(flags);
        let mut failures = Vec::new();
        for c in changed {
            let mut args = vec![
                "proxy-config".to_string(),
                "log".into(),
                target(&c.namespace, &c.pod),
                "--level".into(),
                format!("rbac:{}", c.previous),
            ];
            args.extend(conn.iter().cloned());
            match istioctl.run(&args).await {
                Ok(_) => {
                    tracing::info!(pod = %target(&c.namespace, &c.pod), level = %c.previous, "rbac logger restored")
                }
                // A pod deleted meanwhile has no level to restore.
                Err(e) => failures.push(e),
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listing() {
        let listing = "np-test-nginx-2-abc.np-test-2:\nactive loggers:\n  admin: warning\n  rbac: info\n  router: warning\n";
        assert_eq!(parse_rbac_level(listing).as_deref(), Some("info"));
        assert_eq!(
            parse_rbac_level("active loggers:\n  rbac: debug").as_deref(),
            Some("debug")
        );
        assert_eq!(parse_rbac_level("active loggers:\n  admin: warning"), None);
        assert!(is_debug_or_finer("trace") && !is_debug_or_finer("warning"));
    }

    fn script(dir: &std::path::Path, state: &std::path::Path) -> std::path::PathBuf {
        // A fake istioctl remembering the rbac level in a file and logging its calls.
        let path = dir.join("istioctl");
        let body = format!(
            "#!/bin/sh\nstate={state}\necho \"$*\" >> {state}.calls\nif [ \"$4\" = \"--level\" ]; then echo \"${{5#rbac:}}\" > $state; fi\necho 'active loggers:'\necho \"  rbac: $(cat $state)\"\n",
            state = state.display()
        );
        std::fs::write(&path, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn enable_then_restore_puts_the_old_level_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("level");
        std::fs::write(&state, "info\n").unwrap();
        let istioctl = Istioctl {
            path: script(dir.path(), &state),
        };
        let guard = DebugGuard::default();
        let flags = KubeFlags::default();
        let pods = vec![("np-test-2".to_string(), "p".to_string())];
        guard.enable(&istioctl, &flags, &pods).await.unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "debug");
        assert_eq!(guard.changed().len(), 1);
        assert!(guard.restore(&istioctl, &flags).await.is_empty());
        assert_eq!(std::fs::read_to_string(&state).unwrap().trim(), "info");
        let calls = std::fs::read_to_string(dir.path().join("level.calls")).unwrap();
        assert!(
            calls.contains("proxy-config log p.np-test-2 --level rbac:info"),
            "{calls}"
        );
        // Already at debug: nothing is changed, so nothing is restored.
        std::fs::write(&state, "debug\n").unwrap();
        let guard = DebugGuard::default();
        guard.enable(&istioctl, &flags, &pods).await.unwrap();
        assert!(guard.changed().is_empty());
    }
}
