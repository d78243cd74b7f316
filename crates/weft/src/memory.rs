//! The adapter between the `memory.*` tools and the weft store: tools know only
//! `weft_tools::memory::MemoryBackend`, the store only `weft_store::memory::MemoryStore`, and
//! the binary, which knows both, joins them here.
//!
//! The registry is built before the store opens, so the adapter starts empty and is attached
//! to the store when a command opens it (`App::store`, or `attach` by `weft serve`).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use weft_store::memory::MemoryStore;
use weft_tools::memory::{MemoryBackend, MemoryEntry};

#[derive(Clone, Default)]
pub struct StoreMemory(Arc<OnceLock<Arc<dyn MemoryStore>>>);

impl StoreMemory {
    /// Points the memory tools at `store`; the first store attached wins.
    pub fn attach(&self, store: Arc<dyn MemoryStore>) {
        let _ = self.0.set(store);
    }

    fn store(&self) -> Result<&Arc<dyn MemoryStore>, String> {
        self.0
            .get()
            .ok_or_else(|| "the store is not open in this process".to_string())
    }
}

fn entry(e: weft_store::memory::MemoryEntry) -> MemoryEntry {
    MemoryEntry {
        namespace: e.namespace,
        key: e.key,
        value: e.value,
        updated_at: e.updated_at,
    }
}

#[async_trait]
impl MemoryBackend for StoreMemory {
    async fn put(&self, tenant: &str, ns: &str, key: &str, value: &Value) -> Result<(), String> {
        self.store()?
            .memory_put(tenant, ns, key, value)
            .await
            .map_err(|e| e.to_string())
    }

    async fn get(&self, tenant: &str, ns: &str, key: &str) -> Result<Option<MemoryEntry>, String> {
        let found = self.store()?.memory_get(tenant, ns, key).await;
        found.map(|e| e.map(entry)).map_err(|e| e.to_string())
    }

    async fn search(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>, String> {
        let found = self
            .store()?
            .memory_search(tenant, namespace, query, limit)
            .await;
        found
            .map(|v| v.into_iter().map(entry).collect())
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, tenant: &str, ns: &str, key: &str) -> Result<bool, String> {
        self.store()?
            .memory_delete(tenant, ns, key)
            .await
            .map_err(|e| e.to_string())
    }
}
