//! The CLI's live view of a run, read from the run's event log (the same events SSE serves).
//!
//! On a terminal: a status line with step i/n, fan-out items done/total, retries and elapsed
//! time, and one line per finished step. Piped: plain lines, one per event worth telling (a
//! fan-out's items count at most once a second, and when it completes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use weft_store::{Event, EventKind, Store};

struct View {
    bar: Option<ProgressBar>,
    steps: Vec<String>,
    current: Option<String>,
    items: Option<(u64, u64)>,
    retries: u64,
    started: Instant,
    /// When the last piped items line was printed: at most one a second (and the last one).
    items_said: Option<Instant>,
    quiet: bool,
    /// Step errors already printed, so the run's end does not print them again.
    told: Vec<String>,
    /// When the run started (its first `run.started`, store clock, ms).
    run_started: Option<i64>,
    /// The run's latest end read so far (`succeeded`, its time, its error): the current end only once no
    /// `run.resumed` follows it.
    ended: Option<(String, i64, Option<String>)>,
}

impl View {
    fn say(&self, line: String) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn position(&self, step: &str) -> String {
        match self.steps.iter().position(|s| s == step) {
            Some(i) => format!("{}/{}", i + 1, self.steps.len()),
            None => "?".into(),
        }
    }

    fn refresh(&self) {
        let Some(bar) = &self.bar else { return };
        let mut msg = match &self.current {
            Some(step) => format!("[{}] {step}", self.position(step)),
            None => "starting".into(),
        };
        if let Some((done, total)) = self.items {
            msg.push_str(&format!(" · {done}/{total} items"));
        }
        if self.retries > 0 {
            msg.push_str(&format!(" · {} retries", self.retries));
        }
        msg.push_str(&format!(" · {:.1}s", self.started.elapsed().as_secs_f64()));
        bar.set_message(msg);
    }

    /// Takes one event into the view.
    fn apply(&mut self, e: &Event) {
        let step = e.step_id.clone().unwrap_or_default();
        let d = &e.data;
        match e.kind {
            EventKind::RunStarted => {
                self.run_started.get_or_insert(e.ts);
                self.steps = d["steps"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                self.say(format!(
                    "run {} · {} v{} · {} steps",
                    e.run_id,
                    d["template"].as_str().unwrap_or("?"),
                    d["version"].as_str().unwrap_or("?"),
                    self.steps.len()
                ));
            }
            EventKind::StepStarted => {
                self.current = Some(step.clone());
                self.items = d["items"].as_u64().map(|n| (0, n));
                if self.bar.is_none() {
                    let what = match self.items {
                        Some((_, n)) => format!(" ({n} items)"),
                        None => String::new(),
                    };
                    self.say(format!("[{}] {step} started{what}", self.position(&step)));
                }
            }
            EventKind::StepProgress => {
                if let (Some(done), Some(total)) = (d["done"].as_u64(), d["total"].as_u64()) {
                    let failed = d["failed"].as_u64().unwrap_or(0);
                    self.items = Some((done + failed, total));
                    let due = self
                        .items_said
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
                    if self.bar.is_none() && (due || done + failed >= total) {
                        self.items_said = Some(Instant::now());
                        self.say(format!(
                            "[{}] {step}: {}/{total} items",
                            self.position(&step),
                            done + failed
                        ));
                    }
                }
            }
            EventKind::TaskRetrying
                if matches!(d["reason"].as_str(), Some("lease_expired" | "shutdown")) =>
            {
                // Not a failure of the step: its worker was lost, and the try is not spent.
                let item = e.item.map(|i| format!("[{i}]")).unwrap_or_default();
                let why = match d["reason"].as_str() {
                    Some("shutdown") => "its worker stopped",
                    _ => "its worker stopped answering",
                };
                self.say(format!(
                    "  ↻ {step}{item} attempt {} was cut off ({why}); running it again",
                    e.attempt.unwrap_or(0),
                ));
            }
            EventKind::TaskRetrying => {
                self.retries += 1;
                let item = e.item.map(|i| format!("[{i}]")).unwrap_or_default();
                self.say(format!(
                    "  ↻ {step}{item} attempt {} failed ({}), retrying in {}ms: {}",
                    e.attempt.unwrap_or(0),
                    d["reason"].as_str().unwrap_or("error"),
                    d["delay_ms"].as_i64().unwrap_or(0),
                    d["error"].as_str().unwrap_or("")
                ));
            }
            EventKind::TaskCacheHit => {}
            EventKind::ApprovalRequested => {
                let item = e.item.map(|i| format!(" --item {i}")).unwrap_or_default();
                let prompt = d["prompt"].as_str().unwrap_or("approve?");
                let mut line = format!("⏸ [{}] {step}: {prompt}", self.position(&step));
                if let Some(at) = d["timeout_at"].as_str() {
                    line.push_str(&format!(" (times out {at})"));
                }
                line.push_str(&format!(
                    "\n    weft runs approve {} {step}{item}   (or --reject)",
                    e.run_id
                ));
                self.say(line);
            }
            EventKind::ApprovalDecided => {
                let item = e.item.map(|i| format!("[{i}]")).unwrap_or_default();
                let word = if d["approved"].as_bool() == Some(true) {
                    "approved"
                } else {
                    "rejected"
                };
                self.say(format!(
                    "  {step}{item} {word} by {}",
                    d["by"].as_str().unwrap_or("?")
                ));
            }
            EventKind::WorkflowStarted => {
                let item = e.item.map(|i| format!("[{i}]")).unwrap_or_default();
                self.say(format!(
                    "  ↳ {step}{item} started run {} ({})",
                    d["child_run"].as_str().unwrap_or("?"),
                    d["template"].as_str().unwrap_or("?")
                ));
            }
            EventKind::TaskProgress => {
                if self.bar.is_none()
                    && let Some(message) = d["message"].as_str()
                {
                    let item = e.item.map(|i| format!("[{i}]")).unwrap_or_default();
                    self.say(format!("  … {step}{item}: {message}"));
                }
            }
            EventKind::StepSucceeded
            | EventKind::StepFailed
            | EventKind::StepSkipped
            | EventKind::StepCancelled => {
                let (mark, word) = match e.kind {
                    EventKind::StepSucceeded => ("✓", "succeeded"),
                    EventKind::StepFailed => ("✗", "failed"),
                    EventKind::StepSkipped => ("–", "skipped"),
                    _ => ("⊘", "cancelled"),
                };
                let mut line = format!("{mark} [{}] {step} {word}", self.position(&step));
                if let Some(ms) = d["duration_ms"].as_i64() {
                    line.push_str(&format!(" in {ms}ms"));
                }
                if let Some(n) = d["items"].as_u64().filter(|n| *n > 0) {
                    line.push_str(&format!(" · {n} items"));
                }
                if let Some(n) = d["cache_hits"].as_u64().filter(|n| *n > 0) {
                    line.push_str(&format!(" · {n} from cache"));
                }
                if let Some(a) = d["attempts"].as_u64().filter(|a| *a > 1) {
                    line.push_str(&format!(" · {a} attempts"));
                }
                if let Some(err) = d["error"].as_str().filter(|e| !e.is_empty()) {
                    line.push_str(&format!(": {err}"));
                    self.told.push(err.to_string());
                }
                self.say(line);
                if self.current.as_deref() == Some(step.as_str()) {
                    self.items = None;
                }
            }
            EventKind::RunSucceeded | EventKind::RunFailed | EventKind::RunCancelled => {
                self.ended = Some((
                    e.kind.run_end().map_or("ended", |s| s.as_str()).to_string(),
                    e.ts,
                    d["error"].as_str().map(String::from),
                ));
            }
            EventKind::RunResumed if self.ended.take().is_some() => {
                self.say(format!("run {} resumed", e.run_id));
            }
            _ => {}
        }
    }

    /// Says how the run ended, and how long it ran by the store's clock (not how long this
    /// view watched it).
    fn say_end(&self) {
        let Some((word, at, error)) = &self.ended else {
            return;
        };
        let ms = self.run_started.map_or(0, |s| (at - s).max(0));
        let mut line = format!("run {word} in {:.2}s", ms as f64 / 1000.0);
        // The one message about why: a step's error is on its line above already.
        if let Some(error) = error.as_deref().filter(|e| !e.is_empty()) {
            let short = self
                .told
                .iter()
                .find_map(|t| error.strip_suffix(t.as_str()))
                .map(|head| head.trim_end().trim_end_matches(':'))
                .unwrap_or(error);
            line.push_str(&format!(": {short}"));
        }
        self.say(line);
    }
}

/// Follows a run's events until it ends (or `stop` fires).
pub async fn watch(
    store: &dyn Store,
    run_id: &str,
    quiet: bool,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal() && !quiet;
    let bar = tty.then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let mut view = View {
        bar,
        steps: Vec::new(),
        current: None,
        items: None,
        retries: 0,
        started: Instant::now(),
        items_said: None,
        quiet,
        told: Vec::new(),
        run_started: None,
        ended: None,
    };
    const PAGE: u32 = 2000;
    let mut after = 0;
    let mut delay = Duration::from_millis(2);
    loop {
        let events = store.events(run_id, after, PAGE).await?;
        for e in &events {
            after = e.seq;
            view.apply(e);
        }
        view.refresh();
        // The run's current end: the last page read everything committed, and no
        // `run.resumed` came after the end (a resumed run's old end is not its end).
        if events.len() < PAGE as usize && view.ended.is_some() {
            view.say_end();
            break;
        }
        if events.is_empty() {
            delay = (delay * 2).min(Duration::from_millis(50));
        } else {
            delay = Duration::from_millis(2);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Some(bar) = &view.bar {
        bar.finish_and_clear();
    }
    Ok(())
}
