//! `weft-bench`: the embedded store's workloads from the core issue, measured and printed.
//!
//! W1 chain: 200 runs of 5 sequential trivial `transform` steps, one after another — in
//! process (inline pure steps, and forced through the queue) and as whole `weft run` processes.
//! W2 fan-out: one run over 2,000 items (10% duplicate ids) with `concurrency: 3`, then a
//! dedupe by id; and 100,000 items with `concurrency: 64` — wall time and peak RSS of a whole
//! `weft run` process. W3 discovery: 15 items that wait 50 ms, `concurrency: 3`, every 5th
//! failing once and retried after 10 ms — wall time against the ideal.
//!
//! `pg`: W1 and W2 on PostgreSQL with 1, 2 and 4 `weft worker` processes (see `pg.rs`).
//! `peers`: the peers' W1, W2 and W3 from `bench/peers` (run `bench/peers/setup.sh` once), and
//! weft's figures of the same run as ratios against them (`weft-bench w1 w2 w3 peers`).
//!
//! Usage: `cargo run --release -p weft-bench [-- w1|w2|w3|pg ...]` (w1, w2 and w3 by default;
//! `pg` only when named, with `WEFT_BENCH_PG` or the local `test` server). The `weft` binary
//! is taken from the same target folder (build it with `cargo build --release -p weft`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_engine::{Engine, NewRun, WorkerOptions};
use weft_store::RunStatus;
use weft_store::SqlStore;
use weft_store::sqlite::Durability;
use weft_tools::{Context, Registry, Tool, ToolsConfig};

mod pg;

/// W3's tool: waits 50 ms; items 4, 9, 14 fail on their first attempt.
struct Discover;

#[async_trait]
impl Tool for Discover {
    fn name(&self) -> &str {
        "bench.discover"
    }
    fn description(&self) -> &str {
        "waits 50 ms; every 5th item fails once"
    }
    async fn call(&self, input: Value, ctx: &Context) -> weft_tools::Result<Value> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let i = input["i"].as_u64().unwrap_or(0);
        if i % 5 == 4 && ctx.attempt == 1 {
            return Err(weft_tools::Error::Failed("transient".into()));
        }
        Ok(json!({"i": i}))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn engine(dir: &Path, durability: Durability) -> anyhow::Result<Engine> {
    let store = SqlStore::sqlite(&dir.join("bench.db"), durability).await?;
    let mut tools = Registry::with_builtins(&ToolsConfig::default());
    tools.insert(Arc::new(Discover));
    Ok(Engine::new(Arc::new(store), Arc::new(tools)))
}

async fn start(engine: &Engine, yaml: &str, inputs: Value) -> anyhow::Result<String> {
    let plan = weft_core::load::load_str(yaml, "bench.yaml", None, &**engine.tools())
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let run = engine
        .create_run(NewRun {
            tenant: "default".into(),
            plan: Arc::new(plan),
            inputs,
            idempotency_key: None,
            base_dir: None,
        })
        .await?;
    Ok(run.id)
}

/// Creates a run and drives it to its end with a worker; returns the wall time.
async fn run_to_end(
    engine: &Engine,
    yaml: &str,
    inputs: Value,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let id = start(engine, yaml, inputs).await?;
    let store = engine.store().clone();
    let mut run = store.run("default", &id).await?.context("run")?;
    if !run.status.is_terminal() {
        let stop = CancellationToken::new();
        let worker = engine.worker(WorkerOptions {
            concurrency,
            only_runs: Some(vec![id.clone()]),
            ..WorkerOptions::default()
        });
        let handle = tokio::spawn(worker.run(stop.clone()));
        while !run.status.is_terminal() {
            tokio::time::sleep(Duration::from_micros(200)).await;
            run = store.run("default", &id).await?.context("run")?;
        }
        stop.cancel();
        let _ = handle.await;
    }
    let elapsed = t0.elapsed();
    if run.status != RunStatus::Succeeded {
        bail!("run {id} ended {}: {:?}", run.status, run.error);
    }
    Ok(elapsed)
}

fn w1_yaml(strategy: &str) -> String {
    let mut y = String::from("name: w1\nsteps:\n");
    for i in 0..5 {
        y.push_str(&format!(
            "  - id: s{i}\n    tool: transform\n    strategy: {strategy}\n    with: {{ data: {i}, jq: \". + 1\" }}\n"
        ));
    }
    y
}

/// p50 of `runs` whole processes of `weft ARGS` in `dir`, in milliseconds.
fn process_p50(weft: &Path, dir: &Path, args: &[&str], runs: usize) -> anyhow::Result<(f64, f64)> {
    let mut lat = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = Command::new(weft).current_dir(dir).args(args).output()?;
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        if !out.status.success() {
            bail!(
                "weft {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

/// What W1 measured, for the ratios against the peers.
#[derive(Default)]
struct Figures {
    w1_process_p50_ms: Option<f64>,
    w1_in_process_p50_ms: Option<f64>,
    w3_median_s: Option<f64>,
    w2_2000_s: Option<f64>,
}

async fn w1(dir: &Path, weft: &Path, figures: &mut Figures) -> anyhow::Result<()> {
    println!("W1 chain: 200 runs x 5 sequential transform steps (synchronous=FULL)");
    for strategy in ["sync", "queue"] {
        let sub = tempfile::tempdir_in(dir)?;
        let engine = engine(sub.path(), Durability::Full).await?;
        let yaml = w1_yaml(strategy);
        let mut lat = Vec::new();
        let t0 = Instant::now();
        for _ in 0..200 {
            lat.push(
                run_to_end(&engine, &yaml, json!({}), 5)
                    .await?
                    .as_secs_f64()
                    * 1e3,
            );
        }
        let total = t0.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        if strategy == "sync" {
            figures.w1_in_process_p50_ms = Some(percentile(&lat, 0.5));
        }
        let label = if strategy == "sync" {
            "in process, pure steps inline (default)"
        } else {
            "in process, strategy: queue (lease, call, commit per step)"
        };
        println!(
            "  {label}: {:.0} runs/s, {:.0} steps/s, p50 {:.3} ms, p99 {:.3} ms per run",
            200.0 / total,
            1000.0 / total,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
    let sub = tempfile::tempdir_in(dir)?;
    std::fs::write(sub.path().join("w1.yaml"), w1_yaml("sync"))?;
    // The floor of a whole process, measured in the same run: start, parse, exit.
    let (floor, _) = process_p50(weft, sub.path(), &["--version"], 40)?;
    let (p50, p99) = process_p50(
        weft,
        sub.path(),
        &["run", "--json", "--db", "w1.db", "w1.yaml"],
        40,
    )?;
    figures.w1_process_p50_ms = Some(p50);
    println!(
        "  whole `weft run --json --db F` process: p50 {p50:.2} ms, p99 {p99:.2} ms per run \
         (40 runs); `weft --version` p50 {floor:.2} ms: {:.2}x the process floor",
        p50 / floor
    );
    // 1,000 runs in the store for `runs list`: the rest created in process.
    {
        let store = SqlStore::sqlite(&sub.path().join("w1.db"), Durability::Full).await?;
        let tools = Registry::with_builtins(&ToolsConfig::default());
        let engine = Engine::new(Arc::new(store), Arc::new(tools));
        for _ in 40..1000 {
            start(&engine, &w1_yaml("sync"), json!({})).await?;
        }
    }
    let (list, _) = process_p50(
        weft,
        sub.path(),
        &["runs", "list", "--json", "--db", "w1.db"],
        20,
    )?;
    let (validate, _) = process_p50(weft, sub.path(), &["validate", "w1.yaml"], 20)?;
    println!(
        "  `weft runs list --json` (1,000 runs) p50 {list:.2} ms ({:.2}x the floor); \
         `weft validate` p50 {validate:.2} ms ({:.2}x)",
        list / floor,
        validate / floor
    );
    Ok(())
}

/// Runs `weft run` on a template and samples its peak RSS (VmHWM) until it exits.
fn whole_process(weft: &Path, dir: &Path, file: &str, args: &[&str]) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut child = Command::new(weft)
        .current_dir(dir)
        .arg("run")
        .arg(file)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("weft run {file} failed");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((t0.elapsed().as_secs_f64(), peak_kb as f64 / 1024.0))
}

fn w2_yaml(n: usize, concurrency: usize, strategy: &str) -> String {
    format!(
        r#"name: w2
steps:
  - id: items
    for_each: "{{{{ range({n}) | list }}}}"
    as: i
    concurrency: {concurrency}
    strategy: {strategy}
    tool: transform
    with: {{ data: {{ id: "{{{{ i % {unique} }}}}", n: "{{{{ i }}}}" }}, jq: "." }}
  - id: dedupe
    tool: transform
    with: {{ data: "{{{{ steps.items.output }}}}", jq: "unique_by(.id) | length" }}
"#,
        unique = n * 9 / 10
    )
}

async fn w2(dir: &Path, weft: &Path, figures: &mut Figures) -> anyhow::Result<()> {
    println!("W2 fan-out: one run over N items (10% duplicate ids), then a dedupe by id");
    for (n, c, strategy, label) in [
        (
            2_000,
            3,
            "sync",
            "2,000 items, concurrency 3, pure step inline (default)",
        ),
        (
            2_000,
            3,
            "queue",
            "2,000 items, concurrency 3, strategy: queue",
        ),
        (
            100_000,
            64,
            "sync",
            "100,000 items, concurrency 64, inline (default)",
        ),
        (
            100_000,
            64,
            "queue",
            "100,000 items, concurrency 64, strategy: queue",
        ),
    ] {
        let sub = tempfile::tempdir_in(dir)?;
        std::fs::write(sub.path().join("w2.yaml"), w2_yaml(n, c, strategy))?;
        let conc = c.to_string();
        let (secs, rss) = whole_process(weft, sub.path(), "w2.yaml", &["--concurrency", &conc])?;
        if n == 2_000 && strategy == "sync" {
            figures.w2_2000_s = Some(secs);
        }
        println!("  {label}: {secs:.3} s wall, {rss:.1} MB peak RSS (whole weft process)");
    }
    Ok(())
}

async fn w3(dir: &Path, figures: &mut Figures) -> anyhow::Result<()> {
    println!(
        "W3 discovery: 15 items x 50 ms, concurrency 3, every 5th fails once, retried after 10 ms"
    );
    let yaml = r#"name: w3
steps:
  - id: discover
    for_each: "{{ range(15) | list }}"
    concurrency: 3
    retry: { max_attempts: 2, backoff: { type: fixed, delay: 10ms, jitter: false } }
    tool: bench.discover
    with: { i: "{{ item }}" }
"#;
    let mut times = Vec::new();
    for _ in 0..5 {
        let sub = tempfile::tempdir_in(dir)?;
        let engine = engine(sub.path(), Durability::Full).await?;
        times.push(run_to_end(&engine, yaml, json!({}), 5).await?.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    figures.w3_median_s = Some(percentile(&times, 0.5));
    println!(
        "  wall time: median {:.3} s, best {:.3} s over 5 runs (ideal about 0.31 s)",
        percentile(&times, 0.5),
        times[0]
    );
    Ok(())
}

/// Runs `bench/peers/peers.py` (after `bench/peers/setup.sh`) and prints weft's W1, W2 and W3
/// figures from this run as ratios against the peers' (above 1: weft is faster).
fn peers(figures: &Figures) -> anyhow::Result<()> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers");
    let python = folder.join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} not found: run bench/peers/setup.sh first",
            python.display()
        );
    }
    println!("Peers (bench/peers/peers.py, in process, SQLite checkpoints), against this run:");
    let out = Command::new(&python)
        .arg(folder.join("peers.py"))
        .stderr(std::process::Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("peers.py failed");
    }
    let mut best_w1: Option<(String, f64)> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let peer = v["peer"].as_str().unwrap_or("?").to_string();
        match v["workload"].as_str() {
            Some("w1") => {
                let p50 = v["p50_ms"].as_f64().unwrap_or(f64::NAN);
                println!("  {peer} W1: p50 {p50:.2} ms per run");
                if best_w1.as_ref().is_none_or(|(_, b)| p50 < *b) {
                    best_w1 = Some((peer, p50));
                }
            }
            Some("w2") => {
                let wall = v["wall_s"].as_f64().unwrap_or(f64::NAN);
                print!("  {peer} W2 (2,000 items, cap 3): {wall:.3} s");
                match figures.w2_2000_s {
                    Some(w) => println!("; whole weft process {w:.3} s: {:.2}x", wall / w),
                    None => println!(),
                }
            }
            Some("w3") => {
                let median = v["median_s"].as_f64().unwrap_or(f64::NAN);
                print!("  {peer} W3: median {median:.3} s");
                match figures.w3_median_s {
                    Some(w) => println!("; weft {w:.3} s: {:.2}x", median / w),
                    None => println!(),
                }
            }
            _ => {}
        }
    }
    if let Some((peer, best)) = best_w1 {
        if let Some(w) = figures.w1_process_p50_ms {
            println!(
                "  W1 whole weft process {w:.2} ms against {peer} in process {best:.2} ms: {:.2}x",
                best / w
            );
        }
        if let Some(w) = figures.w1_in_process_p50_ms {
            println!(
                "  W1 weft in process {w:.3} ms against {peer} {best:.2} ms: {:.2}x",
                best / w
            );
        }
    }
    Ok(())
}

fn weft_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("exe folder")?;
    let weft = dir.join("weft");
    if !weft.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p weft`",
            weft.display()
        );
    }
    Ok(weft)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let all = which.is_empty();
    let want = |w: &str| all || which.iter().any(|a| a == w);
    let dir = tempfile::tempdir()?;
    let weft = weft_binary()?;
    let mut figures = Figures::default();
    if want("w1") {
        w1(dir.path(), &weft, &mut figures).await?;
    }
    if want("w2") {
        w2(dir.path(), &weft, &mut figures).await?;
    }
    if want("w3") {
        w3(dir.path(), &mut figures).await?;
    }
    if which.iter().any(|a| a == "peers") {
        peers(&figures)?;
    }
    if which.iter().any(|a| a == "pg") {
        pg::run(&weft).await?;
    }
    Ok(())
}
