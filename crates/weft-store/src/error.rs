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
    /// The store cannot write now (its disk is full, an I/O error, a read-only file); reads
    /// may still work. From [`crate::Store::check_writable`].
    #[error("the store cannot write: {0}")]
    CannotWrite(String),
}

impl Error {
    /// Whether the same operation may pass if tried again (a busy database, a dropped
    /// connection, a full disk that gets space back), as opposed to a bug or bad data.
    pub fn is_transient(&self) -> bool {
        if self.is_cannot_write() {
            return true;
        }
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

impl Error {
    /// Whether the store failed to write for want of space or a broken disk, rather than a
    /// conflict or bad data: SQLite's SQLITE_FULL, SQLITE_IOERR and SQLITE_READONLY (with
    /// their extended codes), PostgreSQL's disk_full, io_error and a read-only transaction.
    pub fn is_cannot_write(&self) -> bool {
        match self {
            Error::CannotWrite(_) => true,
            Error::Db(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // The primary code is the low byte of the extended one.
                    code.parse::<i32>()
                        .is_ok_and(|n| matches!(n & 0xff, 8 | 10 | 13))
                } else {
                    matches!(code.as_ref(), "53100" | "58030" | "25006")
                }
            }
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
