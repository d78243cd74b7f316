//! `command`: runs an executable (a "skill") with JSON on stdin and JSON (or text) on stdout.
//!
//! The child gets a small, predictable environment rather than the worker's: `PATH`, `HOME`,
//! `LANG`, `LC_ALL`, `TMPDIR` and `TZ` pass through, then the step's `env`, then `WEFT_RUN_ID`,
//! `WEFT_STEP_ID`, `WEFT_ITEM_INDEX` (for a `for_each` item), `WEFT_ATTEMPT` and
//! `WEFT_IDEMPOTENCY_KEY`, so a skill can dedupe its side effects across retries, and the
//! attempt's `WEFT_TASK_TOKEN` with `WEFT_API_URL` when it has one, to call weft back.
//!
//! `stdin` is always written as JSON (a string input arrives quoted, `"like this"`); without
//! `stdin` the child's stdin is empty. The child runs in its own process group, which is
//! killed when the step is cancelled or times out, so grandchildren do not outlive it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{parse_input, tail};
use crate::sandbox::View;
use crate::{Context, Error, Result, Tool};

/// Variables passed through from the worker's environment.
const KEPT_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Largest stdout read; a skill that prints more is stopped.
const MAX_STDOUT: usize = 16 * 1024 * 1024;
/// How much of stderr is kept (its end, where the error usually is).
const STDERR_KEPT: usize = 64 * 1024;
/// How much of stderr goes into the error message.
const STDERR_IN_ERROR: usize = 2 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(deserialize_with = "texts")]
    argv: Vec<String>,
    #[serde(default)]
    stdin: Option<Value>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    #[serde(default)]
    cwd: Option<String>,
}

/// `argv` as text: `"{{ i }}"` renders the number `3` when `i` is one, and a program's argument
/// is its text `3`, as a shell would pass it. Strings, numbers and booleans; nothing else.
fn texts<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let values = Vec::<Value>::deserialize(d)?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s),
            Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
            other => Err(serde::de::Error::custom(format!(
                "argv[{i}] is {other}, where a string, number or boolean was expected"
            ))),
        })
        .collect()
}

/// The `command` tool.
#[derive(Default)]
pub struct Command;

impl Command {
    pub fn new() -> Self {
        Command
    }
}

#[async_trait]
impl Tool for Command {
    fn name(&self) -> &str {
        "command"
    }

    fn description(&self) -> &str {
        "Runs an executable: `argv` is the program and its arguments, `stdin` is written to it \
         as JSON. Stdout is parsed as JSON when it is JSON, else returned as trimmed text; a \
         non-zero exit fails the step with the end of stderr."
    }

    fn starts_processes(&self) -> bool {
        true
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["argv"],
            "properties": {
                "argv": {"type": "array", "items": {"type": ["string", "number", "boolean"]}, "minItems": 1, "description": "The program and its arguments, e.g. [\"python3\", \"skill.py\"]."},
                "stdin": {"description": "Written to the program's stdin as JSON."},
                "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "Extra environment variables."},
                "cwd": {"type": "string", "description": "Working directory; relative to the template's folder, which is also the default."}
            },
            "additionalProperties": false
        }))
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        run(input, ctx, None).await
    }
}

/// Runs one `command` call. `own_dir` is a folder the operator's configuration names as the
/// program's own (a skill's): its working folder, and visible read-only when confined.
pub(crate) async fn run(input: Value, ctx: &Context, own_dir: Option<&Path>) -> Result<Value> {
    let input: Input = parse_input("command", &input)?;
    let program = input
        .argv
        .first()
        .filter(|program| !program.is_empty())
        .cloned()
        .ok_or_else(|| Error::Input("command: argv needs at least the program".into()))?;
    let stdin = match &input.stdin {
        Some(value) => {
            Some(serde_json::to_vec(value).map_err(|error| Error::Input(error.to_string()))?)
        }
        None => None,
    };

    let sandbox = ctx.sandbox.as_deref();
    let view = view(input.cwd.as_deref(), ctx, own_dir);
    let mut command = crate::process::command(&program, &input.argv[1..], sandbox, &view);
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    if sandbox.is_some() {
        // Confined: nothing of weft's environment, only fixed values that fit the sandbox.
        command
            .env("PATH", DEFAULT_PATH)
            .env("HOME", crate::sandbox::SCRATCH)
            .env("TMPDIR", crate::sandbox::SCRATCH)
            .env("LANG", "C.UTF-8");
    } else {
        for name in KEPT_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            } else if *name == "PATH" {
                command.env(name, DEFAULT_PATH);
            }
        }
    }
    for (name, value) in &input.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(Error::Input(format!(
                "command: {name:?} is not an environment variable name"
            )));
        }
        let text = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        command.env(name, text);
    }
    command
        .env("WEFT_RUN_ID", &ctx.run_id)
        .env("WEFT_STEP_ID", &ctx.step_id)
        .env("WEFT_ATTEMPT", ctx.attempt.to_string())
        .env("WEFT_IDEMPOTENCY_KEY", &ctx.idempotency_key);
    if let Some(index) = ctx.item_index {
        command.env("WEFT_ITEM_INDEX", index.to_string());
    }
    if let Some(token) = &ctx.task_token {
        command.env("WEFT_TASK_TOKEN", token.secret());
        if let Some(url) = token.api_url() {
            command.env("WEFT_API_URL", url);
        }
    }

    let mut child = command
        .spawn()
        .map_err(|error| spawn_error(&program, &error))?;
    let mut group = GroupKiller::new(child.id());
    let stdin_pipe = child.stdin.take();
    let stdout_pipe = child.stdout.take();
    let stderr_pipe = child.stderr.take();

    let work = async {
        let write = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin_pipe, stdin) {
                // A program that does not read its stdin closes the pipe early: not an error.
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            }
            Ok(())
        };
        let stdout = async {
            read_capped(stdout_pipe, MAX_STDOUT)
                .await
                .map_err(|error| match error {
                    ReadError::TooLarge => Error::Permanent(format!(
                        "command: `{program}` printed more than {MAX_STDOUT} bytes on stdout"
                    )),
                    ReadError::Io(error) => Error::Failed(format!(
                        "command: reading the stdout of `{program}`: {error}"
                    )),
                })
        };
        let stderr = async { Ok(read_tail(stderr_pipe, STDERR_KEPT).await) };
        // An oversized stdout ends the wait at once; the child is then killed on drop.
        let (stdout, stderr, ()) = tokio::try_join!(stdout, stderr, write)?;
        let status = child
            .wait()
            .await
            .map_err(|error| Error::Failed(format!("command: waiting for `{program}`: {error}")))?;
        Ok::<_, Error>((status, stdout, stderr))
    };

    let (status, stdout, stderr) = tokio::select! {
        result = work => result?,
        () = ctx.cancel.cancelled() => return Err(Error::Cancelled),
    };
    // Reaped: the group id may be reused from now on, so it must not be signalled.
    group.disarm();

    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => exit_signal(&status),
        };
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        let mut message = format!("command: `{program}` {how}");
        if !stderr.is_empty() {
            message.push_str(": ");
            message.push_str(&tail(stderr, STDERR_IN_ERROR));
        }
        return Err(Error::Failed(message));
    }
    Ok(parse_stdout(&stdout))
}

/// Stdout as JSON when it is JSON, else as trimmed text; nothing at all is `null`.
fn parse_stdout(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(trimmed.to_string()))
}

/// Where the child works and which folder it sees besides the system. Unconfined: `cwd`
/// against the program's own folder or the template's (the default). Confined: the same
/// folder is visible read-only; without one (a tenant's template) the child works in its
/// private scratch folder, so a `cwd` outside it names nothing the child can see.
fn view(cwd: Option<&str>, ctx: &Context, own_dir: Option<&Path>) -> View {
    let base = own_dir
        .map(Path::to_path_buf)
        .or_else(|| ctx.base_dir.clone());
    if ctx.sandbox.is_some() {
        let root = base
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::sandbox::SCRATCH));
        return View {
            cwd: Some(match cwd {
                Some(cwd) => root.join(cwd),
                None => root,
            }),
            visible: base,
        };
    }
    View {
        cwd: match (cwd, base) {
            (Some(cwd), Some(base)) => Some(base.join(cwd)),
            (Some(cwd), None) => Some(PathBuf::from(cwd)),
            (None, base) => base,
        },
        visible: None,
    }
}

fn spawn_error(program: &str, error: &std::io::Error) -> Error {
    match error.kind() {
        std::io::ErrorKind::NotFound => Error::Permanent(format!(
            "command: cannot run `{program}`: not found (is it on PATH, or is `cwd` right?)"
        )),
        std::io::ErrorKind::PermissionDenied => Error::Permanent(format!(
            "command: cannot run `{program}`: permission denied (is it executable?)"
        )),
        _ => Error::Failed(format!("command: cannot run `{program}`: {error}")),
    }
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("was killed by signal {signal}"),
        None => "ended abnormally".into(),
    }
}

#[cfg(not(unix))]
fn exit_signal(_status: &std::process::ExitStatus) -> String {
    "ended abnormally".into()
}

enum ReadError {
    TooLarge,
    Io(std::io::Error),
}

async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(out);
    };
    let mut buffer = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buffer).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&buffer[..n]);
    }
}

/// Reads a pipe to its end, keeping only its last `keep` bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(mut pipe) = pipe else {
        return out;
    };
    let mut buffer = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buffer[..n]);
        if out.len() > 2 * keep {
            out.drain(..out.len() - keep);
        }
    }
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    out
}

/// Kills the child's process group when dropped while armed: on cancel, timeout or an error
/// before the child was reaped (until then its id cannot be reused).
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        GroupKiller(pid)
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}
