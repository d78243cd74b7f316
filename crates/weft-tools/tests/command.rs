//! `command`: real processes through `sh -c`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_tools::{Context, Error, Registry, ToolsConfig};

async fn run(input: Value, ctx: &Context) -> Result<Value, Error> {
    Registry::with_builtins(&ToolsConfig::default())
        .get("command")
        .expect("command is built in")
        .call(input, ctx)
        .await
}

fn sh(script: &str) -> Value {
    json!(["sh", "-c", script])
}

#[tokio::test]
async fn stdout_json_is_parsed_and_text_is_trimmed() {
    let ctx = Context::for_test();
    let output = run(json!({"argv": sh("echo '{\"a\": [1, 2]}'")}), &ctx)
        .await
        .expect("runs");
    assert_eq!(output, json!({"a": [1, 2]}));

    let output = run(json!({"argv": ["echo", "  hello world  "]}), &ctx)
        .await
        .expect("runs");
    assert_eq!(output, json!("hello world"));

    let output = run(json!({"argv": ["true"]}), &ctx).await.expect("runs");
    assert_eq!(output, Value::Null);
}

#[tokio::test]
async fn stdin_is_written_as_json() {
    let ctx = Context::for_test();
    let output = run(
        json!({"argv": ["cat"], "stdin": {"items": [1, "two"]}}),
        &ctx,
    )
    .await
    .expect("runs");
    assert_eq!(output, json!({"items": [1, "two"]}));

    // A string arrives quoted: stdin is always JSON.
    let output = run(json!({"argv": sh("cat; echo"), "stdin": "text"}), &ctx)
        .await
        .expect("runs");
    assert_eq!(output, json!("text"));
    let output = run(json!({"argv": sh("wc -c"), "stdin": "text"}), &ctx)
        .await
        .expect("runs");
    assert_eq!(output, json!(6));

    // Without stdin the program reads an empty stdin rather than hanging.
    let output = run(json!({"argv": sh("cat | wc -c")}), &ctx)
        .await
        .expect("runs");
    assert_eq!(output, json!(0));
}

#[tokio::test]
async fn environment_is_clean_plus_env_plus_weft_variables() {
    let mut ctx = Context::for_test();
    ctx.item_index = Some(7);
    ctx.attempt = 2;
    let script = "printf '{\"run\":\"%s\",\"step\":\"%s\",\"item\":\"%s\",\"attempt\":\"%s\",\"key\":\"%s\",\"greeting\":\"%s\",\"path_set\":%s,\"cargo\":\"%s\"}' \
        \"$WEFT_RUN_ID\" \"$WEFT_STEP_ID\" \"$WEFT_ITEM_INDEX\" \"$WEFT_ATTEMPT\" \"$WEFT_IDEMPOTENCY_KEY\" \"$GREETING\" \
        \"$([ -n \"$PATH\" ] && echo true || echo false)\" \"${CARGO_PKG_NAME:-}\"";
    let output = run(json!({"argv": sh(script), "env": {"GREETING": "hi"}}), &ctx)
        .await
        .expect("runs");
    assert_eq!(
        output,
        json!({
            "run": "run_test",
            "step": "step",
            "item": "7",
            "attempt": "2",
            "key": "run_test/step",
            "greeting": "hi",
            "path_set": true,
            // Set by cargo for this test process, and not passed on.
            "cargo": ""
        })
    );
}

#[tokio::test]
async fn cwd_defaults_to_the_template_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("sub/data.json"), "[1,2,3]").expect("write");
    let mut ctx = Context::for_test();
    ctx.base_dir = Some(dir.path().to_path_buf());

    let output = run(json!({"argv": ["cat", "sub/data.json"]}), &ctx)
        .await
        .expect("relative to base_dir");
    assert_eq!(output, json!([1, 2, 3]));

    let output = run(json!({"argv": ["cat", "data.json"], "cwd": "sub"}), &ctx)
        .await
        .expect("cwd relative to base_dir");
    assert_eq!(output, json!([1, 2, 3]));
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_end_of_stderr() {
    let ctx = Context::for_test();
    let script = "for i in $(seq 1 500); do echo \"noise line $i\" >&2; done; echo 'the real error' >&2; exit 3";
    let error = run(json!({"argv": sh(script)}), &ctx)
        .await
        .expect_err("exit 3");
    assert!(error.is_transient(), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("exited with code 3"), "{text}");
    assert!(text.trim_end().ends_with("the real error"), "{text}");
    assert!(!text.contains("noise line 1\n"), "only the tail is kept");
    assert!(text.len() < 2300, "{} bytes", text.len());
}

#[tokio::test]
async fn a_missing_program_is_permanent() {
    let error = run(
        json!({"argv": ["no-such-program-weft"]}),
        &Context::for_test(),
    )
    .await
    .expect_err("missing");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("not found"), "{error}");

    let error = run(json!({"argv": []}), &Context::for_test())
        .await
        .expect_err("empty argv");
    assert!(matches!(error, Error::Input(_)), "{error:?}");
}

#[tokio::test]
async fn cancel_kills_the_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("grandchild-survived");
    let ctx = Context::for_test();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    // A grandchild that would write the marker after a second unless it is killed too.
    let script = format!("(sleep 1; touch '{}') & sleep 30", marker.display());
    let started = Instant::now();
    let error = run(json!({"argv": sh(&script)}), &ctx)
        .await
        .expect_err("cancelled");
    assert!(matches!(error, Error::Cancelled), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the grandchild outlived the cancel");
}

#[tokio::test]
async fn an_endless_stdout_is_stopped() {
    let started = Instant::now();
    let error = run(json!({"argv": ["yes"]}), &Context::for_test())
        .await
        .expect_err("too much output");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("bytes on stdout"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn the_task_token_and_api_url_are_in_the_environment() {
    let token = "wft_tt_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let ctx = Context {
        task_token: Some(weft_tools::TaskToken::new(
            token.into(),
            Some("http://127.0.0.1:8420".into()),
        )),
        ..Context::for_test()
    };
    let script = "printf '[\"%s\",\"%s\"]' \"$WEFT_TASK_TOKEN\" \"$WEFT_API_URL\"";
    let output = run(json!({"argv": ["sh", "-c", script]}), &ctx)
        .await
        .expect("runs");
    assert_eq!(output, json!([token, "http://127.0.0.1:8420"]));
    // Without a token neither is set.
    let script = "printf '[\"%s\",\"%s\"]' \"${WEFT_TASK_TOKEN-unset}\" \"${WEFT_API_URL-unset}\"";
    let output = run(json!({"argv": ["sh", "-c", script]}), &Context::for_test())
        .await
        .expect("runs");
    assert_eq!(output, json!(["unset", "unset"]));
}
