//! The contract of the server's traits ([`AuthStore`], [`TemplateStore`], [`EventFeed`]), of
//! [`MemoryStore`], and of the caps a claim honours beyond a step's own (per tenant, global),
//! as runnable checks: the same suite on SQLite and PostgreSQL.
//!
//! Like `conformance`, each public `async fn` takes a fresh, empty store and panics when the
//! backend breaks the contract; [`server_conformance_tests!`] makes one test per check.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::conformance::{Fixture, sample_run};
use weft_store::memory::MemoryStore;
use weft_store::server::*;
use weft_store::*;

/// A [`Fixture`] whose store also keeps what `weft serve` needs.
pub trait ServerFixture: Fixture {
    fn server_store(&self) -> Arc<dyn ServerStore>;
}

/// Generates one `#[tokio::test]` per check of this module. `$fixture` is an `async fn() ->
/// Option<impl ServerFixture>`; `None` skips the check.
#[macro_export]
macro_rules! server_conformance_tests {
    ($fixture:ident) => {
        $crate::server_conformance_tests!(@tests $fixture;
            tenants_keys_and_tickets,
            tenants_are_granted_tools,
            templates_register_once_per_version,
            event_feed_tails_every_run,
            event_feed_never_skips_a_late_commit,
            task_and_run_counts,
            memory_is_per_tenant_and_searchable,
            claim_honours_tenant_and_global_caps,
            concurrent_claims_respect_tenant_and_global_caps,
            finish_tasks_is_fenced_per_task,
            schedules_claim_each_slot_once,
        );
    };
    (@tests $fixture:ident; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(fixture) = $fixture().await else { return };
            $crate::conformance_server::$name(
                $crate::conformance_server::ServerFixture::server_store(&fixture),
            )
            .await;
            $crate::conformance::Fixture::teardown(fixture).await;
        }
    )*};
}

fn key(id: &str, tenant: &str, hash: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant: tenant.into(),
        label: "test".into(),
        hash: hash.into(),
        prefix: "wft_ak_abc".into(),
        created_at: 1_000,
        revoked_at: None,
    }
}

/// A tenant starts with no process-starting tool; the operator's grant replaces the list,
/// reads back through both the tenant list and [`ToolGrants`], and an unknown tenant has none.
pub async fn tenants_are_granted_tools(store: Arc<dyn ServerStore>) {
    assert!(store.create_tenant("alpha").await.expect("create"));
    assert!(store.create_tenant("beta").await.expect("create"));
    assert!(store.allowed_tools("alpha").await.expect("read").is_empty());
    let granted = vec!["command".to_string(), "skill.*".to_string()];
    assert!(
        store
            .set_tenant_allowed_tools("alpha", &granted)
            .await
            .expect("grant")
    );
    assert!(
        !store
            .set_tenant_allowed_tools("nobody", &granted)
            .await
            .expect("grant"),
        "no such tenant"
    );
    assert_eq!(store.allowed_tools("alpha").await.expect("read"), granted);
    assert!(store.allowed_tools("beta").await.expect("read").is_empty());
    assert!(
        store
            .allowed_tools("nobody")
            .await
            .expect("read")
            .is_empty()
    );
    let tenants = store.tenants().await.expect("tenants");
    let alpha = tenants.iter().find(|t| t.name == "alpha").expect("alpha");
    assert_eq!(alpha.allowed_tools, granted);
    assert!(
        store
            .set_tenant_allowed_tools("alpha", &[])
            .await
            .expect("revoke")
    );
    assert!(store.allowed_tools("alpha").await.expect("read").is_empty());
}

/// Tenants are created once, carry their cap, and keys and tickets are found by hash only
/// while they are live.
pub async fn tenants_keys_and_tickets(store: Arc<dyn ServerStore>) {
    assert!(store.create_tenant("alpha").await.expect("create"));
    assert!(!store.create_tenant("alpha").await.expect("create again"));
    assert!(store.create_tenant("beta").await.expect("create"));
    let tenants = store.tenants().await.expect("tenants");
    let names: BTreeSet<_> = tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["alpha", "beta"]));
    assert!(tenants.iter().all(|t| t.created_at > 0));
    assert!(tenants.iter().all(|t| t.max_concurrent_tasks.is_none()));

    assert!(
        store
            .set_tenant_max_concurrent_tasks("alpha", Some(7))
            .await
            .expect("set cap")
    );
    assert!(
        !store
            .set_tenant_max_concurrent_tasks("nobody", Some(7))
            .await
            .expect("set cap"),
        "no such tenant"
    );
    let cap_of = |ts: &[Tenant], name: &str| {
        ts.iter()
            .find(|t| t.name == name)
            .and_then(|t| t.max_concurrent_tasks)
    };
    let tenants = store.tenants().await.expect("tenants");
    assert_eq!(cap_of(&tenants, "alpha"), Some(7));
    assert_eq!(cap_of(&tenants, "beta"), None);
    assert!(
        store
            .set_tenant_max_concurrent_tasks("alpha", None)
            .await
            .expect("lift cap")
    );
    assert_eq!(
        cap_of(&store.tenants().await.expect("tenants"), "alpha"),
        None
    );

    store
        .insert_api_key(&key("k1", "alpha", "hash-1"))
        .await
        .expect("insert key");
    store
        .insert_api_key(&key("k2", "alpha", "hash-2"))
        .await
        .expect("insert key");
    let keys = store.api_keys("alpha").await.expect("keys");
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert!(store.api_keys("beta").await.expect("keys").is_empty());
    let found = store.api_key_by_hash("hash-1").await.expect("by hash");
    assert_eq!(found.map(|k| k.tenant), Some("alpha".into()));
    assert!(
        !store.revoke_api_key("beta", "k1").await.expect("revoke"),
        "another tenant cannot revoke it"
    );
    assert!(store.revoke_api_key("alpha", "k1").await.expect("revoke"));
    assert!(!store.revoke_api_key("alpha", "k1").await.expect("revoke"));
    assert_eq!(
        store.api_key_by_hash("hash-1").await.expect("by hash"),
        None
    );
    let listed = store.api_keys("alpha").await.expect("keys");
    assert!(listed[0].revoked_at.is_some() && listed[1].revoked_at.is_none());

    let now = store.now().await.expect("now");
    let ticket = StreamTicket {
        hash: "t-1".into(),
        tenant: "alpha".into(),
        run_id: "run_1".into(),
        expires_at: now + 60_000,
    };
    store.insert_ticket(&ticket).await.expect("insert ticket");
    assert_eq!(
        store.take_ticket("t-1", now).await.expect("take"),
        Some(ticket)
    );
    assert_eq!(
        store.take_ticket("t-1", now).await.expect("take"),
        None,
        "a ticket is used once"
    );
    store
        .insert_ticket(&StreamTicket {
            hash: "t-2".into(),
            tenant: "alpha".into(),
            run_id: "run_1".into(),
            expires_at: now + 10,
        })
        .await
        .expect("insert ticket");
    assert_eq!(
        store.take_ticket("t-2", now + 11).await.expect("take"),
        None,
        "an expired ticket is refused"
    );
}

fn template(version: &str, digest: &str, created_at: i64) -> TemplateRecord {
    TemplateRecord {
        tenant: "alpha".into(),
        name: "plan".into(),
        version: version.into(),
        digest: digest.into(),
        source: format!("name: plan\nversion: {version}\n"),
        description: Some("a plan".into()),
        created_at,
    }
}

/// A version is registered once: the same body again is unchanged, another body conflicts
/// and the first stays; without a version, the newest registration answers.
pub async fn templates_register_once_per_version(store: Arc<dyn ServerStore>) {
    let v1 = template("1", "d1", 1_000);
    assert_eq!(
        store.put_template(&v1).await.expect("put"),
        PutTemplate::Created(v1.clone())
    );
    assert_eq!(
        store.put_template(&v1).await.expect("put"),
        PutTemplate::Unchanged(v1.clone())
    );
    assert_eq!(
        store
            .put_template(&template("1", "other", 1_500))
            .await
            .expect("put"),
        PutTemplate::Conflict(v1.clone())
    );
    // Same millisecond as v1: the later registration is still the newest.
    let v2 = template("2", "d2", 1_000);
    store.put_template(&v2).await.expect("put");
    assert_eq!(
        store.template("alpha", "plan", None).await.expect("newest"),
        Some(v2.clone())
    );
    assert_eq!(
        store
            .template("alpha", "plan", Some("1"))
            .await
            .expect("v1"),
        Some(v1.clone())
    );
    assert_eq!(
        store.template("beta", "plan", None).await.expect("other"),
        None
    );
    assert_eq!(store.templates("alpha").await.expect("list"), [v1, v2]);
    assert!(store.templates("beta").await.expect("list").is_empty());
}

fn ev(run_id: &str, n: u64) -> NewEvent {
    NewEvent {
        run_id: run_id.into(),
        kind: weft_store::EventKind::TaskProgress,
        step_id: None,
        item: None,
        attempt: None,
        data: json!({"n": n}),
    }
}

async fn append(store: &Arc<dyn ServerStore>, events: &[NewEvent]) {
    let mut tx = store.begin().await.expect("begin");
    tx.append_events(events).await.expect("append");
    tx.commit().await.expect("commit");
}

/// The feed pages the events of every run in `seq` order, and knows the last one.
pub async fn event_feed_tails_every_run(store: Arc<dyn ServerStore>) {
    assert_eq!(store.last_event_seq().await.expect("last"), 0);
    append(&store, &[ev("run_a", 0), ev("run_b", 1)]).await;
    append(&store, &[ev("run_a", 2)]).await;
    let all = store.events_since(0, 100).await.expect("since");
    assert_eq!(
        all.iter().map(|e| e.data["n"].as_u64()).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.last_event_seq().await.expect("last"),
        all[2].seq,
        "the last seq"
    );
    let page = store.events_since(all[0].seq, 1).await.expect("page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, all[1].seq);
    assert!(
        store
            .events_since(all[2].seq, 10)
            .await
            .expect("after")
            .is_empty()
    );
}

/// A tail that pages `seq > last` while many transactions commit events of many runs sees
/// every event exactly once: no commit lands behind a `seq` the tail already passed.
pub async fn event_feed_never_skips_a_late_commit(store: Arc<dyn ServerStore>) {
    const WRITERS: u64 = 6;
    const PER_WRITER: u64 = 40;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            for i in 0..PER_WRITER {
                let mut tx = store.begin().await.expect("begin");
                let n = w * 1000 + i;
                let many: Vec<NewEvent> = (0..4)
                    .map(|k| ev(&format!("run{w}_{k}"), n * 100 + k))
                    .collect();
                tx.append_events(&many).await.expect("append");
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                tx.commit().await.expect("commit");
            }
        });
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut writers_done = false;
    loop {
        let page = store.events_since(after, 7).await.expect("since");
        if let Some(last) = page.last() {
            after = last.seq;
        }
        let empty = page.is_empty();
        seen.extend(page.into_iter().map(|e| e.data["n"].as_u64()));
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
    let distinct: BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "no event was delivered twice");
    assert_eq!(
        seen.len(),
        (WRITERS * PER_WRITER * 4) as usize,
        "no event was skipped while tailing"
    );
}

/// Inserts a running run of `tenant` with one running step `s` and `n` ready items.
async fn run_with_items(store: &Arc<dyn ServerStore>, run_id: &str, tenant: &str, n: u32) {
    let mut tx = store.begin().await.expect("begin");
    let now = tx.now();
    tx.insert_run(&sample_run(run_id, tenant, now))
        .await
        .expect("insert run");
    tx.insert_steps(&[StepRow {
        status: StepStatus::Running,
        ..StepRow::new(run_id, "s", 0, Some("echo"))
    }])
    .await
    .expect("insert steps");
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask {
            run_id: run_id.into(),
            tenant: tenant.into(),
            step_id: "s".into(),
            item: Some(i),
            tool: "echo".into(),
            input: json!({"item": i}),
            max_attempts: 3,
            not_before: now,
            cache_key: None,
            done: None,
        })
        .collect();
    tx.insert_tasks(&tasks).await.expect("insert tasks");
    tx.commit().await.expect("commit");
}

async fn claim(
    store: &Arc<dyn ServerStore>,
    owner: &str,
    limit: u32,
    max_running: Option<u32>,
) -> Vec<Task> {
    let mut tx = store.begin().await.expect("begin");
    let claimed = tx
        .claim(owner, limit, 60_000, None, max_running)
        .await
        .expect("claim");
    tx.commit().await.expect("commit");
    claimed
}

async fn finish(store: &Arc<dyn ServerStore>, task: &Task, owner: &str) {
    let mut tx = store.begin().await.expect("begin");
    let done = tx
        .finish_task(&TaskFinish {
            task_id: task.id,
            attempt: task.attempt,
            owner,
            status: TaskStatus::Succeeded,
            output: Some(&json!(task.item)),
            error: None,
        })
        .await
        .expect("finish");
    tx.commit().await.expect("commit");
    assert!(done, "the claimer finishes its own task");
}

/// The gauges' counts: tasks by queue state, runs by template and status.
pub async fn task_and_run_counts(store: Arc<dyn ServerStore>) {
    assert_eq!(store.task_counts().await.expect("counts"), (0, 0));
    run_with_items(&store, "run_c", "alpha", 3).await;
    claim(&store, "w", 1, None).await;
    assert_eq!(store.task_counts().await.expect("counts"), (2, 1));
    assert_eq!(
        store.run_counts().await.expect("runs"),
        [("sample".to_string(), "running".to_string(), 1)]
    );
}

/// Memory is per tenant and namespace; search needs every word, in the key or the value,
/// ASCII case-insensitively, with `%` and `_` taken literally.
pub async fn memory_is_per_tenant_and_searchable(store: Arc<dyn ServerStore>) {
    let mem: Arc<dyn MemoryStore> = store.clone();
    mem.memory_put(
        "alpha",
        "notes",
        "city",
        &json!({"name": "Boise", "state": "ID"}),
    )
    .await
    .expect("put");
    mem.memory_put("alpha", "notes", "pct", &json!("50%_off"))
        .await
        .expect("put");
    mem.memory_put("alpha", "other", "city", &json!("Austin"))
        .await
        .expect("put");
    mem.memory_put("beta", "notes", "city", &json!("Boise"))
        .await
        .expect("put");
    let got = mem.memory_get("alpha", "notes", "city").await.expect("get");
    assert_eq!(
        got.as_ref().map(|e| &e.value),
        Some(&json!({"name": "Boise", "state": "ID"})),
        "the value reads back with its keys in order"
    );
    let first = got.expect("entry");
    mem.memory_put("alpha", "notes", "city", &json!("Boise, ID"))
        .await
        .expect("replace");
    let replaced = mem
        .memory_get("alpha", "notes", "city")
        .await
        .expect("get")
        .expect("entry");
    assert_eq!(replaced.value, json!("Boise, ID"));
    assert_eq!(replaced.created_at, first.created_at);
    assert!(replaced.updated_at >= first.updated_at);
    assert_eq!(
        mem.memory_get("gamma", "notes", "city").await.expect("get"),
        None
    );

    let keys = |v: Vec<weft_store::memory::MemoryEntry>| {
        v.into_iter()
            .map(|e| format!("{}/{}", e.namespace, e.key))
            .collect::<BTreeSet<_>>()
    };
    let found = mem
        .memory_search("alpha", None, "BOISE", 10)
        .await
        .expect("search");
    assert_eq!(keys(found), BTreeSet::from(["notes/city".to_string()]));
    let found = mem
        .memory_search("alpha", None, "city", 10)
        .await
        .expect("search");
    assert_eq!(
        keys(found),
        BTreeSet::from(["notes/city".to_string(), "other/city".to_string()])
    );
    let found = mem
        .memory_search("alpha", Some("other"), "city austin", 10)
        .await
        .expect("search");
    assert_eq!(keys(found), BTreeSet::from(["other/city".to_string()]));
    assert!(
        mem.memory_search("alpha", None, "city nowhere", 10)
            .await
            .expect("search")
            .is_empty(),
        "every word must match"
    );
    let found = mem
        .memory_search("alpha", None, "0%_", 10)
        .await
        .expect("search");
    assert_eq!(keys(found), BTreeSet::from(["notes/pct".to_string()]));
    assert!(
        mem.memory_search("alpha", None, "0_%", 10)
            .await
            .expect("search")
            .is_empty(),
        "`%` and `_` are literal"
    );
    let listed = mem.memory_list("alpha", None, 2).await.expect("list");
    assert_eq!(listed.len(), 2, "the limit holds");
    assert!(listed[0].updated_at >= listed[1].updated_at, "newest first");
    assert!(
        mem.memory_delete("alpha", "notes", "city")
            .await
            .expect("delete")
    );
    assert!(
        !mem.memory_delete("alpha", "notes", "city")
            .await
            .expect("delete")
    );
    assert_eq!(
        mem.memory_list("beta", None, 10).await.expect("list").len(),
        1,
        "another tenant's entries are untouched"
    );
}

/// A tenant's `max_concurrent_tasks` and the global `max_running` bound what a claim takes,
/// counting every owner's leases; other tenants are not held back by a capped one.
pub async fn claim_honours_tenant_and_global_caps(store: Arc<dyn ServerStore>) {
    assert!(store.create_tenant("capped").await.expect("tenant"));
    assert!(store.create_tenant("free").await.expect("tenant"));
    assert!(
        store
            .set_tenant_max_concurrent_tasks("capped", Some(2))
            .await
            .expect("cap")
    );
    run_with_items(&store, "run_c1", "capped", 3).await;
    run_with_items(&store, "run_c2", "capped", 3).await;
    run_with_items(&store, "run_f1", "free", 3).await;

    let first = claim(&store, "w1", 100, None).await;
    let of = |tasks: &[Task], tenant: &str| tasks.iter().filter(|t| t.tenant == tenant).count();
    assert_eq!(of(&first, "capped"), 2, "the capped tenant gets its cap");
    assert_eq!(of(&first, "free"), 3, "the other tenant is not held back");
    assert!(
        claim(&store, "w2", 100, None).await.is_empty(),
        "another owner's claim counts the first one's leases"
    );
    let capped: Vec<&Task> = first.iter().filter(|t| t.tenant == "capped").collect();
    finish(&store, capped[0], "w1").await;
    let next = claim(&store, "w2", 100, None).await;
    assert_eq!(
        (next.len(), of(&next, "capped")),
        (1, 1),
        "a finished task frees one slot"
    );

    // Running now: 2 capped + 3 free = 5. A global cap of 6 leaves room for one more, and
    // the tenant cap still applies inside it.
    assert!(
        store
            .set_tenant_max_concurrent_tasks("capped", None)
            .await
            .expect("lift")
    );
    let more = claim(&store, "w3", 100, Some(6)).await;
    assert_eq!(more.len(), 1, "the global cap leaves one slot");
    assert!(
        claim(&store, "w3", 100, Some(6)).await.is_empty(),
        "the global cap is reached"
    );
    let rest = claim(&store, "w3", 100, None).await;
    assert_eq!(rest.len(), 2, "without caps the rest is claimed");
}

/// Claimers racing on two tenants never lease more than a tenant's cap or the global cap at
/// once, and every task runs once.
pub async fn concurrent_claims_respect_tenant_and_global_caps(store: Arc<dyn ServerStore>) {
    const TENANT_CAP: usize = 3;
    const GLOBAL_CAP: usize = 5;
    assert!(store.create_tenant("capped").await.expect("tenant"));
    assert!(
        store
            .set_tenant_max_concurrent_tasks("capped", Some(TENANT_CAP as u32))
            .await
            .expect("cap")
    );
    for r in 0..3 {
        run_with_items(&store, &format!("run_c{r}"), "capped", 10).await;
    }
    run_with_items(&store, "run_o", "other", 10).await;
    let held_capped = Arc::new(AtomicUsize::new(0));
    let held_all = Arc::new(AtomicUsize::new(0));
    let most_capped = Arc::new(AtomicUsize::new(0));
    let most_all = Arc::new(AtomicUsize::new(0));
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let store = store.clone();
        let (held_capped, held_all) = (held_capped.clone(), held_all.clone());
        let (most_capped, most_all) = (most_capped.clone(), most_all.clone());
        claimers.spawn(async move {
            let owner = format!("w{w}");
            let mut done = Vec::new();
            let mut idle = 0;
            while idle < 100 {
                let got = claim(&store, &owner, 2, Some(GLOBAL_CAP as u32)).await;
                if got.is_empty() {
                    let (queued, running) = store.task_counts().await.expect("counts");
                    if queued == 0 && running == 0 {
                        break;
                    }
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                // Counted after the claim committed and uncounted before the finish commits,
                // so these never exceed what the store counts as leased.
                let capped = got.iter().filter(|t| t.tenant == "capped").count();
                let now_capped = held_capped.fetch_add(capped, Ordering::SeqCst) + capped;
                let now_all = held_all.fetch_add(got.len(), Ordering::SeqCst) + got.len();
                most_capped.fetch_max(now_capped, Ordering::SeqCst);
                most_all.fetch_max(now_all, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                held_capped.fetch_sub(capped, Ordering::SeqCst);
                held_all.fetch_sub(got.len(), Ordering::SeqCst);
                for t in &got {
                    finish(&store, t, &owner).await;
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
    let (capped, total) = (
        most_capped.load(Ordering::SeqCst),
        most_all.load(Ordering::SeqCst),
    );
    assert!(
        capped <= TENANT_CAP,
        "at most {TENANT_CAP} of the capped tenant's tasks were leased at once, saw {capped}"
    );
    assert!(
        total <= GLOBAL_CAP,
        "at most {GLOBAL_CAP} tasks were leased at once, saw {total}"
    );
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!((distinct.len(), all.len()), (40, 40), "each task ran once");
}

fn schedule(id: &str, tenant: &str, name: &str, next: Option<i64>) -> schedules::Schedule {
    schedules::Schedule {
        id: id.into(),
        tenant: tenant.into(),
        name: name.into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        template: "tick".into(),
        version: "1".into(),
        digest: "d".into(),
        source: "name: tick".into(),
        file: "tick.yaml".into(),
        files: json!({}),
        base_dir: None,
        inputs: json!({"label": "x"}),
        paused: false,
        next_fire_at: next,
        last_slot: None,
        last_fired_at: None,
        last_error: None,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

/// Schedules are per tenant (by id or name); a slot is claimed by one transaction only, only
/// while the schedule holds it and is not paused; a skipped slot is fenced the same way.
pub async fn schedules_claim_each_slot_once(store: Arc<dyn ServerStore>) {
    use schedules::{ScheduleStore, SlotClaim};
    let s: &dyn ScheduleStore = store.as_ref();
    assert!(
        s.insert_schedule(&schedule("sch_a", "alpha", "every", Some(5_000)))
            .await
            .unwrap()
    );
    assert!(
        !s.insert_schedule(&schedule("sch_b", "alpha", "every", Some(5_000)))
            .await
            .unwrap(),
        "a name is unique per tenant"
    );
    assert!(
        s.insert_schedule(&schedule("sch_c", "beta", "every", Some(9_000)))
            .await
            .unwrap()
    );
    assert_eq!(s.schedules("alpha").await.unwrap().len(), 1);
    assert_eq!(
        s.schedule("alpha", "every").await.unwrap().unwrap().id,
        "sch_a"
    );
    assert_eq!(
        s.schedule("alpha", "sch_a").await.unwrap().unwrap().inputs,
        json!({"label": "x"})
    );
    assert!(
        s.schedule("beta", "sch_a").await.unwrap().is_none(),
        "another tenant's"
    );
    // Due: every tenant's, soonest first, only up to `now`.
    let due: Vec<String> = s
        .due_schedules(10_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(due, vec!["sch_a", "sch_c"]);
    assert_eq!(s.due_schedules(6_000, 10).await.unwrap().len(), 1);

    let claim = SlotClaim {
        schedule_id: "sch_a".into(),
        expected_next: 5_000,
        slot: 5_000,
        next: Some(6_000),
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx.claim_schedule_slot(&claim).await.unwrap());
    tx.commit().await.unwrap();
    // The same slot again (a racing scheduler that read the old `next_fire_at`): refused.
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.claim_schedule_slot(&claim).await.unwrap());
    drop(tx);
    let a = s.schedule("alpha", "sch_a").await.unwrap().unwrap();
    assert_eq!((a.next_fire_at, a.last_slot), (Some(6_000), Some(5_000)));
    assert!(a.last_fired_at.is_some());
    // A rolled-back claim leaves the slot to the next claimer.
    let next = SlotClaim {
        expected_next: 6_000,
        slot: 6_000,
        next: Some(7_000),
        ..claim.clone()
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx.claim_schedule_slot(&next).await.unwrap());
    drop(tx);
    assert_eq!(
        s.schedule("alpha", "sch_a")
            .await
            .unwrap()
            .unwrap()
            .next_fire_at,
        Some(6_000)
    );
    // Skipping is fenced like a claim and records why.
    assert!(
        s.skip_schedule_slot(&next, "template no longer loads")
            .await
            .unwrap()
    );
    assert!(!s.skip_schedule_slot(&next, "again").await.unwrap());
    let a = s.schedule("alpha", "sch_a").await.unwrap().unwrap();
    assert_eq!(a.next_fire_at, Some(7_000));
    assert_eq!(a.last_error.as_deref(), Some("template no longer loads"));

    // Paused: not due, and not claimable even with the right slot.
    assert!(
        s.set_schedule_paused("alpha", "sch_a", true, None)
            .await
            .unwrap()
    );
    assert!(
        !s.set_schedule_paused("beta", "sch_a", true, None)
            .await
            .unwrap(),
        "another tenant's"
    );
    assert!(
        s.due_schedules(i64::MAX, 10)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != "sch_a")
    );
    assert!(
        s.set_schedule_paused("alpha", "sch_a", false, Some(8_000))
            .await
            .unwrap()
    );
    assert!(
        s.set_schedule_paused("alpha", "sch_a", true, Some(8_000))
            .await
            .unwrap()
    );
    let paused = SlotClaim {
        expected_next: 8_000,
        slot: 8_000,
        next: Some(9_000),
        ..claim.clone()
    };
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.claim_schedule_slot(&paused).await.unwrap(),
        "a paused schedule"
    );
    drop(tx);

    assert!(
        !s.delete_schedule("beta", "sch_a").await.unwrap(),
        "another tenant's"
    );
    assert!(s.delete_schedule("alpha", "sch_a").await.unwrap());
    assert!(s.schedules("alpha").await.unwrap().is_empty());
    assert_eq!(s.schedules("beta").await.unwrap().len(), 1);
}

/// A batch of finishes answers per task, fenced like one `finish_task` each: the current
/// attempt of the current owner ends once; a stale attempt or another owner is refused.
pub async fn finish_tasks_is_fenced_per_task(store: Arc<dyn ServerStore>) {
    run_with_items(&store, "run_b", "alpha", 4).await;
    let got = claim(&store, "w", 10, None).await;
    assert_eq!(got.len(), 4);
    let out = json!({"ok": true});
    let fin = |t: &Task, attempt: u32, owner: &'static str| TaskFinish {
        task_id: t.id,
        attempt,
        owner,
        status: TaskStatus::Succeeded,
        output: Some(&out),
        error: None,
    };
    let mut tx = store.begin().await.expect("begin");
    let done = tx
        .finish_tasks(&[
            fin(&got[0], 1, "w"),
            fin(&got[1], 2, "w"),
            fin(&got[2], 1, "someone-else"),
            TaskFinish {
                status: TaskStatus::Failed,
                output: None,
                error: Some("boom"),
                ..fin(&got[3], 1, "w")
            },
        ])
        .await
        .expect("finish_tasks");
    tx.commit().await.expect("commit");
    assert_eq!(done, [true, false, false, true]);
    let mut tx = store.begin().await.expect("begin");
    let again = tx
        .finish_tasks(&[fin(&got[0], 1, "w"), fin(&got[1], 1, "w")])
        .await
        .expect("finish_tasks");
    tx.commit().await.expect("commit");
    assert_eq!(again, [false, true], "an ended attempt cannot end twice");
    let tasks = store.tasks("run_b").await.expect("tasks");
    let by_id = |id: i64| tasks.iter().find(|t| t.id == id).expect("task");
    assert_eq!(by_id(got[0].id).output, Some(out.clone()));
    assert_eq!(
        by_id(got[2].id).status,
        TaskStatus::Running,
        "another owner's finish is refused"
    );
    assert_eq!(by_id(got[3].id).status, TaskStatus::Failed);
    assert_eq!(by_id(got[3].id).error.as_deref(), Some("boom"));
    assert!(by_id(got[3].id).lease_owner.is_none());
}
