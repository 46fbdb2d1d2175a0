//! What the server-rendered pages of every service share: the login session cookie,
//! CSRF protection, security headers, and templates.
//!
//! - The session cookie is `__Host-admit_session`: Secure, HttpOnly, SameSite=Lax,
//!   Path=/, no Domain. Its value is a random 256-bit token; the database keeps only
//!   its SHA-256 digest ([`admit_store::grants::SessionRow`]). The account pages create
//!   it and the authorize page reads it, so one login serves both.
//! - CSRF: a double-submit token. `__Host-admit_csrf` holds a random value and every
//!   form carries the same value in a hidden field; a POST whose field differs from its
//!   cookie (compared in constant time) is refused. The `__Host-` prefix keeps
//!   subdomains from planting the cookie, and SameSite keeps other sites from sending
//!   the session with a forged form.
//! - Every page: `Content-Security-Policy` without scripts and `frame-ancestors
//!   'none'`, `Referrer-Policy: no-referrer`, `Cache-Control: no-store`.
//! - Every page is rendered in a [`Lang`] ([`crate::i18n`]): templates say `t("key")`.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use admit_domain::secret;
use admit_store::grants::{self, SessionRow};
use admit_store::{Db, StoreError};
use serde::Serialize;

pub use crate::i18n::Lang;

pub const SESSION_COOKIE: &str = "__Host-admit_session";
pub const CSRF_COOKIE: &str = "__Host-admit_csrf";
/// The hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers every page and every redirect from a page carries.
pub fn protect(res: &mut HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
}

/// A `303 See Other` to `location`, with the page headers.
pub fn redirect(location: &str) -> HttpResponseBuilder {
    let mut res = HttpResponse::SeeOther();
    protect(&mut res);
    res.insert_header((header::LOCATION, location.to_owned()));
    res
}

/// The templates of one service, over the shared layout and error page.
pub struct Pages {
    env: minijinja::Environment<'static>,
}

impl Pages {
    /// `templates`: `(name, source)`; a name ending in `.html` is auto-escaped.
    pub fn new(templates: &[(&'static str, &'static str)]) -> Result<Self, minijinja::Error> {
        let mut env = minijinja::Environment::new();
        env.add_function("t", crate::i18n::template_function);
        env.add_template("layout.html", include_str!("../templates/layout.html"))?;
        env.add_template("error.html", include_str!("../templates/error.html"))?;
        for (name, source) in templates {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    pub fn render(&self, name: &str, ctx: impl Serialize) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }

    /// The page `name` in `lang` as a response builder's body, with the page headers.
    pub fn page(
        &self,
        mut res: HttpResponseBuilder,
        lang: Lang,
        name: &str,
        ctx: impl Serialize,
    ) -> HttpResponse {
        let ctx = minijinja::context! { lang, ..minijinja::Value::from_serialize(&ctx) };
        match self.render(name, ctx) {
            Ok(html) => {
                protect(&mut res);
                res.content_type("text/html; charset=utf-8").body(html)
            }
            Err(e) => {
                tracing::error!(error = %e, template = name, "page failed to render");
                let mut res = HttpResponse::InternalServerError();
                protect(&mut res);
                res.content_type("text/plain; charset=utf-8")
                    .body("The page could not be shown.")
            }
        }
    }

    /// An error page in `lang`: it explains and never redirects. `title` and
    /// `message` are translation keys (a text that is no key is shown as it is).
    pub fn error(
        &self,
        lang: Lang,
        status: StatusCode,
        title: &str,
        message: &str,
    ) -> HttpResponse {
        self.page(
            HttpResponse::build(status),
            lang,
            "error.html",
            minijinja::context! { title, message },
        )
    }
}

/// The CSRF token a page embeds in its forms; sets the cookie when the browser has
/// none yet.
pub struct Csrf {
    pub token: String,
    fresh: bool,
}

impl Csrf {
    pub fn of(req: &HttpRequest) -> Self {
        match req.cookie(CSRF_COOKIE) {
            Some(c) if c.value().len() >= 32 => Self {
                token: c.value().to_owned(),
                fresh: false,
            },
            _ => Self {
                token: secret::generate(""),
                fresh: true,
            },
        }
    }

    /// Sets the cookie on `res` if the browser did not have it.
    pub fn apply(&self, res: &mut HttpResponseBuilder) {
        if self.fresh {
            res.cookie(host_cookie(CSRF_COOKIE, self.token.clone(), None));
        }
    }
}

/// Whether a submitted form's token matches the browser's CSRF cookie.
pub fn csrf_ok(req: &HttpRequest, submitted: &str) -> bool {
    use subtle::ConstantTimeEq;
    match req.cookie(CSRF_COOKIE) {
        Some(c) if c.value().len() >= 32 => {
            c.value().len() == submitted.len()
                && bool::from(c.value().as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
    }
}

fn host_cookie(name: &'static str, value: String, max_age: Option<i64>) -> Cookie<'static> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .finish();
    if let Some(secs) = max_age {
        c.set_max_age(actix_web::cookie::time::Duration::seconds(secs));
    }
    c
}

/// A new login session for `account_id`: the cookie to set and the row to store.
pub fn new_session(account_id: &str, ttl_secs: i64) -> (Cookie<'static>, SessionRow) {
    let token = secret::generate("");
    let now = admit_store::now();
    let row = SessionRow {
        id_digest: secret::digest(&token),
        account_id: account_id.to_owned(),
        auth_time: now,
        expires_at: now + chrono::Duration::seconds(ttl_secs),
        revoked_at: None,
    };
    (host_cookie(SESSION_COOKIE, token, Some(ttl_secs)), row)
}

/// The cookie that removes the session from the browser.
pub fn clear_session() -> Cookie<'static> {
    host_cookie(SESSION_COOKIE, String::new(), Some(0))
}

/// The digest of the browser's session cookie, if it sent one.
pub fn session_digest(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE)
        .filter(|c| !c.value().is_empty())
        .map(|c| secret::digest(c.value()))
}

/// The browser's live login session.
pub async fn current_session(req: &HttpRequest, db: &Db) -> Result<Option<SessionRow>, StoreError> {
    let Some(digest) = session_digest(req) else {
        return Ok(None);
    };
    db.run(move |c| grants::find_session(c, &digest, admit_store::now()))
        .await
}

/// The language of a page for this request: the signed-in account's locale, else the
/// browser's `Accept-Language`, else English. The language is no reason to fail a
/// page: when the database does not answer, the browser's preference decides.
pub async fn language(req: &HttpRequest, db: &Db) -> Lang {
    let Some(digest) = session_digest(req) else {
        return Lang::choose(req, None);
    };
    let locale = db
        .run(move |c| {
            let Some(session) = grants::find_session(c, &digest, admit_store::now())? else {
                return Ok(None);
            };
            Ok(admit_store::accounts::find(c, &session.account_id)?.locale)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "page language: the account's locale is unavailable");
            None
        });
    Lang::choose(req, locale.as_deref())
}

/// Where to go after a page: a path on this site, or a URL under one of `origins`
/// (the issuer, when the services have separate origins). Anything else, an open
/// redirect in the making, becomes `fallback`.
pub fn safe_return_to<'a>(return_to: &'a str, origins: &[&str], fallback: &'a str) -> &'a str {
    let local = return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.starts_with("/\\")
        && !return_to.contains(['\r', '\n']);
    let under_origin = origins.iter().any(|o| {
        !o.is_empty()
            && return_to
                .strip_prefix(o)
                .is_some_and(|rest| rest.starts_with('/'))
            && !return_to.contains(['\r', '\n'])
    });
    if local || under_origin {
        return_to
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_the_site() {
        let o = ["https://id.example.com"];
        assert_eq!(
            safe_return_to("/oauth/authorize?x=1", &o, "/"),
            "/oauth/authorize?x=1"
        );
        assert_eq!(
            safe_return_to("https://id.example.com/oauth/authorize", &o, "/"),
            "https://id.example.com/oauth/authorize"
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "https://id.example.com.evil.example/",
            "https://id.example.com@evil.example/",
            "javascript:alert(1)",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(safe_return_to(bad, &o, "/"), "/", "{bad}");
        }
    }
}
