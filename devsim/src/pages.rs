//! The turnstile's pages once logged in: the dashboard and what it loads, the odd pages
//! (Latin-1, gzip, meta refresh) and the live event feed over a WebSocket.

use crate::{chunked_html, host, invalid_session, Sim, BG_PNG, USER_JPEG};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) async fn user_image(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !sim.authorized(&headers, &q) {
        return invalid_session();
    }
    ([(header::CONTENT_TYPE, "image/jpeg")], USER_JPEG).into_response()
}

pub(crate) async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        "body { font-family: sans-serif; background: #fff url(/img/bg.png) repeat; }\n\
         header .logo { background-image: url(\"/img/bg.png\"); width: 1px; height: 1px; }\n",
    )
        .into_response()
}

pub(crate) async fn background() -> Response {
    ([(header::CONTENT_TYPE, "image/png")], BG_PNG).into_response()
}

pub(crate) async fn dashboard(
    State(sim): State<Arc<Sim>>,
    Path(lang): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !sim.authorized(&headers, &q) {
        return (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response();
    }
    let host = host(&headers);
    let lang = if lang == "pt_BR" || lang == "en_US" {
        lang
    } else {
        "pt_BR".into()
    };
    chunked_html(format!(
        r#"<!DOCTYPE html>
<html lang="pt-BR"><head><meta charset="utf-8"><title>Painel — {name}</title>
<link rel="stylesheet" href="/css/style.css"></head>
<body><header><h1 id="device">{name}</h1><span class="logo"></span></header>
<p>Situação: <span id="status">conectando…</span> · Leituras: <span id="sequence">0</span>
 · Último acesso: <span id="last">—</span></p>
<p>Eventos ao vivo: <span id="events">0</span> (<span id="ws-state">fechado</span>)</p>
<img id="photo" alt="Foto do usuário">
<nav><a id="config" href="/{lang}/html/config.html">Configurações</a>
<a id="about" href="http://{host}/{lang}/html/about.html">Sobre</a>
<a id="status-page" href="/{lang}/html/status.html">Status</a>
<a id="refresh" href="/{lang}/html/refresh.html">Recarregar</a></nav>
<form id="logout" action="/logout.fcgi" method="post"><button id="sair" type="submit">Sair</button></form>
<script>
(function () {{
  var m = /(?:^|;\s*)session=([^;]*)/.exec(document.cookie);
  var session = m ? m[1] : "";
  document.getElementById("photo").src =
    "/user_get_image.fcgi?user_id=1&session=" + encodeURIComponent(session);
  function poll() {{
    var x = new XMLHttpRequest();
    x.open("POST", "/load_objects.fcgi?session=" + encodeURIComponent(session));
    x.setRequestHeader("Content-Type", "application/json");
    x.onload = function () {{
      if (x.status !== 200) {{
        document.getElementById("status").textContent = "erro " + x.status;
        return;
      }}
      var j = JSON.parse(x.responseText);
      document.getElementById("status").textContent = "online";
      document.getElementById("sequence").textContent = String(j.sequence);
      document.getElementById("last").textContent = j.access_logs[0].time;
    }};
    x.send(JSON.stringify({{object: "access_logs"}}));
  }}
  poll();
  setInterval(poll, 1000);
  var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/events");
  ws.onopen = function () {{ document.getElementById("ws-state").textContent = "aberto"; ws.send("olá"); }};
  ws.onclose = function () {{ document.getElementById("ws-state").textContent = "fechado"; }};
  ws.onmessage = function (e) {{
    var j = JSON.parse(e.data);
    if (j.echo) document.getElementById("ws-state").textContent = "eco: " + j.echo;
    else document.getElementById("events").textContent = String(j.n);
  }};
}})();
</script></body></html>
"#,
        name = sim.name
    ))
}

pub(crate) async fn config_latin1(
    State(sim): State<Arc<Sim>>,
    Path(lang): Path<String>,
) -> Response {
    let page = format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><title>Configurações</title>\
         <link rel=\"stylesheet\" href=\"/css/style.css\"></head><body>\
         <h1 id=\"title\">Configurações do equipamento</h1><p id=\"device\">{}</p>\
         <p>Função: liberação de acesso, catraca bidirecional, horário de verão.</p>\
         <a id=\"back\" href=\"/{lang}/html/index.html\">Voltar</a></body></html>",
        sim.name
    );
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&page);
    (
        [(header::CONTENT_TYPE, "text/html; charset=ISO-8859-1")],
        bytes.into_owned(),
    )
        .into_response()
}

pub(crate) async fn status_gzip(Path(lang): Path<String>) -> Response {
    use tokio::io::AsyncReadExt;
    let page = format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\"><title>Status</title></head>\
         <body><h1 id=\"title\">Status: operação normal</h1>\
         <a id=\"back\" href=\"/{lang}/html/index.html\">Voltar</a></body></html>"
    );
    let mut gz = Vec::new();
    let mut enc = async_compression::tokio::bufread::GzipEncoder::new(page.as_bytes());
    if enc.read_to_end(&mut gz).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        gz,
    )
        .into_response()
}

pub(crate) async fn refresh(Path(lang): Path<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"refresh\" content=\"0; url=/{lang}/html/index.html\">\
             <title>Recarregando…</title></head><body>Recarregando…</body></html>"
        ),
    )
        .into_response()
}

pub(crate) async fn about(State(sim): State<Arc<Sim>>) -> Response {
    chunked_html(format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\"><title>Sobre</title></head>\
         <body><h1 id=\"title\">Sobre o equipamento</h1><p id=\"device\">{}</p>\
         <p>Versão do firmware: 4.13.2</p></body></html>",
        sim.name
    ))
}

pub(crate) async fn events(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !sim.authorized(&headers, &HashMap::new()) {
        return invalid_session();
    }
    ws.on_upgrade(live_events)
}

/// One event every 500 ms, and every text message echoed back.
pub(crate) async fn live_events(mut socket: WebSocket) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                let ev = serde_json::json!({"event": "catraca", "n": n}).to_string();
                if socket.send(Message::Text(ev.into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let echo = serde_json::json!({"echo": t.as_str()}).to_string();
                    if socket.send(Message::Text(echo.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
