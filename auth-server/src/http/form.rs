//! Reading `application/x-www-form-urlencoded` bodies: size-limited, each
//! parameter at most once (RFC 6749 §3.1, §3.2), errors as RFC 6749 JSON.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http::{HeaderMap, header};
use shared::oauth_error::OAuthError;

use super::BODY_LIMIT;

/// A parsed form: each name once.
#[derive(Debug, Clone, Default)]
pub struct Form(pub BTreeMap<String, String>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    pub fn insert(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    pub fn encode(&self) -> String {
        serde_urlencoded::to_string(&self.0).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
            .map_err(|_| OAuthError::invalid_request("malformed form body"))?;
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            if map.insert(name.clone(), value).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name:?} given more than once"
                )));
            }
        }
        Ok(Self(map))
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads the body of a form POST.
pub async fn read(request: Request) -> Result<(HeaderMap, Form), OAuthError> {
    let (parts, body) = request.into_parts();
    if !is_form(&parts.headers) {
        return Err(OAuthError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_limited(body).await?;
    Ok((parts.headers, Form::parse(&bytes)?))
}

async fn read_limited(body: Body) -> Result<Bytes, OAuthError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        OAuthError::invalid_request(format!("request body larger than {BODY_LIMIT} bytes"))
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_repeated_parameter() {
        assert!(Form::parse(b"a=1&a=2").is_err());
        let f = Form::parse(b"a=1&b=x%20y").unwrap();
        assert_eq!(f.get("b"), Some("x y"));
    }
}
