//! Real `weft worker` processes sharing one PostgreSQL database, killed and paused on purpose.
//! What a user would count afterwards: every item has exactly one committed result, tool calls
//! repeat only for tasks a dead worker held (each recorded as a `lease_expired` retry), the
//! step's concurrency cap held across processes, a paused worker cannot commit after losing
//! its lease, and identical concurrent requests create one run.
//!
//! Each test uses a fresh database `weft_test_<random>`. Without a reachable server
//! (`WEFT_TEST_PG`) they skip with a message, unless `WEFT_REQUIRE_SERVICES=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weft_store::SqlStore;
use weft_store::postgres::testing;
use weft_store::{Event, Store, TaskStatus};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

struct Db {
    server: String,
    name: String,
    url: String,
}

impl Db {
    async fn fresh() -> Option<Db> {
        let server = testing::server_url().await?;
        let (name, url) = testing::create_database(&server)
            .await
            .expect("create a database");
        Some(Db { server, name, url })
    }

    async fn drop_it(self) {
        testing::drop_database(&self.server, &self.name)
            .await
            .expect("drop the test database");
    }
}

/// A worker process whose stderr goes to a log file in `dir` (read it when a test fails).
fn spawn_worker(db: &str, dir: &Path, n: usize, lease: &str) -> Child {
    spawn_worker_with(db, dir, n, &["--lease", lease, "--poll", "200ms"])
}

/// `weft worker --concurrency 4` with `extra` arguments (none: the defaults a user has).
fn spawn_worker_with(db: &str, dir: &Path, n: usize, extra: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).expect("worker log");
    Command::new(WEFT)
        .args(["worker", "--db", db])
        .args(extra)
        .args(["--concurrency", "4", "-v"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start weft worker")
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} failed");
}

fn stop_workers(workers: &mut [Child]) {
    for w in workers.iter() {
        signal(w, "-TERM");
    }
    for w in workers.iter_mut() {
        let _ = w.wait();
    }
}

/// `weft run FILE --detach`: the run id it prints.
fn detach(db: &str, dir: &Path, template: &str, extra: &[&str]) -> String {
    let out = Command::new(WEFT)
        .args(["run", template, "--detach", "--db", db])
        .args(extra)
        .current_dir(dir)
        .output()
        .expect("run weft run --detach");
    assert!(
        out.status.success(),
        "weft run --detach failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `weft runs wait RUN --json`: exit code and parsed stdout.
async fn wait_json(db: &str, dir: &Path, run_id: &str) -> (Option<i32>, Value) {
    let mut cmd = tokio::process::Command::new(WEFT);
    cmd.args(["runs", "wait", run_id, "--json", "--db", db])
        .current_dir(dir)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the run ends within 5 minutes")
        .expect("run weft runs wait");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "runs wait printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

async fn all_events(store: &dyn Store, run_id: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events(run_id, after, 1000).await.expect("events");
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(page);
    }
    events
}

/// A small deterministic generator for kill moments (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const FAN_OUT: &str = r#"
name: fanout
version: 1
inputs:
  items: { type: array }
steps:
  - id: work
    for_each: "{{ input.items }}"
    as: item
    concurrency: 8
    retry: { max_attempts: 20, backoff: { type: fixed, initial: 50ms } }
    tool: command
    with:
      argv: [sh, tool.sh]
      stdin: "{{ item }}"
output: "{{ steps.work.output | length }}"
"#;

/// Records every call (key, attempt, item), and how many calls overlap at its start. A call
/// killed with its worker (the parent-death signal) leaves its marker behind, so only markers
/// of live (not zombie) processes count.
const RECORDING_TOOL: &str = r#"
echo "$WEFT_IDEMPOTENCY_KEY $WEFT_ATTEMPT $WEFT_ITEM_INDEX" >> calls.log
mkdir -p active
touch "active/$$"
n=0
for p in active/*; do
  grep -qsE '^State:[[:space:]]+[^Z[:space:]]' "/proc/${p#active/}/status" && n=$((n+1))
done
echo "$n" >> overlap.log
sleep 0.05
rm -f "active/$$"
cat
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_nothing_and_commit_nothing_twice() {
    const ITEMS: u64 = 1000;
    const CAP: u64 = 8;
    let Some(db) = Db::fresh().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("fanout.yaml"), FAN_OUT).expect("write template");
    std::fs::write(d.join("tool.sh"), RECORDING_TOOL).expect("write tool");
    let items: Vec<u64> = (0..ITEMS).collect();
    std::fs::write(
        d.join("inputs.json"),
        serde_json::json!({ "items": items }).to_string(),
    )
    .expect("write inputs");

    let mut workers: Vec<Child> = (0..3).map(|n| spawn_worker(&db.url, d, n, "1s")).collect();
    let run_id = detach(&db.url, d, "fanout.yaml", &["--input-file", "inputs.json"]);
    let store: Arc<dyn Store> = Arc::new(SqlStore::postgres(&db.url).await.expect("open store"));

    // Kill -9 a random worker at random moments while the run is going, restarting it.
    let mut rng = Lcg(0x5eed ^ u64::from(std::process::id()));
    let mut kills = 0;
    let mut spawned = workers.len();
    while kills < 5 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(600))).await;
        let run = store.run("default", &run_id).await.expect("read run");
        if run.is_none_or(|r| r.status.is_terminal()) {
            break;
        }
        let victim = rng.below(workers.len() as u64) as usize;
        workers[victim].kill().expect("kill -9 a worker");
        let _ = workers[victim].wait();
        kills += 1;
        workers[victim] = spawn_worker(&db.url, d, spawned, "1s");
        spawned += 1;
    }

    let (code, view) = wait_json(&db.url, d, &run_id).await;
    stop_workers(&mut workers);
    assert_eq!(code, Some(0), "the run succeeded: {view}");
    assert!(
        kills >= 3,
        "workers were killed while the run was going ({kills} kills)"
    );

    // 1,000 results, in item order, each the item itself.
    let step = view["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "work"))
        .expect("the work step");
    let outputs = step["output"].as_array().expect("a list of results");
    assert_eq!(outputs.len() as u64, ITEMS, "1,000 results");
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out.as_u64(), Some(i as u64), "item {i}'s result");
    }

    // 0 lost, 0 committed twice: one succeeded task row and one success event per item.
    let tasks = store.tasks(&run_id).await.expect("tasks");
    let work: Vec<_> = tasks.iter().filter(|t| t.step_id == "work").collect();
    assert_eq!(work.len() as u64, ITEMS, "one task per item");
    assert!(work.iter().all(|t| t.status == TaskStatus::Succeeded));
    let items: BTreeSet<_> = work.iter().filter_map(|t| t.item).collect();
    assert_eq!(items.len() as u64, ITEMS, "every item has its own task");
    let events = all_events(store.as_ref(), &run_id).await;
    let mut successes: BTreeMap<u32, u32> = BTreeMap::new();
    let mut retries: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.step_id.as_deref() == Some("work"))
    {
        let item = e.item.unwrap_or(u32::MAX);
        match e.kind.as_str() {
            "task.succeeded" => *successes.entry(item).or_default() += 1,
            "task.retrying" => retries
                .entry(item)
                .or_default()
                .push(e.data["reason"].as_str().unwrap_or("?").to_string()),
            _ => {}
        }
    }
    assert_eq!(successes.len() as u64, ITEMS, "every item committed");
    assert!(
        successes.values().all(|n| *n == 1),
        "no item committed twice"
    );
    for (item, reasons) in &retries {
        assert!(
            reasons.iter().all(|r| r == "lease_expired"),
            "item {item} retried only because a worker died: {reasons:?}"
        );
    }

    // Duplicate calls only for tasks a dead worker held: each extra call is a lease_expired
    // retry, and no attempt of an item was called twice.
    let calls = std::fs::read_to_string(d.join("calls.log")).expect("calls log");
    let mut attempts_by_item: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for line in calls.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_key, attempt, item] = parts[..] else {
            panic!("bad call record `{line}`")
        };
        let attempt: u32 = attempt.parse().expect("attempt number");
        let item: u32 = item.parse().expect("item index");
        attempts_by_item.entry(item).or_default().push(attempt);
    }
    assert_eq!(
        attempts_by_item.len() as u64,
        ITEMS,
        "every item was called"
    );
    let mut duplicates = 0;
    for (item, attempts) in &attempts_by_item {
        let distinct: BTreeSet<_> = attempts.iter().collect();
        assert_eq!(
            distinct.len(),
            attempts.len(),
            "item {item}: an attempt ran twice"
        );
        let extra = attempts.len() - 1;
        duplicates += extra;
        let lost = retries.get(item).map_or(0, Vec::len);
        assert!(
            extra <= lost,
            "item {item} was called {} times but only {lost} attempts were lost to a dead worker",
            attempts.len()
        );
    }
    let lease_expired: usize = retries.values().map(Vec::len).sum();

    // The cap held across all worker processes.
    let overlap = std::fs::read_to_string(d.join("overlap.log")).expect("overlap log");
    let most = overlap
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(most <= CAP, "at most {CAP} calls at once, saw {most}");
    eprintln!(
        "{ITEMS} items, {kills} kills, {lease_expired} lease_expired retries, {duplicates} \
         duplicate calls, at most {most} calls at once (cap {CAP})"
    );
    db.drop_it().await;
}

/// The fan-out a new user writes: no `retry:`, no cap.
const PLAIN_FAN_OUT: &str = r#"
name: plain
version: 1
inputs:
  items: { type: array }
steps:
  - id: work
    for_each: "{{ input.items }}"
    tool: command
    with:
      argv: [sh, tool.sh]
      stdin: "{{ item }}"
output: "{{ steps.work.output | length }}"
"#;

/// Issue 13: with default settings a worker killed mid-run used to spend the only attempt of
/// each task it held, and the run failed with a third of its items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_with_default_settings_fail_no_item() {
    const ITEMS: u64 = 300;
    let Some(db) = Db::fresh().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("plain.yaml"), PLAIN_FAN_OUT).expect("write template");
    std::fs::write(d.join("tool.sh"), RECORDING_TOOL).expect("write tool");
    let items: Vec<u64> = (0..ITEMS).collect();
    std::fs::write(
        d.join("inputs.json"),
        serde_json::json!({ "items": items }).to_string(),
    )
    .expect("write inputs");
    let mut workers: Vec<Child> = (0..3)
        .map(|n| spawn_worker_with(&db.url, d, n, &[]))
        .collect();
    let run_id = detach(&db.url, d, "plain.yaml", &["--input-file", "inputs.json"]);
    let store: Arc<dyn Store> = Arc::new(SqlStore::postgres(&db.url).await.expect("open store"));

    // Two workers killed with SIGKILL while they hold tasks, then started again.
    let mut kills = 0;
    for victim in [0, 1] {
        let seen = (victim + 1) * 40;
        while std::fs::read_to_string(d.join("calls.log")).map_or(0, |c| c.lines().count()) < seen {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        workers[victim].kill().expect("kill -9 a worker");
        let _ = workers[victim].wait();
        kills += 1;
        workers[victim] = spawn_worker_with(&db.url, d, 3 + victim, &[]);
    }
    let (code, view) = wait_json(&db.url, d, &run_id).await;
    stop_workers(&mut workers);
    assert_eq!(kills, 2);
    assert_eq!(code, Some(0), "the run succeeded: {view}");
    assert_eq!(view["output"], ITEMS, "{ITEMS}/{ITEMS} items");
    let events = all_events(store.as_ref(), &run_id).await;
    let mut successes: BTreeMap<u32, u32> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "task.succeeded") {
        *successes.entry(e.item.unwrap_or(u32::MAX)).or_default() += 1;
    }
    assert_eq!(successes.len() as u64, ITEMS, "every item committed");
    assert!(
        successes.values().all(|n| *n == 1),
        "no item committed twice"
    );
    assert!(
        events.iter().all(|e| e.kind != "task.failed"),
        "no task failed"
    );
    db.drop_it().await;
}

const SLOW_ONE: &str = r#"
name: slow-one
version: 1
steps:
  - id: only
    tool: command
    retry: { max_attempts: 5, backoff: { type: fixed, initial: 50ms } }
    with:
      argv: [sh, -c, 'echo "$WEFT_ATTEMPT" >> calls.log; sleep 2; echo "{\"attempt\": $WEFT_ATTEMPT}"']
output: "{{ steps.only.output.attempt }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_cannot_commit_after_its_lease_expired() {
    let Some(db) = Db::fresh().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("slow.yaml"), SLOW_ONE).expect("write template");
    let store: Arc<dyn Store> = Arc::new(SqlStore::postgres(&db.url).await.expect("open store"));

    let mut paused = spawn_worker(&db.url, d, 0, "600ms");
    let run_id = detach(&db.url, d, "slow.yaml", &[]);
    // Pause the worker once its call has started.
    while !std::fs::read_to_string(d.join("calls.log")).is_ok_and(|c| c.contains('1')) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&paused, "-STOP");
    let mut other = spawn_worker(&db.url, d, 1, "600ms");
    let (code, view) = wait_json(&db.url, d, &run_id).await;
    assert_eq!(code, Some(0), "{view}");
    assert_eq!(
        view["output"], 2,
        "the run's result is the second attempt's"
    );

    // The paused worker wakes up holding attempt 1's result (its tool process was not
    // paused) and tries to commit it; fencing refuses. Stop it gracefully and look again.
    signal(&paused, "-CONT");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop_workers(std::slice::from_mut(&mut paused));
    stop_workers(std::slice::from_mut(&mut other));

    let run = store
        .run("default", &run_id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(
        run.output,
        Some(serde_json::json!(2)),
        "the late result changed nothing"
    );
    let tasks = store.tasks(&run_id).await.expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].status, tasks[0].attempt),
        (TaskStatus::Succeeded, 2)
    );
    assert_eq!(tasks[0].output, Some(serde_json::json!({"attempt": 2})));
    let events = all_events(store.as_ref(), &run_id).await;
    let succeeded: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "task.succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "one committed result");
    assert_eq!(succeeded[0].attempt, Some(2));
    let retry = events
        .iter()
        .find(|e| e.kind == "task.retrying")
        .expect("the lost attempt is recorded");
    assert_eq!(retry.data["reason"], "lease_expired");
    db.drop_it().await;
}

const QUICK: &str = r#"
name: quick
version: 1
inputs:
  who: { type: string }
steps:
  - id: hello
    tool: transform
    with: { data: "{{ input.who }}", jq: '"hi " + .' }
output: "{{ steps.hello.output }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_identical_requests_make_one_run() {
    let Some(db) = Db::fresh().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let file: PathBuf = dir.path().join("quick.yaml");
    std::fs::write(&file, QUICK).expect("write template");
    let tools = Arc::new(weft_tools::Registry::with_builtins(
        &weft_tools::ToolsConfig::default(),
    ));
    let plan = Arc::new(weft_core::load::load_file(&file, &*tools).expect("template loads"));
    let store: Arc<dyn Store> = Arc::new(SqlStore::postgres(&db.url).await.expect("open store"));
    let engine = weft_engine::Engine::new(store.clone(), tools);
    let inputs = serde_json::json!({"who": "there"});
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (engine, plan, inputs) = (engine.clone(), plan.clone(), inputs.clone());
        requests.spawn(async move {
            engine
                .create_run(weft_engine::NewRun {
                    tenant: "default".into(),
                    plan,
                    inputs,
                    idempotency_key: Some("order-42".into()),
                    base_dir: None,
                })
                .await
                .map(|r| r.id)
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(done) = requests.join_next().await {
        ids.insert(done.expect("join").expect("every request is answered"));
    }
    assert_eq!(ids.len(), 1, "100 identical requests, one run");
    let runs = store
        .runs(&weft_store::RunQuery {
            tenant: "default".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(runs.len(), 1, "one run in the store");
    db.drop_it().await;
}
