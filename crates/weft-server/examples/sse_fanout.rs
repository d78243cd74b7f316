//! Benchmark (not a test): SSE fan-out. N subscribers (default 1,000) follow one busy run over
//! real sockets; prints whether every subscriber got every event in order with no gap, the
//! p50/p99 latency from an event's commit to its receipt, and the process's peak RSS.
//!
//!     cargo run -p weft-server --example sse_fanout -- [SUBSCRIBERS] [ITEMS]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use weft_engine::{EngineOptions, NewRun};
use weft_server::{Server, ServerOptions};
use weft_store::SqlStore;
use weft_store::Store as _;
use weft_store::server::AuthStore as _;
use weft_store::sqlite::Durability;
use weft_tools::{Registry, ToolsConfig};

const TEMPLATE: &str = r#"
name: busy
version: 1
inputs:
  n: { type: integer, default: 200 }
steps:
  - id: items
    tool: transform
    with: { data: "{{ input.n }}", jq: "[range(.)]" }
  - id: work
    for_each: "{{ steps.items.output }}"
    concurrency: 20
    tool: sleep
    with: { duration: 5ms }
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let items: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed).await?);
    store.create_tenant("bench").await?;
    let (_, key) = weft_server::auth::create_key(store.as_ref(), "bench", "bench").await?;
    let tools = Arc::new(Registry::with_builtins(&ToolsConfig::default()));
    let plan = Arc::new(
        weft_core::load::load_str(TEMPLATE, "busy.yaml", None, &*tools)
            .map_err(|d| d.to_string())?,
    );
    let options = ServerOptions {
        sse_buffer: 4096,
        workers: false,
        ..ServerOptions::default()
    };
    let server = Server::new(
        store.clone(),
        EngineOptions::new(store.clone(), tools.clone()),
        options,
        Vec::new(),
    );
    let engine = server.state().engine.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(server.run(listener, cancel.clone()));

    // The run exists (one event) before anyone subscribes; workers start after all have.
    let run = engine
        .create_run(NewRun {
            tenant: "bench".into(),
            plan,
            inputs: serde_json::json!({"n": items}),
            idempotency_key: None,
            base_dir: None,
        })
        .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("{base}/v1/runs/{}/events", run.id);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let req = client
            .get(&url)
            .header("authorization", format!("Bearer {key}"));
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let res = req.send().await.expect("connect");
            let _ = ready.send(()).await;
            let mut stream = res.bytes_stream();
            let mut buf = String::new();
            let mut got: Vec<(i64, i64)> = Vec::new();
            while let Some(Ok(bytes)) = stream.next().await {
                let at = now_ms();
                buf.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let data = block.lines().find_map(|l| l.strip_prefix("data:"));
                    if let Some(v) =
                        data.and_then(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
                    {
                        let ts = v["ts"].as_str().and_then(chrono_ms).unwrap_or(at);
                        got.push((v["seq"].as_i64().unwrap_or(-1), at - ts));
                    }
                }
            }
            got
        }));
    }
    for _ in 0..subscribers {
        ready_rx.recv().await;
    }
    let worker_stop = CancellationToken::new();
    let worker = tokio::spawn(engine.worker(Default::default()).run(worker_stop.clone()));
    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for r in readers {
        results.push(r.await?);
    }
    let elapsed = started.elapsed();
    worker_stop.cancel();
    let _ = worker.await;
    let stored: Vec<i64> = store
        .events(&run.id, 0, u32::MAX)
        .await?
        .iter()
        .map(|e| e.seq)
        .collect();
    let complete = results
        .iter()
        .filter(|g| g.iter().map(|(s, _)| *s).collect::<Vec<_>>() == stored)
        .count();
    let mut latencies: Vec<i64> = results.iter().flatten().map(|(_, l)| *l).collect();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "subscribers: {subscribers}, events per stream: {}, run took {:.2?}",
        stored.len(),
        elapsed
    );
    println!("complete, in order, no gap/duplicate: {complete}/{subscribers}");
    println!(
        "commit-to-receive latency: p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "RSS: now {} MiB, peak {} MiB",
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    Ok(())
}

/// `2026-11-25T13:48:42.975Z` as ms since the epoch.
fn chrono_ms(text: &str) -> Option<i64> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + frac.parse::<i64>().ok()?)
}
