//! The engine's side of the lifecycle (`weft_core::lifecycle`): every change of a run's or a
//! step's status goes through [`transition_run`] or [`transition_step`], and the event that
//! records it is built here. `apply.rs` (results), `waits.rs` (approvals, child runs) and
//! `control.rs` (create, cancel, resume) all change statuses through this module, and it
//! imports none of them.

use serde_json::{Value, json};
use weft_core::lifecycle::{EventKind, RunTransition, StepTransition};
use weft_core::orchestrator::StepState;
use weft_store::{NewEvent, RunStatus, StepRow, Tx};

use crate::Result;

pub(crate) fn event(run_id: &str, kind: EventKind, step: Option<&str>, data: Value) -> NewEvent {
    NewEvent {
        run_id: run_id.to_string(),
        kind,
        step_id: step.map(str::to_string),
        item: None,
        attempt: None,
        data,
    }
}

/// Moves a run through the lifecycle (`RunStatus::apply`): the status to record and the event
/// kind that records it. A transition the run's state does not allow is a bug: it is logged
/// (and fails debug builds), and the transition's target is recorded all the same.
pub(crate) fn transition_run(
    run_id: &str,
    from: RunStatus,
    t: RunTransition,
) -> (RunStatus, EventKind) {
    from.apply(t).unwrap_or_else(|refused| {
        tracing::error!(%refused, run_id, "Refused a run transition.");
        debug_assert!(false, "{refused}: {run_id}");
        t.target()
    })
}

/// Cancels every task and step of a run that has not ended.
pub(crate) async fn cancel_rest(
    tx: &mut dyn Tx,
    run_id: &str,
    steps: &mut [StepRow],
) -> Result<()> {
    tx.cancel_tasks(run_id, None).await?;
    let mut events = Vec::new();
    for s in steps.iter_mut() {
        if !s.status.is_terminal() {
            if let Some(kind) = finish_step(s, StepTransition::Cancel, None, None) {
                events.push(event(run_id, kind, Some(&s.step_id), json!({})));
            }
            tx.update_step(s).await?;
        }
    }
    tx.append_events(&events).await?;
    Ok(())
}

/// Moves a step through the lifecycle (`StepStatus::apply`); returns the event kind that
/// records the change. A transition the step's state does not allow is a bug: it is logged
/// (and fails debug builds) and the step is left as it was.
pub(crate) fn transition_step(s: &mut StepRow, t: StepTransition) -> Option<EventKind> {
    match s.status.apply(t) {
        Ok((status, kind)) => {
            s.status = status;
            kind
        }
        Err(refused) => {
            tracing::error!(%refused, run_id = %s.run_id, step = %s.step_id, "Refused a step transition.");
            debug_assert!(false, "{refused}: {}/{}", s.run_id, s.step_id);
            None
        }
    }
}

/// Ends a step (succeed, fail, skip, cancel) with its output and error; returns the event
/// kind that records the end.
pub(crate) fn finish_step(
    s: &mut StepRow,
    t: StepTransition,
    output: Option<Value>,
    error: Option<String>,
) -> Option<EventKind> {
    let kind = transition_step(s, t)?;
    s.output = output;
    s.error = error;
    s.finished_at = Some(crate::wall_ms());
    Some(kind)
}

/// Ends a step and records its end with what a reader shows: error, attempts, duration,
/// items and cache hits.
pub(crate) fn end_step(
    events: &mut Vec<NewEvent>,
    s: &mut StepRow,
    t: StepTransition,
    output: Option<Value>,
    error: Option<String>,
) {
    let Some(kind) = finish_step(s, t, output, error) else {
        return;
    };
    let duration = match (s.started_at, s.finished_at) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    events.push(event(
        &s.run_id,
        kind,
        Some(&s.step_id),
        json!({"error": s.error, "attempts": s.attempts, "duration_ms": duration,
               "items": s.items_total, "cache_hits": s.cache_hits}),
    ));
}

pub(crate) fn state_of(s: &StepRow) -> StepState<'_> {
    match &s.output {
        Some(output) => StepState {
            status: s.status,
            output,
            error: s.error.as_deref(),
            attempts: s.attempts,
        },
        None => StepState::without_output(s.status, s.error.as_deref(), s.attempts),
    }
}
