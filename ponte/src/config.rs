//! `ponte serve`'s settings: flags > environment (`PONTE_…`, both handled by clap) >
//! the TOML file given with `--config` > defaults. The file's keys are the flags' long
//! names with `_` (`api_listen = "0.0.0.0:8000"`); an unknown key is an error.
//! [`ServeSettings::resolve`] merges the layers and validates, so a mistake is one line
//! naming the setting, before anything starts.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One layer of settings: what the flags and environment gave (clap), or what the file
/// says (serde). Every setting of `ponte serve` is a field here, once: its flag, its
/// variable, its help and its file key.
#[derive(Debug, Clone, Default, clap::Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeLayer {
    /// Data directory: SQLite database and signing keys [default: ./ponte-data]
    #[arg(long, env = "PONTE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, postgres://user@host/db or sqlite:FILE [default: SQLite in the data
    /// directory]
    #[arg(long, env = "PONTE_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// NATS URL for cluster routing (accepted, not used yet: this node routes only to
    /// connectors connected to it)
    #[arg(long, env = "PONTE_NATS", value_name = "URL")]
    pub nats: Option<String>,
    /// Roles to run, comma-separated: api, relay, gateway; api and relay always together
    /// until the NATS bus exists [default: api,relay,gateway]
    #[arg(long, env = "PONTE_ROLES", value_name = "LIST", value_parser = Roles::parse)]
    pub roles: Option<Roles>,
    /// API and console listen address [default: 127.0.0.1:8000]
    #[arg(long, env = "PONTE_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<String>,
    /// Relay (/ws/connectors) listen address [default: 127.0.0.1:8001]
    #[arg(long, env = "PONTE_RELAY_LISTEN", value_name = "ADDR")]
    pub relay_listen: Option<String>,
    /// Remote-UI gateway listen address [default: 127.0.0.1:8002]
    #[arg(long, env = "PONTE_GATEWAY_LISTEN", value_name = "ADDR")]
    pub gateway_listen: Option<String>,
    /// Relay URL as connectors reach it [default: ws://<relay-listen>/ws/connectors]
    #[arg(long, env = "PONTE_RELAY_PUBLIC_URL", value_name = "URL")]
    pub relay_public_url: Option<String>,
    /// Gateway origin as browsers reach it; https:// makes the grant cookie Secure
    /// [default: http://<gateway-listen>]
    #[arg(long, env = "PONTE_GATEWAY_PUBLIC_URL", value_name = "URL")]
    pub gateway_public_url: Option<String>,
    /// Give each remote session its own origin, s-<session>.<gateway host> (needs
    /// wildcard DNS and certificate; *.localhost works without either) [default: false]
    #[arg(long, env = "PONTE_REMOTE_HOST_MODE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub remote_host_mode: Option<bool>,
    /// Serve published routes on <slug>.<DOMAIN> (a wildcard DNS name with an optional
    /// port, e.g. pub.example.com; *.localhost works without DNS) [default: none]
    #[arg(long, env = "PONTE_PUBLIC_DOMAIN", value_name = "DOMAIN")]
    pub public_domain: Option<String>,
    /// Verify user JWTs with this HS256 secret (file) [default: the data directory's]
    #[arg(long, env = "PONTE_USER_JWT_SECRET_FILE", value_name = "FILE")]
    pub user_jwt_secret_file: Option<PathBuf>,
    /// Verify user JWTs with this RS256 public key (PEM file)
    #[arg(long, env = "PONTE_USER_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub user_jwt_public_key: Option<PathBuf>,
    /// Connector token lifetime; rotated automatically a week before expiry [default: 90d]
    #[arg(long, env = "PONTE_CONNECTOR_TOKEN_TTL", value_name = "DURATION")]
    pub connector_token_ttl: Option<String>,
    /// Trust the last X-Forwarded-For hop as the client address (behind nginx)
    /// [default: false]
    #[arg(long, env = "PONTE_TRUST_FORWARDED_FOR", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub trust_forwarded_for: Option<bool>,
    /// On SIGTERM, how long requests in flight (downloads included) may take to finish
    /// before they are cut [default: 30s]
    #[arg(long, env = "PONTE_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// A remote session ends after this long unused (sliding); 0 = never [default: 10m]
    #[arg(long, env = "PONTE_SESSION_IDLE_TTL", value_name = "DURATION")]
    pub session_idle_ttl: Option<String>,
    /// A remote session ends this long after it was opened, used or not; 0 = no cap
    /// [default: 4h]
    #[arg(long, env = "PONTE_SESSION_MAX_TTL", value_name = "DURATION")]
    pub session_max_ttl: Option<String>,
    /// Requests per second per remote session; 0 = no limit [default: 50]
    #[arg(long, env = "PONTE_SESSION_RATE_PER_SECOND", value_name = "N")]
    pub session_rate_per_second: Option<f64>,
    /// Requests a remote session may make at once above its rate; 0 = no limit
    /// [default: 200]
    #[arg(long, env = "PONTE_SESSION_RATE_BURST", value_name = "N")]
    pub session_rate_burst: Option<u32>,
    /// Requests per second per connector (gateway and proxy-http together); 0 = no
    /// limit [default: 200]
    #[arg(long, env = "PONTE_CONNECTOR_RATE_PER_SECOND", value_name = "N")]
    pub connector_rate_per_second: Option<f64>,
    /// Requests a connector may take at once above its rate; 0 = no limit [default: 400]
    #[arg(long, env = "PONTE_CONNECTOR_RATE_BURST", value_name = "N")]
    pub connector_rate_burst: Option<u32>,
    /// On every listener, a request's head must arrive whole within this, at most 30s;
    /// slower clients are disconnected [default: 10s]
    #[arg(long, env = "PONTE_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// A kept-alive connection that sends no request for this long is closed (keep it
    /// above the upstream keepalive_timeout of a proxy in front) [default: 60s]
    #[arg(long, env = "PONTE_KEEPALIVE_IDLE_TIMEOUT", value_name = "DURATION")]
    pub keepalive_idle_timeout: Option<String>,
    /// Open connections per listener (api, relay, gateway each); past it, 503; 0 = no
    /// limit [default: 10000]
    #[arg(long, env = "PONTE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
    /// Open connections per client address (IPv6: per /64) per listener; past it, 503;
    /// 0 = no limit. The TCP peer is counted: behind nginx that is nginx [default: 256;
    /// 0 with --trust-forwarded-for]
    #[arg(long, env = "PONTE_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    pub max_connections_per_address: Option<u32>,
}

/// `roles = "api,relay"` or `roles = ["api", "relay"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Roles {
    List(Vec<String>),
    Csv(String),
}

impl Roles {
    /// `--roles api,relay` (and `PONTE_ROLES`).
    fn parse(s: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Roles::Csv(s.to_owned()))
    }

    fn names(&self) -> Vec<String> {
        let all: Vec<String> = match self {
            Roles::List(v) => v.iter().map(|r| r.trim().to_owned()).collect(),
            Roles::Csv(s) => s.split(',').map(|r| r.trim().to_owned()).collect(),
        };
        all.into_iter().filter(|r| !r.is_empty()).collect()
    }
}

/// The resolved settings of `ponte serve`.
#[derive(Debug, Clone, Serialize)]
pub struct ServeSettings {
    pub data_dir: PathBuf,
    /// `None`: SQLite in the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,
    pub roles: Vec<String>,
    pub api_listen: String,
    pub relay_listen: String,
    pub gateway_listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_public_url: Option<String>,
    pub remote_host_mode: bool,
    /// Published routes live on `{slug}.<public_domain>`; `None`: none can be published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_jwt_secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_jwt_public_key: Option<PathBuf>,
    #[serde(serialize_with = "human")]
    pub connector_token_ttl: Duration,
    pub trust_forwarded_for: bool,
    #[serde(serialize_with = "human")]
    pub shutdown_grace: Duration,
    /// Remote sessions end after this long unused (sliding); `None`: never idle out.
    #[serde(serialize_with = "human_or_zero")]
    pub session_idle_ttl: Option<Duration>,
    /// Remote sessions end this long after creation at the latest; `None`: no cap.
    #[serde(serialize_with = "human_or_zero")]
    pub session_max_ttl: Option<Duration>,
    /// Requests per second per remote session (`0`: no limit).
    pub session_rate_per_second: f64,
    pub session_rate_burst: u32,
    /// Requests per second per connector, gateway and proxy-http together (`0`: no limit).
    pub connector_rate_per_second: f64,
    pub connector_rate_burst: u32,
    /// A request head must arrive whole within this, on every listener.
    #[serde(serialize_with = "human")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection without a request for this long is closed.
    #[serde(serialize_with = "human")]
    pub keepalive_idle_timeout: Duration,
    /// Open connections per listener (`0`: no limit); past it, 503.
    pub max_connections: u32,
    /// Open connections per client TCP address (IPv6: /64) per listener (`0`: no
    /// limit); past it, 503. Behind nginx every connection comes from nginx.
    pub max_connections_per_address: u32,
}

fn human<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn human_or_zero<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    human(&d.unwrap_or_default(), s)
}

/// Defaults, as `--help` states them.
pub const DEFAULT_DATA_DIR: &str = "./ponte-data";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_RELAY_LISTEN: &str = "127.0.0.1:8001";
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8002";
pub const DEFAULT_CONNECTOR_TOKEN_TTL: &str = "90d";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "30s";
pub const DEFAULT_SESSION_IDLE_TTL: &str = "10m";
pub const DEFAULT_SESSION_MAX_TTL: &str = "4h";
pub const DEFAULT_SESSION_RATE_PER_SECOND: f64 = 50.0;
pub const DEFAULT_SESSION_RATE_BURST: u32 = 200;
pub const DEFAULT_CONNECTOR_RATE_PER_SECOND: f64 = 200.0;
pub const DEFAULT_CONNECTOR_RATE_BURST: u32 = 400;
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
pub const DEFAULT_KEEPALIVE_IDLE_TIMEOUT: &str = "60s";
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Without `trust_forwarded_for`; with it (behind a proxy, where every connection comes
/// from the proxy) the default is `0`, no per-address cap.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: u32 = 256;

impl ServeLayer {
    /// Reads the TOML file at `path`; errors are one line naming the file and the key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].lines().count().max(1);
                    format!("config {} line {line}: {msg}", path.display())
                }
                None => format!("config {}: {msg}", path.display()),
            }
        })
    }

    /// `self` where set, else `base`: one merge for every setting, by name. The two
    /// user-JWT keys are one setting: a layer that names either replaces both of the
    /// layer below.
    /// Fails only on a path that is not UTF-8 (the file layer could not hold it).
    pub fn over(self, mut base: ServeLayer) -> Result<ServeLayer, String> {
        if self.user_jwt_secret_file.is_some() || self.user_jwt_public_key.is_some() {
            (base.user_jwt_secret_file, base.user_jwt_public_key) = (None, None);
        }
        // TOML, not JSON: a rate of `nan` must reach validation, not turn into null. An
        // unset option is left out.
        let as_table = |layer: &ServeLayer| {
            toml::Table::try_from(layer)
                .map_err(|e| format!("settings: {e} (paths must be UTF-8)").replace('\n', " "))
        };
        let mut merged = as_table(&base)?;
        merged.extend(as_table(&self)?);
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| format!("settings: {}", e.message()))
    }
}

impl ServeSettings {
    /// Merges `flags` (flags and environment) over the file at `config` (if any) over
    /// the defaults, and validates.
    pub fn resolve(flags: ServeLayer, config: Option<&Path>) -> Result<Self, String> {
        let file = match config {
            Some(p) => ServeLayer::load(p)?,
            None => ServeLayer::default(),
        };
        let l = flags.over(file)?;
        let roles = l
            .roles
            .map(|r| r.names())
            .unwrap_or_else(|| vec!["api".into(), "relay".into(), "gateway".into()]);
        for role in &roles {
            if !matches!(role.as_str(), "api" | "relay" | "gateway") {
                return Err(format!(
                    "roles: unknown role {role:?} (known: api, relay, gateway)"
                ));
            }
        }
        let has = |r: &str| roles.iter().any(|x| x == r);
        if !(has("api") && has("relay")) {
            return Err(
                "roles must include api and relay (they share the connector sockets; \
                 running them apart needs the NATS bus, not built yet)"
                    .into(),
            );
        }
        let listen = |name: &str, v: Option<String>, default: &str| -> Result<String, String> {
            let v = v.unwrap_or_else(|| default.into());
            // host:port or [v6]:port; a name (localhost:8000) is resolved when bound.
            let port = v.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            match port {
                Some((host, Ok(_))) if !host.is_empty() => Ok(v),
                _ => Err(format!("{name}: {v:?} is not host:port")),
            }
        };
        let url = |name: &str, v: Option<String>, schemes: &[&str]| -> Result<_, String> {
            match v {
                Some(u) if !schemes.iter().any(|s| u.starts_with(s)) => Err(format!(
                    "{name}: {u:?} must start with {}",
                    schemes.join(" or ")
                )),
                Some(u) if u.contains(char::is_whitespace) => {
                    Err(format!("{name}: {u:?} contains whitespace"))
                }
                other => Ok(other),
            }
        };
        let duration = |name: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.into());
            humantime::parse_duration(&v).map_err(|e| format!("{name}: {v:?}: {e}"))
        };
        if l.user_jwt_secret_file.is_some() && l.user_jwt_public_key.is_some() {
            return Err(
                "user_jwt_secret_file and user_jwt_public_key exclude each other: the SaaS \
                 signs user tokens with one key"
                    .into(),
            );
        }
        let connector_token_ttl = duration(
            "connector_token_ttl",
            l.connector_token_ttl,
            DEFAULT_CONNECTOR_TOKEN_TTL,
        )?;
        // `0` is "no limit" for the session lifetimes, as for the rates.
        let ttl = |name: &str, v: Option<String>, default: &str| {
            duration(name, v, default).map(|d| (!d.is_zero()).then_some(d))
        };
        let rate = |name: &str, v: Option<f64>, default: f64| match v.unwrap_or(default) {
            r if r.is_finite() && r >= 0.0 => Ok(r),
            r => Err(format!(
                "{name}: {r} is not a rate (requests per second, 0 = no limit)"
            )),
        };
        if connector_token_ttl < Duration::from_secs(3600) {
            return Err("connector_token_ttl: at least 1h (tokens rotate before expiry)".into());
        }
        let header_read_timeout = duration(
            "header_read_timeout",
            l.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?;
        let max = ponte_listen::MAX_HEADER_READ_TIMEOUT;
        if header_read_timeout > max {
            return Err(format!(
                "header_read_timeout: {} is over {}, the most allowed (a longer one lets \
                 slow clients hold every connection for minutes)",
                humantime::format_duration(header_read_timeout),
                humantime::format_duration(max),
            ));
        }
        if header_read_timeout.is_zero() {
            return Err("header_read_timeout: must be more than 0 (at most 30s)".into());
        }
        let keepalive_idle_timeout = duration(
            "keepalive_idle_timeout",
            l.keepalive_idle_timeout,
            DEFAULT_KEEPALIVE_IDLE_TIMEOUT,
        )?;
        if keepalive_idle_timeout.is_zero() {
            return Err(
                "keepalive_idle_timeout: must be more than 0 (idle connections would stay \
                 open for ever)"
                    .into(),
            );
        }
        let trust_forwarded_for = l.trust_forwarded_for.unwrap_or(false);
        Ok(ServeSettings {
            data_dir: l.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            database: url(
                "database",
                l.database,
                &["postgres://", "postgresql://", "sqlite:"],
            )?,
            nats: url("nats", l.nats, &["nats://", "tls://"])?,
            api_listen: listen("api_listen", l.api_listen, DEFAULT_API_LISTEN)?,
            relay_listen: listen("relay_listen", l.relay_listen, DEFAULT_RELAY_LISTEN)?,
            gateway_listen: listen("gateway_listen", l.gateway_listen, DEFAULT_GATEWAY_LISTEN)?,
            relay_public_url: url("relay_public_url", l.relay_public_url, &["ws://", "wss://"])?,
            gateway_public_url: url(
                "gateway_public_url",
                l.gateway_public_url
                    .map(|u| u.trim_end_matches('/').to_owned()),
                &["http://", "https://"],
            )?,
            roles,
            remote_host_mode: l.remote_host_mode.unwrap_or(false),
            public_domain: public_domain(l.public_domain)?,
            user_jwt_secret_file: l.user_jwt_secret_file,
            user_jwt_public_key: l.user_jwt_public_key,
            connector_token_ttl,
            trust_forwarded_for,
            shutdown_grace: duration("shutdown_grace", l.shutdown_grace, DEFAULT_SHUTDOWN_GRACE)?,
            session_idle_ttl: ttl(
                "session_idle_ttl",
                l.session_idle_ttl,
                DEFAULT_SESSION_IDLE_TTL,
            )?,
            session_max_ttl: ttl(
                "session_max_ttl",
                l.session_max_ttl,
                DEFAULT_SESSION_MAX_TTL,
            )?,
            session_rate_per_second: rate(
                "session_rate_per_second",
                l.session_rate_per_second,
                DEFAULT_SESSION_RATE_PER_SECOND,
            )?,
            session_rate_burst: l.session_rate_burst.unwrap_or(DEFAULT_SESSION_RATE_BURST),
            connector_rate_per_second: rate(
                "connector_rate_per_second",
                l.connector_rate_per_second,
                DEFAULT_CONNECTOR_RATE_PER_SECOND,
            )?,
            connector_rate_burst: l
                .connector_rate_burst
                .unwrap_or(DEFAULT_CONNECTOR_RATE_BURST),
            header_read_timeout,
            keepalive_idle_timeout,
            max_connections: l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_address: l.max_connections_per_address.unwrap_or(
                match trust_forwarded_for {
                    true => 0,
                    false => DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
                },
            ),
        })
    }

    /// Every listener's timeouts and caps.
    pub fn listen_limits(&self) -> ponte_listen::Limits {
        ponte_listen::Limits {
            header_read_timeout: self.header_read_timeout,
            keepalive_idle_timeout: self.keepalive_idle_timeout,
            max_connections: self.max_connections as usize,
            max_connections_per_address: self.max_connections_per_address as usize,
        }
    }

    /// Puts the session lifetimes and rate limits into the API's settings.
    pub fn apply_limits(&self, api: &mut ponte_api::ApiConfig) {
        use ponte_api::ratelimit::Rate;
        // "No limit" for a lifetime: far enough to never matter, near enough to add to
        // a timestamp without overflow.
        const NEVER: Duration = Duration::from_secs(100 * 365 * 86400);
        api.sessions.idle = self.session_idle_ttl.unwrap_or(NEVER);
        api.sessions.max = self.session_max_ttl.unwrap_or(NEVER);
        api.rate_limits.session = Rate {
            per_second: self.session_rate_per_second,
            burst: self.session_rate_burst,
        };
        api.rate_limits.connector = Rate {
            per_second: self.connector_rate_per_second,
            burst: self.connector_rate_burst,
        };
    }

    /// The settings as a TOML file would state them (`ponte serve --check`), with the
    /// database password hidden.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database = shown.database.as_deref().map(crate::redact);
        shown.nats = shown.nats.as_deref().map(crate::redact);
        toml::to_string(&shown).unwrap_or_default()
    }
}

/// `public_domain`: a DNS name with an optional port, as browsers send it in `Host`
/// (`pub.example.com`, `localhost:8002`); lower-cased. Not an address (an address has
/// no subdomains) and not a URL.
fn public_domain(v: Option<String>) -> Result<Option<String>, String> {
    let Some(v) = v
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (v.as_str(), None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ip = host.parse::<std::net::Ipv4Addr>().is_ok();
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if ip || !port_ok || host.len() > 200 || !host.split('.').all(label_ok) {
        return Err(format!(
            "public_domain: {v:?} is not a domain name (with an optional port) such as \
             pub.example.com or localhost:8002; routes are served on <slug>.<public_domain>"
        ));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests;
