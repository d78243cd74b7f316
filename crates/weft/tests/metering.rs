//! Metering, budgets and quotas as a user meets them, with `llm.chat` talking to the
//! OpenAI-compatible stand-in (tests/standins/openai_standin.py, which reports usage the way
//! the real API does): a run's token and cost totals in `weft run --json`, `weft runs show`
//! and the API; `weft usage` and `GET /v1/usage` grouped by day, template and run; a budget
//! that fails the run with `budget_exceeded` and cancels its running tasks; the runs-per-hour
//! quota answering 429 with `Retry-After`, and holding for the CLI too.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weft_store::Store as _;

const LLM_KEY: &str = "sk-standin-metering-7f3e";
/// Dollars per million tokens in weft.toml's price table.
const PROMPT_PRICE: f64 = 1000.0;
const COMPLETION_PRICE: f64 = 2000.0;

/// The stand-in LLM provider on a free port, stopped on drop.
struct StandIn {
    child: Child,
    port: u16,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    fn start() -> StandIn {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/standins/openai_standin.py");
        let mut child = Command::new("python3")
            .arg(path)
            .arg(LLM_KEY)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the stand-in prints its port");
        let port = line.trim().parse().expect("a port number");
        StandIn { child, port }
    }

    /// How many chat completions the stand-in answered.
    fn calls(&self) -> u64 {
        let (status, _, body) = http(
            &format!("127.0.0.1:{}", self.port),
            "GET",
            "/stats",
            None,
            None,
        );
        assert_eq!(status, 200, "{body}");
        let stats: Value = serde_json::from_str(&body).expect("stats are JSON");
        stats["calls"].as_u64().expect("calls")
    }
}

const TWO_CALLS: &str = r#"
name: two-calls
steps:
  - id: first
    tool: llm.chat
    with: { prompt: "Name three rivers of Oregon" }
  - id: second
    tool: llm.chat
    with: { prompt: "And two lakes" }
"#;

const ONE_CALL: &str = r#"
name: one-call
steps:
  - id: only
    tool: llm.chat
    with: { prompt: "Just one question" }
"#;

/// A slow step runs beside the LLM calls (`needs: []`: not after it), so a budget crossed by
/// `ask` finds it running.
const OVER_BUDGET: &str = r#"
name: over-budget
steps:
  - id: slow
    tool: sleep
    with: { duration: 10m }
  - id: ask
    needs: []
    tool: llm.chat
    with: { prompt: "Write a long essay" }
  - id: after
    needs: [ask]
    tool: llm.chat
    with: { prompt: "Now another one" }
"#;

const BUDGETED: &str = r#"
name: budgeted
budget:
  max_llm_tokens: 5
steps:
  - id: slow
    tool: sleep
    with: { duration: 10m }
  - id: ask
    needs: []
    tool: llm.chat
    with: { prompt: "Write a long essay" }
"#;

const BAD_BUDGET: &str = r#"name: bad-budget
budget:
  max_llm_tokens: 0
  max_cost_usd: -1
  max_minutes: 3
steps:
  - id: a
    tool: sleep
    with: { duration: 1ms }
"#;

fn workdir(llm: &StandIn) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "[llm.standin]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n\
         model = \"standin-large\"\napi_key_env = \"WEFT_TEST_LLM_KEY\"\n\n\
         [llm.standin.prices]\nstandin-large = {{ prompt = {PROMPT_PRICE:.1}, completion = {COMPLETION_PRICE:.1} }}\n",
        llm.port
    );
    std::fs::write(dir.path().join("weft.toml"), toml).expect("write weft.toml");
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).expect("templates dir");
    for (name, text) in [
        ("two-calls", TWO_CALLS),
        ("one-call", ONE_CALL),
        ("over-budget", OVER_BUDGET),
        ("budgeted", BUDGETED),
    ] {
        std::fs::write(templates.join(format!("{name}.yaml")), text).expect("write template");
    }
    std::fs::write(dir.path().join("bad-budget.yaml"), BAD_BUDGET).expect("write template");
    dir
}

fn weft_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env("WEFT_TEST_LLM_KEY", LLM_KEY)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG");
    cmd
}

fn weft(dir: &Path, args: &[&str]) -> Output {
    weft_cmd(dir).args(args).output().expect("weft runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What each `llm.chat` step reported in its own output, summed: (prompt, completion, cost).
fn reported(run: &Value) -> (u64, u64, f64) {
    let mut sum = (0, 0, 0.0);
    for step in run["steps"].as_array().expect("steps") {
        let usage = &step["output"]["usage"];
        if usage.is_object() {
            sum.0 += usage["prompt_tokens"].as_u64().expect("prompt_tokens");
            sum.1 += usage["completion_tokens"]
                .as_u64()
                .expect("completion_tokens");
            sum.2 += usage["cost_usd"].as_f64().expect("cost_usd");
        }
    }
    sum
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_run_sums_its_llm_usage_and_weft_usage_groups_it() {
    let llm = StandIn::start();
    let dir = workdir(&llm);

    let out = weft(dir.path(), &["--json", "run", "two-calls"]);
    assert!(out.status.success(), "{out:?}");
    let run = json_of(&out);
    let (prompt, completion, cost) = reported(&run);
    assert!(prompt > 0 && completion > 0, "{run}");
    let usage = &run["usage"];
    assert_eq!(usage["llm_prompt_tokens"], prompt, "{usage}");
    assert_eq!(usage["llm_completion_tokens"], completion, "{usage}");
    let expected_cost = (prompt as f64 * PROMPT_PRICE + completion as f64 * COMPLETION_PRICE) / 1e6;
    assert!(close(cost, expected_cost), "{cost} vs {expected_cost}");
    assert!(
        close(usage["cost_usd"].as_f64().expect("cost"), expected_cost),
        "{usage}"
    );
    assert_eq!(usage["tool_calls"], 2);
    assert_eq!(usage["cache_hits"], 0);
    let id = run["id"].as_str().expect("id").to_string();

    let show = weft(dir.path(), &["runs", "show", &id]);
    assert!(show.status.success(), "{show:?}");
    let text = String::from_utf8_lossy(&show.stdout);
    let line = format!(
        "usage     {} LLM tokens ({prompt} prompt, {completion} completion), ${expected_cost:.6} estimated, 2 tool calls, 0 cache hits",
        prompt + completion
    );
    assert!(text.contains(&line), "{text}\nwanted: {line}");
    let shown = json_of(&weft(dir.path(), &["--json", "runs", "show", &id]));
    assert_eq!(shown["usage"], run["usage"]);

    // Two more runs: the same template again, and another one.
    let again = json_of(&weft(dir.path(), &["--json", "run", "two-calls"]));
    assert_eq!(
        again["usage"]["llm_prompt_tokens"], prompt,
        "the same prompts"
    );
    let one = json_of(&weft(dir.path(), &["--json", "run", "one-call"]));
    let (one_prompt, one_completion, _) = reported(&one);
    assert_eq!(llm.calls(), 5, "every call reached the provider once");

    let by_template = json_of(&weft(dir.path(), &["--json", "usage", "--by", "template"]));
    let rows: Vec<(String, u64, u64, u64, u64)> = by_template
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("key").to_string(),
                r["runs"].as_u64().expect("runs"),
                r["llm_prompt_tokens"].as_u64().expect("prompt"),
                r["llm_completion_tokens"].as_u64().expect("completion"),
                r["tool_calls"].as_u64().expect("tool calls"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("one-call".to_string(), 1, one_prompt, one_completion, 1),
            ("two-calls".to_string(), 2, 2 * prompt, 2 * completion, 4),
        ]
    );

    let by_run = json_of(&weft(dir.path(), &["--json", "usage", "--by", "run"]));
    let runs: Vec<(&str, &str, u64)> = by_run
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("key"),
                r["template"].as_str().expect("template"),
                r["llm_prompt_tokens"].as_u64().expect("prompt"),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            (one["id"].as_str().expect("id"), "one-call", one_prompt),
            (again["id"].as_str().expect("id"), "two-calls", prompt),
            (id.as_str(), "two-calls", prompt),
        ],
        "newest first"
    );

    let by_day = json_of(&weft(dir.path(), &["--json", "usage", "--since", "24h"]));
    let day = &by_day.as_array().expect("rows")[..];
    assert_eq!(day.len(), 1, "{by_day}");
    assert_eq!(day[0]["runs"], 3);
    assert_eq!(day[0]["llm_prompt_tokens"], 2 * prompt + one_prompt);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let key = day[0]["key"].as_str().expect("key");
    assert!(key == today || key == yesterday, "{key}");

    let future = json_of(&weft(
        dir.path(),
        &["--json", "usage", "--since", "2999-01-01"],
    ));
    assert_eq!(future, json!([]));
    let table = weft(dir.path(), &["usage", "--by", "template"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("two-calls") && table.contains("PROMPT TOK"),
        "{table}"
    );
    let bad = weft(dir.path(), &["usage", "--by", "week"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let bad = weft(dir.path(), &["usage", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

/// The run's tasks as the store has them, and its event kinds.
fn store_view(dir: &Path, run_id: &str) -> (Vec<weft_store::Task>, Vec<String>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = weft_store::SqlStore::sqlite(
            &dir.join(".weft/weft.db"),
            weft_store::sqlite::Durability::Full,
        )
        .await
        .expect("open the store");
        let tasks = store.tasks(run_id).await.expect("tasks");
        let events = store.events(run_id, 0, 10_000).await.expect("events");
        let kinds = events
            .iter()
            .map(|e| format!("{}:{}", e.kind, e.step_id.as_deref().unwrap_or("")))
            .collect();
        (tasks, kinds)
    })
}

#[test]
fn a_budget_fails_the_run_with_budget_exceeded_and_cancels_its_running_tasks() {
    let llm = StandIn::start();
    let dir = workdir(&llm);

    let out = weft(
        dir.path(),
        &["--json", "run", "over-budget", "--budget-llm-tokens", "5"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let run = json_of(&out);
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().expect("error");
    assert!(
        error.starts_with("budget_exceeded: the run used ")
            && error.ends_with("its budget allows 5"),
        "{error}"
    );
    assert_eq!(run["budget"], json!({"max_llm_tokens": 5}));
    let used = |kind: &str| run["usage"][kind].as_u64().expect("tokens");
    assert!(used("llm_prompt_tokens") + used("llm_completion_tokens") > 5);
    let status = |id: &str| {
        run["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].clone())
            .expect("step")
    };
    assert_eq!(status("ask"), "succeeded");
    assert_eq!(status("slow"), "cancelled");
    assert_eq!(status("after"), "cancelled");
    assert_eq!(
        llm.calls(),
        1,
        "nothing is called once the budget is crossed"
    );

    let id = run["id"].as_str().expect("id");
    let (tasks, events) = store_view(dir.path(), id);
    let slow = tasks
        .iter()
        .find(|t| t.step_id == "slow")
        .expect("slow task");
    assert_eq!(slow.status, weft_store::TaskStatus::Cancelled);
    assert!(
        events.iter().any(|e| e == "task.started:slow"),
        "the slow task was running when the budget was crossed: {events:?}"
    );
    let crossed = events
        .iter()
        .position(|e| e == "run.budget_exceeded:")
        .expect("a run.budget_exceeded event");
    assert_eq!(
        events[crossed + 1..].last().map(String::as_str),
        Some("run.failed:")
    );

    let show = weft(dir.path(), &["runs", "show", id]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("budget    max 5 LLM tokens"), "{text}");
    assert!(text.contains("error: budget_exceeded:"), "{text}");

    // The template's own budget applies without flags; a flag replaces it.
    let out = weft(dir.path(), &["--json", "run", "budgeted"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let run = json_of(&out);
    assert!(
        run["error"]
            .as_str()
            .expect("error")
            .starts_with("budget_exceeded")
    );
    assert_eq!(run["budget"], json!({"max_llm_tokens": 5}));
    let out = weft(
        dir.path(),
        &[
            "--json",
            "run",
            "budgeted",
            "--budget-llm-tokens",
            "100000",
            "--budget-tool-calls",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let run = json_of(&out);
    assert_eq!(
        run["budget"],
        json!({"max_llm_tokens": 100000, "max_tool_calls": 1})
    );
    // `ask` finished while `slow` was running: two tool calls, one more than allowed.
    assert_eq!(
        run["error"],
        "budget_exceeded: the run made 2 tool calls; its budget allows 1"
    );
    let bad = weft(dir.path(), &["run", "budgeted", "--budget-llm-tokens", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");

    // A wrong budget in a template is reported where it is, all at once.
    let out = weft(dir.path(), &["validate", "bad-budget.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for wanted in [
        "bad-budget.yaml:3:19: WEFT-E",
        "`budget.max_llm_tokens` must be a whole number of at least 1",
        "bad-budget.yaml:4:17: WEFT-E",
        "`budget.max_cost_usd` must be a positive number of US dollars",
        "bad-budget.yaml:5:",
        "max_minutes",
    ] {
        assert!(text.contains(wanted), "{text}\nwanted: {wanted}");
    }
}

/// One HTTP/1.0 request: (status, head, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(key) = key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let text = body.map(Value::to_string).unwrap_or_default();
    if body.is_some() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            text.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&text);
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

/// The operator's credential for every metric series.
const METRICS_TOKEN: &str = "operator-metrics-token";

/// `weft serve` on a free port, killed on drop.
struct Serve {
    child: Child,
    addr: String,
    key: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Serve {
    let mut child = weft_cmd(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WEFT_METRICS_TOKEN", METRICS_TOKEN)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("weft serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited early").expect("a line");
        if let Some(rest) = line.strip_prefix("weft serving http://") {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining the log so serve never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let key = std::fs::read_to_string(dir.join(".weft/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    Serve { child, addr, key }
}

impl Serve {
    fn post_run(&self, body: Value) -> (u16, String, Value) {
        let (status, head, text) =
            http(&self.addr, "POST", "/v1/runs", Some(&self.key), Some(&body));
        (
            status,
            head,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, text) = http(&self.addr, "GET", path, Some(&self.key), None);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    /// Waits for the run's end (`weft runs wait`, against the same store), then reads it.
    fn finished(&self, dir: &Path, id: &str) -> Value {
        let waited = weft(dir, &["runs", "wait", id]);
        assert!(waited.status.code().is_some(), "{waited:?}");
        let (status, run) = self.get(&format!("/v1/runs/{id}"));
        assert_eq!(status, 200, "{run}");
        run
    }
}

#[test]
fn the_api_shows_run_usage_groups_it_and_enforces_budgets_and_the_run_quota() {
    let llm = StandIn::start();
    let dir = workdir(&llm);
    let server = serve(dir.path());

    let (status, _, created) = server.post_run(json!({"template": "two-calls"}));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let run = server.finished(dir.path(), &id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let (prompt, completion, cost) = reported(&run);
    let usage = &run["usage"];
    assert_eq!(usage["llm_prompt_tokens"], prompt, "{usage}");
    assert_eq!(usage["llm_completion_tokens"], completion);
    assert_eq!(usage["llm_tokens"], prompt + completion);
    assert!(
        close(usage["cost_usd"].as_f64().expect("cost"), cost),
        "{usage}"
    );
    assert_eq!(usage["tool_calls"], 2);
    assert_eq!(usage["cache_hits"], 0);
    assert!(run.get("budget").is_none(), "no budget, no field: {run}");

    // A budget in the request: crossed by the first call, the run fails and `slow` stops.
    let (status, _, created) = server.post_run(json!({
        "template": "over-budget", "budget": {"max_llm_tokens": 5}
    }));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["budget"], json!({"max_llm_tokens": 5}));
    let over = server.finished(dir.path(), created["id"].as_str().expect("id"));
    assert_eq!(over["status"], "failed", "{over}");
    assert!(
        over["error"]
            .as_str()
            .expect("error")
            .starts_with("budget_exceeded:")
    );
    let slow = over["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "slow")
        .expect("slow");
    assert_eq!(slow["status"], "cancelled");
    // Out-of-range budgets are the caller's mistake, field by field.
    for (budget, field) in [
        (json!({"max_llm_tokens": 0}), "budget.max_llm_tokens"),
        (json!({"max_cost_usd": -0.5}), "budget.max_cost_usd"),
        (json!({"max_tool_calls": -1}), "budget.max_tool_calls"),
        (json!({"max_minutes": 3}), "budget.max_minutes"),
    ] {
        let (status, _, problem) =
            server.post_run(json!({"template": "two-calls", "budget": budget}));
        assert_eq!(status, 422, "{budget}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // Usage grouped by template, then per run; bad parameters are 422.
    let (status, report) = server.get("/v1/usage?group_by=template");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["group_by"], "template");
    let groups: Vec<(&str, u64)> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["key"].as_str().expect("key"),
                g["runs"].as_u64().expect("runs"),
            )
        })
        .collect();
    assert_eq!(groups, [("over-budget", 1), ("two-calls", 1)]);
    let two = &report["groups"][1];
    assert_eq!(two["llm_prompt_tokens"], prompt);
    assert_eq!(two["llm_completion_tokens"], completion);
    assert_eq!(
        report["total"]["llm_prompt_tokens"].as_u64(),
        Some(prompt + over["usage"]["llm_prompt_tokens"].as_u64().expect("tokens"))
    );
    let (status, by_run) = server.get("/v1/usage?group_by=run&since=1h");
    assert_eq!(status, 200, "{by_run}");
    assert_eq!(by_run["groups"][1]["key"], id.as_str(), "{by_run}");
    assert_eq!(by_run["groups"][1]["template"], "two-calls");
    let (status, by_day) = server.get("/v1/usage");
    assert_eq!(status, 200);
    assert_eq!(by_day["groups"][0]["runs"], 2, "{by_day}");
    for bad in ["group_by=week", "since=someday", "limit=0", "colour=red"] {
        let (status, problem) = server.get(&format!("/v1/usage?{bad}"));
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["code"], "WEFT-E204");
    }
    let (status, _, _) = http(&server.addr, "GET", "/v1/usage", None, None);
    assert_eq!(status, 401);

    // The counter of tokens, by template and kind.
    let (status, _, metrics) = http(&server.addr, "GET", "/metrics", Some(METRICS_TOKEN), None);
    assert_eq!(status, 200);
    let counter = |kind: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("weft_llm_tokens_total{")
                    && l.contains("template=\"two-calls\"")
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(counter("prompt"), Some(prompt), "{metrics}");
    assert_eq!(counter("completion"), Some(completion), "{metrics}");

    // The runs-per-hour quota: two runs exist, one more is allowed.
    let out = weft(
        dir.path(),
        &["tenants", "update", "default", "--max-runs-per-hour", "3"],
    );
    assert!(out.status.success(), "{out:?}");
    let (status, tenant) = server.get("/v1/tenant");
    assert_eq!(status, 200);
    assert_eq!(tenant["max_runs_per_hour"], 3, "{tenant}");
    let (status, _, third) = server.post_run(json!({"template": "one-call"}));
    assert_eq!(status, 201, "{third}");
    let (status, head, problem) = server.post_run(json!({"template": "one-call"}));
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["code"], "WEFT-E250");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .expect("a Retry-After header");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(problem["retry_after"], retry_after);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json")
    );
    // The quota is the store's: another process (the CLI) meets it too.
    let cli = weft(dir.path(), &["run", "one-call"]);
    assert_eq!(cli.status.code(), Some(2), "{cli:?}");
    assert!(
        String::from_utf8_lossy(&cli.stderr).contains("quota of 3 runs per hour"),
        "{cli:?}"
    );
    // Lifted, runs are created again.
    let out = weft(
        dir.path(),
        &[
            "tenants",
            "update",
            "default",
            "--max-runs-per-hour",
            "none",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let (status, _, fourth) = server.post_run(json!({"template": "one-call"}));
    assert_eq!(status, 201, "{fourth}");
}

/// The same on PostgreSQL, across processes: `weft run --detach` enqueues a budgeted run, a
/// `weft worker` process runs it and fails it with `budget_exceeded`, and another process's
/// `weft usage` reads the totals. Skipped without a reachable server (`WEFT_TEST_PG`).
#[test]
fn on_postgresql_a_worker_process_enforces_the_budget_and_usage_groups_it() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some((server, name, url)) = rt.block_on(async {
        let server = weft_store::postgres::testing::server_url().await?;
        let (name, url) = weft_store::postgres::testing::create_database(&server)
            .await
            .expect("create a database");
        Some((server, name, url))
    }) else {
        return;
    };
    let llm = StandIn::start();
    let dir = workdir(&llm);
    let mut worker = weft_cmd(dir.path())
        .args(["worker", "--db", &url, "--poll", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft worker starts");

    let out = weft(
        dir.path(),
        &[
            "--json",
            "run",
            "over-budget",
            "--budget-llm-tokens",
            "5",
            "--detach",
            "--db",
            &url,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let id = json_of(&out)["id"].as_str().expect("id").to_string();
    let out = weft(dir.path(), &["--json", "runs", "wait", &id, "--db", &url]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let run = json_of(&out);
    assert!(
        run["error"]
            .as_str()
            .expect("error")
            .starts_with("budget_exceeded:"),
        "{run}"
    );
    let slow = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "slow")
        .expect("slow");
    assert_eq!(slow["status"], "cancelled");
    let shown = json_of(&weft(
        dir.path(),
        &["--json", "runs", "show", &id, "--db", &url],
    ));
    let (prompt, completion, _) = reported(&shown);
    assert_eq!(shown["usage"]["llm_prompt_tokens"], prompt);
    assert_eq!(shown["usage"]["llm_completion_tokens"], completion);

    let report = json_of(&weft(
        dir.path(),
        &["--json", "usage", "--by", "template", "--db", &url],
    ));
    assert_eq!(report[0]["key"], "over-budget", "{report}");
    assert_eq!(report[0]["runs"], 1);
    assert_eq!(report[0]["llm_prompt_tokens"], prompt);

    let _ = worker.kill();
    let _ = worker.wait();
    rt.block_on(weft_store::postgres::testing::drop_database(&server, &name))
        .expect("drop the test database");
}
