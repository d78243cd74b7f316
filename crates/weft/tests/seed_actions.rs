//! Issue 16: state-discovery's follow-ups are real `actions:` — `filter` (a transform over
//! review count and rating), `enrich` (owner and contacts read from each website with the
//! `http` tool) and `outreach` (an `llm.chat` draft per business, each approved before it
//! counts as sent) — started from the CLI (`weft runs action`) and the API (`POST
//! /v1/runs/{id}/actions/{name}`), against the places and OpenAI stand-ins in tests/standins
//! and a local website.

mod common;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PLACES_KEY: &str = "places-test-key";
const LLM_KEY: &str = "llm-test-key";

/// A stand-in from tests/standins, killed on drop.
struct StandIn {
    child: Child,
    port: String,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    fn start(script: &str, key: &str) -> StandIn {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/standins")
            .join(script);
        let mut child = Command::new("python3")
            .arg(script)
            .arg(key)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the stand-in prints its port");
        StandIn {
            child,
            port: line.trim().to_string(),
        }
    }
}

/// A business's website with its owner, e-mail addresses and a `tel:` link; its URL.
fn website() -> String {
    let page = "<html><head><title>Acme HVAC</title></head><body><h1>Acme HVAC</h1>\
        <p>Family run since 1990. Owner: Jane Doe</p>\
        <p>Write to <a href=\"mailto:jane@acme-hvac.test\">jane@acme-hvac.test</a> or \
        office@acme-hvac.test, or call <a href=\"tel:+1-303-555-0199\">303 555 0199</a>.</p>\
        </body></html>";
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}

fn workdir(places: &StandIn, llm: &StandIn) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("weft.toml"),
        format!(
            "[places]\nprovider = \"google\"\ngoogle_url = \"http://127.0.0.1:{}\"\n\
             api_key_env = \"WEFT_TEST_PLACES_KEY\"\n\n\
             [http]\nallow = [\"127.0.0.1\"]\n\n\
             [llm.standin]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n\
             model = \"standin-large\"\napi_key_env = \"WEFT_TEST_LLM_KEY\"\n",
            places.port, llm.port
        ),
    )
    .expect("write weft.toml");
    dir
}

fn weft(dir: &Path) -> Command {
    let mut cmd = common::weft(dir);
    cmd.env("WEFT_TEST_PLACES_KEY", PLACES_KEY)
        .env("WEFT_TEST_LLM_KEY", LLM_KEY);
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    weft(dir).args(args).output().expect("weft runs")
}

/// `weft --json ARGS` that must succeed: its JSON.
fn json_of(dir: &Path, args: &[&str]) -> Value {
    let out = weft(dir).arg("--json").args(args).output().expect("weft");
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "weft {args:?}: {stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id}: {run}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// An API call with the admin key: (status, JSON body).
fn api(addr: &str, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let text = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

/// Polls `GET /v1/runs/{id}` until the run is `status` (or a minute passes).
fn await_status(addr: &str, key: &str, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, run) = api(addr, key, "GET", &format!("/v1/runs/{id}"), None);
        assert_eq!(code, 200, "{run}");
        if run["status"] == status {
            return run;
        }
        assert!(
            Instant::now() < deadline
                && !["failed", "cancelled"].contains(&run["status"].as_str().unwrap_or_default()),
            "run {id} never became {status}: {run}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn state_discovery_actions_filter_enrich_and_draft_approved_outreach() {
    let places = StandIn::start("places_standin.py", PLACES_KEY);
    let llm = StandIn::start("openai_standin.py", LLM_KEY);
    let dir = workdir(&places, &llm);
    let site = website();

    // Denver: 12 made-up businesses and the statewide chain. The website checks run by
    // default now (the stand-in's sites do not exist, so none can be checked).
    let seed = json_of(
        dir.path(),
        &[
            "run",
            "state-discovery",
            "-i",
            "niche=HVAC",
            "-i",
            "state=CO",
            "-i",
            "limit=1",
        ],
    );
    let seed_id = seed["id"].as_str().expect("run id").to_string();
    let summary = seed["output"].as_str().expect("markdown");
    assert!(summary.contains("- Websites checked: 0 of 9"), "{summary}");
    assert!(
        summary.contains(&format!("`weft runs action {seed_id} filter")),
        "{summary}"
    );

    // filter from the CLI: 100+ reviews leaves the chain (999), #11 (110) and #10 (100).
    let filtered = json_of(
        dir.path(),
        &[
            "runs",
            "action",
            &seed_id,
            "filter",
            "-i",
            "min_reviews=100",
        ],
    );
    assert_eq!(filtered["status"], "succeeded", "{filtered}");
    assert_eq!(filtered["parent"]["run_id"], seed_id.as_str());
    assert_eq!(filtered["parent"]["action"], "filter");
    assert_eq!(
        names(&step(&filtered, "filter")["output"]),
        ["Statewide HVAC", "Denver HVAC #11", "Denver HVAC #10"]
    );
    let text = filtered["output"].as_str().expect("markdown");
    assert!(
        text.contains("## 3 of 13 businesses with 100+ reviews"),
        "{text}"
    );
    // A rating too: of those, only the chain has 4.5.
    let rated = json_of(
        dir.path(),
        &[
            "runs",
            "action",
            &seed_id,
            "filter",
            "-i",
            "min_reviews=100",
            "-i",
            "min_rating=4",
        ],
    );
    assert_eq!(names(&step(&rated, "filter")["output"]), ["Statewide HVAC"]);
    // An input the action does not take is refused, naming the ones it does.
    let out = run(
        dir.path(),
        &["runs", "action", &seed_id, "filter", "-i", "niche=x"],
    );
    let (_, stderr) = common::text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown input `niche`") && stderr.contains("min_reviews"),
        "{stderr}"
    );

    // enrich from the CLI: a business whose website answers gets its owner and contacts; one
    // without a website keeps the phone the places provider gave.
    let businesses = json!([
        {"place_id": "google:acme", "name": "Acme HVAC", "city": "Denver", "website": site, "reviews": 120},
        {"place_id": "google:nosite", "name": "No Site HVAC", "city": "Denver", "phone": "(303) 555-0100"}
    ]);
    let enriched = json_of(
        dir.path(),
        &[
            "runs",
            "action",
            &seed_id,
            "enrich",
            "-i",
            &format!("businesses={businesses}"),
        ],
    );
    assert_eq!(enriched["status"], "succeeded", "{enriched}");
    let list = &step(&enriched, "enriched")["output"];
    assert_eq!(
        list[0]["contact"],
        json!({"checked": true, "owner": "Jane Doe",
               "emails": ["jane@acme-hvac.test", "office@acme-hvac.test"],
               "phones": ["+1-303-555-0199"]}),
        "{list}"
    );
    assert_eq!(list[1]["contact"]["checked"], false, "{list}");
    assert_eq!(list[1]["contact"]["phones"], json!(["(303) 555-0100"]));
    let text = enriched["output"].as_str().expect("markdown");
    assert!(
        text.contains("| Acme HVAC | Jane Doe | jane@acme-hvac.test, office@acme-hvac.test |"),
        "{text}"
    );

    // outreach, chained from the enriched run: one draft per business, and nothing counts
    // as sent until a person approves it.
    let out = run(
        dir.path(),
        &[
            "runs",
            "action",
            enriched["id"].as_str().expect("id"),
            "outreach",
            "-i",
            "offer=a booking page",
            "--detach",
        ],
    );
    let (stdout, stderr) = common::text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let outreach_id = stdout.trim().to_string();
    // `weft runs resume` drafts, then keeps waiting for the decisions, as `weft run` does.
    let mut waiter = weft(dir.path())
        .args(["runs", "resume", &outreach_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft runs resume");
    let deadline = Instant::now() + Duration::from_secs(60);
    while json_of(dir.path(), &["runs", "show", &outreach_id])["status"] != "waiting" {
        assert!(
            Instant::now() < deadline,
            "outreach never waited for approval"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let waiting = json_of(dir.path(), &["runs", "show", &outreach_id]);
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    let letters = &step(&waiting, "letters")["output"];
    assert_eq!(letters[0]["to"], "jane@acme-hvac.test", "{letters}");
    let email = letters[0]["email"].as_str().expect("a draft");
    assert!(
        email.starts_with("Subject: A quick idea for Acme HVAC")
            && email.contains("Hello Jane Doe")
            && email.contains("a booking page"),
        "{email}"
    );
    assert_eq!(letters[1]["to"], Value::Null);
    assert_eq!(step(&waiting, "summary")["status"], "pending");
    let out = run(
        dir.path(),
        &["runs", "approve", &outreach_id, "review", "--item", "0"],
    );
    assert!(out.status.success(), "{:?}", common::text(&out));
    let out = run(
        dir.path(),
        &[
            "runs",
            "approve",
            &outreach_id,
            "review",
            "--item",
            "1",
            "--reject",
            "--comment",
            "no address",
        ],
    );
    assert!(out.status.success(), "{:?}", common::text(&out));
    let mut said = String::new();
    waiter
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut said)
        .expect("its output");
    assert!(waiter.wait().expect("weft exits").success(), "{said}");
    assert!(said.contains("## Outreach: 1 of 2"), "{said}");
    let done = json_of(dir.path(), &["runs", "show", &outreach_id]);
    assert_eq!(done["status"], "succeeded", "{done}");
    let approved = &step(&done, "approved")["output"];
    assert_eq!(approved[0]["approved"], true, "{approved}");
    assert_eq!(approved[1]["approved"], false, "{approved}");
    let text = done["output"].as_str().expect("markdown");
    assert!(
        text.contains("## Outreach: 1 of 2 emails approved to send"),
        "{text}"
    );

    // The same actions through the API of `weft serve` on this folder's store.
    let log = dir.path().join("serve.log");
    let file = std::fs::File::create(&log).expect("log");
    let mut server = weft(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("weft serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = said.split("weft serving http://").nth(1) {
            break rest
                .split([' ', '/'])
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "weft serve never listened: {said}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let key = std::fs::read_to_string(dir.path().join(".weft/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();

    let (code, seed) = api(&addr, &key, "GET", &format!("/v1/runs/{seed_id}"), None);
    assert_eq!(code, 200, "{seed}");
    let offered: Vec<&str> = seed["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(offered, ["filter", "enrich", "outreach"], "{seed}");

    let (code, started) = api(
        &addr,
        &key,
        "POST",
        &format!("/v1/runs/{seed_id}/actions/filter"),
        Some(json!({"inputs": {"min_reviews": 100, "min_rating": 3.5}})),
    );
    assert_eq!(code, 201, "{started}");
    assert_eq!(started["parent"]["action"], "filter", "{started}");
    let filtered = await_status(
        &addr,
        &key,
        started["id"].as_str().expect("id"),
        "succeeded",
    );
    assert_eq!(
        names(&step(&filtered, "filter")["output"]),
        ["Statewide HVAC", "Denver HVAC #11"],
        "{filtered}"
    );

    let (code, started) = api(
        &addr,
        &key,
        "POST",
        &format!("/v1/runs/{seed_id}/actions/enrich"),
        Some(json!({"inputs": {"businesses": businesses}})),
    );
    assert_eq!(code, 201, "{started}");
    let enriched = await_status(
        &addr,
        &key,
        started["id"].as_str().expect("id"),
        "succeeded",
    );
    assert_eq!(
        step(&enriched, "enriched")["output"][0]["contact"]["owner"],
        "Jane Doe",
        "{enriched}"
    );

    // outreach from the filtered run (two businesses): both drafts wait for a decision.
    let (code, started) = api(
        &addr,
        &key,
        "POST",
        &format!(
            "/v1/runs/{}/actions/outreach",
            filtered["id"].as_str().expect("id")
        ),
        Some(json!({})),
    );
    assert_eq!(code, 201, "{started}");
    let id = started["id"].as_str().expect("id").to_string();
    let waiting = await_status(&addr, &key, &id, "waiting");
    assert_eq!(step(&waiting, "draft")["items_done"], 2, "{waiting}");
    for item in 0..2 {
        let (code, body) = api(
            &addr,
            &key,
            "POST",
            &format!("/v1/runs/{id}/approvals/review"),
            Some(json!({"decision": "approve", "item": item})),
        );
        assert!(code < 300, "{code} {body}");
    }
    let done = await_status(&addr, &key, &id, "succeeded");
    let text = done["output"].as_str().expect("markdown");
    assert!(
        text.contains("## Outreach: 2 of 2 emails approved to send")
            && text.contains("### Statewide HVAC: approved")
            && text.contains("Subject: A quick idea for Denver HVAC #11"),
        "{text}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
