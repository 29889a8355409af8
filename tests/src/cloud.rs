//! The cloud in tests: a fresh database (SQLite file or a new PostgreSQL database),
//! `ponte::start` on port 0, user tokens, and a connector paired through the real flow
//! (pair code → `ponte-connector pair` → claim).

use crate::{init_logging, spawn_connector, TestConnector, CONNECTOR_KEY, CONNECTOR_PUB};
use ponte::{Cloud, CloudOptions};
use ponte_api::auth::{KeyFiles, UserAuth, UserClaims, UserKey};
use ponte_api::store::{self, EquipmentConfig, Store};
use serde_json::{json, Value};
use sqlx::Connection as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const USER_SECRET: &[u8] = b"test-user-secret";

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server's PostgreSQL for tests (`PONTE_TEST_POSTGRES`, default the local `test`
/// database). Tests never skip when it is missing: they fail, saying so.
pub fn postgres_admin_url() -> String {
    std::env::var("PONTE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        crate::now_s(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new, empty database on `backend`; returns its URL.
pub async fn fresh_database(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(unique("ponte-test"));
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite:{}?mode=rwc", dir.join("ponte.db").display())
        }
        Backend::Postgres => {
            crate::mark_uses("postgres");
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is required for this test ({admin}): {e}; start it or set PONTE_TEST_POSTGRES")
            });
            drop_stale_databases(&mut conn).await;
            let name = unique("ponte_t");
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            format!("{base}/{name}")
        }
    }
}

/// Every row of every table of the database at `url` (SQLite or PostgreSQL) as text, one
/// line per row (`table: value|value|…`): what someone holding a dump of it could read.
/// For SQLite the database file and its WAL are also included as raw bytes (lossy
/// UTF-8), so data in freed pages or not yet checkpointed counts too.
pub async fn dump_database(url: &str) -> String {
    use sqlx::Row as _;
    let mut out = String::new();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(!tables.is_empty(), "no tables in {url}");
        for t in tables {
            let cols: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                    .bind(&t)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let row_text = cols
                .iter()
                .map(|c| format!("COALESCE(CAST(\"{c}\" AS TEXT), '')"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let rows = sqlx::query(&format!("SELECT {row_text} FROM \"{t}\""))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for r in rows {
                let v: Vec<u8> = r.try_get_unchecked(0).unwrap();
                out.push_str(&format!("{t}: {}\n", String::from_utf8_lossy(&v)));
            }
        }
        let file = rest.split('?').next().unwrap();
        for f in [file.to_owned(), format!("{file}-wal")] {
            if let Ok(bytes) = std::fs::read(&f) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             ORDER BY table_name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(!tables.is_empty(), "no tables in {url}");
        for t in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT CAST(r AS text) FROM \"{t}\" AS r"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            for r in rows {
                out.push_str(&format!("{t}: {r}\n"));
            }
        }
    }
    out
}

/// Test databases of processes that have exited are dropped, so runs do not pile up.
async fn drop_stale_databases(conn: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'ponte\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// A running cloud on a fresh database, with institutions 2 and 3 (client 1).
pub struct TestCloud {
    pub cloud: Cloud,
    /// The remote-UI gateway, on its own origin as in production.
    pub gateway_addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
    /// The database the cloud runs on (for [`dump_database`]).
    pub database_url: String,
    pub http: reqwest::Client,
    users: UserAuth,
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Its own, unique to it (keys, connector configs): nothing else reads it after.
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl TestCloud {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut CloudOptions)) -> Self {
        init_logging();
        let data_dir = std::env::temp_dir().join(unique("ponte-cloud"));
        let mut opts = CloudOptions::new(&data_dir);
        let database_url = fresh_database(backend).await;
        opts.database = Some(database_url.clone());
        opts.keys = Some(KeyFiles {
            connector_private_pem: CONNECTOR_KEY.to_vec(),
            connector_public_pem: CONNECTOR_PUB.to_vec(),
            user_secret: USER_SECRET.to_vec(),
        });
        opts.api.heartbeat_flush = std::time::Duration::from_millis(200);
        let api_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        opts.api.relay_public_url = format!("ws://{}/ws/connectors", relay_l.local_addr().unwrap());
        let gateway_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = gateway_l.local_addr().unwrap();
        opts.api.gateway_public_url = format!("http://{gateway_addr}");
        // Published routes on `<slug>.pub.localhost:<gateway port>`, as in the demo.
        opts.api.public_domain = Some(format!("pub.localhost:{}", gateway_addr.port()));
        tweak(&mut opts);
        let shutdown = CancellationToken::new();
        let cloud = ponte::start(opts, api_l, relay_l, shutdown.clone())
            .await
            .expect("cloud starts");
        cloud
            .serve_gateway(gateway_l, shutdown.child_token())
            .expect("gateway starts");
        let s = &cloud.store;
        s.upsert_client(1, "Cliente Um").await.unwrap();
        s.upsert_institution(1, 2, "Colégio Exemplo").await.unwrap();
        s.upsert_institution(1, 3, "Outra Escola").await.unwrap();
        Self {
            cloud,
            gateway_addr,
            shutdown,
            data_dir,
            database_url,
            http: reqwest::Client::new(),
            users: UserAuth::new(UserKey::Hs256(USER_SECRET.to_vec())).unwrap(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.cloud.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.cloud.api_addr)
    }

    /// A user token for `user` granting `tenants` (or everything, with `admin`).
    pub fn user_token(&self, user: i32, tenants: &[i64], admin: bool) -> String {
        self.users
            .mint(&UserClaims {
                sub: json!(user),
                tenants: tenants.to_vec(),
                admin,
                exp: crate::now_s() + 3600,
                name: Some(format!("Usuária {user}")),
                email: None,
            })
            .unwrap()
    }

    /// Calls the API as `token`; returns status, headers and JSON body (Null if none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, headers, json)
    }

    /// Opens a remote session on equipment `eid` of `tid` as `user`, through the API:
    /// (session id, launch URL).
    pub async fn remote_session(&self, user: i32, tid: i64, eid: i32) -> (String, String) {
        let token = self.user_token(user, &[tid], false);
        let (s, _, created) = self
            .call(
                "POST",
                &format!("/api/instituicao/{tid}/equipamento/{eid}/remoto/sessoes"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(s, 201, "{created}");
        (
            created["sessionId"].as_str().unwrap().to_owned(),
            created["url"].as_str().unwrap().to_owned(),
        )
    }

    /// Follows a launch URL as a browser would and returns the `Cookie` header value that
    /// carries the session's grant.
    pub async fn launch(&self, launch_url: &str) -> String {
        let resp = self.launch_response(launch_url).await;
        assert_eq!(resp.status(), 303);
        let set = resp.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    /// A launch URL as a browser opens it: the GET answers a page that spends nothing
    /// (checked here), whose form then POSTs to the same URL; that POST's response
    /// (303 into the session with the grant cookie, or the refusal), not followed.
    /// `resolve`: a session host (host mode) and where it is.
    /// A browser's WebSocket to `/remote/s/{sid}/feed` with the session's `grant` cookie,
    /// opened through the hostile connector `peer`: its WS_OPEN is answered WS_OPENED.
    /// Returns the browser's socket and the tunnel stream id.
    pub async fn device_websocket(
        &self,
        peer: &mut crate::legacy::LegacyPeer,
        sid: &str,
        grant: &str,
    ) -> (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        String,
    ) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/remote/s/{sid}/feed", self.gateway_addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", grant.parse().unwrap());
        let connecting = tokio::spawn(tokio_tungstenite::connect_async(req));
        let open = tokio::time::timeout(std::time::Duration::from_secs(10), peer.requests.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(open["type"], "WS_OPEN", "{open}");
        let stream_id = open["streamId"].as_str().unwrap().to_owned();
        peer.send_json(json!({"type": "WS_OPENED", "streamId": stream_id}))
            .await;
        let (ws, _) = connecting.await.unwrap().unwrap();
        (ws, stream_id)
    }

    pub async fn launch_response(&self, launch_url: &str) -> reqwest::Response {
        let host = url::Url::parse(launch_url)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, self.gateway_addr)
            .build()
            .unwrap();
        let page = http.get(launch_url).send().await.unwrap();
        assert_eq!(page.status(), 200, "a launch link's GET is a page");
        assert!(page.headers().get("set-cookie").is_none());
        let html = page.text().await.unwrap();
        assert!(html.contains("<form method=post"), "{html}");
        http.post(launch_url).send().await.unwrap()
    }

    /// Signs `token` in to the console as a browser does (`POST /entrar`): the `Cookie`
    /// header value and the login key the console's script keeps (sent as `_login` with
    /// every POST).
    pub async fn console_login(&self, token: &str) -> ConsoleLogin {
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(self.url("/entrar"))
            .header("origin", self.url(""))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cookie = resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = resp.text().await.unwrap();
        let key = page
            .split("data-key=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no login key: {page}"))
            .to_owned();
        ConsoleLogin { cookie, key }
    }

    /// Registers equipment `eid` in `tid`, reached through the connector at `base_url`.
    pub async fn add_equipment(&self, tid: i32, eid: i32, base_url: &str, addon: bool) {
        self.store()
            .put_equipment(&store::Equipment {
                id: eid,
                tenant_id: tid,
                name: format!("Catraca {eid}"),
                brand: None,
                model: None,
                ip: None,
                active: true,
                uses_addon: addon,
                config: Some(store::Json(EquipmentConfig {
                    local_base_url: Some(base_url.into()),
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
    }

    /// The console's page of institution `tid`, signed in as `user_token`.
    pub async fn console_page(&self, tid: i32, user_token: &str) -> String {
        let login = self.console_login(user_token).await;
        reqwest::Client::new()
            .get(self.url(&format!("/instituicao/{tid}")))
            .header("cookie", login.cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Pairs a connector for `tid` the way an operator does: the admin asks for a code,
    /// `ponte-connector pair --server … --code …` claims it and writes the config file,
    /// then the connector runs from that file. Waits until the relay has it.
    pub async fn pair_connector(&self, tid: i32) -> PairedConnector {
        let admin = self.user_token(1, &[tid.into()], false);
        let (status, _, body) = self
            .call(
                "POST",
                &format!("/api/instituicao/{tid}/connector/pair"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let code = body["pairingCode"].as_str().unwrap().to_owned();
        self.claim_and_run(tid, &code).await
    }

    /// The LAN half of pairing: `ponte-connector pair --server … --code <code>` (a code
    /// from the API or the console), then the connector runs from the file it wrote.
    /// Waits until the relay has it.
    pub async fn claim_and_run(&self, tid: i32, code: &str) -> PairedConnector {
        let code = code.to_owned();
        let config_path = self.data_dir.join(format!("connector-{tid}.toml"));
        let paired = ponte_connector::pair::with_code(
            &format!("http://{}", self.cloud.api_addr),
            &code,
            "Servidor Portaria",
            &config_path,
        )
        .await
        .expect("pairing succeeds");
        let connector_id = paired.connector_id.clone();
        let mut file = ponte_connector::config::FileConfig::load(&config_path, true).unwrap();
        file.health_listen = Some("127.0.0.1:0".into());
        file.backoff_initial_ms = Some(20);
        file.backoff_max_ms = Some(200);
        let cfg =
            ponte_connector::config::Config::from_file_config(file, Some(config_path.clone()))
                .unwrap();
        let connector = spawn_connector(cfg).await;
        let relay = self.cloud.relay.clone();
        let id = connector_id.clone();
        crate::wait_until(std::time::Duration::from_secs(10), move || {
            ponte_core::Router::is_online(&relay, &id)
        })
        .await;
        // And recorded: the connect is written by a batch a moment later, and a page
        // read before it would show the live ONLINE with the row's "never" heartbeat.
        let store = Arc::clone(self.store());
        crate::wait_for(
            std::time::Duration::from_secs(10),
            "the connect recorded",
            || {
                let store = Arc::clone(&store);
                async move {
                    let row = store.connector_of(tid).await.ok().flatten();
                    row.is_some_and(|c| c.last_heartbeat.is_some())
                }
            },
        )
        .await;
        PairedConnector {
            connector,
            connector_id,
            config_path,
            code,
        }
    }
}

impl TestCloud {
    /// A connector for `tid` that the test drives frame by frame
    /// ([`crate::legacy::LegacyPeer::hostile`], saying HELLO with `capabilities`): paired
    /// through the real flow, then the real connector stops and the raw peer connects with
    /// a token of its own. Waits until the API reports it ONLINE.
    pub async fn hostile_connector(
        &self,
        tid: i32,
        capabilities: &[&str],
    ) -> crate::legacy::LegacyPeer {
        self.raw_connector(tid, Some(capabilities)).await
    }

    /// The original Node connector's behaviour for `tid` ([`crate::legacy::LegacyPeer`]
    /// in auto mode: no HELLO, requests executed on the device with their headers as
    /// given), paired like [`TestCloud::hostile_connector`].
    pub async fn legacy_connector(&self, tid: i32) -> crate::legacy::LegacyPeer {
        self.raw_connector(tid, None).await
    }

    async fn raw_connector(
        &self,
        tid: i32,
        capabilities: Option<&[&str]>,
    ) -> crate::legacy::LegacyPeer {
        let paired = self.pair_connector(tid).await;
        let con: i32 = paired.connector_id.parse().unwrap();
        drop(paired);
        let relay = self.cloud.relay.clone();
        let id = con.to_string();
        crate::wait_until(std::time::Duration::from_secs(10), move || {
            !ponte_core::Router::is_online(&relay, &id)
        })
        .await;
        let minted = self.cloud.api.issuer.mint(con, 1, tid);
        self.store()
            .set_token(con, &minted.jti, minted.expires_at)
            .await
            .unwrap();
        let url = format!("ws://{}/ws/connectors", self.cloud.relay_addr);
        let peer = match capabilities {
            Some(caps) => crate::legacy::LegacyPeer::hostile(&url, &minted.token, caps).await,
            None => crate::legacy::LegacyPeer::connect(&url, &minted.token, true).await,
        };
        let admin = self.user_token(1, &[tid.into()], false);
        crate::wait_for(
            std::time::Duration::from_secs(10),
            "the raw connector to be ONLINE",
            || async {
                let (_, _, b) = self
                    .call(
                        "GET",
                        &format!("/api/instituicao/{tid}/connector/status"),
                        Some(&admin),
                        None,
                    )
                    .await;
                b["status"] == "ONLINE"
            },
        )
        .await;
        peer
    }
}

/// A console sign-in: `cookie` (`ponte_console=…`, for the `Cookie` header) and the
/// login key bound to it.
#[derive(Debug, Clone)]
pub struct ConsoleLogin {
    pub cookie: String,
    pub key: String,
}

pub struct PairedConnector {
    pub connector: TestConnector,
    pub connector_id: String,
    pub config_path: PathBuf,
    /// The pairing code it used (already spent).
    pub code: String,
}

impl PairedConnector {
    /// The token currently in the connector's config file.
    pub fn token_in_file(&self) -> String {
        let f = ponte_connector::config::FileConfig::load(&self.config_path, true).unwrap();
        f.token.unwrap().expose().to_owned()
    }
}

/// A cloud whose institution 2 has equipment 100 at `base_url` behind a real connector,
/// and a launched session on it: (cloud, connector, session id, grant cookie).
pub async fn launched_session(
    base_url: &str,
    tweak: impl FnOnce(&mut ponte::CloudOptions),
) -> (TestCloud, PairedConnector, String, String) {
    let cloud = TestCloud::start_with(Backend::Sqlite, tweak).await;
    cloud.add_equipment(2, 100, base_url, true).await;
    let paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    (cloud, paired, sid, grant)
}
