use super::*;
use axum::routing::get;

fn app() -> axum::Router {
    axum::Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve("test", listener, app(), limits, stop.clone()));
    (addr, stop)
}

/// Reads until the server closes (bounded by `within`); what it sent.
async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test]
async fn a_head_that_never_ends_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut slow, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "{got}");
    // Silent from the accept: the same timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    read_to_close(&mut silent, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn idle_keep_alive_has_its_own_timeout_and_the_next_head_the_header_one() {
    let (addr, _stop) = start(Limits {
        header_read_timeout: Duration::from_millis(300),
        keepalive_idle_timeout: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1024];
    tcp.write_all(GET).await.unwrap();
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Idle longer than the header timeout: still open.
    tokio::time::sleep(Duration::from_millis(700)).await;
    tcp.write_all(GET).await.unwrap();
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "closed while idle");
    // A next head begun but not finished: closed after the header timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let begun = Instant::now();
    tcp.write_all(b"GET / HT").await.unwrap();
    read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        begun.elapsed() < Duration::from_millis(1200),
        "{:?}",
        begun.elapsed()
    );
    // And an idle one is closed after the idle timeout.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(GET).await.unwrap();
    let _ = tcp.read(&mut buf).await.unwrap();
    let idle = Instant::now();
    read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        idle.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        idle.elapsed()
    );
}

#[tokio::test]
async fn past_a_cap_the_answer_is_503_and_close() {
    let (addr, _stop) = start(Limits {
        max_connections: 3,
        max_connections_per_address: 2,
        ..Default::default()
    })
    .await;
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(GET).await.unwrap();
    let got = read_to_close(&mut c, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(got.contains(r#""code":"TOO_MANY_CONNECTIONS""#), "{got}");
    // Another address (127.0.0.2 is loopback too) takes the last slot, then the
    // listener is full for everyone.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let d = other.connect(addr).await.unwrap();
    let third = tokio::net::TcpSocket::new_v4().unwrap();
    third.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut e = third.connect(addr).await.unwrap();
    let got = read_to_close(&mut e, Duration::from_secs(3)).await;
    assert!(got.contains(r#""code":"BUSY""#), "{got}");
    // Closing one frees its slot.
    drop((a, b, d));
    let mut buf = [0u8; 256];
    let mut f = None;
    for _ in 0..100 {
        let mut t = TcpStream::connect(addr).await.unwrap();
        t.write_all(GET).await.unwrap();
        let n = t.read(&mut buf).await.unwrap_or(0);
        if buf[..n].starts_with(b"HTTP/1.1 200") {
            f = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f.is_some(), "slots are given back");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let held = Arc::new(tokio::sync::Mutex::new(Some((rx, entered_tx))));
    let app = axum::Router::new().route(
        "/",
        get(move || async move {
            let (rx, entered) = held.lock().await.take().unwrap();
            let _ = entered.send(());
            let _ = rx.await;
            "done"
        }),
    );
    let server = tokio::spawn(serve(
        "test",
        listener,
        app,
        Limits::default(),
        stop.clone(),
    ));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(GET).await.unwrap();
    let idle = TcpStream::connect(addr).await.unwrap();
    entered.await.unwrap();
    stop.cancel();
    assert!(!server.is_finished());
    tx.send(()).unwrap();
    let got = read_to_close(&mut tcp, Duration::from_secs(3)).await;
    assert!(got.ends_with("done"), "{got}");
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("serve returns once the request is done")
        .unwrap()
        .unwrap();
    drop(idle);
}

#[test]
fn ipv6_counts_per_64() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    assert_eq!(address_key(a), address_key(b));
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(address_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
}
