//! Tenant secrets and the audit trail, as the store keeps them.
//!
//! The store holds only ciphertext: sealing and opening a value happen in
//! `weft_engine::secrets`, so a database dump, a backup or a log of this layer never carries a
//! secret. The audit log is append-only: these traits have no way to change or remove a
//! record, and the migrations (`0004_secrets_audit.sql`) refuse one at the database too.
//! Both SQLite and PostgreSQL implement the same contract here.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::Row;

use crate::Result;
use crate::postgres::PgStore;
use crate::sqlite::{SqliteStore, now_ms};

/// A secret as listed: its name and times, never its value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One audit record: who did what to which object, when, and how it ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Assigned by the store; 0 in a record not yet appended.
    pub seq: i64,
    pub tenant: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// An API key id, `cli` or `system`.
    pub actor: String,
    /// `run.created`, `secret.set`, ...
    pub action: String,
    /// `run`, `template`, `key`, `secret`.
    pub object_type: String,
    pub object_id: String,
    /// `ok`, or what went wrong in a few words.
    pub outcome: String,
}

/// Which audit records to read: always one tenant's.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant: String,
    /// Only records about this run.
    pub run: Option<String>,
    /// Only records at or after this time (ms).
    pub since: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores (or replaces) a sealed value; `true` if the secret is new.
    async fn put_secret(&self, tenant: &str, name: &str, ciphertext: &[u8]) -> Result<bool>;
    /// The sealed value, for the one caller allowed to open it.
    async fn secret_ciphertext(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>>;
    /// A tenant's secrets by name, without values.
    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>>;
    /// `false` if the tenant has no such secret.
    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends a record (its `seq` and, when 0, its `at` are the store's).
    async fn append_audit(&self, record: &AuditRecord) -> Result<()>;
    /// Records matching `query`, oldest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

/// Both, for callers that record what they do to secrets.
pub trait SecretsAudit: SecretStore + AuditStore {}
impl<T: SecretStore + AuditStore> SecretsAudit for T {}

fn limit_of(query: &AuditQuery) -> i64 {
    if query.limit == 0 {
        1000
    } else {
        query.limit as i64
    }
}

fn audit_from_row<R: Row>(r: &R) -> Result<AuditRecord>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AuditRecord {
        seq: r.try_get("seq")?,
        tenant: r.try_get("tenant")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        object_type: r.try_get("object_type")?,
        object_id: r.try_get("object_id")?,
        outcome: r.try_get("outcome")?,
    })
}

fn info_from_row<R: Row>(r: &R) -> Result<SecretInfo>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SecretInfo {
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret(&self, tenant: &str, name: &str, ciphertext: &[u8]) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM secrets WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO secrets (tenant, name, ciphertext, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, name) DO UPDATE SET \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(name)
        .bind(ciphertext)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    async fn secret_ciphertext(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT ciphertext FROM secrets WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT name, created_at, updated_at FROM secrets WHERE tenant = ? ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(info_from_row).collect()
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE tenant = ? AND name = ?")
            .bind(tenant)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, r: &AuditRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, outcome) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.tenant)
        .bind(if r.at == 0 { now_ms() } else { r.at })
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.object_type)
        .bind(&r.object_id)
        .bind(&r.outcome)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE tenant = ? \
             AND (? IS NULL OR (object_type = 'run' AND object_id = ?)) \
             AND (? IS NULL OR at >= ?) ORDER BY seq LIMIT ?",
        )
        .bind(&q.tenant)
        .bind(&q.run)
        .bind(&q.run)
        .bind(q.since)
        .bind(q.since)
        .bind(limit_of(q))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[async_trait]
impl SecretStore for PgStore {
    async fn put_secret(&self, tenant: &str, name: &str, ciphertext: &[u8]) -> Result<bool> {
        // `xmax = 0` tells an inserted row from an updated one.
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO secrets (tenant, name, ciphertext, created_at, updated_at) \
             VALUES ($1, $2, $3, weft_now_ms(), weft_now_ms()) ON CONFLICT (tenant, name) \
             DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = EXCLUDED.updated_at \
             RETURNING (xmax = 0)",
        )
        .bind(tenant)
        .bind(name)
        .bind(ciphertext)
        .fetch_one(&self.pool)
        .await?;
        Ok(inserted)
    }

    async fn secret_ciphertext(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT ciphertext FROM secrets WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        let rows = sqlx::query(
            "SELECT name, created_at, updated_at FROM secrets WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(info_from_row).collect()
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, r: &AuditRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, outcome) \
             VALUES ($1, COALESCE($2, weft_now_ms()), $3, $4, $5, $6, $7)",
        )
        .bind(&r.tenant)
        .bind((r.at != 0).then_some(r.at))
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.object_type)
        .bind(&r.object_id)
        .bind(&r.outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE tenant = $1 \
             AND ($2::TEXT IS NULL OR (object_type = 'run' AND object_id = $2)) \
             AND ($3::BIGINT IS NULL OR at >= $3) ORDER BY seq LIMIT $4",
        )
        .bind(&q.tenant)
        .bind(&q.run)
        .bind(q.since)
        .bind(limit_of(q))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::Durability;

    fn record(tenant: &str, action: &str, run: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            tenant: tenant.into(),
            at: 0,
            actor: "cli".into(),
            action: action.into(),
            object_type: "run".into(),
            object_id: run.into(),
            outcome: "ok".into(),
        }
    }

    #[tokio::test]
    async fn secrets_and_audit_are_per_tenant_and_audit_is_append_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("weft.db"), Durability::Relaxed)
            .await
            .expect("store");
        assert!(
            store
                .put_secret("a", "TOKEN", b"sealed-1")
                .await
                .expect("put")
        );
        assert!(
            !store
                .put_secret("a", "TOKEN", b"sealed-2")
                .await
                .expect("put")
        );
        assert_eq!(
            store.secret_ciphertext("a", "TOKEN").await.expect("get"),
            Some(b"sealed-2".to_vec())
        );
        assert_eq!(
            store.secret_ciphertext("b", "TOKEN").await.expect("get"),
            None
        );
        assert!(store.secrets("b").await.expect("list").is_empty());
        assert!(!store.delete_secret("b", "TOKEN").await.expect("delete"));
        assert_eq!(store.secrets("a").await.expect("list")[0].name, "TOKEN");
        assert!(store.delete_secret("a", "TOKEN").await.expect("delete"));
        assert!(store.secrets("a").await.expect("list").is_empty());

        store
            .append_audit(&record("a", "run.created", "r1"))
            .await
            .expect("append");
        store
            .append_audit(&record("a", "run.cancelled", "r2"))
            .await
            .expect("append");
        store
            .append_audit(&record("b", "run.created", "r3"))
            .await
            .expect("append");
        let all = store
            .audit(&AuditQuery {
                tenant: "a".into(),
                ..Default::default()
            })
            .await
            .expect("audit");
        assert_eq!(all.len(), 2);
        assert!(all[0].at > 0 && all[0].seq < all[1].seq);
        let one = store
            .audit(&AuditQuery {
                tenant: "a".into(),
                run: Some("r2".into()),
                ..Default::default()
            })
            .await
            .expect("audit");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].action, "run.cancelled");
        let later = store
            .audit(&AuditQuery {
                tenant: "a".into(),
                since: Some(i64::MAX),
                ..Default::default()
            })
            .await
            .expect("audit");
        assert!(later.is_empty());
        // The database itself refuses to rewrite history.
        assert!(
            sqlx::query("UPDATE audit_log SET outcome = 'x'")
                .execute(&store.writer)
                .await
                .is_err()
        );
        assert!(
            sqlx::query("DELETE FROM audit_log")
                .execute(&store.writer)
                .await
                .is_err()
        );
    }
}
