use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set};

use super::entities::clients;
use crate::clock;
use crate::domain::{GrantType, ScopeSet};

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
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
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

    fn from_row(row: ClientRow) -> Result<Self, DbErr> {
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
        Ok(Self {
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            redirect_uris,
            grant_types,
            scopes,
        })
    }
}

pub struct NewClient<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub secret_hash: Option<String>,
    pub redirect_uris: &'a [String],
    pub grant_types: &'a [GrantType],
    pub scopes: &'a ScopeSet,
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
