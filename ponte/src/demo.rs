//! `ponte demo`: the whole product on one machine, set up the way an operator would —
//! the cloud on the embedded SQLite default, simulated ControlID turnstiles (devsim) on
//! the "LAN" (two with the remote-access addon, one without), and a connector paired through the real flow (the API issues
//! a pairing code, `ponte-connector pair` claims it over HTTP, the connector dials the
//! relay). A POS-like host on the same LAN gets a published route, `/approve/*` on
//! `<slug>.pub.localhost` (browsers resolve `*.localhost` to loopback), as the Nexora POS
//! uses Cloudflare Tunnel for today. It ends with a one-time link that signs the browser
//! in to the console as the demo admin.

use crate::{Cloud, CloudOptions};
use anyhow::Context as _;
use ponte_api::auth::{KeyFiles, UserAuth, UserClaims, UserKey};
use ponte_api::store::{self, EquipmentConfig};
use ponte_devsim::Devsim;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The demo's institution and admin.
pub const CLIENT: i32 = 1;
pub const INSTITUTION: i32 = 2;
pub const ADMIN_USER: i32 = 1;
/// The POS's equipment id, the slug of its route and the quote in the printed link.
pub const POS_EQUIPMENT: i32 = 110;
pub const POS_SLUG: &str = "nexora-pos";
pub const POS_QUOTE: &str = "Q-1001";
/// Published routes live under this name (with the gateway's port).
pub const PUBLIC_DOMAIN: &str = "pub.localhost";

/// What `ponte demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the database, keys and connector config live (see [`temporary_dir`]).
    pub data_dir: PathBuf,
    /// The directory is the demo's own: removed when it stops.
    pub temporary: bool,
    pub api_listen: String,
    pub relay_listen: String,
    pub gateway_listen: String,
    /// Each remote session on its own origin (`s-<id>.localhost`).
    pub remote_host_mode: bool,
}

/// A running demo.
pub struct Demo {
    pub cloud: Cloud,
    pub gateway_addr: std::net::SocketAddr,
    /// The simulated turnstiles, as (equipment id, device).
    pub devices: Vec<(i32, Devsim)>,
    /// The POS-like host and its equipment id.
    pub pos: (i32, Devsim),
    /// A quote's approval link on the POS's published route (anyone may open it).
    pub public_url: String,
    /// `http://…/entrar/<code>`: signs the browser in as the demo admin, once.
    pub console_url: String,
    /// A user JWT for the demo admin (8 h), for `curl` against the API.
    pub admin_token: String,
    /// The pairing code the connector claimed.
    pub pairing_code: String,
    pub data_dir: PathBuf,
    temporary: bool,
    _connector: ponte_connector::Handle,
}

impl Demo {
    /// Removes the data directory if the demo made it.
    pub fn cleanup(&self) {
        cleanup(&self.data_dir, self.temporary);
    }
}

/// A fresh directory name under the system's temporary directory.
pub fn temporary_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "ponte-demo-{}-{}",
        std::process::id(),
        ponte_api::auth::random_id()
    ))
}

/// Removes `dir` if it is the demo's own.
pub fn cleanup(dir: &std::path::Path, temporary: bool) {
    if temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Marks a directory as the demo's, so a later run may reuse it.
const MARKER: &str = ".ponte-demo";

/// A directory the demo may write: new, empty, or one a demo made. The demo renames
/// institution 2 and re-pairs its connector: pointed at a real installation's data
/// directory it would cut that installation's connector off.
fn claim_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let used = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if used && !dir.join(MARKER).exists() {
        anyhow::bail!(
            "{} is not a demo data directory (it has files, and no {MARKER}); give the demo a new one",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by `ponte demo`\n")
        .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(())
}

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} ({what}; choose another with --{what}-listen)")
    })
}

/// Starts everything; runs until `shutdown`.
pub async fn start(opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<Demo> {
    let (data_dir, temporary) = (opts.data_dir.clone(), opts.temporary);
    // Listeners first: a port in use is the likeliest failure, and leaves nothing behind.
    let api_l = bind("api", &opts.api_listen).await?;
    let relay_l = bind("relay", &opts.relay_listen).await?;
    let gateway_l = bind("gateway", &opts.gateway_listen).await?;
    claim_dir(&data_dir)?;
    let gateway_addr = gateway_l.local_addr()?;
    let mut cloud_opts = CloudOptions::new(&data_dir);
    cloud_opts.api.relay_public_url = format!("ws://{}/ws/connectors", relay_l.local_addr()?);
    // Host mode needs a name with subdomains: browsers resolve *.localhost to loopback.
    cloud_opts.api.gateway_public_url = match opts.remote_host_mode {
        true => format!("http://localhost:{}", gateway_addr.port()),
        false => format!("http://{gateway_addr}"),
    };
    cloud_opts.api.remote_host_mode = opts.remote_host_mode;
    // Published routes get names of their own, beside host mode's s-<id>.localhost.
    cloud_opts.api.public_domain = Some(format!("{PUBLIC_DOMAIN}:{}", gateway_addr.port()));
    let cloud = crate::start(cloud_opts, api_l, relay_l, shutdown.clone()).await?;
    cloud.serve_gateway(gateway_l, shutdown.child_token())?;
    let api_url = format!("http://{}", cloud.api_addr);

    // The SaaS's side: a client, an institution, its turnstiles.
    let s = &cloud.store;
    s.upsert_client(CLIENT, "Cliente Demo").await?;
    s.upsert_institution(CLIENT, INSTITUTION, "Colégio Exemplo")
        .await?;
    let mut devices = Vec::new();
    for (id, name, addon) in [
        (100, "Catraca Entrada", true),
        (101, "Catraca Saída", true),
        (102, "Catraca Bloco B (sem addon)", false),
    ] {
        let device = Devsim::spawn(name).await.context("starting devsim")?;
        s.put_equipment(&store::Equipment {
            id,
            tenant_id: INSTITUTION,
            name: name.into(),
            brand: Some("ControlID".into()),
            model: Some("iDBlock (devsim)".into()),
            ip: Some(device.base_url().trim_start_matches("http://").into()),
            active: true,
            uses_addon: addon,
            config: Some(store::Json(EquipmentConfig {
                login: Some("admin".into()),
                modo: Some("catraca".into()),
                local_base_url: Some(device.base_url()),
                ..Default::default()
            })),
        })
        .await?;
        devices.push((id, device));
    }

    let pos = Devsim::spawn_pos("Nexora POS")
        .await
        .context("starting the POS host")?;
    s.put_equipment(&store::Equipment {
        id: POS_EQUIPMENT,
        tenant_id: INSTITUTION,
        name: "Nexora POS".into(),
        brand: Some("Nexora".into()),
        model: Some("POS (devsim)".into()),
        ip: Some(pos.base_url().trim_start_matches("http://").into()),
        active: true,
        uses_addon: true,
        config: Some(store::Json(EquipmentConfig {
            local_base_url: Some(pos.base_url()),
            ..Default::default()
        })),
    })
    .await?;

    // The demo admin, signed with the data directory's user key as the SaaS would.
    let keys = KeyFiles::load_or_create(&data_dir)?;
    let users = UserAuth::new(UserKey::Hs256(keys.user_secret.clone()))?;
    let admin_token = users
        .mint(&UserClaims {
            sub: serde_json::json!(ADMIN_USER),
            tenants: vec![INSTITUTION.into()],
            admin: false,
            exp: chrono::Utc::now().timestamp() as u64 + 8 * 3600,
            name: Some("Admin Demo".into()),
            email: Some("admin@demo.invalid".into()),
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Pairing, as an operator does it: the console's button is POST …/connector/pair.
    let resp = reqwest::Client::new()
        .post(format!(
            "{api_url}/api/instituicao/{INSTITUTION}/connector/pair"
        ))
        .bearer_auth(&admin_token)
        .send()
        .await
        .context("asking the API for a pairing code")?;
    anyhow::ensure!(
        resp.status() == 201,
        "pairing code refused: {}",
        resp.status()
    );
    let body: serde_json::Value = resp.json().await?;
    let code = body["pairingCode"]
        .as_str()
        .context("no pairingCode in the answer")?
        .to_owned();
    // … and on the LAN: `ponte-connector pair --server … --code …`, then `run`.
    let config_path = data_dir.join("connector.toml");
    let paired = ponte_connector::pair::with_code(
        &api_url,
        &code,
        "Servidor da Portaria (demo)",
        &config_path,
    )
    .await
    .context("pairing the demo connector")?;
    let mut file = ponte_connector::config::FileConfig::load(&config_path, true)?;
    // Loopback only, and no fixed health port to collide with a real connector.
    file.health_listen = Some("127.0.0.1:0".into());
    file.allowed_targets = Some(vec!["127.0.0.0/8".into()]);
    let cfg = ponte_connector::config::Config::from_file_config(file, Some(config_path))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let connector = ponte_connector::start(
        cfg,
        ponte_connector::Timing::default(),
        shutdown.child_token(),
    )
    .await
    .context("starting the demo connector")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !ponte_core::Router::is_online(&cloud.relay, &paired.connector_id) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the demo connector did not come online within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The POS's quote links, public as the SaaS would publish them.
    let resp = reqwest::Client::new()
        .post(format!(
            "{api_url}/api/instituicao/{INSTITUTION}/equipamento/{POS_EQUIPMENT}/rotas-publicas"
        ))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({
            "slug": POS_SLUG, "paths": ["/approve/*"], "methods": ["GET", "POST"],
            "requestsPerMinute": 120,
        }))
        .send()
        .await
        .context("publishing the POS route")?;
    anyhow::ensure!(
        resp.status() == 201,
        "publishing the POS route refused: {}",
        resp.status()
    );
    let route: serde_json::Value = resp.json().await?;
    let public_url = format!(
        "{}/approve/{POS_QUOTE}",
        route["url"].as_str().context("no url in the answer")?
    );
    let link = cloud
        .api
        .console_link(admin_token.clone(), Duration::from_secs(15 * 60));
    Ok(Demo {
        console_url: format!("{api_url}{link}"),
        gateway_addr,
        cloud,
        devices,
        pos: (POS_EQUIPMENT, pos),
        public_url,
        admin_token,
        pairing_code: code,
        data_dir,
        temporary,
        _connector: connector,
    })
}
