//! The one contract every backend must keep, as runnable checks.
//!
//! Each public `async fn` here takes a fresh, empty store and panics when the backend breaks the
//! contract. A backend's test file instantiates all of them with [`conformance_tests!`], which
//! makes one `#[tokio::test]` per check, so SQLite and PostgreSQL run the same suite unchanged.
//! The checks say what the engine relies on: tenant scoping, fenced commits, leases, caps that
//! hold under concurrent claimers, and an event log that replays without gaps or duplicates.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use weft_store::*;

/// A fresh store for one check, and whatever it takes to clean it up afterwards.
pub trait Fixture: Send {
    fn store(&self) -> Arc<dyn Store>;
    fn teardown(self) -> impl Future<Output = ()> + Send;
}

/// Generates one `#[tokio::test]` per conformance check. `$fixture` is an `async fn() ->
/// Option<impl Fixture>`; `None` skips the check (the backend is not available here).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:ident) => {
        $crate::conformance_tests!(@tests $fixture;
            runs_insert_and_read,
            run_status_stamps,
            idempotency_key_lookup,
            steps_insert_update_load,
            tx_dropped_without_commit_rolls_back,
            claim_leases_ready_tasks,
            claim_honours_step_concurrency,
            next_ready_at_ignores_tasks_already_due,
            claim_skips_runs_and_steps_not_running,
            claim_takes_from_running_steps_of_a_waiting_run,
            counts_out_of_range_are_refused_not_truncated,
            concurrent_claims_never_share_a_task,
            concurrent_claims_respect_the_cap,
            finish_task_is_fenced,
            retry_task_requeues_next_attempt,
            stale_tasks_and_reclaim,
            renew_leases_extends_own_tasks,
            cancel_tasks_stops_queued_and_running,
            requeue_unfinished_resets_failed,
            item_results_in_item_order,
            cache_put_get_expiry,
            events_replay_exactly,
            concurrent_events_replay_without_gaps,
            runs_list_newest_first_filters_and_pages,
            queue_status_counts_due_tasks_and_leases,
            schema_status_is_current_after_open,
            waiting_tasks_are_never_claimed_and_decided_once,
            workers_register_beat_and_leave,
        );
    };
    (@tests $fixture:ident; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(fixture) = $fixture().await else { return };
            $crate::conformance::$name($crate::conformance::Fixture::store(&fixture)).await;
            $crate::conformance::Fixture::teardown(fixture).await;
        }
    )*};
}

const TENANT: &str = "acme";

/// A run row with sensible defaults.
pub fn sample_run(id: &str, tenant: &str, created_at: i64) -> Run {
    Run {
        id: id.into(),
        tenant: tenant.into(),
        template: "sample".into(),
        version: "1".into(),
        digest: "d1".into(),
        source: "name: sample\nsteps: []\n".into(),
        files: json!({"a.txt": "text"}),
        file: "sample.yaml".into(),
        base_dir: Some("/tmp".into()),
        inputs: json!({"n": 3, "names": ["a", "b"]}),
        status: RunStatus::Running,
        output: None,
        error: None,
        idempotency_key: None,
        request_digest: None,
        created_at,
        started_at: Some(created_at),
        finished_at: None,
        updated_at: created_at,
        budget: None,
        parent: None,
    }
}

fn new_task(run_id: &str, step_id: &str, item: Option<u32>, not_before: i64) -> NewTask {
    NewTask {
        run_id: run_id.into(),
        tenant: TENANT.into(),
        step_id: step_id.into(),
        item,
        tool: "echo".into(),
        input: json!({"item": item}),
        max_attempts: 3,
        not_before,
        cache_key: None,
        done: None,
    }
}

async fn begin(store: &Arc<dyn Store>) -> Box<dyn Tx> {
    store.begin().await.expect("begin a transaction")
}

/// Inserts a running run with running steps `(step_id, concurrency)`.
async fn running_run(store: &Arc<dyn Store>, run_id: &str, steps: &[(&str, Option<u32>)]) -> i64 {
    let mut tx = begin(store).await;
    let now = tx.now();
    tx.insert_run(&sample_run(run_id, TENANT, now))
        .await
        .expect("insert run");
    let rows: Vec<StepRow> = steps
        .iter()
        .enumerate()
        .map(|(i, (id, cap))| StepRow {
            status: StepStatus::Running,
            concurrency: *cap,
            ..StepRow::new(run_id, id, i as u32, Some("echo"))
        })
        .collect();
    tx.insert_steps(&rows).await.expect("insert steps");
    tx.commit().await.expect("commit");
    now
}

/// Queues `n` fan-out items of one step, ready now.
async fn queue_items(store: &Arc<dyn Store>, run_id: &str, step_id: &str, n: u32) {
    let mut tx = begin(store).await;
    let now = tx.now();
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| new_task(run_id, step_id, Some(i), now))
        .collect();
    tx.insert_tasks(&tasks).await.expect("insert tasks");
    tx.commit().await.expect("commit");
}

async fn claim(
    store: &Arc<dyn Store>,
    owner: &str,
    limit: u32,
    lease_ms: i64,
    only_runs: Option<&[String]>,
) -> Vec<Task> {
    let mut tx = begin(store).await;
    let claimed = tx
        .claim(owner, limit, lease_ms, only_runs, None)
        .await
        .expect("claim");
    tx.commit().await.expect("commit");
    claimed
}

async fn task_by_id(store: &Arc<dyn Store>, run_id: &str, id: i64) -> Task {
    store
        .tasks(run_id)
        .await
        .expect("tasks")
        .into_iter()
        .find(|t| t.id == id)
        .expect("the task exists")
}

async fn finish(store: &Arc<dyn Store>, task: &Task, owner: &str, output: Value) -> bool {
    let mut tx = begin(store).await;
    let ok = tx
        .finish_task(&TaskFinish {
            task_id: task.id,
            attempt: task.attempt,
            owner,
            status: TaskStatus::Succeeded,
            output: Some(&output),
            error: None,
        })
        .await
        .expect("finish_task");
    tx.commit().await.expect("commit");
    ok
}

/// A run reads back as written, and only for its own tenant.
pub async fn runs_insert_and_read(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    let now = tx.now();
    let mut run = sample_run("run_a", TENANT, now);
    run.idempotency_key = Some("key-1".into());
    run.request_digest = Some("digest-1".into());
    tx.insert_run(&run).await.expect("insert run");
    tx.commit().await.expect("commit");

    let read = store.run(TENANT, "run_a").await.expect("read run");
    assert_eq!(
        read.as_ref(),
        Some(&run),
        "a run reads back exactly as inserted"
    );
    assert_eq!(
        store.run("other-tenant", "run_a").await.expect("read run"),
        None,
        "another tenant's run is not found"
    );
    assert_eq!(store.run(TENANT, "run_missing").await.expect("read"), None);

    let mut tx = begin(&store).await;
    let locked = tx.lock_run("run_a").await.expect("lock run");
    assert_eq!(locked.as_ref(), Some(&run), "lock_run reads the run");
    assert_eq!(tx.lock_run("run_missing").await.expect("lock run"), None);
    tx.commit().await.expect("commit");
}

/// `set_run_status` stamps `finished_at` on terminal states and keeps the output.
pub async fn run_status_stamps(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    let created = tx.now();
    let mut run = sample_run("run_s", TENANT, created);
    run.status = RunStatus::Queued;
    run.started_at = None;
    tx.insert_run(&run).await.expect("insert run");
    tx.commit().await.expect("commit");

    let mut tx = begin(&store).await;
    let update = RunUpdate {
        status: RunStatus::Running,
        output: None,
        error: None,
    };
    tx.set_run_status("run_s", &update).await.expect("status");
    tx.commit().await.expect("commit");
    let r = store
        .run(TENANT, "run_s")
        .await
        .expect("read")
        .expect("run");
    assert_eq!(r.status, RunStatus::Running);
    assert!(r.started_at.is_some(), "running stamps started_at");
    assert_eq!(r.finished_at, None);

    let mut tx = begin(&store).await;
    let update = RunUpdate {
        status: RunStatus::Succeeded,
        output: Some(json!({"answer": 42})),
        error: None,
    };
    tx.set_run_status("run_s", &update).await.expect("status");
    tx.commit().await.expect("commit");
    let r = store
        .run(TENANT, "run_s")
        .await
        .expect("read")
        .expect("run");
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(r.output, Some(json!({"answer": 42})));
    assert!(
        r.finished_at.is_some(),
        "a terminal status stamps finished_at"
    );
    assert!(r.updated_at >= created);
}

/// Idempotency keys are looked up per tenant, and a key is used at most once per tenant.
pub async fn idempotency_key_lookup(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    let now = tx.now();
    let mut run = sample_run("run_k", TENANT, now);
    run.idempotency_key = Some("same".into());
    run.request_digest = Some("digest".into());
    tx.insert_run(&run).await.expect("insert run");
    let mut other = sample_run("run_k2", "tenant-2", now);
    other.idempotency_key = Some("same".into());
    tx.insert_run(&other)
        .await
        .expect("the same key in another tenant is fine");
    tx.commit().await.expect("commit");

    let mut tx = begin(&store).await;
    let found = tx
        .run_by_idempotency_key(TENANT, "same")
        .await
        .expect("lookup");
    assert_eq!(found.map(|r| r.id), Some("run_k".to_string()));
    let found = tx
        .run_by_idempotency_key("tenant-2", "same")
        .await
        .expect("lookup");
    assert_eq!(found.map(|r| r.id), Some("run_k2".to_string()));
    assert_eq!(
        tx.run_by_idempotency_key("tenant-3", "same")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        tx.run_by_idempotency_key(TENANT, "other")
            .await
            .expect("lookup"),
        None
    );
    drop(tx);

    let mut tx = begin(&store).await;
    let mut dup = sample_run("run_k3", TENANT, now);
    dup.idempotency_key = Some("same".into());
    assert!(
        tx.insert_run(&dup).await.is_err(),
        "a second run with the same key in the same tenant is refused"
    );
}

/// Steps read back in plan order; updates and item counters stick.
pub async fn steps_insert_update_load(store: Arc<dyn Store>) {
    running_run(&store, "run_st", &[("b", None)]).await;
    let mut tx = begin(&store).await;
    let mut first = StepRow::new("run_st", "a", 0, Some("echo"));
    first.items_total = Some(4);
    first.concurrency = Some(2);
    // Inserted after "b" (idx 0) but ordered by idx, so give it idx 2.
    first.idx = 2;
    tx.insert_steps(std::slice::from_ref(&first))
        .await
        .expect("insert");
    let steps = tx.load_steps("run_st").await.expect("load");
    assert_eq!(
        steps.iter().map(|s| s.step_id.as_str()).collect::<Vec<_>>(),
        ["b", "a"],
        "steps come in idx order"
    );
    assert_eq!(steps[1], first);

    first.status = StepStatus::Succeeded;
    first.output = Some(json!([1, 2, {"x": "y"}]));
    first.error = Some("partial".into());
    first.attempts = 2;
    first.cache_hits = 1;
    first.started_at = Some(10);
    first.finished_at = Some(20);
    tx.update_step(&first).await.expect("update");
    tx.count_items("run_st", "a", 3, 1).await.expect("count");
    tx.count_items("run_st", "a", 1, 0).await.expect("count");
    tx.commit().await.expect("commit");

    let steps = store.steps("run_st").await.expect("steps");
    let a = steps.iter().find(|s| s.step_id == "a").expect("step a");
    assert_eq!(a.status, StepStatus::Succeeded);
    assert_eq!(a.output, first.output);
    assert_eq!(a.error.as_deref(), Some("partial"));
    assert_eq!((a.attempts, a.cache_hits), (2, 1));
    assert_eq!((a.items_done, a.items_failed), (4, 1), "count_items adds");
    assert_eq!(a.concurrency, Some(2));
    assert_eq!((a.started_at, a.finished_at), (Some(10), Some(20)));
    assert!(store.steps("run_missing").await.expect("steps").is_empty());
}

/// A transaction dropped without commit leaves nothing behind.
pub async fn tx_dropped_without_commit_rolls_back(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    let now = tx.now();
    tx.insert_run(&sample_run("run_gone", TENANT, now))
        .await
        .expect("insert");
    drop(tx);
    assert_eq!(store.run(TENANT, "run_gone").await.expect("read"), None);
    // The store is still usable afterwards.
    running_run(&store, "run_after", &[("s", None)]).await;
    assert!(
        store
            .run(TENANT, "run_after")
            .await
            .expect("read")
            .is_some()
    );
}

/// Claiming leases ready tasks in item order, with the store's clock, and not the others.
pub async fn claim_leases_ready_tasks(store: Arc<dyn Store>) {
    running_run(&store, "run_c", &[("s", None)]).await;
    running_run(&store, "run_d", &[("s", None)]).await;
    let mut tx = begin(&store).await;
    let now = tx.now();
    let mut tasks: Vec<NewTask> = (0..4)
        .map(|i| new_task("run_c", "s", Some(i), now))
        .collect();
    tasks.push(new_task("run_c", "s", Some(4), now + 3_600_000));
    tasks.push(new_task("run_d", "s", Some(0), now));
    let mut done = new_task("run_c", "s", Some(5), now);
    done.done = Some((TaskStatus::Succeeded, json!("cached"), None, true));
    tasks.push(done);
    tx.insert_tasks(&tasks).await.expect("insert tasks");
    tx.commit().await.expect("commit");

    let only = vec!["run_c".to_string()];
    let first = claim(&store, "w1", 3, 60_000, Some(&only)).await;
    assert_eq!(
        first.iter().map(|t| t.item).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)],
        "up to `limit` tasks, in item order"
    );
    for t in &first {
        assert_eq!(t.status, TaskStatus::Running);
        assert_eq!(t.lease_owner.as_deref(), Some("w1"));
        assert_eq!(t.attempt, 1);
        assert_eq!(t.run_id, "run_c");
        assert_eq!(t.input, json!({"item": t.item}));
        let expires = t.lease_expires.expect("a lease deadline");
        assert!(
            expires >= now + 60_000 && expires < now + 60_000 + 3_600_000,
            "the lease runs from the store's clock"
        );
    }
    let second = claim(&store, "w2", 10, 60_000, Some(&only)).await;
    assert_eq!(
        second.iter().map(|t| t.item).collect::<Vec<_>>(),
        [Some(3)],
        "not tasks already leased, not tasks before not_before, not finished ones, not other runs"
    );
    assert!(
        claim(&store, "w2", 0, 60_000, None).await.is_empty(),
        "limit 0 claims nothing"
    );
    let empty: Vec<String> = Vec::new();
    assert!(
        claim(&store, "w2", 10, 60_000, Some(&empty))
            .await
            .is_empty()
    );
    let rest = claim(&store, "w3", 10, 60_000, None).await;
    assert_eq!(
        rest.iter()
            .map(|t| (t.run_id.as_str(), t.item))
            .collect::<Vec<_>>(),
        [("run_d", Some(0))]
    );

    let mut tx = begin(&store).await;
    let next = tx.next_ready_at(Some(&only)).await.expect("next_ready_at");
    assert_eq!(
        next,
        Some(now + 3_600_000),
        "next_ready_at names the waiting task"
    );
    let other = vec!["run_d".to_string()];
    assert_eq!(
        tx.next_ready_at(Some(&other)).await.expect("next_ready_at"),
        None
    );
    assert_eq!(
        tx.next_ready_at(Some(&empty)).await.expect("next_ready_at"),
        None
    );
    drop(tx);

    let cached = store
        .tasks("run_c")
        .await
        .expect("tasks")
        .into_iter()
        .find(|t| t.item == Some(5))
        .expect("the finished task");
    assert_eq!(cached.status, TaskStatus::Succeeded);
    assert!(cached.cache_hit);
    assert_eq!(cached.output, Some(json!("cached")));
}

/// A step with `concurrency: n` never has more than n tasks leased.
pub async fn claim_honours_step_concurrency(store: Arc<dyn Store>) {
    running_run(&store, "run_cap", &[("capped", Some(2)), ("free", None)]).await;
    queue_items(&store, "run_cap", "capped", 5).await;
    queue_items(&store, "run_cap", "free", 3).await;
    let claimed = claim(&store, "w1", 10, 60_000, None).await;
    let capped: Vec<_> = claimed.iter().filter(|t| t.step_id == "capped").collect();
    assert_eq!(capped.len(), 2, "the cap holds within one claim");
    assert_eq!(claimed.iter().filter(|t| t.step_id == "free").count(), 3);
    assert!(
        claim(&store, "w2", 10, 60_000, None).await.is_empty(),
        "the cap holds across claimers"
    );
    assert!(finish(&store, capped[0], "w1", json!(1)).await);
    let next = claim(&store, "w2", 10, 60_000, None).await;
    assert_eq!(next.len(), 1, "a finished task frees one slot");
    assert_eq!(next[0].step_id, "capped");
}

/// Regression: `next_ready_at` named tasks that were due but held back by a cap, so a worker
/// with free slots saw "ready now" on every turn and spun.
pub async fn next_ready_at_ignores_tasks_already_due(store: Arc<dyn Store>) {
    running_run(&store, "run_n", &[("s", Some(1))]).await;
    queue_items(&store, "run_n", "s", 3).await;
    assert_eq!(claim(&store, "w", 5, 60_000, None).await.len(), 1);
    let mut tx = begin(&store).await;
    assert_eq!(
        tx.next_ready_at(None).await.expect("next"),
        None,
        "due tasks are not waiting"
    );
    let later = tx.now() + 60_000;
    tx.insert_tasks(&[new_task("run_n", "s", Some(9), later)])
        .await
        .expect("insert");
    assert_eq!(tx.next_ready_at(None).await.expect("next"), Some(later));
}

/// Only tasks of running steps of running runs are claimed.
pub async fn claim_skips_runs_and_steps_not_running(store: Arc<dyn Store>) {
    running_run(&store, "run_live", &[("s", None)]).await;
    running_run(&store, "run_done", &[("s", None)]).await;
    queue_items(&store, "run_live", "s", 1).await;
    queue_items(&store, "run_done", "s", 1).await;
    let mut tx = begin(&store).await;
    let update = RunUpdate {
        status: RunStatus::Cancelled,
        output: None,
        error: Some("cancelled".into()),
    };
    tx.set_run_status("run_done", &update)
        .await
        .expect("status");
    let mut steps = tx.load_steps("run_live").await.expect("steps");
    steps[0].status = StepStatus::Pending;
    tx.update_step(&steps[0]).await.expect("update");
    tx.commit().await.expect("commit");
    assert!(claim(&store, "w", 10, 60_000, None).await.is_empty());

    let mut tx = begin(&store).await;
    steps[0].status = StepStatus::Running;
    tx.update_step(&steps[0]).await.expect("update");
    tx.commit().await.expect("commit");
    let claimed = claim(&store, "w", 10, 60_000, None).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run_id, "run_live");
}

/// A run is `waiting` while one of its steps waits for a decision; its other running steps
/// keep going: their ready tasks are claimed (SQLite used to claim only from `running` runs).
pub async fn claim_takes_from_running_steps_of_a_waiting_run(store: Arc<dyn Store>) {
    running_run(&store, "run_w", &[("ask", None), ("work", None)]).await;
    queue_items(&store, "run_w", "work", 2).await;
    let mut tx = begin(&store).await;
    let mut steps = tx.load_steps("run_w").await.expect("steps");
    steps[0].status = StepStatus::Waiting;
    tx.update_step(&steps[0]).await.expect("update");
    let update = RunUpdate {
        status: RunStatus::Waiting,
        output: None,
        error: None,
    };
    tx.set_run_status("run_w", &update).await.expect("status");
    tx.commit().await.expect("commit");
    let claimed = claim(&store, "w", 10, 60_000, None).await;
    assert_eq!(
        claimed.len(),
        2,
        "both items of the running step are claimed"
    );
    assert!(claimed.iter().all(|t| t.step_id == "work"));
}

/// A count that does not fit its field is refused as corrupt on every backend, never read
/// back truncated (SQLite used to cast with `as u32`: 5,000,000,000 read as 705,032,704).
pub async fn counts_out_of_range_are_refused_not_truncated(store: Arc<dyn Store>) {
    running_run(&store, "run_big", &[("s", None)]).await;
    let mut tx = begin(&store).await;
    tx.count_items("run_big", "s", 5_000_000_000, 0)
        .await
        .expect("count");
    tx.commit().await.expect("commit");
    match store.steps("run_big").await {
        Err(Error::Corrupt(what)) => assert!(what.contains("items_done"), "{what}"),
        other => panic!("expected a corrupt-value error, got {other:?}"),
    }
}

/// Concurrent claimers each get different tasks, and together get them all.
pub async fn concurrent_claims_never_share_a_task(store: Arc<dyn Store>) {
    running_run(&store, "run_many", &[("s", None)]).await;
    queue_items(&store, "run_many", "s", 200).await;
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = store.clone();
        claimers.spawn(async move {
            let owner = format!("w{w}");
            let mut mine = Vec::new();
            loop {
                let got = claim(&store, &owner, 7, 60_000, None).await;
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|t| t.id));
            }
            mine
        });
    }
    let mut all = Vec::new();
    while let Some(mine) = claimers.join_next().await {
        all.extend(mine.expect("claimer"));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "no task was leased to two claimers"
    );
    assert_eq!(all.len(), 200, "every task was leased");
}

/// A step's cap holds while several claimers lease and finish its tasks at once.
pub async fn concurrent_claims_respect_the_cap(store: Arc<dyn Store>) {
    const CAP: usize = 3;
    running_run(&store, "run_cc", &[("s", Some(CAP as u32))]).await;
    queue_items(&store, "run_cc", "s", 40).await;
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let (store, held, most) = (store.clone(), held.clone(), most.clone());
        claimers.spawn(async move {
            let owner = format!("w{w}");
            let mut done = Vec::new();
            let mut idle = 0;
            while idle < 50 {
                let got = claim(&store, &owner, 2, 60_000, None).await;
                if got.is_empty() {
                    let left = store.tasks("run_cc").await.expect("tasks");
                    if left.iter().all(|t| t.status == TaskStatus::Succeeded) {
                        break;
                    }
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                // Counted after the claim committed and uncounted before the finish commits,
                // so this is never more than what the store counts as leased.
                let now_held = held.fetch_add(got.len(), Ordering::SeqCst) + got.len();
                most.fetch_max(now_held, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                held.fetch_sub(got.len(), Ordering::SeqCst);
                for t in &got {
                    assert!(finish(&store, t, &owner, json!(t.item)).await);
                    done.push(t.id);
                }
            }
            done
        });
    }
    let mut all = Vec::new();
    while let Some(done) = claimers.join_next().await {
        all.extend(done.expect("claimer"));
    }
    assert!(
        most.load(Ordering::SeqCst) <= CAP,
        "at most {CAP} tasks were leased at once, saw {}",
        most.load(Ordering::SeqCst)
    );
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!((distinct.len(), all.len()), (40, 40), "each task ran once");
}

/// Only the current attempt of the current owner can end a task, and only once.
pub async fn finish_task_is_fenced(store: Arc<dyn Store>) {
    running_run(&store, "run_f", &[("s", None)]).await;
    queue_items(&store, "run_f", "s", 1).await;
    let task = claim(&store, "w1", 1, 60_000, None).await.remove(0);
    let mut tx = begin(&store).await;
    let output = json!({"ok": true});
    let attempt = |attempt, owner| TaskFinish {
        task_id: task.id,
        attempt,
        owner,
        status: TaskStatus::Succeeded,
        output: Some(&output),
        error: None,
    };
    assert!(
        !tx.finish_task(&attempt(2, "w1")).await.expect("finish"),
        "wrong attempt"
    );
    assert!(
        !tx.finish_task(&attempt(1, "w2")).await.expect("finish"),
        "wrong owner"
    );
    assert!(
        tx.finish_task(&attempt(1, "w1")).await.expect("finish"),
        "the lease holder"
    );
    assert!(
        !tx.finish_task(&attempt(1, "w1")).await.expect("finish"),
        "a finished task cannot finish again"
    );
    tx.commit().await.expect("commit");
    let t = task_by_id(&store, "run_f", task.id).await;
    assert_eq!(t.status, TaskStatus::Succeeded);
    assert_eq!(t.output, Some(output.clone()));
    assert_eq!(t.lease_owner, None, "a finished task holds no lease");
    assert!(t.finished_at.is_some());

    let mut tx = begin(&store).await;
    let failed = tx
        .retry_task(task.id, 1, "w1", tx.now(), "again")
        .await
        .expect("retry");
    assert!(!failed, "a finished task cannot be retried");
    assert!(!tx.reclaim_task(task.id, 1).await.expect("reclaim"));
}

/// A retry is the next attempt, not claimable before its time, and fences the old attempt.
pub async fn retry_task_requeues_next_attempt(store: Arc<dyn Store>) {
    running_run(&store, "run_r", &[("s", None)]).await;
    queue_items(&store, "run_r", "s", 2).await;
    let claimed = claim(&store, "w1", 2, 60_000, None).await;
    let (task, soon) = (&claimed[0], &claimed[1]);
    let mut tx = begin(&store).await;
    let now = tx.now();
    let later = now + 3_600_000;
    assert!(
        !tx.retry_task(task.id, 1, "w2", later, "x")
            .await
            .expect("retry"),
        "wrong owner"
    );
    assert!(
        !tx.retry_task(task.id, 2, "w1", later, "x")
            .await
            .expect("retry"),
        "wrong attempt"
    );
    assert!(
        tx.retry_task(task.id, 1, "w1", later, "boom")
            .await
            .expect("retry")
    );
    assert!(
        tx.retry_task(soon.id, 1, "w1", now, "blip")
            .await
            .expect("retry")
    );
    tx.commit().await.expect("commit");

    let t = task_by_id(&store, "run_r", task.id).await;
    assert_eq!(t.status, TaskStatus::Queued);
    assert_eq!(t.attempt, 2);
    assert_eq!(t.error.as_deref(), Some("boom"));
    assert_eq!(t.lease_owner, None);
    assert!(
        !finish(&store, task, "w1", json!("late")).await,
        "the old attempt is fenced"
    );
    let again = claim(&store, "w2", 5, 60_000, None).await;
    assert_eq!(
        again.iter().map(|t| (t.id, t.attempt)).collect::<Vec<_>>(),
        [(soon.id, 2)],
        "a retry is claimable as the next attempt once due, and not before"
    );
    let mut tx = begin(&store).await;
    assert_eq!(tx.next_ready_at(None).await.expect("next"), Some(later));
}

/// Expired leases (and dead owners) show up as stale; reclaiming is the next attempt, once.
pub async fn stale_tasks_and_reclaim(store: Arc<dyn Store>) {
    running_run(&store, "run_l", &[("s", None)]).await;
    queue_items(&store, "run_l", "s", 3).await;
    let short = claim(&store, "w-short", 1, 1, None).await.remove(0);
    let dead = claim(&store, "w-dead", 1, 3_600_000, None).await.remove(0);
    let alive = claim(&store, "w-alive", 1, 3_600_000, None).await.remove(0);
    // Let the 1 ms lease lapse on the store's clock.
    loop {
        let now = store.now().await.expect("now");
        if now > short.lease_expires.expect("lease") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut tx = begin(&store).await;
    let stale: Vec<i64> = tx
        .stale_tasks(&[], 100)
        .await
        .expect("stale")
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(stale, [short.id], "only the expired lease is stale");
    let stale: BTreeSet<i64> = tx
        .stale_tasks(&["w-dead".to_string()], 100)
        .await
        .expect("stale")
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        stale,
        BTreeSet::from([short.id, dead.id]),
        "dead owners' tasks are stale"
    );
    assert_eq!(
        tx.stale_tasks(&[], 0).await.expect("stale").len(),
        0,
        "limit applies"
    );
    assert!(tx.reclaim_task(short.id, 1).await.expect("reclaim"));
    assert!(
        !tx.reclaim_task(short.id, 1).await.expect("reclaim"),
        "reclaimed once"
    );
    tx.commit().await.expect("commit");

    let t = task_by_id(&store, "run_l", short.id).await;
    assert_eq!((t.status, t.attempt), (TaskStatus::Queued, 2));
    assert_eq!(t.lease_owner, None);
    assert!(
        !finish(&store, &short, "w-short", json!("late")).await,
        "the lost owner is fenced"
    );
    let again = claim(&store, "w-new", 5, 60_000, None).await;
    assert_eq!(
        again.iter().map(|t| (t.id, t.attempt)).collect::<Vec<_>>(),
        [(short.id, 2)]
    );
    assert!(finish(&store, &again[0], "w-new", json!("ok")).await);
    assert!(finish(&store, &alive, "w-alive", json!("ok")).await);
}

/// Renewing extends only the owner's running leases and names them.
pub async fn renew_leases_extends_own_tasks(store: Arc<dyn Store>) {
    running_run(&store, "run_h", &[("s", None)]).await;
    queue_items(&store, "run_h", "s", 4).await;
    let mine = claim(&store, "w1", 2, 1_000, None).await;
    let theirs = claim(&store, "w2", 1, 1_000, None).await;
    assert!(finish(&store, &mine[1], "w1", json!(1)).await);
    let mut tx = begin(&store).await;
    let renewed = tx.renew_leases("w1", 3_600_000).await.expect("renew");
    let now = tx.now();
    tx.commit().await.expect("commit");
    assert_eq!(renewed, [mine[0].id], "only running tasks of this owner");
    let t = task_by_id(&store, "run_h", mine[0].id).await;
    assert!(t.lease_expires.expect("lease") >= now + 3_600_000 - 1);
    let other = task_by_id(&store, "run_h", theirs[0].id).await;
    assert_eq!(
        other.lease_expires, theirs[0].lease_expires,
        "others' leases untouched"
    );
    let mut tx = begin(&store).await;
    assert!(
        tx.renew_leases("nobody", 1000)
            .await
            .expect("renew")
            .is_empty()
    );
}

/// Cancelling stops queued and running tasks of a run (or one step), not finished ones.
pub async fn cancel_tasks_stops_queued_and_running(store: Arc<dyn Store>) {
    running_run(&store, "run_x", &[("a", None), ("b", None)]).await;
    running_run(&store, "run_y", &[("a", None)]).await;
    queue_items(&store, "run_x", "a", 3).await;
    queue_items(&store, "run_x", "b", 2).await;
    queue_items(&store, "run_y", "a", 1).await;
    let only = vec!["run_x".to_string()];
    let claimed = claim(&store, "w", 2, 60_000, Some(&only)).await;
    assert!(finish(&store, &claimed[0], "w", json!("done")).await);
    let mut tx = begin(&store).await;
    assert_eq!(
        tx.cancel_tasks("run_x", Some("b")).await.expect("cancel"),
        2
    );
    assert_eq!(tx.cancel_tasks("run_x", None).await.expect("cancel"), 2);
    assert_eq!(tx.cancel_tasks("run_x", None).await.expect("cancel"), 0);
    tx.commit().await.expect("commit");
    let tasks = store.tasks("run_x").await.expect("tasks");
    let statuses: Vec<_> = tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == TaskStatus::Succeeded)
            .count(),
        1
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == TaskStatus::Cancelled)
            .count(),
        4
    );
    assert!(tasks.iter().all(|t| t.lease_owner.is_none()));
    assert!(
        !finish(&store, &claimed[1], "w", json!("late")).await,
        "a cancelled task is fenced"
    );
    assert_eq!(
        store.tasks("run_y").await.expect("tasks")[0].status,
        TaskStatus::Queued
    );
}

/// Resume puts failed and cancelled tasks back as a fresh first attempt.
pub async fn requeue_unfinished_resets_failed(store: Arc<dyn Store>) {
    running_run(&store, "run_q", &[("s", None)]).await;
    queue_items(&store, "run_q", "s", 3).await;
    let claimed = claim(&store, "w", 3, 60_000, None).await;
    let mut tx = begin(&store).await;
    let fin = |i: usize, status| TaskFinish {
        task_id: claimed[i].id,
        attempt: 1,
        owner: "w",
        status,
        output: None,
        error: Some("bad"),
    };
    assert!(
        tx.finish_task(&fin(0, TaskStatus::Failed))
            .await
            .expect("finish")
    );
    let ok = json!("ok");
    let success = TaskFinish {
        output: Some(&ok),
        error: None,
        ..fin(1, TaskStatus::Succeeded)
    };
    assert!(tx.finish_task(&success).await.expect("finish"));
    assert_eq!(tx.cancel_tasks("run_q", None).await.expect("cancel"), 1);
    assert_eq!(
        tx.requeue_unfinished("run_q", "s").await.expect("requeue"),
        2
    );
    tx.commit().await.expect("commit");
    let tasks = store.tasks("run_q").await.expect("tasks");
    for t in &tasks {
        if t.id == claimed[1].id {
            assert_eq!(t.status, TaskStatus::Succeeded, "succeeded tasks stay done");
        } else {
            assert_eq!((t.status, t.attempt), (TaskStatus::Queued, 1));
            assert_eq!(t.error, None);
            assert_eq!(t.finished_at, None);
        }
    }
    assert_eq!(claim(&store, "w2", 5, 60_000, None).await.len(), 2);
}

/// A step's results come back in item order, whatever order they finished in.
pub async fn item_results_in_item_order(store: Arc<dyn Store>) {
    running_run(&store, "run_i", &[("s", None), ("t", None)]).await;
    let mut tx = begin(&store).await;
    let now = tx.now();
    // Inserted out of order on purpose.
    let tasks: Vec<NewTask> = [3u32, 0, 2, 1]
        .iter()
        .map(|i| new_task("run_i", "s", Some(*i), now))
        .chain([new_task("run_i", "t", Some(0), now)])
        .collect();
    tx.insert_tasks(&tasks).await.expect("insert");
    tx.commit().await.expect("commit");
    let only = vec!["run_i".to_string()];
    let mut claimed = claim(&store, "w", 10, 60_000, Some(&only)).await;
    claimed.reverse();
    for t in claimed
        .iter()
        .filter(|t| t.step_id == "s" && t.item != Some(2))
    {
        assert!(
            finish(
                &store,
                t,
                "w",
                json!(format!("out{}", t.item.unwrap_or(99)))
            )
            .await
        );
    }
    let mut tx = begin(&store).await;
    let results = tx.item_results("run_i", "s").await.expect("results");
    assert_eq!(
        results.iter().map(|r| r.item).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(results[0].output, Some(json!("out0")));
    assert_eq!(results[0].status, TaskStatus::Succeeded);
    assert_eq!(results[2].status, TaskStatus::Running);
    assert_eq!(results[2].output, None);
    assert_eq!(results[3].output, Some(json!("out3")));
    assert_eq!(
        tx.item_results("run_i", "t").await.expect("results").len(),
        1
    );
    assert!(
        tx.item_results("run_i", "none")
            .await
            .expect("results")
            .is_empty()
    );
}

/// The cache returns what was put until it expires; a put replaces.
pub async fn cache_put_get_expiry(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    let now = tx.now();
    assert_eq!(tx.cache_get("k1").await.expect("get"), None);
    tx.cache_put("k1", TENANT, &json!({"v": 1}), now + 3_600_000)
        .await
        .expect("put");
    tx.cache_put("k-old", TENANT, &json!("stale"), now - 1)
        .await
        .expect("put");
    assert_eq!(
        tx.cache_get("k1").await.expect("get"),
        Some(json!({"v": 1}))
    );
    tx.commit().await.expect("commit");

    let mut tx = begin(&store).await;
    assert_eq!(
        tx.cache_get("k1").await.expect("get"),
        Some(json!({"v": 1})),
        "durable"
    );
    assert_eq!(
        tx.cache_get("k-old").await.expect("get"),
        None,
        "an expired entry is a miss"
    );
    tx.cache_put("k1", TENANT, &json!([2]), now + 3_600_000)
        .await
        .expect("put");
    tx.cache_put("k-old", TENANT, &json!("fresh"), now + 3_600_000)
        .await
        .expect("put");
    tx.commit().await.expect("commit");
    let mut tx = begin(&store).await;
    assert_eq!(
        tx.cache_get("k1").await.expect("get"),
        Some(json!([2])),
        "a put replaces"
    );
    assert_eq!(
        tx.cache_get("k-old").await.expect("get"),
        Some(json!("fresh"))
    );
}

fn ev(run_id: &str, kind: EventKind, n: u64) -> NewEvent {
    NewEvent {
        run_id: run_id.into(),
        kind,
        step_id: Some("s".into()),
        item: Some(n as u32),
        attempt: Some(1),
        data: json!({"n": n}),
    }
}

/// Events read back in order; paging with `after` replays each exactly once.
pub async fn events_replay_exactly(store: Arc<dyn Store>) {
    running_run(&store, "run_e", &[("s", None)]).await;
    running_run(&store, "run_other", &[("s", None)]).await;
    for chunk in 0..5u64 {
        let mut tx = begin(&store).await;
        let events: Vec<NewEvent> = (0..7)
            .flat_map(|i| {
                let n = chunk * 7 + i;
                [
                    ev("run_e", EventKind::TaskSucceeded, n),
                    ev("run_other", EventKind::TaskProgress, n),
                ]
            })
            .collect();
        tx.append_events(&events).await.expect("append");
        tx.commit().await.expect("commit");
    }
    let mut tx = begin(&store).await;
    tx.append_events(&[ev("run_e", EventKind::TaskFailed, 999)])
        .await
        .expect("append");
    drop(tx);

    let all = store.events("run_e", 0, 1000).await.expect("events");
    assert_eq!(all.len(), 35, "rolled-back events are not in the log");
    assert_eq!(
        all.iter()
            .map(|e| e.data["n"].as_u64().unwrap_or(999))
            .collect::<Vec<_>>(),
        (0..35).collect::<Vec<_>>(),
        "events come back in the order they were appended"
    );
    let first = &all[0];
    assert_eq!(first.kind, "task.succeeded");
    assert_eq!(
        (first.step_id.as_deref(), first.item, first.attempt),
        (Some("s"), Some(0), Some(1))
    );
    assert!(first.ts > 0);
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let page = store.events("run_e", after, 4).await.expect("events");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4, "the limit applies");
        after = page[page.len() - 1].seq;
        paged.extend(page);
    }
    assert_eq!(paged, all, "paging with `after` replays exactly");
    let tail = store
        .events("run_e", all[9].seq, 1000)
        .await
        .expect("events");
    assert_eq!(
        tail.as_slice(),
        &all[10..],
        "resuming after a seq gives what follows it"
    );
}

/// While several writers append, a reader paging with `after` sees every event exactly once.
pub async fn concurrent_events_replay_without_gaps(store: Arc<dyn Store>) {
    const WRITERS: u64 = 6;
    const PER_WRITER: u64 = 40;
    running_run(&store, "run_ce", &[("s", None)]).await;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            for i in 0..PER_WRITER {
                let mut tx = begin(&store).await;
                let n = w * 1000 + i;
                let events = [
                    ev("run_ce", EventKind::TaskProgress, n),
                    ev(&format!("elsewhere{w}"), EventKind::StepProgress, n),
                ];
                tx.append_events(&events).await.expect("append");
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                tx.commit().await.expect("commit");
            }
        });
    }
    let total = (WRITERS * PER_WRITER) as usize;
    let mut seen: Vec<Event> = Vec::new();
    let mut after = 0;
    let mut writers_done = false;
    loop {
        let page = store.events("run_ce", after, 5).await.expect("events");
        if let Some(last) = page.last() {
            after = last.seq;
        }
        let empty = page.is_empty();
        seen.extend(page);
        if empty && writers_done {
            break;
        }
        if empty {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        while let Some(done) = writers.try_join_next() {
            done.expect("writer");
        }
        writers_done = writers.is_empty();
    }
    let ns: Vec<u64> = seen
        .iter()
        .map(|e| e.data["n"].as_u64().unwrap_or(u64::MAX))
        .collect();
    let distinct: BTreeSet<_> = ns.iter().collect();
    assert_eq!(distinct.len(), ns.len(), "no event was delivered twice");
    assert_eq!(ns.len(), total, "no event was skipped while tailing");
    assert!(
        seen.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
}

/// Lists show a tenant's runs newest first, filter by status and template, and page.
pub async fn runs_list_newest_first_filters_and_pages(store: Arc<dyn Store>) {
    let mut tx = begin(&store).await;
    // Ties on created_at are broken by id, newest (largest) first.
    let specs = [
        ("run_01", 1000, "alpha", RunStatus::Succeeded),
        ("run_02", 2000, "beta", RunStatus::Failed),
        ("run_03", 2000, "alpha", RunStatus::Running),
        ("run_04", 3000, "alpha", RunStatus::Succeeded),
        ("run_05", 4000, "beta", RunStatus::Succeeded),
    ];
    for (id, at, template, status) in specs {
        let mut run = sample_run(id, TENANT, at);
        run.template = template.into();
        run.status = status;
        if id == "run_03" {
            run.inputs = json!({"state": "Colorado", "pattern": "100%_sure"});
        }
        if id == "run_04" {
            run.parent = Some(RunParent {
                run_id: "run_01".into(),
                action: Some("again".into()),
                ..RunParent::default()
            });
        }
        tx.insert_run(&run).await.expect("insert");
    }
    tx.insert_run(&sample_run("run_zz", "tenant-2", 5000))
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let q = RunQuery {
        tenant: TENANT.into(),
        limit: 100,
        ..RunQuery::default()
    };
    let all = ids(store.runs(&q).await.expect("list"));
    assert_eq!(all, ["run_05", "run_04", "run_03", "run_02", "run_01"]);
    let succeeded = RunQuery {
        status: Some(RunStatus::Succeeded),
        ..q.clone()
    };
    assert_eq!(
        ids(store.runs(&succeeded).await.expect("list")),
        ["run_05", "run_04", "run_01"]
    );
    let alpha_ok = RunQuery {
        template: Some("alpha".into()),
        ..succeeded.clone()
    };
    assert_eq!(
        ids(store.runs(&alpha_ok).await.expect("list")),
        ["run_04", "run_01"]
    );

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .runs(&RunQuery {
                before: before.clone(),
                limit: 2,
                ..q.clone()
            })
            .await
            .expect("list");
        let Some(last) = page.last() else { break };
        before = Some((last.created_at, last.id.clone()));
        assert!(page.len() <= 2);
        pages.extend(ids(page));
    }
    assert_eq!(
        pages, all,
        "paging with `before` walks every run once, in order"
    );
    let list = |query: RunQuery| {
        let store = store.clone();
        async move { ids(store.runs(&query).await.expect("list")) }
    };
    // Search: an id's start, or text in the inputs (any case; `%` and `_` are plain text).
    for (text, expect) in [
        (
            "run_0",
            &["run_05", "run_04", "run_03", "run_02", "run_01"][..],
        ),
        ("run_02", &["run_02"][..]),
        ("colorado", &["run_03"][..]),
        ("100%_", &["run_03"][..]),
        ("1%", &[][..]),
        ("_0", &[][..]),
    ] {
        let found = list(RunQuery {
            search: Some(text.into()),
            ..q.clone()
        })
        .await;
        assert_eq!(found, expect, "search {text:?}");
    }
    // Dates: created in [since, until).
    let window = list(RunQuery {
        since: Some(2000),
        until: Some(4000),
        ..q.clone()
    })
    .await;
    assert_eq!(window, ["run_04", "run_03", "run_02"]);
    // Grouping: top-level runs only, and a run's children.
    let roots = list(RunQuery {
        roots_only: true,
        ..q.clone()
    })
    .await;
    assert_eq!(roots, ["run_05", "run_03", "run_02", "run_01"]);
    let children = list(RunQuery {
        parent: Some("run_01".into()),
        ..q.clone()
    })
    .await;
    assert_eq!(children, ["run_04"]);
    let other = RunQuery {
        tenant: "tenant-3".into(),
        ..q
    };
    assert!(store.runs(&other).await.expect("list").is_empty());
}

/// `weft status` and the queue gauges: depth, due tasks, the oldest due task, leases by owner.
pub async fn queue_status_counts_due_tasks_and_leases(store: Arc<dyn Store>) {
    let empty = store.queue_status().await.expect("queue status");
    assert_eq!(
        (empty.queued, empty.running, empty.oldest_due_at),
        (0, 0, None)
    );
    assert_eq!(empty.oldest_age_ms(), 0);
    running_run(&store, "run_q", &[("s", None)]).await;
    queue_items(&store, "run_q", "s", 3).await;
    let mut tx = begin(&store).await;
    let later = tx.now() + 600_000;
    tx.insert_tasks(&[new_task("run_q", "s", Some(9), later)])
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(claim(&store, "w1", 1, 60_000, None).await.len(), 1);
    let status = store.queue_status().await.expect("queue status");
    assert_eq!((status.queued, status.due, status.running), (3, 2, 1));
    let oldest = status.oldest_due_at.expect("an oldest due task");
    assert!(oldest <= status.now && status.now - oldest < 60_000);
    assert_eq!(status.leases.len(), 1);
    assert_eq!(
        (status.leases[0].owner.as_str(), status.leases[0].tasks),
        ("w1", 1)
    );
    assert!(status.leases[0].expires_at > status.now);
}

/// A store that opened has applied every migration this build carries.
pub async fn schema_status_is_current_after_open(store: Arc<dyn Store>) {
    let schema = store.schema_status().await.expect("schema status");
    assert!(schema.is_current(), "{schema:?}");
}

/// A waiting task (an approval, a child run) is never leased, survives as state, is decided
/// once (fenced on `waiting`), times out from `due_waits`, and is cancelled with its run. A
/// child run reads back with its parent link and is listed under its parent.
pub async fn waiting_tasks_are_never_claimed_and_decided_once(store: Arc<dyn Store>) {
    running_run(&store, "run_w", &[("ok", None)]).await;
    queue_items(&store, "run_w", "ok", 3).await;
    let mut tx = begin(&store).await;
    let past = tx.now() - 1;
    assert_eq!(
        tx.set_waiting("run_w", "ok", Some(past))
            .await
            .expect("set_waiting"),
        3
    );
    tx.commit().await.expect("commit");
    assert!(
        claim(&store, "w1", 10, 30_000, None).await.is_empty(),
        "waiting tasks are not leased"
    );

    let mut tx = begin(&store).await;
    let waiting = tx
        .waiting_tasks("run_w", Some("ok"))
        .await
        .expect("waiting_tasks");
    assert_eq!(
        waiting.iter().map(|t| t.item).collect::<Vec<_>>(),
        vec![Some(0), Some(1), Some(2)]
    );
    assert!(waiting.iter().all(|t| t.status == TaskStatus::Waiting));
    let due = tx.due_waits(10).await.expect("due_waits");
    assert_eq!(due.len(), 3, "a wait past its deadline is due");
    let decision = json!({"approved": true});
    assert!(
        tx.finish_waiting(waiting[0].id, TaskStatus::Succeeded, Some(&decision), None)
            .await
            .expect("finish_waiting")
    );
    assert!(
        !tx.finish_waiting(waiting[0].id, TaskStatus::Failed, None, Some("late"))
            .await
            .expect("finish_waiting again"),
        "a decision is taken once"
    );
    tx.commit().await.expect("commit");
    let first = task_by_id(&store, "run_w", waiting[0].id).await;
    assert_eq!(first.status, TaskStatus::Succeeded);
    assert_eq!(first.output, Some(decision));

    let mut tx = begin(&store).await;
    assert_eq!(tx.cancel_tasks("run_w", None).await.expect("cancel"), 2);
    assert!(
        tx.waiting_tasks("run_w", None)
            .await
            .expect("waiting")
            .is_empty()
    );
    let now = tx.now();
    let mut child = sample_run("run_child", TENANT, now);
    child.parent = Some(RunParent {
        run_id: "run_w".into(),
        step: Some("ok".into()),
        item: Some(2),
        action: None,
    });
    tx.insert_run(&child).await.expect("insert child");
    assert_eq!(tx.child_runs("run_w").await.expect("child_runs").len(), 1);
    tx.commit().await.expect("commit");
    let children = store.child_runs("run_w").await.expect("child_runs");
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].parent, child.parent);
    assert_eq!(
        store
            .run(TENANT, "run_child")
            .await
            .expect("run")
            .expect("child")
            .parent,
        child.parent
    );
}

/// Worker rows: registration and heartbeats are stamped by the store's clock, a heartbeat for
/// an unknown id says so, re-registering keeps the start, and a clean stop removes the row.
pub async fn workers_register_beat_and_leave(store: Arc<dyn Store>) {
    use weft_store::workers::WorkerInfo;
    let info = |id: &str| WorkerInfo {
        id: id.into(),
        host: "host-a".into(),
        pid: 4242,
        version: "0.1.0".into(),
        lease_ms: 30_000,
    };
    let before = store.now().await.expect("now");
    store.register_worker(&info("w1")).await.expect("register");
    store.register_worker(&info("w2")).await.expect("register");
    let listed = store.workers().await.expect("workers");
    assert_eq!(listed.workers.len(), 2);
    let w1 = listed.workers.iter().find(|w| w.id == "w1").expect("w1");
    assert_eq!(
        (w1.host.as_str(), w1.pid, w1.lease_ms),
        ("host-a", 4242, 30_000)
    );
    assert_eq!(w1.version, "0.1.0");
    assert!(w1.started_at >= before && w1.last_heartbeat_at >= w1.started_at);
    assert!(
        listed.now >= w1.last_heartbeat_at,
        "the answer carries the store's clock"
    );
    assert!(w1.is_alive(listed.now));
    assert!(!w1.is_alive(w1.last_heartbeat_at + 2 * w1.lease_ms + 1));
    assert_eq!(listed.alive().count(), 2);

    assert!(store.heartbeat_worker("w1").await.expect("beat"));
    assert!(!store.heartbeat_worker("nobody").await.expect("beat"));
    let again = store.workers().await.expect("workers");
    let w1b = again.workers.iter().find(|w| w.id == "w1").expect("w1");
    assert!(w1b.last_heartbeat_at >= w1.last_heartbeat_at);
    assert_eq!(w1b.started_at, w1.started_at);

    // Registering the same id again (a retried registration) keeps its start.
    store
        .register_worker(&info("w1"))
        .await
        .expect("register again");
    let w1c = store.workers().await.expect("workers");
    let w1c = w1c.workers.iter().find(|w| w.id == "w1").expect("w1");
    assert_eq!(w1c.started_at, w1.started_at);

    store.deregister_worker("w1").await.expect("deregister");
    let left = store.workers().await.expect("workers");
    let ids: Vec<&str> = left.workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["w2"]);
    assert!(!store.heartbeat_worker("w1").await.expect("beat"));
}

/// Task tokens: minted with the claim, looked up by hash with their task's state, revoked by
/// the store in the same transaction as whatever ends the attempt (finish, retry, cancel,
/// reclaim after a lost lease), renewed only while live and never past the cap, and each
/// mint and revocation is on the audit trail. Not in `conformance_tests!` because it needs
/// the token reads beside `Store`; each backend's test file calls it.
pub async fn task_tokens_live_only_while_their_attempt_runs(
    store: Arc<dyn Store>,
    tokens: Arc<dyn weft_store::tokens::TaskTokenStore>,
    audit: Arc<dyn weft_store::secrets::AuditStore>,
) {
    use weft_store::tokens::{NewTaskToken, TokenRefusal};
    running_run(&store, "run_tok", &[("s", None)]).await;
    queue_items(&store, "run_tok", "s", 4).await;
    let mint = |t: &Task, hash: &str, ttl_ms: i64| NewTaskToken {
        hash: hash.into(),
        tenant: t.tenant.clone(),
        run_id: t.run_id.clone(),
        step_id: t.step_id.clone(),
        task_id: t.id,
        item: t.item,
        attempt: t.attempt,
        scopes: vec!["progress".into(), "secret:K".into()],
        ttl_ms,
    };
    let mut tx = begin(&store).await;
    let claimed = tx.claim("w", 4, 60_000, None, None).await.expect("claim");
    assert_eq!(claimed.len(), 4);
    let hashes = ["h_finish", "h_retry", "h_cancel", "h_reclaim"];
    let rows: Vec<NewTaskToken> = claimed
        .iter()
        .zip(hashes)
        .map(|(t, h)| mint(t, h, 180_000))
        .collect();
    tx.insert_task_tokens(&rows).await.expect("insert tokens");
    tx.commit().await.expect("commit");

    for h in hashes {
        let state = tokens.task_token(h).await.expect("lookup").expect("minted");
        assert_eq!(state.check(), Ok(()), "{h} is live while its attempt runs");
        assert!(state.allows("secret:K") && !state.allows("memory:read"));
        assert_eq!(state.expires_at - state.issued_at, 180_000);
        assert_eq!(state.tenant, TENANT);
    }
    assert!(
        tokens
            .task_token("h_never")
            .await
            .expect("lookup")
            .is_none()
    );

    // Renewal extends a live token, capped at issue + max.
    let before = tokens
        .task_token("h_finish")
        .await
        .expect("lookup")
        .expect("minted");
    let renewed = tokens
        .renew_task_token("h_finish", 600_000, 300_000)
        .await
        .expect("renew")
        .expect("live");
    assert_eq!(renewed, before.issued_at + 300_000, "never past the cap");

    // Each way an attempt ends revokes its token in that transaction.
    assert!(finish(&store, &claimed[0], "w", json!("ok")).await);
    let mut tx = begin(&store).await;
    let later = tx.now() + 60_000;
    assert!(
        tx.retry_task(claimed[1].id, claimed[1].attempt, "w", later, "boom")
            .await
            .expect("retry")
    );
    tx.commit().await.expect("commit");
    let mut tx = begin(&store).await;
    assert!(
        tx.reclaim_task(claimed[3].id, claimed[3].attempt)
            .await
            .expect("reclaim")
    );
    tx.commit().await.expect("commit");
    // Only the third is still running now; cancelling the run's tasks ends it.
    let mut tx = begin(&store).await;
    tx.cancel_tasks("run_tok", None).await.expect("cancel");
    tx.commit().await.expect("commit");

    for h in hashes {
        let state = tokens.task_token(h).await.expect("lookup").expect("minted");
        assert!(state.revoked_at.is_some(), "{h} revoked");
        assert!(state.check().is_err(), "{h} refused");
        assert!(
            tokens
                .renew_task_token(h, 60_000, 1_800_000)
                .await
                .expect("renew")
                .is_none(),
            "{h} cannot be renewed once revoked"
        );
    }
    // A retried or reclaimed attempt's token belongs to a superseded attempt.
    let retried = tokens
        .task_token("h_retry")
        .await
        .expect("lookup")
        .expect("minted");
    assert_eq!(retried.check(), Err(TokenRefusal::Superseded));
    let finished = tokens
        .task_token("h_finish")
        .await
        .expect("lookup")
        .expect("minted");
    assert_eq!(finished.check(), Err(TokenRefusal::Revoked));

    let records = audit
        .audit(&weft_store::secrets::AuditQuery {
            tenant: TENANT.into(),
            run: Some("run_tok".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    let count = |action: &str| records.iter().filter(|r| r.action == action).count();
    assert_eq!(count("token.minted"), 4);
    assert_eq!(count("token.revoked"), 4);
    assert!(
        records.iter().all(|r| r.actor.starts_with("token:tt_")),
        "records name the token by its id"
    );
}
