//! Rendering: every email has a subject, a text part and an HTML part, from the
//! templates under `templates/<language>/<name>/`, in the recipient's language with
//! English as the fallback. HTML templates are auto-escaped.

use admit_domain::{Envelope, Notification};
use minijinja::{context, Environment};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

pub const LANGUAGES: &[&str] = &["en", "fr", "de", "nl"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render {kind}: {message}")]
pub struct RenderError {
    kind: String,
    message: String,
}

pub struct Renderer {
    env: Environment<'static>,
    platform: String,
    base_url: String,
}

impl Renderer {
    pub fn new(platform: &str, base_url: &str) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        for (name, source) in embedded::TEMPLATES {
            env.add_template(name, source).map_err(|e| RenderError {
                kind: (*name).to_owned(),
                message: e.to_string(),
            })?;
        }
        Ok(Self {
            env,
            platform: platform.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn language<'a>(&self, wanted: &'a str, name: &str) -> &'a str {
        let wanted = wanted.trim();
        let known = LANGUAGES.iter().any(|l| l.eq_ignore_ascii_case(wanted));
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

    pub fn render(&self, envelope: &Envelope) -> Result<RenderedEmail, RenderError> {
        let n = &envelope.notification;
        let (name, lang, ctx) = match n {
            Notification::Welcome {
                full_name,
                username,
                language,
                ..
            } => (
                "welcome",
                language.as_str(),
                context! {
                    name => full_name,
                    username => username,
                    portal_url => format!("{}/", self.base_url),
                },
            ),
        };
        let lang = self.language(lang, name).to_ascii_lowercase();
        let ctx = context! { platform => &self.platform, lang => &lang, ..ctx };
        let part = |file: &str| -> Result<String, RenderError> {
            let t = self
                .env
                .get_template(&format!("{lang}/{name}/{file}"))
                .map_err(|e| RenderError {
                    kind: name.into(),
                    message: e.to_string(),
                })?;
            t.render(&ctx).map_err(|e| RenderError {
                kind: name.into(),
                message: e.to_string(),
            })
        };
        let subject = part("subject.txt")?.trim().to_owned();
        let text = part("body.txt")?;
        let html = {
            let t = self
                .env
                .get_template(&format!("{lang}/{name}/body.html"))
                .map_err(|e| RenderError {
                    kind: name.into(),
                    message: e.to_string(),
                })?;
            t.render(context! { subject => &subject, ..ctx.clone() })
                .map_err(|e| RenderError {
                    kind: name.into(),
                    message: e.to_string(),
                })?
        };
        Ok(RenderedEmail {
            message_id: envelope.id.to_string(),
            to: n.recipient().to_owned(),
            subject,
            text,
            html,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(lang: &str, name: Option<&str>) -> Envelope {
        Envelope::new(Notification::Welcome {
            to: "doc@example.com".into(),
            account_id: "a1".into(),
            full_name: name.map(str::to_owned),
            username: Some("doctest".into()),
            language: lang.into(),
        })
    }

    #[test]
    fn renders_every_language_with_english_fallback() {
        let r = Renderer::new("admit", "https://accounts.example.com/").expect("templates compile");
        let en = r.render(&welcome("en", Some("Doc Test"))).expect("render");
        assert_eq!(en.subject, "Welcome to admit");
        assert!(en.text.contains("Your username is doctest"));
        // minijinja escapes '/' in HTML as &#x2f;, which browsers read as '/'.
        let html = en.html.replace("&#x2f;", "/");
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
    fn html_is_escaped() {
        let r = Renderer::new("admit", "http://x").expect("templates compile");
        let m = r
            .render(&welcome("en", Some("<script>alert(1)</script>")))
            .expect("render");
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("&lt;script&gt;"));
    }
}
