//! The store: one [`Store`] trait over the data model of `schema.prisma`, with one SQL
//! implementation ([`SqlStore`]) that runs on SQLite (the embedded default) and on
//! PostgreSQL (production). The same statements run on both; the conformance suite in
//! `tests/tests/store.rs` runs against both.
//!
//! Time is always passed in by the caller (UTC, millisecond precision, as PostgreSQL's
//! `timestamp(3)` keeps it), so expiry logic is testable and both backends agree.

mod cache;
mod sql;

pub use cache::CachedStore;
pub use sql::SqlStore;
pub use sqlx::types::Json;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A timestamp as stored: UTC, millisecond precision.
pub type Ts = NaiveDateTime;

/// Now, truncated to what the database keeps.
pub fn now() -> Ts {
    Utc::now().naive_utc().trunc_subsecs(3)
}

/// RFC 3339 with milliseconds and `Z`, for JSON.
pub fn rfc3339(ts: Ts) -> String {
    DateTime::<Utc>::from_naive_utc_and_offset(ts, Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("unsupported database URL {0:?}: use sqlite:… or postgres://…")]
    Url(String),
}

impl StoreError {
    /// The engine cannot serve now (down, unreachable, disk full, locked, pool
    /// exhausted): the caller answers 503 and may retry; nothing about the request is
    /// wrong. Everything else is a bug or a conflict.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => {
                let code = d.code().unwrap_or_default();
                match self.engine_of(d.as_ref()) {
                    // SQLite primary result codes (extended codes keep them in the low
                    // byte): BUSY 5, LOCKED 6, NOMEM 7, READONLY 8, IOERR 10, FULL 13,
                    // CANTOPEN 14.
                    Engine::Sqlite => code
                        .parse::<i32>()
                        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14)),
                    // SQLSTATE classes: 08 connection exception, 53 insufficient
                    // resources (53100 disk full), 57P0x operator intervention
                    // (shutdown, cannot connect now), 58 system error (I/O).
                    Engine::Postgres => {
                        code.starts_with("08")
                            || code.starts_with("53")
                            || code.starts_with("57P")
                            || code.starts_with("58")
                    }
                }
            }
            _ => false,
        }
    }

    fn engine_of(&self, d: &dyn sqlx::error::DatabaseError) -> Engine {
        match d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            Some(_) => Engine::Postgres,
            None => Engine::Sqlite,
        }
    }
}

enum Engine {
    Sqlite,
    Postgres,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "\"ENUM_CONNECTOR_STATUS\"")]
pub enum ConnectorStatus {
    ONLINE,
    OFFLINE,
    PAIRING,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "\"ENUM_SESSAO_STATUS\"")]
pub enum SessionStatus {
    ATIVA,
    EXPIRADA,
    ENCERRADA,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Institution {
    #[sqlx(rename = "INSCodigo")]
    pub id: i32,
    #[sqlx(rename = "CLICodigo")]
    pub client_id: i32,
    #[sqlx(rename = "INSNome")]
    pub name: String,
    #[sqlx(rename = "INSAtivo")]
    pub active: bool,
}

/// `EQPConfig`: how the connector reaches the device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EquipmentConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_base_url: Option<String>,
    #[serde(default)]
    pub tls_insecure: bool,
    /// How long the device may take to start its answer (ms), for the gateway and
    /// proxy-http calls that name none; 1..=600000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Equipment {
    #[sqlx(rename = "EQPCodigo")]
    pub id: i32,
    #[sqlx(rename = "INSInstituicaoCodigo")]
    pub tenant_id: i32,
    #[sqlx(rename = "EQPDescricao")]
    pub name: String,
    #[sqlx(rename = "EQPMarca")]
    pub brand: Option<String>,
    #[sqlx(rename = "EQPModelo")]
    pub model: Option<String>,
    #[sqlx(rename = "EQPEnderecoIp")]
    pub ip: Option<String>,
    #[sqlx(rename = "EQPAtivo")]
    pub active: bool,
    #[sqlx(rename = "EQPUsaAddon")]
    pub uses_addon: bool,
    #[sqlx(rename = "EQPConfig")]
    pub config: Option<sqlx::types::Json<EquipmentConfig>>,
}

impl Equipment {
    /// Where the connector sends requests: `EQPConfig.localBaseUrl`, else `http://<EQPEnderecoIp>`.
    pub fn base_url(&self) -> Option<String> {
        let cfg = self.config.as_ref().map(|c| &c.0);
        cfg.and_then(|c| c.local_base_url.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| {
                self.ip
                    .as_ref()
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| format!("http://{ip}"))
            })
            .map(|u| u.trim_end_matches('/').to_owned())
    }

    /// The equipment's own response timeout (`EQPConfig.timeoutMs`).
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.config
            .as_ref()
            .and_then(|c| c.0.timeout_ms)
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis)
    }

    pub fn tls_insecure(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.0.tls_insecure)
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Connector {
    #[sqlx(rename = "CONCodigo")]
    pub id: i32,
    #[sqlx(rename = "CONNome")]
    pub name: String,
    /// `jti` of the current token; `None` when unpaired or not yet claimed.
    #[sqlx(rename = "CONToken")]
    pub token_id: Option<String>,
    /// `jti` of the token an automatic rotation replaced, accepted until the connector
    /// first connects with the new one (it may have failed to save it).
    #[sqlx(rename = "CONTokenAnterior")]
    pub previous_token_id: Option<String>,
    #[sqlx(rename = "CONTokenExpiraEm")]
    pub token_expires_at: Option<Ts>,
    #[sqlx(rename = "CONStatus")]
    pub status: ConnectorStatus,
    #[sqlx(rename = "CONUltimoHeartbeat")]
    pub last_heartbeat: Option<Ts>,
    #[sqlx(rename = "CONConectadoDesde")]
    pub connected_since: Option<Ts>,
    #[sqlx(rename = "CONVersao")]
    pub version: Option<String>,
    #[sqlx(rename = "CONMetadata")]
    pub metadata: Option<sqlx::types::Json<Value>>,
    #[sqlx(rename = "CLICodigo")]
    pub client_id: i32,
    #[sqlx(rename = "INSInstituicaoCodigo")]
    pub tenant_id: i32,
}

/// What a successful claim records about the connector.
#[derive(Debug, Clone)]
pub struct ClaimInfo {
    pub name: String,
    pub version: Option<String>,
    pub metadata: Option<Value>,
    pub token_id: String,
    pub token_expires_at: Ts,
}

/// Why a pairing code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefusal {
    Unknown,
    AlreadyUsed,
    Expired,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Session {
    #[sqlx(rename = "RMTSessionId")]
    pub id: String,
    #[sqlx(rename = "EQPCodigo")]
    pub equipment_id: i32,
    #[sqlx(rename = "CONCodigo")]
    pub connector_id: i32,
    #[sqlx(rename = "USRCodigo")]
    pub user_id: i32,
    #[sqlx(rename = "INSInstituicaoCodigo")]
    pub tenant_id: i32,
    #[sqlx(rename = "RMTStatus")]
    pub status: SessionStatus,
    #[sqlx(rename = "RMTExpiraEm")]
    pub expires_at: Ts,
    #[sqlx(rename = "RMTLimiteEm")]
    pub hard_limit: Ts,
    #[sqlx(rename = "RMTEncerradaEm")]
    pub ended_at: Option<Ts>,
    #[sqlx(rename = "RMTRequisicoes")]
    pub requests: i32,
    #[sqlx(rename = "RMTBytes")]
    pub bytes: i64,
    #[sqlx(rename = "createdAt")]
    pub created_at: Ts,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub equipment_id: i32,
    pub connector_id: i32,
    pub user_id: i32,
    pub tenant_id: i32,
    pub expires_at: Ts,
    pub hard_limit: Ts,
    /// SHA-256 (hex) of the one-time launch code.
    pub launch_hash: String,
    pub launch_expires_at: Ts,
}

/// A session row joined with who and what, for the audit list.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionListing {
    #[sqlx(flatten)]
    pub session: Session,
    #[sqlx(rename = "USRNome")]
    pub user_name: String,
    #[sqlx(rename = "EQPDescricao")]
    pub equipment_name: String,
}

/// A published route (`ROTRotaPublica`): paths of one device the public may reach on the
/// route's own origin.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PublicRoute {
    #[sqlx(rename = "ROTCodigo")]
    pub id: i32,
    #[sqlx(rename = "ROTSlug")]
    pub slug: String,
    #[sqlx(rename = "EQPCodigo")]
    pub equipment_id: i32,
    #[sqlx(rename = "INSInstituicaoCodigo")]
    pub tenant_id: i32,
    #[sqlx(rename = "USRCodigo")]
    pub user_id: Option<i32>,
    #[sqlx(rename = "ROTCaminhos")]
    pub paths: sqlx::types::Json<Vec<String>>,
    #[sqlx(rename = "ROTMetodos")]
    pub methods: sqlx::types::Json<Vec<String>>,
    #[sqlx(rename = "ROTWebsocket")]
    pub websocket: bool,
    #[sqlx(rename = "ROTRequisicoesPorMinuto")]
    pub requests_per_minute: i32,
    #[sqlx(rename = "ROTExpiraEm")]
    pub expires_at: Option<Ts>,
    #[sqlx(rename = "ROTRequisicoes")]
    pub requests: i32,
    #[sqlx(rename = "ROTBytes")]
    pub bytes: i64,
    #[sqlx(rename = "ROTUltimoUsoEm")]
    pub last_used_at: Option<Ts>,
    #[sqlx(rename = "createdAt")]
    pub created_at: Ts,
}

/// A route to publish; the slug is already checked and unique-looking.
#[derive(Debug, Clone)]
pub struct NewPublicRoute {
    pub slug: String,
    pub equipment_id: i32,
    pub tenant_id: i32,
    pub user_id: Option<i32>,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub websocket: bool,
    pub requests_per_minute: i32,
    pub expires_at: Option<Ts>,
}

/// Requests and bytes a route served since the last flush, and when it was last used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteUsage {
    pub route_id: i32,
    pub requests: i32,
    pub bytes: i64,
    pub last_used_at: Ts,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    /// When it happened (written later, in a batch).
    pub at: Ts,
    pub action: String,
    pub user_id: Option<i32>,
    pub tenant_id: i32,
    pub equipment_id: Option<i32>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub bytes: i64,
    pub duration_ms: Option<i32>,
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRecord {
    #[sqlx(rename = "AUDCodigo")]
    pub id: i32,
    #[sqlx(rename = "AUDAcao")]
    pub action: String,
    #[sqlx(rename = "USRCodigo")]
    pub user_id: Option<i32>,
    #[sqlx(rename = "INSInstituicaoCodigo")]
    pub tenant_id: i32,
    #[sqlx(rename = "EQPCodigo")]
    pub equipment_id: Option<i32>,
    #[sqlx(rename = "AUDMetodo")]
    pub method: Option<String>,
    #[sqlx(rename = "AUDCaminho")]
    pub path: Option<String>,
    #[sqlx(rename = "AUDStatus")]
    pub status: Option<i32>,
    #[sqlx(rename = "AUDBytes")]
    pub bytes: i64,
    #[sqlx(rename = "AUDDuracaoMs")]
    pub duration_ms: Option<i32>,
    #[sqlx(rename = "AUDDetalhe")]
    pub detail: Option<sqlx::types::Json<Value>>,
    #[sqlx(rename = "createdAt")]
    pub created_at: Ts,
}

/// Latest known liveness of one connector, written in batches (see `directory.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorLiveness {
    pub connector_id: i32,
    /// `Some(true)` connected at `at`, `Some(false)` disconnected at `at`.
    pub connected: Option<(bool, Ts)>,
    pub hello: Option<(Option<String>, Option<Value>)>,
    pub heartbeat: Option<Ts>,
}

/// Everything Ponte persists. Implementations must be usable from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs.
    fn backend(&self) -> &'static str;
    /// Reads and writes one row: `Ok` when the store can take writes now (`/ready`).
    async fn probe(&self) -> Result<()>;
    /// Closes the connections (at exit, after the last write).
    async fn close(&self);

    // -- tenants and users (the SaaS's tables) --
    async fn upsert_client(&self, id: i32, name: &str) -> Result<()>;
    /// Fails with `Conflict` when `client_id` does not exist.
    async fn upsert_institution(&self, client_id: i32, id: i32, name: &str) -> Result<()>;
    async fn institution(&self, id: i32) -> Result<Option<Institution>>;
    /// Records a user first seen in a valid JWT; does nothing if the id (or e-mail) exists.
    async fn ensure_user(&self, id: i32, name: &str, email: Option<&str>) -> Result<()>;

    // -- equipment --
    /// Creates or updates equipment `e.id` in `e.tenant_id`. `Conflict` when the id
    /// belongs to another institution (it is never moved across tenants).
    async fn put_equipment(&self, e: &Equipment) -> Result<Equipment>;
    async fn equipment(&self, tenant_id: i32, id: i32) -> Result<Option<Equipment>>;
    /// The institution's equipment, by id (at most `limit`).
    async fn list_equipment(&self, tenant_id: i32, limit: i64) -> Result<Vec<Equipment>>;

    // -- connector --
    async fn connector(&self, id: i32) -> Result<Option<Connector>>;
    async fn connector_of(&self, tenant_id: i32) -> Result<Option<Connector>>;
    /// Creates the institution's connector row if absent and marks it PAIRING unless it
    /// is ONLINE. `Conflict` when the institution does not exist.
    async fn ensure_connector(&self, tenant_id: i32) -> Result<Connector>;
    /// [`Store::ensure_connector`], then stores a pairing code (its SHA-256).
    async fn start_pairing(
        &self,
        tenant_id: i32,
        code_hash: &str,
        expires_at: Ts,
        user_id: Option<i32>,
    ) -> Result<Connector>;
    /// Uses a pairing code once. On success the connector gets `info`'s name, version,
    /// metadata and token id, and any other unused code of the institution is voided.
    async fn claim_pairing(
        &self,
        code_hash: &str,
        now: Ts,
        info: &ClaimInfo,
    ) -> Result<Result<Connector, ClaimRefusal>>;
    /// Replaces the connector's token id (renewal): every earlier token is revoked and
    /// unused pairing codes are voided (a claim would silently replace the new token).
    async fn set_token(
        &self,
        connector_id: i32,
        token_id: &str,
        expires_at: Ts,
    ) -> Result<Option<Connector>>;
    /// Replaces the token id only if it is still `old` (automatic rotation racing a
    /// renewal); `old` is revoked at once.
    async fn swap_token(
        &self,
        connector_id: i32,
        old: &str,
        new: &str,
        expires_at: Ts,
    ) -> Result<bool>;
    /// [`Store::swap_token`] for an automatic rotation: `old` stays valid until the
    /// connector first presents `new` ([`Store::token_is_current`] retires it then).
    async fn rotate_token(
        &self,
        connector_id: i32,
        old: &str,
        new: &str,
        expires_at: Ts,
    ) -> Result<bool>;
    /// Unpairs: token id cleared, status OFFLINE, unused pairing codes voided.
    async fn unpair(&self, tenant_id: i32, now: Ts) -> Result<Option<Connector>>;
    /// Whether `token_id` is the connector's token, or the one a rotation replaced and
    /// the new one has not been used yet. Presenting the current token retires the
    /// previous one.
    async fn token_is_current(&self, connector_id: i32, token_id: &str) -> Result<bool>;
    /// Applies a batch of liveness changes in one transaction.
    async fn record_liveness(&self, batch: &[ConnectorLiveness]) -> Result<()>;
    /// At start: nothing is connected to a process that just started.
    async fn mark_all_offline(&self) -> Result<u64>;
    /// Connectors whose token expires before `before` (rotation candidates).
    async fn tokens_expiring(&self, before: Ts) -> Result<Vec<Connector>>;

    // -- remote sessions --
    async fn create_session(&self, s: &NewSession) -> Result<Session>;
    async fn session(&self, id: &str) -> Result<Option<Session>>;
    /// Uses a launch code once (only while the session is ATIVA and the code fresh, and,
    /// with `session_id`, only if the code is that session's: otherwise it stays usable).
    async fn consume_launch(
        &self,
        launch_hash: &str,
        now: Ts,
        session_id: Option<&str>,
    ) -> Result<Option<Session>>;
    /// Slides the idle expiry (never past the session's hard limit).
    async fn extend_session(&self, id: &str, expires_at: Ts, now: Ts) -> Result<bool>;
    /// Adds request and byte counts (batched by the caller).
    async fn add_session_usage(&self, batch: &[(String, i32, i64)]) -> Result<()>;
    /// ATIVA → ENCERRADA. `None` when no such session in that tenant and equipment.
    async fn end_session(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: &str,
        now: Ts,
    ) -> Result<Option<Session>>;
    /// ATIVA sessions past their expiry → EXPIRADA. Returns their ids.
    async fn expire_sessions(&self, now: Ts) -> Result<Vec<String>>;
    async fn list_sessions(&self, tenant_id: i32, limit: i64) -> Result<Vec<SessionListing>>;

    // -- published routes --
    /// `Conflict` when the slug is taken.
    async fn create_route(&self, r: &NewPublicRoute) -> Result<PublicRoute>;
    async fn route_by_slug(&self, slug: &str) -> Result<Option<PublicRoute>>;
    /// The equipment's routes, oldest first.
    async fn list_routes(&self, tenant_id: i32, equipment_id: i32) -> Result<Vec<PublicRoute>>;
    /// Removes a route. `None` when no such route in that tenant and equipment.
    async fn delete_route(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: i32,
    ) -> Result<Option<PublicRoute>>;
    /// Adds request and byte counts and the last use (batched by the caller).
    async fn add_route_usage(&self, batch: &[RouteUsage]) -> Result<()>;

    // -- audit --
    /// Writes a batch of audit entries in one transaction (all or none).
    async fn audit(&self, batch: &[AuditEntry]) -> Result<()>;
    async fn list_audit(&self, tenant_id: i32, limit: i64) -> Result<Vec<AuditRecord>>;
}

/// Opens the store at `url` (`sqlite:path?mode=rwc`, `sqlite::memory:`, `postgres://…`)
/// and applies migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    Ok(std::sync::Arc::new(SqlStore::connect(url).await?))
}
