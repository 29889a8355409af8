//! The equipment page: its data, its published routes, and "Gerenciar Remotamente",
//! which opens a remote session and follows its launch link.

use super::layout::{esc, local, Page, PageResult};
use super::sign_in::{same_origin, BoundUser, ConsoleUser};
use super::St;
use crate::routes::extract::P;
use crate::service::access::tenant;
use crate::service::{connector, equipment, publish, sessions};
use crate::store::ConnectorStatus;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use std::fmt::Write as _;

pub(super) async fn equipment_page(
    State(api): St,
    user: ConsoleUser,
    P((tid, eid)): P<(i32, i32)>,
) -> PageResult {
    let ConsoleUser(user) = user;
    let t = tenant(&api, &user, tid).await?;
    let eq = equipment::get(&api, &t, eid).await?;
    let status = connector::status(&api, &t).await?;
    let online = status.status == ConnectorStatus::ONLINE;
    // The button exists only when it can work: the equipment uses the addon, has an
    // address, and the institution's connector is ONLINE (the API answers 409 otherwise).
    let addressed = eq.base_url().is_some();
    let action = match (eq.uses_addon, online) {
        (true, _) if !addressed => {
            r#"<span class="muted" id="remoto-indisponivel">Acesso remoto indisponível: o equipamento não tem endereço na rede local (URL ou IP).</span>"#.to_owned()
        }
        (true, true) => format!(
            r#"<form method="post" action="/instituicao/{tid}/equipamento/{eid}/remoto"><button id="gerenciar-remotamente">Gerenciar Remotamente</button></form>"#
        ),
        (true, false) => {
            r#"<span class="muted" id="remoto-indisponivel">Acesso remoto indisponível: o connector da instituição está offline.</span>"#.to_owned()
        }
        (false, _) => String::new(),
    };
    let cfg = eq.config.clone().map(|c| c.0).unwrap_or_default();
    let mut b = format!(
        r#"<header class="page-header"><div><h1 id="equipamento-nome">{name}</h1><p class="sub">Configuração do equipamento · código {eid}</p></div>{action}</header>
<section class="card"><h2>Dados</h2><dl>"#,
        name = esc(&eq.name),
    );
    let yes_no = |v: bool| if v { "Sim" } else { "Não" }.to_owned();
    for (k, v) in [
        ("Marca", eq.brand.clone().unwrap_or_default()),
        ("Modelo", eq.model.clone().unwrap_or_default()),
        ("Endereço IP", eq.ip.clone().unwrap_or_default()),
        ("Ativo", yes_no(eq.active)),
        ("Usa o addon (connector)", yes_no(eq.uses_addon)),
        (
            "URL na rede local",
            cfg.local_base_url.clone().unwrap_or_default(),
        ),
        ("Modo", cfg.modo.clone().unwrap_or_default()),
        ("Login", cfg.login.clone().unwrap_or_default()),
        ("Aceitar certificado próprio", yes_no(cfg.tls_insecure)),
    ] {
        let v = if v.is_empty() { "—".to_owned() } else { v };
        let _ = write!(b, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    b.push_str("</dl></section>");
    if eq.uses_addon {
        let routes = publish::list(&api, &t, eid).await?;
        b.push_str(
            r#"<section class="card"><h2>Rotas públicas</h2><p class="sub">Caminhos deste equipamento abertos ao público, sem login (publicados pela API: POST …/rotas-publicas).</p><table id="rotas"><thead><tr><th>Endereço</th><th>Caminhos</th><th>Métodos</th><th>Expira</th><th>Requisições</th><th>Último uso</th><th></th></tr></thead><tbody>"#,
        );
        for r in &routes {
            let when = |t: Option<crate::store::Ts>| t.map(local).unwrap_or_else(|| "—".into());
            let _ = write!(
                b,
                r#"<tr data-route="{id}"><td><a href="{url}" rel="noreferrer noopener" target="_blank">{url}</a></td><td>{paths}</td><td>{methods}</td><td>{expires}</td><td>{req}</td><td>{last}</td><td><form method="post" action="/instituicao/{tid}/equipamento/{eid}/rotas-publicas/{id}/encerrar"><button class="small">Encerrar</button></form></td></tr>"#,
                id = r.id,
                url = esc(&api.cfg.route_url(&r.slug).unwrap_or_default()),
                paths = esc(&r.paths.0.join(" ")),
                methods = esc(&r.methods.0.join(" ")),
                expires = esc(&when(r.expires_at)),
                req = r.requests,
                last = esc(&when(r.last_used_at)),
            );
        }
        if routes.is_empty() {
            b.push_str(r#"<tr><td colspan="7">Nenhuma rota pública.</td></tr>"#);
        }
        b.push_str("</tbody></table></section>");
    }
    let _ = write!(
        b,
        r#"<p><a href="/instituicao/{tid}">Voltar à instituição</a> · <a href="/instituicao/{tid}/sessoes">Sessões remotas</a></p>"#
    );
    Ok(Page::new(&eq.name, Some(&user)).body(b).into_response())
}

/// The route's "Encerrar" button: deletes it (open requests are cut) and shows the
/// equipment again.
pub(super) async fn end_route(
    State(api): St,
    headers: HeaderMap,
    P((tid, eid, id)): P<(i32, i32, i32)>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    publish::delete(&api, &tenant(&api, &user, tid).await?, eid, id).await?;
    Ok(Redirect::to(&format!("/instituicao/{tid}/equipamento/{eid}")).into_response())
}

pub(super) async fn remote(
    State(api): St,
    headers: HeaderMap,
    P((tid, eid)): P<(i32, i32)>,
    user: BoundUser,
) -> PageResult {
    if let Err(r) = same_origin(&headers) {
        return Ok(r);
    }
    let BoundUser(user) = user;
    let opened = sessions::open(&api, &tenant(&api, &user, tid).await?, eid).await?;
    // 303: the browser GETs the one-time launch link, which sets the grant cookie on the
    // gateway's origin and lands in the device's UI.
    Ok(Redirect::to(&opened.url).into_response())
}
