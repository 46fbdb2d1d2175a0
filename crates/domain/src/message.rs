//! The schema of the messages that travel on the queue from the services that cause
//! an email to the mailer. Versioned by serde tag: a mailer refuses (dead-letters) a
//! kind it does not know instead of guessing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One message on the queue. `id` is assigned when the outbox row is written and is
/// what the mailer deduplicates on: a message delivered twice is sent once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub notification: Notification,
}

impl Envelope {
    pub fn new(notification: Notification) -> Self {
        Self {
            id: Uuid::now_v7(),
            created_at: Utc::now(),
            notification,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// Sent when somebody signs up with `POST /account`.
    Welcome {
        to: String,
        account_id: String,
        full_name: Option<String>,
        username: Option<String>,
        /// ISO 639-1 language to render in; the mailer falls back to English.
        language: String,
    },
    /// `POST /account`, implicit method: the account was created with a social
    /// provider's identity (`provider`, its configured name) and this address, which
    /// the provider vouched for. It has no password: a set-password link (a derived
    /// token) lets the user choose one to sign in on the platform's pages.
    SocialWelcome {
        to: String,
        account_id: String,
        full_name: Option<String>,
        provider: String,
        language: String,
    },
    /// SPEC §4: a partner created the account with `POST /api/account/`. Says who
    /// holds the data on whose behalf, gives the username and the portal link, and a
    /// set-password link (the token is derived from the message id with
    /// [`crate::secret::link_token`]); never a password.
    PartnerAccount {
        to: String,
        account_id: String,
        partner: PartnerBrand,
        full_name: Option<String>,
        username: Option<String>,
        language: String,
    },
    /// SPEC §6 `created`: welcome, and set your password (a derived link token).
    SetPassword {
        to: String,
        account_id: String,
        partner: PartnerBrand,
        full_name: Option<String>,
        language: String,
    },
    /// SPEC §6 `existing`: the address already has an account, now linked to the
    /// partner; a login link and a reset link (a derived set-password token).
    AlreadyRegistered {
        to: String,
        account_id: String,
        partner: PartnerBrand,
        full_name: Option<String>,
        language: String,
    },
    /// SPEC §6 `failed`: the partner's registration could not be completed, with the
    /// reasons (sent only where the address can receive mail).
    RegistrationFailed {
        to: String,
        partner: PartnerBrand,
        full_name: Option<String>,
        language: String,
        reasons: Vec<String>,
    },
    /// SPEC §7 password reset: someone asked "forgot your password?" for this
    /// address. A reset link (a token derived from the message id with
    /// [`crate::secret::link_token`] and [`crate::secret::RESET_PASSWORD`]).
    PasswordReset {
        to: String,
        account_id: String,
        full_name: Option<String>,
        language: String,
    },
    /// SPEC §3 `is_enabled=false`: welcome, and confirm your address. The link's
    /// token is derived from the message id with [`crate::secret::link_token`]
    /// (purpose [`crate::secret::CONFIRM_EMAIL`]); the queue never carries it.
    ConfirmEmail {
        to: String,
        account_id: String,
        full_name: Option<String>,
        username: Option<String>,
        language: String,
    },
    /// SPEC §3 `is_enabled=false`: a text message (SMS) to the phone `to` with the
    /// code that confirms it, derived from the message id with
    /// [`crate::secret::numeric_code`]; the queue never carries the code.
    ConfirmPhone {
        to: String,
        account_id: String,
        language: String,
    },
}

/// What an email shows of the partner on whose behalf it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerBrand {
    pub name: String,
    /// The partner's landing page (from the operator's configuration of the partner).
    pub landing_url: Option<String>,
    /// The partner's colour, `#rrggbb`, for links and buttons. Absent from messages
    /// queued before partners had one.
    #[serde(default)]
    pub brand_color: Option<String>,
}

impl PartnerBrand {
    /// A brand colour as emails use it: `#rrggbb` (or `#rgb`, widened), in lower case;
    /// `None` for anything else, which never reaches a `style` attribute.
    pub fn color(raw: &str) -> Option<String> {
        let hex = raw.trim().strip_prefix('#')?;
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        match hex.len() {
            6 => Some(format!("#{}", hex.to_ascii_lowercase())),
            3 => Some(hex.chars().fold(String::from("#"), |mut s, c| {
                let c = c.to_ascii_lowercase();
                s.push(c);
                s.push(c);
                s
            })),
            _ => None,
        }
    }
}

impl Notification {
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Welcome { .. } => "welcome",
            Notification::SocialWelcome { .. } => "social_welcome",
            Notification::PartnerAccount { .. } => "partner_account",
            Notification::SetPassword { .. } => "set_password",
            Notification::AlreadyRegistered { .. } => "already_registered",
            Notification::RegistrationFailed { .. } => "registration_failed",
            Notification::PasswordReset { .. } => "password_reset",
            Notification::ConfirmEmail { .. } => "confirm_email",
            Notification::ConfirmPhone { .. } => "confirm_phone",
        }
    }

    pub fn recipient(&self) -> &str {
        match self {
            Notification::Welcome { to, .. }
            | Notification::SocialWelcome { to, .. }
            | Notification::PartnerAccount { to, .. }
            | Notification::SetPassword { to, .. }
            | Notification::AlreadyRegistered { to, .. }
            | Notification::RegistrationFailed { to, .. }
            | Notification::PasswordReset { to, .. } => to,
            Notification::ConfirmEmail { to, .. } | Notification::ConfirmPhone { to, .. } => to,
        }
    }

    /// Whether the message goes out as a text message (SMS) to a phone number
    /// rather than as an email.
    pub fn is_sms(&self) -> bool {
        matches!(self, Notification::ConfirmPhone { .. })
    }

    /// Whether the email carries a set-password link, whose token the writer stores
    /// (as a digest) and the mailer derives from the message id.
    pub fn has_set_password_link(&self) -> bool {
        matches!(
            self,
            Notification::PartnerAccount { .. }
                | Notification::SocialWelcome { .. }
                | Notification::SetPassword { .. }
                | Notification::AlreadyRegistered { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::PartnerBrand;

    #[test]
    fn brand_colours_are_hex_or_nothing() {
        assert_eq!(PartnerBrand::color("#0A7D3B").as_deref(), Some("#0a7d3b"));
        assert_eq!(PartnerBrand::color(" #abc ").as_deref(), Some("#aabbcc"));
        for bad in [
            "0a7d3b",
            "#0a7d3",
            "#0a7d3bff",
            "#ggg",
            "red",
            "#fff;x:y",
            "",
        ] {
            assert_eq!(PartnerBrand::color(bad), None, "{bad}");
        }
    }
}
