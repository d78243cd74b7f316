//! `memory.put`, `memory.get`, `memory.search` and `memory.delete`: a per-tenant, namespaced
//! key/value memory that outlives runs (the seeds' research templates end by storing what
//! they found).
//!
//! Tools know no store: they talk to a [`MemoryBackend`], which the binary adapts from the weft
//! store (so memory is durable and visible in the API). [`InMemory`] is for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::builtin::parse_input;
use crate::{Context, Error, Registry, Result, Tool};

/// The namespace used when a step names none.
pub const DEFAULT_NAMESPACE: &str = "default";
const MAX_KEY_BYTES: usize = 512;
const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// One remembered value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub namespace: String,
    pub key: String,
    pub value: Value,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// Where memory is kept. Errors are messages; the tools report them as retryable failures.
#[async_trait]
pub trait MemoryBackend: Send + Sync {
    async fn put(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
        value: &Value,
    ) -> Result<(), String>;
    async fn get(
        &self,
        tenant: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<MemoryEntry>, String>;
    /// Entries whose key or value contains every word of `query` (case-insensitive), newest
    /// first; within one namespace or all.
    async fn search(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>, String>;
    async fn delete(&self, tenant: &str, namespace: &str, key: &str) -> Result<bool, String>;
}

/// A backend in process memory, for tests.
#[derive(Default)]
pub struct InMemory {
    entries: Mutex<BTreeMap<(String, String, String), MemoryEntry>>,
}

fn millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether an entry matches every word of a query, case-insensitively.
pub fn matches(entry_key: &str, value: &Value, query: &str) -> bool {
    let haystack = format!("{entry_key}\n{value}").to_lowercase();
    query
        .split_whitespace()
        .all(|word| haystack.contains(&word.to_lowercase()))
}

#[async_trait]
impl MemoryBackend for InMemory {
    async fn put(&self, tenant: &str, ns: &str, key: &str, value: &Value) -> Result<(), String> {
        let mut entries = self.entries.lock().map_err(|e| e.to_string())?;
        entries.insert(
            (tenant.into(), ns.into(), key.into()),
            MemoryEntry {
                namespace: ns.into(),
                key: key.into(),
                value: value.clone(),
                updated_at: millis(),
            },
        );
        Ok(())
    }

    async fn get(&self, tenant: &str, ns: &str, key: &str) -> Result<Option<MemoryEntry>, String> {
        let entries = self.entries.lock().map_err(|e| e.to_string())?;
        Ok(entries
            .get(&(tenant.into(), ns.into(), key.into()))
            .cloned())
    }

    async fn search(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>, String> {
        let entries = self.entries.lock().map_err(|e| e.to_string())?;
        let mut found: Vec<MemoryEntry> = entries
            .iter()
            .filter(|((t, ns, _), _)| t == tenant && namespace.is_none_or(|n| n == ns))
            .filter(|(_, e)| matches(&e.key, &e.value, query))
            .map(|(_, e)| e.clone())
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.updated_at));
        found.truncate(limit);
        Ok(found)
    }

    async fn delete(&self, tenant: &str, ns: &str, key: &str) -> Result<bool, String> {
        let mut entries = self.entries.lock().map_err(|e| e.to_string())?;
        Ok(entries
            .remove(&(tenant.into(), ns.into(), key.into()))
            .is_some())
    }
}

/// Adds the four memory tools over `backend`.
pub fn register(registry: &mut Registry, backend: Arc<dyn MemoryBackend>) {
    for op in [Op::Put, Op::Get, Op::Search, Op::Delete] {
        registry.insert(Arc::new(MemoryTool {
            op,
            backend: backend.clone(),
        }));
    }
}

#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
    Search,
    Delete,
}

struct MemoryTool {
    op: Op,
    backend: Arc<dyn MemoryBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    #[serde(default)]
    namespace: Option<String>,
    key: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchInput {
    #[serde(default)]
    namespace: Option<String>,
    query: String,
    #[serde(default)]
    limit: Option<usize>,
}

fn check_key(tool: &str, namespace: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::Input(format!(
            "{tool}: `key` must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if namespace.is_empty() || namespace.len() > MAX_KEY_BYTES {
        return Err(Error::Input(format!(
            "{tool}: `namespace` must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn backend_error(tool: &str, message: String) -> Error {
    Error::Failed(format!("{tool}: the memory store failed: {message}"))
}

#[async_trait]
impl Tool for MemoryTool {
    fn name(&self) -> &str {
        match self.op {
            Op::Put => "memory.put",
            Op::Get => "memory.get",
            Op::Search => "memory.search",
            Op::Delete => "memory.delete",
        }
    }

    fn description(&self) -> &str {
        match self.op {
            Op::Put => {
                "Remembers `value` under `key` in `namespace` (default `default`) for this tenant, replacing what was there. Output: {namespace, key, stored: true}."
            }
            Op::Get => {
                "The value remembered under `key` in `namespace`, or `default` (null when not given) when there is none."
            }
            Op::Search => {
                "Entries whose key or value contains every word of `query` (case-insensitive), newest first: [{namespace, key, value, updated_at}]. Searches one `namespace`, or all when none is given."
            }
            Op::Delete => "Forgets `key` in `namespace`. Output: {deleted: true|false}.",
        }
    }

    fn input_schema(&self) -> Option<Value> {
        let namespace =
            json!({"type": "string", "minLength": 1, "description": "Default `default`."});
        let key = json!({"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES});
        Some(match self.op {
            Op::Put => json!({
                "type": "object", "required": ["key", "value"], "additionalProperties": false,
                "properties": {"namespace": namespace, "key": key, "value": {"description": "Any JSON value."}}
            }),
            Op::Get => json!({
                "type": "object", "required": ["key"], "additionalProperties": false,
                "properties": {"namespace": namespace, "key": key, "default": {}}
            }),
            Op::Search => json!({
                "type": "object", "required": ["query"], "additionalProperties": false,
                "properties": {"namespace": namespace, "query": {"type": "string"},
                               "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}
            }),
            Op::Delete => json!({
                "type": "object", "required": ["key"], "additionalProperties": false,
                "properties": {"namespace": namespace, "key": key}
            }),
        })
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let tool = self.name();
        if let Op::Search = self.op {
            let input: SearchInput = parse_input(tool, &input)?;
            let limit = input.limit.unwrap_or(20).clamp(1, 1000);
            let found = self
                .backend
                .search(&ctx.tenant, input.namespace.as_deref(), &input.query, limit)
                .await
                .map_err(|e| backend_error(tool, e))?;
            return serde_json::to_value(found).map_err(|e| Error::Failed(e.to_string()));
        }
        let input: KeyInput = parse_input(tool, &input)?;
        let namespace = input.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        check_key(tool, namespace, &input.key)?;
        match self.op {
            Op::Put => {
                let value = input
                    .value
                    .ok_or_else(|| Error::Input(format!("{tool}: `value` is required")))?;
                if value.to_string().len() > MAX_VALUE_BYTES {
                    return Err(Error::Input(format!(
                        "{tool}: the value is larger than {MAX_VALUE_BYTES} bytes as JSON"
                    )));
                }
                self.backend
                    .put(&ctx.tenant, namespace, &input.key, &value)
                    .await
                    .map_err(|e| backend_error(tool, e))?;
                Ok(json!({"namespace": namespace, "key": input.key, "stored": true}))
            }
            Op::Get => {
                let found = self
                    .backend
                    .get(&ctx.tenant, namespace, &input.key)
                    .await
                    .map_err(|e| backend_error(tool, e))?;
                Ok(match found {
                    Some(entry) => entry.value,
                    None => input.default.unwrap_or(Value::Null),
                })
            }
            Op::Delete => {
                let deleted = self
                    .backend
                    .delete(&ctx.tenant, namespace, &input.key)
                    .await
                    .map_err(|e| backend_error(tool, e))?;
                Ok(json!({"deleted": deleted}))
            }
            Op::Search => Err(Error::Input(format!("{tool}: unreachable"))),
        }
    }
}
