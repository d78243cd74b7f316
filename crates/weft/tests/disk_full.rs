//! A store on a full disk (issue 13, item 6): weft rolls back, tries again calmly, and goes on
//! by itself once space returns; `/healthz` says the store cannot write meanwhile.
//!
//! The disk is real: a small tmpfs mounted for the test (we run as root in CI). Where mounting
//! is not permitted the tests skip with a message, unless `WEFT_REQUIRE_SERVICES=1`.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_store::Store as _;

/// A tmpfs of `size` mounted on a temporary folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying why) when this machine does not let the test mount one.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = format!("cannot mount a tmpfs to fill ({other:?})");
                if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
                    panic!("{why}; WEFT_REQUIRE_SERVICES=1 requires it (run as root)");
                }
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns its path (remove it to free the space).
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("create filler");
        let block = vec![0x5a_u8; 16 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                    break;
                }
            }
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process of the test may still hold a file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A value big enough that its commit needs fresh pages (and so fresh blocks).
fn bulky(n: usize) -> Value {
    json!({ "n": n, "pad": "x".repeat(64 * 1024) })
}

async fn put(store: &weft_store::SqlStore, key: &str, value: &Value) -> weft_store::Result<()> {
    let mut tx = store.begin().await?;
    tx.cache_put(key, "default", value, i64::MAX).await?;
    tx.commit().await
}

/// Before the fix the first failed commit left sqlx counting an open transaction, and every
/// later write failed with "attempted to call begin_with at non-zero transaction depth", also
/// after space came back.
#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_the_store_writes_again_when_space_returns() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let store = weft_store::SqlStore::sqlite(
        &fs.path().join("weft.db"),
        weft_store::sqlite::Durability::Full,
    )
    .await
    .expect("open store");
    put(&store, "before", &bulky(0))
        .await
        .expect("room at first");
    store.check_writable().await.expect("writable at first");

    let filler = fs.fill();
    for i in 1..=3 {
        let error = put(&store, &format!("full-{i}"), &bulky(i))
            .await
            .expect_err("no room left");
        assert!(
            error.is_cannot_write(),
            "try {i}: the store says it cannot write, not something else: {error}"
        );
    }
    let error = store.check_writable().await.expect_err("health");
    assert!(error.is_cannot_write(), "{error}");
    assert!(error.to_string().contains("cannot write"), "{error}");

    std::fs::remove_file(&filler).expect("free the space");
    put(&store, "after", &bulky(9))
        .await
        .expect("the store writes again once there is room");
    let mut tx = store.begin().await.expect("begin");
    let read = tx.cache_get("after").await.expect("read back");
    assert_eq!(read, Some(bulky(9)));
    drop(tx);
    // Healthy again once no write has failed for a moment (`weft_store::CANNOT_WRITE_RECENT`).
    let deadline = Instant::now() + weft_store::CANNOT_WRITE_RECENT * 3;
    while let Err(e) = store.check_writable().await {
        assert!(Instant::now() < deadline, "still unhealthy: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const GATED: &str = r#"name: gated
steps:
  - id: work
    for_each: "{{ range(12) | list }}"
    concurrency: 4
    tool: command
    with:
      argv: [sh, -c, 'while [ ! -f "$GATE" ]; do sleep 0.05; done; printf "{\"n\": %s, \"pad\": \"" "$N"; head -c 400000 /dev/zero | tr "\0" x; printf "\"}"']
      env: { N: "{{ item }}", GATE: "{{ input.gate }}" }
inputs:
  gate: { type: string }
output: "{{ steps.work.output | map(attribute='n') | list }}"
"#;

/// `weft serve` with its store on a disk that fills while a run is in flight: `/healthz`
/// answers 503 with a problem saying the store cannot write, the server keeps running and
/// does not spin, and once space returns the run finishes with every item and `/healthz` is
/// 200 again.
#[test]
fn serve_on_a_full_disk_reports_it_and_finishes_the_run_when_space_returns() {
    // Room for the store, not for the run's 12 x 400 KB of results once the disk is full.
    let Some(fs) = Tmpfs::mount("32m") else {
        return;
    };
    let d = fs.path();
    let gates = tempfile::tempdir().expect("tempdir");
    let gate = gates.path().join("open");
    std::fs::write(d.join("gated.yaml"), GATED).expect("template");
    let log = gates.path().join("serve.log");
    let (mut server, addr) = common::serve(d, &log);
    let (status, _) = common::get(&addr, "/healthz");
    assert_eq!(status, 200);

    let out = common::weft(d)
        .args(["run", "gated.yaml", "--detach", "-i"])
        .arg(format!("gate={}", gate.display()))
        .output()
        .expect("weft run --detach");
    assert!(out.status.success(), "{out:?}");
    let run_id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let filler = fs.fill();
    std::fs::write(&gate, "").expect("open the gate");
    // The results cannot be committed: the health check says so, as a problem document.
    let deadline = Instant::now() + Duration::from_secs(60);
    let problem = loop {
        let (status, body) = common::get(&addr, "/healthz");
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never reported the full disk"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let problem: Value = serde_json::from_str(&problem).expect("problem json");
    assert_eq!(problem["status"], 503, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot write")),
        "{problem}"
    );
    // The results are in and their commit fails: the worker rolls back and tries again
    // (what its log says), and keeps running.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Worker turn failed")
    {
        assert!(Instant::now() < deadline, "no commit ever failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        server.try_wait().expect("poll").is_none(),
        "the server died"
    );
    let (status, _) = common::get(&addr, "/healthz");
    assert_eq!(status, 503, "still full");

    std::fs::remove_file(&filler).expect("free the space");
    let wait = common::weft(d)
        .args(["--json", "runs", "wait", &run_id])
        .stderr(Stdio::null())
        .output()
        .expect("weft runs wait");
    let view: Value = serde_json::from_slice(&wait.stdout).expect("runs wait --json");
    assert_eq!(wait.status.code(), Some(0), "the run succeeded: {view}");
    let expected: Vec<Value> = (0..12).map(Value::from).collect();
    assert_eq!(view["output"], Value::Array(expected), "every item");
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::get(&addr, "/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "/healthz never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill().expect("stop serve");
    let _ = server.wait();

    // Rolled back and tried again: no wedged connection.
    let said = std::fs::read_to_string(&log).expect("serve log");
    assert!(!said.contains("non-zero transaction depth"), "{said}");
}
