//! The SQLite side of the memory table (`migrations/sqlite/0003_memory.sql`).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};

use crate::memory::{MemoryEntry, MemoryStore};
use crate::sqlite::{SqliteStore, now_ms};
use crate::{Error, Result};

fn entry_from_row(r: &SqliteRow) -> Result<MemoryEntry> {
    let raw: String = r.try_get("value")?;
    Ok(MemoryEntry {
        namespace: r.try_get("namespace")?,
        key: r.try_get("key")?,
        value: serde_json::from_str(&raw)
            .map_err(|e| Error::Corrupt(format!("memory value: {e}")))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// `LIKE` with `\` as the escape character matches the word literally.
fn like_pattern(word: &str) -> String {
    let mut out = String::from("%");
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn memory_put(&self, tenant: &str, ns: &str, key: &str, value: &Value) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO memory (tenant, namespace, key, value, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant, namespace, key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(ns)
        .bind(key)
        .bind(value.to_string())
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn memory_get(&self, tenant: &str, ns: &str, key: &str) -> Result<Option<MemoryEntry>> {
        let row =
            sqlx::query("SELECT * FROM memory WHERE tenant = ? AND namespace = ? AND key = ?")
                .bind(tenant)
                .bind(ns)
                .bind(key)
                .fetch_optional(&self.reader)
                .await?;
        row.map(|r| entry_from_row(&r)).transpose()
    }

    async fn memory_search(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<MemoryEntry>> {
        let mut sql = String::from("SELECT * FROM memory WHERE tenant = ?");
        if namespace.is_some() {
            sql.push_str(" AND namespace = ?");
        }
        let words: Vec<&str> = query.split_whitespace().collect();
        for _ in &words {
            sql.push_str(" AND (key LIKE ? ESCAPE '\\' OR value LIKE ? ESCAPE '\\')");
        }
        sql.push_str(" ORDER BY updated_at DESC, key LIMIT ?");
        // Only fixed clauses are appended; every user value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
        if let Some(ns) = namespace {
            q = q.bind(ns);
        }
        for word in &words {
            let pattern = like_pattern(word);
            q = q.bind(pattern.clone()).bind(pattern);
        }
        let rows = q
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn memory_delete(&self, tenant: &str, ns: &str, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM memory WHERE tenant = ? AND namespace = ? AND key = ?")
            .bind(tenant)
            .bind(ns)
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
