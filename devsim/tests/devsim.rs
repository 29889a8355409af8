//! devsim behaves like the device it stands for: the tests of the gateway are only as
//! good as this.

use ponte_devsim::Devsim;
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(sim: &Devsim, body: reqwest::RequestBuilder) -> String {
    let resp = body.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let token = v["session"].as_str().unwrap().to_owned();
    assert!(token.contains('/') && token.contains('+'), "{token}");
    assert!(sim.sessions().contains(&token));
    token
}

#[tokio::test]
async fn login_session_and_pages_behave_like_a_controlid_turnstile() {
    let sim = Devsim::spawn("Catraca Teste").await.unwrap();
    let base = sim.base_url();
    let c = client();

    // The login page is `/`, UTF-8 with accents, and sets `lang` for the device's host.
    let resp = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert_eq!(set, "lang=pt_BR; Path=/; Domain=127.0.0.1");
    assert!(
        resp.headers().get("content-length").is_none(),
        "sent chunked"
    );
    let page = resp.text().await.unwrap();
    for want in [
        "faça login",
        "x.open(\"POST\", \"/login.fcgi\", false)",
        "document.cookie = \"session=\" + session + \"; path=/\"",
        "localStorage.clear()",
        "window.location.replace(\"/\" + lang + \"/html/index.html\")",
    ] {
        assert!(page.contains(want), "{want}");
    }

    // Login: form-urlencoded or JSON; wrong password refused.
    let form = login(
        &sim,
        c.post(format!("{base}/login.fcgi"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("login=admin&password=admin"),
    )
    .await;
    let json = login(
        &sim,
        c.post(format!("{base}/login.fcgi"))
            .json(&serde_json::json!({"login": "admin", "password": "admin"})),
    )
    .await;
    assert_ne!(form, json);
    let bad = c
        .post(format!("{base}/login.fcgi"))
        .json(&serde_json::json!({"login": "admin", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    // The session from `?session=` (encoded) or the cookie; anything else is 401 JSON.
    let enc = form.replace('+', "%2B").replace('/', "%2F");
    let poll = |q: String, cookie: Option<&str>| {
        let mut r = c
            .post(format!("{base}/load_objects.fcgi{q}"))
            .json(&serde_json::json!({"object": "access_logs"}));
        if let Some(v) = cookie {
            r = r.header("cookie", v.to_owned());
        }
        r.send()
    };
    let a: Value = poll(format!("?session={enc}"), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = poll(String::new(), Some(&format!("session={json}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(b["sequence"].as_u64() > a["sequence"].as_u64(), "{a} {b}");
    assert_eq!(a["access_logs"][0]["user_id"], 1);
    for (q, cookie) in [
        ("?session=nope".to_owned(), None),
        (String::new(), Some("session=nope")),
        (String::new(), None),
    ] {
        let r = poll(q, cookie).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            serde_json::json!({"error": "Invalid session"})
        );
    }

    // Dashboard: needs the session, links the way the real UI does.
    let r = c
        .get(format!("{base}/pt_BR/html/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (302, "/")
    );
    let dash = c
        .get(format!("{base}/pt_BR/html/index.html"))
        .header("cookie", format!("session={form}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "href=\"/css/style.css\"",
        "action=\"/logout.fcgi\"",
        &format!("href=\"http://{}/pt_BR/html/about.html\"", sim.addr),
        "\"/user_get_image.fcgi?user_id=1&session=\"",
        "\"/load_objects.fcgi?session=\"",
        "location.host + \"/events\"",
    ] {
        assert!(dash.contains(want), "{want}");
    }

    // The JPEG, the stylesheet, the Latin-1 page, the gzip page, the meta refresh.
    let img = c
        .get(format!(
            "{base}/user_get_image.fcgi?user_id=1&session={enc}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(img.headers()["content-type"], "image/jpeg");
    assert_eq!(&img.bytes().await.unwrap()[..3], &[0xff, 0xd8, 0xff]);
    let css = c
        .get(format!("{base}/css/style.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains("url(/img/bg.png)"));
    let latin = c
        .get(format!("{base}/pt_BR/html/config.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        latin.headers()["content-type"],
        "text/html; charset=ISO-8859-1"
    );
    let bytes = latin.bytes().await.unwrap();
    assert!(bytes.windows(13).any(|w| w == b"Configura\xe7\xf5es"));
    let gz = c
        .get(format!("{base}/pt_BR/html/status.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(&gz.bytes().await.unwrap()[..2], &[0x1f, 0x8b]);
    let refresh = c
        .get(format!("{base}/pt_BR/html/refresh.html"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refresh.contains("content=\"0; url=/pt_BR/html/index.html\""));

    // Logout redirects with the device's absolute address and ends the session.
    let out = c
        .post(format!("{base}/logout.fcgi"))
        .header("cookie", format!("session={form}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 302);
    assert_eq!(out.headers()["location"], format!("http://{}/", sim.addr));
    assert!(!sim.sessions().contains(&form));

    // /echo shows what arrived; seen() remembers every request with its status.
    let echo: Value = c
        .get(format!("{base}/echo?x=1"))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["target"], "/echo?x=1");
    assert_eq!(echo["headers"]["authorization"][0], "Basic YTpi");
    let seen = sim.seen();
    let last = seen.last().unwrap();
    assert_eq!((last.target.as_str(), last.status), ("/echo?x=1", 200));
    assert!(seen
        .iter()
        .any(|s| s.status == 401 && s.target == "/load_objects.fcgi?session=nope"));
}

#[tokio::test]
async fn large_bodies_are_generated_to_the_byte() {
    let sim = Devsim::spawn("Catraca").await.unwrap();
    let c = client();
    let n = 1_000_003u64;
    let bin = c
        .get(format!("{}/download?bytes={n}", sim.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bin.len() as u64, n);
    let html = c
        .get(format!("{}/big.html?bytes={n}", sim.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(html.len() as u64, n);
    assert!(html.starts_with(b"<p><a href=\"/pt_BR/html/about.html\">"));
    let bad = c
        .get(format!("{}/download?bytes=lots", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
