//! Schedules fire exactly once per slot, with two schedulers (each with its own engine and its
//! own connection pool, as two processes have) racing on one store: SQLite and PostgreSQL.
//! Also: pausing stops firing, and the missed-slot policy (the most recent missed slot fires
//! once, older ones are skipped).
//!
//! Nothing here asserts a duration: the tests wait until enough slots have gone by (bounded by
//! a generous deadline) and then count runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weft_engine::Engine;
use weft_engine::schedule::{CronSpec, Scheduler, SchedulerOptions, Turn, new_schedule};
use weft_store::SqlStore;
use weft_store::schedules::{ScheduleStore, slot_key};
use weft_store::sqlite::Durability;
use weft_store::{RunQuery, Store};
use weft_tools::{Registry, ToolsConfig};

const TEMPLATE: &str = r#"
name: tick
version: 1
inputs:
  label: { type: string, default: nightly }
steps:
  - id: say
    tool: transform
    with:
      data: { label: "{{ input.label }}" }
      jq: '"tick " + .label'
output: "{{ steps.say.output }}"
"#;

fn tools() -> Arc<Registry> {
    Arc::new(Registry::with_builtins(&ToolsConfig::default()))
}

fn plan(tools: &Registry) -> weft_core::Plan {
    weft_core::load::load_str(TEMPLATE, "tick.yaml", None, tools)
        .unwrap_or_else(|d| panic!("template does not load:\n{d}"))
}

/// Two handles on one store, as two processes would have.
struct Pair {
    a: (Arc<dyn Store>, Arc<dyn ScheduleStore>),
    b: (Arc<dyn Store>, Arc<dyn ScheduleStore>),
}

async fn sqlite_pair(dir: &std::path::Path) -> Pair {
    let path = dir.join("weft.db");
    let a = Arc::new(
        SqlStore::sqlite(&path, Durability::Relaxed)
            .await
            .expect("open"),
    );
    let b = Arc::new(
        SqlStore::sqlite(&path, Durability::Relaxed)
            .await
            .expect("open"),
    );
    Pair {
        a: (a.clone(), a),
        b: (b.clone(), b),
    }
}

async fn all_runs(store: &dyn Store) -> Vec<weft_store::Run> {
    store
        .runs(&RunQuery {
            tenant: "default".into(),
            limit: 10_000,
            ..RunQuery::default()
        })
        .await
        .expect("runs")
}

/// Two schedulers race on a per-second schedule until at least `slots` slots have fired.
async fn fires_once_per_slot(pair: Pair, slots: usize) {
    let tools = tools();
    let engine_a = Engine::new(pair.a.0.clone(), tools.clone());
    let engine_b = Engine::new(pair.b.0.clone(), tools.clone());
    let spec = CronSpec::parse("* * * * * *", None).expect("cron");
    let now = pair.a.0.now().await.expect("now");
    let schedule = new_schedule(
        "default",
        "every-second",
        "* * * * * *",
        &spec,
        &plan(&tools),
        None,
        json!({"label": "race"}),
        now,
    );
    assert!(pair.a.1.insert_schedule(&schedule).await.expect("insert"));
    let options = SchedulerOptions {
        poll_ms: 5,
        batch: 10,
    };
    let a = Arc::new(Scheduler::new(engine_a, pair.a.1.clone(), options.clone()));
    let b = Arc::new(Scheduler::new(engine_b, pair.b.1.clone(), options));

    let mut fired: Vec<String> = Vec::new();
    let mut lost = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while fired.len() < slots {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} slots fired",
            fired.len()
        );
        // Both turn at the same moment, so they race for every due slot.
        let (ta, tb) = tokio::join!(
            {
                let a = a.clone();
                async move { a.turn().await }
            },
            {
                let b = b.clone();
                async move { b.turn().await }
            }
        );
        for turn in [ta.expect("turn a"), tb.expect("turn b")] {
            let Turn {
                fired: f,
                lost: l,
                skipped,
            } = turn;
            assert_eq!(skipped, 0, "no slot should be skipped");
            fired.extend(f);
            lost += l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let runs = all_runs(pair.b.0.as_ref()).await;
    // Every run a scheduler reported is in the store, once; no other run exists.
    let reported: BTreeSet<&String> = fired.iter().collect();
    assert_eq!(reported.len(), fired.len(), "a run was reported twice");
    assert_eq!(runs.len(), fired.len(), "runs in the store vs runs fired");
    // One run per slot: the keys are the schedule id and the slot, all distinct.
    let mut per_slot: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let key = run
            .idempotency_key
            .clone()
            .expect("a scheduled run has a key");
        assert!(
            key.starts_with(&format!("schedule:{}:", schedule.id)),
            "{key}"
        );
        *per_slot.entry(key).or_default() += 1;
        assert_eq!(run.inputs["label"], "race");
        assert_eq!(run.template, "tick");
    }
    assert!(per_slot.values().all(|n| *n == 1), "{per_slot:?}");
    // Slots are whole seconds, each fired once and in order.
    let stored = pair
        .a
        .1
        .schedule("default", &schedule.id)
        .await
        .expect("read")
        .expect("schedule");
    let last = stored.last_slot.expect("a slot fired");
    assert_eq!(last % 1000, 0);
    assert!(per_slot.contains_key(&slot_key(&schedule.id, last)));
    assert!(stored.next_fire_at.expect("next") > last);
    eprintln!("{} slots fired, {lost} lost races", fired.len());
}

/// Pausing stops firing: slots that pass while paused start nothing, and resuming picks up
/// from the next slot after now.
async fn pause_stops_firing(pair: Pair) {
    let tools = tools();
    let engine = Engine::new(pair.a.0.clone(), tools.clone());
    let spec = CronSpec::parse("* * * * * *", None).expect("cron");
    let now = pair.a.0.now().await.expect("now");
    let schedule = new_schedule(
        "default",
        "paused",
        "* * * * * *",
        &spec,
        &plan(&tools),
        None,
        json!({"label": "p"}),
        now,
    );
    pair.a.1.insert_schedule(&schedule).await.expect("insert");
    assert!(
        pair.a
            .1
            .set_schedule_paused("default", &schedule.id, true, None)
            .await
            .expect("pause")
    );
    let scheduler = Scheduler::new(engine, pair.a.1.clone(), SchedulerOptions::default());
    // Wait until at least two slots have passed, turning all the while.
    let until = now + 2_100;
    while pair.a.0.now().await.expect("now") < until {
        let turn = scheduler.turn().await.expect("turn");
        assert!(turn.fired.is_empty(), "a paused schedule fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(all_runs(pair.a.0.as_ref()).await.is_empty());

    let resumed_at = pair.a.0.now().await.expect("now");
    let next = spec.next_after(resumed_at);
    pair.a
        .1
        .set_schedule_paused("default", &schedule.id, false, next)
        .await
        .expect("resume");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let turn = scheduler.turn().await.expect("turn");
        if !turn.fired.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never fired after resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = all_runs(pair.a.0.as_ref()).await;
    assert_eq!(
        runs.len(),
        1,
        "the slots missed while paused are not made up"
    );
    assert!(runs[0].created_at >= resumed_at);
}

/// A schedule whose slots were missed for an hour fires once, for the most recent slot, and
/// moves on to the first slot after now.
async fn missed_slots_fire_the_latest_once(pair: Pair) {
    let tools = tools();
    let engine = Engine::new(pair.a.0.clone(), tools.clone());
    let spec = CronSpec::parse("*/5 * * * *", None).expect("cron");
    let now = pair.a.0.now().await.expect("now");
    let hour_ago = now - 3_600_000;
    let mut schedule = new_schedule(
        "default",
        "missed",
        "*/5 * * * *",
        &spec,
        &plan(&tools),
        None,
        json!({"label": "m"}),
        hour_ago,
    );
    // As if it had been added an hour ago and no scheduler ran since.
    schedule.next_fire_at = spec.next_after(hour_ago);
    pair.a.1.insert_schedule(&schedule).await.expect("insert");

    let scheduler = Scheduler::new(engine, pair.a.1.clone(), SchedulerOptions::default());
    let before = pair.a.0.now().await.expect("now");
    let first = scheduler.turn().await.expect("turn");
    assert_eq!(
        first.fired.len(),
        1,
        "one run for the missed hour: {first:?}"
    );
    let second = scheduler.turn().await.expect("turn");
    assert!(second.fired.is_empty(), "older missed slots are skipped");

    let runs = all_runs(pair.a.0.as_ref()).await;
    assert_eq!(runs.len(), 1);
    let stored = pair
        .a
        .1
        .schedule("default", "missed")
        .await
        .expect("read")
        .expect("schedule");
    let slot = stored.last_slot.expect("fired");
    let turned_at = pair.a.0.now().await.expect("now");
    // The most recent 5-minute slot at or before the turn, not the oldest missed one.
    assert!(
        [
            spec.latest_at_or_before(before),
            spec.latest_at_or_before(turned_at)
        ]
        .contains(&Some(slot))
    );
    assert!(slot > hour_ago + 3_000_000);
    assert_eq!(
        runs[0].idempotency_key.as_deref(),
        Some(slot_key(&schedule.id, slot).as_str())
    );
    assert!(stored.next_fire_at.expect("next") > turned_at - 1_000);
}

#[test]
fn cron_lines_and_the_missed_slot_policy() {
    let spec = CronSpec::parse("0 6 * * MON", Some("Europe/Berlin")).expect("parse");
    assert_eq!(spec.timezone(), "Europe/Berlin");
    // Monday 2025-12-01 06:00 in Berlin (CET) is 05:00 UTC.
    let sunday = 1_764_460_800_000; // 2025-11-30T00:00:00Z, a Sunday
    let next = spec.next_after(sunday).expect("next");
    assert_eq!(next, sunday + 29 * 3_600_000, "Monday 05:00 UTC");
    // Three weeks missed: the latest Monday fires, then next week's.
    let later = next + 21 * 86_400_000 + 60_000;
    let (slot, after) = spec.due(next, later);
    assert_eq!(slot, next + 21 * 86_400_000);
    assert_eq!(after, Some(slot + 7 * 86_400_000));

    assert!(CronSpec::parse("not a cron", None).is_err());
    assert!(CronSpec::parse("0 6 * * MON", Some("Mars/Olympus")).is_err());
    assert!(CronSpec::parse("0 0 31 2 *", None).is_err(), "never fires");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_schedulers_fire_each_slot_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    fires_once_per_slot(sqlite_pair(dir.path()).await, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pause_stops_firing() {
    let dir = tempfile::tempdir().expect("tempdir");
    pause_stops_firing(sqlite_pair(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_missed_slots_fire_the_latest_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    missed_slots_fire_the_latest_once(sqlite_pair(dir.path()).await).await;
}

mod postgres {
    use super::*;
    use weft_store::SqlStore;
    use weft_store::postgres::testing;

    /// A fresh database with two stores (two pools) on it; `None` without a server.
    async fn pair() -> Option<(Pair, String, String, Vec<Arc<SqlStore>>)> {
        let server = testing::server_url().await?;
        let (name, url) = testing::create_database(&server)
            .await
            .expect("create a database");
        let a = Arc::new(SqlStore::postgres(&url).await.expect("open"));
        let b = Arc::new(SqlStore::postgres(&url).await.expect("open"));
        Some((
            Pair {
                a: (a.clone(), a.clone()),
                b: (b.clone(), b.clone()),
            },
            server,
            name,
            vec![a, b],
        ))
    }

    async fn teardown(server: String, name: String, stores: Vec<Arc<SqlStore>>) {
        for s in stores {
            s.close().await;
        }
        testing::drop_database(&server, &name)
            .await
            .expect("drop the test database");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pg_two_schedulers_fire_each_slot_once() {
        let Some((pair, server, name, stores)) = pair().await else {
            return;
        };
        fires_once_per_slot(pair, 3).await;
        teardown(server, name, stores).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pg_pause_stops_firing() {
        let Some((pair, server, name, stores)) = pair().await else {
            return;
        };
        pause_stops_firing(pair).await;
        teardown(server, name, stores).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pg_missed_slots_fire_the_latest_once() {
        let Some((pair, server, name, stores)) = pair().await else {
            return;
        };
        missed_slots_fire_the_latest_once(pair).await;
        teardown(server, name, stores).await;
    }
}
