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
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
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
    let again = client().get(&url).send().await.unwrap();
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
    // Only device cookies reach the device; the grant, the SaaS's cookies and its bearer
    // token do not.
    let echo: Value = client()
        .get(format!("{gw}{prefix}echo"))
        .header("cookie", format!("saas=secret; {mine}; __pd_a=1"))
        .header("authorization", "Bearer saas-user-jwt")
        .header("referer", format!("{gw}{prefix}page"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &echo["headers"];
    assert_eq!(h["cookie"], "a=1", "{h}");
    assert!(h.get("authorization").is_none(), "{h}");
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
