//! The shipped deployment files stay valid: the systemd unit passes
//! `systemd-analyze verify` and keeps its hardening; the example config parses.

use std::process::Command;

const UNIT: &str = include_str!("../../deploy/ponte-connector.service");
const EXAMPLE: &str = include_str!("../../deploy/connector.toml.example");

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    for needed in [
        "User=ponte",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/ponte/connector.env",
        "ReadWritePaths=/etc/ponte",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(UNIT.contains(needed), "unit lost {needed:?}");
    }
    // Verify a copy whose ExecStart points at the binary just built (verify checks it).
    let dir = std::env::temp_dir().join(format!("ponte-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("ponte-connector.service");
    let bin = env!("CARGO_BIN_EXE_ponte-connector");
    std::fs::write(&unit, UNIT.replace("/usr/bin/ponte-connector", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is needed for this test (Debian package `systemd`; .ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ponte-connector.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn example_config_parses_and_validates() {
    let f: ponte_connector::config::FileConfig = toml::from_str(EXAMPLE).unwrap();
    let cfg = ponte_connector::config::Config::from_file_config(f, None).unwrap();
    assert_eq!(cfg.per_target_concurrency, 4);
    assert_eq!(cfg.relay_urls, ["wss://cloud.example/ws/connectors"]);
}
