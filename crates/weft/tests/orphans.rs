//! A tool process never outlives the weft that started it: `weft run` killed with SIGKILL
//! (no destructor runs) takes the `command` tool's child with it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; only a running or sleeping process counts as alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_weft_kills_the_running_command_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("long.yaml"),
        r#"name: long
steps:
  - id: wait
    tool: command
    with:
      argv: [sh, -c, 'echo $$ > child.pid; exec sleep 600']
"#,
    )
    .expect("write");
    let mut weft = Command::new(env!("CARGO_BIN_EXE_weft"));
    let mut child = weft
        .current_dir(dir.path())
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .args(["run", "long.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft");
    let pid: i32 = wait_for_file(&dir.path().join("child.pid"))
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(pid), "the tool process should be running");
    child.kill().expect("SIGKILL weft");
    let _ = child.wait();

    // The kernel delivers the parent-death signal as soon as weft is gone; allow a generous
    // grace for a loaded machine (this bounds the wait, it does not measure anything).
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive(pid);
    if survived {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(!survived, "the tool process {pid} outlived weft");
}
