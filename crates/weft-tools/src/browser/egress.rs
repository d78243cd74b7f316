//! The browser's only way out: a small HTTP proxy inside weft, one per screenshot, that every
//! request Chromium makes goes through (`--proxy-server`, with `<-loopback>` so that loopback is
//! not bypassed). It applies the `http` tool's SSRF guard to each connection on the address it
//! actually connects to, so a page cannot reach loopback, private or link-local addresses
//! through an iframe, an image, a redirect, `fetch()`, a WebSocket or a service worker, and a
//! rebinding DNS server cannot answer differently after the check: Chromium resolves nothing
//! itself when it uses a proxy, and the proxy connects to the very addresses it checked.
//!
//! Two request forms arrive: `CONNECT host:port` (https, wss) is answered with a tunnel to the
//! checked address, and an absolute-form request (`GET http://host:port/path`, plain http and
//! ws) is sent on to the checked address in origin form with `Connection: close`, so that a
//! kept-alive connection never carries a second request for another host. A refused target gets
//! `403` and is listed in the screenshot's `blocked` output.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::builtin::ssrf::{self, AllowList, ResolveError};
use crate::{Error, Result};

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once; Chromium itself keeps far fewer to one proxy.
const MAX_CONNECTIONS: usize = 256;
/// How many refused targets are kept for the output.
const MAX_BLOCKED: usize = 50;

/// A running proxy; it stops, with every connection through it, when dropped.
pub(super) struct Egress {
    addr: SocketAddr,
    blocked: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Egress {
    /// Starts a proxy on a free loopback port.
    pub(super) async fn start(allow: AllowList) -> Result<Egress> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| Error::Failed(format!("browser.screenshot: egress proxy: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Failed(format!("browser.screenshot: egress proxy: {e}")))?;
        let blocked = Arc::new(Mutex::new(Vec::new()));
        let guard = Arc::new(Guard {
            allow,
            blocked: blocked.clone(),
        });
        let task = tokio::spawn(accept(listener, guard));
        Ok(Egress {
            addr,
            blocked,
            task,
        })
    }

    /// The `--proxy-server` value for Chromium.
    pub(super) fn proxy_server(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The targets refused so far, each once, in order.
    pub(super) fn blocked(&self) -> Vec<String> {
        self.blocked
            .lock()
            .map(|list| list.clone())
            .unwrap_or_default()
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Guard {
    allow: AllowList,
    blocked: Arc<Mutex<Vec<String>>>,
}

impl Guard {
    /// Connects to `host:port` if the guard lets it through.
    async fn connect(&self, host: &str, port: u16) -> std::result::Result<TcpStream, Reply> {
        let addrs: Vec<SocketAddr> = if self.allow.allows(host, port) {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            tokio::net::lookup_host((bare, port))
                .await
                .map(|addrs| addrs.collect())
                .map_err(|e| Reply::bad_gateway(&format!("cannot resolve {host}: {e}")))?
        } else {
            match ssrf::resolve(host, port).await {
                Ok(addrs) => addrs,
                Err(ResolveError::Refused(refused)) => {
                    let what = format!("{host}:{port} ({} is {})", refused.ip, refused.kind);
                    self.note(&what);
                    return Err(Reply::forbidden(&what));
                }
                Err(e) => return Err(Reply::bad_gateway(&e.to_string())),
            }
        };
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(Reply::bad_gateway(&match last {
            Some(e) => format!("cannot connect to {host}:{port}: {e}"),
            None => format!("{host} has no address"),
        }))
    }

    fn note(&self, what: &str) {
        tracing::info!(target: "weft::browser", refused = %what, "browser request refused by the SSRF guard");
        if let Ok(mut list) = self.blocked.lock()
            && list.len() < MAX_BLOCKED
            && !list.iter().any(|seen| seen == what)
        {
            list.push(what.to_string());
        }
    }
}

/// An answer the proxy gives itself, instead of the target's.
struct Reply {
    status: &'static str,
    message: String,
}

impl Reply {
    fn forbidden(what: &str) -> Self {
        Reply {
            status: "403 Forbidden",
            message: format!("weft refused {what}: not a public address"),
        }
    }
    fn bad_gateway(message: &str) -> Self {
        Reply {
            status: "502 Bad Gateway",
            message: message.to_string(),
        }
    }
    fn bad_request(message: &str) -> Self {
        Reply {
            status: "400 Bad Request",
            message: message.to_string(),
        }
    }

    async fn send(self, client: &mut TcpStream) {
        let response = format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{}",
            self.status,
            self.message.len(),
            self.message
        );
        let _ = client.write_all(response.as_bytes()).await;
        let _ = client.shutdown().await;
    }
}

async fn accept(listener: TcpListener, guard: Arc<Guard>) {
    // Dropping the set (when this task is aborted) aborts every connection in it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if connections.len() >= MAX_CONNECTIONS {
                    continue;
                }
                connections.spawn(serve(client, guard.clone()));
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// One client connection: one request, then a tunnel or the target's response.
async fn serve(mut client: TcpStream, guard: Arc<Guard>) {
    let Ok(Ok((head, rest))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await
    else {
        return;
    };
    let forward = match Forward::parse(&head) {
        Ok(forward) => forward,
        Err(reply) => return reply.send(&mut client).await,
    };
    let mut upstream = match guard.connect(&forward.host, forward.port).await {
        Ok(stream) => stream,
        Err(reply) => return reply.send(&mut client).await,
    };
    let sent = match &forward.head {
        None => client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_ok(),
        Some(head) => upstream.write_all(head).await.is_ok(),
    };
    if !sent || upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads up to the blank line that ends a request head; returns the head and any bytes after.
async fn read_head(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = searched_from + end + 4;
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// Where one request goes, and (for the absolute form) the head to send there.
struct Forward {
    host: String,
    port: u16,
    /// `None` for `CONNECT`: the client's bytes are passed through as they are.
    head: Option<Vec<u8>>,
}

impl Forward {
    fn parse(head: &[u8]) -> std::result::Result<Forward, Reply> {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(Reply::bad_request("malformed request")),
        }
        let (Some(method), Some(target)) = (request.method, request.path) else {
            return Err(Reply::bad_request("malformed request"));
        };
        if method.eq_ignore_ascii_case("CONNECT") {
            let url = url::Url::parse(&format!("http://{target}/"))
                .map_err(|_| Reply::bad_request("CONNECT needs host:port"))?;
            let (host, port) = host_port(&url)?;
            return Ok(Forward {
                host,
                port,
                head: None,
            });
        }
        let url = url::Url::parse(target)
            .map_err(|_| Reply::bad_request("a proxy request needs an absolute http:// URL"))?;
        if !matches!(url.scheme(), "http" | "ws") {
            return Err(Reply::bad_request("only http:// through the proxy"));
        }
        let (host, port) = host_port(&url)?;
        let mut origin_form = url.path().to_string();
        if let Some(query) = url.query() {
            origin_form.push('?');
            origin_form.push_str(query);
        }
        let upgrade = request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
        let mut out = format!("{method} {origin_form} HTTP/1.1\r\n").into_bytes();
        for header in request.headers.iter() {
            let name = header.name.to_ascii_lowercase();
            let hop_by_hop = matches!(
                name.as_str(),
                "proxy-connection" | "proxy-authorization" | "keep-alive"
            ) || (name == "connection" && !upgrade);
            if hop_by_hop {
                continue;
            }
            out.extend_from_slice(header.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(header.value);
            out.extend_from_slice(b"\r\n");
        }
        if !upgrade {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(Forward {
            host,
            port,
            head: Some(out),
        })
    }
}

/// The host (IPv6 in brackets, as `AllowList` expects) and port of a parsed URL. Parsing first
/// turns every spelling of an address (`0x7f.1`, `2130706433`) into its one canonical form.
fn host_port(url: &url::Url) -> std::result::Result<(String, u16), Reply> {
    let host = url
        .host()
        .ok_or_else(|| Reply::bad_request("no host"))?
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Reply::bad_request("no port"))?;
    Ok((host, port))
}
