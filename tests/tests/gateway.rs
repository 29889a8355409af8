//! The remote-UI gateway end to end: API session → launch link → grant cookie → device
//! pages through the tunnel, rewritten; and every way in without the right grant refused.

use ponte_tests::cloud::{Backend, TestCloud};
use ponte_tests::origin::Origin;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Opens a session for `user` on equipment 100 of institution 2 and launches it:
/// (session id, grant cookie value).
async fn launch(cloud: &TestCloud, user: i32) -> (String, String) {
    let token = cloud.user_token(user, &[2], false);
    let (s, _, created) = cloud
        .call(
            "POST",
            "/api/instituicao/2/equipamento/100/remoto/sessoes",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let sid = created["sessionId"].as_str().unwrap().to_owned();
    let url = created["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("http://{}/remote/launch/", cloud.gateway_addr)));
    let resp = cloud.launch_response(&url).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], format!("/remote/s/{sid}/"));
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains(&format!("Path=/remote/s/{sid}/")) && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let grant = cookie
        .strip_prefix("__ponte_rs=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // The link works once: a leaked, used link is worthless.
    let again = cloud.launch_response(&url).await;
    assert_eq!(again.status(), 410);
    (sid, grant)
}

/// A request with the path exactly as given (no client-side `..` normalisation).
async fn raw_status(addr: std::net::SocketAddr, path: &str, cookie: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_session_shows_the_device_rewritten_and_refuses_everyone_else() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.maintenance_every = std::time::Duration::from_millis(100);
    })
    .await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let gw = format!("http://{}", cloud.gateway_addr);
    let (sid, grant) = launch(&cloud, 7).await;
    let prefix = format!("/remote/s/{sid}/");
    let get = |path: &str, cookie: Option<String>| {
        let mut r = client().get(format!("{gw}{path}"));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let mine = format!("__ponte_rs={grant}");

    // The page, through the tunnel, with the device's URLs under the prefix.
    let resp = get(&format!("{prefix}page"), Some(mine.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["referrer-policy"], "same-origin");
    let page = resp.text().await.unwrap();
    for want in [
        format!("href=\"{prefix}s.css\""),
        format!("href=\"{prefix}echo\""),
        format!("src=\"{prefix}hello\""),
        "href=\"rel.html\"".to_owned(),
        "<script>".to_owned(),
    ] {
        assert!(page.contains(&want), "{want} in {page}");
    }
    // Redirects and cookies are mapped under the prefix.
    let resp = get(&format!("{prefix}go"), Some(mine.clone()))
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], format!("{prefix}page"));
    let resp = get(&format!("{prefix}cookies"), Some(mine.clone()))
        .await
        .unwrap();
    let set: Vec<_> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        set,
        [
            format!("__pd_a=1; Path={prefix}"),
            format!("__pd_b=2; HttpOnly; Path={prefix}")
        ]
    );
    // Only device cookies reach the device; the grant, the SaaS's and the console's
    // cookies do not. The device's own credentials (its pages set them) do, and it sees
    // its own host.
    let echo: Value = client()
        .get(format!("{gw}{prefix}echo"))
        .header(
            "cookie",
            format!("saas=secret; ponte_console=c; {mine}; __pd_a=1"),
        )
        .header("authorization", "Bearer device-jwt")
        .header("referer", format!("{gw}{prefix}page"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &echo["headers"];
    assert_eq!(h["cookie"], "a=1", "{h}");
    assert_eq!(h["authorization"], "Bearer device-jwt", "{h}");
    assert_eq!(h["host"], origin.addr.to_string(), "{h}");
    assert_eq!(h["referer"], format!("{}/page", origin.base_url()), "{h}");

    // A navigation that lost the prefix comes back under it (by its Referer).
    let resp = client()
        .get(format!("{gw}/pt_BR/html/index.html?x=1"))
        .header("referer", format!("{gw}{prefix}page"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(
        resp.headers()["location"],
        format!("{prefix}pt_BR/html/index.html?x=1")
    );
    assert_eq!(get("/pt_BR/x", None).await.unwrap().status(), 404);

    // Without the grant: 401. Another user's grant (their own session): 403, and no
    // path trick reaches their session with mine or mine with theirs.
    assert_eq!(
        get(&format!("{prefix}page"), None).await.unwrap().status(),
        401
    );
    let (other_sid, other_grant) = launch(&cloud, 8).await;
    let theirs = format!("__ponte_rs={other_grant}");
    assert_eq!(
        get(&format!("{prefix}page"), Some(theirs.clone()))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get(
            &format!("{prefix}page"),
            Some("__ponte_rs=forged.jwt.value".into())
        )
        .await
        .unwrap()
        .status(),
        403
    );
    // A grant from another tenant's session (a user of institution 3) is refused too.
    cloud.add_equipment(3, 300, &origin.base_url(), true).await;
    let _paired3 = cloud.pair_connector(3).await;
    let (_, url3) = cloud.remote_session(9, 3, 300).await;
    let tenant3 = cloud.launch(&url3).await;
    assert_eq!(
        get(&format!("{prefix}page"), Some(tenant3))
            .await
            .unwrap()
            .status(),
        403
    );
    let addr = cloud.gateway_addr;
    for path in [
        format!("/remote/s/{sid}/../{other_sid}/page"),
        format!("/remote/s/{sid}/%2e%2e/{other_sid}/page"),
        format!("/remote/s/{sid}%2f..%2f{other_sid}/page"),
        format!("/remote/s/{sid}/..%2f{other_sid}/page"),
    ] {
        let status = raw_status(addr, &path, &theirs).await;
        assert!(
            matches!(status, 403 | 404),
            "{path} with their grant: {status}"
        );
    }
    assert_eq!(
        raw_status(addr, &format!("{prefix}page%0d%0aX-Evil:%201"), &mine).await,
        404
    );

    // What the gateway delivered is counted on the session (its audit fields).
    let token = cloud.user_token(7, &[2], false);
    ponte_tests::wait_for(
        std::time::Duration::from_secs(10),
        "usage recorded",
        || async {
            let (_, _, list) = cloud
                .call(
                    "GET",
                    "/api/instituicao/2/remoto/sessoes",
                    Some(&token),
                    None,
                )
                .await;
            list.as_array().into_iter().flatten().any(|v| {
                v["sessionId"] == sid.as_str()
                    && v["requests"].as_i64() >= Some(4)
                    && v["bytes"].as_i64() > Some(page.len() as i64)
            })
        },
    )
    .await;

    // Ended: its open download stops, and the next request gets a page saying so.
    let mut download = get(&format!("{prefix}bytes/1000000000"), Some(mine.clone()))
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut received = download.chunk().await.unwrap().map_or(0, |c| c.len());
    let (s, _, _) = cloud
        .call(
            "DELETE",
            &format!("/api/instituicao/2/equipamento/100/remoto/sessoes/{sid}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let rest = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Ok(Some(c)) = download.chunk().await {
            received += c.len();
        }
    })
    .await;
    assert!(rest.is_ok(), "the download must stop when the session ends");
    assert!(received < 200_000_000, "{received} bytes after the end");
    let resp = get(&format!("{prefix}page"), Some(mine)).await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("Sessão encerrada"));
}

/// Host mode: the launch link is on the session's own host, the grant cookie is that
/// host's, every path there is the device's (root-relative URLs are left alone, the
/// device's absolute ones become root-relative), and no other session's host admits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_gives_each_session_an_origin_of_its_own() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.remote_host_mode = true;
        o.api.gateway_public_url = o.api.gateway_public_url.replace("127.0.0.1", "localhost");
    })
    .await;
    let sim = ponte_devsim::Devsim::spawn("Catraca Entrada")
        .await
        .unwrap();
    cloud.add_equipment(2, 100, &sim.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let port = cloud.gateway_addr.port();
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let (sid2, _) = cloud.remote_session(7, 2, 100).await;
    let host = format!("s-{sid}.localhost");
    let host2 = format!("s-{sid2}.localhost");
    assert!(
        url.starts_with(&format!("http://{host}:{port}/remote/launch/")),
        "{url}"
    );
    // Session hosts resolve to the gateway (loopback), as *.localhost does in browsers.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, cloud.gateway_addr)
        .resolve(&host2, cloud.gateway_addr)
        .build()
        .unwrap();
    let get = |h: &str, path: &str, cookie: &str| {
        let mut r = http.get(format!("http://{h}:{port}{path}"));
        if !cookie.is_empty() {
            r = r.header("cookie", cookie.to_owned());
        }
        r.send()
    };

    let r = cloud.launch_response(&url).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("; Path=/;") && set.contains("HttpOnly"),
        "{set}"
    );
    assert!(!set.contains("Domain"), "{set}");
    let grant = set.split(';').next().unwrap().to_owned();

    // The device's own paths, /health included, are the device's here.
    let r = get(&host, "/", &grant).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["set-cookie"].to_str().unwrap(),
        "__pd_lang=pt_BR; Path=/"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Catraca Entrada</h1>") && page.contains("href=\"/css/style.css\""));
    assert_eq!(get(&host, "/health", &grant).await.unwrap().status(), 404);
    let login: serde_json::Value = http
        .post(format!("http://{host}:{port}/login.fcgi"))
        .header("cookie", grant.clone())
        .json(&serde_json::json!({"login": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["session"].as_str().unwrap();
    let cookies = format!("{grant}; __pd_session={token}");
    // The device's own credentials reach it, with its own host; the grant does not.
    let echo: serde_json::Value = http
        .get(format!("http://{host}:{port}/echo"))
        .header("cookie", format!("{cookies}; ponte_console=c"))
        .header("authorization", "Bearer node-red-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &echo["headers"];
    assert_eq!(h["authorization"][0], "Bearer node-red-token", "{h}");
    assert_eq!(h["host"][0], sim.addr.to_string(), "{h}");
    assert_eq!(h["cookie"][0], format!("session={token}"), "{h}");
    let dash = get(&host, "/pt_BR/html/index.html", &cookies)
        .await
        .unwrap();
    assert_eq!(dash.status(), 200);
    let dash = dash.text().await.unwrap();
    assert!(dash.contains("href=\"/pt_BR/html/config.html\""));
    // The device's absolute link, made root-relative on the session's origin.
    assert!(dash.contains("href=\"/pt_BR/html/about.html\""), "{dash}");
    let out = http
        .post(format!("http://{host}:{port}/logout.fcgi"))
        .header("cookie", cookies.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            out.status().as_u16(),
            out.headers()["location"].to_str().unwrap()
        ),
        (302, "/")
    );

    // Without the grant: 401; this grant on another session's host: 403; a host that
    // is not the remote domain's gets the gateway's own routes.
    assert_eq!(get(&host, "/", "").await.unwrap().status(), 401);
    // A grant planted ahead of the real one (cookie tossing from a sibling host) does not
    // lock the session out.
    let tossed = format!("__ponte_rs=junk; {grant}");
    assert_eq!(get(&host, "/", &tossed).await.unwrap().status(), 200);
    // A sibling session's page cannot make this session's device act: state-changing
    // requests and WebSockets must come from this origin.
    let sibling = format!("http://{host2}:{port}");
    for (method, headers) in [
        ("POST", vec![("origin", sibling.as_str())]),
        ("POST", vec![("sec-fetch-site", "same-site")]),
        (
            "GET",
            vec![
                ("origin", sibling.as_str()),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
        ),
    ] {
        let mut r = http
            .request(
                method.parse().unwrap(),
                format!("http://{host}:{port}/logout.fcgi"),
            )
            .header("cookie", grant.clone());
        for (n, v) in headers {
            r = r.header(n, v);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 403, "{method}");
        assert!(r.text().await.unwrap().contains("CROSS_ORIGIN"));
    }
    let own = http
        .post(format!("http://{host}:{port}/logout.fcgi"))
        .header("cookie", grant.clone())
        .header("origin", format!("http://{host}:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 302);
    // In host mode the gateway's own host serves no session.
    let apex = http
        .get(format!("http://{}/remote/s/{sid}/", cloud.gateway_addr))
        .header("cookie", grant.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(apex.status(), 404);
    assert_eq!(get(&host2, "/", &grant).await.unwrap().status(), 403);
    let other = http
        .get(format!("http://{}/", cloud.gateway_addr))
        .header("host", format!("s-{sid}.example.com:{port}"))
        .header("cookie", grant.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// The device's WebSocket through the gateway: messages both ways, the device cookie
/// and nothing else on the handshake, and the socket closed (1008) when the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_websocket_passes_through_until_the_session_ends() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let sim = ponte_devsim::Devsim::spawn("Catraca Entrada")
        .await
        .unwrap();
    cloud.add_equipment(2, 100, &sim.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    let gw = format!("{}/remote/s/{sid}", cloud.gateway_addr);
    let login: Value = client()
        .post(format!("http://{gw}/login.fcgi"))
        .header("cookie", grant.clone())
        .json(&serde_json::json!({"login": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["session"].as_str().unwrap();

    // Without the device's session cookie the device refuses the upgrade; the page
    // gets 502 (the tunnel reports a refused device WebSocket, not its status).
    let mut req = format!("ws://{gw}/events").into_client_request().unwrap();
    req.headers_mut().insert("cookie", grant.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 502),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }

    let mut req = format!("ws://{gw}/events").into_client_request().unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("{grant}; __pd_session={token}; saas=1")
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("olá")).await.unwrap();
    let mut events = 0;
    let mut echoed = false;
    while events < 2 || !echoed {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("device messages keep coming")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["echo"] == "olá" {
            echoed = true;
        } else {
            assert_eq!(v["event"], "catraca");
            events += 1;
        }
    }
    // The page closing its socket gets the close handshake back (a clean close).
    let mut req2 = format!("ws://{gw}/events").into_client_request().unwrap();
    req2.headers_mut().insert(
        "cookie",
        format!("{grant}; __pd_session={token}").parse().unwrap(),
    );
    let (mut ws2, _) = tokio_tungstenite::connect_async(req2).await.unwrap();
    ws2.close(None).await.unwrap();
    let reply = ponte_tests::close_frame(&mut ws2).await;
    assert!(
        reply.as_ref().is_none_or(|c| u16::from(c.code) == 1000),
        "{reply:?}"
    );
    let handshake = sim
        .seen()
        .into_iter()
        .rfind(|s| s.target == "/events")
        .unwrap();
    assert_eq!(
        handshake.cookie.as_deref(),
        Some(format!("session={token}").as_str())
    );

    // Ending the session closes the socket with a policy close.
    let user = cloud.user_token(7, &[2], false);
    let (s, _, body) = cloud
        .call(
            "DELETE",
            &format!("/api/instituicao/2/equipamento/100/remoto/sessoes/{sid}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let close = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("the socket closes when the session ends")
        {
            Some(Ok(Message::Close(c))) => break c,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1008);
}

/// A session past its absolute cap gets a page saying it expired, not the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_shows_a_page_saying_so() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.sessions.max = std::time::Duration::from_secs(1);
        o.api.maintenance_every = std::time::Duration::from_millis(100);
    })
    .await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    let token = cloud.user_token(7, &[2], false);
    ponte_tests::wait_for(
        std::time::Duration::from_secs(10),
        "the session to expire",
        || async {
            let (_, _, list) = cloud
                .call(
                    "GET",
                    "/api/instituicao/2/remoto/sessoes",
                    Some(&token),
                    None,
                )
                .await;
            list.as_array()
                .into_iter()
                .flatten()
                .any(|v| v["sessionId"] == sid.as_str() && v["status"] == "EXPIRADA")
        },
    )
    .await;
    let resp = client()
        .get(format!("http://{}/remote/s/{sid}/page", cloud.gateway_addr))
        .header("cookie", grant)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    assert_eq!(resp.headers()["x-ponte-error"], "SESSION_EXPIRED");
    assert!(resp.text().await.unwrap().contains("Sessão expirada"));
}

/// Host mode: a launch code opened on another session's host is refused and not spent;
/// on its own host it still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_launch_code_on_the_wrong_host_is_refused_and_stays_usable() {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.remote_host_mode = true;
        o.api.gateway_public_url = o.api.gateway_public_url.replace("127.0.0.1", "localhost");
    })
    .await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let port = cloud.gateway_addr.port();
    let (sid, _url) = cloud.remote_session(7, 2, 100).await;
    let (sid2, url2) = cloud.remote_session(7, 2, 100).await;
    let code2 = url2.rsplit('/').next().unwrap();
    let wrong = format!("http://s-{sid}.localhost:{port}/remote/launch/{code2}");
    let r = cloud.launch_response(&wrong).await;
    assert_eq!(r.status(), 410);
    assert!(r.headers().get("set-cookie").is_none());
    let r = cloud.launch_response(&url2).await;
    assert_eq!(r.status(), 303, "the code survived the wrong host");
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("__ponte_rs="));
    assert_eq!(r.headers()["location"], "/");
    assert!(url2.starts_with(&format!("http://s-{sid2}.localhost:{port}/")));
}

/// A launch link's GET (what a chat app's link preview does) spends nothing; the POST
/// its page makes does, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_link_get_spends_nothing_and_its_post_works_once() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    for _ in 0..3 {
        let preview = client().get(&url).send().await.unwrap();
        assert_eq!(preview.status(), 200);
        assert!(preview.headers().get("set-cookie").is_none());
        assert_eq!(preview.headers()["cache-control"], "no-store");
    }
    // A POST from another origin (a page elsewhere submitting the link) is refused and
    // spends nothing either.
    let r = client()
        .post(&url)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = cloud.launch_response(&url).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/remote/s/{sid}/"));
    let r = cloud.launch_response(&url).await;
    assert_eq!(r.status(), 410, "one-time");
}

/// An ended session answers 410 to whatever reaches its prefix, grant or no grant (a
/// service worker it left behind fetching without credentials, say); a session that
/// was never launched still wants its grant (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sessions_urls_answer_410_with_or_without_the_grant() {
    let origin = Origin::spawn().await;
    let (cloud, _paired, sid, grant) =
        ponte_tests::cloud::launched_session(&origin.base_url(), |_| {}).await;
    let at = |p: &str| format!("http://{}/remote/s/{sid}/{p}", cloud.gateway_addr);
    let r = client().get(at("hello")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(at("hello"))
        .header("cookie", &grant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = cloud.user_token(7, &[2], false);
    let (s, _, _) = cloud
        .call(
            "DELETE",
            &format!("/api/instituicao/2/equipamento/100/remoto/sessoes/{sid}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    for (path, cookie) in [("hello", grant.as_str()), ("hello", ""), ("sw.js", "")] {
        let mut r = client().get(at(path)).header("service-worker", "script");
        if !cookie.is_empty() {
            r = r.header("cookie", cookie);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 410, "{path} with {cookie:?}");
    }
}

/// A device's `Service-Worker-Allowed` never widens a worker's scope past the session:
/// on a worker script it is pinned under the prefix (`/` → the prefix), a value that
/// would leave it refuses the script (403), and other responses lose the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_service_worker_scope_is_pinned_to_its_session() {
    let origin = Origin::spawn().await;
    let (cloud, _paired, sid, grant) =
        ponte_tests::cloud::launched_session(&origin.base_url(), |_| {}).await;
    let prefix = format!("/remote/s/{sid}/");
    let fetch = |q: &str, worker: bool| {
        let mut r = client()
            .get(format!("http://{}{prefix}sw.js{q}", cloud.gateway_addr))
            .header("cookie", &grant);
        if worker {
            r = r.header("service-worker", "script");
        }
        r.send()
    };
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    for (allowed, want) in [
        ("/", Some(prefix.clone())),
        ("/app/", Some(format!("{prefix}app/"))),
        (
            &format!("{}/x/", origin.base_url()),
            Some(format!("{prefix}x/")),
        ),
        ("./", Some(prefix.clone())),
        ("http://evil.example/", None),
        // Dot segments resolve as on the device's own origin: never above its root.
        ("/../../", Some(prefix.clone())),
        ("/%2e%2e/", Some(prefix.clone())),
        // Under the prefix already: the dot segment is the device's, resolved there.
        (&format!("{prefix}../"), Some(format!("{prefix}remote/s/"))),
    ] {
        let r = fetch(&format!("?allowed={}", enc(allowed)), true)
            .await
            .unwrap();
        match &want {
            Some(scope) => {
                assert_eq!(r.status(), 200, "{allowed}");
                assert_eq!(
                    r.headers()["service-worker-allowed"],
                    scope.as_str(),
                    "{allowed}"
                );
            }
            None => assert_eq!(r.status(), 403, "{allowed}"),
        }
        let plain = fetch(&format!("?allowed={}", enc(allowed)), false)
            .await
            .unwrap();
        assert_eq!(plain.status(), 200);
        assert!(
            plain.headers().get("service-worker-allowed").is_none(),
            "{allowed}"
        );
    }
}

/// A device may not set cookies named like Ponte's own, even under its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cookies_named_like_pontes_own_are_dropped() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    let r = client()
        .get(format!(
            "http://{}/remote/s/{sid}/toss?c=x",
            cloud.gateway_addr
        ))
        .header("cookie", &grant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert!(set.is_empty(), "{set:?}");
}

/// Ending a session cuts what it has open on the device side too, not only toward the
/// browser: a download the browser has stopped reading (held by backpressure, so the
/// device is mid-answer) and a device WebSocket. The browser keeps both open: only the
/// session's end can close the device's side, within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_cuts_its_device_downloads_and_websockets() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let origin = Origin::spawn().await;
    let (cloud, _paired, sid, grant) =
        ponte_tests::cloud::launched_session(&origin.base_url(), |_| {}).await;
    let gw = format!("{}/remote/s/{sid}", cloud.gateway_addr);
    let download = client()
        .get(format!("http://{gw}/bytes/209715200"))
        .header("cookie", grant.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut req = format!("ws://{gw}/ws").into_client_request().unwrap();
    req.headers_mut().insert("cookie", grant.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let stats = origin.stats.clone();
    // Backpressure must reach the device first: the gateway blocked writing to a browser
    // that reads nothing, and nothing polling the body any more. There is no event for
    // that, so wait until the device has been held (no byte served) for 300 ms.
    let mut held_since = (stats.bytes_served.load(SeqCst), tokio::time::Instant::now());
    ponte_tests::wait_until(std::time::Duration::from_secs(30), || {
        let served = stats.bytes_served.load(SeqCst);
        if served != held_since.0 {
            held_since = (served, tokio::time::Instant::now());
        }
        served > 0 && held_since.1.elapsed() >= std::time::Duration::from_millis(300)
    })
    .await;
    assert!(stats.bytes_served.load(SeqCst) < 209_715_200);
    assert_eq!(stats.aborted_bodies.load(SeqCst), 0);
    assert_eq!(stats.ws_ended.load(SeqCst), 0);

    let user = cloud.user_token(7, &[2], false);
    let (s, _, body) = cloud
        .call(
            "DELETE",
            &format!("/api/instituicao/2/equipamento/100/remoto/sessoes/{sid}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let event = stats.body_event.notified();
        tokio::pin!(event);
        event.as_mut().enable();
        if stats.aborted_bodies.load(SeqCst) == 1 && stats.ws_ended.load(SeqCst) == 1 {
            break;
        }
        tokio::time::timeout_at(deadline, event).await.unwrap_or_else(|_| {
            panic!(
                "within 1 s of the session's end the device saw {} download(s) cut and {} WebSocket(s) end",
                stats.aborted_bodies.load(SeqCst),
                stats.ws_ended.load(SeqCst)
            )
        });
    }
    assert_eq!(stats.finished_bodies.load(SeqCst), 0);
    drop((download, ws));
}

/// Every gateway request takes a token from its session's bucket, then from its
/// connector's (`session_rate_*`, `connector_rate_*`): past either burst it is 429
/// `RATE_LIMITED` with a `Retry-After` no longer than one token's refill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_requests_are_rate_limited_per_session_and_per_connector() {
    use ponte_api::ratelimit::Rate;
    const SESSION_BURST: u32 = 3;
    const CONNECTOR_BURST: u32 = 5;
    // Slow refills (100 s a token): nothing comes back during the test.
    const PER_SECOND: f64 = 0.01;
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        o.api.rate_limits.session = Rate {
            per_second: PER_SECOND,
            burst: SESSION_BURST,
        };
        o.api.rate_limits.connector = Rate {
            per_second: PER_SECOND,
            burst: CONNECTOR_BURST,
        };
    })
    .await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    // Two sessions (two users) on the one connector.
    let (a, grant_a) = launch(&cloud, 7).await;
    let (b, grant_b) = launch(&cloud, 8).await;
    let gw = cloud.gateway_addr;
    let get = |sid: &str, grant: &str| {
        client()
            .get(format!("http://{gw}/remote/s/{sid}/hello"))
            .header("cookie", format!("__ponte_rs={grant}"))
            .send()
    };
    let assert_limited = |r: reqwest::Response, what: &str| {
        assert_eq!(r.status(), 429, "{what}");
        assert_eq!(r.headers()["x-ponte-error"], "RATE_LIMITED", "{what}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let refill = (1.0 / PER_SECOND).ceil() as u64;
        assert!((1..=refill).contains(&retry), "{what}: Retry-After {retry}");
    };
    for i in 0..SESSION_BURST {
        let r = get(&a, &grant_a).await.unwrap();
        assert_eq!(r.status(), 200, "session A request {i}");
    }
    assert_limited(get(&a, &grant_a).await.unwrap(), "session A past its burst");
    // Session B has its own bucket; the connector's, shared, holds the rest: B gets
    // CONNECTOR_BURST - SESSION_BURST (fewer than its own burst), then 429.
    let left = CONNECTOR_BURST - SESSION_BURST;
    assert!(left < SESSION_BURST);
    for i in 0..left {
        let r = get(&b, &grant_b).await.unwrap();
        assert_eq!(r.status(), 200, "session B request {i}");
    }
    assert_limited(
        get(&b, &grant_b).await.unwrap(),
        "session B within its own burst, past the connector's",
    );
}

/// The grant cookie is `HttpOnly; SameSite=Lax` (a top-level navigation into the
/// session carries it, a cross-site subrequest does not), and `Secure` exactly when the
/// gateway's public URL is https (TLS ends at the proxy in front).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_cookie_is_samesite_lax_and_secure_behind_https() {
    for https in [false, true] {
        let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
            if https {
                o.api.gateway_public_url = o.api.gateway_public_url.replace("http://", "https://");
            }
        })
        .await;
        let origin = Origin::spawn().await;
        cloud.add_equipment(2, 100, &origin.base_url(), true).await;
        let _paired = cloud.pair_connector(2).await;
        let (sid, url) = cloud.remote_session(7, 2, 100).await;
        let scheme = if https { "https://" } else { "http://" };
        assert!(url.starts_with(scheme), "{url}");
        // The proxy in front terminates TLS: the gateway itself is plain HTTP.
        let resp = cloud
            .launch_response(&url.replacen(scheme, "http://", 1))
            .await;
        assert_eq!(resp.status(), 303);
        let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        let mut attrs: Vec<String> = set
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.starts_with("max-age="))
            .collect();
        attrs.sort();
        let mut want = vec![
            format!("path=/remote/s/{sid}/"),
            "httponly".to_owned(),
            "samesite=lax".to_owned(),
        ];
        if https {
            want.push("secure".to_owned());
        }
        want.sort();
        assert_eq!(attrs, want, "https: {https}: {set}");
    }
}

/// A device page sent with `Content-Encoding: deflate` (zlib) is decoded, rewritten
/// under the session's prefix and sent on uncompressed, as gzip and brotli pages are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_device_pages_deflate_included_are_decoded_and_rewritten() {
    let origin = Origin::spawn().await;
    let (cloud, _paired, sid, grant) =
        ponte_tests::cloud::launched_session(&origin.base_url(), |_| {}).await;
    let prefix = format!("/remote/s/{sid}/");
    for coding in ["deflate", "gzip", "br"] {
        let resp = client()
            .get(format!(
                "http://{}{prefix}page/{coding}",
                cloud.gateway_addr
            ))
            .header("cookie", &grant)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{coding}");
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "{coding}: {:?}",
            resp.headers()
        );
        let page = String::from_utf8(resp.bytes().await.unwrap().to_vec())
            .unwrap_or_else(|e| panic!("{coding}: not text: {e}"));
        for want in [
            format!("href=\"{prefix}s.css\""),
            format!("href=\"{prefix}echo\""),
            format!("src=\"{prefix}hello\""),
            "<script>".to_owned(),
        ] {
            assert!(page.contains(&want), "{coding}: {want} in {page}");
        }
    }
}

/// The original Node connector sends the headers it is given as they are, `Host`
/// included: the gateway itself names the device's host (or the device would build its
/// absolute links to the gateway's) and keeps one hop's headers and Ponte's credentials
/// to itself; the device's own `Authorization` goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_connector_shows_the_device_its_own_host_and_credentials() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _legacy = cloud.legacy_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let grant = cloud.launch(&url).await;
    let gw = format!("http://{}", cloud.gateway_addr);
    for auth in [
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
        "Basic YWRtaW46YWRtaW4=",
        "Digest username=\"admin\", realm=\"d\", nonce=\"n\", uri=\"/echo\", response=\"r\"",
    ] {
        let resp = client()
            .get(format!("{gw}/remote/s/{sid}/echo"))
            .header(
                "cookie",
                format!("{grant}; ponte_console=c; __Host-ponte_console=c; __pd_s=1"),
            )
            .header("authorization", auth)
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("upgrade", "h2c")
            .header("proxy-authorization", "Basic cG9udGU6cG9udGU=")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let echo: Value = resp.json().await.unwrap();
        let h = echo["headers"].as_object().unwrap();
        assert_eq!(h["host"], origin.addr.to_string(), "{h:?}");
        assert_eq!(h["authorization"], auth, "{h:?}");
        assert_eq!(h["cookie"], "s=1", "{h:?}");
        for hop in [
            "x-hop",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(!h.contains_key(hop), "{hop} reached the device: {h:?}");
        }
    }
}
