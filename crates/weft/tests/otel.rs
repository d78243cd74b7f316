//! OpenTelemetry traces as a collector sees them. With `--features otel`, `weft run
//! --otlp-endpoint` posts OTLP/HTTP protobuf to a receiver in this test, which decodes the
//! `ExportTraceServiceRequest`s: one trace for the run, a span per step attempt (a retried step
//! has two) under the run's span, a tool-call span under each attempt, all carrying the run id,
//! template and tenant. Without the feature the flag is refused with a clear error.
//!
//! `cargo test -p weft --features otel --test otel`

use std::path::Path;
use std::process::Command;

fn weft(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONFIG")
        .env_remove("WEFT_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("NO_COLOR", "1");
    cmd
}

const TEMPLATE: &str = r#"name: otel-demo
version: 1
steps:
  - id: first
    tool: command
    with: { argv: [sh, -c, 'echo "{\"n\": 1}"'] }
  - id: flaky
    tool: command
    retry: { max_attempts: 2, backoff: { type: fixed, initial: 10ms } }
    with:
      argv: [sh, -c, 'if [ "$WEFT_ATTEMPT" -lt 2 ]; then echo "warming up" >&2; exit 1; fi; echo "{\"ready\": true}"']
output: "{{ steps.flaky.output.ready }}"
"#;

#[cfg(not(feature = "otel"))]
#[test]
fn otlp_endpoint_without_the_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.yaml"), TEMPLATE).expect("template");
    let out = weft(dir.path())
        .args(["--otlp-endpoint", "http://127.0.0.1:4318", "run", "t.yaml"])
        .output()
        .expect("weft");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("built without the `otel` feature") && stderr.contains("--features otel"),
        "{stderr}"
    );
    // The same from weft.toml.
    std::fs::write(
        dir.path().join("weft.toml"),
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
    )
    .expect("weft.toml");
    let out = weft(dir.path())
        .args(["run", "t.yaml"])
        .output()
        .expect("weft");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without the `otel` feature"));
}

#[cfg(feature = "otel")]
mod with_otel {
    use std::collections::HashMap;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use prost::Message as _;

    use super::*;

    /// What the receiver got: (path, content type, body) per request.
    type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

    /// Answers one connection's requests (HTTP/1.1 keep-alive) with an empty 200.
    fn serve_connection(stream: TcpStream, received: Received) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line)? == 0 {
                return Ok(());
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            let content_type = headers.get("content-type").cloned().unwrap_or_default();
            if let Ok(mut all) = received.lock() {
                all.push((path, content_type, body));
            }
            writer.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            )?;
        }
    }

    /// A small OTLP/HTTP receiver on a free port.
    fn receiver() -> (String, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let received: Received = Arc::default();
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve_connection(stream, sink));
            }
        });
        (addr, received)
    }

    fn attr(span: &Span, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                other => format!("{other:?}"),
            })
    }

    #[test]
    fn a_run_is_one_trace_with_step_attempt_and_tool_call_spans() {
        let (addr, received) = receiver();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.yaml"), TEMPLATE).expect("template");
        let out = weft(dir.path())
            .args([
                "--otlp-endpoint",
                &format!("http://{addr}"),
                "--json",
                "run",
                "t.yaml",
            ])
            .output()
            .expect("weft");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let run_id = doc["id"].as_str().expect("run id").to_string();

        // The exporter flushed before the process exited.
        let requests = received.lock().expect("received").clone();
        assert!(!requests.is_empty(), "no OTLP request arrived");
        let mut spans: Vec<Span> = Vec::new();
        for (path, content_type, body) in &requests {
            assert_eq!(path, "/v1/traces");
            assert_eq!(content_type, "application/x-protobuf");
            let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
            for rs in request.resource_spans {
                let resource = rs.resource.expect("resource");
                let service = resource
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| v.value.as_ref());
                assert_eq!(service, Some(&AnyValue::StringValue("weft".into())));
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        let count = |name: &str| names.iter().filter(|n| **n == name).count();
        assert_eq!(count("run otel-demo"), 1, "{names:?}");
        assert_eq!(count("step first"), 1, "{names:?}");
        assert_eq!(
            count("step flaky"),
            2,
            "a retried step has a span per attempt: {names:?}"
        );
        assert_eq!(count("tool command"), 3, "{names:?}");
        assert_eq!(spans.len(), 7, "{names:?}");

        // One trace; every span names the run, template and tenant.
        let trace = &spans[0].trace_id;
        for s in &spans {
            assert_eq!(&s.trace_id, trace, "one trace per run");
            assert_eq!(attr(s, "weft.run.id").as_deref(), Some(run_id.as_str()));
            assert_eq!(attr(s, "weft.template").as_deref(), Some("otel-demo"));
            assert_eq!(attr(s, "weft.tenant").as_deref(), Some("default"));
            assert!(s.start_time_unix_nano <= s.end_time_unix_nano, "{}", s.name);
        }

        // Step attempts hang under the run, tool calls under their attempt.
        let run = spans
            .iter()
            .find(|s| s.name == "run otel-demo")
            .expect("run");
        assert!(run.parent_span_id.is_empty(), "the run span is the root");
        let steps: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name.starts_with("step "))
            .collect();
        for step in &steps {
            assert_eq!(step.parent_span_id, run.span_id, "{}", step.name);
            let tools: Vec<&Span> = spans
                .iter()
                .filter(|t| t.name == "tool command" && t.parent_span_id == step.span_id)
                .collect();
            assert_eq!(tools.len(), 1, "one tool call under {}", step.name);
            assert_eq!(attr(tools[0], "weft.tool").as_deref(), Some("command"));
            assert_eq!(attr(tools[0], "weft.attempt"), attr(step, "weft.attempt"));
        }
        let flaky = |attempt: &str| {
            steps
                .iter()
                .find(|s| {
                    s.name == "step flaky" && attr(s, "weft.attempt").as_deref() == Some(attempt)
                })
                .unwrap_or_else(|| panic!("flaky attempt {attempt}"))
        };
        let failed = flaky("1").status.clone().expect("status");
        assert_eq!(failed.code, StatusCode::Error as i32);
        assert!(failed.message.contains("warming up"), "{}", failed.message);
        assert_eq!(attr(flaky("1"), "weft.status").as_deref(), Some("retrying"));
        let ok = flaky("2").status.clone().expect("status");
        assert_eq!(ok.code, StatusCode::Ok as i32);
        assert_eq!(
            run.status.clone().expect("status").code,
            StatusCode::Ok as i32
        );
    }
}
