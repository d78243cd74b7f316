//! Tenant secrets and the audit trail, as the store keeps them.
//!
//! The store holds only ciphertext: sealing and opening a value happen in
//! `weft_engine::secrets`, so a database dump, a backup or a log of this layer never carries a
//! secret. The audit log is append-only: these traits have no way to change or remove a
//! record, and the migrations (`0004_secrets_audit.sql`) refuse one at the database too.

use async_trait::async_trait;
use serde::Serialize;

use crate::db::{Row, SqlStore, args};
use crate::error::Result;

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

fn audit_from_row(r: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get("seq")?,
        tenant: r.get("tenant")?,
        at: r.get("at")?,
        actor: r.get("actor")?,
        action: r.get("action")?,
        object_type: r.get("object_type")?,
        object_id: r.get("object_id")?,
        outcome: r.get("outcome")?,
    })
}

fn info_from_row(r: &Row) -> Result<SecretInfo> {
    Ok(SecretInfo {
        name: r.get("name")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn put_secret(&self, tenant: &str, name: &str, ciphertext: &[u8]) -> Result<bool> {
        // Insert, or else replace: of two racing writers of a new name exactly one inserts.
        let mut tx = self.begin_plain().await?;
        let inserted = tx
            .target()
            .execute(
                "INSERT INTO secrets (tenant, name, ciphertext, created_at, updated_at) \
                 VALUES ($1, $2, $3, {now}, {now}) ON CONFLICT (tenant, name) DO NOTHING",
                args![tenant, name, ciphertext],
            )
            .await?
            == 1;
        if !inserted {
            tx.target()
                .execute(
                    "UPDATE secrets SET ciphertext = $3, updated_at = {now} \
                     WHERE tenant = $1 AND name = $2",
                    args![tenant, name, ciphertext],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn secret_ciphertext(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>> {
        self.read()
            .optional(
                "SELECT ciphertext FROM secrets WHERE tenant = $1 AND name = $2",
                args![tenant, name],
                |r| r.get("ciphertext"),
            )
            .await
    }

    async fn secrets(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        self.read()
            .all(
                "SELECT name, created_at, updated_at FROM secrets WHERE tenant = $1 \
                 ORDER BY name COLLATE {binary}",
                args![tenant],
                info_from_row,
            )
            .await
    }

    async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "DELETE FROM secrets WHERE tenant = $1 AND name = $2",
                args![tenant, name],
            )
            .await?;
        Ok(done == 1)
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, r: &AuditRecord) -> Result<()> {
        self.write()
            .execute(
                "INSERT INTO audit_log (tenant, at, actor, action, object_type, object_id, \
                 outcome) VALUES ($1, COALESCE($2, {now}), $3, $4, $5, $6, $7)",
                args![
                    &r.tenant,
                    (r.at != 0).then_some(r.at),
                    &r.actor,
                    &r.action,
                    &r.object_type,
                    &r.object_id,
                    &r.outcome
                ],
            )
            .await?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.read()
            .all(
                "SELECT * FROM audit_log WHERE tenant = $1 \
                 AND ($2 IS NULL OR (object_type = 'run' AND object_id = $2)) \
                 AND ($3 IS NULL OR at >= $3) ORDER BY seq LIMIT $4",
                args![&q.tenant, &q.run, q.since, limit_of(q)],
                audit_from_row,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::args;
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
        let store = SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
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
            store
                .write()
                .execute("UPDATE audit_log SET outcome = 'x'", args![])
                .await
                .is_err()
        );
        assert!(
            store
                .write()
                .execute("DELETE FROM audit_log", args![])
                .await
                .is_err()
        );
    }
}
