//! The signing keys folder: PKCS#8 PEM files named `<kid>.pem`, mode 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use shared::jwt::{Jwks, PublicKey, Signer, generate_private_key_pem};

#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub bits: usize,
    pub path: PathBuf,
    #[serde(skip)]
    pub modified: Option<std::time::SystemTime>,
}

/// Every key in the folder, newest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<KeyInfo>> {
    let mut keys = Vec::new();
    if !dir.exists() {
        return Ok(keys);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let public = PublicKey::from_pem(&pem).with_context(|| format!("{}", path.display()))?;
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

/// Generates a key and writes it as `<kid>.pem` with mode 0600.
pub fn generate(dir: &Path, bits: usize) -> anyhow::Result<KeyInfo> {
    let pem = generate_private_key_pem(bits)?;
    let public = PublicKey::from_pem(&pem)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
            let key = generate(dir, 2048)?;
            tracing::warn!(
                kid = %key.kid,
                path = %key.path.display(),
                "no signing key found: generated a development key; generate and protect a production key with `auth-server keys generate`"
            );
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
    fn load_or_generate_creates_dev_key_in_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let set = KeySet::load_or_generate(&dir.path().join("keys")).unwrap();
        assert_eq!(list(&dir.path().join("keys")).unwrap().len(), 1);
        assert_eq!(set.jwks().keys[0].kid, set.signer.kid());
    }
}
