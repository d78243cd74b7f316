//! The metering and quota part of the store contract, as runnable checks (see
//! `conformance.rs` for how a backend runs them: `usage_conformance_tests!(fixture)`).
//!
//! What the engine relies on: usage recorded for a task adds up across attempts and shows in
//! the run's sums, inside the recording transaction too (the budget check); reports group by
//! day, template and run for one tenant only; a run's budget survives the round trip; and the
//! runs-per-hour quota counts the tenant's own recent runs and says when there is room again.

use std::sync::Arc;

use serde_json::json;

use crate::conformance::sample_run;
use weft_store::usage::*;
use weft_store::*;

/// Generates one `#[tokio::test]` per metering check; `$fixture` as for `conformance_tests!`.
#[macro_export]
macro_rules! usage_conformance_tests {
    ($fixture:ident) => {
        $crate::usage_conformance_tests!(@tests $fixture;
            usage_adds_up_per_task_and_per_run,
            usage_reports_group_by_day_template_and_run,
            run_budget_round_trips,
            runs_per_hour_quota_counts_recent_runs,
            runs_per_hour_quota_holds_under_concurrent_creators,
        );
    };
    (@tests $fixture:ident; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(fixture) = $fixture().await else { return };
            $crate::conformance_usage::$name($crate::conformance::Fixture::store(&fixture)).await;
            $crate::conformance::Fixture::teardown(fixture).await;
        }
    )*};
}

const TENANT: &str = "acme";
const HOUR: i64 = RUN_RATE_WINDOW_MS;

fn task(run_id: &str, step_id: &str, item: Option<u32>, now: i64) -> NewTask {
    NewTask {
        run_id: run_id.into(),
        tenant: TENANT.into(),
        step_id: step_id.into(),
        item,
        tool: "llm.chat".into(),
        input: json!({"prompt": "hi"}),
        max_attempts: 3,
        not_before: now,
        cache_key: None,
        done: None,
    }
}

/// A running run of `template` created at `created_at`, with one running step `ask` and
/// `items` queued tasks.
async fn run_with_tasks(
    store: &Arc<dyn Store>,
    run_id: &str,
    template: &str,
    created_at: Option<i64>,
    items: u32,
) {
    let mut tx = store.begin().await.expect("begin");
    let now = tx.now();
    let mut run = sample_run(run_id, TENANT, created_at.unwrap_or(now));
    run.template = template.into();
    tx.insert_run(&run).await.expect("insert run");
    tx.insert_steps(&[StepRow {
        status: StepStatus::Running,
        ..StepRow::new(run_id, "ask", 0, Some("llm.chat"))
    }])
    .await
    .expect("insert steps");
    let tasks: Vec<NewTask> = (0..items)
        .map(|i| task(run_id, "ask", Some(i), now))
        .collect();
    tx.insert_tasks(&tasks).await.expect("insert tasks");
    tx.commit().await.expect("commit");
}

/// Claims every ready task of `run_id` for `owner`.
async fn claim_all(store: &Arc<dyn Store>, run_id: &str, owner: &str) -> Vec<Task> {
    let mut tx = store.begin().await.expect("begin");
    let only = [run_id.to_string()];
    let claimed = tx
        .claim(owner, 100, 60_000, Some(&only), None)
        .await
        .expect("claim");
    tx.commit().await.expect("commit");
    claimed
}

fn spent(task: &Task, prompt: u64, completion: u64, cost: f64) -> TaskUsage {
    TaskUsage {
        task_id: task.id,
        run_id: task.run_id.clone(),
        llm_prompt_tokens: prompt,
        llm_completion_tokens: completion,
        cost_usd: cost,
    }
}

/// Usage of each attempt adds to its task; the run's sums count tokens, cost, tool calls
/// (finished and running attempts, not cache hits) and cache hits, and a transaction sees its
/// own recording (the budget check runs there). A transaction that rolls back leaves nothing.
pub async fn usage_adds_up_per_task_and_per_run(store: Arc<dyn Store>) {
    run_with_tasks(&store, "run_u", "chat", None, 2).await;
    // A cache hit: finished at insert, no tool call.
    let mut tx = store.begin().await.expect("begin");
    let now = tx.now();
    let mut hit = task("run_u", "ask", Some(2), now);
    hit.done = Some((TaskStatus::Succeeded, json!("cached"), None, true));
    tx.insert_tasks(&[hit]).await.expect("insert the hit");
    tx.commit().await.expect("commit");

    let claimed = claim_all(&store, "run_u", "w1").await;
    assert_eq!(claimed.len(), 2);
    let (a, b) = (&claimed[0], &claimed[1]);

    // Attempt 1 of `a` fails transiently after spending tokens; attempt 2 succeeds.
    let mut tx = store.begin().await.expect("begin");
    tx.record_usage(&[spent(a, 100, 20, 0.5)])
        .await
        .expect("record usage");
    assert!(
        tx.retry_task(a.id, a.attempt, "w1", tx.now(), "429")
            .await
            .expect("retry")
    );
    let inside = tx.run_usage("run_u").await.expect("usage inside the tx");
    assert_eq!(
        (inside.llm_prompt_tokens, inside.llm_completion_tokens),
        (100, 20),
        "a transaction sees the usage it recorded"
    );
    tx.commit().await.expect("commit");

    // A rolled-back recording leaves no trace.
    let mut tx = store.begin().await.expect("begin");
    tx.record_usage(&[spent(b, 1_000_000, 1_000_000, 99.0)])
        .await
        .expect("record usage");
    drop(tx);

    let again = claim_all(&store, "run_u", "w1").await;
    assert_eq!(again.len(), 1, "attempt 2 of the retried task");
    let a2 = &again[0];
    assert_eq!((a2.id, a2.attempt), (a.id, 2));
    let mut tx = store.begin().await.expect("begin");
    // One batch may name the same task twice (two exchanges): both count.
    tx.record_usage(&[
        spent(a2, 10, 5, 0.25),
        spent(a2, 1, 1, 0.0),
        spent(b, 7, 3, 0.125),
    ])
    .await
    .expect("record usage");
    for t in [a2, b] {
        assert!(
            tx.finish_task(&TaskFinish {
                task_id: t.id,
                attempt: t.attempt,
                owner: "w1",
                status: TaskStatus::Succeeded,
                output: Some(&json!("ok")),
                error: None,
            })
            .await
            .expect("finish")
        );
    }
    tx.commit().await.expect("commit");

    let tasks = store.tasks("run_u").await.expect("tasks");
    let row = tasks.iter().find(|t| t.id == a.id).expect("task a");
    assert_eq!(
        (row.llm_prompt_tokens, row.llm_completion_tokens),
        (111, 26),
        "a task's usage is the sum over its attempts"
    );
    assert!((row.cost_usd - 0.75).abs() < 1e-9, "{}", row.cost_usd);

    let used = store.run_usage("run_u").await.expect("run usage");
    assert_eq!(used.tasks, 3);
    assert_eq!(used.llm_prompt_tokens, 118);
    assert_eq!(used.llm_completion_tokens, 29);
    assert_eq!(used.llm_tokens(), 147);
    assert!((used.cost_usd - 0.875).abs() < 1e-9, "{}", used.cost_usd);
    assert_eq!(
        used.tool_calls, 3,
        "two attempts of a, one of b; the cache hit is free"
    );
    assert_eq!(used.cache_hits, 1);

    let none = store
        .run_usage("run_missing")
        .await
        .expect("usage of nothing");
    assert_eq!(none, RunUsage::default());
}

/// A report covers one tenant's runs created since a time, grouped by the UTC day of
/// creation, by template, or per run (newest first), with the runs counted once each.
pub async fn usage_reports_group_by_day_template_and_run(store: Arc<dyn Store>) {
    // 2026-11-24T10:00Z and 2026-11-25T10:00Z.
    let day1 = 1_795_514_400_000;
    let day2 = day1 + 24 * HOUR;
    run_with_tasks(&store, "run_1", "alpha", Some(day1), 2).await;
    run_with_tasks(&store, "run_2", "alpha", Some(day2), 1).await;
    run_with_tasks(&store, "run_3", "beta", Some(day2 + 60_000), 0).await;
    // Another tenant's run never shows.
    let mut tx = store.begin().await.expect("begin");
    tx.insert_run(&sample_run("run_other", "other", day2))
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    for run_id in ["run_1", "run_2"] {
        let claimed = claim_all(&store, run_id, "w").await;
        let mut tx = store.begin().await.expect("begin");
        let usage: Vec<TaskUsage> = claimed.iter().map(|t| spent(t, 10, 1, 0.01)).collect();
        tx.record_usage(&usage).await.expect("record");
        tx.commit().await.expect("commit");
    }

    let report = |group_by, since| {
        let store = store.clone();
        async move {
            store
                .usage(&UsageQuery {
                    tenant: TENANT.into(),
                    group_by,
                    since,
                    limit: 100,
                })
                .await
                .expect("usage report")
        }
    };
    let by_day = report(UsageGroup::Day, None).await;
    let days: Vec<(&str, u64, u64)> = by_day
        .iter()
        .map(|r| (r.key.as_str(), r.runs, r.usage.llm_prompt_tokens))
        .collect();
    assert_eq!(days, [("2026-11-24", 1, 20), ("2026-11-25", 2, 10)]);

    let by_template = report(UsageGroup::Template, None).await;
    let templates: Vec<(&str, u64, u64, u64)> = by_template
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                r.runs,
                r.usage.llm_completion_tokens,
                r.usage.tool_calls,
            )
        })
        .collect();
    assert_eq!(templates, [("alpha", 2, 3, 3), ("beta", 1, 0, 0)]);
    assert!((by_template[0].usage.cost_usd - 0.03).abs() < 1e-9);

    let by_run = report(UsageGroup::Run, None).await;
    let runs: Vec<(&str, Option<&str>, u64)> = by_run
        .iter()
        .map(|r| (r.key.as_str(), r.template.as_deref(), r.usage.tasks))
        .collect();
    assert_eq!(
        runs,
        [
            ("run_3", Some("beta"), 0),
            ("run_2", Some("alpha"), 1),
            ("run_1", Some("alpha"), 2)
        ]
    );

    let recent = report(UsageGroup::Template, Some(day2)).await;
    let recent: Vec<(&str, u64)> = recent.iter().map(|r| (r.key.as_str(), r.runs)).collect();
    assert_eq!(
        recent,
        [("alpha", 1), ("beta", 1)],
        "`since` leaves older runs out"
    );
    assert!(report(UsageGroup::Day, Some(day2 + HOUR)).await.is_empty());
}

/// A run's budget reads back as written; a run without one has none.
pub async fn run_budget_round_trips(store: Arc<dyn Store>) {
    let budget = weft_core::plan::Budget {
        max_llm_tokens: Some(5_000),
        max_cost_usd: Some(0.25),
        max_tool_calls: None,
    };
    let mut tx = store.begin().await.expect("begin");
    let now = tx.now();
    let mut run = sample_run("run_b", TENANT, now);
    run.budget = Some(budget);
    tx.insert_run(&run).await.expect("insert");
    tx.insert_run(&sample_run("run_free", TENANT, now))
        .await
        .expect("insert");
    let locked = tx.lock_run("run_b").await.expect("lock").expect("the run");
    assert_eq!(
        locked.budget,
        Some(budget),
        "the engine's check reads it here"
    );
    tx.commit().await.expect("commit");
    let read = store
        .run(TENANT, "run_b")
        .await
        .expect("read")
        .expect("run");
    assert_eq!(read.budget, Some(budget));
    let free = store
        .run(TENANT, "run_free")
        .await
        .expect("read")
        .expect("run");
    assert_eq!(free.budget, None);
}

/// Without a quota every run is admitted; with one, the tenant's runs of the last hour are
/// counted (another tenant's and older ones are not), and a refusal says when the oldest run
/// of the window leaves it. Quotas read back and can be lifted.
pub async fn runs_per_hour_quota_counts_recent_runs(store: Arc<dyn Store>) {
    assert_eq!(
        store.tenant_quota(TENANT).await.expect("quota"),
        TenantQuota::default()
    );
    let mut tx = store.begin().await.expect("begin");
    let now = tx.now();
    assert_eq!(tx.admit_run(TENANT).await.expect("admit"), None);
    // Two runs in the window (the older 50 minutes ago), one from two hours ago, one of
    // another tenant.
    tx.insert_run(&sample_run("run_old", TENANT, now - 2 * HOUR))
        .await
        .expect("insert");
    tx.insert_run(&sample_run("run_50m", TENANT, now - 50 * 60_000))
        .await
        .expect("insert");
    tx.insert_run(&sample_run("run_now", TENANT, now))
        .await
        .expect("insert");
    tx.insert_run(&sample_run("run_theirs", "other", now))
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let quota = |n| TenantQuota {
        max_runs_per_hour: n,
    };
    store
        .set_tenant_quota(TENANT, &quota(Some(3)))
        .await
        .expect("set quota");
    assert_eq!(
        store.tenant_quota(TENANT).await.expect("quota"),
        quota(Some(3))
    );
    assert_eq!(
        store.tenant_quota("other").await.expect("quota"),
        quota(None)
    );
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.admit_run(TENANT).await.expect("admit"), None, "2 of 3");
    drop(tx);

    store
        .set_tenant_quota(TENANT, &quota(Some(2)))
        .await
        .expect("set quota");
    let mut tx = store.begin().await.expect("begin");
    let refusal = tx
        .admit_run(TENANT)
        .await
        .expect("admit")
        .expect("2 of 2: refused");
    assert_eq!(refusal.max_runs_per_hour, 2);
    // The run of 50 minutes ago leaves the window in about 10 minutes.
    let expected = 10 * 60_000;
    assert!(
        (expected - 60_000..=expected + 60_000).contains(&refusal.retry_after_ms),
        "{refusal:?}"
    );
    drop(tx);
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.admit_run("other").await.expect("admit"),
        None,
        "quotas are per tenant"
    );
    drop(tx);

    store
        .set_tenant_quota(TENANT, &quota(None))
        .await
        .expect("lift the quota");
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.admit_run(TENANT).await.expect("admit"), None);
}

/// Creators racing for the last places of a quota: each admits and inserts in one
/// transaction, and exactly the quota's number get in (the count is serialised per tenant).
pub async fn runs_per_hour_quota_holds_under_concurrent_creators(store: Arc<dyn Store>) {
    store
        .set_tenant_quota(
            TENANT,
            &TenantQuota {
                max_runs_per_hour: Some(3),
            },
        )
        .await
        .expect("set quota");
    let mut creators = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        creators.push(tokio::spawn(async move {
            let mut tx = store.begin().await.expect("begin");
            if tx.admit_run(TENANT).await.expect("admit").is_some() {
                return false;
            }
            let now = tx.now();
            tx.insert_run(&sample_run(&format!("run_race_{i}"), TENANT, now))
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
            true
        }));
    }
    let mut admitted = 0;
    for c in creators {
        if c.await.expect("creator") {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 3,
        "the quota admits exactly 3 of 8 racing creators"
    );
    let runs = store
        .runs(&RunQuery {
            tenant: TENANT.into(),
            limit: 100,
            ..RunQuery::default()
        })
        .await
        .expect("runs");
    assert_eq!(runs.len(), 3);
}
