//! Budgets through the engine and a real SQLite store, with a tool that reports usage the way
//! `llm.chat` does (`Context::usage`): a run within its budget records its usage; a run that
//! crosses it fails with `budget_exceeded` in the transaction that records the crossing
//! attempt, queues nothing more, and its running tool is told to stop by a long-lived worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_engine::{Engine, NewRun, RunOptions, WorkerOptions};
use weft_store::SqlStore;
use weft_store::sqlite::Durability;
use weft_store::{Run, RunStatus, StepStatus};
use weft_tools::{Context, Registry, Tool, ToolsConfig};

/// Reports `tokens` prompt tokens (at $1 per thousand) and sleeps `ms`, noticing a cancel.
#[derive(Default)]
struct Meter {
    calls: AtomicUsize,
    cancelled: AtomicBool,
}

struct MeteredTool(Arc<Meter>);

#[async_trait]
impl Tool for MeteredTool {
    fn name(&self) -> &str {
        "metered"
    }
    fn description(&self) -> &str {
        "test tool: reports LLM usage from its input, then sleeps"
    }
    async fn call(&self, input: Value, ctx: &Context) -> weft_tools::Result<Value> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let tokens = input["tokens"].as_u64().unwrap_or(0);
        ctx.usage
            .add_llm(tokens, 1, Some(tokens as f64 / 1000.0 + 0.000_001));
        let ms = input["ms"].as_u64().unwrap_or(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!({"tokens": tokens})),
            _ = ctx.cancel.cancelled() => {
                self.0.cancelled.store(true, Ordering::SeqCst);
                Err(weft_tools::Error::Cancelled)
            }
        }
    }
}

struct Harness {
    engine: Engine,
    meter: Arc<Meter>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
        .await
        .expect("open store");
    let meter = Arc::new(Meter::default());
    let mut tools = Registry::with_builtins(&ToolsConfig::default());
    tools.insert(Arc::new(MeteredTool(meter.clone())));
    Harness {
        engine: Engine::new(Arc::new(store), Arc::new(tools)),
        meter,
        _dir: dir,
    }
}

impl Harness {
    async fn start(&self, yaml: &str, options: RunOptions) -> Run {
        let plan = weft_core::load::load_str(yaml, "test.yaml", None, &**self.engine.tools())
            .unwrap_or_else(|d| panic!("template does not load:\n{d}"));
        self.engine
            .create_run_with(
                NewRun {
                    tenant: "default".into(),
                    plan: Arc::new(plan),
                    inputs: json!({}),
                    idempotency_key: None,
                    base_dir: None,
                },
                options,
            )
            .await
            .expect("create run")
    }

    async fn until_ended(&self, run_id: &str) -> Run {
        loop {
            let run = self
                .engine
                .store()
                .run("default", run_id)
                .await
                .expect("read run")
                .expect("run exists");
            if run.status.is_terminal() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

const SPEND: &str = r#"
name: spend
budget: { max_llm_tokens: 100 }
steps:
  - id: slow
    tool: metered
    with: { ms: 60000 }
  - id: items
    needs: []
    for_each: "{{ [1, 2, 3, 4, 5] }}"
    concurrency: 1
    tool: metered
    with: { tokens: 30 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_the_budget_fails_the_run_and_stops_its_running_tool() {
    let h = harness().await;
    let run = h.start(SPEND, RunOptions::default()).await;
    // A long-lived worker (as in `weft serve`): the slow call must stop because the run
    // failed, not because the worker shut down.
    let stop = CancellationToken::new();
    let worker = h.engine.worker(WorkerOptions::default());
    let handle = tokio::spawn(worker.run(stop.clone()));
    let ended = h.until_ended(&run.id).await;
    for _ in 0..400 {
        if h.meter.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        h.meter.cancelled.load(Ordering::SeqCst),
        "the running tool never saw the cancel"
    );
    stop.cancel();
    handle.await.expect("worker joins").expect("worker ok");

    assert_eq!(ended.status, RunStatus::Failed);
    // Items report 31 tokens each (30 prompt + 1 completion): the fourth crosses 100, and
    // the fifth is never called (one at a time, and the crossing commit cancelled it).
    assert_eq!(
        ended.error.as_deref(),
        Some("budget_exceeded: the run used 124 LLM tokens; its budget allows 100")
    );
    assert_eq!(h.meter.calls.load(Ordering::SeqCst), 5, "slow + four items");
    let store = h.engine.store();
    let steps = store.steps(&run.id).await.expect("steps");
    let status = |id: &str| {
        steps
            .iter()
            .find(|s| s.step_id == id)
            .map(|s| s.status)
            .expect("step")
    };
    assert_eq!(status("slow"), StepStatus::Cancelled);
    assert_eq!(status("items"), StepStatus::Cancelled);
    let used = store.run_usage(&run.id).await.expect("usage");
    assert_eq!(used.llm_prompt_tokens, 4 * 30);
    let events = store.events(&run.id, 0, 1000).await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let crossed = kinds
        .iter()
        .position(|k| *k == "run.budget_exceeded")
        .expect("run.budget_exceeded");
    assert_eq!(events[crossed].data["usage"]["llm_prompt_tokens"], 120);
    assert_eq!(kinds.last(), Some(&"run.failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_within_its_budget_succeeds_and_a_request_can_raise_the_template_s_limit() {
    let h = harness().await;
    let yaml = SPEND.replace("    with: { ms: 60000 }", "    with: { ms: 1, tokens: 10 }");
    let budget = weft_core::plan::Budget {
        max_llm_tokens: Some(1000),
        max_cost_usd: Some(1.0),
        ..Default::default()
    };
    let run = h
        .start(
            &yaml,
            RunOptions {
                budget: Some(budget),
            },
        )
        .await;
    assert_eq!(run.budget, Some(budget));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(h.engine.worker(WorkerOptions::default()).run(stop.clone()));
    let ended = h.until_ended(&run.id).await;
    stop.cancel();
    handle.await.expect("worker joins").expect("worker ok");
    assert_eq!(ended.status, RunStatus::Succeeded, "{:?}", ended.error);
    let used = h.engine.store().run_usage(&run.id).await.expect("usage");
    assert_eq!(used.llm_prompt_tokens, 10 + 5 * 30);
    assert_eq!(used.llm_completion_tokens, 6);
    assert!(
        (used.cost_usd - (0.16 + 6e-6)).abs() < 1e-9,
        "{}",
        used.cost_usd
    );
    assert_eq!(used.tool_calls, 6);
}
