//! The statements: [`Store`] for [`SqlStore`], each body written once and run on the
//! store's engine through `on!`; writes with `RETURNING` read whole through `returning!`.

use super::{Pool, SqlStore};
use crate::store::{
    now, AuditEntry, AuditRecord, ClaimInfo, ClaimRefusal, Connector, ConnectorLiveness,
    ConnectorStatus, Equipment, Institution, NewPublicRoute, NewSession, PublicRoute, Result,
    RouteUsage, Session, SessionListing, SessionStatus, Store, StoreError, Ts,
};
use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::Row as _;

const SESSION_LISTING: &str = r#"
SELECT s.*, u."USRNome", e."EQPDescricao"
FROM "RMTSessaoRemota" s
JOIN "USRUsuario" u ON u."USRCodigo" = s."USRCodigo"
JOIN "EQPEquipamento" e ON e."EQPCodigo" = s."EQPCodigo"
WHERE s."INSInstituicaoCodigo" = $1
ORDER BY s."createdAt" DESC, s."RMTCodigo" DESC
LIMIT $2"#;

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    async fn upsert_client(&self, id: i32, name: &str) -> Result<()> {
        on!(self, p => { sqlx::query(
            r#"INSERT INTO "CLICliente" ("CLICodigo", "CLINome") VALUES ($1, $2)
               ON CONFLICT ("CLICodigo") DO UPDATE SET "CLINome" = excluded."CLINome""#)
            .bind(id).bind(name).execute(p).await?; });
        Ok(())
    }

    async fn upsert_institution(&self, client_id: i32, id: i32, name: &str) -> Result<()> {
        let client: Option<i32> = on!(self, p => sqlx::query_scalar(
            r#"SELECT "CLICodigo" FROM "CLICliente" WHERE "CLICodigo" = $1"#)
            .bind(client_id).fetch_optional(p).await?);
        if client.is_none() {
            return Err(StoreError::Conflict(format!(
                "client {client_id} does not exist"
            )));
        }
        let done = on!(self, p => sqlx::query(
            r#"INSERT INTO "INSInstituicao" ("INSCodigo", "CLICodigo", "INSNome") VALUES ($1, $2, $3)
               ON CONFLICT ("INSCodigo") DO UPDATE SET "INSNome" = excluded."INSNome"
               WHERE "INSInstituicao"."CLICodigo" = excluded."CLICodigo""#)
            .bind(id).bind(client_id).bind(name).execute(p).await?.rows_affected());
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "institution {id} belongs to another client"
            )));
        }
        Ok(())
    }

    async fn institution(&self, id: i32) -> Result<Option<Institution>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "INSInstituicao" WHERE "INSCodigo" = $1"#)
            .bind(id).fetch_optional(p).await?))
    }

    async fn ensure_user(&self, id: i32, name: &str, email: Option<&str>) -> Result<()> {
        // The e-mail is unique: when another user already holds it (the SaaS moved it),
        // this user is still recorded, without one, rather than not at all.
        on!(self, p => {
            sqlx::query(
                r#"INSERT INTO "USRUsuario" ("USRCodigo", "USRNome", "USREmail")
                   SELECT $1, $2, CASE WHEN EXISTS (SELECT 1 FROM "USRUsuario" WHERE "USREmail" = $3)
                                       THEN NULL ELSE $3 END
                   WHERE true
                   ON CONFLICT ("USRCodigo") DO NOTHING"#)
                .bind(id).bind(name).bind(email).execute(p).await?;
        });
        Ok(())
    }

    async fn put_equipment(&self, e: &Equipment) -> Result<Equipment> {
        let rows: Vec<Equipment> = on!(self, p => returning!(p, sqlx::query_as(
            r#"INSERT INTO "EQPEquipamento" ("EQPCodigo", "EQPDescricao", "EQPMarca", "EQPModelo",
                 "EQPEnderecoIp", "EQPAtivo", "INSInstituicaoCodigo", "EQPUsaAddon", "EQPConfig")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT ("EQPCodigo") DO UPDATE SET
                 "EQPDescricao" = excluded."EQPDescricao", "EQPMarca" = excluded."EQPMarca",
                 "EQPModelo" = excluded."EQPModelo", "EQPEnderecoIp" = excluded."EQPEnderecoIp",
                 "EQPAtivo" = excluded."EQPAtivo", "EQPUsaAddon" = excluded."EQPUsaAddon",
                 "EQPConfig" = excluded."EQPConfig"
               WHERE "EQPEquipamento"."INSInstituicaoCodigo" = excluded."INSInstituicaoCodigo"
               RETURNING *"#)
            .bind(e.id).bind(&e.name).bind(&e.brand).bind(&e.model).bind(&e.ip)
            .bind(e.active).bind(e.tenant_id).bind(e.uses_addon).bind(&e.config)))?;
        rows.into_iter()
            .next()
            .ok_or_else(|| StoreError::Conflict(format!("equipment id {} is already in use", e.id)))
    }

    async fn equipment(&self, tenant_id: i32, id: i32) -> Result<Option<Equipment>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "EQPEquipamento" WHERE "EQPCodigo" = $1 AND "INSInstituicaoCodigo" = $2"#)
            .bind(id).bind(tenant_id).fetch_optional(p).await?))
    }

    async fn list_equipment(&self, tenant_id: i32, limit: i64) -> Result<Vec<Equipment>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "EQPEquipamento" WHERE "INSInstituicaoCodigo" = $1
               ORDER BY "EQPCodigo" LIMIT $2"#)
            .bind(tenant_id).bind(limit).fetch_all(p).await?))
    }

    async fn connector(&self, id: i32) -> Result<Option<Connector>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "CONConnector" WHERE "CONCodigo" = $1"#)
            .bind(id).fetch_optional(p).await?))
    }

    async fn connector_of(&self, tenant_id: i32) -> Result<Option<Connector>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "CONConnector" WHERE "INSInstituicaoCodigo" = $1"#)
            .bind(tenant_id).fetch_optional(p).await?))
    }

    async fn ensure_connector(&self, tenant_id: i32) -> Result<Connector> {
        let rows: Vec<Connector> = on!(self, p => returning!(p, sqlx::query_as(
            r#"INSERT INTO "CONConnector" ("CONNome", "CONStatus", "CLICodigo", "INSInstituicaoCodigo")
               SELECT 'Connector', $2, i."CLICodigo", i."INSCodigo" FROM "INSInstituicao" i
               WHERE i."INSCodigo" = $1
               ON CONFLICT ("INSInstituicaoCodigo") DO UPDATE SET
                 "CONStatus" = CASE WHEN "CONConnector"."CONStatus" = $3
                               THEN "CONConnector"."CONStatus" ELSE $2 END,
                 "updatedAt" = $4
               RETURNING *"#)
            .bind(tenant_id).bind(ConnectorStatus::PAIRING).bind(ConnectorStatus::ONLINE)
            .bind(now())))?;
        rows.into_iter()
            .next()
            .ok_or_else(|| StoreError::Conflict(format!("institution {tenant_id} does not exist")))
    }

    async fn start_pairing(
        &self,
        tenant_id: i32,
        code_hash: &str,
        expires_at: Ts,
        user_id: Option<i32>,
    ) -> Result<Connector> {
        let con = self.ensure_connector(tenant_id).await?;
        on!(self, p => in_tx!(p, tx => async {
            // One live code per institution: a new code retires the earlier ones, so
            // asking again does not multiply what a guesser can hit.
            sqlx::query(
                r#"UPDATE "PARPareamento" SET "PARUsadoEm" = $2
                   WHERE "INSInstituicaoCodigo" = $1 AND "PARUsadoEm" IS NULL"#)
                .bind(tenant_id).bind(now()).execute(&mut *tx).await?;
            sqlx::query(
                r#"INSERT INTO "PARPareamento" ("PARCodigoHash", "PARExpiraEm", "INSInstituicaoCodigo", "USRCodigo")
                   VALUES ($1, $2, $3, $4)"#)
                .bind(code_hash).bind(expires_at).bind(tenant_id).bind(user_id)
                .execute(&mut *tx).await?;
            Ok::<_, StoreError>(())
        }.await))?;
        Ok(con)
    }

    async fn claim_pairing(
        &self,
        code_hash: &str,
        now: Ts,
        info: &ClaimInfo,
    ) -> Result<Result<Connector, ClaimRefusal>> {
        on!(self, p => in_tx!(p, tx => async {
            let tenant: Option<i32> = sqlx::query_scalar(
                r#"UPDATE "PARPareamento" SET "PARUsadoEm" = $2
                   WHERE "PARCodigoHash" = $1 AND "PARUsadoEm" IS NULL AND "PARExpiraEm" > $2
                   RETURNING "INSInstituicaoCodigo""#)
                .bind(code_hash).bind(now).fetch_all(&mut *tx).await?.pop();
            let Some(tenant) = tenant else {
                let row = sqlx::query(
                    r#"SELECT "PARUsadoEm" FROM "PARPareamento" WHERE "PARCodigoHash" = $1"#)
                    .bind(code_hash).fetch_optional(&mut *tx).await?;
                let refusal = match row {
                    None => ClaimRefusal::Unknown,
                    Some(r) if r.try_get::<Option<Ts>, _>(0)?.is_some() => ClaimRefusal::AlreadyUsed,
                    Some(_) => ClaimRefusal::Expired,
                };
                return Ok(Err(refusal));
            };
            sqlx::query(
                r#"UPDATE "PARPareamento" SET "PARUsadoEm" = $2
                   WHERE "INSInstituicaoCodigo" = $1 AND "PARUsadoEm" IS NULL"#)
                .bind(tenant).bind(now).execute(&mut *tx).await?;
            let con: Connector = sqlx::query_as(
                r#"UPDATE "CONConnector" SET "CONNome" = $2, "CONVersao" = $3, "CONMetadata" = $4,
                     "CONToken" = $5, "CONTokenAnterior" = NULL, "CONTokenExpiraEm" = $6,
                     "CONStatus" = $7, "updatedAt" = $8
                   WHERE "INSInstituicaoCodigo" = $1 RETURNING *"#)
                .bind(tenant).bind(&info.name).bind(&info.version)
                .bind(info.metadata.clone().map(Json)).bind(&info.token_id)
                .bind(info.token_expires_at).bind(ConnectorStatus::PAIRING).bind(now)
                .fetch_all(&mut *tx).await?.pop().ok_or(sqlx::Error::RowNotFound)?;
            Ok::<_, StoreError>(Ok(con))
        }.await))
    }

    async fn set_token(
        &self,
        connector_id: i32,
        token_id: &str,
        expires_at: Ts,
    ) -> Result<Option<Connector>> {
        on!(self, p => in_tx!(p, tx => async {
            let con: Option<Connector> = sqlx::query_as(
                r#"UPDATE "CONConnector" SET "CONToken" = $2, "CONTokenAnterior" = NULL,
                     "CONTokenExpiraEm" = $3, "updatedAt" = $4
                   WHERE "CONCodigo" = $1 RETURNING *"#)
                .bind(connector_id).bind(token_id).bind(expires_at).bind(now())
                .fetch_all(&mut *tx).await?.pop();
            if let Some(con) = &con {
                sqlx::query(
                    r#"UPDATE "PARPareamento" SET "PARUsadoEm" = $2
                       WHERE "INSInstituicaoCodigo" = $1 AND "PARUsadoEm" IS NULL"#)
                    .bind(con.tenant_id).bind(now()).execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(con)
        }.await))
    }

    async fn swap_token(
        &self,
        connector_id: i32,
        old: &str,
        new: &str,
        expires_at: Ts,
    ) -> Result<bool> {
        let n = on!(self, p => sqlx::query(
            r#"UPDATE "CONConnector" SET "CONToken" = $3, "CONTokenAnterior" = NULL,
                 "CONTokenExpiraEm" = $4, "updatedAt" = $5
               WHERE "CONCodigo" = $1 AND "CONToken" = $2"#)
            .bind(connector_id).bind(old).bind(new).bind(expires_at).bind(now())
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    async fn rotate_token(
        &self,
        connector_id: i32,
        old: &str,
        new: &str,
        expires_at: Ts,
    ) -> Result<bool> {
        let n = on!(self, p => sqlx::query(
            r#"UPDATE "CONConnector" SET "CONToken" = $3, "CONTokenAnterior" = $2,
                 "CONTokenExpiraEm" = $4, "updatedAt" = $5
               WHERE "CONCodigo" = $1 AND "CONToken" = $2"#)
            .bind(connector_id).bind(old).bind(new).bind(expires_at).bind(now())
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    async fn unpair(&self, tenant_id: i32, now: Ts) -> Result<Option<Connector>> {
        on!(self, p => in_tx!(p, tx => async {
            let con: Option<Connector> = sqlx::query_as(
                r#"UPDATE "CONConnector" SET "CONToken" = NULL, "CONTokenAnterior" = NULL,
                     "CONTokenExpiraEm" = NULL, "CONStatus" = $2, "CONConectadoDesde" = NULL, "updatedAt" = $3
                   WHERE "INSInstituicaoCodigo" = $1 RETURNING *"#)
                .bind(tenant_id).bind(ConnectorStatus::OFFLINE).bind(now)
                .fetch_all(&mut *tx).await?.pop();
            sqlx::query(
                r#"UPDATE "PARPareamento" SET "PARUsadoEm" = $2
                   WHERE "INSInstituicaoCodigo" = $1 AND "PARUsadoEm" IS NULL"#)
                .bind(tenant_id).bind(now).execute(&mut *tx).await?;
            Ok::<_, StoreError>(con)
        }.await))
    }

    async fn token_is_current(&self, connector_id: i32, token_id: &str) -> Result<bool> {
        let row: Option<(Option<String>, Option<String>)> = on!(self, p => sqlx::query_as(
            r#"SELECT "CONToken", "CONTokenAnterior" FROM "CONConnector" WHERE "CONCodigo" = $1"#)
            .bind(connector_id).fetch_optional(p).await?);
        let Some((current, previous)) = row else {
            return Ok(false);
        };
        if current.as_deref() == Some(token_id) {
            if previous.is_some() {
                // The new token is in use: the connector saved it, the old one retires.
                on!(self, p => sqlx::query(
                    r#"UPDATE "CONConnector" SET "CONTokenAnterior" = NULL, "updatedAt" = $3
                       WHERE "CONCodigo" = $1 AND "CONToken" = $2"#)
                    .bind(connector_id).bind(token_id).bind(now()).execute(p).await?.rows_affected());
            }
            return Ok(true);
        }
        Ok(current.is_some() && previous.as_deref() == Some(token_id))
    }

    async fn record_liveness(&self, batch: &[ConnectorLiveness]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = now();
        on!(self, p => in_tx!(p, tx => async {
            for l in batch {
                match l.connected {
                    Some((true, at)) => {
                        sqlx::query(
                            // Not after an unpair (token NULL) that overtook this event.
                            r#"UPDATE "CONConnector" SET "CONStatus" = $2, "CONConectadoDesde" = $3,
                                 "CONUltimoHeartbeat" = $3, "updatedAt" = $4
                               WHERE "CONCodigo" = $1 AND "CONToken" IS NOT NULL"#)
                            .bind(l.connector_id).bind(ConnectorStatus::ONLINE).bind(at).bind(now)
                            .execute(&mut *tx).await?;
                    }
                    Some((false, _)) => {
                        sqlx::query(
                            r#"UPDATE "CONConnector" SET "CONStatus" = $2, "CONConectadoDesde" = NULL,
                                 "updatedAt" = $3 WHERE "CONCodigo" = $1 AND "CONStatus" = $4"#)
                            .bind(l.connector_id).bind(ConnectorStatus::OFFLINE).bind(now)
                            .bind(ConnectorStatus::ONLINE)
                            .execute(&mut *tx).await?;
                    }
                    None => {}
                }
                if let Some((version, metadata)) = &l.hello {
                    sqlx::query(
                        r#"UPDATE "CONConnector" SET "CONVersao" = $2, "CONMetadata" = $3, "updatedAt" = $4
                           WHERE "CONCodigo" = $1"#)
                        .bind(l.connector_id).bind(version).bind(metadata.clone().map(Json)).bind(now)
                        .execute(&mut *tx).await?;
                }
                if let Some(at) = l.heartbeat {
                    sqlx::query(
                        r#"UPDATE "CONConnector" SET "CONUltimoHeartbeat" = $2 WHERE "CONCodigo" = $1"#)
                        .bind(l.connector_id).bind(at).execute(&mut *tx).await?;
                }
            }
            Ok::<_, StoreError>(())
        }.await))
    }

    async fn mark_all_offline(&self) -> Result<u64> {
        Ok(on!(self, p => sqlx::query(
            r#"UPDATE "CONConnector" SET "CONStatus" = $1, "CONConectadoDesde" = NULL, "updatedAt" = $3
               WHERE "CONStatus" = $2"#)
            .bind(ConnectorStatus::OFFLINE).bind(ConnectorStatus::ONLINE).bind(now())
            .execute(p).await?.rows_affected()))
    }

    async fn tokens_expiring(&self, before: Ts) -> Result<Vec<Connector>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "CONConnector" WHERE "CONToken" IS NOT NULL AND "CONTokenExpiraEm" < $1
                 AND "CONStatus" <> $2"#)
            // A PAIRING connector's token was just issued to whoever claimed the code; a
            // socket still open with the previous token must not be handed a new one.
            .bind(before).bind(ConnectorStatus::PAIRING).fetch_all(p).await?))
    }

    async fn create_session(&self, s: &NewSession) -> Result<Session> {
        let rows: Vec<Session> = on!(self, p => returning!(p, sqlx::query_as(
            r#"INSERT INTO "RMTSessaoRemota" ("RMTSessionId", "EQPCodigo", "CONCodigo", "USRCodigo",
                 "INSInstituicaoCodigo", "RMTStatus", "RMTExpiraEm", "RMTLimiteEm",
                 "RMTCodigoLancamento", "RMTLancamentoExpiraEm")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *"#)
            .bind(&s.id).bind(s.equipment_id).bind(s.connector_id).bind(s.user_id)
            .bind(s.tenant_id).bind(SessionStatus::ATIVA).bind(s.expires_at).bind(s.hard_limit)
            .bind(&s.launch_hash).bind(s.launch_expires_at)))?;
        Ok(rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)?)
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "RMTSessaoRemota" WHERE "RMTSessionId" = $1"#)
            .bind(id).fetch_optional(p).await?))
    }

    async fn consume_launch(
        &self,
        launch_hash: &str,
        now: Ts,
        session_id: Option<&str>,
    ) -> Result<Option<Session>> {
        let rows: Vec<Session> = on!(self, p => returning!(p, sqlx::query_as(
            r#"UPDATE "RMTSessaoRemota" SET "RMTCodigoLancamento" = NULL, "RMTLancamentoExpiraEm" = NULL,
                 "updatedAt" = $2
               WHERE "RMTCodigoLancamento" = $1 AND "RMTLancamentoExpiraEm" > $2
                 AND "RMTStatus" = $3 AND "RMTExpiraEm" > $2
                 AND "RMTSessionId" = COALESCE($4, "RMTSessionId")
               RETURNING *"#)
            .bind(launch_hash).bind(now).bind(SessionStatus::ATIVA).bind(session_id)))?;
        Ok(rows.into_iter().next())
    }

    async fn extend_session(&self, id: &str, expires_at: Ts, now: Ts) -> Result<bool> {
        let n = on!(self, p => sqlx::query(
            r#"UPDATE "RMTSessaoRemota"
               SET "RMTExpiraEm" = CASE WHEN $2 < "RMTLimiteEm" THEN $2 ELSE "RMTLimiteEm" END,
                   "updatedAt" = $3
               WHERE "RMTSessionId" = $1 AND "RMTStatus" = $4 AND "RMTExpiraEm" > $3"#)
            .bind(id).bind(expires_at).bind(now).bind(SessionStatus::ATIVA)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    async fn add_session_usage(&self, batch: &[(String, i32, i64)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        on!(self, p => in_tx!(p, tx => async {
            for (id, requests, bytes) in batch {
                sqlx::query(
                    r#"UPDATE "RMTSessaoRemota" SET "RMTRequisicoes" = "RMTRequisicoes" + $2,
                         "RMTBytes" = "RMTBytes" + $3 WHERE "RMTSessionId" = $1"#)
                    .bind(id).bind(requests).bind(bytes).execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(())
        }.await))
    }

    async fn end_session(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: &str,
        now: Ts,
    ) -> Result<Option<Session>> {
        let rows: Vec<Session> = on!(self, p => returning!(p, sqlx::query_as(
            r#"UPDATE "RMTSessaoRemota" SET "RMTStatus" = $4, "RMTEncerradaEm" = $5,
                 "RMTCodigoLancamento" = NULL, "updatedAt" = $5
               WHERE "INSInstituicaoCodigo" = $1 AND "EQPCodigo" = $2 AND "RMTSessionId" = $3
                 AND "RMTStatus" = $6
               RETURNING *"#)
            .bind(tenant_id).bind(equipment_id).bind(id).bind(SessionStatus::ENCERRADA).bind(now)
            .bind(SessionStatus::ATIVA)))?;
        let ended = rows.into_iter().next();
        if ended.is_some() {
            return Ok(ended);
        }
        // Already over: ending it again is a no-op, but only within its tenant and equipment.
        Ok(self
            .session(id)
            .await?
            .filter(|s| s.tenant_id == tenant_id && s.equipment_id == equipment_id))
    }

    async fn create_route(&self, r: &NewPublicRoute) -> Result<PublicRoute> {
        let rows: Vec<PublicRoute> = on!(self, p => returning!(p, sqlx::query_as(
            r#"INSERT INTO "ROTRotaPublica" ("ROTSlug", "EQPCodigo", "INSInstituicaoCodigo",
                 "USRCodigo", "ROTCaminhos", "ROTMetodos", "ROTWebsocket", "ROTRequisicoesPorMinuto",
                 "ROTExpiraEm")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT ("ROTSlug") DO NOTHING RETURNING *"#)
            .bind(&r.slug).bind(r.equipment_id).bind(r.tenant_id).bind(r.user_id)
            .bind(Json(&r.paths)).bind(Json(&r.methods)).bind(r.websocket)
            .bind(r.requests_per_minute).bind(r.expires_at)))?;
        rows.into_iter()
            .next()
            .ok_or_else(|| StoreError::Conflict(format!("slug {:?} is already in use", r.slug)))
    }

    async fn route_by_slug(&self, slug: &str) -> Result<Option<PublicRoute>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "ROTRotaPublica" WHERE "ROTSlug" = $1"#)
            .bind(slug).fetch_optional(p).await?))
    }

    async fn list_routes(&self, tenant_id: i32, equipment_id: i32) -> Result<Vec<PublicRoute>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "ROTRotaPublica" WHERE "INSInstituicaoCodigo" = $1 AND "EQPCodigo" = $2
               ORDER BY "ROTCodigo""#)
            .bind(tenant_id).bind(equipment_id).fetch_all(p).await?))
    }

    async fn delete_route(
        &self,
        tenant_id: i32,
        equipment_id: i32,
        id: i32,
    ) -> Result<Option<PublicRoute>> {
        let rows: Vec<PublicRoute> = on!(self, p => returning!(p, sqlx::query_as(
            r#"DELETE FROM "ROTRotaPublica"
               WHERE "INSInstituicaoCodigo" = $1 AND "EQPCodigo" = $2 AND "ROTCodigo" = $3
               RETURNING *"#)
            .bind(tenant_id).bind(equipment_id).bind(id)))?;
        Ok(rows.into_iter().next())
    }

    async fn add_route_usage(&self, batch: &[RouteUsage]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        on!(self, p => in_tx!(p, tx => async {
            for u in batch {
                // A route deleted since is simply not found: its counts go with it.
                sqlx::query(
                    r#"UPDATE "ROTRotaPublica" SET "ROTRequisicoes" = "ROTRequisicoes" + $2,
                         "ROTBytes" = "ROTBytes" + $3,
                         "ROTUltimoUsoEm" = CASE WHEN "ROTUltimoUsoEm" IS NULL OR "ROTUltimoUsoEm" < $4
                           THEN $4 ELSE "ROTUltimoUsoEm" END
                       WHERE "ROTCodigo" = $1"#)
                    .bind(u.route_id).bind(u.requests).bind(u.bytes).bind(u.last_used_at)
                    .execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(())
        }.await))
    }

    async fn expire_sessions(&self, now: Ts) -> Result<Vec<String>> {
        on!(self, p => returning!(p, sqlx::query_scalar(
            r#"UPDATE "RMTSessaoRemota" SET "RMTStatus" = $2, "RMTCodigoLancamento" = NULL, "updatedAt" = $1
               WHERE "RMTStatus" = $3 AND "RMTExpiraEm" <= $1 RETURNING "RMTSessionId""#)
            .bind(now).bind(SessionStatus::EXPIRADA).bind(SessionStatus::ATIVA)))
    }

    async fn list_sessions(&self, tenant_id: i32, limit: i64) -> Result<Vec<SessionListing>> {
        Ok(on!(self, p => sqlx::query_as(SESSION_LISTING)
            .bind(tenant_id).bind(limit).fetch_all(p).await?))
    }

    async fn audit(&self, batch: &[AuditEntry]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        on!(self, p => in_tx!(p, tx => async {
            for e in batch {
                sqlx::query(
                    r#"INSERT INTO "AUDAuditoria" ("AUDAcao", "USRCodigo", "INSInstituicaoCodigo", "EQPCodigo",
                         "AUDMetodo", "AUDCaminho", "AUDStatus", "AUDBytes", "AUDDuracaoMs", "AUDDetalhe", "createdAt")
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#)
                    .bind(&e.action).bind(e.user_id).bind(e.tenant_id).bind(e.equipment_id)
                    .bind(&e.method).bind(&e.path).bind(e.status).bind(e.bytes).bind(e.duration_ms)
                    .bind(e.detail.clone().map(Json)).bind(e.at)
                    .execute(&mut *tx).await?;
            }
            Ok::<_, StoreError>(())
        }.await))
    }

    async fn close(&self) {
        on!(self, p => p.close().await)
    }

    async fn probe(&self) -> Result<()> {
        // A read, then a real write (a row rewritten in place still needs free space
        // for its journal/WAL page): a store that can read but not write is not ready.
        on!(self, p => {
            sqlx::query("SELECT 1").execute(p).await?;
            in_tx!(p, tx => async {
                sqlx::query(
                    r#"INSERT INTO "CFGConfiguracao" ("CFGChave", "CFGValor", "updatedAt")
                       VALUES ($1, $2, $3)
                       ON CONFLICT ("CFGChave") DO UPDATE SET "CFGValor" = excluded."CFGValor",
                         "updatedAt" = excluded."updatedAt""#)
                    .bind("ready.probe").bind(now().and_utc().timestamp_millis().to_string())
                    .bind(now()).execute(&mut *tx).await?;
                Ok::<_, StoreError>(())
            }.await)
        })
    }

    async fn list_audit(&self, tenant_id: i32, limit: i64) -> Result<Vec<AuditRecord>> {
        Ok(on!(self, p => sqlx::query_as(
            r#"SELECT * FROM "AUDAuditoria" WHERE "INSInstituicaoCodigo" = $1
               ORDER BY "AUDCodigo" DESC LIMIT $2"#)
            .bind(tenant_id).bind(limit).fetch_all(p).await?))
    }
}
