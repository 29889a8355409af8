//! The gateway's own answers: JSON errors, refusal pages, redirects; each counted and
//! logged as its source says.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use ponte_core::session::Denied;
use ponte_core::RouteError;

pub(crate) fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "BAD_PATH",
            "path cannot be redirected",
        ),
    }
}

/// A refusal as a small page (these are mostly browser navigations), with the JSON code
/// in a header for scripts.
pub(crate) fn denied(d: &Denied) -> Response {
    let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
    let source = ponte_core::ErrorSource::of_status(status);
    ponte_core::report("gateway", source, status, d.code(), d);
    let (title, text) = match d {
        Denied::NoGrant => (
            "Acesso remoto",
            "Abra a sessão pelo botão Gerenciar Remotamente.",
        ),
        Denied::WrongGrant => (
            "Acesso negado",
            "Esta sessão remota pertence a outro usuário.",
        ),
        Denied::NotFound => ("Sessão não encontrada", "Esta sessão remota não existe."),
        Denied::Expired => (
            "Sessão expirada",
            "Esta sessão remota expirou. Abra uma nova.",
        ),
        Denied::Ended => ("Sessão encerrada", "Esta sessão remota foi encerrada."),
        Denied::LaunchUsed => (
            "Link inválido",
            "Este link já foi usado ou expirou. Abra uma nova sessão.",
        ),
        Denied::Limited { .. } => ("Muitas requisições", "Aguarde alguns segundos."),
        Denied::Unavailable(_) => (
            "Indisponível",
            "O acesso remoto está indisponível no momento.",
        ),
    };
    let page = format!(
        "<!doctype html><html lang=pt-BR><meta charset=utf-8><title>{title}</title>\
         <body><h1>{title}</h1><p>{text}</p><p><small>{}</small></p></body></html>",
        d.code()
    );
    let mut resp = (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        page,
    )
        .into_response();
    resp.headers_mut()
        .insert("x-ponte-error", HeaderValue::from_static(d.code()));
    if let Denied::Limited { retry_after_secs } = d {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, (*retry_after_secs).into());
    }
    resp
}

/// A JSON error answer, counted and logged (a 5xx as ours, the rest as the caller's).
pub(crate) fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let source = ponte_core::ErrorSource::of_status(status);
    ponte_core::error_response("gateway", source, status, code, message)
}

/// A routed request that failed: answered, counted and logged as its source says (a
/// device that cannot be reached is a warning an operator sees).
pub(crate) fn route_failed(e: &RouteError) -> Response {
    ponte_core::error_response(
        "gateway",
        e.source(),
        e.status_code(),
        e.code(),
        &e.to_string(),
    )
}
