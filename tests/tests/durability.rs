//! Nothing acknowledged is lost and no transfer is cut by a clock: uploads slower than
//! the response timeout, uploads cut half-way, a SQLite disk that fills and frees, a
//! PostgreSQL of the test's own that is stopped and killed, a legacy connector whose
//! token nears expiry.

use bytes::Bytes;
use futures_util::StreamExt;
use ponte_api::store::{self, SqlStore, Store};
use ponte_core::{RequestBody, Router};
use ponte_tests::cloud::{Backend, TestCloud};
use ponte_tests::origin::Origin;
use ponte_tests::{pattern_chunks, sha256_hex, Stack, CID};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Equipment 100 of institution 2 through `origin`, with the device response timeout
/// `timeout_ms`, set through the API as an operator would.
async fn equipment_with_timeout(cloud: &TestCloud, origin: &Origin, timeout_ms: u64) {
    let admin = cloud.user_token(1, &[2], false);
    let (s, _, body) = cloud
        .call(
            "PUT",
            "/api/instituicao/2/equipamento/100",
            Some(&admin),
            Some(json!({"name": "Catraca", "usaAddon": true,
                        "config": {"localBaseUrl": origin.base_url(), "timeoutMs": timeout_ms}})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["config"]["timeoutMs"], timeout_ms, "{body}");
}

/// `n` bytes of the test pattern, in 64 KiB pieces, at about `bytes_per_s`.
fn paced(
    n: u64,
    bytes_per_s: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let per_piece = Duration::from_secs_f64(64.0 * 1024.0 / bytes_per_s as f64);
    futures_util::stream::iter(pattern_chunks(n, 9)).then(move |c| async move {
        // Pacing, not synchronisation: this is a slow client.
        tokio::time::sleep(per_piece).await;
        Ok(c)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_the_response_timeout_arrives_byte_exact() {
    // The device may take 1 s to answer once the body is in; the body itself takes
    // about 4 s. The response clock must not count the upload.
    const N: u64 = 8 * 1024 * 1024;
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    equipment_with_timeout(&cloud, &origin, 1000).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let cookie = cloud.launch(&url).await;
    for length in [Some(N), None] {
        let started = Instant::now();
        let mut req = reqwest::Client::new()
            .post(format!(
                "http://{}/remote/s/{sid}/upload",
                cloud.gateway_addr
            ))
            .header("cookie", &cookie)
            .body(reqwest::Body::wrap_stream(paced(N, 2 * 1024 * 1024)));
        if let Some(n) = length {
            req = req.header("content-length", n);
        }
        let resp = req.send().await.unwrap();
        let took = started.elapsed();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{length:?}: {v}");
        assert_eq!(v["len"], N, "{length:?}");
        assert_eq!(v["sha256"], sha256_hex(pattern_chunks(N, 9)), "{length:?}");
        assert!(
            took > Duration::from_secs(3),
            "the upload was paced: {took:?}"
        );
    }
    assert_eq!(origin.stats.uploads_finished.load(Ordering::SeqCst), 2);
    assert_eq!(origin.stats.uploads_failed.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ms_out_of_range_is_refused() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let admin = cloud.user_token(1, &[2], false);
    for bad in [0, 600_001] {
        let (s, _, body) = cloud
            .call(
                "PUT",
                "/api/instituicao/2/equipamento/100",
                Some(&admin),
                Some(json!({"name": "Catraca", "config": {"timeoutMs": bad}})),
            )
            .await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeoutMs"));
    }
}

/// Waits until the origin has seen `n` uploads end one way or the other.
async fn uploads_ended(origin: &Origin, n: usize) {
    let stats = origin.stats.clone();
    ponte_tests::wait_for(
        Duration::from_secs(20),
        "the device to see the upload end",
        || {
            let stats = stats.clone();
            async move {
                stats.uploads_finished.load(Ordering::SeqCst)
                    + stats.uploads_failed.load(Ordering::SeqCst)
                    >= n
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_client_vanishes_is_never_complete_on_the_device() {
    const N: u64 = 4 * 1024 * 1024;
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let cookie = cloud.launch(&url).await;
    for (i, length) in [Some(N), None].into_iter().enumerate() {
        // Half the body, then the client's side fails: reqwest aborts the connection.
        let half = futures_util::stream::iter(pattern_chunks(N / 2, 3).map(Ok)).chain(
            futures_util::stream::once(async { Err(std::io::Error::other("client vanished")) }),
        );
        let mut req = reqwest::Client::new()
            .post(format!(
                "http://{}/remote/s/{sid}/upload",
                cloud.gateway_addr
            ))
            .header("cookie", &cookie)
            .body(reqwest::Body::wrap_stream(half));
        if let Some(n) = length {
            req = req.header("content-length", n);
        }
        assert!(req.send().await.is_err(), "the client's own request fails");
        uploads_ended(&origin, i + 1).await;
        assert_eq!(
            origin.stats.uploads_finished.load(Ordering::SeqCst),
            0,
            "{length:?}: a cut upload reached the device as a complete body"
        );
        assert_eq!(origin.stats.uploads_failed.load(Ordering::SeqCst), i + 1);
    }
}

#[tokio::test]
async fn an_upload_that_stalls_fails_after_the_idle_timeout_and_the_device_sees_it_cut() {
    let s = Stack::start().await;
    let mut req = s.get("/upload");
    req.method = "POST".into();
    req.timeout = Duration::from_secs(30);
    req.idle_timeout = Duration::from_millis(500);
    // 1 MiB, then nothing: the sender is alive but silent.
    let stalled = futures_util::stream::iter(pattern_chunks(1 << 20, 1).map(Ok))
        .chain(futures_util::stream::pending());
    req.body = RequestBody::Stream {
        length: None,
        stream: stalled.boxed(),
    };
    let started = Instant::now();
    let err = match s.relay.relay.send(CID, req).await {
        Err(e) => e,
        Ok(r) => panic!("a stalled upload got a response: {}", r.status),
    };
    assert_eq!(err.code(), "BODY_READ", "{err}");
    // The idle timeout, not the 30 s response timeout, ended it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    uploads_ended(&s.origin, 1).await;
    assert_eq!(s.origin.stats.uploads_finished.load(Ordering::SeqCst), 0);
    assert_eq!(s.origin.stats.uploads_failed.load(Ordering::SeqCst), 1);
}

// ---- the store: a disk that fills, a PostgreSQL that goes away ----

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped (tests run
/// as root, like CI; a test that cannot mount fails and says why).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = std::env::temp_dir().join(ponte_tests::cloud::unique("ponte-disk"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0xa5u8; 16 * 1024];
        loop {
            match f.write_all(&block).and_then(|_| f.flush()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // And the last few bytes.
        while f.write_all(&[0]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A write's outcome must be one of two: done (2xx) or refused with 503
/// STORE_UNAVAILABLE. Returns whether it was done.
fn acknowledged(what: &str, status: u16, body: &Value) -> bool {
    match status {
        200..=299 => true,
        503 => {
            assert_eq!(body["error"]["code"], "STORE_UNAVAILABLE", "{what}: {body}");
            false
        }
        _ => panic!("{what}: {status} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_disk_refuses_writes_with_503_and_loses_nothing_acknowledged() {
    let disk = SmallDisk::mount("3m");
    let db = disk.0.join("ponte.db");
    let url = format!("sqlite:{}?mode=rwc", db.display());
    let db_url = url.clone();
    let cloud = TestCloud::start_with(Backend::Sqlite, move |o| o.database = Some(db_url)).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let admin = cloud.user_token(7, &[2], false);
    let (s, _, _) = cloud.call("GET", "/ready", None, None).await;
    assert_eq!(s, 200);

    let mut sessions = Vec::new();
    let mut equipment = Vec::new();
    let mut proxied = 0;
    let mut refused = 0;
    // Each round: a session, an equipment PUT, a proxied call.
    let round = |i: i32| {
        let cloud = &cloud;
        let admin = admin.clone();
        async move {
            let (s1, _, b1) = cloud
                .call(
                    "POST",
                    "/api/instituicao/2/equipamento/100/remoto/sessoes",
                    Some(&admin),
                    None,
                )
                .await;
            let (s2, _, b2) = cloud
                .call(
                    "PUT",
                    &format!("/api/instituicao/2/equipamento/{}", 1000 + i),
                    Some(&admin),
                    Some(json!({"name": format!("Equipamento {i} {}", "x".repeat(2000))})),
                )
                .await;
            let (s3, _, b3) = cloud
                .call(
                    "POST",
                    "/api/instituicao/2/equipamento/100/proxy-http",
                    Some(&admin),
                    Some(json!({"method": "GET", "path": "/hello"})),
                )
                .await;
            ((s1, b1), (s2, b2), (s3, b3))
        }
    };
    let mut record = |i: i32, r: ((u16, Value), (u16, Value), (u16, Value)), refused: &mut u32| {
        let ((s1, b1), (s2, b2), (s3, b3)) = r;
        if acknowledged("session", s1, &b1) {
            sessions.push(b1["sessionId"].as_str().unwrap().to_owned());
        } else {
            *refused += 1;
        }
        if acknowledged("equipment", s2, &b2) {
            equipment.push(1000 + i);
        } else {
            *refused += 1;
        }
        if acknowledged("proxy-http", s3, &b3) {
            proxied += 1;
        }
    };
    for i in 0..5 {
        let r = round(i).await;
        record(i, r, &mut refused);
    }
    assert_eq!(refused, 0, "the disk has room yet");

    disk.fill();
    let mut ready_refused = false;
    for i in 5..60 {
        let started = Instant::now();
        let r = round(i).await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "round {i} took {:?}",
            started.elapsed()
        );
        record(i, r, &mut refused);
        if refused > 0 && !ready_refused {
            let (s, _, b) = cloud.call("GET", "/ready", None, None).await;
            if s == 503 {
                assert_eq!(b["error"]["code"], "NOT_READY", "{b}");
                ready_refused = true;
            }
        }
    }
    assert!(refused > 0, "a full disk took every write");
    assert!(ready_refused, "/ready said ready while writes were refused");
    // Reads keep working.
    let (s, _, b) = cloud
        .call(
            "GET",
            "/api/instituicao/2/equipamento/100",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");

    disk.free();
    ponte_tests::wait_for(
        Duration::from_secs(15),
        "/ready once space is back",
        || async { cloud.call("GET", "/ready", None, None).await.0 == 200 },
    )
    .await;
    for i in 60..65 {
        let r = round(i).await;
        let before = refused;
        record(i, r, &mut refused);
        assert_eq!(refused, before, "round {i} after the space came back");
    }

    // A clean stop writes what is queued; then everything acknowledged is there.
    assert!(cloud.cloud.drain(Duration::from_secs(5)).await);
    assert_eq!(cloud.cloud.flush(Duration::from_secs(10)).await, 0);
    cloud.shutdown.cancel();
    cloud.store().close().await;
    let reopened = SqlStore::connect(&url).await.unwrap();
    for sid in &sessions {
        assert!(
            reopened.session(sid).await.unwrap().is_some(),
            "session {sid} lost"
        );
    }
    for eid in &equipment {
        assert!(
            reopened.equipment(2, *eid).await.unwrap().is_some(),
            "equipment {eid} lost"
        );
    }
    let audited = reopened
        .list_audit(2, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.action == "proxy-http" && a.status == Some(200))
        .count();
    assert_eq!(
        audited, proxied,
        "every proxied call answered 200 has its audit row"
    );
    println!(
        "disk full: {} sessions, {} equipment, {proxied} proxied calls acknowledged; {refused} writes refused with 503",
        sessions.len(),
        equipment.len()
    );
}

/// A PostgreSQL cluster of this test's own (initdb in a temporary directory, its own
/// port), so stopping and killing it touches no other test.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    server: Option<std::process::Child>,
}

impl OwnPostgres {
    fn init() -> Self {
        ponte_tests::mark_uses("postgres");
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = std::env::temp_dir().join(ponte_tests::cloud::unique("ponte-pg"));
        std::fs::create_dir_all(&dir).unwrap();
        let (uid, gid) = postgres_user();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let out = Self::as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut pg = Self {
            dir,
            port,
            bin,
            server: None,
        };
        pg.start();
        pg
    }

    fn as_postgres(program: &Path) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = postgres_user();
        let mut c = std::process::Command::new(program);
        c.uid(uid).gid(gid);
        c
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (its own process group, so a kill takes its backends too) and
    /// waits until it accepts connections.
    fn start(&mut self) {
        use std::os::unix::process::CommandExt;
        let child = Self::as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "fsync=off"])
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::process::Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "own PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A clean stop (SIGINT: fast shutdown), or SIGKILL to the whole process group.
    fn stop(&mut self, kill: bool) {
        if let Some(mut child) = self.server.take() {
            let pgid = child.id() as i32;
            let sig = if kill { "-KILL" } else { "-INT" };
            let target = if kill {
                format!("-{pgid}")
            } else {
                pgid.to_string()
            };
            let _ = std::process::Command::new("kill")
                .args([sig, "--", &target])
                .status();
            let _ = child.wait();
            if kill {
                // Backends that outlived the postmaster by a moment, and its pid file.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .status();
                let _ = std::fs::remove_file(self.dir.join("data/postmaster.pid"));
            }
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres user (Debian's postgresql package)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_answers_503_within_2_s_and_service_comes_back_by_itself() {
    let mut pg = OwnPostgres::init();
    let url = pg.url();
    let cloud = TestCloud::start_with(Backend::Postgres, move |o| o.database = Some(url)).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let admin = cloud.user_token(7, &[2], false);
    for kill in [false, true] {
        pg.stop(kill);
        // Every kind of call answers 503 with a reason, quickly: reads (one that is not
        // served from the short read cache), writes, /ready.
        for (method, path) in [
            ("GET", "/api/instituicao/2/auditoria"),
            ("POST", "/api/instituicao/2/equipamento/100/remoto/sessoes"),
            ("GET", "/ready"),
        ] {
            let started = Instant::now();
            let (s, h, b) = cloud.call(method, path, Some(&admin), None).await;
            let took = started.elapsed();
            assert_eq!(s, 503, "kill={kill} {method} {path}: {b}");
            let code = if path == "/ready" {
                "NOT_READY"
            } else {
                "STORE_UNAVAILABLE"
            };
            assert_eq!(b["error"]["code"], code, "{b}");
            if path != "/ready" {
                assert!(h.contains_key("retry-after"));
            }
            // The pool's 2 s acquire bound, plus the test's own slack on two busy cores.
            assert!(
                took < Duration::from_secs(4),
                "kill={kill} {path} took {took:?}"
            );
            println!("kill={kill} {method} {path}: 503 after {took:?}");
        }
        pg.start();
        let back = Instant::now();
        ponte_tests::wait_for(Duration::from_secs(15), "the API to recover", || async {
            cloud
                .call(
                    "GET",
                    "/api/instituicao/2/equipamento/100",
                    Some(&admin),
                    None,
                )
                .await
                .0
                == 200
        })
        .await;
        println!(
            "kill={kill}: recovered {:?} after PostgreSQL was back",
            back.elapsed()
        );
        let (s, _, b) = cloud
            .call(
                "POST",
                "/api/instituicao/2/equipamento/100/remoto/sessoes",
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(s, 201, "{b}");
        assert_eq!(cloud.call("GET", "/ready", None, None).await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_connector_whose_token_nears_expiry_is_flagged() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.maintenance_every = Duration::from_millis(100);
    })
    .await;
    let paired = cloud.pair_connector(2).await;
    let con: i32 = paired.connector_id.parse().unwrap();
    drop(paired);
    // A token that expires in 2 days, held by a connector without `token-rotate`
    // (the original Node connector: no HELLO).
    let minted = cloud.cloud.api.issuer.mint(con, 1, 2);
    let soon = store::now() + chrono::TimeDelta::days(2);
    cloud
        .store()
        .set_token(con, &minted.jti, soon)
        .await
        .unwrap();
    let legacy = ponte_tests::legacy::LegacyPeer::connect(
        &format!("ws://{}/ws/connectors", cloud.cloud.relay_addr),
        &minted.token,
        true,
    )
    .await;
    let admin = cloud.user_token(1, &[2], false);
    ponte_tests::wait_for(
        Duration::from_secs(10),
        "the status to flag the token",
        || async {
            let (_, _, b) = cloud
                .call(
                    "GET",
                    "/api/instituicao/2/connector/status",
                    Some(&admin),
                    None,
                )
                .await;
            b["status"] == "ONLINE" && b["tokenExpiring"] == true
        },
    )
    .await;
    // The console says so on the card.
    let page = cloud.console_page(2, &admin).await;
    assert!(page.contains("connector-token-warning"), "{page}");
    drop(legacy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_call_to_a_dripping_device_ends_at_its_deadline_and_names_no_query() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    // A device nothing listens on, reached with a secret in the query.
    cloud
        .add_equipment(2, 101, "http://127.0.0.1:1", true)
        .await;
    let _paired = cloud.pair_connector(2).await;
    let admin = cloud.user_token(7, &[2], false);
    let started = Instant::now();
    let (s, _, b) = cloud
        .call(
            "POST",
            "/api/instituicao/2/equipamento/100/proxy-http",
            Some(&admin),
            Some(json!({"method": "GET", "path": "/drip", "timeoutMs": 1000})),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(s, 504, "{b}");
    // The head came at once; the body had `timeoutMs` more: 1 s, not the 100 s of dripping.
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (s, _, b) = cloud
        .call(
            "POST",
            "/api/instituicao/2/equipamento/101/proxy-http",
            Some(&admin),
            Some(json!({"method": "GET", "path": "/x?token=SECRET-42"})),
        )
        .await;
    assert_eq!(s, 502, "{b}");
    assert!(!b.to_string().contains("SECRET-42"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_not_valid_yet_and_other_tenants_equipment_ids_are_refused_quietly() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    cloud
        .add_equipment(3, 300, "http://127.0.0.1:9", true)
        .await;
    let admin = cloud.user_token(7, &[2], false);
    // PUT of an id institution 3 holds: 404 as for any id this tenant lacks, not 409.
    let (s, _, b) = cloud
        .call(
            "PUT",
            "/api/instituicao/2/equipamento/300",
            Some(&admin),
            Some(json!({"name": "Mine now"})),
        )
        .await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["code"], "EQUIPMENT_NOT_FOUND");
    // A user JWT whose nbf is an hour ahead is not valid yet.
    let now = ponte_tests::now_s();
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": 7, "tenants": [2], "exp": now + 7200, "nbf": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(ponte_tests::cloud::USER_SECRET),
    )
    .unwrap();
    let (s, _, b) = cloud
        .call(
            "GET",
            "/api/instituicao/2/connector/status",
            Some(&early),
            None,
        )
        .await;
    assert_eq!(s, 401, "{b}");
}
