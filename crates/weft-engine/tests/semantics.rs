//! What a template author relies on, checked through the engine and a real SQLite store:
//! chains, DAGs, `prev`, `if`, fan-out order and caps, retries, timeouts, cache, cancel.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_engine::{Engine, NewRun, WorkerOptions};
use weft_store::SqlStore;
use weft_store::sqlite::Durability;
use weft_store::{Run, RunStatus, StepRow, StepStatus};
use weft_tools::{Context, Registry, Tool, ToolsConfig};

/// Records how many calls overlap and how many there were; sleeps `ms` (input) each call.
#[derive(Default)]
struct Probe {
    now: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
    cancelled: AtomicBool,
    /// Fail this many first calls (transiently).
    fail_first: AtomicUsize,
    log: Mutex<Vec<(Value, u32)>>,
    /// Fail (permanently) every call whose `value` equals this.
    fail_value: Mutex<Option<Value>>,
}

struct ProbeTool(Arc<Probe>);

#[async_trait]
impl Tool for ProbeTool {
    fn name(&self) -> &str {
        "probe"
    }
    fn description(&self) -> &str {
        "test tool: sleeps, counts overlap, echoes its input"
    }
    async fn call(&self, input: Value, ctx: &Context) -> weft_tools::Result<Value> {
        let p = &self.0;
        p.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut log) = p.log.lock() {
            log.push((input.clone(), ctx.attempt));
        }
        let running = p.now.fetch_add(1, Ordering::SeqCst) + 1;
        p.peak.fetch_max(running, Ordering::SeqCst);
        if let Some(n) = input["progress"].as_u64() {
            for done in 1..=n {
                ctx.progress.report(weft_tools::ProgressUpdate {
                    done,
                    total: Some(n),
                    message: Some(format!("{done} of {n}")),
                });
                // Let the worker commit each update before the next arrives.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        let ms = input["ms"].as_u64().unwrap_or(0);
        let result = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
            _ = ctx.cancel.cancelled() => {
                p.cancelled.store(true, Ordering::SeqCst);
                Err(weft_tools::Error::Cancelled)
            }
        };
        p.now.fetch_sub(1, Ordering::SeqCst);
        result?;
        let failing = p
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let poisoned = p
            .fail_value
            .lock()
            .map(|v| v.as_ref() == Some(&input["value"]))
            .unwrap_or(false);
        if poisoned {
            return Err(weft_tools::Error::Permanent(format!(
                "{} is poisoned",
                input["value"]
            )));
        }
        if failing || input["fail"].as_bool() == Some(true) {
            return Err(weft_tools::Error::Failed(format!(
                "probe failed on attempt {}",
                ctx.attempt
            )));
        }
        Ok(json!({"echo": input["value"], "attempt": ctx.attempt}))
    }
}

struct Harness {
    engine: Engine,
    probe: Arc<Probe>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
        .await
        .expect("open store");
    let probe = Arc::new(Probe::default());
    let mut tools = Registry::with_builtins(&ToolsConfig::default());
    tools.insert(Arc::new(ProbeTool(probe.clone())));
    Harness {
        engine: Engine::new(Arc::new(store), Arc::new(tools)),
        probe,
        _dir: dir,
    }
}

impl Harness {
    async fn run(&self, yaml: &str, inputs: Value) -> (Run, Vec<StepRow>) {
        self.run_with(yaml, inputs, 10).await
    }

    async fn start(&self, yaml: &str, inputs: Value) -> Run {
        let plan = weft_core::load::load_str(yaml, "test.yaml", None, &**self.engine.tools())
            .unwrap_or_else(|d| panic!("template does not load:\n{d}"));
        let inputs = match inputs {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        let inputs = weft_core::inputs::resolve_inputs(&plan, &inputs).expect("inputs");
        self.engine
            .create_run(NewRun {
                tenant: "default".into(),
                plan: Arc::new(plan),
                inputs,
                idempotency_key: None,
                base_dir: None,
            })
            .await
            .expect("create run")
    }

    async fn run_with(&self, yaml: &str, inputs: Value, concurrency: usize) -> (Run, Vec<StepRow>) {
        let run = self.start(yaml, inputs).await;
        self.drive(&run.id, concurrency).await
    }

    async fn drive(&self, run_id: &str, concurrency: usize) -> (Run, Vec<StepRow>) {
        let stop = CancellationToken::new();
        let worker = self.engine.worker(WorkerOptions {
            concurrency,
            ..WorkerOptions::default()
        });
        let handle = tokio::spawn(worker.run(stop.clone()));
        let store = self.engine.store();
        let run = loop {
            let run = store
                .run("default", run_id)
                .await
                .expect("read run")
                .expect("run exists");
            if run.status.is_terminal() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        stop.cancel();
        handle.await.expect("worker joins").expect("worker ok");
        let steps = store.steps(run_id).await.expect("steps");
        (run, steps)
    }
}

fn step<'a>(steps: &'a [StepRow], id: &str) -> &'a StepRow {
    steps
        .iter()
        .find(|s| s.step_id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

#[tokio::test]
async fn a_chain_passes_outputs_along_with_their_types() {
    let h = harness().await;
    let (run, steps) = h
        .run(
            r#"
name: chain
inputs:
  n: { type: integer }
steps:
  - id: numbers
    tool: transform
    with: { data: "{{ input.n }}", jq: "[range(.)]" }
  - id: doubled
    tool: transform
    with: { data: "{{ steps.numbers.output }}", jq: "map(. * 2)" }
  - id: total
    tool: transform
    with: { data: "{{ prev.result }}", jq: "add" }
output:
  list: "{{ steps.doubled.output }}"
  total: "{{ steps.total.output }}"
  text: "sum={{ steps.total.output }}"
"#,
            json!({"n": 4}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.output,
        Some(json!({"list": [0, 2, 4, 6], "total": 12, "text": "sum=12"}))
    );
    assert!(steps.iter().all(|s| s.status == StepStatus::Succeeded));
}

#[tokio::test]
async fn parallel_roots_run_at_once_and_join() {
    let h = harness().await;
    let (run, _) = h
        .run(
            r#"
name: dag
steps:
  - id: left
    needs: []
    tool: probe
    with: { ms: 150, value: L }
  - id: right
    needs: []
    tool: probe
    with: { ms: 150, value: R }
  - id: join
    needs: [left, right]
    tool: transform
    with: { data: ["{{ steps.left.output.echo }}", "{{ steps.right.output.echo }}"], jq: "join(\"+\")" }
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!("L+R")));
    assert_eq!(
        h.probe.peak.load(Ordering::SeqCst),
        2,
        "roots did not overlap"
    );
}

#[tokio::test]
async fn if_false_skips_and_prev_success_reads_the_step_before() {
    let h = harness().await;
    let (run, steps) = h
        .run(
            r#"
name: conditions
inputs:
  go: { type: boolean }
steps:
  - id: maybe
    if: "{{ input.go }}"
    tool: probe
    with: { value: ran }
  - id: after
    if: prev.success
    tool: probe
    with: { value: "after {{ prev.status }}" }
  - id: always
    tool: transform
    with: { data: "{{ steps.maybe.status }}/{{ steps.after.status }}", jq: "." }
"#,
            json!({"go": false}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(step(&steps, "maybe").status, StepStatus::Skipped);
    assert_eq!(step(&steps, "after").status, StepStatus::Skipped);
    assert_eq!(run.output, Some(json!("skipped/skipped")));
    assert_eq!(h.probe.calls.load(Ordering::SeqCst), 0);

    let (run, steps) = h
        .run(
            r#"
name: conditions
inputs:
  go: { type: boolean }
steps:
  - id: maybe
    if: "{{ input.go }}"
    tool: probe
    with: { value: ran }
  - id: after
    if: prev.success
    tool: probe
    with: { value: "after {{ prev.result.echo }}" }
"#,
            json!({"go": true}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(step(&steps, "after").status, StepStatus::Succeeded);
    assert_eq!(run.output, Some(json!({"echo": "after ran", "attempt": 1})));
}

#[tokio::test]
async fn for_each_keeps_item_order_whatever_order_items_finish_in() {
    let h = harness().await;
    // Item i sleeps (5 - i) * 30 ms, so the last item finishes first.
    let (run, steps) = h
        .run(
            r#"
name: order
steps:
  - id: each
    for_each: "{{ [0, 1, 2, 3, 4] }}"
    as: n
    tool: probe
    with: { ms: "{{ (5 - n) * 30 }}", value: "{{ n * 10 }}" }
output: "{{ steps.each.output | map(attribute='echo') | list }}"
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!([0, 10, 20, 30, 40])));
    let each = step(&steps, "each");
    assert_eq!((each.items_total, each.items_done), (Some(5), 5));
}

#[tokio::test]
async fn the_fan_out_cap_holds_as_the_tool_measures_it() {
    let h = harness().await;
    let (run, _) = h
        .run_with(
            r#"
name: capped
steps:
  - id: each
    for_each: "{{ range(20) | list }}"
    concurrency: 3
    tool: probe
    with: { ms: 40, value: "{{ item }}" }
"#,
            json!({}),
            10,
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(h.probe.calls.load(Ordering::SeqCst), 20);
    assert_eq!(h.probe.peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_global_cap_holds_without_a_step_cap() {
    let h = harness().await;
    let (run, _) = h
        .run_with(
            r#"
name: global
steps:
  - id: each
    for_each: "{{ range(16) | list }}"
    tool: probe
    with: { ms: 40 }
"#,
            json!({}),
            4,
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(h.probe.peak.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn continue_on_error_lets_the_run_go_on_and_records_the_failure() {
    let h = harness().await;
    let (run, steps) = h
        .run(
            r#"
name: tolerant
steps:
  - id: bad
    tool: probe
    continue_on_error: true
    with: { fail: true }
  - id: next
    tool: transform
    with: { data: { ok: "{{ steps.bad.ok }}", error: "{{ steps.bad.error }}" }, jq: "." }
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(step(&steps, "bad").status, StepStatus::Failed);
    assert_eq!(
        run.output,
        Some(json!({"ok": false, "error": "probe failed on attempt 1"}))
    );
}

#[tokio::test]
async fn a_step_failing_every_attempt_fails_the_run_with_the_last_error() {
    let h = harness().await;
    let (run, steps) = h
        .run(
            r#"
name: hopeless
steps:
  - id: bad
    tool: probe
    retry: { max_attempts: 3, backoff: { type: fixed, delay: 10ms, jitter: false } }
    with: { fail: true }
  - id: never
    tool: probe
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("step `bad` failed: probe failed on attempt 3")
    );
    assert_eq!(step(&steps, "bad").attempts, 3);
    assert_eq!(step(&steps, "never").status, StepStatus::Cancelled);
    assert_eq!(h.probe.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_wait_their_backoff_and_say_so_in_events() {
    let h = harness().await;
    h.probe.fail_first.store(2, Ordering::SeqCst);
    let run = h
        .start(
            r#"
name: backoff
steps:
  - id: flaky
    tool: probe
    retry: { max_attempts: 3, backoff: { type: exponential, initial: 60ms, factor: 2, max: 1s, jitter: false } }
    with: { value: x }
"#,
            json!({}),
        )
        .await;
    let (run, _) = h.drive(&run.id, 5).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!({"echo": "x", "attempt": 3})));
    let events = h
        .engine
        .store()
        .events(&run.id, 0, 1000)
        .await
        .expect("events");
    let delays: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == "task.retrying")
        .map(|e| e.data["delay_ms"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(delays, vec![60, 120]);
    // Each attempt started no earlier than the previous failure plus its delay.
    let starts: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == "task.started")
        .map(|e| e.ts)
        .collect();
    let failures: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == "task.retrying")
        .map(|e| e.ts)
        .collect();
    assert_eq!(starts.len(), 3);
    assert!(starts[1] >= failures[0] + 60, "attempt 2 started early");
    assert!(starts[2] >= failures[1] + 120, "attempt 3 started early");
}

#[tokio::test]
async fn a_timeout_fails_the_attempt_and_is_retried() {
    let h = harness().await;
    let (run, steps) = h
        .run(
            r#"
name: slow
steps:
  - id: slow
    tool: probe
    timeout: 100ms
    retry: { max_attempts: 2, backoff: { type: fixed, delay: 10ms } }
    with: { ms: 10000 }
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(step(&steps, "slow").attempts, 2);
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 100ms"),
        "{:?}",
        run.error
    );
}

#[tokio::test]
async fn a_second_run_takes_a_cached_step_from_the_cache() {
    let h = harness().await;
    let yaml = r#"
name: cached
steps:
  - id: lookup
    tool: probe
    cache: { ttl: 1h }
    with: { value: same }
"#;
    let (first, _) = h.run(yaml, json!({})).await;
    let (second, steps) = h.run(yaml, json!({})).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    assert_eq!(first.output, second.output);
    assert_eq!(
        h.probe.calls.load(Ordering::SeqCst),
        1,
        "the tool ran twice"
    );
    assert_eq!(step(&steps, "lookup").cache_hits, 1);
    let events = h
        .engine
        .store()
        .events(&second.id, 0, 100)
        .await
        .expect("events");
    assert!(events.iter().any(|e| e.kind == "task.cache_hit"));
}

#[tokio::test]
async fn a_fan_out_with_some_items_cached_settles_when_the_rest_finish() {
    let h = harness().await;
    *h.probe.fail_value.lock().expect("lock") = Some(json!("c"));
    let yaml = r#"
name: partly_cached
inputs:
  items: { type: array }
steps:
  - id: each
    for_each: "{{ input.items }}"
    tool: probe
    cache: { ttl: 1h }
    continue_on_error: true
    retry: { max_attempts: 1 }
    with: { value: "{{ item }}" }
"#;
    let (first, _) = h.run(yaml, json!({"items": ["a"]})).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    // `a` comes from the cache when the run starts; `b` and `c` are queued, `c` fails.
    let run = h.start(yaml, json!({"items": ["a", "b", "c"]})).await;
    let (second, steps) = tokio::time::timeout(Duration::from_secs(120), h.drive(&run.id, 5))
        .await
        .expect("the run never ended: the cached item was not counted");
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.error);
    let each = step(&steps, "each");
    assert_eq!(each.cache_hits, 1);
    assert_eq!((each.items_done, each.items_failed), (2, 1));
    assert_eq!(
        each.output,
        Some(json!([{"echo": "a", "attempt": 1}, {"echo": "b", "attempt": 1}, null]))
    );
    assert_eq!(h.probe.calls.load(Ordering::SeqCst), 3, "a, then b and c");
}

#[tokio::test]
async fn cancelling_a_run_stops_its_running_tool() {
    let h = harness().await;
    let run = h
        .start(
            r#"
name: long
steps:
  - id: wait
    tool: probe
    with: { ms: 60000 }
"#,
            json!({}),
        )
        .await;
    // A long-lived worker (as in `weft serve`): it must stop the tool because the run was
    // cancelled, not because the worker shut down.
    let stop = CancellationToken::new();
    let worker = h.engine.worker(WorkerOptions::default());
    let handle = tokio::spawn(worker.run(stop.clone()));
    while h.probe.calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cancelled = h
        .engine
        .cancel_run("default", &run.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    for _ in 0..400 {
        if h.probe.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        h.probe.cancelled.load(Ordering::SeqCst),
        "the tool never saw the cancel"
    );
    stop.cancel();
    handle.await.expect("worker joins").expect("worker ok");
    let steps = h.engine.store().steps(&run.id).await.expect("steps");
    assert_eq!(step(&steps, "wait").status, StepStatus::Cancelled);
}

#[tokio::test]
async fn resume_reruns_only_what_failed() {
    let h = harness().await;
    *h.probe.fail_value.lock().expect("lock") = Some(json!(2));
    let yaml = r#"
name: resumable
steps:
  - id: first
    tool: probe
    with: { value: one }
  - id: items
    for_each: "{{ [1, 2, 3] }}"
    tool: probe
    with: { value: "{{ item }}", ms: "{{ 100 if item == 2 else 0 }}" }
  - id: last
    tool: probe
    with: { value: last }
output: "{{ steps.items.output | map(attribute='echo') | list }}"
"#;
    let (run, steps) = h.run(yaml, json!({})).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("step `items` failed: item 1 failed: 2 is poisoned")
    );
    assert_eq!(step(&steps, "first").status, StepStatus::Succeeded);
    assert_eq!(step(&steps, "last").status, StepStatus::Cancelled);
    let calls_before = h.probe.calls.load(Ordering::SeqCst);
    assert_eq!(calls_before, 4);

    *h.probe.fail_value.lock().expect("lock") = None;
    h.engine
        .resume_run("default", &run.id, &[])
        .await
        .expect("resume");
    let (run, steps) = h.drive(&run.id, 5).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!([1, 2, 3])));
    let log = h.probe.log.lock().expect("log").clone();
    let rerun: Vec<&Value> = log[calls_before..]
        .iter()
        .map(|(input, _)| &input["value"])
        .collect();
    assert_eq!(
        rerun,
        vec![&json!(2), &json!("last")],
        "resume re-ran something that succeeded"
    );
    assert!(steps.iter().all(|s| s.status == StepStatus::Succeeded));
}

#[tokio::test]
async fn a_tool_reports_progress_as_events() {
    let h = harness().await;
    let (run, _) = h
        .run(
            r#"
name: progress
steps:
  - id: long
    tool: probe
    with: { progress: 3 }
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let events = h
        .engine
        .store()
        .events(&run.id, 0, 1000)
        .await
        .expect("events");
    let progress: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e.kind == "task.progress")
        .map(|e| {
            assert_eq!(e.step_id.as_deref(), Some("long"));
            (
                e.data["done"].as_u64().unwrap_or(0),
                e.data["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(!progress.is_empty(), "no progress event");
    assert_eq!(progress.last(), Some(&(3, "3 of 3".to_string())));
    let dones: Vec<u64> = progress.iter().map(|p| p.0).collect();
    assert!(dones.windows(2).all(|w| w[0] < w[1]), "{dones:?}");
}

/// Regression: multi-row inserts once bound more parameters than SQLite allows, so a fan-out
/// of more than 2,000 items failed to start.
#[tokio::test]
async fn a_fan_out_of_thousands_of_items_starts_and_finishes() {
    let h = harness().await;
    let (run, steps) = h
        .run(
            r#"
name: wide
steps:
  - id: items
    for_each: "{{ range(5000) | list }}"
    as: i
    tool: transform
    with: { data: "{{ i }}", jq: ". * 2" }
  - id: total
    tool: transform
    with: { data: "{{ steps.items.output }}", jq: "add" }
"#,
            json!({}),
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!(4999 * 5000)));
    assert_eq!(step(&steps, "items").items_done, 5000);
    let tasks = h.engine.store().tasks(&run.id).await.expect("tasks");
    assert_eq!(tasks.len(), 5001);
}
