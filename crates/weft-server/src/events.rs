//! Live progress: one tail of the event log, fanned out to every stream.
//!
//! The [`Hub`] polls the store for events of every run (`seq > last`) and hands each to the
//! subscribers of its run through bounded channels. A subscriber whose channel is full is
//! dropped, not waited for: one slow browser must not hold back the others. Its stream then
//! ends, and the client reconnects with `Last-Event-ID`.
//!
//! A stream never misses an event and never repeats one: it subscribes first, then replays
//! from the store everything after the client's `Last-Event-ID`, then follows the live feed,
//! skipping what the replay already sent (`seq` only grows).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::IntoResponse as _;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use weft_store::Event;
use weft_store::server::ServerStore;

use crate::AppState;
use crate::api::dto::EventBody;
use crate::auth::{Caller, hash_secret, now_ms};
use crate::problem::{ApiResult, Kind, Problem};

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Event>>,
}

struct Inner {
    subscribers: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    buffer: usize,
    wake: Notify,
}

/// The fan-out of the event log to live streams. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A live feed of one run's events; unsubscribes when dropped.
pub struct Subscription {
    hub: Hub,
    run_id: String,
    id: u64,
    pub rx: mpsc::Receiver<Arc<Event>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.hub.inner.subscribers.lock()
            && let Some(list) = subs.get_mut(&self.run_id)
        {
            list.retain(|s| s.id != self.id);
            if list.is_empty() {
                subs.remove(&self.run_id);
            }
        }
    }
}

impl Hub {
    pub fn new(buffer: usize) -> Self {
        Hub {
            inner: Arc::new(Inner {
                subscribers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                buffer: buffer.max(1),
                wake: Notify::new(),
            }),
        }
    }

    /// Tells the tail to look for new events now (after the API changed a run).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn subscribe(&self, run_id: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.inner.buffer);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subs) = self.inner.subscribers.lock() {
            subs.entry(run_id.to_string())
                .or_default()
                .push(Subscriber { id, tx });
        }
        Subscription {
            hub: self.clone(),
            run_id: run_id.to_string(),
            id,
            rx,
        }
    }

    /// How many streams are open.
    pub fn subscribers(&self) -> usize {
        self.inner
            .subscribers
            .lock()
            .map(|s| s.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Hands events to their runs' subscribers; one whose buffer is full is dropped.
    pub fn publish(&self, events: &[Event]) {
        let Ok(mut subs) = self.inner.subscribers.lock() else {
            return;
        };
        for event in events {
            let Some(list) = subs.get_mut(&event.run_id) else {
                continue;
            };
            let event = Arc::new(event.clone());
            list.retain(|s| match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("weft_sse_lagged_disconnects_total").increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        subs.retain(|_, list| !list.is_empty());
    }

    /// Follows the event log until `shutdown`, publishing each new event and feeding metrics.
    /// At shutdown every subscriber is dropped, so open streams end.
    pub async fn tail(
        self,
        store: Arc<dyn ServerStore>,
        poll: Duration,
        shutdown: CancellationToken,
    ) {
        let mut last = loop {
            match store.last_event_seq().await {
                Ok(seq) => break seq,
                Err(error) => {
                    tracing::warn!(%error, "Cannot read the event log; retrying.");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            loop {
                match store.events_since(last, 1000).await {
                    Ok(batch) => {
                        let Some(tail) = batch.last() else { break };
                        last = tail.seq;
                        self.publish(&batch);
                        if batch.len() < 1000 {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Cannot read new events.");
                        break;
                    }
                }
            }
        }
        if let Ok(mut subs) = self.inner.subscribers.lock() {
            subs.clear();
        }
    }
}

/// Who may read a stream: an API key's tenant, or a ticket for exactly this run.
async fn stream_caller(
    state: &AppState,
    parts: &mut Parts,
    run_id: &str,
    ticket: Option<&str>,
) -> ApiResult<String> {
    if let Some(ticket) = ticket {
        let found = state
            .store
            .take_ticket(&hash_secret(ticket), now_ms())
            .await?;
        let result = if found.as_ref().is_some_and(|t| t.run_id == run_id) {
            "accepted"
        } else {
            "refused"
        };
        metrics::counter!("weft_stream_tickets_total", "result" => result).increment(1);
        return match found {
            Some(t) if t.run_id == run_id => Ok(t.tenant),
            Some(_) => Err(Problem::not_found("run", run_id)),
            None => Err(Problem::new(
                Kind::Unauthorized,
                "unknown, used or expired stream ticket; ask for a new one with \
                 POST /v1/runs/{id}/stream-tickets",
            )),
        };
    }
    use axum::extract::FromRequestParts;
    Ok(Caller::from_request_parts(parts, state).await?.tenant)
}

fn parse_after(text: &str, field: &str) -> ApiResult<i64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            Problem::field(
                Kind::Validation,
                field,
                "must be an event id (seq), 0 or more",
            )
        })
}

/// The run's events as Server-Sent Events, from the start or after `Last-Event-ID`.
///
/// Each event's `id:` is its `seq` and its `data:` the JSON of the event. Comments without an
/// `id:` are heartbeats. The stream ends at the run's current end: after the replay when the
/// run has ended, else after the terminal event that follows (an end before a `run.resumed`
/// does not end it), with one last event named `output` (`{status, output, output_html}`,
/// no `id:`). A client that falls
/// too far behind is disconnected and reconnects with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    security(("bearer" = []), ()),
    params(
        ("id" = String, Path, description = "The run id"),
        crate::api::dto::EventsParams,
        ("Last-Event-ID" = Option<String>, Header, pattern = "^[0-9]*$",
            description = "The last seq the client has; replay starts after it"),
    ),
    responses(
        (status = 200, description = "An event stream of EventBody", content_type = "text/event-stream", body = EventBody),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn stream_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<axum::response::Response> {
    let (mut parts, _) = request.into_parts();
    for name in params.keys() {
        if name != "after" && name != "ticket" {
            return Err(Problem::field(
                Kind::Validation,
                name.clone(),
                "unknown parameter; expected after or ticket",
            ));
        }
    }
    let tenant = stream_caller(
        &state,
        &mut parts,
        &id,
        params.get("ticket").map(String::as_str),
    )
    .await?;
    if state.store.run(&tenant, &id).await?.is_none() {
        return Err(Problem::not_found("run", &id));
    }
    let mut after = match params.get("after") {
        Some(a) => parse_after(a, "after")?,
        None => 0,
    };
    // EventSource sends the header only when it has an id; an empty one means none.
    if let Some(value) = headers.get("last-event-id").filter(|v| !v.is_empty()) {
        let text = value.to_str().unwrap_or("x");
        after = parse_after(text, "Last-Event-ID")?;
    }
    let subscription = state.hub.subscribe(&id);
    let (tx, rx) = mpsc::channel::<SseEvent>(state.options.sse_buffer.max(1));
    tokio::spawn(forward(
        state.store.clone(),
        tenant,
        id,
        after,
        subscription,
        tx,
    ));
    metrics::gauge!("weft_sse_streams").increment(1.0);
    let stream = futures::stream::unfold((rx, StreamGuard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), (rx, guard)))
    });
    let heartbeat = Duration::from_millis(state.options.heartbeat_ms.max(10));
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response();
    // The `<weft-run>` widget runs on the embedding app's origin. Streams carry no cookies and
    // are authorised by a header or a ticket, so any origin may read them.
    response.headers_mut().insert(
        axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    Ok(response)
}

/// Counts open streams; dropped with the response stream.
struct StreamGuard;

impl Drop for StreamGuard {
    fn drop(&mut self) {
        metrics::gauge!("weft_sse_streams").decrement(1.0);
    }
}

fn sse_event(event: &Event) -> SseEvent {
    let body = EventBody::from(event);
    SseEvent::default()
        .id(event.seq.to_string())
        .data(serde_json::to_string(&body).unwrap_or_default())
}

/// Replays what the client missed, then follows the live feed until the run ends, the client
/// goes away or the hub drops this subscriber for being too slow.
async fn forward(
    store: Arc<dyn ServerStore>,
    tenant: String,
    run_id: String,
    mut last: i64,
    mut subscription: Subscription,
    tx: mpsc::Sender<SseEvent>,
) {
    // Replay. The subscription is already open, so nothing committed from here on is lost.
    let mut checked_end = false;
    loop {
        let page = match store.events(&run_id, last, 500).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, run_id, "Cannot replay events.");
                return;
            }
        };
        if page.is_empty() {
            if checked_end {
                break;
            }
            // The run's end and its terminal event commit together: if it has ended, one more
            // page read now holds everything, and the stream can close after it.
            match store.run(&tenant, &run_id).await {
                Ok(Some(run)) if run.status.is_terminal() => {
                    checked_end = true;
                    continue;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, run_id, "Cannot read the run.");
                    return;
                }
            }
        }
        // An end in the replay is not the run's end when a `run.resumed` follows it: the
        // stream ends only at the run's current end (checked above once the replay is done).
        for event in &page {
            last = event.seq;
            if tx.send(sse_event(event)).await.is_err() {
                return;
            }
        }
    }
    if checked_end {
        send_output(store.as_ref(), &tenant, &run_id, &tx).await;
        return;
    }
    // Live.
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return,
            event = subscription.rx.recv() => event,
        };
        let Some(event) = event else {
            // Dropped for lagging, or the server is stopping: end; the client reconnects.
            return;
        };
        if event.seq <= last {
            continue;
        }
        last = event.seq;
        if tx.send(sse_event(&event)).await.is_err() {
            return;
        }
        if event.kind.ends_run() {
            send_output(store.as_ref(), &tenant, &run_id, &tx).await;
            return;
        }
    }
}

/// The run's end as one last SSE event named `output` (no `id:`: it is not in the log):
/// `{status, output, output_html}`, so a page holding only a stream ticket (`<weft-run>`)
/// can show what the run produced.
async fn send_output(
    store: &dyn ServerStore,
    tenant: &str,
    run_id: &str,
    tx: &mpsc::Sender<SseEvent>,
) {
    let Ok(Some(run)) = store.run(tenant, run_id).await else {
        return;
    };
    let body = serde_json::json!({
        "status": run.status.as_str(),
        "output": run.output,
        "output_html": crate::api::steps::html_of(run.output.as_ref()),
    });
    let _ = tx
        .send(SseEvent::default().event("output").data(body.to_string()))
        .await;
}
