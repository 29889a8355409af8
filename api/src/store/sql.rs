//! [`Store`] over SQL: one set of statements for SQLite and PostgreSQL.
//!
//! Every statement is written once, in the dialect both engines share (quoted Prisma
//! identifiers, `$n` parameters, `ON CONFLICT`, `RETURNING`, `CASE` instead of
//! `LEAST`/`MIN`). No literal is ever compared with an enum column: enums are bound as
//! parameters, which PostgreSQL types as its enum and SQLite as text. [`on!`] expands
//! each body once per backend, so the two cannot drift apart.

use super::{Result, StoreError};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Longest wait for a pooled connection. An engine that cannot hand one out in this
/// long is unavailable: callers answer 503 `STORE_UNAVAILABLE` instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The store on one of the two engines.
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` as one transaction on a connection of `$p`, with `$tx` bound to it;
/// `$body` is an expression of type `Result<T>` that may use `?` and `return`. A failed
/// transaction (its commit included) closes its connection instead of returning it to
/// the pool: after SQLITE_FULL or an I/O error SQLite may or may not have rolled back,
/// and a connection left inside an open transaction would make every later write on it
/// "succeed" into a transaction that is never committed.
macro_rules! in_tx {
    ($p:ident, $tx:ident => $body:expr) => {{
        let mut conn = $p.acquire().await?;
        let res: Result<_> = async {
            let mut $tx = sqlx::Connection::begin(&mut *conn).await?;
            let out = $body?;
            $tx.commit().await?;
            Ok(out)
        }
        .await;
        if res.is_err() {
            conn.close_on_drop();
        }
        res
    }};
}

/// A write with `RETURNING`: one explicit transaction, every returned row read. On
/// SQLite a `RETURNING` statement read only to its first row is left unfinished, and its
/// implicit transaction commits only when the statement is next reset — on a full disk
/// it never does, silently (sqlx #3430), so the write would be acknowledged and lost.
/// Evaluates to the rows.
macro_rules! returning {
    ($p:ident, $q:expr) => {
        in_tx!($p, tx => async { Ok::<_, StoreError>($q.fetch_all(&mut *tx).await?) }.await)
    };
}

/// Runs `$body` with `$p` bound to whichever pool this store has.
macro_rules! on {
    ($self:ident, $p:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

impl SqlStore {
    /// Connects and applies the migrations of the matching engine.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                // A writer waits this long for another's lock. Writes are short and
                // batched (audit, usage, liveness), so a longer wait means trouble:
                // answer 503 rather than hold the request.
                .busy_timeout(Duration::from_secs(5))
                .journal_mode(if memory {
                    SqliteJournalMode::Memory
                } else {
                    SqliteJournalMode::Wal
                });
            // An in-memory database exists once per connection: keep exactly one.
            let max = if memory { 1 } else { 8 };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if memory {
                    None
                } else {
                    Some(Duration::from_secs(3600))
                })
                .connect_with(opts)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                // PostgreSQL down: every caller gets 503 within this, not a 10 s hang.
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        Ok(Self { pool })
    }
}

mod statements;
