//! Pairing: turn a one-time code (or a token copied from the console) into a config file.

use crate::config::{FileConfig, RelayUrls, Secret};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimResponse {
    connector_id: serde_json::Value,
    token: String,
    relay_url: String,
    #[serde(default)]
    expires_at: Option<String>,
}

/// What pairing did, for the CLI to print.
#[derive(Debug)]
pub struct Paired {
    pub connector_id: String,
    pub relay_url: String,
    pub expires_at: Option<String>,
}

/// Claims `code` at `server` (`POST /api/connector/claim`) and writes the config.
pub async fn with_code(
    server: &str,
    code: &str,
    name: &str,
    path: &Path,
) -> anyhow::Result<Paired> {
    let url = format!("{}/api/connector/claim", server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let body = serde_json::json!({
        "pairingCode": code.trim().to_ascii_uppercase(),
        "name": name,
        "version": env!("CARGO_PKG_VERSION"),
        "metadata": {"os": std::env::consts::OS, "arch": std::env::consts::ARCH},
    });
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let reason = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or(text);
        anyhow::bail!("pairing refused ({status}): {reason}");
    }
    let claim: ClaimResponse = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("unexpected claim response: {e}"))?;
    write(path, &claim.relay_url, &claim.token, Some(name))?;
    let connector_id = match claim.connector_id {
        serde_json::Value::String(s) => s,
        v => v.to_string(),
    };
    Ok(Paired {
        connector_id,
        relay_url: claim.relay_url,
        expires_at: claim.expires_at,
    })
}

/// Stores a relay URL and a token copied from the console.
pub fn with_token(relay_url: &str, token: &str, path: &Path) -> anyhow::Result<Paired> {
    let claims =
        crate::pair::peek_claims(token).ok_or_else(|| anyhow::anyhow!("the token is not a JWT"))?;
    write(path, relay_url, token, None)?;
    Ok(Paired {
        connector_id: claims
            .get("sub")
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_default(),
        relay_url: relay_url.to_owned(),
        expires_at: claims.get("exp").map(|v| v.to_string()),
    })
}

fn write(path: &Path, relay_url: &str, token: &str, name: Option<&str>) -> anyhow::Result<()> {
    let existing = FileConfig::load(path, false).map_err(|e| anyhow::anyhow!(e.0))?;
    let f = FileConfig {
        relay_url: Some(RelayUrls::One(relay_url.to_owned())),
        token: Some(Secret::new(token)),
        name: name.map(str::to_owned),
        ..Default::default()
    }
    .over(existing);
    crate::config::Config::from_file_config(f.clone(), None).map_err(|e| anyhow::anyhow!(e.0))?;
    f.save(path).map_err(|e| anyhow::anyhow!(e.0))
}

/// Reads a JWT's claims without verifying it (for messages and expiry checks only).
pub fn peek_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&raw).ok()
}
