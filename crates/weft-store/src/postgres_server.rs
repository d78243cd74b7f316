//! The PostgreSQL side of the server's tables (`migrations/postgres/0002_server.sql`) and of
//! the tail of the event log that live streams follow.
//!
//! Times come from the database clock (`weft_now_ms()`), as everywhere on this backend.
//!
//! The event tail needs care that SQLite does not: `seq` is handed out when a transaction
//! inserts its events, not when it commits, so two committers can make `seq` 10 visible before
//! `seq` 9. A reader paging with `seq > last` would then skip 9 for ever. Every transaction
//! that writes events therefore holds [`LOCK_EVENT_FEED`] in shared mode from its insert to
//! its commit (`postgres_tx.rs`), and [`EventFeed::events_since`] takes it exclusively for
//! the length of one read: the read waits for every insert in flight to commit (or roll
//! back), so no `seq` below what it returns can appear later.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::postgres::{PgStore, event_from_row};
use crate::server::*;
use crate::{Event, Result};

/// The advisory lock (two-key form, second key 0) between event writers (shared) and the
/// event tail (exclusive).
pub(crate) const LOCK_EVENT_FEED: i32 = 0x7765_0004;

fn key_from_row(r: &PgRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        label: r.try_get("label")?,
        hash: r.try_get("hash")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn template_from_row(r: &PgRow) -> Result<TemplateRecord> {
    Ok(TemplateRecord {
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        digest: r.try_get("digest")?,
        source: r.try_get("source")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn cap_of(v: Option<i64>) -> Option<u32> {
    v.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

#[async_trait]
impl AuthStore for PgStore {
    async fn create_tenant(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO tenants (name, created_at) VALUES ($1, weft_now_ms()) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(
            "SELECT name, created_at, max_concurrent_tasks, allowed_tools FROM tenants \
             ORDER BY created_at, name COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Tenant {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    max_concurrent_tasks: cap_of(r.try_get("max_concurrent_tasks")?),
                    allowed_tools: tools_of(&r.try_get::<String, _>("allowed_tools")?)?,
                })
            })
            .collect()
    }

    async fn set_tenant_max_concurrent_tasks(&self, name: &str, max: Option<u32>) -> Result<bool> {
        let done = sqlx::query("UPDATE tenants SET max_concurrent_tasks = $1 WHERE name = $2")
            .bind(max.map(i64::from))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_tenant_allowed_tools(&self, name: &str, tools: &[String]) -> Result<bool> {
        let done = sqlx::query("UPDATE tenants SET allowed_tools = $1 WHERE name = $2")
            .bind(tools_text(tools))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, label, hash, prefix, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.tenant)
        .bind(&key.label)
        .bind(&key.hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys WHERE tenant = $1 ORDER BY created_at, id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = weft_now_ms() \
             WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| key_from_row(&r)).transpose()
    }

    async fn insert_ticket(&self, t: &StreamTicket) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Expired tickets are of no use to anyone; sweep them as new ones come in.
        sqlx::query("DELETE FROM stream_tickets WHERE expires_at < weft_now_ms()")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO stream_tickets (hash, tenant, run_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&t.hash)
        .bind(&t.tenant)
        .bind(&t.run_id)
        .bind(t.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_ticket(&self, hash: &str, now: i64) -> Result<Option<StreamTicket>> {
        let row = sqlx::query(
            "UPDATE stream_tickets SET used_at = $1 WHERE hash = $2 AND used_at IS NULL \
             AND expires_at >= $1 RETURNING hash, tenant, run_id, expires_at",
        )
        .bind(now)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StreamTicket {
                hash: r.try_get("hash")?,
                tenant: r.try_get("tenant")?,
                run_id: r.try_get("run_id")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl ToolGrants for PgStore {
    async fn allowed_tools(&self, tenant: &str) -> Result<Vec<String>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT allowed_tools FROM tenants WHERE name = $1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?;
        text.map_or(Ok(Vec::new()), |t| tools_of(&t))
    }
}

#[async_trait]
impl TemplateStore for PgStore {
    async fn put_template(&self, t: &TemplateRecord) -> Result<PutTemplate> {
        // One statement: a concurrent registration of the same version either inserts or
        // finds the row, never both.
        let inserted = sqlx::query(
            "INSERT INTO templates (tenant, name, version, digest, source, description, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant, name, version) DO NOTHING",
        )
        .bind(&t.tenant)
        .bind(&t.name)
        .bind(&t.version)
        .bind(&t.digest)
        .bind(&t.source)
        .bind(&t.description)
        .bind(t.created_at)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(PutTemplate::Created(t.clone()));
        }
        let row =
            sqlx::query("SELECT * FROM templates WHERE tenant = $1 AND name = $2 AND version = $3")
                .bind(&t.tenant)
                .bind(&t.name)
                .bind(&t.version)
                .fetch_one(&self.pool)
                .await?;
        let existing = template_from_row(&row)?;
        Ok(if existing.digest == t.digest {
            PutTemplate::Unchanged(existing)
        } else {
            PutTemplate::Conflict(existing)
        })
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM templates WHERE tenant = $1 ORDER BY name COLLATE \"C\", created_at, seq",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(template_from_row).collect()
    }

    async fn template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<TemplateRecord>> {
        let row = sqlx::query(
            "SELECT * FROM templates WHERE tenant = $1 AND name = $2 \
             AND ($3::text IS NULL OR version = $3) ORDER BY created_at DESC, seq DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| template_from_row(&r)).transpose()
    }
}

#[async_trait]
impl EventFeed for PgStore {
    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        let mut tx = self.pool.begin().await?;
        // Waits for the event inserts in flight to commit; the read below (a new statement,
        // so a new snapshot) sees them all. Released at the end of this transaction.
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
            .bind(LOCK_EVENT_FEED)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query("SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_event_seq(&self) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
            .bind(LOCK_EVENT_FEED)
            .execute(&mut *tx)
            .await?;
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq.unwrap_or(0))
    }

    async fn task_counts(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
             COUNT(*) FILTER (WHERE status = 'running') AS running FROM tasks \
             WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("queued")?, row.try_get("running")?))
    }

    async fn run_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT template, status, COUNT(*) AS n FROM runs GROUP BY template, status \
             ORDER BY template COLLATE \"C\", status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("template")?,
                    r.try_get("status")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }
}
