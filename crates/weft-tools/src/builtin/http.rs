//! `http`: one HTTP request from a template, behind the SSRF guard ([`super::ssrf`]).
//!
//! Redirects are followed here rather than by the client so that every hop goes through the
//! guard again. Failures are sorted for the engine: what may pass on a retry (5xx, 429,
//! connection errors, timeouts) is [`Error::Failed`]; what cannot (4xx, a refused target, an
//! oversized response) is [`Error::Permanent`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::{Host, Url};

use super::ssrf::{self, AllowList, GuardedResolver, Refused};
use super::{duration_schema, excerpt, parse_duration, parse_input};
use crate::config::HttpConfig;
use crate::{Context, Error, Result, Tool};

/// How much of an error response's body goes into the error message.
const ERROR_EXCERPT: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    query: Map<String, Value>,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

/// The two clients: one whose resolver runs the guard, one for allow-listed hosts.
struct Clients {
    guarded: reqwest::Client,
    open: reqwest::Client,
}

/// The `http` tool.
pub struct Http {
    config: HttpConfig,
    allow: AllowList,
    /// Built on first use: loading TLS roots costs time a process without `http` steps saves.
    clients: OnceLock<Result<Clients, String>>,
}

/// One request, as sent to the current hop.
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl Http {
    pub fn new(config: HttpConfig) -> Self {
        Http {
            allow: AllowList::new(&config.allow),
            config,
            clients: OnceLock::new(),
        }
    }

    fn clients(&self) -> Result<&Clients> {
        self.clients
            .get_or_init(|| {
                let builder = || {
                    reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .no_proxy()
                        .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
                };
                let guarded = builder()
                    .dns_resolver(GuardedResolver)
                    .build()
                    .map_err(|error| error.to_string())?;
                let open = builder().build().map_err(|error| error.to_string())?;
                Ok(Clients { guarded, open })
            })
            .as_ref()
            .map_err(|error| Error::Failed(format!("http: cannot build the HTTP client: {error}")))
    }

    async fn fetch(&self, mut request: Request, token: Option<&crate::TaskToken>) -> Result<Value> {
        let clients = self.clients()?;
        let mut hops = 0;
        loop {
            let client = self.client_for(clients, &request.url)?;
            let mut headers = request.headers.clone();
            self.add_configured_headers(&request.url, &mut headers)?;
            self.add_task_token(&request.url, token, &mut headers);
            let mut builder = client
                .request(request.method.clone(), request.url.clone())
                .headers(headers);
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|error| send_error(&request, &error))?;
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            if let (true, Some(location)) = (status.is_redirection(), location) {
                if hops == self.config.max_redirects {
                    return Err(Error::Permanent(format!(
                        "http: {} {} redirected more than {} times",
                        request.method, request.url, self.config.max_redirects
                    )));
                }
                hops += 1;
                request = redirect(request, status, &location)?;
                continue;
            }
            return self.read(request, response).await;
        }
    }

    /// Adds `[http.headers."HOST"]` for this hop's host, expanding `${VAR}` now. Chosen per
    /// hop, so a redirect to another host never carries them. Messages name the host, the
    /// header and the variable, never a value.
    fn add_configured_headers(&self, url: &Url, headers: &mut HeaderMap) -> Result<()> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let with_port = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
        for (pattern, configured) in &self.config.headers {
            let pattern = pattern.trim().to_ascii_lowercase();
            if pattern != host && pattern != bare && pattern != with_port {
                continue;
            }
            for (name, value) in configured {
                let problem = |what: &str| {
                    Error::Permanent(format!("http: [http.headers.\"{pattern}\"] {name}: {what}"))
                };
                let header_name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| problem("not a header name"))?;
                let text = crate::config::expand_env(value).map_err(|e| problem(&e))?;
                let mut header_value =
                    HeaderValue::from_str(&text).map_err(|_| problem("the value is invalid"))?;
                header_value.set_sensitive(true);
                headers.insert(header_name, header_value);
            }
        }
        Ok(())
    }

    /// Adds `Authorization: Bearer <task token>` when this hop's host is listed in
    /// `[http] send_task_token`; per hop, so a redirect to another host never carries it.
    fn add_task_token(&self, url: &Url, token: Option<&crate::TaskToken>, headers: &mut HeaderMap) {
        let Some(token) = token else {
            return;
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let with_port = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
        let listed = self.config.send_task_token.iter().any(|pattern| {
            let pattern = pattern.trim().to_ascii_lowercase();
            pattern == host || pattern == bare || pattern == with_port
        });
        if !listed {
            return;
        }
        if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.secret())) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }

    /// Picks the client for a hop, refusing IP literals here (no resolver sees them).
    fn client_for<'a>(&self, clients: &'a Clients, url: &Url) -> Result<&'a reqwest::Client> {
        let port = url.port_or_known_default().unwrap_or(0);
        let host_text = url.host_str().unwrap_or_default();
        if self.allow.allows(host_text, port) {
            return Ok(&clients.open);
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => {
                return Err(Error::Input(format!("http: {url} has no host")));
            }
        };
        if let Some(ip) = literal {
            ssrf::check(host_text, ip).map_err(|refused| Error::Permanent(refused.to_string()))?;
        }
        Ok(&clients.guarded)
    }

    async fn read(&self, request: Request, mut response: reqwest::Response) -> Result<Value> {
        let status = response.status();
        let limit = self.config.max_response_bytes;
        let too_large = || {
            Error::Permanent(format!(
                "http: the response of {} {} is larger than {limit} bytes \
                 (raise [http] max_response_bytes in weft.toml)",
                request.method, request.url
            ))
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }
        let mut headers = Map::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name.as_str().to_string(), Value::String(value));
                }
            }
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_type);
        let mut body = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|error| {
                Error::Failed(format!(
                    "http: reading the response of {} {} failed: {error}",
                    request.method, request.url
                ))
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        if status.is_client_error() || status.is_server_error() {
            let message = format!(
                "http: {} {} answered {status}: {}",
                request.method,
                request.url,
                excerpt(text.trim(), ERROR_EXCERPT)
            );
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(if transient {
                Error::Failed(message)
            } else {
                Error::Permanent(message)
            });
        }
        let mut output = Map::new();
        output.insert("status".into(), json!(status.as_u16()));
        output.insert("headers".into(), Value::Object(headers));
        match is_json
            .then(|| serde_json::from_slice::<Value>(&body).ok())
            .flatten()
        {
            Some(value) => output.insert("json".into(), value),
            None => output.insert("text".into(), Value::String(text.into_owned())),
        };
        Ok(Value::Object(output))
    }
}

#[async_trait]
impl Tool for Http {
    fn name(&self) -> &str {
        "http"
    }

    fn description(&self) -> &str {
        "Sends one HTTP request and returns {status, headers, json | text}. Loopback, private \
         and link-local targets are refused unless allow-listed in weft.toml; redirects are \
         followed and re-checked; 5xx, 429 and network errors are retried, 4xx are not."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1, "description": "An http:// or https:// URL."},
                "method": {"type": "string", "default": "GET", "description": "GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS."},
                "headers": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "Request headers."},
                "query": {"type": "object", "description": "Query parameters added to the URL; a list value repeats the key."},
                "json": {"description": "A JSON request body (sets content-type: application/json)."},
                "body": {"type": "string", "description": "A raw request body; not with `json`."},
                "timeout": duration_schema("Time limit for the whole request, e.g. \"10s\".")
            },
            "additionalProperties": false
        }))
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let input: Input = parse_input("http", &input)?;
        let timeout = match &input.timeout {
            Some(text) => parse_duration("http: timeout", text)?,
            None => Duration::from_secs(self.config.timeout_secs),
        };
        let request = build_request(input)?;
        let what = format!("{} {}", request.method, request.url);
        tokio::select! {
            result = tokio::time::timeout(timeout, self.fetch(request, ctx.task_token.as_ref())) => match result {
                Ok(result) => result,
                Err(_) => Err(Error::Failed(format!(
                    "http: {what} timed out after {}", humantime::format_duration(timeout)
                ))),
            },
            () = ctx.cancel.cancelled() => Err(Error::Cancelled),
        }
    }
}

fn build_request(input: Input) -> Result<Request> {
    let method_text = input
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    let method = Method::from_bytes(method_text.as_bytes())
        .map_err(|_| Error::Input(format!("http: {method_text:?} is not an HTTP method")))?;
    let mut url = Url::parse(input.url.trim())
        .map_err(|error| Error::Input(format!("http: {:?} is not a URL: {error}", input.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Input(format!(
            "http: {url} is not an http:// or https:// URL"
        )));
    }
    if !input.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in &input.query {
            match value {
                Value::Array(items) => {
                    for item in items {
                        pairs.append_pair(key, &scalar_text(item));
                    }
                }
                Value::Null => {}
                other => {
                    pairs.append_pair(key, &scalar_text(other));
                }
            }
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Error::Input(format!("http: {name:?} is not a header name")))?;
        let header_value = HeaderValue::from_str(&scalar_text(value))
            .map_err(|_| Error::Input(format!("http: the value of header {name:?} is invalid")))?;
        headers.append(header_name, header_value);
    }
    let body = match (input.json, input.body) {
        (Some(_), Some(_)) => {
            return Err(Error::Input("http: give `json` or `body`, not both".into()));
        }
        (Some(value), None) => {
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Some(serde_json::to_vec(&value).map_err(|error| Error::Input(error.to_string()))?)
        }
        (None, Some(text)) => Some(text.into_bytes()),
        (None, None) => None,
    };
    Ok(Request {
        method,
        url,
        headers,
        body,
    })
}

/// The next hop of a redirect: 303 (and 301/302 after a POST) turn into a body-less GET, as
/// browsers do; credentials are not sent to another origin.
fn redirect(mut request: Request, status: StatusCode, location: &str) -> Result<Request> {
    let next = request.url.join(location).map_err(|error| {
        Error::Permanent(format!(
            "http: {} redirected to {location:?}, which is not a URL: {error}",
            request.url
        ))
    })?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Error::Permanent(format!(
            "http: {} redirected to {next}, which is not http:// or https://",
            request.url
        )));
    }
    let to_get = status == StatusCode::SEE_OTHER
        || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
            && request.method == Method::POST);
    if to_get {
        if request.method != Method::HEAD {
            request.method = Method::GET;
        }
        request.body = None;
        request.headers.remove(reqwest::header::CONTENT_TYPE);
        request.headers.remove(reqwest::header::CONTENT_LENGTH);
    }
    if next.origin() != request.url.origin() {
        request.headers.remove(reqwest::header::AUTHORIZATION);
        request.headers.remove(reqwest::header::COOKIE);
        request.headers.remove(reqwest::header::PROXY_AUTHORIZATION);
    }
    request.url = next;
    Ok(request)
}

/// Sorts a failed send: a guard refusal is permanent, network trouble is worth a retry.
fn send_error(request: &Request, error: &reqwest::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return Error::Permanent(refused.to_string());
        }
        source = current.source();
    }
    let what = format!("{} {}", request.method, request.url);
    if error.is_builder() {
        return Error::Input(format!("http: {what}: {}", chain(error)));
    }
    if error.is_timeout() {
        return Error::Failed(format!("http: {what} timed out: {}", chain(error)));
    }
    Error::Failed(format!("http: {what} failed: {}", chain(error)))
}

/// An error and its causes on one line (reqwest's own message hides the useful part).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
