//! The memory the `memory.*` tools keep: per tenant, namespaced key/value entries that outlive
//! runs. A small trait of its own, like the server's tables, so the engine never sees it and
//! every backend implements the same contract (SQLite in `sqlite_memory.rs`, PostgreSQL in
//! `postgres_memory.rs`; the same table, `0003_memory.sql`).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::Result;

/// One remembered value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryEntry {
    pub namespace: String,
    pub key: String,
    pub value: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Inserts or replaces an entry.
    async fn memory_put(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
        value: &Value,
    ) -> Result<()>;
    async fn memory_get(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<MemoryEntry>>;
    /// Entries whose key or JSON value contains every whitespace-separated word of `query`
    /// (ASCII case-insensitive), newest first, at most `limit`; in one namespace or all.
    async fn memory_search(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>>;
    /// Whether an entry was there.
    async fn memory_delete(&self, tenant: &str, namespace: &str, key: &str) -> Result<bool>;
    /// A tenant's entries, newest first (for the API).
    async fn memory_list(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>> {
        self.memory_search(tenant, namespace, "", limit).await
    }
}
