//! Slow clients against `ponte serve` as a process with 256 file descriptors: slowloris
//! (request heads begun and never finished) on the API, relay and gateway listeners.
//! Another tenant's API calls keep succeeding quickly; the slow connections are closed
//! after the header-read timeout; past a listener's cap a new connection gets `503` at
//! once (not a hang, not an accept that fails for want of descriptors); past the
//! per-address cap, too.
//!
//! The clients take distinct loopback source addresses (127.0.0.2, .3 …: all of
//! 127/8 is loopback on Linux) so that the per-address cap tells them apart; the
//! tenant calls from 127.0.0.1, each on a new connection.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

const PONTE: &str = env!("CARGO_BIN_EXE_ponte");

/// The settings under test (passed as flags).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_CONNECTIONS: usize = 30;
const PER_ADDRESS: usize = 20;
/// The process's descriptor limit: without the caps, the slow connections below
/// (3 x 20 + 10 + FLOOD) exceed it and the API stops accepting.
const NOFILE: u32 = 256;
const FLOOD: usize = 200;

struct Serve {
    child: Child,
    api: SocketAddr,
    relay: SocketAddr,
    gateway: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ponte(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(PONTE)
        .arg("admin")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("PONTE_CONFIG")
        .env_remove("PONTE_DATABASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ponte admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `ponte serve` on port 0 with `ulimit -n NOFILE`, and a user token for institution 3.
fn spawn_serve() -> (Serve, String) {
    let dir = std::env::temp_dir().join(format!("ponte-slowloris-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    ponte(
        &dir,
        &[
            "tenant",
            "add",
            "--cliente",
            "1",
            "--instituicao",
            "3",
            "--name",
            "Outra Escola",
        ],
    );
    let token = ponte(&dir, &["user-token", "--user", "9", "--instituicao", "3"]);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\""))
        .arg(PONTE)
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--api-listen", "127.0.0.1:0"])
        .args(["--relay-listen", "127.0.0.1:0"])
        .args(["--gateway-listen", "127.0.0.1:0"])
        .args(["--header-read-timeout", "3s"])
        .args(["--max-connections", &MAX_CONNECTIONS.to_string()])
        .args(["--max-connections-per-address", &PER_ADDRESS.to_string()]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PONTE_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .env("PONTE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "ponte: api on http://A, relay on ws://R/ws/connectors, gateway on http://G"
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let line = loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("ponte serve ended before it listened:\n{seen}");
        }
        seen.push_str(&line);
        if line.starts_with("ponte: api on ") {
            break line;
        }
    };
    // Keep reading its logs, so a full pipe never blocks it.
    std::thread::spawn(move || for _ in err.lines().map_while(Result::ok) {});
    let addr = |after: &str| -> SocketAddr {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        let end = rest.find(['/', ',', '\n']).unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    };
    let serve = Serve {
        api: addr("api on http://"),
        relay: addr("relay on ws://"),
        gateway: addr("gateway on http://"),
        child,
        dir,
    };
    (serve, token)
}

/// A TCP connection from `from` (a loopback address) to `to`.
async fn connect(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from.into(), 0))?;
    s.connect(to).await
}

/// A slowloris connection: a request head begun, never finished. When it was opened.
async fn slow(from: Ipv4Addr, to: SocketAddr) -> (TcpStream, Instant) {
    let opened = Instant::now();
    let mut tcp = connect(from, to).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    (tcp, opened)
}

/// What the server sends on `tcp` until it closes, within `limit`; `None` if it is
/// still open by then.
async fn until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, tcp.read_to_end(&mut out)).await {
        Err(_) => None,
        // A reset after the answer is a close too.
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
    }
}

/// A new connection from `from` is refused at once: 503, JSON `code`, Connection: close.
async fn assert_refused(name: &str, from: Ipv4Addr, to: SocketAddr, code: &str) {
    let started = Instant::now();
    let (mut tcp, _) = slow(from, to).await;
    let got = until_closed(&mut tcp, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("{name}: a connection past the cap hangs"));
    let head = got.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{name}: {got:?}");
    assert!(head.contains("connection: close"), "{name}: {got:?}");
    assert!(
        got.contains(&format!("\"code\":\"{code}\"")),
        "{name}: {got:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{name}: refused slowly"
    );
}

/// The other tenant's call, on a new connection from 127.0.0.1 that the server closes
/// (`Connection: close`): its latency. Read to the server's FIN, which the server sends
/// only once the connection's slot is free again, so the next fill counts exactly.
async fn tenant_call(api: SocketAddr, token: &str) -> Duration {
    let started = Instant::now();
    let call = async {
        let mut tcp = connect(ip(1), api).await?;
        let head = format!(
            "GET /api/instituicao/3/connector/status HTTP/1.1\r\nHost: {api}\r\n\
             Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    let got = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| panic!("the other tenant's API call hangs"))
        .unwrap_or_else(|e| panic!("the other tenant's API call failed: {e}"));
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let body = &got[got.find("\r\n\r\n").map_or(got.len(), |i| i + 4)..];
    let body: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {got}"));
    assert_eq!(body["paired"], false, "{body}");
    started.elapsed()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_every_listener_is_timed_out_and_capped_and_spares_other_tenants() {
    let (serve, token) = spawn_serve();
    let idle_latency = tenant_call(serve.api, &token).await;
    let listeners = [
        ("api", serve.api),
        ("relay", serve.relay),
        ("gateway", serve.gateway),
    ];
    let mut held = Vec::new();
    let t0 = Instant::now();

    // Per address: 127.0.0.2 fills its share of every listener, and its next
    // connection is refused; nobody else is affected.
    for (_, addr) in listeners {
        for _ in 0..PER_ADDRESS {
            held.push(slow(ip(2), addr).await);
        }
    }
    for (name, addr) in listeners {
        assert_refused(name, ip(2), addr, "TOO_MANY_CONNECTIONS").await;
    }
    let mut worst = tenant_call(serve.api, &token).await;

    // The gateway full: new connections to it get 503 BUSY, and a flood of them, many
    // more than the process has descriptors for, costs the API nothing.
    for _ in PER_ADDRESS..MAX_CONNECTIONS {
        held.push(slow(ip(3), serve.gateway).await);
    }
    assert_refused("gateway", ip(4), serve.gateway, "BUSY").await;
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let from = ip(10 + (i / PER_ADDRESS) as u8);
        if let Ok(mut tcp) = connect(from, serve.gateway).await {
            let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
            flood.push(tcp);
        }
    }
    let fds_flooded = open_fds(serve.child.id());
    for _ in 0..5 {
        worst = worst.max(tenant_call(serve.api, &token).await);
    }

    // The API and the relay full too: 503 BUSY there.
    for (name, addr) in &listeners[..2] {
        for _ in PER_ADDRESS..MAX_CONNECTIONS {
            held.push(slow(ip(3), *addr).await);
        }
        assert_refused(name, ip(4), *addr, "BUSY").await;
    }
    assert!(
        t0.elapsed() < HEADER_READ_TIMEOUT,
        "the checks above took {:?}, past the header-read timeout they rely on",
        t0.elapsed()
    );

    // Every slow connection is closed by the server once its header-read timeout is
    // up, not before.
    let mut closing = tokio::task::JoinSet::new();
    for (mut tcp, opened) in held {
        closing.spawn(async move {
            let left = (opened + HEADER_READ_TIMEOUT + Duration::from_secs(5))
                .saturating_duration_since(Instant::now());
            let got = until_closed(&mut tcp, left).await;
            (got, opened.elapsed())
        });
    }
    let mut latest = Duration::ZERO;
    while let Some(r) = closing.join_next().await {
        let (got, after) = r.unwrap();
        let got = got.unwrap_or_else(|| panic!("a slow connection still open after {after:?}"));
        assert!(
            after >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
            "closed after {after:?}, before the header-read timeout: {got:?}"
        );
        latest = latest.max(after);
    }
    for mut tcp in flood {
        assert!(
            until_closed(&mut tcp, Duration::from_secs(5))
                .await
                .is_some(),
            "a refused connection stays open"
        );
    }
    // Slots are given back: the API serves again.
    worst = worst.max(tenant_call(serve.api, &token).await);
    assert!(
        worst < Duration::from_secs(1),
        "the other tenant's calls took up to {worst:?} (idle: {idle_latency:?})"
    );
    eprintln!(
        "slowloris: other tenant's API call idle {idle_latency:?}, worst under attack \
         {worst:?}; ponte serve held {fds_flooded} fds (limit {NOFILE}) during the \
         {FLOOD}-connection flood; slow connections closed after at most {latest:?} \
         (header-read timeout {HEADER_READ_TIMEOUT:?})"
    );
}
