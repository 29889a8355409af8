//! HTTP side of the relay: `/ws/connectors` (authenticate, then upgrade) and `/health`.

use crate::auth::AuthError;
use crate::readahead::ReadAhead;
use crate::relay::Relay;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Json;
use ponte_protocol::limits;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// WebSocket limits for connector connections. A frame over [`limits::MAX_FRAME_LEN`]
/// closes the connection (close code 1009): it is refused before any of it is parsed, so
/// there is no stream to blame, and a peer that sends one is broken or hostile.
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * limits::MAX_FRAME_LEN)
        .max_message_size(Some(limits::MAX_FRAME_LEN))
        .max_frame_size(Some(limits::MAX_FRAME_LEN))
}

/// The relay's routes.
pub fn app(relay: Relay) -> axum::Router {
    axum::Router::new()
        .route("/ws/connectors", get(upgrade))
        .route("/health", get(health))
        .with_state(relay)
}

/// Serves the relay on `listener` until `shutdown` fires, with the default listener
/// limits.
pub async fn serve(
    listener: TcpListener,
    relay: Relay,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, relay, ponte_listen::Limits::default(), shutdown).await
}

/// Serves the relay on `listener` until `shutdown` fires. A connector's socket counts
/// against `limits`' caps for as long as it is connected.
pub async fn serve_with(
    listener: TcpListener,
    relay: Relay,
    limits: ponte_listen::Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    ponte_listen::serve("relay", listener, app(relay), limits, shutdown).await
}

/// `listener` with `TCP_NODELAY` on every accepted socket. Without it, a response written
/// in two pieces (head, then body; or a WebSocket frame after another) waits for the
/// peer's delayed ACK: ~20-40 ms per keep-alive request on Linux.
pub fn nodelay(listener: TcpListener) -> axum::serve::TapIo<TcpListener, fn(&mut TcpStream)> {
    use axum::serve::ListenerExt as _;
    fn set(tcp: &mut TcpStream) {
        if let Err(err) = tcp.set_nodelay(true) {
            debug!(%err, "TCP_NODELAY not set");
        }
    }
    listener.tap_io(set as fn(&mut TcpStream))
}

/// 200 `ok`, or 503 `draining` once the node is stopping, so a load balancer that checks
/// it sends connectors elsewhere.
async fn health(State(relay): State<Relay>) -> (StatusCode, Json<serde_json::Value>) {
    let (status, word) = match relay.is_draining() {
        true => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        false => (StatusCode::OK, "ok"),
    };
    let body = json!({"status": word, "connectorsOnline": relay.online_count()});
    (status, Json(body))
}

fn error(status: StatusCode, code: &'static str, message: impl AsRef<str>) -> Response {
    let source = ponte_core::ErrorSource::of_status(status);
    ponte_core::error_response("relay", source, status, code, message.as_ref())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn upgrade(State(relay): State<Relay>, mut req: Request) -> Response {
    if relay.is_draining() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "DRAINING",
            "this relay node is stopping; connect to another",
        );
    }
    let cfg = relay.config();
    let token = match bearer(req.headers()) {
        Some(t) => t,
        None => return unauthorized(AuthError::Missing),
    };
    let claims = match cfg.verifier.verify(token) {
        Ok(c) => c,
        Err(e) => return unauthorized(e),
    };
    match cfg.directory.token_is_current(&claims).await {
        Ok(true) => {}
        Ok(false) => return unauthorized(AuthError::Revoked),
        Err(e) => {
            warn!(connector_id = %claims.sub, %e, "token check failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "token check failed; retry later",
            );
        }
    }

    if let Err(conflict) = relay.admit(&claims.sub) {
        return error(
            StatusCode::CONFLICT,
            "CONNECTOR_CONFLICT",
            format!(
                "another connection with this connector's token is live and serving; \
                 two installs share one token ({} connections refused). Stop the \
                 duplicate, or renew the token and pair each install on its own",
                conflict.refused
            ),
        );
    }

    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = h.get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let (true, Some(key), true) = (is_ws, key, version_ok) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "expected a WebSocket (version 13) upgrade",
        );
    };
    let user_agent = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>());
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ws_cfg = ws_config(cfg.read_buffer);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = ReadAhead::new(hyper_util::rt::TokioIo::new(upgraded));
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_cfg)).await;
                relay.serve_peer(ws, claims, user_agent.as_deref()).await;
            }
            Err(e) => debug!(%e, "upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .expect("static response parts are valid")
}

fn unauthorized(err: AuthError) -> Response {
    debug!(%err, "connector handshake refused");
    error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", err.to_string())
}
