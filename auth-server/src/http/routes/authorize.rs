//! `GET /authorize` and `POST /consent`: the authorization-code flow, run by
//! oxide-auth's `AuthorizationFlow` with our registrar, grant store, PKCE
//! addon and solicitor.

use axum::body::Body;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use oxide_auth::endpoint::OAuthError as OxideError;
use oxide_auth_async::endpoint::authorization::AuthorizationFlow;
use oxide_auth_axum::OAuthRequest;
use url::Url;

use super::{csrf_refusal, error_page, internal_error_page, load_session, read_page_form};
use crate::http::pages;
use crate::oauth::solicitor::{Decision, Interstitial};
use crate::oauth::{ClientCache, FlowError, Mode, PortcullisEndpoint};
use crate::state::AppState;
use crate::store::{self, audit};

/// The parameters of an authorization request that the consent form carries.
const AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn authorize_params(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter(|(name, _)| AUTHORIZE_PARAMS.contains(&name.as_str()))
        .collect()
}

/// RFC 7636 §4.2: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_code_challenge(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The request oxide-auth sees: only the authorization parameters (repeated
/// ones stay repeated, so oxide-auth refuses them), and a malformed
/// `code_challenge` dropped so that the request fails as one without PKCE.
async fn authorization_request(pairs: Vec<(String, String)>) -> Result<OAuthRequest, Response> {
    let malformed = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The authorization request is malformed.",
        )
    };
    let params: Vec<(String, String)> = authorize_params(pairs)
        .into_iter()
        .filter(|(name, value)| name != "code_challenge" || valid_code_challenge(value))
        .collect();
    let query = serde_urlencoded::to_string(&params).map_err(|_| malformed())?;
    let synthetic = Request::builder()
        .uri(format!("/authorize?{query}"))
        .body(Body::empty())
        .map_err(|_| malformed())?;
    OAuthRequest::from_request(synthetic, &())
        .await
        .map_err(|_| malformed())
}

pub async fn authorize_get(
    State(app): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(uri.query().unwrap_or_default()) {
            Ok(pairs) => pairs,
            Err(_) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "The authorization request is malformed.",
                );
            }
        };
    let request = match authorization_request(pairs).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let session = match load_session(&app, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let decision = match session.as_ref().filter(|s| s.is_authenticated()) {
        Some(s) => Decision::Ask {
            user_id: s.user_id.clone().unwrap_or_default(),
        },
        None => Decision::NeedLogin,
    };
    let (result, interstitial) = run_flow(&app, decision, request).await;
    match interstitial {
        Some(Interstitial::Login) => {
            let next = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/authorize");
            let target = format!(
                "/login?{}",
                serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
            );
            Redirect::to(&target).into_response()
        }
        Some(Interstitial::Consent { client_id, scope }) => {
            let Some(session) = session else {
                return internal_error_page();
            };
            let client_name = match store::clients::find(&app.db, &client_id).await {
                Ok(Some(c)) => c.name,
                Ok(None) => client_id,
                Err(e) => {
                    tracing::error!(error = %e, "loading client");
                    return internal_error_page();
                }
            };
            let query = uri.query().unwrap_or_default();
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query).unwrap_or_default();
            let params = authorize_params(pairs);
            let mut response =
                pages::consent(&session.csrf_token, &client_name, &scope, &params).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => finish(&app, result, StatusCode::FOUND),
    }
}

pub async fn consent_post(State(app): State<AppState>, request: Request) -> Response {
    let (headers, form) = match read_page_form(request).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let session = match load_session(&app, &headers).await {
        Ok(Some(s)) if s.is_authenticated() => s,
        Ok(_) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "Session expired",
                "Your sign-in session has expired. Start again from the application.",
            );
        }
        Err(response) => return response,
    };
    if let Some(response) = csrf_refusal(&session, &form, "Start again from the application.") {
        return response;
    }
    let allow = match form.get("decision") {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Choose Allow or Deny.",
            );
        }
    };
    let oauth_request = match authorization_request(form.0.clone().into_iter().collect()).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let user_id = session.user_id.clone().unwrap_or_default();
    let (result, _) = run_flow(
        &app,
        Decision::Decided {
            user_id: user_id.clone(),
            allow,
        },
        oauth_request,
    )
    .await;
    let kind = if allow {
        audit::CONSENT_GRANTED
    } else {
        audit::CONSENT_DENIED
    };
    let client_id = form.get("client_id").map(str::to_owned);
    if let Err(e) = audit::record(
        &app.db,
        kind,
        Some(&user_id),
        client_id.as_deref(),
        serde_json::json!({"scope": form.get("scope")}),
    )
    .await
    {
        tracing::error!(error = %e, "writing audit event");
    }
    finish(&app, result, StatusCode::SEE_OTHER)
}

async fn run_flow(
    app: &AppState,
    decision: Decision,
    request: OAuthRequest,
) -> (
    Result<oxide_auth_axum::OAuthResponse, FlowError>,
    Option<Interstitial>,
) {
    let endpoint =
        PortcullisEndpoint::new(app, Mode::Authorize, Some(decision), ClientCache::default());
    let interstitial = endpoint.interstitial.clone();
    let result = match AuthorizationFlow::prepare(endpoint) {
        Ok(mut flow) => flow.execute(request).await,
        Err(e) => Err(e),
    };
    let shown = interstitial.lock().ok().and_then(|mut slot| slot.take());
    (result, shown)
}

/// Turns the flow's result into the response: redirects to the client get
/// `iss` (RFC 9207) and the given status; anything before the redirect URI is
/// trusted is an error page, never a redirect.
fn finish(
    app: &AppState,
    result: Result<oxide_auth_axum::OAuthResponse, FlowError>,
    redirect_status: StatusCode,
) -> Response {
    match result {
        Ok(response) => {
            let response = response.into_response();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Url::parse(v).ok());
            match location {
                Some(mut url) => {
                    url.query_pairs_mut().append_pair("iss", &app.issuer);
                    let Ok(value) = HeaderValue::from_str(url.as_str()) else {
                        return internal_error_page();
                    };
                    let mut redirect = Response::new(Body::empty());
                    *redirect.status_mut() = redirect_status;
                    redirect.headers_mut().insert(header::LOCATION, value);
                    redirect
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    redirect
                }
                None if response.status().is_success() => internal_error_page(),
                None => error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "The authorization request is invalid.",
                ),
            }
        }
        Err(FlowError::OAuth(OxideError::DenySilently)) => error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application is not registered for this sign-in flow, or the redirect URI it gave is not one of its registered redirect URIs.",
        ),
        Err(FlowError::OAuth(OxideError::PrimitiveError)) => internal_error_page(),
        Err(FlowError::OAuth(_)) | Err(FlowError::Web(_)) => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The authorization request is malformed.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_code_challenge;

    #[test]
    fn code_challenge_must_follow_rfc7636() {
        assert!(valid_code_challenge(&"a".repeat(43)));
        assert!(valid_code_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_code_challenge(&"a".repeat(42)));
        assert!(!valid_code_challenge(&"a".repeat(129)));
        assert!(!valid_code_challenge(&format!("{}+", "a".repeat(43))));
    }
}
