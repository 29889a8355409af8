//! The `/api` routes (DESIGN.md "Cloud API"). Every tenant route checks the user's grant
//! for `:tid` before it reads anything, so a user of one institution learns nothing
//! about another (403 whether or not the resource exists there).

use crate::error::ApiError;
use crate::Api;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ponte_protocol::limits;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

mod audit_log;
mod connector;
mod console;
mod equipment;
mod extract;
mod proxy;
mod public;
mod sessions;

type St = State<Arc<Api>>;
type ApiResult<T> = Result<T, ApiError>;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Ponte API", description = "Tenant-scoped API of Ponte: proxy HTTP to devices behind a connector, remote UI sessions, connector pairing."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn router() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(proxy::proxy_http))
        .routes(routes!(sessions::create_session))
        .routes(routes!(sessions::end_session))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(connector::pair))
        .routes(routes!(connector::renew_token))
        .routes(routes!(connector::connector_status))
        .routes(routes!(connector::unpair))
        .routes(routes!(equipment::put_equipment, equipment::get_equipment))
        .routes(routes!(audit_log::list_audit))
        .routes(routes!(public::create_route, public::list_routes))
        .routes(routes!(public::delete_route))
        .routes(routes!(connector::claim))
}

/// The OpenAPI document, generated from the handlers `router` lists.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().split_for_parts().1
}

/// The API's routes: `/api/…`, `/api/openapi.json`, `/health`, `/ready`, and the
/// reference console at `/`.
pub fn app(api: Arc<Api>) -> axum::Router {
    let (routes, doc) = router().split_for_parts();
    let doc = Arc::new(doc);
    // Largest proxy-http JSON: the body base64-encoded plus headers and envelope.
    let body_limit = api.cfg.proxy_max_request / 3 * 4 + 4 + limits::MAX_HEADER_BYTES * 2;
    routes
        .merge(console::routes())
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move { Json(doc.as_ref().clone()) }),
        )
        .route(
            "/health",
            axum::routing::get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", axum::routing::get(ready))
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(|req, next| {
            ponte_core::metrics::track("api", req, next)
        }))
        .with_state(api)
}

/// Ready when the store takes a write now (a store that reads but cannot write, a
/// full disk, is not ready), within the store's own 2 s bound.
async fn ready(State(api): St) -> axum::response::Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), api.store.probe()).await;
    let reason = match probe {
        Ok(Ok(())) => {
            return Json(serde_json::json!({
                "status": "ready",
                "store": api.store.backend(),
                "auditBacklog": api.audit.backlog(),
            }))
            .into_response()
        }
        Ok(Err(err)) => err.to_string(),
        Err(_) => "the store did not answer within 2 s".to_owned(),
    };
    warn!(%reason, "store not ready");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NOT_READY",
        format!("the store cannot take writes: {reason}"),
    )
    .into_response()
}
