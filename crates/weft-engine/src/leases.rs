//! Leases: which worker holds a running task, and what losing that worker costs.
//!
//! A worker leases the tasks it claims and renews the leases every third of a lease. A worker
//! that stops answering (killed, frozen, cut off) loses its tasks when their leases lapse; a
//! worker whose process died on this host loses them at once, since any process on the host
//! can see that it is gone (its pid no longer exists, or now belongs to a process started
//! later).
//!
//! Losing a worker is the infrastructure's failure, not the step's: the task comes back as its
//! next attempt without spending a try of the step's `retry:` policy (the task's
//! `lease_losses` counts it instead, see `Completion::may_retry`). Only a task that lost
//! [`MAX_LEASE_LOSSES`] workers fails, with a reason that says so: it may be what kills them.

use serde_json::json;
use weft_store::{NewEvent, Task, Tx};

use crate::completion::{Completion, Failure};
use crate::{Engine, Result};
use weft_core::lifecycle::EventKind;

/// How many workers a task may lose before it fails.
pub const MAX_LEASE_LOSSES: u32 = 5;

/// How a worker lost a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Its lease lapsed, or its process is gone.
    LeaseExpired,
    /// The worker stopped (gracefully) before the call finished.
    Shutdown,
}

impl Loss {
    /// The `reason` recorded with the `task.retrying` event.
    fn reason(self) -> &'static str {
        match self {
            Loss::LeaseExpired => "lease_expired",
            Loss::Shutdown => "shutdown",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Loss::LeaseExpired => {
                "the worker running this attempt stopped answering (its lease expired); \
                 this does not count as a try of the step"
            }
            Loss::Shutdown => "the worker stopped before the call finished",
        }
    }
}

impl Engine {
    /// Takes `tasks` back from the workers that lost them: each comes back at once as its next
    /// attempt, without spending a try of its step, or fails if it has now lost
    /// [`MAX_LEASE_LOSSES`] workers. Fenced: a task no longer running under the attempt read is
    /// left alone. Returns how many came back.
    pub(crate) async fn take_back(
        &self,
        tx: &mut dyn Tx,
        tasks: &[Task],
        loss: Loss,
    ) -> Result<usize> {
        let mut events = Vec::new();
        let mut failed = Vec::new();
        for t in tasks {
            let losses = t.lease_losses + 1;
            if loss == Loss::LeaseExpired && losses >= MAX_LEASE_LOSSES {
                failed.push(Completion {
                    result: Err(Failure {
                        message: format!(
                            "lost its worker {losses} times (the lease expired each time); \
                             the task may be what stops its worker"
                        ),
                        transient: false,
                        reason: loss.reason(),
                    }),
                    ..Completion::of(t, t.lease_owner.clone().unwrap_or_default())
                });
                continue;
            }
            if tx.reclaim_task(t.id, t.attempt).await? {
                events.push(NewEvent {
                    run_id: t.run_id.clone(),
                    kind: EventKind::TaskRetrying,
                    step_id: Some(t.step_id.clone()),
                    item: t.item,
                    attempt: Some(t.attempt),
                    data: json!({"reason": loss.reason(), "delay_ms": 0,
                        "error": loss.message(), "next_attempt": t.attempt + 1,
                        "lease_losses": losses}),
                });
            }
        }
        tx.append_events(&events).await?;
        if !failed.is_empty() {
            let mut no_jitter = || 0.0;
            self.apply_completions(tx, failed, &mut no_jitter).await?;
        }
        Ok(events.len())
    }

    /// Takes back every task whose lease lapsed or whose owner is in `dead_owners` (of the
    /// runs in `only_runs`, when given).
    pub(crate) async fn reclaim_lost(
        &self,
        tx: &mut dyn Tx,
        dead_owners: &[String],
        only_runs: Option<&[String]>,
    ) -> Result<usize> {
        let mut stale = tx.stale_tasks(dead_owners, 1000).await?;
        if let Some(runs) = only_runs {
            stale.retain(|t| runs.contains(&t.run_id));
        }
        if stale.is_empty() {
            return Ok(0);
        }
        self.take_back(tx, &stale, Loss::LeaseExpired).await
    }

    /// Registered workers of this host whose process is gone: what they held can be taken
    /// back now rather than when their leases lapse. Only workers that beat recently count
    /// (an older one's leases have lapsed anyway). Never fails: without an answer, leases
    /// lapse as usual.
    pub(crate) async fn dead_local_workers(&self) -> Vec<String> {
        match self.store().workers().await {
            Ok(status) => dead_local_owners(status.alive().map(|w| w.id.clone())),
            Err(error) => {
                tracing::debug!(%error, "Could not list workers.");
                Vec::new()
            }
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22), or
/// `None` if there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A unique name for this process's worker, its lease owner: `host:pid:start.random`, where
/// `start` is when the process started (so a later process with the same pid, as in a
/// restarted container, is told apart).
pub fn worker_id() -> String {
    let host = hostname().unwrap_or_else(|| "localhost".into());
    let pid = std::process::id();
    let start = process_start(pid).unwrap_or(0);
    format!("{host}:{pid}:{start}.{}", rand::random::<u32>())
}

/// Owners in `owners` that were workers on this host whose process no longer exists: its pid
/// is free, or belongs to a process that started at another time.
pub fn dead_local_owners(owners: impl IntoIterator<Item = String>) -> Vec<String> {
    // Without /proc nothing can be told about other processes: nobody is known dead.
    let Some(host) = hostname().filter(|_| std::path::Path::new("/proc/self/stat").exists()) else {
        return Vec::new();
    };
    owners
        .into_iter()
        .filter(|o| {
            let mut parts = o.splitn(3, ':');
            let (Some(h), Some(pid), rest) = (parts.next(), parts.next(), parts.next()) else {
                return false;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                return false;
            };
            if h != host {
                return false;
            }
            // `start.random` since start times are recorded; older owners are `random`.
            let start = rest
                .and_then(|r| r.split_once('.'))
                .and_then(|(s, _)| s.parse::<u64>().ok())
                .filter(|s| *s > 0);
            match (process_start(pid), start) {
                (None, _) => true,
                (Some(now), Some(then)) => now != then,
                (Some(_), None) => false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_or_a_reused_one_is_dead() {
        let me = worker_id();
        assert!(dead_local_owners([me.clone()]).is_empty(), "{me}");
        let host = hostname().unwrap_or_default();
        let pid = std::process::id();
        // The same pid, started at another time: a restarted container's pid 1.
        let reused = format!("{host}:{pid}:1.7");
        // A pid no process has (above the kernel's pid_max).
        let gone = format!("{host}:99999999:5.7");
        let elsewhere = format!("not-{host}:99999999:5.7");
        let dead = dead_local_owners([reused.clone(), gone.clone(), elsewhere]);
        assert_eq!(dead, vec![reused, gone]);
    }
}
