//! The languages of the pages: the languages the emails are written in (en, fr, de,
//! nl), from Project Fluent files under `crates/runtime/locales/<lang>/`, embedded in
//! the binary at build time (`fluent-templates`). Fluent rather than a table of
//! strings: each language's plural rules and arguments (`{ $minutes }`) live in the
//! translation, not in code.
//!
//! Which language a request gets ([`Lang::choose`]): the signed-in account's locale
//! (`accounts.locale`, ISO 639-3 such as `fra-FR`) when it is one of ours, else the
//! first `Accept-Language` preference with `q>0` that is one of ours, else English. A
//! page that must not tell whether an account exists (forgot password) uses the
//! request's preferences only.
//!
//! Templates call `t("key")` (and `t("key", name=value)` for arguments); a key that is
//! not translated shows the English text, and a text that is not a key at all shows
//! as it is.

use actix_web::http::header::{AcceptLanguage, Header, Preference, Quality};
use actix_web::HttpRequest;
use admit_domain::locale::{Locale, EMAIL_LANGUAGES};
use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader};
use std::borrow::Cow;
use std::collections::HashMap;

fluent_templates::static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // No Unicode isolation marks around arguments: they would end up in the HTML
        // and in form values.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// A language the pages are written in (ISO 639-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Lang(&'static str);

impl Default for Lang {
    fn default() -> Self {
        Lang::EN
    }
}

impl Lang {
    pub const EN: Lang = Lang("en");

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// One of our languages by its ISO 639-1 code, in any case.
    pub fn from_code(code: &str) -> Option<Lang> {
        let code = code.trim();
        EMAIL_LANGUAGES
            .iter()
            .find(|l| l.eq_ignore_ascii_case(code))
            .map(|l| Lang(l))
    }

    /// The language of an account's locale (`fra-FR`, `nld`), if it is one of ours.
    pub fn of_locale(locale: &str) -> Option<Lang> {
        Locale::parse(locale)
            .ok()?
            .language_639_1()
            .and_then(Lang::from_code)
    }

    /// The first of the `Accept-Language` preferences (by weight, `q=0` meaning "not
    /// this one") that is one of ours.
    pub fn accepted(req: &HttpRequest) -> Option<Lang> {
        let mut offered = AcceptLanguage::parse(req).map(|h| h.0).unwrap_or_default();
        offered.retain(|q| q.quality > Quality::ZERO);
        // A stable sort: equal weights keep the order the browser sent.
        offered.sort_by_key(|q| std::cmp::Reverse(q.quality));
        offered.into_iter().find_map(|q| match q.item {
            Preference::Specific(tag) => Lang::from_code(tag.primary_language()),
            Preference::Any => None,
        })
    }

    /// The language of a page: the account's locale first, then the request's
    /// `Accept-Language`, then English.
    pub fn choose(req: &HttpRequest, account_locale: Option<&str>) -> Lang {
        account_locale
            .and_then(Lang::of_locale)
            .or_else(|| Lang::accepted(req))
            .unwrap_or(Lang::EN)
    }

    fn id(self) -> LanguageIdentifier {
        self.0.parse().unwrap_or_default()
    }
}

/// The text of `key` in `lang`, with `args`; English where `lang` lacks it, and `key`
/// itself where no language has it.
pub fn text(lang: Lang, key: &str, args: &[(&str, FluentValue<'static>)]) -> String {
    let args: HashMap<Cow<'static, str>, FluentValue> = args
        .iter()
        .map(|(k, v)| (Cow::Owned((*k).to_owned()), v.clone()))
        .collect();
    let args = (!args.is_empty()).then_some(&args);
    LOCALES
        .try_lookup_complete(&lang.id(), key, args)
        .unwrap_or_else(|| key.to_owned())
}

/// Whether `key` is a message of the English file (every key must be; the other
/// languages are checked against it).
pub fn is_key(key: &str) -> bool {
    include_str!("../locales/en/pages.ftl")
        .lines()
        .any(|l| l.split_once(" =").is_some_and(|(k, _)| k == key))
}

/// The keys a template passes to `t("…")` literally, for tests that every one has a
/// text.
pub fn keys_in_template(source: &str) -> Vec<&str> {
    source
        .split("t(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// The minijinja function `t(key, name=value, …)`: the text of `key` in the language
/// of the template's `lang` variable.
pub fn template_function(
    state: &minijinja::State,
    key: &str,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, minijinja::Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_code))
        .unwrap_or_default();
    let mut args: Vec<(&str, FluentValue<'static>)> = Vec::new();
    for name in kwargs.args() {
        let v: minijinja::Value = kwargs.get(name)?;
        let value = match i64::try_from(v.clone()) {
            Ok(n) if v.kind() == minijinja::value::ValueKind::Number => FluentValue::from(n),
            _ => FluentValue::from(v.to_string()),
        };
        args.push((name, value));
    }
    Ok(text(lang, key, &args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(accept: Option<&str>, locale: Option<&str>) -> &'static str {
        let mut r = actix_web::test::TestRequest::default();
        if let Some(h) = accept {
            r = r.insert_header(("Accept-Language", h));
        }
        Lang::choose(&r.to_http_request(), locale).as_str()
    }

    #[test]
    fn the_first_accepted_language_we_have_else_english() {
        assert_eq!(lang(None, None), "en");
        assert_eq!(lang(Some("fr-CH, fr;q=0.9, en;q=0.8"), None), "fr");
        assert_eq!(lang(Some("es, nl;q=0.5, de;q=0.7"), None), "de");
        assert_eq!(lang(Some("NL-be"), None), "nl");
        assert_eq!(lang(Some("*"), None), "en");
        assert_eq!(lang(Some("es"), None), "en");
        assert_eq!(lang(Some("es, fr;q=0"), None), "en");
        assert_eq!(lang(Some(";;not a language"), None), "en");
        assert_eq!(lang(Some("de;q=0.5, nl;q=0.5"), None), "de");
    }

    #[test]
    fn the_account_locale_wins_when_it_is_one_of_ours() {
        assert_eq!(lang(Some("de"), Some("fra-FR")), "fr");
        assert_eq!(lang(None, Some("nld")), "nl");
        assert_eq!(lang(Some("de"), Some("eng-US")), "en");
        // A locale we have no pages in, or a malformed one: the browser decides.
        assert_eq!(lang(Some("de"), Some("spa-ES")), "de");
        assert_eq!(lang(Some("nl"), Some("french")), "nl");
        assert_eq!(lang(None, Some("ita")), "en");
    }

    #[test]
    fn texts_fall_back_to_english_then_to_the_key() {
        assert_eq!(text(Lang::EN, "login-title", &[]), "Sign in");
        assert_eq!(text(Lang("fr"), "login-title", &[]), "Se connecter");
        assert_eq!(
            text(Lang("de"), "no such key, shown as it is", &[]),
            "no such key, shown as it is"
        );
        let wait = |l: &'static str, n: i64| {
            text(
                Lang(l),
                "login-too-many",
                &[("minutes", FluentValue::from(n))],
            )
        };
        assert!(wait("en", 1).contains("1 minute,"), "{}", wait("en", 1));
        assert!(wait("en", 5).contains("5 minutes"), "{}", wait("en", 5));
        assert!(wait("nl", 5).contains("5 minuten"), "{}", wait("nl", 5));
        // No isolation marks around arguments.
        assert!(!wait("fr", 3).contains('\u{2068}'));
    }

    /// Every message of the English file exists in every other language, and no
    /// language has a message English lacks.
    #[test]
    fn every_language_has_every_message() {
        let keys = |lang: &str| -> Vec<String> {
            let path = format!("{}/locales/{lang}/pages.ftl", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            let mut keys: Vec<String> = source
                .lines()
                .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim().to_owned()))
                .collect();
            keys.sort();
            keys
        };
        let english = keys("en");
        assert!(english.len() > 20, "{english:?}");
        for lang in EMAIL_LANGUAGES {
            assert_eq!(keys(lang), english, "{lang}");
            let l = Lang::from_code(lang).unwrap_or_default();
            for key in &english {
                let args = [
                    ("minutes", FluentValue::from(2)),
                    ("min", FluentValue::from(6)),
                    ("max", FluentValue::from(18)),
                    ("name", FluentValue::from("x")),
                    ("client", FluentValue::from("x")),
                    ("partner", FluentValue::from("x")),
                    ("scope", FluentValue::from("x")),
                    ("param", FluentValue::from("x")),
                ];
                let t = text(l, key, &args);
                assert!(!t.is_empty() && &t != key, "{lang} {key}");
            }
        }
    }
}
