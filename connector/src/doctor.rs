//! `ponte-connector doctor`: a readable report of what works and what does not.

use crate::config::{Config, FileConfig};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Report {
    ok: bool,
}

impl Report {
    fn pass(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("  ok    {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.ok = false;
        println!("  FAIL  {what}: {detail}");
    }
    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("  warn  {what}: {detail}");
    }
}

/// Prints the report; returns whether everything essential passed.
pub async fn run(file: FileConfig, path: PathBuf) -> bool {
    let mut r = Report { ok: true };
    println!("ponte-connector {} doctor", env!("CARGO_PKG_VERSION"));
    let cfg = match Config::from_file_config(file, Some(path.clone())) {
        Ok(c) => {
            r.pass("config", path.display());
            c
        }
        Err(e) => {
            r.fail("config", e);
            return false;
        }
    };
    match crate::pair::peek_claims(cfg.token.expose())
        .and_then(|c| c.get("exp").and_then(|e| e.as_u64()))
    {
        Some(exp) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if exp <= now {
                r.fail(
                    "token",
                    format!(
                        "expired {} s ago; pair again or renew in the console",
                        now - exp
                    ),
                );
            } else if exp - now < 86_400 {
                r.warn("token", format!("expires in {} min", (exp - now) / 60));
            } else {
                r.pass(
                    "token",
                    format!("valid for {} more days", (exp - now) / 86_400),
                );
            }
        }
        None => r.fail("token", "not a JWT with an exp claim"),
    }
    for url in &cfg.relay_urls {
        let Ok(u) = reqwest::Url::parse(url) else {
            r.fail("relay url", url);
            continue;
        };
        let host = u.host_str().unwrap_or_default().to_owned();
        let port = u.port_or_known_default().unwrap_or(443);
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => r.pass(
                "dns",
                format!(
                    "{host} → {}",
                    addrs
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Err(e) => {
                r.fail("dns", format!("{host}: {e}"));
                continue;
            }
        }
        let shared =
            match crate::Shared::new(cfg.clone(), Default::default(), Default::default(), None) {
                Ok(s) => s,
                Err(e) => {
                    r.fail("tls", e);
                    continue;
                }
            };
        match crate::tunnel::connect(&shared, url).await {
            Ok(mut ws) => {
                let _ = ws.close(None).await;
                r.pass(
                    "relay",
                    format!("{url}: TLS and WebSocket handshake accepted the token"),
                )
            }
            Err(e) => r.fail("relay", format!("{url}: {e}")),
        }
    }
    if let Some(addr) = cfg.health_listen {
        let url = format!("http://{addr}/health");
        match reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Ok(resp) => {
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                r.pass(
                    "running connector",
                    format!("connected={} relay={}", v["connected"], v["relayUrl"]),
                );
                for t in v["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                {
                    let reach = tokio::time::timeout(
                        Duration::from_secs(3),
                        tokio::net::TcpStream::connect(t),
                    )
                    .await;
                    match reach {
                        Ok(Ok(_)) => r.pass("device", format!("{t} reachable")),
                        Ok(Err(e)) => r.fail("device", format!("{t}: {e}")),
                        Err(_) => r.fail("device", format!("{t}: timed out")),
                    }
                }
            }
            Err(_) => r.warn(
                "running connector",
                format!("no answer on {url} (is `ponte-connector run` running?)"),
            ),
        }
    }
    println!(
        "{}",
        if r.ok {
            "All checks passed."
        } else {
            "Some checks failed."
        }
    );
    r.ok
}
