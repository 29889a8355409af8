//! The extractors of the `/api` routes: their rejections answer the same JSON error
//! shape as everything else.

use crate::auth::{self, User};
use crate::error::ApiError;
use crate::Api;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use std::sync::Arc;

/// `Path` with JSON errors.
pub(super) struct P<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| P(t))
            .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}

/// `Json` with JSON errors (413 for a body over the limit).
pub(super) struct J<T>(pub(super) T);

impl<T, S> FromRequest<S> for J<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(t)| J(t))
            .map_err(|e| {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(status, "BODY_TOO_LARGE", "request body too large")
                } else {
                    // Syntax and shape errors alike are 400 (axum says 422 for shape).
                    ApiError::bad_request(e.body_text())
                }
            })
    }
}

impl FromRequestParts<Arc<Api>> for User {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <user token>"))?;
        let user = api.users.verify(token).map_err(|e| match e {
            auth::TokenError::Expired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "user token expired",
            ),
            auth::TokenError::Invalid(m) => {
                ApiError::unauthorized(format!("invalid user token: {m}"))
            }
        })?;
        api.remember_user(&user).await?;
        Ok(user)
    }
}
