//! `ponte serve`'s settings: flags > environment (`PONTE_…`, both handled by clap) >
//! the TOML file given with `--config` > defaults. The file's keys are the flags' long
//! names with `_` (`api_listen = "0.0.0.0:8000"`); an unknown key is an error.
//! [`ServeSettings::resolve`] merges the layers and validates, so a mistake is one line
//! naming the setting, before anything starts.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One layer of settings: what the flags/env gave, or what the file says.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeLayer {
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub nats: Option<String>,
    pub roles: Option<Roles>,
    pub api_listen: Option<String>,
    pub relay_listen: Option<String>,
    pub gateway_listen: Option<String>,
    pub relay_public_url: Option<String>,
    pub gateway_public_url: Option<String>,
    pub remote_host_mode: Option<bool>,
    pub public_domain: Option<String>,
    pub user_jwt_secret_file: Option<PathBuf>,
    pub user_jwt_public_key: Option<PathBuf>,
    pub connector_token_ttl: Option<String>,
    pub trust_forwarded_for: Option<bool>,
    pub shutdown_grace: Option<String>,
    pub session_idle_ttl: Option<String>,
    pub session_max_ttl: Option<String>,
    pub session_rate_per_second: Option<f64>,
    pub session_rate_burst: Option<u32>,
    pub connector_rate_per_second: Option<f64>,
    pub connector_rate_burst: Option<u32>,
    pub header_read_timeout: Option<String>,
    pub keepalive_idle_timeout: Option<String>,
    pub max_connections: Option<u32>,
    pub max_connections_per_address: Option<u32>,
}

/// `roles = "api,relay"` or `roles = ["api", "relay"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Roles {
    List(Vec<String>),
    Csv(String),
}

impl Roles {
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

    /// `self` where set, else `base`. The two user-JWT keys are one setting: a layer
    /// that names either replaces both of the layer below.
    pub fn over(self, base: ServeLayer) -> ServeLayer {
        let own_key = self.user_jwt_secret_file.is_some() || self.user_jwt_public_key.is_some();
        let (secret, public) = match own_key {
            true => (self.user_jwt_secret_file, self.user_jwt_public_key),
            false => (base.user_jwt_secret_file, base.user_jwt_public_key),
        };
        ServeLayer {
            data_dir: self.data_dir.or(base.data_dir),
            database: self.database.or(base.database),
            nats: self.nats.or(base.nats),
            roles: self.roles.or(base.roles),
            api_listen: self.api_listen.or(base.api_listen),
            relay_listen: self.relay_listen.or(base.relay_listen),
            gateway_listen: self.gateway_listen.or(base.gateway_listen),
            relay_public_url: self.relay_public_url.or(base.relay_public_url),
            gateway_public_url: self.gateway_public_url.or(base.gateway_public_url),
            remote_host_mode: self.remote_host_mode.or(base.remote_host_mode),
            public_domain: self.public_domain.or(base.public_domain),
            user_jwt_secret_file: secret,
            user_jwt_public_key: public,
            connector_token_ttl: self.connector_token_ttl.or(base.connector_token_ttl),
            trust_forwarded_for: self.trust_forwarded_for.or(base.trust_forwarded_for),
            shutdown_grace: self.shutdown_grace.or(base.shutdown_grace),
            session_idle_ttl: self.session_idle_ttl.or(base.session_idle_ttl),
            session_max_ttl: self.session_max_ttl.or(base.session_max_ttl),
            session_rate_per_second: self
                .session_rate_per_second
                .or(base.session_rate_per_second),
            session_rate_burst: self.session_rate_burst.or(base.session_rate_burst),
            connector_rate_per_second: self
                .connector_rate_per_second
                .or(base.connector_rate_per_second),
            connector_rate_burst: self.connector_rate_burst.or(base.connector_rate_burst),
            header_read_timeout: self.header_read_timeout.or(base.header_read_timeout),
            keepalive_idle_timeout: self.keepalive_idle_timeout.or(base.keepalive_idle_timeout),
            max_connections: self.max_connections.or(base.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(base.max_connections_per_address),
        }
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
        let l = flags.over(file);
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
mod tests {
    use super::*;

    fn layer(toml: &str) -> ServeLayer {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file = layer("api_listen = \"127.0.0.1:7000\"\nrelay_listen = \"127.0.0.1:7001\"\nroles = [\"api\", \"relay\"]\nshutdown_grace = \"5s\"");
        let flags = ServeLayer {
            api_listen: Some("127.0.0.1:9000".into()),
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("ponte-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ponte.toml");
        std::fs::write(&path, "").unwrap();
        let s = ServeSettings::resolve(flags.over(file), Some(&path)).unwrap();
        assert_eq!(s.api_listen, "127.0.0.1:9000");
        assert_eq!(s.relay_listen, "127.0.0.1:7001");
        assert_eq!(s.gateway_listen, DEFAULT_GATEWAY_LISTEN);
        assert_eq!(s.roles, ["api", "relay"]);
        assert_eq!(s.shutdown_grace, Duration::from_secs(5));
        assert_eq!(s.connector_token_ttl, Duration::from_secs(90 * 86400));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_shipped_example_resolves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ponte.toml.example");
        let s = ServeSettings::resolve(ServeLayer::default(), Some(&path)).unwrap();
        assert_eq!(s.roles, ["api", "relay", "gateway"]);
        assert!(s.remote_host_mode && s.trust_forwarded_for);
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(
            s.gateway_public_url.as_deref(),
            Some("https://remote.example.com")
        );
    }

    #[test]
    fn limits_default_as_designed_and_zero_lifts_them() {
        let s = ServeSettings::resolve(ServeLayer::default(), None).unwrap();
        let mut api = ponte_api::ApiConfig::default();
        s.apply_limits(&mut api);
        assert_eq!(api.sessions.idle, Duration::from_secs(600));
        assert_eq!(api.sessions.max, Duration::from_secs(4 * 3600));
        assert_eq!(api.rate_limits.session.per_second, 50.0);
        assert_eq!(api.rate_limits.session.burst, 200);
        assert_eq!(api.rate_limits.connector.per_second, 200.0);
        assert_eq!(api.rate_limits.connector.burst, 400);
        assert!(api.rate_limits.session.limits() && api.rate_limits.connector.limits());
        assert_eq!(s.listen_limits(), ponte_listen::Limits::default());
        // The README's and `--help`'s numbers, by value.
        let listen = (&*s.api_listen, &*s.relay_listen, &*s.gateway_listen);
        assert_eq!(
            listen,
            ("127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002")
        );
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.connector_token_ttl, Duration::from_secs(90 * 86400));
        assert_eq!(
            s.listen_limits(),
            ponte_listen::Limits {
                header_read_timeout: Duration::from_secs(10),
                keepalive_idle_timeout: Duration::from_secs(60),
                max_connections: 10_000,
                max_connections_per_address: 256,
            }
        );

        // Each setting reaches its own bucket.
        let s = ServeSettings::resolve(
            layer(
                "session_rate_per_second = 7\nsession_rate_burst = 11\n\
                 connector_rate_per_second = 13\nconnector_rate_burst = 17",
            ),
            None,
        )
        .unwrap();
        let mut api = ponte_api::ApiConfig::default();
        s.apply_limits(&mut api);
        let rate = |r: ponte_api::ratelimit::Rate| (r.per_second, r.burst);
        assert_eq!(rate(api.rate_limits.session), (7.0, 11));
        assert_eq!(rate(api.rate_limits.connector), (13.0, 17));

        let s = ServeSettings::resolve(
            layer(
                "session_idle_ttl = \"0\"\nsession_max_ttl = \"8h\"\nsession_rate_per_second = 0\n\
                 connector_rate_per_second = 1000\nconnector_rate_burst = 0",
            ),
            None,
        )
        .unwrap();
        let mut api = ponte_api::ApiConfig::default();
        s.apply_limits(&mut api);
        assert!(api.sessions.idle > Duration::from_secs(50 * 365 * 86400));
        assert_eq!(api.sessions.max, Duration::from_secs(8 * 3600));
        assert!(!api.rate_limits.session.limits());
        assert!(!api.rate_limits.connector.limits());
        // --check shows what runs.
        let shown = s.to_toml();
        assert!(shown.contains("session_idle_ttl = \"0s\""), "{shown}");
        assert!(shown.contains("session_rate_per_second = 0.0"), "{shown}");
    }

    #[test]
    fn listener_limits_follow_the_settings_and_the_proxy() {
        let s = ServeSettings::resolve(
            layer(
                "header_read_timeout = \"30s\"\nkeepalive_idle_timeout = \"2m\"\n\
                 max_connections = 500\nmax_connections_per_address = 0",
            ),
            None,
        )
        .unwrap();
        let l = s.listen_limits();
        assert_eq!(l.header_read_timeout, Duration::from_secs(30));
        assert_eq!(l.keepalive_idle_timeout, Duration::from_secs(120));
        assert_eq!((l.max_connections, l.max_connections_per_address), (500, 0));
        // Behind a proxy every connection comes from it: no per-address cap unless set.
        let s = ServeSettings::resolve(layer("trust_forwarded_for = true"), None).unwrap();
        assert_eq!(s.max_connections_per_address, 0);
        let s = ServeSettings::resolve(
            layer("trust_forwarded_for = true\nmax_connections_per_address = 9"),
            None,
        )
        .unwrap();
        assert_eq!(s.max_connections_per_address, 9);
        assert!(s.to_toml().contains("header_read_timeout = \"10s\""));
    }

    #[test]
    fn mistakes_name_the_setting() {
        for (toml, says) in [
            ("api_listen = \"localhost\"", "api_listen"),
            ("roles = \"api,relay,web\"", "unknown role \"web\""),
            ("roles = \"api,gateway\"", "must include api and relay"),
            ("shutdown_grace = \"soon\"", "shutdown_grace"),
            ("database = \"mysql://x\"", "database"),
            ("relay_public_url = \"http://x/ws\"", "relay_public_url"),
            ("connector_token_ttl = \"5m\"", "at least 1h"),
            ("session_idle_ttl = \"a while\"", "session_idle_ttl"),
            ("session_rate_per_second = -1", "session_rate_per_second"),
            (
                "connector_rate_per_second = nan",
                "connector_rate_per_second",
            ),
            ("header_read_timeout = \"31s\"", "is over 30s"),
            ("header_read_timeout = \"0\"", "header_read_timeout"),
            ("keepalive_idle_timeout = \"0s\"", "keepalive_idle_timeout"),
        ] {
            let err = ServeSettings::resolve(layer(toml), None).unwrap_err();
            assert!(err.contains(says), "{toml}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(toml::from_str::<ServeLayer>("api_lisen = \"x\"").is_err());
        // A name is fine (resolved when bound); so is IPv6.
        for ok in ["localhost:8000", "[::1]:8000", "0.0.0.0:80"] {
            let l = ServeLayer {
                api_listen: Some(ok.into()),
                ..Default::default()
            };
            assert!(ServeSettings::resolve(l, None).is_ok(), "{ok}");
        }
        // The key a higher layer names replaces the lower layer's other key.
        let file = layer("user_jwt_public_key = \"/etc/ponte/k.pem\"");
        let flags = ServeLayer {
            user_jwt_secret_file: Some("/etc/ponte/s".into()),
            ..Default::default()
        };
        let s = ServeSettings::resolve(flags.over(file), None).unwrap();
        assert!(s.user_jwt_public_key.is_none() && s.user_jwt_secret_file.is_some());
    }

    #[test]
    fn the_public_domain_is_a_name_with_an_optional_port() {
        let domain = |v: &str| {
            ServeSettings::resolve(layer(&format!("public_domain = {v:?}")), None)
                .map(|s| s.public_domain)
        };
        assert_eq!(
            domain("Pub.Example.com").unwrap().as_deref(),
            Some("pub.example.com")
        );
        assert_eq!(
            domain("localhost:8002").unwrap().as_deref(),
            Some("localhost:8002")
        );
        assert_eq!(domain("").unwrap(), None);
        for bad in [
            "https://pub.example.com",
            "pub.example.com/x",
            "127.0.0.1",
            "*.example.com",
            "pub..example.com",
            "-pub.example.com",
            "pub.example.com:0",
            "pub.example.com:99999",
        ] {
            let e = domain(bad).unwrap_err();
            assert!(e.starts_with("public_domain: "), "{bad}: {e}");
        }
        let s = ServeSettings::resolve(layer("api_listen = \"127.0.0.1:7000\""), None).unwrap();
        assert_eq!(s.public_domain, None, "no routes unless asked for");
    }
}
