//! `http`: against a real local HTTP server, with and without the allow-list.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_tools::builtin::ssrf::classify;
use weft_tools::config::HttpConfig;
use weft_tools::{Context, Error, Registry, ToolsConfig};

/// A tiny HTTP/1.1 server with fixed routes; each connection serves one request.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream, addr));
        }
    });
    addr
}

async fn handle(mut stream: TcpStream, addr: SocketAddr) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[header_end..]).to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();

    let (status, extra, content_type, payload): (&str, String, &str, String) = match path.as_str() {
        "/json" => (
            "200 OK",
            String::new(),
            "application/json",
            r#"{"ok":true,"n":[1,2]}"#.into(),
        ),
        "/text" => (
            "200 OK",
            "x-multi: a\r\nx-multi: b\r\n".into(),
            "text/plain",
            "hello\n".into(),
        ),
        "/bad-json" => (
            "200 OK",
            String::new(),
            "application/json",
            "{not json".into(),
        ),
        "/echo" => {
            let echo = json!({
                "method": method,
                "target": target,
                "content_type": header("content-type"),
                "authorization": header("authorization"),
                "x_token": header("x-token"),
                "body": body,
            });
            (
                "200 OK",
                String::new(),
                "application/json; charset=utf-8",
                echo.to_string(),
            )
        }
        "/to-json" => (
            "302 Found",
            "location: /json\r\n".into(),
            "text/plain",
            String::new(),
        ),
        "/see-other" => (
            "303 See Other",
            "location: /echo\r\n".into(),
            "text/plain",
            String::new(),
        ),
        "/loop" => (
            "302 Found",
            "location: /loop\r\n".into(),
            "text/plain",
            String::new(),
        ),
        "/to-loopback" => (
            "302 Found",
            format!("location: http://127.0.0.1:{}/json\r\n", addr.port()),
            "text/plain",
            String::new(),
        ),
        "/to-localhost-echo" => (
            "302 Found",
            format!("location: http://localhost:{}/echo\r\n", addr.port()),
            "text/plain",
            String::new(),
        ),
        "/big" => ("200 OK", String::new(), "text/plain", "x".repeat(5000)),
        "/e404" => (
            "404 Not Found",
            String::new(),
            "text/plain",
            "no such page".into(),
        ),
        "/e429" => (
            "429 Too Many Requests",
            String::new(),
            "text/plain",
            "slow down".into(),
        ),
        "/e500" => (
            "500 Internal Server Error",
            String::new(),
            "text/plain",
            "boom".into(),
        ),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ("200 OK", String::new(), "text/plain", "late".into())
        }
        _ => (
            "404 Not Found",
            String::new(),
            "text/plain",
            "unknown route".into(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{payload}",
        payload.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn registry(allow: &[&str]) -> Registry {
    let config = ToolsConfig {
        http: HttpConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            max_response_bytes: 1000,
            ..HttpConfig::default()
        },
        ..ToolsConfig::default()
    };
    Registry::with_builtins(&config)
}

async fn call(registry: &Registry, input: Value) -> Result<Value, Error> {
    registry
        .get("http")
        .expect("http is built in")
        .call(input, &Context::for_test())
        .await
}

#[tokio::test]
async fn json_and_text_responses() {
    let addr = serve().await;
    let tools = registry(&["127.0.0.1"]);
    let output = call(&tools, json!({"url": format!("http://{addr}/json")}))
        .await
        .expect("json");
    assert_eq!(output["status"], json!(200));
    assert_eq!(output["json"], json!({"ok": true, "n": [1, 2]}));
    assert_eq!(output["headers"]["content-type"], json!("application/json"));
    assert!(output.get("text").is_none());

    let output = call(&tools, json!({"url": format!("http://{addr}/text")}))
        .await
        .expect("text");
    assert_eq!(output["text"], json!("hello\n"));
    assert_eq!(output["headers"]["x-multi"], json!("a, b"));

    let output = call(&tools, json!({"url": format!("http://{addr}/bad-json")}))
        .await
        .expect("bad json is text");
    assert_eq!(output["text"], json!("{not json"));
}

#[tokio::test]
async fn method_query_headers_and_bodies_reach_the_server() {
    let addr = serve().await;
    let tools = registry(&[&format!("127.0.0.1:{}", addr.port())]);
    let output = call(
        &tools,
        json!({
            "url": format!("http://{addr}/echo?keep=1"),
            "method": "post",
            "headers": {"X-Token": "t1"},
            "query": {"q": "a b", "n": 3, "tag": ["x", "y"]},
            "json": {"name": "Ada"}
        }),
    )
    .await
    .expect("echo");
    let echo = &output["json"];
    assert_eq!(echo["method"], json!("POST"));
    assert_eq!(echo["target"], json!("/echo?keep=1&q=a+b&n=3&tag=x&tag=y"));
    assert_eq!(echo["content_type"], json!("application/json"));
    assert_eq!(echo["x_token"], json!("t1"));
    assert_eq!(echo["body"], json!(r#"{"name":"Ada"}"#));

    let output = call(
        &tools,
        json!({"url": format!("http://{addr}/echo"), "method": "PUT", "body": "raw text"}),
    )
    .await
    .expect("raw body");
    assert_eq!(output["json"]["body"], json!("raw text"));
    assert_eq!(output["json"]["method"], json!("PUT"));
}

#[tokio::test]
async fn configured_headers_go_to_their_host_only() {
    let addr = serve().await;
    let port = addr.port();
    let mut headers = std::collections::BTreeMap::new();
    // Cargo sets CARGO_PKG_NAME for the test process: a variable that is surely there.
    headers.insert(
        format!("127.0.0.1:{port}"),
        [("X-Token".to_string(), "key-${CARGO_PKG_NAME}".to_string())].into(),
    );
    headers.insert(
        "missing.example".to_string(),
        [(
            "X-Token".to_string(),
            "${WEFT_TEST_SURELY_UNSET_VAR}".to_string(),
        )]
        .into(),
    );
    let tools = Registry::with_builtins(&ToolsConfig {
        http: HttpConfig {
            allow: vec!["127.0.0.1".into(), "localhost".into()],
            headers,
            ..HttpConfig::default()
        },
        ..ToolsConfig::default()
    });
    // The configured value wins over the step's, and is not part of the output.
    let output = call(
        &tools,
        json!({"url": format!("http://127.0.0.1:{port}/echo"), "headers": {"X-Token": "from-step"}}),
    )
    .await
    .expect("echo");
    assert_eq!(output["json"]["x_token"], json!("key-weft-tools"));
    // Another host (the same server by name) does not get it, nor does a redirect to it.
    let output = call(
        &tools,
        json!({"url": format!("http://localhost:{port}/echo")}),
    )
    .await
    .expect("echo by name");
    assert_eq!(output["json"]["x_token"], Value::Null);
    let output = call(
        &tools,
        json!({"url": format!("http://127.0.0.1:{port}/to-localhost-echo")}),
    )
    .await
    .expect("redirected");
    assert_eq!(output["json"]["x_token"], Value::Null);
    // An unset variable is a permanent error that names it.
    let error = call(&tools, json!({"url": "http://missing.example/"}))
        .await
        .expect_err("unset variable");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(
        error.to_string().contains("WEFT_TEST_SURELY_UNSET_VAR"),
        "{error}"
    );
}

#[tokio::test]
async fn redirects_are_followed_and_bounded() {
    let addr = serve().await;
    let tools = registry(&["127.0.0.1"]);
    let output = call(&tools, json!({"url": format!("http://{addr}/to-json")}))
        .await
        .expect("followed");
    assert_eq!(output["json"]["ok"], json!(true));

    // 303 after a POST: the next hop is a GET without the body.
    let output = call(
        &tools,
        json!({"url": format!("http://{addr}/see-other"), "method": "POST", "json": {"a": 1}}),
    )
    .await
    .expect("see other");
    assert_eq!(output["json"]["method"], json!("GET"));
    assert_eq!(output["json"]["body"], json!(""));

    let error = call(&tools, json!({"url": format!("http://{addr}/loop")}))
        .await
        .expect_err("loop");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(
        error.to_string().contains("redirected more than 5 times"),
        "{error}"
    );
}

#[tokio::test]
async fn loopback_is_refused_without_the_allow_list() {
    let addr = serve().await;
    let tools = registry(&[]);
    let error = call(&tools, json!({"url": format!("http://{addr}/json")}))
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(!error.is_transient());
    assert_eq!(
        error.to_string(),
        "refused: 127.0.0.1 is a loopback address; allow it with [http] allow = [\"127.0.0.1\"] in weft.toml"
    );

    // A name goes through the guarded resolver.
    let error = call(
        &tools,
        json!({"url": format!("http://localhost:{}/json", addr.port())}),
    )
    .await
    .expect_err("refused");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.starts_with("refused: localhost resolves to"), "{text}");
    assert!(text.contains("a loopback address"), "{text}");

    // The IPv4-mapped form of 127.0.0.1 is the same address.
    let error = call(
        &tools,
        json!({"url": format!("http://[::ffff:127.0.0.1]:{}/json", addr.port())}),
    )
    .await
    .expect_err("refused");
    assert!(error.to_string().contains("a loopback address"), "{error}");
}

#[tokio::test]
async fn a_redirect_to_loopback_is_refused() {
    let addr = serve().await;
    // Only the name is allowed; the redirect's target, 127.0.0.1, is not.
    let tools = registry(&[&format!("localhost:{}", addr.port())]);
    let output = call(
        &tools,
        json!({"url": format!("http://localhost:{}/json", addr.port())}),
    )
    .await
    .expect("the allowed name works");
    assert_eq!(output["status"], json!(200));

    let error = call(
        &tools,
        json!({"url": format!("http://localhost:{}/to-loopback", addr.port())}),
    )
    .await
    .expect_err("redirect refused");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("refused: 127.0.0.1 is a loopback address"),
        "{error}"
    );
}

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_before_connecting() {
    let tools = registry(&[]);
    for (url, kind) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "a link-local address",
        ),
        ("http://10.0.0.1/", "a private address"),
        ("http://192.168.1.1:8080/", "a private address"),
        ("http://100.64.0.1/", "a shared (CGNAT) address"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("http://[fd00::1]/", "a private (unique local) address"),
        ("http://2130706433/", "a loopback address"),
    ] {
        let error = call(&tools, json!({"url": url})).await.expect_err(url);
        assert!(matches!(error, Error::Permanent(_)), "{url}: {error:?}");
        assert!(error.to_string().contains(kind), "{url}: {error}");
    }
}

#[test]
fn address_classes() {
    let kind = |ip: &str| classify(ip.parse::<IpAddr>().expect("ip"));
    assert_eq!(kind("8.8.8.8"), None);
    assert_eq!(kind("2606:4700::1111"), None);
    assert_eq!(kind("127.0.0.2"), Some("a loopback address"));
    assert_eq!(kind("::1"), Some("a loopback address"));
    assert_eq!(kind("::"), Some("an unspecified address"));
    assert_eq!(kind("172.16.5.4"), Some("a private address"));
    assert_eq!(kind("172.32.0.1"), None);
    assert_eq!(kind("fe80::1"), Some("a link-local address"));
    assert_eq!(kind("224.0.0.1"), Some("a multicast address"));
    assert_eq!(kind("ff02::1"), Some("a multicast address"));
    assert_eq!(kind("::ffff:10.1.2.3"), Some("a private address"));
    assert_eq!(kind("::ffff:8.8.8.8"), None);
    assert_eq!(kind("64:ff9b::a9fe:a9fe"), Some("a link-local address"));
    assert_eq!(kind("2002:7f00:1::"), Some("a loopback address"));
}

#[tokio::test]
async fn status_errors_are_sorted_for_retries() {
    let addr = serve().await;
    let tools = registry(&["127.0.0.1"]);
    let error = call(&tools, json!({"url": format!("http://{addr}/e404")}))
        .await
        .expect_err("404");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("404") && text.contains("no such page"),
        "{text}"
    );

    for route in ["e500", "e429"] {
        let error = call(&tools, json!({"url": format!("http://{addr}/{route}")}))
            .await
            .expect_err(route);
        assert!(error.is_transient(), "{route}: {error:?}");
    }
}

#[tokio::test]
async fn size_and_time_limits() {
    let addr = serve().await;
    let tools = registry(&["127.0.0.1"]);
    let error = call(&tools, json!({"url": format!("http://{addr}/big")}))
        .await
        .expect_err("too big");
    assert!(matches!(error, Error::Permanent(_)), "{error:?}");
    assert!(
        error.to_string().contains("larger than 1000 bytes"),
        "{error}"
    );

    let error = call(
        &tools,
        json!({"url": format!("http://{addr}/slow"), "timeout": "200ms"}),
    )
    .await
    .expect_err("too slow");
    assert!(error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn connection_errors_are_transient() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let tools = registry(&["127.0.0.1"]);
    let error = call(&tools, json!({"url": format!("http://127.0.0.1:{port}/")}))
        .await
        .expect_err("refused connection");
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn cancel_stops_the_request() {
    let addr = serve().await;
    let tools = registry(&["127.0.0.1"]);
    let ctx = Context::for_test();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let error = tools
        .get("http")
        .expect("built in")
        .call(json!({"url": format!("http://{addr}/slow")}), &ctx)
        .await
        .expect_err("cancelled");
    assert!(matches!(error, Error::Cancelled), "{error:?}");
}

#[tokio::test]
async fn bad_inputs_are_input_errors() {
    let tools = registry(&[]);
    for input in [
        json!({"url": "not a url"}),
        json!({"url": "ftp://example.com/"}),
        json!({"url": "http://example.com/", "json": 1, "body": "x"}),
        json!({"url": "http://example.com/", "method": "BAD METHOD"}),
        json!({"url": "http://example.com/", "bogus": 1}),
    ] {
        let error = call(&tools, input.clone()).await.expect_err("bad input");
        assert!(matches!(error, Error::Input(_)), "{input}: {error:?}");
    }
}

#[tokio::test]
async fn the_task_token_goes_only_to_hosts_marked_send_task_token() {
    let addr = serve().await;
    let port = addr.port();
    let tools = Registry::with_builtins(&ToolsConfig {
        http: HttpConfig {
            allow: vec!["127.0.0.1".into(), "localhost".into()],
            send_task_token: vec![format!("127.0.0.1:{port}")],
            ..HttpConfig::default()
        },
        ..ToolsConfig::default()
    });
    let http = tools.get("http").expect("http is built in");
    let token = "wft_tt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let ctx = Context {
        task_token: Some(weft_tools::TaskToken::new(token.into(), None)),
        ..Context::for_test()
    };
    let output = http
        .call(
            json!({"url": format!("http://127.0.0.1:{port}/echo")}),
            &ctx,
        )
        .await
        .expect("echo");
    assert_eq!(
        output["json"]["authorization"],
        json!(format!("Bearer {token}"))
    );
    // The same server under another name, and a redirect there, do not get it.
    for url in [
        format!("http://localhost:{port}/echo"),
        format!("http://127.0.0.1:{port}/to-localhost-echo"),
    ] {
        let output = http.call(json!({"url": url}), &ctx).await.expect("echo");
        assert_eq!(output["json"]["authorization"], Value::Null, "{url}");
    }
    // Without a token nothing is added.
    let output = http
        .call(
            json!({"url": format!("http://127.0.0.1:{port}/echo")}),
            &Context::for_test(),
        )
        .await
        .expect("echo");
    assert_eq!(output["json"]["authorization"], Value::Null);
}
