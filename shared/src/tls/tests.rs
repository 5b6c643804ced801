#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::*;
use crate::serve::{HttpSettings, serve_with};
use crate::test_tls::{ServerCert, TestCa, replace};

/// A CA, a certificate it signed written to `dir`, and the files.
struct Fixture {
    dir: tempfile::TempDir,
    ca: TestCa,
    first: ServerCert,
    files: TlsFiles,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.server_cert();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    first.write(&files.cert, &files.key).unwrap();
    Fixture {
        dir,
        ca,
        first,
        files,
    }
}

fn served_der(tls: &Tls) -> Vec<u8> {
    tls.current().cert[0].as_ref().to_vec()
}

#[test]
fn tls_files_are_both_or_neither() {
    let cert = Path::new("/c.pem");
    let key = Path::new("/k.pem");
    assert_eq!(
        TlsFiles::from_settings(Some(cert), Some(key)).unwrap(),
        Some(TlsFiles {
            cert: cert.into(),
            key: key.into()
        })
    );
    assert_eq!(TlsFiles::from_settings(None, None).unwrap(), None);
    assert_eq!(
        TlsFiles::from_settings(Some(Path::new("")), None).unwrap(),
        None
    );
    let only_cert = TlsFiles::from_settings(Some(cert), None)
        .unwrap_err()
        .to_string();
    assert!(
        only_cert.contains("TLS_CERT is set but TLS_KEY is not"),
        "{only_cert}"
    );
    let only_key = TlsFiles::from_settings(Some(Path::new("")), Some(key))
        .unwrap_err()
        .to_string();
    assert!(
        only_key.contains("TLS_KEY is set but TLS_CERT is not"),
        "{only_key}"
    );
}

#[test]
fn check_plain_http_refuses_non_loopback_unless_tls_or_trusted_proxy() {
    for loopback in ["127.0.0.1:8080", "127.9.8.7:0", "[::1]:443"] {
        let addr: SocketAddr = loopback.parse().unwrap();
        check_plain_http("AUTH_LISTEN", addr, false, false).unwrap();
    }
    for open in [
        "0.0.0.0:8080",
        "[::]:8080",
        "10.1.2.3:80",
        "[::ffff:127.0.0.1]:80",
    ] {
        let addr: SocketAddr = open.parse().unwrap();
        let error = check_plain_http("RESOURCE_LISTEN", addr, false, false)
            .unwrap_err()
            .to_string();
        for needle in [
            "refusing to serve plain HTTP",
            "RESOURCE_LISTEN",
            "not a loopback address",
            "TLS_CERT and TLS_KEY",
            "TRUST_PROXY_TLS=true",
        ] {
            assert!(error.contains(needle), "{open}: {error}");
        }
        check_plain_http("RESOURCE_LISTEN", addr, true, false).unwrap();
        check_plain_http("RESOURCE_LISTEN", addr, false, true).unwrap();
    }
}

#[test]
fn tls_load_refuses_missing_unparsable_and_mismatched_files() {
    let f = fixture();
    let other = f.ca.server_cert();
    let garbage = f.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let other_key = f.dir.path().join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let missing = f.dir.path().join("missing.pem");
    let cases = [
        (
            missing.clone(),
            f.files.key.clone(),
            "TLS_CERT: cannot open",
        ),
        (f.files.cert.clone(), missing, "TLS_KEY: cannot open"),
        (
            garbage.clone(),
            f.files.key.clone(),
            "TLS_CERT: no certificate",
        ),
        (f.files.cert.clone(), garbage, "TLS_KEY: no PEM private key"),
        // The key of another certificate.
        (
            f.files.cert.clone(),
            other_key,
            "is not the key of the certificate",
        ),
        // A key where the certificate should be, and the other way round.
        (
            f.files.key.clone(),
            f.files.cert.clone(),
            "TLS_CERT: no certificate",
        ),
    ];
    let key_body: String = f
        .first
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (cert, key, expected) in cases {
        let error = format!("{:#}", Tls::load(TlsFiles { cert, key }).unwrap_err());
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(!error.contains(&key_body[..16]), "key material in {error}");
    }
    let tls = Tls::load(f.files.clone()).unwrap();
    assert_eq!(served_der(&tls), f.first.cert_der);
    assert_eq!(tls.config().alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn reloader_swaps_in_new_files_and_keeps_the_old_certificate_on_bad_ones() {
    let f = fixture();
    let tls = Tls::load(f.files.clone()).unwrap();
    let mut reloader = tls.reloader();
    assert_eq!(reloader.check(), Reload::Unchanged);

    // Garbage in both files: the first certificate stays.
    replace(&f.files.cert, b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    replace(&f.files.key, b"garbage").unwrap();
    assert_eq!(reloader.check(), Reload::Kept);
    assert_eq!(served_der(&tls), f.first.cert_der);
    // Unchanged since: no second attempt (and no second warning).
    assert_eq!(reloader.check(), Reload::Unchanged);

    // A renewal that lands the certificate before the key: kept until the
    // key follows, then served.
    let second = f.ca.server_cert();
    replace(&f.files.cert, second.cert_pem.as_bytes()).unwrap();
    replace(&f.files.key, f.first.key_pem.as_bytes()).unwrap();
    assert_eq!(reloader.check(), Reload::Kept);
    assert_eq!(served_der(&tls), f.first.cert_der);
    replace(&f.files.key, second.key_pem.as_bytes()).unwrap();
    assert_eq!(reloader.check(), Reload::Reloaded);
    assert_eq!(served_der(&tls), second.cert_der);
    assert_eq!(reloader.check(), Reload::Unchanged);

    // A file gone for a while: kept, and picked up again when back.
    std::fs::remove_file(&f.files.key).unwrap();
    assert_eq!(reloader.check(), Reload::Kept);
    assert_eq!(served_der(&tls), second.cert_der);
    let third = f.ca.server_cert();
    third.write(&f.files.cert, &f.files.key).unwrap();
    assert_eq!(reloader.check(), Reload::Reloaded);
    assert_eq!(served_der(&tls), third.cert_der);
}

/// A TLS server on 127.0.0.1:0 with `/` and `/healthz`.
async fn start(
    tls: Tls,
    settings: HttpSettings,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route(crate::paths::HEALTHZ_PATH, get(|| async { "ok" }))
        .route("/", get(|| async { "hello" }));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve_with(
            listener,
            router,
            &settings,
            Some(tls),
            async {
                let _ = rx.await;
            },
            || {},
        )
        .await;
    });
    (addr, tx, server)
}

/// A rustls client trusting `ca_pem` only, limited to `versions`.
fn connector(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects over TLS, sends `GET path`, reads until the server closes.
/// Returns the answer, the leaf certificate seen and the ALPN protocol.
async fn get_over_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
) -> (String, Vec<u8>, Option<Vec<u8>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let (_, conn) = stream.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    (String::from_utf8_lossy(&answer).to_string(), leaf, alpn)
}

#[tokio::test]
async fn serve_with_tls_answers_over_tls_1_2_and_1_3_and_picks_up_a_renewed_certificate() {
    let f = fixture();
    let tls = Tls::load(f.files.clone()).unwrap();
    let (addr, _stop, _server) = start(tls, HttpSettings::default()).await;
    let ca = f.ca.cert_pem();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (answer, leaf, alpn) = get_over_tls(addr, &connector(&ca, &[version]), "/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{version:?}: {answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        assert_eq!(leaf, f.first.cert_der);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    // Renewed on disk: a new connection gets it within a few polls.
    let second = f.ca.server_cert();
    second.write(&f.files.cert, &f.files.key).unwrap();
    // (A fresh client each time: a resumed session would report the
    // certificate of the session it resumes.)
    let deadline = Instant::now() + RELOAD_INTERVAL * 5;
    loop {
        let client = connector(&ca, &[&rustls::version::TLS13]);
        let (answer, leaf, _) = get_over_tls(addr, &client, "/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        if leaf == second.cert_der {
            break;
        }
        assert_eq!(leaf, f.first.cert_der);
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_with_tls_gives_plain_http_no_http_answer() {
    let f = fixture();
    let (addr, _stop, _server) =
        start(Tls::load(f.files.clone()).unwrap(), HttpSettings::default()).await;
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        loop {
            match plain.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    // At most a TLS alert record (content type 21).
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
}

#[tokio::test]
async fn serve_with_tls_closes_a_stalled_handshake_at_the_header_timeout_and_counts_it_against_the_cap()
 {
    let f = fixture();
    let settings = HttpSettings {
        header_timeout: Duration::from_millis(800),
        max_connections: 1,
        ..HttpSettings::default()
    };
    let (addr, _stop, _server) = start(Tls::load(f.files.clone()).unwrap(), settings).await;
    // The start of a ClientHello record, and then nothing.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    let accepted = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // It holds the one slot: the next connection is served on the
    // overflow's terms (503 but for liveness), over TLS too.
    let client = connector(&f.ca.cert_pem(), &[&rustls::version::TLS13]);
    let (busy, _, _) = get_over_tls(addr, &client, "/").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    let (live, _, _) = get_over_tls(addr, &client, "/healthz").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");

    // Closed at the header deadline, not before.
    let mut chunk = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stalled.read(&mut chunk).await {
                Ok(0) | Err(_) => return accepted.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(closed >= Duration::from_millis(600), "{closed:?}");

    // The slot is free again.
    let (served, _, _) = get_over_tls(addr, &client, "/").await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

#[tokio::test]
async fn trust_only_makes_reqwest_trust_a_private_ca_and_nothing_else() {
    let f = fixture();
    let (addr, _stop, _server) =
        start(Tls::load(f.files.clone()).unwrap(), HttpSettings::default()).await;
    let url = format!("https://{addr}/");

    let ca_file = f.dir.path().join("ca.pem");
    std::fs::write(&ca_file, f.ca.cert_pem()).unwrap();
    let trusting = trust_only(reqwest::Client::builder(), &ca_file)
        .unwrap()
        .build()
        .unwrap();
    let answer = trusting.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "hello");

    // Without it, the private CA is unknown.
    let default = reqwest::Client::builder().build().unwrap();
    assert!(default.get(&url).send().await.is_err());
    // Trusting another CA only: refused as well.
    let other_file = f.dir.path().join("other-ca.pem");
    std::fs::write(&other_file, TestCa::new().cert_pem()).unwrap();
    let other = trust_only(reqwest::Client::builder(), &other_file)
        .unwrap()
        .build()
        .unwrap();
    assert!(other.get(&url).send().await.is_err());

    // A file without certificates is an error naming the variable.
    let error = trust_only(reqwest::Client::builder(), &f.files.key)
        .unwrap_err()
        .to_string();
    assert!(error.contains("SSL_CERT_FILE"), "{error}");
}
