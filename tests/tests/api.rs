//! The tenant-scoped API end to end: a real cloud (`ponte::start`) on a fresh database,
//! a connector paired through the real flow, a device (origin) on 127.0.0.1.

use ponte_api::store::{ConnectorStatus, SessionStatus};
use ponte_tests::cloud::{Backend, TestCloud};
use ponte_tests::origin::Origin;
use ponte_tests::{wait_for, wait_until};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

async fn db_status(cloud: &TestCloud, tid: i32) -> Option<ConnectorStatus> {
    cloud
        .store()
        .connector_of(tid)
        .await
        .unwrap()
        .map(|c| c.status)
}

async fn pairing_then_online_then_offline(backend: Backend) {
    let cloud = TestCloud::start(backend).await;
    let admin = cloud.user_token(1, &[2], false);
    let paired = cloud.pair_connector(2).await;
    // HELLO's version and metadata land in the store; status follows the socket.
    wait_for(T, "ONLINE in the store", || async {
        db_status(&cloud, 2).await == Some(ConnectorStatus::ONLINE)
    })
    .await;
    let (s, _, st) = cloud
        .call(
            "GET",
            "/api/instituicao/2/connector/status",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["status"], "ONLINE");
    assert_eq!(st["paired"], true);
    assert_eq!(st["name"], "Servidor Portaria");
    wait_for(T, "HELLO metadata", || async {
        let c = cloud.store().connector_of(2).await.unwrap().unwrap();
        c.version.as_deref() == Some(env!("CARGO_PKG_VERSION")) && c.metadata.is_some()
    })
    .await;
    assert!(
        st["lastHeartbeat"].is_string() && st["connectedSince"].is_string(),
        "{st}"
    );

    // The code was spent; wrong and expired codes are refused with their reason.
    let claim = |code: String| {
        let body = json!({"pairingCode": code, "name": "x"});
        cloud.call("POST", "/api/connector/claim", None, Some(body))
    };
    let (s, _, e) = claim(paired.code.clone()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("PAIRING_CODE_USED")),
        "{e}"
    );
    let (s, _, e) = claim("AAAA-BBBB".into()).await;
    assert_eq!(s, 400, "{e}");
    let expired = ponte_api::auth::pairing_code();
    let past = ponte_api::store::now() - chrono::TimeDelta::seconds(1);
    cloud
        .store()
        .start_pairing(3, &ponte_api::auth::digest(&expired), past, None)
        .await
        .unwrap();
    let (s, _, e) = claim(expired.to_lowercase()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (410, Some("PAIRING_CODE_EXPIRED")),
        "{e}"
    );

    drop(paired);
    wait_for(T, "OFFLINE in the store", || async {
        db_status(&cloud, 2).await == Some(ConnectorStatus::OFFLINE)
    })
    .await;
    let (_, _, st) = cloud
        .call(
            "GET",
            "/api/instituicao/2/connector/status",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st["status"], "OFFLINE");
}

async fn proxy_http_end_to_end(backend: Backend) {
    let cloud = TestCloud::start_with(backend, |o| o.api.proxy_max_response = 64 * 1024).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cloud
        .add_equipment(2, 101, &format!("http://{closed}"), true)
        .await;
    cloud.add_equipment(2, 102, &origin.base_url(), false).await;
    let _paired = cloud.pair_connector(2).await;
    let user = cloud.user_token(7, &[2], false);
    let call = |eid: i32, body: Value| {
        let cloud = &cloud;
        let user = user.clone();
        async move {
            cloud
                .call(
                    "POST",
                    &format!("/api/instituicao/2/equipamento/{eid}/proxy-http"),
                    Some(&user),
                    Some(body),
                )
                .await
        }
    };

    let (s, _, r) = call(100, json!({"method": "GET", "path": "/hello"})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["statusCode"].as_u64(),
            r["body"].as_str(),
            r["bodyEncoding"].as_str()
        ),
        (Some(200), Some("hello"), Some("utf8"))
    );

    let (_, _, r) = call(100, json!({"method": "GET", "path": "/cookies"})).await;
    assert_eq!(
        r["headers"]["set-cookie"],
        json!(["a=1; Path=/", "b=2; HttpOnly"]),
        "{r}"
    );

    let (_, _, r) = call(100, json!({"method": "GET", "path": "/bytes/1000?seed=3"})).await;
    assert_eq!(r["bodyEncoding"], "base64", "{r}");
    let raw = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        r["body"].as_str().unwrap(),
    )
    .unwrap();
    let expected: Vec<u8> = ponte_tests::pattern_chunks(1000, 3)
        .flat_map(|c| c.to_vec())
        .collect();
    assert_eq!(raw, expected);

    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        [0u8, 159, 146, 150, 255],
    );
    let (_, _, r) = call(100, json!({"method": "post", "path": "/echo", "headers": {"x-a": ["1", "2"]}, "body": payload, "bodyEncoding": "base64"})).await;
    let echoed: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["body_len"], 5, "{echoed}");
    let (_, _, r) = call(
        100,
        json!({"method": "PUT", "path": "/echo", "body": "olá", "bodyEncoding": "utf8"}),
    )
    .await;
    let echoed: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["body"], "olá");

    // The device's own status passes through; tunnel failures map to 502/504/413.
    let (s, _, r) = call(100, json!({"method": "GET", "path": "/status/404"})).await;
    assert_eq!((s, r["statusCode"].as_u64()), (200, Some(404)));
    let (s, _, r) = call(100, json!({"method": "GET", "path": "/bytes/100000"})).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (413, Some("RESPONSE_TOO_LARGE")),
        "{r}"
    );
    let (s, _, r) = call(101, json!({"method": "GET", "path": "/"})).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (502, Some("CONNECT_FAILED")),
        "{r}"
    );
    let (s, _, r) = call(
        100,
        json!({"method": "GET", "path": "/silent", "timeoutMs": 300}),
    )
    .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (504, Some("TIMEOUT")),
        "{r}"
    );
    let (s, _, r) = call(102, json!({"method": "GET", "path": "/hello"})).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (409, Some("ADDON_DISABLED")),
        "{r}"
    );
    for bad in [
        json!({"method": "GET", "path": "hello"}),
        json!({"method": "G ET", "path": "/"}),
        json!({"method": "GET", "path": "/", "body": "%%", "bodyEncoding": "base64"}),
        json!({"method": "GET"}),
        json!({"method": "GET", "path": "/", "timeoutMs": 0}),
    ] {
        let (s, _, r) = call(100, bad.clone()).await;
        assert_eq!(s, 400, "{bad} → {r}");
        assert!(r["error"]["message"].is_string());
    }
    let big = "x".repeat(6 * 1024 * 1024);
    let (s, _, r) = call(100, json!({"method": "POST", "path": "/echo", "body": big})).await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (413, Some("BODY_TOO_LARGE")),
        "{r}"
    );

    // Every call is audited: who, where, what, outcome, size, time; never the query.
    assert!(cloud.cloud.api.audit.settled(Duration::from_secs(5)).await);
    let log = cloud.store().list_audit(2, 100).await.unwrap();
    let proxied: Vec<_> = log.iter().filter(|a| a.action == "proxy-http").collect();
    // 16 calls; the two whose request never parsed (no `path`, a 6 MiB body) name no
    // device call to audit.
    assert_eq!(proxied.len(), 14, "{proxied:#?}");
    let first = proxied.last().unwrap();
    assert_eq!(
        (
            first.user_id,
            first.equipment_id,
            first.method.as_deref(),
            first.path.as_deref(),
            first.status
        ),
        (Some(7), Some(100), Some("GET"), Some("/hello"), Some(200))
    );
    assert!(first.bytes >= 5 && first.duration_ms.is_some());
    assert!(proxied
        .iter()
        .any(|a| a.path.as_deref() == Some("/bytes/1000") && a.bytes >= 1000));
    assert!(proxied.iter().any(|a| a.status == Some(504)));
    assert!(!proxied
        .iter()
        .any(|a| a.path.as_deref().unwrap_or("").contains('?')));
}

/// Secrets at rest: after pairing, a launched remote session (and one not launched), a
/// token renewal and a fresh pairing code, no pairing code, launch code, token or grant
/// appears anywhere in the database: every row of every table as text (on SQLite also
/// the raw file and its WAL). What is kept instead (the codes' SHA-256, the tokens'
/// `jti`) does appear, so the dump reaches the rows that hold them.
async fn no_code_or_token_is_stored_in_plaintext(backend: Backend) {
    use base64::Engine as _;
    use ponte_api::auth::digest;
    let cloud = TestCloud::start(backend).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let admin = cloud.user_token(1, &[2], false);
    let paired = cloud.pair_connector(2).await;
    let first_token = paired.token_in_file();
    let (_, launch_url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&launch_url).await;
    let (_, pending_launch) = cloud.remote_session(7, 2, 100).await;
    let (s, _, renewed) = cloud
        .call(
            "POST",
            "/api/instituicao/2/connector/token",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{renewed}");
    let second_token = renewed["token"].as_str().unwrap().to_owned();
    let (s, _, pending) = cloud
        .call(
            "POST",
            "/api/instituicao/2/connector/pair",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 201, "{pending}");
    let pending_code = pending["pairingCode"].as_str().unwrap().to_owned();
    // Audit rows and usage counters are written in the background: write them now.
    assert_eq!(cloud.cloud.flush(T).await, 0);

    let dump = ponte_tests::cloud::dump_database(&cloud.database_url).await;
    let last = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let mut secrets: Vec<(&str, String)> = Vec::new();
    for (what, code) in [
        ("claimed pairing code", paired.code.clone()),
        ("pending pairing code", pending_code.clone()),
    ] {
        secrets.push((what, code.clone()));
        secrets.push((what, code.replace('-', "")));
    }
    for (what, token) in [
        ("first connector token", first_token.as_str()),
        ("renewed connector token", second_token.as_str()),
        ("user token", admin.as_str()),
    ] {
        secrets.push((what, token.to_owned()));
        // The signature alone would do as well to anyone holding the payload.
        secrets.push((what, token.rsplit('.').next().unwrap().to_owned()));
    }
    secrets.push(("spent launch code", last(&launch_url)));
    secrets.push(("pending launch code", last(&pending_launch)));
    secrets.push(("grant cookie", grant.split_once('=').unwrap().1.to_owned()));
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what}: {secret:?}");
        assert!(
            !dump.contains(secret.as_str()),
            "the {what} is stored in plaintext ({backend:?})"
        );
    }
    let jti = |token: &str| {
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    for (what, kept) in [
        ("the pending code's digest", digest(&pending_code)),
        (
            "the pending launch code's digest",
            digest(&last(&pending_launch)),
        ),
        ("the renewed token's jti", jti(&second_token)),
    ] {
        assert!(
            dump.contains(&kept),
            "{what} is not in the dump ({backend:?})"
        );
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

on_both!(
    pairing_then_online_then_offline,
    proxy_http_end_to_end,
    no_code_or_token_is_stored_in_plaintext
);

/// Every tenant route, for the cross-tenant and authentication tables.
const TENANT_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/instituicao/{t}/equipamento/100/proxy-http"),
    (
        "POST",
        "/api/instituicao/{t}/equipamento/100/remoto/sessoes",
    ),
    (
        "DELETE",
        "/api/instituicao/{t}/equipamento/100/remoto/sessoes/abc",
    ),
    ("GET", "/api/instituicao/{t}/remoto/sessoes"),
    ("POST", "/api/instituicao/{t}/connector/pair"),
    ("POST", "/api/instituicao/{t}/connector/token"),
    ("GET", "/api/instituicao/{t}/connector/status"),
    ("DELETE", "/api/instituicao/{t}/connector"),
    ("PUT", "/api/instituicao/{t}/equipamento/100"),
    ("GET", "/api/instituicao/{t}/equipamento/100"),
    ("GET", "/api/instituicao/{t}/auditoria"),
    (
        "POST",
        "/api/instituicao/{t}/equipamento/100/rotas-publicas",
    ),
    ("GET", "/api/instituicao/{t}/equipamento/100/rotas-publicas"),
    (
        "DELETE",
        "/api/instituicao/{t}/equipamento/100/rotas-publicas/7",
    ),
];

fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path.ends_with("proxy-http"), path.ends_with("/100")) {
        (_, true, _) => Some(json!({"method": "GET", "path": "/"})),
        ("POST", _, _) if path.ends_with("/rotas-publicas") => {
            Some(json!({"paths": ["/x"], "methods": ["GET"]}))
        }
        ("PUT", _, true) => Some(json!({"name": "Catraca", "usaAddon": true})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_can_touch_another_tenants_routes() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(3, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(3).await;
    let user_of_2 = cloud.user_token(7, &[2], false);
    let forged = {
        let other = ponte_api::auth::UserAuth::new(ponte_api::auth::UserKey::Hs256(
            b"not-the-key".to_vec(),
        ))
        .unwrap();
        other
            .mint(&ponte_api::auth::UserClaims {
                sub: json!(7),
                tenants: vec![3],
                admin: true,
                exp: ponte_tests::now_s() + 600,
                name: None,
                email: None,
            })
            .unwrap()
    };
    let expired = {
        let auth = ponte_api::auth::UserAuth::new(ponte_api::auth::UserKey::Hs256(
            ponte_tests::cloud::USER_SECRET.to_vec(),
        ))
        .unwrap();
        auth.mint(&ponte_api::auth::UserClaims {
            sub: json!(7),
            tenants: vec![3],
            admin: false,
            exp: ponte_tests::now_s() - 3600,
            name: None,
            email: None,
        })
        .unwrap()
    };
    for (method, template) in TENANT_ROUTES {
        let path = template.replace("{t}", "3");
        let body = body_for(method, &path);
        let (s, _, e) = cloud
            .call(method, &path, Some(&user_of_2), body.clone())
            .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "{method} {path}: {e}"
        );
        for (what, token) in [
            ("no token", None),
            ("forged", Some(forged.as_str())),
            ("expired", Some(expired.as_str())),
            ("garbage", Some("abc.def.ghi")),
        ] {
            let (s, _, e) = cloud.call(method, &path, token, body.clone()).await;
            assert_eq!(s, 401, "{what}: {method} {path}: {e}");
            assert!(e["error"]["message"].is_string());
        }
    }
    // Nothing happened to institution 3: still paired and online, no session, no audit
    // row by user 7.
    assert_eq!(db_status(&cloud, 3).await, Some(ConnectorStatus::ONLINE));
    assert!(cloud.store().list_sessions(3, 10).await.unwrap().is_empty());
    assert!(cloud.cloud.api.audit.settled(Duration::from_secs(5)).await);
    assert!(cloud
        .store()
        .list_audit(3, 100)
        .await
        .unwrap()
        .iter()
        .all(|a| a.user_id != Some(7)));
    // The same user with the grant gets through (the table is not 403 for everyone).
    let user_of_3 = cloud.user_token(7, &[3], false);
    let (s, _, _) = cloud
        .call(
            "GET",
            "/api/instituicao/3/connector/status",
            Some(&user_of_3),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let admin = cloud.user_token(9, &[], true);
    let (s, _, _) = cloud
        .call(
            "GET",
            "/api/instituicao/3/equipamento/100",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_and_unpair_close_the_old_socket_within_a_second() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let admin = cloud.user_token(1, &[2], false);
    let paired = cloud.pair_connector(2).await;
    let old_token = paired.token_in_file();
    let relay = cloud.cloud.relay.clone();
    let id = paired.connector_id.clone();

    let t0 = Instant::now();
    let (s, _, r) = cloud
        .call(
            "POST",
            "/api/instituicao/2/connector/token",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let new_token = r["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, old_token);
    {
        let relay = relay.clone();
        let id = id.clone();
        wait_until(Duration::from_secs(1), move || {
            !ponte_core::Router::is_online(&relay, &id)
        })
        .await;
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The running connector still holds the old token: the relay refuses it from now on.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/ws/connectors", cloud.cloud.relay_addr))
        .bearer_auth(&old_token)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    drop(paired);

    // `pair --token` with the new token: back online.
    let path = cloud.data_dir.join("by-token.toml");
    ponte_connector::pair::with_token(r["relayUrl"].as_str().unwrap(), &new_token, &path).unwrap();
    let mut file = ponte_connector::config::FileConfig::load(&path, true).unwrap();
    file.health_listen = Some("127.0.0.1:0".into());
    let _c = ponte_tests::spawn_connector(
        ponte_connector::config::Config::from_file_config(file, Some(path)).unwrap(),
    )
    .await;
    {
        let relay = relay.clone();
        let id = id.clone();
        wait_until(T, move || ponte_core::Router::is_online(&relay, &id)).await;
    }

    let t0 = Instant::now();
    let (s, _, _) = cloud
        .call("DELETE", "/api/instituicao/2/connector", Some(&admin), None)
        .await;
    assert_eq!(s, 204);
    {
        let relay = relay.clone();
        let id = id.clone();
        wait_until(Duration::from_secs(1), move || {
            !ponte_core::Router::is_online(&relay, &id)
        })
        .await;
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    let (_, _, st) = cloud
        .call(
            "GET",
            "/api/instituicao/2/connector/status",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (st["paired"].as_bool(), st["status"].as_str()),
        (Some(false), Some("OFFLINE")),
        "{st}"
    );
    // Audit rows are written in the background: wait for what was queued.
    assert!(cloud.cloud.api.audit.settled(Duration::from_secs(5)).await);
    let actions: Vec<String> = cloud
        .store()
        .list_audit(2, 50)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    for a in [
        "connector.pair",
        "connector.claim",
        "connector.token",
        "connector.unpair",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_near_expiry_are_rotated_and_persisted() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.connector_token_ttl = Duration::from_secs(30);
        o.api.rotate_before = Duration::from_secs(29);
        o.api.maintenance_every = Duration::from_millis(100);
    })
    .await;
    let paired = cloud.pair_connector(2).await;
    let first = paired.token_in_file();
    wait_for(
        T,
        "a rotated token in the connector's config file",
        || async { paired.token_in_file() != first },
    )
    .await;
    let rotated = paired.token_in_file();
    let jti = ponte_connector::pair::peek_claims(&rotated).unwrap()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let id: i32 = paired.connector_id.parse().unwrap();
    // The file and the store agree (rotation is a compare-and-swap, so wait for it to settle).
    wait_for(T, "store jti == file jti", || async {
        let current = paired.token_in_file();
        let jti = ponte_connector::pair::peek_claims(&current).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned();
        cloud.store().token_is_current(id, &jti).await.unwrap()
    })
    .await;
    assert!(!jti.is_empty());
    // A restarted connector gets in with the persisted token.
    let path = paired.config_path.clone();
    drop(paired);
    let relay = cloud.cloud.relay.clone();
    let cid = id.to_string();
    {
        let relay = relay.clone();
        let cid = cid.clone();
        wait_until(T, move || !ponte_core::Router::is_online(&relay, &cid)).await;
    }
    let mut file = ponte_connector::config::FileConfig::load(&path, true).unwrap();
    file.health_listen = Some("127.0.0.1:0".into());
    let _c = ponte_tests::spawn_connector(
        ponte_connector::config::Config::from_file_config(file, Some(path)).unwrap(),
    )
    .await;
    wait_until(T, move || ponte_core::Router::is_online(&relay, &cid)).await;
    assert!(cloud.cloud.api.audit.settled(Duration::from_secs(5)).await);
    assert!(cloud
        .store()
        .list_audit(2, 50)
        .await
        .unwrap()
        .iter()
        .any(|a| a.action == "connector.rotate"));
}

/// Two installs with one token used to replace each other on every reconnect, so
/// neither served while status said ONLINE. The established connection is kept, the
/// newcomer refused, and status and the console say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connectors_sharing_a_token_settle_on_one_and_status_says_so() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let paired = cloud.pair_connector(2).await;
    let mut file = ponte_connector::config::FileConfig::load(&paired.config_path, true).unwrap();
    file.health_listen = Some("127.0.0.1:0".into());
    file.backoff_initial_ms = Some(20);
    file.backoff_max_ms = Some(200);
    let copy = ponte_tests::spawn_connector(
        ponte_connector::config::Config::from_file_config(file, None).unwrap(),
    )
    .await;
    let admin = cloud.user_token(1, &[2], false);
    let status = || async {
        let (s, _, body) = cloud
            .call(
                "GET",
                "/api/instituicao/2/connector/status",
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        body
    };
    wait_for(T, "status names the duplicate", || async {
        status().await["duplicate"]["refusedConnections"].as_u64() >= Some(1)
    })
    .await;
    let user = cloud.user_token(7, &[2], false);
    let mut ok = 0;
    for _ in 0..10 {
        let (s, _, r) = cloud
            .call(
                "POST",
                "/api/instituicao/2/equipamento/100/proxy-http",
                Some(&user),
                Some(json!({"method": "GET", "path": "/hello"})),
            )
            .await;
        if s == 200 && r["statusCode"] == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "every request served while the copy keeps retrying");
    let body = status().await;
    assert_eq!(body["status"], "ONLINE", "{body}");
    assert!(body["duplicate"]["lastRefusedAt"].is_string(), "{body}");
    let page = cloud.console_page(2, &admin).await;
    assert!(page.contains("id=\"connector-duplicate\""), "{page}");
    drop((copy, paired));
}

/// TOKEN_ROTATE has no acknowledgement: a connector that could not save the new token
/// comes back after a restart with the old one, which must still be accepted until the
/// new one has been used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_the_connector_could_not_save_still_lets_it_back_in() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.connector_token_ttl = Duration::from_secs(30);
        o.api.rotate_before = Duration::from_secs(29);
        o.api.maintenance_every = Duration::from_millis(100);
    })
    .await;
    let admin = cloud.user_token(1, &[2], false);
    let (status, _, body) = cloud
        .call(
            "POST",
            "/api/instituicao/2/connector/pair",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let path = cloud.data_dir.join("unsaved.toml");
    let paired = ponte_connector::pair::with_code(
        &cloud.url(""),
        body["pairingCode"].as_str().unwrap(),
        "Servidor Portaria",
        &path,
    )
    .await
    .unwrap();
    let mut file = ponte_connector::config::FileConfig::load(&path, true).unwrap();
    file.health_listen = Some("127.0.0.1:0".into());
    file.backoff_initial_ms = Some(20);
    file.backoff_max_ms = Some(200);
    let original = file.token.clone().unwrap();
    let id: i32 = paired.connector_id.parse().unwrap();
    let first_jti = cloud.store().connector(id).await.unwrap().unwrap().token_id;
    // The config path becomes a directory: the rotated token cannot be saved.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let cfg = ponte_connector::config::Config::from_file_config(file.clone(), Some(path.clone()))
        .unwrap();
    let connector = ponte_tests::spawn_connector(cfg).await;
    wait_for(T, "the token rotated in the store", || async {
        cloud.store().connector(id).await.unwrap().unwrap().token_id != first_jti
    })
    .await;
    drop(connector);
    let relay = cloud.cloud.relay.clone();
    let cid = paired.connector_id.clone();
    {
        let (relay, cid) = (relay.clone(), cid.clone());
        wait_until(T, move || !ponte_core::Router::is_online(&relay, &cid)).await;
    }
    // Restarted with what is on disk elsewhere: the old token.
    file.token = Some(original);
    let cfg = ponte_connector::config::Config::from_file_config(file, None).unwrap();
    let _back = ponte_tests::spawn_connector(cfg).await;
    wait_until(T, move || ponte_core::Router::is_online(&relay, &cid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sessions_lifecycle() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.sessions.idle = Duration::from_millis(1500);
        o.api.sessions.max = Duration::from_secs(3600);
        o.api.maintenance_every = Duration::from_millis(100);
        o.api.gateway_public_url = "http://127.0.0.1:9/".into();
    })
    .await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    cloud.add_equipment(2, 101, &origin.base_url(), false).await;
    let user = cloud.user_token(7, &[2], false);
    let sessions = "/api/instituicao/2/equipamento/100/remoto/sessoes";

    let (s, _, e) = cloud.call("POST", sessions, Some(&user), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("CONNECTOR_NOT_PAIRED")),
        "{e}"
    );
    let paired = cloud.pair_connector(2).await;
    let (s, _, e) = cloud
        .call(
            "POST",
            "/api/instituicao/2/equipamento/101/remoto/sessoes",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("ADDON_DISABLED")),
        "{e}"
    );

    let (s, _, created) = cloud.call("POST", sessions, Some(&user), None).await;
    assert_eq!(s, 201, "{created}");
    let sid = created["sessionId"].as_str().unwrap().to_owned();
    let url = created["url"].as_str().unwrap();
    let code = url
        .strip_prefix("http://127.0.0.1:9/remote/launch/")
        .expect(url);
    assert!(code.len() >= 40, "launch codes are long and random");
    let api = &cloud.cloud.api;
    let launched = api.sessions.launch(code, None).await.unwrap();
    assert_eq!(
        (launched.id.as_str(), launched.user_id, launched.tenant_id),
        (sid.as_str(), 7, 2)
    );
    assert!(
        api.sessions.launch(code, None).await.is_err(),
        "a launch code works once"
    );

    // In use, the idle expiry slides; the streams token ends with the session.
    let streams = api.sessions.streams(&sid);
    let before = api.sessions.check(&sid).await.unwrap().expires_at;
    tokio::time::sleep(Duration::from_millis(300)).await; // let the sliding window move
    api.sessions.record(&sid, 1234);
    let after = api.sessions.check(&sid).await.unwrap().expires_at;
    assert!(after > before, "{before} → {after}");
    let (s, _, _) = cloud
        .call("DELETE", &format!("{sessions}/{sid}"), Some(&user), None)
        .await;
    assert_eq!(s, 204);
    tokio::time::timeout(Duration::from_secs(1), streams.cancelled())
        .await
        .expect("open streams end with the session");
    assert!(matches!(
        api.sessions.check(&sid).await,
        Err(ponte_api::sessions::SessionError::Ended)
    ));
    let (s, _, _) = cloud
        .call("DELETE", &format!("{sessions}/nope"), Some(&user), None)
        .await;
    assert_eq!(s, 404);

    // Left idle, a session expires and says so.
    let (_, _, idle) = cloud.call("POST", sessions, Some(&user), None).await;
    let idle_sid = idle["sessionId"].as_str().unwrap().to_owned();
    let idle_streams = api.sessions.streams(&idle_sid);
    tokio::time::timeout(T, idle_streams.cancelled())
        .await
        .expect("expiry ends the streams");
    assert!(matches!(
        api.sessions.check(&idle_sid).await,
        Err(ponte_api::sessions::SessionError::Expired)
    ));

    let (s, _, list) = cloud
        .call(
            "GET",
            "/api/instituicao/2/remoto/sessoes",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let find = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|x| x["sessionId"] == id)
            .cloned()
            .unwrap()
    };
    let ended = find(&sid);
    assert_eq!(
        (
            ended["status"].as_str(),
            ended["userId"].as_i64(),
            ended["equipmentId"].as_i64()
        ),
        (Some("ENCERRADA"), Some(7), Some(100))
    );
    assert_eq!(
        (ended["requests"].as_i64(), ended["bytes"].as_i64()),
        (Some(1), Some(1234)),
        "{ended}"
    );
    assert!(ended["endedAt"].is_string() && ended["userName"].is_string());
    assert_eq!(find(&idle_sid)["status"], "EXPIRADA");
    let row = cloud.store().session(&idle_sid).await.unwrap().unwrap();
    assert_eq!(row.status, SessionStatus::EXPIRADA);

    // Connector gone: 409 with the reason.
    drop(paired);
    let relay = cloud.cloud.relay.clone();
    let id = cloud
        .store()
        .connector_of(2)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    wait_until(T, move || !ponte_core::Router::is_online(&relay, &id)).await;
    let (s, _, e) = cloud.call("POST", sessions, Some(&user), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("CONNECTOR_OFFLINE")),
        "{e}"
    );
}

/// Equipment on the addon but with no address (no localBaseUrl, no IP) can be reached by
/// nobody: proxy-http, a new remote session and a new published route all refuse it the
/// same way, at once, instead of creating a session or route that fails when used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equipment_without_an_address_is_refused_alike_by_every_caller() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let _paired = cloud.pair_connector(2).await;
    cloud.add_equipment(2, 103, "", true).await;
    let user = cloud.user_token(7, &[2], false);
    let base = "/api/instituicao/2/equipamento/103";
    let proxy = json!({"method": "GET", "path": "/"});
    let route = json!({"paths": ["/x"], "methods": ["GET"]});
    for (path, body) in [
        (format!("{base}/proxy-http"), Some(proxy.clone())),
        (format!("{base}/remoto/sessoes"), None),
        (format!("{base}/rotas-publicas"), Some(route.clone())),
    ] {
        let (s, _, e) = cloud.call("POST", &path, Some(&user), body).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (409, Some("NO_DEVICE_ADDRESS")),
            "{path}: {e}"
        );
    }
    let (s, _, listed) = cloud
        .call("GET", &format!("{base}/rotas-publicas"), Some(&user), None)
        .await;
    assert_eq!((s, listed), (200, json!([])), "no route was created");
    // The console offers no remote access to it either.
    let page = cloud.console_page(2, &user).await;
    assert!(page.contains("sem endereço"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_rate_limited_per_source_and_proxying_per_connector() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.rate_limits.claim = ponte_api::ratelimit::Rate {
            per_second: 0.01,
            burst: 3,
        };
        o.api.rate_limits.connector = ponte_api::ratelimit::Rate {
            per_second: 0.01,
            burst: 2,
        };
    })
    .await;
    // Pairing spends one claim of the burst of 3 from 127.0.0.1.
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    for _ in 0..2 {
        let (s, _, _) = cloud
            .call(
                "POST",
                "/api/connector/claim",
                None,
                Some(json!({"pairingCode": "AAAA-BBBB"})),
            )
            .await;
        assert_eq!(s, 400);
    }
    let (s, h, e) = cloud
        .call(
            "POST",
            "/api/connector/claim",
            None,
            Some(json!({"pairingCode": "AAAA-BBBB"})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{e}"
    );
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry), "{retry}");

    let user = cloud.user_token(7, &[2], false);
    let path = "/api/instituicao/2/equipamento/100/proxy-http";
    let body = json!({"method": "GET", "path": "/hello"});
    for _ in 0..2 {
        let (s, _, _) = cloud
            .call("POST", path, Some(&user), Some(body.clone()))
            .await;
        assert_eq!(s, 200);
    }
    let (s, h, _) = cloud.call("POST", path, Some(&user), Some(body)).await;
    assert_eq!(s, 429);
    assert!(h.contains_key("retry-after"));
}

/// Pairing-code guesses from many addresses together hit one global limit: each of
/// 127.0.0.2 … (all loopback) is far below its own limit, and still the claim after
/// the global burst gets 429.
#[tokio::test]
async fn claims_from_many_addresses_hit_the_global_limit() {
    const GLOBAL_BURST: u32 = 6;
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.rate_limits.claim_global = ponte_api::ratelimit::Rate {
            per_second: 0.01,
            burst: GLOBAL_BURST,
        };
    })
    .await;
    let claim_from = |last: u8| {
        let url = cloud.url("/api/connector/claim");
        async move {
            let http = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, last]))
                .build()
                .unwrap();
            let resp = http
                .post(url)
                .json(&json!({"pairingCode": "AAAA-BBBB"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry = resp.headers().get("retry-after").cloned();
            let body: Value = resp.json().await.unwrap();
            (status, retry, body)
        }
    };
    for i in 0..GLOBAL_BURST as u8 {
        let (s, _, e) = claim_from(2 + i).await;
        assert_eq!(s, 400, "claim {i} from its own address: {e}");
    }
    let (s, retry, e) = claim_from(100).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{e}"
    );
    assert!(retry.is_some());
}

/// What all proxy-http calls buffer at once comes out of one byte budget (the API's
/// `proxy_budget`): a call that would go past it answers 503 BUSY, and the bytes come
/// back when the call holding them ends.
#[tokio::test]
async fn proxy_http_calls_share_one_response_budget() {
    const BUDGET: usize = 1024 * 1024;
    const EACH: usize = 700 * 1024;
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| o.api.proxy_budget = BUDGET).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let user = cloud.user_token(7, &[2], false);
    let path = "/api/instituicao/2/equipamento/100/proxy-http";
    let big =
        json!({"method": "GET", "path": format!("/bytes-then-hold/{EACH}"), "timeoutMs": 5000});
    // The first call holds its 700 KiB (the device has not finished its answer).
    let first = cloud.call("POST", path, Some(&user), Some(big.clone()));
    let api = std::sync::Arc::clone(&cloud.cloud.api);
    let held = async {
        wait_until(T, move || {
            api.proxy_budget.available_permits() <= BUDGET - EACH
        })
        .await;
        // The second does not fit beside it.
        let (s, h, e) = cloud
            .call("POST", path, Some(&user), Some(big.clone()))
            .await;
        assert_eq!((s, e["error"]["code"].as_str()), (503, Some("BUSY")), "{e}");
        assert!(h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        origin.stats.gate.add_permits(2);
    };
    let ((s, _, r), ()) = tokio::join!(first, held);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["bodyEncoding"], "base64");
    // Given back: the same call fits again.
    origin.stats.gate.add_permits(1);
    let (s, _, r) = cloud.call("POST", path, Some(&user), Some(big)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(cloud.cloud.api.proxy_budget.available_permits(), BUDGET);
}

#[tokio::test]
async fn openapi_is_generated_for_every_route() {
    let doc = serde_json::to_value(ponte_api::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut expected: Vec<(String, String)> = TENANT_ROUTES
        .iter()
        .map(|(m, p)| {
            let p = p
                .replace("{t}", "{tid}")
                .replace("/100", "/{eid}")
                .replace("/abc", "/{sid}")
                .replace("rotas-publicas/7", "rotas-publicas/{id}");
            (m.to_lowercase(), p)
        })
        .collect();
    expected.push(("post".into(), "/api/connector/claim".into()));
    for (method, path) in &expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        expected.len()
    );
    assert!(doc["components"]["schemas"]["ProxyHttpRequest"].is_object());
    // And it is served.
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let (s, _, served) = cloud.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(
        (s, served["paths"].as_object().unwrap().len()),
        (200, paths.len())
    );
}

/// The console acts only on the cookie bound to the login key the form carries: a valid
/// cookie of someone else's (planted by a device page, sent first thanks to a longer
/// path) is never the one used, a form without this browser's key is refused, and a
/// bare token cookie (which any page of the host could write) signs no one in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_acts_only_on_the_cookie_bound_to_the_forms_login_key() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let admin = cloud.console_login(&cloud.user_token(7, &[2], false)).await;
    let attacker = cloud.console_login(&cloud.user_token(8, &[3], false)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |tid: i32, cookie: String, key: Option<&str>| {
        let mut form = vec![];
        if let Some(k) = key {
            form.push(("_login", k.to_owned()));
        }
        http.post(cloud.url(&format!("/instituicao/{tid}/connector/pareamento")))
            .header("origin", cloud.url(""))
            .header("cookie", cookie)
            .form(&form)
            .send()
    };
    let both = format!("{}; {}", attacker.cookie, admin.cookie);
    // The admin's key: the admin acts, whatever came first.
    let r = post(2, both.clone(), Some(&admin.key)).await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("codigo-pareamento") && page.contains("Usuária 7"),
        "{page}"
    );
    // The attacker's institution, with the admin's key: the admin (no access), not the
    // attacker.
    let r = post(3, both.clone(), Some(&admin.key)).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().contains("codigo-pareamento"));
    // Only the planted cookie, or no key: refused.
    let r = post(3, attacker.cookie.clone(), Some(&admin.key))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CONSOLE_LOGIN"));
    let r = post(2, admin.cookie.clone(), None).await.unwrap();
    assert_eq!(r.status(), 403);
    // The attacker's own browser works as the attacker (the binding, not a lock-out).
    let r = post(3, attacker.cookie.clone(), Some(&attacker.key))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A bare token in the cookie is nobody.
    let raw = format!("ponte_console={}", cloud.user_token(7, &[2], false));
    let r = http
        .get(cloud.url("/instituicao/2"))
        .header("cookie", raw)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/entrar");
}

/// The console's pages are never cached (pairing codes and tokens appear on them once)
/// and never framed: `Cache-Control: no-store`, a CSP with `frame-ancestors 'none'`,
/// and `X-Frame-Options: DENY` for browsers without CSP, on every kind of page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_are_never_cached_or_framed() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let login = cloud.console_login(&cloud.user_token(7, &[2], false)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let pages = [
        ("sign-in page", http.get(cloud.url("/entrar"))),
        (
            "signed in (the login key)",
            http.post(cloud.url("/entrar"))
                .header("origin", cloud.url(""))
                .form(&[("token", cloud.user_token(7, &[2], false))]),
        ),
        (
            "institution",
            http.get(cloud.url("/instituicao/2"))
                .header("cookie", &login.cookie),
        ),
        (
            "pairing code",
            http.post(cloud.url("/instituicao/2/connector/pareamento"))
                .header("origin", cloud.url(""))
                .header("cookie", &login.cookie)
                .form(&[("_login", &login.key)]),
        ),
        (
            "refusal",
            http.get(cloud.url("/instituicao/3"))
                .header("cookie", &login.cookie),
        ),
    ];
    for (what, req) in pages {
        let r = req.send().await.unwrap();
        let h = r.headers().clone();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(body.contains("<html"), "{what}: {status} {body}");
        if what == "pairing code" {
            assert!(body.contains("codigo-pareamento"), "{body}");
        }
        if what == "refusal" {
            assert_eq!(status, 403, "{body}");
        }
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("cache-control"), Some("no-store"), "{what}");
        assert_eq!(header("x-frame-options"), Some("DENY"), "{what}");
        let csp = header("content-security-policy").unwrap_or_default();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        assert!(
            directives.contains(&"frame-ancestors 'none'"),
            "{what}: {csp}"
        );
    }
}

/// The claim limit is keyed by the connection's address; `X-Forwarded-For` (its last
/// entry: what the proxy in front appended) is used instead only with
/// `trust_forwarded_for`, so without it a client cannot pick a fresh bucket per try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_keys_the_claim_limit_only_when_trusted() {
    const BURST: u32 = 2;
    for trusted in [false, true] {
        let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
            o.api.trust_forwarded_for = trusted;
            o.api.rate_limits.claim = ponte_api::ratelimit::Rate {
                per_second: 0.01,
                burst: BURST,
            };
        })
        .await;
        let claim = |xff: String| {
            cloud
                .http
                .post(cloud.url("/api/connector/claim"))
                .header("x-forwarded-for", xff)
                .json(&json!({"pairingCode": "AAAA-BBBB"}))
                .send()
        };
        // One fresh forwarded address per try, a spoofed entry in front of each.
        let mut statuses = Vec::new();
        for i in 1..=BURST + 1 {
            let r = claim(format!("198.51.100.{i}, 203.0.113.{i}"))
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        if !trusted {
            // All from 127.0.0.1: one bucket, whatever the header says.
            assert_eq!(statuses, [400, 400, 429], "not trusted");
            continue;
        }
        assert_eq!(
            statuses,
            [400, 400, 400],
            "trusted: a bucket per forwarded address"
        );
        // The forwarded address, not the spoofed entry in front of it, is the key.
        let mut statuses = Vec::new();
        for i in 0..BURST {
            let r = claim(format!("198.51.100.{}, 203.0.113.1", 50 + i))
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert_eq!(statuses, [400, 429], "trusted: 203.0.113.1 again");
    }
}

/// `ponte serve` starting on a database a crashed process left a connector ONLINE in
/// shows it OFFLINE: nothing is connected to a process that has just started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_left_online_by_a_crashed_process_is_offline_after_a_restart() {
    use ponte_api::store::ConnectorLiveness;
    let db = ponte_tests::cloud::fresh_database(Backend::Sqlite).await;
    {
        let s = ponte_api::store::open(&db).await.unwrap();
        s.upsert_client(1, "Cliente Um").await.unwrap();
        s.upsert_institution(1, 2, "Colégio Exemplo").await.unwrap();
        let con = s.ensure_connector(2).await.unwrap();
        let t = ponte_api::store::now();
        s.set_token(
            con.id,
            "jti-before-the-crash",
            t + chrono::TimeDelta::days(1),
        )
        .await
        .unwrap();
        s.record_liveness(&[ConnectorLiveness {
            connector_id: con.id,
            connected: Some((true, t)),
            hello: None,
            heartbeat: Some(t),
        }])
        .await
        .unwrap();
        let c = s.connector(con.id).await.unwrap().unwrap();
        assert_eq!(c.status, ConnectorStatus::ONLINE);
        s.close().await;
    }
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| o.database = Some(db)).await;
    assert_eq!(db_status(&cloud, 2).await, Some(ConnectorStatus::OFFLINE));
    let admin = cloud.user_token(1, &[2], false);
    let (s, _, st) = cloud
        .call(
            "GET",
            "/api/instituicao/2/connector/status",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["status"], "OFFLINE", "{st}");
}
