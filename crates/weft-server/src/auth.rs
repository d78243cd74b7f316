//! API keys and stream tickets: made here, stored only as SHA-256 hashes, checked on every
//! request.
//!
//! A key is `wft_ak_` + 32 random bytes in base64url; a ticket is `wft_st_` + the same. The
//! plain text is shown once, to whoever created it, and never logged. Lookups go by hash, so
//! the comparison never touches the secret itself.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use weft_store::server::{ApiKey, AuthStore};

use crate::AppState;
use crate::problem::{Kind, Problem};

pub const KEY_PREFIX: &str = "wft_ak_";
pub const TICKET_PREFIX: &str = "wft_st_";
/// How long a stream ticket can wait to be used.
pub const TICKET_TTL_MS: i64 = 60_000;

/// SHA-256 of a secret, hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new stream ticket's text.
pub fn new_ticket() -> String {
    metrics::counter!("weft_stream_tickets_total", "result" => "minted").increment(1);
    random_secret(TICKET_PREFIX)
}

/// Makes a key for `tenant`, stores its hash and returns the key text (shown once).
pub async fn create_key(
    store: &dyn AuthStore,
    tenant: &str,
    label: &str,
) -> weft_store::Result<(ApiKey, String)> {
    let secret = random_secret(KEY_PREFIX);
    let key = ApiKey {
        id: format!("key_{}", ulid::Ulid::new().to_string().to_lowercase()),
        tenant: tenant.to_string(),
        label: label.to_string(),
        hash: hash_secret(&secret),
        prefix: secret.chars().take(KEY_PREFIX.len() + 4).collect(),
        created_at: now_ms(),
        revoked_at: None,
    };
    store.insert_api_key(&key).await?;
    Ok((key, secret))
}

/// A tenant name: lowercase letters, digits, `-` and `_`, 1 to 63 characters.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The tenant a request acts for, from its `Authorization: Bearer` key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    /// The id of the key it authenticated with: the `who` of its audit records.
    pub key_id: String,
}

/// The bearer token of a request, if it sent one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let caller = authenticate(parts, state).await;
        if caller.is_err() {
            metrics::counter!("weft_auth_failures_total").increment(1);
        }
        caller
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, Problem> {
    let Some(token) = bearer(parts) else {
        return Err(Problem::new(
            Kind::Unauthorized,
            "send `Authorization: Bearer <API key>`; `weft tenants create NAME` or \
             `weft keys create --tenant NAME` prints one",
        ));
    };
    if !token.starts_with(KEY_PREFIX) {
        return Err(Problem::new(
            Kind::Unauthorized,
            "that is not an API key (they start with `wft_ak_`)",
        ));
    }
    match state.store.api_key_by_hash(&hash_secret(token)).await? {
        Some(key) => Ok(Caller {
            tenant: key.tenant,
            key_id: key.id,
        }),
        None => Err(Problem::new(
            Kind::Unauthorized,
            "unknown or revoked API key; create one with `weft keys create --tenant NAME`",
        )),
    }
}
