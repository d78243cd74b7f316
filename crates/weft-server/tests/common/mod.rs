//! Test harness: a server over a temporary store with two tenants, in process or on a real
//! socket. The store is SQLite in a temp dir, or with `WEFT_TEST_BACKEND=postgres` a fresh
//! PostgreSQL database (`WEFT_TEST_PG`, dropped with the harness), so the same tests check
//! `weft serve` on both backends.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use weft_engine::{Engine, EngineOptions};
use weft_server::{Server, ServerOptions, SharedTemplate};
use weft_store::SqlStore;
use weft_store::server::ServerStore;
use weft_store::sqlite::Durability;
use weft_tools::{Registry, ToolsConfig};

/// A PostgreSQL database made for one harness, dropped with it.
pub struct PgDb {
    server: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs outside any runtime we may block: a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(weft_store::postgres::testing::drop_database(&server, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// The store the tests run on (see the module comment).
async fn open_store(dir: &std::path::Path) -> (Arc<dyn ServerStore>, Option<PgDb>) {
    if std::env::var("WEFT_TEST_BACKEND").as_deref() == Ok("postgres") {
        let server = weft_store::postgres::testing::server_url()
            .await
            .expect("WEFT_TEST_BACKEND=postgres needs a reachable PostgreSQL (WEFT_TEST_PG)");
        let (name, url) = weft_store::postgres::testing::create_database(&server)
            .await
            .expect("create a database");
        let store = weft_store::SqlStore::postgres(&url)
            .await
            .expect("open PostgreSQL");
        return (Arc::new(store), Some(PgDb { server, name }));
    }
    let store = SqlStore::sqlite(&dir.join("weft.db"), Durability::Relaxed)
        .await
        .expect("store");
    (Arc::new(store), None)
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn ServerStore>,
    pub engine: Engine,
    pub server: Server,
    pub key_a: String,
    pub key_b: String,
    /// Last, so the database outlives the store's connections.
    pub pg: Option<PgDb>,
}

pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub async fn harness(options: ServerOptions) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, pg) = open_store(dir.path()).await;
    let tools = Arc::new(Registry::with_builtins(&ToolsConfig::default()));
    let mut keys = Vec::new();
    for tenant in ["alpha", "beta"] {
        assert!(store.create_tenant(tenant).await.expect("tenant"));
        let (_, key) = weft_server::auth::create_key(store.as_ref(), tenant, "test")
            .await
            .expect("key");
        keys.push(key);
    }
    let shared = ["steps.yaml", "fails.yaml", "ops.yaml", "fanout.yaml"]
        .iter()
        .map(|f| SharedTemplate {
            plan: Arc::new(weft_core::load::load_file(&data(f), &*tools).expect("template")),
            base_dir: None,
            askable: true,
        })
        .collect();
    let engine = EngineOptions::new(store.clone(), tools.clone());
    let server = Server::new(store.clone(), engine, options, shared)
        .with_secret_box(weft_engine::secrets::SecretBox::new(rand_key()))
        .with_artifacts(
            weft_tools::artifacts::ArtifactStore::from_config(
                &weft_tools::artifacts::ArtifactsConfig {
                    dir: dir.path().join("artifacts"),
                    ..Default::default()
                },
            )
            .expect("artifact store"),
        );
    let engine = server.state().engine.clone();
    let key_b = keys.pop().expect("key");
    let key_a = keys.pop().expect("key");
    Harness {
        dir,
        store,
        engine,
        server,
        key_a,
        key_b,
        pg,
    }
}

/// A random secret key per harness.
pub fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (std::process::id() as u8)
            .wrapping_mul(31)
            .wrapping_add(i as u8 * 7);
    }
    key
}

pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

/// Sends one request through the router in process.
pub async fn call(
    h: &Harness,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<(&str, &str)>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let req = match body {
        Some((content_type, text)) => req
            .header("content-type", content_type)
            .body(Body::from(text.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let res: Response<Body> = h.server.router().oneshot(req).await.expect("response");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn start_run(h: &Harness, key: &str, template: &str, inputs: Value) -> String {
    let body = serde_json::json!({"template": template, "inputs": inputs}).to_string();
    let r = call(
        h,
        "POST",
        "/v1/runs",
        Some(key),
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

pub struct Running {
    pub base: String,
    pub cancel: CancellationToken,
    pub store: Arc<dyn ServerStore>,
    pub key_a: String,
    pub key_b: String,
    pub join: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
    pub pg: Option<PgDb>,
}

impl Running {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.join).await;
    }
}

/// Serves on a free loopback port until stopped.
pub async fn serve(h: Harness) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let Harness {
        dir,
        store,
        server,
        key_a,
        key_b,
        pg,
        ..
    } = h;
    let join = tokio::spawn(async move {
        server.run(listener, stop).await.expect("serve");
    });
    Running {
        base: format!("http://{addr}"),
        cancel,
        store,
        key_a,
        key_b,
        join,
        dir,
        pg,
    }
}
