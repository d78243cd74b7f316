//! The PostgreSQL side of the memory table (`migrations/postgres/0003_memory.sql`).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::memory::{MemoryEntry, MemoryStore};
use crate::postgres::PgStore;
use crate::{Error, Result};

fn entry_from_row(r: &PgRow) -> Result<MemoryEntry> {
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

/// A `LIKE` pattern (escape `\`) that matches `word` literally anywhere, ASCII-folded as SQLite's
/// `LIKE` is: the caller compares it against the folded column.
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
impl MemoryStore for PgStore {
    async fn memory_put(&self, tenant: &str, ns: &str, key: &str, value: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO memory (tenant, namespace, key, value, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, weft_now_ms(), weft_now_ms()) \
             ON CONFLICT (tenant, namespace, key) DO UPDATE SET value = EXCLUDED.value, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(tenant)
        .bind(ns)
        .bind(key)
        .bind(value.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn memory_get(&self, tenant: &str, ns: &str, key: &str) -> Result<Option<MemoryEntry>> {
        let row =
            sqlx::query("SELECT * FROM memory WHERE tenant = $1 AND namespace = $2 AND key = $3")
                .bind(tenant)
                .bind(ns)
                .bind(key)
                .fetch_optional(&self.pool)
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
        // Every word must match the key or the value; the words go in as one array, so the
        // statement is fixed whatever the query. `translate` folds ASCII letters only, like
        // SQLite's LIKE, whatever the database's locale.
        let words: Vec<String> = query.split_whitespace().map(like_pattern).collect();
        let rows = sqlx::query(
            "SELECT * FROM memory WHERE tenant = $1 AND ($2::text IS NULL OR namespace = $2) \
             AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS w(p) \
               WHERE NOT (translate(key, $5, $6) LIKE w.p ESCAPE '\\' \
                 OR translate(value, $5, $6) LIKE w.p ESCAPE '\\')) \
             ORDER BY updated_at DESC, key COLLATE \"C\" LIMIT $4",
        )
        .bind(tenant)
        .bind(namespace)
        .bind(&words)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        .bind("abcdefghijklmnopqrstuvwxyz")
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn memory_delete(&self, tenant: &str, ns: &str, key: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM memory WHERE tenant = $1 AND namespace = $2 AND key = $3")
                .bind(tenant)
                .bind(ns)
                .bind(key)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}
