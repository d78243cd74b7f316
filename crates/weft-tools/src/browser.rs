//! `browser.screenshot`: a PNG of a page, taken by headless Chromium (Debian's `chromium`).
//!
//! Each call starts its own browser with a fresh profile folder and an explicit viewport, and
//! closes and waits for it at the end, so no state leaks between steps. The PNG is returned as
//! MCP-style image content, which the `artifacts` hook (on `browser.*` by default) stores and
//! replaces with a URL before the output is recorded.
//!
//! The page's address goes through the same SSRF guard as `http`: loopback, private and
//! link-local targets are refused unless `[browser] allow` lists the host. So does everything
//! the page loads: Chromium reaches the network only through [`egress`], a proxy inside weft
//! that checks each connection on the address it connects to. WebRTC may not send UDP around
//! it. Refused targets are listed in the output's `blocked`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chromiumoxide::browser::{Browser, BrowserConfig as CdpConfig};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::builtin::ssrf::{AllowList, check};
use crate::builtin::{parse_duration, parse_input};
use crate::{Context, Error, Registry, Result, Tool};

mod egress;

/// The flags every browser starts with (see ECOSYSTEM.md).
const FLAGS: &[&str] = &[
    "disable-gpu",
    "disable-quic",
    "no-first-run",
    "disable-background-networking",
    "disable-component-update",
    "disable-sync",
    "disable-dev-shm-usage",
    "dns-prefetch-disable",
];

/// `[browser]` in `weft.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserConfig {
    /// The Chromium binary (default `/usr/bin/chromium`).
    pub chromium: PathBuf,
    /// Hosts (`name` or `name:port`) that may be private or loopback.
    pub allow: Vec<String>,
    /// Whole-screenshot limit unless the step says otherwise (default `30s`).
    pub timeout: String,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            chromium: PathBuf::from("/usr/bin/chromium"),
            allow: Vec::new(),
            timeout: "30s".into(),
        }
    }
}

pub fn register(
    registry: &mut Registry,
    config: &BrowserConfig,
) -> std::result::Result<(), String> {
    let timeout =
        parse_duration("[browser] timeout", &config.timeout).map_err(|e| e.to_string())?;
    registry.insert(Arc::new(Screenshot {
        chromium: config.chromium.clone(),
        allow: AllowList::new(&config.allow),
        timeout,
    }));
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    #[serde(default)]
    viewport: Option<ViewportInput>,
    #[serde(default)]
    full_page: bool,
    /// A CSS selector to wait for before the shot.
    #[serde(default)]
    wait_for: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewportInput {
    width: u32,
    height: u32,
    #[serde(default)]
    scale: Option<f64>,
}

struct Screenshot {
    chromium: PathBuf,
    allow: AllowList,
    timeout: Duration,
}

impl Screenshot {
    async fn guard(&self, url: &url::Url) -> Result<()> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Input(format!(
                "browser.screenshot: only http(s) pages, not `{}`",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Error::Input("browser.screenshot: the url has no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        if self.allow.allows(host, port) {
            return Ok(());
        }
        let host_plain = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = tokio::net::lookup_host((host_plain, port))
            .await
            .map_err(|e| {
                Error::Failed(format!("browser.screenshot: cannot resolve {host}: {e}"))
            })?;
        for addr in addrs {
            check(host, addr.ip()).map_err(|refused| {
                Error::Permanent(format!(
                    "browser.screenshot: {refused} (list the host in [browser] allow to permit it)"
                ))
            })?;
        }
        Ok(())
    }

    async fn shoot(&self, input: &Input, url: &str, egress: &egress::Egress) -> Result<Vec<u8>> {
        let profile = tempfile_dir()?;
        let viewport = input.viewport.as_ref().map_or(
            Viewport {
                width: 1280,
                height: 800,
                device_scale_factor: Some(1.0),
                emulating_mobile: false,
                is_landscape: false,
                has_touch: false,
            },
            |v| Viewport {
                width: v.width.clamp(16, 8192),
                height: v.height.clamp(16, 8192),
                device_scale_factor: Some(v.scale.unwrap_or(1.0).clamp(0.25, 4.0)),
                emulating_mobile: false,
                is_landscape: false,
                has_touch: false,
            },
        );
        let config = CdpConfig::builder()
            .chrome_executable(&self.chromium)
            .disable_default_args()
            .no_sandbox()
            .args(FLAGS.iter().copied())
            // Everything through the guarded proxy, loopback included (Chromium bypasses the
            // proxy for loopback unless told `<-loopback>`), and no UDP around it.
            .arg(("proxy-server", egress.proxy_server().as_str()))
            .arg(("proxy-bypass-list", "<-loopback>"))
            .arg(("force-webrtc-ip-handling-policy", "disable_non_proxied_udp"))
            .user_data_dir(profile.path())
            .window_size(viewport.width, viewport.height)
            .viewport(viewport)
            .build()
            .map_err(|e| Error::Permanent(format!("browser.screenshot: {e}")))?;
        let (mut browser, mut handler) = Browser::launch(config).await.map_err(|e| {
            Error::Failed(format!(
                "browser.screenshot: cannot start {}: {e} (install Debian's `chromium`)",
                self.chromium.display()
            ))
        })?;
        let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
        let shot = async {
            let page = browser
                .new_page(url)
                .await
                .map_err(|e| Error::Failed(format!("browser.screenshot: opening {url}: {e}")))?;
            page.wait_for_navigation()
                .await
                .map_err(|e| Error::Failed(format!("browser.screenshot: loading {url}: {e}")))?;
            if let Some(selector) = &input.wait_for {
                loop {
                    if page.find_element(selector.as_str()).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let params = ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .full_page(input.full_page)
                .build();
            page.screenshot(params)
                .await
                .map_err(|e| Error::Failed(format!("browser.screenshot: capturing {url}: {e}")))
        }
        .await;
        let _ = browser.close().await;
        let _ = browser.wait().await;
        events.abort();
        drop(profile);
        shot
    }
}

/// A fresh profile folder, removed when dropped.
fn tempfile_dir() -> Result<TempDir> {
    let path = std::env::temp_dir().join(format!("weft-chromium-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&path)
        .map_err(|e| Error::Failed(format!("browser.screenshot: profile folder: {e}")))?;
    Ok(TempDir(path))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[async_trait]
impl Tool for Screenshot {
    fn name(&self) -> &str {
        "browser.screenshot"
    }

    fn description(&self) -> &str {
        "A PNG screenshot of `url` in headless Chromium, at `viewport` {width, height, scale} \
         (default 1280×800), of the whole page with `full_page`, after `wait_for` (a CSS \
         selector) appears. Output: {url, image, blocked}; the artifacts hook turns `image` into \
         {url, content_type, width, height, bytes, sha256}; `blocked` lists what the page tried \
         to load from loopback, private or link-local addresses (refused)."
    }

    fn input_schema(&self) -> Option<Value> {
        Some(json!({
            "type": "object",
            "required": ["url"],
            "additionalProperties": false,
            "properties": {
                "url": {"type": "string", "description": "An http(s) address."},
                "viewport": {"type": "object", "required": ["width", "height"], "additionalProperties": false,
                    "properties": {"width": {"type": "integer", "minimum": 16}, "height": {"type": "integer", "minimum": 16},
                                   "scale": {"type": "number", "minimum": 0.25, "maximum": 4}}},
                "full_page": {"type": "boolean"},
                "wait_for": {"type": "string"},
                "timeout": crate::builtin::duration_schema("Whole-screenshot limit (default from [browser] timeout).")
            }
        }))
    }

    async fn call(&self, input: Value, ctx: &Context) -> Result<Value> {
        let input: Input = parse_input("browser.screenshot", &input)?;
        let url = url::Url::parse(&input.url)
            .map_err(|e| Error::Input(format!("browser.screenshot: url {:?}: {e}", input.url)))?;
        self.guard(&url).await?;
        let limit = match &input.timeout {
            Some(t) => parse_duration("timeout", t)?,
            None => self.timeout,
        };
        let egress = egress::Egress::start(self.allow.clone()).await?;
        let png = tokio::select! {
            shot = tokio::time::timeout(limit, self.shoot(&input, url.as_str(), &egress)) => shot.map_err(|_| {
                Error::Failed(format!("browser.screenshot: no screenshot within {limit:?}"))
            })??,
            () = ctx.cancel.cancelled() => return Err(Error::Cancelled),
        };
        Ok(json!({
            "url": url.as_str(),
            "image": crate::artifacts::image_content(&png, "image/png"),
            "blocked": egress.blocked(),
        }))
    }
}
