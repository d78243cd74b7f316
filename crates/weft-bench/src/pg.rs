//! W1 and W2 on PostgreSQL with 1, 2 and 4 `weft worker` processes (`weft-bench pg`).
//!
//! Every task goes through the shared queue (`strategy: queue`): claimed by a worker process,
//! called, committed — durable trivial tasks. The bench process only creates runs (through
//! the engine, on its own connection pool) and watches them end; it runs no tasks itself.
//! Each worker count gets a fresh database `weft_test_<random>` on `WEFT_BENCH_PG` (default
//! the local `test` server), dropped afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use weft_engine::{Engine, NewRun};
use weft_store::SqlStore;
use weft_store::postgres::testing;
use weft_store::{RunStatus, Store};
use weft_tools::{Registry, ToolsConfig};

use crate::percentile;

/// Items of the W2 fan-out on PostgreSQL.
const W2_ITEMS: usize = 10_000;
/// W1 runs measured one after another (latency), and all at once (throughput).
const W1_SEQUENTIAL: usize = 50;
const W1_CONCURRENT: usize = 200;
/// Tool calls in flight per worker process.
const WORKER_CONCURRENCY: &str = "64";

fn chain_yaml() -> String {
    let mut y = String::from("name: w1pg\nsteps:\n");
    for i in 0..5 {
        y.push_str(&format!(
            "  - id: s{i}\n    tool: transform\n    strategy: queue\n    with: {{ data: {i}, jq: \". + 1\" }}\n"
        ));
    }
    y
}

fn fan_out_yaml(n: usize) -> String {
    format!(
        r#"name: w2pg
steps:
  - id: items
    for_each: "{{{{ range({n}) | list }}}}"
    as: i
    concurrency: 1000
    strategy: queue
    tool: transform
    with: {{ data: {{ id: "{{{{ i % {unique} }}}}", n: "{{{{ i }}}}" }}, jq: "." }}
  - id: dedupe
    tool: transform
    with: {{ data: "{{{{ steps.items.output }}}}", jq: "unique_by(.id) | length" }}
"#,
        unique = n * 9 / 10
    )
}

struct Workers(Vec<Child>);

impl Workers {
    fn start(weft: &Path, url: &str, n: usize, dir: &Path) -> anyhow::Result<Workers> {
        let mut children = Vec::new();
        for i in 0..n {
            let log = std::fs::File::create(dir.join(format!("worker-{i}.log")))?;
            children.push(
                Command::new(weft)
                    .current_dir(dir)
                    .args(["worker", "--db", url, "--concurrency", WORKER_CONCURRENCY])
                    .args(["--poll", "500ms", "--grace", "1s"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .context("start weft worker")?,
            );
        }
        Ok(Workers(children))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

async fn create(engine: &Engine, yaml: &str) -> anyhow::Result<String> {
    let plan = weft_core::load::load_str(yaml, "bench.yaml", None, &**engine.tools())
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let run = engine
        .create_run(NewRun {
            tenant: "default".into(),
            plan: Arc::new(plan),
            inputs: json!({}),
            idempotency_key: None,
            base_dir: None,
        })
        .await?;
    Ok(run.id)
}

/// Waits until the run ends, looking every `every`; fails unless it succeeded.
async fn wait(store: &dyn Store, id: &str, every: Duration) -> anyhow::Result<()> {
    loop {
        let run = store.run("default", id).await?.context("run")?;
        if run.status.is_terminal() {
            if run.status != RunStatus::Succeeded {
                bail!("run {id} ended {}: {:?}", run.status, run.error);
            }
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

/// Tasks of a run by when they finished, as the store recorded them: (first start, last
/// finish, per-task latency from creation to finish in ms).
async fn task_times(store: &dyn Store, id: &str) -> anyhow::Result<Vec<f64>> {
    let tasks = store.tasks(id).await?;
    let run = store.run("default", id).await?.context("run")?;
    Ok(tasks
        .iter()
        .filter_map(|t| t.finished_at.map(|f| (f - run.created_at) as f64))
        .collect())
}

async fn one_count(weft: &Path, server: &str, workers: usize) -> anyhow::Result<()> {
    let (name, url) = testing::create_database(server).await?;
    let dir = tempfile::tempdir()?;
    let result = async {
        let store = Arc::new(SqlStore::postgres(&url).await?);
        let tools = Arc::new(Registry::with_builtins(&ToolsConfig::default()));
        let engine = Engine::new(store.clone(), tools);
        let _workers = Workers::start(weft, &url, workers, dir.path())?;
        // Let the workers connect and listen before the clock starts.
        tokio::time::sleep(Duration::from_millis(700)).await;

        // W2: one fan-out through the queue.
        let yaml = fan_out_yaml(W2_ITEMS);
        let t0 = Instant::now();
        let id = create(&engine, &yaml).await?;
        let created = t0.elapsed().as_secs_f64();
        wait(store.as_ref(), &id, Duration::from_millis(2)).await?;
        let wall = t0.elapsed().as_secs_f64();
        let mut lat = task_times(store.as_ref(), &id).await?;
        lat.sort_by(f64::total_cmp);
        println!(
            "  {workers} worker(s), W2 {W2_ITEMS} items: {:.0} tasks/s ({wall:.2} s wall, \
             {created:.2} s of it creating the run); task done after p50 {:.0} ms, p99 {:.0} ms",
            W2_ITEMS as f64 / wall,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        );

        // W1: chains of 5 queued steps, one run at a time (latency), then many at once.
        let chain = chain_yaml();
        let mut lat = Vec::new();
        for _ in 0..W1_SEQUENTIAL {
            let t = Instant::now();
            let id = create(&engine, &chain).await?;
            wait(store.as_ref(), &id, Duration::from_micros(500)).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        let t = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..W1_CONCURRENT {
            ids.push(create(&engine, &chain).await?);
        }
        for id in &ids {
            wait(store.as_ref(), id, Duration::from_millis(2)).await?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  {workers} worker(s), W1 5-step chain: p50 {:.1} ms, p99 {:.1} ms per run alone; \
             {W1_CONCURRENT} at once: {:.0} runs/s, {:.0} tasks/s",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            W1_CONCURRENT as f64 / secs,
            (W1_CONCURRENT * 5) as f64 / secs,
        );
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    testing::drop_database(server, &name).await?;
    result
}

pub async fn run(weft: &Path) -> anyhow::Result<()> {
    let server = std::env::var("WEFT_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    println!(
        "PostgreSQL ({server}): W1/W2 through the shared queue, `weft worker` processes with \
         concurrency {WORKER_CONCURRENCY} each"
    );
    // `WEFT_BENCH_WORKERS=2,4` measures only those counts.
    let counts: Vec<usize> = match std::env::var("WEFT_BENCH_WORKERS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .context("WEFT_BENCH_WORKERS: numbers, comma-separated")
            })
            .collect::<anyhow::Result<_>>()?,
        Err(_) => vec![1, 2, 4],
    };
    for workers in counts {
        one_count(weft, &server, workers).await?;
    }
    Ok(())
}
