//! `…/equipamento/:eid/rotas-publicas`: publish chosen paths of a device, list the
//! routes with their use, end one (DESIGN.md "Published routes").

use super::extract::{J, P};
use super::{ApiResult, St};
use crate::auth::User;
use crate::error::ApiError;
use crate::published::{DEFAULT_RPM, MAX_PATHS, MAX_RPM, METHODS};
use crate::service::access::tenant;
use crate::service::publish::{self, Publish};
use crate::store::{self, NewPublicRoute, PublicRoute};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use ponte_core::published::path::valid_glob;
use ponte_core::published::valid_slug;
use serde::{Deserialize, Serialize};

/// A route to publish.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NewRoute {
    /// Host label: 3–40 of `a-z 0-9 -`, not starting with `s-`. Random when absent.
    #[serde(default)]
    slug: Option<String>,
    /// Path globs, e.g. `["/approve/*"]`: `/x/*` allows everything under `/x/`, any other
    /// glob only itself.
    paths: Vec<String>,
    /// e.g. `["GET","POST"]`; `GET` allows `HEAD`.
    methods: Vec<String>,
    /// Whether WebSocket upgrades are carried (default false).
    #[serde(default)]
    websocket: bool,
    /// Requests per minute for the whole route (default 120, at most 60000); each client
    /// address gets a quarter of it.
    #[serde(default)]
    requests_per_minute: Option<u32>,
    /// RFC 3339; the route answers 404 from then on.
    #[serde(default)]
    expires_at: Option<String>,
}

/// A published route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteView {
    pub(super) id: i32,
    pub(super) slug: String,
    /// Its public origin: `<scheme>://{slug}.<public domain>`.
    pub(super) url: String,
    pub(super) paths: Vec<String>,
    pub(super) methods: Vec<String>,
    pub(super) websocket: bool,
    pub(super) requests_per_minute: i32,
    pub(super) expires_at: Option<String>,
    /// Requests served (written in batches, so a few seconds behind).
    pub(super) requests: i32,
    pub(super) bytes: i64,
    pub(super) last_used_at: Option<String>,
    pub(super) created_at: String,
}

pub(super) fn view(api: &crate::Api, r: PublicRoute) -> RouteView {
    RouteView {
        id: r.id,
        url: api.cfg.route_url(&r.slug).unwrap_or_default(),
        slug: r.slug,
        paths: r.paths.0,
        methods: r.methods.0,
        websocket: r.websocket,
        requests_per_minute: r.requests_per_minute,
        expires_at: r.expires_at.map(store::rfc3339),
        requests: r.requests,
        bytes: r.bytes,
        last_used_at: r.last_used_at.map(store::rfc3339),
        created_at: store::rfc3339(r.created_at),
    }
}

/// Checks a new route for equipment `eid` of `tid`; the error says what is wrong with
/// which field. The flag: the slug was given (a taken one is the caller's mistake).
fn checked(body: NewRoute, tid: i32, eid: i32, user: &User) -> Result<Publish, ApiError> {
    if let Some(s) = &body.slug {
        if !valid_slug(s) {
            return Err(ApiError::bad_request(
                "slug must be 3-40 of a-z, 0-9 and '-', not start or end with '-', not \
                 start with 's-' and hold no '--'",
            ));
        }
    }
    if body.paths.is_empty() || body.paths.len() > MAX_PATHS {
        return Err(ApiError::bad_request(format!(
            "paths must name 1 to {MAX_PATHS} globs"
        )));
    }
    if let Some(bad) = body.paths.iter().find(|p| !valid_glob(p)) {
        return Err(ApiError::bad_request(format!(
            "path {bad:?} is not a clean absolute path (a '*' may only be a whole last \
             segment, as in /approve/*; no '.', '..', '//', '%' or spaces)"
        )));
    }
    let mut methods: Vec<String> = Vec::new();
    for m in &body.methods {
        let up = m.to_ascii_uppercase();
        if !METHODS.contains(&up.as_str()) {
            return Err(ApiError::bad_request(format!(
                "method {m:?} cannot be published (one of {})",
                METHODS.join(", ")
            )));
        }
        if !methods.contains(&up) {
            methods.push(up);
        }
    }
    if methods.is_empty() {
        return Err(ApiError::bad_request(
            "methods must name at least one method",
        ));
    }
    let rpm = body.requests_per_minute.unwrap_or(DEFAULT_RPM);
    if rpm == 0 || rpm > MAX_RPM {
        return Err(ApiError::bad_request(format!(
            "requestsPerMinute must be 1..={MAX_RPM}"
        )));
    }
    let expires_at = match &body.expires_at {
        None => None,
        Some(t) => {
            let t = DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::bad_request("expiresAt must be an RFC 3339 time"))?
                .with_timezone(&Utc)
                .naive_utc();
            let t = chrono::SubsecRound::trunc_subsecs(t, 3);
            if t <= store::now() {
                return Err(ApiError::bad_request("expiresAt must be in the future"));
            }
            Some(t)
        }
    };
    let mut paths: Vec<String> = Vec::with_capacity(body.paths.len());
    for p in body.paths {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    let given = body.slug.is_some();
    Ok(Publish {
        route: NewPublicRoute {
            slug: body.slug.unwrap_or_else(publish::random_slug),
            equipment_id: eid,
            tenant_id: tid,
            user_id: Some(user.id),
            paths,
            methods,
            websocket: body.websocket,
            requests_per_minute: i32::try_from(rpm).unwrap_or(i32::MAX),
            expires_at,
        },
        given,
    })
}

/// Publish paths of a device on a public origin of their own.
#[utoipa::path(
    post,
    path = "/api/instituicao/{tid}/equipamento/{eid}/rotas-publicas",
    params(("tid" = i32, Path), ("eid" = i32, Path)),
    request_body = NewRoute,
    responses(
        (status = 201, body = RouteView), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "slug taken, equipment not on the addon or without an address, or no public domain configured"),
    )
)]
pub(super) async fn create_route(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
    J(body): J<NewRoute>,
) -> ApiResult<(StatusCode, Json<RouteView>)> {
    let t = tenant(&api, &user, tid).await?;
    let route = publish::publish(&api, &t, eid, || checked(body, tid, eid, &user)).await?;
    Ok((StatusCode::CREATED, Json(view(&api, route))))
}

/// The equipment's published routes, with their use.
#[utoipa::path(
    get,
    path = "/api/instituicao/{tid}/equipamento/{eid}/rotas-publicas",
    params(("tid" = i32, Path), ("eid" = i32, Path)),
    responses((status = 200, body = Vec<RouteView>), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn list_routes(
    State(api): St,
    user: User,
    P((tid, eid)): P<(i32, i32)>,
) -> ApiResult<Json<Vec<RouteView>>> {
    let rows = publish::list(&api, &tenant(&api, &user, tid).await?, eid).await?;
    Ok(Json(rows.into_iter().map(|r| view(&api, r)).collect()))
}

/// End a published route: new requests get 404 at once, open ones are cut.
#[utoipa::path(
    delete,
    path = "/api/instituicao/{tid}/equipamento/{eid}/rotas-publicas/{id}",
    params(("tid" = i32, Path), ("eid" = i32, Path), ("id" = i32, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404))
)]
pub(super) async fn delete_route(
    State(api): St,
    user: User,
    P((tid, eid, id)): P<(i32, i32, i32)>,
) -> ApiResult<StatusCode> {
    publish::delete(&api, &tenant(&api, &user, tid).await?, eid, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
