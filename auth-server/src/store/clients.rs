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
    /// The secret before the last rotation and when it stops working
    /// (`clients rotate-secret --grace`); None: no previous secret.
    pub previous_secret: Option<PreviousSecret>,
    /// The row's revision when it was read ([`is_current`]).
    pub revision: i64,
}

/// A rotated-out secret, still accepted until `expires_at` (Unix seconds).
#[derive(Debug, Clone)]
pub struct PreviousSecret {
    pub hash: String,
    pub expires_at: i64,
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

    /// Checks the presented secret at `now`: confidential clients must
    /// present theirs (or, before it expires, the one before the last
    /// rotation), public clients must present none. Constant time: both
    /// hashes are compared whatever the outcome, and the expiry is checked
    /// after both.
    pub fn authenticate(&self, secret: Option<&str>, now: i64) -> bool {
        match (&self.secret_hash, secret) {
            (Some(hash), Some(secret)) => {
                // Without a previous secret, the same work on the current one.
                let (previous_hash, live) = match &self.previous_secret {
                    Some(previous) => (previous.hash.as_str(), now < previous.expires_at),
                    None => (hash.as_str(), false),
                };
                let current = shared::secret::verify(secret, hash);
                let previous = shared::secret::verify(secret, previous_hash);
                current | (previous & live)
            }
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
        let previous_secret = match (row.previous_secret_hash, row.previous_secret_expires_at) {
            (Some(hash), Some(expires_at)) => Some(PreviousSecret { hash, expires_at }),
            _ => None,
        };
        Ok(Self {
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            redirect_uris,
            grant_types,
            scopes,
            refresh_grace_secs: row.refresh_grace_secs,
            tier,
            previous_secret,
            revision: row.revision,
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
        previous_secret_hash: Set(None),
        previous_secret_expires_at: Set(None),
        revision: Set(0),
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

/// A client as it was authenticated: its id and the row's revision then
/// ([`is_current`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAt<'a> {
    pub id: &'a str,
    pub revision: i64,
}

impl<'a> From<&'a Client> for ClientAt<'a> {
    fn from(client: &'a Client) -> Self {
        Self {
            id: &client.id,
            revision: client.revision,
        }
    }
}

/// Whether client `id` is still at `revision`: neither changed nor deleted
/// since it was read. One read of one column by primary key.
pub async fn is_current<C: ConnectionTrait>(
    db: &C,
    id: &str,
    revision: i64,
) -> Result<bool, DbErr> {
    use sea_orm::QuerySelect;
    let found: Option<i64> = clients::Entity::find_by_id(id.to_owned())
        .select_only()
        .column(clients::Column::Revision)
        .into_tuple()
        .one(db)
        .await?;
    Ok(found == Some(revision))
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
            previous_secret: None,
            revision: 0,
        }
    }

    #[test]
    fn authenticate_accepts_the_previous_secret_only_until_it_expires() {
        let mut c = client(false, &[]);
        c.secret_hash = Some(shared::secret::hash("new"));
        assert!(c.authenticate(Some("new"), 100));
        assert!(!c.authenticate(Some("old"), 100), "no previous secret");
        c.previous_secret = Some(PreviousSecret {
            hash: shared::secret::hash("old"),
            expires_at: 200,
        });
        assert!(c.authenticate(Some("new"), 100));
        assert!(c.authenticate(Some("old"), 199));
        assert!(!c.authenticate(Some("old"), 200), "expired");
        assert!(c.authenticate(Some("new"), 200));
        assert!(!c.authenticate(Some("other"), 100));
        assert!(!c.authenticate(None, 100));
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
