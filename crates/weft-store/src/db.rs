//! The seam between the SQL both backends share and the two databases.
//!
//! Every statement of the store is written once, with `$N` placeholders (sqlx's SQLite driver
//! binds `$N` by number, as PostgreSQL does) and three fragments that differ by dialect,
//! substituted when the statement runs:
//! - `{now}`: the database clock in ms (`weft_now_ms()` on PostgreSQL, `julianday` arithmetic on
//!   SQLite);
//! - `{binary}`: the byte-order collation (`"C"` on PostgreSQL, `BINARY` on SQLite);
//! - `{seq}`: the insertion order of a row of `templates` (`seq` on PostgreSQL, `rowid` on SQLite);
//! - `{pg:...}` and `{sqlite:...}`: text only one dialect wants (`FOR UPDATE`, `INDEXED BY`);
//! - `{?}`: the next positional parameter, for statements made only of them (multi-row inserts):
//!   `$1, $2, ...` on PostgreSQL, an anonymous `?` on SQLite. SQLite looks a numbered
//!   parameter's name up in a list as long as the statement's parameters, once per bound value,
//!   so a 17,000-value insert written with `$N` spent seconds in `sqlite3_bind_parameter_name`.
//!
//! Values go in as [`Arg`]s and come back as [`Row`]s, whose getters are the one place that
//! turns a column into a Rust value (and refuses one out of range). What genuinely differs
//! (claiming, batched inserts, the event append, opening) is in `sqlite.rs` and `postgres.rs`.
//!
//! Architecture Invariant: this file knows both drivers and no table; the table modules know
//! tables and no driver.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Decode, Postgres, Row as _, Sqlite, Transaction, Type};
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// The one store type: SQLite or PostgreSQL behind the same SQL.
pub struct SqlStore {
    pub(crate) db: Db,
    pub(crate) describe: String,
    /// The last commit that failed because the store cannot write (`health.rs`).
    pub(crate) health: Arc<crate::health::WriteHealth>,
}

/// The connections of one backend.
pub(crate) enum Db {
    /// One writer connection (SQLite allows one writer at a time) and a few readers.
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres {
        pool: PgPool,
        /// Woken by `NOTIFY weft_work` (see `postgres.rs`).
        wake: Arc<Notify>,
        /// Started by the first `wait_for_work`, so a short-lived CLI process that never waits
        /// for work holds one connection, not two.
        listener: OnceLock<tokio::task::JoinHandle<()>>,
    },
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Db::Postgres { listener, .. } = &self.db
            && let Some(l) = listener.get()
        {
            l.abort();
        }
    }
}

impl SqlStore {
    /// Where reads outside a transaction go (SQLite's readers see committed state only).
    pub(crate) fn read(&self) -> Target<'_> {
        match &self.db {
            Db::Sqlite { reader, .. } => Target::SqlitePool(reader),
            Db::Postgres { pool, .. } => Target::PgPool(pool),
        }
    }

    /// Where single-statement writes go.
    pub(crate) fn write(&self) -> Target<'_> {
        match &self.db {
            Db::Sqlite { writer, .. } => Target::SqlitePool(writer),
            Db::Postgres { pool, .. } => Target::PgPool(pool),
        }
    }

    /// A short transaction for a few statements that must commit together (not a [`crate::Tx`]).
    pub(crate) async fn begin_plain(&self) -> Result<Conn> {
        Ok(match &self.db {
            Db::Sqlite { writer, .. } => Conn::Sqlite(writer.begin().await?),
            Db::Postgres { pool, .. } => Conn::Postgres(pool.begin().await?),
        })
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres { .. })
    }
}

/// An open transaction of either backend.
pub(crate) enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Conn {
    pub(crate) fn target(&mut self) -> Target<'_> {
        match self {
            Conn::Sqlite(tx) => Target::SqliteConn(tx),
            Conn::Postgres(tx) => Target::PgConn(tx),
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Conn::Sqlite(tx) => tx.commit().await?,
            Conn::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// What a statement runs on: a pool or a connection in a transaction, of either backend.
pub(crate) enum Target<'c> {
    SqlitePool(&'c SqlitePool),
    SqliteConn(&'c mut SqliteConnection),
    PgPool(&'c PgPool),
    PgConn(&'c mut PgConnection),
}

/// A value bound to a `$N` placeholder. Integers are 64-bit on both backends.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Real(f64),
    Bool(bool),
    Text(Option<&'a str>),
    Owned(Option<String>),
    Bytes(&'a [u8]),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {$(
        impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        }
    )*};
}

arg_from! {
    i64 => |v| Arg::Int(Some(v));
    Option<i64> => |v| Arg::Int(v);
    u32 => |v| Arg::Int(Some(i64::from(v)));
    Option<u32> => |v| Arg::Int(v.map(i64::from));
    f64 => |v| Arg::Real(v);
    bool => |v| Arg::Bool(v);
    &'a str => |v| Arg::Text(Some(v));
    &'a String => |v| Arg::Text(Some(v.as_str()));
    Option<&'a str> => |v| Arg::Text(v);
    Option<&'a String> => |v| Arg::Text(v.map(String::as_str));
    &'a Option<String> => |v| Arg::Text(v.as_deref());
    String => |v| Arg::Owned(Some(v));
    Option<String> => |v| Arg::Owned(v);
    &'a [u8] => |v| Arg::Bytes(v);
}

/// `args![a, b, c]`: the values of a statement's `$1, $2, $3`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::db::Arg::from($v)),*][..]
    };
}
pub(crate) use args;

/// The byte count of a usize limit, as SQL wants it.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQLite's clock in whole ms, the same as the process clock (`ROUND`: the day fraction is a
/// double, and truncating it could land one ms early).
const SQLITE_NOW: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)";

/// A statement's text, fixed (`&'static str`) or built (`String`, only from fixed parts).
pub(crate) type Sql = Cow<'static, str>;

fn dialect(sql: Sql, postgres: bool) -> Sql {
    if !sql.contains('{') {
        return sql;
    }
    let (now, binary, seq) = if postgres {
        ("weft_now_ms()", "\"C\"", "seq")
    } else {
        (SQLITE_NOW, "BINARY", "rowid")
    };
    let (keep, drop) = if postgres {
        ("{pg:", "{sqlite:")
    } else {
        ("{sqlite:", "{pg:")
    };
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest: &str = &sql;
    let mut next_positional = 0usize;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find('}').map(|e| e + 1).unwrap_or(tail.len());
        let token = &tail[..end];
        match token {
            "{now}" => out.push_str(now),
            "{binary}" => out.push_str(binary),
            "{seq}" => out.push_str(seq),
            "{?}" if postgres => {
                next_positional += 1;
                out.push_str(&format!("${next_positional}"));
            }
            "{?}" => out.push('?'),
            t if t.starts_with(keep) => out.push_str(&t[keep.len()..t.len() - 1]),
            t if t.starts_with(drop) => {}
            t => out.push_str(t),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `$from, $from+1, ...`: `n` placeholders for a list (`IN (...)`).
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `prefix VALUES ({?}, ..., {?}), ...` for `rows` rows of `width` values: one multi-row
/// insert, bound in order (see `{?}` above: no `$N` lookups on SQLite).
pub(crate) fn values_sql(prefix: &str, width: usize, rows: usize) -> String {
    let mut row = String::with_capacity(width * 5 + 2);
    row.push('(');
    for i in 0..width {
        if i > 0 {
            row.push_str(", ");
        }
        row.push_str("{?}");
    }
    row.push(')');
    let mut sql = String::with_capacity(prefix.len() + 8 + rows * (row.len() + 2));
    sql.push_str(prefix);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

fn sqlite_query<'q>(
    sql: Cow<'static, str>,
    args: &[Arg<'_>],
) -> Query<'q, Sqlite, SqliteArguments> {
    let mut q = match sql {
        Cow::Borrowed(s) => sqlx::query(s),
        Cow::Owned(s) => sqlx::query(AssertSqlSafe(s)),
    };
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Real(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Text(v) => q.bind(*v),
            Arg::Owned(v) => q.bind(v.clone()),
            Arg::Bytes(v) => q.bind(v.to_vec()),
        };
    }
    q
}

fn pg_query<'q>(sql: Cow<'static, str>, args: &[Arg<'_>]) -> Query<'q, Postgres, PgArguments> {
    let mut q = match sql {
        Cow::Borrowed(s) => sqlx::query(s),
        Cow::Owned(s) => sqlx::query(AssertSqlSafe(s)),
    };
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::Real(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Text(v) => q.bind(*v),
            Arg::Owned(v) => q.bind(v.as_deref()),
            Arg::Bytes(v) => q.bind(*v),
        };
    }
    q
}

/// Runs one sqlx method on whichever backend the target is; `$wrap` turns a driver's row
/// into a [`Row`]. The four targets differ only in the executor's type, so each arm is the one
/// `@on` body with its query builder, dialect and row wrapper.
macro_rules! each {
    ($target:expr, $sql:expr, $args:expr, |$out:ident, $wrap:ident| $method:ident => $lift:expr) => {
        match $target {
            Target::SqlitePool(e) => each!(@on e, sqlite_query, false, Row::Sqlite, $sql, $args, $out, $wrap, $method, $lift),
            Target::SqliteConn(e) => each!(@on e, sqlite_query, false, Row::Sqlite, $sql, $args, $out, $wrap, $method, $lift),
            Target::PgPool(e) => each!(@on e, pg_query, true, Row::Pg, $sql, $args, $out, $wrap, $method, $lift),
            Target::PgConn(e) => each!(@on e, pg_query, true, Row::Pg, $sql, $args, $out, $wrap, $method, $lift),
        }
    };
    (@on $e:ident, $query:ident, $pg:literal, $row:path, $sql:expr, $args:expr,
     $out:ident, $wrap:ident, $method:ident, $lift:expr) => {{
        let $out = $query(dialect($sql.into(), $pg), $args).$method($e).await?;
        let $wrap = $row;
        $lift
    }};
}

/// Runs `op`, recording its latency under [`crate::STORE_DURATION`] by operation (through the
/// `metrics` facade: a no-op until a process installs an exporter).
pub(crate) async fn timed<T>(operation: &'static str, op: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = op.await;
    metrics::histogram!(crate::api::STORE_DURATION, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    out
}

impl Target<'_> {
    /// Runs a statement; how many rows it changed.
    pub(crate) async fn execute(self, sql: impl Into<Sql>, args: &[Arg<'_>]) -> Result<u64> {
        Ok(each!(self, sql, args, |done, _w| execute => done.rows_affected()))
    }

    pub(crate) async fn fetch_all(self, sql: impl Into<Sql>, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        Ok(each!(self, sql, args, |rows, w| fetch_all => rows.into_iter().map(w).collect()))
    }

    pub(crate) async fn fetch_optional(
        self,
        sql: impl Into<Sql>,
        args: &[Arg<'_>],
    ) -> Result<Option<Row>> {
        Ok(each!(self, sql, args, |row, w| fetch_optional => row.map(w)))
    }

    pub(crate) async fn fetch_one(self, sql: impl Into<Sql>, args: &[Arg<'_>]) -> Result<Row> {
        Ok(each!(self, sql, args, |row, w| fetch_one => w(row)))
    }

    /// The rows of a statement, each read by `decode`.
    pub(crate) async fn all<T>(
        self,
        sql: impl Into<Sql>,
        args: &[Arg<'_>],
        decode: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.fetch_all(sql, args)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// The row of a statement, if there is one, read by `decode`.
    pub(crate) async fn optional<T>(
        self,
        sql: impl Into<Sql>,
        args: &[Arg<'_>],
        decode: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.fetch_optional(sql, args)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }
}

/// A row of either backend, read by column name.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Pg(PgRow),
}

/// What [`Row::get`] can read: a type both drivers decode.
pub(crate) trait Column:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}
impl<T> Column for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl Row {
    /// A column as `T`.
    pub(crate) fn get<T: Column>(&self, col: &str) -> Result<T> {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(col)?,
            Row::Pg(r) => r.try_get(col)?,
        })
    }

    /// A column that holds a count or an index: refused, not truncated, when it does not fit.
    pub(crate) fn opt_u32(&self, col: &str) -> Result<Option<u32>> {
        let v: Option<i64> = self.get(col)?;
        v.map(|v| u32::try_from(v).map_err(|_| Error::Corrupt(format!("{col} = {v}"))))
            .transpose()
    }

    pub(crate) fn u32(&self, col: &str) -> Result<u32> {
        self.opt_u32(col)?
            .ok_or_else(|| Error::Corrupt(format!("{col} is null")))
    }

    /// A counter kept as a signed 64-bit integer (never negative in a sound store).
    pub(crate) fn u64(&self, col: &str) -> Result<u64> {
        Ok(self.get::<i64>(col)?.max(0) as u64)
    }

    /// A JSON column (kept as text on both backends).
    pub(crate) fn json(&self, col: &str, what: &str) -> Result<Option<Value>> {
        parse_json(self.get(col)?, what)
    }
}

pub(crate) fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| {
        weft_core::limits::parse_stored_json(&t).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
    })
    .transpose()
}

pub(crate) fn json_text(v: &Value) -> String {
    v.to_string()
}

pub(crate) fn opt_json(v: Option<&Value>) -> Option<String> {
    v.map(json_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_row_insert_binds_in_order_on_both_dialects() {
        let sql = values_sql("INSERT INTO t (a, b)", 2, 2);
        assert_eq!(
            dialect(sql.clone().into(), true),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            dialect(sql.into(), false),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
