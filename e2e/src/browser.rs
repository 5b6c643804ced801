//! A user agent for the login and consent pages: a cookie jar, no automatic
//! redirects (each hop is checked), forms filled from their hidden inputs.

use anyhow::{Context, bail};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use url::Url;

use crate::html::{self, Form};

/// One response, with the URL it answered.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    async fn read(url: Url, resp: reqwest::Response) -> anyhow::Result<Self> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.context("reading body")?;
        Ok(Self {
            url,
            status,
            headers,
            body,
        })
    }

    /// The `Location` header resolved against the page's URL.
    pub fn location(&self) -> Option<Url> {
        let raw = self.headers.get(LOCATION)?.to_str().ok()?;
        self.url.join(raw).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The form posting to `path`, or an error that shows the page.
    pub fn form(&self, path: &str) -> anyhow::Result<Form> {
        match html::form_with_action(&self.body, path) {
            Some(form) => Ok(form),
            None => bail!("no form with action {path} on {self}"),
        }
    }
}

impl std::fmt::Display for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(1500).collect();
        write!(f, "{} -> {}", self.url, self.status)?;
        if let Some(location) = self.header("location") {
            write!(f, " (Location: {location})")?;
        }
        write!(f, "\n{body}")
    }
}

/// A browser with its own cookie jar.
#[derive(Debug, Clone)]
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("building HTTP client")?;
        Ok(Self { http })
    }

    pub async fn get(&self, url: &Url) -> anyhow::Result<Page> {
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        Page::read(url.clone(), resp).await
    }

    /// POSTs `fields` as a form to `url`.
    pub async fn post_form(&self, url: &Url, fields: &[(String, String)]) -> anyhow::Result<Page> {
        let resp = self
            .http
            .post(url.clone())
            .form(fields)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        Page::read(url.clone(), resp).await
    }

    /// Submits `form` of `page`: its hidden inputs except those named in
    /// `without`, plus `extra`.
    pub async fn submit(
        &self,
        page: &Page,
        form: &Form,
        extra: &[(&str, &str)],
        without: &[&str],
    ) -> anyhow::Result<Page> {
        let action = page
            .url
            .join(&form.action)
            .with_context(|| format!("form action {}", form.action))?;
        let mut fields: Vec<(String, String)> = form
            .hidden
            .iter()
            .filter(|(name, _)| !without.contains(&name.as_str()))
            .cloned()
            .collect();
        fields.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.post_form(&action, &fields).await
    }

    /// Opens the login page at `login_url` and posts the credentials; returns
    /// the answer to the POST (303 on success, 401 on a wrong password).
    pub async fn login(
        &self,
        login_url: &Url,
        email: &str,
        password: &str,
    ) -> anyhow::Result<Page> {
        let page = self.get(login_url).await?;
        if page.status != StatusCode::OK {
            bail!("login page: expected 200, got {page}");
        }
        let form = page.form("/login")?;
        self.submit(
            &page,
            &form,
            &[("email", email), ("password", password)],
            &[],
        )
        .await
    }

    /// GETs the authorize URL; when sent to the login page, logs in and
    /// follows the `next` redirect once. Returns the authorize answer of the
    /// logged-in user: a consent page, an error page or a redirect.
    pub async fn authorize(&self, url: &Url, email: &str, password: &str) -> anyhow::Result<Page> {
        let page = self.get(url).await?;
        let Some(location) = page.location().filter(|_| page.status.is_redirection()) else {
            return Ok(page);
        };
        if location.path() != "/login" || location.origin() != url.origin() {
            return Ok(page);
        }
        let after_login = self.login(&location, email, password).await?;
        if after_login.status != StatusCode::SEE_OTHER {
            bail!("login: expected 303, got {after_login}");
        }
        let next = after_login
            .location()
            .with_context(|| format!("login: 303 without Location: {after_login}"))?;
        self.get(&next).await
    }

    /// The whole user part: authorize, log in when asked, decide on the
    /// consent page. Returns the redirect back to the client.
    pub async fn authorize_and_decide(
        &self,
        url: &Url,
        email: &str,
        password: &str,
        decision: &str,
    ) -> anyhow::Result<Url> {
        let consent = self.authorize(url, email, password).await?;
        if consent.status != StatusCode::OK {
            bail!("authorize: expected the consent page (200), got {consent}");
        }
        let form = consent.form("/consent")?;
        let answer = self
            .submit(&consent, &form, &[("decision", decision)], &[])
            .await?;
        if !answer.status.is_redirection() {
            bail!("consent: expected a redirect, got {answer}");
        }
        answer
            .location()
            .with_context(|| format!("consent: redirect without Location: {answer}"))
    }

    /// [`Browser::authorize_and_decide`] with `decision=allow`.
    pub async fn authorize_and_allow(
        &self,
        url: &Url,
        email: &str,
        password: &str,
    ) -> anyhow::Result<Url> {
        self.authorize_and_decide(url, email, password, "allow")
            .await
    }
}

/// The value of query parameter `name`.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
