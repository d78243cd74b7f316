//! The artifacts hook and `browser.screenshot`: images in outputs (MCP image content from the
//! real server-everything, data URLs, bare base64, a real Chromium screenshot of a page this
//! test serves) are stored once and replaced by `{url, content_type, width, height, bytes,
//! sha256}`; the local folder and an S3-compatible store share one code path.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use weft_tools::artifacts::{ArtifactStore, ArtifactsConfig, ArtifactsHook, externalize};
use weft_tools::browser::BrowserConfig;
use weft_tools::mcp::McpServerConfig;
use weft_tools::{Context, Registry};

/// A 1×1 PNG.
const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn local(dir: &std::path::Path) -> ArtifactStore {
    ArtifactStore::from_config(&ArtifactsConfig {
        dir: dir.to_path_buf(),
        ..ArtifactsConfig::default()
    })
    .expect("a local store")
}

#[tokio::test]
async fn images_anywhere_in_an_output_become_references() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local(dir.path());
    let output = json!({
        "mcp": {"type": "image", "mimeType": "image/png", "data": PIXEL},
        "nested": [format!("data:image/png;base64,{PIXEL}"), PIXEL, "short text"],
        "not_an_image": "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
        "n": 3
    });
    let out = externalize(&store, output, "acme", "run_1")
        .await
        .expect("stored");
    let reference = &out["mcp"];
    assert_eq!(reference["content_type"], "image/png");
    assert_eq!(reference["width"], 1);
    assert_eq!(reference["height"], 1);
    assert!(
        reference["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/v1/artifacts/"))
    );
    assert_eq!(
        out["nested"][0], *reference,
        "the same bytes are one artifact"
    );
    assert_eq!(out["nested"][1], *reference);
    assert_eq!(out["nested"][2], "short text");
    assert!(out["not_an_image"].is_string());
    assert_eq!(out["n"], 3);
    assert!(!out.to_string().contains(PIXEL));

    let id = reference["id"].as_str().expect("id");
    let (bytes, content_type) = store.get("acme", id).await.expect("get").expect("found");
    assert_eq!(content_type, "image/png");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        PIXEL
    );
    assert!(
        store.get("globex", id).await.expect("get").is_none(),
        "another tenant's"
    );
    assert_eq!(store.list_run("acme", "run_1").await.expect("list"), [id]);
}

#[tokio::test]
async fn tiny_image_from_server_everything_goes_through_the_hook() {
    let Some(bin) = common::need(
        common::node_bin("mcp-server-everything"),
        "@modelcontextprotocol/server-everything",
        common::NPM_INSTALL,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::new();
    let servers = BTreeMap::from([(
        "every".to_string(),
        McpServerConfig {
            command: Some(bin.display().to_string()),
            args: vec!["stdio".into()],
            ..McpServerConfig::default()
        },
    )]);
    weft_tools::mcp::register(&mut registry, &servers).expect("config");
    registry.add_hook("mcp.*", Arc::new(ArtifactsHook::new(local(dir.path()))));
    let out = registry
        .get("mcp.every.get-tiny-image")
        .expect("proxy")
        .call(json!({}), &Context::for_test())
        .await
        .expect("image");
    let image = out
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b.get("url").is_some()))
        .expect("a stored image");
    assert_eq!(image["content_type"], "image/png");
    assert!(image["width"].as_u64().is_some_and(|w| w > 0), "{image}");
    assert!(image["bytes"].as_u64().is_some_and(|b| b > 100), "{image}");
    assert!(!out.to_string().contains("\"data\""), "{out}");
}

#[tokio::test]
async fn screenshot_of_a_local_page_is_stored_as_an_artifact() {
    let Some(chromium) = common::chromium() else {
        return;
    };
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html(
                "<html><body style='margin:0;background:#c00'><h1 id='ready'>weft</h1>\
                 <div style='height:2000px'></div></body></html>",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::new();
    weft_tools::browser::register(
        &mut registry,
        &BrowserConfig {
            chromium,
            allow: vec!["127.0.0.1".into()],
            timeout: "60s".into(),
        },
    )
    .expect("config");
    weft_tools::artifacts::register(
        &mut registry,
        &ArtifactsConfig {
            dir: dir.path().to_path_buf(),
            ..ArtifactsConfig::default()
        },
    )
    .expect("artifacts");
    let tool = registry.get("browser.screenshot").expect("registered");
    let out = tool
        .call(
            json!({"url": format!("http://{addr}/"), "viewport": {"width": 640, "height": 480},
                   "wait_for": "#ready"}),
            &Context::for_test(),
        )
        .await
        .expect("a screenshot");
    let image: &Value = &out["image"];
    assert_eq!(image["content_type"], "image/png", "{out}");
    assert_eq!(image["width"], 640, "{out}");
    assert_eq!(image["height"], 480, "{out}");

    let full = tool
        .call(
            json!({"url": format!("http://{addr}/"), "viewport": {"width": 400, "height": 300}, "full_page": true}),
            &Context::for_test(),
        )
        .await
        .expect("a full-page screenshot");
    assert!(
        full["image"]["height"].as_u64().is_some_and(|h| h > 1000),
        "{full}"
    );

    // The SSRF guard: a loopback page that is not allow-listed is refused before Chromium starts.
    let mut strict = Registry::new();
    weft_tools::browser::register(&mut strict, &BrowserConfig::default()).expect("config");
    let refused = strict
        .get("browser.screenshot")
        .expect("registered")
        .call(
            json!({"url": format!("http://{addr}/")}),
            &Context::for_test(),
        )
        .await
        .expect_err("loopback refused");
    assert!(!refused.is_transient(), "{refused}");
}
