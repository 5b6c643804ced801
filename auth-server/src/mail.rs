//! Outgoing mail (password reset): SMTP through lettre when `SMTP_URL` is
//! set, else the dev outbox, a row in `mail_outbox` that
//! `auth-server outbox list` prints.
//!
//! Each send logs one line naming the recipient and the backend; never the
//! body, which carries a secret link.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::store::outbox;

/// Default of `MAIL_FROM`.
pub const DEFAULT_FROM: &str = "Portcullis <no-reply@localhost>";

/// The longest one SMTP send may take, connection included (and the
/// timeout of each SMTP command).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A plain-text mail to one recipient.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid recipient address")]
    Recipient,
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("SMTP: no answer in time")]
    Timeout,
    #[error("outbox: {0}")]
    Outbox(#[from] sea_orm::DbErr),
}

impl crate::fault::Fault for MailError {
    fn unavailable(&self) -> bool {
        match self {
            // A 4xx answer, a refused or broken connection, a timeout; not
            // a 5xx answer, a malformed exchange or a TLS failure (config).
            Self::Smtp(e) => !(e.is_permanent() || e.is_client() || e.is_response() || e.is_tls()),
            Self::Timeout => true,
            Self::Outbox(e) => migrations::db::is_unavailable(e),
            Self::Recipient | Self::Build(_) => false,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(DatabaseConnection),
}

/// Sends mail through the configured backend; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    backend: Backend,
    /// Deadline of a whole SMTP send: lettre's own timeout bounds each
    /// command but not every wait (not the server's greeting).
    timeout: Duration,
}

/// `MAIL_FROM`, parsed (`Name <addr@host>` or `addr@host`).
pub fn parse_from(raw: &str) -> anyhow::Result<Mailbox> {
    raw.parse::<Mailbox>().map_err(|e| {
        anyhow::anyhow!(
            "MAIL_FROM is not a mailbox (e.g. `Portcullis <no-reply@example.com>`): {e}"
        )
    })
}

/// `SMTP_URL` when set and not blank.
pub fn smtp_url(settings: &Settings) -> Option<&str> {
    settings
        .smtp_url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
}

/// The SMTP transport of an `SMTP_URL` (`smtp://host:25`,
/// `smtp://user:pass@host:587?tls=required`, `smtps://host`), with
/// [`SMTP_TIMEOUT`] on every command. Builds without connecting.
pub fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    // lettre's message names the part of the URL that is wrong, never the
    // password.
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| {
        anyhow::anyhow!("SMTP_URL is not a usable SMTP URL (smtp://…, smtps://…): {e}")
    })?;
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

impl Mailer {
    /// SMTP when `SMTP_URL` is set, else the outbox in `db`.
    pub fn new(settings: &Settings, db: DatabaseConnection) -> anyhow::Result<Self> {
        let from = parse_from(&settings.mail_from)?;
        let backend = match smtp_url(settings) {
            Some(url) => Backend::Smtp(smtp_transport(url)?),
            None => Backend::Outbox(db),
        };
        Ok(Self {
            from,
            backend,
            timeout: SMTP_TIMEOUT,
        })
    }

    /// The dev outbox in `db`.
    pub fn outbox(db: DatabaseConnection, from: Mailbox) -> Self {
        Self {
            from,
            backend: Backend::Outbox(db),
            timeout: SMTP_TIMEOUT,
        }
    }

    /// `smtp` or `outbox`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Smtp(_) => "smtp",
            Backend::Outbox(_) => "outbox",
        }
    }

    /// Sends `mail`; `now` (Unix seconds) dates an outbox row.
    pub async fn send(&self, mail: &Mail, now: i64) -> Result<(), MailError> {
        let backend = self.backend();
        let result = self.deliver(mail, now).await;
        match &result {
            Ok(()) => tracing::info!(recipient = %mail.to, backend, "mail sent"),
            Err(e) => tracing::warn!(recipient = %mail.to, backend, error = %e, "mail not sent"),
        }
        result
    }

    async fn deliver(&self, mail: &Mail, now: i64) -> Result<(), MailError> {
        // Checked for both backends, so that the outbox holds only what SMTP
        // would have taken.
        let to: Mailbox = mail.to.parse().map_err(|_| MailError::Recipient)?;
        match &self.backend {
            Backend::Outbox(db) => {
                outbox::insert(db, to.email.as_ref(), &mail.subject, &mail.body, now).await?;
                Ok(())
            }
            Backend::Smtp(transport) => {
                let message = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.body.clone())?;
                tokio::time::timeout(self.timeout, transport.send(message))
                    .await
                    .map_err(|_| MailError::Timeout)??;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrations::test_support::TestDb;

    fn mail(to: &str) -> Mail {
        Mail {
            to: to.into(),
            subject: "Hello".into(),
            body: "Line one\nhttps://example.test/x?token=abc".into(),
        }
    }

    #[test]
    fn parse_from_accepts_default_and_refuses_garbage() {
        assert!(parse_from(DEFAULT_FROM).is_ok());
        assert!(parse_from("no-reply@example.com").is_ok());
        assert!(parse_from("not a mailbox").is_err());
        assert!(parse_from("").is_err());
    }

    #[test]
    fn smtp_transport_accepts_smtp_urls_and_refuses_others() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:secret@mail.example.com:587?tls=required",
            "smtps://mail.example.com",
        ] {
            assert!(smtp_transport(url).is_ok(), "{url}");
        }
        for url in ["http://mail.example.com", "smtp://", "mail.example.com", ""] {
            let error = smtp_transport(url).err().map(|e| e.to_string());
            assert!(error.is_some(), "{url}");
        }
        let error = smtp_transport("ftp://user:hunter2@mail.example.com")
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn mailer_uses_outbox_without_smtp_url_and_smtp_with_it() {
        // No database is touched until a send.
        let settings = Settings::default();
        let db = DatabaseConnection::Disconnected;
        assert_eq!(
            Mailer::new(&settings, db.clone()).unwrap().backend(),
            "outbox"
        );
        let blank = Settings {
            smtp_url: Some("  ".into()),
            ..Settings::default()
        };
        assert_eq!(Mailer::new(&blank, db.clone()).unwrap().backend(), "outbox");
        let smtp = Settings {
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            ..Settings::default()
        };
        assert_eq!(Mailer::new(&smtp, db).unwrap().backend(), "smtp");
    }

    #[tokio::test]
    async fn outbox_backend_stores_the_mail_and_lists_newest_first() {
        let db = TestDb::sqlite().await;
        let mailer = Mailer::outbox(db.db.clone(), parse_from(DEFAULT_FROM).unwrap());
        mailer.send(&mail("Ann@Example.com"), 100).await.unwrap();
        mailer.send(&mail("bob@example.com"), 200).await.unwrap();
        let rows = outbox::list(&db.db, None).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].recipient, "bob@example.com");
        assert_eq!(rows[0].created_at, 200);
        assert_eq!(rows[1].recipient, "Ann@Example.com");
        assert_eq!(rows[1].subject, "Hello");
        assert_eq!(rows[1].body, "Line one\nhttps://example.test/x?token=abc");
        assert_eq!(outbox::list(&db.db, Some(1)).await.unwrap().len(), 1);
        db.cleanup().await;
    }

    #[tokio::test]
    async fn outbox_backend_refuses_a_bad_recipient_and_stores_nothing() {
        let db = TestDb::sqlite().await;
        let mailer = Mailer::outbox(db.db.clone(), parse_from(DEFAULT_FROM).unwrap());
        let error = mailer.send(&mail("not an address"), 100).await.unwrap_err();
        assert!(matches!(error, MailError::Recipient));
        assert!(outbox::list(&db.db, None).await.unwrap().is_empty());
        db.cleanup().await;
    }

    /// A minimal SMTP server for one session; returns what DATA carried.
    async fn fake_smtp(listener: tokio::net::TcpListener) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 localhost ESMTP\r\n").await.unwrap();
        let mut data = String::new();
        let mut in_data = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            if in_data {
                if line == "." {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let verb = line
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let answer: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 localhost\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(answer).await.unwrap();
        }
        data
    }

    #[tokio::test]
    async fn smtp_backend_delivers_through_an_smtp_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(fake_smtp(listener));
        let settings = Settings {
            smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
            mail_from: "Portcullis <no-reply@example.com>".into(),
            ..Settings::default()
        };
        let mailer = Mailer::new(&settings, DatabaseConnection::Disconnected).unwrap();
        mailer.send(&mail("ann@example.com"), 0).await.unwrap();
        let data = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            data.contains("From: Portcullis <no-reply@example.com>"),
            "{data}"
        );
        assert!(data.contains("To: ann@example.com"), "{data}");
        assert!(data.contains("Subject: Hello"), "{data}");
        assert!(data.contains("token=abc"), "{data}");
    }

    #[tokio::test]
    async fn smtp_backend_gives_up_when_nothing_answers() {
        // A listener that accepts and never speaks: the greeting never comes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .timeout(Some(Duration::from_millis(200)))
            .build();
        let mailer = Mailer {
            from: parse_from(DEFAULT_FROM).unwrap(),
            backend: Backend::Smtp(transport),
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let error = mailer.send(&mail("ann@example.com"), 0).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
        assert!(
            crate::fault::Fault::unavailable(&error),
            "a silent server is a dependency being unavailable: {error}"
        );
    }
}
