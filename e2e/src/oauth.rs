//! Client side of the OAuth endpoints: PKCE, client authentication, token
//! requests and a look inside JWTs (no verification: tests compare claims).

use std::io::Read;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `n` random bytes from the OS (falls back to UUIDv4 randomness).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !from_os {
        buf = std::iter::repeat_with(|| uuid::Uuid::new_v4().into_bytes())
            .flatten()
            .take(n)
            .collect();
    }
    buf
}

/// A random base64url string of 32 bytes (43 characters).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(32))
}

/// A PKCE pair (RFC 7636, S256).
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        Self::from_verifier(random_token())
    }

    pub fn from_verifier(verifier: String) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// How a client authenticates at the token, revocation and introspection
/// endpoints.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// `client_secret_basic`: HTTP Basic with form-urlencoded id and secret.
    Basic { id: &'a str, secret: &'a str },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post { id: &'a str, secret: &'a str },
    /// A public client: `client_id` only.
    Public { id: &'a str },
    /// Nothing at all.
    None,
}

/// A response of an OAuth endpoint, with its JSON body when it has one.
#[derive(Debug, Clone)]
pub struct OAuthResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub json: Option<Value>,
}

impl OAuthResponse {
    pub async fn read(resp: reqwest::Response) -> anyhow::Result<Self> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.context("reading body")?;
        let json = serde_json::from_str(&body).ok();
        Ok(Self {
            status,
            headers,
            body,
            json,
        })
    }

    /// A string member of the JSON body.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.json.as_ref()?.get(key)?.as_str()
    }

    /// The RFC 6749 `error` code.
    pub fn error(&self) -> Option<&str> {
        self.str("error")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Whether `Cache-Control` holds `no-store`.
    pub fn no_store(&self) -> bool {
        self.headers
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
            })
    }

    /// The body's string member `key`, or an error that shows the response.
    pub fn require(&self, key: &str) -> anyhow::Result<String> {
        match self.str(key) {
            Some(v) => Ok(v.to_owned()),
            None => bail!("no `{key}` in response {self}"),
        }
    }
}

impl std::fmt::Display for OAuthResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(2000).collect();
        write!(f, "{} {body}", self.status)
    }
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// POSTs `form` (application/x-www-form-urlencoded) with the client's
/// authentication.
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    auth: ClientAuth<'_>,
    form: &[(&str, &str)],
) -> anyhow::Result<OAuthResponse> {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let mut req = http.post(url);
    match auth {
        ClientAuth::Basic { id, secret } => {
            req = req.basic_auth(form_encode(id), Some(form_encode(secret)));
        }
        ClientAuth::Post { id, secret } => {
            fields.push(("client_id", id));
            fields.push(("client_secret", secret));
        }
        ClientAuth::Public { id } => fields.push(("client_id", id)),
        ClientAuth::None => {}
    }
    let resp = req
        .form(&fields)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    OAuthResponse::read(resp).await
}

/// Header and claims of a compact JWS, decoded without verification.
pub fn decode_jwt(token: &str) -> anyhow::Result<(Value, Value)> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a compact JWS: {token}");
    };
    let decode = |part: &str| -> anyhow::Result<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(part).context("base64url")?;
        serde_json::from_slice(&bytes).context("JSON")
    };
    Ok((decode(header)?, decode(payload)?))
}

/// RFC 7638 thumbprint of an RSA JWK from its base64url `n` and `e`.
pub fn rsa_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(Pkce::new().verifier.len(), 43);
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rsa_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
