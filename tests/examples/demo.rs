//! Tunnel demo: `cargo run -p ponte-tests --example demo`.
//!
//! Starts a relay, a stand-in device and a real connector on 127.0.0.1, then sends a
//! few requests to the device through the tunnel and prints what came back. (The full
//! product demo with console and remote UI is `ponte demo`, once those parts land.)

use ponte_core::{ProxyRequest, Router, WsFrame, WsRequest};
use ponte_tests::*;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let s = Stack::start().await;
    println!("relay     {}", s.relay.ws_url());
    println!("device    {}", s.origin.base_url());
    println!(
        "connector health http://{}/health",
        s.connector.handle.health_addr.unwrap()
    );
    println!();

    let r = &s.relay.relay;
    let t0 = Instant::now();
    let resp = r.send(CID, s.get("/hello")).await.unwrap();
    let body = resp.body.collect(1024).await.unwrap();
    println!(
        "GET /hello        → {} {:?} in {:?}",
        resp.status,
        body,
        t0.elapsed()
    );

    let resp = r.send(CID, s.get("/cookies")).await.unwrap();
    println!(
        "GET /cookies      → set-cookie {:?}",
        resp.headers.get_all("set-cookie").collect::<Vec<_>>()
    );

    let n = 50 * 1024 * 1024;
    let t0 = Instant::now();
    let resp = r.send(CID, s.get(&format!("/bytes/{n}"))).await.unwrap();
    let got = resp.body.collect(n + 1).await.unwrap().len();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "GET /bytes/50MiB  → {got} bytes in {secs:.2} s ({:.0} MB/s)",
        got as f64 / 1e6 / secs
    );

    let mut ws = r
        .open_ws(CID, WsRequest::new(s.origin.base_url(), "/ws"))
        .await
        .unwrap();
    ws.send(WsFrame::Text("olá".into())).await.unwrap();
    println!("WebSocket /ws     → {:?}", ws.recv().await.unwrap());

    let err = r
        .send(CID, ProxyRequest::new("http://169.254.169.254", "GET", "/"))
        .await
        .err()
        .unwrap();
    println!("GET metadata IP   → {} {}: {err}", err.status(), err.code());
    let err = r
        .send("no-such-connector", s.get("/hello"))
        .await
        .err()
        .unwrap();
    println!("offline connector → {} {}: {err}", err.status(), err.code());
}
