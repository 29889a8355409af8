//! The real `ponte-connector` binary in its own process: config file + env + flags
//! precedence, serving through the tunnel, TOKEN_ROTATE persisted to the file, SIGTERM
//! (requests in flight answered first).

use ponte_core::{ProxyRequest, Router};
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

    // A request in flight when SIGTERM comes: the process stays until it has answered.
    let held = tokio::spawn({
        let relay = relay.relay.clone();
        let req = ProxyRequest::new(origin.base_url(), "GET", "/hold");
        async move { relay.send("bin", req).await?.body.collect(1024).await }
    });
    let stats = origin.stats.clone();
    wait_until(Duration::from_secs(10), move || {
        stats.inflight.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Draining: new requests are refused (BUSY) while the held one is still open.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hello = ProxyRequest::new(origin.base_url(), "GET", "/hello");
        match relay.relay.send("bin", hello).await {
            Err(e) if e.code() == "BUSY" => break,
            Err(e) => panic!("a stopping connector refuses with BUSY, not {e:?}"),
            Ok(_) => assert!(std::time::Instant::now() < deadline, "never refused"),
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "left with a request in flight"
    );
    origin.stats.gate.add_permits(1);
    let body = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap()
        .expect("the request in flight is answered whole");
    assert_eq!(&body[..], b"released");
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

/// `doctor`'s DNS, TLS and device checks, all on loopback: the relay's name resolves
/// (`localhost`), a `wss://` relay behind TLS is trusted through `relay_ca_file` (and
/// refused, naming the certificate, with another CA's file; an unreadable file fails the
/// TLS check), and each device the running connector has reached is tried: one that
/// answers is reachable, one whose port refuses connections fails.
#[tokio::test]
async fn doctor_checks_dns_tls_and_each_device_the_connector_has_reached() {
    let relay = TestRelay::spawn().await;
    let pki = tls::Pki::generate();
    let front = tls::tls_front(&pki, relay.addr).await;
    let origin = origin::Origin::spawn().await;
    // Bound but not listening: connections are refused, and no one else can take it.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = closed.local_addr().unwrap();

    // The running connector (another identity than doctor's), asked to reach both.
    let running = spawn_connector(connector_config(
        &relay.ws_url(),
        &relay.token_for("doc-running"),
        None,
    ))
    .await;
    relay.wait_online("doc-running").await;
    let ok = relay
        .relay
        .send(
            "doc-running",
            ProxyRequest::new(origin.base_url(), "GET", "/hello"),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let refused = relay
        .relay
        .send(
            "doc-running",
            ProxyRequest::new(format!("http://{closed}"), "GET", "/"),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), "CONNECT_FAILED");
    let health = running.handle.health_addr.unwrap();

    let dir = std::env::temp_dir().join(cloud::unique("ponte-doctor-checks"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("connector.toml");
    let plain = format!("ws://localhost:{}/ws/connectors", relay.addr.port());
    let wss = format!("wss://127.0.0.1:{}/ws/connectors", front.port());
    let token = relay.token_for("doc-check");
    let doctor = |ca: &std::path::Path| {
        std::fs::write(
            &cfg,
            format!(
                "relay_url = [\"{plain}\", \"{wss}\"]\ntoken = \"{token}\"\n\
                 health_listen = \"{health}\"\nrelay_ca_file = \"{}\"\n",
                ca.display()
            ),
        )
        .unwrap();
        let cfg = cfg.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = Command::new(connector_bin())
                    .args(["doctor", "--config"])
                    .arg(&cfg)
                    .output()
                    .unwrap();
                (out.status.code(), String::from_utf8(out.stdout).unwrap())
            })
            .await
            .unwrap()
        }
    };
    let lines = |report: &str, prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    let (code, report) = doctor(&pki.ca).await;
    assert_eq!(
        code,
        Some(1),
        "the refused device fails the report: {report}"
    );
    assert_eq!(
        lines(&report, "ok    dns"),
        [
            "ok    dns: localhost → 127.0.0.1",
            "ok    dns: 127.0.0.1 → 127.0.0.1"
        ],
        "{report}"
    );
    assert_eq!(lines(&report, "ok    relay").len(), 2, "{report}");
    assert!(
        report.contains(&format!(
            "ok    relay: {wss}: TLS and WebSocket handshake accepted the token"
        )),
        "{report}"
    );
    assert_eq!(
        lines(&report, "ok    device"),
        [format!("ok    device: {} reachable", origin.addr)],
        "{report}"
    );
    let failed = lines(&report, "FAIL");
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0].starts_with(&format!("FAIL  device: {closed}: "))
            && failed[0].contains("refused"),
        "{report}"
    );

    // Another CA's file: the plain relay still passes, the TLS one is refused.
    let (code, report) = doctor(&pki.other_ca).await;
    assert_eq!(code, Some(1), "{report}");
    let relay_fail = lines(&report, "FAIL  relay");
    assert_eq!(relay_fail.len(), 1, "{report}");
    assert!(
        relay_fail[0].starts_with(&format!("FAIL  relay: {wss}: "))
            && relay_fail[0].contains("invalid peer certificate")
            && relay_fail[0].contains("relay_ca_file"),
        "{report}"
    );

    // A CA file that cannot be read fails the TLS check for every relay URL.
    let (code, report) = doctor(&dir.join("missing-ca.pem")).await;
    assert_eq!(code, Some(1), "{report}");
    let tls_fail = lines(&report, "FAIL  tls");
    assert_eq!(tls_fail.len(), 2, "{report}");
    assert!(tls_fail[0].contains("reading relay_ca_file"), "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}
