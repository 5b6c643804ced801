//! HTTPS of both services (`TLS_CERT`, `TLS_KEY`, `TRUST_PROXY_TLS`): a
//! test CA (rcgen) signs a certificate for 127.0.0.1 and localhost; the
//! whole flow runs over HTTPS with the resource API fetching the JWKS over
//! HTTPS (trusting the CA through `SSL_CERT_FILE`); old protocol versions
//! and plain HTTP get no service; renewed files are picked up without a
//! restart, garbage is not; plain HTTP off loopback is refused at start.
//! SQLite only: no database is involved in what is tested here.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use e2e::binaries::BuildPolicy;
use e2e::{Binaries, Browser, Service, ServiceSpec, StackOptions, StackTls};
use reqwest::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use shared::test_tls::{ServerCert, TestCa, replace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

/// A test CA, the certificate files both services serve, in a temp dir.
struct Certs {
    dir: tempfile::TempDir,
    ca: TestCa,
    first: ServerCert,
    tls: StackTls,
}

fn certs() -> Certs {
    let dir = tempfile::Builder::new()
        .prefix("portcullis-tls-")
        .tempdir()
        .unwrap();
    let ca = TestCa::new();
    let first = ca.server_cert();
    let tls = StackTls {
        cert: dir.path().join("server.crt"),
        key: dir.path().join("server.key"),
        ca_file: dir.path().join("ca.crt"),
        ca_pem: ca.cert_pem(),
    };
    first.write(&tls.cert, &tls.key).unwrap();
    std::fs::write(&tls.ca_file, &tls.ca_pem).unwrap();
    Certs {
        dir,
        ca,
        first,
        tls,
    }
}

/// A browser (cookie jar, no redirects) that trusts the test CA.
fn browser(ca_pem: &str) -> Browser {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    Browser { http }
}

both!(tls_runs_the_whole_flow_over_https => tls_runs_the_whole_flow_over_https_sqlite, tls_runs_the_whole_flow_over_https_postgres);
async fn tls_runs_the_whole_flow_over_https(backend: Backend) {
    let c = certs();
    let mut f = fixture_with(&backend, StackOptions::default().tls(c.tls.clone())).await;
    f.browser = browser(&c.tls.ca_pem);
    let stack = &f.stack;
    let resource = stack.resource.as_ref().unwrap();
    for service in [&stack.auth, resource] {
        assert!(
            service
                .first_line
                .contains("listening on https://127.0.0.1:"),
            "{}: first line {:?}",
            service.name,
            service.first_line
        );
    }
    assert_eq!(stack.issuer, stack.auth.url);
    assert!(stack.issuer.starts_with("https://"), "{}", stack.issuer);
    assert!(
        stack.endpoint("jwks_uri").unwrap().starts_with("https://"),
        "{}",
        stack.metadata
    );

    // The session and CSRF cookies are Secure.
    let pkce = e2e::Pkce::new();
    let url = authorize_url(stack, &f.client.id, SCOPE, &pkce, "s");
    let mut cookies = Vec::new();
    let mut next = Some(url);
    for _ in 0..5 {
        let Some(url) = next.take() else { break };
        let page = f.browser.get(&url).await.unwrap();
        cookies.extend(
            page.headers
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        next = page.location().filter(|_| page.status.is_redirection());
    }
    assert!(!cookies.is_empty(), "no cookie set before login");
    for cookie in &cookies {
        assert!(cookie.contains("; Secure"), "{cookie}");
    }

    // authorize → login → consent → code → tokens (PKCE) → refresh.
    let grant = authorize(stack, &f.browser, &f.client.id, &f.user, SCOPE).await;
    let first = assert_tokens(&exchange(stack, f.client.basic(), &grant).await);
    let second =
        assert_tokens(&refresh(stack, f.client.basic(), first.refresh.as_ref().unwrap()).await);
    let second_refresh = second.refresh.clone().unwrap();

    // The resource API fetches the JWKS from https://… trusting the CA.
    let me = api(stack, Method::GET, "/api/v2/me", Some(&second.access), None).await;
    assert_eq!(me.status, StatusCode::OK, "GET /api/v2/me: {me}");
    assert_eq!(me.str("sub"), Some(f.user.id.as_str()), "{me}");

    // Revocation, then the refresh token is dead.
    let revoked = stack
        .revoke(f.client.basic(), &second_refresh, Some("refresh_token"))
        .await
        .unwrap();
    assert_eq!(revoked.status, StatusCode::OK, "{revoked}");
    let after = refresh(stack, f.client.basic(), &second_refresh).await;
    assert_oauth_error(&after, StatusCode::BAD_REQUEST, "invalid_grant");

    // A client that does not trust the CA gets no connection.
    let untrusting = reqwest::Client::new();
    for base in [&stack.auth.url, &resource.url] {
        let refused = untrusting.get(format!("{base}/healthz")).send().await;
        assert!(refused.is_err(), "{base}: {refused:?}");
    }
}

/// `openssl s_client` against `addr` with `args`, trusting `ca_file`:
/// whether it exited 0, and everything it printed.
async fn s_client(addr: SocketAddr, ca_file: &Path, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-servername")
        .arg("localhost")
        .arg("-CAfile")
        .arg(ca_file)
        .arg("-verify_return_error")
        .args(args)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("openssl s_client took over 20 s")
        .expect("running openssl (the TLS tests need /usr/bin/openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_tls_1_1_and_plain_http_and_speaks_tls_1_2_and_1_3() {
    let c = certs();
    let stack = start(&Backend::Sqlite, StackOptions::default().tls(c.tls.clone())).await;
    let resource = stack.resource.as_ref().unwrap();
    for addr in [stack.auth.addr, resource.addr] {
        for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            let (ok, out) = s_client(addr, &c.tls.ca_file, &[flag, "-alpn", "http/1.1"]).await;
            assert!(ok, "{addr} {flag}: {out}");
            // `New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384`
            let negotiated = format!("New, {version}, Cipher is ");
            assert!(out.contains(&negotiated), "{addr} {flag}: {out}");
            assert!(out.contains("Verification: OK"), "{addr} {flag}: {out}");
            assert!(
                out.contains("ALPN protocol: http/1.1"),
                "{addr} {flag}: {out}"
            );
            // AEAD suites only (GCM or ChaCha20-Poly1305), ECDHE under 1.2.
            assert!(
                out.contains("GCM") || out.contains("CHACHA20"),
                "{addr} {flag}: {out}"
            );
        }
        // TLS 1.1, with the client's own floor lowered so that it does
        // offer it: the server ends the handshake with a fatal alert
        // (rustls: handshake_failure), and nothing is negotiated.
        let (ok, out) = s_client(
            addr,
            &c.tls.ca_file,
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        )
        .await;
        assert!(!ok, "{addr}: TLS 1.1 connected: {out}");
        assert!(
            out.contains("alert handshake failure") || out.contains("alert protocol version"),
            "{addr}: {out}"
        );
        assert!(out.contains("Cipher is (NONE)"), "{addr}: {out}");
        assert!(!out.contains("no protocols available"), "{addr}: {out}");

        // Plain HTTP to the HTTPS port: no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
        assert!(
            !String::from_utf8_lossy(&answer).contains("HTTP/1."),
            "{addr}: plain HTTP answered: {answer:?}"
        );
    }
}

/// The leaf certificate a new TLS connection to `addr` is shown (a fresh
/// client each time: a resumed session would show its old one).
async fn served_cert(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// Waits until every service in `services` shows `expected` to a new
/// connection, at most 20 s.
async fn wait_until_served(services: &[&Service], ca_pem: &str, expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for service in services {
        while served_cert(service.addr, ca_pem).await != expected {
            assert!(
                Instant::now() < deadline,
                "{} still serves the old certificate; output:\n{}",
                service.name,
                service.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

const WARNING: &str = "cannot be used: still serving the previous certificate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_reloads_renewed_certificate_files_without_restart_and_keeps_it_over_garbage() {
    let c = certs();
    let stack = start(&Backend::Sqlite, StackOptions::default().tls(c.tls.clone())).await;
    let resource = stack.resource.as_ref().unwrap();
    let services = [&stack.auth, resource];
    let ca = &c.tls.ca_pem;
    for service in services {
        assert_eq!(served_cert(service.addr, ca).await, c.first.cert_der);
    }
    let pids: Vec<_> = services.iter().map(|s| s.id()).collect();

    // Renewal: a new key and certificate, renamed into place.
    let second = c.ca.server_cert();
    second.write(&c.tls.cert, &c.tls.key).unwrap();
    wait_until_served(&services, ca, &second.cert_der).await;
    assert_ne!(second.cert_der, c.first.cert_der);

    // Garbage (a key file that looks like PEM): the last good certificate
    // stays, with one warning per service and no key material logged.
    let marker = "NOTAKEYBUTSECRETLOOKING";
    replace(&c.tls.cert, b"garbage\n").unwrap();
    replace(
        &c.tls.key,
        format!("-----BEGIN PRIVATE KEY-----\n{marker}\n-----END PRIVATE KEY-----\n").as_bytes(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for service in services {
        while !service.logs.text().contains(WARNING) {
            assert!(
                Instant::now() < deadline,
                "{}: no warning about the bad files; output:\n{}",
                service.name,
                service.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A few more polls of the unchanged garbage.
    tokio::time::sleep(shared::tls::RELOAD_INTERVAL * 2 + Duration::from_millis(500)).await;
    for service in services {
        assert_eq!(served_cert(service.addr, ca).await, second.cert_der);
        let logs = service.logs.text();
        assert_eq!(logs.matches(WARNING).count(), 1, "{}: {logs}", service.name);
        assert!(
            !logs.contains(marker),
            "{}: key file content logged",
            service.name
        );
        for line in second.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !logs.contains(line),
                "{}: key material logged",
                service.name
            );
        }
    }
    let healthz = stack
        .http
        .get(format!("{}/healthz", stack.auth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);

    // Good files again: picked up, by the same processes.
    let third = c.ca.server_cert();
    third.write(&c.tls.cert, &c.tls.key).unwrap();
    wait_until_served(&services, ca, &third.cert_der).await;
    let now: Vec<_> = services.iter().map(|s| s.id()).collect();
    assert_eq!(pids, now, "a service restarted");
    drop(c.dir);
}

/// `PROGRAM serve` with `env` (and a throw-away database and keys): its
/// exit status and output, or None if it is still running after 30 s.
async fn serve_once(program: &Path, dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut spec = ServiceSpec::new("refused", program)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display()),
        )
        .env("AUTH_KEYS_DIR", dir.join("keys").display().to_string());
    for (k, v) in env {
        spec = spec.env(*k, *v);
    }
    let mut cmd = spec.command();
    cmd.arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("a refused service exits at once")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_plain_http_off_loopback_is_refused_at_start_unless_trust_proxy_tls() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Off loopback the auth server never makes a development key itself.
    let generated = std::process::Command::new(&bins.auth_server)
        .args(["keys", "generate"])
        .env("AUTH_KEYS_DIR", dir.path().join("keys"))
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    for (program, listen) in [
        (&bins.auth_server, "AUTH_LISTEN"),
        (&bins.resource_api, "RESOURCE_LISTEN"),
    ] {
        // Off loopback, the auth server needs its public URL.
        let all = [
            (listen, "0.0.0.0:0"),
            ("AUTH_ISSUER", "https://auth.example"),
        ];
        let output = serve_once(program, dir.path(), &all).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{listen}: started: {text}");
        for needle in [
            "refusing to serve plain HTTP",
            "not a loopback address",
            "TLS_CERT and TLS_KEY",
            "TRUST_PROXY_TLS=true",
        ] {
            assert!(text.contains(needle), "{listen}: {needle:?} not in {text}");
        }
        assert!(!text.contains("listening on"), "{listen}: {text}");

        // Only one of the two files: a start error too.
        let mut half = all.to_vec();
        half.push(("TLS_CERT", "/nonexistent/cert.pem"));
        let output = serve_once(program, dir.path(), &half).await;
        let text = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{listen}: {text}");
        assert!(
            text.contains("TLS_CERT is set but TLS_KEY is not"),
            "{listen}: {text}"
        );

        // Behind a TLS-terminating proxy: served (the probe reaches 0.0.0.0
        // through loopback).
        let mut spec = ServiceSpec::new(listen, program)
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db.sqlite").display()
                ),
            )
            .env(
                "AUTH_KEYS_DIR",
                dir.path().join("keys").display().to_string(),
            )
            .env("TRUST_PROXY_TLS", "true")
            .arg("serve");
        for (k, v) in &all {
            spec = spec.env(*k, *v);
        }
        let mut service = Service::start(spec).await.unwrap();
        assert!(
            service.first_line.contains("listening on http://0.0.0.0:"),
            "{}",
            service.first_line
        );
        let health = reqwest::get(format!("{}/healthz", service.url))
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        service.terminate(Duration::from_secs(10)).await.unwrap();
    }
}

/// Bad certificate files at start: a start error naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_bad_certificate_files_are_a_start_error() {
    let bins = Binaries::ensure_async(BuildPolicy::Always).await.unwrap();
    let c = certs();
    let other = c.ca.server_cert();
    let other_key = c.dir.path().join("other.key");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let cert = c.tls.cert.display().to_string();
    let missing = c.dir.path().join("missing.pem").display().to_string();
    let other_key = other_key.display().to_string();
    for program in [&bins.auth_server, &bins.resource_api] {
        for (key, expected) in [
            (missing.as_str(), "TLS_KEY: cannot open"),
            (other_key.as_str(), "is not the key of the certificate"),
        ] {
            let output = serve_once(
                program,
                c.dir.path(),
                &[
                    ("AUTH_LISTEN", "127.0.0.1:0"),
                    ("RESOURCE_LISTEN", "127.0.0.1:0"),
                    ("TLS_CERT", &cert),
                    ("TLS_KEY", key),
                ],
            )
            .await;
            let text = String::from_utf8_lossy(&output.stderr).to_string()
                + &String::from_utf8_lossy(&output.stdout);
            assert!(!output.status.success(), "{}: {text}", program.display());
            assert!(text.contains(expected), "{}: {text}", program.display());
            assert!(!text.contains("listening on"), "{text}");
        }
    }
}
