//! The krew manifests, checked with krew's own validation rules.
//!
//! A manifest that krew's validator rejects, an archive without its license or a
//! checksum that does not match is a plugin nobody can install. These tests apply
//! krew's rules (pkg/index/validation in kubernetes-sigs/krew) to the committed
//! manifests in `plugin-manifests/`, and render a fresh set with `scripts/dist.sh`
//! from the debug binaries into a temporary folder to check that every archive
//! hashes to what its manifest says and is laid out as krew requires.

use crate::common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use common::sim::target_bin_dir;

const PLUGINS: [&str; 3] = ["npexec", "rbaclog", "authzcheck"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_version() -> String {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut in_pkg = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_pkg = line.trim() == "[workspace.package]";
        } else if in_pkg && line.starts_with("version") {
            return line.split('"').nth(1).unwrap().to_string();
        }
    }
    panic!("no [workspace.package] version");
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

/// Strict semver with a leading `v` (krew uses semver.Parse after trimming `v`).
fn is_v_semver(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let (core, _build) = rest.split_once('+').unwrap_or((rest, ""));
    let (core, pre) = core.split_once('-').unwrap_or((core, ""));
    let nums: Vec<&str> = core.split('.').collect();
    let num_ok = |n: &str| {
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
    };
    nums.len() == 3
        && nums.iter().all(|n| num_ok(n))
        && pre.split('.').all(|p| {
            pre.is_empty()
                || (!p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
}

fn is_windows_reserved(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["CON", "PRN", "AUX", "NUL"].contains(&upper.as_str())
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit()
            && upper.as_bytes()[3] != b'0')
}

fn is_clean_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && !path.is_absolute()
        && !p.starts_with('\\')
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Everything krew's validator checks, plus the project's own rules (file name,
/// description width, one license file). Returns every problem found.
fn validate_manifest(file: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    let text = std::fs::read_to_string(file).unwrap();
    let doc: Value = match serde_yaml_ng::from_str(&text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let stem = file.file_stem().unwrap().to_str().unwrap();
    if str_at(&doc, &["apiVersion"]) != Some("krew.googlecontainertools.github.com/v1alpha2") {
        errs.push("apiVersion".into());
    }
    if str_at(&doc, &["kind"]) != Some("Plugin") {
        errs.push("kind".into());
    }
    let name = str_at(&doc, &["metadata", "name"]).unwrap_or("");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        || is_windows_reserved(name)
    {
        errs.push(format!("invalid name {name:?}"));
    }
    if name != stem {
        errs.push(format!("name {name:?} differs from file name {stem:?}"));
    }
    let short = str_at(&doc, &["spec", "shortDescription"]).unwrap_or("");
    if short.trim().is_empty() || short.contains('\n') || short.chars().count() > 50 {
        errs.push(format!(
            "shortDescription {short:?} must be one line of 1..=50 characters"
        ));
    }
    let version = str_at(&doc, &["spec", "version"]).unwrap_or("");
    if !is_v_semver(version) {
        errs.push(format!(
            "version {version:?} is not v-prefixed strict semver"
        ));
    }
    if str_at(&doc, &["spec", "homepage"]).is_none_or(str::is_empty) {
        errs.push("homepage missing".into());
    }
    let desc = str_at(&doc, &["spec", "description"]).unwrap_or("");
    if desc.trim().is_empty() || desc.lines().any(|l| l.chars().count() > 80) {
        errs.push("description empty or wider than 80 columns".into());
    }
    let caveats = str_at(&doc, &["spec", "caveats"]).unwrap_or("");
    if !caveats.contains("kubectl") || !caveats.contains("completion") {
        errs.push("caveats must say what the plugin needs and how to enable completion".into());
    }
    if caveats.contains('@') {
        errs.push("caveats keep an unrendered @PLACEHOLDER@".into());
    }
    let platforms = doc
        .get("spec")
        .and_then(|s| s.get("platforms"))
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if platforms.is_empty() {
        errs.push("no platforms".into());
    }
    let mut pairs = BTreeSet::new();
    for (i, p) in platforms.iter().enumerate() {
        let labels = p.get("selector").and_then(|s| s.get("matchLabels"));
        let Some(labels) = labels.and_then(Value::as_mapping) else {
            errs.push(format!("platform {i}: selector.matchLabels missing"));
            continue;
        };
        let keys: BTreeSet<&str> = labels.keys().filter_map(Value::as_str).collect();
        if keys != BTreeSet::from(["arch", "os"]) {
            errs.push(format!(
                "platform {i}: selector must use exactly os and arch: {keys:?}"
            ));
        }
        if p.get("selector")
            .and_then(|s| s.get("matchExpressions"))
            .is_some()
        {
            errs.push(format!("platform {i}: matchExpressions not used"));
        }
        let os = labels.get("os").and_then(Value::as_str).unwrap_or("");
        let arch = labels.get("arch").and_then(Value::as_str).unwrap_or("");
        if !["linux", "darwin", "windows"].contains(&os) || !["amd64", "arm64"].contains(&arch) {
            errs.push(format!("platform {i}: unexpected os/arch {os}/{arch}"));
        }
        if !pairs.insert((os.to_string(), arch.to_string())) {
            errs.push(format!("platform {i}: {os}/{arch} matched twice"));
        }
        if str_at(p, &["uri"]).is_none_or(str::is_empty) {
            errs.push(format!("platform {i}: uri empty"));
        }
        let sha = str_at(p, &["sha256"]).unwrap_or("");
        if sha.len() != 64 || !sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            errs.push(format!(
                "platform {i}: sha256 {sha:?} is not 64 lowercase hex"
            ));
        }
        let bin = str_at(p, &["bin"]).unwrap_or("");
        let want_bin = if os == "windows" {
            format!("kubectl-{name}.exe")
        } else {
            format!("kubectl-{name}")
        };
        if bin != want_bin {
            errs.push(format!("platform {i}: bin {bin:?}, expected {want_bin:?}"));
        }
        let files = p
            .get("files")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        if files.is_empty() {
            errs.push(format!("platform {i}: files empty"));
        }
        let mut froms = BTreeSet::new();
        for f in &files {
            let from = str_at(f, &["from"]).unwrap_or("");
            let to = str_at(f, &["to"]).unwrap_or("");
            if from.is_empty() || to.is_empty() {
                errs.push(format!("platform {i}: files entry needs from and to"));
            }
            if !is_clean_relative(to) {
                errs.push(format!("platform {i}: to path {to:?} is not clean"));
            }
            froms.insert(from.to_string());
        }
        for needed in [bin, "LICENSE"] {
            if !froms.contains(needed) {
                errs.push(format!("platform {i}: files do not extract {needed}"));
            }
        }
    }
    errs
}

#[test]
fn validator_rejects_what_krew_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root().join("plugin-manifests/npexec.yaml")).unwrap();
    let cases = [
        ("npexec", good.replace("kind: Plugin", "kind: Plugins")),
        (
            "npexec",
            good.replace(
                &format!("version: v{}", workspace_version()),
                "version: 1.0",
            ),
        ),
        ("npexec", good.replacen("sha256: ", "sha256: 0", 1)),
        (
            "npexec",
            good.replace("    - from: LICENSE\n      to: .\n", ""),
        ),
        ("other", good.clone()),
        ("npexec", good.replacen("to: .", "to: ../x", 1)),
    ];
    for (i, (stem, text)) in cases.iter().enumerate() {
        // Each case changes the text, or (the file-name case) the file name.
        assert!(
            *stem != "npexec" || &good != text,
            "case {i} did not change the manifest"
        );
        let path = dir.path().join(format!("{stem}.yaml"));
        std::fs::write(&path, text).unwrap();
        assert!(
            !validate_manifest(&path).is_empty(),
            "case {i} was accepted:\n{text}"
        );
    }
}

#[test]
fn committed_manifests_follow_krews_rules() {
    for p in PLUGINS {
        let file = root().join("plugin-manifests").join(format!("{p}.yaml"));
        assert!(file.exists(), "{} missing: run `make dist`", file.display());
        let errs = validate_manifest(&file);
        assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(&format!("version: v{}\n", workspace_version())),
            "{p}: spec.version is not the workspace version"
        );
    }
}

/// Runs scripts/dist.sh on the binaries of this build (as the release workflow does
/// with prebuilt binaries) and checks each archive against its freshly rendered manifest.
#[test]
fn dist_archives_match_their_manifests() {
    let bins = target_bin_dir();
    let staged = tempfile::tempdir().unwrap();
    let plat = staged.path().join("linux_amd64");
    std::fs::create_dir_all(&plat).unwrap();
    for p in PLUGINS {
        let exe = bins.join(format!("kubectl-{p}"));
        assert!(
            exe.exists(),
            "{} not built (make test builds the bins first)",
            exe.display()
        );
        // Linked, not copied: debug binaries are large, and dist.sh copies what it packs.
        std::os::unix::fs::symlink(&exe, plat.join(format!("kubectl-{p}"))).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(root().join("scripts/dist.sh"))
        .env("DIST_PREBUILT", staged.path())
        .env("DIST_OUT", out.path())
        .status()
        .unwrap();
    assert!(status.success(), "dist.sh failed");

    for p in PLUGINS {
        let manifest = out
            .path()
            .join("plugin-manifests")
            .join(format!("{p}.yaml"));
        let errs = validate_manifest(&manifest);
        assert!(errs.is_empty(), "{p}: {errs:#?}");
        let doc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let platforms = doc["spec"]["platforms"].as_sequence().unwrap();
        assert_eq!(platforms.len(), 1, "{p}: exactly the platforms built");
        let plat = &platforms[0];
        let uri = plat["uri"].as_str().unwrap();
        let archive = out
            .path()
            .join("dist")
            .join(uri.rsplit('/').next().unwrap());
        let bytes = std::fs::read(&archive).unwrap();
        let sum = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(plat["sha256"].as_str().unwrap(), sum, "{p}: checksum");

        // Layout: only regular files and directories, no absolute or `..` paths.
        let mut names = BTreeSet::new();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let kind = entry.header().entry_type();
            assert!(
                kind.is_file() || kind.is_dir(),
                "{p}: {kind:?} entry in archive"
            );
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            assert!(is_clean_relative(&path), "{p}: unsafe path {path:?}");
            let mode = entry.header().mode().unwrap();
            if path.starts_with("kubectl") {
                assert_eq!(mode & 0o111, 0o111, "{p}: {path} is not executable");
            }
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if path == "LICENSE" {
                assert!(String::from_utf8_lossy(&content).contains("Apache License"));
            }
            names.insert(path.trim_start_matches("./").to_string());
        }
        for f in plat["files"].as_sequence().unwrap() {
            let from = f["from"].as_str().unwrap();
            assert!(names.contains(from), "{p}: archive lacks {from}: {names:?}");
        }
        assert!(
            names.contains(&format!("kubectl_complete-{p}")),
            "{p}: {names:?}"
        );
        // SHA256SUMS agrees.
        let sums = std::fs::read_to_string(out.path().join("dist/SHA256SUMS")).unwrap();
        let name = uri.rsplit('/').next().unwrap();
        assert!(
            sums.lines().any(|l| l == format!("{sum}  {name}")),
            "{p}: {sums}"
        );
    }
}
