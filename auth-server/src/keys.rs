//! The signing keys folder: PKCS#8 PEM files named `<kid>.pem`, mode 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use shared::jwt::{Jwks, PublicKey, Signer, generate_private_key_pem};
use shared::startup::fix;

#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub bits: usize,
    pub path: PathBuf,
    #[serde(skip)]
    pub modified: Option<std::time::SystemTime>,
}

/// Every key in the folder, newest first; none when the folder does not
/// exist. Each `*.pem` must be a PKCS#8 RSA private key: the error names
/// the file and what it holds instead.
pub fn list(dir: &Path) -> anyhow::Result<Vec<KeyInfo>> {
    let mut keys = Vec::new();
    if !dir.exists() {
        return Ok(keys);
    }
    if !dir.is_dir() {
        return Err(fix(
            anyhow::anyhow!("the keys folder {} is not a folder", dir.display()),
            "Point AUTH_KEYS_DIR at a folder of signing keys",
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        fix(
            anyhow::anyhow!("cannot read the keys folder {}: {e}", dir.display()),
            "Make it readable by this user, or point AUTH_KEYS_DIR elsewhere",
        )
    })?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            fix(
                anyhow::anyhow!("cannot read {}: {e}", path.display()),
                "Make it readable by this user",
            )
        })?;
        let public = PublicKey::from_private_pem(&bytes).map_err(|what| {
            fix(
                anyhow::anyhow!("{}: {what}", path.display()),
                "Replace or remove the file (`auth-server keys generate` writes a new key)",
            )
        })?;
        keys.push(KeyInfo {
            kid: public.kid,
            bits: public.bits,
            modified: entry.metadata().and_then(|m| m.modified()).ok(),
            path,
        });
    }
    keys.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.kid.cmp(&b.kid)));
    Ok(keys)
}

/// [`list`] for `keys list`: a missing folder is an error, not an empty list.
pub fn list_existing(dir: &Path) -> anyhow::Result<Vec<KeyInfo>> {
    if !dir.exists() {
        return Err(fix(
            anyhow::anyhow!("the keys folder {} does not exist", dir.display()),
            "Point AUTH_KEYS_DIR (or --config) at the signing keys folder, or create a key with `auth-server keys generate`",
        ));
    }
    list(dir)
}

/// Before the server binds: the keys folder is readable, every key in it
/// parses, the refresh-grace secret (when present) too, and the folder is
/// writable when something is to be generated in it. Writes nothing but
/// the folder itself, when missing.
pub fn check_folder(dir: &Path) -> anyhow::Result<()> {
    let keys = list(dir)?;
    let secret = dir.join(REFRESH_SECRET_FILE);
    if keys.is_empty() || !secret.exists() {
        ensure_writable(dir)?;
    }
    if secret.exists() {
        RefreshSecret::load_or_generate(dir)?;
    }
    Ok(())
}

/// Creates the keys folder if needed and checks that this process can
/// write in it, before a key is generated (which takes seconds).
pub fn ensure_writable(dir: &Path) -> anyhow::Result<()> {
    let what_to_do = "Make the folder writable by this user, or point AUTH_KEYS_DIR at one that is";
    std::fs::create_dir_all(dir).map_err(|e| {
        fix(
            anyhow::anyhow!("cannot create the keys folder {}: {e}", dir.display()),
            what_to_do,
        )
    })?;
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            fix(
                anyhow::anyhow!("the keys folder {} is not writable: {e}", dir.display()),
                what_to_do,
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Generates a key and writes it as `<kid>.pem` with mode 0600. The bit
/// size and the folder are checked before the (slow) generation.
pub fn generate(dir: &Path, bits: usize) -> anyhow::Result<KeyInfo> {
    shared::jwt::check_key_bits(bits)?;
    ensure_writable(dir)?;
    let pem = generate_private_key_pem(bits)?;
    let public = PublicKey::from_pem(&pem)?;
    let path = dir.join(format!("{}.pem", public.kid));
    write_private(&path, pem.as_bytes())?;
    Ok(KeyInfo {
        kid: public.kid,
        bits: public.bits,
        path,
        modified: None,
    })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The file beside the signing keys that holds the refresh-grace secret.
pub const REFRESH_SECRET_FILE: &str = "refresh-grace.secret";

/// The server secret under which a refresh token's successor is derived
/// (`oauth::refresh`): 256 random bits, kept beside the signing keys and
/// shared by every instance, like them.
pub struct RefreshSecret(aws_lc_rs::hmac::Key);

impl RefreshSecret {
    /// Reads `refresh-grace.secret` from the folder, or creates it (mode 0600).
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let path = dir.join(REFRESH_SECRET_FILE);
        if !path.exists() {
            ensure_writable(dir)?;
            let secret = shared::secret::generate()?;
            match write_private(&path, secret.as_bytes()) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated the refresh-grace secret")
                }
                // Another instance sharing the folder created it first.
                Err(_) if path.exists() => {}
                Err(e) => return Err(e),
            }
        }
        let raw = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()
            .filter(|b| b.len() >= 32)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: not a base64url secret of at least 256 bits; delete it to generate a new one (replays in flight then fail)",
                    path.display()
                )
            })?;
        Ok(Self(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &bytes,
        )))
    }

    /// A secret for tests.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            bytes,
        ))
    }

    /// A separate key for another purpose (`label`), derived from the same
    /// secret, so that no value made for one purpose is valid for another.
    pub fn derive(&self, label: &str) -> aws_lc_rs::hmac::Key {
        let derived = aws_lc_rs::hmac::sign(&self.0, format!("portcullis:{label}").as_bytes());
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref())
    }

    /// The successor of a refresh token: HMAC-SHA256(secret, token), base64url.
    /// Deterministic, so that a retried rotation yields the same successor;
    /// the database keeps only its SHA-256, as for every token.
    pub fn successor(&self, token: &str) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tag = aws_lc_rs::hmac::sign(&self.0, token.as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }
}

/// The size of the development key generated into an empty folder.
pub const DEV_KEY_BITS: usize = 2048;

/// The keys a running server holds: the newest signs, all are published.
pub struct KeySet {
    pub signer: Signer,
    pub published: Vec<PublicKey>,
}

impl KeySet {
    /// Loads the folder; an empty folder gets a development key (with a warning).
    pub fn load_or_generate(dir: &Path) -> anyhow::Result<Self> {
        let mut keys = list(dir)?;
        if keys.is_empty() {
            ensure_writable(dir)?;
            tracing::warn!(
                dir = %dir.display(),
                "no signing key found: {} as a development key; for production generate and protect one with `auth-server keys generate`",
                shared::jwt::generation_notice(DEV_KEY_BITS).trim_end_matches('…')
            );
            let key = generate(dir, DEV_KEY_BITS)?;
            tracing::info!(kid = %key.kid, path = %key.path.display(), "generated the development key");
            keys = list(dir)?;
        }
        let newest = keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let pem = std::fs::read_to_string(&newest.path)?;
        let signer = Signer::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", newest.path.display()))?;
        let mut published = Vec::new();
        for key in &keys {
            let pem = std::fs::read_to_string(&key.path)?;
            published.push(PublicKey::from_pem(&pem)?);
        }
        Ok(Self { signer, published })
    }

    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.published.iter().map(PublicKey::to_jwk).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_private_key_with_mode_0600_named_by_kid() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate(dir.path(), 2048).unwrap();
        assert_eq!(
            key.path.file_name().unwrap().to_str().unwrap(),
            format!("{}.pem", key.kid)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let set = KeySet::load_or_generate(dir.path()).unwrap();
        assert_eq!(set.signer.kid(), key.kid);
        assert_eq!(set.jwks().keys.len(), 1);
    }

    #[test]
    fn refresh_secret_persists_and_derives_stable_successors() {
        let dir = tempfile::tempdir().unwrap();
        let a = RefreshSecret::load_or_generate(dir.path()).unwrap();
        let b = RefreshSecret::load_or_generate(dir.path()).unwrap();
        assert_eq!(a.successor("t"), b.successor("t"));
        assert_ne!(a.successor("t"), a.successor("u"));
        assert_eq!(a.successor("t").len(), 43);
        let other = RefreshSecret::from_bytes(&[7u8; 32]);
        assert_ne!(a.successor("t"), other.successor("t"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(REFRESH_SECRET_FILE);
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refresh_secret_refuses_garbage_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REFRESH_SECRET_FILE), "short").unwrap();
        assert!(RefreshSecret::load_or_generate(dir.path()).is_err());
    }

    #[test]
    fn load_or_generate_creates_dev_key_in_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let set = KeySet::load_or_generate(&dir.path().join("keys")).unwrap();
        assert_eq!(list(&dir.path().join("keys")).unwrap().len(), 1);
        assert_eq!(set.jwks().keys[0].kid, set.signer.kid());
    }
}
