//! `weft runs wait RUN`: follow a run that other processes (`weft worker`, `weft serve`) are
//! running until it ends, then report it exactly as `weft run` would, exit code included. The
//! pair `weft run --detach` + `weft runs wait` is `weft run` split across processes.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use weft_store::Store;

use crate::app::{App, usage};

pub async fn wait(app: &App, store: &dyn Store, run_id: &str) -> anyhow::Result<ExitCode> {
    if store.run("default", run_id).await?.is_none() {
        return Err(usage(format!("no run `{run_id}`")));
    }
    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let watched = crate::progress::watch(store, run_id, app.global.json, &stop).await;
    watcher.abort();
    watched?;
    crate::commands::run::report(app, store, "default", run_id).await
}
