//! Just enough HTML reading to fill the login and consent forms: every
//! `<form>` with its action, method and hidden inputs.

/// A form of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub action: String,
    pub method: String,
    /// `(name, value)` of each `<input type="hidden">`, in document order.
    pub hidden: Vec<(String, String)>,
    /// Names of the other named inputs, buttons and selects (email, password,
    /// decision…), for diagnostics.
    pub other_names: Vec<String>,
}

impl Form {
    /// The value of hidden input `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the action, without query.
    pub fn action_path(&self) -> &str {
        self.action.split(['?', '#']).next().unwrap_or_default()
    }
}

/// Every form in `html`.
pub fn forms(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut current: Option<Form> = None;
    let mut pos = 0;
    while let Some(offset) = html[pos..].find('<') {
        let start = pos + offset;
        let rest = &html[start..];
        if rest.starts_with("<!--") {
            pos = rest
                .find("-->")
                .map_or(html.len(), |end| start + end + "-->".len());
            continue;
        }
        let Some((tag, len)) = parse_tag(rest) else {
            pos = start + 1;
            continue;
        };
        pos = start + len;
        match tag.name.as_str() {
            "form" => {
                if let Some(form) = current.take() {
                    forms.push(form);
                }
                current = Some(Form {
                    action: tag.attr("action").unwrap_or_default().to_owned(),
                    method: tag.attr("method").unwrap_or("get").to_ascii_lowercase(),
                    hidden: Vec::new(),
                    other_names: Vec::new(),
                });
            }
            "/form" => {
                if let Some(form) = current.take() {
                    forms.push(form);
                }
            }
            "input" | "button" | "select" | "textarea" => {
                let Some(form) = current.as_mut() else {
                    continue;
                };
                let Some(name) = tag.attr("name") else {
                    continue;
                };
                let is_hidden = tag.name == "input"
                    && tag
                        .attr("type")
                        .is_some_and(|t| t.eq_ignore_ascii_case("hidden"));
                if is_hidden {
                    form.hidden.push((
                        name.to_owned(),
                        tag.attr("value").unwrap_or_default().to_owned(),
                    ));
                } else {
                    form.other_names.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    if let Some(form) = current {
        forms.push(form);
    }
    forms
}

/// The first form whose action path is `path`.
pub fn form_with_action(html: &str, path: &str) -> Option<Form> {
    forms(html).into_iter().find(|f| f.action_path() == path)
}

#[derive(Debug)]
struct Tag {
    /// Lower-case; `/form` for an end tag.
    name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the tag at the start of `s` (which starts with `<`); returns it and
/// its length in bytes.
fn parse_tag(s: &str) -> Option<(Tag, usize)> {
    let bytes = s.as_bytes();
    let mut i = 1;
    let mut name = String::new();
    if bytes.get(i) == Some(&b'/') {
        name.push('/');
        i += 1;
    }
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    name.push_str(&s[name_start..i].to_ascii_lowercase());
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        match bytes.get(i) {
            None => return None,
            Some(b'>') => return Some((Tag { name, attrs }, i + 1)),
            Some(_) => {}
        }
        let attr_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        let attr = s[attr_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let end = s[i + 1..].find(q as char)? + i + 1;
                    value = unescape(&s[i + 1..end]);
                    i = end + 1;
                }
                _ => {
                    let start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = unescape(&s[start..i]);
                }
            }
        }
        if !attr.is_empty() {
            attrs.push((attr, value));
        }
    }
}

/// Decodes character references: `&amp; &quot; &apos; &lt; &gt;` and numeric
/// ones (`&#x27;`, `&#39;`); anything else stays as written.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_named_and_numeric_references() {
        assert_eq!(
            unescape("a&amp;b &quot;c&quot; &#x27;d&#39; &lt;e&gt; &#X2F; &bogus; & x"),
            "a&b \"c\" 'd' <e> / &bogus; & x"
        );
    }

    #[test]
    fn forms_reads_hidden_inputs_in_any_attribute_order() {
        let html = r#"<!doctype html><html><body>
            <!-- <form action="/nope"> -->
            <form method="post" action="/consent">
              <input type="hidden" name="csrf_token" value="abc&amp;def">
              <input value='http://x/cb?a=1&amp;b=2' name=redirect_uri type=hidden />
              <input name="state" type="HIDDEN" value="">
              <input type="email" name="email">
              <button type="submit" name="decision" value="allow">Allow</button>
            </form>
            <form action="/login?next=%2F"><input type="hidden" name="next" value="/"></form>
            </body></html>"#;
        let all = forms(html);
        assert_eq!(all.len(), 2);
        let consent = form_with_action(html, "/consent").unwrap();
        assert_eq!(consent.method, "post");
        assert_eq!(consent.get("csrf_token"), Some("abc&def"));
        assert_eq!(consent.get("redirect_uri"), Some("http://x/cb?a=1&b=2"));
        assert_eq!(consent.get("state"), Some(""));
        assert_eq!(consent.other_names, vec!["email", "decision"]);
        let login = form_with_action(html, "/login").unwrap();
        assert_eq!(login.get("next"), Some("/"));
    }
}
