//! Access-token costs: signing with the parsed-once aws-lc-rs key, signing with
//! `jsonwebtoken::encode` (which re-parses the PEM on every call, shown for
//! comparison only), offline verification with a warm key cache and no
//! verified-token cache (every call an RSA verification), the same token
//! again through the verified-token cache (a hit: a hash and a lookup), and
//! tokens that always miss that cache (the RSA path plus the cache's
//! overhead).
//!
//! Run: `cargo bench -p shared --bench tokens -- --warm-up-time 1 --measurement-time 3`
//! Figures and the machine they came from: docs/benchmarks.md.

// Setup failures abort the benchmark: expect is the clearest report.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shared::jwt::{
    AccessTokenClaims, DEFAULT_VERIFY_CACHE_SIZE, KeySource, PublicKey, Signer, Verifier,
    VerifierSettings, generate_private_key_pem,
};

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "portcullis-api";

/// Claims shaped like the ones the authorization server issues for a user
/// who granted two scopes and has one role.
fn realistic_claims() -> AccessTokenClaims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "0b9f6c3e-5d2a-4f7e-9a51-3c8d2e7f1a64".into(),
        aud: AUDIENCE.into(),
        client_id: "c_4kX9pQ2rT7vW1yZ3bN5mH8jL0sD6fG".into(),
        scope: "notes:read notes:write".into(),
        // Long enough that the token stays valid for the whole run.
        exp: now + 24 * 3600,
        iat: now,
        nbf: now,
        jti: "6f1c2d3e-4a5b-4c6d-8e7f-901a2b3c4d5e".into(),
        roles: vec!["user".into()],
        tier: Default::default(),
    }
}

fn tokens(c: &mut Criterion) {
    let pem = generate_private_key_pem(2048).expect("2048-bit key");
    let signer = Signer::from_pem(&pem).expect("signer");
    let claims = realistic_claims();

    let mut group = c.benchmark_group("tokens");
    group.throughput(Throughput::Elements(1));

    group.bench_function("sign_signer_parsed_once", |b| {
        b.iter(|| signer.sign(black_box(&claims)).expect("sign"))
    });

    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(signer.kid().to_owned());
    // The slow path: the PEM is parsed again for every token.
    group.bench_function("sign_jsonwebtoken_encode_reparse_pem", |b| {
        b.iter(|| {
            let key = EncodingKey::from_rsa_pem(black_box(pem.as_bytes())).expect("key");
            jsonwebtoken::encode(&header, black_box(&claims), &key).expect("encode")
        })
    });

    let public = PublicKey::from_pem(&pem).expect("public key");
    let verifier_with_cache = |cache_size| {
        Verifier::new(VerifierSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: Duration::from_secs(60),
            // The claims above live 24 hours.
            max_lifetime: Duration::from_secs(24 * 3600),
            source: KeySource::Static(vec![public.clone()]),
            cache_size,
        })
        .expect("verifier")
    };
    // No verified-token cache: every call verifies the signature.
    let verifier = verifier_with_cache(0);
    let token = signer.sign(&claims).expect("sign");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Sanity check before measuring: the token verifies and round-trips.
    let verified = runtime
        .block_on(verifier.verify(&token))
        .expect("token verifies");
    assert_eq!(verified, claims);

    group.bench_function("verify_warm_cache_static_keys", |b| {
        b.to_async(&runtime)
            .iter(|| async { verifier.verify(black_box(&token)).await.expect("verify") })
    });

    // The default verifier: the same token again is a cache hit.
    let cached = verifier_with_cache(DEFAULT_VERIFY_CACHE_SIZE);
    runtime
        .block_on(cached.verify(&token))
        .expect("token verifies");
    group.bench_function("verify_cached_repeated", |b| {
        b.to_async(&runtime)
            .iter(|| async { cached.verify(black_box(&token)).await.expect("verify") })
    });

    // Tokens that always miss: 256 distinct tokens in turn through a
    // cache of 32, so each call pays the RSA verification plus the hash,
    // the lookup and the insertion (and evictions).
    let small = verifier_with_cache(32);
    let distinct: Vec<String> = (0..256)
        .map(|i| {
            let mut claims = realistic_claims();
            claims.jti = format!("{i:08}-4a5b-4c6d-8e7f-901a2b3c4d5e");
            signer.sign(&claims).expect("sign")
        })
        .collect();
    let mut next = 0;
    group.bench_function("verify_cached_always_missing", |b| {
        b.to_async(&runtime).iter(|| {
            next = (next + 1) % distinct.len();
            let token = &distinct[next];
            let small = &small;
            async move { small.verify(black_box(token)).await.expect("verify") }
        })
    });

    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
