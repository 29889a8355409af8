//! The store conformance suite: every case runs on SQLite and on PostgreSQL, and must
//! behave the same. PostgreSQL is required (127.0.0.1:5432); these tests fail, never
//! skip, when it is missing.

use chrono::TimeDelta;
use ponte_api::store::*;
use ponte_tests::cloud::{fresh_database, Backend};
use std::sync::Arc;

async fn store(backend: Backend) -> Arc<dyn Store> {
    let s = open(&fresh_database(backend).await).await.unwrap();
    assert_eq!(
        s.backend(),
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    s.upsert_client(1, "Cliente").await.unwrap();
    s.upsert_institution(1, 2, "Dois").await.unwrap();
    s.upsert_institution(1, 3, "Três").await.unwrap();
    s
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

on_both!(
    tenants_users_and_equipment,
    pairing_codes_work_once,
    tokens_and_liveness,
    sessions_and_audit,
    published_routes
);

fn equipment(id: i32, tenant: i32) -> Equipment {
    Equipment {
        id,
        tenant_id: tenant,
        name: "Catraca".into(),
        brand: Some("ControlID".into()),
        model: None,
        ip: Some("127.0.0.1".into()),
        active: true,
        uses_addon: true,
        config: Some(Json(EquipmentConfig {
            local_base_url: Some("http://127.0.0.1:8080".into()),
            login: Some("admin".into()),
            ..Default::default()
        })),
    }
}

async fn tenants_users_and_equipment(b: Backend) {
    let s = store(b).await;
    assert_eq!(s.institution(2).await.unwrap().unwrap().name, "Dois");
    assert!(s.institution(9).await.unwrap().is_none());
    assert!(matches!(
        s.upsert_institution(99, 5, "x").await,
        Err(StoreError::Conflict(_))
    ));

    s.ensure_user(7, "Ana", Some("ana@example.com"))
        .await
        .unwrap();
    s.ensure_user(7, "Outra", None).await.unwrap(); // idempotent
    s.ensure_user(8, "Bia", Some("ana@example.com"))
        .await
        .unwrap();
    // E-mail taken: user 8 is still recorded (without it), so what user 8 does can
    // reference the row (the pairing's USRCodigo is a foreign key).
    let later = ponte_api::store::now() + chrono::TimeDelta::minutes(15);
    s.start_pairing(2, "code-hash-of-user-8", later, Some(8))
        .await
        .unwrap();

    let e = s.put_equipment(&equipment(100, 2)).await.unwrap();
    assert_eq!(e, equipment(100, 2));
    assert_eq!(e.base_url().as_deref(), Some("http://127.0.0.1:8080"));
    let mut changed = equipment(100, 2);
    changed.name = "Catraca Entrada".into();
    changed.uses_addon = false;
    assert_eq!(s.put_equipment(&changed).await.unwrap(), changed);
    // An id of institution 2 is never taken over by institution 3.
    assert!(matches!(
        s.put_equipment(&equipment(100, 3)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.equipment(2, 100).await.unwrap(), Some(changed));
    assert_eq!(s.equipment(3, 100).await.unwrap(), None);
}

fn claim(token_id: &str) -> ClaimInfo {
    ClaimInfo {
        name: "Portaria".into(),
        version: Some("1.2.0".into()),
        metadata: Some(serde_json::json!({"os": "linux"})),
        token_id: token_id.into(),
        token_expires_at: now() + TimeDelta::days(90),
    }
}

async fn pairing_codes_work_once(b: Backend) {
    let s = store(b).await;
    let t = now();
    let con = s
        .start_pairing(2, "h1", t + TimeDelta::minutes(15), None)
        .await
        .unwrap();
    assert_eq!(con.status, ConnectorStatus::PAIRING);
    assert_eq!(con.token_id, None);
    // A newer code retires the older one: one live code per institution.
    s.start_pairing(2, "h2", t + TimeDelta::minutes(15), None)
        .await
        .unwrap();
    s.start_pairing(3, "old", t - TimeDelta::seconds(1), None)
        .await
        .unwrap();
    // One connector per institution: the second code reuses the row.
    assert_eq!(s.connector_of(2).await.unwrap().unwrap().id, con.id);

    assert_eq!(
        s.claim_pairing("nope", t, &claim("j1")).await.unwrap(),
        Err(ClaimRefusal::Unknown)
    );
    assert_eq!(
        s.claim_pairing("old", t, &claim("j1")).await.unwrap(),
        Err(ClaimRefusal::Expired)
    );
    assert_eq!(
        s.claim_pairing("h1", t, &claim("j1")).await.unwrap(),
        Err(ClaimRefusal::AlreadyUsed)
    );
    let claimed = s
        .claim_pairing("h2", t, &claim("j1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claimed.id, claimed.name.as_str()), (con.id, "Portaria"));
    assert_eq!(claimed.token_id.as_deref(), Some("j1"));
    assert_eq!(claimed.version.as_deref(), Some("1.2.0"));
    assert_eq!(
        s.claim_pairing("h2", t, &claim("j2")).await.unwrap(),
        Err(ClaimRefusal::AlreadyUsed)
    );

    // Unpair voids pending codes too, and the token.
    s.start_pairing(2, "h3", t + TimeDelta::minutes(15), None)
        .await
        .unwrap();
    let un = s.unpair(2, t).await.unwrap().unwrap();
    assert_eq!((un.token_id, un.status), (None, ConnectorStatus::OFFLINE));
    assert_eq!(
        s.claim_pairing("h3", t, &claim("j3")).await.unwrap(),
        Err(ClaimRefusal::AlreadyUsed)
    );
    assert!(s.unpair(9, t).await.unwrap().is_none());
}

async fn tokens_and_liveness(b: Backend) {
    let s = store(b).await;
    let t = now();
    s.start_pairing(2, "h", t + TimeDelta::minutes(15), None)
        .await
        .unwrap();
    let con = s
        .claim_pairing("h", t, &claim("j1"))
        .await
        .unwrap()
        .unwrap();
    assert!(s.token_is_current(con.id, "j1").await.unwrap());
    assert!(!s.token_is_current(con.id, "j0").await.unwrap());
    assert!(!s.swap_token(con.id, "wrong", "j2", t).await.unwrap());
    assert!(s
        .swap_token(con.id, "j1", "j2", t + TimeDelta::hours(1))
        .await
        .unwrap());
    assert!(!s.token_is_current(con.id, "j1").await.unwrap());
    // A rotation keeps the old token until the new one is first presented (the
    // connector may not have saved it); then the old one is refused.
    assert!(!s.rotate_token(con.id, "wrong", "j2b", t).await.unwrap());
    assert!(s
        .rotate_token(con.id, "j2", "j2b", t + TimeDelta::hours(2))
        .await
        .unwrap());
    assert!(s.token_is_current(con.id, "j2").await.unwrap());
    assert!(
        s.token_is_current(con.id, "j2").await.unwrap(),
        "still, until j2b is used"
    );
    assert!(s.token_is_current(con.id, "j2b").await.unwrap());
    assert!(!s.token_is_current(con.id, "j2").await.unwrap());
    assert!(s.token_is_current(con.id, "j2b").await.unwrap());
    // A renewal revokes every earlier token, the rotated-away one included, and voids
    // the pairing code an admin asked for before it (a claim would replace the renewal).
    assert!(s
        .rotate_token(con.id, "j2b", "j2c", t + TimeDelta::hours(3))
        .await
        .unwrap());
    s.start_pairing(2, "h-before-renewal", t + TimeDelta::minutes(15), None)
        .await
        .unwrap();
    s.set_token(con.id, "j3", t + TimeDelta::days(1))
        .await
        .unwrap()
        .unwrap();
    assert!(s.token_is_current(con.id, "j3").await.unwrap());
    assert!(!s.token_is_current(con.id, "j2b").await.unwrap());
    assert!(!s.token_is_current(con.id, "j2c").await.unwrap());
    assert_eq!(
        s.claim_pairing("h-before-renewal", t, &claim("j9"))
            .await
            .unwrap(),
        Err(ClaimRefusal::AlreadyUsed)
    );
    assert!(s.token_is_current(con.id, "j3").await.unwrap());
    // Still PAIRING (claimed, never connected): its token is not rotated.
    assert!(s
        .tokens_expiring(t + TimeDelta::days(2))
        .await
        .unwrap()
        .is_empty());

    let hb = t + TimeDelta::seconds(30);
    s.record_liveness(&[ConnectorLiveness {
        connector_id: con.id,
        connected: Some((true, t)),
        hello: Some((
            Some("2.0.0".into()),
            Some(serde_json::json!({"hostname": "portaria"})),
        )),
        heartbeat: Some(hb),
    }])
    .await
    .unwrap();
    let c = s.connector(con.id).await.unwrap().unwrap();
    assert_eq!(c.status, ConnectorStatus::ONLINE);
    assert_eq!((c.connected_since, c.last_heartbeat), (Some(t), Some(hb)));
    assert_eq!(c.version.as_deref(), Some("2.0.0"));
    assert_eq!(c.metadata.unwrap().0["hostname"], "portaria");
    let due = s.tokens_expiring(t + TimeDelta::days(2)).await.unwrap();
    assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), vec![con.id]);
    assert!(s.tokens_expiring(t).await.unwrap().is_empty());
    // A start-up resets what a previous process left ONLINE.
    assert_eq!(s.mark_all_offline().await.unwrap(), 1);
    let c = s.connector(con.id).await.unwrap().unwrap();
    assert_eq!(
        (c.status, c.connected_since),
        (ConnectorStatus::OFFLINE, None)
    );
    assert_eq!(c.last_heartbeat, Some(hb));
    // A connect event that an unpair overtook does not bring the connector back ONLINE.
    s.unpair(2, t).await.unwrap().unwrap();
    s.record_liveness(&[ConnectorLiveness {
        connector_id: con.id,
        connected: Some((true, t)),
        hello: None,
        heartbeat: None,
    }])
    .await
    .unwrap();
    let c = s.connector(con.id).await.unwrap().unwrap();
    assert_eq!(c.status, ConnectorStatus::OFFLINE);
}

async fn sessions_and_audit(b: Backend) {
    let s = store(b).await;
    let t = now();
    s.ensure_user(7, "Ana", None).await.unwrap();
    s.put_equipment(&equipment(100, 2)).await.unwrap();
    s.start_pairing(2, "h", t + TimeDelta::minutes(15), None)
        .await
        .unwrap();
    let con = s
        .claim_pairing("h", t, &claim("j1"))
        .await
        .unwrap()
        .unwrap();
    let new = |id: &str, launch: &str, idle: i64| NewSession {
        id: id.into(),
        equipment_id: 100,
        connector_id: con.id,
        user_id: 7,
        tenant_id: 2,
        expires_at: t + TimeDelta::seconds(idle),
        hard_limit: t + TimeDelta::seconds(100),
        launch_hash: launch.into(),
        launch_expires_at: t + TimeDelta::seconds(60),
    };
    let a = s.create_session(&new("sa", "la", 50)).await.unwrap();
    assert_eq!(
        (a.status, a.requests, a.bytes),
        (SessionStatus::ATIVA, 0, 0)
    );
    s.create_session(&new("sb", "lb", 5)).await.unwrap();

    assert_eq!(
        s.consume_launch("la", t, None).await.unwrap().unwrap().id,
        "sa"
    );
    assert!(
        s.consume_launch("la", t, None).await.unwrap().is_none(),
        "launch codes work once"
    );
    assert!(
        s.consume_launch("lb", t + TimeDelta::seconds(61), None)
            .await
            .unwrap()
            .is_none(),
        "stale launch code"
    );

    // Sliding never passes the hard limit.
    assert!(s
        .extend_session("sa", t + TimeDelta::seconds(500), t)
        .await
        .unwrap());
    assert_eq!(
        s.session("sa").await.unwrap().unwrap().expires_at,
        t + TimeDelta::seconds(100)
    );

    s.add_session_usage(&[("sa".into(), 3, 5_000_000_000), ("sa".into(), 1, 1)])
        .await
        .unwrap();
    let a = s.session("sa").await.unwrap().unwrap();
    assert_eq!((a.requests, a.bytes), (4, 5_000_000_001));

    // Expiry: sb's idle TTL has passed; sa's has not.
    assert_eq!(
        s.expire_sessions(t + TimeDelta::seconds(10)).await.unwrap(),
        vec!["sb".to_string()]
    );
    assert!(!s
        .extend_session("sb", t + TimeDelta::seconds(20), t + TimeDelta::seconds(10))
        .await
        .unwrap());

    assert!(
        s.end_session(3, 100, "sa", t).await.unwrap().is_none(),
        "other tenant"
    );
    assert!(
        s.end_session(2, 101, "sa", t).await.unwrap().is_none(),
        "other equipment"
    );
    let ended = s.end_session(2, 100, "sa", t).await.unwrap().unwrap();
    assert_eq!(
        (ended.status, ended.ended_at),
        (SessionStatus::ENCERRADA, Some(t))
    );
    let again = s
        .end_session(2, 100, "sa", t + TimeDelta::seconds(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.ended_at, Some(t), "ending twice changes nothing");

    let list = s.list_sessions(2, 10).await.unwrap();
    let statuses: Vec<_> = list
        .iter()
        .map(|l| (l.session.id.as_str(), l.session.status))
        .collect();
    assert!(
        statuses.contains(&("sa", SessionStatus::ENCERRADA))
            && statuses.contains(&("sb", SessionStatus::EXPIRADA))
    );
    assert!(list
        .iter()
        .all(|l| l.user_name == "Ana" && l.equipment_name == "Catraca"));
    assert!(s.list_sessions(3, 10).await.unwrap().is_empty());

    let at = now();
    s.audit(&[AuditEntry {
        at,
        action: "proxy-http".into(),
        user_id: Some(7),
        tenant_id: 2,
        equipment_id: Some(100),
        method: Some("GET".into()),
        path: Some("/".into()),
        status: Some(200),
        bytes: 42,
        duration_ms: Some(3),
        detail: None,
    }])
    .await
    .unwrap();
    let log = s.list_audit(2, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].created_at, at, "the entry keeps when it happened");
    s.probe().await.unwrap();
    assert_eq!(
        (
            log[0].action.as_str(),
            log[0].status,
            log[0].bytes,
            log[0].user_id
        ),
        ("proxy-http", Some(200), 42, Some(7))
    );
    assert!(s.list_audit(3, 10).await.unwrap().is_empty());
}

async fn published_routes(b: Backend) {
    let s = store(b).await;
    let t = now();
    s.ensure_user(7, "Ana", None).await.unwrap();
    s.put_equipment(&equipment(100, 2)).await.unwrap();
    s.put_equipment(&equipment(200, 3)).await.unwrap();
    let new = |slug: &str, tenant: i32, eq: i32| NewPublicRoute {
        slug: slug.into(),
        equipment_id: eq,
        tenant_id: tenant,
        user_id: Some(7),
        paths: vec!["/approve/*".into(), "/status".into()],
        methods: vec!["GET".into(), "POST".into()],
        websocket: false,
        requests_per_minute: 120,
        expires_at: Some(t + TimeDelta::hours(1)),
    };
    let a = s.create_route(&new("nexora", 2, 100)).await.unwrap();
    assert_eq!(a.slug, "nexora");
    assert_eq!(a.paths.0, ["/approve/*", "/status"]);
    assert_eq!(a.methods.0, ["GET", "POST"]);
    assert_eq!((a.requests, a.bytes, a.last_used_at), (0, 0, None));
    assert_eq!(a.expires_at, Some(t + TimeDelta::hours(1)));
    // A slug is one host: taken is taken, by any tenant.
    assert!(matches!(
        s.create_route(&new("nexora", 3, 200)).await,
        Err(StoreError::Conflict(_))
    ));
    let other = s.create_route(&new("outra", 3, 200)).await.unwrap();
    assert_eq!(s.route_by_slug("nexora").await.unwrap(), Some(a.clone()));
    assert_eq!(s.route_by_slug("none").await.unwrap(), None);
    assert_eq!(
        s.list_routes(2, 100).await.unwrap(),
        std::slice::from_ref(&a)
    );
    assert!(s.list_routes(2, 200).await.unwrap().is_empty());

    let later = t + TimeDelta::seconds(5);
    s.add_route_usage(&[
        RouteUsage {
            route_id: a.id,
            requests: 3,
            bytes: 300,
            last_used_at: later,
        },
        RouteUsage {
            route_id: a.id,
            requests: 1,
            bytes: 1,
            last_used_at: t,
        },
    ])
    .await
    .unwrap();
    let used = s.route_by_slug("nexora").await.unwrap().unwrap();
    // Counts add up; the last use never goes back.
    assert_eq!(
        (used.requests, used.bytes, used.last_used_at),
        (4, 301, Some(later))
    );

    // Deleting is tenant- and equipment-scoped.
    assert_eq!(s.delete_route(3, 200, a.id).await.unwrap(), None);
    assert_eq!(s.delete_route(2, 100, other.id).await.unwrap(), None);
    assert_eq!(
        s.delete_route(2, 100, a.id).await.unwrap().map(|r| r.id),
        Some(a.id)
    );
    assert_eq!(s.route_by_slug("nexora").await.unwrap(), None);
    assert_eq!(s.delete_route(2, 100, a.id).await.unwrap(), None);
    // A deleted route's late counts touch nothing; its slug may be published again.
    s.add_route_usage(&[RouteUsage {
        route_id: a.id,
        requests: 1,
        bytes: 1,
        last_used_at: t,
    }])
    .await
    .unwrap();
    s.create_route(&new("nexora", 2, 100)).await.unwrap();
    assert_eq!(s.route_by_slug("outra").await.unwrap().unwrap().requests, 0);
}
