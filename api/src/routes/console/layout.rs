//! The console's layout and formatting: [`Page`] around every body with its headers,
//! API errors as pages, escaping, and times and sizes as the product writes them.

use super::sign_in::to_sign_in;
use crate::auth::User;
use crate::error::ApiError;
use crate::store::Ts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An API error shown as a console page, with the API's status.
pub(super) struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        Page::error(self.0)
    }
}

pub(super) type PageResult = Result<Response, PageError>;

/// A console page: the layout around `body`, with headers that keep it from being
/// framed, cached or reached by other origins' scripts and styles.
pub(super) struct Page {
    title: String,
    user: Option<String>,
    body: String,
    status: StatusCode,
}

impl Page {
    pub(super) fn new(title: &str, user: Option<&User>) -> Self {
        Page {
            title: title.to_owned(),
            user: user.map(|u| {
                u.name
                    .clone()
                    .unwrap_or_else(|| format!("Usuário {}", u.id))
            }),
            body: String::new(),
            status: StatusCode::OK,
        }
    }

    pub(super) fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// An API error as a page: same status, the message in the user's words.
    pub(super) fn error(e: ApiError) -> Response {
        if e.status == StatusCode::UNAUTHORIZED {
            return to_sign_in();
        }
        let what = match e.code {
            "FORBIDDEN" => "Você não tem acesso a esta instituição.",
            "CONNECTOR_OFFLINE" => "O connector da instituição não está ONLINE.",
            "ADDON_DISABLED" => "Este equipamento não usa o addon de acesso remoto.",
            "CONNECTOR_NOT_PAIRED" | "CONNECTOR_NOT_FOUND" => {
                "A instituição não tem connector pareado."
            }
            "CROSS_ORIGIN" => "Formulário recusado: envie-o pelas páginas do console.",
            _ => "Não foi possível concluir a operação.",
        };
        let body = format!(
            r#"<section class="card narrow"><h1>Erro</h1><p id="erro">{what}</p><p class="muted">{code}: {msg}</p><p><a href="/">Início</a></p></section>"#,
            code = esc(e.code),
            msg = esc(&e.message),
        );
        let mut page = Page::new("Erro", None).body(body);
        page.status = e.status;
        page.into_response()
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let who = match &self.user {
            Some(name) => format!(
                r#"<span id="usuario">{}</span><form method="post" action="/sair"><button class="quiet small">Sair</button></form>"#,
                esc(name)
            ),
            None => String::new(),
        };
        let html = format!(
            r#"<!doctype html>
<html lang="pt-BR"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ponte</title><link rel="stylesheet" href="/console.css"><script src="/console.js"></script></head>
<body><nav><a href="/" class="brand">Ponte</a><div class="who">{who}</div></nav>
<main>{body}</main></body></html>"#,
            title = esc(&self.title),
            body = self.body,
        );
        let mut resp = (self.status, html).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // Pairing codes and tokens appear once; nothing here is cached. The launch
        // redirect goes to the gateway's origin, so forms may target any http(s) origin.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// HTML-escapes text for element content and quoted attributes.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `dd/mm/aaaa hh:mm:ss` (UTC; the SaaS shows its users' zone, the console keeps UTC).
pub(super) fn local(t: Ts) -> String {
    t.format("%d/%m/%Y %H:%M:%S UTC").to_string()
}

/// "há 15s", "há 3 min", "há 2 h", "há 4 dias", as the product says it.
pub(super) fn ago(t: Ts, now: Ts) -> String {
    let s = (now - t).num_seconds();
    match s {
        ..=0 => "agora".into(),
        1..=59 => format!("há {s}s"),
        60..=3599 => format!("há {} min", s / 60),
        3600..=86_399 => format!("há {} h", s / 3600),
        86_400..=172_799 => "há 1 dia".into(),
        _ => format!("há {} dias", s / 86_400),
    }
}

pub(super) fn size(bytes: i64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1_048_576 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
    }
}
