//! The password policy. Its bounds are configuration; the shipped default is document
//! 003's (6 to 18 characters of any kind), so integrations written against it work.

use crate::FieldError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashSet;

/// A password that passed the policy. Never printed: `Debug` is the secret's.
#[derive(Debug, Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Passwords refused whatever the bounds: the most common ones in breach corpora
/// that fit document 003's length bounds.
const COMMON: &[&str] = &[
    "123456",
    "1234567",
    "12345678",
    "123456789",
    "1234567890",
    "password",
    "password1",
    "qwerty",
    "qwerty123",
    "abc123",
    "111111",
    "000000",
    "123123",
    "654321",
    "666666",
    "121212",
    "112233",
    "iloveyou",
    "letmein",
    "welcome",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "admin",
    "admin123",
    "passw0rd",
    "master",
    "superman",
    "trustno1",
    "azerty",
    "qwertyuiop",
    "1q2w3e4r",
    "1qaz2wsx",
    "zaq12wsx",
    "changeme",
    "secret",
    "starwars",
    "whatever",
    "michael",
    "shadow",
    "jennifer",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    /// Refuse the built-in list of common passwords.
    pub refuse_common: bool,
    /// More passwords to refuse (compared case-insensitively).
    pub refuse: Vec<String>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 6,
            max_length: 18,
            refuse_common: true,
            refuse: Vec::new(),
        }
    }
}

/// Why the policy refuses a password, for pages that say it in the reader's language
/// (the APIs use [`PasswordPolicy::check`]'s English message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    /// Shorter than `min_length` or longer than `max_length` characters.
    Length,
    /// Contains a control character.
    Control,
    /// Common, or on the configured list.
    Common,
}

impl PasswordPolicy {
    pub fn check(&self, raw: &str) -> Result<Password, FieldError> {
        let message = match self.problem(raw) {
            None => return Ok(Password(SecretString::from(raw.to_owned()))),
            Some(PasswordProblem::Length) => format!(
                "a password has {} to {} characters",
                self.min_length, self.max_length
            ),
            Some(PasswordProblem::Control) => "a password has no control characters".into(),
            Some(PasswordProblem::Common) => "this password is too common; choose another".into(),
        };
        Err(FieldError::new("password", message))
    }

    /// What the policy has against `raw`, if anything.
    pub fn problem(&self, raw: &str) -> Option<PasswordProblem> {
        let n = raw.chars().count();
        if n < self.min_length || n > self.max_length {
            return Some(PasswordProblem::Length);
        }
        if raw.chars().any(char::is_control) {
            return Some(PasswordProblem::Control);
        }
        let folded = raw.to_lowercase();
        let common = self.refuse_common && COMMON.contains(&folded.as_str());
        if common || self.refused().contains(folded.as_str()) {
            return Some(PasswordProblem::Common);
        }
        None
    }

    fn refused(&self) -> HashSet<String> {
        self.refuse.iter().map(|p| p.to_lowercase()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_bounds() {
        let p = PasswordPolicy::default();
        assert!(p.check("doctest1").is_ok());
        assert!(p.check("doctestpassword").is_ok());
        assert!(
            p.check("Ab1!é€").is_ok(),
            "any characters, counted as characters"
        );
        assert!(p.check("12345").is_err());
        assert!(p.check(&"x".repeat(19)).is_err());
        assert!(p.check(&"x".repeat(18)).is_ok());
        assert!(p.check("Password").is_err(), "common, case-insensitively");
        assert_eq!(p.problem("12345"), Some(PasswordProblem::Length));
        assert_eq!(p.problem("Password"), Some(PasswordProblem::Common));
        assert_eq!(p.problem("abc\u{7}defg"), Some(PasswordProblem::Control));
        assert_eq!(p.problem("doctest1"), None);
        assert!(p.check("abc\u{0}def").is_err());
    }

    #[test]
    fn configured_list() {
        let p = PasswordPolicy {
            refuse: vec!["Admit2026".into()],
            ..PasswordPolicy::default()
        };
        assert!(p.check("admit2026").is_err());
    }
}
