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

/// Workspace crate → the workspace crates it depends on (not as a dev-dependency).
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
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
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
