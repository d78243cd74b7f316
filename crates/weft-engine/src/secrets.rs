//! Sealing and opening tenant secrets: the store keeps only what this module produces.
//!
//! A value is sealed with XChaCha20-Poly1305 under a 32-byte key, with a fresh random 24-byte
//! nonce per value, and with the tenant and secret name as associated data, so a ciphertext
//! copied to another tenant's or another name's row does not open. The key comes from
//! `WEFT_SECRET_KEY` (base64, 32 bytes) or a key file created on first use with mode 0600.
//! Nothing here logs, and no error carries a value or the key.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The first byte of every sealed value: the format, so a later one can be told apart.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// Why a key could not be had or a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "WEFT_SECRET_KEY is not a base64 32-byte key; make one with `head -c32 /dev/urandom | base64`"
    )]
    BadEnvKey,
    #[error("the key file {0} does not hold a base64 32-byte key")]
    BadKeyFile(String),
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot decrypt secret `{0}`: it was stored under another key (check WEFT_SECRET_KEY or the key file)"
    )]
    WrongKey(String),
    #[error("cannot encrypt secret `{0}`")]
    Seal(String),
}

/// The key that seals and opens a deployment's secrets. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    bytes.try_into().ok()
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// The key from `env_key` (the value of `WEFT_SECRET_KEY`) when set, else from `key_file`,
    /// which is created with a random key (mode 0600) when it does not exist.
    pub fn load(env_key: Option<&str>, key_file: &Path) -> Result<Self, Error> {
        if let Some(text) = env_key.filter(|t| !t.trim().is_empty()) {
            return decode_key(text).map(Self::new).ok_or(Error::BadEnvKey);
        }
        let io = |source| Error::KeyFile {
            path: key_file.display().to_string(),
            source,
        };
        match std::fs::read_to_string(key_file) {
            Ok(text) => decode_key(&text)
                .map(Self::new)
                .ok_or_else(|| Error::BadKeyFile(key_file.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let key: [u8; 32] = rand::random();
                write_private(
                    key_file,
                    base64::engine::general_purpose::STANDARD.encode(key),
                )
                .map_err(io)?;
                Ok(Self::new(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `value` for (`tenant`, `name`): format byte, nonce, ciphertext with its tag.
    pub fn seal(&self, tenant: &str, name: &str, value: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = associated_data(tenant, name);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Seal(name.to_string()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`SecretBox::seal`] made for the same (`tenant`, `name`) under the same key.
    pub fn open(&self, tenant: &str, name: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let wrong = || Error::WrongKey(name.to_string());
        let (format, rest) = sealed.split_first().ok_or_else(wrong)?;
        if *format != FORMAT_V1 || rest.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| wrong())?;
        let aad = associated_data(tenant, name);
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| wrong())
    }
}

fn associated_data(tenant: &str, name: &str) -> Vec<u8> {
    format!("weft-secret:v1:{}:{tenant}:{name}", tenant.len()).into_bytes()
}

#[cfg(unix)]
fn write_private(path: &Path, text: String) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: String) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// A secret name: a letter or `_` first, then letters, digits, `_`, `-` or `.`; 1 to 64.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    (1..=64).contains(&name.len())
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_value_opens_only_with_its_key_tenant_and_name() {
        let a = SecretBox::new([7; 32]);
        let b = SecretBox::new([8; 32]);
        let sealed = a.seal("t", "TOKEN", b"canary-value").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert_eq!(
            a.open("t", "TOKEN", &sealed).expect("open"),
            b"canary-value"
        );
        // A second seal of the same value differs (fresh nonce).
        assert_ne!(a.seal("t", "TOKEN", b"canary-value").expect("seal"), sealed);
        let err = b.open("t", "TOKEN", &sealed).expect_err("wrong key");
        assert!(matches!(err, Error::WrongKey(_)));
        assert!(err.to_string().contains("another key"), "{err}");
        assert!(a.open("u", "TOKEN", &sealed).is_err());
        assert!(a.open("t", "OTHER", &sealed).is_err());
        assert!(a.open("t", "TOKEN", &[]).is_err());
        assert!(a.open("t", "TOKEN", &sealed[..10]).is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".weft/secret.key");
        let first = SecretBox::load(None, &path).expect("create");
        let sealed = first.seal("t", "N", b"v").expect("seal");
        let again = SecretBox::load(None, &path).expect("reuse");
        assert_eq!(again.open("t", "N", &sealed).expect("open"), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            SecretBox::load(Some("not base64!"), &path),
            Err(Error::BadEnvKey)
        ));
        std::fs::write(dir.path().join("bad.key"), "c2hvcnQ=").expect("write");
        assert!(SecretBox::load(None, &dir.path().join("bad.key")).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("OPENAI_API_KEY"));
        assert!(valid_name("db.password-2"));
        assert!(!valid_name(""));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
