//! Locales as document 003 writes them: an ISO 639-3 language, optionally `-` and an
//! ISO 3166-1 alpha-2 country (`eng`, `eng-US`).

use crate::FieldError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Locale(String);

impl Locale {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = || {
            Err(FieldError::new(
                "locale",
                "a locale is an ISO 639-3 language code, optionally '-' and an ISO 3166-1 country code (eng, eng-US)",
            ))
        };
        let (lang, country) = match raw.split_once('-') {
            Some((l, c)) => (l, Some(c)),
            None => (raw, None),
        };
        if lang.len() != 3 || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
            return err();
        }
        let lang = lang.to_ascii_lowercase();
        if isolang::Language::from_639_3(&lang).is_none() {
            return err();
        }
        let mut out = lang;
        if let Some(c) = country {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                return err();
            }
            let c = c.to_ascii_uppercase();
            if isocountry::CountryCode::for_alpha2(&c).is_err() {
                return err();
            }
            out.push('-');
            out.push_str(&c);
        }
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ISO 639-1 code of the language where it has one (`eng` -> `en`): the
    /// language the mailer renders in.
    pub fn language_639_1(&self) -> Option<&'static str> {
        let lang = self.0.split('-').next()?;
        isolang::Language::from_639_3(lang)?.to_639_1()
    }
}

/// An ISO 639-1 language code in any case (`FR`, `nl`), lower-cased; `None` for
/// anything that is not one.
/// The languages every email has templates in (ISO 639-1); others fall back to the
/// first.
pub const EMAIL_LANGUAGES: &[&str] = &["en", "fr", "de", "nl"];

pub fn iso639_1(code: &str) -> Option<String> {
    let lower = code.trim().to_ascii_lowercase();
    (lower.len() == 2 && isolang::Language::from_639_1(&lower).is_some()).then_some(lower)
}

impl TryFrom<String> for Locale {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Locale> for String {
    fn from(l: Locale) -> String {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_document_examples() {
        assert_eq!(Locale::parse("eng").expect("ok").as_str(), "eng");
        assert_eq!(Locale::parse("eng-US").expect("ok").as_str(), "eng-US");
        assert_eq!(Locale::parse("fra-fr").expect("ok").as_str(), "fra-FR");
        assert_eq!(
            Locale::parse("deu").expect("ok").language_639_1(),
            Some("de")
        );
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "english", "en", "en-US", "eng-USA", "eng-XX", "zzz", "eng_US", "", "eng-",
        ] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
    }
}
