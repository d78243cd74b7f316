//! The web UI and the `<weft-run>` widget in real headless Chromium, driven over the DevTools
//! protocol: sign in, start a run from the form and watch its steps turn green live, read a
//! failed run's error, and a plain page on another origin embedding the widget.
//!
//! Skipped (with a message) when Chromium is not installed, unless WEFT_REQUIRE_SERVICES=1.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use weft_server::ServerOptions;

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("WEFT_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

struct Browser {
    _child: tokio::process::Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Opens the UI at `base` and submits the sign-in form with `key`.
    async fn sign_in(&mut self, base: &str, key: &str) {
        self.goto(&format!("{base}/")).await;
        self.wait_for("!document.querySelector('#sign-in').hidden", 10)
            .await;
        self.eval(&format!(
            "document.querySelector('#api-key').value = {}; document.querySelector('#sign-in-form').requestSubmit(); true",
            json!(key)
        ))
        .await;
    }

    async fn launch(binary: &PathBuf) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(port) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("devtools");
        Browser {
            _child: child,
            ws,
            next_id: 1,
            _profile: profile,
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(msg.into())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("devtools answer")
                .expect("devtools open")
                .unwrap();
            if let Message::Text(text) = msg {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            15,
        )
        .await;
    }

    /// Saves a PNG of the page in `target/ui-screenshots/` (or the folder WEFT_UI_SCREENSHOTS
    /// names), for a reviewer to look at the UI.
    async fn screenshot(&mut self, name: &str) {
        let dir = std::env::var("WEFT_UI_SCREENSHOTS").map_or_else(
            |_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../ui-screenshots"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).unwrap();
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Polls `expression` until it is truthy; returns its value.
    async fn wait_for(&mut self, expression: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.eval(expression).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!("timed out waiting for `{expression}`; page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn api(
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_and_the_widget_in_headless_chromium() {
    let Some(binary) = chromium() else {
        if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("chromium is required (WEFT_REQUIRE_SERVICES=1): apt-get install -y chromium");
        }
        eprintln!(
            "SKIPPED: chromium not found (apt-get install -y chromium); UI tests did not run"
        );
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let failed = api(
        &base,
        &key,
        reqwest::Method::POST,
        "/v1/runs",
        Some(json!({"template": "fails"})),
    )
    .await;
    let failed_id = failed["id"].as_str().unwrap().to_string();

    let mut b = Browser::launch(&binary).await;

    // Sign in with the API key.
    b.sign_in(&base, &key).await;
    b.wait_for(
        "!document.querySelector('#nav').hidden && !!document.querySelector('#runs')",
        10,
    )
    .await;
    assert_eq!(
        b.eval("sessionStorage.getItem('weft.key') !== null").await,
        json!(true)
    );

    // Start a run from the template's form.
    b.eval("location.hash = '#/templates/steps'; true").await;
    b.wait_for("!!document.querySelector('#run-form #input-pause')", 10)
        .await;
    b.eval(
        "document.querySelector('#input-who').value = 'Browser'; \
         document.querySelector('#input-pause').value = '400ms'; \
         window.__sameDocument = 1; document.querySelector('#run-form').requestSubmit(); true",
    )
    .await;
    let hash = b
        .wait_for(
            "location.hash.startsWith('#/runs/run_') && location.hash",
            10,
        )
        .await;
    let run_id = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/runs/")
        .to_string();

    // Watch the steps turn green, live: record each distinct picture of the graph.
    let snapshot = "Array.from(document.querySelectorAll('.node')).map(n => n.dataset.step + ':' + n.dataset.status).join(',')";
    let mut pictures: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pic = b
            .eval(snapshot)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !pic.is_empty() && pictures.last() != Some(&pic) {
            pictures.push(pic.clone());
        }
        if pic == "first:succeeded,second:succeeded,third:succeeded,report:succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "steps never all succeeded: {pictures:?}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        pictures.iter().any(|p| p.contains("running")),
        "saw steps running: {pictures:?}"
    );
    assert!(
        pictures.len() >= 3,
        "the graph changed step by step: {pictures:?}"
    );
    assert_eq!(
        b.eval("window.__sameDocument").await,
        json!(1),
        "updated without a reload"
    );
    b.wait_for(
        "document.querySelector('#run-status .status.succeeded') !== null",
        10,
    )
    .await;
    let heading = b.wait_for("document.querySelector('.output h1') && document.querySelector('.output h1').textContent", 10).await;
    assert_eq!(
        heading,
        json!("Hello, Browser!"),
        "markdown output rendered as HTML"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('.output table td').length > 0")
            .await,
        json!(true)
    );
    b.screenshot("run").await;
    let run = api(
        &base,
        &key,
        reqwest::Method::GET,
        &format!("/v1/runs/{run_id}"),
        None,
    )
    .await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["inputs"]["who"], "Browser");

    // A failed run shows its error in full.
    for _ in 0..100 {
        let r = api(
            &base,
            &key,
            reqwest::Method::GET,
            &format!("/v1/runs/{failed_id}"),
            None,
        )
        .await;
        if r["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.eval(&format!("location.hash = '#/runs/{failed_id}'; true"))
        .await;
    let error = b
        .wait_for("document.querySelector('#run-error') && document.querySelector('#run-error').innerText", 10)
        .await;
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("the widget exploded: code 42"),
        "{error}"
    );
    b.wait_for(
        "document.querySelector('.node[data-step=\"explode\"].failed') !== null",
        5,
    )
    .await;
    b.screenshot("failed").await;

    // A plain page on another origin embeds the widget with a ticket.
    let widget_run = api(
        &base,
        &key,
        reqwest::Method::POST,
        "/v1/runs",
        Some(json!({"template": "steps", "inputs": {"pause": "300ms"}})),
    )
    .await;
    let widget_id = widget_run["id"].as_str().unwrap().to_string();
    let ticket = api(
        &base,
        &key,
        reqwest::Method::POST,
        &format!("/v1/runs/{widget_id}/stream-tickets"),
        None,
    )
    .await;
    let page = format!(
        "<!doctype html><html><head><title>agent app</title><script src=\"{base}/weft-run.js\"></script></head>\
         <body><p>Your workflow:</p><weft-run id=\"w\" src=\"{base}/v1/runs/{widget_id}\" ticket=\"{}\"></weft-run></body></html>",
        ticket["ticket"].as_str().unwrap()
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}/", listener.local_addr().unwrap());
    let app_server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    b.goto(&app_url).await;
    let widget = "(() => { const w = document.querySelector('#w'); if (!w || !w.shadowRoot) return ''; \
        return w.getAttribute('status') + '|' + (w.shadowRoot.querySelector('.count') || {}).textContent + '|' + \
        Array.from(w.shadowRoot.querySelectorAll('li')).map(li => li.dataset.step + ':' + li.dataset.status).join(','); })()";
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = b
            .eval(widget)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !v.is_empty() && seen.last() != Some(&v) {
            seen.push(v.clone());
        }
        if v.starts_with("succeeded|") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the widget never showed the end: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    b.screenshot("widget").await;
    let end = seen.last().unwrap();
    assert!(end.contains("Step 4/4"), "{end}");
    assert!(
        end.ends_with("first:succeeded,second:succeeded,third:succeeded,report:succeeded"),
        "{end}"
    );
    assert!(
        seen.iter().any(|s| s.contains(":running")),
        "live progress: {seen:?}"
    );
    // Collapse and expand.
    assert_eq!(b.eval("(() => { const r = document.querySelector('#w').shadowRoot; r.querySelector('button.head').click(); return r.querySelector('ol').hidden; })()").await, json!(true));
    assert_eq!(b.eval("(() => { const r = document.querySelector('#w').shadowRoot; r.querySelector('button.head').click(); return r.querySelector('ol').hidden; })()").await, json!(false));
    // Issue 16: a fan-out whose last progress event was throttled away ends with its final
    // count (the end event's `items` is the item count), not `8/9`.
    let counted = b
        .eval(
            "(() => { const w = document.createElement('weft-run'); \
             w.apply({kind: 'run.started', data: {steps: ['discover'], template: 't'}}); \
             w.apply({kind: 'step.started', step_id: 'discover', data: {items: 9}}); \
             w.apply({kind: 'step.progress', step_id: 'discover', data: {done: 8, total: 9, failed: 0}}); \
             w.apply({kind: 'step.succeeded', step_id: 'discover', data: {items: 9, attempts: 1}}); \
             return w.shadowRoot.querySelector('li .items').textContent; })()",
        )
        .await;
    assert_eq!(counted, json!("9/9"));
    app_server.abort();
    srv.stop().await;
}

/// The ask box: a dry run shows the template and a form of the inputs it read, which a person
/// corrects before starting the run; an unsure sentence shows the question and the candidates;
/// a missing input, the question and a form to give it. The schedules view adds a schedule
/// from its form, shows its next fire time, and pauses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ask_box_and_schedules_in_headless_chromium() {
    let Some(binary) = chromium() else {
        if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("chromium is required (WEFT_REQUIRE_SERVICES=1): apt-get install -y chromium");
        }
        eprintln!(
            "SKIPPED: chromium not found (apt-get install -y chromium); UI tests did not run"
        );
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let greet = "name: greet\nversion: 1\ndescription: Greets someone by name.\n\
        intent:\n  examples: [\"greet {who}\", \"say hello to {who}\"]\n\
        inputs:\n  who: { type: string, required: true, description: Who to greet }\n\
        steps:\n  - id: hello\n    tool: transform\n    with:\n      data: { who: \"{{ input.who }}\" }\n      jq: '\"Hello, \" + .who + \"!\"'\n\
        output: \"{{ steps.hello.output }}\"\n";
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/v1/templates"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/yaml")
        .body(greet)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered["name"], "greet", "{registered}");

    let mut b = Browser::launch(&binary).await;
    b.sign_in(&base, &key).await;
    b.wait_for("!!document.querySelector('#ask-form')", 10)
        .await;

    // Unsure: the question and the candidates, and no run.
    b.eval(
        "document.querySelector('#ask-text').value = 'compute the orbital period of Jupiter'; \
         document.querySelector('#ask-dry').click(); true",
    )
    .await;
    let question = b
        .wait_for(
            "document.querySelector('.clarify .question') && document.querySelector('.clarify .question').textContent",
            10,
        )
        .await;
    assert!(
        question.as_str().unwrap().contains("not sure"),
        "{question}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('.clarify ul.candidates li').length > 0")
            .await,
        json!(true)
    );
    b.screenshot("ask-clarify").await;

    // A required input missing: the question, and a form to give it.
    b.eval(
        "document.querySelector('#ask-text').value = 'greet'; \
         document.querySelector('#ask-dry').click(); true",
    )
    .await;
    let empty = b
        .wait_for(
            "document.querySelector('.clarify #ask-inputs') && JSON.stringify(document.querySelector('#ask-inputs').elements.who.value)",
            10,
        )
        .await;
    assert_eq!(empty, json!("\"\""));

    // A dry run: the template and a form of the inputs it read; a person corrects one and
    // the run starts with the correction.
    b.eval(
        "document.querySelector('#ask-text').value = 'say hello to Chromium'; \
         document.querySelector('#ask-dry').click(); true",
    )
    .await;
    let read = b
        .wait_for(
            "document.querySelector('.matched #ask-inputs') && document.querySelector('#ask-inputs').elements.who.value",
            10,
        )
        .await;
    assert_eq!(read, json!("Chromium"));
    let shown = b
        .eval("document.querySelector('.matched').textContent")
        .await;
    assert!(shown.as_str().unwrap().contains("greet@1"), "{shown}");
    b.screenshot("ask-matched").await;
    b.eval(
        "{ const form = document.querySelector('#ask-inputs'); form.elements.who.value = 'Ada'; \
         form.querySelector('#ask-start').click(); } true",
    )
    .await;
    b.wait_for("location.hash.startsWith('#/runs/run_')", 10)
        .await;
    let output = b
        .wait_for(
            "document.querySelector('#run-output .output') && document.querySelector('#run-output .output').textContent",
            15,
        )
        .await;
    assert!(output.as_str().unwrap().contains("Hello, Ada!"), "{output}");

    // Schedules: add one from the form, see its next fire time, pause it.
    b.eval("location.hash = '#/schedules'; true").await;
    b.wait_for(
        "document.querySelectorAll('#sch-template option').length > 0",
        10,
    )
    .await;
    b.eval(
        "const f = document.querySelector('#schedule-form'); \
         f.elements.template.value = 'greet'; f.elements.cron.value = '0 6 * * MON'; \
         f.elements.timezone.value = 'Europe/Berlin'; f.elements.name.value = 'monday'; \
         f.elements.inputs.value = '{\"who\": \"team\"}'; f.requestSubmit(); true",
    )
    .await;
    let next = b
        .wait_for(
            "document.querySelector('#schedules tr[data-schedule] .next') && document.querySelector('#schedules tr[data-schedule] .next').textContent",
            10,
        )
        .await;
    assert!(!next.as_str().unwrap().is_empty());
    b.screenshot("schedules").await;
    b.eval("document.querySelector('#schedules button.pause').click(); true")
        .await;
    b.wait_for(
        "document.querySelector('#schedules .status.paused') !== null",
        10,
    )
    .await;
    let list = api(&base, &key, reqwest::Method::GET, "/v1/schedules", None).await;
    assert_eq!(list["schedules"][0]["name"], "monday");
    assert_eq!(list["schedules"][0]["paused"], true);
    assert_eq!(list["schedules"][0]["inputs"]["who"], "team");
    srv.stop().await;
}

/// A waiting run's approvals: each item has Approve/Reject buttons (with a comment); once the
/// run succeeds its follow-up actions are buttons, and the action's run page links back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_actions_in_headless_chromium() {
    let Some(binary) = chromium() else {
        if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("chromium is required (WEFT_REQUIRE_SERVICES=1): apt-get install -y chromium");
        }
        eprintln!(
            "SKIPPED: chromium not found (apt-get install -y chromium); UI tests did not run"
        );
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let gate = "name: gate\nversion: 1\ninputs:\n  who: { type: array, default: [ann, bob] }\n\
        steps:\n  - id: ask\n    for_each: \"{{ input.who }}\"\n    approval: { prompt: \"Send to {{ item }}?\" }\n    continue_on_error: true\n\
        actions:\n  again: { template: gate, with: { who: [zoe] }, description: Ask zoe }\n";
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/v1/templates"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/yaml")
        .body(gate)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered["name"], "gate", "{registered}");
    let run = api(
        &base,
        &key,
        reqwest::Method::POST,
        "/v1/runs",
        Some(json!({"template": "gate"})),
    )
    .await;
    let run_id = run["id"].as_str().unwrap().to_string();

    let mut b = Browser::launch(&binary).await;
    b.sign_in(&base, &key).await;
    b.wait_for("!document.querySelector('#nav').hidden", 10)
        .await;
    b.eval(&format!("location.hash = '#/runs/{run_id}'; true"))
        .await;
    b.wait_for(
        "document.querySelectorAll('.approval button.approve').length === 2",
        15,
    )
    .await;
    assert_eq!(
        b.eval("document.querySelector('#run-status').innerText")
            .await,
        json!("waiting")
    );
    assert!(
        b.eval("document.querySelector('.approvals').innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .contains("Send to bob?")
    );
    b.screenshot("approvals-waiting").await;
    // Reject bob with a comment, approve ann.
    b.eval(
        "(() => { const bob = document.querySelector('.approval[data-item=\"1\"]'); \
         bob.querySelector('.comment').value = 'not bob'; bob.querySelector('button.reject').click(); return true; })()",
    )
    .await;
    b.wait_for(
        "document.querySelectorAll('.approval button.approve').length === 1",
        15,
    )
    .await;
    b.eval("document.querySelector('.approval[data-item=\"0\"] button.approve').click(); true")
        .await;
    b.wait_for(
        "document.querySelector('#run-status') && document.querySelector('#run-status').innerText === 'succeeded'",
        15,
    )
    .await;
    let detail = api(
        &base,
        &key,
        reqwest::Method::GET,
        &format!("/v1/runs/{run_id}"),
        None,
    )
    .await;
    assert_eq!(detail["steps"][0]["output"][0]["approved"], true);
    let by = detail["steps"][0]["output"][0]["by"]
        .as_str()
        .unwrap_or_default();
    assert!(by.starts_with("key_"), "{detail}");
    assert_eq!(
        detail["steps"][0]["error"],
        format!("item 1 failed: rejected by {by}: not bob")
    );

    // The follow-up: a button that starts the action and shows its run, linked back.
    b.wait_for(
        "!!document.querySelector('button.action[data-action=\"again\"]')",
        15,
    )
    .await;
    b.eval("document.querySelector('button.action[data-action=\"again\"]').click(); true")
        .await;
    let hash = b
        .wait_for(
            &format!("location.hash.startsWith('#/runs/run_') && location.hash !== '#/runs/{run_id}' && location.hash"),
            15,
        )
        .await;
    let child = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/runs/")
        .to_string();
    b.wait_for(
        &format!("!!document.querySelector('#run-head a[href=\"#/runs/{run_id}\"]')"),
        15,
    )
    .await;
    assert!(
        b.eval("document.querySelector('#run-head').innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .contains("action again")
    );
    let detail = api(
        &base,
        &key,
        reqwest::Method::GET,
        &format!("/v1/runs/{child}"),
        None,
    )
    .await;
    assert_eq!(detail["parent"]["run_id"], run_id.as_str());
    assert_eq!(detail["inputs"]["who"], json!(["zoe"]));
    b.screenshot("action-run").await;
    srv.stop().await;
}

/// Issue 16: the sign-in page showed the nav bar and "Sign out"; nothing said whose runs the
/// list shows; a required state was preselected as "Alabama".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_tenant_and_a_required_choice_in_headless_chromium() {
    let Some(binary) = chromium() else {
        if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("chromium is required (WEFT_REQUIRE_SERVICES=1): apt-get install -y chromium");
        }
        eprintln!(
            "SKIPPED: chromium not found (apt-get install -y chromium); UI tests did not run"
        );
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let place = "name: place\nversion: 1\n\
        inputs:\n  state: { type: string, enum: us_states, description: A US state }\n\
        steps:\n  - id: echo\n    tool: transform\n    with: { data: \"{{ input.state }}\", jq: . }\n";
    let registered: Value = reqwest::Client::new()
        .post(format!("{base}/v1/templates"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/yaml")
        .body(place)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered["name"], "place", "{registered}");
    let me = api(&base, &key, reqwest::Method::GET, "/v1/tenant", None).await;
    let tenant = me["name"].as_str().unwrap().to_string();

    let mut b = Browser::launch(&binary).await;
    b.goto(&format!("{base}/")).await;
    b.wait_for("!document.querySelector('#sign-in').hidden", 10)
        .await;
    assert_eq!(
        b.eval("getComputedStyle(document.querySelector('#nav')).display")
            .await,
        json!("none"),
        "no nav bar or Sign out before signing in"
    );
    assert_eq!(
        b.eval("document.querySelector('#sign-out').getClientRects().length")
            .await,
        json!(0)
    );
    b.screenshot("sign-in").await;

    b.sign_in(&base, &key).await;
    let shown = b
        .wait_for(
            "document.querySelector('#runs-tenant') && document.querySelector('#runs-tenant').textContent",
            10,
        )
        .await;
    assert_eq!(shown, json!(format!("of tenant {tenant}")));
    assert_eq!(
        b.eval("document.querySelector('#tenant').textContent")
            .await,
        json!(format!("tenant {tenant}"))
    );
    b.wait_for(
        "document.querySelector('#runs tbody').textContent.includes('No runs of tenant')",
        10,
    )
    .await;
    let empty = b
        .eval("document.querySelector('#runs tbody').textContent")
        .await;
    assert!(
        empty
            .as_str()
            .is_some_and(|t| t.contains(&format!("No runs of tenant {tenant} yet"))
                && t.contains(&format!("weft run --tenant {tenant}"))),
        "{empty}"
    );
    b.screenshot("runs-empty").await;

    b.eval("location.hash = '#/templates/place'; true").await;
    b.wait_for("!!document.querySelector('#input-state')", 10)
        .await;
    assert_eq!(
        b.eval("document.querySelector('#input-state').value").await,
        json!(""),
        "nothing preselected for a required state"
    );
    assert_eq!(
        b.eval("document.querySelector('#input-state').required")
            .await,
        json!(true)
    );
    assert_eq!(
        b.eval("document.querySelector('#run-form').checkValidity()")
            .await,
        json!(false),
        "the form says the state is required"
    );
    b.screenshot("form-required-state").await;
}
