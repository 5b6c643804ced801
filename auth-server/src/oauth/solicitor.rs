//! The owner solicitor: decides, from the session the handler loaded, whether
//! the flow may go on, must show the login page, or must ask for consent.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use oxide_auth::endpoint::{OwnerConsent, Solicitation, WebRequest};
use oxide_auth_async::endpoint::OwnerSolicitor;
use oxide_auth_axum::{OAuthRequest, OAuthResponse};

/// What the handler must show instead of a redirect to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interstitial {
    Login,
    Consent { client_id: String, scope: String },
}

pub enum Decision {
    /// No authenticated session: send the user to the login page.
    NeedLogin,
    /// Authenticated user who has not decided yet.
    Ask { user_id: String },
    /// The user decided on the consent page (CSRF already checked).
    Decided { user_id: String, allow: bool },
    /// client_credentials: the client acts for itself.
    Client,
}

pub struct Solicitor {
    decision: Decision,
    interstitial: Arc<Mutex<Option<Interstitial>>>,
}

impl Solicitor {
    pub fn new(decision: Decision, interstitial: Arc<Mutex<Option<Interstitial>>>) -> Self {
        Self {
            decision,
            interstitial,
        }
    }

    fn interrupt(&self, what: Interstitial) -> OwnerConsent<OAuthResponse> {
        if let Ok(mut slot) = self.interstitial.lock() {
            *slot = Some(what);
        }
        OwnerConsent::InProgress(OAuthResponse::default())
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
            Decision::NeedLogin => self.interrupt(Interstitial::Login),
            Decision::Ask { .. } => self.interrupt(Interstitial::Consent {
                client_id: pre_grant.client_id.clone(),
                scope: pre_grant.scope.to_string(),
            }),
            Decision::Decided {
                user_id,
                allow: true,
            } => OwnerConsent::Authorized(user_id.clone()),
            Decision::Decided { allow: false, .. } => OwnerConsent::Denied,
            Decision::Client => OwnerConsent::Authorized(pre_grant.client_id.clone()),
        }
    }
}
