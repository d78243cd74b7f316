//! What `weft serve` keeps besides runs: tenants, API keys, registered templates, stream
//! tickets, and a tail of the whole event log for live streams and metrics.
//!
//! These are separate small traits so the engine never sees them (it knows nothing of
//! tenants' keys); [`SqlStore`] keeps them on both backends with the same statements (the same
//! tables, `0002_server.sql`). Times come from the database clock.
//! Secrets are never stored: keys and tickets arrive here already hashed (SHA-256, hex).

use async_trait::async_trait;
use serde::Serialize;

use crate::api::Store;
use crate::db::{Row, SqlStore, args};
use crate::error::Result;
use crate::postgres::LOCK_EVENT_FEED;
use crate::records::Event;
use crate::rows;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tenant {
    pub name: String,
    pub created_at: i64,
    /// Most of the tenant's tasks running at once across every worker; `None`: no cap.
    pub max_concurrent_tasks: Option<u32>,
    /// The process-starting tools (names or `prefix.*` patterns) the operator grants to the
    /// tenant's own registered templates; empty by default.
    pub allowed_tools: Vec<String>,
}

/// Reads a stored `allowed_tools` column (a JSON array of names).
pub(crate) fn tools_of(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| crate::error::Error::Corrupt(format!("allowed_tools: {e}")))
}

/// Writes an `allowed_tools` column.
pub(crate) fn tools_text(tools: &[String]) -> String {
    serde_json::Value::from(tools.to_vec()).to_string()
}

/// An API key as stored: its hash, never the key.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub tenant: String,
    pub label: String,
    #[serde(skip)]
    pub hash: String,
    /// The first characters of the key, to tell keys apart in a list.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// One version of a template registered through the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TemplateRecord {
    pub tenant: String,
    pub name: String,
    pub version: String,
    pub digest: String,
    pub source: String,
    pub description: Option<String>,
    pub created_at: i64,
}

/// What registering a template version did.
#[derive(Debug, Clone, PartialEq)]
pub enum PutTemplate {
    Created(TemplateRecord),
    /// The same body was already registered under this version.
    Unchanged(TemplateRecord),
    /// Another body is registered under this version; it stays.
    Conflict(TemplateRecord),
}

/// A read-only, single-use permission to stream one run's events.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTicket {
    pub hash: String,
    pub tenant: String,
    pub run_id: String,
    pub expires_at: i64,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Creates a tenant; `false` if one with this name exists.
    async fn create_tenant(&self, name: &str) -> Result<bool>;
    async fn tenants(&self) -> Result<Vec<Tenant>>;
    /// Sets (or with `None` lifts) a tenant's cap on running tasks, which every worker's claim
    /// honours; `false` if there is no such tenant.
    async fn set_tenant_max_concurrent_tasks(&self, name: &str, max: Option<u32>) -> Result<bool>;
    /// Replaces the process-starting tools granted to the tenant's registered templates;
    /// `false` if there is no such tenant.
    async fn set_tenant_allowed_tools(&self, name: &str, tools: &[String]) -> Result<bool>;
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()>;
    async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>>;
    /// Revokes a key of `tenant` by id; `false` if there is no such live key.
    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool>;
    /// The live key with this hash, if any.
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;
    async fn insert_ticket(&self, ticket: &StreamTicket) -> Result<()>;
    /// Uses up a ticket: returns it if it existed, was unused and unexpired at `now`.
    async fn take_ticket(&self, hash: &str, now: i64) -> Result<Option<StreamTicket>>;
}

/// What the engine reads of a tenant before a tool starts a process for the tenant's own
/// template: the tools the operator granted. A separate trait so the engine sees nothing else
/// of tenants (keys, templates).
#[async_trait]
pub trait ToolGrants: Send + Sync {
    /// The tools granted to `tenant` (names or `prefix.*` patterns); empty for an unknown
    /// tenant.
    async fn allowed_tools(&self, tenant: &str) -> Result<Vec<String>>;
}

#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Registers a version unless another body holds it already.
    async fn put_template(&self, record: &TemplateRecord) -> Result<PutTemplate>;
    /// Every registered version of `tenant`, by name then oldest first.
    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateRecord>>;
    /// One version, or the newest registered one when `version` is `None`.
    async fn template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<TemplateRecord>>;
}

#[async_trait]
pub trait EventFeed: Send + Sync {
    /// Events of every run with `seq > after`, oldest first: the tail that live streams follow.
    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>>;
    /// The highest event `seq` so far (0 when there is none).
    async fn last_event_seq(&self) -> Result<i64>;
    /// Tasks by queue state: (queued, running), for the queue-depth and in-flight gauges.
    async fn task_counts(&self) -> Result<(i64, i64)>;
    /// Runs of every tenant counted by (template, status), for the runs gauge.
    async fn run_counts(&self) -> Result<Vec<(String, String, i64)>>;
}

/// Everything the server needs from one backend.
pub trait ServerStore:
    Store
    + AuthStore
    + ToolGrants
    + TemplateStore
    + EventFeed
    + crate::secrets::SecretsAudit
    + crate::tokens::TaskTokenStore
    + crate::memory::MemoryStore
    + crate::schedules::ScheduleStore
{
}
impl<
    T: Store
        + AuthStore
        + ToolGrants
        + TemplateStore
        + EventFeed
        + crate::secrets::SecretsAudit
        + crate::tokens::TaskTokenStore
        + crate::memory::MemoryStore
        + crate::schedules::ScheduleStore,
> ServerStore for T
{
}

fn key_from_row(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: r.get("id")?,
        tenant: r.get("tenant")?,
        label: r.get("label")?,
        hash: r.get("hash")?,
        prefix: r.get("prefix")?,
        created_at: r.get("created_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}

fn template_from_row(r: &Row) -> Result<TemplateRecord> {
    Ok(TemplateRecord {
        tenant: r.get("tenant")?,
        name: r.get("name")?,
        version: r.get("version")?,
        digest: r.get("digest")?,
        source: r.get("source")?,
        description: r.get("description")?,
        created_at: r.get("created_at")?,
    })
}

fn tenant_from_row(r: &Row) -> Result<Tenant> {
    let cap: Option<i64> = r.get("max_concurrent_tasks")?;
    Ok(Tenant {
        name: r.get("name")?,
        created_at: r.get("created_at")?,
        max_concurrent_tasks: cap.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX)),
        allowed_tools: tools_of(&r.get::<String>("allowed_tools")?)?,
    })
}

#[async_trait]
impl AuthStore for SqlStore {
    async fn create_tenant(&self, name: &str) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "INSERT INTO tenants (name, created_at) VALUES ($1, {now}) \
                 ON CONFLICT (name) DO NOTHING",
                args![name],
            )
            .await?;
        Ok(done == 1)
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read()
            .all(
                "SELECT name, created_at, max_concurrent_tasks, allowed_tools FROM tenants \
                 ORDER BY created_at, name COLLATE {binary}",
                args![],
                tenant_from_row,
            )
            .await
    }

    async fn set_tenant_max_concurrent_tasks(&self, name: &str, max: Option<u32>) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "UPDATE tenants SET max_concurrent_tasks = $1 WHERE name = $2",
                args![max, name],
            )
            .await?;
        Ok(done == 1)
    }

    async fn set_tenant_allowed_tools(&self, name: &str, tools: &[String]) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "UPDATE tenants SET allowed_tools = $1 WHERE name = $2",
                args![tools_text(tools), name],
            )
            .await?;
        Ok(done == 1)
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        self.write()
            .execute(
                "INSERT INTO api_keys (id, tenant, label, hash, prefix, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                args![
                    &key.id,
                    &key.tenant,
                    &key.label,
                    &key.hash,
                    &key.prefix,
                    key.created_at,
                    key.revoked_at
                ],
            )
            .await?;
        Ok(())
    }

    async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>> {
        self.read()
            .all(
                "SELECT * FROM api_keys WHERE tenant = $1 ORDER BY created_at, id COLLATE {binary}",
                args![tenant],
                key_from_row,
            )
            .await
    }

    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "UPDATE api_keys SET revoked_at = {now} \
                 WHERE tenant = $1 AND id = $2 AND revoked_at IS NULL",
                args![tenant, id],
            )
            .await?;
        Ok(done == 1)
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.read()
            .optional(
                "SELECT * FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
                args![hash],
                key_from_row,
            )
            .await
    }

    async fn insert_ticket(&self, t: &StreamTicket) -> Result<()> {
        let mut tx = self.begin_plain().await?;
        // Expired tickets are of no use to anyone; sweep them as new ones come in.
        tx.target()
            .execute(
                "DELETE FROM stream_tickets WHERE expires_at < {now}",
                args![],
            )
            .await?;
        tx.target()
            .execute(
                "INSERT INTO stream_tickets (hash, tenant, run_id, expires_at) \
                 VALUES ($1, $2, $3, $4)",
                args![&t.hash, &t.tenant, &t.run_id, t.expires_at],
            )
            .await?;
        tx.commit().await
    }

    async fn take_ticket(&self, hash: &str, now: i64) -> Result<Option<StreamTicket>> {
        self.write()
            .optional(
                "UPDATE stream_tickets SET used_at = $1 WHERE hash = $2 AND used_at IS NULL \
                 AND expires_at >= $1 RETURNING hash, tenant, run_id, expires_at",
                args![now, hash],
                |r| {
                    Ok(StreamTicket {
                        hash: r.get("hash")?,
                        tenant: r.get("tenant")?,
                        run_id: r.get("run_id")?,
                        expires_at: r.get("expires_at")?,
                    })
                },
            )
            .await
    }
}

#[async_trait]
impl ToolGrants for SqlStore {
    async fn allowed_tools(&self, tenant: &str) -> Result<Vec<String>> {
        let text: Option<String> = self
            .read()
            .optional(
                "SELECT allowed_tools FROM tenants WHERE name = $1",
                args![tenant],
                |r| r.get("allowed_tools"),
            )
            .await?;
        text.map_or(Ok(Vec::new()), |t| tools_of(&t))
    }
}

#[async_trait]
impl TemplateStore for SqlStore {
    async fn put_template(&self, t: &TemplateRecord) -> Result<PutTemplate> {
        // A concurrent registration of the same version either inserts or finds the row,
        // never both.
        let inserted = self
            .write()
            .execute(
                "INSERT INTO templates (tenant, name, version, digest, source, description, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant, name, version) DO NOTHING",
                args![
                    &t.tenant,
                    &t.name,
                    &t.version,
                    &t.digest,
                    &t.source,
                    &t.description,
                    t.created_at
                ],
            )
            .await?;
        if inserted == 1 {
            return Ok(PutTemplate::Created(t.clone()));
        }
        // Read on the writer: SQLite's readers may not see a row committed a moment ago.
        let row = self
            .write()
            .fetch_one(
                "SELECT * FROM templates WHERE tenant = $1 AND name = $2 AND version = $3",
                args![&t.tenant, &t.name, &t.version],
            )
            .await?;
        let existing = template_from_row(&row)?;
        Ok(if existing.digest == t.digest {
            PutTemplate::Unchanged(existing)
        } else {
            PutTemplate::Conflict(existing)
        })
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateRecord>> {
        self.read()
            .all(
                "SELECT * FROM templates WHERE tenant = $1 \
                 ORDER BY name COLLATE {binary}, created_at, {seq}",
                args![tenant],
                template_from_row,
            )
            .await
    }

    async fn template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<TemplateRecord>> {
        self.read()
            .optional(
                "SELECT * FROM templates WHERE tenant = $1 AND name = $2 \
                 AND ($3 IS NULL OR version = $3) ORDER BY created_at DESC, {seq} DESC LIMIT 1",
                args![tenant, name, version],
                template_from_row,
            )
            .await
    }
}

impl SqlStore {
    /// A read of the event log's tail. PostgreSQL: first waits for the event inserts in flight
    /// to commit, so the read (a new statement, so a new snapshot) sees them all and no `seq`
    /// below what it returns can appear later (see `postgres.rs`). SQLite's single writer
    /// commits events in `seq` order already.
    async fn read_feed(&self, sql: &'static str, args: &[crate::db::Arg<'_>]) -> Result<Vec<Row>> {
        if !self.is_postgres() {
            return self.read().fetch_all(sql, args).await;
        }
        let mut tx = self.begin_plain().await?;
        tx.target()
            .execute(
                "SELECT pg_advisory_xact_lock(CAST($1 AS INTEGER), 0)",
                args![i64::from(LOCK_EVENT_FEED)],
            )
            .await?;
        let rows = tx.target().fetch_all(sql, args).await?;
        tx.commit().await?;
        Ok(rows)
    }
}

#[async_trait]
impl EventFeed for SqlStore {
    async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.read_feed(
            "SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            args![after, limit],
        )
        .await?
        .iter()
        .map(rows::event)
        .collect()
    }

    async fn last_event_seq(&self) -> Result<i64> {
        let rows = self
            .read_feed("SELECT MAX(seq) AS seq FROM events", args![])
            .await?;
        let seq: Option<i64> = match rows.first() {
            Some(r) => r.get("seq")?,
            None => None,
        };
        Ok(seq.unwrap_or(0))
    }

    async fn task_counts(&self) -> Result<(i64, i64)> {
        let row = self
            .read()
            .fetch_one(
                "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued, \
                 COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS running \
                 FROM tasks WHERE status IN ('queued', 'running')",
                args![],
            )
            .await?;
        Ok((row.get("queued")?, row.get("running")?))
    }

    async fn run_counts(&self) -> Result<Vec<(String, String, i64)>> {
        self.read()
            .all(
                "SELECT template, status, COUNT(*) AS n FROM runs GROUP BY template, status \
                 ORDER BY template COLLATE {binary}, status",
                args![],
                |r| Ok((r.get("template")?, r.get("status")?, r.get("n")?)),
            )
            .await
    }
}
