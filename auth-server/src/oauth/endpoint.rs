//! The oxide-auth endpoint of one authorization request: registrar, code
//! store, solicitor and the PKCE addon (S256 required for every client).

use oxide_auth::endpoint::{OAuthError as OxideError, Scopes, Template, WebRequest};
use oxide_auth::frontends::simple::extensions::{AddonList, Pkce};
use oxide_auth_async::endpoint::{Endpoint, Extension, OwnerSolicitor};
use oxide_auth_async::primitives::{Authorizer, Issuer, Registrar};
use oxide_auth_axum::{OAuthRequest, OAuthResponse, WebError};

use super::primitives::{CodeStore, DbRegistrar};
use super::solicitor::{Decision, Solicitor};
use crate::state::AppState;

/// How an oxide-auth flow failed before it produced a response.
#[derive(Debug)]
pub enum FlowError {
    OAuth(OxideError),
    Web(WebError),
}

pub struct AuthorizeEndpoint {
    registrar: DbRegistrar,
    codes: CodeStore,
    solicitor: Solicitor,
    addons: AddonList,
}

impl AuthorizeEndpoint {
    pub fn new(app: &AppState, decision: Decision, redirect_uri_given: bool) -> Self {
        let mut addons = AddonList::new();
        addons.push_code(Pkce::required());
        Self {
            registrar: DbRegistrar::new(app.clone()),
            codes: CodeStore::new(app.clone(), redirect_uri_given),
            solicitor: Solicitor::new(decision),
            addons,
        }
    }
}

impl Endpoint<OAuthRequest> for AuthorizeEndpoint {
    type Error = FlowError;

    fn registrar(&self) -> Option<&(dyn Registrar + Sync)> {
        Some(&self.registrar)
    }

    fn authorizer_mut(&mut self) -> Option<&mut (dyn Authorizer + Send)> {
        Some(&mut self.codes)
    }

    fn issuer_mut(&mut self) -> Option<&mut (dyn Issuer + Send)> {
        None
    }

    fn owner_solicitor(&mut self) -> Option<&mut (dyn OwnerSolicitor<OAuthRequest> + Send)> {
        Some(&mut self.solicitor)
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
