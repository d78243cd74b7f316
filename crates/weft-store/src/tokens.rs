//! Task tokens as the store keeps them: the SHA-256 of each token with what it may do and for
//! which attempt, never the token itself.
//!
//! A token is minted in the transaction that claims its attempt ([`crate::Tx::insert_task_tokens`])
//! and revoked by a trigger in the transaction that takes the attempt out of `running`
//! (`migrations/*/0007_task_tokens.sql`), so "no valid token for an attempt that is not
//! running" holds whatever code path ends the attempt. Expiry and revocation times come from
//! the database clock. Both SQLite and PostgreSQL implement the same contract here.

use async_trait::async_trait;
use sqlx::Row;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{Error, Result, TaskStatus};

/// A token to record: its hash and what it allows. Issue and expiry are the store's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaskToken {
    /// SHA-256 of the token, hex.
    pub hash: String,
    pub tenant: String,
    pub run_id: String,
    pub step_id: String,
    pub task_id: i64,
    pub item: Option<u32>,
    pub attempt: u32,
    pub scopes: Vec<String>,
    /// How long it lives from its issue, in milliseconds.
    pub ttl_ms: i64,
}

/// A token as looked up by a callback, with the state of its task at the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTokenState {
    /// `tt_` + the first 16 hex digits of the hash: the token's name in the audit trail.
    pub id: String,
    pub tenant: String,
    pub run_id: String,
    pub step_id: String,
    pub task_id: i64,
    pub item: Option<u32>,
    pub attempt: u32,
    pub scopes: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// The task's status and attempt now (`None` if the task is gone).
    pub task_status: Option<TaskStatus>,
    pub task_attempt: Option<u32>,
    /// The task's lease deadline, while it runs.
    pub lease_expires: Option<i64>,
    /// The store's clock when this was read.
    pub now: i64,
}

/// Why a token does not let its holder in, as a callback tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Expired,
    Revoked,
    /// A later attempt of the same task holds the task now.
    Superseded,
    /// The attempt's lease lapsed: the worker that ran it lost it.
    LeaseLost,
}

impl TaskTokenState {
    /// `Ok` while the token is live: not revoked, not expired, its attempt still running
    /// under a live lease.
    pub fn check(&self) -> std::result::Result<(), TokenRefusal> {
        let superseded = self.task_attempt.is_some_and(|a| a != self.attempt);
        if superseded {
            return Err(TokenRefusal::Superseded);
        }
        if self.revoked_at.is_some() || self.task_status != Some(TaskStatus::Running) {
            return Err(TokenRefusal::Revoked);
        }
        if self.expires_at <= self.now {
            return Err(TokenRefusal::Expired);
        }
        if self.lease_expires.is_some_and(|l| l <= self.now) {
            return Err(TokenRefusal::LeaseLost);
        }
        Ok(())
    }

    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The audit name of a token with this hash.
pub fn token_id(hash: &str) -> String {
    format!("tt_{}", hash.get(..16).unwrap_or(hash))
}

/// Reads and renewals of task tokens, for the task callback API.
#[async_trait]
pub trait TaskTokenStore: Send + Sync {
    /// The token with this hash and its task's state, if it was ever minted.
    async fn task_token(&self, hash: &str) -> Result<Option<TaskTokenState>>;
    /// Extends a live token to `min(now + ttl_ms, issued_at + max_ms)`; the new expiry, or
    /// `None` when the token is not live (revoked, expired, its attempt over).
    async fn renew_task_token(&self, hash: &str, ttl_ms: i64, max_ms: i64) -> Result<Option<i64>>;
}

fn scopes_text(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())
}

fn state_from_row<R: Row>(r: &R) -> Result<TaskTokenState>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let hash: String = r.try_get("hash")?;
    let scopes: String = r.try_get("scopes")?;
    let scopes: Vec<String> = serde_json::from_str(&scopes)
        .map_err(|e| Error::Corrupt(format!("task token scopes: {e}")))?;
    let u32_of = |v: i64| u32::try_from(v).map_err(|_| Error::Corrupt(format!("number {v}")));
    let item: Option<i64> = r.try_get("item")?;
    let task_status: Option<String> = r.try_get("task_status")?;
    let task_attempt: Option<i64> = r.try_get("task_attempt")?;
    Ok(TaskTokenState {
        id: token_id(&hash),
        tenant: r.try_get("tenant")?,
        run_id: r.try_get("run_id")?,
        step_id: r.try_get("step_id")?,
        task_id: r.try_get("task_id")?,
        item: item.map(u32_of).transpose()?,
        attempt: u32_of(r.try_get("attempt")?)?,
        scopes,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        task_status: task_status.as_deref().and_then(TaskStatus::parse),
        task_attempt: task_attempt.map(u32_of).transpose()?,
        lease_expires: r.try_get("lease_expires")?,
        now: r.try_get("now")?,
    })
}

/// One multi-row INSERT per 1,000 tokens; the same statement on both backends.
macro_rules! insert_tokens {
    ($db:ty, $conn:expr, $now:expr, $tokens:expr) => {{
        for chunk in $tokens.chunks(1_000) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO task_tokens (hash, tenant, run_id, step_id, task_id, item, attempt, \
                 scopes, issued_at, expires_at) ",
            );
            q.push_values(chunk, |mut row, t| {
                row.push_bind(t.hash.clone())
                    .push_bind(t.tenant.clone())
                    .push_bind(t.run_id.clone())
                    .push_bind(t.step_id.clone())
                    .push_bind(t.task_id)
                    .push_bind(t.item.map(i64::from))
                    .push_bind(i64::from(t.attempt))
                    .push_bind(scopes_text(&t.scopes))
                    .push_bind($now)
                    .push_bind($now + t.ttl_ms);
            });
            q.build().execute(&mut *$conn).await?;
        }
        Ok(())
    }};
}

/// `Tx::insert_task_tokens` for SQLite.
pub(crate) async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    now: i64,
    tokens: &[NewTaskToken],
) -> Result<()> {
    insert_tokens!(sqlx::Sqlite, conn, now, tokens)
}

/// `Tx::insert_task_tokens` for PostgreSQL: issued at the transaction's database clock.
pub(crate) async fn insert_pg(
    conn: &mut sqlx::PgConnection,
    now: i64,
    tokens: &[NewTaskToken],
) -> Result<()> {
    insert_tokens!(sqlx::Postgres, conn, now, tokens)
}

const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

#[async_trait]
impl TaskTokenStore for SqliteStore {
    async fn task_token(&self, hash: &str) -> Result<Option<TaskTokenState>> {
        let sql = format!(
            "SELECT k.*, t.status AS task_status, t.attempt AS task_attempt, t.lease_expires, \
             {SQLITE_NOW} AS now FROM task_tokens k LEFT JOIN tasks t ON t.id = k.task_id \
             WHERE k.hash = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(state_from_row).transpose()
    }

    async fn renew_task_token(&self, hash: &str, ttl_ms: i64, max_ms: i64) -> Result<Option<i64>> {
        let sql = format!(
            "UPDATE task_tokens SET expires_at = MIN({SQLITE_NOW} + ?, issued_at + ?) \
             WHERE hash = ? AND revoked_at IS NULL AND expires_at > {SQLITE_NOW} \
             RETURNING expires_at"
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(ttl_ms)
            .bind(max_ms)
            .bind(hash)
            .fetch_optional(&self.writer)
            .await?)
    }
}

#[async_trait]
impl TaskTokenStore for PgStore {
    async fn task_token(&self, hash: &str) -> Result<Option<TaskTokenState>> {
        let row = sqlx::query(
            "SELECT k.*, t.status AS task_status, t.attempt AS task_attempt, t.lease_expires, \
             weft_now_ms() AS now FROM task_tokens k LEFT JOIN tasks t ON t.id = k.task_id \
             WHERE k.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(state_from_row).transpose()
    }

    async fn renew_task_token(&self, hash: &str, ttl_ms: i64, max_ms: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE task_tokens SET expires_at = LEAST(weft_now_ms() + $1, issued_at + $2) \
             WHERE hash = $3 AND revoked_at IS NULL AND expires_at > weft_now_ms() \
             RETURNING expires_at",
        )
        .bind(ttl_ms)
        .bind(max_ms)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }
}
