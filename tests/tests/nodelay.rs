//! Every socket the cloud accepts has `TCP_NODELAY`: API, relay and gateway listeners.
//!
//! Without it, a response written in more than one piece (head, then body chunks) waits
//! for the peer's delayed ACK: a steady 20-40 ms per keep-alive request, the stall seen
//! on the shipped binaries. The option is read off the server's own end of a connection:
//! the accepted socket is found in this process (`/proc/self/net/tcp` → inode →
//! `/proc/self/fd`), and a small Python helper duplicates it with `pidfd_getfd(2)` and
//! asks `getsockopt(TCP_NODELAY)` (no unsafe code here).

use ponte_tests::cloud::{Backend, TestCloud};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The inode of this process's TCP socket from `local` to `remote` (both IPv4), if any.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<String> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => unreachable!("the test listens on 127.0.0.1"),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/self/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&l.as_str()) && f.get(2) == Some(&r.as_str())).then(|| f[9].to_owned())
    })
}

fn fd_of(inode: &str) -> Option<u32> {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").ok()?.find_map(|e| {
        let e = e.ok()?;
        (std::fs::read_link(e.path()).ok()?.to_str()? == want)
            .then(|| e.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

const GETSOCKOPT: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(int(sys.argv[1]))
fd = libc.syscall(438, pidfd, int(sys.argv[2]), 0)  # pidfd_getfd
if fd < 0:
    raise OSError(ctypes.get_errno(), "pidfd_getfd")
s = socket.socket(fileno=fd)
print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
"#;

/// `TCP_NODELAY` on the server end of a fresh connection to `listener`.
async fn server_side_nodelay(listener: SocketAddr) -> bool {
    let client = TcpStream::connect(listener).unwrap();
    let local = client.local_addr().unwrap();
    // The server accepts on its own task: wait for its end to exist.
    let mut fd = None;
    ponte_tests::wait_for(Duration::from_secs(5), "the accepted socket", || {
        fd = socket_inode(listener, local).and_then(|i| fd_of(&i));
        std::future::ready(fd.is_some())
    })
    .await;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(GETSOCKOPT)
        .arg(std::process::id().to_string())
        .arg(fd.unwrap().to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "getsockopt helper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(client);
    String::from_utf8_lossy(&out.stdout).trim() != "0"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_sets_tcp_nodelay_on_accepted_sockets() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    for (name, addr) in [
        ("api", cloud.cloud.api_addr),
        ("relay", cloud.cloud.relay_addr),
        ("gateway", cloud.gateway_addr),
    ] {
        assert!(
            server_side_nodelay(addr).await,
            "{name} listener: accepted socket without TCP_NODELAY"
        );
    }
}
