//! The authorization endpoint (RFC 6749 §4.1.1–4.1.2, RFC 7636, RFC 9207):
//! a typed request in, an [`AuthorizeResult`] out. oxide-auth's
//! `AuthorizationFlow` checks the client, the redirect URI, the scope and
//! PKCE; this module feeds it a canonical request, reads its verdict, keeps
//! the request the user is asked about on the server (bound to the session,
//! approved once), and adds what oxide-auth lacks (`iss`,
//! `error_description`, refusal of repeated parameters).

use axum::body::Body;
use axum::extract::FromRequest;
use axum::response::IntoResponse;
use oxide_auth::endpoint::OAuthError as OxideError;
use oxide_auth_async::endpoint::authorization::AuthorizationFlow;
use oxide_auth_axum::{OAuthRequest, OAuthResponse};
use url::Url;

use super::code::valid_pkce_string;
use super::endpoint::{AuthorizeEndpoint, FlowError};
use super::solicitor::{Decision, INTERSTITIAL_TYPE, Interstitial};
use crate::audit;
use crate::state::AppState;
use crate::store::sessions::Session;
use crate::store::{self, audit as kinds, pending};

/// The parameters of an authorization request; everything else is ignored.
const AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// How long a consent page stays answerable.
pub const PENDING_TTL_SECS: i64 = 600;

/// An authorization request, parsed once.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    params: Vec<(String, String)>,
    /// Authorization parameters given more than once (RFC 6749 §3.1).
    repeated: Vec<String>,
}

impl AuthorizationRequest {
    /// From the query string of `GET /authorize`; None if it is not
    /// form-urlencoded at all.
    pub fn from_query(query: &str) -> Option<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
        let mut params: Vec<(String, String)> = Vec::new();
        let mut repeated = Vec::new();
        for (name, value) in pairs {
            if !AUTHORIZE_PARAMS.contains(&name.as_str()) {
                continue;
            }
            if params.iter().any(|(n, _)| *n == name) {
                if !repeated.contains(&name) {
                    repeated.push(name);
                }
                continue;
            }
            params.push((name, value));
        }
        Some(Self { params, repeated })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Which page an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// The request is bad and its redirect URI cannot be trusted (400).
    BadRequest,
    /// The consent form is stale, used or another session's (403).
    Stale,
    /// A fault of ours (500): logged, never detailed.
    Server,
    /// A dependency (the database) is down or too slow (503, `Retry-After`).
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct ConsentPrompt {
    /// The one-time handle the consent form posts back.
    pub handle: String,
    pub client_name: String,
    pub scope: String,
    /// Where the decision will send the browser (for the page's CSP).
    pub redirect_uri: Url,
}

/// What the authorization endpoint answers.
#[derive(Debug, Clone)]
pub enum AuthorizeResult {
    /// To the client (a code or an error, with `iss`).
    Redirect(Url),
    /// The user must sign in first.
    LoginNeeded,
    Consent(ConsentPrompt),
    ErrorPage {
        kind: PageError,
        message: String,
    },
}

fn error_page(kind: PageError, message: &str) -> AuthorizeResult {
    AuthorizeResult::ErrorPage {
        kind,
        message: message.to_owned(),
    }
}

fn server_fault(context: &str, e: impl crate::fault::Fault) -> AuthorizeResult {
    if crate::fault::log(context, &e) {
        error_page(
            PageError::Unavailable,
            "The service is temporarily unavailable. Please try again in a moment.",
        )
    } else {
        error_page(
            PageError::Server,
            "The server could not complete the request. Please try again later.",
        )
    }
}

const UNKNOWN_CLIENT: &str = "The application is not registered for this sign-in flow, or the redirect URI it gave is not one of its registered redirect URIs.";

/// `GET /authorize`: `session` is the browser's live session, if any.
pub async fn authorize(
    app: &AppState,
    request: AuthorizationRequest,
    session: Option<&Session>,
) -> AuthorizeResult {
    if !request.repeated.is_empty() {
        return refuse_repeated(app, &request).await;
    }
    let decision = match session.and_then(Session::user) {
        Some(_) => Decision::Ask,
        None => Decision::NeedLogin,
    };
    match run_flow(app, &request, decision).await {
        Flow::Interstitial(Interstitial::Login) => AuthorizeResult::LoginNeeded,
        Flow::Interstitial(Interstitial::Consent {
            client_id,
            scope,
            redirect_uri,
        }) => {
            let Some(session) = session else {
                return server_fault("consent without a session", "no session");
            };
            prompt(app, &request, session, client_id, scope, &redirect_uri).await
        }
        Flow::Done(result) => result,
    }
}

/// Keeps the request on the server and returns what the consent page shows.
async fn prompt(
    app: &AppState,
    request: &AuthorizationRequest,
    session: &Session,
    client_id: String,
    scope: String,
    redirect_uri: &str,
) -> AuthorizeResult {
    let Ok(redirect_uri) = Url::parse(redirect_uri) else {
        return server_fault("bound redirect URI", "unparseable");
    };
    // The registrar just looked the client up: a cache hit.
    let client_name = match app.clients.find(&app.db, &client_id).await {
        Ok(Some(client)) => client.name.clone(),
        Ok(None) => return error_page(PageError::BadRequest, UNKNOWN_CLIENT),
        Err(e) => return server_fault("loading client", e),
    };
    let handle = match shared::secret::generate() {
        Ok(handle) => handle,
        Err(e) => return server_fault("generating consent handle", e),
    };
    let stored = match serde_json::to_string(&request.params) {
        Ok(json) => json,
        Err(e) => return server_fault("encoding pending request", e),
    };
    let new = pending::NewPending {
        handle: &handle,
        session_id: &session.id,
        client_id: &client_id,
        request: stored,
        now: app.now(),
        ttl_secs: PENDING_TTL_SECS,
    };
    if let Err(e) = app.writer.run(pending::create(&app.db, new)).await {
        return server_fault("storing pending request", e);
    }
    AuthorizeResult::Consent(ConsentPrompt {
        handle,
        client_name,
        scope,
        redirect_uri,
    })
}

/// `POST /consent`: the signed-in user's decision on the pending request
/// named by `handle` (CSRF already checked by the caller). Each pending
/// request is decided once, by the session that saw it.
pub async fn decide(
    app: &AppState,
    session: &Session,
    handle: &str,
    allow: bool,
) -> AuthorizeResult {
    let Some(user_id) = session.user() else {
        return error_page(PageError::Stale, "Your sign-in session has expired.");
    };
    let pending = match app
        .writer
        .run(pending::take(&app.db, handle, &session.id, app.now()))
        .await
    {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            return error_page(
                PageError::Stale,
                "This consent form was already answered or has expired. Start again from the application.",
            );
        }
        Err(e) => return server_fault("loading pending request", e),
    };
    let params: Vec<(String, String)> = match serde_json::from_str(&pending.request) {
        Ok(params) => params,
        Err(e) => return server_fault("decoding pending request", e),
    };
    let request = AuthorizationRequest {
        params,
        repeated: Vec::new(),
    };
    let decision = Decision::Decided {
        user_id: user_id.to_owned(),
        allow,
    };
    let result = match run_flow(app, &request, decision).await {
        Flow::Done(result) => result,
        Flow::Interstitial(_) => server_fault("decided flow asked again", "interstitial"),
    };
    // Audit what happened, after it happened: a code or a denial went out.
    if let AuthorizeResult::Redirect(url) = &result {
        let issued = url.query_pairs().any(|(k, _)| k == "code");
        let kind = match (allow, issued) {
            (true, true) => Some(kinds::CONSENT_GRANTED),
            (false, false) => Some(kinds::CONSENT_DENIED),
            _ => None,
        };
        if let Some(kind) = kind {
            let scope = request.get("scope").map(str::to_owned);
            audit::record(
                app,
                kind,
                Some(user_id),
                Some(&pending.client_id),
                serde_json::json!({"scope": scope}),
            )
            .await;
        }
    }
    result
}

enum Flow {
    Interstitial(Interstitial),
    Done(AuthorizeResult),
}

/// Runs oxide-auth's flow on the canonical form of the request.
async fn run_flow(app: &AppState, request: &AuthorizationRequest, decision: Decision) -> Flow {
    // A malformed challenge is dropped, so that the request fails as one
    // without PKCE (oxide-auth does not check the RFC 7636 syntax).
    let params: Vec<&(String, String)> = request
        .params
        .iter()
        .filter(|(name, value)| name != "code_challenge" || valid_pkce_string(value))
        .collect();
    let Ok(query) = serde_urlencoded::to_string(&params) else {
        return Flow::Done(error_page(
            PageError::BadRequest,
            "The authorization request is malformed.",
        ));
    };
    let oauth_request = match http::Request::builder()
        .uri(format!("/authorize?{query}"))
        .body(Body::empty())
    {
        Ok(synthetic) => match OAuthRequest::from_request(synthetic, &()).await {
            Ok(r) => r,
            Err(_) => {
                return Flow::Done(error_page(
                    PageError::BadRequest,
                    "The authorization request is malformed.",
                ));
            }
        },
        Err(e) => return Flow::Done(server_fault("building the canonical request", e)),
    };
    let endpoint = AuthorizeEndpoint::new(app, decision, request.get("redirect_uri").is_some());
    let result = match AuthorizationFlow::prepare(endpoint) {
        Ok(mut flow) => flow.execute(oauth_request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(response) => read_response(app, response).await,
        Err(FlowError::OAuth(OxideError::DenySilently)) => {
            Flow::Done(error_page(PageError::BadRequest, UNKNOWN_CLIENT))
        }
        Err(FlowError::OAuth(OxideError::BadRequest)) => Flow::Done(error_page(
            PageError::BadRequest,
            "The authorization request is malformed.",
        )),
        Err(FlowError::OAuth(OxideError::PrimitiveError)) => {
            Flow::Done(server_fault("authorization flow", "primitive error"))
        }
        // A fault in building the response is ours, never the client's.
        Err(FlowError::Web(e)) => Flow::Done(server_fault("authorization flow", format!("{e:?}"))),
    }
}

async fn read_response(app: &AppState, response: OAuthResponse) -> Flow {
    let response = response.into_response();
    let status = response.status();
    let headers = response.headers().clone();
    let is_interstitial = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == INTERSTITIAL_TYPE.as_bytes());
    if is_interstitial {
        let bytes = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
            Ok(bytes) => bytes,
            Err(e) => return Flow::Done(server_fault("reading interstitial", e)),
        };
        return match serde_json::from_slice(&bytes) {
            Ok(interstitial) => Flow::Interstitial(interstitial),
            Err(e) => Flow::Done(server_fault("decoding interstitial", e)),
        };
    }
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Url::parse(v).ok());
    match location {
        Some(url) => Flow::Done(AuthorizeResult::Redirect(to_client(app, url))),
        None if status.is_success() => Flow::Done(server_fault(
            "authorization flow",
            "no redirect and no page",
        )),
        None => Flow::Done(error_page(
            PageError::BadRequest,
            "The authorization request is invalid.",
        )),
    }
}

/// A redirect to the client: `error_description` for errors (RFC 6749
/// §4.1.2.1) and `iss` always (RFC 9207).
fn to_client(app: &AppState, mut url: Url) -> Url {
    let error = url
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned());
    let described = url.query_pairs().any(|(k, _)| k == "error_description");
    {
        let mut pairs = url.query_pairs_mut();
        if let (Some(error), false) = (error, described) {
            pairs.append_pair("error_description", describe(&error));
        }
        pairs.append_pair("iss", &app.issuer);
    }
    url
}

fn describe(error: &str) -> &'static str {
    match error {
        "access_denied" => "the user or the server denied the request",
        "invalid_scope" => "the requested scope is unknown or not allowed for this client",
        "unsupported_response_type" => "only response_type=code is supported",
        "invalid_request" => {
            "the request is missing a required parameter (PKCE S256 code_challenge is required) or is malformed"
        }
        "unauthorized_client" => "this client may not use the authorization code flow",
        "server_error" => "the server could not complete the request",
        _ => "the authorization request was refused",
    }
}

/// A parameter given twice is `invalid_request` (RFC 6749 §3.1): an error
/// redirect if the client and redirect URI are themselves unambiguous and
/// registered, else an error page.
async fn refuse_repeated(app: &AppState, request: &AuthorizationRequest) -> AuthorizeResult {
    let names = request.repeated.join(", ");
    let message = format!("The authorization request repeats a parameter ({names}).");
    let ambiguous = request
        .repeated
        .iter()
        .any(|n| n == "client_id" || n == "redirect_uri");
    let Some(client_id) = request.get("client_id").filter(|_| !ambiguous) else {
        return error_page(PageError::BadRequest, &message);
    };
    let client = match store::clients::find(&app.db, client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return error_page(PageError::BadRequest, &message),
        Err(e) => return server_fault("loading client", e),
    };
    let Some(mut url) = client
        .redirect_target(request.get("redirect_uri"))
        .and_then(|target| Url::parse(&target).ok())
    else {
        return error_page(PageError::BadRequest, &message);
    };
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("error", "invalid_request");
        pairs.append_pair(
            "error_description",
            &format!("parameter given more than once: {names}"),
        );
        if let Some(state) = request
            .get("state")
            .filter(|_| !request.repeated.iter().any(|n| n == "state"))
        {
            pairs.append_pair("state", state);
        }
        pairs.append_pair("iss", &app.issuer);
    }
    AuthorizeResult::Redirect(url)
}
