//! The validated, executable form of a template.
//!
//! `load` turns YAML into a [`Plan`]; everything downstream (orchestrator, engine, API) reads
//! only this. A plan holds its own source (and the text of any `template_file` it includes) so a
//! run can be re-planned from the store alone, byte for byte, when it is resumed.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A template, loaded and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The version as written (`3`, `"1.2"`); `"0"` when the template has none.
    pub version: String,
    pub description: Option<String>,
    /// `intent.examples`, for the intent matcher.
    pub intent_examples: Vec<String>,
    pub inputs: IndexMap<String, InputSpec>,
    pub steps: Vec<Step>,
    /// The run's output expression; when absent the run's output is the last step's output.
    pub output: Option<Value>,
    /// Follow-up actions offered after a run: name -> `{template, with, description}`.
    pub actions: IndexMap<String, Action>,
    /// The YAML text this plan was loaded from.
    pub source: String,
    /// Files the template includes (`template_file`), by the path written in the template.
    pub files: BTreeMap<String, String>,
    /// SHA-256 (hex) over `source` and `files`: two plans with one digest are the same template.
    pub digest: String,
    /// The name to print in diagnostics (a path, or `<api>`).
    pub file: String,
    /// `budget:`: limits on what one run may spend; a run request may tighten or loosen them.
    pub budget: Budget,
}

/// The file name of a template a tenant registered through the API, in diagnostics and on its
/// runs: what tells a tenant's own template from the operator's (a path or a built-in).
pub const REGISTERED_FILE: &str = "<api>";

impl Plan {
    /// Whether this is a tenant's registered template rather than one of the operator's
    /// (a folder's or a built-in): the tool policy and confinement apply to it.
    pub fn is_registered(&self) -> bool {
        self.file == REGISTERED_FILE
    }

    /// The index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// What one run may spend before it fails with `budget_exceeded`. Each limit is optional;
/// crossing any one of them ends the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Prompt plus completion tokens over every LLM call of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_llm_tokens: Option<u64>,
    /// The estimated cost (from the price table in `weft.toml`), in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Tool calls (attempts that ran a tool; cache hits are free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u64>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        self.max_llm_tokens.is_none()
            && self.max_cost_usd.is_none()
            && self.max_tool_calls.is_none()
    }

    /// `self` with every limit `over` sets replaced by `over`'s (a run request over the
    /// template's budget).
    pub fn overridden_by(self, over: &Budget) -> Budget {
        Budget {
            max_llm_tokens: over.max_llm_tokens.or(self.max_llm_tokens),
            max_cost_usd: over.max_cost_usd.or(self.max_cost_usd),
            max_tool_calls: over.max_tool_calls.or(self.max_tool_calls),
        }
    }

    /// The first limit that `spent` crosses, as a sentence; `None` while within budget.
    pub fn exceeded(&self, llm_tokens: u64, cost_usd: f64, tool_calls: u64) -> Option<String> {
        if let Some(max) = self.max_llm_tokens
            && llm_tokens > max
        {
            return Some(format!(
                "the run used {llm_tokens} LLM tokens; its budget allows {max}"
            ));
        }
        if let Some(max) = self.max_cost_usd
            && cost_usd > max
        {
            return Some(format!(
                "the run's estimated cost is ${cost_usd:.6}; its budget allows ${max}"
            ));
        }
        if let Some(max) = self.max_tool_calls
            && tool_calls > max
        {
            return Some(format!(
                "the run made {tool_calls} tool calls; its budget allows {max}"
            ));
        }
        None
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    pub template: String,
    #[serde(default)]
    pub with: Value,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
}

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub ty: InputType,
    pub required: bool,
    pub default: Option<Value>,
    /// Allowed values; `enum: us_states` expands to the 50 states and DC.
    pub allowed: Option<Vec<Value>>,
    /// `minimum:` / `maximum:` of an integer or number input (inclusive).
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub description: Option<String>,
    /// `phrases:` of a boolean input: what a sentence says to switch it on ("online booking"),
    /// for the intent matcher.
    pub phrases: Vec<String>,
}

impl InputSpec {
    /// Whether this is an `enum: us_states` input.
    pub fn is_us_states(&self) -> bool {
        self.allowed.as_deref().is_some_and(|allowed| {
            allowed.len() == crate::inputs::US_STATES.len()
                && allowed
                    .iter()
                    .zip(crate::inputs::US_STATES)
                    .all(|(a, s)| a.as_str() == Some(s))
        })
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Call a tool.
    Tool(String),
    /// Pause for a person's decision: `"prompt"` or `{prompt, timeout, on_timeout}`.
    Approval(Value),
    /// Run another template as a child run: `NAME[@VERSION]` (inputs in the step's `with`) or
    /// `{template, version, with}`.
    Workflow(Value),
}

/// Whether a step runs inline in the orchestrator's transaction or through the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Sync,
    Queue,
}

#[derive(Debug, Clone)]
pub struct ForEach {
    /// The expression (usually one `{{ }}`) that yields the list of items.
    pub items: Value,
    /// The name the item has in expressions (`as:`); `item` when not given.
    pub as_name: String,
    /// At most this many items of this step run at once; unlimited (only the global cap) when
    /// `None`.
    pub concurrency: Option<NonZeroU32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: NonZeroU32,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: NonZeroU32::MIN,
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    Exponential {
        initial: Duration,
        factor: f64,
        max: Duration,
        jitter: bool,
    },
    Fixed {
        delay: Duration,
        jitter: bool,
    },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempt + 1`, given the attempt (1-based) that just
    /// failed and a uniform random number in `[0, 1)` for jitter. Jitter is "equal jitter":
    /// the delay is drawn from `[d/2, d]`, so it never collapses to zero.
    pub fn delay(&self, failed_attempt: u32, random01: f64) -> Duration {
        let (base, jitter) = match &self.backoff {
            Backoff::Exponential {
                initial,
                factor,
                max,
                jitter,
            } => {
                let exp = factor.powi(failed_attempt.saturating_sub(1).min(64) as i32);
                let secs = (initial.as_secs_f64() * exp).min(max.as_secs_f64());
                (Duration::from_secs_f64(secs.max(0.0)), *jitter)
            }
            Backoff::Fixed { delay, jitter } => (*delay, *jitter),
        };
        if jitter {
            base.mul_f64(0.5 + 0.5 * random01.clamp(0.0, 1.0))
        } else {
            base
        }
    }
}

/// A step's per-task credential settings (`token:`): each attempt of a queued task gets a
/// token that lives `ttl` (renewable up to [`TokenSpec::MAX_TTL`] from its issue) and allows
/// the callbacks its `scopes` name.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpec {
    pub ttl: Duration,
    pub scopes: Vec<String>,
}

impl TokenSpec {
    /// A token's life when neither the step nor `defaults` says.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3 * 60);
    /// No token lives longer than this from its issue, renewals included.
    pub const MAX_TTL: Duration = Duration::from_secs(30 * 60);

    /// What a task's own callbacks need: reporting progress and storing artifacts.
    pub fn default_scopes() -> Vec<String> {
        vec!["progress".into(), "artifacts:write".into()]
    }

    /// `progress`, `artifacts:write`, `memory:read`, `memory:write` or `secret:NAME`.
    pub fn valid_scope(scope: &str) -> bool {
        match scope.strip_prefix("secret:") {
            Some(name) => {
                let mut bytes = name.bytes();
                (1..=64).contains(&name.len())
                    && bytes
                        .next()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            }
            None => matches!(
                scope,
                "progress" | "artifacts:write" | "memory:read" | "memory:write"
            ),
        }
    }

    /// The names of the secrets these scopes let a task read.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().filter_map(|s| s.strip_prefix("secret:"))
    }
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            ttl: Self::DEFAULT_TTL,
            scopes: Self::default_scopes(),
        }
    }
}

/// The post-processing hooks a step may name in `post:`.
pub const POST_HOOKS: &[&str] = &["artifacts"];

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    /// The tool's input, with `{{ }}` expressions still in it.
    pub with: Value,
    /// Indices (into `Plan::steps`) of the steps this one waits for.
    pub needs: Vec<usize>,
    /// The step written just before this one, which `prev` names.
    pub prev: Option<usize>,
    /// `if:` as written (with or without `{{ }}`).
    pub condition: Option<String>,
    pub for_each: Option<ForEach>,
    pub retry: RetryPolicy,
    /// Per attempt.
    pub timeout: Option<Duration>,
    pub cache_ttl: Option<Duration>,
    pub continue_on_error: bool,
    pub strategy: Strategy,
    pub token: Option<TokenSpec>,
    /// Post-processing hooks (`post: [artifacts]`) run on the tool's output, in order, before
    /// it is recorded. Names are from [`POST_HOOKS`].
    pub post: Vec<String>,
    /// Where the step starts in the file (1-based), for messages about it at run time.
    pub line: usize,
    pub col: usize,
}

impl Step {
    /// The tool name, for tool steps.
    pub fn tool(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Tool(name) => Some(name),
            _ => None,
        }
    }
}
