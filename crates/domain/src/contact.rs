//! Contacts: email addresses (RFC 5322 addr-spec) and phone numbers (E.164).

use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_ADDRESS: usize = 254;

/// A syntactically valid email address. The original spelling is kept for sending;
/// [`Email::normalized`] is the case-folded form that uniqueness is decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = |m: &str| Err(FieldError::new("email", m));
        if raw.len() > MAX_ADDRESS {
            return err("an email address has at most 254 characters");
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return err("an email address needs a local part, '@' and a domain");
        };
        if local.is_empty() {
            return err("the local part of the email address is empty");
        }
        if domain.is_empty() {
            return err("the email address has no domain");
        }
        if local.len() > MAX_LOCAL {
            return err("the local part of an email address has at most 64 characters");
        }
        if domain.len() > MAX_DOMAIN {
            return err("the domain of an email address has at most 253 characters");
        }
        // The addr-spec grammar itself (dot-atom or quoted local part, dot-atom or
        // literal domain) is the email_address crate's, which follows RFC 5322 §3.4.1.
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal();
        if email_address::EmailAddress::parse_with_options(raw, options).is_err() || !raw.is_ascii()
        {
            return err("not a valid email address (RFC 5322 addr-spec)");
        }
        // A mail domain needs a dot: `user@localhost` cannot receive mail from us.
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return err("the domain of the email address is not a fully qualified name");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Email addresses are unique case-insensitively (SPEC.md §3).
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl TryFrom<String> for Email {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl FromStr for Email {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A phone number in E.164 form (`+` and at most 15 digits). Visual separators
/// (space, dot, dash, parentheses) are accepted and dropped, so the vCard form of
/// document 003 (`+84.01272170781`) is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = |m: &str| Err(FieldError::new("phone", m));
        let Some(rest) = raw.strip_prefix('+') else {
            return err("a phone number is in E.164 form: '+', the country code and the number");
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return err("a phone number has only digits after '+'"),
            }
        }
        if digits.starts_with('0') {
            return err("a country code does not start with 0");
        }
        if !(8..=15).contains(&digits.len()) {
            return err("an E.164 phone number has 8 to 15 digits");
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Phone {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContactKind {
    Email,
    Phone,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Email => "EMAIL",
            ContactKind::Phone => "PHONE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EMAIL" => Some(Self::Email),
            "PHONE" => Some(Self::Phone),
            _ => None,
        }
    }
}

/// One contact of an account, already valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Email { email: Email, is_primary: bool },
    Phone { phone: Phone, is_primary: bool },
}

impl Contact {
    pub fn kind(&self) -> ContactKind {
        match self {
            Contact::Email { .. } => ContactKind::Email,
            Contact::Phone { .. } => ContactKind::Phone,
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Contact::Email { email, .. } => email.as_str(),
            Contact::Phone { phone, .. } => phone.as_str(),
        }
    }

    /// The form uniqueness is decided on.
    pub fn normalized(&self) -> String {
        match self {
            Contact::Email { email, .. } => email.normalized(),
            Contact::Phone { phone, .. } => phone.as_str().to_owned(),
        }
    }

    pub fn is_primary(&self) -> bool {
        match self {
            Contact::Email { is_primary, .. } | Contact::Phone { is_primary, .. } => *is_primary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_folds_case() {
        let e = Email::parse("Doc@Example.com").expect("valid");
        assert_eq!(e.as_str(), "Doc@Example.com");
        assert_eq!(e.normalized(), "doc@example.com");
        for ok in [
            "a.b+tag@sub.example.org",
            "x@example.co",
            "\"quoted local\"@example.com",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_malformed_and_over_long_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let domain = |n: usize| {
            format!(
                "{}.{}.{}.com",
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(n)
            )
        };
        let long_whole = format!("{}@{}", "a".repeat(64), domain(58));
        assert_eq!(long_whole.len(), 255);
        for bad in [
            "doc@",
            "doc",
            "@example.com",
            "doc@localhost",
            "doc@@example.com",
            "doc @example.com",
            "doc@exa mple.com",
            "dóc@example.com",
            long_local.as_str(),
            long_whole.as_str(),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
        let limit = format!("{}@{}", "a".repeat(64), domain(57));
        assert_eq!(limit.len(), 254);
        assert!(Email::parse(&limit).is_ok());
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(
            Phone::parse("+84.01272170781").expect("valid").as_str(),
            "+8401272170781"
        );
        assert_eq!(
            Phone::parse("+1 (415) 555-0100").expect("valid").as_str(),
            "+14155550100"
        );
        for bad in [
            "12345",
            "+12345",
            "+0123456789",
            "+1234567890123456",
            "+1415abc0100",
            "",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
