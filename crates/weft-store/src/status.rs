//! What an operator asks a store first: how deep the queue is, how old its oldest due task is,
//! who holds leases, and whether the schema is the one this build expects. Kept apart from the
//! run/step/task records because only `weft status` and the metrics upkeep read it.

use serde::Serialize;

/// The task queue at one instant of the store's clock.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QueueStatus {
    /// The store's clock when it answered (ms since the epoch).
    pub now: i64,
    /// Tasks waiting in the queue, due or not.
    pub queued: i64,
    /// Queued tasks whose `not_before` has passed (not waiting out a retry backoff).
    pub due: i64,
    /// Tasks leased to a worker.
    pub running: i64,
    /// `not_before` of the oldest due queued task: it has waited `now - oldest_due_at` ms.
    pub oldest_due_at: Option<i64>,
    /// Who holds leases, by owner.
    pub leases: Vec<LeaseHolder>,
}

impl QueueStatus {
    /// How long the oldest due task has waited, in ms (0 with an empty queue).
    pub fn oldest_age_ms(&self) -> i64 {
        self.oldest_due_at
            .map(|at| (self.now - at).max(0))
            .unwrap_or(0)
    }
}

/// One worker process seen through the leases it holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeaseHolder {
    /// `host:pid:random`, as the worker stamps its claims.
    pub owner: String,
    pub tasks: i64,
    /// The latest of its lease expiries: past it, the worker has stopped heart-beating.
    pub expires_at: i64,
}

/// The schema migrations a store has applied against those this build carries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SchemaStatus {
    pub applied: Option<i64>,
    pub latest: i64,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.applied == Some(self.latest)
    }
}
