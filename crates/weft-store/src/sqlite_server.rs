//! The SQLite side of the server's tables (`migrations/sqlite/0002_server.sql`).

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::server::*;
use crate::sqlite::{SqliteStore, event_from_row, now_ms};
use crate::{Event, Result};

fn key_from_row(r: &SqliteRow) -> Result<ApiKey> {
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

fn template_from_row(r: &SqliteRow) -> Result<TemplateRecord> {
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

#[async_trait]
impl AuthStore for SqliteStore {
    async fn create_tenant(&self, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO tenants (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(
            "SELECT name, created_at, max_concurrent_tasks, allowed_tools FROM tenants ORDER BY created_at, name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let cap: Option<i64> = r.try_get("max_concurrent_tasks")?;
                Ok(Tenant {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    max_concurrent_tasks: cap.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX)),
                    allowed_tools: tools_of(&r.try_get::<String, _>("allowed_tools")?)?,
                })
            })
            .collect()
    }

    async fn set_tenant_max_concurrent_tasks(&self, name: &str, max: Option<u32>) -> Result<bool> {
        let done = sqlx::query("UPDATE tenants SET max_concurrent_tasks = ? WHERE name = ?")
            .bind(max.map(i64::from))
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_tenant_allowed_tools(&self, name: &str, tools: &[String]) -> Result<bool> {
        let done = sqlx::query("UPDATE tenants SET allowed_tools = ? WHERE name = ?")
            .bind(tools_text(tools))
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, label, hash, prefix, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.tenant)
        .bind(&key.label)
        .bind(&key.hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys WHERE tenant = ? ORDER BY created_at, id")
            .bind(tenant)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND id = ? AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(tenant)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| key_from_row(&r)).transpose()
    }

    async fn insert_ticket(&self, t: &StreamTicket) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        // Expired tickets are of no use to anyone; sweep them as new ones come in.
        sqlx::query("DELETE FROM stream_tickets WHERE expires_at < ?")
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO stream_tickets (hash, tenant, run_id, expires_at) VALUES (?, ?, ?, ?)",
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
            "UPDATE stream_tickets SET used_at = ? WHERE hash = ? AND used_at IS NULL \
             AND expires_at >= ? RETURNING hash, tenant, run_id, expires_at",
        )
        .bind(now)
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.writer)
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
impl ToolGrants for SqliteStore {
    async fn allowed_tools(&self, tenant: &str) -> Result<Vec<String>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT allowed_tools FROM tenants WHERE name = ?")
                .bind(tenant)
                .fetch_optional(&self.reader)
                .await?;
        text.map_or(Ok(Vec::new()), |t| tools_of(&t))
    }
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn put_template(&self, t: &TemplateRecord) -> Result<PutTemplate> {
        let mut tx = self.writer.begin().await?;
        let existing =
            sqlx::query("SELECT * FROM templates WHERE tenant = ? AND name = ? AND version = ?")
                .bind(&t.tenant)
                .bind(&t.name)
                .bind(&t.version)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = existing {
            let existing = template_from_row(&row)?;
            return Ok(if existing.digest == t.digest {
                PutTemplate::Unchanged(existing)
            } else {
                PutTemplate::Conflict(existing)
            });
        }
        sqlx::query(
            "INSERT INTO templates (tenant, name, version, digest, source, description, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.tenant)
        .bind(&t.name)
        .bind(&t.version)
        .bind(&t.digest)
        .bind(&t.source)
        .bind(&t.description)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PutTemplate::Created(t.clone()))
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateRecord>> {
        let rows =
            sqlx::query("SELECT * FROM templates WHERE tenant = ? ORDER BY name, created_at")
                .bind(tenant)
                .fetch_all(&self.reader)
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
            "SELECT * FROM templates WHERE tenant = ? AND name = ? AND (? IS NULL OR version = ?) \
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .bind(version)
        .bind(version)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| template_from_row(&r)).transpose()
    }
}

#[async_trait]
impl EventFeed for SqliteStore {
    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_event_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&self.reader)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn task_counts(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 'queued'), 0) AS queued, \
             COALESCE(SUM(status = 'running'), 0) AS running FROM tasks \
             WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok((row.try_get("queued")?, row.try_get("running")?))
    }

    async fn run_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT template, status, COUNT(*) AS n FROM runs GROUP BY template, status \
             ORDER BY template, status",
        )
        .fetch_all(&self.reader)
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
