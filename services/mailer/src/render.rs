//! Rendering: every email has a subject, a text part and an HTML part, from the
//! templates under `templates/<language>/<name>/`, in the recipient's language with
//! English as the fallback. HTML templates are auto-escaped.
//!
//! Links that act on an account (set your password) carry a token the renderer
//! derives from the message id with the platform's link key: the queue and the
//! database never hold a usable link.

use admit_domain::locale::EMAIL_LANGUAGES;
use admit_domain::secret::{
    link_token, numeric_code, CONFIRM_EMAIL, CONFIRM_PHONE, RESET_PASSWORD, SET_PASSWORD,
};
use admit_domain::{Envelope, Notification, PartnerBrand};
use minijinja::{context, Environment, UndefinedBehavior, Value};
use secrecy::{ExposeSecret, SecretSlice};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// How long a set-password link works, as the emails state it (SPEC §6: 7 days by
/// default; the account service enforces it).
pub const SET_PASSWORD_LINK_DAYS: u32 = 7;

/// How long a password-reset link works, as the emails state it (SPEC §7: an hour by
/// default, `account.reset_link_ttl_secs`; the account service enforces it).
pub const RESET_LINK_MINUTES: u32 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A text message (SMS) to a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedSms {
    pub message_id: String,
    /// E.164.
    pub to: String,
    pub text: String,
}

/// How long the code of a text message works, as the message states it (the account
/// service's `account.confirm_code_ttl_secs`, 15 minutes by default).
pub const CONFIRM_CODE_MINUTES: u32 = 15;

#[derive(Debug, thiserror::Error)]
#[error("cannot render {kind}: {message}")]
pub struct RenderError {
    kind: String,
    message: String,
}

impl RenderError {
    fn new(kind: &str, e: impl std::fmt::Display) -> Self {
        Self {
            kind: kind.to_owned(),
            message: e.to_string(),
        }
    }
}

pub struct Renderer {
    env: Environment<'static>,
    platform: String,
    base_url: String,
    link_key: SecretSlice<u8>,
    link_days: u32,
    reset_minutes: u32,
    confirm_days: u32,
    code_minutes: u32,
}

impl Renderer {
    pub fn new(platform: &str, base_url: &str, link_key: Vec<u8>) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        // A misspelt variable fails the render (and the tests) instead of vanishing
        // from the email.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in embedded::TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| RenderError::new(name, e))?;
        }
        Ok(Self {
            env,
            platform: platform.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            link_key: SecretSlice::from(link_key),
            link_days: SET_PASSWORD_LINK_DAYS,
            reset_minutes: RESET_LINK_MINUTES,
            confirm_days: SET_PASSWORD_LINK_DAYS,
            code_minutes: CONFIRM_CODE_MINUTES,
        })
    }

    /// How long confirmation links and codes work, as the messages state it
    /// (`account.confirm_link_ttl_secs` in whole days and `account.confirm_code_ttl_secs`
    /// in whole minutes, at least one).
    pub fn with_confirm_ttl_secs(mut self, link_secs: i64, code_secs: i64) -> Self {
        self.confirm_days =
            u32::try_from((link_secs / 86_400).max(1)).unwrap_or(SET_PASSWORD_LINK_DAYS);
        self.code_minutes = u32::try_from((code_secs / 60).max(1)).unwrap_or(CONFIRM_CODE_MINUTES);
        self
    }

    /// How long set-password links work, as the emails state it (the account
    /// service's `account.password_link_ttl_secs`, in whole days, at least one).
    pub fn with_link_ttl_secs(mut self, secs: i64) -> Self {
        self.link_days = u32::try_from((secs / 86_400).max(1)).unwrap_or(SET_PASSWORD_LINK_DAYS);
        self
    }

    /// How long reset links work, as the emails state it (the account service's
    /// `account.reset_link_ttl_secs`, in whole minutes, at least one).
    pub fn with_reset_ttl_secs(mut self, secs: i64) -> Self {
        self.reset_minutes = u32::try_from((secs / 60).max(1)).unwrap_or(RESET_LINK_MINUTES);
        self
    }

    fn language<'a>(&self, wanted: &'a str, name: &str) -> &'a str {
        let wanted = wanted.trim();
        let known = EMAIL_LANGUAGES
            .iter()
            .any(|l| l.eq_ignore_ascii_case(wanted));
        if known
            && self
                .env
                .get_template(&format!(
                    "{}/{name}/subject.txt",
                    wanted.to_ascii_lowercase()
                ))
                .is_ok()
        {
            wanted
        } else {
            "en"
        }
    }

    /// The set-password link of the message `message_id`.
    fn set_password_url(&self, message_id: &str) -> String {
        let token = link_token(self.link_key.expose_secret(), SET_PASSWORD, message_id);
        format!("{}/password/set?token={token}", self.base_url)
    }

    /// The password-reset link of the message `message_id`.
    fn reset_url(&self, message_id: &str) -> String {
        let token = link_token(self.link_key.expose_secret(), RESET_PASSWORD, message_id);
        format!("{}/password/reset?token={token}", self.base_url)
    }

    /// The link of the "confirm your address" email `message_id`.
    fn confirm_url(&self, message_id: &str) -> String {
        let token = link_token(self.link_key.expose_secret(), CONFIRM_EMAIL, message_id);
        format!("{}/confirm?token={token}", self.base_url)
    }

    /// A text message: `templates/<language>/<kind>/sms.txt`, English as the fallback.
    pub fn render_sms(&self, envelope: &Envelope) -> Result<RenderedSms, RenderError> {
        let n = &envelope.notification;
        let name = n.kind();
        let Notification::ConfirmPhone { to, language, .. } = n else {
            return Err(RenderError::new(name, "not a text message"));
        };
        let wanted = language.trim().to_ascii_lowercase();
        let lang = if EMAIL_LANGUAGES.iter().any(|l| *l == wanted)
            && self
                .env
                .get_template(&format!("{wanted}/{name}/sms.txt"))
                .is_ok()
        {
            wanted
        } else {
            "en".to_owned()
        };
        let code = numeric_code(
            self.link_key.expose_secret(),
            CONFIRM_PHONE,
            &envelope.id.to_string(),
        );
        let text = self
            .env
            .get_template(&format!("{lang}/{name}/sms.txt"))
            .and_then(|t| {
                t.render(context! {
                    platform => &self.platform,
                    code => code,
                    minutes => self.code_minutes,
                    confirm_url => format!("{}/confirm/phone", self.base_url),
                })
            })
            .map_err(|e| RenderError::new(name, e))?;
        Ok(RenderedSms {
            message_id: envelope.id.to_string(),
            to: to.clone(),
            text: text.trim().to_owned(),
        })
    }

    pub fn render(&self, envelope: &Envelope) -> Result<RenderedEmail, RenderError> {
        let n = &envelope.notification;
        // The templates of a kind live in the directory named after it.
        let name = n.kind();
        let (lang, ctx) = match n {
            Notification::Welcome {
                full_name,
                username,
                language,
                ..
            } => (
                language,
                context! { name => full_name, username => username, accent => DEFAULT_ACCENT },
            ),
            Notification::SocialWelcome {
                full_name,
                provider,
                language,
                ..
            } => (
                language,
                context! { name => full_name, provider => provider, accent => DEFAULT_ACCENT },
            ),
            Notification::PartnerAccount {
                partner,
                full_name,
                username,
                language,
                ..
            } => (
                language,
                context! { name => full_name, username => username, ..partner_context(partner) },
            ),
            Notification::SetPassword {
                partner,
                full_name,
                language,
                ..
            }
            | Notification::AlreadyRegistered {
                partner,
                full_name,
                language,
                ..
            } => (
                language,
                context! { name => full_name, ..partner_context(partner) },
            ),
            Notification::RegistrationFailed {
                partner,
                full_name,
                language,
                reasons,
                ..
            } => (
                language,
                context! { name => full_name, reasons => reasons, ..partner_context(partner) },
            ),
            Notification::PasswordReset {
                full_name,
                language,
                ..
            } => (
                language,
                context! { name => full_name, accent => DEFAULT_ACCENT },
            ),
            Notification::ConfirmEmail {
                full_name,
                username,
                language,
                ..
            } => (
                language,
                context! { name => full_name, username => username, accent => DEFAULT_ACCENT },
            ),
            Notification::ConfirmPhone { .. } => {
                return Err(RenderError::new(name, "a text message, not an email"))
            }
        };
        let confirm = matches!(n, Notification::ConfirmEmail { .. });
        let link = if confirm {
            Some(self.confirm_url(&envelope.id.to_string()))
        } else if matches!(n, Notification::PasswordReset { .. }) {
            Some(self.reset_url(&envelope.id.to_string()))
        } else {
            n.has_set_password_link()
                .then(|| self.set_password_url(&envelope.id.to_string()))
        };
        let link_days = if confirm {
            self.confirm_days
        } else {
            self.link_days
        };
        let lang = self.language(lang, name).to_ascii_lowercase();
        let ctx = context! {
            platform => &self.platform,
            lang => &lang,
            portal_url => format!("{}/", self.base_url),
            login_url => format!("{}/login", self.base_url),
            link => link,
            link_days => link_days,
            reset_minutes => self.reset_minutes,
            ..ctx
        };
        let part = |file: &str, ctx: &Value| -> Result<String, RenderError> {
            self.env
                .get_template(&format!("{lang}/{name}/{file}"))
                .and_then(|t| t.render(ctx))
                .map_err(|e| RenderError::new(name, e))
        };
        let subject = one_line(&part("subject.txt", &ctx)?);
        let text = part("body.txt", &ctx)?;
        let html = part("body.html", &context! { subject => &subject, ..ctx })?;
        Ok(RenderedEmail {
            message_id: envelope.id.to_string(),
            to: n.recipient().to_owned(),
            subject,
            text,
            html,
        })
    }
}

/// What the templates show of the partner. A landing link is shown only if it is a
/// web address: it ends up in an `href`.
fn partner_context(partner: &PartnerBrand) -> Value {
    let landing_url = partner
        .landing_url
        .as_deref()
        .map(str::trim)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let accent = partner
        .brand_color
        .as_deref()
        .and_then(PartnerBrand::color)
        .unwrap_or_else(|| DEFAULT_ACCENT.to_owned());
    context! { partner_name => &partner.name, landing_url => landing_url, accent => accent }
}

/// Links and buttons of emails sent for no partner, or for one without a colour.
const DEFAULT_ACCENT: &str = "#1f4fd1";

/// A subject is one header line: control characters (a line break in a partner's
/// name) become spaces.
fn one_line(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const BASE: &str = "https://accounts.example.com";

    fn renderer() -> Renderer {
        // A trailing slash in the configured base URL must not double up in links.
        Renderer::new("admit", &format!("{BASE}/"), KEY.to_vec()).expect("templates compile")
    }

    fn brand(name: &str, landing: Option<&str>) -> PartnerBrand {
        PartnerBrand {
            name: name.into(),
            landing_url: landing.map(str::to_owned),
            brand_color: None,
        }
    }

    fn welcome(lang: &str, name: Option<&str>) -> Envelope {
        Envelope::new(Notification::Welcome {
            to: "doc@example.com".into(),
            account_id: "a1".into(),
            full_name: name.map(str::to_owned),
            username: Some("doctest".into()),
            language: lang.into(),
        })
    }

    /// One message of every kind, for `partner`, in `lang`.
    fn every_kind(lang: &str, partner: &PartnerBrand) -> Vec<Envelope> {
        let to = "doc@example.com".to_owned();
        let full_name = Some("Doc Test".to_owned());
        let language = lang.to_owned();
        vec![
            welcome(lang, Some("Doc Test")),
            Envelope::new(Notification::PartnerAccount {
                to: to.clone(),
                account_id: "a1".into(),
                partner: partner.clone(),
                full_name: full_name.clone(),
                username: Some("doctest".into()),
                language: language.clone(),
            }),
            Envelope::new(Notification::SetPassword {
                to: to.clone(),
                account_id: "a1".into(),
                partner: partner.clone(),
                full_name: full_name.clone(),
                language: language.clone(),
            }),
            Envelope::new(Notification::AlreadyRegistered {
                to: to.clone(),
                account_id: "a1".into(),
                partner: partner.clone(),
                full_name: full_name.clone(),
                language: language.clone(),
            }),
            Envelope::new(Notification::RegistrationFailed {
                to,
                partner: partner.clone(),
                full_name,
                language,
                reasons: vec![
                    "BikePlanCode: XYZ is not a plan of this partner".into(),
                    "Email: not a valid address".into(),
                ],
            }),
        ]
    }

    /// The HTML as a browser reads it: minijinja escapes '/' as &#x2f;.
    fn unslash(html: &str) -> String {
        html.replace("&#x2f;", "/")
    }

    /// The set-password links found in `s` (whitespace or a quote ends a link).
    fn links(s: &str) -> Vec<String> {
        s.split(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .filter(|w| w.contains("/password/set"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn renders_every_language_with_english_fallback() {
        let r = renderer();
        let en = r.render(&welcome("en", Some("Doc Test"))).expect("render");
        assert_eq!(en.subject, "Welcome to admit");
        assert!(en.text.contains("Your username is doctest"));
        let html = unslash(&en.html);
        assert!(
            html.contains("href=\"https://accounts.example.com/\""),
            "{html}"
        );
        for (lang, word) in [
            ("fr", "Bienvenue"),
            ("de", "Willkommen"),
            ("nl", "Welkom"),
            ("es", "Welcome"),
            ("", "Welcome"),
        ] {
            let m = r.render(&welcome(lang, None)).expect("render");
            assert!(m.subject.starts_with(word), "{lang}: {}", m.subject);
        }
    }

    #[test]
    fn every_kind_renders_in_every_language() {
        let r = renderer();
        let acme = brand("Acme Bikes", Some("https://acme.example/welcome"));
        // A word of each kind's subject per language, in the order of `every_kind`.
        let subjects: [(&str, [&str; 5]); 6] = [
            (
                "en",
                [
                    "Welcome to admit",
                    "Acme Bikes created an account for you on admit",
                    "Welcome to admit, set your password",
                    "You already have an account on admit",
                    "Your registration with Acme Bikes could not be completed",
                ],
            ),
            (
                "fr",
                [
                    "Bienvenue",
                    "a créé un compte",
                    "choisissez votre mot de passe",
                    "Vous avez déjà un compte",
                    "n'a pas pu aboutir",
                ],
            ),
            (
                "de",
                [
                    "Willkommen",
                    "hat ein admit-Konto für Sie angelegt",
                    "Passwort fest",
                    "Sie haben bereits ein",
                    "nicht abgeschlossen werden",
                ],
            ),
            (
                "nl",
                [
                    "Welkom",
                    "heeft een admit-account voor je aangemaakt",
                    "stel je wachtwoord in",
                    "Je hebt al een",
                    "kon niet worden voltooid",
                ],
            ),
            (
                "ES",
                [
                    "Welcome to admit",
                    "Acme Bikes created an account for you on admit",
                    "Welcome to admit, set your password",
                    "You already have an account on admit",
                    "Your registration with Acme Bikes could not be completed",
                ],
            ),
            (
                " DE ",
                [
                    "Willkommen",
                    "hat ein admit-Konto für Sie angelegt",
                    "Passwort fest",
                    "Sie haben bereits ein",
                    "nicht abgeschlossen werden",
                ],
            ),
        ];
        for (lang, words) in subjects {
            for (envelope, word) in every_kind(lang, &acme).iter().zip(words) {
                let kind = envelope.notification.kind();
                let m = r.render(envelope).expect("render");
                assert!(m.subject.contains(word), "{lang} {kind}: {}", m.subject);
                assert!(!m.subject.contains('\n'), "{lang} {kind}");
                assert!(!m.text.trim().is_empty(), "{lang} {kind}");
                assert!(!m.html.trim().is_empty(), "{lang} {kind}");
                assert_eq!(m.to, "doc@example.com");
                assert_eq!(m.message_id, envelope.id.to_string());
                // No template variable left unrendered or undefined.
                for part in [&m.subject, &m.text, &m.html] {
                    assert!(
                        !part.contains("{{") && !part.contains("{%"),
                        "{lang} {kind}"
                    );
                }
                for part in [&m.subject, &m.text] {
                    let mut words = part.split(|c: char| !c.is_alphanumeric());
                    assert!(!words.any(|w| w == "none"), "{lang} {kind}: {part}");
                }
                assert!(m.text.contains("Doc Test"), "{lang} {kind}");
                assert!(m.html.contains("Doc Test"), "{lang} {kind}");
                let html = unslash(&m.html);
                let expected_lang = lang.trim().to_ascii_lowercase();
                let expected_lang = if expected_lang == "es" {
                    "en"
                } else {
                    expected_lang.as_str()
                };
                assert!(
                    html.contains(&format!("<html lang=\"{expected_lang}\">")),
                    "{lang} {kind}"
                );
                if kind != "welcome" {
                    // The partner's name and landing link, in both parts.
                    assert!(m.text.contains("Acme Bikes"), "{lang} {kind}");
                    assert!(m.html.contains("Acme Bikes"), "{lang} {kind}");
                    assert!(
                        m.text.contains("https://acme.example/welcome"),
                        "{lang} {kind}"
                    );
                    assert!(
                        html.contains("href=\"https://acme.example/welcome\""),
                        "{lang} {kind}"
                    );
                }
            }
        }
    }

    #[test]
    fn partner_without_landing_link_renders_without_one() {
        let r = renderer();
        let bare = brand("Acme Bikes", None);
        for lang in EMAIL_LANGUAGES {
            for envelope in every_kind(lang, &bare) {
                let m = r.render(&envelope).expect("render");
                let kind = envelope.notification.kind();
                assert!(!m.text.contains("acme.example"), "{lang} {kind}");
                assert!(!m.text.contains("()"), "{lang} {kind}: {}", m.text);
                assert!(!m.html.contains("href=\"\""), "{lang} {kind}");
                let mut words = m.text.split(|c: char| !c.is_alphanumeric());
                assert!(!words.any(|w| w == "none"), "{lang} {kind}: {}", m.text);
            }
        }
        // Anything but a web address is not put in an href.
        let odd = brand("Acme Bikes", Some("javascript:alert(1)"));
        for envelope in every_kind("en", &odd) {
            let m = r.render(&envelope).expect("render");
            assert!(!m.html.contains("javascript"), "{}", m.html);
            assert!(!m.text.contains("javascript"), "{}", m.text);
        }
    }

    #[test]
    fn set_password_link_carries_the_derived_token() {
        let r = renderer();
        let acme = brand("Acme Bikes", Some("https://acme.example/"));
        for lang in EMAIL_LANGUAGES {
            for envelope in every_kind(lang, &acme) {
                let kind = envelope.notification.kind();
                let m = r.render(&envelope).expect("render");
                let token = link_token(KEY, SET_PASSWORD, &envelope.id.to_string());
                let expected = format!("{BASE}/password/set?token={token}");
                let in_text = links(&m.text);
                let in_html = links(&unslash(&m.html));
                if envelope.notification.has_set_password_link() {
                    assert!(!in_text.is_empty(), "{lang} {kind}: {}", m.text);
                    assert!(!in_html.is_empty(), "{lang} {kind}: {}", m.html);
                    for link in in_text.iter().chain(&in_html) {
                        assert!(link.starts_with(BASE), "{link}");
                        assert_eq!(link, &expected, "{lang} {kind}");
                    }
                    assert!(
                        unslash(&m.html).contains(&format!("href=\"{expected}\"")),
                        "{lang} {kind}"
                    );
                } else {
                    assert!(in_text.is_empty() && in_html.is_empty(), "{lang} {kind}");
                    assert!(!m.text.contains(&token) && !m.html.contains(&token));
                }
            }
        }
        // The token depends on the key: another platform key gives another link.
        let other = Renderer::new("admit", BASE, b"another key of 32 bytes or more!!".to_vec())
            .expect("templates compile");
        let envelope = &every_kind("en", &acme)[2];
        let a = links(&r.render(envelope).expect("render").text);
        let b = links(&other.render(envelope).expect("render").text);
        assert_ne!(a, b);
    }

    #[test]
    fn partner_account_states_who_holds_the_data_and_never_a_password() {
        let r = renderer();
        let acme = brand("Acme Bikes", None);
        let envelope = &every_kind("en", &acme)[1];
        let m = r.render(envelope).expect("render");
        assert_eq!(m.subject, "Acme Bikes created an account for you on admit");
        for part in [&m.text, &unslash(&m.html)] {
            assert!(part.contains("doctest"), "{part}");
            assert!(
                part.contains(
                    "collected and stored by admit on behalf of Acme Bikes and made available to Acme Bikes"
                ),
                "{part}"
            );
            assert!(
                part.to_lowercase().contains("choose your own password"),
                "{part}"
            );
            assert!(part.contains("https://accounts.example.com/"), "{part}");
        }
        // The message carries no password, and no email says what one is.
        for lang in EMAIL_LANGUAGES {
            for envelope in every_kind(lang, &acme) {
                let json = serde_json::to_value(&envelope.notification).expect("serialize");
                let keys: Vec<&String> = json.as_object().expect("an object").keys().collect();
                assert!(keys.iter().all(|k| !k.contains("password")), "{keys:?}");
                let m = r.render(&envelope).expect("render");
                for part in [&m.text, &m.html] {
                    let lower = part.to_lowercase();
                    for label in [
                        "your password is",
                        "votre mot de passe est",
                        "ihr passwort ist",
                        "ihr passwort lautet",
                        "je wachtwoord is",
                    ] {
                        assert!(!lower.contains(label), "{lang}: {label} in {part}");
                    }
                }
            }
        }
    }

    #[test]
    fn password_reset_carries_a_reset_link_in_every_language() {
        let r = renderer().with_reset_ttl_secs(1800);
        for (lang, subject) in [
            ("en", "Reset your admit password"),
            ("fr", "Réinitialisez votre mot de passe admit"),
            ("de", "Setzen Sie Ihr admit-Passwort zurück"),
            ("nl", "Stel je admit-wachtwoord opnieuw in"),
            ("es", "Reset your admit password"),
        ] {
            let envelope = Envelope::new(Notification::PasswordReset {
                to: "doc@example.com".into(),
                account_id: "a1".into(),
                full_name: Some("Doc Test".into()),
                language: lang.into(),
            });
            let m = r.render(&envelope).expect("render");
            assert_eq!(m.subject, subject, "{lang}");
            let token = link_token(KEY, RESET_PASSWORD, &envelope.id.to_string());
            let expected = format!("{BASE}/password/reset?token={token}");
            assert!(m.text.contains(&expected), "{lang}: {}", m.text);
            assert!(
                unslash(&m.html).contains(&format!("href=\"{expected}\"")),
                "{lang}"
            );
            // Not a set-password link: that token would not work at the reset page.
            let set = link_token(KEY, SET_PASSWORD, &envelope.id.to_string());
            assert!(!m.text.contains(&set) && !m.html.contains(&set), "{lang}");
            assert!(links(&m.text).is_empty(), "{lang}");
            // The configured lifetime, and the name.
            assert!(m.text.contains("30"), "{lang}: {}", m.text);
            assert!(m.text.contains("Doc Test") && m.html.contains("Doc Test"));
            for part in [&m.subject, &m.text, &m.html] {
                assert!(!part.contains("{{") && !part.contains("{%"), "{lang}");
            }
        }
    }

    #[test]
    fn registration_failed_lists_every_reason() {
        let r = renderer();
        for lang in ["en", "fr", "de", "nl", "es"] {
            let envelope = &every_kind(lang, &brand("Acme Bikes", None))[4];
            let m = r.render(envelope).expect("render");
            for reason in [
                "BikePlanCode: XYZ is not a plan of this partner",
                "Email: not a valid address",
            ] {
                assert!(
                    m.text.contains(&format!("- {reason}")),
                    "{lang}: {}",
                    m.text
                );
                assert!(m.html.contains(&format!("<li>{reason}</li>")), "{lang}");
            }
        }
    }

    #[test]
    fn html_is_escaped() {
        let r = Renderer::new("admit", "http://x", KEY.to_vec()).expect("templates compile");
        let m = r
            .render(&welcome("en", Some("<script>alert(1)</script>")))
            .expect("render");
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("&lt;script&gt;"));
        let partner = brand(
            "<b>Acme</b> & Co",
            Some("https://acme.example/?a=1&b=\"2\""),
        );
        let mut every = every_kind("fr", &partner);
        if let Notification::RegistrationFailed { reasons, .. } = &mut every[4].notification {
            reasons.push("<img src=x onerror=alert(1)>".into());
        }
        for envelope in every.iter().skip(1) {
            let kind = envelope.notification.kind();
            let m = r.render(envelope).expect("render");
            assert!(!m.html.contains("<b>"), "{kind}");
            assert!(!m.html.contains("<img"), "{kind}");
            assert!(
                m.html.contains("&lt;b&gt;Acme&lt;&#x2f;b&gt; &amp; Co"),
                "{kind}"
            );
            assert!(!m.html.contains("b=\"2\""), "{kind}");
            // The text part and the subject are not HTML: shown as given.
            assert!(m.text.contains("<b>Acme</b> & Co"), "{kind}");
        }
    }

    #[test]
    fn a_partner_colour_styles_its_emails_and_nothing_else_reaches_a_style() {
        let r = renderer();
        let coloured = PartnerBrand {
            brand_color: Some("#0A7D3B".into()),
            ..brand("Acme Bikes", Some("https://acme.example/"))
        };
        for envelope in every_kind("de", &coloured).iter().skip(1) {
            let m = r.render(envelope).expect("render");
            assert!(m.html.contains("#0a7d3b"), "{}", m.html);
            assert!(!m.html.contains(DEFAULT_ACCENT), "{}", m.html);
        }
        // The platform's own email, and a partner without a colour: the default.
        let plain = r
            .render(&every_kind("en", &brand("Acme Bikes", None))[1])
            .expect("render");
        assert!(plain.html.contains(DEFAULT_ACCENT));
        let welcome = r.render(&welcome("en", None)).expect("render");
        assert!(welcome.html.contains(DEFAULT_ACCENT));
        // A value that is not a colour (a queued message is data) is not written out.
        let hostile = PartnerBrand {
            brand_color: Some("red;background:url(https://evil.test/x)".into()),
            ..brand("Acme Bikes", None)
        };
        let m = r.render(&every_kind("en", &hostile)[1]).expect("render");
        assert!(!m.html.contains("evil.test"), "{}", m.html);
        assert!(m.html.contains(DEFAULT_ACCENT));
    }

    #[test]
    fn a_line_break_in_a_partner_name_stays_out_of_the_subject() {
        let r = renderer();
        let envelope = &every_kind("en", &brand("Acme\r\nBcc: x@example.com", None))[1];
        let m = r.render(envelope).expect("render");
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
    }

    #[test]
    fn a_social_welcome_names_the_provider_and_offers_a_password_in_every_language() {
        let r = renderer();
        for (lang, word) in [
            ("en", "Welcome"),
            ("fr", "Bienvenue"),
            ("de", "Willkommen"),
            ("nl", "Welkom"),
        ] {
            let e = Envelope::new(Notification::SocialWelcome {
                to: "sam@example.com".into(),
                account_id: "a1".into(),
                full_name: Some("Sam Social".into()),
                provider: "google".into(),
                language: lang.into(),
            });
            let m = r.render(&e).expect("render");
            assert!(m.subject.starts_with(word), "{lang}: {}", m.subject);
            let link = r.set_password_url(&e.id.to_string());
            for body in [&m.text, &unslash(&m.html)] {
                assert!(
                    body.contains("google") && body.contains("Sam Social"),
                    "{lang}: {body}"
                );
                assert!(
                    links(body).iter().any(|l| l.starts_with(&link)),
                    "{lang}: {body}"
                );
            }
        }
    }

    fn confirm_email(lang: &str) -> Envelope {
        Envelope::new(Notification::ConfirmEmail {
            to: "doc@example.com".into(),
            account_id: "a1".into(),
            full_name: Some("Doc Test".into()),
            username: Some("doctest".into()),
            language: lang.into(),
        })
    }

    #[test]
    fn confirm_email_carries_the_derived_confirm_link_in_every_language() {
        let r = renderer().with_confirm_ttl_secs(3 * 86_400, 600);
        for (lang, word) in [
            ("en", "confirm your address"),
            ("fr", "confirmez votre adresse"),
            ("de", "bestätigen Sie Ihre Adresse"),
            ("nl", "bevestig je adres"),
            ("es", "confirm your address"),
        ] {
            let envelope = confirm_email(lang);
            let m = r.render(&envelope).expect("render");
            assert!(m.subject.contains(word), "{lang}: {}", m.subject);
            let token = link_token(KEY, CONFIRM_EMAIL, &envelope.id.to_string());
            let expected = format!("{BASE}/confirm?token={token}");
            assert!(m.text.contains(&expected), "{lang}: {}", m.text);
            assert!(
                unslash(&m.html).contains(&format!("href=\"{expected}\"")),
                "{lang}"
            );
            assert!(m.text.contains(" 3 "), "{lang}: the link's days");
            assert!(m.text.contains("Doc Test") && m.text.contains("doctest"));
            // Not a set-password link, and no other purpose's token.
            assert!(links(&m.text).is_empty(), "{lang}");
            let other = link_token(KEY, SET_PASSWORD, &envelope.id.to_string());
            assert!(!m.text.contains(&other) && !m.html.contains(&other));
            for part in [&m.subject, &m.text, &m.html] {
                assert!(!part.contains("{{") && !part.contains("{%"), "{lang}");
            }
        }
    }

    #[test]
    fn a_text_message_carries_the_derived_code_and_is_no_email() {
        let r = renderer().with_confirm_ttl_secs(86_400, 600);
        for (lang, word) in [
            ("en", "code"),
            ("fr", "code"),
            ("de", "Code"),
            ("nl", "code"),
            ("es", "is your admit code"),
            ("", "is your admit code"),
        ] {
            let envelope = Envelope::new(Notification::ConfirmPhone {
                to: "+33612345678".into(),
                account_id: "a1".into(),
                language: lang.into(),
            });
            let sms = r.render_sms(&envelope).expect("render");
            let code = numeric_code(KEY, CONFIRM_PHONE, &envelope.id.to_string());
            assert_eq!(sms.to, "+33612345678");
            assert_eq!(sms.message_id, envelope.id.to_string());
            assert!(sms.text.starts_with(&code), "{lang}: {}", sms.text);
            assert!(sms.text.contains(word), "{lang}: {}", sms.text);
            assert!(
                sms.text.contains("10 m") || sms.text.contains("10 M"),
                "{lang}: the minutes"
            );
            assert!(sms.text.chars().count() <= 160, "{lang}: one SMS");
            // The queued message carries no code.
            let json = serde_json::to_string(&envelope).expect("serialize");
            assert!(!json.contains(&code));
            assert!(r.render(&envelope).is_err(), "a text is not an email");
        }
        assert!(r.render_sms(&confirm_email("en")).is_err());
    }
}
