//! What can go wrong in the store.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store holds a value it cannot read: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether the same operation may pass if tried again (a busy database, a dropped
    /// connection), as opposed to a bug or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Db(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                // SQLITE_BUSY (5), SQLITE_LOCKED (6); PostgreSQL serialization/deadlock, a
                // server shutting down or starting up, and lost connections (class 08).
                matches!(
                    code.as_ref(),
                    "5" | "6" | "517" | "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                ) || code.starts_with("08")
            }
            Error::Db(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
