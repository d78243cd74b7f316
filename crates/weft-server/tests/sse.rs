//! Live progress over a real socket: replay with `Last-Event-ID` and `?after=` with no gap
//! and no duplicate, heartbeats, the end after the terminal event, tickets, and slow
//! subscribers being dropped.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use serde_json::{Value, json};
use weft_server::ServerOptions;

#[derive(Debug, Default)]
struct Frame {
    id: Option<i64>,
    data: Option<Value>,
    comment: bool,
}

/// Reads an SSE response frame by frame.
struct Reader {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Reader {
    async fn open(url: &str, headers: &[(&str, String)]) -> (u16, Reader) {
        let client = reqwest::Client::new();
        let mut req = client.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.expect("connect");
        let status = res.status().as_u16();
        (
            status,
            Reader {
                stream: Box::pin(res.bytes_stream()),
                buf: String::new(),
            },
        )
    }

    /// The next frame, or None when the server ended the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        frame.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        frame.data = serde_json::from_str(v.trim()).ok();
                    } else if line.starts_with(':') {
                        frame.comment = true;
                    }
                }
                return Some(frame);
            }
            match tokio::time::timeout(Duration::from_secs(30), self.stream.next()).await {
                Ok(Some(Ok(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) => return None,
                Err(_) => panic!("the stream stalled"),
            }
        }
    }

    /// Event ids (skipping heartbeats) until the stream ends.
    async fn rest(&mut self) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        while let Some(f) = self.next().await {
            if let (Some(id), Some(data)) = (f.id, f.data) {
                out.push((id, data["kind"].as_str().unwrap_or_default().to_string()));
            }
        }
        out
    }
}

fn auth(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

async fn post_run(base: &str, key: &str, template: &str, inputs: Value) -> String {
    let res = reqwest::Client::new()
        .post(format!("{base}/v1/runs"))
        .header("authorization", format!("Bearer {key}"))
        .json(&json!({"template": template, "inputs": inputs}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let srv = serve(
        harness(ServerOptions {
            metrics_token: Some("operator-metrics-token".into()),
            ..ServerOptions::default()
        })
        .await,
    )
    .await;
    let run = post_run(&srv.base, &srv.key_a, "steps", json!({"pause": "250ms"})).await;
    let url = format!("{}/v1/runs/{run}/events", srv.base);

    let (status, mut first) = Reader::open(&url, &[auth(&srv.key_a)]).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let f = first.next().await.expect("frame");
        if let Some(id) = f.id {
            seen.push(id);
        }
    }
    drop(first);
    // Events happen while the client is away.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = *seen.last().unwrap();
    let (_, mut second) = Reader::open(
        &url,
        &[auth(&srv.key_a), ("last-event-id", last.to_string())],
    )
    .await;
    let rest = second.rest().await;
    assert_eq!(
        rest.last().map(|(_, k)| k.as_str()),
        Some("run.succeeded"),
        "ends after the terminal event"
    );
    seen.extend(rest.iter().map(|(id, _)| *id));

    let stored: Vec<i64> = srv
        .store
        .events(&run, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen, stored, "no gap, no duplicate");

    // `?after=` replays the same way, and a stream of an ended run closes after its replay.
    let middle = stored[stored.len() / 2];
    let (_, mut third) = Reader::open(&format!("{url}?after={middle}"), &[auth(&srv.key_a)]).await;
    let tail: Vec<i64> = third.rest().await.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        tail,
        stored
            .iter()
            .copied()
            .filter(|s| *s > middle)
            .collect::<Vec<_>>()
    );
    let (_, mut fourth) = Reader::open(
        &url,
        &[
            auth(&srv.key_a),
            ("last-event-id", stored.last().unwrap().to_string()),
        ],
    )
    .await;
    assert!(fourth.rest().await.is_empty());

    // The run shows in the metrics, counted by the engine when it committed the run.
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", srv.base))
        .bearer_auth("operator-metrics-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"weft_runs_finished_total{template="steps",status="succeeded"} "#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"weft_runs{template="steps",status="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_step_duration_seconds_bucket"),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_get_heartbeats_and_tickets_work_once() {
    let srv = serve(
        harness(ServerOptions {
            heartbeat_ms: 100,
            ..ServerOptions::default()
        })
        .await,
    )
    .await;
    let run = post_run(&srv.base, &srv.key_a, "steps", json!({"pause": "5s"})).await;
    let res = reqwest::Client::new()
        .post(format!("{}/v1/runs/{run}/stream-tickets", srv.base))
        .header("authorization", format!("Bearer {}", srv.key_a))
        .send()
        .await
        .unwrap();
    let ticket: Value = res.json().await.unwrap();
    let url = format!("{}{}", srv.base, ticket["events_url"].as_str().unwrap());
    let (status, mut reader) = Reader::open(&url, &[]).await;
    assert_eq!(status, 200);
    let mut heartbeats = 0;
    let mut events = 0;
    while heartbeats < 3 {
        let f = reader.next().await.expect("frame");
        if f.comment {
            assert!(f.id.is_none(), "heartbeats carry no id");
            heartbeats += 1;
        } else {
            events += 1;
        }
    }
    assert!(events >= 2, "run.started and step.started came first");
    let (again, _) = Reader::open(&url, &[]).await;
    assert_eq!(again, 401, "a ticket is single-use");
    srv.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_dropped() {
    let hub = weft_server::Hub::new(4);
    let mut slow = hub.subscribe("run_a");
    let mut fast = hub.subscribe("run_a");
    let event = |seq| weft_store::Event {
        seq,
        run_id: "run_a".into(),
        ts: 0,
        kind: weft_store::EventKind::StepProgress,
        step_id: None,
        item: None,
        attempt: None,
        data: Value::Null,
    };
    for seq in 1..=3 {
        hub.publish(&[event(seq)]);
        assert_eq!(fast.rx.recv().await.unwrap().seq, seq);
    }
    for seq in 4..=10 {
        hub.publish(&[event(seq)]);
        assert_eq!(fast.rx.recv().await.unwrap().seq, seq);
    }
    // The slow one got what fit in its buffer, then its channel closed: it reconnects with
    // Last-Event-ID = 4 and replays the rest from the store.
    let mut got = Vec::new();
    while let Some(e) = slow.rx.recv().await {
        got.push(e.seq);
    }
    assert_eq!(got, vec![1, 2, 3, 4]);
    assert_eq!(hub.subscribers(), 1);
}

/// Issue 13: after a cancelled run was resumed, a fresh stream closed at the old
/// `run.cancelled` while the run went on; it must end at the run's current end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_streams_to_its_new_end_not_the_old_one() {
    let srv = serve(harness(ServerOptions::default()).await).await;
    let run = post_run(&srv.base, &srv.key_a, "steps", json!({"pause": "100ms"})).await;
    let client = reqwest::Client::new();
    for action in ["cancel", "resume"] {
        let res = client
            .post(format!("{}/v1/runs/{run}/{action}", srv.base))
            .header("authorization", format!("Bearer {}", srv.key_a))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{action}: {}", res.status());
    }
    let url = format!("{}/v1/runs/{run}/events", srv.base);
    let (status, mut stream) = Reader::open(&url, &[auth(&srv.key_a)]).await;
    assert_eq!(status, 200);
    let kinds: Vec<String> = stream.rest().await.into_iter().map(|(_, k)| k).collect();
    assert!(kinds.contains(&"run.cancelled".to_string()), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("run.succeeded"),
        "the stream follows the resumed run to its end: {kinds:?}"
    );
    let run = srv
        .store
        .run("alpha", &run)
        .await
        .unwrap()
        .expect("the run");
    assert_eq!(run.status.as_str(), "succeeded");
    srv.stop().await;
}
