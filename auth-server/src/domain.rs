//! Parse-don't-validate types for what users and admins hand us.

use std::collections::BTreeSet;
use std::fmt;

use url::Url;

use crate::config::is_loopback_host;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("invalid email address")]
    Email,
    #[error("invalid redirect URI: {0}")]
    RedirectUri(&'static str),
    #[error("invalid scope: {0}")]
    Scope(&'static str),
    #[error("invalid name")]
    Name,
    #[error("unsupported grant type {0:?}")]
    GrantType(String),
}

/// A lower-cased email address with one `@`, a local part and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let value = raw.trim().to_lowercase();
        let (local, domain) = value.split_once('@').ok_or(DomainError::Email)?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && value.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
        if ok {
            Ok(Self(value))
        } else {
            Err(DomainError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 100 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, DomainError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(DomainError::Name);
    }
    Ok(name.to_owned())
}

/// A registered redirect URI: absolute, no fragment, no userinfo, https unless loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(Url);

impl RedirectUri {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let url = Url::parse(raw).map_err(|_| DomainError::RedirectUri("not an absolute URL"))?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(DomainError::RedirectUri("must not contain a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DomainError::RedirectUri(
                "must not contain user information",
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" => return Err(DomainError::RedirectUri("http is allowed only on loopback")),
            _ => {
                return Err(DomainError::RedirectUri(
                    "scheme must be https (or http on loopback)",
                ));
            }
        }
        if url.host().is_none() {
            return Err(DomainError::RedirectUri("must have a host"));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A set of RFC 6749 §3.3 scope tokens (printable ASCII except space, `"` and `\`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            let valid = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(DomainError::Scope(
                    "scope tokens are printable ASCII without space, '\"' or '\\'",
                ));
            }
            if token.len() > 64 {
                return Err(DomainError::Scope("scope token longer than 64 characters"));
            }
            set.insert(token.to_owned());
        }
        if set.is_empty() {
            return Err(DomainError::Scope("empty scope"));
        }
        Ok(Self(set))
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

/// Grant types a client may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw {
            "authorization_code" => Ok(Self::AuthorizationCode),
            "refresh_token" => Ok(Self::RefreshToken),
            "client_credentials" => Ok(Self::ClientCredentials),
            other => Err(DomainError::GrantType(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_parse_lowercases_and_rejects_garbage() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@@example.com",
            "ann@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_rejects_fragment_in_redirect_uri() {
        assert!(RedirectUri::parse("https://app.example/cb#x").is_err());
        assert!(RedirectUri::parse("https://app.example/cb#").is_err());
    }

    #[test]
    fn parse_rejects_http_redirect_uri_off_loopback() {
        assert!(RedirectUri::parse("http://app.example/cb").is_err());
        assert!(RedirectUri::parse("http://127.0.0.1:8765/cb").is_ok());
        assert!(RedirectUri::parse("http://[::1]/cb").is_ok());
        assert!(RedirectUri::parse("https://app.example/cb?x=1").is_ok());
        assert!(RedirectUri::parse("javascript:alert(1)").is_err());
        assert!(RedirectUri::parse("https://user:pw@app.example/cb").is_err());
        assert!(RedirectUri::parse("/relative").is_err());
    }

    #[test]
    fn scope_parse_follows_rfc6749() {
        let s = ScopeSet::parse("notes:write notes:read notes:read").unwrap();
        assert_eq!(s.to_string(), "notes:read notes:write");
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("é").is_err());
        assert!(ScopeSet::parse("   ").is_err());
        let narrow = ScopeSet::parse("notes:read").unwrap();
        assert!(narrow.is_subset(&s));
        assert!(!s.is_subset(&narrow));
    }

    #[test]
    fn grant_type_parse_rejects_password_and_implicit() {
        assert!(GrantType::parse("password").is_err());
        assert!(GrantType::parse("implicit").is_err());
        assert_eq!(
            GrantType::parse("client_credentials").unwrap(),
            GrantType::ClientCredentials
        );
    }
}
