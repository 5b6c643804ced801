//! CSRF protection of the sign-in form without a database row: a signed
//! double-submit cookie (OWASP). `GET /login` sets a cookie holding
//! `nonce.HMAC(key, nonce)` and puts the same value in the form; `POST /login`
//! accepts the form only when the two are equal and the MAC is ours. A
//! cross-site attacker can neither read the cookie nor plant one that
//! verifies (the key is the server's), so an anonymous page view costs no
//! write: a session row appears only once someone has signed in.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};

/// The cookie's name: `__Host-` under https (no Domain, Path=/, Secure).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-portcullis_login_csrf"
    } else {
        "portcullis_login_csrf"
    }
}

/// A fresh token: `nonce.mac`, both base64url.
pub fn issue(key: &hmac::Key) -> anyhow::Result<String> {
    let nonce = shared::secret::generate()?;
    let tag = hmac::sign(key, nonce.as_bytes());
    Ok(format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
}

/// Whether the form's token equals the cookie's and carries our MAC.
pub fn valid(key: &hmac::Key, headers: &HeaderMap, secure: bool, form: Option<&str>) -> bool {
    let (Some(cookie), Some(form)) = (cookie(headers, secure), form) else {
        return false;
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(cookie.as_bytes(), form.as_bytes())
        .is_err()
    {
        return false;
    }
    let Some((nonce, tag)) = cookie.split_once('.') else {
        return false;
    };
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    hmac::verify(key, nonce.as_bytes(), &tag).is_ok()
}

/// `Set-Cookie` for `token`: HttpOnly, SameSite=Strict (the form posts to
/// its own origin), Secure under https.
pub fn set_cookie(token: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure_attr = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure_attr}",
        cookie_name(secure)
    ))
    .ok()
}

/// The cookie's value if the request has exactly one.
fn cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = cookie_name(secure);
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((n, v)) = pair.trim().split_once('=')
                && n == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(v.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(byte: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[byte; 32])
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; portcullis_login_csrf={value}")).unwrap(),
        );
        headers
    }

    #[test]
    fn valid_accepts_matching_signed_cookie_and_form() {
        let token = issue(&key(1)).unwrap();
        assert!(valid(&key(1), &with_cookie(&token), false, Some(&token)));
    }

    #[test]
    fn valid_refuses_mismatch_forgery_and_foreign_key() {
        let token = issue(&key(1)).unwrap();
        let other = issue(&key(1)).unwrap();
        // Form and cookie differ.
        assert!(!valid(&key(1), &with_cookie(&token), false, Some(&other)));
        // No form value, or no cookie.
        assert!(!valid(&key(1), &with_cookie(&token), false, None));
        assert!(!valid(&key(1), &HeaderMap::new(), false, Some(&token)));
        // A planted pair that the attacker made up: equal, but not our MAC.
        let planted = "bm9uY2U.AAAA";
        assert!(!valid(&key(1), &with_cookie(planted), false, Some(planted)));
        // A token made under another key.
        assert!(!valid(&key(2), &with_cookie(&token), false, Some(&token)));
        // The https cookie name is required under https.
        assert!(!valid(&key(1), &with_cookie(&token), true, Some(&token)));
    }
}
