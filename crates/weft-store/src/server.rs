//! What `weft serve` keeps besides runs: tenants, API keys, registered templates, stream
//! tickets, and a tail of the whole event log for live streams and metrics.
//!
//! These are separate small traits so the engine never sees them (it knows nothing of
//! tenants' keys), and so every backend implements the same contract: SQLite in
//! `sqlite_server.rs`, PostgreSQL in `postgres_server.rs` (the same tables, `0002_server.sql`).
//! Secrets are never stored: keys and tickets arrive here already hashed (SHA-256, hex).

use async_trait::async_trait;
use serde::Serialize;

use crate::{Event, Result, Store};

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
    serde_json::from_str(text).map_err(|e| crate::Error::Corrupt(format!("allowed_tools: {e}")))
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
