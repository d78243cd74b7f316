//! `browser.screenshot` against a page that tries to reach a loopback service the guard forbids
//! (issue 14): through an iframe, an image, a redirect, `fetch()`, a WebSocket, by IP and by
//! name. With real Chromium: the forbidden listener must see no connection at all, while the
//! page itself (on a host the operator allowed) loads and the screenshot succeeds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use weft_tools::browser::BrowserConfig;
use weft_tools::{Context, Registry};

/// A loopback service that counts the connections it accepts and answers each with a page.
async fn forbidden_service() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\n\
                          Connection: close\r\n\r\nINTERNAL SECRET",
                    )
                    .await;
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn a_page_cannot_make_chromium_reach_a_forbidden_address() {
    let Some(chromium) = common::chromium() else {
        return;
    };
    let (secret, count) = forbidden_service().await;
    let pixels = Arc::new(AtomicUsize::new(0));
    let page = format!(
        "<html><body>
         <h1>public page</h1>
         <iframe src='http://127.0.0.1:{secret}/frame'></iframe>
         <iframe src='http://localhost:{secret}/by-name'></iframe>
         <iframe src='/redirect'></iframe>
         <img src='http://127.0.0.1:{secret}/img.png'>
         <img src='/pixel.png'>
         <script>
           const done = () => {{ const d = document.createElement('p'); d.id = 'done';
                                 document.body.append(d); }};
           try {{ new WebSocket('ws://127.0.0.1:{secret}/ws'); }} catch (e) {{}}
           Promise.allSettled([
             fetch('http://127.0.0.1:{secret}/fetch', {{mode: 'no-cors'}}),
             fetch('http://[::ffff:127.0.0.1]:{secret}/mapped', {{mode: 'no-cors'}}),
           ]).then(done);
         </script>
         </body></html>"
    );
    let served = pixels.clone();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let page = page.clone();
                async move { axum::response::Html(page) }
            }),
        )
        .route(
            "/redirect",
            axum::routing::get(move || async move {
                axum::response::Redirect::temporary(&format!(
                    "http://127.0.0.1:{secret}/redirected"
                ))
            }),
        )
        .route(
            "/pixel.png",
            axum::routing::get(move || {
                served.fetch_add(1, Ordering::SeqCst);
                async move { ([("content-type", "image/gif")], GIF.to_vec()) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let page_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut registry = Registry::new();
    // The operator allows the page's host and port only: the same address on another port is
    // still loopback, and refused.
    weft_tools::browser::register(
        &mut registry,
        &BrowserConfig {
            chromium,
            allow: vec![format!("127.0.0.1:{page_port}")],
            timeout: "90s".into(),
        },
    )
    .expect("config");
    let out = registry
        .get("browser.screenshot")
        .expect("registered")
        .call(
            json!({"url": format!("http://127.0.0.1:{page_port}/"), "wait_for": "#done",
                   "viewport": {"width": 640, "height": 480}}),
            &Context::for_test(),
        )
        .await
        .expect("the screenshot succeeds");
    assert!(
        out["image"].to_string().contains("image/png"),
        "a PNG: {}",
        out["image"]
            .to_string()
            .chars()
            .take(200)
            .collect::<String>()
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "the forbidden service was reached"
    );
    assert!(
        pixels.load(Ordering::SeqCst) >= 1,
        "the page's own image loads through the proxy"
    );
    let blocked = out["blocked"].to_string();
    assert!(
        blocked.contains(&format!("127.0.0.1:{secret}"))
            && blocked.contains(&format!("localhost:{secret}")),
        "the refusals are reported: {blocked}"
    );
}

/// A 1×1 GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];
