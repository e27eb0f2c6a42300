//! Reading Kubernetes manifests from the command line's `-f` / `--delete-f`.
//!
//! Both npexec's what-if and authzcheck's `-f` take the same paths, with
//! kubectl's meaning: files, directories (recursively, `*.yaml`, `*.yml`,
//! `*.json`, hidden directories skipped), and `-` for stdin; each file may
//! hold several YAML documents or a `List`. Reading them here once keeps the
//! two plugins' semantics and errors identical; parsing into the policy
//! model is meshpolicy's job ([`meshpolicy::parse_manifests`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use meshpolicy::manifests::Objects;
use meshpolicy::parse_manifests;
use meshpolicy::whatif::merge_objects;

use crate::PluginError;

fn manifest_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            // As kubectl: a path that is not there is the caller's mistake.
            PluginError::usage(
                format!("{}: no such file or directory", path.display()),
                Some("give files, directories or - (stdin) holding the manifests".into()),
            )
        } else {
            PluginError::io(format!("reading {}", path.display()), e)
        }
    })?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| PluginError::io(format!("reading {}", path.display()), e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| PluginError::io(format!("reading {}", path.display()), e))?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            // Hidden directories (.git, .github) hold no cluster objects.
            if !p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
            {
                manifest_files(&p, out)?;
            }
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(p);
        }
    }
    Ok(())
}

fn parse(name: &str, text: &str, into: &mut Objects) -> Result<(), PluginError> {
    let o = parse_manifests(text).map_err(|e| PluginError::usage(format!("{name}: {e}"), None))?;
    merge_objects(into, o);
    Ok(())
}

/// Reads manifests from files, directories (recursively: `*.yaml`, `*.yml`,
/// `*.json`) and `-` (stdin) into one set of objects. A file that does not
/// parse is a usage error naming it; one that cannot be read, an I/O error.
pub fn read_manifests(paths: &[String]) -> Result<Objects, PluginError> {
    let mut out = Objects::default();
    for p in paths {
        if p == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| PluginError::io("reading manifests from stdin", e))?;
            parse("stdin", &s, &mut out)?;
            continue;
        }
        let mut files = Vec::new();
        manifest_files(Path::new(p), &mut files)?;
        if files.is_empty() {
            return Err(PluginError::usage(
                format!("{p}: no *.yaml, *.yml or *.json file"),
                None,
            ));
        }
        for f in files {
            let t = std::fs::read_to_string(&f)
                .map_err(|e| PluginError::io(format!("reading {}", f.display()), e))?;
            parse(&f.display().to_string(), &t, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AP: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: x}\nspec: {}\n";
    const PA: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: x}\nspec: {mtls: {mode: STRICT}}\n";

    #[test]
    fn files_directories_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), format!("{AP}---\n{PA}")).unwrap();
        std::fs::write(dir.path().join(".git/x.yaml"), AP).unwrap();
        std::fs::write(dir.path().join("README.md"), "not yaml").unwrap();
        std::fs::write(
            dir.path().join("sub/list.json"),
            r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"b","namespace":"x"},"spec":{}}]}"#,
        )
        .unwrap();
        let o = read_manifests(&[dir.path().display().to_string()]).unwrap();
        assert_eq!(o.authorization_policies.len(), 2, "hidden dirs skipped");
        assert_eq!(o.peer_authentications.len(), 1, "PeerAuthentications kept");
    }

    #[test]
    fn bad_input_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "kind: [").unwrap();
        let e = read_manifests(&[bad.display().to_string()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("bad.yaml"), "{e}");
        let e =
            read_manifests(&[dir.path().join("missing.yaml").display().to_string()]).unwrap_err();
        assert!(e.to_string().contains("missing.yaml"), "{e}");
        std::fs::remove_file(&bad).unwrap();
        let e = read_manifests(&[dir.path().display().to_string()]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
