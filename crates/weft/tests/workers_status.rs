//! Worker processes on record, as an operator sees them: a running `weft worker` shows in
//! `weft status --json` (its pid, host, version, alive) and in its own `/metrics` as
//! `weft_workers_alive`; after SIGTERM it removes its row and status shows none. On
//! PostgreSQL, two workers are both alive; a SIGKILLed one turns `stale` once two of its
//! leases pass without a heartbeat (the database's clock decides), the other stays alive.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env("NO_COLOR", "1");
    cmd
}

fn status(dir: &Path) -> Value {
    status_of(dir, None)
}

fn status_of(dir: &Path, db: Option<&str>) -> Value {
    let mut cmd = weft(dir);
    if let Some(db) = db {
        cmd.args(["--db", db]);
    }
    let out = cmd
        .args(["status", "--json"])
        .output()
        .expect("weft status");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// Polls `check` until it gives a value (bounded: about 30 s).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = check() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("gave up waiting for {what}");
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn a_running_worker_is_alive_in_status_and_metrics_and_leaves_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Make the store first, so the worker and status agree on it from the start.
    let first = status(dir.path());
    assert_eq!(first["processes"]["alive"], 0, "{first}");

    let metrics = format!("127.0.0.1:{}", free_port());
    let child = weft(dir.path())
        .args([
            "worker",
            "--lease",
            "3s",
            "--grace",
            "0s",
            "--metrics-listen",
            &metrics,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft worker");
    let pid = child.id();
    let mut child = Killed(child);

    let seen = eventually("the worker's row", || {
        let s = status(dir.path());
        (s["processes"]["alive"] == 1).then_some(s)
    });
    let row = &seen["processes"]["workers"][0];
    assert_eq!(row["pid"], pid, "{seen}");
    assert_eq!(row["state"], "alive", "{seen}");
    assert_eq!(row["version"], env!("CARGO_PKG_VERSION"), "{seen}");
    let id = row["id"].as_str().expect("id");
    let host = row["host"].as_str().expect("host");
    assert!(id.starts_with(&format!("{host}:{pid}:")), "{seen}");
    assert!(row["last_heartbeat_ago_ms"].as_i64().is_some(), "{seen}");

    let scraped = eventually("the worker's /metrics", || {
        get(&metrics, "/metrics")
            .ok()
            .filter(|m| m.contains("weft_workers_alive"))
    });
    assert!(
        scraped.lines().any(|l| l == "weft_workers_alive 1"),
        "{scraped}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = child.0.wait().expect("wait");
    assert!(exit.success(), "a SIGTERM stop is clean: {exit:?}");
    let after = status(dir.path());
    assert_eq!(
        after["processes"]["workers"],
        Value::Array(vec![]),
        "a clean stop removes its row: {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_killed_worker_turns_stale_and_a_live_one_stays_alive() {
    use weft_store::postgres::testing;
    let Some(server) = testing::server_url().await else {
        return;
    };
    let (name, url) = testing::create_database(&server)
        .await
        .expect("create a database");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |lease: &str| {
        weft(dir.path())
            .args(["--db", &url, "worker", "--lease", lease, "--grace", "0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Killed)
            .expect("weft worker")
    };
    let steady = start("30s");
    let doomed = start("1s");
    let (steady_pid, doomed_pid) = (steady.0.id(), doomed.0.id());
    let both = eventually("two workers alive", || {
        let s = status_of(dir.path(), Some(&url));
        (s["processes"]["alive"] == 2).then_some(s)
    });
    let pids: Vec<i64> = both["processes"]["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["pid"].as_i64())
        .collect();
    assert!(
        pids.contains(&i64::from(steady_pid)) && pids.contains(&i64::from(doomed_pid)),
        "{both}"
    );

    // SIGKILL: no clean stop, the row stays and stops beating.
    let mut doomed = doomed;
    doomed.0.kill().expect("SIGKILL");
    doomed.0.wait().ok();
    let after = eventually("the killed worker to turn stale", || {
        let s = status_of(dir.path(), Some(&url));
        let rows = s["processes"]["workers"].as_array()?.clone();
        let dead = rows
            .iter()
            .find(|w| w["pid"].as_i64() == Some(i64::from(doomed_pid)))?;
        (dead["state"] == "stale").then_some(s)
    });
    assert_eq!(after["processes"]["alive"], 1, "{after}");
    let live = after["processes"]["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|w| w["pid"].as_i64() == Some(i64::from(steady_pid)))
        .cloned()
        .expect("the steady worker");
    assert_eq!(live["state"], "alive", "{after}");
    drop(steady);
    drop(doomed);
    testing::drop_database(&server, &name)
        .await
        .expect("drop the test database");
}
