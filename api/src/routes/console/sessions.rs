//! "Sessões Remotas": the institution's remote sessions (the audit of remote access),
//! each active one with its "Encerrar".

use super::layout::{esc, local, size, Page, PageResult};
use super::sign_in::{same_origin, BoundUser, ConsoleUser};
use super::St;
use crate::routes::extract::P;
use crate::service::access::tenant;
use crate::service::sessions;
use crate::store::SessionStatus;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use std::fmt::Write as _;

pub(super) async fn sessions_page(State(api): St, user: ConsoleUser, P(tid): P<i32>) -> PageResult {
    let ConsoleUser(user) = user;
    let t = tenant(&api, &user, tid).await?;
    let rows = sessions::list(&api, &t).await?;
    let mut b = format!(
        r#"<h1>Sessões Remotas</h1><p class="sub">{name} · auditoria de acesso remoto</p>
<section class="card"><table id="sessoes"><thead><tr><th>Início</th><th>Usuário</th><th>Equipamento</th><th>Status</th><th>Fim / expira</th><th>Requisições</th><th>Dados</th><th></th></tr></thead><tbody>"#,
        name = esc(&t.institution().name)
    );
    for row in &rows {
        let s = &row.session;
        let (class, status) = match s.status {
            SessionStatus::ATIVA => ("online", "ATIVA"),
            SessionStatus::EXPIRADA => ("offline", "EXPIRADA"),
            SessionStatus::ENCERRADA => ("offline", "ENCERRADA"),
        };
        let end = local(s.ended_at.unwrap_or(s.expires_at));
        let action = match s.status {
            SessionStatus::ATIVA => format!(
                r#"<form method="post" action="/instituicao/{tid}/equipamento/{eid}/sessoes/{sid}/encerrar"><button class="small">Encerrar</button></form>"#,
                eid = s.equipment_id,
                sid = esc(&s.id),
            ),
            _ => String::new(),
        };
        let _ = write!(
            b,
            r#"<tr data-session="{sid}"><td>{start}</td><td>{user}</td><td>{eq}</td><td><span class="badge {class}">{status}</span></td><td>{end}</td><td>{req}</td><td>{bytes}</td><td>{action}</td></tr>"#,
            sid = esc(&s.id),
            start = esc(&local(s.created_at)),
            user = esc(&row.user_name),
            eq = esc(&row.equipment_name),
            end = esc(&end),
            req = s.requests,
            bytes = esc(&size(s.bytes)),
        );
    }
    if rows.is_empty() {
        b.push_str(r#"<tr><td colspan="8">Nenhuma sessão remota.</td></tr>"#);
    }
    let _ = write!(
        b,
        r#"</tbody></table></section><p><a href="/instituicao/{tid}">Voltar à instituição</a></p>"#
    );
    Ok(Page::new("Sessões Remotas", Some(&user))
        .body(b)
        .into_response())
}

pub(super) async fn end(
    State(api): St,
    headers: HeaderMap,
    P((tid, eid, sid)): P<(i32, i32, String)>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    sessions::end(&api, &tenant(&api, &user, tid).await?, eid, &sid).await?;
    Ok(Redirect::to(&format!("/instituicao/{tid}/sessoes")).into_response())
}
