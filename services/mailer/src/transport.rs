//! Where rendered emails go: an SMTP relay through lettre (production), or the local
//! inbox of the embedded default, which a person reads at `/dev/inbox`.

use crate::render::RenderedEmail;
use admit_runtime::settings::{SmtpSettings, SmtpTls};
use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use rustls::pki_types::ServerName;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the relay said 4xx, or could not be reached.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed: the relay said 5xx, or the message cannot be built.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Not tried: no session was free before the message's start-by time (see
    /// [`Transport::send_by`]). Nothing reached the relay; no attempt is spent.
    #[error("not started in time")]
    Late,
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, email: &RenderedEmail) -> Result<(), SendError>;

    /// Sends, unless the send cannot begin by `start_by` (then [`SendError::Late`]).
    /// The worker's claim of a message lasts a lease; a send that begins late in it
    /// may still be going when the lease ends and another batch claims and sends the
    /// message too. Only a transport that can wait (for a session) needs more than
    /// this default.
    async fn send_by(
        &self,
        email: &RenderedEmail,
        start_by: tokio::time::Instant,
    ) -> Result<(), SendError> {
        if tokio::time::Instant::now() > start_by {
            return Err(SendError::Late);
        }
        self.send(email).await
    }
}

/// An SMTP relay client with a pool of open connections.
///
/// lettre speaks SMTP; the sockets are made here, for two reasons:
/// - `TCP_NODELAY`. lettre writes a message's body and then its terminating
///   `\r\n.\r\n` in a second small write; with Nagle's algorithm on, that write
///   waits for the relay to acknowledge the body, and relays delay their ACK (40 ms
///   on Linux) while they wait for the rest of the DATA. Every message then costs
///   40 ms of idle waiting on its connection.
/// - A connection goes back to the pool after every message it delivers, whatever
///   the number of senders waiting, and at most `pool_size` are ever open at once, so
///   one connection carries many messages.
pub struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    /// For implicit TLS (SMTPS): the platform's roots (webpki-roots), as lettre's.
    tls_connector: Option<TlsConnector>,
    from: Mailbox,
    /// One permit per connection that may be open.
    slots: Semaphore,
    idle: Mutex<Vec<IdleConnection>>,
    /// A session idle this long is asked whether it is still open before it is used.
    check_after: Duration,
}

struct IdleConnection {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// A connection idle longer than this is closed rather than used: relays drop idle
/// sessions (RFC 5321 section 4.5.3.2.7 asks servers to wait at least 5 minutes).
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Under load a session goes from message to message within milliseconds and is not
/// checked; one idle longer than this costs a NOOP round trip before it is used.
const CHECK_AFTER: Duration = Duration::from_secs(1);

impl Smtp {
    pub fn new(s: &SmtpSettings, from: &str) -> anyhow::Result<Self> {
        let tls_connector = match s.tls {
            SmtpTls::Tls => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Some(TlsConnector::from(Arc::new(config)))
            }
            SmtpTls::None | SmtpTls::Starttls => None,
        };
        let credentials = match (&s.username, &s.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            _ => None,
        };
        Ok(Self {
            host: s.host.clone(),
            port: s.port,
            tls: s.tls,
            credentials,
            timeout: Duration::from_secs(s.timeout_secs),
            hello: ClientId::default(),
            tls_connector,
            from: from.parse()?,
            slots: Semaphore::new(s.pool_size.max(1) as usize),
            idle: Mutex::new(Vec::new()),
            check_after: CHECK_AFTER,
        })
    }

    /// A new session: TCP (no Nagle), TLS as configured, EHLO, AUTH. Whatever goes
    /// wrong here is about the relay or its settings, not about a message: transient,
    /// so that a rotated password or a relay's bad day never dead-letters the mail.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let transient =
            |what: &str, e: &dyn std::fmt::Display| SendError::Transient(format!("{what}: {e}"));
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| transient("connecting to the SMTP relay", &e))?;
        tcp.set_nodelay(true)
            .map_err(|e| transient("TCP_NODELAY", &e))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.tls_connector {
            Some(connector) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| transient("SMTP host name", &e))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| transient("TLS with the relay", &e))?;
                Box::new(Tls(tls))
            }
            None => Box::new(tcp),
        };
        let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| transient("greeting the relay", &e))?;
        if self.tls == SmtpTls::Starttls {
            if !connection.can_starttls() {
                connection.abort().await;
                return Err(SendError::Transient(
                    "the SMTP relay does not offer STARTTLS (mailer.smtp.tls is starttls)".into(),
                ));
            }
            let parameters = TlsParameters::new(self.host.clone())
                .map_err(|e| transient("TLS parameters", &e))?;
            connection
                .starttls(parameters, &self.hello)
                .await
                .map_err(|e| transient("STARTTLS", &e))?;
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| transient("authenticating with the relay", &e))?;
        }
        Ok(connection)
    }

    /// An open session, if one is idle and still answers: one that sat idle for a
    /// while is asked first (NOOP), since relays end idle sessions. A message is never
    /// sent twice on two sessions: once its transaction has started, a broken session
    /// fails the message, which the worker retries later.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let c = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                // The most recently used first: the least likely to have been dropped.
                idle.pop()?
            };
            let idle_for = c.since.elapsed();
            let mut connection = c.connection;
            // Dropped otherwise; the relay takes the closed socket as the session's end.
            if idle_for >= IDLE_LIMIT || connection.has_broken() {
                continue;
            }
            if idle_for < self.check_after || connection.test_connected().await {
                return Some(connection);
            }
        }
    }

    fn put_back(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(IdleConnection {
            connection,
            since: Instant::now(),
        });
    }

    /// One message: a free slot, an open session, the transaction. The session is
    /// given back only if the message went through.
    async fn send_once(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
        start_by: Option<tokio::time::Instant>,
    ) -> Result<(), SendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| SendError::Transient(e.to_string()))?;
        if start_by.is_some_and(|t| tokio::time::Instant::now() > t) {
            return Err(SendError::Late);
        }
        let mut connection = match self.reuse().await {
            Some(c) => c,
            None => self.connect().await?,
        };
        match connection.send(envelope, bytes).await {
            Ok(_) => {
                self.put_back(connection);
                Ok(())
            }
            // lettre has already ended the session on any error.
            Err(e) => Err(classify(e)),
        }
    }
}

/// An SMTP answer of 5xx will never change, nor will a message the relay cannot take
/// (lettre's client errors: non-ASCII without SMTPUTF8 or 8BITMIME); anything else
/// (4xx, the network) may.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() || e.is_client() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Transient(e.to_string())
    }
}

/// An implicit-TLS session, as lettre's stream type.
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
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
    /// Sends within `timeout_secs` all told (the wait for a session included), so a
    /// send always ends well before the lease of its message runs out and another
    /// sender may take it.
    async fn send(&self, email: &RenderedEmail) -> Result<(), SendError> {
        self.send_before(email, None).await
    }

    /// The start-by time is checked once a session is free: the wait for one of
    /// `pool_size` sessions is where a send spends its lease when many are in hand.
    async fn send_by(
        &self,
        email: &RenderedEmail,
        start_by: tokio::time::Instant,
    ) -> Result<(), SendError> {
        self.send_before(email, Some(start_by)).await
    }
}

impl Smtp {
    async fn send_before(
        &self,
        email: &RenderedEmail,
        start_by: Option<tokio::time::Instant>,
    ) -> Result<(), SendError> {
        let message = build_message(&self.from, email)?;
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        tokio::time::timeout(self.timeout, self.send_once(&envelope, &bytes, start_by))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Transient(
                    "the SMTP relay did not take the message in time".into(),
                ))
            })
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
    /// `email`, or `sms` for a text message (whose `to` is a phone number).
    #[serde(default = "email_channel")]
    pub channel: String,
}

fn email_channel() -> String {
    "email".into()
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

impl Inbox {
    /// Keeps one message: written whole, then renamed, so a reader never sees half a
    /// message.
    pub(crate) async fn keep(&self, stored: StoredEmail) -> Result<(), SendError> {
        let bytes =
            serde_json::to_vec_pretty(&stored).map_err(|e| SendError::Permanent(e.to_string()))?;
        let name = format!(
            "{}-{}.json",
            stored.created_at.format("%Y%m%dT%H%M%S%.6f"),
            stored.id
        );
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        tokio::task::spawn_blocking(move || {
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| SendError::Transient(e.to_string()))?
        .map_err(|e| SendError::Transient(e.to_string()))
    }
}

#[async_trait]
impl Transport for Inbox {
    async fn send(&self, email: &RenderedEmail) -> Result<(), SendError> {
        self.keep(StoredEmail {
            id: email.message_id.clone(),
            to: email.to.clone(),
            subject: email.subject.clone(),
            text: email.text.clone(),
            html: email.html.clone(),
            created_at: chrono::Utc::now(),
            channel: email_channel(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! The client against a small SMTP relay on 127.0.0.1 that this test controls:
    //! it counts sessions and messages, and can drop a session or refuse a recipient,
    //! which a capture server cannot be told to do.
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    #[derive(Default)]
    struct Relay {
        sessions: AtomicUsize,
        messages: AtomicUsize,
    }

    #[derive(Clone, Copy)]
    struct Behaviour {
        /// Close the socket after each accepted message, as a relay ending an idle
        /// session does.
        drop_after_message: bool,
        offer_starttls: bool,
    }

    async fn relay(behaviour: Behaviour) -> (u16, Arc<Relay>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let relay = Arc::new(Relay::default());
        let counts = relay.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counts.sessions.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(session(socket, counts.clone(), behaviour));
            }
        });
        (port, relay)
    }

    async fn session(socket: TcpStream, relay: Arc<Relay>, behaviour: Behaviour) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read);
        let mut line = String::new();
        let _ = write.write_all(b"220 relay.test ESMTP\r\n").await;
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_ascii_uppercase();
            let answer: &[u8] = if command.starts_with("EHLO") {
                if behaviour.offer_starttls {
                    b"250-relay.test\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
                } else {
                    b"250-relay.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
                }
            } else if command.starts_with("AUTH") {
                b"535 5.7.8 authentication failed\r\n"
            } else if command.starts_with("RCPT") && command.contains("REFUSED") {
                b"550 5.1.1 no such user\r\n"
            } else if command == "DATA" {
                let _ = write.write_all(b"354 go ahead\r\n").await;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                relay.messages.fetch_add(1, Ordering::SeqCst);
                let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                if behaviour.drop_after_message {
                    return;
                }
                continue;
            } else if command == "QUIT" {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else if command == "STARTTLS" {
                b"454 TLS not available\r\n"
            } else {
                b"250 ok\r\n"
            };
            let _ = write.write_all(answer).await;
        }
    }

    fn client(port: u16, tls: SmtpTls, pool_size: u32) -> Smtp {
        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls,
            pool_size,
            timeout_secs: 10,
            ..SmtpSettings::default()
        };
        Smtp::new(&settings, "admit <no-reply@admit.test>").expect("client")
    }

    fn email(n: usize, to: &str) -> RenderedEmail {
        RenderedEmail {
            message_id: format!("m{n}"),
            to: to.into(),
            subject: format!("message {n}"),
            text: "hello".into(),
            html: "<p>hello</p>".into(),
        }
    }

    const PLAIN: Behaviour = Behaviour {
        drop_after_message: false,
        offer_starttls: false,
    };

    /// Ends each session after the message it accepted.
    const DROPS_SESSIONS: Behaviour = Behaviour {
        drop_after_message: true,
        offer_starttls: false,
    };

    #[tokio::test]
    async fn one_session_carries_many_messages_and_the_pool_bounds_the_sessions() {
        let (port, relay) = relay(PLAIN).await;
        let smtp = client(port, SmtpTls::None, 3);
        for n in 0..20 {
            smtp.send(&email(n, "a@example.com")).await.expect("send");
        }
        assert_eq!(relay.messages.load(Ordering::SeqCst), 20);
        assert_eq!(relay.sessions.load(Ordering::SeqCst), 1);

        let all = futures_util::future::join_all(
            (20..80).map(|n| smtp.send_owned(email(n, "b@example.com"))),
        )
        .await;
        assert!(all.iter().all(Result::is_ok), "{all:?}");
        assert_eq!(relay.messages.load(Ordering::SeqCst), 80);
        let sessions = relay.sessions.load(Ordering::SeqCst);
        assert!(
            (1..=3).contains(&sessions),
            "{sessions} sessions for a pool of 3"
        );
    }

    #[tokio::test]
    async fn a_session_the_relay_ended_is_replaced_without_failing_the_message() {
        let (port, relay) = relay(DROPS_SESSIONS).await;
        // Every idle session is asked first (NOOP).
        let mut smtp = client(port, SmtpTls::None, 1);
        smtp.check_after = Duration::ZERO;
        for n in 0..3 {
            smtp.send(&email(n, "a@example.com")).await.expect("send");
        }
        assert_eq!(relay.messages.load(Ordering::SeqCst), 3);
        assert_eq!(relay.sessions.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_session_that_breaks_during_a_message_fails_it_without_sending_it_again() {
        let (port, relay) = relay(DROPS_SESSIONS).await;
        // Used again at once, unchecked: the relay ended it after the first message.
        let smtp = client(port, SmtpTls::None, 1);
        smtp.send(&email(0, "a@example.com")).await.expect("send");
        match smtp.send(&email(1, "a@example.com")).await {
            Err(SendError::Transient(_)) => {}
            other => panic!("expected a transient error, got {other:?}"),
        }
        // Not sent again on a new session; the next message opens one.
        assert_eq!(relay.messages.load(Ordering::SeqCst), 1);
        assert_eq!(relay.sessions.load(Ordering::SeqCst), 1);
        smtp.send(&email(2, "a@example.com")).await.expect("send");
        assert_eq!(relay.messages.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_login_is_transient_never_a_dead_message() {
        let (port, relay) = relay(PLAIN).await;
        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: Some("admit".into()),
            password: Some("rotated".to_owned().into()),
            timeout_secs: 10,
            ..SmtpSettings::default()
        };
        let smtp = Smtp::new(&settings, "admit <no-reply@admit.test>").expect("client");
        match smtp.send(&email(0, "a@example.com")).await {
            Err(SendError::Transient(e)) => assert!(e.contains("535"), "{e}"),
            other => panic!("expected a transient error, got {other:?}"),
        }
        assert_eq!(relay.messages.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_refused_recipient_is_permanent_and_the_next_message_goes_through() {
        let (port, relay) = relay(PLAIN).await;
        let smtp = client(port, SmtpTls::None, 1);
        match smtp.send(&email(0, "refused@example.com")).await {
            Err(SendError::Permanent(e)) => assert!(e.contains("no such user"), "{e}"),
            other => panic!("expected a permanent error, got {other:?}"),
        }
        smtp.send(&email(1, "a@example.com")).await.expect("send");
        assert_eq!(relay.messages.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn starttls_required_is_never_skipped() {
        for offer_starttls in [false, true] {
            let (port, relay) = relay(Behaviour {
                drop_after_message: false,
                offer_starttls,
            })
            .await;
            let smtp = client(port, SmtpTls::Starttls, 1);
            match smtp.send(&email(0, "a@example.com")).await {
                Err(SendError::Transient(e)) => {
                    assert!(e.to_ascii_uppercase().contains("TLS"), "{e}")
                }
                other => panic!("expected a transient error, got {other:?}"),
            }
            assert_eq!(relay.messages.load(Ordering::SeqCst), 0);
        }
    }

    impl Smtp {
        async fn send_owned(&self, email: RenderedEmail) -> Result<(), SendError> {
            self.send(&email).await
        }
    }
}
