//! A POS-like host (the Nexora POS as our users run it): a customer approves a quote from
//! a link sent by WhatsApp. `GET /approve/<token>` shows the quote, `POST` approves it;
//! `/admin` is the back office, which must never be reachable through a published route.
//! `/approve/echo` answers with the request as received (for the header checks).

use super::{echo, host, json, record, Sim};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::sync::Arc;

pub(super) fn app(sim: Arc<Sim>) -> axum::Router {
    axum::Router::new()
        .route("/", get(home))
        .route("/approve/echo", any(echo))
        .route("/approve/static/pos.css", get(stylesheet))
        .route("/approve/{token}", get(quote).post(approve))
        .route("/admin", get(admin))
        .route("/admin/{*rest}", any(admin))
        .layer(middleware::from_fn_with_state(sim.clone(), record))
        .with_state(sim)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=pt-BR><meta charset=utf-8><title>{title}</title>\
         <link rel=stylesheet href=\"/approve/static/pos.css\"><body>{body}</body></html>"
    )
}

fn html(status: StatusCode, page: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

async fn home(State(sim): State<Arc<Sim>>) -> Response {
    html(StatusCode::OK, page(&sim.name, "<h1>Nexora POS</h1>"))
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        "body{font-family:sans-serif}#aprovado{color:green}",
    )
        .into_response()
}

/// Quote tokens are what the POS puts in its links: letters, digits, `-`.
fn valid_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

async fn quote(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if !valid_token(&token) {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no such quote"}),
        );
    }
    let approved = sim.approved.lock().unwrap().contains(&token);
    let state = if approved {
        "<p id=aprovado>Orçamento aprovado</p>"
    } else {
        "<form method=post><button id=aprovar>Aprovar orçamento</button></form>"
    };
    let body = format!("<h1>Orçamento {token}</h1><p>Total: R$ 1.234,56</p>{state}");
    let mut resp = html(StatusCode::OK, page("Orçamento", &body));
    // As a real app does: a cookie for its own host, with a Domain the gateway must drop.
    let host = host(&headers);
    let domain = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    if let Ok(v) = format!("pos_visto={token}; Path=/approve; Domain={domain}; HttpOnly").parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn approve(State(sim): State<Arc<Sim>>, Path(token): Path<String>) -> Response {
    if !valid_token(&token) {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no such quote"}),
        );
    }
    let mut approved = sim.approved.lock().unwrap();
    if !approved.contains(&token) {
        // Bounded like the request log: the oldest approval is forgotten first.
        if approved.len() == super::SEEN_CAP {
            approved.remove(0);
        }
        approved.push(token.clone());
    }
    let body = format!("<h1>Orçamento {token}</h1><p id=aprovado>Orçamento aprovado</p>");
    html(StatusCode::OK, page("Orçamento aprovado", &body))
}

async fn admin() -> Response {
    html(
        StatusCode::OK,
        page(
            "Administração",
            "<h1>Área administrativa</h1><p id=admin>Vendas, caixa, usuários</p>",
        ),
    )
}
