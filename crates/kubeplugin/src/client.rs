//! Building a kube `Client` from the kubectl-style flags.
//!
//! kube 5 uses rustls and panics at first use unless a crypto provider is
//! installed, so this module installs ring's provider once. It reads the
//! kubeconfig the way kubectl does (`--kubeconfig`, else every file in
//! `KUBECONFIG` merged, else `~/.kube/config`), applies `--context`,
//! `--cluster`, `--user`, `--as`, `--as-group` and `--request-timeout`, and
//! remembers the server URL so "unreachable" errors can name it.

use std::sync::Once;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{ApiOp, PluginError, from_kube};
use crate::flags::KubeFlags;

/// A connected client plus what errors and defaults need to know.
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    /// The API server URL, for messages.
    pub server: String,
    /// `-n`, else the context's namespace, else "default".
    pub namespace: String,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

static CRYPTO: Once = Once::new();

/// Installs rustls' ring crypto provider once per process (kube 5 needs one).
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        // An error only means another provider is already installed: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Reads the kubeconfig as kubectl would.
pub fn load_kubeconfig(flags: &KubeFlags) -> Result<Kubeconfig, PluginError> {
    // A YAML parse error is its reason on the first line, then a source
    // snippet pointing at the same place: only the reason is kept.
    let config_err = |what: String, e: &dyn std::fmt::Display| PluginError::Config {
        message: format!(
            "cannot read kubeconfig {what}: {}",
            e.to_string().lines().next().unwrap_or_default().trim()
        ),
        hint: Some("pass --kubeconfig PATH or set KUBECONFIG".into()),
    };
    if let Some(path) = &flags.kubeconfig {
        return Kubeconfig::read_from(path).map_err(|e| config_err(path.display().to_string(), &e));
    }
    let has_env = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    if has_env {
        // Kubeconfig::from_env splits and merges every file in KUBECONFIG.
        match Kubeconfig::from_env() {
            Ok(Some(k)) => return Ok(k),
            Ok(None) => {}
            Err(e) => return Err(config_err("from $KUBECONFIG".into(), &e)),
        }
    }
    Kubeconfig::read().map_err(|e| config_err("~/.kube/config".into(), &e))
}

/// Builds the kube `Config` the flags describe, without connecting.
pub async fn build_config(flags: &KubeFlags) -> Result<Config, PluginError> {
    install_crypto_provider();
    let kubeconfig = load_kubeconfig(flags)?;
    let options = KubeConfigOptions {
        context: flags.context.clone(),
        cluster: flags.cluster.clone(),
        user: flags.user.clone(),
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| PluginError::Config {
            message: format!("invalid kubeconfig: {e}"),
            hint: Some("check --context/--cluster/--user against `kubectl config view`".into()),
        })?;
    read_token_file(&mut config)?;
    if let Some(timeout) = flags.request_timeout.filter(|t| !t.is_zero()) {
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        config.reset_reader_on_write = true;
    }
    if let Some(user) = &flags.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !flags.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(flags.as_group.clone());
    }
    Ok(config)
}

/// Reads the user's `tokenFile:` once, trimmed, as kubectl does: kube sends
/// the file verbatim, so a token file ending in a newline (`echo TOKEN > f`)
/// was an "invalid bearer token". A plugin run is short, so the re-reading
/// kube would do every minute is not needed.
fn read_token_file(config: &mut Config) -> Result<(), PluginError> {
    if config.auth_info.token.is_some() {
        return Ok(());
    }
    let Some(path) = config.auth_info.token_file.clone() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Config {
        message: format!("cannot read the kubeconfig user's tokenFile {path}: {e}"),
        hint: Some("check the path in `kubectl config view --minify`".into()),
    })?;
    config.auth_info.token = Some(text.trim().to_string().into());
    config.auth_info.token_file = None;
    Ok(())
}

/// Builds the client with kube's default stack, except that kube's unbounded
/// retry of 429/503/504 is replaced by [`crate::retry::ThrottleRetry`]
/// (bounded count and wait, `Retry-After` honoured). Needs a tokio runtime.
pub fn build_client(mut config: Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config)?;
    let layer = tower::layer::layer_fn(|svc| {
        tower::retry::Retry::new(
            crate::retry::ThrottleRetry::default(),
            tower::buffer::Buffer::new(svc, 1024),
        )
    });
    Ok(builder.with_layer(&layer).build())
}

impl Kube {
    /// Connects using the flags (no request is made yet).
    pub async fn from_flags(flags: &KubeFlags) -> Result<Kube, PluginError> {
        let config = build_config(flags).await?;
        let server = config.cluster_url.to_string();
        let namespace = flags
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = build_client(config).map_err(|e| PluginError::Config {
            message: format!("cannot build a client for {server}: {e}"),
            hint: None,
        })?;
        Ok(Kube {
            client,
            server: server.trim_end_matches('/').to_string(),
            namespace,
        })
    }

    /// Translates a kube error for the operation `op`.
    pub fn err(&self, err: kube::Error, op: &ApiOp) -> PluginError {
        from_kube(err, op, &self.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: one
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
- name: c2
  cluster: {server: "https://127.0.0.2:2", insecure-skip-tls-verify: true}
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: np-test-1}
- name: two
  context: {cluster: c2, user: u1}
users:
- name: u1
  user: {token: secret-token}
"#;

    fn write_config() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), KUBECONFIG).unwrap();
        f
    }

    #[tokio::test]
    async fn context_namespace_and_overrides() {
        let f = write_config();
        let flags = KubeFlags {
            kubeconfig: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let kube = Kube::from_flags(&flags).await.unwrap();
        assert_eq!(kube.namespace, "np-test-1");
        assert!(kube.server.contains("127.0.0.1:1"), "{}", kube.server);

        let flags = KubeFlags {
            kubeconfig: Some(f.path().to_path_buf()),
            context: Some("two".into()),
            as_user: Some("alice".into()),
            as_group: vec!["devs".into()],
            request_timeout: Some(std::time::Duration::from_secs(4)),
            ..Default::default()
        };
        let config = build_config(&flags).await.unwrap();
        assert_eq!(config.default_namespace, "default");
        assert_eq!(config.auth_info.impersonate.as_deref(), Some("alice"));
        assert_eq!(config.read_timeout, Some(std::time::Duration::from_secs(4)));
        let kube = Kube::from_flags(&flags).await.unwrap();
        assert!(kube.server.contains("127.0.0.2:2"));
        // The token never appears in the Debug output.
        assert!(!format!("{kube:?}").contains("secret-token"));
    }

    #[tokio::test]
    async fn missing_kubeconfig_is_a_config_error() {
        let flags = KubeFlags {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        let e = Kube::from_flags(&flags).await.unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("/nonexistent/kubeconfig"));
    }

    #[tokio::test]
    async fn unknown_context_is_a_config_error() {
        let f = write_config();
        let flags = KubeFlags {
            kubeconfig: Some(f.path().to_path_buf()),
            context: Some("nope".into()),
            ..Default::default()
        };
        let e = Kube::from_flags(&flags).await.unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
