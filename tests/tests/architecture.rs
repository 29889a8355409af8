//! The workspace's dependency rule, read from `cargo metadata`: protocol ← core ←
//! {relay, gateway, api} ← ponte; the connector needs the protocol only (and the shared
//! accept loop); relay, gateway and api never depend on each other. A new crate must be
//! given its place here before it builds into the suite.

use std::collections::BTreeMap;

/// Each workspace crate and the workspace crates it may depend on (normal and build
/// dependencies; dev-dependencies are the tests' business). `None`: any.
const RULE: &[(&str, Option<&[&str]>)] = &[
    ("ponte-protocol", Some(&[])),
    // The accept loop every listener shares: a leaf, like the protocol.
    ("ponte-listen", Some(&[])),
    ("ponte-core", Some(&["ponte-protocol"])),
    (
        "ponte-relay",
        Some(&["ponte-protocol", "ponte-core", "ponte-listen"]),
    ),
    ("ponte-gateway", Some(&["ponte-protocol", "ponte-core"])),
    ("ponte-api", Some(&["ponte-protocol", "ponte-core"])),
    ("ponte-connector", Some(&["ponte-protocol", "ponte-listen"])),
    ("ponte-devsim", Some(&[])),
    // The binary wires the roles together; the harness and the benchmark use them all.
    ("ponte", None),
    ("ponte-tests", None),
    ("ponte-bench", None),
];

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Workspace crate → the workspace crates it depends on (not as a dev-dependency).
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
    let meta = metadata();
    let packages = meta["packages"].as_array().unwrap();
    let ours: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap())
                .filter(|name| ours.contains(name))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// A deployment build of `ponte` can leave the demo's simulated devices and in-process
/// connector out: they are optional, and only the default `demo` feature pulls them in.
#[test]
fn the_demo_is_a_default_feature_a_deployment_can_leave_out() {
    let meta = metadata();
    let ponte = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ponte")
        .unwrap();
    // reqwest: the demo's own calls to the API (a deployment's ponte makes none).
    for name in ["ponte-devsim", "ponte-connector", "reqwest"] {
        let dep = ponte["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name && d["kind"].is_null())
            .unwrap_or_else(|| panic!("ponte depends on {name}"));
        assert_eq!(dep["optional"], true, "{name} must be optional");
    }
    assert_eq!(ponte["features"]["default"], serde_json::json!(["demo"]));
    assert_eq!(
        ponte["features"]["demo"],
        serde_json::json!(["dep:ponte-connector", "dep:ponte-devsim", "dep:reqwest"])
    );
}

#[test]
fn crates_depend_only_on_what_the_rule_allows() {
    let deps = workspace_deps();
    let rule: BTreeMap<&str, Option<&[&str]>> = RULE.iter().copied().collect();
    let mut broken = Vec::new();
    for (name, uses) in &deps {
        let Some(allowed) = rule.get(name.as_str()) else {
            broken.push(format!("{name} is not in the rule: give it its place"));
            continue;
        };
        let Some(allowed) = allowed else { continue };
        for dep in uses {
            if !allowed.contains(&dep.as_str()) {
                broken.push(format!("{name} depends on {dep}"));
            }
        }
    }
    assert!(broken.is_empty(), "dependency rule broken: {broken:#?}");
    // The rule names no crate that is gone (a renamed crate would escape it).
    for (name, _) in RULE {
        assert!(
            deps.contains_key(*name),
            "{name} is in the rule but not in the workspace"
        );
    }
    // The ports are where the roles meet: each role uses them.
    for role in ["ponte-relay", "ponte-gateway", "ponte-api"] {
        assert!(deps[role].iter().any(|d| d == "ponte-core"), "{role}");
    }
}

/// Every `.rs` file under a crate's `src/`, with its path relative to the workspace.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for (krate, _) in RULE {
        let dir = match *krate {
            "ponte" => "ponte".to_owned(),
            name => name.trim_start_matches("ponte-").to_owned(),
        };
        walk(&root.join(&dir).join("src"), &mut files);
    }
    let mut out: Vec<(String, String)> = files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Generated tables, not code: exempt from the size rule.
const GENERATED: &[&str] = &["gateway/src/rewrite/entities.rs"];

#[test]
fn no_source_file_is_over_600_lines() {
    let sources = sources();
    assert!(sources.len() > 50, "the walk found the sources");
    let long: Vec<String> = sources
        .iter()
        .filter(|(path, _)| !GENERATED.contains(&path.as_str()))
        .map(|(path, text)| (path, text.lines().count()))
        .filter(|(_, lines)| *lines > 600)
        .map(|(path, lines)| format!("{path}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "split these: {long:#?}");
}

/// The top-level module a file of `src/` belongs to (`gateway/src/rewrite/html.rs` →
/// `rewrite`); `None` for the crate root.
fn top_module(path: &str) -> Option<(String, String)> {
    let (krate, rest) = path.split_once("/src/")?;
    let top = rest.split('/').next()?.trim_end_matches(".rs");
    (!matches!(top, "lib" | "main")).then(|| (krate.to_owned(), top.to_owned()))
}

/// The code of a file that is not a comment or a unit-test module: what it needs to run.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

type Module = (String, String);

/// The cycles among `modules` (crate, top-level module → its code).
fn cycles(modules: &std::collections::BTreeMap<Module, String>) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut edges: BTreeMap<&Module, BTreeSet<&Module>> = BTreeMap::new();
    for (from, code) in modules {
        for to in modules.keys() {
            if to.0 != from.0 || to == from {
                continue;
            }
            let name = to.1.as_str();
            let uses = code.match_indices("crate::").any(|(i, _)| {
                let after = &code[i + "crate::".len()..];
                let direct = after.starts_with(name)
                    && !after[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
                // `use crate::{a, b::c}`
                let grouped = after.starts_with('{')
                    && after[1..after.find('}').unwrap_or(after.len())]
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .any(|w| w == name);
                direct || grouped
            });
            if uses {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    // A cycle exists iff a depth-first walk meets a module still on its path.
    fn visit<'a>(
        m: &'a Module,
        edges: &BTreeMap<&'a Module, BTreeSet<&'a Module>>,
        path: &mut Vec<&'a Module>,
        done: &mut BTreeSet<&'a Module>,
        found: &mut Vec<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == m) {
            let cycle: Vec<&str> = path[at..].iter().map(|p| p.1.as_str()).collect();
            found.push(format!("{}: {} -> {}", m.0, cycle.join(" -> "), m.1));
            return;
        }
        path.push(m);
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, path, done, found);
        }
        path.pop();
        done.insert(m);
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for m in modules.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

/// No two top-level modules of a crate need each other, directly or through others:
/// each file can be read knowing only the ones below it.
#[test]
fn no_module_cycles_within_a_crate() {
    let mut modules = std::collections::BTreeMap::<Module, String>::new();
    for (path, text) in &sources() {
        if let Some(key) = top_module(path) {
            modules.entry(key).or_default().push_str(&code(text));
        }
    }
    assert!(modules.len() > 40, "the walk found the modules");
    let found = cycles(&modules);
    assert!(found.is_empty(), "module cycles: {found:#?}");

    // The check sees a cycle through a third module, and a grouped import; not one in a
    // comment or a unit test.
    let m = |name: &str| ("x".to_owned(), name.to_owned());
    let three = [
        (m("a"), "use crate::b::B;".to_owned()),
        (m("b"), "use crate::{c, d};".to_owned()),
        (m("c"), code("// crate::b\nfn f() { crate::a::g() }")),
        (
            m("d"),
            code("fn d() {}\n#[cfg(test)]\nmod tests { use crate::a; }"),
        ),
    ];
    assert_eq!(
        cycles(&three.iter().cloned().collect()),
        ["x: a -> b -> c -> a"]
    );
    let mut two = three;
    two[2].1 = code("// crate::a\nfn f() {}");
    two[1].1.push_str(" use crate::ab;");
    assert!(cycles(&two.into_iter().collect()).is_empty());
}
