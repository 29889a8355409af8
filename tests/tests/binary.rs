//! The real `ponte-connector` binary in its own process: config file + env + flags
//! precedence, serving through the tunnel, TOKEN_ROTATE persisted to the file, SIGTERM.

use ponte_relay::{ProxyRequest, Router};
use ponte_tests::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `cargo test --workspace` builds the connector binary next to the test executables.
fn connector_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("ponte-connector");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p ponte-connector` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn the_connector_binary_serves_rotates_and_stops_on_sigterm() {
    let relay = TestRelay::spawn().await;
    let origin = origin::Origin::spawn().await;
    let token = relay.token_for("bin");
    let dir = std::env::temp_dir().join(format!("ponte-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("connector.toml");
    // The file names a relay nobody listens on; the environment overrides it.
    std::fs::write(
        &cfg,
        format!(
            "relay_url = \"ws://127.0.0.1:9/ws/connectors\"\ntoken = \"{token}\"\nallowed_targets = [\"{}\"]\nbackoff_initial_ms = 20\n",
            origin.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(connector_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--health-listen", "off"])
        .env("PONTE_CONNECTOR_RELAY_URL", relay.ws_url())
        .env("PONTE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    relay.wait_online("bin").await;
    let r = relay
        .relay
        .send("bin", ProxyRequest::new(origin.base_url(), "GET", "/hello"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Outside the file's allowlist.
    let other = origin::Origin::spawn().await;
    let err = relay
        .relay
        .send("bin", ProxyRequest::new(other.base_url(), "GET", "/hello"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "TARGET_FORBIDDEN");

    let rotated = relay.token_for("bin");
    assert!(relay.relay.rotate_token("bin", rotated.clone(), None));
    let path = cfg.clone();
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).unwrap().contains(&rotated)
    })
    .await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("allowed_targets") && text.contains("backoff_initial_ms"),
        "other keys survive: {text}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connector did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    relay.wait_offline("bin").await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn doctor_reports_what_works_and_what_does_not() {
    let relay = TestRelay::spawn().await;
    let dir = std::env::temp_dir().join(format!("ponte-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("connector.toml");
    let write = |token: &str| {
        std::fs::write(
            &cfg,
            format!(
                "relay_url = \"{}\"\ntoken = \"{token}\"\nhealth_listen = \"off\"\n",
                relay.ws_url()
            ),
        )
        .unwrap();
    };
    let doctor = {
        let cfg = cfg.clone();
        move || {
            let out = Command::new(connector_bin())
                .args(["doctor", "--config"])
                .arg(&cfg)
                .output()
                .unwrap();
            (out.status.code(), String::from_utf8(out.stdout).unwrap())
        }
    };
    write(&relay.token_for("doc"));
    let (code, report) = tokio::task::spawn_blocking(doctor.clone()).await.unwrap();
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("ok    relay") && report.contains("token: expires in"),
        "{report}"
    );

    // A token signed by the wrong key: the relay refuses it, and doctor says so.
    write(&sign(&claims("doc", "x", 3600), OTHER_KEY));
    let (code, report) = tokio::task::spawn_blocking(doctor).await.unwrap();
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("FAIL  relay") && report.contains("unauthorized"),
        "{report}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
