//! Fault injection for the crash tests: the engine "dies" at a chosen commit.
//!
//! A [`Crash`] installed with [`crate::EngineOptions::faults`] counts the engine's commits. At the
//! chosen one it either refuses to commit (the transaction rolls back, as when the process
//! dies before `COMMIT`) or lets the commit through and then reports failure (the process
//! dies right after it); from then on every transaction this engine begins fails, so nothing
//! more it does reaches the store. The test aborts the dead engine's tasks and starts a new
//! engine on the same store, as a restarted process would. Not used outside tests: an engine
//! without faults pays one `Option` check per commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Where in its commit the engine dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Before `COMMIT`: the transaction's work is lost (e.g. a tool's result between the call
    /// and its commit).
    BeforeCommit,
    /// After `COMMIT`: the work is stored, but nothing after it happens in this process.
    AfterCommit,
}

/// A bug planted on purpose, to show that the crash tests notice a broken engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// Every task result is recorded twice (two `task.succeeded` events), as an engine that
    /// commits a result twice would.
    DoubleCommit,
}

/// Crashes the engine at its `at`-th commit (counting from 1).
#[derive(Debug)]
pub struct Crash {
    at: u64,
    point: CrashPoint,
    plant: Option<Plant>,
    commits: AtomicU64,
    dead: AtomicBool,
    died: Notify,
}

impl Crash {
    pub fn new(at: u64, point: CrashPoint) -> Arc<Crash> {
        Arc::new(Crash {
            at,
            point,
            plant: None,
            commits: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            died: Notify::new(),
        })
    }

    /// Never crashes; only counts commits.
    pub fn never() -> Arc<Crash> {
        Crash::new(u64::MAX, CrashPoint::BeforeCommit)
    }

    /// Never crashes, but the engine carries `bug`.
    pub fn planted(bug: Plant) -> Arc<Crash> {
        Arc::new(Crash {
            at: u64::MAX,
            point: CrashPoint::BeforeCommit,
            plant: Some(bug),
            commits: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            died: Notify::new(),
        })
    }

    /// The bug planted in this engine, if any.
    pub(crate) fn plant(&self) -> Option<Plant> {
        self.plant
    }

    /// Commits attempted so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Returns once the engine has died.
    pub async fn died(&self) {
        loop {
            let notified = self.died.notified();
            if self.is_dead() {
                return;
            }
            notified.await;
        }
    }

    fn die(&self) -> weft_store::Error {
        self.dead.store(true, Ordering::SeqCst);
        self.died.notify_waiters();
        dead()
    }

    /// Called before each commit: `Err` means the engine died (or is dead) before it.
    pub(crate) fn before_commit(&self) -> Result<(), weft_store::Error> {
        if self.is_dead() {
            return Err(dead());
        }
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.at && self.point == CrashPoint::BeforeCommit {
            return Err(self.die());
        }
        Ok(())
    }

    /// Called after each successful commit: `Err` means the engine died right after it.
    pub(crate) fn after_commit(&self) -> Result<(), weft_store::Error> {
        if self.commits() == self.at && self.point == CrashPoint::AfterCommit {
            return Err(self.die());
        }
        Ok(())
    }

    /// Called when a transaction begins.
    pub(crate) fn begin(&self) -> Result<(), weft_store::Error> {
        if self.is_dead() {
            return Err(dead());
        }
        Ok(())
    }
}

fn dead() -> weft_store::Error {
    weft_store::Error::Invalid("fault injection: this engine has crashed".into())
}

impl crate::Engine {
    /// Whether this engine carries `bug` (crash tests only; always false otherwise).
    pub(crate) fn planted(&self, bug: Plant) -> bool {
        self.inner.faults.as_ref().and_then(|f| f.plant()) == Some(bug)
    }
}
