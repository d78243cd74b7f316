//! The shapes of the API's JSON, with their OpenAPI schemas.
//!
//! These are separate from the store's rows on purpose: the API is a contract with clients
//! and `/openapi.json` describes exactly these types, while the store's rows may change.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use weft_core::Plan;
use weft_store::{Event, Run, StepRow, rfc3339};

/// `POST /v1/runs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// A template name: one registered with `POST /v1/templates`, or one the server loaded.
    pub template: String,
    /// The version to run; the newest when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// The template's inputs by name; defaults fill the rest.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, Value>>)]
    pub inputs: Option<Map<String, Value>>,
    /// Limits for this run; each one given replaces the template's `budget:` value.
    #[serde(default)]
    pub budget: Option<BudgetBody>,
}

/// What a run may spend; crossing any limit fails the run with `budget_exceeded`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// Prompt plus completion tokens over all of the run's LLM calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_llm_tokens: Option<u64>,
    /// Estimated cost in US dollars (from the price table in `weft.toml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0)]
    pub max_cost_usd: Option<f64>,
    /// Tool calls (attempts that ran a tool; cache hits are free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tool_calls: Option<u64>,
}

impl BudgetBody {
    /// The budget, or the field that is out of range.
    pub fn check(&self) -> Result<weft_core::plan::Budget, (&'static str, &'static str)> {
        if self.max_llm_tokens == Some(0) {
            return Err(("budget.max_llm_tokens", "must be at least 1"));
        }
        if self.max_tool_calls == Some(0) {
            return Err(("budget.max_tool_calls", "must be at least 1"));
        }
        if let Some(c) = self.max_cost_usd
            && !(c.is_finite() && c > 0.0)
        {
            return Err((
                "budget.max_cost_usd",
                "must be a positive number of US dollars",
            ));
        }
        Ok(weft_core::plan::Budget {
            max_llm_tokens: self.max_llm_tokens,
            max_cost_usd: self.max_cost_usd,
            max_tool_calls: self.max_tool_calls,
        })
    }

    pub fn from_budget(b: &weft_core::plan::Budget) -> Self {
        BudgetBody {
            max_llm_tokens: b.max_llm_tokens,
            max_cost_usd: b.max_cost_usd,
            max_tool_calls: b.max_tool_calls,
        }
    }
}

/// What runs spent, summed over their tasks.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct UsageBody {
    pub llm_prompt_tokens: u64,
    pub llm_completion_tokens: u64,
    /// Prompt plus completion.
    pub llm_tokens: u64,
    /// Estimated from the price table in `weft.toml`; 0 without prices.
    pub cost_usd: f64,
    /// Attempts that ran a tool (cache hits excluded).
    pub tool_calls: u64,
    pub cache_hits: u64,
    pub tasks: u64,
    /// Wall time of the finished tasks, summed.
    pub duration_ms: u64,
}

impl From<&weft_store::usage::RunUsage> for UsageBody {
    fn from(u: &weft_store::usage::RunUsage) -> Self {
        UsageBody {
            llm_prompt_tokens: u.llm_prompt_tokens,
            llm_completion_tokens: u.llm_completion_tokens,
            llm_tokens: u.llm_tokens(),
            cost_usd: u.cost_usd,
            tool_calls: u.tool_calls,
            cache_hits: u.cache_hits,
            tasks: u.tasks,
            duration_ms: u.duration_ms,
        }
    }
}

/// One group of `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageGroupBody {
    /// The UTC day (`2026-11-25`), the template name or the run id.
    pub key: String,
    /// For `group_by=run`: the run's template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub runs: u64,
    #[serde(flatten)]
    pub usage: UsageBody,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    /// `day`, `template` or `run`.
    pub group_by: String,
    /// The start of the period (runs created at or after it), when one was asked for.
    pub since: Option<String>,
    pub groups: Vec<UsageGroupBody>,
    /// The sum over `groups`.
    pub total: UsageBody,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub cancel: String,
    pub resume: String,
    pub stream_tickets: String,
}

impl RunLinks {
    pub fn for_run(id: &str) -> Self {
        let base = format!("/v1/runs/{id}");
        RunLinks {
            events: format!("{base}/events"),
            cancel: format!("{base}/cancel"),
            resume: format!("{base}/resume"),
            stream_tickets: format!("{base}/stream-tickets"),
            self_: base,
        }
    }
}

/// A run without its steps, as lists show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub template: String,
    pub version: String,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From start to end (or to now, while running), in milliseconds.
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// The inputs it was started with.
    pub inputs: Value,
    /// The run that started this one (a `workflow:` step's item, or an action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentBody>,
    /// How many runs this one started (lists with `roots=true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_count: Option<u32>,
    pub links: RunLinks,
}

/// Where a child run comes from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParentBody {
    pub run_id: String,
    /// The parent's `workflow:` step that waits for this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// The action of the parent's template this run was started as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A run this run started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChildBody {
    pub id: String,
    pub template: String,
    pub version: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// An approval that waits for a decision (`POST /v1/runs/{id}/approvals/{step}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WaitingApproval {
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    pub prompt: Option<String>,
    /// How long it waits before its `on_timeout` decides (`1h`), when it has a timeout.
    pub timeout: Option<String>,
}

/// A follow-up the run's template offers (`POST /v1/runs/{id}/actions/{name}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActionBody {
    pub name: String,
    pub template: String,
    pub description: Option<String>,
}

/// `POST /v1/runs/{id}/approvals/{step}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideApproval {
    /// `approve` or `reject`.
    pub decision: Decision,
    /// The item of a `for_each` approval; may be left out when only one item waits.
    #[serde(default)]
    pub item: Option<u32>,
    /// A note kept with the decision.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

/// A recorded decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalBody {
    pub run_id: String,
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    pub approved: bool,
    /// The API key that decided (`timeout` when its timeout decided).
    pub by: String,
    pub comment: Option<String>,
    pub at: String,
}

/// `POST /v1/runs/{id}/actions/{name}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAction {
    /// Inputs of the started template, on top of the action's `with`.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, Value>>)]
    pub inputs: Option<Map<String, Value>>,
}

/// From `started` to `finished` (or to `now` while it runs), in ms.
pub(crate) fn duration(started: Option<i64>, finished: Option<i64>, now: i64) -> Option<i64> {
    started.map(|s| (finished.unwrap_or(now) - s).max(0))
}

impl RunSummary {
    pub fn from_run(run: &Run, now: i64) -> Self {
        RunSummary {
            id: run.id.clone(),
            template: run.template.clone(),
            version: run.version.clone(),
            status: run.status.as_str().into(),
            created_at: rfc3339(run.created_at),
            started_at: run.started_at.map(rfc3339),
            finished_at: run.finished_at.map(rfc3339),
            duration_ms: duration(run.started_at, run.finished_at, now),
            error: run.error.clone(),
            inputs: run.inputs.clone(),
            parent: run.parent.as_ref().map(|p| ParentBody {
                run_id: p.run_id.clone(),
                step: p.step.clone(),
                item: p.item,
                action: p.action.clone(),
            }),
            child_count: None,
            links: RunLinks::for_run(&run.id),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One step of a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepBody {
    pub id: String,
    pub tool: Option<String>,
    /// `tool`, `approval` (waits for a person) or `workflow` (runs another template).
    pub kind: String,
    /// The steps this one waits for: the edges of the run's graph.
    pub needs: Vec<String>,
    /// Whether the step fans out over a list (`for_each`).
    pub fan_out: bool,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub items_total: Option<u32>,
    pub items_done: u32,
    pub items_failed: u32,
    pub cache_hits: u32,
}

impl StepBody {
    pub fn new(s: &StepRow, plan: Option<&Plan>, now: i64) -> Self {
        let planned = plan.and_then(|p| p.step_index(&s.step_id).map(|i| &p.steps[i]));
        StepBody {
            id: s.step_id.clone(),
            tool: s.tool.clone(),
            kind: match planned.map(|st| &st.kind) {
                Some(weft_core::plan::StepKind::Approval(_)) => "approval",
                Some(weft_core::plan::StepKind::Workflow(_)) => "workflow",
                _ => "tool",
            }
            .into(),
            needs: planned
                .map(|st| {
                    st.needs
                        .iter()
                        .filter_map(|&i| plan.and_then(|p| p.steps.get(i)))
                        .map(|n| n.id.clone())
                        .collect()
                })
                .unwrap_or_default(),
            fan_out: planned.is_some_and(|st| st.for_each.is_some()),
            status: s.status.as_str().into(),
            attempts: s.attempts,
            started_at: s.started_at.map(rfc3339),
            finished_at: s.finished_at.map(rfc3339),
            duration_ms: duration(s.started_at, s.finished_at, now),
            output: s.output.clone(),
            error: s.error.clone(),
            items_total: s.items_total,
            items_done: s.items_done,
            items_failed: s.items_failed,
            cache_hits: s.cache_hits,
        }
    }
}

/// A run with its inputs, output and steps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub digest: String,
    pub output: Option<Value>,
    /// The output as sanitized HTML, when it is text (read as markdown).
    pub output_html: Option<String>,
    pub steps: Vec<StepBody>,
    /// Tokens, cost, tool calls and cache hits so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
    /// The limits the run is held to (the template's `budget:` and the request's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetBody>,
    /// Runs this run started: its `workflow:` steps' runs and its actions.
    pub children: Vec<ChildBody>,
    /// Approvals waiting for a decision.
    pub approvals: Vec<WaitingApproval>,
    /// Approvals decided (by a person or a timeout), with their comments.
    pub decisions: Vec<ApprovalBody>,
    /// Follow-ups its template offers once it has succeeded.
    pub actions: Vec<ActionBody>,
}

impl RunDetail {
    pub fn new(run: &Run, steps: &[StepRow], plan: Option<&Plan>, now: i64) -> Self {
        let steps = steps.iter().map(|s| StepBody::new(s, plan, now)).collect();
        RunDetail {
            summary: RunSummary::from_run(run, now),
            digest: run.digest.clone(),
            output: run.output.clone(),
            output_html: crate::api::steps::html_of(run.output.as_ref()),
            steps,
            usage: None,
            budget: run.budget.as_ref().map(BudgetBody::from_budget),
            children: Vec::new(),
            approvals: Vec::new(),
            decisions: Vec::new(),
            actions: plan
                .map(|p| {
                    p.actions
                        .iter()
                        .map(|(name, a)| ActionBody {
                            name: name.clone(),
                            template: a.template.clone(),
                            description: a.description.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// One durable event, as each SSE `data:` line carries it; `seq` is also the SSE `id:`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventBody {
    pub seq: i64,
    pub run_id: String,
    pub ts: String,
    #[schema(value_type = EventKindSchema)]
    pub kind: weft_store::EventKind,
    pub step_id: Option<String>,
    pub item: Option<u32>,
    pub attempt: Option<u32>,
    pub data: Value,
}

/// The schema of `EventBody.kind`: every kind of event, from the lifecycle
/// (`weft_core::lifecycle::EventKind`), so the UI and the widget read the list the server
/// writes rather than keeping their own.
pub struct EventKindSchema;

impl utoipa::PartialSchema for EventKindSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use weft_store::EventKind;
        let mut description = String::from(
            "What an event records. A run ends at `run.succeeded`, `run.failed` or \
             `run.cancelled`; a later `run.resumed` reopens it.\n",
        );
        for kind in EventKind::ALL {
            description.push_str(&format!("\n- `{kind}`: {}", kind.describe()));
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(EventKind::ALL.iter().map(|k| k.as_str())))
            .description(Some(description))
            .into()
    }
}

impl ToSchema for EventKindSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventKind".into()
    }
}

impl From<&Event> for EventBody {
    fn from(e: &Event) -> Self {
        EventBody {
            seq: e.seq,
            run_id: e.run_id.clone(),
            ts: rfc3339(e.ts),
            kind: e.kind,
            step_id: e.step_id.clone(),
            item: e.item,
            attempt: e.attempt,
            data: e.data.clone(),
        }
    }
}

/// A template input, enough to build a form for it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InputBody {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean`, `array` or `object`.
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
    pub default: Option<Value>,
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    pub description: Option<String>,
}

/// One version of a template.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateVersion {
    pub version: String,
    pub digest: String,
    pub description: Option<String>,
    /// `registered` (through the API, this tenant only) or `server` (loaded by `weft serve`).
    pub origin: String,
    pub registered_at: Option<String>,
    pub inputs: Vec<InputBody>,
    pub steps: Vec<String>,
    /// The YAML text.
    pub source: String,
}

impl TemplateVersion {
    pub fn new(plan: &Plan, origin: &str, registered_at: Option<i64>) -> Self {
        TemplateVersion {
            version: plan.version.clone(),
            digest: plan.digest.clone(),
            description: plan.description.clone(),
            origin: origin.into(),
            registered_at: registered_at.map(rfc3339),
            inputs: plan
                .inputs
                .iter()
                .map(|(name, spec)| InputBody {
                    name: name.clone(),
                    ty: serde_json::to_value(spec.ty)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    required: spec.required && spec.default.is_none(),
                    default: spec.default.clone(),
                    allowed: spec.allowed.clone(),
                    description: spec.description.clone(),
                })
                .collect(),
            steps: plan.steps.iter().map(|s| s.id.clone()).collect(),
            source: plan.source.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateSummary {
    pub name: String,
    pub latest_version: String,
    pub description: Option<String>,
    pub versions: Vec<String>,
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateSummary>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateDetail {
    pub name: String,
    /// Oldest first; the last is what a run without `version` uses.
    pub versions: Vec<TemplateVersion>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateRegistered {
    pub name: String,
    pub version: String,
    pub digest: String,
    /// `false` when this exact body was already registered under this version.
    pub created: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamTicketBody {
    /// Single use, read-only, for this run's event stream only.
    pub ticket: String,
    pub expires_at: String,
    /// The stream's URL with the ticket in it, ready for `EventSource`.
    pub events_url: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub store: String,
}

/// The filters and page of `GET /v1/runs`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// Only runs in this status.
    #[param(inline)]
    pub status: Option<RunStatusParam>,
    /// Only runs of this template.
    pub template: Option<String>,
    /// Only runs whose id starts with this text or whose inputs contain it (any case).
    #[param(max_length = 200)]
    pub search: Option<String>,
    /// Only runs created at or after this date (`2026-12-06`, UTC) or RFC 3339 time.
    pub since: Option<String>,
    /// Only runs created before this date (`2026-12-07`, UTC) or RFC 3339 time.
    pub until: Option<String>,
    /// Only top-level runs (no other run started them); each then says how many it started.
    pub roots: Option<bool>,
    /// Only the runs this run started.
    pub parent: Option<String>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatusParam {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

/// The `Idempotency-Key` header of `POST /v1/runs`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyParams {
    /// Makes retries safe: the same key with the same body returns the same run.
    #[serde(rename = "Idempotency-Key")]
    #[param(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub idempotency_key: Option<String>,
}

/// Where an event stream starts, and how it is authorised without a header.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
pub struct EventsParams {
    /// Replay the events after this seq (like `Last-Event-ID`).
    #[param(minimum = 0)]
    #[into_params(parameter_in = Query)]
    pub after: Option<i64>,
    /// A stream ticket, instead of an API key.
    pub ticket: Option<String>,
}

/// `POST /v1/ask`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// What the caller wants, in a sentence ("Find all HVAC businesses in Colorado").
    #[schema(min_length = 1, max_length = 2000)]
    pub text: String,
    /// Only say which template and inputs the sentence means; start nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A template the sentence may also mean.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AskCandidate {
    pub template: String,
    /// 0..1.
    pub confidence: f64,
    pub description: Option<String>,
}

/// The answer to `POST /v1/ask`: `matched` (a run started, or would on a dry run) or `clarify`
/// (nothing started: the question to put to the user, with the candidates).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AskAnswer {
    Matched(AskMatched),
    Clarify(AskClarify),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AskMatched {
    pub template: String,
    pub version: String,
    /// The inputs the run gets (read from the sentence, defaults filled).
    pub inputs: Value,
    /// 0..1.
    pub confidence: f64,
    /// The runners-up, best first.
    pub alternatives: Vec<AskCandidate>,
    /// `offline` or `llm`.
    pub matcher: String,
    pub dry_run: bool,
    /// The run that started (absent on a dry run).
    pub run_id: Option<String>,
    pub run: Option<Box<RunDetail>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AskClarify {
    /// What to ask the user.
    pub question: String,
    /// The templates the sentence may mean, best first.
    pub candidates: Vec<AskCandidate>,
    /// The best guess, if any.
    pub template: Option<String>,
    /// What was read from the sentence so far.
    pub inputs: Map<String, Value>,
    /// Required inputs the sentence did not give.
    pub missing: Vec<String>,
    /// 0..1.
    pub confidence: f64,
    /// `offline` or `llm`.
    pub matcher: String,
}

/// `POST /v1/schedules`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// The template to run; pinned as it is now (its version and source).
    pub template: String,
    /// The version to pin; the newest when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// The template's inputs by name; defaults fill the rest.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, Value>>)]
    pub inputs: Option<Map<String, Value>>,
    /// Five fields (`0 6 * * MON`), or six with seconds first.
    pub cron: String,
    /// The IANA time zone the cron line is read in; `UTC` when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Unique per tenant; the template's name when absent.
    #[serde(default)]
    pub name: Option<String>,
}

/// A schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleBody {
    pub id: String,
    pub name: String,
    pub template: String,
    pub version: String,
    pub cron: String,
    pub timezone: String,
    pub inputs: Value,
    pub paused: bool,
    /// When it fires next (absent while paused).
    pub next_fire_at: Option<String>,
    pub last_fired_at: Option<String>,
    /// Why the last slot did not start a run, if it did not.
    pub last_error: Option<String>,
    pub created_at: String,
}

impl ScheduleBody {
    pub fn new(s: &weft_store::schedules::Schedule) -> Self {
        ScheduleBody {
            id: s.id.clone(),
            name: s.name.clone(),
            template: s.template.clone(),
            version: s.version.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            inputs: s.inputs.clone(),
            paused: s.paused,
            next_fire_at: s.next_fire_at.map(rfc3339),
            last_fired_at: s.last_fired_at.map(rfc3339),
            last_error: s.last_error.clone(),
            created_at: rfc3339(s.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleBody>,
}
