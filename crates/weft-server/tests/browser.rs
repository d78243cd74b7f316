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

/// Chromium, or None after saying the test is skipped (a failure with WEFT_REQUIRE_SERVICES=1).
fn need_chromium() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("chromium is required (WEFT_REQUIRE_SERVICES=1): apt-get install -y chromium");
        }
        eprintln!(
            "SKIPPED: chromium not found (apt-get install -y chromium); UI tests did not run"
        );
    }
    found
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
    let Some(binary) = need_chromium() else {
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
    // Issue 16: the widget shows the run's output once it ends (markdown, rendered and
    // sanitized by the server).
    let shown = b
        .wait_for(
            "(() => { const o = document.querySelector('#w').shadowRoot.querySelector('.output h1'); return o && o.textContent; })()",
            10,
        )
        .await;
    assert_eq!(shown, json!("Hello, World!"));
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
    let Some(binary) = need_chromium() else {
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
    let Some(binary) = need_chromium() else {
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
    // Issue 16: a decision and its comment stay on the page, a rejection told apart.
    let rejected = b
        .wait_for(
            "(() => { const d = document.querySelector('.decision.rejected[data-item=\"1\"]'); return d && d.innerText; })()",
            15,
        )
        .await;
    assert!(
        rejected.as_str().unwrap_or_default().contains("Rejected")
            && rejected.as_str().unwrap_or_default().contains("not bob"),
        "{rejected}"
    );
    b.eval("document.querySelector('.approval[data-item=\"0\"] button.approve').click(); true")
        .await;
    b.wait_for(
        "document.querySelector('#run-status') && document.querySelector('#run-status').innerText === 'succeeded'",
        15,
    )
    .await;
    let approved = b
        .wait_for(
            "(() => { const d = document.querySelector('.decision.approved[data-item=\"0\"]'); return d && d.innerText; })()",
            15,
        )
        .await;
    assert!(
        approved.as_str().unwrap_or_default().contains("Approved"),
        "{approved}"
    );
    assert!(
        b.eval("document.querySelector('.decision.rejected[data-item=\"1\"]') !== null")
            .await
            .as_bool()
            .unwrap_or(false),
        "the rejection is still shown after the run ended"
    );
    // The step whose approval was rejected is drawn as rejected, not as a failure.
    assert_eq!(
        b.eval("document.querySelector('.node[data-step=\"ask\"]').dataset.status")
            .await,
        json!("rejected")
    );
    assert_eq!(
        b.eval(
            "getComputedStyle(document.querySelector('.node[data-step=\"ask\"]')).borderTopStyle"
        )
        .await,
        json!("dotted")
    );
    b.screenshot("approvals-decided").await;
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
    let Some(binary) = need_chromium() else {
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

/// Registers a template for the key's tenant.
async fn register(base: &str, key: &str, yaml: &str) {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/v1/templates"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["name"].is_string(), "{r}");
}

/// Starts a run; returns its id.
async fn post_run(base: &str, key: &str, body: Value) -> String {
    let r = api(base, key, reqwest::Method::POST, "/v1/runs", Some(body)).await;
    r["id"].as_str().unwrap_or_default().to_string()
}

/// Polls the run until it has ended; returns its JSON.
async fn wait_ended(base: &str, key: &str, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api(
            base,
            key,
            reqwest::Method::GET,
            &format!("/v1/runs/{run_id}"),
            None,
        )
        .await;
        if matches!(
            r["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return r;
        }
        assert!(Instant::now() < deadline, "the run never ended: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(base: &str, key: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Issue 16: clicking a DAG node opens the step: input, output, status, timing, every
/// attempt with its error and reason, the stderr tail; a fan-out's items as a table, failed
/// first, each openable; and the run's events as a timeline filtered by kind and step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_drill_down_and_history_in_headless_chromium() {
    let Some(binary) = need_chromium() else {
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let failed_id = post_run(&base, &key, json!({"template": "fails"})).await;
    let fan_id = post_run(&base, &key, json!({"template": "fanout"})).await;
    wait_ended(&base, &key, &failed_id).await;
    let fan = wait_ended(&base, &key, &fan_id).await;
    assert_eq!(fan["steps"][0]["items_failed"], 1, "{fan}");

    // The API behind it is the tenant's own: another tenant sees no such step.
    assert_eq!(
        status_of(&base, &srv.key_b, &format!("/v1/runs/{fan_id}/steps/each")).await,
        404
    );
    assert_eq!(
        status_of(
            &base,
            &srv.key_b,
            &format!("/v1/runs/{fan_id}/steps/each/items/2")
        )
        .await,
        404
    );
    assert_eq!(
        status_of(&base, &srv.key_b, &format!("/v1/runs/{fan_id}/history")).await,
        404
    );
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/runs/{id}/steps/{step}",
        "/v1/runs/{id}/steps/{step}/items/{item}",
        "/v1/runs/{id}/history",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }

    let mut b = Browser::launch(&binary).await;
    b.sign_in(&base, &key).await;
    b.wait_for("!document.querySelector('#nav').hidden", 10)
        .await;

    // A failed command step: click its node.
    b.eval(&format!("location.hash = '#/runs/{failed_id}'; true"))
        .await;
    b.wait_for(
        "!!document.querySelector('.node[data-step=\"explode\"]')",
        10,
    )
    .await;
    b.eval("document.querySelector('.node[data-step=\"explode\"]').click(); true")
        .await;
    b.wait_for(
        &format!("location.hash === '#/runs/{failed_id}/steps/explode'"),
        10,
    )
    .await;
    let panel = b
        .wait_for(
            "(() => { const p = document.querySelector('.step-detail[data-step=\"explode\"]'); return p && p.innerText; })()",
            10,
        )
        .await;
    let panel = panel.as_str().unwrap_or_default().to_string();
    assert!(panel.contains("Step explode"), "{panel}");
    assert_eq!(
        b.eval("document.querySelector('.step-detail pre.stderr').textContent")
            .await,
        json!("the widget exploded: code 42"),
        "the stderr tail"
    );
    assert!(
        b.eval("document.querySelector('.step-detail pre.input').textContent")
            .await
            .as_str()
            .unwrap_or_default()
            .contains("argv"),
        "the rendered input"
    );
    let attempts = b
        .eval("Array.from(document.querySelectorAll('.step-detail table.attempts tbody tr')).map(r => r.innerText.replace(/\\s+/g, ' ').trim())")
        .await;
    let attempts = attempts.as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let first = attempts[0].as_str().unwrap_or_default();
    assert!(
        first.starts_with("1 failed error") && first.contains("exploded"),
        "{first}"
    );
    b.screenshot("step-failed").await;

    // A fan-out: its items, failed first; open the failed one.
    b.eval(&format!("location.hash = '#/runs/{fan_id}'; true"))
        .await;
    b.wait_for("!!document.querySelector('.node[data-step=\"each\"]')", 10)
        .await;
    b.eval("document.querySelector('.node[data-step=\"each\"]').click(); true")
        .await;
    b.wait_for(
        "document.querySelectorAll('.step-detail table.items tbody tr').length === 5",
        10,
    )
    .await;
    let rows = b
        .eval("Array.from(document.querySelectorAll('.step-detail table.items tbody tr')).map(r => r.dataset.item + ':' + r.querySelector('.status').textContent)")
        .await;
    assert_eq!(
        rows,
        json!([
            "2:failed",
            "0:succeeded",
            "1:succeeded",
            "3:succeeded",
            "4:succeeded"
        ])
    );
    // Each item is shown by what sets it apart: the fruit, not the script they share.
    let items = b
        .eval("Array.from(document.querySelectorAll('.step-detail table.items tbody tr td:nth-child(2)')).map(c => c.textContent)")
        .await;
    assert_eq!(
        items,
        json!(["cherry", "apple", "banana", "damson", "elder"])
    );
    b.screenshot("step-fan-out").await;
    b.eval("document.querySelector('.step-detail table.items tbody tr[data-item=\"2\"] a').click(); true")
        .await;
    b.wait_for(
        &format!("location.hash === '#/runs/{fan_id}/steps/each/items/2'"),
        10,
    )
    .await;
    let item_attempts = b
        .wait_for(
            "(() => { const rows = document.querySelectorAll('.item-detail table.attempts tbody tr'); \
             return rows.length === 2 && Array.from(rows).map(r => r.innerText.replace(/\\s+/g, ' ').trim()); })()",
            10,
        )
        .await;
    let item_attempts: Vec<String> = item_attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        item_attempts[0].starts_with("1 retried error")
            && item_attempts[0].contains("cherry is rotten (attempt 1)"),
        "{item_attempts:?}"
    );
    assert!(
        item_attempts[1].starts_with("2 failed error")
            && item_attempts[1].contains("cherry is rotten (attempt 2)"),
        "{item_attempts:?}"
    );
    assert_eq!(
        b.eval("document.querySelector('.item-detail pre.stderr').textContent")
            .await,
        json!("cherry is rotten (attempt 2)")
    );
    b.eval("document.querySelector('.item-detail').scrollIntoView(); true")
        .await;
    b.screenshot("step-fan-out-item").await;

    // The history: every event, then only failures and retries, then one step's.
    let all = b
        .wait_for(
            "document.querySelectorAll('#timeline tbody tr.event').length",
            10,
        )
        .await;
    assert!(all.as_u64().unwrap_or(0) > 10, "{all}");
    b.eval(
        "(() => { const f = document.querySelector('#timeline-filter'); f.elements.kind.value = 'task.failed,task.retrying'; \
         f.dispatchEvent(new Event('change')); return true; })()",
    )
    .await;
    let kinds = b
        .wait_for(
            "(() => { const rows = Array.from(document.querySelectorAll('#timeline tbody tr.event')); \
             return rows.length === 2 && rows.map(r => r.dataset.kind + ' ' + r.cells[3].innerText); })()",
            10,
        )
        .await;
    assert_eq!(
        kinds,
        json!(["task.retrying each [2] #1", "task.failed each [2] #2"])
    );
    b.eval(
        "(() => { const f = document.querySelector('#timeline-filter'); f.elements.kind.value = ''; f.elements.step.value = 'count'; \
         f.dispatchEvent(new Event('change')); return true; })()",
    )
    .await;
    b.wait_for(
        "(() => { const rows = Array.from(document.querySelectorAll('#timeline tbody tr.event')); \
         return rows.length > 0 && rows.every(r => r.cells[3].innerText.startsWith('count')); })()",
        10,
    )
    .await;
    b.eval("document.querySelector('#timeline').scrollIntoView(); true")
        .await;
    b.screenshot("history").await;
    srv.stop().await;
}

/// Issue 16: the runs list filters by status, template and date, searches ids and input
/// values, shows the inputs, groups the runs another run started under it, and pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_filters_search_grouping_and_pages_in_headless_chromium() {
    let Some(binary) = need_chromium() else {
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let mut ids = Vec::new();
    for i in 0..52 {
        let who = if i == 7 {
            "Zenobia".to_string()
        } else {
            format!("guest{i}")
        };
        ids.push(
            post_run(
                &base,
                &key,
                json!({"template": "steps", "inputs": {"who": who, "pause": "1ms"}}),
            )
            .await,
        );
    }
    // These two start only after the one before ended: the newest, in this order.
    let failed = post_run(&base, &key, json!({"template": "fails"})).await;
    wait_ended(&base, &key, &failed).await;
    let parent = post_run(&base, &key, json!({"template": "fanout"})).await;
    wait_ended(&base, &key, &parent).await;
    let child = api(
        &base,
        &key,
        reqwest::Method::POST,
        &format!("/v1/runs/{parent}/actions/again"),
        Some(json!({})),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for id in ids.iter().chain([&child]) {
        wait_ended(&base, &key, id).await;
    }

    let mut b = Browser::launch(&binary).await;
    b.sign_in(&base, &key).await;
    let rows =
        "Array.from(document.querySelectorAll('#runs tbody tr[data-run]')).map(r => r.dataset.run)";
    // Grouped (the default): 54 top-level runs, 50 on the first page; the action's run is
    // not among them but under its parent.
    b.wait_for(
        &format!("{rows}.length === 50 && !document.querySelector('#runs-older').disabled"),
        15,
    )
    .await;
    let first: Vec<String> = serde_json::from_value(b.eval(rows).await).unwrap();
    assert!(!first.contains(&child), "the child is grouped, not listed");
    assert_eq!(first[0], parent, "newest first");
    assert!(
        b.eval(&format!(
            "document.querySelector('#runs tr[data-run=\"{parent}\"] .inputs-cell').textContent"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .contains("items=[\"apple\""),
        "an inputs column"
    );
    b.screenshot("runs-list").await;
    b.eval(&format!(
        "document.querySelector('#runs tr[data-run=\"{parent}\"] button.expand').click(); true"
    ))
    .await;
    b.wait_for(
        &format!("!!document.querySelector('#runs tr.child[data-run=\"{child}\"]')"),
        10,
    )
    .await;
    assert!(
        b.eval(&format!(
            "document.querySelector('#runs tr.child[data-run=\"{child}\"]').innerText"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .contains("action again")
    );
    b.screenshot("runs-grouped").await;

    // The next page holds the rest, and back.
    b.eval("document.querySelector('#runs-older').click(); true")
        .await;
    b.wait_for(&format!("{rows}.length === 4"), 10).await;
    let second: Vec<String> = serde_json::from_value(b.eval(rows).await).unwrap();
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "pages do not overlap"
    );
    assert_eq!(second.last(), Some(&ids[0]), "the oldest run is last");
    b.eval("document.querySelector('#runs-newer').click(); true")
        .await;
    b.wait_for(&format!("{rows}.length === 50"), 10).await;

    // Search an input value, then an id.
    let set = |name: &str, value: &str| {
        format!(
            "(() => {{ const f = document.querySelector('#runs-filter'); const e = f.elements[{}]; \
             if (e.type === 'checkbox') e.checked = {}; else e.value = {}; \
             f.dispatchEvent(new Event('input')); return true; }})()",
            json!(name),
            value == "true",
            json!(value)
        )
    };
    // The list shows exactly this one run.
    let only = |id: &str| format!("{rows}.length === 1 && {rows}[0] === '{id}'");
    b.eval(&set("search", "zenob")).await;
    b.wait_for(&only(&ids[7]), 10).await;
    b.screenshot("runs-search").await;
    b.eval(&set("search", &child[..child.len() - 3])).await;
    b.eval(&set("roots", "false")).await;
    b.wait_for(&only(&child), 10).await;
    // Status and template.
    b.eval(&set("search", "")).await;
    b.eval(&set("status", "failed")).await;
    b.wait_for(&only(&failed), 10).await;
    b.eval(&set("status", "")).await;
    b.eval(&set("template", "fanout")).await;
    b.wait_for(&only(&parent), 10).await;
    // Dates: everything is from today (UTC); nothing from tomorrow on.
    b.eval(&set("template", "")).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    b.eval(&set("since", &tomorrow)).await;
    b.wait_for(
        "document.querySelector('#runs tbody').innerText.includes('No runs match')",
        10,
    )
    .await;
    b.eval(&set("since", &today)).await;
    b.eval(&set("until", &today)).await;
    b.wait_for(&format!("{rows}.length === 50"), 10).await;
    srv.stop().await;
}

/// Issue 16: a cancelled run offers Resume, and the page follows the resumed run live to its
/// new end; "Run again with the same inputs" starts a new run with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_and_run_again_in_headless_chromium() {
    let Some(binary) = need_chromium() else {
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let run_id = post_run(
        &base,
        &key,
        json!({"template": "steps", "inputs": {"who": "Resumed", "pause": "2s"}}),
    )
    .await;
    api(
        &base,
        &key,
        reqwest::Method::POST,
        &format!("/v1/runs/{run_id}/cancel"),
        None,
    )
    .await;
    assert_eq!(
        wait_ended(&base, &key, &run_id).await["status"],
        "cancelled"
    );

    let mut b = Browser::launch(&binary).await;
    b.sign_in(&base, &key).await;
    b.wait_for("!document.querySelector('#nav').hidden", 10)
        .await;
    b.eval(&format!("location.hash = '#/runs/{run_id}'; true"))
        .await;
    b.wait_for("!!document.querySelector('#resume')", 10).await;
    b.screenshot("run-cancelled").await;
    b.eval("window.__sameDocument = 1; document.querySelector('#resume').click(); true")
        .await;
    b.wait_for(
        "document.querySelector('#run-status') && document.querySelector('#run-status').innerText === 'running'",
        10,
    )
    .await;
    b.wait_for(
        "document.querySelector('#run-status') && document.querySelector('#run-status').innerText === 'succeeded'",
        30,
    )
    .await;
    let output = b
        .wait_for(
            "document.querySelector('#run-output .output h1') && document.querySelector('#run-output .output h1').textContent",
            10,
        )
        .await;
    assert_eq!(output, json!("Hello, Resumed!"));
    assert_eq!(
        b.eval("window.__sameDocument").await,
        json!(1),
        "followed live"
    );
    assert_eq!(
        b.eval(&format!("location.hash === '#/runs/{run_id}'"))
            .await,
        json!(true)
    );
    b.eval("document.querySelector('#run-again').click(); true")
        .await;
    let hash = b
        .wait_for(
            &format!("location.hash.startsWith('#/runs/run_') && location.hash !== '#/runs/{run_id}' && location.hash"),
            10,
        )
        .await;
    let again = hash
        .as_str()
        .unwrap()
        .trim_start_matches("#/runs/")
        .to_string();
    let again = wait_ended(&base, &key, &again).await;
    assert_eq!(again["inputs"], json!({"who": "Resumed", "pause": "2s"}));
    assert_eq!(again["status"], "succeeded");
    srv.stop().await;
}

/// Issue 16: markdown is rendered by a library and sanitized: a scraped page's `<script>`,
/// `onerror` and `javascript:` never run, in the UI or the widget; an input's error shows at
/// its field; the widget shows an approval's prompt, decides through the page's backend, and
/// shows the run's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanitized_markdown_field_errors_and_the_widgets_approval_in_headless_chromium() {
    let Some(binary) = need_chromium() else {
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    // What a scraper might bring back from a hostile page.
    register(
        &base,
        &key,
        r##"name: scraped
version: 1
inputs:
  count: { type: integer, default: 1, minimum: 1, description: How many }
steps:
  - id: page
    tool: transform
    with:
      data: {}
      jq: |
        "# Scraped\n\nHello <script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\"> [link](javascript:window.__pwned=3) <a href=\"javascript:window.__pwned=4\" id=\"bad\">bad</a>"
output: "{{ steps.page.output }}"
"##,
    )
    .await;
    register(
        &base,
        &key,
        "name: signoff\nversion: 1\n\
         steps:\n  - id: ok\n    approval: { prompt: \"Publish the report?\" }\n\
         \x20 - id: report\n    tool: render\n    needs: [ok]\n    with: { template: \"# Published\\n\\nApproved by {{ steps.ok.output.by }}\" }\n\
         output: \"{{ steps.report.output }}\"\n",
    )
    .await;

    let mut b = Browser::launch(&binary).await;
    b.sign_in(&base, &key).await;
    b.wait_for("!document.querySelector('#nav').hidden", 10)
        .await;
    // An input's error at its field.
    b.eval("location.hash = '#/templates/scraped'; true").await;
    b.wait_for("!!document.querySelector('#input-count')", 10)
        .await;
    b.eval(
        "document.querySelector('#input-count').value = '0'; document.querySelector('#run-form').requestSubmit(); true",
    )
    .await;
    let error = b
        .wait_for(
            "(() => { const e = document.querySelector('#input-count + .field-error'); return e && e.textContent; })()",
            10,
        )
        .await;
    assert!(
        error
            .as_str()
            .unwrap_or_default()
            .contains("below its minimum 1"),
        "{error}"
    );
    assert_eq!(
        b.eval("document.querySelector('#input-count').getAttribute('aria-invalid')")
            .await,
        json!("true")
    );
    b.screenshot("form-field-error").await;
    b.eval(
        "document.querySelector('#input-count').value = '2'; document.querySelector('#run-form').requestSubmit(); true",
    )
    .await;
    b.wait_for("location.hash.startsWith('#/runs/run_')", 10)
        .await;
    let heading = b
        .wait_for(
            "document.querySelector('#run-output .output h1') && document.querySelector('#run-output .output h1').textContent",
            15,
        )
        .await;
    assert_eq!(heading, json!("Scraped"));
    let output = b
        .eval("document.querySelector('#run-output .output').innerHTML")
        .await;
    let html = output.as_str().unwrap_or_default();
    for bad in ["<script", "onerror", "javascript:"] {
        assert!(!html.contains(bad), "{bad} in {html}");
    }
    // Clicking what is left of the links runs nothing either.
    b.eval("document.querySelectorAll('#run-output .output a').forEach(a => a.click()); true")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.eval("window.__pwned === undefined").await,
        json!(true),
        "no script ran"
    );
    b.screenshot("markdown-sanitized").await;

    // The widget on another page: the approval's prompt, a decision through the page's
    // backend (which holds the API key), and the output at the end.
    let run_id = post_run(&base, &key, json!({"template": "signoff"})).await;
    let ticket = api(
        &base,
        &key,
        reqwest::Method::POST,
        &format!("/v1/runs/{run_id}/stream-tickets"),
        None,
    )
    .await;
    let page = format!(
        "<!doctype html><html><head><script src=\"{base}/weft-run.js\"></script></head>\
         <body><weft-run id=\"w\" src=\"{base}/v1/runs/{run_id}\" ticket=\"{}\" decide-url=\"/decide\"></weft-run></body></html>",
        ticket["ticket"].as_str().unwrap()
    );
    let decided = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let (fwd_base, fwd_key, fwd_run, seen) =
        (base.clone(), key.clone(), run_id.clone(), decided.clone());
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        )
        .route(
            "/decide",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (base, key, run, seen) = (
                    fwd_base.clone(),
                    fwd_key.clone(),
                    fwd_run.clone(),
                    seen.clone(),
                );
                async move {
                    seen.lock().unwrap().push(body.clone());
                    let step = body["step"].as_str().unwrap_or_default().to_string();
                    let r = api(
                        &base,
                        &key,
                        reqwest::Method::POST,
                        &format!("/v1/runs/{run}/approvals/{step}"),
                        Some(json!({"decision": body["decision"]})),
                    )
                    .await;
                    axum::Json(r)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}/", listener.local_addr().unwrap());
    let app_server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    b.goto(&app_url).await;
    let prompt = b
        .wait_for(
            "(() => { const w = document.querySelector('#w'); const p = w && w.shadowRoot && w.shadowRoot.querySelector('.approval .prompt'); \
             return p && w.getAttribute('status') === 'waiting' && p.textContent; })()",
            15,
        )
        .await;
    assert_eq!(prompt, json!("Publish the report?"));
    b.screenshot("widget-approval").await;
    b.eval("document.querySelector('#w').shadowRoot.querySelector('.approval button.approve').click(); true")
        .await;
    let end = b
        .wait_for(
            "(() => { const w = document.querySelector('#w'); const h = w.shadowRoot.querySelector('.output h1'); \
             return w.getAttribute('status') === 'succeeded' && h && h.textContent; })()",
            20,
        )
        .await;
    assert_eq!(end, json!("Published"));
    assert!(
        b.eval("document.querySelector('#w').shadowRoot.querySelector('.approval .decided').textContent")
            .await
            .as_str()
            .unwrap_or_default()
            .starts_with("✓ Approved by key_"),
        "the decision stays shown"
    );
    assert_eq!(decided.lock().unwrap()[0]["decision"], "approve");
    b.screenshot("widget-output").await;
    app_server.abort();
    srv.stop().await;
}

/// Issue 16: a widget whose stream breaks (a restarted server leaves it a used ticket) asks
/// its `ticket-url` again with backoff until one works, and then shows the run to its end,
/// instead of staying on "the progress stream was interrupted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_retries_its_ticket_url_until_the_stream_is_back_in_headless_chromium() {
    let Some(binary) = need_chromium() else {
        return;
    };
    let srv = serve(harness(ServerOptions::default()).await).await;
    let base = srv.base.clone();
    let key = srv.key_a.clone();
    let run_id = post_run(
        &base,
        &key,
        json!({"template": "steps", "inputs": {"who": "Again", "pause": "1ms"}}),
    )
    .await;
    wait_ended(&base, &key, &run_id).await;
    // The page's ticket was used already: its stream is refused, as after a restart.
    let used = api(
        &base,
        &key,
        reqwest::Method::POST,
        &format!("/v1/runs/{run_id}/stream-tickets"),
        None,
    )
    .await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let spent = reqwest::get(format!("{base}/v1/runs/{run_id}/events?ticket={used}"))
        .await
        .unwrap();
    assert_eq!(spent.status(), 200);
    let _ = spent.text().await;
    let page = format!(
        "<!doctype html><html><head><script src=\"{base}/weft-run.js\"></script></head>\
         <body><weft-run id=\"w\" src=\"{base}/v1/runs/{run_id}\" ticket=\"{used}\" ticket-url=\"/ticket\"></weft-run></body></html>"
    );
    // The backend's ticket route fails twice (the server is still down), then mints one.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mint_base, mint_key, mint_run, count) =
        (base.clone(), key.clone(), run_id.clone(), asked.clone());
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        )
        .route(
            "/ticket",
            axum::routing::post(move || {
                let (base, key, run, count) = (
                    mint_base.clone(),
                    mint_key.clone(),
                    mint_run.clone(),
                    count.clone(),
                );
                async move {
                    if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                        return Err(axum::http::StatusCode::BAD_GATEWAY);
                    }
                    let t = api(
                        &base,
                        &key,
                        reqwest::Method::POST,
                        &format!("/v1/runs/{run}/stream-tickets"),
                        None,
                    )
                    .await;
                    Ok(axum::Json(t))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}/", listener.local_addr().unwrap());
    let app_server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut b = Browser::launch(&binary).await;
    b.goto(&app_url).await;
    let end = b
        .wait_for(
            "(() => { const w = document.querySelector('#w'); const h = w && w.shadowRoot && w.shadowRoot.querySelector('.output h1'); \
             return w.getAttribute('status') === 'succeeded' && h && h.textContent; })()",
            20,
        )
        .await;
    assert_eq!(end, json!("Hello, Again!"));
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two refusals, then a ticket"
    );
    assert!(
        !b.eval("document.querySelector('#w').shadowRoot.textContent")
            .await
            .as_str()
            .unwrap_or_default()
            .contains("interrupted")
    );
    b.screenshot("widget-reconnected").await;
    app_server.abort();
    srv.stop().await;
}
