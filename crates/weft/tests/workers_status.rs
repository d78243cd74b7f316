//! Worker processes on record, as an operator sees them: a running `weft worker` shows in
//! `weft status --json` (its pid, host, version, alive) and in its own `/metrics` as
//! `weft_workers_alive`; after SIGTERM it removes its row and status shows none.

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
    let out = weft(dir)
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
