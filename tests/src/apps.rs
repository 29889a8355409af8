//! Real third-party web apps for the corpus tests, installed from npm on first use (like
//! `tools/prisma`): `npm ci` from the committed lock file, then started on 127.0.0.1 on
//! a port the OS picks. Nothing they run phones home.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn tools(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools")
        .join(dir)
}

/// `npm ci` in `tools/{dir}` unless its `node_modules` is there; once per process.
fn npm_ci(dir: &str) -> PathBuf {
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let path = tools(dir);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !done.iter().any(|d| d == dir) && !path.join("node_modules/.package-lock.json").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .env("NPM_CONFIG_UPDATE_NOTIFIER", "false")
            .current_dir(&path)
            .status()
            .expect("run npm (is Node.js installed?)");
        assert!(status.success(), "npm ci in tools/{dir} failed: {status}");
    }
    done.push(dir.to_owned());
    path
}

/// A running app; killed when dropped.
pub struct App {
    /// `http://127.0.0.1:{port}` (no trailing slash).
    pub base_url: String,
    _child: tokio::process::Child,
}

impl App {
    /// `tools/fastify/app.js`: Fastify with @fastify/websocket and @fastify/static.
    pub async fn fastify() -> Self {
        let dir = npm_ci("fastify");
        let mut child = tokio::process::Command::new("node")
            .arg("app.js")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (is Node.js installed?)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("listening ") {
                    return url.trim().trim_end_matches('/').to_owned();
                }
            }
            panic!("the Fastify app exited before it listened");
        })
        .await
        .expect("the Fastify app listens within 30 s");
        assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            base_url,
            _child: child,
        }
    }
}
