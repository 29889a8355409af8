//! What a run stands on: the release binaries (built unless `--no-build`), a run
//! directory, and the paths measured, each set up on 127.0.0.1 with OS-chosen ports.

use crate::load::Target;
use crate::{procs, PathTargets, EQUIPMENT, TENANT};
use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace")
        .to_path_buf()
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

pub(crate) fn build(root: &Path, skip: bool) -> anyhow::Result<PathBuf> {
    let target = target_dir(root);
    if !skip {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("ponte-bench: cargo build --release -p ponte -p ponte-connector");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "ponte", "-p", "ponte-connector"])
            .current_dir(root)
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release failed ({status})");
        }
    }
    let dir = target.join("release");
    for b in ["ponte", "ponte-connector"] {
        if !dir.join(b).exists() {
            bail!(
                "{} is missing (build it, or drop --no-build)",
                dir.join(b).display()
            );
        }
    }
    Ok(dir)
}

/// The run directory, removed on drop unless kept (or the run failed: its logs explain).
pub(crate) struct RunDir {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            eprintln!("ponte-bench: run directory kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `ponte serve` flags that lift the session and connector rate limits and the
/// per-address connection cap (every bench client and idle connector is 127.0.0.1), if
/// this `ponte` has them (a benchmark measures the data path, not the limiter).
pub(crate) fn unlimited_rate_flags(ponte: &Path) -> anyhow::Result<Vec<String>> {
    let help = procs::output(Command::new(ponte).args(["serve", "--help"]))?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for f in [
        "--session-rate-per-second",
        "--session-rate-burst",
        "--connector-rate-per-second",
        "--connector-rate-burst",
        "--max-connections-per-address",
    ] {
        match help.contains(f) {
            true => out.extend([f.to_owned(), "0".to_owned()]),
            false => missing.push(f),
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "ponte-bench: warning: this ponte serve has no {}; its built-in rate limits apply (expect 429s at c=64)",
            missing.join(", ")
        );
    }
    Ok(out)
}

/// The paths, in the column order of [`GATEWAY`] and the others: direct, nginx, gateway,
/// proxy-http, then each `yardsticks` (name, port: plain GETs like nginx's).
pub(crate) fn targets(
    origin: u16,
    proxy: u16,
    yardsticks: &[(&'static str, u16)],
    cloud: &procs::Cloud,
    prefix: &str,
    cookie: &str,
    token: &str,
) -> anyhow::Result<Vec<PathTargets>> {
    use http::{HeaderName, HeaderValue, Method};
    let get = |port: u16, path: String, headers: Vec<(HeaderName, HeaderValue)>, min: u64| Target {
        addr: ([127, 0, 0, 1], port).into(),
        method: Method::GET,
        path,
        headers,
        body: Default::default(),
        min_len: min,
        must_contain: None,
    };
    let files = |port: u16, pre: &str, h: Vec<(HeaderName, HeaderValue)>| {
        [
            get(port, format!("{pre}small"), h.clone(), 100),
            get(port, format!("{pre}1mb"), h.clone(), 1 << 20),
            get(port, format!("{pre}100mb"), h, 100 << 20),
        ]
    };
    let mut out = Vec::new();
    let cookie_h = vec![(http::header::COOKIE, HeaderValue::from_str(cookie)?)];
    for (name, [small, one_mb, big]) in [
        ("direct", files(origin, "/", vec![])),
        ("nginx", files(proxy, "/", vec![])),
        ("gateway", files(cloud.gateway.port(), prefix, cookie_h)),
    ] {
        out.push(PathTargets {
            name,
            small,
            one_mb,
            hundred_mb: Some(big),
        });
    }
    let proxy_http = |device_path: &str, min: u64| -> anyhow::Result<Target> {
        Ok(Target {
            addr: cloud.api,
            method: Method::POST,
            path: format!("/api/instituicao/{TENANT}/equipamento/{EQUIPMENT}/proxy-http"),
            headers: vec![
                (
                    http::header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {token}"))?,
                ),
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            body: serde_json::json!({"method": "GET", "path": device_path})
                .to_string()
                .into(),
            min_len: min,
            // The device's own status, inside the JSON envelope.
            must_contain: Some("\"statusCode\":200"),
        })
    };
    out.push(PathTargets {
        name: "proxy-http",
        small: proxy_http("/small", 100)?,
        one_mb: proxy_http("/1mb", 1 << 20)?,
        hundred_mb: None,
    });
    for &(name, port) in yardsticks {
        let [small, one_mb, big] = files(port, "/", vec![]);
        out.push(PathTargets {
            name,
            small,
            one_mb,
            hundred_mb: Some(big),
        });
    }
    Ok(out)
}
