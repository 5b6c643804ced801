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
    #[error("invalid name: {0}")]
    Name(NameError),
    #[error("unsupported grant type {0:?}")]
    GrantType(String),
}

/// An email address in its normal form (NFC, trimmed, lower-cased) with one
/// `@`, a local part and a dotted domain; no white space, invisible,
/// control, bidirectional override or angle-bracket character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        use unicode_normalization::UnicodeNormalization;
        let value = raw.trim().nfc().collect::<String>().to_lowercase();
        let (local, domain) = value.split_once('@').ok_or(DomainError::Email)?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && value.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !value.chars().any(|c| {
                shared::text::is_invisible(c)
                    || c.is_control()
                    || shared::text::is_bidi_override(c)
                    || c == '<'
                    || c == '>'
            });
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

/// The longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Why a display name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("nothing is left once <, >, quotes and invisible characters are removed")]
    Empty,
    #[error("more than {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("control characters are not allowed")]
    ControlCharacter,
    #[error("bidirectional override or isolate characters are not allowed")]
    BidiOverride,
}

impl NameError {
    /// The rule's name in a 422 problem's `errors`.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::ControlCharacter => "control_character",
            Self::BidiOverride => "bidi_override",
        }
    }
}

/// A display name (of a user or a client), by the text rules of
/// [`shared::text`]: NFC; control and bidirectional override characters
/// refused; `<`, `>`, `"` and `'` removed; white space around it trimmed;
/// then 1 to [`MAX_NAME_CHARS`] characters, not only invisible ones. Names
/// are escaped wherever they are shown; removing markup characters as well
/// keeps them harmless in places that forget to (a mail client, a log
/// viewer, an admin's spreadsheet).
pub fn parse_name(raw: &str) -> Result<String, DomainError> {
    use shared::text::{self, TextRule};
    let kept: String = raw
        .chars()
        .filter(|c| !matches!(c, '<' | '>' | '"' | '\''))
        .collect();
    // The limit is checked on the trimmed value below: room here for the
    // white space around it.
    match text::line(&kept, usize::MAX) {
        Ok(value) => {
            let name = value.trim();
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(DomainError::Name(NameError::TooLong));
            }
            Ok(name.to_owned())
        }
        Err(TextRule::Blank) => Err(DomainError::Name(NameError::Empty)),
        Err(TextRule::ControlCharacter) => Err(DomainError::Name(NameError::ControlCharacter)),
        Err(TextRule::BidiOverride) => Err(DomainError::Name(NameError::BidiOverride)),
        Err(TextRule::TooLong) => Err(DomainError::Name(NameError::TooLong)),
    }
}

/// Who registers a redirect URI: the rules differ for native apps (RFC 8252).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// No secret: a native or browser app (`clients create --public`).
    Public,
    /// Holds a secret: a web server.
    Confidential,
}

/// Schemes no client may register: they run code, read local or in-memory
/// content, or are no redirect target. None has a dot, so the reverse-DNS rule
/// refuses them too; they are named so the message says "never".
pub const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "ws",
    "wss",
    "ftp",
];

/// A registered redirect URI: absolute, no fragment, no userinfo, lowercase
/// scheme. Confidential clients: https, or http on loopback. Public (native)
/// clients may also use a private-use scheme in reverse-DNS form (RFC 8252 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(Url);

impl RedirectUri {
    /// The rules for a confidential client (https, or http on loopback).
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::parse_for(raw, ClientKind::Confidential)
    }

    /// The rules for a client of the given kind:
    /// - everyone: https (claimed https, RFC 8252 §7.2, for native apps), or
    ///   http on loopback (`config::is_loopback_host`, RFC 8252 §7.3);
    /// - public clients only: a private-use scheme such as
    ///   `com.example.app:/oauth2redirect` (RFC 8252 §7.1), written in the
    ///   form the `url` crate serializes, since /authorize matches strings
    ///   exactly but redirects to the parsed URL.
    pub fn parse_for(raw: &str, kind: ClientKind) -> Result<Self, DomainError> {
        let url = Url::parse(raw).map_err(|_| DomainError::RedirectUri("not an absolute URL"))?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(DomainError::RedirectUri("must not contain a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DomainError::RedirectUri(
                "must not contain user information",
            ));
        }
        // `Url` lower-cases the scheme; the stored string is compared as
        // given, so it must already be in lower case.
        let scheme = raw.split_once(':').map_or("", |(scheme, _)| scheme);
        if !is_rfc3986_scheme(scheme) {
            return Err(DomainError::RedirectUri("not a valid URI scheme"));
        }
        if scheme != url.scheme() {
            return Err(DomainError::RedirectUri("the scheme must be lower case"));
        }
        match scheme {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" => return Err(DomainError::RedirectUri("http is allowed only on loopback")),
            s if FORBIDDEN_SCHEMES.contains(&s) => {
                return Err(DomainError::RedirectUri(
                    "this scheme is never allowed for a redirect URI",
                ));
            }
            s if !is_reverse_dns_scheme(s) => {
                return Err(DomainError::RedirectUri(
                    "the scheme must be https, http on loopback, or (for public clients) \
                     a private-use scheme in reverse-DNS form such as com.example.app",
                ));
            }
            _ => return Self::private_use(raw, url, kind),
        }
        if url.host().is_none() {
            return Err(DomainError::RedirectUri("must have a host"));
        }
        Ok(Self(url))
    }

    /// RFC 8252 §7.1: `com.example.app:/oauth2redirect`, native apps only.
    fn private_use(raw: &str, url: Url, kind: ClientKind) -> Result<Self, DomainError> {
        if kind != ClientKind::Public {
            return Err(DomainError::RedirectUri(
                "a private-use URI scheme is allowed only for public (native) clients",
            ));
        }
        if url.cannot_be_a_base() {
            return Err(DomainError::RedirectUri(
                "a private-use URI needs a path starting with '/', e.g. com.example.app:/oauth2redirect",
            ));
        }
        if url.as_str() != raw {
            return Err(DomainError::RedirectUri(
                "a private-use URI must be in normal form (no dot segments, spaces or \
                 characters that need percent-encoding)",
            ));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_rfc3986_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A reverse domain name (RFC 8252 §7.1): at least two non-empty labels.
fn is_reverse_dns_scheme(scheme: &str) -> bool {
    scheme.contains('.') && scheme.split('.').all(|label| !label.is_empty())
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
            "ann\u{200B}@example.com",
            "ann\u{202E}@example.com",
            "ann\u{0}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        // One address, one form: composed and lower-cased.
        assert_eq!(
            Email::parse(" Zoe\u{308}@Example.COM ").map(|e| e.as_str().to_owned()),
            Ok("zo\u{eb}@example.com".to_owned())
        );
    }

    #[test]
    fn parse_name_removes_markup_and_refuses_control_characters() {
        assert_eq!(parse_name("  Ann Lee ").unwrap(), "Ann Lee");
        assert_eq!(
            parse_name("<script>alert('x')</script>").unwrap(),
            "scriptalert(x)/script"
        );
        assert_eq!(parse_name("O'Brien \"Bob\"").unwrap(), "OBrien Bob");
        // NFC: "e" + combining acute is stored composed.
        assert_eq!(parse_name("Zoe\u{308}").unwrap(), "Zo\u{eb}");
        for control in ["Zoë\u{7}", "Ann\nLee", "\u{0}Ann", "Ann\u{1b}[2J"] {
            assert_eq!(
                parse_name(control),
                Err(DomainError::Name(NameError::ControlCharacter)),
                "{control:?}"
            );
        }
        assert_eq!(
            parse_name("Ann\u{202E}eeL"),
            Err(DomainError::Name(NameError::BidiOverride))
        );
        for empty in ["", "   ", "<>", "\"'", "\u{200B}\u{FEFF} ", "<\u{200D}>"] {
            assert_eq!(
                parse_name(empty),
                Err(DomainError::Name(NameError::Empty)),
                "{empty:?}"
            );
        }
        // 100 characters (not bytes) pass; the removed ones do not count.
        assert!(parse_name(&"é".repeat(100)).is_ok());
        assert!(parse_name(&format!("{}<>", "a".repeat(100))).is_ok());
        assert_eq!(
            parse_name(&"a".repeat(101)),
            Err(DomainError::Name(NameError::TooLong))
        );
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

    /// `Ok(())` accepted; `Err(s)`: refused with a message containing `s`.
    type Expect = Result<(), &'static str>;

    const PRIVATE_USE_ONLY_PUBLIC: Expect =
        Err("a private-use URI scheme is allowed only for public (native) clients");
    const NEVER: Expect = Err("never allowed");
    const NO_DOT: Expect = Err("reverse-DNS form");

    /// (raw, public client, confidential client)
    const REDIRECT_URI_CASES: &[(&str, Expect, Expect)] = &[
        // RFC 8252 §7.1 private-use schemes: public clients only.
        (
            "com.example.app:/oauth2redirect",
            Ok(()),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:/oauth2redirect/example-provider",
            Ok(()),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:/cb?tenant=a",
            Ok(()),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app://oauth2redirect",
            Ok(()),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.my-app+dev:/cb",
            Ok(()),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:oauth2redirect",
            Err("path starting with '/'"),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:",
            Err("path starting with '/'"),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:/a/../b",
            Err("normal form"),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:/a b",
            Err("normal form"),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        (
            "com.example.app:/cb\n",
            Err("normal form"),
            PRIVATE_USE_ONLY_PUBLIC,
        ),
        ("Com.Example.App:/cb", Err("lower case"), Err("lower case")),
        ("com..example:/cb", NO_DOT, NO_DOT),
        ("com.example.:/cb", NO_DOT, NO_DOT),
        ("myapp:/cb", NO_DOT, NO_DOT),
        ("myapp://cb", NO_DOT, NO_DOT),
        (
            "1com.example:/cb",
            Err("not an absolute URL"),
            Err("not an absolute URL"),
        ),
        (
            " com.example.app:/cb",
            Err("not a valid URI scheme"),
            Err("not a valid URI scheme"),
        ),
        ("com.example.app:/cb#x", Err("fragment"), Err("fragment")),
        ("com.example.app:/cb#", Err("fragment"), Err("fragment")),
        (
            "com.example.app://user@host/cb",
            Err("user information"),
            Err("user information"),
        ),
        // Claimed https (RFC 8252 §7.2) and web servers.
        ("https://app.example/cb", Ok(()), Ok(())),
        ("https://app.example/cb?x=1", Ok(()), Ok(())),
        ("https://app.example/cb#x", Err("fragment"), Err("fragment")),
        (
            "https://user:pw@app.example/cb",
            Err("user information"),
            Err("user information"),
        ),
        (
            "https://user@app.example/cb",
            Err("user information"),
            Err("user information"),
        ),
        (
            "HTTPS://app.example/cb",
            Err("lower case"),
            Err("lower case"),
        ),
        // Loopback (RFC 8252 §7.3), as `config::is_loopback_host` defines it.
        ("http://127.0.0.1:8765/cb", Ok(()), Ok(())),
        ("http://127.0.0.1/cb", Ok(()), Ok(())),
        ("http://[::1]:8765/cb", Ok(()), Ok(())),
        ("http://localhost:8765/cb", Ok(()), Ok(())),
        ("http://app.example/cb", Err("loopback"), Err("loopback")),
        ("http://10.0.0.1/cb", Err("loopback"), Err("loopback")),
        // Never, for anyone.
        ("javascript:alert(1)", NEVER, NEVER),
        ("JavaScript:alert(1)", Err("lower case"), Err("lower case")),
        ("data:text/html,x", NEVER, NEVER),
        ("file:///etc/passwd", NEVER, NEVER),
        ("vbscript:msgbox(1)", NEVER, NEVER),
        ("about:blank", NEVER, NEVER),
        ("blob:https://app.example/uuid", NEVER, NEVER),
        ("filesystem:https://app.example/temporary/x", NEVER, NEVER),
        ("ws://127.0.0.1/cb", NEVER, NEVER),
        ("wss://app.example/cb", NEVER, NEVER),
        ("ftp://app.example/cb", NEVER, NEVER),
        ("mailto:ann@example.com", NO_DOT, NO_DOT),
        ("urn:ietf:wg:oauth:2.0:oob", NO_DOT, NO_DOT),
        (
            "/relative",
            Err("not an absolute URL"),
            Err("not an absolute URL"),
        ),
        ("", Err("not an absolute URL"), Err("not an absolute URL")),
    ];

    #[test]
    fn parse_for_follows_rfc8252_per_client_kind() {
        for (raw, public, confidential) in REDIRECT_URI_CASES {
            for (kind, expected) in [
                (ClientKind::Public, public),
                (ClientKind::Confidential, confidential),
            ] {
                let got = RedirectUri::parse_for(raw, kind);
                match (expected, &got) {
                    (Ok(()), Ok(uri)) => assert_eq!(uri.as_str(), *raw, "{kind:?}"),
                    (Err(needle), Err(e)) => assert!(
                        e.to_string().contains(needle),
                        "{raw:?} {kind:?}: {e} does not mention {needle:?}"
                    ),
                    _ => panic!("{raw:?} {kind:?}: expected {expected:?}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn parse_keeps_confidential_rules() {
        for (raw, _, confidential) in REDIRECT_URI_CASES {
            assert_eq!(
                RedirectUri::parse(raw).is_ok(),
                confidential.is_ok(),
                "{raw:?}"
            );
        }
    }

    /// What /authorize does with a registered private-use URI: the flow
    /// parses it into a `Url` and appends `code` and `state`; the façade
    /// parses the `Location` again and appends `iss`.
    #[test]
    fn private_use_redirect_uri_round_trips_through_url_with_query() {
        for raw in [
            "com.example.app:/oauth2redirect",
            "com.example.app:/cb?tenant=a",
            "com.example.app://oauth2redirect",
        ] {
            let registered = RedirectUri::parse_for(raw, ClientKind::Public).unwrap();
            assert_eq!(registered.as_str(), raw);
            let mut url = Url::parse(raw).unwrap();
            assert_eq!(url.as_str(), raw);
            url.query_pairs_mut()
                .append_pair("code", "c0de")
                .append_pair("state", "a b");
            let mut location = Url::parse(url.as_str()).unwrap();
            location
                .query_pairs_mut()
                .append_pair("iss", "https://as.example");
            let sep = if raw.contains('?') { '&' } else { '?' };
            assert_eq!(
                location.as_str(),
                format!("{raw}{sep}code=c0de&state=a+b&iss=https%3A%2F%2Fas.example")
            );
            assert_eq!(location.scheme(), "com.example.app");
        }
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
