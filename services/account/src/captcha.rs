//! The CAPTCHA a public application's sign-up needs in the staging and production
//! stages (SPEC.md §3): the `recaptcha` object of document 003, verified at a
//! siteverify endpoint. reCAPTCHA, hCaptcha and Cloudflare Turnstile speak the same
//! protocol: a form POST of `secret`, `response` and `remoteip`, answered with
//! `{"success": bool, "score"?: number, "error-codes"?: [...]}`.
//!
//! Document 003's fields map onto it like this: `response` is the token the widget
//! gave the user and is what siteverify checks; `challenge` (reCAPTCHA v1's challenge
//! id) and `private_key` are accepted for the document's shape but not sent: the
//! secret is the platform's own, from configuration, because a public application
//! cannot keep one.
//!
//! Policy: a failed check is 403 `IllegalAccessException`; a siteverify endpoint that
//! is down, slow or answers nonsense is 503, within the configured timeout: never a
//! pass, never a 500.

use crate::error::ApiError;
use admit_runtime::settings::CaptchaSettings;
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// Document 003's `recaptcha` object.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub response: String,
}

pub struct Verifier {
    http: reqwest::Client,
    settings: CaptchaSettings,
}

#[derive(Deserialize)]
struct Answer {
    success: bool,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

impl Verifier {
    pub fn new(settings: &CaptchaSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
                .connect_timeout(Duration::from_millis(settings.timeout_ms.max(1)))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            settings: settings.clone(),
        })
    }

    /// Checks `submitted` for the public client `client_id`.
    pub async fn verify(
        &self,
        client_id: &str,
        submitted: &Submitted,
        remote_ip: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        let (url, secret, min_score) = self.settings.for_client(client_id);
        if secret.expose_secret().is_empty() {
            tracing::error!(
                client_id,
                "account.captcha.secret is not set: public sign-ups cannot be verified"
            );
            return Err(ApiError::Unavailable(
                "CAPTCHA verification is not configured".into(),
            ));
        }
        let mut form = vec![
            ("secret", secret.expose_secret().to_owned()),
            ("response", submitted.response.clone()),
        ];
        if let Some(ip) = remote_ip {
            form.push(("remoteip", ip.to_string()));
        }
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, client_id, "siteverify did not answer");
            ApiError::Unavailable("the CAPTCHA could not be verified at the moment; retry".into())
        };
        let res = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !res.status().is_success() {
            return Err(unavailable(&format!(
                "siteverify answered {}",
                res.status()
            )));
        }
        let answer: Answer = res.json().await.map_err(|e| unavailable(&e))?;
        if !answer.success {
            tracing::info!(client_id, codes = ?answer.error_codes, "CAPTCHA failed");
            return Err(ApiError::IllegalAccess(
                "the reCAPTCHA challenge/response failed".into(),
            ));
        }
        if let Some(score) = answer.score {
            if score < min_score {
                tracing::info!(client_id, score, min_score, "CAPTCHA score too low");
                return Err(ApiError::IllegalAccess(
                    "the reCAPTCHA challenge/response failed".into(),
                ));
            }
        }
        Ok(())
    }
}
