//! `/v1/runs/{id}/steps/{step}`, its items, and `/v1/runs/{id}/history`: what the run page's
//! step drill-down and event timeline read. A step's attempts are read back from its events
//! (`task.started`, `task.retrying`, `task.succeeded`, `task.failed`, `task.cache_hit`), so
//! every try shows with its error and why it ended, even those a retry replaced.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use weft_store::{Event, EventKind, StepRow, Task, TaskStatus, rfc3339};

use super::dto::{EventBody, StepBody, duration};
use crate::AppState;
use crate::auth::{Caller, now_ms};
use crate::problem::{ApiResult, Kind, Problem};

/// Events read per store call while collecting a step's attempts or a page of history.
const EVENT_PAGE: u32 = 2000;
/// A step's attempts are read from at most this many of the run's events.
const MAX_EVENTS_SCANNED: usize = 200_000;
/// How many characters of an item's input the items table shows.
const ITEM_SUMMARY_CHARS: usize = 120;

/// One try of a task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptBody {
    /// 1 for the first try.
    pub attempt: u32,
    /// `running`, `succeeded`, `failed` or `retried` (it failed and another try followed).
    pub status: String,
    /// Why it ended when it did not succeed: `error`, `timeout`, `lease_expired` (its worker
    /// stopped answering; not counted as a try) or `shutdown`.
    pub reason: Option<String>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

/// One task of a step (the step itself, or one item of a fan-out) with everything it did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskDetail {
    pub step: String,
    /// The item's index in a fan-out; absent for a step without `for_each`.
    pub item: Option<u32>,
    pub tool: String,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The input the tool was called with, expressions rendered.
    pub input: Value,
    pub output: Option<Value>,
    /// The output as sanitized HTML, when it is markdown text.
    pub output_html: Option<String>,
    pub error: Option<String>,
    /// The end of a failed command's stderr (the part of the error after the exit status).
    pub stderr_tail: Option<String>,
    /// Every try, oldest first.
    pub attempts: Vec<AttemptBody>,
    pub max_attempts: u32,
    /// Tries cut short by a lost worker; they do not count against `max_attempts`.
    pub lease_losses: u32,
    /// Whether the output came from the step's cache instead of a call.
    pub cache_hit: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    pub llm_tokens: u64,
    /// Estimated from the price table in `weft.toml`; 0 without prices.
    pub cost_usd: f64,
}

/// One row of a fan-out's items table.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemRow {
    pub index: u32,
    /// What sets this item apart: the parts of its input that differ between the items (the
    /// `for_each` item as the step used it), shortened to one line.
    pub item: String,
    pub status: String,
    pub attempts: u32,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub cache_hit: bool,
}

/// A step as its drill-down shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepDetail {
    #[serde(flatten)]
    pub step: StepBody,
    /// The step's output as sanitized HTML, when it is markdown text.
    pub output_html: Option<String>,
    /// A step without `for_each`: its one task.
    pub task: Option<TaskDetail>,
    /// A fan-out: its items, the failed ones first, then by index.
    pub items: Vec<ItemRow>,
    /// Tokens and cost of all the step's tasks.
    pub llm_tokens: u64,
    pub cost_usd: f64,
}

/// A page of `GET /v1/runs/{id}/history`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// The filters and page of `GET /v1/runs/{id}/history`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only events after this `seq`.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Only events whose kind is this (`task.failed`) or starts with it followed by a dot
    /// (`task`, `approval`); several separated by commas.
    pub kind: Option<String>,
    /// Only events of this step.
    pub step: Option<String>,
    /// Page size (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The stderr a failed `command` put at the end of its error
/// (`command: `sh` exited with code 3: TAIL`).
pub(crate) fn stderr_tail(tool: &str, error: Option<&str>) -> Option<String> {
    if tool != "command" {
        return None;
    }
    let error = error?;
    let rest = error.strip_prefix("command: `")?;
    let after_program = &rest[rest.find("` ")? + 2..];
    let (_, tail) = after_program.split_once(": ")?;
    Some(tail.to_string())
}

/// Reads a task's tries back from the run's events about it.
fn attempts_of(task: &Task, events: &[Event], now: i64) -> Vec<AttemptBody> {
    type Try = (AttemptBody, Option<i64>, Option<i64>);
    fn at(n: u32, tries: &mut Vec<Try>) -> usize {
        if let Some(i) = tries.iter().position(|t| t.0.attempt == n) {
            return i;
        }
        tries.push((
            AttemptBody {
                attempt: n,
                status: "running".into(),
                reason: None,
                error: None,
                started_at: None,
                finished_at: None,
                duration_ms: None,
            },
            None,
            None,
        ));
        tries.len() - 1
    }
    let mut tries: Vec<Try> = Vec::new();
    for e in events {
        let n = e.attempt.unwrap_or(task.attempt.max(1));
        let text = |k: &str| e.data.get(k).and_then(Value::as_str).map(str::to_string);
        match e.kind {
            EventKind::TaskStarted => {
                let i = at(n, &mut tries);
                tries[i].1 = Some(e.ts);
            }
            EventKind::TaskRetrying => {
                let i = at(n, &mut tries);
                tries[i].0.status = "retried".into();
                tries[i].0.error = text("error");
                tries[i].0.reason = text("reason").or_else(|| Some("error".into()));
                tries[i].2 = Some(e.ts);
            }
            EventKind::TaskSucceeded => {
                let i = at(n, &mut tries);
                tries[i].0.status = "succeeded".into();
                tries[i].2 = Some(e.ts);
                tries[i].0.duration_ms = e.data.get("duration_ms").and_then(Value::as_i64);
            }
            EventKind::TaskFailed => {
                let i = at(n, &mut tries);
                tries[i].0.status = "failed".into();
                tries[i].0.error = text("error");
                tries[i].0.reason = text("reason").or_else(|| Some("error".into()));
                tries[i].2 = Some(e.ts);
                tries[i].0.duration_ms = e.data.get("duration_ms").and_then(Value::as_i64);
            }
            _ => {}
        }
    }
    tries.sort_by_key(|t| t.0.attempt);
    let live = matches!(task.status, TaskStatus::Running);
    tries
        .into_iter()
        .map(|(mut a, started, finished)| {
            if a.status == "running" && !live {
                // A try whose end no event tells (cancelled with its run).
                a.status = task.status.as_str().into();
            }
            a.started_at = started.map(rfc3339);
            a.finished_at = finished.map(rfc3339);
            if a.duration_ms.is_none() {
                a.duration_ms = match (started, finished) {
                    (Some(s), Some(f)) => Some((f - s).max(0)),
                    (Some(s), None) if a.status == "running" => Some((now - s).max(0)),
                    _ => None,
                };
            }
            a
        })
        .collect()
}

/// A text output as sanitized HTML (it is read as markdown).
pub(crate) fn html_of(output: Option<&Value>) -> Option<String> {
    output
        .and_then(Value::as_str)
        .map(crate::markdown::to_safe_html)
}

fn task_detail(task: &Task, events: &[Event], now: i64) -> TaskDetail {
    let mine: Vec<Event> = events
        .iter()
        .filter(|e| e.step_id.as_deref() == Some(task.step_id.as_str()) && e.item == task.item)
        .cloned()
        .collect();
    TaskDetail {
        step: task.step_id.clone(),
        item: task.item,
        tool: task.tool.clone(),
        status: task.status.as_str().into(),
        input: task.input.clone(),
        output: task.output.clone(),
        output_html: html_of(task.output.as_ref()),
        error: task.error.clone(),
        stderr_tail: stderr_tail(&task.tool, task.error.as_deref()),
        attempts: if task.cache_hit {
            Vec::new()
        } else {
            attempts_of(task, &mine, now)
        },
        max_attempts: task.max_attempts,
        lease_losses: task.lease_losses,
        cache_hit: task.cache_hit,
        started_at: task.started_at.map(rfc3339),
        finished_at: task.finished_at.map(rfc3339),
        duration_ms: duration(task.started_at, task.finished_at, now),
        llm_prompt_tokens: task.llm_prompt_tokens,
        llm_completion_tokens: task.llm_completion_tokens,
        llm_tokens: task.llm_prompt_tokens + task.llm_completion_tokens,
        cost_usd: task.cost_usd,
    }
}

/// Every leaf of a JSON value with its path (`argv[4]`, `with.city`).
fn leaves(value: &Value, path: &mut String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                leaves(v, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                leaves(v, path, out);
                path.truncate(len);
            }
        }
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

/// What tells each item of a fan-out apart: the leaves of its input that differ between the
/// items (the `for_each` item as the step used it), or its whole input when nothing differs.
fn item_labels(tasks: &[Task]) -> Vec<String> {
    let all: Vec<Vec<(String, Value)>> = tasks
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            leaves(&t.input, &mut String::new(), &mut out);
            out
        })
        .collect();
    let mut varying: Vec<&str> = Vec::new();
    if let Some(first) = all.first() {
        for (path, value) in first {
            let differs = all.iter().any(|leaves| {
                leaves
                    .iter()
                    .find(|(p, _)| p == path)
                    .is_none_or(|(_, v)| v != value)
            });
            if differs {
                varying.push(path);
            }
        }
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    tasks
        .iter()
        .zip(&all)
        .map(|(t, leaves)| {
            let picked: Vec<String> = leaves
                .iter()
                .filter(|(p, _)| varying.contains(&p.as_str()))
                .map(|(p, v)| {
                    if varying.len() == 1 {
                        text(v)
                    } else {
                        format!("{p}={}", text(v))
                    }
                })
                .collect();
            if picked.is_empty() || tasks.len() < 2 {
                shorten(&text(&t.input))
            } else {
                shorten(&picked.join(" "))
            }
        })
        .collect()
}

/// One line of at most [`ITEM_SUMMARY_CHARS`].
fn shorten(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > ITEM_SUMMARY_CHARS {
        let cut: String = line.chars().take(ITEM_SUMMARY_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        line
    }
}

fn item_rows(tasks: &[Task], now: i64) -> Vec<ItemRow> {
    let labels = item_labels(tasks);
    let mut rows: Vec<ItemRow> = tasks
        .iter()
        .zip(labels)
        .map(|(t, item)| ItemRow {
            index: t.item.unwrap_or(0),
            item,
            status: t.status.as_str().into(),
            attempts: t.attempt,
            duration_ms: duration(t.started_at, t.finished_at, now),
            error: t.error.clone(),
            cache_hit: t.cache_hit,
        })
        .collect();
    rows.sort_by_key(|r| (r.status != "failed", r.index));
    rows
}

/// A run of the caller's tenant (another tenant's is as missing as a missing one) and the
/// step of it named `step`.
async fn own_step(
    state: &AppState,
    caller: &Caller,
    id: &str,
    step: &str,
) -> ApiResult<(weft_store::Run, StepRow)> {
    let run = state
        .store
        .run(&caller.tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found("run", id))?;
    let row = state
        .store
        .steps(&run.id)
        .await?
        .into_iter()
        .find(|s| s.step_id == step)
        .ok_or_else(|| Problem::not_found("step", step))?;
    Ok((run, row))
}

/// The run's events about one step, oldest first (at most [`MAX_EVENTS_SCANNED`] are read).
async fn step_events(state: &AppState, run_id: &str, step: &str) -> ApiResult<Vec<Event>> {
    let mut out = Vec::new();
    let mut after = 0;
    let mut scanned = 0;
    loop {
        let page = state.store.events(run_id, after, EVENT_PAGE).await?;
        let full = page.len() as u32 == EVENT_PAGE;
        scanned += page.len();
        if let Some(last) = page.last() {
            after = last.seq;
        }
        out.extend(
            page.into_iter()
                .filter(|e| e.step_id.as_deref() == Some(step) && e.kind.is_task()),
        );
        if !full || scanned >= MAX_EVENTS_SCANNED {
            return Ok(out);
        }
    }
}

async fn step_tasks(state: &AppState, run_id: &str, step: &str) -> ApiResult<Vec<Task>> {
    Ok(state
        .store
        .tasks(run_id)
        .await?
        .into_iter()
        .filter(|t| t.step_id == step)
        .collect())
}

/// A step of a run: its status and timing, and either its one task in full (input, output,
/// every attempt with its error and reason, stderr tail, cache hit, tokens and cost) or, for
/// a fan-out, its items as a table, the failed ones first.
#[utoipa::path(get, path = "/v1/runs/{id}/steps/{step}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id"),
        ("step" = String, Path, description = "The step id")),
    responses((status = 200, body = StepDetail), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn get_step(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
) -> ApiResult<Json<StepDetail>> {
    let (run, row) = own_step(&state, &caller, &id, &step).await?;
    let plan = state.engine.plan_for(&run).ok();
    let now = now_ms();
    let tasks = step_tasks(&state, &run.id, &step).await?;
    let fan_out = row.items_total.is_some() || tasks.iter().any(|t| t.item.is_some());
    let task = match (fan_out, tasks.first()) {
        (false, Some(t)) => {
            let events = step_events(&state, &run.id, &step).await?;
            Some(task_detail(t, &events, now))
        }
        _ => None,
    };
    Ok(Json(StepDetail {
        step: StepBody::new(&row, plan.as_deref(), now),
        output_html: html_of(row.output.as_ref()),
        task,
        items: if fan_out {
            item_rows(&tasks, now)
        } else {
            Vec::new()
        },
        llm_tokens: tasks
            .iter()
            .map(|t| t.llm_prompt_tokens + t.llm_completion_tokens)
            .sum(),
        cost_usd: tasks.iter().map(|t| t.cost_usd).sum(),
    }))
}

/// One item of a fan-out step, in full: input, output, every attempt with its error and
/// reason, stderr tail, cache hit, tokens and cost.
#[utoipa::path(get, path = "/v1/runs/{id}/steps/{step}/items/{item}", tag = "runs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id"),
        ("step" = String, Path, description = "The step id"),
        ("item" = u32, Path, description = "The item's index")),
    responses((status = 200, body = TaskDetail), (status = 401, body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "`item` is not an index (WEFT-E204)", body = Problem)))]
pub async fn get_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, step, item)): Path<(String, String, String)>,
) -> ApiResult<Json<TaskDetail>> {
    let index: u32 = item.parse().map_err(|_| {
        Problem::field(
            Kind::Validation,
            "item",
            "must be an item's index (0, 1, …)",
        )
    })?;
    let (run, _) = own_step(&state, &caller, &id, &step).await?;
    let tasks = step_tasks(&state, &run.id, &step).await?;
    let task = tasks
        .iter()
        .find(|t| t.item == Some(index))
        .ok_or_else(|| Problem::not_found("item", &item))?;
    let events = step_events(&state, &run.id, &step).await?;
    Ok(Json(task_detail(task, &events, now_ms())))
}

/// Whether `kind` passes a `kind=` filter of exact kinds and prefixes.
fn kind_matches(filter: &[&str], kind: &str) -> bool {
    filter.is_empty()
        || filter.iter().any(|f| {
            kind == *f
                || kind
                    .strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// The run's durable events as JSON pages, oldest first, filtered by kind and step: the
/// run page's timeline (`/events` is the same log as a live stream).
#[utoipa::path(get, path = "/v1/runs/{id}/history", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run id"), HistoryParams),
    responses((status = 200, body = EventPage), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn get_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<EventPage>> {
    let mut after = 0i64;
    let mut limit = 200u32;
    let mut kinds: Vec<String> = Vec::new();
    let mut step: Option<String> = None;
    for (name, value) in &params {
        match name.as_str() {
            "after" => {
                after = value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    Problem::field(
                        Kind::Validation,
                        "after",
                        "must be an event's seq (0 or more)",
                    )
                })?
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| Problem::field(Kind::Validation, "limit", "must be 1 to 1000"))?
            }
            "kind" => {
                kinds = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "step" => step = Some(value.clone()),
            other => {
                return Err(Problem::field(
                    Kind::Validation,
                    other,
                    "unknown parameter; expected after, kind, step or limit",
                ));
            }
        }
    }
    let run = state
        .store
        .run(&caller.tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found("run", &id))?;
    let filter: Vec<&str> = kinds.iter().map(String::as_str).collect();
    let mut events = Vec::new();
    let mut scanned = 0usize;
    let mut cursor = after;
    let mut more = true;
    // Filtering happens here, so a page may need several reads; the bound keeps one request
    // from reading a huge run's whole log when nothing matches.
    while events.len() < limit as usize && more && scanned < MAX_EVENTS_SCANNED {
        let page = state.store.events(&run.id, cursor, EVENT_PAGE).await?;
        more = page.len() as u32 == EVENT_PAGE;
        scanned += page.len();
        for e in page {
            cursor = e.seq;
            if kind_matches(&filter, e.kind.as_str())
                && step
                    .as_deref()
                    .is_none_or(|s| e.step_id.as_deref() == Some(s))
            {
                events.push(EventBody::from(&e));
                if events.len() == limit as usize {
                    break;
                }
            }
        }
    }
    let next_after = (events.len() == limit as usize || (more && scanned >= MAX_EVENTS_SCANNED))
        .then_some(cursor);
    Ok(Json(EventPage { events, next_after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_is_what_follows_the_exit_status() {
        assert_eq!(
            stderr_tail(
                "command",
                Some("command: `sh` exited with code 3: the widget exploded: code 42")
            )
            .as_deref(),
            Some("the widget exploded: code 42")
        );
        assert_eq!(
            stderr_tail("command", Some("command: `sh` exited with code 3")),
            None
        );
        assert_eq!(stderr_tail("http", Some("command: `x` y: z")), None);
    }

    #[test]
    fn an_item_is_labelled_by_what_differs_between_the_items() {
        let task = |item: u32, input: Value| Task {
            id: i64::from(item),
            run_id: "r".into(),
            tenant: "t".into(),
            step_id: "s".into(),
            item: Some(item),
            tool: "command".into(),
            input,
            status: TaskStatus::Succeeded,
            attempt: 1,
            max_attempts: 1,
            lease_losses: 0,
            lease_owner: None,
            lease_expires: None,
            output: None,
            error: None,
            cache_key: None,
            cache_hit: false,
            llm_prompt_tokens: 0,
            llm_completion_tokens: 0,
            cost_usd: 0.0,
            started_at: None,
            finished_at: None,
        };
        let one = |fruit: &str| serde_json::json!({"argv": ["sh", "-c", "echo $1", "sh", fruit]});
        let tasks = [task(0, one("apple")), task(1, one("cherry"))];
        assert_eq!(item_labels(&tasks), ["apple", "cherry"]);
        let two = |city: &str, n: u32| serde_json::json!({"city": city, "n": n, "niche": "HVAC"});
        let tasks = [task(0, two("Denver", 1)), task(1, two("Boulder", 2))];
        assert_eq!(item_labels(&tasks), ["city=Denver n=1", "city=Boulder n=2"]);
        let tasks = [task(0, serde_json::json!({"url": "https://a.example"}))];
        assert_eq!(item_labels(&tasks), ["{\"url\":\"https://a.example\"}"]);
    }

    #[test]
    fn kind_filters_take_exact_kinds_and_prefixes() {
        assert!(kind_matches(&[], "run.started"));
        assert!(kind_matches(&["task"], "task.failed"));
        assert!(kind_matches(&["task.failed"], "task.failed"));
        assert!(!kind_matches(&["task"], "tasks.x"));
        assert!(!kind_matches(&["run"], "task.failed"));
    }
}
