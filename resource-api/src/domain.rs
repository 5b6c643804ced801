//! Parse-don't-validate newtypes for note input.

use serde::{Deserialize, Serialize};

pub const TITLE_MAX_CHARS: usize = 200;
pub const BODY_MAX_CHARS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteInputError {
    #[error("title must not be blank")]
    BlankTitle,
    #[error("title must be at most {TITLE_MAX_CHARS} characters")]
    TitleTooLong,
    #[error("body must be at most {BODY_MAX_CHARS} characters")]
    BodyTooLong,
}

/// A note title: 1 to 200 characters (Unicode scalar values), not only blanks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoteTitle(String);

impl NoteTitle {
    pub fn parse(value: String) -> Result<Self, NoteInputError> {
        if value.trim().is_empty() {
            return Err(NoteInputError::BlankTitle);
        }
        if value.chars().count() > TITLE_MAX_CHARS {
            return Err(NoteInputError::TitleTooLong);
        }
        Ok(Self(value))
    }
}

impl TryFrom<String> for NoteTitle {
    type Error = NoteInputError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<NoteTitle> for String {
    fn from(value: NoteTitle) -> Self {
        value.0
    }
}

impl AsRef<str> for NoteTitle {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A note body: 0 to 10 000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoteBody(String);

impl NoteBody {
    pub fn parse(value: String) -> Result<Self, NoteInputError> {
        if value.chars().count() > BODY_MAX_CHARS {
            return Err(NoteInputError::BodyTooLong);
        }
        Ok(Self(value))
    }
}

impl TryFrom<String> for NoteBody {
    type Error = NoteInputError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<NoteBody> for String {
    fn from(value: NoteBody) -> Self {
        value.0
    }
}

impl AsRef<str> for NoteBody {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_parse_accepts_one_and_two_hundred_chars() {
        assert!(NoteTitle::parse("a".into()).is_ok());
        assert!(NoteTitle::parse("a".repeat(200)).is_ok());
    }

    #[test]
    fn title_parse_counts_characters_not_bytes() {
        // 200 × 'é' is 400 bytes but 200 characters.
        assert!(NoteTitle::parse("é".repeat(200)).is_ok());
        assert_eq!(
            NoteTitle::parse("é".repeat(201)),
            Err(NoteInputError::TitleTooLong)
        );
    }

    #[test]
    fn title_parse_rejects_empty_and_blank() {
        assert_eq!(
            NoteTitle::parse(String::new()),
            Err(NoteInputError::BlankTitle)
        );
        assert_eq!(
            NoteTitle::parse(" \t\n".into()),
            Err(NoteInputError::BlankTitle)
        );
    }

    #[test]
    fn title_parse_rejects_201_chars() {
        assert_eq!(
            NoteTitle::parse("a".repeat(201)),
            Err(NoteInputError::TitleTooLong)
        );
    }

    #[test]
    fn body_parse_accepts_empty_and_ten_thousand_chars() {
        assert!(NoteBody::parse(String::new()).is_ok());
        assert!(NoteBody::parse("b".repeat(10_000)).is_ok());
    }

    #[test]
    fn body_parse_rejects_10001_chars() {
        assert_eq!(
            NoteBody::parse("b".repeat(10_001)),
            Err(NoteInputError::BodyTooLong)
        );
    }

    #[test]
    fn title_deserialize_runs_validation() {
        let err = serde_json::from_str::<NoteTitle>("\"\"").unwrap_err();
        assert!(err.to_string().contains("title must not be blank"));
        let ok: NoteTitle = serde_json::from_str("\"hello\"").unwrap();
        assert_eq!(ok.as_ref(), "hello");
    }
}
