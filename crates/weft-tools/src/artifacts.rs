//! The artifact store and the `artifacts` post-processing hook.
//!
//! Images do not belong in the store's JSON or in an LLM prompt: the hook finds them in a
//! tool's output (MCP image content `{type: "image", data, mimeType}`, `data:image/...;base64,`
//! URLs, bare base64 PNG/JPEG/GIF/WebP strings), stores each once (named by its SHA-256) and
//! puts `{url, content_type, width, height, bytes, sha256}` in its place.
//!
//! One `object_store` code path serves a local folder (default `.weft/artifacts`) and an
//! S3-compatible bucket. Keys are `TENANT/ID` for the bytes and `TENANT/runs/RUN/ID` (empty)
//! so a run's artifacts can be listed; `weft serve` answers `/v1/artifacts/{id}` from them.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::expand_env;
use crate::{Context, Error, Hook, Registry, Result};

/// Bare base64 strings shorter than this are left alone (ids, hashes, short tokens).
const MIN_BARE_BASE64: usize = 64;

/// `[artifacts]` in `weft.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactsConfig {
    /// The local folder (used when `s3` is absent).
    pub dir: PathBuf,
    /// What an artifact's `url` starts with; the id follows.
    pub url_prefix: String,
    /// Tool name patterns (`mcp.*`, `browser.screenshot`) whose outputs the hook rewrites.
    pub tools: Vec<String>,
    pub s3: Option<S3Config>,
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        ArtifactsConfig {
            dir: PathBuf::from(".weft/artifacts"),
            url_prefix: "/v1/artifacts/".into(),
            tools: vec!["browser.*".into(), "mcp.*".into()],
            s3: None,
        }
    }
}

/// An S3-compatible bucket. Keys may be written `${VAR}` to come from the environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// E.g. `http://127.0.0.1:5055` for a local S3 stand-in; path-style addressing is used.
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// What replaces an image in an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub id: String,
    pub url: String,
    pub content_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: u64,
    pub sha256: String,
}

/// Where artifacts live. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    url_prefix: String,
}

impl ArtifactStore {
    pub fn from_config(config: &ArtifactsConfig) -> std::result::Result<Self, String> {
        let store: Arc<dyn ObjectStore> = match &config.s3 {
            Some(s3) => {
                // The environment's AWS_* settings first (keys, session token), then the file.
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(false);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(expand_env(key)?);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(expand_env(secret)?);
                }
                // The builder's error may quote configuration; keep only its kind.
                Arc::new(
                    builder.build().map_err(|_| {
                        format!("[artifacts.s3]: cannot use bucket `{}`", s3.bucket)
                    })?,
                )
            }
            None => {
                std::fs::create_dir_all(&config.dir)
                    .map_err(|e| format!("[artifacts] dir {}: {e}", config.dir.display()))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&config.dir)
                        .map_err(|e| format!("[artifacts] dir {}: {e}", config.dir.display()))?,
                )
            }
        };
        Ok(ArtifactStore {
            store,
            url_prefix: config.url_prefix.clone(),
        })
    }

    /// The URL an artifact is fetched from (`url_prefix` and the id).
    pub fn url(&self, id: &str) -> String {
        format!("{}{id}", self.url_prefix)
    }

    /// Stores `bytes` for a run and describes them.
    pub async fn put(
        &self,
        tenant: &str,
        run_id: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<ArtifactRef> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let id = format!("{}.{}", &sha256[..32], extension(content_type));
        let size = imagesize::blob_size(&bytes).ok();
        let n_bytes = bytes.len() as u64;
        let key = ObjectPath::from(format!("{}/{id}", safe(tenant)));
        self.store
            .put(&key, bytes.into())
            .await
            .map_err(|e| Error::Failed(format!("artifacts: storing {id}: {e}")))?;
        let marker = ObjectPath::from(format!("{}/runs/{}/{id}", safe(tenant), safe(run_id)));
        self.store
            .put(&marker, Vec::new().into())
            .await
            .map_err(|e| Error::Failed(format!("artifacts: indexing {id}: {e}")))?;
        Ok(ArtifactRef {
            url: self.url(&id),
            id,
            content_type: content_type.to_string(),
            width: size.and_then(|s| u32::try_from(s.width).ok()),
            height: size.and_then(|s| u32::try_from(s.height).ok()),
            bytes: n_bytes,
            sha256,
        })
    }

    /// The bytes and content type of a tenant's artifact.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<(Vec<u8>, String)>> {
        if id.contains('/') || id.starts_with('.') {
            return Ok(None);
        }
        let key = ObjectPath::from(format!("{}/{id}", safe(tenant)));
        match self.store.get(&key).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .map_err(|e| Error::Failed(format!("artifacts: reading {id}: {e}")))?;
                let ext = id.rsplit('.').next().unwrap_or_default();
                Ok(Some((bytes.to_vec(), content_type_of(ext).to_string())))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::Failed(format!("artifacts: reading {id}: {e}"))),
        }
    }

    /// The ids of a run's artifacts.
    pub async fn list_run(&self, tenant: &str, run_id: &str) -> Result<Vec<String>> {
        let prefix = ObjectPath::from(format!("{}/runs/{}", safe(tenant), safe(run_id)));
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::Failed(format!("artifacts: listing: {e}")))?;
        let mut ids: Vec<String> = listed
            .into_iter()
            .filter_map(|meta| meta.location.filename().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Keeps tenant and run ids to one path segment.
fn safe(segment: &str) -> String {
    segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => "bin",
    }
}

fn content_type_of(ext: &str) -> &'static str {
    match ext {
        "png" => "image/png",
        "jpg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

/// The image type of some bytes, by their magic numbers.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text)
                .ok()
        })
}

/// An image found in a JSON node, decoded.
fn image_in(value: &Value) -> Option<(Vec<u8>, &'static str)> {
    match value {
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("image") => {
            let bytes = decode(map.get("data")?.as_str()?)?;
            let kind = sniff(&bytes)?;
            Some((bytes, kind))
        }
        Value::String(text) => {
            if let Some(rest) = text.strip_prefix("data:image/") {
                let (_, data) = rest.split_once(";base64,")?;
                let bytes = decode(data)?;
                let kind = sniff(&bytes)?;
                Some((bytes, kind))
            } else if text.len() >= MIN_BARE_BASE64
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n'))
            {
                let bytes = decode(&text.replace('\n', ""))?;
                let kind = sniff(&bytes)?;
                Some((bytes, kind))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Replaces every image in `value` with a reference to the stored artifact.
pub fn externalize<'a>(
    store: &'a ArtifactStore,
    value: Value,
    tenant: &'a str,
    run_id: &'a str,
) -> futures::future::BoxFuture<'a, Result<Value>> {
    Box::pin(async move {
        if let Some((bytes, kind)) = image_in(&value) {
            let stored = store.put(tenant, run_id, bytes, kind).await?;
            return serde_json::to_value(stored)
                .map_err(|e| Error::Failed(format!("artifacts: {e}")));
        }
        Ok(match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(externalize(store, item, tenant, run_id).await?);
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    out.insert(key, externalize(store, item, tenant, run_id).await?);
                }
                Value::Object(out)
            }
            other => other,
        })
    })
}

/// The `artifacts` hook.
pub struct ArtifactsHook {
    store: ArtifactStore,
}

impl ArtifactsHook {
    pub fn new(store: ArtifactStore) -> Self {
        ArtifactsHook { store }
    }
}

#[async_trait]
impl Hook for ArtifactsHook {
    fn name(&self) -> &str {
        "artifacts"
    }

    async fn process(&self, output: Value, ctx: &Context) -> Result<Value> {
        externalize(&self.store, output, &ctx.tenant, &ctx.run_id).await
    }
}

/// Builds the store, hooks it onto the configured tool patterns, and offers it by name to
/// steps that write `post: [artifacts]`.
pub fn register(
    registry: &mut Registry,
    config: &ArtifactsConfig,
) -> std::result::Result<ArtifactStore, String> {
    let store = ArtifactStore::from_config(config)?;
    let hook: Arc<dyn Hook> = Arc::new(ArtifactsHook::new(store.clone()));
    registry.register_hook(hook.clone());
    for pattern in &config.tools {
        registry.add_hook(pattern.clone(), hook.clone());
    }
    Ok(store)
}

/// The JSON shape of an image as MCP content, which tools use to hand images to the hook.
pub fn image_content(bytes: &[u8], mime_type: &str) -> Value {
    json!({
        "type": "image",
        "mimeType": mime_type,
        "data": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}
