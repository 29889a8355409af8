//! The home page (the user's institutions) and "Configurações da Instituição": the
//! "Connector On-Premise" card and the equipment list.

use super::layout::{ago, esc, local, Page, PageResult};
use super::sign_in::ConsoleUser;
use super::St;
use crate::routes::extract::P;
use crate::service::access::tenant;
use crate::service::connector;
use crate::store::{self, ConnectorStatus};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::fmt::Write as _;

pub(super) async fn home(user: Result<ConsoleUser, Response>) -> Response {
    let ConsoleUser(user) = match user {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let (false, [tid]) = (user.admin, user.tenants.as_slice()) {
        return Redirect::to(&format!("/instituicao/{tid}")).into_response();
    }
    let mut body = String::from(r#"<section class="card narrow"><h1>Instituições</h1><ul>"#);
    for tid in &user.tenants {
        let _ = write!(
            body,
            r#"<li><a href="/instituicao/{tid}">Instituição {tid}</a></li>"#
        );
    }
    body.push_str(
        r#"</ul><form method="get" action="/instituicao"><label>Instituição nº
<input name="id" type="number" min="1" required></label> <button>Abrir</button></form></section>"#,
    );
    Page::new("Instituições", Some(&user))
        .body(body)
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct Pick {
    id: i32,
}

/// The home page's "Instituição nº" form.
pub(super) async fn pick(
    q: Result<axum::extract::Query<Pick>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match q {
        Ok(q) => Redirect::to(&format!("/instituicao/{}", q.id)).into_response(),
        Err(_) => Redirect::to("/").into_response(),
    }
}

pub(super) async fn institution_page(
    State(api): St,
    user: ConsoleUser,
    P(tid): P<i32>,
) -> PageResult {
    let ConsoleUser(user) = user;
    let t = tenant(&api, &user, tid).await?;
    let status = connector::status(&api, &t).await?;
    let con = status.connector.as_ref();
    let equipment = api.store.list_equipment(tid, 500).await?;
    let online = status.status == ConnectorStatus::ONLINE;
    let (badge, label) = match (status.paired, status.status) {
        (_, ConnectorStatus::ONLINE) => ("online", "ONLINE"),
        (false, ConnectorStatus::PAIRING) => ("pairing", "AGUARDANDO PAREAMENTO"),
        (false, _) => ("offline", "NÃO PAREADO"),
        (true, _) => ("offline", "OFFLINE"),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        r#"<h1>Configurações da Instituição</h1>
<p class="sub">{name} · nº {tid}</p>
<section class="card" id="connector-card">
<h2>Connector On-Premise</h2>
<p>Status: <span class="badge {badge}" id="connector-status">{label}</span></p>
<dl>"#,
        name = esc(&t.institution().name),
    );
    let dash = || "—".to_owned();
    let row = |b: &mut String, id: &str, k: &str, v: String| {
        let _ = write!(b, r#"<dt>{k}</dt><dd id="{id}">{}</dd>"#, esc(&v));
    };
    row(
        &mut b,
        "connector-name",
        "Nome",
        con.map(|c| c.name.clone())
            .filter(|_| status.paired)
            .unwrap_or_else(dash),
    );
    row(
        &mut b,
        "connector-version",
        "Versão",
        con.and_then(|c| c.version.clone()).unwrap_or_else(dash),
    );
    let heartbeat = con
        .and_then(|c| c.last_heartbeat)
        .map(|t| format!("último heartbeat: {}", ago(t, store::now())))
        .unwrap_or_else(|| "último heartbeat: nunca".into());
    row(&mut b, "connector-heartbeat", "Heartbeat", heartbeat);
    if let Some(since) = status.connected_since() {
        row(&mut b, "connector-since", "Conectado desde", local(since));
    }
    if let Some(host) = con
        .and_then(|c| c.metadata.as_ref())
        .and_then(|m| m.0.get("hostname"))
        .and_then(|h| h.as_str())
    {
        row(&mut b, "connector-host", "Servidor", host.to_owned());
    }
    if let Some(exp) = con.and_then(|c| c.token_expires_at) {
        row(
            &mut b,
            "connector-token-exp",
            "Token válido até",
            local(exp),
        );
    }
    if status.token_expiring {
        row(
            &mut b,
            "connector-token-warning",
            "Atenção",
            "o token expira em menos de 7 dias e este connector não o renova sozinho \
             (versão antiga ou desconectado): clique em Renovar Token e grave o novo token \
             no connector"
                .to_owned(),
        );
    }
    if let Some(dup) = &status.duplicate {
        let at = local(chrono::DateTime::<chrono::Utc>::from(dup.last_refused).naive_utc());
        row(
            &mut b,
            "connector-duplicate",
            "Atenção",
            format!(
                "outra instalação usa o mesmo token ({} conexões recusadas, a última em {at}); \
                 a conexão ativa foi mantida. Pare a cópia, ou renove o token e pareie cada \
                 instalação com o seu",
                dup.refused
            ),
        );
    }
    let _ = write!(
        b,
        r#"</dl>
<div class="actions">
<form method="post" action="/instituicao/{tid}/connector/pareamento"><button id="gerar-codigo">Gerar Código de Pareamento</button></form>
<a class="button" id="renovar-token" href="/instituicao/{tid}/connector/token">Renovar Token</a>
<a class="button danger" id="desparear" href="/instituicao/{tid}/connector/desparear">Desparear</a>
<a class="button quiet" href="/instituicao/{tid}">Atualizar</a>
</div>
</section>
<section class="card">
<h2>Equipamentos</h2>
<table id="equipamentos"><thead><tr><th>Código</th><th>Descrição</th><th>Addon</th><th>Acesso remoto</th></tr></thead><tbody>"#
    );
    for e in &equipment {
        let remote = match (e.uses_addon, online) {
            (true, _) if e.base_url().is_none() => "sem endereço",
            (true, true) => "disponível",
            (true, false) => "connector offline",
            (false, _) => "—",
        };
        let _ = write!(
            b,
            r#"<tr><td>{id}</td><td><a href="/instituicao/{tid}/equipamento/{id}">{name}</a></td><td>{addon}</td><td>{remote}</td></tr>"#,
            id = e.id,
            name = esc(&e.name),
            addon = if e.uses_addon { "Sim" } else { "Não" },
        );
    }
    if equipment.is_empty() {
        b.push_str(r#"<tr><td colspan="4">Nenhum equipamento cadastrado.</td></tr>"#);
    }
    let _ = write!(
        b,
        r#"</tbody></table></section>
<p><a href="/instituicao/{tid}/sessoes" id="link-sessoes">Sessões remotas (auditoria)</a></p>"#
    );
    Ok(Page::new("Configurações da Instituição", Some(&user))
        .body(b)
        .into_response())
}
