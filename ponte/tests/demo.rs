//! `ponte demo` and `ponte serve` as processes, the way a newcomer and an operator meet
//! them: the demo's printed console link works and leads into a device UI; `/metrics`,
//! `/health`, `/ready` answer; SIGTERM lets a download in flight finish, Ctrl-C stops
//! everything and removes the demo's temporary data; settings follow flags > env >
//! file > defaults, and every mistake is one line with exit code 64.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PONTE: &str = env!("CARGO_BIN_EXE_ponte");

/// A running `ponte demo` and what it printed.
struct Demo {
    child: Child,
    api: String,
    token: String,
    console_url: String,
    /// The POS quote's approval link (a published route).
    public_url: String,
    data_dir: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

fn spawn_demo() -> Demo {
    spawn_demo_with(&[])
}

/// `ponte demo` on ports the OS picks, with `extra` arguments.
fn spawn_demo_with(extra: &[&str]) -> Demo {
    let mut child = Command::new(PONTE)
        .args([
            "demo",
            "--api-listen",
            "127.0.0.1:0",
            "--relay-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("PONTE_LOG", "info")
        .env_remove("PONTE_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Logs go on being read (a full pipe would block the process), kept for asserts.
    let (tx, stderr) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut console_url, mut api, mut data_dir, mut token) = (None, None, None, None);
    let mut public_url = None;
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("ponte demo ended before it was ready:\n{printed}");
        }
        printed.push_str(&line);
        let word = |i: usize| line.split_whitespace().nth(i).map(str::to_owned);
        match line.split_whitespace().next() {
            Some("Console") => console_url = word(1),
            Some("Public") => public_url = word(1),
            Some("API") => api = word(1).map(|u| u.trim_end_matches("/api").to_owned()),
            Some("Data") => data_dir = word(1),
            Some("Admin") => token = line.split(": ").nth(1).map(|t| t.trim().to_owned()),
            _ => {}
        }
        if line.starts_with("Open the console") {
            break;
        }
    }
    Demo {
        child,
        api: api.expect("API line"),
        console_url: console_url.expect("Console line"),
        public_url: public_url.expect("Public line"),
        data_dir: data_dir.expect("Data line"),
        token: token.expect("Admin token line"),
        stderr,
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits (polling, bounded) for the process to exit; its status.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of the response's first Set-Cookie.
fn set_cookie(resp: &reqwest::Response) -> String {
    let v = resp.headers()["set-cookie"].to_str().unwrap();
    v.split(';').next().unwrap().to_owned()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_console_leads_into_the_device_and_sigterm_lets_a_download_finish() {
    let mut demo = spawn_demo();
    let http = no_redirects();
    let api = demo.api.clone();

    // The printed link signs the browser in to the console as the demo admin: its GET
    // only shows a page (a chat app's link preview spends nothing), its POST signs in
    // and hands the page the login key every form must carry.
    let preview = http.get(&demo.console_url).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    let resp = http
        .post(&demo.console_url)
        .header("origin", &api)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let console = set_cookie(&resp);
    assert!(console.starts_with("ponte_console="), "{console}");
    let page = resp.text().await.unwrap();
    let key = page
        .split("data-key=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no login key: {page}"))
        .to_owned();
    let get = |path: &str| {
        http.get(format!("{api}{path}"))
            .header("cookie", &console)
            .send()
    };
    let page = get("/instituicao/2").await.unwrap().text().await.unwrap();

    // The printed public link opens the POS quote for anyone (`*.localhost` is loopback:
    // the client is told so, as browsers know it), and nothing else of the POS.
    let url = reqwest::Url::parse(&demo.public_url).unwrap();
    assert!(url.path().starts_with("/approve/"), "{url}");
    let host = url.host_str().unwrap().to_owned();
    assert!(host.ends_with(".pub.localhost"), "{host}");
    let public = reqwest::Client::builder()
        .resolve(&host, ([127, 0, 0, 1], url.port().unwrap()).into())
        .build()
        .unwrap();
    let quote = public.get(url.clone()).send().await.unwrap();
    assert_eq!(quote.status(), 200);
    assert!(quote.text().await.unwrap().contains("aprovar"));
    let admin = public
        .get(url.join("/admin").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 404);
    assert!(page.contains(r#"id="connector-status">ONLINE<"#), "{page}");
    for name in ["Catraca Entrada", "Catraca Saída", "Catraca Bloco B"] {
        assert!(page.contains(name), "{name} missing");
    }
    // A cookie planted ahead of the real one (a longer path, from a sibling host) does
    // not lock the admin out: every candidate is tried.
    let tossed = http
        .get(format!("{api}/instituicao/2"))
        .header("cookie", format!("ponte_console=planted; {console}"))
        .send()
        .await
        .unwrap();
    assert_eq!(tossed.status(), 200);
    // Signing in with a pasted token; behind https the cookie is __Host- and Secure.
    let signed = http
        .post(format!("{api}/entrar"))
        .header("origin", &api)
        .header("x-forwarded-proto", "https")
        .form(&[("token", demo.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let set = signed.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("__Host-ponte_console=") && set.contains("; Secure"),
        "{set}"
    );
    let bad = http
        .post(format!("{api}/entrar"))
        .header("origin", &api)
        .form(&[("token", "not-a-jwt")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let with_addon = get("/instituicao/2/equipamento/100").await.unwrap();
    assert!(with_addon
        .text()
        .await
        .unwrap()
        .contains("Gerenciar Remotamente"));
    let without = get("/instituicao/2/equipamento/102").await.unwrap();
    assert!(!without
        .text()
        .await
        .unwrap()
        .contains("Gerenciar Remotamente"));

    // "Gerenciar Remotamente": refused from another origin (a device page on the
    // gateway shares the site), else a 303 to the launch link.
    let remote = format!("{api}/instituicao/2/equipamento/100/remoto");
    let foreign = http
        .post(&remote)
        .header("cookie", &console)
        .header("origin", "http://127.0.0.1:1")
        .form(&[("_login", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let resp = http
        .post(&remote)
        .header("cookie", &console)
        .header("origin", &api)
        .form(&[("_login", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let launch = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(launch.contains("/remote/launch/"), "{launch}");
    // The launch link too: a page on GET, spent by the POST it makes.
    assert_eq!(http.get(&launch).send().await.unwrap().status(), 200);
    let origin = launch.split("/remote/").next().unwrap().to_owned();
    let resp = http
        .post(&launch)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let grant = set_cookie(&resp);
    let session = resp.headers()["location"].to_str().unwrap().to_owned();
    let device = |path: &str| {
        http.get(format!("{origin}{session}{path}"))
            .header("cookie", &grant)
            .send()
    };
    let login = device("").await.unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains(r#"id="entrar""#));

    // Operations endpoints.
    for path in ["/health", "/ready"] {
        assert_eq!(get(path).await.unwrap().status(), 200, "{path}");
    }
    let refused = reqwest::get(format!("{api}/api/instituicao/2/connector/status"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "ponte_connectors_online"), 1.0);
    assert!(metric(&text, "ponte_tunnel_bytes_total{direction=\"from_device\"}") > 1000.0);
    assert!(
        metric(
            &text,
            "ponte_errors_total{role=\"api\",code=\"UNAUTHORIZED\",source=\"downstream\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "ponte_request_duration_seconds_count{role=\"gateway\",status=\"2xx\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&text, "ponte_heartbeats_missed_total"), 0.0);

    // A 64 MB download is under way when SIGTERM arrives: it finishes, new
    // connections are refused, then the process exits 0.
    const SIZE: usize = 64 << 20;
    let mut download = device(&format!("download?bytes={SIZE}")).await.unwrap();
    assert_eq!(download.status(), 200);
    let mut got = download.chunk().await.unwrap().unwrap().len();
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metric(&text, "ponte_streams_in_flight") >= 1.0);
    signal(&demo.child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{api}/health")).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(chunk) = download.chunk().await.unwrap() {
        got += chunk.len();
    }
    assert_eq!(got, SIZE, "the download in flight was cut");
    let status = wait_exit(&mut demo.child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let logs: Vec<String> = demo.stderr.iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("requests in flight finished")),
        "{logs:#?}"
    );
    assert!(
        !std::path::Path::new(&demo.data_dir).exists(),
        "the demo's temporary data stays behind"
    );
}

/// A download through the demo's gateway (a remote session on turnstile 100, opened
/// through the API and launched as a browser does), left unread after its first chunk:
/// it stays in flight for as long as the test likes.
async fn held_download(demo: &Demo) -> reqwest::Response {
    let http = no_redirects();
    let resp = http
        .post(format!(
            "{}/api/instituicao/2/equipamento/100/remoto/sessoes",
            demo.api
        ))
        .bearer_auth(&demo.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: serde_json::Value = resp.json().await.unwrap();
    let launch = created["url"].as_str().unwrap().to_owned();
    let origin = launch.split("/remote/").next().unwrap().to_owned();
    let resp = http
        .post(&launch)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let grant = set_cookie(&resp);
    let session = resp.headers()["location"].to_str().unwrap().to_owned();
    let mut download = http
        .get(format!("{origin}{session}download?bytes={}", 1u64 << 30))
        .header("cookie", &grant)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert!(!download.chunk().await.unwrap().unwrap().is_empty());
    download
}

/// The drain has bounds: a request that outlives `--shutdown-grace` is cut when the
/// grace ends (the process then exits 0 within the grace plus the 10 s it gives the
/// audit queue), and a second signal during the drain stops the wait at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_shutdown_grace_is_cut_and_a_second_signal_stops_at_once() {
    let grace = Duration::from_secs(1);
    let mut demo = spawn_demo_with(&["--shutdown-grace", "1s"]);
    let mut download = held_download(&demo).await;
    let t0 = Instant::now();
    signal(&demo.child, "-TERM");
    let status = wait_exit(&mut demo.child, grace + Duration::from_secs(15));
    let took = t0.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= grace,
        "exited {took:?} after SIGTERM, before the grace ended"
    );
    let mut got = 0u64;
    while let Ok(Some(chunk)) = download.chunk().await {
        got += chunk.len() as u64;
    }
    assert!(got < 1 << 30, "the download outlived the process");
    let logs: Vec<String> = demo.stderr.iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("requests still in flight are cut")),
        "{logs:#?}"
    );

    // A grace far longer than the test: the second signal ends it.
    let mut demo = spawn_demo_with(&["--shutdown-grace", "10m"]);
    let _download = held_download(&demo).await;
    signal(&demo.child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{}/health", demo.api)).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t1 = Instant::now();
    signal(&demo.child, "-INT");
    // What is left after the second signal: the audit flush (at most 10 s) and the close.
    let status = wait_exit(&mut demo.child, Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let logs: Vec<String> = demo.stderr.iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("requests still in flight are cut")),
        "{logs:#?}"
    );
    eprintln!("second signal to exit: {:?}", t1.elapsed());
}

#[test]
fn demo_stops_cleanly_on_ctrl_c() {
    let mut demo = spawn_demo();
    assert!(std::path::Path::new(&demo.data_dir).exists());
    signal(&demo.child, "-INT");
    let status = wait_exit(&mut demo.child, Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&demo.data_dir).exists());
    let logs: Vec<String> = demo.stderr.iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("ponte demo: stopped")),
        "{logs:#?}"
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("ERROR") || l.contains("panicked")),
        "{logs:#?}"
    );
}

fn ponte(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(PONTE);
    cmd.args(args).env("PONTE_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PONTE_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_settings_take_flags_over_env_over_file_over_defaults() {
    let dir = std::env::temp_dir().join(format!("ponte-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ponte.toml");
    std::fs::write(
        &file,
        "api_listen = \"127.0.0.1:7100\"\nrelay_listen = \"127.0.0.1:7101\"\n\
         gateway_listen = \"127.0.0.1:7102\"\nshutdown_grace = \"5s\"\n\
         database = \"postgres://ponte:hunter2@db/ponte\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = ponte(
        &[
            "serve",
            "--config",
            f,
            "--check",
            "--api-listen",
            "127.0.0.1:7300",
        ],
        &[
            ("PONTE_API_LISTEN", "127.0.0.1:7200"),
            ("PONTE_RELAY_LISTEN", "127.0.0.1:7201"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "api_listen = \"127.0.0.1:7300\"",     // flag over env and file
        "relay_listen = \"127.0.0.1:7201\"",   // env over file
        "gateway_listen = \"127.0.0.1:7102\"", // file over default
        "data_dir = \"./ponte-data\"",         // default
        "shutdown_grace = \"5s\"",
        "roles = [\"api\", \"relay\", \"gateway\"]",
        "database = \"postgres://ponte:***@db/ponte\"", // never printed
    ] {
        assert!(out.contains(want), "{want} not in:\n{out}");
    }
    assert!(!out.contains("hunter2"));

    // Mistakes: one line naming the problem, exit 64.
    std::fs::write(dir.join("bad-value.toml"), "api_listen = \"nope\"\n").unwrap();
    std::fs::write(dir.join("bad-key.toml"), "api_lisen = \"127.0.0.1:1\"\n").unwrap();
    let bad_value = dir.join("bad-value.toml");
    let bad_key = dir.join("bad-key.toml");
    for (args, env, says) in [
        (vec!["serve", "--bogus"], vec![], "--bogus"),
        (
            vec!["serve", "--config", bad_value.to_str().unwrap()],
            vec![],
            "api_listen",
        ),
        (
            vec!["serve", "--config", bad_key.to_str().unwrap()],
            vec![],
            "api_lisen",
        ),
        (
            vec!["serve", "--config", "/nonexistent/ponte.toml"],
            vec![],
            "cannot read config",
        ),
        (
            vec!["serve", "--check"],
            vec![("PONTE_SHUTDOWN_GRACE", "forever")],
            "shutdown_grace",
        ),
        (
            vec!["serve", "--roles", "api,gateway"],
            vec![],
            "must include api and relay",
        ),
        (vec!["serve", "--remote-host-mode=maybe"], vec![], "maybe"),
        (vec!["demo", "--shutdown-grace", "x"], vec![], "x"),
    ] {
        let (code, out, err) = ponte(&args, &env);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.starts_with("ponte: "), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn demo_mistakes_leave_nothing_behind() {
    // A port in use: one line, exit 64, no temporary directory left.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let child = Command::new(PONTE)
        .args(["demo", "--api-listen", &addr])
        // Never a default port, whatever the order the listeners are bound in.
        .args([
            "--relay-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .env("PONTE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("cannot listen on") && err.contains("--api-listen"),
        "{err}"
    );
    let prefix = format!("ponte-demo-{pid}-");
    let left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with(&prefix));
    assert!(!left, "a temporary directory was left behind");

    // A directory that is not the demo's (a real installation's data) is refused untouched.
    let dir = std::env::temp_dir().join(format!("ponte-not-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ponte.db"), "real data").unwrap();
    let (code, _, err) = ponte(
        &[
            "demo",
            "--data-dir",
            dir.to_str().unwrap(),
            "--api-listen",
            "127.0.0.1:0",
            "--relay-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("not a demo data directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("ponte.db")).unwrap(),
        "real data"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn admin_uses_the_serve_settings_file() {
    let dir = std::env::temp_dir().join(format!("ponte-admin-cfg-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ponte.toml");
    std::fs::write(&file, format!("data_dir = {:?}\n", data.to_str().unwrap())).unwrap();
    let (code, _, err) = ponte(
        &[
            "admin",
            "--config",
            file.to_str().unwrap(),
            "tenant",
            "add",
            "--cliente",
            "1",
            "--instituicao",
            "2",
            "--name",
            "Colégio",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        data.join("ponte.db").exists(),
        "admin did not use the file's data_dir"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_lists_every_command_and_setting() {
    let (code, out, _) = ponte(&["--help"], &[]);
    assert_eq!(code, 0);
    for cmd in ["serve", "demo", "admin"] {
        assert!(out.contains(cmd), "{cmd}: {out}");
    }
    let (_, out, _) = ponte(&["serve", "--help"], &[]);
    for flag in [
        "--config",
        "--data-dir",
        "--database",
        "--nats",
        "--roles",
        "--api-listen",
        "--relay-listen",
        "--gateway-listen",
        "--relay-public-url",
        "--gateway-public-url",
        "--remote-host-mode",
        "--public-domain",
        "--user-jwt-secret-file",
        "--user-jwt-public-key",
        "--connector-token-ttl",
        "--trust-forwarded-for",
        "--shutdown-grace",
        "--session-idle-ttl",
        "--session-max-ttl",
        "--session-rate-per-second",
        "--session-rate-burst",
        "--connector-rate-per-second",
        "--connector-rate-burst",
        "--header-read-timeout",
        "--keepalive-idle-timeout",
        "--max-connections",
        "--max-connections-per-address",
        "PONTE_SESSION_RATE_PER_SECOND",
        "--check",
        "PONTE_API_LISTEN",
        "[default: 127.0.0.1:8000]",
    ] {
        assert!(
            out.contains(flag),
            "{flag} missing from serve --help:\n{out}"
        );
    }
    let (_, out, _) = ponte(&["demo", "--help"], &[]);
    for flag in [
        "--data-dir",
        "--api-listen",
        "--remote-host-mode",
        "--shutdown-grace",
    ] {
        assert!(
            out.contains(flag),
            "{flag} missing from demo --help:\n{out}"
        );
    }
}
