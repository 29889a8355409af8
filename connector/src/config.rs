//! Connector configuration: TOML file, overridden by `PONTE_CONNECTOR_*` env and flags
//! (flags > env > file > defaults), validated once after merging.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One relay URL or several to fail over between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RelayUrls {
    One(String),
    Many(Vec<String>),
}

impl RelayUrls {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            RelayUrls::One(u) => vec![u.clone()],
            RelayUrls::Many(v) => v.clone(),
        }
    }
}

/// The file as written on disk; every key optional so env/flags can fill the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `wss://cloud.example/ws/connectors`, or a list to fail over between.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_url: Option<RelayUrls>,
    /// Connector JWT (written by `pair`, replaced by TOKEN_ROTATE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Display name reported to the cloud.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Devices the connector may reach: CIDRs, IPs, IP:port, host[:port].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_targets: Option<Vec<String>>,
    /// Health endpoint address, or "off".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<String>,
    /// Concurrent requests per device (host:port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_target_concurrency: Option<usize>,
    /// First reconnect delay (ms); doubles per failure, with jitter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// Longest reconnect delay (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// PEM file with extra CA certificates trusted for the relay (private PKI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_ca_file: Option<PathBuf>,
    /// On SIGTERM, how long requests in flight get to finish (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
}

impl FileConfig {
    /// Reads a config file. A missing file is an error only when `must_exist`.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.message()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Self::default())
            }
            Err(e) => Err(ConfigError(format!("reading {}: {e}", path.display()))),
        }
    }

    /// `self` wins over `base` for every key it sets.
    pub fn over(self, base: FileConfig) -> FileConfig {
        FileConfig {
            relay_url: self.relay_url.or(base.relay_url),
            token: self.token.or(base.token),
            name: self.name.or(base.name),
            allowed_targets: self.allowed_targets.or(base.allowed_targets),
            health_listen: self.health_listen.or(base.health_listen),
            per_target_concurrency: self.per_target_concurrency.or(base.per_target_concurrency),
            backoff_initial_ms: self.backoff_initial_ms.or(base.backoff_initial_ms),
            backoff_max_ms: self.backoff_max_ms.or(base.backoff_max_ms),
            relay_ca_file: self.relay_ca_file.or(base.relay_ca_file),
            shutdown_grace_ms: self.shutdown_grace_ms.or(base.shutdown_grace_ms),
        }
    }

    /// Writes the file atomically with mode 0600 (it holds the token).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = format!(
            "# Ponte connector configuration. Written by `ponte-connector`; safe to edit.\n{}",
            toml::to_string(self).map_err(|e| ConfigError(e.to_string()))?
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ConfigError(format!("creating {}: {e}", dir.display())))?;
        }
        let tmp = path.with_extension("toml.tmp");
        write_private(&tmp, text.as_bytes())
            .map_err(|e| ConfigError(format!("writing {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| ConfigError(format!("renaming to {}: {e}", path.display())))
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(data)?;
    f.sync_all()
}

/// A config problem, reported as one line; the binary exits 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The validated configuration the connector runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub relay_urls: Vec<String>,
    pub token: Secret,
    pub name: String,
    pub allowed_targets: Option<Vec<String>>,
    pub health_listen: Option<SocketAddr>,
    pub per_target_concurrency: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub relay_ca_file: Option<PathBuf>,
    /// On SIGTERM: requests in flight get this long to finish, new ones are refused.
    pub shutdown_grace: Duration,
    /// Where TOKEN_ROTATE persists the new token; `None` keeps it in memory only.
    pub config_path: Option<PathBuf>,
}

pub const DEFAULT_HEALTH_LISTEN: &str = "127.0.0.1:22100";

/// Requests in flight get this long on SIGTERM: under the unit's `TimeoutStopSec=15s`.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

impl Config {
    pub fn from_file_config(
        f: FileConfig,
        config_path: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let relay_urls = f.relay_url.map(|r| r.to_vec()).unwrap_or_default();
        if relay_urls.is_empty() {
            return Err(ConfigError("relay_url is not set (run `ponte-connector pair` first, or set PONTE_CONNECTOR_RELAY_URL)".into()));
        }
        for u in &relay_urls {
            let ok = u.starts_with("ws://") || u.starts_with("wss://");
            if !ok || reqwest::Url::parse(u).is_err() {
                return Err(ConfigError(format!(
                    "relay_url {u:?} must be a ws:// or wss:// URL"
                )));
            }
        }
        let token = f.token.filter(|t| !t.expose().trim().is_empty()).ok_or_else(|| {
            ConfigError("token is not set (run `ponte-connector pair` first, or set PONTE_CONNECTOR_TOKEN)".into())
        })?;
        if let Some(t) = &f.allowed_targets {
            crate::policy::TargetPolicy::parse(t).map_err(ConfigError)?;
        }
        let health_listen = match f.health_listen.as_deref().unwrap_or(DEFAULT_HEALTH_LISTEN) {
            "off" | "" => None,
            s => Some(s.parse().map_err(|_| {
                ConfigError(format!(
                    "health_listen {s:?} is not an address like 127.0.0.1:22100 (or \"off\")"
                ))
            })?),
        };
        let per_target_concurrency = f.per_target_concurrency.unwrap_or(4);
        if !(1..=256).contains(&per_target_concurrency) {
            return Err(ConfigError(
                "per_target_concurrency must be between 1 and 256".into(),
            ));
        }
        let backoff_initial = Duration::from_millis(f.backoff_initial_ms.unwrap_or(500).max(1));
        let backoff_max =
            Duration::from_millis(f.backoff_max_ms.unwrap_or(30_000)).max(backoff_initial);
        let shutdown_grace_ms = f.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS);
        if shutdown_grace_ms > 3_600_000 {
            return Err(ConfigError(
                "shutdown_grace_ms must be at most 3600000 (one hour)".into(),
            ));
        }
        Ok(Self {
            relay_urls,
            token,
            name: f.name.unwrap_or_else(default_name),
            allowed_targets: f.allowed_targets,
            health_listen,
            per_target_concurrency,
            backoff_initial,
            backoff_max,
            relay_ca_file: f.relay_ca_file,
            shutdown_grace: Duration::from_millis(shutdown_grace_ms),
            config_path,
        })
    }
}

fn default_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ponte-connector".into())
}

/// `/etc/ponte/connector.toml` when root, else `~/.config/ponte/connector.toml`.
pub fn default_path() -> PathBuf {
    let is_root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::metadata("/proc/self")
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid() == 0
            })
            .unwrap_or(false);
    if is_root {
        PathBuf::from("/etc/ponte/connector.toml")
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".config/ponte/connector.toml")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_token() -> FileConfig {
        toml::from_str("relay_url = \"wss://a/ws/connectors\"\ntoken = \"t1\"").unwrap()
    }

    #[test]
    fn precedence_and_validation() {
        let file: FileConfig = toml::from_str(
            r#"relay_url = "wss://a/ws/connectors"
token = "t1"
per_target_concurrency = 2"#,
        )
        .unwrap();
        let flags = FileConfig {
            per_target_concurrency: Some(8),
            ..Default::default()
        };
        let cfg = Config::from_file_config(flags.over(file), None).unwrap();
        assert_eq!(cfg.per_target_concurrency, 8);
        assert_eq!(cfg.relay_urls, ["wss://a/ws/connectors"]);
        assert_eq!(format!("{:?}", cfg.token), "***");
        assert_eq!(cfg.health_listen, Some("127.0.0.1:22100".parse().unwrap()));
        // The README's defaults, by value.
        let defaults = Config::from_file_config(file_with_token(), None).unwrap();
        assert_eq!(defaults.per_target_concurrency, 4);
        assert_eq!(defaults.backoff_initial, Duration::from_millis(500));
        assert_eq!(defaults.backoff_max, Duration::from_secs(30));
        assert_eq!(crate::tunnel::STABLE_AFTER, Duration::from_secs(60));

        let err = toml::from_str::<FileConfig>("relay_urll = 'x'").unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
        let no_token = FileConfig {
            relay_url: Some(RelayUrls::One("ws://x".into())),
            ..Default::default()
        };
        assert!(Config::from_file_config(no_token, None)
            .unwrap_err()
            .0
            .contains("token"));
        let bad_url = FileConfig {
            relay_url: Some(RelayUrls::One("http://x".into())),
            token: Some(Secret::new("t")),
            ..Default::default()
        };
        assert!(Config::from_file_config(bad_url, None).is_err());
    }

    #[test]
    fn save_is_private_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("ponte-cfg-{}", std::process::id()));
        let path = dir.join("c.toml");
        let f = FileConfig {
            relay_url: Some(RelayUrls::Many(vec!["ws://a".into(), "ws://b".into()])),
            token: Some(Secret::new("jwt")),
            ..Default::default()
        };
        f.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(FileConfig::load(&path, true).unwrap(), f);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
