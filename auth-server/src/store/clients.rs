use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set};

use super::entities::clients;
use crate::clock;
use crate::config::is_loopback_host;
use crate::domain::{GrantType, ScopeSet};
use shared::contract::Tier;

pub use clients::Model as ClientRow;

/// A registered client, parsed.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: ScopeSet,
    /// Refresh grace window; None = the server default.
    pub refresh_grace_secs: Option<i64>,
    /// The resource API's rate-limit tier of its tokens.
    pub tier: Tier,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Where a code for this client may be sent: the requested URI if it is
    /// registered (exactly; a public native client's loopback URI may differ
    /// in port, RFC 8252 §7.3), or the only registered URI when none is
    /// requested. None: not a valid target, show an error page.
    pub fn redirect_target(&self, requested: Option<&str>) -> Option<String> {
        match requested {
            Some(requested) => {
                let exact = self.redirect_uris.iter().any(|r| r == requested);
                let variant = self.is_public()
                    && self
                        .redirect_uris
                        .iter()
                        .any(|r| loopback_port_variant(r, requested));
                (exact || variant).then(|| requested.to_owned())
            }
            None => match self.redirect_uris.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            },
        }
    }

    /// Checks the presented secret: confidential clients must present theirs,
    /// public clients must present none. Constant time.
    pub fn authenticate(&self, secret: Option<&str>) -> bool {
        match (&self.secret_hash, secret) {
            (Some(hash), Some(secret)) => shared::secret::verify(secret, hash),
            (None, None) => true,
            _ => false,
        }
    }

    pub(crate) fn from_row(row: ClientRow) -> Result<Self, DbErr> {
        let redirect_uris: Vec<String> = serde_json::from_str(&row.redirect_uris)
            .map_err(|e| DbErr::Custom(format!("client {}: redirect_uris: {e}", row.id)))?;
        let grant_types = row
            .grant_types
            .split(' ')
            .filter(|g| !g.is_empty())
            .map(GrantType::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DbErr::Custom(format!("client {}: {e}", row.id)))?;
        let scopes = ScopeSet::parse(&row.scopes)
            .map_err(|e| DbErr::Custom(format!("client {}: {e}", row.id)))?;
        let tier = Tier::parse(&row.tier)
            .ok_or_else(|| DbErr::Custom(format!("client {}: unknown tier", row.id)))?;
        Ok(Self {
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            redirect_uris,
            grant_types,
            scopes,
            refresh_grace_secs: row.refresh_grace_secs,
            tier,
        })
    }
}

/// Same loopback URI but for the port (RFC 8252 §7.3).
fn loopback_port_variant(registered: &str, requested: &str) -> bool {
    let (Ok(reg), Ok(req)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    reg.scheme() == "http"
        && req.scheme() == "http"
        && is_loopback_host(&reg)
        && reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
}

pub struct NewClient<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub secret_hash: Option<String>,
    pub redirect_uris: &'a [String],
    pub grant_types: &'a [GrantType],
    pub scopes: &'a ScopeSet,
    pub refresh_grace_secs: Option<i64>,
    pub tier: Tier,
}

pub async fn create<C: ConnectionTrait>(db: &C, new: NewClient<'_>) -> Result<Client, DbErr> {
    let grants: Vec<&str> = new.grant_types.iter().map(|g| g.as_str()).collect();
    let row = clients::ActiveModel {
        id: Set(new.id.to_owned()),
        name: Set(new.name.to_owned()),
        secret_hash: Set(new.secret_hash),
        redirect_uris: Set(
            serde_json::to_string(new.redirect_uris).map_err(|e| DbErr::Custom(e.to_string()))?
        ),
        grant_types: Set(grants.join(" ")),
        scopes: Set(new.scopes.to_string()),
        created_at: Set(clock::now()),
        refresh_grace_secs: Set(new.refresh_grace_secs),
        tier: Set(new.tier.as_str().to_owned()),
    }
    .insert(db)
    .await?;
    Client::from_row(row)
}

pub async fn find<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Client>, DbErr> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    match clients::Entity::find_by_id(id.to_owned()).one(db).await? {
        Some(row) => Client::from_row(row).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(public: bool, uris: &[&str]) -> Client {
        Client {
            id: "c".into(),
            name: "c".into(),
            secret_hash: (!public).then(|| "h".into()),
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: ScopeSet::parse("a").unwrap(),
            refresh_grace_secs: None,
            tier: Tier::Standard,
        }
    }

    #[test]
    fn redirect_target_matches_exactly_or_by_loopback_port_for_public_clients() {
        let native = client(true, &["http://127.0.0.1:8765/cb", "com.example.app:/cb"]);
        let web = client(false, &["http://127.0.0.1:8765/cb"]);
        let cases: &[(&Client, Option<&str>, Option<&str>)] = &[
            (
                &native,
                Some("http://127.0.0.1:9999/cb"),
                Some("http://127.0.0.1:9999/cb"),
            ),
            (
                &native,
                Some("com.example.app:/cb"),
                Some("com.example.app:/cb"),
            ),
            (&native, Some("http://127.0.0.1:9999/other"), None),
            (&native, Some("com.example.app:/cb/x"), None),
            (&native, None, None),
            (&web, Some("http://127.0.0.1:9999/cb"), None),
            (&web, None, Some("http://127.0.0.1:8765/cb")),
        ];
        for (c, requested, expected) in cases {
            assert_eq!(
                c.redirect_target(*requested).as_deref(),
                *expected,
                "{requested:?}"
            );
        }
    }
}
