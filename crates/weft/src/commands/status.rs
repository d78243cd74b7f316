//! `weft status` (alias `doctor`): what an on-call engineer asks first. Is the store reachable,
//! is its schema the one this binary expects, which worker processes are alive (their
//! heartbeat rows) and which hold leases, how deep is the queue and how long has its oldest
//! due task waited.
//!
//! Exit 0 when all is well; 1 when the store cannot be reached, its schema is not current, or a
//! worker's leases have lapsed (it died or stalls; its tasks will be reclaimed).

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use weft_store::{QueueStatus, SchemaStatus};

use crate::app::App;

/// A worker process by its heartbeat row.
#[derive(Debug, Serialize)]
struct Process {
    id: String,
    host: String,
    pid: i64,
    version: String,
    /// `alive` while it heart-beats (within two leases); `stale` after (it died uncleanly).
    state: &'static str,
    last_heartbeat_ago_ms: i64,
    up_ms: i64,
}

#[derive(Debug, Serialize)]
struct Worker {
    owner: String,
    tasks: i64,
    /// `alive` while its leases are renewed; `lapsed` once they expired.
    state: &'static str,
    lease_expires_in_ms: i64,
}

pub async fn status(app: &App) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let store = match app.store().await {
        Ok(store) => store,
        Err(error) => {
            let error = format!("{error:#}");
            if app.global.json {
                crate::commands::print_json(
                    &json!({"ok": false, "store": {"reachable": false, "error": error}}),
                )?;
            } else {
                println!("store:    UNREACHABLE: {error}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let queue = store.queue_status().await?;
    let latency_ms = started.elapsed().as_millis() as u64;
    let schema = store.schema_status().await?;
    let workers: Vec<Worker> = queue
        .leases
        .iter()
        .map(|l| Worker {
            owner: l.owner.clone(),
            tasks: l.tasks,
            state: if l.expires_at >= queue.now {
                "alive"
            } else {
                "lapsed"
            },
            lease_expires_in_ms: l.expires_at - queue.now,
        })
        .collect();
    let registered = store.workers().await?;
    let processes: Vec<Process> = registered
        .workers
        .iter()
        .map(|w| Process {
            id: w.id.clone(),
            host: w.host.clone(),
            pid: w.pid,
            version: w.version.clone(),
            state: if w.is_alive(registered.now) {
                "alive"
            } else {
                "stale"
            },
            last_heartbeat_ago_ms: registered.now - w.last_heartbeat_at,
            up_ms: registered.now - w.started_at,
        })
        .collect();
    let alive = processes.iter().filter(|p| p.state == "alive").count();
    let ok = schema.is_current() && workers.iter().all(|w| w.state == "alive");
    if app.global.json {
        crate::commands::print_json(&json!({
            "ok": ok,
            "store": {"reachable": true, "url": store.describe(), "latency_ms": latency_ms},
            "schema": {"applied": schema.applied, "latest": schema.latest,
                       "current": schema.is_current()},
            "queue": {"depth": queue.queued, "due": queue.due, "running": queue.running,
                      "oldest_task_age_seconds": queue.oldest_age_ms() as f64 / 1000.0},
            "workers": workers,
            "processes": {"alive": alive, "workers": processes},
        }))?;
    } else {
        print_text(&store.describe(), latency_ms, &schema, &queue, &workers);
        print_processes(alive, &processes);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(
    url: &str,
    latency_ms: u64,
    schema: &SchemaStatus,
    queue: &QueueStatus,
    workers: &[Worker],
) {
    println!("store:    {url} reachable ({latency_ms} ms)");
    let applied = schema
        .applied
        .map(|v| v.to_string())
        .unwrap_or_else(|| "none".into());
    let verdict = if schema.is_current() {
        "current"
    } else {
        "NOT CURRENT: run `weft migrate`"
    };
    println!(
        "schema:   version {applied} of {} ({verdict})",
        schema.latest
    );
    let oldest = weft_core::duration::format(std::time::Duration::from_millis(
        queue.oldest_age_ms().max(0) as u64,
    ));
    println!(
        "queue:    {} queued ({} due), oldest due task waiting {oldest}; {} running",
        queue.queued, queue.due, queue.running
    );
    if workers.is_empty() {
        println!("workers:  none holding leases (idle workers hold none)");
    }
    for w in workers {
        println!(
            "worker:   {} {} task(s), leases {} ({} ms)",
            w.owner, w.tasks, w.state, w.lease_expires_in_ms
        );
    }
}

fn print_processes(alive: usize, processes: &[Process]) {
    println!(
        "processes: {alive} worker process(es) alive, {} stale",
        processes.len() - alive
    );
    for p in processes {
        let ago = weft_core::duration::format(std::time::Duration::from_millis(
            p.last_heartbeat_ago_ms.max(0) as u64,
        ));
        println!(
            "process:  {} (pid {} on {}, weft {}) {}, last heartbeat {ago} ago",
            p.id, p.pid, p.host, p.version, p.state
        );
    }
}
