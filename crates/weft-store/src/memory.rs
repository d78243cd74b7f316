//! The memory the `memory.*` tools keep: per tenant, namespaced key/value entries that outlive
//! runs. A small trait of its own, like the server's tables, so the engine never sees it; kept
//! by [`SqlStore`] on both backends (the same table, `0003_memory.sql`).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::db::{Row, SqlStore, args, limit};
use crate::error::{Error, Result};

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

fn entry_from_row(r: &Row) -> Result<MemoryEntry> {
    let raw: String = r.get("value")?;
    Ok(MemoryEntry {
        namespace: r.get("namespace")?,
        key: r.get("key")?,
        value: serde_json::from_str(&raw)
            .map_err(|e| Error::Corrupt(format!("memory value: {e}")))?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

/// A `LIKE` pattern (escape `\\`) that matches `word` literally anywhere, ASCII-folded: the
/// statement compares it with the ASCII-folded key and value, on both backends (SQLite's `LIKE`
/// folds ASCII itself, PostgreSQL's does not fold at all).
fn like_pattern(word: &str) -> String {
    let mut out = String::from("%");
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c.to_ascii_lowercase());
    }
    out.push('%');
    out
}

#[async_trait]
impl MemoryStore for SqlStore {
    async fn memory_put(&self, tenant: &str, ns: &str, key: &str, value: &Value) -> Result<()> {
        self.write()
            .execute(
                "INSERT INTO memory (tenant, namespace, key, value, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, {now}, {now}) \
                 ON CONFLICT (tenant, namespace, key) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
                args![tenant, ns, key, value.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn memory_get(&self, tenant: &str, ns: &str, key: &str) -> Result<Option<MemoryEntry>> {
        self.read()
            .optional(
                "SELECT * FROM memory WHERE tenant = $1 AND namespace = $2 AND key = $3",
                args![tenant, ns, key],
                entry_from_row,
            )
            .await
    }

    async fn memory_search(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        query: &str,
        limit_: usize,
    ) -> Result<Vec<MemoryEntry>> {
        // Every word must match the key or the value. Only fixed clauses are appended; every
        // user value is bound. `{fold}` folds ASCII letters only, whatever the locale.
        let mut sql = String::from(
            "SELECT * FROM memory WHERE tenant = $1 AND ($2 IS NULL OR namespace = $2)",
        );
        let words: Vec<String> = query.split_whitespace().map(like_pattern).collect();
        for i in 0..words.len() {
            let fold = |col: &str| {
                if self.is_postgres() {
                    format!(
                        "translate({col}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
                    )
                } else {
                    col.to_string()
                }
            };
            sql.push_str(&format!(
                " AND ({} LIKE ${n} ESCAPE '\\' OR {} LIKE ${n} ESCAPE '\\')",
                fold("key"),
                fold("value"),
                n = i + 4
            ));
        }
        sql.push_str(" ORDER BY updated_at DESC, key COLLATE {binary} LIMIT $3");
        let mut values = args![tenant, namespace, limit(limit_)].to_vec();
        values.extend(words.into_iter().map(crate::db::Arg::from));
        self.read().all(sql, &values, entry_from_row).await
    }

    async fn memory_delete(&self, tenant: &str, ns: &str, key: &str) -> Result<bool> {
        let done = self
            .write()
            .execute(
                "DELETE FROM memory WHERE tenant = $1 AND namespace = $2 AND key = $3",
                args![tenant, ns, key],
            )
            .await?;
        Ok(done > 0)
    }
}
