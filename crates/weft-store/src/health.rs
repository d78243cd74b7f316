//! Whether the store can write: what `/healthz` and `weft status` report beside "it reads".
//!
//! A store on a full disk still answers every read, so a read alone says "ok" while every
//! commit fails. [`WriteHealth`] remembers the last commit that failed because the store cannot
//! write (disk full, an I/O error, a read-only file or server), and [`check`] writes a small
//! probe (a row of `workers`, inserted and deleted in one transaction, so a real page reaches
//! the log) and commits it. The store counts as unable to write while the probe fails, and for
//! [`RECENT`] after a real commit failed, since a one-page probe may still fit where a real
//! commit does not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::{SqlStore, args};
use crate::error::{Error, Result};

/// How long a failed commit keeps the store reported as unable to write.
pub const RECENT: Duration = Duration::from_secs(10);

/// The last commit that failed because the store cannot write.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl WriteHealth {
    /// Remembers `result` if it failed because the store cannot write.
    pub(crate) fn note<T>(&self, result: &Result<T>) {
        if let Err(e) = result
            && e.is_cannot_write()
            && let Ok(mut last) = self.last_failure.lock()
        {
            tracing::warn!(error = %e, "The store cannot write.");
            *last = Some((Instant::now(), e.to_string()));
        }
    }

    /// Why the store could not write a moment ago, if a commit failed within [`RECENT`].
    fn recent(&self) -> Option<String> {
        let last = self.last_failure.lock().ok()?;
        let (at, error) = last.as_ref()?;
        (at.elapsed() < RECENT)
            .then(|| format!("a write failed {} s ago: {error}", at.elapsed().as_secs()))
    }
}

/// Writes and commits a probe; `Err(Error::CannotWrite)` when that fails, or when a real
/// commit failed within [`RECENT`], for want of space or an I/O error.
pub(crate) async fn check(store: &SqlStore) -> Result<()> {
    let probe = async {
        let mut tx = store.begin_plain().await?;
        let id = "weft:write-probe";
        tx.target()
            .execute(
                "INSERT INTO workers (id, host, pid, version, lease_ms, started_at, \
                 last_heartbeat_at) VALUES ($1, '', 0, '', 0, {now}, {now})",
                args![id],
            )
            .await?;
        tx.target()
            .execute("DELETE FROM workers WHERE id = $1", args![id])
            .await?;
        tx.commit().await
    }
    .await;
    store.health.note(&probe);
    match probe {
        Err(e) if e.is_cannot_write() => Err(Error::CannotWrite(e.to_string())),
        Err(e) => Err(e),
        Ok(()) => match store.health.recent() {
            Some(why) => Err(Error::CannotWrite(why)),
            None => Ok(()),
        },
    }
}
