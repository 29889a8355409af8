//! Idle connectors on the real `ponte serve`: `n` institutions (made with `ponte admin`
//! before the cloud starts), a connector token each from the API, and `n` raw WebSocket
//! peers that send HELLO and then nothing, as an idle connector does. The cloud's RSS
//! growth divided by `n` is its memory per idle connector. Peers connect only to the
//! cloud's 127.0.0.1 relay address; must never reach anything else.

use anyhow::{bail, Context as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, Message};

/// First idle institution id; the measured one is [`crate::TENANT`], below it.
pub const FIRST: i32 = 1000;

/// Creates institutions `FIRST..FIRST + n` with `ponte admin`, a few processes at a time.
pub fn make_tenants(ponte: &Path, data_dir: &Path, n: usize) -> anyhow::Result<()> {
    const AT_ONCE: usize = 4;
    let ids: Vec<i32> = (0..n as i32).map(|i| FIRST + i).collect();
    for batch in ids.chunks(AT_ONCE) {
        let kids = batch
            .iter()
            .map(|id| {
                Command::new(ponte)
                    .arg("admin")
                    .arg("--data-dir")
                    .arg(data_dir)
                    .args(["tenant", "add", "--cliente", "1", "--instituicao"])
                    .arg(id.to_string())
                    .args(["--name", "idle"])
                    .env_remove("PONTE_CONFIG")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<Vec<_>, _>>()?;
        for k in kids {
            let out = k.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "ponte admin tenant add failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    Ok(())
}

/// Connects an idle peer for each institution and returns the cloud's RSS growth per
/// peer, in bytes, with the peers still connected (they close when dropped).
pub async fn measure(
    http: &reqwest::Client,
    api: &str,
    admin_token: &str,
    cloud_pid: u32,
    n: usize,
) -> anyhow::Result<f64> {
    // Tokens first: minting them (RSA signing, store writes) is not the idle cost.
    let mut tokens = Vec::with_capacity(n);
    let mut relay_url = String::new();
    for i in 0..n as i32 {
        let v: serde_json::Value = http
            .post(format!(
                "{api}/api/instituicao/{}/connector/token",
                FIRST + i
            ))
            .bearer_auth(admin_token)
            .send()
            .await?
            .error_for_status()
            .context("issuing an idle connector's token")?
            .json()
            .await?;
        tokens.push(v["token"].as_str().context("no token")?.to_owned());
        relay_url = v["relayUrl"].as_str().context("no relayUrl")?.to_owned();
    }
    let rss = || crate::procs::rss(cloud_pid, "VmRSS:").unwrap_or(0);
    let settle = || async {
        // Until the cloud has handled the HELLOs and written the statuses: RSS stops rising.
        let mut last = 0;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let now = rss();
            if now == last {
                break;
            }
            last = now;
        }
    };
    settle().await;
    let base = rss();
    let hello = r#"{"type":"HELLO","version":"bench","capabilities":["error","cancel","req-stream","flow","ws","token-rotate"]}"#;
    let mut peers = Vec::with_capacity(n);
    for tok in tokens {
        let mut req = relay_url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {tok}").parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .context("an idle connector connecting")?;
        use futures_util::SinkExt as _;
        ws.send(Message::text(hello)).await?;
        peers.push(ws);
    }
    settle().await;
    let grown = rss().saturating_sub(base);
    drop(peers);
    Ok(grown as f64 / n as f64)
}
