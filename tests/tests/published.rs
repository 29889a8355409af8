//! Published routes end to end: a POS-like host behind a real connector, its `/approve/*`
//! published on `<slug>.pub.localhost`, reached by anonymous clients (raw HTTP, so every
//! path spelling arrives as written, and Chromium). Every refusal is checked against the
//! device's own request log: a refused request must never reach it.

use ponte_devsim::Devsim;
use ponte_tests::browser::Browser;
use ponte_tests::cloud::{Backend, PairedConnector, TestCloud};
use ponte_tests::raw_http;
use serde_json::{json, Value};
use std::time::Duration;

const TID: i32 = 2;
const POS: i32 = 110;

struct Setup {
    cloud: TestCloud,
    pos: Devsim,
    admin: String,
    _connector: PairedConnector,
}

impl Setup {
    async fn start(backend: Backend) -> Self {
        let cloud = TestCloud::start(backend).await;
        let pos = Devsim::spawn_pos("Nexora POS").await.unwrap();
        cloud.add_equipment(TID, POS, &pos.base_url(), true).await;
        let connector = cloud.pair_connector(TID).await;
        let admin = cloud.user_token(1, &[TID.into()], false);
        Self {
            cloud,
            pos,
            admin,
            _connector: connector,
        }
    }

    fn routes_path(&self, eid: i32) -> String {
        format!("/api/instituicao/{TID}/equipamento/{eid}/rotas-publicas")
    }

    /// Publishes on the POS; returns the API's answer.
    async fn publish(&self, body: Value) -> Value {
        self.publish_on(POS, body).await
    }

    /// Publishes on equipment `eid` (201 asserted); returns the API's answer.
    async fn publish_on(&self, eid: i32, body: Value) -> Value {
        let (status, _, created) = self
            .cloud
            .call(
                "POST",
                &self.routes_path(eid),
                Some(&self.admin),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created
    }

    /// The `Host` of route `slug`.
    fn host(&self, slug: &str) -> String {
        format!("{slug}.pub.localhost:{}", self.cloud.gateway_addr.port())
    }

    /// `method path` on route `slug`'s host, exactly as written, with `extra` headers
    /// (each ending in CRLF) and `body`.
    async fn public(
        &self,
        slug: &str,
        method: &str,
        path: &str,
        extra: &str,
        body: &str,
    ) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host(slug),
            body.len()
        );
        raw_http(self.cloud.gateway_addr, &req).await
    }

    /// Requests the POS received, as `METHOD target`.
    fn seen(&self) -> Vec<String> {
        self.pos
            .seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect()
    }
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn error_code(answer: &str) -> String {
    serde_json::from_str::<Value>(body_of(answer)).map_or_else(
        |_| format!("not JSON: {answer}"),
        |v| v["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The route answers its paths and methods, and the device sees its own `Host`, the
/// forwarding headers and the client's own cookies; everything else is refused before it
/// reaches the device.
async fn a_route_serves_its_paths_and_nothing_else(backend: Backend) {
    let s = Setup::start(backend).await;
    let created = s
        .publish(json!({"slug": "nexora", "paths": ["/approve/*"], "methods": ["GET", "POST"]}))
        .await;
    let port = s.cloud.gateway_addr.port();
    assert_eq!(
        created["url"],
        format!("http://nexora.pub.localhost:{port}")
    );
    assert_eq!(created["requestsPerMinute"], 120);

    let (status, page) = s.public("nexora", "GET", "/approve/Q-1", "", "").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Orçamento Q-1"), "{page}");
    // The app's cookie passes, host-only: its Domain would reach sibling hosts.
    let set_cookie = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no Set-Cookie: {page}"));
    assert!(set_cookie.contains("pos_visto=Q-1"), "{set_cookie}");
    assert!(
        !set_cookie.to_ascii_lowercase().contains("domain"),
        "{set_cookie}"
    );

    let (status, page) = s.public("nexora", "POST", "/approve/Q-1", "", "").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Orçamento aprovado"), "{page}");
    assert_eq!(s.pos.approved(), ["Q-1"]);

    // What the device receives.
    let (status, echo) = s
        .public(
            "nexora",
            "GET",
            "/approve/%65cho?x=1",
            "Cookie: __ponte_rs=stolen; app=1\r\nX-Forwarded-For: 203.0.113.9\r\nAuthorization: Bearer app-token\r\n",
            "",
        )
        .await;
    assert_eq!(status, 200, "{echo}");
    let echo: Value = serde_json::from_str(body_of(&echo)).unwrap();
    assert_eq!(echo["target"], "/approve/echo?x=1");
    let h = &echo["headers"];
    assert_eq!(h["host"], json!([s.pos.addr.to_string()]));
    assert_eq!(
        h["x-forwarded-for"],
        json!(["127.0.0.1"]),
        "the client's own XFF is not trusted"
    );
    assert_eq!(h["x-forwarded-proto"], json!(["http"]));
    assert_eq!(h["x-forwarded-host"], json!([s.host("nexora")]));
    assert_eq!(
        h["cookie"],
        json!(["app=1"]),
        "Ponte's cookies never reach the device"
    );
    assert_eq!(
        h["authorization"],
        json!(["Bearer app-token"]),
        "the app's own credentials pass"
    );
    let reached = s.seen().len();
    assert_eq!(reached, 3, "{:?}", s.seen());

    // Refused, each before the device.
    let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (method, path, extra, want, code) in [
        ("GET", "/admin", "", 404, "NOT_FOUND"),
        ("GET", "/approve/../admin", "", 404, "NOT_FOUND"),
        ("GET", "/%61dmin", "", 404, "NOT_FOUND"),
        ("GET", "/approve%2f..%2fadmin", "", 404, "NOT_FOUND"),
        ("GET", "/approve/..%5cadmin", "", 404, "NOT_FOUND"),
        ("GET", "//admin", "", 404, "NOT_FOUND"),
        ("GET", "/approve", "", 404, "NOT_FOUND"),
        ("GET", "/approve/%252e%252e/admin", "", 400, "BAD_PATH"),
        ("GET", "/approve/..;/admin", "", 400, "BAD_PATH"),
        ("GET", "/approve/%00", "", 400, "BAD_PATH"),
        ("GET", "/approve/%c0%ae%c0%ae/admin", "", 400, "BAD_PATH"),
        (
            "GET",
            "/approve/%ef%bc%8e%ef%bc%8e/admin",
            "",
            400,
            "BAD_PATH",
        ),
        ("PUT", "/approve/Q-1", "", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/approve/Q-1", "", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/approve/ws", ws, 403, "WEBSOCKET_NOT_ALLOWED"),
        // The gateway's own paths are not served on a route's host.
        ("GET", "/remote/launch/abc", "", 404, "NOT_FOUND"),
        (
            "GET",
            "/remote/s/00000000-0000-4000-8000-000000000000/",
            "",
            404,
            "NOT_FOUND",
        ),
    ] {
        let (status, answer) = s.public("nexora", method, path, extra, "").await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        assert_eq!(error_code(&answer), code, "{method} {path}");
        if status == 405 {
            assert!(answer.contains("allow: GET, POST, HEAD"), "{answer}");
        }
    }
    // Another route's host, an unknown one, one of another tenant's equipment.
    let turnstile = Devsim::spawn("Catraca").await.unwrap();
    s.cloud
        .add_equipment(TID, 100, &turnstile.base_url(), true)
        .await;
    let _ = s
        .publish_on(
            100,
            json!({"slug": "catraca", "paths": ["/echo"], "methods": ["GET"]}),
        )
        .await;
    let (status, answer) = s.public("catraca", "GET", "/approve/Q-1", "", "").await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "NOT_FOUND".into()),
        "{answer}"
    );
    let (status, answer) = s.public("nobody", "GET", "/approve/Q-1", "", "").await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "ROUTE_NOT_FOUND".into()),
        "{answer}"
    );
    // Every other name under the public domain is public too, and serves nothing: no
    // launch page or session of the gateway's own on a route's sibling.
    let port = s.cloud.gateway_addr.port();
    for host in [
        format!("pub.localhost:{port}"),
        format!("a.nexora.pub.localhost:{port}"),
        format!("s-abc.pub.localhost:{port}"),
        format!("nexora.pub.localhost.:{port}"),
    ] {
        let req =
            format!("GET /remote/launch/abc HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, answer) = raw_http(s.cloud.gateway_addr, &req).await;
        assert_eq!(status, 404, "{host}: {answer}");
        assert!(
            !answer.contains("Acesso remoto"),
            "{host}: the launch page: {answer}"
        );
    }
    assert_eq!(
        s.seen().len(),
        reached,
        "a refused request reached the POS: {:?}",
        s.seen()
    );
    assert!(turnstile.seen().is_empty(), "{:?}", turnstile.seen().len());
    assert!(
        !s.seen().iter().any(|r| r.contains("admin")),
        "{:?}",
        s.seen()
    );

    // The list counts what was served.
    let (status, _, list) = s
        .cloud
        .call("GET", &s.routes_path(POS), Some(&s.admin), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["slug"], "nexora");
    assert_eq!(list[0]["requests"], 3, "{list:?}");
    assert!(list[0]["bytes"].as_i64().unwrap() > 0, "{list:?}");
    assert!(list[0]["lastUsedAt"].is_string(), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_serves_its_paths_and_nothing_else_sqlite() {
    a_route_serves_its_paths_and_nothing_else(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_serves_its_paths_and_nothing_else_postgres() {
    a_route_serves_its_paths_and_nothing_else(Backend::Postgres).await;
}

/// A deleted route answers 404 at once and its open download is cut; an expired one
/// answers 404 from its expiry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_expired_routes_answer_404_at_once() {
    let s = Setup::start(Backend::Sqlite).await;
    let turnstile = Devsim::spawn("Catraca").await.unwrap();
    s.cloud
        .add_equipment(TID, 100, &turnstile.base_url(), true)
        .await;
    let created = s
        .publish_on(
            100,
            json!({"slug": "downloads", "paths": ["/download"], "methods": ["GET"]}),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    // A 500 MB download, read a little, then the route is deleted under it.
    let client = reqwest::Client::builder()
        .resolve("downloads.pub.localhost", s.cloud.gateway_addr)
        .build()
        .unwrap();
    let url = format!(
        "{}/download?bytes=500000000",
        created["url"].as_str().unwrap()
    );
    let mut resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.chunk().await.unwrap().unwrap().is_empty());
    let (status, _, _) = s
        .cloud
        .call(
            "DELETE",
            &format!("{}/{id}", s.routes_path(100)),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, answer) = s
        .public("downloads", "GET", "/download?bytes=10", "", "")
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "ROUTE_NOT_FOUND".into()),
        "{answer}"
    );
    let mut got = 0usize;
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => got += c.len(),
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the download went on after the delete");
    assert!(got < 400_000_000, "the download was not cut: {got} bytes");
    // Deleting again, or through another equipment: 404.
    let (status, _, _) = s
        .cloud
        .call(
            "DELETE",
            &format!("{}/{id}", s.routes_path(100)),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Expiry: published for 3 s, with a download open across it. In whole milliseconds,
    // as the store keeps it (a finer time is truncated, so the cut could come up to a
    // millisecond before it).
    let expires =
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now() + chrono::TimeDelta::seconds(3), 3);
    let brief = s
        .publish_on(
            100,
            json!({
                "slug": "brief", "paths": ["/download"], "methods": ["GET"],
                "expiresAt": expires.to_rfc3339(),
            }),
        )
        .await;
    let client = reqwest::Client::builder()
        .resolve("brief.pub.localhost", s.cloud.gateway_addr)
        .build()
        .unwrap();
    let url = format!(
        "{}/download?bytes=4000000000",
        brief["url"].as_str().unwrap()
    );
    let mut resp = client.get(&url).send().await.unwrap();
    let status = resp.status();
    if chrono::Utc::now() < expires {
        assert_eq!(status, 200);
    }
    // The download ends at the expiry (not at the next maintenance pass, 30 s on).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match resp.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return chrono::Utc::now(),
            }
        }
    })
    .await
    .expect("the download outlived its route's expiry");
    assert!(
        ended >= expires,
        "cut {} ms before its expiry (status {status})",
        (expires - ended).num_milliseconds()
    );
    let (status, answer) = s.public("brief", "GET", "/download?bytes=1", "", "").await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "ROUTE_NOT_FOUND".into()),
        "{answer}"
    );
}

/// What goes wrong behind a route is told to the public by status and code only: not the
/// device's LAN address, nor why the route is unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_learns_no_detail_of_a_failure() {
    let s = Setup::start(Backend::Sqlite).await;
    // Nothing listens on port 9 of loopback: the connector's connect fails.
    s.cloud
        .add_equipment(TID, 140, "http://127.0.0.1:9/base-interna", true)
        .await;
    let _ = s
        .publish_on(
            140,
            json!({"slug": "morto", "paths": ["/*"], "methods": ["GET"]}),
        )
        .await;
    let (status, answer) = s.public("morto", "GET", "/x?segredo=1", "", "").await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(error_code(&answer), "CONNECT_FAILED");
    for secret in ["127.0.0.1:9", "base-interna", "segredo"] {
        assert!(
            !answer.contains(secret),
            "{secret} told to the public: {answer}"
        );
    }
    // The equipment leaves the addon: 503 without the reason.
    s.cloud
        .add_equipment(TID, 140, "http://127.0.0.1:9/base-interna", false)
        .await;
    ponte_tests::wait_for(
        Duration::from_secs(10),
        "the route to see the change",
        || async { s.public("morto", "GET", "/x", "", "").await.0 == 503 },
    )
    .await;
    let (_, answer) = s.public("morto", "GET", "/x", "", "").await;
    assert_eq!(error_code(&answer), "UNAVAILABLE");
    assert!(!answer.contains("addon"), "{answer}");
    // A client making up route names gets 429 once it has cost the store enough reads.
    let mut limited = 0;
    for i in 0..80 {
        let (status, _) = s
            .public(&format!("inventada{i}"), "GET", "/x", "", "")
            .await;
        assert!(status == 404 || status == 429, "{status}");
        limited += usize::from(status == 429);
    }
    assert!(
        limited >= 20,
        "made-up names read the store {} times",
        80 - limited
    );
}

/// Only the route's tenant may publish, list and delete; mistakes are 400/409 with a
/// reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_tenant_scoped_and_checked() {
    let s = Setup::start(Backend::Sqlite).await;
    let created = s
        .publish(json!({"paths": ["/approve/*"], "methods": ["get", "POST", "GET"]}))
        .await;
    let slug = created["slug"].as_str().unwrap();
    assert!(ponte_core::published::valid_slug(slug), "{slug}");
    assert_eq!(created["methods"], json!(["GET", "POST"]));
    let id = created["id"].as_i64().unwrap();
    let other = s.cloud.user_token(9, &[3], false);
    let one = format!("{}/{id}", s.routes_path(POS));
    let body = json!({"paths": ["/x"], "methods": ["GET"]});
    for (method, path, body) in [
        ("GET", s.routes_path(POS), None),
        ("POST", s.routes_path(POS), Some(body.clone())),
        ("DELETE", one.clone(), None),
    ] {
        let (status, _, answer) = s.cloud.call(method, &path, Some(&other), body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    // The route is still there and still served.
    let (status, _) = s.public(slug, "GET", "/approve/Q-3", "", "").await;
    assert_eq!(status, 200);
    // Through another equipment of the same tenant: no such route.
    let (status, _, _) = s
        .cloud
        .call(
            "DELETE",
            &format!("{}/{id}", s.routes_path(999)),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    s.cloud
        .add_equipment(TID, 120, "http://127.0.0.1:9", false)
        .await;
    for (eid, body, want, code) in [
        (
            POS,
            json!({"slug": "Nexora", "paths": ["/x"], "methods": ["GET"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"slug": "s-abc", "paths": ["/x"], "methods": ["GET"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": ["/approve*"], "methods": ["GET"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": ["/a/../b"], "methods": ["GET"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": [], "methods": ["GET"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": ["/x"], "methods": ["TRACE"]}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": ["/x"], "methods": ["GET"], "requestsPerMinute": 0}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": ["/x"], "methods": ["GET"], "expiresAt": "2020-01-01T00:00:00Z"}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"paths": ["/x"], "methods": ["GET"], "extra": 1}),
            400,
            "BAD_REQUEST",
        ),
        (
            POS,
            json!({"slug": slug, "paths": ["/x"], "methods": ["GET"]}),
            409,
            "SLUG_TAKEN",
        ),
        (
            120,
            json!({"paths": ["/x"], "methods": ["GET"]}),
            409,
            "ADDON_DISABLED",
        ),
        (
            999,
            json!({"paths": ["/x"], "methods": ["GET"]}),
            404,
            "EQUIPMENT_NOT_FOUND",
        ),
    ] {
        let (status, _, answer) = s
            .cloud
            .call(
                "POST",
                &s.routes_path(eid),
                Some(&s.admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, want, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    // Every change is in the audit.
    let (status, _, _) = s.cloud.call("DELETE", &one, Some(&s.admin), None).await;
    assert_eq!(status, 204);
    ponte_tests::wait_for(Duration::from_secs(10), "the audit entries", || async {
        let (_, _, audit) = s
            .cloud
            .call(
                "GET",
                &format!("/api/instituicao/{TID}/auditoria"),
                Some(&s.admin),
                None,
            )
            .await;
        let actions: Vec<&str> = audit
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
            .unwrap_or_default();
        actions.contains(&"route.create") && actions.contains(&"route.delete")
    })
    .await;
}

/// Past its rate a route answers 429 with Retry-After, and the device never hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_over_its_rate_answers_429() {
    let s = Setup::start(Backend::Sqlite).await;
    // 4 a minute: 2 at once.
    s.publish(json!({"slug": "lento", "paths": ["/approve/*"], "methods": ["GET"], "requestsPerMinute": 4}))
        .await;
    for i in 0..2 {
        let (status, answer) = s.public("lento", "GET", "/approve/Q-4", "", "").await;
        assert_eq!(status, 200, "request {i}: {answer}");
    }
    let (status, answer) = s.public("lento", "GET", "/approve/Q-4", "", "").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(error_code(&answer), "RATE_LIMITED");
    let retry: u64 = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no Retry-After: {answer}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(s.seen().len(), 2, "{:?}", s.seen());
}

/// An anonymous browser (no cookie, no Ponte login) opens the link and approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_an_anonymous_visitor_approves_a_quote() {
    let s = Setup::start(Backend::Sqlite).await;
    let created = s
        .publish(json!({"slug": "orcamento", "paths": ["/approve/*"], "methods": ["GET", "POST"]}))
        .await;
    let link = format!("{}/approve/Q-7", created["url"].as_str().unwrap());
    let b = Browser::start().await;
    b.goto(&link).await;
    b.wait_css("#aprovar").await;
    b.click("#aprovar").await;
    b.wait_css("#aprovado").await;
    assert_eq!(s.pos.approved(), ["Q-7"]);
    assert_eq!(b.url().await, link);
    for (url, status, kind) in b.requests().await {
        assert!(
            url.starts_with(&created["url"].as_str().unwrap().to_string()),
            "{kind} {url}"
        );
        assert!((200..300).contains(&status), "{kind} {url}: {status}");
    }
    // The page cannot read a cookie of Ponte's (there is none), nor the app's HttpOnly one.
    assert_eq!(b.js("return document.cookie", vec![]).await, "");
    // The admin area stays out of reach, from the browser too.
    b.goto(&format!("{}/admin", created["url"].as_str().unwrap()))
        .await;
    assert!(!b.has("#admin").await);
    assert!(
        !s.seen().iter().any(|r| r.contains("admin")),
        "{:?}",
        s.seen()
    );
    b.close().await;
}

/// The console's equipment page lists the routes with their link and use, and its
/// "Encerrar" button ends one at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_routes_and_ends_them() {
    let s = Setup::start(Backend::Sqlite).await;
    let created = s
        .publish(json!({"slug": "painel", "paths": ["/approve/*"], "methods": ["GET"]}))
        .await;
    let id = created["id"].as_i64().unwrap();
    let (status, _) = s.public("painel", "GET", "/approve/Q-9", "", "").await;
    assert_eq!(status, 200);
    let login = s.cloud.console_login(&s.admin).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(
            s.cloud
                .url(&format!("/instituicao/{TID}/equipamento/{POS}")),
        )
        .header("cookie", &login.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = page
        .split(&format!("<tr data-route=\"{id}\">"))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("route {id} not listed: {page}"));
    assert!(row.contains(created["url"].as_str().unwrap()), "{row}");
    assert!(
        row.contains("/approve/*") && row.contains("<td>1</td>"),
        "{row}"
    );
    let end = format!("/instituicao/{TID}/equipamento/{POS}/rotas-publicas/{id}/encerrar");
    assert!(row.contains(&end), "{row}");
    let r = http
        .post(s.cloud.url(&end))
        .header("origin", s.cloud.url(""))
        .header("cookie", &login.cookie)
        .form(&[("_login", &login.key)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (status, answer) = s.public("painel", "GET", "/approve/Q-9", "", "").await;
    assert_eq!(
        (status, error_code(&answer)),
        (404, "ROUTE_NOT_FOUND".into()),
        "{answer}"
    );
}

/// A route with `websocket: true` carries the device's WebSocket both ways, and its delete
/// closes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_route_carries_the_device_socket_until_it_is_deleted() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = Setup::start(Backend::Sqlite).await;
    let origin = ponte_tests::origin::Origin::spawn().await;
    s.cloud
        .add_equipment(TID, 130, &origin.base_url(), true)
        .await;
    let (status, _, created) = s
        .cloud
        .call(
            "POST",
            &s.routes_path(130),
            Some(&s.admin),
            Some(
                json!({"slug": "aovivo", "paths": ["/ws"], "methods": ["GET"], "websocket": true}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // The socket goes to the gateway's address with the route's Host.
    let tcp = tokio::net::TcpStream::connect(s.cloud.gateway_addr)
        .await
        .unwrap();
    let url = format!("ws://{}/ws", s.host("aovivo"));
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    ws.send(Message::text("olá")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("echo:olá"));
    let (status, _, _) = s
        .cloud
        .call(
            "DELETE",
            &format!("{}/{}", s.routes_path(130), created["id"]),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the WebSocket outlived its route");
}
