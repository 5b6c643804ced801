//! The text rules of every free-text field both services take (note titles
//! and bodies, user and client names, search terms):
//!
//! 1. Unicode NFC normalisation first, so that one text has one stored form
//!    and the limits count what is kept;
//! 2. a value made only of invisible characters (white space, zero-width
//!    ones) counts as empty;
//! 3. control characters (NUL and friends; a multi-line field may hold
//!    `\n` and `\t`, and takes `\r\n` as `\n`) are refused, not stripped: a
//!    NUL in a name is a bug or an attack, never what a user meant;
//! 4. the bidirectional embedding, override and isolate characters are
//!    refused: they make text display in another order than the one it is
//!    stored in ("Trojan Source");
//! 5. then the length limit, in characters (Unicode scalar values).
//!
//! A refusal names its rule ([`TextRule::code`]) so that a 422 can name the
//! field and the rule without echoing the value.

use unicode_normalization::UnicodeNormalization;

/// A broken text rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextRule {
    #[error("must not be blank")]
    Blank,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must not contain bidirectional override or isolate characters")]
    BidiOverride,
    #[error("is too long")]
    TooLong,
}

impl TextRule {
    /// The rule's stable code in a 422 problem's `errors`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Blank => "blank",
            Self::ControlCharacter => "control_character",
            Self::BidiOverride => "bidi_override",
            Self::TooLong => "too_long",
        }
    }
}

/// The bidirectional embedding/override (U+202A–U+202E) and isolate
/// (U+2066–U+2069) characters.
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: white space and the zero-width ones
/// (space, non-joiner, joiner, word joiner, byte-order mark).
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// True when nothing would show: empty, or invisible characters only.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(is_invisible)
}

/// A single-line field (a title, a name, a search term): NFC, not blank, no
/// control character at all (a line break included), no bidi override, at
/// most `max_chars`. Returns the normalised value; white space around it is
/// kept (callers that trim do so themselves).
pub fn line(raw: &str, max_chars: usize) -> Result<String, TextRule> {
    let value: String = raw.nfc().collect();
    if is_blank(&value) {
        return Err(TextRule::Blank);
    }
    check(&value, false, max_chars)?;
    Ok(value)
}

/// A multi-line field (a note body): `\r\n` taken as `\n`, NFC, no control
/// character but `\n` and `\t`, no bidi override, at most `max_chars`. May
/// be empty; callers for whom blank means empty use [`is_blank`].
pub fn multiline(raw: &str, max_chars: usize) -> Result<String, TextRule> {
    let value: String = raw.replace("\r\n", "\n").nfc().collect();
    check(&value, true, max_chars)?;
    Ok(value)
}

/// Rules 3 to 5 on an already normalised value (e.g. again on what a
/// sanitiser made of it, since it decodes character references).
pub fn check(value: &str, multiline: bool, max_chars: usize) -> Result<(), TextRule> {
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
    {
        return Err(TextRule::ControlCharacter);
    }
    if value.chars().any(is_bidi_override) {
        return Err(TextRule::BidiOverride);
    }
    if value.chars().count() > max_chars {
        return Err(TextRule::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_normalises_to_nfc_and_counts_characters_after_it() {
        // "e" + combining acute is one character once composed.
        let decomposed = "Caf\u{0065}\u{0301}";
        assert_eq!(line(decomposed, 4).as_deref(), Ok("Caf\u{e9}"));
        assert_eq!(line(&"\u{e9}".repeat(5), 4), Err(TextRule::TooLong));
        assert_eq!(line(&"\u{e9}".repeat(4), 4).map(|v| v.len()), Ok(8));
    }

    #[test]
    fn invisible_only_values_are_blank() {
        for blank in ["", " ", "\u{200B}\u{200D}", "\u{FEFF} \u{2060}", "\u{3000}"] {
            assert_eq!(line(blank, 100), Err(TextRule::Blank), "{blank:?}");
        }
        assert!(is_blank("\u{200C} "));
        assert!(!is_blank("\u{200C}a"));
    }

    #[test]
    fn control_characters_are_refused_not_stripped() {
        for bad in ["a\0b", "a\u{7}", "a\nb", "a\rb", "a\u{1b}[31m", "a\u{85}"] {
            assert_eq!(line(bad, 100), Err(TextRule::ControlCharacter), "{bad:?}");
        }
        assert_eq!(multiline("a\nb\tc", 100).as_deref(), Ok("a\nb\tc"));
        assert_eq!(multiline("a\r\nb", 100).as_deref(), Ok("a\nb"));
        assert_eq!(multiline("a\rb", 100), Err(TextRule::ControlCharacter));
        assert_eq!(multiline("a\0", 100), Err(TextRule::ControlCharacter));
    }

    #[test]
    fn bidi_overrides_and_isolates_are_refused() {
        for c in ['\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}'] {
            let value = format!("invoice{c}fdp.exe");
            assert_eq!(line(&value, 100), Err(TextRule::BidiOverride));
            assert_eq!(multiline(&value, 100), Err(TextRule::BidiOverride));
        }
        // The marks that only hint a direction are ordinary text.
        assert!(line("a\u{200E}b\u{200F}", 100).is_ok());
    }

    #[test]
    fn multiline_may_be_empty_and_counts_after_crlf_folding() {
        assert_eq!(multiline("", 0).as_deref(), Ok(""));
        assert_eq!(multiline("a\r\nb", 3).as_deref(), Ok("a\nb"));
        assert_eq!(multiline("a\r\nbc", 3), Err(TextRule::TooLong));
    }
}
