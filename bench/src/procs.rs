//! The processes under test: nginx (origin and reverse proxy), `ponte serve` and
//! `ponte-connector`, each started from the release binaries with its own files in the
//! run's temporary directory. Every child is held by [`Children`], whose `Drop` kills it,
//! so no exit path (error, panic, Ctrl-C in `main`) leaves one running. Everything binds
//! 127.0.0.1; must never listen on or send to another address.

use anyhow::{bail, Context as _};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The children of this run, killed and reaped on drop (youngest first).
#[derive(Default)]
pub struct Children {
    list: Vec<(String, Child)>,
}

impl Children {
    pub fn add(&mut self, name: &str, child: Child) -> u32 {
        let pid = child.id();
        self.list.push((name.to_owned(), child));
        pid
    }

    /// Fails if a child has exited: a dead server would otherwise show up as errors.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, c) in &mut self.list {
            if let Some(status) = c.try_wait()? {
                bail!("{name} exited ({status}); see its log in the run directory");
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // SIGTERM first: a SIGKILLed nginx master leaves its workers running (orphans
        // holding the ports); on SIGTERM it stops them. SIGKILL after a short grace.
        for (_, c) in self.list.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in self.list.iter_mut().rev() {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free port on 127.0.0.1, for a server (nginx) that cannot be given port 0 and report
/// it: bound, read and released. Another process could take it in between; on this
/// machine nobody races for ephemeral ports, and a clash fails loudly (nginx exits).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident memory of a process, bytes (`VmRSS`, or `VmHWM` for the peak).
pub fn rss(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system, all threads) the processes have used so far, seconds. Read
/// from `/proc/<pid>/stat` in clock ticks (Linux's `USER_HZ`, 100 on every supported
/// architecture); a process that is gone counts 0.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    const USER_HZ: f64 = 100.0;
    pids.iter()
        .filter_map(|&p| {
            // Fields 14 and 15: utime, stime.
            let utime: u64 = stat_field(p, 14)?;
            let stime: u64 = stat_field(p, 15)?;
            Some((utime + stime) as f64 / USER_HZ)
        })
        .sum()
}

/// Field `n` (1-based, as `man 5 proc` numbers them) of `/proc/<pid>/stat`. The name
/// (field 2) is parenthesised and may hold spaces, so fields are counted after it.
fn stat_field<T: std::str::FromStr>(pid: u32, n: usize) -> Option<T> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// The process and its direct children (nginx: master and workers).
pub fn family(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // Field 4 is the parent.
            if stat_field::<u32>(p, 4) == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

/// Polls `f` until it says yes or `limit` passes.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// The files the origin serves: name, size, content type.
pub const FILES: &[(&str, usize, &str)] = &[
    ("small", 100, "json"),
    ("1mb", 1 << 20, "bin"),
    ("100mb", 100 << 20, "bin"),
];

/// Writes the origin's files into `dir/www` (the small one is JSON, the others bytes that
/// do not compress to nothing, so no layer can cheat with them).
pub fn write_files(dir: &Path) -> anyhow::Result<()> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    for &(name, size, ext) in FILES {
        let body: Vec<u8> = match ext {
            "json" => {
                let mut s = String::from("{\"ok\":true,\"pad\":\"");
                while s.len() < size - 2 {
                    s.push('x');
                }
                s.push_str("\"}");
                s.into_bytes()
            }
            _ => {
                let mut x: u32 = 0x9e37_79b9;
                (0..size)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect()
            }
        };
        std::fs::write(www.join(format!("{name}.{ext}")), body)?;
    }
    Ok(())
}

/// nginx with three servers: the origin (static files, `/small` is `small.json`, …) and a
/// reverse proxy to it configured as a production site would be (HTTP/1.1 upstream with
/// keep-alive, default buffering), all on 127.0.0.1.
/// A third server, `two_hops`, proxies to the proxy as that one proxies to the origin:
/// two proxies on the way, as a tunnel has (its cloud end and its connector).
pub fn nginx_conf(dir: &Path, origin: u16, proxy: u16, two_hops: u16) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    types {{ application/json json; application/octet-stream bin; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{origin};
        root {d}/www;
        location / {{ try_files $uri $uri.json $uri.bin =404; }}
    }}
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
    upstream proxy {{
        server 127.0.0.1:{proxy};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{two_hops};
        location / {{
            proxy_pass http://proxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#
    )
}

/// Where nginx is, or an error that says how to get it.
pub fn nginx_binary() -> anyhow::Result<PathBuf> {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return Ok(p.into());
        }
    }
    bail!("nginx not found (Debian: apt-get install -y nginx); the bench compares against it")
}

/// Starts nginx with `conf` and waits until every port answers.
pub async fn start_nginx(
    kids: &mut Children,
    dir: &Path,
    conf: &str,
    ports: &[u16],
) -> anyhow::Result<u32> {
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("nginx-tmp").join(sub))?;
    }
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let log = std::fs::File::create(dir.join("nginx-stderr.log"))?;
    let child = Command::new(nginx_binary()?)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting nginx")?;
    let pid = kids.add("nginx", child);
    for &port in ports {
        wait_for("nginx", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
        .with_context(|| {
            format!(
                "nginx did not listen; see {}/nginx-error.log",
                dir.display()
            )
        })?;
    }
    kids.check_alive()?;
    Ok(pid)
}

/// A command's stdout, or an error with its stderr.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Addresses `ponte serve` reported.
#[derive(Debug, Clone, Copy)]
pub struct Cloud {
    pub pid: u32,
    pub api: SocketAddr,
    pub gateway: SocketAddr,
}

/// Starts `ponte serve` on port 0 for every role and reads the addresses from the line it
/// prints ("ponte: api on http://A, relay on ws://R/ws/connectors, gateway on http://G").
/// Its stderr is copied to `dir/ponte.log` by a thread (the pipe must keep draining, or
/// the server would block on its logs).
pub fn start_cloud(
    kids: &mut Children,
    ponte: &Path,
    dir: &Path,
    extra: &[String],
) -> anyhow::Result<Cloud> {
    let child = wrapped("PONTE_BENCH_WRAP_CLOUD", ponte)
        .args(["serve", "--data-dir"])
        .arg(dir.join("cloud"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--relay-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env_remove("PONTE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ponte serve")?;
    let mut child = child;
    let stderr = child.stderr.take().expect("piped");
    let pid = kids.add("ponte serve", child);
    let (tx, rx) = mpsc::channel::<String>();
    let log_path = dir.join("ponte.log");
    std::thread::spawn(move || {
        use std::io::Write as _;
        let mut log = std::fs::File::create(log_path).ok();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("ponte: ") {
                let _ = tx.send(line.clone());
            }
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .with_context(|| format!("ponte serve did not start; see {}/ponte.log", dir.display()))?;
    let addr = |after: &str| -> anyhow::Result<SocketAddr> {
        let rest = line
            .split_once(after)
            .with_context(|| format!("no {after:?} in {line:?}"))?
            .1;
        let end = rest.find([',', '/']).unwrap_or(rest.len());
        rest[..end]
            .parse()
            .with_context(|| format!("address after {after:?} in {line:?}"))
    };
    Ok(Cloud {
        pid,
        api: addr("api on http://")?,
        gateway: addr("gateway on http://")?,
    })
}

/// Starts `ponte-connector run` with `config`, its log in `dir/connector.log`.
pub fn start_connector(
    kids: &mut Children,
    bin: &Path,
    dir: &Path,
    config: &Path,
    extra: &[String],
) -> anyhow::Result<u32> {
    let log = std::fs::File::create(dir.join("connector.log"))?;
    let child = wrapped("PONTE_BENCH_WRAP_CONNECTOR", bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--health-listen", "off", "--allowed-targets", "127.0.0.1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting ponte-connector run")?;
    Ok(kids.add("ponte-connector", child))
}

/// `bin`, or `bin` run by the command line in the environment variable `var` (a profiler).
fn wrapped(var: &str, bin: &Path) -> Command {
    let wrap = std::env::var(var).unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        None => Command::new(bin),
        Some(first) => {
            let mut cmd = Command::new(first);
            cmd.args(words).arg(bin);
            cmd
        }
    }
}

/// The rathole release the bench compares with, and how it is built: plain TCP transport
/// only (its TLS features would pull in OpenSSL), as `cargo install` builds it.
const RATHOLE: &str = "0.5.0";

/// Where rathole is: `PONTE_BENCH_RATHOLE`, else `tools/bin/rathole` under the target
/// directory, installed there from crates.io on first use (about 3 minutes, once). `None`
/// with a warning when it cannot be had: the table then has no rathole column.
pub fn rathole_binary(target: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PONTE_BENCH_RATHOLE") {
        return Some(p.into());
    }
    let root = target.join("tools");
    let bin = root.join("bin").join("rathole");
    if bin.exists() {
        return Some(bin);
    }
    eprintln!(
        "ponte-bench: installing rathole {RATHOLE} into {} (once)",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "rathole", "--version", RATHOLE])
        .args([
            "--no-default-features",
            "--features",
            "server,client",
            "--root",
        ])
        .arg(&root)
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() && bin.exists() => Some(bin),
        other => {
            eprintln!(
                "ponte-bench: warning: rathole could not be installed ({other:?}); no rathole column (PONTE_BENCH_RATHOLE=path/to/rathole names one)"
            );
            None
        }
    }
}

/// rathole's server and client, with the origin as the client's one service: the
/// service's public port (on the server), and both pids. Plain TCP with `TCP_NODELAY`
/// (rathole's default, written out), one token, everything on 127.0.0.1.
pub fn start_rathole(
    kids: &mut Children,
    bin: &Path,
    dir: &Path,
    origin: u16,
) -> anyhow::Result<(u16, [u32; 2])> {
    let (control, public) = (free_port()?, free_port()?);
    let server = format!(
        "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\
         [server.transport]\ntype = \"tcp\"\n[server.transport.tcp]\nnodelay = true\n\
         [server.services.origin]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{public}\"\n"
    );
    let client = format!(
        "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\
         [client.transport]\ntype = \"tcp\"\n[client.transport.tcp]\nnodelay = true\n\
         [client.services.origin]\ntoken = \"bench\"\nlocal_addr = \"127.0.0.1:{origin}\"\n"
    );
    let mut pids = [0; 2];
    for (i, (role, conf)) in [("server", server), ("client", client)]
        .into_iter()
        .enumerate()
    {
        let path = dir.join(format!("rathole-{role}.toml"));
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(dir.join(format!("rathole-{role}.log")))?;
        let child = Command::new(bin)
            .arg(format!("--{role}"))
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting rathole --{role}"))?;
        pids[i] = kids.add(&format!("rathole {role}"), child);
    }
    Ok((public, pids))
}
