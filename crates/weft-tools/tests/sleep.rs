//! `sleep`: waits, and stops when cancelled.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_tools::{Context, Error, Registry, ToolsConfig};

#[tokio::test]
async fn sleeps_for_the_duration() {
    let registry = Registry::with_builtins(&ToolsConfig::default());
    let tool = registry.get("sleep").expect("built in");
    let started = Instant::now();
    let output = tool
        .call(json!({"duration": "50ms"}), &Context::for_test())
        .await
        .expect("sleeps");
    assert_eq!(output, json!(null));
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn cancel_stops_the_sleep() {
    let registry = Registry::with_builtins(&ToolsConfig::default());
    let tool = registry.get("sleep").expect("built in");
    let ctx = Context::for_test();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let error = tool
        .call(json!({"duration": "10s"}), &ctx)
        .await
        .expect_err("cancelled");
    assert!(matches!(error, Error::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bad_durations_are_input_errors() {
    let registry = Registry::with_builtins(&ToolsConfig::default());
    let tool = registry.get("sleep").expect("built in");
    let error = tool
        .call(json!({"duration": "soon"}), &Context::for_test())
        .await
        .expect_err("not a duration");
    assert!(matches!(error, Error::Input(_)), "{error:?}");
}
