//! The reference console at the API origin `/`: server-rendered pages in Portuguese, as
//! the SaaS shows them — the institution settings with the "Connector On-Premise" card,
//! the equipment page with "Gerenciar Remotamente", the audit list of remote sessions.
//!
//! It is a thin skin over the API: every action calls the same service the JSON route
//! does (`crate::service`), as the signed-in user, so the tenant checks, audit rows and
//! errors are the API's. Every POST must come from this origin (`Origin`), so a device page open in the
//! gateway — which shares the site when only the port differs — cannot drive the console.
//!
//! Sign-in keeps the user JWT in an HttpOnly, SameSite=Strict cookie, bound to a login
//! key the browser keeps in this origin's `localStorage`. Cookies ignore ports: a device
//! page served by the gateway on the same host can write any cookie of that host from
//! script (no name, `__Host-` included, is out of its reach, and the injected script is
//! no barrier to a hostile page), for example a valid cookie of the attacker's own. So a
//! cookie alone never decides who acts: every POST carries the login key (`_login`,
//! added by `/console.js`), and only the cookie bound to it is used. A device page cannot
//! write this origin's storage. Pages that only show (GET) use the cookie, and
//! `/console.js` deletes any console cookie a script can see — ours are HttpOnly, so a
//! visible one was planted — and reloads, so a planted one does not stay in charge.
//! Must never: render a value unescaped, or show a pairing code or token after the
//! response that created it (they are stored hashed; `Cache-Control: no-store`).

use crate::Api;
use axum::extract::State;
use axum::routing::{get, post};
use std::sync::Arc;

mod assets;
mod connector;
mod equipment;
mod institution;
mod layout;
mod sessions;
mod sign_in;

use assets::{css, js};
use connector::{confirm_renew, confirm_unpair, do_unpair, pairing, renew};
use equipment::{end_route, equipment_page, remote};
use institution::{home, institution_page, pick};
use sessions::{end, sessions_page};
use sign_in::{sign_in, sign_in_link, sign_in_link_page, sign_in_page, sign_out};

type St = State<Arc<Api>>;

/// The console's routes, merged into the API's app.
pub(super) fn routes() -> axum::Router<Arc<Api>> {
    axum::Router::new()
        .route("/", get(home))
        .route("/console.css", get(css))
        .route("/console.js", get(js))
        .route("/entrar", get(sign_in_page).post(sign_in))
        .route("/entrar/{code}", get(sign_in_link_page).post(sign_in_link))
        .route("/sair", post(sign_out))
        .route("/instituicao", get(pick))
        .route("/instituicao/{tid}", get(institution_page))
        .route("/instituicao/{tid}/connector/pareamento", post(pairing))
        .route(
            "/instituicao/{tid}/connector/token",
            get(confirm_renew).post(renew),
        )
        .route(
            "/instituicao/{tid}/connector/desparear",
            get(confirm_unpair).post(do_unpair),
        )
        .route("/instituicao/{tid}/equipamento/{eid}", get(equipment_page))
        .route("/instituicao/{tid}/equipamento/{eid}/remoto", post(remote))
        .route("/instituicao/{tid}/sessoes", get(sessions_page))
        .route(
            "/instituicao/{tid}/equipamento/{eid}/sessoes/{sid}/encerrar",
            post(end),
        )
        .route(
            "/instituicao/{tid}/equipamento/{eid}/rotas-publicas/{id}/encerrar",
            post(end_route),
        )
}

#[cfg(test)]
mod tests {
    use super::layout::{ago, esc};
    use super::sign_in::same_origin;
    use axum::http::{header, HeaderMap};
    use chrono::Utc;

    #[test]
    fn heartbeat_ages_read_as_the_product_says() {
        let now = Utc::now().naive_utc();
        for (secs, want) in [
            (0, "agora"),
            (15, "há 15s"),
            (59, "há 59s"),
            (60, "há 1 min"),
            (3599, "há 59 min"),
            (7200, "há 2 h"),
            (86_400, "há 1 dia"),
            (3 * 86_400, "há 3 dias"),
        ] {
            let t = now - chrono::TimeDelta::seconds(secs);
            assert_eq!(ago(t, now), want, "{secs}");
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn only_this_origin_may_post() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        let host = ("host", "127.0.0.1:8000");
        assert!(same_origin(&h(&[host, ("origin", "http://127.0.0.1:8000")])).is_ok());
        // The gateway on another port of the same host is another origin.
        assert!(same_origin(&h(&[host, ("origin", "http://127.0.0.1:8002")])).is_err());
        assert!(same_origin(&h(&[host, ("origin", "null")])).is_err());
        assert!(same_origin(&h(&[host])).is_err());
        assert!(same_origin(&h(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&h(&[host, ("sec-fetch-site", "same-site")])).is_err());
    }
}
