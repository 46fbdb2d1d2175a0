//! A new account as the platform accepts it: the rules of SPEC.md §3 that do not
//! depend on the database (which contacts are primary, what must be present).

use crate::{Contact, FieldError, Locale, Password, Username};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    #[default]
    Standard,
    /// Deleted with everything attached 24 hours after creation.
    Test,
}

impl AccountType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Standard => "standard",
            AccountType::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(Self::Standard),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// A contact as submitted: its primary flag may be absent.
#[derive(Debug, Clone)]
pub struct SubmittedContact {
    pub contact: Contact,
    pub is_primary: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub contacts: Vec<Contact>,
    pub username: Option<Username>,
    pub full_name: Option<String>,
    pub locale: Option<Locale>,
    pub password: Password,
    pub account_type: AccountType,
}

impl NewAccount {
    /// Applies the contact rules: at least one contact unless a username is given; a
    /// value appears once; at most one primary per type, and the first of a type is
    /// primary when none is marked.
    pub fn new(
        submitted: Vec<SubmittedContact>,
        username: Option<Username>,
        full_name: Option<String>,
        locale: Option<Locale>,
        password: Password,
        account_type: AccountType,
    ) -> Result<Self, FieldError> {
        if submitted.is_empty() && username.is_none() {
            return Err(FieldError::new(
                "contacts",
                "give at least one EMAIL or PHONE contact, or a username",
            ));
        }
        let mut contacts: Vec<Contact> = Vec::with_capacity(submitted.len());
        for (i, s) in submitted.iter().enumerate() {
            let same = |c: &Contact| {
                c.kind() == s.contact.kind() && c.normalized() == s.contact.normalized()
            };
            if contacts.iter().any(same) {
                return Err(FieldError::new(
                    format!("contacts[{i}]"),
                    "this contact is given twice",
                ));
            }
            contacts.push(s.contact.clone());
        }
        for kind in [crate::ContactKind::Email, crate::ContactKind::Phone] {
            let of_kind: Vec<usize> = (0..submitted.len())
                .filter(|&i| submitted[i].contact.kind() == kind)
                .collect();
            let marked: Vec<usize> = of_kind
                .iter()
                .copied()
                .filter(|&i| submitted[i].is_primary == Some(true))
                .collect();
            if marked.len() > 1 {
                return Err(FieldError::new(
                    format!("contacts[{}][2]", marked[1]),
                    format!("only one {} contact can be primary", kind.as_str()),
                ));
            }
            let primary = marked.first().copied().or_else(|| of_kind.first().copied());
            for &i in &of_kind {
                set_primary(&mut contacts[i], Some(i) == primary);
            }
        }
        if let Some(name) = &full_name {
            if name.chars().count() > 200 {
                return Err(FieldError::new(
                    "full_name",
                    "a name has at most 200 characters",
                ));
            }
            if name.chars().any(char::is_control) {
                return Err(FieldError::new(
                    "full_name",
                    "a name has no control characters",
                ));
            }
        }
        Ok(Self {
            contacts,
            username,
            full_name,
            locale,
            password,
            account_type,
        })
    }

    /// The address the account's emails go to, where it has one.
    pub fn primary_email(&self) -> Option<&crate::Email> {
        self.contacts.iter().find_map(|c| match c {
            Contact::Email {
                email,
                is_primary: true,
            } => Some(email),
            _ => None,
        })
    }
}

fn set_primary(c: &mut Contact, value: bool) {
    match c {
        Contact::Email { is_primary, .. } | Contact::Phone { is_primary, .. } => {
            *is_primary = value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Email, PasswordPolicy, Phone};

    fn email(s: &str, p: Option<bool>) -> SubmittedContact {
        SubmittedContact {
            contact: Contact::Email {
                email: Email::parse(s).expect("valid"),
                is_primary: false,
            },
            is_primary: p,
        }
    }

    fn pw() -> Password {
        PasswordPolicy::default().check("doctest1").expect("valid")
    }

    #[test]
    fn first_of_a_type_is_primary_by_default() {
        let phone = SubmittedContact {
            contact: Contact::Phone {
                phone: Phone::parse("+14155550100").expect("valid"),
                is_primary: false,
            },
            is_primary: None,
        };
        let a = NewAccount::new(
            vec![
                email("a@example.com", None),
                phone,
                email("b@example.com", None),
            ],
            None,
            None,
            None,
            pw(),
            AccountType::Standard,
        )
        .expect("valid");
        let flags: Vec<bool> = a.contacts.iter().map(Contact::is_primary).collect();
        assert_eq!(flags, vec![true, true, false]);
        assert_eq!(a.primary_email().map(Email::as_str), Some("a@example.com"));
    }

    #[test]
    fn explicit_primary_wins_and_two_are_refused() {
        let a = NewAccount::new(
            vec![
                email("a@example.com", None),
                email("b@example.com", Some(true)),
            ],
            None,
            None,
            None,
            pw(),
            AccountType::Standard,
        )
        .expect("valid");
        assert_eq!(a.primary_email().map(Email::as_str), Some("b@example.com"));

        let e = NewAccount::new(
            vec![
                email("a@example.com", Some(true)),
                email("b@example.com", Some(true)),
            ],
            None,
            None,
            None,
            pw(),
            AccountType::Standard,
        )
        .expect_err("two primaries");
        assert_eq!(e.field, "contacts[1][2]");
    }

    #[test]
    fn needs_a_contact_or_a_username_and_no_duplicates() {
        let e = NewAccount::new(vec![], None, None, None, pw(), AccountType::Standard)
            .expect_err("nothing to log in with");
        assert_eq!(e.field, "contacts");
        assert!(NewAccount::new(
            vec![],
            Some(Username::parse("doctest").expect("valid")),
            None,
            None,
            pw(),
            AccountType::Standard
        )
        .is_ok());
        let e = NewAccount::new(
            vec![email("a@example.com", None), email("A@EXAMPLE.com", None)],
            None,
            None,
            None,
            pw(),
            AccountType::Standard,
        )
        .expect_err("duplicate");
        assert_eq!(e.field, "contacts[1]");
    }
}
