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

/// Node-RED's admin password in the corpus.
pub const NODE_RED_PASSWORD: &str = "senha-do-corpus";

/// The bundler a Next.js build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundler {
    /// Next.js 16's default.
    Turbopack,
    Webpack,
}

impl App {
    /// Starts `cmd` (in its app's directory) and waits until `url_in` finds the URL it
    /// listens on in a line of its output; its later output is read and dropped, so a full
    /// pipe never blocks it. Killed when the App is dropped.
    async fn run(
        mut cmd: tokio::process::Command,
        what: &str,
        limit: Duration,
        url_in: impl Fn(&str) -> Option<&str>,
    ) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (is Node.js installed?)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base_url = tokio::time::timeout(limit, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = url_in(&line) {
                    return url.trim().trim_end_matches('/').to_owned();
                }
            }
            panic!("{what} exited before it listened");
        })
        .await
        .unwrap_or_else(|_| panic!("{what} listens within {limit:?}"));
        assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            base_url,
            _child: child,
        }
    }

    /// `tools/node-red`: Node-RED with adminAuth (user `admin`, password
    /// [`NODE_RED_PASSWORD`]) on 127.0.0.1, a user directory of its own, telemetry,
    /// update checks and the palette catalogue off (`tools/node-red/settings.js`).
    pub async fn node_red() -> Self {
        let dir = npm_ci("node-red");
        let user_dir = std::env::temp_dir().join(crate::cloud::unique("ponte-node-red"));
        std::fs::create_dir_all(&user_dir).unwrap();
        let mut cmd = tokio::process::Command::new("node");
        cmd.args(["node_modules/node-red/red.js", "--settings", "settings.js"])
            .env("PORT", "0")
            .env("NODE_RED_USER_DIR", &user_dir)
            .env("NODE_RED_PASSWORD", NODE_RED_PASSWORD)
            .current_dir(&dir);
        Self::run(cmd, "Node-RED", Duration::from_secs(60), |line| {
            line.split_once("Server now running at ")
                .map(|(_, url)| url)
        })
        .await
    }

    /// `tools/nextjs`: a Next.js production build (`next build`, with `bundler`) served
    /// by `next start` on 127.0.0.1. Built once per bundler per process, into a directory
    /// of its own; telemetry off.
    pub async fn nextjs(bundler: Bundler) -> Self {
        static BUILT: Mutex<Vec<Bundler>> = Mutex::new(Vec::new());
        let dir = npm_ci("nextjs");
        let dist = match bundler {
            Bundler::Turbopack => ".next-turbopack",
            Bundler::Webpack => ".next-webpack",
        };
        {
            let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
            if !built.contains(&bundler) {
                let mut cmd = std::process::Command::new("node");
                cmd.args(["node_modules/next/dist/bin/next", "build"]);
                if bundler == Bundler::Webpack {
                    cmd.arg("--webpack");
                }
                let out = cmd
                    .env("NEXT_TELEMETRY_DISABLED", "1")
                    .env("CORPUS_DIST", dist)
                    .current_dir(&dir)
                    .output()
                    .expect("run node (is Node.js installed?)");
                assert!(
                    out.status.success(),
                    "next build ({bundler:?}) failed:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                built.push(bundler);
            }
        }
        let mut cmd = tokio::process::Command::new("node");
        cmd.args([
            "node_modules/next/dist/bin/next",
            "start",
            "-H",
            "127.0.0.1",
            "-p",
            "0",
        ])
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .env("CORPUS_DIST", dist)
        .current_dir(&dir);
        Self::run(cmd, "next start", Duration::from_secs(60), |line| {
            line.trim().strip_prefix("- Local:")
        })
        .await
    }

    /// `tools/fastify/app.js`: Fastify with @fastify/websocket and @fastify/static.
    pub async fn fastify() -> Self {
        let dir = npm_ci("fastify");
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg("app.js").current_dir(&dir);
        Self::run(cmd, "the Fastify app", Duration::from_secs(30), |line| {
            line.strip_prefix("listening ")
        })
        .await
    }
}
