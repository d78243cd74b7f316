//! The worker: claims tasks, runs tools, and commits results in batches.
//!
//! One driver owns the only path to the store. Its state between turns is [`Turns`], and each
//! turn is named steps read top to bottom: `collect` takes every result that finished since
//! the last turn, `commit` records them, advances their runs, renews leases when due, takes
//! back what dead workers held and claims as many new tasks as there are free slots — all in
//! one transaction — and `call` starts the claimed tasks' tools; `drain` ends it at shutdown.
//! Tool calls run on their own tasks, each holding a permit of the global cap, and report back
//! over a bounded channel (a full channel makes a finished tool wait, never drops its result).
//! What a result does to its run is `apply.rs`; the statuses it changes, `lifecycle.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weft_store::Task;

use crate::completion::{Completion, Failure};
use crate::{Engine, Result, wall_ms};
use weft_core::lifecycle::EventKind;

/// Settings of one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerOptions {
    /// Most tool calls in flight at once (the global cap).
    pub concurrency: usize,
    /// How long a lease lasts without a heartbeat.
    #[serde(with = "humantime_serde_ms")]
    pub lease: Duration,
    /// Only run tasks of these runs (the CLI runs its own run, not the whole queue).
    pub only_runs: Option<Vec<String>>,
    /// Most tasks running at once in the whole store, across every worker (`None`: no cap
    /// beyond each worker's `concurrency`). Enforced by the store's claim.
    pub max_concurrent_tasks: Option<u32>,
    /// How often to look for work that another process queued (a backstop for wake-ups).
    #[serde(with = "humantime_serde_ms")]
    pub poll: Duration,
    /// At shutdown, how long running tool calls may take to finish and commit before the
    /// rest are stopped and handed back to the queue. Zero stops them at once and leaves
    /// their leases to lapse.
    #[serde(with = "humantime_serde_ms")]
    pub grace: Duration,
}

mod humantime_serde_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 5,
            lease: Duration::from_secs(30),
            only_runs: None,
            max_concurrent_tasks: None,
            poll: Duration::from_secs(1),
            grace: Duration::ZERO,
        }
    }
}

/// How long a turn waits for more results before committing the ones it has.
const LINGER: Duration = Duration::from_micros(500);

pub struct Worker {
    engine: Engine,
    options: WorkerOptions,
    id: String,
}

struct InFlight {
    cancel: CancellationToken,
    task: Task,
}

impl Engine {
    pub fn worker(&self, options: WorkerOptions) -> Worker {
        Worker {
            engine: self.clone(),
            options,
            id: crate::leases::worker_id(),
        }
    }
}

impl Worker {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` fires. In-flight tool calls are cancelled at shutdown; their
    /// leases lapse and another worker (or `resume`) takes them back.
    ///
    /// Each turn is four named steps on one [`Turns`] state: [`Turns::collect`] the results
    /// that finished (waiting when there is nothing to do), [`Turns::commit`] them in one
    /// transaction that also renews leases, takes back lost tasks and claims new ones, and
    /// [`Turns::call`] the tools of what was claimed; at shutdown, [`Turns::drain`].
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut turns = Turns::new(self);
        // This process on record (`weft status`, `weft_workers_alive`), beating every third
        // of a lease until the worker stops.
        let beating = CancellationToken::new();
        let registration = tokio::spawn(register_and_beat(
            turns.engine.clone(),
            turns.id.clone(),
            turns.lease_ms,
            turns.heartbeat_every,
            beating.clone(),
        ));
        while let Some(batch) = turns.collect(&shutdown).await {
            if let Some(outcome) = turns.commit(batch, &shutdown).await {
                turns.call(outcome);
            }
        }
        turns.drain().await;
        beating.cancel();
        registration.await.ok();
        Ok(())
    }
}

/// What a worker holds between its turns.
struct Turns {
    engine: Engine,
    options: WorkerOptions,
    id: String,
    capacity: usize,
    done_tx: mpsc::Sender<Completion>,
    done_rx: mpsc::Receiver<Completion>,
    /// Tool progress, already shaped as events; advisory, so a full channel drops updates.
    progress_tx: mpsc::Sender<weft_store::NewEvent>,
    progress_rx: mpsc::Receiver<weft_store::NewEvent>,
    progress: Vec<weft_store::NewEvent>,
    in_flight: HashMap<i64, InFlight>,
    calls: JoinSet<()>,
    lease_ms: i64,
    heartbeat_every: Duration,
    last_heartbeat: Instant,
    last_reclaim: Instant,
    next_ready: Option<i64>,
    random01: Box<dyn FnMut() -> f64 + Send>,
    /// Limited to some runs: those and the child runs their `workflow:` steps start.
    only_runs: Option<Vec<String>>,
    family_seen: (u64, Instant),
    look_for_work: bool,
    /// Set by a wake-up: a run may have been cancelled, so check our leases at once.
    check_leases: bool,
    /// Results whose commit failed on a transient error, tried again next turn.
    carry: Vec<Completion>,
    /// Turns failed in a row: the next try waits longer (a full disk may last minutes).
    failed_turns: u32,
    /// When each in-flight task was claimed, for its step-attempt span (only with a sink).
    claimed_at: HashMap<i64, (i64, String)>,
}

impl Turns {
    fn new(worker: Worker) -> Turns {
        let Worker {
            engine,
            options,
            id,
        } = worker;
        let capacity = options.concurrency.max(1);
        let (done_tx, done_rx) = mpsc::channel::<Completion>(capacity * 2 + 16);
        let (progress_tx, progress_rx) = mpsc::channel::<weft_store::NewEvent>(1024);
        let heartbeat_every = options.lease / 3;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        Turns {
            capacity,
            done_tx,
            done_rx,
            progress_tx,
            progress_rx,
            progress: Vec::new(),
            in_flight: HashMap::new(),
            calls: JoinSet::new(),
            lease_ms: crate::millis(options.lease),
            heartbeat_every,
            last_heartbeat: Instant::now(),
            last_reclaim: Instant::now() - heartbeat_every,
            next_ready: None,
            random01: Box::new(move || rand::Rng::random::<f64>(&mut rng)),
            only_runs: options.only_runs.clone(),
            family_seen: (u64::MAX, Instant::now()),
            look_for_work: true,
            check_leases: false,
            carry: Vec::new(),
            failed_turns: 0,
            claimed_at: HashMap::new(),
            engine,
            options,
            id,
        }
    }

    fn take_done(&mut self, batch: &mut Vec<Completion>) {
        while let Ok(c) = self.done_rx.try_recv() {
            self.in_flight.remove(&c.task_id);
            batch.push(c);
        }
    }

    /// Collect: the results that finished since the last turn (and those a failed commit
    /// left). With nothing to record, renew or claim, waits for a result, a wake-up, work
    /// from another process or the next due task. `None` at shutdown.
    async fn collect(&mut self, shutdown: &CancellationToken) -> Option<Vec<Completion>> {
        let mut batch = std::mem::take(&mut self.carry);
        self.take_done(&mut batch);
        while self.calls.try_join_next().is_some() {}
        while let Ok(e) = self.progress_rx.try_recv() {
            self.progress.push(e);
        }
        let free = self.capacity.saturating_sub(self.in_flight.len());
        let heartbeat_due =
            !self.in_flight.is_empty() && self.last_heartbeat.elapsed() >= self.heartbeat_every;
        let ready_due = self.next_ready.is_some_and(|t| t <= wall_ms());
        if batch.is_empty()
            && self.progress.is_empty()
            && !heartbeat_due
            && !(free > 0 && (self.look_for_work || ready_due))
        {
            let poll = self.options.poll;
            let wait = match self.next_ready {
                Some(t) => Duration::from_millis((t - wall_ms()).max(1) as u64),
                None => poll,
            }
            .min(poll)
            .min(if self.in_flight.is_empty() {
                poll
            } else {
                self.heartbeat_every
            });
            let engine = self.engine.clone();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                c = self.done_rx.recv() => {
                    if let Some(c) = c {
                        self.in_flight.remove(&c.task_id);
                        batch.push(c);
                    }
                }
                _ = engine.inner.wake.notified() => {
                    self.look_for_work = true;
                    self.check_leases = true;
                }
                _ = engine.store().wait_for_work(wait) => { self.look_for_work = true; }
                Some(e) = self.progress_rx.recv() => self.progress.push(e),
            }
            self.take_done(&mut batch);
        }
        if shutdown.is_cancelled() {
            self.carry = batch;
            return None;
        }
        self.linger(&mut batch).await;
        self.follow_family().await;
        Some(batch)
    }

    /// Group commit: when only a few of many running calls have finished, linger a moment
    /// for the rest, so one transaction (one fsync) records them together instead of one
    /// turn per result.
    async fn linger(&mut self, batch: &mut Vec<Completion>) {
        if batch.is_empty() || batch.len() * 2 >= self.in_flight.len() + batch.len() {
            return;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() * 2 < self.in_flight.len() + batch.len() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(c)) => {
                    self.in_flight.remove(&c.task_id);
                    batch.push(c);
                }
                _ => break,
            }
        }
    }

    /// A worker limited to some runs also runs the child runs they started.
    async fn follow_family(&mut self) {
        let Some(base) = &self.options.only_runs else {
            return;
        };
        let engine = &self.engine;
        if self.family_seen.0 == engine.children_started()
            && self.family_seen.1.elapsed() < self.options.poll
        {
            return;
        }
        self.family_seen = (engine.children_started(), Instant::now());
        match engine.family(base).await {
            Ok(all) => self.only_runs = Some(all),
            Err(e) => tracing::warn!(error = %e, "Could not list child runs."),
        }
    }

    /// Commit: one transaction records `batch`, renews leases when due, takes back what dead
    /// workers held and claims as many tasks as there are free slots. On failure the
    /// transaction rolls back, the results are kept for the next turn when the error is
    /// transient (a lost connection, a full disk), and the worker waits longer after each
    /// failure in a row. `None` when the turn failed.
    async fn commit(
        &mut self,
        batch: Vec<Completion>,
        shutdown: &CancellationToken,
    ) -> Option<TurnOutcome> {
        let free = self.capacity.saturating_sub(self.in_flight.len());
        let ready_due = self.next_ready.is_some_and(|t| t <= wall_ms());
        let claim_now = free > 0 && (self.look_for_work || !batch.is_empty() || ready_due);
        let kept = batch.clone();
        let plan = TurnPlan {
            batch,
            progress: coalesce(std::mem::take(&mut self.progress)),
            claim: if claim_now { free as u32 } else { 0 },
            lease_ms: self.lease_ms,
            heartbeat: (self.check_leases || self.last_heartbeat.elapsed() >= self.heartbeat_every)
                && !self.in_flight.is_empty(),
            reclaim: self.last_reclaim.elapsed() >= self.heartbeat_every,
            only_runs: self.only_runs.as_deref(),
            max_running: self.options.max_concurrent_tasks,
        };
        let result = turn(&self.engine, &self.id, plan, &mut *self.random01).await;
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                // A transient failure (a lost connection, a deadlock, a full disk) keeps the
                // results for the next turn; fencing refuses any whose lease lapsed meanwhile.
                if e.is_transient() {
                    self.carry = kept;
                }
                // Fail-closed: without a renewal for a whole lease, our leases may be
                // someone else's now, so the calls stop.
                if self.last_heartbeat.elapsed() >= self.options.lease {
                    for f in self.in_flight.values() {
                        f.cancel.cancel();
                    }
                }
                self.failed_turns += 1;
                let pause = retry_pause(self.failed_turns);
                tracing::error!(
                    error = %e,
                    failed_turns = self.failed_turns,
                    retry_in_ms = pause.as_millis() as u64,
                    "Worker turn failed; its transaction rolled back, trying again."
                );
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                return None;
            }
        };
        if self.failed_turns > 0 {
            tracing::info!(
                failed_turns = self.failed_turns,
                "The store takes writes again."
            );
            self.failed_turns = 0;
        }
        if crate::spans::enabled() {
            record_attempt_spans(&self.engine, &kept, &mut self.claimed_at);
        }
        if outcome.heartbeat_done {
            self.last_heartbeat = Instant::now();
            self.check_leases = false;
        }
        if outcome.reclaim_done {
            self.last_reclaim = Instant::now();
        }
        if let Some(alive) = &outcome.still_leased {
            // Anything we hold that the store no longer says is ours must stop (fail-closed).
            for (task_id, f) in &self.in_flight {
                if !alive.contains(task_id) {
                    f.cancel.cancel();
                }
            }
        }
        self.next_ready = outcome.next_ready;
        self.look_for_work = claim_now && outcome.claimed.len() == free;
        Some(outcome)
    }

    /// Call: starts the tool call of every task the turn claimed, each on its own task with
    /// its own cancel token; its result comes back over `done_tx`.
    fn call(&mut self, outcome: TurnOutcome) {
        let mut tokens = outcome.tokens;
        for task in outcome.claimed {
            if crate::spans::enabled() {
                self.claimed_at
                    .insert(task.id, (wall_ms(), task.tool.clone()));
            }
            // Not a child of `shutdown`: a graceful stop lets running calls finish.
            let cancel = CancellationToken::new();
            self.in_flight.insert(
                task.id,
                InFlight {
                    cancel: cancel.clone(),
                    task: task.clone(),
                },
            );
            let engine = self.engine.clone();
            let done_tx = self.done_tx.clone();
            let owner = self.id.clone();
            let reporter = progress_reporter(&task, self.progress_tx.clone());
            let token = tokens.remove(&task.id);
            self.calls.spawn(async move {
                let completion = call_tool(&engine, task, owner, cancel, reporter, token).await;
                let _ = done_tx.send(completion).await;
            });
        }
    }

    /// Drain: at shutdown, a graceful stop gives running calls `grace` to finish and commit,
    /// then hands what is still running back to the queue; otherwise every call stops at
    /// once and its lease lapses.
    async fn drain(mut self) {
        let graceful = !self.options.grace.is_zero();
        if graceful {
            let mut drain = Drain {
                engine: &self.engine,
                owner: &self.id,
                in_flight: &mut self.in_flight,
                done_rx: &mut self.done_rx,
                lease_ms: self.lease_ms,
                heartbeat_every: self.heartbeat_every,
            };
            let carry = std::mem::take(&mut self.carry);
            drain
                .run(carry, self.options.grace, &mut *self.random01)
                .await;
        }
        for f in self.in_flight.values() {
            f.cancel.cancel();
        }
        self.calls.shutdown().await;
        if graceful {
            release(&self.engine, &self.in_flight).await;
        }
    }
}

/// How long to wait after `failed` turns in a row: 200 ms doubling to 5 s, so a store that
/// cannot write (a full disk) is tried again calmly and the worker goes on within seconds of
/// it recovering.
fn retry_pause(failed: u32) -> Duration {
    let doubled = 200u64.saturating_mul(1 << failed.saturating_sub(1).min(5));
    Duration::from_millis(doubled.min(5_000))
}

/// Registers the worker's row and stamps its heartbeat every `every` until `stop`, then
/// removes the row. A failed write is logged and tried again at the next beat; a row that
/// vanished (a store restored from backup) is registered again.
async fn register_and_beat(
    engine: Engine,
    id: String,
    lease_ms: i64,
    every: Duration,
    stop: CancellationToken,
) {
    let mut parts = id.split(':');
    let info = weft_store::workers::WorkerInfo {
        host: parts.next().unwrap_or_default().to_string(),
        pid: i64::from(std::process::id()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        lease_ms,
        id: id.clone(),
    };
    let store = engine.store();
    let mut registered = false;
    loop {
        let result = if registered {
            store.heartbeat_worker(&id).await
        } else {
            store.register_worker(&info).await.map(|()| true)
        };
        match result {
            Ok(present) => registered = present,
            Err(error) => tracing::warn!(%error, "Could not record this worker's heartbeat."),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every.max(Duration::from_millis(10))) => {}
        }
    }
    if registered && let Err(error) = store.deregister_worker(&id).await {
        tracing::warn!(%error, "Could not remove this worker's row; it will show as stale.");
    }
}

/// A graceful stop: no more claims, running calls get `grace` to finish and commit.
struct Drain<'a> {
    engine: &'a Engine,
    owner: &'a str,
    in_flight: &'a mut HashMap<i64, InFlight>,
    done_rx: &'a mut mpsc::Receiver<Completion>,
    lease_ms: i64,
    heartbeat_every: Duration,
}

impl Drain<'_> {
    async fn run(
        &mut self,
        mut batch: Vec<Completion>,
        grace: Duration,
        random01: &mut (dyn FnMut() -> f64 + Send),
    ) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if batch.is_empty() {
                if self.in_flight.is_empty() {
                    break;
                }
                tokio::select! {
                    c = self.done_rx.recv() => match c {
                        Some(c) => {
                            self.in_flight.remove(&c.task_id);
                            batch.push(c);
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                    // Time to renew the leases of what is still running.
                    _ = tokio::time::sleep(self.heartbeat_every) => {}
                }
                while let Ok(c) = self.done_rx.try_recv() {
                    self.in_flight.remove(&c.task_id);
                    batch.push(c);
                }
            }
            let plan = TurnPlan {
                batch: batch.clone(),
                progress: Vec::new(),
                claim: 0,
                lease_ms: self.lease_ms,
                heartbeat: !self.in_flight.is_empty(),
                reclaim: false,
                only_runs: None,
                max_running: None,
            };
            match turn(self.engine, self.owner, plan, random01).await {
                Ok(_) => batch.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, "Could not commit results while stopping.");
                    if !e.is_transient() || tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Hands the tasks whose calls a graceful stop cut short back to the queue at once, as their
/// next attempt, rather than leaving them until their leases lapse.
async fn release(engine: &Engine, in_flight: &HashMap<i64, InFlight>) {
    if in_flight.is_empty() {
        return;
    }
    let released = async {
        let mut tx = engine.begin().await?;
        let tasks: Vec<Task> = in_flight.values().map(|f| f.task.clone()).collect();
        let n = engine
            .take_back(&mut *tx, &tasks, crate::leases::Loss::Shutdown)
            .await?;
        tx.commit().await?;
        Ok::<_, crate::Error>(n)
    };
    match released.await {
        Ok(n) => tracing::info!(tasks = n, "Released unfinished tasks at shutdown."),
        Err(error) => tracing::warn!(%error, "Could not release tasks; their leases will lapse."),
    }
}

struct TurnPlan<'a> {
    batch: Vec<Completion>,
    /// `task.progress` events to append.
    progress: Vec<weft_store::NewEvent>,
    claim: u32,
    lease_ms: i64,
    heartbeat: bool,
    reclaim: bool,
    only_runs: Option<&'a [String]>,
    /// The global cap on running tasks, counted by the store's claim.
    max_running: Option<u32>,
}

struct TurnOutcome {
    claimed: Vec<Task>,
    /// The task token minted for each claimed attempt, by task id.
    tokens: HashMap<i64, String>,
    still_leased: Option<Vec<i64>>,
    next_ready: Option<i64>,
    heartbeat_done: bool,
    reclaim_done: bool,
}

async fn turn(
    engine: &Engine,
    owner: &str,
    plan: TurnPlan<'_>,
    random01: &mut (dyn FnMut() -> f64 + Send),
) -> Result<TurnOutcome> {
    // Workers of this host whose process died: what they held comes back now, not after a
    // whole lease (a restarted `weft serve` takes back its predecessor's tasks at once).
    let dead_owners = if plan.reclaim {
        engine.dead_local_workers().await
    } else {
        Vec::new()
    };
    let mut tx = engine.begin().await?;
    if !plan.progress.is_empty() {
        tx.append_events(&plan.progress).await?;
    }
    engine
        .apply_completions(&mut *tx, plan.batch, random01)
        .await?;
    let still_leased = if plan.heartbeat {
        Some(tx.renew_leases(owner, plan.lease_ms).await?)
    } else {
        None
    };
    if plan.reclaim {
        engine
            .reclaim_lost(&mut *tx, &dead_owners, plan.only_runs)
            .await?;
    }
    if plan.reclaim || plan.claim > 0 {
        engine.expire_waits(&mut *tx, plan.only_runs).await?;
    }
    let claimed = tx
        .claim(
            owner,
            plan.claim,
            plan.lease_ms,
            plan.only_runs,
            plan.max_running,
        )
        .await?;
    let tokens = engine.mint_tokens(&mut *tx, &claimed).await?;
    if !claimed.is_empty() {
        let events: Vec<_> = claimed
            .iter()
            .map(|t| weft_store::NewEvent {
                run_id: t.run_id.clone(),
                kind: EventKind::TaskStarted,
                step_id: Some(t.step_id.clone()),
                item: t.item,
                attempt: Some(t.attempt),
                data: serde_json::json!({}),
            })
            .collect();
        tx.append_events(&events).await?;
    }
    let next_ready = tx.next_ready_at(plan.only_runs).await?;
    tx.commit().await?;
    Ok(TurnOutcome {
        claimed,
        tokens,
        still_leased,
        next_ready,
        heartbeat_done: plan.heartbeat,
        reclaim_done: plan.reclaim,
    })
}

/// Keeps only the latest progress of each task attempt: a busy tool reporting every item
/// does not turn into one event per update.
fn coalesce(events: Vec<weft_store::NewEvent>) -> Vec<weft_store::NewEvent> {
    let mut latest: Vec<weft_store::NewEvent> = Vec::with_capacity(events.len());
    for e in events {
        match latest.iter_mut().find(|l| {
            l.run_id == e.run_id
                && l.step_id == e.step_id
                && l.item == e.item
                && l.attempt == e.attempt
        }) {
            Some(slot) => *slot = e,
            None => latest.push(e),
        }
    }
    latest
}

/// The `Progress` handed to one call: its updates become `task.progress` events.
fn progress_reporter(
    task: &Task,
    events: mpsc::Sender<weft_store::NewEvent>,
) -> weft_tools::Progress {
    let (tx, mut rx) = mpsc::channel::<weft_tools::ProgressUpdate>(16);
    let (run_id, step_id, item, attempt) = (
        task.run_id.clone(),
        task.step_id.clone(),
        task.item,
        task.attempt,
    );
    // Ends when the call drops its sender.
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            let _ = events.try_send(weft_store::NewEvent {
                run_id: run_id.clone(),
                kind: EventKind::TaskProgress,
                step_id: Some(step_id.clone()),
                item,
                attempt: Some(attempt),
                data: serde_json::json!({"done": u.done, "total": u.total, "message": u.message}),
            });
        }
    });
    weft_tools::Progress::new(tx)
}

async fn call_tool(
    engine: &Engine,
    task: Task,
    owner: String,
    cancel: CancellationToken,
    progress: weft_tools::Progress,
    token: Option<String>,
) -> Completion {
    let started = Instant::now();
    let mut completion = Completion::of(&task, owner);
    let usage = weft_tools::UsageMeter::default();
    // Progress text is scrubbed too, before it becomes an event.
    let progress = engine.scrubbed_progress(&task, progress).await;
    completion.result = attempt(engine, &task, cancel, progress, token, usage.clone()).await;
    completion.usage = usage.total();
    // What the task leaves behind never carries a secret it could read.
    engine.scrub_result(&task, &mut completion.result).await;
    // Nothing too deep to read back is ever recorded: such an output fails its step.
    if let Ok(output) = &completion.result
        && let Err(message) = weft_core::limits::check_json_depth(output, "the step's output")
    {
        completion.result = Err(Failure {
            message,
            transient: false,
            reason: "error",
        });
    }
    completion.duration_ms = started.elapsed().as_millis() as i64;
    completion
}

async fn attempt(
    engine: &Engine,
    task: &Task,
    cancel: CancellationToken,
    progress: weft_tools::Progress,
    token: Option<String>,
    usage: weft_tools::UsageMeter,
) -> std::result::Result<serde_json::Value, Failure> {
    let permanent = |message: String| Failure {
        message,
        transient: false,
        reason: "error",
    };
    let run = engine
        .run_for_call(&task.tenant, &task.run_id)
        .await
        .map_err(|e| Failure {
            message: format!("could not read the run: {e}"),
            transient: true,
            reason: "error",
        })?
        .ok_or_else(|| permanent("the run no longer exists".into()))?;
    let plan = engine
        .plan_for(&run)
        .map_err(|e| permanent(e.to_string()))?;
    let spec = plan.step_index(&task.step_id).map(|i| &plan.steps[i]);
    let timeout = spec.and_then(|s| s.timeout);
    let post = spec.map(|s| s.post.as_slice()).unwrap_or_default();
    let tool = match engine.tools().get_with_post(&task.tool, post) {
        Ok(Some(tool)) => tool,
        Ok(None) => return Err(permanent(format!("unknown tool `{}`", task.tool))),
        Err(e) => return Err(permanent(e)),
    };
    // The tool policy: a tenant's own template starts no process it was not granted, and
    // what it starts runs confined.
    let sandbox = engine.admit(&run, &*tool).await.map_err(|why| Failure {
        message: why,
        transient: false,
        reason: "error",
    })?;
    let ctx = weft_tools::Context {
        run_id: task.run_id.clone(),
        tenant: task.tenant.clone(),
        step_id: task.step_id.clone(),
        item_index: task.item,
        attempt: task.attempt,
        idempotency_key: crate::idempotency_key(
            &task.tenant,
            &task.run_id,
            &task.step_id,
            task.item,
        ),
        cancel: cancel.clone(),
        progress,
        base_dir: run.base_dir.as_ref().map(std::path::PathBuf::from),
        usage,
        task_token: token.map(|t| weft_tools::TaskToken::new(t, engine.api_url())),
        sandbox,
    };
    let started_ms = wall_ms();
    let call = tool.call(task.input.clone(), &ctx);
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(r) => r.map_err(|e| Failure {
                transient: e.is_transient(),
                message: e.to_string(),
                reason: "error",
            }),
            Err(_) => {
                cancel.cancel();
                Err(Failure {
                    message: format!("timed out after {}", weft_core::duration::format(limit)),
                    transient: true,
                    reason: "timeout",
                })
            }
        },
        None => call.await.map_err(|e| Failure {
            transient: e.is_transient(),
            message: e.to_string(),
            reason: "error",
        }),
    };
    if crate::spans::enabled() {
        crate::spans::record(crate::spans::SpanRecord {
            kind: crate::spans::SpanKind::ToolCall,
            run_id: task.run_id.clone(),
            tenant: task.tenant.clone(),
            template: run.template.clone(),
            step_id: Some(task.step_id.clone()),
            item: task.item,
            attempt: Some(task.attempt),
            tool: Some(task.tool.clone()),
            start_ms: started_ms,
            end_ms: wall_ms(),
            error: result.as_ref().err().map(|f| f.message.clone()),
            status: match &result {
                Ok(_) => "succeeded".into(),
                Err(f) => f.reason.to_string(),
            },
        });
    }
    result
}

/// Step-attempt spans for results a turn committed: from each task's claim to now.
fn record_attempt_spans(
    engine: &Engine,
    committed: &[Completion],
    claimed_at: &mut HashMap<i64, (i64, String)>,
) {
    let now = wall_ms();
    for c in committed {
        let Some((start_ms, tool)) = claimed_at.remove(&c.task_id) else {
            continue;
        };
        let run = engine
            .inner
            .runs
            .lock()
            .ok()
            .and_then(|runs| runs.get(&c.run_id).cloned());
        crate::spans::record(crate::spans::SpanRecord {
            kind: crate::spans::SpanKind::StepAttempt,
            run_id: c.run_id.clone(),
            tenant: c.tenant.clone(),
            template: run.map(|r| r.template.clone()).unwrap_or_default(),
            step_id: Some(c.step_id.clone()),
            item: c.item,
            attempt: Some(c.attempt),
            tool: Some(tool),
            start_ms,
            end_ms: now.max(start_ms),
            error: c.result.as_ref().err().map(|f| f.message.clone()),
            status: match &c.result {
                Ok(_) => "succeeded".into(),
                Err(f) if f.transient && c.may_retry() => "retrying".into(),
                Err(_) => "failed".into(),
            },
        });
    }
}
