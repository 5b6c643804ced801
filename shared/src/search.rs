//! The rules of the search endpoints of both services (the resource API's
//! `GET /api/v2/notes`, the auth server's `GET /api/v2/admin/users`):
//! `?q=&limit=&order_by=&cursor=`, and nothing else.
//!
//! - `q` (optional): one line of text, trimmed, then the rules of
//!   [`crate::text::line`] (NFC, not blank, no control or bidi character),
//!   1 to [`Q_MAX_CHARS`] characters. It matches as a literal substring,
//!   case-insensitively ([`contains_ci`]): `%`, `_` and the escape
//!   character are escaped ([`like_contains`]).
//! - `limit` (optional): 1 to [`LIMIT_MAX`], default [`LIMIT_DEFAULT`].
//! - `order_by` (optional): one of the endpoint's allowlist
//!   ([`SearchSpec::fields`], the first is the default); times newest first,
//!   text A→Z, always with the row id as the tie-breaker so that pages
//!   are stable.
//! - `cursor` (optional): the `next_cursor` of the previous page, opaque to
//!   clients: base64url of a small JSON object naming the endpoint, the
//!   `order_by` and a fingerprint of `q` it was made for, and the sort value
//!   and id of the last row shown. A cursor that does not decode, or was
//!   made for another endpoint, `order_by` or `q`, is refused (`invalid`).
//!   It is not signed: what it holds goes only into bound parameters, and a
//!   client that edits one only moves its own window over its own rows.
//! - Any other parameter, or one given twice, is refused: a typo or an
//!   attempt at mass assignment is an error, never silently ignored.
//!
//! A refusal is a 422 problem+json ([`unprocessable`]) whose `errors` name
//! each failing parameter and rule, never quoting the value sent.
//!
//! **Injection patterns.** A `q` that holds a classic SQL-injection pattern
//! ([`suspicious_pattern`]: `--`, `;`, `/*`, `*/`, `xp_`, `' or '`,
//! `union select`, case-insensitively and whatever the white space or
//! comments between the words) is refused with the rule `suspicious_input`,
//! and the caller writes a security event ([`AUDIT_KIND`], detail from
//! [`audit_detail`]) for the alerts. This is a tripwire, not the defence:
//! every query is built with bound parameters, so these patterns would be
//! plain data even without it (the stores' tests prove it by bypassing the
//! detector).

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sea_query::{BinOper, Expr, Func, Order, SimpleExpr};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::text::{self, TextRule};

/// Most characters of `q`.
pub const Q_MAX_CHARS: usize = 100;
/// `limit` when not given.
pub const LIMIT_DEFAULT: u64 = 10;
/// Largest `limit`.
pub const LIMIT_MAX: u64 = 100;
/// The parameters a search takes.
pub const PARAMETERS: [&str; 4] = ["q", "limit", "order_by", "cursor"];
/// The audit kind of a refused suspicious input.
pub const AUDIT_KIND: &str = "suspicious_input";
/// Characters of a suspicious `q` kept in its audit event.
pub const AUDIT_EXCERPT_CHARS: usize = 100;
/// The escape character of [`like_contains`] patterns (not a backslash:
/// PostgreSQL and SQLite quote it differently in literals).
pub const LIKE_ESCAPE: char = '!';

/// Longest cursor accepted (characters).
const CURSOR_MAX_CHARS: usize = 1024;
/// Longest text sort value a cursor may hold (characters).
const CURSOR_TEXT_MAX_CHARS: usize = 512;
/// Longest unknown parameter name echoed in an error.
const MAX_ECHOED_NAME: usize = 32;

/// How a sort column orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKind {
    /// Unix seconds, newest first (the id descending breaks ties).
    NewestFirst,
    /// Text, A→Z in the database's collation (the id ascending breaks ties).
    AToZ,
}

impl SortKind {
    /// The SQL order of the column and of its tie-breaker.
    pub fn order(self) -> Order {
        match self {
            Self::NewestFirst => Order::Desc,
            Self::AToZ => Order::Asc,
        }
    }
}

/// One allowed `order_by` value: its name, the endpoint's key for its
/// column and how it orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortField<K> {
    pub name: &'static str,
    pub key: K,
    pub kind: SortKind,
}

/// The search of one endpoint.
#[derive(Debug)]
pub struct SearchSpec<K: 'static> {
    /// A name of the endpoint, written into its cursors.
    pub resource: &'static str,
    /// The `order_by` allowlist; the first one is the default.
    pub fields: &'static [SortField<K>],
}

impl<K: Copy> SearchSpec<K> {
    /// The allowed field named `name`.
    pub fn field(&self, name: &str) -> Option<SortField<K>> {
        self.fields.iter().find(|f| f.name == name).copied()
    }

    fn allowed(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The sort value of a row, as a cursor holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

impl From<SortValue> for sea_query::Value {
    fn from(value: SortValue) -> Self {
        match value {
            SortValue::Int(v) => v.into(),
            SortValue::Text(v) => v.into(),
        }
    }
}

/// Where a page starts: after the row with this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub value: SortValue,
    pub id: String,
}

/// A parsed search.
#[derive(Debug, Clone)]
pub struct Search<K: 'static> {
    pub resource: &'static str,
    /// Trimmed, NFC, checked.
    pub q: Option<String>,
    pub limit: u64,
    pub order_by: SortField<K>,
    pub after: Option<After>,
}

impl<K: Copy> Search<K> {
    /// A first page with these values, with no rule checked but the
    /// allowlist (`None` for an order that is not on it). For code that
    /// builds searches itself (and for the tests that prove the stores take
    /// any `q` as data); requests go through [`parse`].
    pub fn new(spec: &SearchSpec<K>, q: Option<&str>, limit: u64, order_by: &str) -> Option<Self> {
        Some(Self {
            resource: spec.resource,
            q: q.map(str::to_owned),
            limit,
            order_by: spec.field(order_by)?,
            after: None,
        })
    }

    /// The `LIKE` pattern of `q` (see [`like_contains`]).
    pub fn like_pattern(&self) -> Option<String> {
        self.q.as_deref().map(like_contains)
    }

    /// The cursor of the page after the row with `value` and `id`.
    pub fn next_cursor(&self, value: SortValue, id: &str) -> String {
        let data = CursorData {
            r: self.resource.to_owned(),
            o: self.order_by.name.to_owned(),
            f: fingerprint(self.q.as_deref()),
            v: match value {
                SortValue::Int(v) => serde_json::Value::from(v),
                SortValue::Text(v) => serde_json::Value::from(v),
            },
            i: id.to_owned(),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap_or_default())
    }
}

/// A cursor's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorData {
    /// The endpoint.
    r: String,
    /// The `order_by`.
    o: String,
    /// The fingerprint of `q`.
    f: String,
    /// The sort value of the last row shown.
    v: serde_json::Value,
    /// Its id.
    i: String,
}

/// A short fingerprint of `q` (SHA-256, 64 bits, hex): a cursor made for
/// one term is refused with another, without carrying the term itself.
fn fingerprint(q: Option<&str>) -> String {
    match q {
        None => String::new(),
        Some(q) => Sha256::digest(q.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Decodes `raw` for a search of `resource` ordered by `field` with `q`.
fn decode_cursor<K>(
    raw: &str,
    resource: &str,
    field: &SortField<K>,
    q: Option<&str>,
) -> Option<After> {
    if raw.is_empty() || raw.chars().count() > CURSOR_MAX_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let data: CursorData = serde_json::from_slice(&bytes).ok()?;
    if data.r != resource || data.o != field.name || data.f != fingerprint(q) {
        return None;
    }
    let value = match (field.kind, data.v) {
        (SortKind::NewestFirst, serde_json::Value::Number(n)) => SortValue::Int(n.as_i64()?),
        (SortKind::AToZ, serde_json::Value::String(s))
            if s.chars().count() <= CURSOR_TEXT_MAX_CHARS =>
        {
            SortValue::Text(s)
        }
        _ => return None,
    };
    // Ids are UUIDs; anything else was not made here.
    let id = uuid::Uuid::parse_str(&data.i).ok()?;
    if id.to_string() != data.i {
        return None;
    }
    Some(After { value, id: data.i })
}

/// One parameter that broke one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The parameter, e.g. `limit`.
    pub field: String,
    /// The rule's stable code, e.g. `range`.
    pub rule: &'static str,
    /// A sentence for people; never quotes the value sent.
    pub detail: String,
}

impl FieldError {
    fn new(field: &str, rule: &'static str, detail: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            rule,
            detail: detail.into(),
        }
    }
}

/// A `q` the detector flagged: what its security event records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicious {
    /// The pattern found ([`suspicious_pattern`]).
    pub pattern: &'static str,
    /// The first [`AUDIT_EXCERPT_CHARS`] characters of `q`, control and
    /// bidi characters replaced by U+FFFD: attacker text, kept as data for
    /// investigation, never logged.
    pub excerpt: String,
    /// The length of `q` in characters.
    pub chars: usize,
}

/// Why a search was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errors: Vec<FieldError>,
    /// Set when `q` held an injection pattern: write an [`AUDIT_KIND`] event.
    pub suspicious: Option<Suspicious>,
}

/// The parameters as sent; `deny_unknown_fields` refuses any other one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    q: Option<String>,
    limit: Option<String>,
    order_by: Option<String>,
    cursor: Option<String>,
}

/// Parses the query string of a search request (`None`: no query).
pub fn parse<K: Copy>(spec: &SearchSpec<K>, query: Option<&str>) -> Result<Search<K>, Refusal> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    // A parameter given twice is refused before serde sees the map (where
    // the second would replace the first).
    let mut map = serde_json::Map::new();
    let mut repeated = false;
    for (name, value) in &pairs {
        repeated |= map
            .insert(name.clone(), serde_json::Value::String(value.clone()))
            .is_some();
    }
    let raw = (!repeated)
        .then(|| serde_json::from_value::<RawParams>(serde_json::Value::Object(map)).ok())
        .flatten();
    // serde's own message may quote what was sent: name each parameter
    // instead.
    let Some(raw) = raw else {
        return Err(Refusal {
            errors: parameter_errors(&pairs),
            suspicious: None,
        });
    };
    let mut errors = Vec::new();
    let mut suspicious = None;

    let limit = match raw.limit.as_deref() {
        None => Some(LIMIT_DEFAULT),
        Some(value) => match value.parse::<u64>() {
            Ok(n) if (1..=LIMIT_MAX).contains(&n) => Some(n),
            // The code of the admin API's other lists (`range`).
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    "range",
                    format!("limit must be a whole number from 1 to {LIMIT_MAX}"),
                ));
                None
            }
        },
    };

    let order_by = match raw.order_by.as_deref() {
        None => spec.fields.first().copied(),
        Some(name) => {
            let field = spec.field(name);
            if field.is_none() {
                errors.push(FieldError::new(
                    "order_by",
                    "not_allowed",
                    format!("order_by must be one of {}", spec.allowed()),
                ));
            }
            field
        }
    };

    let q = match raw.q.as_deref() {
        None => Some(None),
        Some(value) => {
            if let Some(pattern) = suspicious_pattern(value) {
                suspicious = Some(Suspicious {
                    pattern,
                    excerpt: excerpt(value),
                    chars: value.chars().count(),
                });
                errors.push(FieldError::new(
                    "q",
                    "suspicious_input",
                    "q holds a pattern this search does not accept",
                ));
                None
            } else {
                match text::line(value.trim(), Q_MAX_CHARS) {
                    Ok(q) => Some(Some(q.trim().to_owned())),
                    Err(rule) => {
                        errors.push(FieldError::new("q", rule.code(), q_detail(rule)));
                        None
                    }
                }
            }
        }
    };

    let after = match (raw.cursor.as_deref(), order_by, &q) {
        (None, ..) => None,
        (Some(cursor), Some(field), Some(q)) => {
            let after = decode_cursor(cursor, spec.resource, &field, q.as_deref());
            if after.is_none() {
                errors.push(cursor_error());
            }
            after
        }
        // With order_by or q refused, no cursor can be judged.
        (Some(_), ..) => None,
    };

    match (limit, order_by, q) {
        (Some(limit), Some(order_by), Some(q)) if errors.is_empty() => Ok(Search {
            resource: spec.resource,
            q,
            limit,
            order_by,
            after,
        }),
        _ => Err(Refusal { errors, suspicious }),
    }
}

fn cursor_error() -> FieldError {
    FieldError::new(
        "cursor",
        "invalid",
        "cursor must be a next_cursor of this search, with the same q and order_by",
    )
}

fn q_detail(rule: TextRule) -> String {
    match rule {
        TextRule::TooLong => format!("q must be at most {Q_MAX_CHARS} characters"),
        other => format!("q {other}"),
    }
}

/// The errors of a query serde refused: each unknown parameter, each one
/// given twice.
fn parameter_errors(pairs: &[(String, String)]) -> Vec<FieldError> {
    let mut seen = HashSet::new();
    let mut errors: Vec<FieldError> = Vec::new();
    for (name, _) in pairs {
        if !PARAMETERS.contains(&name.as_str()) {
            let shown = echoable(name);
            if !errors
                .iter()
                .any(|e| e.field == shown && e.rule == "unknown_field")
            {
                errors.push(FieldError::new(
                    &shown,
                    "unknown_field",
                    format!(
                        "this search takes only the parameters {}",
                        PARAMETERS.join(", ")
                    ),
                ));
            }
        } else if !seen.insert(name.as_str())
            && !errors
                .iter()
                .any(|e| e.field == *name && e.rule == "duplicate")
        {
            errors.push(FieldError::new(
                name,
                "duplicate",
                format!("{name} must be given at most once"),
            ));
        }
    }
    if errors.is_empty() {
        errors.push(FieldError::new(
            "query",
            "invalid",
            "the query string could not be read",
        ));
    }
    errors
}

/// An unknown parameter's name as an error names it: short names of
/// letters, digits, `_`, `-`, `.`, `[`, `]` as they are; anything else is
/// not repeated back.
fn echoable(name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().count() <= MAX_ECHOED_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
    if plain {
        name.to_owned()
    } else {
        "(unnamed)".to_owned()
    }
}

/// The 422 problem+json of a refused search: `errors` lists each parameter
/// and rule; `detail` joins their sentences.
pub fn unprocessable(errors: &[FieldError]) -> axum::response::Response {
    use axum::response::IntoResponse;

    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        title: &'static str,
        status: u16,
        detail: String,
        errors: &'a [FieldError],
    }
    let body = Body {
        kind: "about:blank",
        title: "Unprocessable Content",
        status: StatusCode::UNPROCESSABLE_ENTITY.as_u16(),
        detail: errors
            .iter()
            .map(|e| e.detail.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        errors,
    };
    let mut response = (
        StatusCode::UNPROCESSABLE_ENTITY,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// The classic SQL-injection pattern `value` holds, if any, by name:
/// `union_select`, `quote_or_quote`, `line_comment` (`--`),
/// `statement_separator` (`;`), `block_comment` (`/*`, `*/`),
/// `extended_procedure` (`xp_`).
///
/// The value is folded first: NFKC (full-width letters and quotes become
/// ASCII), lower case, block comments and runs of white space or control
/// characters squashed to one space. So `UNION    SELECT`,
/// `UNION/**/SELECT`, `union\nall select`, `' OR '`, `'or'` are all caught.
///
/// A tripwire for the alerts, not the defence: queries bind their values.
pub fn suspicious_pattern(value: &str) -> Option<&'static str> {
    let folded: String = value.nfkc().flat_map(char::to_lowercase).collect();
    let squashed = squash(&folded);
    if squashed.contains("union select") || squashed.contains("union all select") {
        return Some("union_select");
    }
    let unspaced = squashed.replace(' ', "");
    if unspaced.contains("'or'") {
        return Some("quote_or_quote");
    }
    if folded.contains("--") {
        return Some("line_comment");
    }
    if folded.contains(';') {
        return Some("statement_separator");
    }
    if folded.contains("/*") || folded.contains("*/") {
        return Some("block_comment");
    }
    if folded.contains("xp_") {
        return Some("extended_procedure");
    }
    None
}

/// `folded` with each block comment (`/* … */`, or an unterminated one to
/// the end) and each run of white space or control characters as one space.
fn squash(folded: &str) -> String {
    let mut out = String::with_capacity(folded.len());
    let mut chars = folded.chars().peekable();
    let mut space = false;
    while let Some(c) = chars.next() {
        let blank = if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut previous = '\0';
            for c in chars.by_ref() {
                if previous == '*' && c == '/' {
                    break;
                }
                previous = c;
            }
            true
        } else {
            c.is_whitespace() || c.is_control()
        };
        if blank {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// The audit excerpt of a suspicious value.
fn excerpt(value: &str) -> String {
    value
        .chars()
        .take(AUDIT_EXCERPT_CHARS)
        .map(|c| {
            if c.is_control() || text::is_bidi_override(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The detail of an [`AUDIT_KIND`] event: the route and field, the pattern,
/// the client's address and user agent, and the excerpt of the value (as
/// JSON data; no log line ever carries it).
pub fn audit_detail(
    route: &str,
    client_ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    suspicious: &Suspicious,
) -> serde_json::Value {
    serde_json::json!({
        "route": route,
        "field": "q",
        "pattern": suspicious.pattern,
        "client_ip": client_ip.map(|ip| ip.to_string()),
        "user_agent": crate::client_ip::user_agent(headers),
        "q_excerpt": suspicious.excerpt,
        "q_chars": suspicious.chars,
    })
}

/// `q` as a `LIKE` pattern that matches it as a literal substring: `%`,
/// `_` and [`LIKE_ESCAPE`] escaped, `%` around. Use with [`contains_ci`],
/// whose `ESCAPE` clause names the escape character.
pub fn like_contains(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `LOWER(expr) LIKE LOWER($pattern) ESCAPE '!'`: a case-insensitive match
/// of a [`like_contains`] pattern, bound as a parameter. Both sides go
/// through the database's `LOWER`, so they fold alike (SQLite folds ASCII
/// letters only; PostgreSQL all of them).
pub fn contains_ci(expr: SimpleExpr, pattern: String) -> SimpleExpr {
    let pattern = SimpleExpr::Binary(
        Box::new(Func::lower(Expr::val(pattern)).into()),
        BinOper::Escape,
        Box::new(SimpleExpr::Constant(LIKE_ESCAPE.into())),
    );
    SimpleExpr::Binary(
        Box::new(Func::lower(expr).into()),
        BinOper::Like,
        Box::new(pattern),
    )
}

/// The keyset condition of the page after `after`, for a sort column
/// `sort` of `kind` and the tie-breaker `id`: `sort < v OR (sort = v AND
/// id < i)` newest first, with `>` A→Z. Both values are bound.
pub fn after_condition(
    sort: SimpleExpr,
    id: SimpleExpr,
    kind: SortKind,
    after: &After,
) -> SimpleExpr {
    let value: sea_query::Value = after.value.clone().into();
    let past = |e: SimpleExpr, v: sea_query::Value| match kind {
        SortKind::NewestFirst => Expr::expr(e).lt(v),
        SortKind::AToZ => Expr::expr(e).gt(v),
    };
    past(sort.clone(), value.clone()).or(Expr::expr(sort)
        .eq(value)
        .and(past(id, after.id.clone().into())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Col {
        Created,
        Title,
    }

    const SPEC: SearchSpec<Col> = SearchSpec {
        resource: "things",
        fields: &[
            SortField {
                name: "created_at",
                key: Col::Created,
                kind: SortKind::NewestFirst,
            },
            SortField {
                name: "title",
                key: Col::Title,
                kind: SortKind::AToZ,
            },
        ],
    };

    fn refused(query: &str) -> Refusal {
        parse(&SPEC, Some(query)).unwrap_err()
    }

    fn rules(query: &str) -> Vec<(String, &'static str)> {
        refused(query)
            .errors
            .into_iter()
            .map(|e| (e.field, e.rule))
            .collect()
    }

    fn one(field: &str, rule: &'static str) -> Vec<(String, &'static str)> {
        vec![(field.to_owned(), rule)]
    }

    const ID: &str = "0193a0b2-7c3e-7a10-8000-000000000001";

    #[test]
    fn parse_takes_defaults_without_parameters() {
        for query in [None, Some("")] {
            let search = parse(&SPEC, query).unwrap();
            assert_eq!(search.q, None);
            assert_eq!(search.limit, LIMIT_DEFAULT);
            assert_eq!(search.order_by.key, Col::Created);
            assert_eq!(search.after, None);
        }
    }

    #[test]
    fn parse_trims_and_normalises_q() {
        let search = parse(
            &SPEC,
            Some("q=%20%20Cafe%CC%81%20&limit=100&order_by=title"),
        )
        .unwrap();
        assert_eq!(search.q.as_deref(), Some("Caf\u{e9}"));
        assert_eq!(search.limit, 100);
        assert_eq!(search.order_by.key, Col::Title);
        assert_eq!(
            parse(&SPEC, Some(&format!("q={}", "a".repeat(100))))
                .unwrap()
                .q
                .map(|q| q.len()),
            Some(100)
        );
    }

    #[test]
    fn q_rules_name_the_rule() {
        assert_eq!(rules("q="), one("q", "blank"));
        assert_eq!(rules("q=%20%20"), one("q", "blank"));
        assert_eq!(rules("q=%E2%80%8B"), one("q", "blank"));
        assert_eq!(
            rules(&format!("q={}", "a".repeat(101))),
            one("q", "too_long")
        );
        assert_eq!(rules("q=a%00b"), one("q", "control_character"));
        assert_eq!(rules("q=a%0Ab"), one("q", "control_character"));
        assert_eq!(rules("q=abc%E2%80%AEdef"), one("q", "bidi_override"));
    }

    #[test]
    fn limit_is_one_to_a_hundred() {
        assert_eq!(parse(&SPEC, Some("limit=1")).unwrap().limit, 1);
        assert_eq!(rules("limit=0"), one("limit", "range"));
        assert_eq!(rules("limit=101"), one("limit", "range"));
        assert_eq!(rules("limit=abc"), one("limit", "range"));
        assert_eq!(rules("limit=-1"), one("limit", "range"));
        assert_eq!(rules("limit="), one("limit", "range"));
        assert_eq!(
            rules("limit=99999999999999999999999"),
            one("limit", "range")
        );
    }

    #[test]
    fn order_by_comes_from_the_allowlist_only() {
        for bad in ["name", "TITLE", "title;", "id", "created_at%20desc", ""] {
            let refusal = refused(&format!("order_by={bad}"));
            assert_eq!(refusal.errors.len(), 1);
            let error = &refusal.errors[0];
            assert_eq!(
                (error.field.as_str(), error.rule),
                ("order_by", "not_allowed")
            );
            assert_eq!(error.detail, "order_by must be one of created_at, title");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert_eq!(rules("q=a&owner=bob"), one("owner", "unknown_field"));
        assert_eq!(rules("Q=a"), one("Q", "unknown_field"));
        assert_eq!(rules("q=a&q=b"), one("q", "duplicate"));
        assert_eq!(rules("limit=1&limit=2"), one("limit", "duplicate"));
        // A strange name is not repeated back.
        let refusal = refused("%3Cscript%3E=1");
        assert_eq!(refusal.errors[0].field, "(unnamed)");
        assert!(!format!("{refusal:?}").contains("script"));
    }

    #[test]
    fn every_failing_parameter_is_named_and_no_value_echoed() {
        let refusal = refused("q=a%00secretvalue&limit=0&order_by=secretorder");
        let got: Vec<_> = refusal
            .errors
            .iter()
            .map(|e| (e.field.as_str(), e.rule))
            .collect();
        assert_eq!(
            got,
            [
                ("limit", "range"),
                ("order_by", "not_allowed"),
                ("q", "control_character")
            ]
        );
        assert!(!format!("{refusal:?}").contains("secret"));
    }

    #[test]
    fn injection_patterns_are_found_whatever_the_spacing_and_case() {
        for (value, pattern) in [
            ("1 union select password from users", "union_select"),
            ("1 UNION    SELECT 1", "union_select"),
            ("1 UNION/**/SELECT 1", "union_select"),
            ("1 union/* x */select 1", "union_select"),
            ("1 Union\n\tAll Select 1", "union_select"),
            (
                "1 \u{ff35}\u{ff2e}\u{ff29}\u{ff2f}\u{ff2e} select",
                "union_select",
            ),
            ("' or '1'='1", "quote_or_quote"),
            ("x' OR '1'='1", "quote_or_quote"),
            ("x'or'1", "quote_or_quote"),
            ("x'   Or\t'", "quote_or_quote"),
            ("x\u{ff07} or \u{ff07}", "quote_or_quote"),
            ("admin'--", "line_comment"),
            ("a; drop table notes", "statement_separator"),
            ("a /* b", "block_comment"),
            ("a */", "block_comment"),
            ("exec XP_cmdshell", "extended_procedure"),
        ] {
            assert_eq!(suspicious_pattern(value), Some(pattern), "{value:?}");
        }
        for fine in [
            "union membership",
            "select a file",
            "rock 'n' roll",
            "either or",
            "o'brien or o'neil",
            "100% pure_fun",
            "a - b",
            "a/b*c",
        ] {
            assert_eq!(suspicious_pattern(fine), None, "{fine:?}");
        }
    }

    #[test]
    fn suspicious_q_is_refused_with_an_excerpt_for_the_audit() {
        let long = format!("' OR '1'='1 {}\u{202E}\u{1b}", "x".repeat(150));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &long)
            .finish();
        let refusal = refused(&query);
        assert_eq!(
            refusal.errors,
            [FieldError::new(
                "q",
                "suspicious_input",
                "q holds a pattern this search does not accept"
            )]
        );
        let suspicious = refusal.suspicious.unwrap();
        assert_eq!(suspicious.pattern, "quote_or_quote");
        assert_eq!(suspicious.chars, long.chars().count());
        assert_eq!(suspicious.excerpt.chars().count(), AUDIT_EXCERPT_CHARS);
        assert!(suspicious.excerpt.starts_with("' OR '1'='1 xx"));
        let short = refused("q=a%3B%E2%80%AE%1B").suspicious.unwrap();
        assert_eq!(short.excerpt, "a;\u{FFFD}\u{FFFD}");
        // Not suspicious: no event.
        assert_eq!(refused("q=").suspicious, None);
    }

    #[test]
    fn cursor_round_trips_for_the_same_search_only() {
        let search = parse(&SPEC, Some("q=abc&order_by=title")).unwrap();
        let cursor = search.next_cursor(SortValue::Text("Zeta".into()), ID);
        let next = parse(
            &SPEC,
            Some(&format!("q=abc&order_by=title&cursor={cursor}")),
        )
        .unwrap();
        assert_eq!(
            next.after,
            Some(After {
                value: SortValue::Text("Zeta".into()),
                id: ID.into()
            })
        );
        // Another q, another order, no q: refused.
        for query in [
            format!("q=abd&order_by=title&cursor={cursor}"),
            format!("order_by=title&cursor={cursor}"),
            format!("q=abc&cursor={cursor}"),
        ] {
            assert_eq!(rules(&query), one("cursor", "invalid"), "{query}");
        }
        let by_time = parse(&SPEC, None).unwrap();
        let cursor = by_time.next_cursor(SortValue::Int(1_700_000_000), ID);
        let next = parse(&SPEC, Some(&format!("cursor={cursor}"))).unwrap();
        assert_eq!(next.after.unwrap().value, SortValue::Int(1_700_000_000));
    }

    #[test]
    fn malformed_or_forged_cursors_are_invalid() {
        let forge = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let fp = fingerprint(None);
        for cursor in [
            String::new(),
            "!!!".into(),
            "eyJ".into(),
            URL_SAFE_NO_PAD.encode("not json"),
            "A".repeat(2000),
            // Another endpoint.
            forge(&format!(
                r#"{{"r":"users","o":"created_at","f":"{fp}","v":1,"i":"{ID}"}}"#
            )),
            // A text value for a time order.
            forge(&format!(
                r#"{{"r":"things","o":"created_at","f":"{fp}","v":"1 OR 1=1","i":"{ID}"}}"#
            )),
            // An id that is not a UUID.
            forge(&format!(
                r#"{{"r":"things","o":"created_at","f":"{fp}","v":1,"i":"1' OR '1'='1"}}"#
            )),
            // An extra member.
            forge(&format!(
                r#"{{"r":"things","o":"created_at","f":"{fp}","v":1,"i":"{ID}","x":1}}"#
            )),
            // A float.
            forge(&format!(
                r#"{{"r":"things","o":"created_at","f":"{fp}","v":1.5,"i":"{ID}"}}"#
            )),
        ] {
            let refusal = refused(&format!("cursor={cursor}"));
            assert_eq!(
                refusal
                    .errors
                    .iter()
                    .map(|e| (e.field.as_str(), e.rule))
                    .collect::<Vec<_>>(),
                [("cursor", "invalid")],
                "{cursor}"
            );
        }
        // A well-formed one decodes.
        let ok = forge(&format!(
            r#"{{"r":"things","o":"created_at","f":"{fp}","v":5,"i":"{ID}"}}"#
        ));
        assert!(parse(&SPEC, Some(&format!("cursor={ok}"))).is_ok());
    }

    #[test]
    fn like_pattern_escapes_wildcards_and_the_escape_character() {
        assert_eq!(like_contains("abc"), "%abc%");
        assert_eq!(like_contains("100%"), "%100!%%");
        assert_eq!(like_contains("a_b"), "%a!_b%");
        assert_eq!(like_contains("wow!"), "%wow!!%");
        assert_eq!(like_contains(r"a\b'"), r"%a\b'%");
    }

    #[test]
    fn contains_ci_binds_the_pattern_and_names_the_escape() {
        use sea_query::{Alias, PostgresQueryBuilder, Query, SqliteQueryBuilder};
        let query = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("notes"))
            .and_where(contains_ci(
                Expr::col(Alias::new("title")).into(),
                like_contains("x'; DROP TABLE notes; --"),
            ))
            .to_owned();
        let (sql, values) = query.build(SqliteQueryBuilder);
        assert_eq!(
            sql,
            r#"SELECT "id" FROM "notes" WHERE LOWER("title") LIKE LOWER(?) ESCAPE '!'"#
        );
        assert_eq!(values.0.len(), 1);
        let (sql, _) = query.build(PostgresQueryBuilder);
        assert_eq!(
            sql,
            r#"SELECT "id" FROM "notes" WHERE LOWER("title") LIKE LOWER($1) ESCAPE '!'"#
        );
    }

    #[test]
    fn after_condition_binds_both_values() {
        use sea_query::{Alias, Query, SqliteQueryBuilder};
        let after = After {
            value: SortValue::Text("x' OR '1'='1".into()),
            id: ID.into(),
        };
        let (sql, values) = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("notes"))
            .and_where(after_condition(
                Expr::col(Alias::new("title")).into(),
                Expr::col(Alias::new("id")).into(),
                SortKind::AToZ,
                &after,
            ))
            .to_owned()
            .build(SqliteQueryBuilder);
        assert_eq!(
            sql,
            r#"SELECT "id" FROM "notes" WHERE "title" > ? OR ("title" = ? AND "id" > ?)"#
        );
        assert_eq!(values.0.len(), 3);
    }

    #[tokio::test]
    async fn unprocessable_lists_fields_and_rules() {
        let response = unprocessable(&[
            FieldError::new(
                "limit",
                "range",
                "limit must be a whole number from 1 to 100",
            ),
            FieldError::new("q", "blank", "q must not be blank"),
        ]);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank",
                "title": "Unprocessable Content",
                "status": 422,
                "detail": "limit must be a whole number from 1 to 100; q must not be blank",
                "errors": [
                    {"field": "limit", "rule": "range", "detail": "limit must be a whole number from 1 to 100"},
                    {"field": "q", "rule": "blank", "detail": "q must not be blank"},
                ],
            })
        );
    }
}
