//! Task tokens as the store keeps them: the SHA-256 of each token with what it may do and for
//! which attempt, never the token itself.
//!
//! A token is minted in the transaction that claims its attempt
//! ([`crate::TokenTable::insert_task_tokens`]) and revoked by a trigger in the transaction that takes the attempt out of `running`
//! (`migrations/*/0007_task_tokens.sql`), so "no valid token for an attempt that is not
//! running" holds whatever code path ends the attempt. Expiry and revocation times come from
//! the database clock.

use async_trait::async_trait;

use crate::db::{Arg, Conn, Row, SqlStore, args, values_sql};
use crate::error::{Error, Result};
use crate::records::TaskStatus;

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

fn state_from_row(r: &Row) -> Result<TaskTokenState> {
    let hash: String = r.get("hash")?;
    let scopes: String = r.get("scopes")?;
    let scopes: Vec<String> = serde_json::from_str(&scopes)
        .map_err(|e| Error::Corrupt(format!("task token scopes: {e}")))?;
    let task_status: Option<String> = r.get("task_status")?;
    Ok(TaskTokenState {
        id: token_id(&hash),
        tenant: r.get("tenant")?,
        run_id: r.get("run_id")?,
        step_id: r.get("step_id")?,
        task_id: r.get("task_id")?,
        item: r.opt_u32("item")?,
        attempt: r.u32("attempt")?,
        scopes,
        issued_at: r.get("issued_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
        task_status: task_status.as_deref().and_then(TaskStatus::parse),
        task_attempt: r.opt_u32("task_attempt")?,
        lease_expires: r.get("lease_expires")?,
        now: r.get("now")?,
    })
}

/// `TokenTable::insert_task_tokens`: one multi-row INSERT per 1,000 tokens, issued at the
/// transaction's clock.
pub(crate) async fn insert(conn: &mut Conn, now: i64, tokens: &[NewTaskToken]) -> Result<()> {
    for chunk in tokens.chunks(1_000) {
        let mut values = Vec::with_capacity(chunk.len() * 10);
        for t in chunk {
            values.extend([
                Arg::from(&t.hash),
                Arg::from(&t.tenant),
                Arg::from(&t.run_id),
                Arg::from(&t.step_id),
                Arg::from(t.task_id),
                Arg::from(t.item),
                Arg::from(t.attempt),
                Arg::from(scopes_text(&t.scopes)),
                Arg::from(now),
                Arg::from(now + t.ttl_ms),
            ]);
        }
        let sql = values_sql(
            "INSERT INTO task_tokens (hash, tenant, run_id, step_id, task_id, item, attempt, \
             scopes, issued_at, expires_at)",
            10,
            chunk.len(),
        );
        conn.target().execute(sql, &values).await?;
    }
    Ok(())
}

#[async_trait]
impl TaskTokenStore for SqlStore {
    async fn task_token(&self, hash: &str) -> Result<Option<TaskTokenState>> {
        self.read()
            .optional(
                "SELECT k.*, t.status AS task_status, t.attempt AS task_attempt, \
                 t.lease_expires, {now} AS now FROM task_tokens k \
                 LEFT JOIN tasks t ON t.id = k.task_id WHERE k.hash = $1",
                args![hash],
                state_from_row,
            )
            .await
    }

    async fn renew_task_token(&self, hash: &str, ttl_ms: i64, max_ms: i64) -> Result<Option<i64>> {
        self.write()
            .optional(
                "UPDATE task_tokens SET expires_at = {pg:LEAST}{sqlite:MIN}({now} + $1, \
                 issued_at + $2) WHERE hash = $3 AND revoked_at IS NULL \
                 AND expires_at > {now} RETURNING expires_at",
                args![ttl_ms, max_ms, hash],
                |r| r.get("expires_at"),
            )
            .await
    }
}
