//! The connector card's actions: a pairing code with the command that uses it, token
//! renewal and unpairing, each behind a confirmation page.

use super::layout::{esc, local, Page, PageResult};
use super::sign_in::{https, same_origin, BoundUser, ConsoleUser};
use super::St;
use crate::auth::User;
use crate::routes::extract::P;
use crate::service::access::tenant;
use crate::service::connector;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};

/// The public origin of this API as the browser sees it, for the commands shown.
fn server_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8000");
    let scheme = if https(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

pub(super) async fn pairing(
    State(api): St,
    headers: HeaderMap,
    P(tid): P<i32>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    let code = connector::pair(&api, &tenant(&api, &user, tid).await?).await?;
    let expires = local(code.expires_at);
    let server = server_url(&headers);
    let body = format!(
        r#"<section class="card narrow">
<h1>Código de Pareamento</h1>
<p class="code" id="codigo-pareamento">{code}</p>
<p>Vale uma única vez, até {expires}.</p>
<p>No servidor da rede local, instale o <code>ponte-connector</code> e execute:</p>
<pre id="comando-pareamento">sudo -u ponte ponte-connector pair --server {server} --code {code}
sudo systemctl enable --now ponte-connector</pre>
<p>O status do connector muda para ONLINE quando ele conectar.</p>
<p><a class="button" href="/instituicao/{tid}" id="voltar">Voltar</a></p>
</section>"#,
        code = esc(&code.code),
        expires = esc(&expires),
        server = esc(&server),
    );
    Ok(Page::new("Código de Pareamento", Some(&user))
        .body(body)
        .into_response())
}

fn confirm(user: &User, tid: i32, title: &str, what: &str, action: &str, button: &str) -> Response {
    let body = format!(
        r#"<section class="card narrow">
<h1>{title}</h1>
<p>{what}</p>
<form method="post" action="/instituicao/{tid}/connector/{action}">
<button class="danger" id="confirmar">{button}</button>
<a class="button quiet" href="/instituicao/{tid}">Cancelar</a>
</form>
</section>"#
    );
    Page::new(title, Some(user)).body(body).into_response()
}

pub(super) async fn confirm_renew(State(api): St, user: ConsoleUser, P(tid): P<i32>) -> PageResult {
    let ConsoleUser(user) = user;
    tenant(&api, &user, tid).await?;
    Ok(confirm(
        &user,
        tid,
        "Renovar Token",
        "Um novo token será emitido e o atual deixa de valer agora: o connector em \
         execução é desconectado até receber o novo token.",
        "token",
        "Renovar Token",
    ))
}

pub(super) async fn renew(
    State(api): St,
    headers: HeaderMap,
    P(tid): P<i32>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    let issued = connector::renew(&api, &tenant(&api, &user, tid).await?).await?;
    let expires = local(issued.expires_at);
    let body = format!(
        r#"<section class="card">
<h1>Novo Token do Connector</h1>
<p>O token anterior foi revogado. Este é mostrado uma única vez; vale até {expires}.</p>
<pre id="token-connector" class="wrap">{token}</pre>
<p>No servidor da rede local:</p>
<pre id="comando-token" class="wrap">sudo -u ponte ponte-connector pair --relay-url {relay} --token {token}
sudo systemctl restart ponte-connector</pre>
<p><a class="button" href="/instituicao/{tid}" id="voltar">Voltar</a></p>
</section>"#,
        token = esc(&issued.token),
        relay = esc(&api.cfg.relay_public_url),
        expires = esc(&expires),
    );
    Ok(Page::new("Novo Token", Some(&user))
        .body(body)
        .into_response())
}

pub(super) async fn confirm_unpair(
    State(api): St,
    user: ConsoleUser,
    P(tid): P<i32>,
) -> PageResult {
    let ConsoleUser(user) = user;
    tenant(&api, &user, tid).await?;
    Ok(confirm(
        &user,
        tid,
        "Desparear",
        "O token do connector é revogado e ele é desconectado agora. Para voltar a usá-lo, \
         gere um novo código de pareamento.",
        "desparear",
        "Desparear",
    ))
}

pub(super) async fn do_unpair(
    State(api): St,
    headers: HeaderMap,
    P(tid): P<i32>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    connector::unpair(&api, &tenant(&api, &user, tid).await?).await?;
    Ok(Redirect::to(&format!("/instituicao/{tid}")).into_response())
}
