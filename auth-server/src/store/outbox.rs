//! The dev mail outbox: what the mailer "sends" when no `SMTP_URL` is set,
//! read back with `auth-server outbox list`.

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, QueryOrder, QuerySelect, Set,
};

use super::entities::mail_outbox;

pub use mail_outbox::Model as OutboxMail;

/// Stores one mail.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    recipient: &str,
    subject: &str,
    body: &str,
    now: i64,
) -> Result<OutboxMail, DbErr> {
    mail_outbox::ActiveModel {
        id: Set(super::new_id()),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject.to_owned()),
        body: Set(body.to_owned()),
        created_at: Set(now),
    }
    .insert(db)
    .await
}

/// The mails, newest first; at most `limit` of them when given.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    limit: Option<u64>,
) -> Result<Vec<OutboxMail>, DbErr> {
    mail_outbox::Entity::find()
        .order_by_desc(mail_outbox::Column::CreatedAt)
        .order_by_desc(mail_outbox::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
