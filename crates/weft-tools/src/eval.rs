//! Bounded evaluation: a tenant's jq and Jinja run in a small pool of evaluator processes.
//!
//! jaq has no fuel and minijinja's fuel bounds instructions, not memory, so a hostile program
//! (`[range(1e9)] | length`, a `reduce` that nests 100,000 deep) could exhaust the memory or
//! the stack of the process that evaluates it, and a runaway one cannot be stopped inside a
//! thread. `weft serve` and `weft worker` therefore hand `transform` and `render` calls to
//! child processes of their own binary ([`CHILD_ARG`]), each under a memory ceiling
//! (`RLIMIT_AS`) and killed past a time limit; a child that crashes takes only its call with
//! it. The calls go through the queue like any tool call (never inline in the store's write
//! transaction: a sandboxed tool has no [`Tool::call_pure`]), so the step's timeout applies too.
//! A local `weft run` keeps evaluating in process: it runs the operator's own templates.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use crate::{Context, Error, Result, Tool};

/// The first argument that makes the `weft` binary an evaluator child.
pub const CHILD_ARG: &str = "__weft_eval";

/// The tools evaluated in children.
const SANDBOXED: [&str; 2] = ["transform", "render"];

/// Largest answer a child may send back, in bytes.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// `[eval]` in `weft.toml`: the evaluator pool of `weft serve` and `weft worker`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluator processes at most (and calls evaluated at once).
    pub processes: usize,
    /// Memory one evaluation may use, in MiB (the child's address-space limit).
    pub memory_mb: u64,
    /// Longest one evaluation may run (a step's shorter `timeout` stops it sooner).
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            processes: 2,
            memory_mb: 512,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Durations in `weft.toml` are friendly strings (`30s`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
struct Job {
    tool: String,
    input: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Answer {
    Ok(Value),
    Error(String),
}

struct Worker {
    // Killed when dropped: a call abandoned (timeout, cancel, shutdown) takes its child along.
    process: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The pool of evaluator children. Cheap to share; children start on demand and are reused.
pub struct Evaluator {
    program: PathBuf,
    config: EvalConfig,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
}

impl Evaluator {
    /// A pool that starts `program CHILD_ARG MEMORY` (normally the running `weft` binary).
    pub fn new(program: PathBuf, config: EvalConfig) -> Arc<Evaluator> {
        Arc::new(Evaluator {
            program,
            slots: Semaphore::new(config.processes.max(1)),
            config,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Replaces the in-process `transform` and `render` of `registry` with ones evaluated by
    /// this pool.
    pub fn install(self: &Arc<Self>, registry: &mut crate::Registry) {
        for name in SANDBOXED {
            if let Some(inner) = registry.get(name) {
                registry.insert(Arc::new(Sandboxed {
                    inner,
                    evaluator: self.clone(),
                }));
            }
        }
    }

    fn spawn(&self) -> Result<Worker> {
        let memory = self.config.memory_mb.saturating_mul(1024 * 1024);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg(CHILD_ARG)
            .arg(memory.to_string())
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        crate::process::die_with_parent(&mut command);
        let mut process = command
            .spawn()
            .map_err(|e| Error::Permanent(format!("cannot start an evaluator process: {e}")))?;
        let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err(Error::Permanent("an evaluator process has no pipes".into()));
        };
        Ok(Worker {
            process,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Calls the in-process tool `tool` on `input` in a child, under the pool's limits.
    pub async fn eval(&self, tool: &str, input: &Value) -> Result<Value> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::Permanent("the evaluator pool is closed".into()))?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        let mut line = serde_json::to_string(&Job {
            tool: tool.to_string(),
            input: input.clone(),
        })
        .map_err(|e| Error::Permanent(format!("{tool}: {e}")))?;
        line.push('\n');
        let exchange = async {
            worker.stdin.write_all(line.as_bytes()).await?;
            worker.stdin.flush().await?;
            let mut answer = String::new();
            (&mut worker.stdout)
                .take(MAX_ANSWER)
                .read_line(&mut answer)
                .await?;
            std::io::Result::Ok(answer)
        };
        let limit = self.config.timeout;
        let answer = match tokio::time::timeout(limit, exchange).await {
            Err(_) => {
                return Err(Error::Permanent(format!(
                    "{tool}: the evaluation ran longer than {} and was stopped (raise \
                     `[eval] timeout` in weft.toml if this is expected)",
                    humantime::format_duration(limit)
                )));
            }
            Ok(Ok(answer)) if answer.ends_with('\n') => answer,
            Ok(Ok(answer)) if answer.len() as u64 >= MAX_ANSWER => {
                return Err(Error::Permanent(format!(
                    "{tool}: the result is larger than {} MiB",
                    MAX_ANSWER / (1024 * 1024)
                )));
            }
            Ok(_) => {
                worker.process.start_kill().ok();
                let status = worker.process.wait().await.ok();
                return Err(Error::Permanent(format!(
                    "{tool}: the evaluation was stopped: it used more than {} MiB of memory or \
                     overflowed its stack ({})",
                    self.config.memory_mb,
                    status.map_or("no status".to_string(), |s| s.to_string())
                )));
            }
        };
        match serde_json::from_str::<Answer>(&answer) {
            Ok(Answer::Ok(value)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(worker);
                }
                Ok(value)
            }
            // The child exits after a failed call: nothing it leaked outlives the call.
            Ok(Answer::Error(message)) => Err(Error::Permanent(message)),
            Err(e) => Err(Error::Permanent(format!(
                "{tool}: unreadable answer from the evaluator: {e}"
            ))),
        }
    }
}

/// `transform` or `render`, evaluated by the pool.
struct Sandboxed {
    inner: Arc<dyn Tool>,
    evaluator: Arc<Evaluator>,
}

#[async_trait]
impl Tool for Sandboxed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn description(&self) -> &str {
        self.inner.description()
    }

    fn input_schema(&self) -> Option<Value> {
        self.inner.input_schema()
    }

    fn version(&self) -> &str {
        self.inner.version()
    }

    fn is_pure(&self) -> bool {
        true
    }

    fn wants_scope(&self) -> bool {
        self.inner.wants_scope()
    }

    // No `call_pure`: the engine queues the call instead of running it in its transaction.

    async fn call(&self, input: Value, _ctx: &Context) -> Result<Value> {
        self.evaluator.eval(self.inner.name(), &input).await
    }
}

/// The evaluator child's whole life: limits itself, then answers one job per line of stdin
/// until stdin closes. Run by the binary when its first argument is [`CHILD_ARG`], before
/// anything else starts (no runtime, no threads: the address-space limit is the memory limit).
pub fn child_main(memory_bytes: Option<u64>) -> std::process::ExitCode {
    use std::io::{BufRead as _, Write as _};
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        if let Some(bytes) = memory_bytes {
            let limit = Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            };
            if setrlimit(Resource::As, limit).is_err() {
                return std::process::ExitCode::from(3);
            }
        }
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        setrlimit(Resource::Core, none).ok();
    }
    #[cfg(not(unix))]
    let _ = memory_bytes;
    let transform = crate::builtin::transform::Transform::new();
    let render = crate::builtin::render::Render::new();
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lines() {
        let Ok(line) = line else {
            break;
        };
        let result = match serde_json::from_str::<Job>(&line) {
            Ok(job) => match job.tool.as_str() {
                "transform" => transform.call_pure(&job.input),
                "render" => render.call_pure(&job.input),
                other => Some(Err(Error::Permanent(format!(
                    "`{other}` is not evaluated here"
                )))),
            }
            .unwrap_or(Ok(Value::Null)),
            Err(e) => Err(Error::Permanent(format!("unreadable job: {e}"))),
        };
        let failed = result.is_err();
        let answer = match result {
            Ok(value) => Answer::Ok(value),
            Err(error) => Answer::Error(error.to_string()),
        };
        let Ok(text) = serde_json::to_string(&answer) else {
            break;
        };
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
            || failed
        {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}
