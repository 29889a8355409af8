//! The `ponte-connector` binary as an operator meets it: exit codes, one-line errors,
//! what `pair` writes.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ponte-connector"));
    c.env_remove("PONTE_CONNECTOR_RELAY_URL")
        .env_remove("PONTE_CONNECTOR_TOKEN")
        .env_remove("PONTE_CONNECTOR_CONFIG");
    c
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ponte-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_flag_is_one_line_and_exit_64() {
    let out = bin().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ponte-connector: "), "{err}");
}

#[test]
fn missing_or_invalid_config_is_exit_64_with_the_reason() {
    let d = tmpdir("cfg");
    let path = d.join("connector.toml");
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reading"),
        "{:?}",
        out.stderr
    );

    std::fs::write(
        &path,
        // `health_listen = 'off'`: were the mistake ever accepted, no default port is bound.
        "relay_url = 'ws://127.0.0.1:9/ws/connectors'\ntoken = 't'\nhealth_listen = 'off'\nper_target_concurency = 3\n",
    )
    .unwrap();
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown field") && err.contains("per_target_concurency"),
        "{err}"
    );

    std::fs::write(&path, "relay_url = 'ws://127.0.0.1:9/ws/connectors'\ntoken = 't'\nhealth_listen = 'off'\nallowed_targets = ['10.0.0.0/33']\n").unwrap();
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10.0.0.0/33"));

    // An env override wins over the file; a bad env value is reported the same way.
    std::fs::write(
        &path,
        "relay_url = 'ws://127.0.0.1:9/ws/connectors'\ntoken = 't'\n",
    )
    .unwrap();
    let out = bin()
        .args(["run", "--config"])
        .arg(&path)
        .env("PONTE_CONNECTOR_HEALTH_LISTEN", "nonsense")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("health_listen \"nonsense\""));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn pair_with_token_writes_a_private_config() {
    let d = tmpdir("pair");
    let path = d.join("sub/connector.toml");
    // header.payload.signature; the payload says sub=42.
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI0MiIsImV4cCI6NDEwMjQ0NDgwMH0.c2ln";
    let out = bin()
        .args([
            "pair",
            "--relay-url",
            "wss://cloud.example/ws/connectors",
            "--token",
            token,
            "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Paired connector 42"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("wss://cloud.example/ws/connectors") && text.contains(token));

    let out = bin()
        .args(["pair", "--server", "http://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "--server without --code");
    std::fs::remove_dir_all(d).unwrap();
}
