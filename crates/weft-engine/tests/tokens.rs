//! Task tokens and scrubbing through the engine and a real SQLite store: a tool gets a fresh
//! token per attempt, the token is revoked once the attempt ends, and a tool that knows its
//! secret and puts it in its progress, output or error leaves no trace of it in any event,
//! task, step or run record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weft_engine::secrets::SecretBox;
use weft_engine::{Engine, EngineOptions, NewRun, WorkerOptions};
use weft_store::SqlStore;
use weft_store::secrets::SecretStore as _;
use weft_store::sqlite::Durability;
use weft_store::tokens::TaskTokenStore as _;
use weft_store::{RunStatus, Store};
use weft_tools::{Context, Registry, Tool, ToolsConfig};

const CANARY: &str = "canary-engine-92c1 \"x\"/+";

/// Behaves like a tool that read its secret: reports it as progress (and waits until the
/// progress is on record), then returns or fails with it in several encodings.
struct Leaky {
    store: Arc<SqlStore>,
    tokens: Mutex<Vec<String>>,
}

#[async_trait]
impl Tool for Leaky {
    fn name(&self) -> &str {
        "leaky"
    }
    fn description(&self) -> &str {
        "test tool: leaks its secret"
    }
    async fn call(&self, input: Value, ctx: &Context) -> weft_tools::Result<Value> {
        let token = ctx
            .task_token
            .as_ref()
            .expect("every queued attempt has a token");
        assert!(
            !format!("{ctx:?}").contains(token.secret()),
            "Debug hides it"
        );
        self.tokens
            .lock()
            .expect("lock")
            .push(token.secret().to_string());
        ctx.progress.report(weft_tools::ProgressUpdate {
            done: 1,
            total: Some(2),
            message: Some(format!("using {CANARY}")),
        });
        // Wait until the worker has recorded that progress, so the check below sees it.
        loop {
            let events = self
                .store
                .events(&ctx.run_id, 0, 1000)
                .await
                .expect("events");
            if events.iter().any(|e| e.kind == "task.progress") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
        let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
        if input["fail"].as_bool() == Some(true) {
            return Err(weft_tools::Error::Permanent(format!(
                "upstream refused key {CANARY} ({b64})"
            )));
        }
        Ok(json!({"raw": CANARY, "b64": b64, "hex": hex,
                  "nested": {"json": serde_json::to_string(CANARY).expect("json")}}))
    }
}

async fn drive(engine: &Engine, run_id: &str) -> weft_store::Run {
    let stop = CancellationToken::new();
    let worker = engine.worker(WorkerOptions::default());
    let handle = tokio::spawn(worker.run(stop.clone()));
    let run = loop {
        let run = engine
            .store()
            .run("default", run_id)
            .await
            .expect("read run")
            .expect("run exists");
        if run.status.is_terminal() {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.cancel();
    handle.await.expect("worker joins").expect("worker ok");
    run
}

#[tokio::test]
async fn a_leaky_tool_leaves_no_secret_and_its_token_dies_with_the_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
            .await
            .expect("open store"),
    );
    let secret_box = SecretBox::new([9; 32]);
    let sealed = secret_box
        .seal("default", "API_KEY", CANARY.as_bytes())
        .expect("seal");
    store
        .put_secret("default", "API_KEY", &sealed)
        .await
        .expect("put");
    let leaky = Arc::new(Leaky {
        store: store.clone(),
        tokens: Mutex::new(Vec::new()),
    });
    let mut tools = Registry::with_builtins(&ToolsConfig::default());
    tools.insert(leaky.clone());
    let engine = EngineOptions::new(store.clone(), Arc::new(tools))
        .secret_access(store.clone(), secret_box)
        .api_url("http://127.0.0.1:9")
        .build();

    for fail in [false, true] {
        let yaml = format!(
            "name: leak\nsteps:\n  - id: use\n    tool: leaky\n    with: {{ fail: {fail} }}\n    token: {{ ttl: 2m, scopes: [\"secret:API_KEY\"] }}\n"
        );
        let plan = weft_core::load::load_str(&yaml, "leak.yaml", None, &**engine.tools())
            .unwrap_or_else(|d| panic!("{d}"));
        let run = engine
            .create_run(NewRun {
                tenant: "default".into(),
                plan: Arc::new(plan),
                inputs: json!({}),
                idempotency_key: None,
                base_dir: None,
            })
            .await
            .expect("create run");
        let run = drive(&engine, &run.id).await;
        let want = if fail {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        assert_eq!(run.status, want, "{run:?}");

        let events = store.events(&run.id, 0, 1000).await.expect("events");
        let progress = events
            .iter()
            .find(|e| e.kind == "task.progress")
            .expect("progress recorded");
        assert_eq!(progress.data["message"], "using [REDACTED]");
        let mut everything = serde_json::to_string(&events).expect("json");
        everything.push_str(&serde_json::to_string(&run).expect("json"));
        everything.push_str(
            &serde_json::to_string(&store.steps(&run.id).await.expect("steps")).expect("json"),
        );
        everything.push_str(
            &serde_json::to_string(&store.tasks(&run.id).await.expect("tasks")).expect("json"),
        );
        assert!(everything.contains("[REDACTED]"), "{everything}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
        let escaped = serde_json::to_string(CANARY).expect("json");
        for form in [CANARY, &b64, escaped.trim_matches('"')] {
            assert!(!everything.contains(form), "{form} leaked: {everything}");
        }

        // The attempt is over: its token is on record (as a hash), revoked.
        let token = leaky.tokens.lock().expect("lock").pop().expect("a token");
        assert!(weft_engine::tokens::well_formed(&token), "{token}");
        let state = store
            .task_token(&weft_engine::tokens::hash_token(&token))
            .await
            .expect("lookup")
            .expect("minted");
        assert!(state.revoked_at.is_some() && state.check().is_err());
        assert_eq!(state.expires_at - state.issued_at, 120_000);
        assert_eq!(state.scopes, ["secret:API_KEY"]);
        assert!(!everything.contains(&token), "the token is never recorded");
    }
}

/// A pure tool forced through the queue gets no token unless its step asks for one.
#[tokio::test]
async fn pure_tools_get_a_token_only_when_their_step_asks() {
    use weft_store::secrets::{AuditQuery, AuditStore as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqlStore::sqlite(&dir.path().join("weft.db"), Durability::Relaxed)
            .await
            .expect("open store"),
    );
    let engine = Engine::new(
        store.clone(),
        Arc::new(Registry::with_builtins(&ToolsConfig::default())),
    );
    for (token, minted) in [("", 0), ("\n    token: { ttl: 1m }", 3)] {
        let yaml = format!(
            "name: pure\nsteps:\n  - id: t\n    for_each: \"{{{{ [1, 2, 3] }}}}\"\n    strategy: queue\n    tool: transform\n    with: {{ data: \"{{{{ item }}}}\", jq: \". + 1\" }}{token}\n"
        );
        let plan = weft_core::load::load_str(&yaml, "pure.yaml", None, &**engine.tools())
            .unwrap_or_else(|d| panic!("{d}"));
        let run = engine
            .create_run(NewRun {
                tenant: "default".into(),
                plan: Arc::new(plan),
                inputs: json!({}),
                idempotency_key: None,
                base_dir: None,
            })
            .await
            .expect("create run");
        let run = drive(&engine, &run.id).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        let records = store
            .audit(&AuditQuery {
                tenant: "default".into(),
                run: Some(run.id.clone()),
                ..Default::default()
            })
            .await
            .expect("audit");
        let count = |action: &str| records.iter().filter(|r| r.action == action).count();
        assert_eq!(count("token.minted"), minted, "{yaml}");
        assert_eq!(count("token.revoked"), minted, "{yaml}");
    }
}
