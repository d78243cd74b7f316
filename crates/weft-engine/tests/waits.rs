//! Approvals, `workflow:` steps and actions through the engine and a real SQLite store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_core::Plan;
use weft_engine::{Decide, Engine, EngineOptions, NewRun, TemplateSource, WorkerOptions};
use weft_store::SqlStore;
use weft_store::sqlite::Durability;
use weft_store::{Run, RunStatus, StepStatus};
use weft_tools::{Registry, ToolsConfig};

/// Templates by name, loaded from YAML held in memory.
struct Folder {
    tools: Arc<Registry>,
    yaml: HashMap<String, String>,
}

#[async_trait]
impl TemplateSource for Folder {
    async fn find(
        &self,
        _tenant: &str,
        name: &str,
        _version: Option<&str>,
    ) -> Result<(Arc<Plan>, Option<String>), String> {
        let yaml = self
            .yaml
            .get(name)
            .ok_or_else(|| format!("no template `{name}`"))?;
        let plan = weft_core::load::load_str(yaml, &format!("{name}.yaml"), None, &*self.tools)
            .map_err(|d| d.to_string())?;
        Ok((Arc::new(plan), None))
    }
}

struct Harness {
    engine: Engine,
    stop: CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn harness(templates: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
        .await
        .expect("open store");
    let mut h = harness_on(Arc::new(store), templates);
    h._dir = Some(dir);
    h
}

/// The engine and a worker on `store`, finding `templates` by name.
fn harness_on(store: Arc<dyn weft_store::Store>, templates: &[(&str, &str)]) -> Harness {
    let tools = Arc::new(Registry::with_builtins(&ToolsConfig::default()));
    let engine = EngineOptions::new(store, tools.clone())
        .templates(Arc::new(Folder {
            tools,
            yaml: templates
                .iter()
                .map(|(n, y)| (n.to_string(), y.to_string()))
                .collect(),
        }))
        .build();
    let stop = CancellationToken::new();
    let worker = engine.worker(WorkerOptions {
        poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    });
    tokio::spawn(worker.run(stop.clone()));
    Harness {
        engine,
        stop,
        _dir: None,
    }
}

impl Harness {
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

    /// Waits until the run's status is one of `want` (the worker runs in the background).
    async fn until(&self, run_id: &str, want: &[RunStatus]) -> Run {
        loop {
            let run = self
                .engine
                .store()
                .run("default", run_id)
                .await
                .expect("read run")
                .expect("run exists");
            if want.contains(&run.status) {
                return run;
            }
            assert!(
                !run.status.is_terminal(),
                "run ended {} ({:?}) while waiting for {want:?}",
                run.status,
                run.error
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn decide(&self, run: &str, step: &str, item: Option<u32>, approve: bool) {
        self.engine
            .decide_approval(
                "default",
                run,
                step,
                Decide {
                    approve,
                    by: "alice".into(),
                    comment: Some("looked at it".into()),
                    item,
                },
            )
            .await
            .expect("decide");
    }

    /// The first child run `run` started, once it has one.
    async fn first_child(&self, run: &str) -> Run {
        loop {
            let c = self.engine.store().child_runs(run).await.expect("children");
            if let Some(c) = c.into_iter().next() {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn step(&self, run: &str, id: &str) -> weft_store::StepRow {
        self.engine
            .store()
            .steps(run)
            .await
            .expect("steps")
            .into_iter()
            .find(|s| s.step_id == id)
            .expect("step")
    }
}

const GATED: &str = r#"
name: gated
steps:
  - id: draft
    tool: transform
    with: { data: 1, jq: ". + 1" }
  - id: review
    approval: "Publish {{ steps.draft.output }}?"
  - id: publish
    tool: transform
    with: { data: "{{ steps.review.output }}", jq: "{by: .by, n: 2}" }
"#;

#[tokio::test]
async fn an_approval_pauses_the_run_until_it_is_approved() {
    let h = harness(&[]).await;
    let run = h.start(GATED, json!({})).await;
    let run = h.until(&run.id, &[RunStatus::Waiting]).await;
    assert_eq!(h.step(&run.id, "review").await.status, StepStatus::Waiting);
    assert_eq!(h.step(&run.id, "publish").await.status, StepStatus::Pending);
    h.decide(&run.id, "review", None, true).await;
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    assert_eq!(run.output, Some(json!({"by": "alice", "n": 2})));
    let review = h.step(&run.id, "review").await;
    assert_eq!(
        review.output.as_ref().map(|o| &o["approved"]),
        Some(&json!(true))
    );
    assert_eq!(
        review.output.as_ref().map(|o| &o["comment"]),
        Some(&json!("looked at it"))
    );
    let events = h
        .engine
        .store()
        .events(&run.id, 0, 1000)
        .await
        .expect("events");
    let requested = events
        .iter()
        .find(|e| e.kind == "approval.requested")
        .expect("requested");
    assert_eq!(requested.data["prompt"], json!("Publish 2?"));
    assert!(events.iter().any(|e| e.kind == "approval.decided"));
    // Deciding again is refused: the decision is taken.
    let again = h
        .engine
        .decide_approval(
            "default",
            &run.id,
            "review",
            Decide {
                approve: false,
                by: "bob".into(),
                comment: None,
                item: None,
            },
        )
        .await;
    assert!(
        matches!(again, Err(weft_engine::Error::Conflict(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_rejection_fails_the_run() {
    let h = harness(&[]).await;
    let run = h.start(GATED, json!({})).await;
    h.until(&run.id, &[RunStatus::Waiting]).await;
    h.decide(&run.id, "review", None, false).await;
    let run = h.until(&run.id, &[RunStatus::Failed]).await;
    let error = run.error.unwrap_or_default();
    assert!(error.contains("rejected by alice: looked at it"), "{error}");
    assert_eq!(
        h.step(&run.id, "publish").await.status,
        StepStatus::Cancelled
    );
}

#[tokio::test]
async fn each_item_of_a_for_each_approval_is_decided_on_its_own() {
    let h = harness(&[]).await;
    let yaml = r#"
name: per-item
steps:
  - id: ok
    for_each: "{{ ['a', 'b', 'c'] }}"
    approval: { prompt: "Send to {{ item }}?" }
    continue_on_error: true
  - id: after
    tool: transform
    with: { data: "{{ steps.ok.output }}", jq: "map(if . == null then null else .approved end)" }
"#;
    let run = h.start(yaml, json!({})).await;
    h.until(&run.id, &[RunStatus::Waiting]).await;
    h.decide(&run.id, "ok", Some(2), true).await;
    h.decide(&run.id, "ok", Some(0), false).await;
    // One item still waits: the run does too.
    let run = h.until(&run.id, &[RunStatus::Waiting]).await;
    let step = h.step(&run.id, "ok").await;
    assert_eq!((step.items_done, step.items_failed), (1, 1));
    h.decide(&run.id, "ok", Some(1), true).await;
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    assert_eq!(run.output, Some(json!([null, true, true])));
}

#[tokio::test]
async fn an_approval_times_out_as_its_template_says() {
    let h = harness(&[]).await;
    let yaml = r#"
name: timed
steps:
  - id: wait
    approval: { prompt: "ok?", timeout: 50ms, on_timeout: approve }
"#;
    let run = h.start(yaml, json!({})).await;
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    assert_eq!(
        run.output.as_ref().map(|o| &o["by"]),
        Some(&json!("timeout"))
    );
    let yaml = r#"
name: timed
steps:
  - id: wait
    approval: { prompt: "ok?", timeout: 50ms }
"#;
    let run = h.start(yaml, json!({})).await;
    let run = h.until(&run.id, &[RunStatus::Failed]).await;
    assert!(
        run.error
            .unwrap_or_default()
            .contains("rejected by timeout")
    );
}

const CHILD: &str = r#"
name: child
inputs:
  n: { type: integer }
steps:
  - id: check
    tool: transform
    with: { data: "{{ input.n }}", jq: "if . < 0 then error(\"negative\") else . * 10 end" }
"#;

#[tokio::test]
async fn a_workflow_step_waits_for_its_child_run_and_takes_its_output() {
    let h = harness(&[("child", CHILD)]).await;
    let yaml = r#"
name: parent
steps:
  - id: sub
    for_each: "{{ [1, 2] }}"
    workflow: child
    with: { n: "{{ item }}" }
    strategy: queue
"#;
    let run = h.start(yaml, json!({})).await;
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    assert_eq!(run.output, Some(json!([10, 20])));
    let children = h
        .engine
        .store()
        .child_runs(&run.id)
        .await
        .expect("children");
    assert_eq!(children.len(), 2);
    let link = children[1].parent.as_ref().expect("parent link");
    assert_eq!((link.step.as_deref(), link.item), (Some("sub"), Some(1)));
}

#[tokio::test]
async fn a_failed_child_fails_the_workflow_step() {
    let h = harness(&[("child", CHILD)]).await;
    let yaml = r#"
name: parent
steps:
  - id: sub
    workflow: { template: child, with: { n: -1 } }
"#;
    let run = h.start(yaml, json!({})).await;
    let run = h.until(&run.id, &[RunStatus::Failed]).await;
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("child run run_") && error.contains("negative"),
        "{error}"
    );
}

#[tokio::test]
async fn cancelling_the_parent_cancels_the_child() {
    let gate = r#"
name: gate
steps:
  - id: wait
    approval: "go?"
"#;
    let h = harness(&[("gate", gate)]).await;
    let yaml = r#"
name: parent
steps:
  - id: sub
    workflow: gate
"#;
    let run = h.start(yaml, json!({})).await;
    let children = loop {
        let c = h
            .engine
            .store()
            .child_runs(&run.id)
            .await
            .expect("children");
        if !c.is_empty() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    h.until(&children[0].id, &[RunStatus::Waiting]).await;
    h.engine
        .cancel_run("default", &run.id)
        .await
        .expect("cancel");
    let child = h.until(&children[0].id, &[RunStatus::Cancelled]).await;
    assert_eq!(child.status, RunStatus::Cancelled);
}

/// Issue 13: a child run ending (its approval decided) while its parent is being cancelled
/// locks the two runs in opposite orders unless both lock the parent first
/// (`lock_ancestors`); on PostgreSQL that was a deadlock, one of the two transactions aborted.
/// Each pair here races a decision on the child against a cancel of the parent: both must
/// complete without a store error, and both runs end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_ending_while_its_parent_is_cancelled_does_not_deadlock_on_postgres() {
    let Some(server) = weft_store::postgres::testing::server_url().await else {
        return;
    };
    let (name, url) = weft_store::postgres::testing::create_database(&server)
        .await
        .expect("create a database");
    let store = SqlStore::postgres(&url).await.expect("open store");
    let gate = "name: gate\nsteps:\n  - id: wait\n    approval: \"go?\"\n";
    let h = harness_on(Arc::new(store), &[("gate", gate)]);
    let parent = "name: parent\nsteps:\n  - id: sub\n    workflow: gate\n";
    let mut pairs = Vec::new();
    for _ in 0..12 {
        let run = h.start(parent, json!({})).await;
        let child = h.first_child(&run.id).await;
        h.until(&child.id, &[RunStatus::Waiting]).await;
        pairs.push((run.id, child.id));
    }
    // One pair at a time, each a race of two transactions: the pool (16 connections) is
    // never what they wait for, only each other's row locks.
    for (parent_id, child_id) in &pairs {
        let decide = h.engine.decide_approval(
            "default",
            child_id,
            "wait",
            Decide {
                approve: true,
                by: "alice".into(),
                comment: None,
                item: None,
            },
        );
        let cancel = h.engine.cancel_run("default", parent_id);
        let (decided, cancelled) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(decide, cancel)
        })
        .await
        .expect("the race finished (no lock wait cycle)");
        // Deciding after the cancel ended the child is refused as a conflict, not a failure.
        assert!(
            !matches!(decided, Err(weft_engine::Error::Store(_))),
            "decide: {decided:?}"
        );
        assert!(cancelled.is_ok(), "cancel: {cancelled:?}");
    }
    // Whichever came first, both runs ended, and consistently: a parent that succeeded has
    // a child that succeeded.
    let ended = [RunStatus::Cancelled, RunStatus::Succeeded];
    for (parent_id, child_id) in &pairs {
        let parent = h.until(parent_id, &ended).await;
        let child = h.until(child_id, &ended).await;
        if parent.status == RunStatus::Succeeded {
            assert_eq!(child.status, RunStatus::Succeeded);
        }
    }
    drop(h);
    weft_store::postgres::testing::drop_database(&server, &name)
        .await
        .expect("drop the test database");
}

#[tokio::test]
async fn an_action_starts_a_linked_run_from_a_finished_one() {
    let h = harness(&[("child", CHILD)]).await;
    let yaml = r#"
name: parent
steps:
  - id: one
    tool: transform
    with: { data: 4, jq: "." }
actions:
  scale:
    template: child
    with: { n: "{{ steps.one.output }}" }
"#;
    let run = h.start(yaml, json!({})).await;
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    let action = h
        .engine
        .start_action("default", &run.id, "scale", Default::default())
        .await
        .expect("action");
    let action = h.until(&action.id, &[RunStatus::Succeeded]).await;
    assert_eq!(action.output, Some(json!(40)));
    let link = action.parent.expect("linked");
    assert_eq!(
        (link.run_id.as_str(), link.action.as_deref()),
        (run.id.as_str(), Some("scale"))
    );
    let missing = h
        .engine
        .start_action("default", &run.id, "nope", Default::default())
        .await;
    assert!(matches!(missing, Err(weft_engine::Error::NotFound(_))));
}

#[tokio::test]
async fn resuming_a_rejected_run_asks_again() {
    let h = harness(&[]).await;
    let run = h.start(GATED, json!({})).await;
    h.until(&run.id, &[RunStatus::Waiting]).await;
    h.decide(&run.id, "review", None, false).await;
    h.until(&run.id, &[RunStatus::Failed]).await;
    h.engine
        .resume_run("default", &run.id, &[])
        .await
        .expect("resume");
    let run = h.until(&run.id, &[RunStatus::Waiting]).await;
    assert_eq!(h.step(&run.id, "review").await.status, StepStatus::Waiting);
    h.decide(&run.id, "review", None, true).await;
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    assert_eq!(run.output, Some(json!({"by": "alice", "n": 2})));
}

#[tokio::test]
async fn resuming_a_parent_starts_its_failed_child_again() {
    // The child fails until a file exists: resume after creating it.
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("ready");
    let child = format!(
        r#"
name: flaky-child
steps:
  - id: check
    tool: command
    with: {{ argv: [sh, -c, 'test -f {} && echo 7'] }}
"#,
        flag.display()
    );
    let h = harness(&[("flaky-child", &child)]).await;
    let yaml = r#"
name: parent
steps:
  - id: sub
    workflow: flaky-child
"#;
    let run = h.start(yaml, json!({})).await;
    h.until(&run.id, &[RunStatus::Failed]).await;
    std::fs::write(&flag, "").expect("flag");
    h.engine
        .resume_run("default", &run.id, &[])
        .await
        .expect("resume");
    let run = h.until(&run.id, &[RunStatus::Succeeded]).await;
    assert_eq!(run.output, Some(json!(7)));
    let children = h
        .engine
        .store()
        .child_runs(&run.id)
        .await
        .expect("children");
    assert_eq!(children.len(), 2, "the failed child stays; a new one ran");
}
