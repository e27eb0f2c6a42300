//! Every `kubectl ...` example in the README's `sh` blocks, run through the
//! real kubectl against `meshsim serve` with the walk-through, in README
//! order, with its exit code checked: 0, or 0/1 where the example asks for a
//! negative result (`--expect`, `--exit-code`). So the README cannot drift
//! from what the plugins accept again (issue 17).
//!
//! Examples that cannot run here are skipped by the narrow rules in [`skip`]
//! (pipes, command substitution, krew, a follow that never ends); the test
//! fails if the rules leave fewer than 20 examples to run, so a README that
//! moves its examples into skipped forms is noticed too. Each line is split
//! into argv by a small quote-aware splitter: no shell runs README text.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::sim::{Sim, built, istioctl_dir, link};

/// The `kubectl ...` lines of the README's ```sh blocks (continuations joined,
/// trailing `# comments` and `|| ...` fallbacks dropped).
fn examples(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.trim_end();
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = format!("{pending}{line}");
        pending.clear();
        let cmd = strip_comment(&full);
        let cmd = cmd.split(" || ").next().unwrap_or("").trim();
        if cmd.starts_with("kubectl ") {
            out.push(cmd.to_string());
        }
    }
    out
}

/// The line up to an unquoted ` #`.
fn strip_comment(s: &str) -> String {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if prev.is_whitespace() => return s[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    s.to_string()
}

/// Splits a command line into words: whitespace separates, single and double
/// quotes group (without expansion).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Why an example cannot run here, if it cannot.
fn skip(cmd: &str, argv: &[String]) -> Option<&'static str> {
    if cmd.contains(" | ") {
        return Some("a pipeline");
    }
    if cmd.contains("$(") {
        return Some("command substitution");
    }
    if argv.get(1).is_some_and(|a| a == "krew") {
        return Some("krew is not installed here");
    }
    if argv.get(1).is_some_and(|a| a == "rbaclog") && argv.iter().any(|a| a == "-f") {
        return Some("follows until interrupted");
    }
    None
}

#[test]
fn every_readme_example_runs_with_its_exit_code() {
    let root = common::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let all = examples(&readme);

    let bins = built(&[
        "kubectl-authzcheck",
        "kubectl-npexec",
        "kubectl-rbaclog",
        "meshsim",
        "meshsim-istioctl",
    ]);
    let sim = Sim::walkthrough().start();
    // The plugins alone in a bin directory (kubectl plugin list warns about
    // anything else named kubectl-*), meshsim's istioctl stand-in beside it.
    let bin = sim.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for p in ["npexec", "rbaclog", "authzcheck"] {
        link(
            &bins.join(format!("kubectl-{p}")),
            &bin.join(format!("kubectl-{p}")),
        );
    }
    let tools = istioctl_dir(sim.path());
    let path = common::sim::path_with(&[&bin, &tools]);
    // The working directory the examples assume: the repository's examples,
    // a saved config dump.
    let cwd = sim.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    link(&root.join("examples"), &cwd.join("examples"));
    std::fs::copy(
        root.join("tests/fixtures/istio/authz-check/configdump-1.25.json"),
        cwd.join("config_dump.json"),
    )
    .unwrap();
    // The what-if section's manifests: a base branch and a pull request (one of
    // np-guard's published before/after pairs, whose change cuts traffic), and
    // a policy change against the live walk-through.
    let diff_cases = root.join("tests/fixtures/netpol-analyzer-diff/cases");
    std::fs::create_dir(cwd.join("base")).unwrap();
    link(
        &diff_cases.join("onlineboutique_workloads"),
        &cwd.join("base/deploy"),
    );
    link(
        &diff_cases.join("onlineboutique_workloads_changed_netpols"),
        &cwd.join("deploy"),
    );
    std::fs::write(cwd.join("new-policy.yaml"), NEW_POLICY).unwrap();
    std::fs::write(cwd.join("old-policy.yaml"), OLD_POLICY).unwrap();

    let mut ran = 0;
    let mut failures = Vec::new();
    for cmd in &all {
        let argv = words(cmd);
        if let Some(why) = skip(cmd, &argv) {
            eprintln!("skipped ({why}): {cmd}");
            continue;
        }
        // `< FILE`: the file is the command's standard input (no shell runs).
        let (argv, stdin) = match argv.iter().position(|a| a == "<") {
            Some(i) if i + 1 < argv.len() => {
                let file = cwd.join(&argv[i + 1]);
                let mut rest = argv[..i].to_vec();
                rest.extend_from_slice(&argv[i + 2..]);
                (rest, Some(file))
            }
            _ => (argv, None),
        };
        let out = run(&sim, &path, &cwd, &argv[1..], stdin.as_deref());
        ran += 1;
        // Exit 1 is the answer, not a failure, where the example asks a yes/no
        // question: an expectation (--expect, --expect-matrix), --exit-code, or a
        // what-if diff's --fail-on gate.
        let negative_asked = argv.iter().any(|a| {
            a == "--expect" || a == "--expect-matrix" || a == "--exit-code" || a == "--diff"
        });
        let ok = match out.status.code() {
            Some(0) => true,
            Some(1) => negative_asked,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{cmd}\n  exit {:?}\n  stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "README examples that fail:\n{}",
        failures.join("\n")
    );
    assert!(ran >= 20, "only {ran} README examples ran: {all:#?}");
}

fn run(
    sim: &Sim,
    path: &std::ffi::OsString,
    cwd: &Path,
    args: &[String],
    stdin: Option<&Path>,
) -> std::process::Output {
    let mut cmd: Command = sim.kubectl_cmd(path);
    cmd.current_dir(cwd).args(args);
    if let Some(f) = stdin {
        cmd.stdin(std::fs::File::open(f).unwrap());
    }
    cmd.output().unwrap()
}

/// The live what-if examples' manifests: a NetworkPolicy that cuts np-test-2 off,
/// and the walk-through's AuthorizationPolicy to take away.
const NEW_POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all-ingress
  namespace: np-test-2
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

const OLD_POLICY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all-ingress-using-authorizationpolicy
  namespace: np-test-2
spec:
  action: DENY
  rules:
  - {}
";

#[test]
fn the_splitter_and_comment_rules() {
    assert_eq!(
        words("kubectl a -o jsonpath='{.x[*].y}' \"b c\" d"),
        ["kubectl", "a", "-o", "jsonpath={.x[*].y}", "b c", "d"]
    );
    assert_eq!(strip_comment("kubectl x   # note"), "kubectl x   ");
    assert_eq!(strip_comment("kubectl -H 'a#b' # c"), "kubectl -H 'a#b' ");
    let ex =
        examples("```sh\nkubectl a \\\n  b # c\nmake x\nkubectl d || echo e\n```\nkubectl no\n");
    assert_eq!(ex, ["kubectl a    b", "kubectl d"]);
}
