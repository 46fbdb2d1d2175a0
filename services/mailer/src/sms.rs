//! Where text messages go: an HTTP gateway (production), or the local inbox of the
//! embedded default, beside the mail.
//!
//! The gateway is asked with `POST mailer.sms.url` and a JSON body `{"to": "+…",
//! "text": "…"}`, with `Authorization: Bearer mailer.sms.token` when one is set. Its
//! answer decides as SMTP's does: 2xx sent; 4xx will never succeed (permanent: the
//! message is dead-lettered), except 408 and 429, which ask to come back later; 5xx,
//! a timeout or no connection are transient (retried with backoff). Errors name the
//! status, never the text, which carries the code.

use crate::render::RenderedSms;
use crate::transport::{Inbox, SendError, StoredEmail};
use admit_runtime::settings::SmsSettings;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

#[async_trait]
pub trait SmsTransport: Send + Sync {
    async fn send_sms(&self, sms: &RenderedSms) -> Result<(), SendError>;
}

/// The configured SMS gateway, or none.
pub fn from_settings(s: &SmsSettings) -> anyhow::Result<std::sync::Arc<dyn SmsTransport>> {
    Ok(match &s.url {
        Some(url) if !url.trim().is_empty() => std::sync::Arc::new(Gateway::new(
            url.trim(),
            s.token.clone(),
            Duration::from_secs(if s.timeout_secs == 0 {
                10
            } else {
                s.timeout_secs
            }),
        )?),
        _ => std::sync::Arc::new(NoGateway),
    })
}

/// An HTTP SMS gateway.
pub struct Gateway {
    url: reqwest::Url,
    token: Option<SecretString>,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(url: &str, token: Option<SecretString>, timeout: Duration) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("mailer.sms.url is not a URL: {e}"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "mailer.sms.url must be an http or https URL"
        );
        Ok(Self {
            url,
            token,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }
}

#[async_trait]
impl SmsTransport for Gateway {
    async fn send_sms(&self, sms: &RenderedSms) -> Result<(), SendError> {
        let mut req = self
            .http
            .post(self.url.clone())
            .header("Idempotency-Key", &sms.message_id)
            .json(&serde_json::json!({"to": sms.to, "text": sms.text}));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose_secret());
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(SendError::Transient(
                    "the SMS gateway did not answer in time".into(),
                ))
            }
            // Without the URL: a token in a query string stays out of the logs.
            Err(e) => {
                return Err(SendError::Transient(format!(
                    "cannot reach the SMS gateway: {}",
                    e.without_url()
                )))
            }
        };
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(SendError::Permanent(format!(
                "the SMS gateway refused the message: {status}"
            )))
        } else {
            Err(SendError::Transient(format!(
                "the SMS gateway answered {status}"
            )))
        }
    }
}

/// No gateway configured: a text message cannot be sent, and waiting will not change
/// that, so it is dead-lettered (and visible as `dead` in mail_messages).
pub struct NoGateway;

#[async_trait]
impl SmsTransport for NoGateway {
    async fn send_sms(&self, _sms: &RenderedSms) -> Result<(), SendError> {
        Err(SendError::Permanent(
            "no SMS gateway is configured (mailer.sms.url)".into(),
        ))
    }
}

/// The embedded default keeps text messages in its inbox, beside the mail
/// (`channel: "sms"`, the phone number as `to`).
#[async_trait]
impl SmsTransport for Inbox {
    async fn send_sms(&self, sms: &RenderedSms) -> Result<(), SendError> {
        self.keep(StoredEmail {
            id: sms.message_id.clone(),
            to: sms.to.clone(),
            subject: "Text message".into(),
            text: sms.text.clone(),
            html: String::new(),
            created_at: chrono::Utc::now(),
            channel: "sms".into(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! The gateway client against a real HTTP server on 127.0.0.1 that answers what
    //! the test tells it and records what it received.
    use super::*;
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        bodies: Mutex<Vec<(Option<String>, serde_json::Value)>>,
    }

    /// A gateway that answers `status` (after `delay`) to every request.
    async fn gateway(
        status: u16,
        delay: Duration,
    ) -> (String, Arc<Seen>, actix_web::dev::ServerHandle) {
        let seen = Arc::new(Seen::default());
        let data = web::Data::from(seen.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/sms",
                web::post().to(
                    move |req: HttpRequest,
                          body: web::Json<serde_json::Value>,
                          seen: web::Data<Seen>| async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        seen.bodies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((auth, body.into_inner()));
                        tokio::time::sleep(delay).await;
                        HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).expect("status"),
                        )
                        .finish()
                    },
                ),
            )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        (format!("http://127.0.0.1:{port}/sms"), seen, handle)
    }

    fn sms() -> RenderedSms {
        RenderedSms {
            message_id: "m1".into(),
            to: "+33612345678".into(),
            text: "123456 is your admit code.".into(),
        }
    }

    #[tokio::test]
    async fn a_2xx_is_sent_with_the_body_and_the_token() {
        let (url, seen, handle) = gateway(202, Duration::ZERO).await;
        let g = Gateway::new(
            &url,
            Some("gw-token".to_owned().into()),
            Duration::from_secs(5),
        )
        .expect("gateway");
        g.send_sms(&sms()).await.expect("sent");
        let got = seen.bodies.lock().expect("lock").clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.as_deref(), Some("Bearer gw-token"));
        assert_eq!(
            got[0].1,
            serde_json::json!({"to": "+33612345678", "text": "123456 is your admit code."})
        );
        handle.stop(false).await;
    }

    #[tokio::test]
    async fn a_4xx_is_permanent_a_5xx_and_a_timeout_transient_and_no_error_carries_the_text() {
        for (status, permanent) in [
            (400, true),
            (404, true),
            (429, false),
            (500, false),
            (503, false),
        ] {
            let (url, _, handle) = gateway(status, Duration::ZERO).await;
            let g = Gateway::new(&url, None, Duration::from_secs(5)).expect("gateway");
            let e = g.send_sms(&sms()).await.expect_err("refused");
            match (&e, permanent) {
                (SendError::Permanent(m), true) | (SendError::Transient(m), false) => {
                    assert!(m.contains(&status.to_string()), "{m}");
                    assert!(!m.contains("123456"), "{m}");
                }
                _ => panic!("{status}: {e:?}"),
            }
            handle.stop(false).await;
        }
        let (url, _, handle) = gateway(200, Duration::from_secs(3)).await;
        let g = Gateway::new(&url, None, Duration::from_millis(300)).expect("gateway");
        assert!(matches!(
            g.send_sms(&sms()).await,
            Err(SendError::Transient(_))
        ));
        handle.stop(false).await;
        // Nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let g = Gateway::new(
            &format!("http://127.0.0.1:{port}/sms"),
            None,
            Duration::from_secs(2),
        )
        .expect("gateway");
        assert!(matches!(
            g.send_sms(&sms()).await,
            Err(SendError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn without_a_gateway_a_text_is_dead_and_the_inbox_keeps_it() {
        assert!(matches!(
            NoGateway.send_sms(&sms()).await,
            Err(SendError::Permanent(_))
        ));
        let dir = tempfile::tempdir().expect("dir");
        let inbox = Inbox::new(dir.path()).expect("inbox");
        inbox.send_sms(&sms()).await.expect("kept");
        let all = inbox.list().expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].channel, "sms");
        assert_eq!(all[0].to, "+33612345678");
        assert!(all[0].text.contains("123456"));
    }
}
