//! MCP tools against real servers from npm and PyPI (see ECOSYSTEM.md): server-everything over
//! stdio and streamable HTTP, server-memory, server-filesystem, mcp-server-fetch scraping a page
//! this test serves, and mcp-server-time. Each test skips with a message when its server is not
//! installed, unless `WEFT_REQUIRE_SERVICES=1`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{NPM_INSTALL, PIP_INSTALL, need, node_bin, venv_bin};
use serde_json::{Value, json};
use weft_core::catalog::ToolCatalog;
use weft_tools::mcp::McpServerConfig;
use weft_tools::{Context, Progress, ProgressUpdate, Registry};

fn stdio(command: PathBuf, args: &[&str]) -> McpServerConfig {
    McpServerConfig {
        command: Some(command.display().to_string()),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..McpServerConfig::default()
    }
}

fn registry(name: &str, config: McpServerConfig) -> Registry {
    let mut registry = Registry::new();
    let servers = BTreeMap::from([(name.to_string(), config)]);
    weft_tools::mcp::register(&mut registry, &servers).expect("valid config");
    registry
}

async fn call(registry: &Registry, tool: &str, input: Value) -> weft_tools::Result<Value> {
    call_with(registry, tool, input, &Context::for_test()).await
}

async fn call_with(
    registry: &Registry,
    tool: &str,
    input: Value,
    ctx: &Context,
) -> weft_tools::Result<Value> {
    let tool = registry.get(tool).expect("a tool or a proxy");
    tokio::time::timeout(Duration::from_secs(60), tool.call(input, ctx))
        .await
        .expect("the call ends within a minute")
}

fn everything() -> Option<PathBuf> {
    need(
        node_bin("mcp-server-everything"),
        "@modelcontextprotocol/server-everything",
        NPM_INSTALL,
    )
}

#[tokio::test]
async fn everything_over_stdio_lists_and_calls_tools() {
    let Some(bin) = everything() else { return };
    let registry = registry("every", stdio(bin, &["stdio"]));
    // Lazy: nothing started, and any name under the prefix passes until it is.
    assert!(registry.all().is_empty());
    assert!(registry.contains("mcp.every.anything"));

    let failed = registry.prepare(["mcp.every.echo", "transform"]).await;
    assert!(failed.is_empty(), "{failed:?}");
    let names = registry.names();
    for expected in [
        "mcp.every.echo",
        "mcp.every.get-sum",
        "mcp.every.get-tiny-image",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(!registry.contains("mcp.every.anything"));
    let schema = registry
        .input_schema("mcp.every.get-sum")
        .expect("a schema");
    assert!(schema["properties"]["a"].is_object(), "{schema}");
    assert!(
        !registry
            .get("mcp.every.echo")
            .expect("echo")
            .description()
            .is_empty()
    );

    let echo = call(&registry, "mcp.every.echo", json!({"message": "hi"})).await;
    assert_eq!(echo.expect("echo answers"), json!("Echo: hi"));
    let sum = call(&registry, "mcp.every.get-sum", json!({"a": 2, "b": 3})).await;
    assert_eq!(sum.expect("sum"), json!("The sum of 2 and 3 is 5."));

    let structured = call(
        &registry,
        "mcp.every.get-structured-content",
        json!({"location": "Chicago"}),
    )
    .await
    .expect("structured");
    assert!(structured["temperature"].is_number(), "{structured}");

    let image = call(&registry, "mcp.every.get-tiny-image", json!({}))
        .await
        .expect("image");
    let blocks = image.as_array().expect("several blocks");
    let png = blocks
        .iter()
        .find(|b| b["type"] == "image")
        .expect("an image block");
    assert_eq!(png["mimeType"], "image/png");

    let wrong = call(&registry, "mcp.every.get-sum", json!({"a": "two"})).await;
    let error = wrong.expect_err("a bad argument fails");
    assert!(!error.is_transient(), "{error}");

    assert!(registry.get("mcp.every.nope").is_none());
}

#[tokio::test]
async fn progress_notifications_reach_the_step() {
    let Some(bin) = everything() else { return };
    let registry = registry("every", stdio(bin, &["stdio"]));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut ctx = Context::for_test();
    ctx.progress = Progress::new(tx);
    // Not prepared: the proxy starts the server on its first call.
    let done = call_with(
        &registry,
        "mcp.every.trigger-long-running-operation",
        json!({"duration": 1, "steps": 4}),
        &ctx,
    )
    .await
    .expect("the operation completes");
    assert!(
        done.as_str().is_some_and(|t| t.contains("completed")),
        "{done}"
    );
    let mut updates: Vec<ProgressUpdate> = Vec::new();
    while let Ok(update) = rx.try_recv() {
        updates.push(update);
    }
    assert!(updates.len() >= 3, "{updates:?}");
    assert!(updates.iter().all(|u| u.total == Some(4)), "{updates:?}");
    assert_eq!(updates.last().map(|u| u.done), Some(4));
}

#[tokio::test]
async fn a_crashed_stdio_server_is_restarted() {
    let Some(bin) = everything() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > '{}'; exec '{}' stdio",
        pid_file.display(),
        bin.display()
    );
    let registry = registry(
        "every",
        McpServerConfig {
            command: Some("sh".into()),
            args: vec!["-c".into(), script],
            ..McpServerConfig::default()
        },
    );
    let first = call(&registry, "mcp.every.echo", json!({"message": "one"})).await;
    assert_eq!(first.expect("first call"), json!("Echo: one"));
    let pid = std::fs::read_to_string(&pid_file).expect("pid written");
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = call(&registry, "mcp.every.echo", json!({"message": "two"})).await;
    assert_eq!(
        second.expect("the server was restarted"),
        json!("Echo: two")
    );
    let new_pid = std::fs::read_to_string(&pid_file).expect("pid written again");
    assert_ne!(pid, new_pid);
}

/// Starts server-everything over streamable HTTP on `port`; killed on drop.
async fn everything_http(bin: &PathBuf, port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("server-everything starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server-everything did not listen on {port}");
}

#[tokio::test]
async fn everything_over_streamable_http_reconnects_after_a_restart() {
    let Some(bin) = everything() else { return };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let port = common::free_port();
    let mut server = everything_http(&bin, port).await;
    let registry = registry(
        "web",
        McpServerConfig {
            url: Some(format!("http://127.0.0.1:{port}/mcp")),
            headers: BTreeMap::from([("X-Weft-Test".into(), "yes".into())]),
            ..McpServerConfig::default()
        },
    );
    let echo = call(&registry, "mcp.web.echo", json!({"message": "over http"})).await;
    assert_eq!(echo.expect("echo"), json!("Echo: over http"));

    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let mut ctx = Context::for_test();
    ctx.progress = Progress::new(tx);
    call_with(
        &registry,
        "mcp.web.trigger-long-running-operation",
        json!({"duration": 1, "steps": 3}),
        &ctx,
    )
    .await
    .expect("long operation");
    let mut n_updates = 0;
    while rx.try_recv().is_ok() {
        n_updates += 1;
    }
    assert!(n_updates >= 2, "{n_updates} progress updates over HTTP");

    // The server restarts and forgets the session: the next call reconnects and succeeds.
    server.kill().await.expect("kill");
    let _ = server.wait().await;
    let _server = everything_http(&bin, port).await;
    let again = call(&registry, "mcp.web.echo", json!({"message": "again"})).await;
    assert_eq!(again.expect("reconnected"), json!("Echo: again"));
}

#[tokio::test]
async fn memory_server_stores_and_finds_entities() {
    let Some(bin) = need(
        node_bin("mcp-server-memory"),
        "@modelcontextprotocol/server-memory",
        NPM_INSTALL,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = stdio(bin, &[]);
    config.env.insert(
        "MEMORY_FILE_PATH".into(),
        dir.path().join("memory.jsonl").display().to_string(),
    );
    let registry = registry("memory", config);
    let created = call(
        &registry,
        "mcp.memory.create_entities",
        json!({"entities": [{"name": "Lyon", "entityType": "city", "observations": ["has a silk museum"]}]}),
    )
    .await
    .expect("created");
    assert_eq!(created["entities"][0]["name"], "Lyon", "{created}");
    let found = call(
        &registry,
        "mcp.memory.search_nodes",
        json!({"query": "silk"}),
    )
    .await
    .expect("found");
    assert!(found.to_string().contains("Lyon"), "{found}");
}

#[tokio::test]
async fn filesystem_server_writes_and_reads_files() {
    let Some(bin) = need(
        node_bin("mcp-server-filesystem"),
        "@modelcontextprotocol/server-filesystem",
        NPM_INSTALL,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    let registry = registry("fs", stdio(bin, &[&root.display().to_string()]));
    let path = root.join("note.txt").display().to_string();
    call(
        &registry,
        "mcp.fs.write_file",
        json!({"path": path, "content": "weft was here"}),
    )
    .await
    .expect("written");
    assert_eq!(
        std::fs::read_to_string(root.join("note.txt")).expect("on disk"),
        "weft was here"
    );
    let read = call(&registry, "mcp.fs.read_text_file", json!({"path": path}))
        .await
        .expect("read");
    assert!(read.to_string().contains("weft was here"), "{read}");
    let outside = call(
        &registry,
        "mcp.fs.read_text_file",
        json!({"path": "/etc/hostname"}),
    )
    .await;
    assert!(outside.is_err(), "{outside:?}");
}

#[tokio::test]
async fn fetch_server_scrapes_a_local_page() {
    let Some(bin) = need(
        venv_bin("mcp-server-fetch"),
        "mcp-server-fetch",
        PIP_INSTALL,
    ) else {
        return;
    };
    let app = axum::Router::new().route(
        "/page",
        axum::routing::get(|| async {
            axum::response::Html(
                "<html><head><title>Weft test</title></head><body><h1>Hello weft</h1><p>The quick brown fox.</p></body></html>",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let registry = registry(
        "fetch",
        stdio(bin.clone(), &["--ignore-robots-txt", "--allow-private-ips"]),
    );
    let page = call(
        &registry,
        "mcp.fetch.fetch",
        json!({"url": format!("http://{addr}/page")}),
    )
    .await
    .expect("fetched");
    let text = page.to_string();
    assert!(
        text.contains("Hello weft") && text.contains("quick brown fox"),
        "{text}"
    );

    // Without --allow-private-ips the server refuses with a real tool error.
    let strict = registry_named_strict(bin);
    let refused = call(
        &strict,
        "mcp.strict.fetch",
        json!({"url": format!("http://{addr}/page")}),
    )
    .await;
    let error = refused.expect_err("a private address is refused");
    assert!(!error.is_transient(), "{error}");
}

fn registry_named_strict(bin: PathBuf) -> Registry {
    registry("strict", stdio(bin, &["--ignore-robots-txt"]))
}

#[tokio::test]
async fn time_server_returns_structured_content() {
    let Some(bin) = need(venv_bin("mcp-server-time"), "mcp-server-time", PIP_INSTALL) else {
        return;
    };
    let registry = registry("time", stdio(bin, &["--local-timezone", "UTC"]));
    let now = call(
        &registry,
        "mcp.time.get_current_time",
        json!({"timezone": "Europe/Paris"}),
    )
    .await
    .expect("the time");
    assert_eq!(now["timezone"], "Europe/Paris", "{now}");
    assert!(now["datetime"].is_string(), "{now}");
    let bad = call(
        &registry,
        "mcp.time.get_current_time",
        json!({"timezone": "Mars/Olympus"}),
    )
    .await;
    assert!(bad.is_err(), "{bad:?}");
}

#[test]
fn config_problems_are_reported_per_server() {
    let mut registry = Registry::new();
    let servers = BTreeMap::from([
        (
            "both".to_string(),
            McpServerConfig {
                command: Some("x".into()),
                url: Some("http://127.0.0.1:1/mcp".into()),
                ..McpServerConfig::default()
            },
        ),
        ("none".to_string(), McpServerConfig::default()),
        (
            "secret".to_string(),
            McpServerConfig {
                url: Some("http://127.0.0.1:1/mcp".into()),
                headers: BTreeMap::from([(
                    "Authorization".into(),
                    "Bearer ${WEFT_TEST_SURELY_UNSET_TOKEN}".into(),
                )]),
                ..McpServerConfig::default()
            },
        ),
    ]);
    let problems = weft_tools::mcp::register(&mut registry, &servers).expect_err("problems");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[2].contains("WEFT_TEST_SURELY_UNSET_TOKEN"),
        "{problems:?}"
    );
}

/// The task token reaches an MCP server in the request's `_meta`, never in the arguments.
#[tokio::test]
async fn the_task_token_travels_in_meta() {
    let Some(python) = need(venv_bin("python"), "the mcp Python SDK", PIP_INSTALL) else {
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mcp_meta_server.py");
    let registry = registry(
        "meta",
        stdio(python, &[script.to_str().expect("utf-8 path")]),
    );
    let token = "wft_tt_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
    let ctx = Context {
        task_token: Some(weft_tools::TaskToken::new(
            token.into(),
            Some("http://127.0.0.1:8420".into()),
        )),
        ..Context::for_test()
    };
    let out = call_with(&registry, "mcp.meta.whoami", json!({}), &ctx)
        .await
        .expect("call");
    let text = out.to_string();
    assert!(text.contains(token), "{out}");
    assert!(text.contains("dev.weft/apiUrl"), "{out}");
    // Without a token there is nothing in `_meta`.
    let out = call(&registry, "mcp.meta.whoami", json!({}))
        .await
        .expect("call");
    assert!(!out.to_string().contains("dev.weft/taskToken"), "{out}");
}
