//! Reading a half-typed command line against the plugin's clap `Command`.
//!
//! Shell completion has to know what the word under the cursor is (a flag
//! name, a flag's value or a positional argument) and what was typed before it
//! (`-n`, `--context`, the FROM namespace...) before anything can be looked up.
//! This module answers that from the plugin's own clap definition, with no I/O,
//! so every plugin gets completion without a line of its own and the rules can
//! be unit-tested without a cluster.

use std::collections::BTreeMap;

use clap::{Arg, ArgAction, Command, ValueHint};

/// One completion candidate: the value and an optional description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub description: Option<String>,
}

impl Candidate {
    pub fn new(value: impl Into<String>) -> Self {
        Candidate {
            value: value.into(),
            description: None,
        }
    }

    pub fn described(value: impl Into<String>, description: impl Into<String>) -> Self {
        let description = description.into();
        Candidate {
            value: value.into(),
            description: (!description.is_empty()).then_some(description),
        }
    }
}

/// What kind of value the word under the cursor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Fixed values known from the command line definition (flag names,
    /// clap possible values): no lookup needed.
    Fixed(Vec<Candidate>),
    /// Namespaces of the cluster.
    Namespaces,
    /// Pods of one namespace (`None`: the context's namespace).
    Pods { namespace: Option<String> },
    /// Pods of one namespace and its Deployments as `deployment/NAME`.
    PodsOrDeployments { namespace: Option<String> },
    /// Deployments of one namespace, offered as `deployment/NAME`.
    Deployments { namespace: Option<String> },
    /// Services of these namespaces (empty: the context's namespace).
    Services { namespaces: Vec<String> },
    /// Contexts of the kubeconfig (no API call).
    Contexts,
    /// Clusters of the kubeconfig.
    Clusters,
    /// Users of the kubeconfig.
    Users,
    /// A path: let the shell complete file names.
    Files,
    /// Nothing sensible to offer.
    Nothing,
}

/// The result of reading the line: what to look up, and how to present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub want: Want,
    /// Candidates must start with this (the part of the word being completed).
    pub prefix: String,
    /// Put before every candidate (`--output=` when completing `--output=js`).
    pub insert_before: String,
    /// Values of the flags typed on the line, by long name (`namespace`,
    /// `context`, `kubeconfig`...), for the cluster lookups.
    pub flags: BTreeMap<String, Vec<String>>,
}

/// A positional word and the name of the slot it fills (`NAMESPACE`, `POD`).
#[derive(Debug, Clone)]
struct Positional {
    slot: String,
    value: String,
}

/// What the words before the cursor said.
#[derive(Debug, Default)]
struct Seen {
    /// Long name (or id) -> values.
    flags: BTreeMap<String, Vec<String>>,
    /// Arg ids present at least once.
    present: Vec<String>,
    /// Positional words, in order.
    positional: Vec<String>,
    /// The previous word was a flag still waiting for its value.
    pending: Option<Arg>,
}

fn arg_key(a: &Arg) -> String {
    a.get_long()
        .map(str::to_string)
        .unwrap_or_else(|| a.get_id().as_str().to_string())
}

fn takes_value(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Set | ArgAction::Append)
}

fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    })
}

fn find_short(cmd: &Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().find(|a| {
        a.get_short() == Some(c) || a.get_all_short_aliases().is_some_and(|al| al.contains(&c))
    })
}

fn record(seen: &mut Seen, a: &Arg, value: Option<String>) {
    seen.present.push(a.get_id().as_str().to_string());
    if let Some(v) = value {
        seen.flags.entry(arg_key(a)).or_default().push(v);
    }
}

/// Walks the complete words (everything before the cursor).
fn walk(cmd: &Command, words: &[String]) -> Seen {
    let mut seen = Seen::default();
    let mut only_positional = false;
    for word in words {
        if let Some(a) = seen.pending.take() {
            record(&mut seen, &a, Some(word.clone()));
            continue;
        }
        if only_positional || word == "-" || !word.starts_with('-') {
            seen.positional.push(word.clone());
            continue;
        }
        if word == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(a) = find_long(cmd, name) else {
                continue;
            };
            if takes_value(a) && inline.is_none() {
                seen.pending = Some(a.clone());
            } else {
                record(&mut seen, a, inline);
            }
            continue;
        }
        // Short flags, possibly bundled (`-vA`) or with a glued value (`-nfoo`).
        let shorts: Vec<char> = word[1..].chars().collect();
        for (i, c) in shorts.iter().enumerate() {
            let Some(a) = find_short(cmd, *c) else {
                break;
            };
            if takes_value(a) {
                let rest: String = shorts[i + 1..].iter().collect();
                let rest = rest.strip_prefix('=').map(str::to_string).unwrap_or(rest);
                if rest.is_empty() {
                    seen.pending = Some(a.clone());
                } else {
                    record(&mut seen, a, Some(rest));
                }
                break;
            }
            record(&mut seen, a, None);
        }
    }
    seen
}

/// The slot names of a positional argument: its value names when it has
/// several, else the `[A] [B]` words its help starts with, else its one value
/// name (for every value).
fn slot_names(a: &Arg) -> Vec<String> {
    let names: Vec<String> = a
        .get_value_names()
        .map(|v| v.iter().map(|s| s.as_str().to_string()).collect())
        .unwrap_or_default();
    if names.len() >= 2 {
        return names;
    }
    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
    let mut from_help = Vec::new();
    for token in help.split_whitespace() {
        let inner = token
            .trim_end_matches([';', ','])
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'));
        match inner {
            Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                from_help.push(n.to_string())
            }
            _ => break,
        }
    }
    if from_help.len() >= 2 {
        return from_help;
    }
    vec![
        names
            .into_iter()
            .next()
            .unwrap_or_else(|| a.get_id().as_str().to_ascii_uppercase()),
    ]
}

/// The positional arguments of `cmd` as a list of slots, given whether a
/// namespace flag was typed: a multi-slot argument such as `[NAMESPACE] [POD]`
/// loses its NAMESPACE slot when `-n` names the namespace.
fn positional_slots(cmd: &Command, namespace_flag: bool) -> Vec<(String, bool)> {
    // (slot name, repeats for every further value)
    let mut slots = Vec::new();
    for a in cmd.get_positionals() {
        let mut names = slot_names(a);
        let distinct = names
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let mut max = a.get_num_args().map(|r| r.max_values()).unwrap_or(1);
        if namespace_flag && distinct >= 2 {
            let before = names.len();
            names.retain(|n| n != "NAMESPACE" && n != "NS");
            // `-n` took the place of those values.
            max = max.saturating_sub(before - names.len());
        }
        let multiple = max > 1 || matches!(a.get_action(), ArgAction::Append);
        let last = names.len().saturating_sub(1);
        for (i, n) in names.iter().enumerate() {
            let repeats = multiple && i == last && max > names.len();
            slots.push((n.clone(), repeats));
            if i + 1 >= max {
                break;
            }
        }
    }
    slots
}

fn slot_at(slots: &[(String, bool)], index: usize) -> Option<String> {
    if let Some((name, _)) = slots.get(index) {
        return Some(name.clone());
    }
    match slots.last() {
        Some((name, true)) => Some(name.clone()),
        _ => None,
    }
}

fn positionals(cmd: &Command, seen: &Seen, namespace_flag: bool) -> Vec<Positional> {
    let slots = positional_slots(cmd, namespace_flag);
    seen.positional
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            slot_at(&slots, i).map(|slot| Positional {
                slot,
                value: v.clone(),
            })
        })
        .collect()
}

fn is_namespace_name(name: &str) -> bool {
    matches!(name, "NAMESPACE" | "NS")
}

/// The namespace pods are looked up in: `-n`, else the first NAMESPACE
/// positional, else the context's (None).
fn pod_namespace(seen: &Seen, pos: &[Positional]) -> Option<String> {
    seen.flags
        .get("namespace")
        .and_then(|v| v.last().cloned())
        .or_else(|| {
            pos.iter()
                .find(|p| is_namespace_name(&p.slot))
                .map(|p| p.value.clone())
        })
}

/// The namespaces Services are looked up in: the NAMESPACE positionals after
/// the first (the first names the source when `-n` is absent), else the pod
/// namespace.
fn service_namespaces(seen: &Seen, pos: &[Positional]) -> Vec<String> {
    let named: Vec<String> = pos
        .iter()
        .filter(|p| is_namespace_name(&p.slot))
        .map(|p| p.value.clone())
        .collect();
    let skip = usize::from(!seen.flags.contains_key("namespace"));
    let to: Vec<String> = named.into_iter().skip(skip).collect();
    if to.is_empty() {
        pod_namespace(seen, pos).into_iter().collect()
    } else {
        to
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// What a flag's or slot's value is, from clap's possible values, the flag's
/// long name, the slot name and the value hint.
fn want_for(a: &Arg, slot: Option<&str>, seen: &Seen, pos: &[Positional], prefix: &str) -> Want {
    let possible: Vec<Candidate> = a
        .get_possible_values()
        .into_iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| {
            Candidate::described(
                p.get_name(),
                p.get_help()
                    .map(|h| one_line(&h.to_string()))
                    .unwrap_or_default(),
            )
        })
        .collect();
    if !possible.is_empty() {
        return Want::Fixed(possible);
    }
    let long = a.get_long().unwrap_or("");
    let name = slot.map(str::to_string).unwrap_or_else(|| {
        a.get_value_names()
            .and_then(|v| v.first().map(|s| s.as_str().to_string()))
            .unwrap_or_default()
    });
    let pods_ns = || pod_namespace(seen, pos);
    match (long, name.as_str()) {
        ("namespace", _) | (_, "NAMESPACE") => Want::Namespaces,
        ("pod", _) => Want::Pods {
            namespace: pods_ns(),
        },
        // A positional POD slot also takes deployment/NAME.
        (_, "POD") => {
            if prefix.contains('/') || prefix.is_empty() || !"deployment/".starts_with(prefix) {
                Want::PodsOrDeployments {
                    namespace: pods_ns(),
                }
            } else {
                // `d`, `deploy`...: only the deployment/ forms can match.
                Want::Deployments {
                    namespace: pods_ns(),
                }
            }
        }
        ("service", _) | (_, "SERVICE") => Want::Services {
            namespaces: service_namespaces(seen, pos),
        },
        ("context", _) => Want::Contexts,
        ("cluster", _) => Want::Clusters,
        ("user", _) => Want::Users,
        (_, "NS") => Want::Namespaces,
        _ => match a.get_value_hint() {
            ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath => Want::Files,
            _ => Want::Nothing,
        },
    }
}

/// Flag names for a word starting with `-`: `--long` always, `-s` too unless
/// the word starts with `--`. Flags already given are left out unless they
/// repeat.
fn flag_names(cmd: &Command, seen: &Seen, word: &str) -> Want {
    let mut out = Vec::new();
    for a in cmd.get_arguments() {
        if a.is_positional() || a.is_hide_set() {
            continue;
        }
        let repeats = matches!(a.get_action(), ArgAction::Append | ArgAction::Count);
        if !repeats && seen.present.iter().any(|p| p == a.get_id().as_str()) {
            continue;
        }
        let help = a
            .get_help()
            .map(|h| one_line(&h.to_string()))
            .unwrap_or_default();
        if let Some(long) = a.get_long() {
            out.push(Candidate::described(format!("--{long}"), help.clone()));
        }
        if !word.starts_with("--")
            && let Some(s) = a.get_short()
        {
            out.push(Candidate::described(format!("-{s}"), help));
        }
    }
    Want::Fixed(out)
}

/// Reads `words` (the words after the plugin name, the last one being the
/// word under the cursor, possibly empty) against `cmd`.
pub fn analyse(cmd: &Command, words: &[String]) -> Request {
    let mut cmd = cmd.clone();
    cmd.build();
    let (current, before) = match words.split_last() {
        Some((c, b)) => (c.clone(), b),
        None => (String::new(), &[][..]),
    };
    let mut seen = walk(&cmd, before);
    let after_dashdash = before.iter().any(|w| w == "--");
    let namespace_flag = seen.flags.contains_key("namespace");
    let pos = positionals(&cmd, &seen, namespace_flag);
    let flags = seen.flags.clone();
    let request = |want, prefix: &str, insert_before: &str| Request {
        want,
        prefix: prefix.to_string(),
        insert_before: insert_before.to_string(),
        flags: flags.clone(),
    };

    // The value of the flag just before the cursor.
    if let Some(a) = seen.pending.take() {
        let want = want_for(&a, None, &seen, &pos, &current);
        return request(want, &current, "");
    }
    if !after_dashdash && current.starts_with('-') && current != "-" {
        // `--flag=value`
        if let Some(long) = current.strip_prefix("--")
            && let Some((name, value)) = long.split_once('=')
        {
            let want = match find_long(&cmd, name) {
                Some(a) if takes_value(a) => want_for(a, None, &seen, &pos, value),
                _ => Want::Nothing,
            };
            return request(want, value, &format!("--{name}="));
        }
        // `-nVALUE`: a short flag taking a value, glued.
        let mut chars = current.chars().skip(1);
        if let (Some(c), rest) = (chars.next(), chars.collect::<String>())
            && !current.starts_with("--")
            && !rest.is_empty()
            && let Some(a) = find_short(&cmd, c)
            && takes_value(a)
        {
            let want = want_for(a, None, &seen, &pos, &rest);
            return request(want, &rest, &format!("-{c}"));
        }
        return request(flag_names(&cmd, &seen, &current), &current, "");
    }
    if current == "-" && !after_dashdash {
        return request(flag_names(&cmd, &seen, &current), &current, "");
    }
    // A positional argument.
    let slots = positional_slots(&cmd, namespace_flag);
    let index = seen.positional.len();
    let Some(slot) = slot_at(&slots, index) else {
        return request(Want::Nothing, &current, "");
    };
    let Some(arg) = cmd.get_positionals().find(|a| {
        let names = slot_names(a);
        names.contains(&slot)
    }) else {
        return request(Want::Nothing, &current, "");
    };
    let want = want_for(arg, Some(&slot), &seen, &pos, &current);
    request(want, &current, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, ValueEnum};
    use std::path::PathBuf;

    #[derive(Debug, Clone, Copy, ValueEnum)]
    enum Out {
        /// Columns
        Table,
        Json,
    }

    /// Like npexec: NAMESPACE... plus kube flags.
    #[derive(Debug, Parser)]
    #[command(name = "kubectl probe")]
    struct Probe {
        /// FROM namespace, then TO namespaces
        #[arg(value_name = "NAMESPACE")]
        namespaces: Vec<String>,
        #[arg(long, value_name = "NAME")]
        pod: Option<String>,
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        #[arg(short = 'n', long, value_name = "NS")]
        namespace: Option<String>,
        #[arg(long, value_name = "NAME")]
        context: Option<String>,
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
        #[arg(short = 'o', long, value_enum, default_value_t = Out::Table)]
        output: Out,
        #[arg(short = 'v', action = clap::ArgAction::Count)]
        verbose: u8,
        #[arg(short = 'A', long)]
        all: bool,
        #[arg(long)]
        port: Option<u16>,
    }

    /// Like authzcheck: [NAMESPACE] [POD] in one positional.
    #[derive(Debug, Parser)]
    #[command(name = "kubectl check")]
    struct Check {
        /// [NAMESPACE] [POD]; POD may be deployment/NAME (with -n: only POD)
        #[arg(value_name = "ARGS", num_args = 0..=2)]
        args: Vec<String>,
        #[arg(short = 'n', long, value_name = "NS")]
        namespace: Option<String>,
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    fn probe(w: &[&str]) -> Request {
        use clap::CommandFactory;
        analyse(&Probe::command(), &words(w))
    }

    fn check(w: &[&str]) -> Request {
        use clap::CommandFactory;
        analyse(&Check::command(), &words(w))
    }

    fn values(want: &Want) -> Vec<String> {
        match want {
            Want::Fixed(c) => c.iter().map(|c| c.value.clone()).collect(),
            other => panic!("not fixed: {other:?}"),
        }
    }

    #[test]
    fn positional_namespaces() {
        assert_eq!(probe(&[""]).want, Want::Namespaces);
        assert_eq!(probe(&["np-1", "np"]).want, Want::Namespaces);
        assert_eq!(probe(&["np-1", "np"]).prefix, "np");
        assert_eq!(probe(&["-n", "a", "--", "x", ""]).want, Want::Namespaces);
    }

    #[test]
    fn flag_values() {
        assert_eq!(probe(&["-n", ""]).want, Want::Namespaces);
        assert_eq!(probe(&["--namespace", "np"]).prefix, "np");
        assert_eq!(probe(&["--context", ""]).want, Want::Contexts);
        assert_eq!(probe(&["--kubeconfig", ""]).want, Want::Files);
        assert_eq!(probe(&["--port", ""]).want, Want::Nothing);
        assert_eq!(values(&probe(&["-o", ""]).want), ["table", "json"]);
        let r = probe(&["--output=j"]);
        assert_eq!(values(&r.want), ["table", "json"]);
        assert_eq!(
            (r.prefix.as_str(), r.insert_before.as_str()),
            ("j", "--output=")
        );
        let r = probe(&["-oj"]);
        assert_eq!((r.prefix.as_str(), r.insert_before.as_str()), ("j", "-o"));
        // A bundle ending in a value flag: -vn VALUE.
        assert_eq!(probe(&["-vn", ""]).want, Want::Namespaces);
    }

    #[test]
    fn pods_in_the_chosen_namespace() {
        assert_eq!(
            probe(&["np-1", "np-2", "--pod", ""]).want,
            Want::Pods {
                namespace: Some("np-1".into())
            }
        );
        assert_eq!(
            probe(&["np-1", "-n", "other", "--pod", ""]).want,
            Want::Pods {
                namespace: Some("other".into())
            }
        );
        assert_eq!(probe(&["--pod", ""]).want, Want::Pods { namespace: None });
        assert_eq!(
            probe(&["--namespace=x", "--pod", ""]).want,
            Want::Pods {
                namespace: Some("x".into())
            }
        );
    }

    #[test]
    fn services_in_the_to_namespaces() {
        assert_eq!(
            probe(&["np-1", "np-2", "np-3", "--service", ""]).want,
            Want::Services {
                namespaces: vec!["np-2".into(), "np-3".into()]
            }
        );
        assert_eq!(
            probe(&["-n", "np-1", "np-2", "--service", ""]).want,
            Want::Services {
                namespaces: vec!["np-2".into()]
            }
        );
        assert_eq!(
            probe(&["np-1", "--service", ""]).want,
            Want::Services {
                namespaces: vec!["np-1".into()]
            }
        );
    }

    #[test]
    fn flag_names_leave_out_given_flags() {
        let all = values(&probe(&["-"]).want);
        assert!(all.contains(&"-n".to_string()) && all.contains(&"--pod".to_string()));
        let long = values(&probe(&["--"]).want);
        assert!(!long.iter().any(|v| v == "-n"), "{long:?}");
        let after = values(&probe(&["--pod", "p", "-v", "--"]).want);
        assert!(!after.contains(&"--pod".to_string()), "{after:?}");
        assert!(after.contains(&"--service".to_string()));
        // Repeatable flags stay.
        let after = values(&probe(&["--service", "s", "--"]).want);
        assert!(after.contains(&"--service".to_string()));
    }

    #[test]
    fn namespace_then_pod_slots() {
        assert_eq!(check(&[""]).want, Want::Namespaces);
        assert_eq!(
            check(&["np-2", ""]).want,
            Want::PodsOrDeployments {
                namespace: Some("np-2".into())
            }
        );
        assert_eq!(
            check(&["-n", "np-2", ""]).want,
            Want::PodsOrDeployments {
                namespace: Some("np-2".into())
            }
        );
        assert_eq!(
            check(&["np-2", "deploy"]).want,
            Want::Deployments {
                namespace: Some("np-2".into())
            }
        );
        assert_eq!(
            check(&["np-2", "deployment/np"]).want,
            Want::PodsOrDeployments {
                namespace: Some("np-2".into())
            }
        );
        assert_eq!(check(&["np-2", "p", ""]).want, Want::Nothing);
        assert_eq!(check(&["-n", "np-2", "p", ""]).want, Want::Nothing);
    }

    #[test]
    fn typed_connection_flags_are_kept() {
        let r = probe(&["--context", "c1", "--kubeconfig=/k", "-n", "ns", ""]);
        assert_eq!(r.flags["context"], ["c1"]);
        assert_eq!(r.flags["kubeconfig"], ["/k"]);
        assert_eq!(r.flags["namespace"], ["ns"]);
    }

    #[test]
    fn unknown_flags_and_empty_lines_do_not_panic() {
        assert_eq!(probe(&[]).want, Want::Namespaces);
        assert_eq!(probe(&["--nope", ""]).want, Want::Namespaces);
        assert_eq!(probe(&["-é", "--x=", "-"]).prefix, "-");
        assert_eq!(probe(&["--nope=x"]).want, Want::Nothing);
    }
}
