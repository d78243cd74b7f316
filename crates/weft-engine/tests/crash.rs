//! Fault injection: the engine crashes at every commit point of a run, and a new engine on the
//! same store finishes it; afterwards the run must look as if nothing had happened.
//!
//! In the spirit of FoundationDB's simulation tests: for each seed (which varies how long each
//! tool call takes, so the worker batches its commits differently) a crash-free run of a
//! template that has a chain, a capped fan-out with retries, a cached step, an approval and a
//! sub-workflow counts the engine's commits; then for every commit `k` and both sides of it
//! (before `COMMIT`: the work is lost, e.g. a tool's result between the call and its commit;
//! after: it is stored but the process is gone) the run is started again with an engine that
//! dies at commit `k`. The dead engine's tasks are aborted and a new engine on the same store
//! resumes the run, as `weft runs resume` or a restarted server does. Then the invariants:
//!
//! - the run ends in exactly one terminal state (succeeded), with one end after its last resume;
//! - every item's result is committed exactly once (one `task.succeeded` or `task.cache_hit`);
//! - nothing whose result was committed is called again (the probe tool checks at each call);
//! - events are gap-free and in commit order (every attempt that started has its end on
//!   record, a task's attempts never go back, nothing of a task after its result);
//! - the output equals the crash-free run's.
//!
//! `cargo test` runs a bounded number of seeds on SQLite and (when reachable) PostgreSQL;
//! `WEFT_CRASH_SEEDS=N` runs N seeds (the longer mode, by hand). Each prints its figures.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_core::Plan;
use weft_engine::faults::{Crash, CrashPoint, Plant};
use weft_engine::{Decide, Engine, EngineOptions, NewRun, TemplateSource, WorkerOptions};
use weft_store::{EventKind, RunStatus, Store, TaskStatus};
use weft_tools::{Context, Registry, Tool, ToolsConfig};

const PARENT: &str = r#"
name: mix
steps:
  - id: first
    tool: transform
    with: { data: 3, jq: ". + 1" }
  - id: fan
    for_each: "{{ range(6) | list }}"
    concurrency: 2
    tool: probe
    retry: { max_attempts: 3, backoff: { type: fixed, initial: 5ms } }
    with: { v: "{{ item + steps.first.output }}", flaky: "{{ item % 2 == 1 }}" }
  - id: cached
    tool: probe
    cache: { ttl: 1h }
    with: { v: 100 }
  - id: again
    tool: probe
    cache: { ttl: 1h }
    with: { v: "{{ steps.cached.output.v // 2 }}" }
  - id: review
    approval: "go on?"
  - id: sub
    workflow: child
    with: { n: "{{ steps.fan.output | map(attribute='v') | sum }}" }
output: "{{ [steps.fan.output | map(attribute='v') | list, steps.again.output.v, steps.sub.output] }}"
"#;

const CHILD: &str = r#"
name: child
inputs:
  n: { type: integer }
steps:
  - id: double
    tool: probe
    with: { v: "{{ input.n }}" }
  - id: more
    tool: probe
    with: { v: "{{ steps.double.output.v + 1 }}" }
output: "{{ steps.more.output.v }}"
"#;

/// Per-seed delays and the calls seen: what the harness checks the store against.
#[derive(Default)]
struct Log {
    /// (run, step, item) -> attempts called.
    calls: BTreeMap<(String, String, Option<u32>), Vec<u32>>,
    violations: Vec<String>,
}

/// The tool of every queued step: returns `{v: 2v}`, fails the first try of a `flaky` item
/// (transiently), sleeps a seed-chosen moment, and records a violation when it is called for a
/// task whose result is already committed.
struct Probe {
    store: Arc<dyn Store>,
    seed: u64,
    log: Arc<Mutex<Log>>,
}

#[async_trait]
impl Tool for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn description(&self) -> &str {
        "records its calls"
    }
    async fn call(&self, input: Value, ctx: &Context) -> weft_tools::Result<Value> {
        let tasks = self.store.tasks(&ctx.run_id).await.unwrap_or_default();
        let done = tasks.iter().any(|t| {
            t.step_id == ctx.step_id
                && t.item == ctx.item_index
                && t.status == TaskStatus::Succeeded
        });
        let first_call = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if done {
                log.violations.push(format!(
                    "{} {}[{:?}] attempt {} called after its result was committed",
                    ctx.run_id, ctx.step_id, ctx.item_index, ctx.attempt
                ));
            }
            let key = (ctx.run_id.clone(), ctx.step_id.clone(), ctx.item_index);
            let seen = log.calls.entry(key).or_default();
            seen.push(ctx.attempt);
            seen.len() == 1
        };
        let mix = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(u64::from(ctx.item_index.unwrap_or(7)) * 7919 + ctx.step_id.len() as u64);
        tokio::time::sleep(Duration::from_millis((mix >> 33) % 12)).await;
        if input["flaky"] == json!(true) && first_call {
            return Err(weft_tools::Error::Failed("flaky: first try fails".into()));
        }
        let v = input["v"].as_i64().unwrap_or(0);
        Ok(json!({ "v": v * 2 }))
    }
}

struct Folder {
    tools: Arc<Registry>,
}

#[async_trait]
impl TemplateSource for Folder {
    async fn find(
        &self,
        _tenant: &str,
        name: &str,
        _version: Option<&str>,
    ) -> Result<(Arc<Plan>, Option<String>), String> {
        if name != "child" {
            return Err(format!("no template `{name}`"));
        }
        let plan = weft_core::load::load_str(CHILD, "child.yaml", None, &*self.tools)
            .map_err(|d| d.to_string())?;
        Ok((Arc::new(plan), None))
    }
}

/// One engine with its worker running; dropped (aborted) to simulate the process dying.
struct Process {
    engine: Engine,
    worker_id: String,
    worker: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Process {
    fn start(store: &Arc<dyn Store>, tools: &Arc<Registry>, crash: Arc<Crash>) -> Process {
        let engine = EngineOptions::new(store.clone(), tools.clone())
            .templates(Arc::new(Folder {
                tools: tools.clone(),
            }))
            .faults(crash)
            .build();
        let worker = engine.worker(WorkerOptions {
            concurrency: 3,
            poll: Duration::from_millis(20),
            lease: Duration::from_secs(5),
            ..WorkerOptions::default()
        });
        let worker_id = worker.id().to_string();
        let stop = CancellationToken::new();
        let handle = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _ = worker.run(stop).await;
            }
        });
        Process {
            engine,
            worker_id,
            worker: handle,
            stop,
        }
    }

    /// Kills the process: its worker and every call in flight stop where they are.
    async fn kill(self) -> String {
        self.worker.abort();
        let _ = self.worker.await;
        self.worker_id
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.worker.await;
    }
}

struct Case<'a> {
    store: &'a Arc<dyn Store>,
    tools: &'a Arc<Registry>,
    plan: &'a Arc<Plan>,
    tenant: String,
}

/// What one run left behind.
struct Outcome {
    run_id: String,
    output: Option<Value>,
    commits: u64,
    crashed: bool,
}

impl Case<'_> {
    async fn create(&self, engine: &Engine) -> Result<String, weft_engine::Error> {
        engine
            .create_run(NewRun {
                tenant: self.tenant.clone(),
                plan: self.plan.clone(),
                inputs: json!({}),
                idempotency_key: Some("crash-case".into()),
                base_dir: None,
            })
            .await
            .map(|r| r.id)
    }

    /// Runs the template with an engine that dies as `crash` says, then (if it died) finishes
    /// with a new engine. Approves the approval when the run waits for it.
    async fn run(&self, crash: Arc<Crash>) -> Result<Outcome, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut process = Process::start(self.store, self.tools, crash.clone());
        let mut dead_owner: Option<String> = None;
        let mut run_id: Option<String> = None;
        loop {
            if Instant::now() > deadline {
                process.stop().await;
                return Err(format!("stuck: run {run_id:?} did not end within 60 s"));
            }
            if crash.is_dead() && dead_owner.is_none() {
                let owner = std::mem::replace(
                    &mut process,
                    Process::start(self.store, self.tools, Crash::never()),
                )
                .kill()
                .await;
                dead_owner = Some(owner.clone());
                // The restarted process resumes what the dead one left, as `weft runs
                // resume` does: the run and each of its unfinished child runs.
                if let Some(id) = &run_id {
                    let mut family = vec![id.clone()];
                    for c in self.store.child_runs(id).await.map_err(|e| e.to_string())? {
                        family.push(c.id);
                    }
                    for r in family {
                        let run = self
                            .store
                            .run(&self.tenant, &r)
                            .await
                            .map_err(|e| e.to_string())?;
                        if run.is_some_and(|r| !r.status.is_terminal()) {
                            let _ = process
                                .engine
                                .resume_run(&self.tenant, &r, std::slice::from_ref(&owner))
                                .await;
                        }
                    }
                }
            }
            let Some(id) = run_id.clone() else {
                match self.create(&process.engine).await {
                    Ok(id) => run_id = Some(id),
                    Err(_) if crash.is_dead() => {}
                    Err(e) => return Err(format!("create: {e}")),
                }
                continue;
            };
            let run = self
                .store
                .run(&self.tenant, &id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the run vanished")?;
            if run.status.is_terminal() {
                process.stop().await;
                return Ok(Outcome {
                    run_id: id,
                    output: run.output,
                    commits: crash.commits(),
                    crashed: dead_owner.is_some(),
                });
            }
            if run.status == RunStatus::Waiting {
                let _ = process
                    .engine
                    .decide_approval(
                        &self.tenant,
                        &id,
                        "review",
                        Decide {
                            approve: true,
                            by: "harness".into(),
                            comment: None,
                            item: None,
                        },
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }

    /// Checks the invariants of the run `outcome` left; returns what is broken.
    async fn check(&self, outcome: &Outcome, expected: &Value) -> Vec<String> {
        let mut broken = Vec::new();
        let Ok(Some(run)) = self.store.run(&self.tenant, &outcome.run_id).await else {
            return vec!["the run cannot be read".into()];
        };
        if run.status != RunStatus::Succeeded {
            broken.push(format!("ended {} ({:?})", run.status, run.error));
        }
        if outcome.output.as_ref() != Some(expected) {
            broken.push(format!("output {:?} != {expected}", outcome.output));
        }
        let mut runs = vec![run.id.clone()];
        runs.extend(
            self.store
                .child_runs(&run.id)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id),
        );
        for id in &runs {
            let events = self.store.events(id, 0, 100_000).await.unwrap_or_default();
            // Exactly one end after the last resume.
            let last_resume = events.iter().rposition(|e| e.kind == EventKind::RunResumed);
            let ends = events
                .iter()
                .skip(last_resume.map_or(0, |i| i + 1))
                .filter(|e| e.kind.ends_run())
                .count();
            if ends != 1 {
                broken.push(format!("{id}: {ends} ends after the last resume"));
            }
            // One committed result per queued item; nothing of a task after its success; a
            // task's attempts never go back.
            let mut results: HashMap<(String, Option<u32>), u32> = HashMap::new();
            // Gap-free: every attempt that started has an end on record.
            let mut open: std::collections::HashSet<(String, Option<u32>, u32)> =
                Default::default();
            let mut attempt: HashMap<(String, Option<u32>), u32> = HashMap::new();
            for e in &events {
                let Some(step) = &e.step_id else { continue };
                let key = (step.clone(), e.item);
                use EventKind::*;
                if !matches!(
                    e.kind,
                    TaskStarted
                        | TaskProgress
                        | TaskRetrying
                        | TaskSucceeded
                        | TaskFailed
                        | TaskCacheHit
                ) {
                    continue;
                }
                if results.get(&key).copied().unwrap_or(0) > 0 && e.kind != TaskProgress {
                    broken.push(format!(
                        "{id}: {} of {step}[{:?}] after its result",
                        e.kind, e.item
                    ));
                }
                if let Some(a) = e.attempt {
                    let before = attempt.insert(key.clone(), a).unwrap_or(0);
                    if a < before {
                        broken.push(format!(
                            "{id}: {step}[{:?}] attempt {a} after {before}",
                            e.item
                        ));
                    }
                }
                let a = e.attempt.unwrap_or(0);
                match e.kind {
                    TaskStarted => {
                        open.insert((step.clone(), e.item, a));
                    }
                    TaskSucceeded | TaskFailed | TaskRetrying => {
                        open.remove(&(step.clone(), e.item, a));
                    }
                    _ => {}
                }
                if matches!(e.kind, TaskSucceeded | TaskCacheHit) {
                    *results.entry(key).or_default() += 1;
                }
            }
            let tasks = self.store.tasks(id).await.unwrap_or_default();
            for t in tasks.iter().filter(|t| t.tool == "probe") {
                if t.status != TaskStatus::Succeeded {
                    broken.push(format!(
                        "{id}: {}[{:?}] is {:?}",
                        t.step_id, t.item, t.status
                    ));
                }
                let n = results
                    .get(&(t.step_id.clone(), t.item))
                    .copied()
                    .unwrap_or(0);
                if n != 1 {
                    broken.push(format!(
                        "{id}: {}[{:?}] committed {n} times",
                        t.step_id, t.item
                    ));
                }
            }
            for (step, item, a) in &open {
                broken.push(format!(
                    "{id}: {step}[{item:?}] attempt {a} started and never ended"
                ));
            }
            if events.windows(2).any(|w| w[1].seq <= w[0].seq) {
                broken.push(format!("{id}: events out of order"));
            }
        }
        broken
    }
}

struct Figures {
    cases: u64,
    crashed: u64,
    points: u64,
    violations: Vec<String>,
}

/// The built-in tools with this seed's probe, and the mix template planned against them.
fn probed(store: &Arc<dyn Store>, seed: u64, log: Arc<Mutex<Log>>) -> (Arc<Registry>, Arc<Plan>) {
    let mut registry = Registry::with_builtins(&ToolsConfig::default());
    registry.insert(Arc::new(Probe {
        store: store.clone(),
        seed,
        log,
    }));
    let tools = Arc::new(registry);
    let plan = Arc::new(
        weft_core::load::load_str(PARENT, "mix.yaml", None, &*tools)
            .unwrap_or_else(|d| panic!("template does not load:\n{d}")),
    );
    (tools, plan)
}

async fn sqlite_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(
        weft_store::SqlStore::sqlite(
            &dir.join("weft.db"),
            weft_store::sqlite::Durability::Relaxed,
        )
        .await
        .expect("open store"),
    )
}

async fn drive(store: Arc<dyn Store>, seeds: u64) -> Figures {
    let mut figures = Figures {
        cases: 0,
        crashed: 0,
        points: 0,
        violations: Vec::new(),
    };
    let mut case_no = 0u64;
    for seed in 0..seeds {
        let log = Arc::new(Mutex::new(Log::default()));
        let (tools, plan) = probed(&store, seed, log.clone());
        let case = |n: u64| Case {
            store: &store,
            tools: &tools,
            plan: &plan,
            tenant: format!("crash-{seed}-{n}"),
        };
        // The crash-free run: the expected output and how many commits there are to crash at.
        let clean = case(u64::MAX);
        let baseline = clean
            .run(Crash::never())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let expected = baseline
            .output
            .clone()
            .expect("the crash-free run has an output");
        let broken = clean.check(&baseline, &expected).await;
        assert!(broken.is_empty(), "the crash-free run: {broken:?}");
        let commits = baseline.commits;
        for k in 1..=commits {
            for point in [CrashPoint::BeforeCommit, CrashPoint::AfterCommit] {
                case_no += 1;
                figures.points += 1;
                let c = case(case_no);
                match c.run(Crash::new(k, point)).await {
                    Ok(outcome) => {
                        figures.cases += 1;
                        figures.crashed += u64::from(outcome.crashed);
                        for b in c.check(&outcome, &expected).await {
                            figures
                                .violations
                                .push(format!("seed {seed}, commit {k} {point:?}: {b}"));
                        }
                    }
                    Err(e) => figures
                        .violations
                        .push(format!("seed {seed}, commit {k} {point:?}: {e}")),
                }
            }
        }
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        for v in &log.violations {
            figures.violations.push(format!("seed {seed}: {v}"));
        }
    }
    figures
}

/// The harness is only worth its figures if it notices a broken engine: with a bug planted on
/// purpose (every result recorded twice, as an engine committing a result twice would), the
/// checks must report it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_catches_a_planted_double_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite_store(dir.path()).await;
    let (tools, plan) = probed(&store, 0, Arc::new(Mutex::new(Log::default())));
    let case = |tenant: &str| Case {
        store: &store,
        tools: &tools,
        plan: &plan,
        tenant: tenant.into(),
    };
    let clean = case("clean");
    let baseline = clean.run(Crash::never()).await.expect("crash-free run");
    let expected = baseline.output.clone().expect("an output");
    assert!(clean.check(&baseline, &expected).await.is_empty());

    let buggy = case("buggy");
    let outcome = buggy
        .run(Crash::planted(Plant::DoubleCommit))
        .await
        .expect("the buggy run ends");
    let broken = buggy.check(&outcome, &expected).await;
    assert!(
        broken.iter().any(|b| b.contains("committed 2 times")),
        "the planted double commit went unnoticed: {broken:?}"
    );
}

fn seeds(default: u64) -> u64 {
    std::env::var("WEFT_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn report(backend: &str, seeds: u64, started: Instant, f: &Figures) {
    eprintln!(
        "{backend}: {seeds} seeds, {} crash points ({} runs crashed and were finished by a new engine), {} violations, {:.1}s",
        f.points,
        f.crashed,
        f.violations.len(),
        started.elapsed().as_secs_f64()
    );
    for v in f.violations.iter().take(20) {
        eprintln!("  {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_a_crash_at_every_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite_store(dir.path()).await;
    let started = Instant::now();
    let n = seeds(2);
    let figures = drive(store, n).await;
    report("SQLite", n, started, &figures);
    assert!(figures.crashed > 0, "no case crashed");
    assert!(
        figures.violations.is_empty(),
        "{} violations",
        figures.violations.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_a_crash_at_every_commit() {
    let Some(server) = weft_store::postgres::testing::server_url().await else {
        return;
    };
    let (name, url) = weft_store::postgres::testing::create_database(&server)
        .await
        .expect("create a database");
    let store: Arc<dyn Store> = Arc::new(
        weft_store::SqlStore::postgres(&url)
            .await
            .expect("open store"),
    );
    let started = Instant::now();
    let n = seeds(1);
    let figures = drive(store, n).await;
    report("PostgreSQL", n, started, &figures);
    weft_store::postgres::testing::drop_database(&server, &name)
        .await
        .expect("drop the test database");
    assert!(figures.crashed > 0, "no case crashed");
    assert!(
        figures.violations.is_empty(),
        "{} violations",
        figures.violations.len()
    );
}
