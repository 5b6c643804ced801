//! HTTPS for both services (`TLS_CERT`, `TLS_KEY`, `TRUST_PROXY_TLS`), and
//! the trust anchors of the JWKS fetch (`SSL_CERT_FILE`).
//!
//! - [`Tls::load`] reads the PEM certificate chain and private key (PKCS#8,
//!   PKCS#1 or SEC1) and builds a rustls server config: TLS 1.2 and 1.3
//!   only, the aws-lc-rs provider's cipher suites (all AEAD with ECDHE, so
//!   forward secret), ALPN `http/1.1` (the server speaks HTTP/1.1 only), no
//!   client certificates. A missing or bad file, or a key that does not
//!   match the certificate, is a start error.
//! - The certificate is served through [`CertResolver`], which holds an
//!   `Arc<CertifiedKey>` swapped whole under a lock: a handshake sees the old
//!   or the new certificate, never a mix.
//! - [`Reloader`] polls both files' metadata (modification time, length,
//!   inode) every [`RELOAD_INTERVAL`]; when either changed it reads both
//!   again. Usable: swapped in, new connections get it (open ones keep
//!   theirs). Unusable (half written, not PEM, key and certificate apart):
//!   one warning, the previous certificate stays, and the next change is
//!   tried again. A renewal that writes the certificate and then the key is
//!   thus picked up once both are in place.
//! - [`check_plain_http`]: plain HTTP is served on loopback only, unless
//!   `TRUST_PROXY_TLS=true` says a TLS-terminating proxy stands in front.
//!
//! `shared::serve` runs the handshake inside a connection's first header
//! deadline, on a connection slot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files' metadata is looked at.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The one application protocol offered (RFC 7301).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Largest certificate or key file read (a long chain is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The standard variable naming a PEM bundle of trusted CAs (OpenSSL, curl,
/// rustls-native-certs); see [`trust_ssl_cert_file`].
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// `TLS_CERT` and `TLS_KEY`: PEM files of the certificate chain (leaf
/// first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both set: TLS; neither: plain HTTP; one alone is an error. A blank
    /// value counts as unset.
    pub fn from_settings(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Option<Self>> {
        fn set(p: Option<&Path>) -> Option<&Path> {
            p.filter(|p| !p.as_os_str().is_empty())
        }
        match (set(cert), set(key)) {
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => anyhow::bail!(
                "TLS_CERT is set but TLS_KEY is not: set both (PEM files) to serve HTTPS, or neither"
            ),
            (None, Some(_)) => anyhow::bail!(
                "TLS_KEY is set but TLS_CERT is not: set both (PEM files) to serve HTTPS, or neither"
            ),
        }
    }
}

/// Refuses to serve plain HTTP on `bound` (the address of `variable`)
/// unless it is a loopback address ([`crate::config::is_loopback_host`]),
/// the service serves TLS itself, or `TRUST_PROXY_TLS=true`.
pub fn check_plain_http(
    variable: &str,
    bound: SocketAddr,
    tls: bool,
    trust_proxy_tls: bool,
) -> anyhow::Result<()> {
    if tls || trust_proxy_tls || is_loopback(bound) {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve plain HTTP on {bound} ({variable}), which is not a loopback address: \
         passwords, tokens and session cookies would cross the network unencrypted. \
         Set TLS_CERT and TLS_KEY (PEM files) to serve HTTPS, or TRUST_PROXY_TLS=true \
         if a TLS-terminating proxy stands in front"
    )
}

/// At start, once bound: [`check_plain_http`], then the first log line
/// `listening on http(s)://ADDR` (scripts read it to find a `:0` port)
/// and, under TLS, which certificate is served.
pub fn announce(
    variable: &str,
    bound: SocketAddr,
    tls: Option<&Tls>,
    trust_proxy_tls: bool,
) -> anyhow::Result<()> {
    check_plain_http(variable, bound, tls.is_some(), trust_proxy_tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{bound}");
    if let Some(tls) = tls {
        tracing::info!(
            cert = %tls.files().cert.display(),
            sha256 = %fingerprint(&tls.current()),
            "serving HTTPS (TLS 1.2, 1.3); the certificate files are watched for renewal"
        );
    }
    Ok(())
}

/// Whether `addr` is loopback by the workspace's one rule.
fn is_loopback(addr: SocketAddr) -> bool {
    url::Url::parse(&format!("http://{addr}/"))
        .is_ok_and(|url| crate::config::is_loopback_host(&url))
}

/// The certificate served to every handshake; swapped by [`Reloader`].
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of `path` (following symlinks, as a Kubernetes secret volume
/// swaps them), or None when it cannot be read now.
fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

type Stamps = (Option<Stamp>, Option<Stamp>);

fn stamps(files: &TlsFiles) -> Stamps {
    (stamp(&files.cert), stamp(&files.key))
}

/// Reads at most [`MAX_PEM_BYTES`] of `path`; errors name `variable`.
fn read_pem(variable: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("{variable}: cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{variable}: cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        anyhow::bail!(
            "{variable}: {} is larger than {} KiB",
            path.display(),
            MAX_PEM_BYTES / 1024
        );
    }
    Ok(bytes)
}

/// Reads and checks the certificate chain and key. No error message holds
/// a byte of the key file.
fn load_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let cert_pem = read_pem("TLS_CERT", &files.cert)?;
    let key_pem = read_pem("TLS_KEY", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS_CERT: {} is not a PEM certificate chain ({e})",
                files.cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "TLS_CERT: no certificate (-----BEGIN CERTIFICATE-----) in {}",
            files.cert.display()
        );
    }
    // The PEM error could quote a line of the file: not shown.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        anyhow::anyhow!(
            "TLS_KEY: no PEM private key (PKCS#8, PKCS#1 or SEC1) in {}",
            files.key.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
            "TLS_KEY ({}) is not the key of the certificate in TLS_CERT ({})",
            files.key.display(),
            files.cert.display()
        ),
        other => anyhow::anyhow!(
            "TLS_CERT/TLS_KEY ({}, {}): {other}",
            files.cert.display(),
            files.key.display()
        ),
    })
}

/// The SHA-256 fingerprint of the leaf certificate, hex (for logs: public).
pub fn fingerprint(key: &CertifiedKey) -> String {
    let Some(leaf) = key.cert.first() else {
        return String::new();
    };
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A service's TLS: the server config and the certificate it serves.
#[derive(Debug, Clone)]
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    config: Arc<ServerConfig>,
    /// The files' stamps when they were first read.
    loaded: Stamps,
}

impl Tls {
    /// Reads the files (errors name the variable and the path) and builds
    /// the server config.
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // Taken before reading: a change in between is seen by the reloader.
        let loaded = stamps(&files);
        let key = load_certified_key(&files, &provider)?;
        let resolver = Arc::new(CertResolver::new(key));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS: protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(Self {
            files,
            provider,
            resolver,
            config: Arc::new(config),
            loaded,
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.resolver.current()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A reloader that starts from the files as [`Tls::load`] read them.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            files: self.files.clone(),
            provider: self.provider.clone(),
            resolver: self.resolver.clone(),
            seen: self.loaded.clone(),
        }
    }

    /// Polls the files every `interval` on a task of its own, which stops
    /// when the returned guard is dropped.
    pub fn spawn_reloader(&self, interval: Duration) -> ReloadTask {
        let mut reloader = self.reloader();
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                // A few `stat`s, and two small reads after a change.
                match tokio::task::spawn_blocking(move || {
                    reloader.check();
                    reloader
                })
                .await
                {
                    Ok(back) => reloader = back,
                    Err(e) => {
                        tracing::error!(error = %e, "the TLS certificate reloader failed; certificates are no longer reloaded");
                        return;
                    }
                }
            }
        });
        ReloadTask(handle)
    }
}

/// Stops the reloader task when dropped.
#[derive(Debug)]
pub struct ReloadTask(tokio::task::JoinHandle<()>);

impl Drop for ReloadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one [`Reloader::check`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Neither file changed since the last look.
    Unchanged,
    /// A file changed and the new pair is served from now on.
    Reloaded,
    /// A file changed but the pair cannot be used; the previous certificate
    /// is still served (one warning logged).
    Kept,
}

/// Watches the certificate files (see the module documentation).
#[derive(Debug)]
pub struct Reloader {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    /// The stamps last acted on.
    seen: Stamps,
}

impl Reloader {
    /// Looks at the files once; reloads when either changed.
    pub fn check(&mut self) -> Reload {
        let now = stamps(&self.files);
        if now == self.seen {
            return Reload::Unchanged;
        }
        self.seen = now;
        match load_certified_key(&self.files, &self.provider) {
            Ok(key) => {
                let sha256 = fingerprint(&key);
                self.resolver.set(key);
                tracing::info!(
                    cert = %self.files.cert.display(),
                    sha256 = %sha256,
                    "TLS certificate reloaded: new connections get it"
                );
                Reload::Reloaded
            }
            Err(e) => {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    "TLS_CERT/TLS_KEY changed but cannot be used: still serving the previous \
                     certificate; trying again at the next change of either file"
                );
                Reload::Kept
            }
        }
    }
}

/// Adds the CAs of `SSL_CERT_FILE`, when set, to `builder` as its only
/// trust anchors (the public roots built into reqwest are dropped, as
/// OpenSSL and rustls-native-certs replace their default store with that
/// file). For the JWKS fetch of an authorization server whose certificate
/// comes from a private CA.
///
/// Why this and not reqwest's `rustls-tls-native-roots` feature (which
/// honours the variable through rustls-native-certs): features unify across
/// the workspace, so every reqwest client would load the platform store at
/// build, and a bad file would be skipped silently; here a missing, empty
/// or unparsable file is a start error naming the variable.
pub fn trust_ssl_cert_file(
    builder: reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::ClientBuilder> {
    match std::env::var_os(SSL_CERT_FILE) {
        Some(path) if !path.is_empty() => trust_only(builder, Path::new(&path)),
        _ => Ok(builder),
    }
}

/// `builder` trusting exactly the CA certificates of the PEM bundle `path`.
pub fn trust_only(
    builder: reqwest::ClientBuilder,
    path: &Path,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let pem = read_pem(SSL_CERT_FILE, path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{SSL_CERT_FILE}: {} is not a PEM certificate bundle ({e})",
            path.display()
        )
    })?;
    if certs.is_empty() {
        anyhow::bail!(
            "{SSL_CERT_FILE}: no certificate (-----BEGIN CERTIFICATE-----) in {}",
            path.display()
        );
    }
    Ok(certs
        .into_iter()
        .fold(builder.tls_built_in_root_certs(false), |b, cert| {
            b.add_root_certificate(cert)
        }))
}

#[cfg(test)]
mod tests;
