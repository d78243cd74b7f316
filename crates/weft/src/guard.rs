//! What a long-running weft (`weft serve`, `weft worker`) does before anything else, so what
//! it holds stays its own: it makes itself non-dumpable, and it moves `WEFT_SECRET_KEY` (which
//! opens every tenant's secrets) out of its environment.
//!
//! Non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core file, and no other process of the same
//! user may ptrace it or read its `/proc/PID/{environ,mem,maps,...}`.
//!
//! The key: removing a variable (`std::env::remove_var`, unsafe since edition 2024 because
//! another thread may read the environment meanwhile) would not be enough anyway, because
//! `/proc/PID/environ` shows the block the process was started with, not the current one. So
//! the process starts itself again (`exec`, same binary, same arguments, same pid) with the
//! variable left out of the new environment, and hands the key over on the new process's
//! stdin through a pipe (a server or worker never reads its stdin otherwise). No `unsafe`, and
//! nothing of the key is left in any environment block.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::sync::OnceLock;

const KEY_VAR: &str = "WEFT_SECRET_KEY";
/// Set on the re-started process: its stdin carries the key.
const HANDOVER: &str = "WEFT_SECRET_KEY_ON_STDIN";

/// The key handed over on stdin, when it came that way.
static HANDED: OnceLock<String> = OnceLock::new();

/// `WEFT_SECRET_KEY`, from the environment or from the hand-over.
pub fn secret_key() -> Option<String> {
    HANDED
        .get()
        .cloned()
        .or_else(|| std::env::var(KEY_VAR).ok())
        .filter(|k| !k.trim().is_empty())
}

/// Protects this process (see the module comment). Call it first, before any thread; on the
/// first call with `WEFT_SECRET_KEY` set it does not return unless the re-start failed.
pub fn protect() -> Result<(), String> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("cannot make this process non-dumpable: {e}"))?;
    if std::env::var_os(HANDOVER).is_some() {
        let mut key = String::new();
        std::io::stdin()
            .read_to_string(&mut key)
            .map_err(|e| format!("cannot read the handed-over secret key: {e}"))?;
        let _ = HANDED.set(key.trim().to_string());
        return Ok(());
    }
    let Some(key) = std::env::var_os(KEY_VAR) else {
        return Ok(());
    };
    // A pipe holds 64 KiB before a write blocks; a key is 44 characters.
    if key.len() > 4096 {
        return Err(format!("{KEY_VAR} is too long to be a key"));
    }
    let (reader, mut writer) =
        std::io::pipe().map_err(|e| format!("cannot hand the secret key over: {e}"))?;
    writer
        .write_all(key.as_encoded_bytes())
        .map_err(|e| format!("cannot hand the secret key over: {e}"))?;
    drop(writer);
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program to restart: {e}"))?;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command
        .args(args)
        .env_remove(KEY_VAR)
        .env(HANDOVER, "1")
        .stdin(reader)
        .exec();
    Err(format!(
        "cannot restart without {KEY_VAR} in the environment: {error}"
    ))
}
