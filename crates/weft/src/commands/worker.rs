//! `weft worker`: a process that only runs tasks, so one store can be served by many workers on
//! many machines (PostgreSQL), or a `weft run --detach` can be finished by someone else.
//!
//! It claims from every run in the store, wakes on the store's notifications (LISTEN/NOTIFY on
//! PostgreSQL) with a slow poll as a backstop, and stops gracefully on SIGTERM or SIGINT: no
//! new claims, running calls get `--grace` to finish and commit, the rest go back to the queue.

use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weft_engine::WorkerOptions;

use crate::app::App;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Most tool calls in flight at once in this process (default 5, or `concurrency` in
    /// weft.toml).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Most tasks running at once in the whole store, across every worker on every machine
    /// (default: no cap, or `max_concurrent_tasks` in weft.toml).
    #[arg(long, value_name = "N")]
    pub max_concurrent_tasks: Option<u32>,
    /// How long a task's lease lasts without a heartbeat (heartbeats come every third of it);
    /// a worker that dies loses its tasks to others after this long.
    #[arg(long, env = "WEFT_LEASE", default_value = "30s", value_parser = weft_core::duration::parse)]
    pub lease: Duration,
    /// After SIGTERM/SIGINT, how long running calls may take to finish before they are stopped
    /// and handed back to the queue.
    #[arg(long, default_value = "10s", value_parser = weft_core::duration::parse)]
    pub grace: Duration,
    /// How often to look at the queue without a notification (a backstop).
    #[arg(long, default_value = "2s", value_parser = weft_core::duration::parse)]
    pub poll: Duration,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` on this address, e.g.
    /// `127.0.0.1:9464`. Off by default.
    #[arg(long, env = "WEFT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Do not fire schedules from this worker (by default every worker and `weft serve` run
    /// the scheduler; each slot fires once however many do).
    #[arg(long)]
    pub no_scheduler: bool,
}

pub async fn worker(app: &App, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    if args.lease < Duration::from_millis(30) {
        return Err(crate::app::usage("--lease must be at least 30ms"));
    }
    let metrics = match args.metrics_listen {
        Some(addr) => {
            // Installed before the engine exists, so its first commits are counted too.
            weft_server::metrics::install();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| crate::app::usage(format!("cannot listen on {addr}: {e}")))?;
            Some(listener)
        }
        None => None,
    };
    let engine = app.engine().await?;
    let worker = engine.worker(WorkerOptions {
        concurrency: app.concurrency(args.concurrency),
        lease: args.lease,
        only_runs: None,
        max_concurrent_tasks: app.max_concurrent_tasks(args.max_concurrent_tasks),
        poll: args.poll,
        grace: args.grace,
    });
    eprintln!(
        "weft worker {} on {} (concurrency {}, lease {}); SIGTERM or Ctrl-C stops",
        worker.id(),
        engine.store().describe(),
        app.concurrency(args.concurrency),
        weft_core::duration::format(args.lease)
    );
    let shutdown = CancellationToken::new();
    let exporter = metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            eprintln!("metrics on http://{addr}/metrics");
        }
        let store = engine.store().clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = weft_server::metrics::serve_exporter(listener, store, stop).await {
                tracing::warn!(%error, "The metrics listener stopped.");
            }
        })
    });
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop_signal().await;
        eprintln!("stopping: no new tasks; running ones get the grace period");
        stop.cancel();
    });
    let scheduler = if args.no_scheduler {
        None
    } else {
        let schedules = crate::commands::schedules::store(app).await?;
        let scheduler = weft_engine::schedule::Scheduler::new(
            engine.clone(),
            schedules,
            weft_engine::schedule::SchedulerOptions::default(),
        );
        Some(tokio::spawn(scheduler.run(shutdown.clone())))
    };
    let worked = worker.run(shutdown.clone()).await;
    shutdown.cancel();
    if let Some(exporter) = exporter {
        let _ = exporter.await;
    }
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    worked?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first SIGTERM or SIGINT.
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "Cannot watch SIGTERM; only Ctrl-C stops this worker.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
