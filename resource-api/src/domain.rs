//! Parse-don't-validate newtypes for note input.
//!
//! Both fields follow the text rules of [`shared::text`]: Unicode NFC first;
//! then control characters (a body may hold `\n` and `\t`) and the
//! bidirectional override/isolate characters are refused; a title of
//! invisible characters only is blank; the limits count characters after
//! normalisation.
//! A body is HTML: it is sanitised with [`ammonia`] on the way in (an
//! allowlist of a few formatting tags, `http`/`https` links only), so what is
//! stored, and later read, is the safe form. Its limit applies both to the
//! normalised input and to the sanitised result.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use ammonia::{Builder, UrlRelative};
use serde::{Deserialize, Serialize};
use shared::text::{self, TextRule};

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
    #[error("title must not contain control characters (control_character)")]
    TitleControlCharacter,
    #[error("title must not contain bidirectional override or isolate characters (bidi_override)")]
    TitleBidiOverride,
    #[error(
        "body must not contain control characters other than newline and tab (control_character)"
    )]
    BodyControlCharacter,
    #[error("body must not contain bidirectional override or isolate characters (bidi_override)")]
    BodyBidiOverride,
}

impl NoteInputError {
    /// The input field the error is about: `title` or `body`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::BlankTitle
            | Self::TitleTooLong
            | Self::TitleControlCharacter
            | Self::TitleBidiOverride => "title",
            Self::BodyTooLong | Self::BodyControlCharacter | Self::BodyBidiOverride => "body",
        }
    }

    /// The rule broken, as a stable code.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::BlankTitle => "blank",
            Self::TitleTooLong | Self::BodyTooLong => "too_long",
            Self::TitleControlCharacter | Self::BodyControlCharacter => "control_character",
            Self::TitleBidiOverride | Self::BodyBidiOverride => "bidi_override",
        }
    }
}

impl NoteInputError {
    fn title(rule: TextRule) -> Self {
        match rule {
            TextRule::Blank => Self::BlankTitle,
            TextRule::ControlCharacter => Self::TitleControlCharacter,
            TextRule::BidiOverride => Self::TitleBidiOverride,
            TextRule::TooLong => Self::TitleTooLong,
        }
    }

    /// A body may be blank, so `Blank` never comes here.
    fn body(rule: TextRule) -> Self {
        match rule {
            TextRule::ControlCharacter => Self::BodyControlCharacter,
            TextRule::BidiOverride => Self::BodyBidiOverride,
            TextRule::Blank | TextRule::TooLong => Self::BodyTooLong,
        }
    }
}

/// The tags a body keeps; everything else is removed (its text kept, except
/// for `script` and `style`, whose content goes too).
const BODY_TAGS: [&str; 9] = ["b", "i", "u", "a", "p", "ul", "ol", "li", "br"];

/// The sanitiser of note bodies, built once.
static BODY_SANITISER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut builder = Builder::empty();
    builder
        .tags(HashSet::from(BODY_TAGS))
        .clean_content_tags(HashSet::from(["script", "style"]))
        .generic_attributes(HashSet::new())
        .tag_attributes(HashMap::from([("a", HashSet::from(["href"]))]))
        .url_schemes(HashSet::from(["http", "https"]))
        .url_relative(UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .strip_comments(true);
    builder
});

/// A note title: NFC, 1 to 200 characters (Unicode scalar values), not only
/// invisible ones, without control or bidirectional override characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoteTitle(String);

impl NoteTitle {
    pub fn parse(value: String) -> Result<Self, NoteInputError> {
        text::line(&value, TITLE_MAX_CHARS)
            .map(Self)
            .map_err(NoteInputError::title)
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

/// A note body: NFC, sanitised HTML, 0 to 10 000 characters, without control
/// characters (other than `\n` and `\t`) or bidirectional override ones.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NoteBody(String);

impl NoteBody {
    pub fn parse(value: String) -> Result<Self, NoteInputError> {
        // Line breaks as browsers and Windows send them (`\r\n`) are lines,
        // not control characters.
        let value = text::multiline(&value, BODY_MAX_CHARS).map_err(NoteInputError::body)?;
        let clean = BODY_SANITISER.clean(&value).to_string();
        // Character references (`&#x202E;`) are decoded by the sanitiser,
        // and escaping lengthens text: the rules and the limit hold for what
        // is stored too.
        text::check(&clean, true, BODY_MAX_CHARS).map_err(NoteInputError::body)?;
        Ok(Self(clean))
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
    fn body_takes_crlf_line_breaks_as_lines() {
        let body = NoteBody::parse("one\r\ntwo".into()).unwrap();
        assert_eq!(body.as_ref(), "one\ntwo");
        assert!(NoteBody::parse("lone\rcarriage".into()).is_err());
    }

    #[test]
    fn title_and_body_are_normalised_to_nfc() {
        let title = NoteTitle::parse("e\u{301}".into()).unwrap();
        assert_eq!(title.as_ref(), "\u{e9}");
        let body = NoteBody::parse("cafe\u{301}".into()).unwrap();
        assert_eq!(body.as_ref(), "caf\u{e9}");
    }

    #[test]
    fn limits_count_characters_after_normalisation() {
        // 200 × (e + combining acute) is 400 characters before NFC, 200 after.
        assert!(NoteTitle::parse("e\u{301}".repeat(200)).is_ok());
        assert!(NoteBody::parse("e\u{301}".repeat(10_000)).is_ok());
    }

    #[test]
    fn title_rejects_control_characters_including_nul() {
        for title in [
            "a\0b",
            "a\nb",
            "a\tb",
            "a\rb",
            "a\u{7f}",
            "a\u{85}",
            "a\u{1b}[31m",
        ] {
            let err = NoteTitle::parse(title.into()).unwrap_err();
            assert_eq!(err, NoteInputError::TitleControlCharacter, "{title:?}");
            assert_eq!((err.field(), err.rule()), ("title", "control_character"));
        }
    }

    #[test]
    fn body_rejects_control_characters_but_newline_and_tab() {
        assert_eq!(
            NoteBody::parse("line one\nline\ttwo".into())
                .unwrap()
                .as_ref(),
            "line one\nline\ttwo"
        );
        for body in ["a\0b", "a\rb", "a\u{7}", "a\u{9b}"] {
            let err = NoteBody::parse(body.into()).unwrap_err();
            assert_eq!(err, NoteInputError::BodyControlCharacter, "{body:?}");
            assert_eq!((err.field(), err.rule()), ("body", "control_character"));
        }
    }

    #[test]
    fn bidi_override_and_isolate_characters_are_rejected() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ] {
            let text = format!("abc{c}def");
            let err = NoteTitle::parse(text.clone()).unwrap_err();
            assert_eq!(err, NoteInputError::TitleBidiOverride);
            assert_eq!((err.field(), err.rule()), ("title", "bidi_override"));
            let err = NoteBody::parse(text).unwrap_err();
            assert_eq!(err, NoteInputError::BodyBidiOverride);
            assert_eq!((err.field(), err.rule()), ("body", "bidi_override"));
        }
        // Right-to-left text itself is fine.
        assert!(NoteTitle::parse("\u{5e9}\u{5dc}\u{5d5}\u{5dd}".into()).is_ok());
    }

    #[test]
    fn body_rules_hold_for_character_references_too() {
        assert_eq!(
            NoteBody::parse("a&#x202E;b".into()),
            Err(NoteInputError::BodyBidiOverride)
        );
        assert_eq!(
            NoteBody::parse("a&#x1b;b".into()),
            Err(NoteInputError::BodyControlCharacter)
        );
    }

    #[test]
    fn title_of_invisible_characters_is_blank() {
        for title in [
            "\u{200B}\u{200B}",
            "\u{200C}\u{200D}",
            " \u{2060}\u{FEFF} ",
            "\u{3000}",
        ] {
            let err = NoteTitle::parse(title.into()).unwrap_err();
            assert_eq!(err, NoteInputError::BlankTitle, "{title:?}");
            assert_eq!((err.field(), err.rule()), ("title", "blank"));
        }
        assert!(NoteTitle::parse("\u{200B}a".into()).is_ok());
    }

    #[test]
    fn body_html_is_sanitised_to_the_allowlist() {
        let body = NoteBody::parse(
            r#"<script>alert(1)</script><b onclick=x>hi</b><a href="javascript:alert(1)">x</a><a href="https://ok.example">ok</a><img src=x onerror=y><p style="color:red">p</p>"#.into(),
        )
        .unwrap();
        assert_eq!(
            body.as_ref(),
            r#"<b>hi</b><a rel="noopener noreferrer nofollow">x</a><a href="https://ok.example" rel="noopener noreferrer nofollow">ok</a><p>p</p>"#
        );
    }

    #[test]
    fn body_keeps_only_allowed_tags_and_http_links() {
        let body = NoteBody::parse(
            r#"<ul><li><i>a</i></li></ul><ol><li><u>b</u><br></li></ol><div>d</div><style>p{}</style><a href="data:text/html,x">d</a><a href="/rel">r</a><a href="http://x.example/" title="t" target="_blank">h</a><!-- c -->"#.into(),
        )
        .unwrap();
        assert_eq!(
            body.as_ref(),
            r#"<ul><li><i>a</i></li></ul><ol><li><u>b</u><br></li></ol>d<a rel="noopener noreferrer nofollow">d</a><a rel="noopener noreferrer nofollow">r</a><a href="http://x.example/" rel="noopener noreferrer nofollow">h</a>"#
        );
        // Plain text stays as it is, but for HTML escaping.
        assert_eq!(
            NoteBody::parse("a < b".into()).unwrap().as_ref(),
            "a &lt; b"
        );
    }

    #[test]
    fn body_limit_applies_to_the_sanitised_result() {
        // 10 000 characters in, but `<` becomes `&lt;`: too long once stored.
        let err = NoteBody::parse(format!("< {}", "b".repeat(9_998))).unwrap_err();
        assert_eq!((err.field(), err.rule()), ("body", "too_long"));
    }

    #[test]
    fn title_deserialize_runs_validation() {
        let err = serde_json::from_str::<NoteTitle>("\"\"").unwrap_err();
        assert!(err.to_string().contains("title must not be blank"));
        let ok: NoteTitle = serde_json::from_str("\"hello\"").unwrap();
        assert_eq!(ok.as_ref(), "hello");
    }
}
