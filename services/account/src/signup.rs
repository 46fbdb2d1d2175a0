//! `POST /account`, explicit method (SPEC.md §3): the request body becomes a
//! [`NewAccount`] here, at the edge, or an error naming the field.

use crate::error::ApiError;
use admit_domain::signup::SubmittedContact;
use admit_domain::{
    AccountType, Contact, ContactKind, Email, Locale, NewAccount, PasswordPolicy, Phone, Username,
};
use serde_json::{Map, Value};

const EXPLICIT_FIELDS: &[&str] = &[
    "contacts",
    "full_name",
    "locale",
    "password",
    "recaptcha",
    "username",
    "account_type",
];
const IMPLICIT_FIELDS: &[&str] = &[
    "access_token",
    "oauth_consumer_key",
    "oauth_consumer_secret",
    "provider_name",
    "expiration_time",
    "user_id",
];

/// Query parameters of `POST /account`.
#[derive(Debug, Clone, Copy)]
pub struct SignupOptions {
    pub auto_sign_in: bool,
    pub is_enabled: bool,
}

pub fn parse_options(query: &str) -> Result<SignupOptions, ApiError> {
    let mut opts = SignupOptions {
        auto_sign_in: false,
        is_enabled: true,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let target = match k {
            "auto_sign_in" => &mut opts.auto_sign_in,
            "is_enabled" => &mut opts.is_enabled,
            // Unknown query parameters are ignored, as HTTP APIs customarily do
            // (caches and proxies add their own).
            _ => continue,
        };
        *target = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(ApiError::invalid(k, "expected true or false")),
        };
    }
    Ok(opts)
}

pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "the body is a JSON object")),
    }
}

/// Whether the body asks for the implicit method (sign-up with a social provider's token).
pub fn is_implicit(body: &Map<String, Value>) -> bool {
    body.contains_key("access_token") || body.contains_key("provider_name")
}

/// The explicit method's body.
pub fn explicit(
    body: &Map<String, Value>,
    policy: &PasswordPolicy,
) -> Result<NewAccount, ApiError> {
    for key in body.keys() {
        if !EXPLICIT_FIELDS.contains(&key.as_str()) {
            let hint = if IMPLICIT_FIELDS.contains(&key.as_str()) {
                "belongs to the social sign-up, which takes access_token and provider_name"
            } else {
                "is not a field of this request"
            };
            return Err(ApiError::invalid(key.as_str(), format!("{key} {hint}")));
        }
    }
    let contacts = match body.get("contacts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| contact(i, item))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                "contacts",
                "expected a list of [name, value, is_primary]",
            ))
        }
    };
    if contacts.len() > 20 {
        return Err(ApiError::invalid("contacts", "at most 20 contacts"));
    }
    let username = opt_str(body, "username", 256)?
        .map(Username::parse)
        .transpose()?;
    let full_name = opt_str(body, "full_name", 1024)?.map(str::to_owned);
    let locale = opt_str(body, "locale", 64)?
        .map(Locale::parse)
        .transpose()?;
    let password = match body.get("password") {
        Some(Value::String(s)) => policy.check(s)?,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("password", "a password is required"))
        }
        Some(_) => return Err(ApiError::invalid("password", "expected a string")),
    };
    let account_type = match opt_str(body, "account_type", 64)? {
        None => AccountType::Standard,
        Some(s) => AccountType::parse(s)
            .ok_or_else(|| ApiError::invalid("account_type", "expected standard or test"))?,
    };
    recaptcha(body)?;
    Ok(NewAccount::new(
        contacts,
        username,
        full_name,
        locale,
        password,
        account_type,
    )?)
}

fn contact(i: usize, item: &Value) -> Result<SubmittedContact, ApiError> {
    let at = |j: usize| format!("contacts[{i}][{j}]");
    let Value::Array(parts) = item else {
        return Err(ApiError::invalid(
            format!("contacts[{i}]"),
            "expected [name, value, is_primary]",
        ));
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(ApiError::invalid(
            format!("contacts[{i}]"),
            "expected [name, value, is_primary]",
        ));
    }
    let Value::String(name) = &parts[0] else {
        return Err(ApiError::invalid(at(0), "expected EMAIL or PHONE"));
    };
    let kind = ContactKind::parse(name)
        .ok_or_else(|| ApiError::invalid(at(0), "expected EMAIL or PHONE"))?;
    let Value::String(value) = &parts[1] else {
        return Err(ApiError::invalid(at(1), "expected a string"));
    };
    if value.len() > 320 {
        return Err(ApiError::invalid(
            at(1),
            "a contact has at most 320 characters",
        ));
    }
    let is_primary = match parts.get(2) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::invalid(at(2), "expected true or false")),
    };
    let contact = match kind {
        ContactKind::Email => Contact::Email {
            email: Email::parse(value).map_err(|e| e.at(at(1)))?,
            is_primary: false,
        },
        ContactKind::Phone => Contact::Phone {
            phone: Phone::parse(value).map_err(|e| e.at(at(1)))?,
            is_primary: false,
        },
    };
    Ok(SubmittedContact {
        contact,
        is_primary,
    })
}

pub(crate) fn opt_str<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(ApiError::invalid(
            field,
            format!("at most {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(field, "expected a string")),
    }
}

/// The body's `recaptcha` object, if it has one.
pub fn recaptcha(body: &Map<String, Value>) -> Result<Option<crate::captcha::Submitted>, ApiError> {
    let v = match body.get("recaptcha") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let Value::Object(m) = v else {
        return Err(ApiError::invalid(
            "recaptcha",
            "expected {private_key, challenge, response}",
        ));
    };
    for key in ["private_key", "challenge", "response"] {
        match m.get(key) {
            Some(Value::String(s)) if s.len() <= 4096 => {}
            Some(Value::String(_)) => {
                return Err(ApiError::invalid(
                    format!("recaptcha.{key}"),
                    "at most 4096 characters",
                ))
            }
            _ => {
                return Err(ApiError::invalid(
                    format!("recaptcha.{key}"),
                    "expected a string",
                ))
            }
        }
    }
    if let Some(key) = m
        .keys()
        .find(|k| !["private_key", "challenge", "response"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            format!("recaptcha.{key}"),
            "is not a field of recaptcha (private_key, challenge, response)",
        ));
    }
    Ok(Some(crate::captcha::Submitted {
        response: m["response"].as_str().unwrap_or_default().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(body: Value) -> String {
        let map = match body {
            Value::Object(m) => m,
            _ => panic!("object"),
        };
        match explicit(&map, &PasswordPolicy::default()) {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        let ok = json!({"contacts":[["EMAIL","Doc@Example.com",true]],"full_name":"Doc Test","locale":"eng-US","password":"doctest1","username":"doctest"});
        assert!(explicit(ok.as_object().expect("object"), &PasswordPolicy::default()).is_ok());
        assert_eq!(
            field_of(json!({"contacts":[["EMAIL","doc@"]],"password":"doctest1"})),
            "contacts[0][1]"
        );
        assert_eq!(
            field_of(json!({"contacts":[["FAX","x"]],"password":"doctest1"})),
            "contacts[0][0]"
        );
        assert_eq!(
            field_of(json!({"contacts":[["PHONE","12345"]],"password":"doctest1"})),
            "contacts[0][1]"
        );
        assert_eq!(
            field_of(json!({"username":"doctest","password":123456})),
            "password"
        );
        assert_eq!(field_of(json!({"username":"doctest"})), "password");
        assert_eq!(field_of(json!({"password":"doctest1"})), "contacts");
        assert_eq!(
            field_of(json!({"username":"doctest","password":"doctest1","locale":"english"})),
            "locale"
        );
        assert_eq!(
            field_of(json!({"username":"doctest","password":"doctest1","account_type":"gold"})),
            "account_type"
        );
        assert_eq!(
            field_of(json!({"username":"doctest","password":"doctest1","colour":"red"})),
            "colour"
        );
        assert_eq!(
            field_of(
                json!({"username":"doctest","password":"doctest1","recaptcha":{"challenge":"x"}})
            ),
            "recaptcha.private_key"
        );
        assert_eq!(
            field_of(
                json!({"contacts":[["EMAIL","a@example.com",true],["EMAIL","b@example.com",true]],"password":"doctest1"})
            ),
            "contacts[1][2]"
        );
    }

    #[test]
    fn options() {
        let o = parse_options("auto_sign_in=true&is_enabled=0").expect("valid");
        assert!(o.auto_sign_in && !o.is_enabled);
        assert!(
            matches!(parse_options("is_enabled=maybe"), Err(ApiError::InvalidArgument { field, .. }) if field == "is_enabled")
        );
    }
}
