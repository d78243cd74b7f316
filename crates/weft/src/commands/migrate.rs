//! `weft migrate`: bring the store's schema up to this binary's version and say so, without
//! starting anything. Every command migrates when it opens the store; running this first, once,
//! before starting upgraded workers keeps a fleet from racing to do it (they would be safe, but
//! slower to start).

use std::process::ExitCode;

use serde_json::json;

use crate::app::App;

pub async fn migrate(app: &App) -> anyhow::Result<ExitCode> {
    let store = app.store().await?;
    let schema = store.schema_status().await?;
    if app.global.json {
        crate::commands::print_json(&json!({
            "store": store.describe(),
            "applied": schema.applied,
            "latest": schema.latest,
            "current": schema.is_current(),
        }))?;
    } else {
        println!(
            "{}: schema at version {} of {}",
            store.describe(),
            schema.applied.unwrap_or(0),
            schema.latest
        );
    }
    Ok(if schema.is_current() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
