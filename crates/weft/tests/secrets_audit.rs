//! `weft secrets` and `weft audit` as a user runs them: the value never reaches the database
//! file or any output, a wrong key is refused clearly, and CLI runs are audited.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const CANARY: &str = "canary-cli-5e1b-do-not-leak";

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env_remove("WEFT_SECRET_KEY")
        .env("NO_COLOR", "1");
    cmd
}

fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn all_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn db_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["weft.db", "weft.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(".weft").join(name)) {
            all.extend(bytes);
        }
    }
    all
}

#[test]
fn secrets_are_sealed_listed_by_name_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut set = weft(dir.path());
    set.args(["secrets", "set", "API_TOKEN"]);
    let out = with_stdin(set, &format!("{CANARY}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    assert!(!all_text(&out).contains(CANARY));
    let key = dir.path().join(".weft/secret.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let bytes = db_bytes(dir.path());
    assert!(!bytes.is_empty());
    assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));

    let out = weft(dir.path())
        .args(["secrets", "list"])
        .output()
        .expect("list");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "API_TOKEN\n");
    let out = weft(dir.path())
        .args(["--json", "secrets", "list"])
        .output()
        .expect("list");
    let text = all_text(&out);
    assert!(
        text.contains("\"API_TOKEN\"") && !text.contains(CANARY),
        "{text}"
    );

    // A wrong key in the environment is refused with a clear error when it is not a key.
    let out = with_stdin(
        {
            let mut c = weft(dir.path());
            c.env("WEFT_SECRET_KEY", "short")
                .args(["secrets", "set", "X"]);
            c
        },
        "v",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        all_text(&out).contains("WEFT_SECRET_KEY"),
        "{}",
        all_text(&out)
    );
    assert!(!all_text(&out).contains("panicked"));

    let out = weft(dir.path())
        .args(["secrets", "delete", "API_TOKEN"])
        .output()
        .expect("delete");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let out = weft(dir.path())
        .args(["secrets", "delete", "API_TOKEN"])
        .output()
        .expect("delete");
    assert_eq!(out.status.code(), Some(2));
    let out = weft(dir.path())
        .args(["secrets", "list"])
        .output()
        .expect("list");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");

    let out = weft(dir.path())
        .args(["--json", "audit"])
        .output()
        .expect("audit");
    let text = all_text(&out);
    assert!(
        text.contains("secret.set") && text.contains("secret.deleted"),
        "{text}"
    );
    assert!(!text.contains(CANARY));
}

#[test]
fn runs_created_and_cancelled_from_the_cli_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("slow.yaml"),
        "name: slow\nversion: 1\nsteps:\n  - id: a\n    tool: sleep\n    with: { duration: 30s }\n",
    )
    .expect("write");
    let out = weft(dir.path())
        .args(["run", "slow.yaml", "--detach"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let run = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = weft(dir.path())
        .args(["runs", "cancel", &run])
        .output()
        .expect("cancel");
    assert_eq!(out.status.code(), Some(0), "{}", all_text(&out));
    let out = weft(dir.path())
        .args(["--json", "audit", "--run", &run])
        .output()
        .expect("audit");
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let actions: Vec<_> = records
        .as_array()
        .expect("array")
        .iter()
        .map(|r| (r["action"].clone(), r["actor"].clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("run.created".into(), "cli".into()),
            ("run.cancelled".into(), "cli".into())
        ]
    );
    let out = weft(dir.path())
        .args(["audit", "--since", "nonsense"])
        .output()
        .expect("audit");
    assert_eq!(out.status.code(), Some(2));
}
