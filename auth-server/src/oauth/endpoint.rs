//! The oxide-auth endpoint assembled per request: registrar, grant store,
//! solicitor and the PKCE addon (S256 required for every client).

use std::sync::{Arc, Mutex};

use oxide_auth::endpoint::{OAuthError as OxideError, Scopes, Template, WebRequest};
use oxide_auth::frontends::simple::extensions::{AddonList, Pkce};
use oxide_auth_async::endpoint::{Endpoint, Extension, OwnerSolicitor};
use oxide_auth_async::primitives::{Authorizer, Issuer, Registrar};
use oxide_auth_axum::{OAuthRequest, OAuthResponse, WebError};

use super::primitives::{ClientCache, DbRegistrar, GrantStore, Mode, Outcome, SharedOutcome};
use super::solicitor::{Decision, Interstitial, Solicitor};
use crate::state::AppState;

/// How an oxide-auth flow failed (before any response was produced).
#[derive(Debug)]
pub enum FlowError {
    OAuth(OxideError),
    Web(WebError),
}

pub struct PortcullisEndpoint {
    registrar: DbRegistrar,
    store: GrantStore,
    solicitor: Option<Solicitor>,
    addons: AddonList,
    pub outcome: SharedOutcome,
    pub interstitial: Arc<Mutex<Option<Interstitial>>>,
}

impl PortcullisEndpoint {
    /// `clients`: empty, or seeded with the client the handler authenticated.
    pub fn new(
        app: &AppState,
        mode: Mode,
        decision: Option<Decision>,
        clients: ClientCache,
    ) -> Self {
        let outcome: SharedOutcome = Arc::new(Mutex::new(Outcome::default()));
        let interstitial = Arc::new(Mutex::new(None));
        let mut addons = AddonList::new();
        addons.push_code(Pkce::required());
        Self {
            registrar: DbRegistrar::new(app.clone(), mode, clients.clone()),
            store: GrantStore::new(app.clone(), mode, outcome.clone(), clients),
            solicitor: decision.map(|d| Solicitor::new(d, interstitial.clone())),
            addons,
            outcome,
            interstitial,
        }
    }
}

impl Endpoint<OAuthRequest> for PortcullisEndpoint {
    type Error = FlowError;

    fn registrar(&self) -> Option<&(dyn Registrar + Sync)> {
        Some(&self.registrar)
    }

    fn authorizer_mut(&mut self) -> Option<&mut (dyn Authorizer + Send)> {
        Some(&mut self.store)
    }

    fn issuer_mut(&mut self) -> Option<&mut (dyn Issuer + Send)> {
        Some(&mut self.store)
    }

    fn owner_solicitor(&mut self) -> Option<&mut (dyn OwnerSolicitor<OAuthRequest> + Send)> {
        self.solicitor
            .as_mut()
            .map(|s| s as &mut (dyn OwnerSolicitor<OAuthRequest> + Send))
    }

    fn scopes(&mut self) -> Option<&mut dyn Scopes<OAuthRequest>> {
        None
    }

    fn response(
        &mut self,
        _request: &mut OAuthRequest,
        _kind: Template,
    ) -> Result<<OAuthRequest as WebRequest>::Response, Self::Error> {
        Ok(OAuthResponse::default())
    }

    fn error(&mut self, err: OxideError) -> Self::Error {
        FlowError::OAuth(err)
    }

    fn web_error(&mut self, err: WebError) -> Self::Error {
        FlowError::Web(err)
    }

    fn extension(&mut self) -> Option<&mut (dyn Extension + Send)> {
        Some(&mut self.addons)
    }
}
