//! Where rendered emails go: an SMTP relay through lettre (production), or the local
//! inbox of the embedded default, which a person reads at `/dev/inbox`.

use crate::render::RenderedEmail;
use admit_runtime::settings::{SmtpSettings, SmtpTls};
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the relay said 4xx, or could not be reached.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed: the relay said 5xx, or the message cannot be built.
    #[error("permanent: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, email: &RenderedEmail) -> Result<(), SendError>;
}

pub struct Smtp {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    pub fn new(s: &SmtpSettings, from: &str) -> anyhow::Result<Self> {
        let mut builder = match s.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
        }
        .port(s.port)
        .timeout(Some(Duration::from_secs(s.timeout_secs)))
        .pool_config(PoolConfig::new().max_size(s.pool_size));
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            inner: builder.build(),
            from: from.parse()?,
        })
    }
}

/// Builds the MIME message: text and HTML alternatives, and a Message-ID derived from
/// the queue message id, so that a copy sent twice is recognisable as one.
pub fn build_message(from: &Mailbox, email: &RenderedEmail) -> Result<Message, SendError> {
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|e| SendError::Permanent(format!("bad recipient: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}@admit>", email.message_id)))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(email.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(email.html.clone()),
                ),
        )
        .map_err(|e| SendError::Permanent(format!("cannot build message: {e}")))
}

#[async_trait]
impl Transport for Smtp {
    async fn send(&self, email: &RenderedEmail) -> Result<(), SendError> {
        let message = build_message(&self.from, email)?;
        match self.inner.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}

/// An email as the local inbox keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEmail {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The embedded default's mail: one JSON file per message in a folder.
pub struct Inbox {
    dir: PathBuf,
}

impl Inbox {
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every message, newest first.
    pub fn list(&self) -> std::io::Result<Vec<StoredEmail>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.reverse();
        let mut out = Vec::with_capacity(names.len());
        for p in names {
            let bytes = std::fs::read(&p)?;
            if let Ok(m) = serde_json::from_slice::<StoredEmail>(&bytes) {
                out.push(m);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Transport for Inbox {
    async fn send(&self, email: &RenderedEmail) -> Result<(), SendError> {
        let stored = StoredEmail {
            id: email.message_id.clone(),
            to: email.to.clone(),
            subject: email.subject.clone(),
            text: email.text.clone(),
            html: email.html.clone(),
            created_at: chrono::Utc::now(),
        };
        let bytes =
            serde_json::to_vec_pretty(&stored).map_err(|e| SendError::Permanent(e.to_string()))?;
        let name = format!(
            "{}-{}.json",
            stored.created_at.format("%Y%m%dT%H%M%S%.6f"),
            stored.id
        );
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        // Written whole, then renamed: a reader never sees half a message.
        tokio::task::spawn_blocking(move || {
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| SendError::Transient(e.to_string()))?
        .map_err(|e| SendError::Transient(e.to_string()))
    }
}
