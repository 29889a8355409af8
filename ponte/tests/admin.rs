//! `ponte admin` and `ponte serve` as an operator runs them: a fresh install set up
//! without SQL, on both backends, then served and queried.

use ponte_api::auth::{KeyFiles, UserAuth, UserKey};
use ponte_tests::cloud::{fresh_database, Backend};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn ponte(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ponte"))
        .args(args)
        .env("PONTE_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn fresh_install(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("ponte-admin-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = fresh_database(backend).await;
    let d = dir.to_str().unwrap();
    let admin = |rest: &[&str]| {
        let mut args = vec!["admin", "--data-dir", d, "--database", &db];
        args.extend_from_slice(rest);
        ponte(&args)
    };
    let (code, out, err) = admin(&[
        "tenant",
        "add",
        "--cliente",
        "1",
        "--instituicao",
        "2",
        "--name",
        "Colégio Exemplo",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("institution 2"), "{out}");
    let (code, _, err) = admin(&[
        "equipment",
        "add",
        "--instituicao",
        "2",
        "--id",
        "100",
        "--name",
        "Catraca Entrada",
        "--addon",
        "--base-url",
        "http://127.0.0.1:8080/",
        "--tls-insecure",
    ]);
    assert_eq!(code, 0, "{err}");
    // Mistakes: one line, exit 64, nothing written.
    for (args, says) in [
        (
            vec![
                "equipment",
                "add",
                "--instituicao",
                "9",
                "--id",
                "1",
                "--name",
                "x",
                "--base-url",
                "http://127.0.0.1",
            ],
            "institution 9 does not exist",
        ),
        (
            vec![
                "equipment",
                "add",
                "--instituicao",
                "2",
                "--id",
                "1",
                "--name",
                "x",
                "--base-url",
                "ftp://x",
            ],
            "--base-url",
        ),
        (vec!["tenant", "add", "--cliente", "1"], "required"),
        (vec!["tenant", "remove"], "unrecognized subcommand"),
    ] {
        let (code, _, err) = admin(&args);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, token, err) = ponte(&[
        "admin",
        "--data-dir",
        d,
        "user-token",
        "--user",
        "7",
        "--instituicao",
        "2",
        "--ttl",
        "1h",
    ]);
    assert_eq!(code, 0, "{err}");
    let secret = KeyFiles::load_or_create(&dir).unwrap().user_secret;
    let user = UserAuth::new(UserKey::Hs256(secret))
        .unwrap()
        .verify(token.trim())
        .unwrap();
    assert_eq!(
        (user.id, user.tenants.clone(), user.admin),
        (7, vec![2], false)
    );

    // Serve the install and read the equipment back through the API.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ponte"))
        .args([
            "serve",
            "--data-dir",
            d,
            "--database",
            &db,
            "--api-listen",
            "127.0.0.1:0",
            "--relay-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .env("PONTE_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (api, gateway) = loop {
        let line = lines
            .next()
            .expect("ponte serve printed its addresses")
            .unwrap();
        if let Some(rest) = line.strip_prefix("ponte: api on ") {
            let gateway = rest.split("gateway on ").nth(1).expect(&line).to_owned();
            break (rest.split(',').next().unwrap().to_owned(), gateway);
        }
    };
    let health = reqwest::get(format!("{gateway}/health")).await.unwrap();
    assert_eq!(health.status(), 200, "the gateway role runs by default");
    let resp = reqwest::Client::new()
        .get(format!("{api}/api/instituicao/2/equipamento/100"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["name"], "Catraca Entrada");
    assert_eq!(body["usaAddon"], true);
    assert_eq!(body["config"]["localBaseUrl"], "http://127.0.0.1:8080");
    assert_eq!(body["config"]["tlsInsecure"], true);
    let ready: serde_json::Value = reqwest::get(format!("{api}/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["store"],
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "ponte serve exits 0 on SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fresh_install_set_up_without_sql() {
    fresh_install(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fresh_install_set_up_without_sql() {
    fresh_install(Backend::Postgres).await;
}
