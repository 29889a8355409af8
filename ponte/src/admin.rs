//! `ponte admin`: tenants, equipment and user tokens without SQL, against the same store
//! and keys as `ponte serve` with the same settings.

use crate::config::{ServeLayer, ServeSettings};
use crate::{CloudOptions, Failure};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use ponte_api::auth::{KeyFiles, UserAuth, UserClaims, UserKey};
use ponte_api::store::{self, EquipmentConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct StoreArgs {
    /// The `ponte serve` settings file, for its data_dir, database and user-JWT key
    #[arg(long, env = "PONTE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: SQLite database and signing keys [default: ./ponte-data]
    #[arg(long, env = "PONTE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (postgres://user@host/db) [default: SQLite in the data directory]
    #[arg(long, env = "PONTE_DATABASE", value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub cmd: AdminCmd,
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Institutions (tenants).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Devices.
    #[command(subcommand)]
    Equipment(EquipmentCmd),
    /// Print a user JWT signed with the data directory's key.
    UserToken(UserTokenArgs),
}

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Add (or rename) a client and one of its institutions.
    Add {
        #[arg(long)]
        cliente: i32,
        #[arg(long)]
        instituicao: i32,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum EquipmentCmd {
    /// Register (or update) a device of an institution.
    Add {
        #[arg(long)]
        instituicao: i32,
        #[arg(long)]
        id: i32,
        #[arg(long)]
        name: String,
        /// Reach it through the institution's connector.
        #[arg(long)]
        addon: bool,
        /// The device as the connector sees it, e.g. http://192.168.1.50
        #[arg(long)]
        base_url: String,
        /// Accept the device's self-signed certificate.
        #[arg(long)]
        tls_insecure: bool,
    },
}

#[derive(Args)]
pub struct UserTokenArgs {
    #[arg(long)]
    pub user: i32,
    /// Institution the token grants (repeatable).
    #[arg(long, required_unless_present = "admin")]
    pub instituicao: Vec<i64>,
    /// Grant every institution.
    #[arg(long)]
    pub admin: bool,
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

pub async fn run(a: AdminArgs) -> Result<(), Failure> {
    // The same store and keys as `ponte serve` with the same settings.
    let flags = ServeLayer {
        data_dir: a.store.data_dir.clone(),
        database: a.store.database.clone(),
        ..Default::default()
    };
    let cfg = ServeSettings::resolve(flags, a.store.config.as_deref()).map_err(Failure::Usage)?;
    let mut opts = CloudOptions::new(&cfg.data_dir);
    opts.database = cfg.database.clone();
    if let AdminCmd::UserToken(t) = &a.cmd {
        let secret = match (&cfg.user_jwt_secret_file, &cfg.user_jwt_public_key) {
            (Some(f), _) => std::fs::read_to_string(f)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", f.display())))?
                .trim()
                .as_bytes()
                .to_vec(),
            (None, Some(_)) => {
                return Err(Failure::Usage(
                    "user tokens are signed with the SaaS's RS256 key (user_jwt_public_key); \
                     ponte cannot mint them"
                        .into(),
                ))
            }
            (None, None) => KeyFiles::load_or_create(&opts.data_dir)?.user_secret,
        };
        let auth = UserAuth::new(UserKey::Hs256(secret)).context("loading the user token key")?;
        let exp = chrono::Utc::now().timestamp() as u64 + t.ttl.as_secs();
        let token = auth
            .mint(&UserClaims {
                sub: serde_json::json!(t.user),
                tenants: t.instituicao.clone(),
                admin: t.admin,
                exp,
                name: None,
                email: None,
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{token}");
        return Ok(());
    }
    let url = opts.database_url();
    if opts.database.is_none() {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    }
    let store = store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", crate::redact(&url)))?;
    match a.cmd {
        AdminCmd::Tenant(TenantCmd::Add {
            cliente,
            instituicao,
            name,
        }) => {
            store
                .upsert_client(cliente, &name)
                .await
                .map_err(anyhow::Error::from)?;
            store
                .upsert_institution(cliente, instituicao, &name)
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            println!("institution {instituicao} ({name}) of client {cliente} is ready");
        }
        AdminCmd::Equipment(EquipmentCmd::Add {
            instituicao,
            id,
            name,
            addon,
            base_url,
            tls_insecure,
        }) => {
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(Failure::Usage(format!(
                    "--base-url must be http:// or https://, not {base_url:?}"
                )));
            }
            if store
                .institution(instituicao)
                .await
                .map_err(anyhow::Error::from)?
                .is_none()
            {
                return Err(Failure::Usage(format!(
                    "institution {instituicao} does not exist (ponte admin tenant add …)"
                )));
            }
            store
                .put_equipment(&store::Equipment {
                    id,
                    tenant_id: instituicao,
                    name: name.clone(),
                    brand: None,
                    model: None,
                    ip: None,
                    active: true,
                    uses_addon: addon,
                    config: Some(sqlx_json(EquipmentConfig {
                        local_base_url: Some(base_url.trim_end_matches('/').to_owned()),
                        tls_insecure,
                        ..Default::default()
                    })),
                })
                .await
                .map_err(|e| Failure::Usage(e.to_string()))?;
            println!("equipment {id} ({name}) registered in institution {instituicao}");
        }
        AdminCmd::UserToken(_) => unreachable!("handled above"),
    }
    Ok(())
}

fn sqlx_json<T>(t: T) -> ponte_api::store::Json<T> {
    ponte_api::store::Json(t)
}
