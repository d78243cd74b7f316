//! The lifecycle of a run, its steps and their tasks: the states, one transition function for
//! each, and the event every transition records.
//!
//! The engine changes a status only through [`RunStatus::apply`], [`StepStatus::apply`] or
//! [`TaskStatus::apply`]: each says whether the change is allowed from the current state, what
//! the state becomes and which [`EventKind`] records it. The CLI's progress, the SSE stream and
//! the UI read events by [`EventKind`], never by their text, and `/openapi.json` publishes the
//! kinds for the web UI and the widget.
//!
//! Invariants:
//! - A run is *ended* in succeeded, failed or cancelled: nothing of it is in flight then.
//!   `resume` reopens a failed or cancelled run (`run.resumed`), so "ended" means "ended for
//!   now", and every reader follows a reopened run to its next end.
//! - Succeeded is final for runs, steps and tasks: a resume redoes only what did not succeed.
//! - A task's result is recorded once: only a running (leased) or waiting task ends, and the
//!   store fences the write by attempt and owner, so a superseded attempt cannot end it.
//! - A lost lease puts a task back in the queue as its next attempt without spending a try of
//!   the step's retry policy; it is bounded on its own (`MAX_LEASE_LOSSES` in the engine).

use serde::{Deserialize, Serialize};

pub use crate::orchestrator::{RunStatus, StepStatus};

/// A task's status, as the store keeps it and `runs show` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    /// Not leased by any worker: waiting for a decision (an approval) or for a child run.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Waiting => "waiting",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => TaskStatus::Queued,
            "running" => TaskStatus::Running,
            "waiting" => TaskStatus::Waiting,
            "succeeded" => TaskStatus::Succeeded,
            "failed" => TaskStatus::Failed,
            "cancelled" => TaskStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

macro_rules! event_kinds {
    ($($variant:ident => $text:literal: $doc:literal),* $(,)?) => {
        /// What an event records. Stored, streamed and serialized as its text
        /// (`run.succeeded`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $(#[doc = $doc] $variant,)*
        }

        impl EventKind {
            /// Every kind, in the order the lifecycle goes through them.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(EventKind::$variant),)* _ => None }
            }

            /// What the kind means, for the API's documentation.
            pub fn describe(self) -> &'static str {
                match self { $(EventKind::$variant => $doc),* }
            }
        }
    };
}

event_kinds! {
    RunStarted => "run.started": "The run was created and its first steps decided.",
    RunWaiting => "run.waiting": "Every step that can go on waits for a decision or a child run.",
    RunContinued => "run.continued": "A waiting run has work again.",
    RunResumed => "run.resumed": "`resume` reopened the run (after a failure, a cancel or a crash).",
    RunBudgetExceeded => "run.budget_exceeded": "The run crossed its budget; it fails next.",
    RunSucceeded => "run.succeeded": "The run ended with an output.",
    RunFailed => "run.failed": "The run ended with an error.",
    RunCancelled => "run.cancelled": "The run was cancelled.",
    StepStarted => "step.started": "A step's tasks were queued (or answered at once).",
    StepProgress => "step.progress": "Items of a fan-out ended: done, failed and total.",
    StepSucceeded => "step.succeeded": "A step ended with an output.",
    StepFailed => "step.failed": "A step ended with an error.",
    StepSkipped => "step.skipped": "A step's `if` was false, so it did not run.",
    StepCancelled => "step.cancelled": "A step was cancelled with its run.",
    TaskStarted => "task.started": "A worker leased a task's attempt and calls its tool.",
    TaskProgress => "task.progress": "A running tool reported progress.",
    TaskRetrying => "task.retrying": "An attempt failed or its lease was lost; the task is queued again.",
    TaskSucceeded => "task.succeeded": "An attempt's result was recorded.",
    TaskFailed => "task.failed": "An attempt failed for good.",
    TaskCacheHit => "task.cache_hit": "A task was answered from the step cache.",
    ApprovalRequested => "approval.requested": "A step waits for a person's decision.",
    ApprovalDecided => "approval.decided": "An approval was granted or refused.",
    WorkflowStarted => "workflow.started": "A `workflow:` step started a child run.",
    ActionStarted => "action.started": "An action started a follow-up run.",
}

impl EventKind {
    /// The three ends of a run (an end a later `run.resumed` reopens).
    pub fn ends_run(self) -> bool {
        matches!(
            self,
            EventKind::RunSucceeded | EventKind::RunFailed | EventKind::RunCancelled
        )
    }

    /// Whether the event is about one task attempt (`task.*`).
    pub fn is_task(self) -> bool {
        matches!(
            self,
            EventKind::TaskStarted
                | EventKind::TaskProgress
                | EventKind::TaskRetrying
                | EventKind::TaskSucceeded
                | EventKind::TaskFailed
                | EventKind::TaskCacheHit
        )
    }

    /// The run status an end records (`None` for every other kind).
    pub fn run_end(self) -> Option<RunStatus> {
        Some(match self {
            EventKind::RunSucceeded => RunStatus::Succeeded,
            EventKind::RunFailed => RunStatus::Failed,
            EventKind::RunCancelled => RunStatus::Cancelled,
            _ => return None,
        })
    }

    /// The step status a step's end records (`None` for every other kind).
    pub fn step_end(self) -> Option<StepStatus> {
        Some(match self {
            EventKind::StepSucceeded => StepStatus::Succeeded,
            EventKind::StepFailed => StepStatus::Failed,
            EventKind::StepSkipped => StepStatus::Skipped,
            EventKind::StepCancelled => StepStatus::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for EventKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        EventKind::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event kind `{text}`")))
    }
}

/// A transition asked of a state that does not allow it (a bug in the caller, or a record
/// changed by another process meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {what} cannot {transition} when {from}")]
pub struct Refused {
    pub what: &'static str,
    pub from: &'static str,
    pub transition: &'static str,
}

/// What can happen to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTransition {
    /// Every step that can go on waits (an approval, a child run).
    Wait,
    /// A waiting run has work again.
    Continue,
    Succeed,
    Fail,
    Cancel,
    /// Reopens a failed or cancelled run; on a live run (its process died) it only records
    /// the resume.
    Resume,
}

impl RunStatus {
    /// The one place a run's status changes: the new status and the event that records it.
    pub fn apply(self, t: RunTransition) -> Result<(RunStatus, EventKind), Refused> {
        use RunStatus::*;
        use RunTransition as T;
        let allowed = match t {
            T::Wait | T::Continue | T::Succeed => matches!(self, Running | Waiting),
            T::Fail | T::Cancel => matches!(self, Queued | Running | Waiting),
            T::Resume => matches!(self, Failed | Cancelled | Running | Waiting),
        };
        if !allowed {
            return Err(Refused {
                what: "run",
                from: self.as_str(),
                transition: t.name(),
            });
        }
        Ok(match (t, self) {
            // A resume keeps a waiting run waiting; the orchestrator decides what comes next.
            (T::Resume, Waiting) => (Waiting, EventKind::RunResumed),
            _ => t.target(),
        })
    }

    /// Whether a resume reopens the run (its failed and cancelled steps run again).
    pub fn resume_reopens(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Cancelled)
    }
}

impl RunTransition {
    /// Where the transition leads and the event that records it.
    pub fn target(self) -> (RunStatus, EventKind) {
        match self {
            RunTransition::Wait => (RunStatus::Waiting, EventKind::RunWaiting),
            RunTransition::Continue => (RunStatus::Running, EventKind::RunContinued),
            RunTransition::Succeed => (RunStatus::Succeeded, EventKind::RunSucceeded),
            RunTransition::Fail => (RunStatus::Failed, EventKind::RunFailed),
            RunTransition::Cancel => (RunStatus::Cancelled, EventKind::RunCancelled),
            RunTransition::Resume => (RunStatus::Running, EventKind::RunResumed),
        }
    }

    fn name(self) -> &'static str {
        match self {
            RunTransition::Wait => "wait",
            RunTransition::Continue => "continue",
            RunTransition::Succeed => "succeed",
            RunTransition::Fail => "fail",
            RunTransition::Cancel => "be cancelled",
            RunTransition::Resume => "resume",
        }
    }
}

/// What can happen to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepTransition {
    /// Its tasks are queued (or answered at once, inline or from the cache).
    Start,
    /// Its tasks wait for a decision or a child run.
    Wait,
    Succeed,
    Fail,
    /// Its `if` was false.
    Skip,
    Cancel,
    /// A resume: the step runs again from where it stopped, its unfinished items queued.
    Reopen,
    /// A resume of a step with nothing to requeue: it starts afresh.
    Reset,
}

impl StepStatus {
    /// The one place a step's status changes: the new status and the event that records it
    /// (`None`: the change is recorded by another event, a wait by `approval.requested` or
    /// `workflow.started`, a reopening by `run.resumed`).
    pub fn apply(self, t: StepTransition) -> Result<(StepStatus, Option<EventKind>), Refused> {
        use StepStatus::*;
        use StepTransition as T;
        Ok(match (t, self) {
            (T::Start, Pending) => (Running, Some(EventKind::StepStarted)),
            (T::Wait, Running | Waiting) => (Waiting, None),
            (T::Succeed, Pending | Running | Waiting) => {
                (Succeeded, Some(EventKind::StepSucceeded))
            }
            (T::Fail, Pending | Running | Waiting) => (Failed, Some(EventKind::StepFailed)),
            (T::Skip, Pending) => (Skipped, Some(EventKind::StepSkipped)),
            (T::Cancel, Pending | Running | Waiting) => (Cancelled, Some(EventKind::StepCancelled)),
            (T::Reopen, Failed | Cancelled | Running | Waiting | Pending) => (Running, None),
            (T::Reset, Failed | Cancelled | Running | Waiting | Pending) => (Pending, None),
            _ => {
                return Err(Refused {
                    what: "step",
                    from: self.as_str(),
                    transition: t.name(),
                });
            }
        })
    }
}

impl StepTransition {
    fn name(self) -> &'static str {
        match self {
            StepTransition::Start => "start",
            StepTransition::Wait => "wait",
            StepTransition::Succeed => "succeed",
            StepTransition::Fail => "fail",
            StepTransition::Skip => "be skipped",
            StepTransition::Cancel => "be cancelled",
            StepTransition::Reopen => "reopen",
            StepTransition::Reset => "start afresh",
        }
    }
}

/// What can happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskTransition {
    /// A worker leases the attempt.
    Claim,
    /// Held for a decision or a child run, never leased.
    Hold,
    Succeed,
    Fail,
    /// The attempt failed and the retry policy allows another: queued as attempt+1.
    Retry,
    /// The worker holding it died or stopped answering: queued as attempt+1, outside the
    /// retry policy's count.
    LoseLease,
    Cancel,
    /// A resume puts a failed or cancelled task back in the queue.
    Requeue,
}

impl TaskStatus {
    /// The one place a task's status changes: the new status and the event that records it
    /// (`None`: not recorded as an event; a hold shows as `approval.requested` or
    /// `workflow.started`, a requeue as `run.resumed`).
    pub fn apply(self, t: TaskTransition) -> Result<(TaskStatus, Option<EventKind>), Refused> {
        use TaskStatus::*;
        use TaskTransition as T;
        Ok(match (t, self) {
            (T::Claim, Queued) => (Running, Some(EventKind::TaskStarted)),
            (T::Hold, Queued | Waiting) => (Waiting, None),
            (T::Succeed, Running | Waiting) => (Succeeded, Some(EventKind::TaskSucceeded)),
            (T::Fail, Running | Waiting) => (Failed, Some(EventKind::TaskFailed)),
            (T::Retry | T::LoseLease, Running) => (Queued, Some(EventKind::TaskRetrying)),
            (T::Cancel, Queued | Running | Waiting) => (Cancelled, None),
            (T::Requeue, Failed | Cancelled) => (Queued, None),
            _ => {
                return Err(Refused {
                    what: "task",
                    from: self.as_str(),
                    transition: t.name(),
                });
            }
        })
    }
}

impl TaskTransition {
    fn name(self) -> &'static str {
        match self {
            TaskTransition::Claim => "be claimed",
            TaskTransition::Hold => "be held",
            TaskTransition::Succeed => "succeed",
            TaskTransition::Fail => "fail",
            TaskTransition::Retry => "be retried",
            TaskTransition::LoseLease => "lose its lease",
            TaskTransition::Cancel => "be cancelled",
            TaskTransition::Requeue => "be requeued",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_kind_reads_back_from_its_text() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_value(kind).expect("serialize");
            assert_eq!(json, kind.as_str());
        }
        assert_eq!(EventKind::parse("run.exploded"), None);
    }

    #[test]
    fn ended_runs_change_only_by_a_resume_and_success_is_final() {
        for end in [RunStatus::Failed, RunStatus::Cancelled] {
            assert!(end.resume_reopens());
            assert_eq!(
                end.apply(RunTransition::Resume),
                Ok((RunStatus::Running, EventKind::RunResumed))
            );
            for t in [
                RunTransition::Wait,
                RunTransition::Succeed,
                RunTransition::Fail,
                RunTransition::Cancel,
            ] {
                assert!(end.apply(t).is_err(), "{end:?} {t:?}");
            }
        }
        let succeeded = RunStatus::Succeeded;
        assert!(!succeeded.resume_reopens());
        assert!(succeeded.apply(RunTransition::Resume).is_err());
        assert!(
            TaskStatus::Succeeded
                .apply(TaskTransition::Requeue)
                .is_err()
        );
        assert!(StepStatus::Succeeded.apply(StepTransition::Reopen).is_err());
    }

    #[test]
    fn each_terminal_transition_records_its_end_event() {
        let (status, kind) = RunStatus::Running.apply(RunTransition::Fail).expect("fail");
        assert_eq!(kind.run_end(), Some(status));
        let (status, kind) = StepStatus::Running
            .apply(StepTransition::Succeed)
            .expect("succeed");
        assert_eq!(kind.and_then(EventKind::step_end), Some(status));
        // A lost lease and a retry are both a new attempt in the queue.
        for t in [TaskTransition::Retry, TaskTransition::LoseLease] {
            assert_eq!(
                TaskStatus::Running.apply(t),
                Ok((TaskStatus::Queued, Some(EventKind::TaskRetrying)))
            );
        }
        assert!(TaskStatus::Queued.apply(TaskTransition::Succeed).is_err());
    }
}
