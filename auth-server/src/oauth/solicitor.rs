//! The owner solicitor: turns what the façade knows about the user (no
//! session, signed in, decided) into oxide-auth's consent answer. When the
//! flow must stop for a page, the answer carries an [`Interstitial`] in its
//! body, so that it comes back as the flow's return value.

use async_trait::async_trait;
use oxide_auth::endpoint::{OwnerConsent, Solicitation, WebRequest};
use oxide_auth_async::endpoint::OwnerSolicitor;
use oxide_auth_axum::{OAuthRequest, OAuthResponse};
use serde::{Deserialize, Serialize};

/// The content type that marks an interstitial in a flow's response.
pub const INTERSTITIAL_TYPE: &str = "application/x-portcullis-interstitial+json";

/// What must be shown instead of a redirect to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interstitial {
    Login,
    Consent {
        client_id: String,
        scope: String,
        /// The redirect URI the registrar bound (registered, exact).
        redirect_uri: String,
    },
}

pub enum Decision {
    /// No authenticated session: send the user to the login page.
    NeedLogin,
    /// An authenticated user who has not decided yet.
    Ask,
    /// The user decided on the consent page.
    Decided { user_id: String, allow: bool },
}

pub struct Solicitor {
    decision: Decision,
}

impl Solicitor {
    pub fn new(decision: Decision) -> Self {
        Self { decision }
    }
}

fn interrupt(what: &Interstitial) -> OwnerConsent<OAuthResponse> {
    let body = serde_json::to_string(what).unwrap_or_default();
    match OAuthResponse::default().content_type(INTERSTITIAL_TYPE) {
        Ok(response) => OwnerConsent::InProgress(response.body(&body)),
        Err(e) => OwnerConsent::Error(e),
    }
}

#[async_trait]
impl OwnerSolicitor<OAuthRequest> for Solicitor {
    async fn check_consent(
        &mut self,
        _request: &mut OAuthRequest,
        solicitation: Solicitation<'_>,
    ) -> OwnerConsent<<OAuthRequest as WebRequest>::Response> {
        let pre_grant = solicitation.pre_grant();
        match &self.decision {
            Decision::NeedLogin => interrupt(&Interstitial::Login),
            Decision::Ask => interrupt(&Interstitial::Consent {
                client_id: pre_grant.client_id.clone(),
                scope: pre_grant.scope.to_string(),
                redirect_uri: pre_grant.redirect_uri.to_string(),
            }),
            Decision::Decided {
                user_id,
                allow: true,
            } => OwnerConsent::Authorized(user_id.clone()),
            Decision::Decided { allow: false, .. } => OwnerConsent::Denied,
        }
    }
}
