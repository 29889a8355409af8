//! The remote UI in a real browser: headless Chromium opens the launch link, logs in to
//! two simulated turnstiles in two tabs through the gateway, and uses them as on the LAN.

use ponte_devsim::Devsim;
use ponte_tests::browser::Browser;
use ponte_tests::cloud::{Backend, TestCloud};
use serde_json::{json, Value};

/// Launch link → device login page → admin/admin → the dashboard, polling.
async fn log_in(b: &Browser, url: &str, prefix: &str, device: &str) {
    b.goto(url).await;
    b.wait_css("#entrar").await;
    assert!(b.url().await.ends_with(prefix), "{}", b.url().await);
    devsim_login(b).await;
    assert_eq!(
        b.url().await,
        format!("{}pt_BR/html/index.html", full(b, prefix).await)
    );
    let name = b
        .js(
            "return document.getElementById('device').textContent",
            vec![],
        )
        .await;
    assert_eq!(name, device);
}

/// On devsim's login page: admin/admin, then the dashboard showing polled data. The
/// page's own script does a sync XHR to /login.fcgi, sets document.cookie, then
/// location.replace("/" + lang + "/html/index.html"), which only the Referer fallback
/// can bring back under the prefix.
async fn devsim_login(b: &Browser) {
    b.fill("#login", "admin").await;
    b.fill("#password", "admin").await;
    b.click("#entrar").await;
    b.wait_js(
        "document.getElementById('status') && document.getElementById('status').textContent === 'online'",
        "the dashboard to show polled data",
    )
    .await;
}

/// `http://gateway{prefix}` for the page the browser shows.
async fn full(b: &Browser, prefix: &str) -> String {
    let u = url::Url::parse(&b.url().await).unwrap();
    format!("{}{prefix}", u.origin().ascii_serialization())
}

/// Every request the current page made went to its own origin under `prefix` and
/// succeeded.
async fn assert_all_succeeded_under(b: &Browser, prefix: &str) -> usize {
    let reqs = b.requests().await;
    assert!(!reqs.is_empty());
    let origin = url::Url::parse(&b.url().await).unwrap().origin();
    for (url, status, kind) in &reqs {
        let u = url::Url::parse(url).unwrap();
        assert_eq!(u.origin(), origin, "{kind} {url} left the session's origin");
        assert!(
            u.path().starts_with(prefix),
            "{kind} {url} escaped the session prefix"
        );
        assert!((200..400).contains(status), "{kind} {url} → {status}");
    }
    reqs.len()
}

/// `/echo` as the device saw a request the page made (cookies the browser attached).
async fn echo(b: &Browser, extra_headers: Value) -> Value {
    let text = b
        .js_async(
            "const done = arguments[arguments.length - 1];
             fetch('/echo', {headers: arguments[0]}).then(r => r.text()).then(done, e => done('ERR ' + e));",
            vec![extra_headers],
        )
        .await;
    serde_json::from_str(text.as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The cookies a request carried, sorted.
fn cookies(echo: &Value) -> Vec<String> {
    let mut v: Vec<String> = echo["headers"]["cookie"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c.as_str().unwrap().split("; ").map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uses_two_turnstiles_through_the_gateway_as_on_the_lan() {
    two_turnstiles(false).await;
}

/// The same in host mode: each session on its own origin, `s-{sid}.localhost:port`
/// (Chromium resolves `*.localhost` to loopback itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_uses_two_turnstiles_in_host_mode() {
    two_turnstiles(true).await;
}

async fn two_turnstiles(host_mode: bool) {
    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        if host_mode {
            o.api.remote_host_mode = true;
            o.api.gateway_public_url = o.api.gateway_public_url.replace("127.0.0.1", "localhost");
        }
    })
    .await;
    let prefix = |sid: &str| match host_mode {
        true => "/".to_owned(),
        false => format!("/remote/s/{sid}/"),
    };
    let entrada = Devsim::spawn("Catraca Entrada").await.unwrap();
    let saida = Devsim::spawn("Catraca Saída").await.unwrap();
    cloud.add_equipment(2, 100, &entrada.base_url(), true).await;
    cloud.add_equipment(2, 101, &saida.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let b = Browser::start().await;

    // The SaaS's own cookie, set on the API origin. Browsers do not keep cookies apart by
    // port, so it is sent to the gateway too; it must stop there.
    b.goto(&cloud.url("/health")).await;
    b.js(
        "document.cookie = 'saas_session=segredo-do-saas; path=/'",
        vec![],
    )
    .await;

    let (sid1, url1) = cloud.remote_session(7, 2, 100).await;
    let p1 = prefix(&sid1);
    if host_mode {
        let port = cloud.gateway_addr.port();
        assert!(
            url1.starts_with(&format!("http://s-{sid1}.localhost:{port}/remote/launch/")),
            "{url1}"
        );
    }
    let origin1 = url::Url::parse(&url1)
        .unwrap()
        .origin()
        .ascii_serialization();
    if host_mode {
        // The SaaS cookie on the session's own host as well (a parent-domain cookie would
        // arrive the same way).
        b.goto(&format!("{origin1}/")).await;
        b.js(
            "document.cookie = 'saas_session=segredo-do-saas; path=/'",
            vec![],
        )
        .await;
    }
    log_in(&b, &url1, &p1, "Catraca Entrada").await;
    assert!(b.url().await.starts_with(&origin1), "{}", b.url().await);
    let tab1 = b.client.window().await.unwrap();

    // Polled data changes; the photo, the stylesheet's image and the live-events
    // WebSocket work; the WebSocket echoes what the page sent.
    let first: u64 = b
        .js(
            "return +document.getElementById('sequence').textContent",
            vec![],
        )
        .await
        .as_u64()
        .unwrap();
    b.wait_js(
        &format!("+document.getElementById('sequence').textContent > {first}"),
        "a newer poll",
    )
    .await;
    b.wait_js(
        "document.getElementById('photo').naturalWidth === 4",
        "the user photo (JPEG)",
    )
    .await;
    b.wait_js(
        "+document.getElementById('events').textContent >= 2",
        "live events over the WebSocket",
    )
    .await;
    b.wait_js(
        "document.getElementById('ws-state').textContent === 'eco: olá'",
        "the WebSocket echo",
    )
    .await;
    b.wait_js(
        "performance.getEntriesByType('resource').some(e => e.name.endsWith('/img/bg.png') && e.responseStatus === 200)",
        "the stylesheet's url(/img/bg.png)",
    )
    .await;
    let n = assert_all_succeeded_under(&b, &p1).await;
    assert!(n >= 5, "{n} requests");

    // Links: root-relative to a Latin-1 page, gzip page, the device's absolute URL,
    // a meta refresh; each lands under the prefix and renders right.
    b.click("#config").await;
    b.wait_js("document.getElementById('title')", "the config page")
        .await;
    assert_eq!(
        b.js(
            "return document.getElementById('title').textContent",
            vec![]
        )
        .await,
        "Configurações do equipamento"
    );
    assert_all_succeeded_under(&b, &p1).await;
    b.click("#back").await;
    b.click("#status-page").await;
    b.wait_js("document.getElementById('title')", "the gzip page")
        .await;
    assert_eq!(
        b.js(
            "return document.getElementById('title').textContent",
            vec![]
        )
        .await,
        "Status: operação normal"
    );
    b.click("#back").await;
    b.click("#about").await;
    b.wait_js(
        "document.title === 'Sobre'",
        "the page behind the absolute link",
    )
    .await;
    assert!(b
        .url()
        .await
        .contains(&format!("{p1}pt_BR/html/about.html")));
    assert_all_succeeded_under(&b, &p1).await;
    b.goto(&format!("{}pt_BR/html/refresh.html", full(&b, &p1).await))
        .await;
    b.wait_js(
        "document.getElementById('sequence')",
        "the meta refresh to the dashboard",
    )
    .await;
    assert!(b
        .url()
        .await
        .ends_with(&format!("{p1}pt_BR/html/index.html")));

    // Second tab, second turnstile, its own session.
    let tab2 = b.client.new_window(true).await.unwrap().handle;
    b.client.switch_to_window(tab2.clone()).await.unwrap();
    let (sid2, url2) = cloud.remote_session(7, 2, 101).await;
    let p2 = prefix(&sid2);
    log_in(&b, &url2, &p2, "Catraca Saída").await;
    let origin2 = url::Url::parse(&url2)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert!(b.url().await.starts_with(&origin2), "{}", b.url().await);
    assert_eq!(host_mode, origin1 != origin2);
    b.wait_js(
        "+document.getElementById('events').textContent >= 1",
        "tab 2's live events",
    )
    .await;
    assert_all_succeeded_under(&b, &p2).await;

    // Each device sees its own session cookie and nothing else: not the other session's,
    // not the SaaS's cookie, not the grant.
    let [tok1] = entrada.sessions().try_into().unwrap();
    let [tok2] = saida.sessions().try_into().unwrap();
    let e2 = echo(&b, json!({"Authorization": "Bearer device-jwt"})).await;
    b.client.switch_to_window(tab1).await.unwrap();
    let e1 = echo(&b, json!({})).await;
    assert_eq!(
        cookies(&e1),
        ["lang=pt_BR".to_owned(), format!("session={tok1}")]
    );
    assert_eq!(
        cookies(&e2),
        ["lang=pt_BR".to_owned(), format!("session={tok2}")]
    );
    // A token the device's page sets is the device's: it goes through.
    assert_eq!(
        e2["headers"]["authorization"][0], "Bearer device-jwt",
        "{e2}"
    );
    assert_eq!(e1["headers"]["host"][0], entrada.addr.to_string());
    for (sim, own, other) in [(&entrada, &tok1, &tok2), (&saida, &tok2, &tok1)] {
        let seen = sim.seen();
        assert!(seen.len() > 10, "{} requests", seen.len());
        for s in &seen {
            assert!(s.status < 400, "{} {} → {}", s.method, s.target, s.status);
            let cookie = s.cookie.as_deref().unwrap_or("");
            for leaked in ["saas_session", "__ponte_rs", "__pd_", other.as_str()] {
                assert!(
                    !cookie.contains(leaked),
                    "{leaked} reached {}: {cookie}",
                    s.target
                );
            }
            if !s.target.starts_with("/echo") {
                assert!(s.authorization.is_none(), "{}", s.target);
            }
            if s.target.starts_with("/pt_BR/html/index.html") {
                assert!(cookie.contains(own.as_str()));
            }
        }
    }

    // Logout: a form POST answered with the device's absolute Location, followed under
    // the prefix back to the login page.
    b.click("#sair").await;
    b.wait_js(
        "document.getElementById('entrar')",
        "the login page after logout",
    )
    .await;
    assert!(b.url().await.ends_with(&p1), "{}", b.url().await);
    assert!(entrada.sessions().is_empty());
    b.close().await;
}

/// The reference console as an admin uses it: signed in by a one-time link, pairs the
/// institution's connector with the code the page shows, sees it ONLINE, opens a
/// turnstile with "Gerenciar Remotamente", finds the session in the audit list and ends
/// it, renews the token (the running connector is cut off) and unpairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_console_pairs_the_connector_and_opens_the_device_ui() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let entrada = Devsim::spawn("Catraca Entrada").await.unwrap();
    cloud.add_equipment(2, 100, &entrada.base_url(), true).await;
    cloud
        .add_equipment(2, 102, &entrada.base_url(), false)
        .await;
    let token = cloud.user_token(7, &[2], false);
    let link = cloud
        .cloud
        .api
        .console_link(token, std::time::Duration::from_secs(60));
    let b = Browser::start().await;
    let page = |p: &str| cloud.url(&format!("/instituicao/2{p}"));

    // Not signed in: the sign-in page. Then the one-time link, which is spent.
    b.goto(&page("")).await;
    b.wait_css("textarea#token").await;
    assert!(b.url().await.ends_with("/entrar"), "{}", b.url().await);
    b.goto(&cloud.url(&link)).await;
    assert_eq!(b.text("#connector-status").await, "NÃO PAREADO");
    assert_eq!(b.text("#usuario").await, "Usuária 7");
    let again = reqwest::get(cloud.url(&link)).await.unwrap();
    assert_eq!(again.status(), 410, "a sign-in link works once");

    // No connector: the equipment page says why there is no button.
    b.goto(&page("/equipamento/100")).await;
    b.wait_css("#remoto-indisponivel").await;
    assert!(!b.has("#gerenciar-remotamente").await);

    // Pairing: the page shows a code and the command; the LAN side claims it.
    b.goto(&page("")).await;
    b.click("#gerar-codigo").await;
    let code = b.text("#codigo-pareamento").await;
    assert_eq!(code.len(), 9, "{code}");
    let command = b.text("#comando-pareamento").await;
    assert!(
        command.contains(&format!(
            "ponte-connector pair --server {} --code {code}",
            cloud.url("")
        )),
        "{command}"
    );
    let paired = cloud.claim_and_run(2, &code).await;
    b.goto(&page("")).await;
    assert_eq!(b.text("#connector-status").await, "ONLINE");
    assert_eq!(b.text("#connector-name").await, "Servidor Portaria");
    assert_eq!(
        b.text("#connector-version").await,
        env!("CARGO_PKG_VERSION")
    );
    let heartbeat = b.text("#connector-heartbeat").await;
    assert!(
        heartbeat.starts_with("último heartbeat: há ") || heartbeat == "último heartbeat: agora",
        "{heartbeat}"
    );

    // Equipment without the addon: no button, no excuse.
    b.goto(&page("/equipamento/102")).await;
    b.wait_css("#equipamento-nome").await;
    assert!(!b.has("#gerenciar-remotamente").await);
    assert!(!b.has("#remoto-indisponivel").await);

    // "Gerenciar Remotamente" lands in the device's own UI, on the gateway's origin.
    b.goto(&page("/equipamento/100")).await;
    b.click("#gerenciar-remotamente").await;
    b.wait_css("#login").await;
    let at = b.url().await;
    let gateway = format!("http://{}/remote/s/", cloud.gateway_addr);
    assert!(at.starts_with(&gateway), "{at}");
    devsim_login(&b).await;
    let sid = at[gateway.len()..].split('/').next().unwrap().to_owned();

    // The audit list has the session, ATIVA; "Encerrar" ends it.
    b.goto(&page("/sessoes")).await;
    let row = format!("tr[data-session='{sid}']");
    let text = b.text(&row).await;
    assert!(
        text.contains("Usuária 7") && text.contains("Catraca 100") && text.contains("ATIVA"),
        "{text}"
    );
    b.click(&format!("{row} button")).await;
    b.wait_js(
        &format!("(document.querySelector(\"{row}\") || {{}}).textContent.includes('ENCERRADA')"),
        "the session to show ENCERRADA",
    )
    .await;

    // Renovar Token: confirmed, the new token shown once, the running connector cut off.
    b.goto(&page("")).await;
    b.click("#renovar-token").await;
    b.click("#confirmar").await;
    let new_token = b.text("#token-connector").await;
    assert_eq!(new_token.split('.').count(), 3, "{new_token}");
    let relay = cloud.cloud.relay.clone();
    let id = paired.connector_id.clone();
    ponte_tests::wait_until(std::time::Duration::from_secs(10), move || {
        !ponte_core::Router::is_online(&relay, &id)
    })
    .await;
    b.goto(&page("")).await;
    assert_eq!(b.text("#connector-status").await, "OFFLINE");

    // Desparear: confirmed, back to unpaired.
    b.click("#desparear").await;
    b.click("#confirmar").await;
    b.wait_js(
        "(document.getElementById('connector-status') || {}).textContent === 'NÃO PAREADO'",
        "the card to show the connector unpaired",
    )
    .await;
    b.close().await;
}

/// A hostile device page tries to take the gateway's origin with a service worker (its
/// script asks for `Service-Worker-Allowed: /`): through the page's own `register()`,
/// whose scope the injected script keeps in the session, and through a pristine
/// `register()` from another realm (round the injected script) with the scopes `/`,
/// `/remote/`, another session's prefix and the launch path. No worker controls a page
/// outside its session; the other session and a later launch are untouched; once its
/// session ends, the worker's fetches all get 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_device_service_worker_never_leaves_its_session() {
    use ponte_tests::origin::Origin;
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let hostile = Origin::spawn().await;
    let turnstile = Devsim::spawn("Catraca Saída").await.unwrap();
    cloud.add_equipment(2, 100, &hostile.base_url(), true).await;
    cloud
        .add_equipment(2, 101, &turnstile.base_url(), true)
        .await;
    let _paired = cloud.pair_connector(2).await;
    let gw = format!("http://{}", cloud.gateway_addr);
    let b = Browser::start().await;

    // The other session first, in the same browser.
    let (sid_b, url_b) = cloud.remote_session(7, 2, 101).await;
    let p_b = format!("/remote/s/{sid_b}/");
    b.goto(&url_b).await;
    b.wait_css("#entrar").await;

    let (sid_a, url_a) = cloud.remote_session(7, 2, 100).await;
    let p_a = format!("/remote/s/{sid_a}/");
    b.goto(&url_a).await;
    b.wait_url(&format!("{gw}{p_a}")).await;
    b.goto(&format!("{gw}{p_a}sw/page")).await;
    b.wait_css("#ready").await;
    let scopes = json!(["/", "/remote/", p_b, "/remote/launch/", "/remote/s/"]);
    let got = b
        .js_async(
            "const [scopes, prefix] = arguments, done = arguments[arguments.length - 1];
             const f = document.createElement('iframe');
             document.body.appendChild(f);
             const pristine = f.contentWindow.ServiceWorkerContainer.prototype.register;
             (async () => {
               const out = [];
               for (const s of scopes) {
                 for (const [how, reg] of [
                   ['patched', () => navigator.serviceWorker.register('/sw.js', {scope: s})],
                   ['pristine', () => pristine.call(navigator.serviceWorker, prefix + 'sw.js', {scope: s})],
                 ]) {
                   try { out.push([how, s, (await reg()).scope]); }
                   catch (e) { out.push([how, s, 'refused: ' + e.name]); }
                 }
               }
               const regs = await navigator.serviceWorker.getRegistrations();
               done({out, scopes: regs.map(r => r.scope)});
             })();",
            vec![scopes.clone(), Value::from(p_a.clone())],
        )
        .await;
    let own = format!("{gw}{p_a}");
    for r in got["out"].as_array().unwrap() {
        let (how, asked, scope) = (&r[0], &r[1], r[2].as_str().unwrap());
        match how.as_str().unwrap() {
            // The page's own register() keeps the scope in the session, and works.
            "patched" => assert!(scope.starts_with(&own), "{asked} → {scope}"),
            _ => assert!(
                scope.starts_with("refused") || scope.starts_with(&own),
                "{asked} → {scope}"
            ),
        }
    }
    let regs = got["scopes"].as_array().unwrap();
    assert!(!regs.is_empty(), "{got}");
    for s in regs {
        assert!(
            s.as_str().unwrap().starts_with(&own),
            "a worker for {s}: {got}"
        );
    }

    // No page outside the session is controlled: the gateway's root, /remote/, the
    // other session (which still works) and a later session's launch.
    for path in ["/".to_owned(), "/remote/".to_owned(), p_b.clone()] {
        b.goto(&format!("{gw}{path}")).await;
        b.wait_js("document.readyState === 'complete'", "the page")
            .await;
        let v = b
            .js(
                "return [navigator.serviceWorker.controller === null, !document.getElementById('hijacked')]",
                vec![],
            )
            .await;
        assert_eq!(v, json!([true, true]), "{path} is controlled");
    }
    b.wait_css("#entrar").await;
    let (sid_c, url_c) = cloud.remote_session(7, 2, 101).await;
    b.goto(&url_c).await;
    b.wait_css("#entrar").await;
    assert_eq!(b.url().await, format!("{gw}/remote/s/{sid_c}/"));
    let v = b
        .js("return navigator.serviceWorker.controller === null", vec![])
        .await;
    assert_eq!(v, Value::Bool(true), "the later session is controlled");

    // The session ends: its worker, still registered in the browser, gets 410 for all it
    // fetches, with or without the grant cookie.
    b.goto(&format!("{gw}{p_a}sw/page")).await;
    let token = cloud.user_token(7, &[2], false);
    let (s, _, _) = cloud
        .call(
            "DELETE",
            &format!("/api/instituicao/2/equipamento/100/remoto/sessoes/{sid_a}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let statuses = b
        .js_async(
            "const prefix = arguments[0], done = arguments[arguments.length - 1];
             navigator.serviceWorker.ready.then(reg => {
               const ch = new MessageChannel();
               ch.port1.onmessage = e => done(e.data);
               reg.active.postMessage([
                 {url: prefix + 'hello', credentials: 'include'},
                 {url: prefix + 'hello', credentials: 'omit'},
                 {url: prefix + 'sw/page', credentials: 'same-origin'},
               ], [ch.port2]);
             });",
            vec![Value::from(p_a.clone())],
        )
        .await;
    assert_eq!(statuses, json!([410, 410, 410]));
    b.close().await;
}

/// Cookie tossing: a device page on the gateway (same host as the console, another
/// port) plants a valid console cookie of the attacker's own, for the console's paths,
/// every way a page can (its `Set-Cookie`, `document.cookie` through the injected setter
/// and round it, `cookieStore`). The console never acts as the attacker: signed out it
/// stays signed out, signed in it acts as the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_device_page_cannot_make_the_console_act_as_someone_else() {
    use ponte_tests::origin::Origin;
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let hostile = Origin::spawn().await;
    cloud.add_equipment(2, 100, &hostile.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    // The attacker's own, valid console login (user 8 of institution 3).
    let attacker = cloud.console_login(&cloud.user_token(8, &[3], false)).await;
    let value = attacker.cookie.strip_prefix("ponte_console=").unwrap();
    let gw = format!("http://{}", cloud.gateway_addr);
    let b = Browser::start().await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    b.goto(&url).await;
    b.wait_url(&format!("{gw}/remote/s/{sid}/")).await;
    let toss_url = format!(
        "{gw}/remote/s/{sid}/toss?c={}",
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
    );
    let probe = cloud.url("/instituicao/3/nenhuma-pagina");
    let toss = |want| toss(&b, &toss_url, &probe, want);

    // Signed out: the attacker's institution page does not open as the attacker.
    toss(1).await;
    b.goto(&cloud.url("/instituicao/3")).await;
    b.wait_css("textarea#token").await;
    assert!(b.url().await.ends_with("/entrar"), "{}", b.url().await);
    assert!(!b.has("#usuario").await);

    // Signed in as user 7 (one-time link); the page plants again; the console still
    // acts as user 7, and its forms act as user 7.
    let link = cloud.cloud.api.console_link(
        cloud.user_token(7, &[2], false),
        std::time::Duration::from_secs(60),
    );
    b.goto(&cloud.url(&link)).await;
    assert_eq!(b.text("#usuario").await, "Usuária 7");
    for (page, shows) in [
        ("/instituicao/2", "#usuario"),
        // User 7 has no access there: the console says so, as user 7.
        ("/instituicao/3", "#erro"),
        ("/", "#usuario"),
    ] {
        toss(2).await;
        b.goto(&cloud.url(page)).await;
        let text = b
            .wait_js(
                &format!(
                    "!document.cookie.includes('ponte_console') && document.querySelector('{shows}') \
                     && document.querySelector('{shows}').textContent"
                ),
                "the console as user 7",
            )
            .await;
        match shows {
            "#usuario" => assert_eq!(text, "Usuária 7", "{page}"),
            _ => assert_eq!(text, "Você não tem acesso a esta instituição.", "{page}"),
        }
        assert!(!b.has("#connector-card").await || page != "/instituicao/3");
    }
    toss(2).await;
    b.goto(&cloud.url("/instituicao/2")).await;
    b.wait_js(
        "!document.cookie.includes('ponte_console') && document.getElementById('gerar-codigo')",
        "the institution page as user 7",
    )
    .await;
    b.click("#gerar-codigo").await;
    let code = b.text("#codigo-pareamento").await;
    assert_eq!(code.len(), 9, "{code}");
    assert_eq!(b.text("#usuario").await, "Usuária 7");
    // The attacker's institution got nothing.
    let admin = cloud.user_token(1, &[3], false);
    let (_, _, status) = cloud
        .call(
            "GET",
            "/api/instituicao/3/connector/status",
            Some(&admin),
            None,
        )
        .await;
    assert_ne!(status["status"], "PAIRING", "{status}");
    b.close().await;
}

/// The console's one-time sign-in link: a GET (a link preview) spends nothing; the page
/// it shows, opened directly, signs in by itself; opened from another page it waits
/// for a click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_console_sign_in_link_survives_a_preview_and_works_once() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let link = cloud.cloud.api.console_link(
        cloud.user_token(7, &[2], false),
        std::time::Duration::from_secs(60),
    );
    for _ in 0..3 {
        let preview = reqwest::get(cloud.url(&link)).await.unwrap();
        assert_eq!(preview.status(), 200);
        assert!(preview.headers().get("set-cookie").is_none());
        assert!(preview.text().await.unwrap().contains("Usuária 7"));
    }
    // A POST from another origin spends nothing either.
    let r = reqwest::Client::new()
        .post(cloud.url(&link))
        .header("origin", format!("http://{}", cloud.gateway_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let b = Browser::start().await;
    // Opened from a page (here the gateway's origin): the confirmation waits for a click.
    b.goto(&format!("http://{}/health", cloud.gateway_addr))
        .await;
    b.js(
        "location.href = arguments[0]",
        vec![Value::from(cloud.url(&link))],
    )
    .await;
    b.wait_css("#entrar-link").await;
    assert_eq!(b.text("#entrar-como").await, "Usuária 7");
    assert!(!b.has("#usuario").await);
    b.click("#entrar-link").await;
    assert_eq!(b.text("#usuario").await, "Usuária 7");
    let again = reqwest::get(cloud.url(&link)).await.unwrap();
    assert_eq!(again.status(), 410, "a sign-in link works once");
    b.close().await;
}

/// Opens the cookie-tossing device page, waits until it has planted its cookies, and
/// checks from `probe` (a console path with no page, so no console script removes them)
/// that the browser now sends at least `want` console cookies there.
async fn toss(b: &Browser, url: &str, probe: &str, want: usize) {
    b.goto(url).await;
    b.wait_js(
        "document.getElementById('done').textContent === 'done'",
        "the page to plant its cookies",
    )
    .await;
    b.goto(probe).await;
    let cookies = b.client.get_all_cookies().await.unwrap();
    let n = cookies
        .iter()
        .filter(|c| c.name() == "ponte_console")
        .count();
    assert!(
        n >= want,
        "the page planted nothing, the test proves nothing: {cookies:?}"
    );
}

/// The Fastify app of the corpus (`tools/fastify`: Fastify, @fastify/websocket and
/// @fastify/static, as the attendance system is built) behind the gateway in path mode:
/// JWT Bearer login with a CSRF cookie read by script, an image and a `srcset` set from
/// script, `import()`, a WebSocket, a Worker opening its own WebSocket, a service
/// worker precaching the shell, under `<meta name=referrer content=no-referrer>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_fastify_app_works_in_path_mode() {
    fastify_app(false).await;
}

/// The same app in host mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_fastify_app_works_in_host_mode() {
    fastify_app(true).await;
}

/// The steps `tools/fastify/public/static/app.js` runs; each marks `li#ok-<step>`.
const FASTIFY_STEPS: &[&str] = &[
    "csrf",
    "login",
    "image",
    "srcset",
    "import",
    "websocket",
    "worker",
    "serviceworker",
];

/// Waits for the app's page to finish its steps; panics naming those that failed.
async fn fastify_steps(b: &Browser) {
    b.wait_js("document.body.dataset.done", "the app's steps")
        .await;
    let status = b
        .js("return document.getElementById('status').innerText", vec![])
        .await;
    for step in FASTIFY_STEPS {
        assert!(b.has(&format!("#ok-{step}")).await, "{step}: {status}");
    }
    // The app reads back the `src` it set: what it wrote, not the gateway's mapping.
    assert_eq!(
        b.text("#ok-image").await,
        "image: /static/dot.svg",
        "{status}"
    );
}

async fn fastify_app(host_mode: bool) {
    let app = ponte_tests::apps::App::fastify().await;
    let b = Browser::start().await;
    // Opened directly, the app passes every step and logs no error.
    b.goto(&format!("{}/", app.base_url)).await;
    fastify_steps(&b).await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        if host_mode {
            o.api.remote_host_mode = true;
            o.api.gateway_public_url = o.api.gateway_public_url.replace("127.0.0.1", "localhost");
        }
    })
    .await;
    cloud.add_equipment(2, 100, &app.base_url, true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let prefix = match host_mode {
        true => "/".to_owned(),
        false => format!("/remote/s/{sid}/"),
    };
    b.goto(&url).await;
    fastify_steps(&b).await;
    assert!(b.url().await.ends_with(&prefix), "{}", b.url().await);
    // The page's, the worker's and the service worker's requests: all on the session's
    // origin under its prefix (none needed the Referer fallback's 307), all answered.
    let page = assert_all_succeeded_under(&b, &prefix).await;
    let origin = url::Url::parse(&b.url().await).unwrap().origin();
    let workers = b
        .js(
            "return (window.workerRequests || []).concat(window.swRequests || [])",
            vec![],
        )
        .await;
    let workers: Vec<String> = serde_json::from_value(workers).unwrap();
    assert!(workers.len() >= 3, "the service worker cached: {workers:?}");
    let escaped: Vec<&String> = workers
        .iter()
        .filter(|u| {
            let u = url::Url::parse(u).unwrap();
            u.origin() != origin || !u.path().starts_with(&prefix)
        })
        .collect();
    assert!(
        escaped.is_empty(),
        "worker requests outside the session: {escaped:?}"
    );
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    // What the app saw: each request named its own host, none failed.
    let seen: Vec<Value> = reqwest::get(format!("{}/api/seen", app.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host = app.base_url.trim_start_matches("http://");
    for s in seen.iter().filter(|s| s["url"] != "/favicon.ico") {
        assert_eq!(s["host"], host, "{s}");
        assert!(s["status"].as_u64().unwrap() < 400, "{s}");
    }
    println!(
        "fastify ({}): {page} page requests, {} worker requests, {} seen by the app",
        if host_mode { "host mode" } else { "path mode" },
        workers.len(),
        seen.len()
    );
    b.close().await;
}

/// The Next.js app of the corpus (`tools/nextjs`, as the Nexora POS is built: a
/// production build with the app router, client components, `next/link`, an API route,
/// `next/image` and a service worker), built with Turbopack (Next.js 16's default) and
/// with webpack, behind the gateway in path mode and in host mode. It must hydrate (a
/// click changes state), navigate on the client (the same window), reach its API route and
/// register its worker; every request stays in the session (no 307 rescue) and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_nextjs_turbopack_works_in_path_mode() {
    nextjs_app(ponte_tests::apps::Bundler::Turbopack, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_nextjs_turbopack_works_in_host_mode() {
    nextjs_app(ponte_tests::apps::Bundler::Turbopack, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_nextjs_webpack_works_in_path_mode() {
    nextjs_app(ponte_tests::apps::Bundler::Webpack, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_nextjs_webpack_works_in_host_mode() {
    nextjs_app(ponte_tests::apps::Bundler::Webpack, true).await;
}

/// The Next.js app's own success signals: hydrated, its API route, its service worker; a
/// click handled by React; a client-side navigation to /about and back.
async fn nextjs_steps(b: &Browser) {
    for step in ["hydrated", "api", "service-worker"] {
        b.wait_css(&format!("#ok-{step}")).await;
    }
    b.click("#contar").await;
    b.wait_js(
        "document.getElementById('contagem').textContent === '1'",
        "React to handle the click",
    )
    .await;
    b.js("window.__sameWindow = 'sim'", vec![]).await;
    b.click("#ir-sobre").await;
    b.wait_js(
        "document.getElementById('pagina') && document.getElementById('pagina').textContent === 'Sobre'",
        "the client-side navigation to /about",
    )
    .await;
    b.wait_css("#ok-client-navigation").await;
    assert_eq!(
        b.js("return window.__sameWindow || 'recarregou'", vec![])
            .await,
        "sim",
        "the link reloaded the page instead of navigating on the client"
    );
    b.click("#ir-inicio").await;
    b.wait_js(
        "document.getElementById('pagina').textContent === 'Início'",
        "the client-side navigation back",
    )
    .await;
}

async fn nextjs_app(bundler: ponte_tests::apps::Bundler, host_mode: bool) {
    let app = ponte_tests::apps::App::nextjs(bundler).await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", app.base_url)).await;
    nextjs_steps(&b).await;
    let direct_errors = b.console_errors().await;

    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        if host_mode {
            o.api.remote_host_mode = true;
            o.api.gateway_public_url = o.api.gateway_public_url.replace("127.0.0.1", "localhost");
        }
    })
    .await;
    cloud.add_equipment(2, 100, &app.base_url, true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let prefix = match host_mode {
        true => "/".to_owned(),
        false => format!("/remote/s/{sid}/"),
    };
    b.goto(&url).await;
    nextjs_steps(&b).await;
    assert!(b.url().await.ends_with(&prefix), "{}", b.url().await);
    let page = assert_all_succeeded_under(&b, &prefix).await;
    let errors: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !direct_errors.contains(e))
        .collect();
    assert_eq!(errors, Vec::<String>::new());
    println!(
        "nextjs {bundler:?} ({}): {page} requests, all in the session",
        if host_mode { "host mode" } else { "path mode" },
    );
    b.close().await;
}

/// Node-RED with adminAuth (`tools/node-red`), behind the gateway in path and host mode:
/// the editor's login (its token then rides every request as `Authorization: Bearer`),
/// a flow deployed through the editor's own client, and its debug message arriving over
/// the editor's WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_node_red_works_in_path_mode() {
    node_red_app(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_node_red_works_in_host_mode() {
    node_red_app(true).await;
}

/// Logs in to the editor, deploys inject → debug, waits for the debug message.
async fn node_red_steps(b: &Browser, payload: &str) {
    b.wait_css("#node-dialog-login-username").await;
    b.fill("#node-dialog-login-username", "admin").await;
    b.fill(
        "#node-dialog-login-password",
        ponte_tests::apps::NODE_RED_PASSWORD,
    )
    .await;
    b.click("#node-dialog-login-submit").await;
    b.wait_js(
        "window.RED && RED.comms && RED.nodes && RED.nodes.getType && RED.nodes.getType('inject') && document.getElementById('red-ui-header-button-deploy')",
        "the editor to load after the login",
    )
    .await;
    let deployed = b
        .js_async(
            "const done = arguments[arguments.length - 1];
             window.__debug = [];
             RED.comms.subscribe('debug', function (topic, msg) { window.__debug.push(msg.msg); });
             const flow = [
               {id: 'c0a1', type: 'tab', label: 'Corpus'},
               {id: 'c0a2', type: 'inject', z: 'c0a1', once: true, onceDelay: 0.2, repeat: '1',
                payload: arguments[0], payloadType: 'str', topic: '', props: [{p: 'payload'}],
                wires: [['c0a3']]},
               {id: 'c0a3', type: 'debug', z: 'c0a1', active: true, tosidebar: true,
                complete: 'payload', targetType: 'msg', wires: []}];
             $.ajax({url: 'flows', type: 'POST', contentType: 'application/json',
                     headers: {'Node-RED-Deployment-Type': 'full', 'Node-RED-API-Version': 'v2'}, data: JSON.stringify({flows: flow})})
               .done(function () { done('ok'); })
               .fail(function (x) { done('failed ' + x.status + ' ' + x.responseText); });",
            vec![json!(payload)],
        )
        .await;
    assert_eq!(deployed, "ok");
    b.wait_js(
        &format!(
            "window.__debug.some(function (m) {{ return String(m).indexOf({}) >= 0; }})",
            json!(payload)
        ),
        "the debug message over the editor's WebSocket",
    )
    .await;
}

async fn node_red_app(host_mode: bool) {
    let app = ponte_tests::apps::App::node_red().await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", app.base_url)).await;
    node_red_steps(&b, "direto").await;
    let direct_errors = b.console_errors().await;
    // The editor asks for its settings before it has a token, hears 401 and shows its
    // login: its own way, opened directly too. Every other request succeeds.
    let probe = |url: &str, status: u64| {
        status == 401 && url::Url::parse(url).unwrap().path().ends_with("/settings")
    };
    let direct = b.requests().await;
    assert!(direct.iter().any(|(u, s, _)| probe(u, *s)), "{direct:?}");

    let cloud = TestCloud::start_with(Backend::Sqlite, |o| {
        if host_mode {
            o.api.remote_host_mode = true;
            o.api.gateway_public_url = o.api.gateway_public_url.replace("127.0.0.1", "localhost");
        }
    })
    .await;
    cloud.add_equipment(2, 100, &app.base_url, true).await;
    let _paired = cloud.pair_connector(2).await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let prefix = match host_mode {
        true => "/".to_owned(),
        false => format!("/remote/s/{sid}/"),
    };
    b.goto(&url).await;
    node_red_steps(&b, "pela-ponte").await;
    assert!(b.url().await.contains(&prefix), "{}", b.url().await);
    let origin = url::Url::parse(&b.url().await).unwrap().origin();
    let reqs = b.requests().await;
    for (u, status, kind) in &reqs {
        let parsed = url::Url::parse(u).unwrap();
        assert_eq!(
            parsed.origin(),
            origin,
            "{kind} {u} left the session's origin"
        );
        assert!(
            parsed.path().starts_with(&prefix),
            "{kind} {u} escaped the session prefix"
        );
        assert!(
            (200..400).contains(status) || probe(u, *status),
            "{kind} {u} → {status}"
        );
    }
    let page = reqs.len();
    // The same errors as directly (the settings probe's 401), whatever the URL's prefix.
    let kind = |e: &String| match e.split_once(" - ") {
        Some((u, rest)) if u.starts_with("http") => {
            let path =
                url::Url::parse(u).map(|u| u.path().rsplit('/').next().unwrap_or("").to_owned());
            format!("{} - {rest}", path.unwrap_or_default())
        }
        _ => e.clone(),
    };
    let direct: Vec<String> = direct_errors.iter().map(kind).collect();
    let errors: Vec<String> = b
        .console_errors()
        .await
        .iter()
        .map(kind)
        .filter(|e| !direct.contains(e))
        .collect();
    assert_eq!(errors, Vec::<String>::new());
    println!(
        "node-red ({}): {page} requests, all in the session",
        if host_mode { "host mode" } else { "path mode" },
    );
    b.close().await;
}

/// HTML a page inserts from script (`innerHTML`, `insertAdjacentHTML`, `outerHTML`) loads
/// its root-relative images under the session at once: no request leaves the prefix (the
/// Referer fallback would have rescued them with a 307 each), and a script reading an
/// attribute back sees what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_html_inserted_by_script_stays_in_the_session() {
    let cloud = TestCloud::start(Backend::Sqlite).await;
    let origin = ponte_tests::origin::Origin::spawn().await;
    cloud.add_equipment(2, 100, &origin.base_url(), true).await;
    let _paired = cloud.pair_connector(2).await;
    let gw = format!("http://{}", cloud.gateway_addr);
    let b = Browser::start().await;
    let (sid, url) = cloud.remote_session(7, 2, 100).await;
    let prefix = format!("/remote/s/{sid}/");
    b.goto(&url).await;
    b.wait_url(&format!("{gw}{prefix}")).await;
    b.goto(&format!("{gw}{prefix}inner")).await;
    // Each image answered (its bytes are no picture: load or error, it was fetched).
    b.wait_css("#done").await;
    let n = assert_all_succeeded_under(&b, &prefix).await;
    assert!(n >= 4, "the page and its images: {n}");
    assert_eq!(
        b.js(
            "return document.getElementById('i1').getAttribute('src')",
            vec![]
        )
        .await,
        "/bytes/10"
    );
    assert_eq!(
        b.js("return document.getElementById('l1').href", vec![])
            .await,
        format!("{gw}{prefix}echo")
    );
    b.close().await;
}
