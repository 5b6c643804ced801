//! Request parameters as the protocol sees them: each name at most once
//! (RFC 6749 §3.1, §3.2), an empty value the same as an absent one.

use std::collections::BTreeMap;

use shared::oauth_error::OAuthError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// From decoded name/value pairs; a repeated name is `invalid_request`.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, OAuthError> {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            if map.contains_key(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name:?} given more than once"
                )));
            }
            map.insert(name, value);
        }
        Ok(Self(map))
    }

    /// From an `application/x-www-form-urlencoded` string (a body or a query).
    pub fn parse(encoded: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(encoded)
            .map_err(|_| OAuthError::invalid_request("malformed form encoding"))?;
        Self::from_pairs(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name).filter(|v| !v.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_repeated_parameter() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        assert!(Params::parse(b"scope=a&scope=").is_err());
    }

    #[test]
    fn get_treats_empty_as_absent() {
        let p = Params::parse(b"a=&b=x%20y").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y"));
    }
}
