//! The fuzz targets: properties of the parsers over generated inputs (see src/lib.rs
//! for the number of cases). Each `#[test]` is one target; a crash or a broken
//! property found by one becomes an explicit regression `#[test]` in this file, and a
//! fix (none has been found so far).

use admit_domain::locale::{iso639_1, EMAIL_LANGUAGES};
use admit_domain::{secret, Email, Locale, Phone};
use admit_fuzz::fuzz;
use admit_oauth::keys::{self, Kek, KeySet};
use admit_oauth::token::Issued;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

// --- redirect URIs (services/oauth authorize) ----------------------------------------

fn uri() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(vec!["https", "http", "com.example.app"]),
        proptest::sample::select(vec![
            "example.com",
            "app.example.org",
            "127.0.0.1",
            "localhost",
        ]),
        proptest::option::of(1u16..=u16::MAX),
        "(/[a-zA-Z0-9._~-]{0,8}){0,4}",
        proptest::option::of("[a-z]{1,5}=[a-zA-Z0-9]{0,5}"),
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{path}{query}")
        })
}

/// A change that any lenient comparison (case, slashes, ports, encoding) would
/// forgive, or any other edit.
#[derive(Debug, Clone)]
enum UriEdit {
    FlipCase(Index),
    TrailingSlash,
    AddQuery,
    AddFragment,
    Userinfo,
    Port(u16),
    PercentEncode(Index),
    DotSegment,
    Insert(Index, char),
    Delete(Index),
}

fn uri_edit() -> impl Strategy<Value = UriEdit> {
    prop_oneof![
        any::<Index>().prop_map(UriEdit::FlipCase),
        Just(UriEdit::TrailingSlash),
        Just(UriEdit::AddQuery),
        Just(UriEdit::AddFragment),
        Just(UriEdit::Userinfo),
        any::<u16>().prop_map(UriEdit::Port),
        any::<Index>().prop_map(UriEdit::PercentEncode),
        Just(UriEdit::DotSegment),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| UriEdit::Insert(i, c)),
        any::<Index>().prop_map(UriEdit::Delete),
    ]
}

/// Where the authority of `uri` ends (the path, query or end).
fn authority_range(uri: &str) -> (usize, usize) {
    let start = uri.find("://").map_or(0, |i| i + 3);
    let end = uri[start..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |i| start + i);
    (start, end)
}

fn edit_uri(uri: &str, edit: &UriEdit) -> String {
    let chars: Vec<(usize, char)> = uri.char_indices().collect();
    let (a_start, a_end) = authority_range(uri);
    let mut out = uri.to_owned();
    match edit {
        UriEdit::FlipCase(i) => {
            let letters: Vec<&(usize, char)> = chars
                .iter()
                .filter(|(_, c)| c.is_ascii_alphabetic())
                .collect();
            if !letters.is_empty() {
                let (at, c) = *letters[i.index(letters.len())];
                let flipped = if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                out.replace_range(at..at + 1, &flipped.to_string());
            }
        }
        UriEdit::TrailingSlash => {
            if out.ends_with('/') {
                out.pop();
            } else {
                out.push('/');
            }
        }
        UriEdit::AddQuery => out.push_str(if uri.contains('?') { "&x=1" } else { "?x=1" }),
        UriEdit::AddFragment => out.push_str("#f"),
        UriEdit::Userinfo => out.insert_str(a_start, "user@"),
        UriEdit::Port(p) => {
            let authority = &uri[a_start..a_end];
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            out.replace_range(a_start..a_end, &format!("{host}:{p}"));
        }
        UriEdit::PercentEncode(i) => {
            let path: Vec<&(usize, char)> = chars
                .iter()
                .filter(|(at, c)| *at >= a_end && c.is_ascii_alphanumeric())
                .collect();
            if !path.is_empty() {
                let (at, c) = *path[i.index(path.len())];
                out.replace_range(at..at + 1, &format!("%{:02X}", c as u32));
            }
        }
        UriEdit::DotSegment => out.insert_str(a_end, "/."),
        UriEdit::Insert(i, c) => {
            let at = chars
                .get(i.index(chars.len() + 1))
                .map_or(uri.len(), |x| x.0);
            out.insert(at, *c);
        }
        UriEdit::Delete(i) => {
            if !chars.is_empty() {
                let (at, c) = chars[i.index(chars.len())];
                out.replace_range(at..at + c.len_utf8(), "");
            }
        }
    }
    out
}

#[test]
fn redirect_uri_comparison_is_exact() {
    use admit_oauth::authorize::redirect_uri_of;
    let strategy = (
        proptest::collection::vec(uri(), 1..4),
        any::<Index>(),
        uri_edit(),
    );
    fuzz("redirect_uri", strategy, |(registered, pick, edit)| {
        let chosen = &registered[pick.index(registered.len())];
        // A registered URI matches itself ...
        prop_assert_eq!(
            redirect_uri_of(&registered, Some(chosen)),
            Ok(chosen.clone())
        );
        // ... and nothing else, however close.
        let edited = edit_uri(chosen, &edit);
        if !registered.contains(&edited) {
            prop_assert_eq!(
                redirect_uri_of(&registered, Some(&edited)),
                Err("authorize-redirect-unregistered"),
                "{:?} was taken for one of {:?}",
                edited,
                registered
            );
        }
        // No redirect_uri: only a client with exactly one registered.
        let none = redirect_uri_of(&registered, None);
        if registered.len() == 1 {
            prop_assert_eq!(none, Ok(registered[0].clone()));
        } else {
            prop_assert_eq!(none, Err("authorize-no-redirect"));
        }
        Ok(())
    });
}

#[test]
fn redirect_uri_arbitrary_strings_match_only_themselves() {
    use admit_oauth::authorize::redirect_uri_of;
    let strategy = (proptest::collection::vec(".{0,40}", 0..3), ".{0,40}");
    fuzz(
        "redirect_uri_arbitrary",
        strategy,
        |(registered, requested)| {
            let got = redirect_uri_of(&registered, Some(&requested));
            prop_assert_eq!(got.is_ok(), registered.contains(&requested));
            if let Ok(u) = got {
                prop_assert_eq!(u, requested);
            }
            Ok(())
        },
    );
}

// --- email and phone (crates/domain contact.rs) ---------------------------------------

fn email_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]{1,20}@[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}",
        "\"[ a-zA-Z0-9@.]{0,10}\"@[a-zA-Z0-9-]{1,12}\\.[a-zA-Z]{2,5}",
        ".{0,30}@.{0,30}",
        ".{0,60}",
    ]
}

#[test]
fn email_parse_display_parse_is_stable_and_normalising_is_idempotent() {
    fuzz("email", email_like(), |raw| {
        let Ok(email) = Email::parse(&raw) else {
            return Ok(());
        };
        prop_assert_eq!(email.as_str(), raw.as_str());
        // parse -> display -> parse gives the same address.
        let again = Email::parse(email.as_str());
        prop_assert_eq!(again.as_ref(), Ok(&email));
        // The normalised form is an address whose normalised form is itself.
        let norm = email.normalized();
        let parsed_norm = Email::parse(&norm);
        prop_assert!(
            parsed_norm.is_ok(),
            "the normalised form {norm:?} is refused"
        );
        if let Ok(n) = parsed_norm {
            prop_assert_eq!(n.normalized(), norm.clone());
        }
        prop_assert_eq!(
            Email::parse(&raw.to_ascii_uppercase()).map(|e| e.normalized()),
            Ok(norm)
        );
        // serde (the API's JSON) goes through parse as well.
        let text = serde_json::to_string(&email).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Email =
            serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, email);
        Ok(())
    });
}

#[test]
fn phone_parse_is_e164_and_stable() {
    let strategy = prop_oneof!["\\+[0-9 .()-]{0,24}", "[+0-9]{0,20}", ".{0,24}"];
    fuzz("phone", strategy, |raw| {
        let Ok(phone) = Phone::parse(&raw) else {
            return Ok(());
        };
        let s = phone.as_str();
        prop_assert!(s.starts_with('+'));
        let digits = &s[1..];
        prop_assert!((8..=15).contains(&digits.len()), "{s}");
        prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'));
        prop_assert_eq!(Phone::parse(s), Ok(phone.clone()));
        Ok(())
    });
}

// --- locales (crates/domain locale.rs) -----------------------------------------------

#[test]
fn locale_parse_never_panics_and_accepted_values_round_trip() {
    let strategy = prop_oneof![
        "[a-zA-Z]{3}(-[a-zA-Z]{2})?",
        "[a-z]{2,4}([-_][a-zA-Z]{1,3}){0,2}",
        ".{0,12}",
    ];
    fuzz("locale", strategy, |raw| {
        let _ = iso639_1(&raw);
        let _ = admit_runtime::i18n::Lang::of_locale(&raw);
        let Ok(locale) = Locale::parse(&raw) else {
            return Ok(());
        };
        let s = locale.as_str();
        prop_assert!(s.eq_ignore_ascii_case(&raw), "{raw:?} became {s:?}");
        let (lang, country) = s.split_once('-').map_or((s, None), |(l, c)| (l, Some(c)));
        prop_assert!(lang.len() == 3 && lang.bytes().all(|b| b.is_ascii_lowercase()));
        if let Some(c) = country {
            prop_assert!(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
        }
        prop_assert_eq!(Locale::parse(s), Ok(locale.clone()));
        Ok(())
    });
}

// --- the batch reader (services/account batch.rs) ------------------------------------

use admit_account::batch::FIELDS;

fn plans() -> HashSet<String> {
    ["PLAN-A".to_owned(), "PLAN-B".to_owned()]
        .into_iter()
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[A-Za-z_]{1,10}|Email|BikePlanCode", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A user row as a partner writes it: mostly right, sometimes not.
fn user_row() -> impl Strategy<Value = Value> {
    let text = |good: BoxedStrategy<String>| {
        prop_oneof![
            4 => good.prop_map(Value::String),
            1 => Just(Value::Null),
            1 => any::<i64>().prop_map(|n| json!(n)),
            1 => ".{0,130}".prop_map(Value::String),
        ]
    };
    (
        text(email_like().boxed()),
        text(prop_oneof!["PLAN-A", "PLAN-B", "PLAN-C"].boxed()),
        text(prop_oneof!["EN", "fr", "De", " nl ", "xx", "eng"].boxed()),
        text("[A-Za-z ]{0,20}".boxed()),
        text("[A-Z0-9]{0,10}".boxed()),
        proptest::option::of(("[A-Za-z]{1,8}", json_value())),
        proptest::sample::subsequence(FIELDS, 0..=FIELDS.len()),
    )
        .prop_map(|(email, plan, lang, name, id, extra, absent)| {
            let mut m = serde_json::Map::new();
            m.insert("Email".into(), email);
            m.insert("BikePlanCode".into(), plan);
            m.insert("Language".into(), lang);
            m.insert("FirstName".into(), name);
            m.insert("partner_EmployeeID".into(), id);
            for f in absent.iter().take(2) {
                m.remove(*f);
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

fn batch_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        user_row().prop_map(|u| json!({ "user": u })),
        proptest::collection::vec(user_row(), 0..12).prop_map(|us| json!({ "users": us })),
        json_value().prop_map(|v| json!({ "users": v })),
        json_value(),
    ]
}

const BATCH_MAX: usize = 8;

#[test]
fn batch_reader_reads_every_row_or_refuses_the_whole() {
    use admit_account::batch::read_batch;
    let plans = plans();
    fuzz("batch_reader", batch_body(), |body| {
        let bytes = serde_json::to_vec(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let read = read_batch(&bytes, BATCH_MAX, &plans);
        let rows: Vec<&Value> = match (body.get("user"), body.get("users")) {
            (Some(u), None) if body.as_object().is_some_and(|m| m.len() == 1) => vec![u],
            (None, Some(Value::Array(l)))
                if body.as_object().is_some_and(|m| m.len() == 1)
                    && (1..=BATCH_MAX).contains(&l.len()) =>
            {
                l.iter().collect()
            }
            _ => {
                prop_assert!(read.is_err(), "{body} was read");
                return Ok(());
            }
        };
        let read = read.map_err(|e| TestCaseError::fail(format!("{body} refused: {e:?}")))?;
        // Every row is answered, in order: none is dropped.
        prop_assert_eq!(read.len(), rows.len());
        for (row, got) in rows.iter().zip(&read) {
            match got {
                Ok(norm) => {
                    let m = row.as_object();
                    prop_assert!(m.is_some());
                    let m = m.map(|m| m.keys().all(|k| FIELDS.contains(&k.as_str())));
                    prop_assert_eq!(m, Some(true), "a row with an unknown field passed");
                    let email = row["Email"].as_str().map(str::trim).unwrap_or_default();
                    prop_assert_eq!(
                        Email::parse(email).map(|e| e.normalized()),
                        Ok(norm.clone())
                    );
                    let plan = row["BikePlanCode"].as_str().map(str::trim);
                    prop_assert!(plan.is_some_and(|p| plans.contains(p)));
                }
                Err(reasons) => prop_assert!(!reasons.is_empty(), "a failed row without a reason"),
            }
        }
        Ok(())
    });
}

#[test]
fn batch_reader_refuses_a_body_it_cannot_read_whole() {
    use admit_account::batch::read_batch;
    let plans = plans();
    let strategy = (batch_body(), any::<Index>(), "[^ \t\r\n]{1,4}");
    fuzz("batch_reader_cut", strategy, |(body, cut, junk)| {
        let bytes = serde_json::to_vec(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Any prefix is refused whole, and so is the body with something after it.
        let at = cut.index(bytes.len());
        prop_assert!(read_batch(&bytes[..at], BATCH_MAX, &plans).is_err());
        let mut longer = bytes.clone();
        longer.extend_from_slice(junk.as_bytes());
        prop_assert!(read_batch(&longer, BATCH_MAX, &plans).is_err());
        Ok(())
    });
}

#[test]
fn batch_reader_never_panics_on_bytes() {
    use admit_account::batch::read_batch;
    let plans = plans();
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "\\{\"users?\": ?[\\[\\]{}\",:a-zA-Z0-9@. ]{0,60}".prop_map(String::into_bytes),
    ];
    fuzz("batch_reader_bytes", strategy, |bytes| {
        if let Ok(rows) = read_batch(&bytes, BATCH_MAX, &plans) {
            let v: Result<Value, _> = serde_json::from_slice(&bytes);
            prop_assert!(v.is_ok_and(|v| v.is_object()));
            prop_assert!((1..=BATCH_MAX).contains(&rows.len()));
        }
        Ok(())
    });
}

// --- tokens: JWT access tokens (oauth introspect, account partner) and opaque ones ---

const ISSUER: &str = "http://127.0.0.1:9";

struct Keys {
    sets: Vec<KeySet>,
}

fn key_sets() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let kek = Kek::generate_base64()
            .and_then(|b| Kek::from_base64(&b))
            .expect("a key-encryption key");
        let sets = [Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| {
                let row = keys::generate(alg, &kek).expect("a signing key");
                keys::build(&[row], &kek)
                    .expect("a key set")
                    .expect("one key")
            })
            .collect();
        Keys { sets }
    })
}

fn sign(keys: &KeySet, sub: &str) -> String {
    admit_oauth::token::sign_with(
        keys,
        ISSUER,
        ISSUER,
        &Issued {
            sub,
            client_id: "client-1",
            partner_id: "partner-1",
            scope: "users:write",
            grant_id: None,
            ttl: 600,
        },
    )
    .expect("signed")
}

#[derive(Debug, Clone)]
enum TokenEdit {
    Replace(Index, char),
    Delete(Index),
    Insert(Index, char),
    Truncate(Index),
    Append(String),
}

fn token_edit() -> impl Strategy<Value = TokenEdit> {
    let ch = prop_oneof![
        8 => proptest::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()),
        2 => prop_oneof![Just('-'), Just('_'), Just('.'), Just('='), Just('+'), Just('/'), Just(' ')],
        1 => any::<char>(),
    ];
    prop_oneof![
        (any::<Index>(), ch.clone()).prop_map(|(i, c)| TokenEdit::Replace(i, c)),
        any::<Index>().prop_map(TokenEdit::Delete),
        (any::<Index>(), ch).prop_map(|(i, c)| TokenEdit::Insert(i, c)),
        any::<Index>().prop_map(TokenEdit::Truncate),
        "[A-Za-z0-9=. -]{1,4}".prop_map(TokenEdit::Append),
    ]
}

/// `token` with the edit (ASCII tokens: byte offsets are char offsets).
fn edit_token(token: &str, edit: &TokenEdit) -> String {
    let mut out = token.to_owned();
    match edit {
        TokenEdit::Replace(i, c) => {
            let at = i.index(token.len());
            out.replace_range(at..at + 1, &c.to_string());
        }
        TokenEdit::Delete(i) => {
            out.remove(i.index(token.len()));
        }
        TokenEdit::Insert(i, c) => out.insert(i.index(token.len() + 1), *c),
        TokenEdit::Truncate(i) => out.truncate(i.index(token.len())),
        TokenEdit::Append(s) => out.push_str(s),
    }
    out
}

#[test]
fn oauth_access_tokens_verify_and_no_mutation_does() {
    use admit_oauth::introspect::verify_with;
    let keys = key_sets();
    let tokens: Vec<(usize, String)> = keys
        .sets
        .iter()
        .enumerate()
        .map(|(i, k)| (i, sign(k, "client-1")))
        .collect();
    for (i, t) in &tokens {
        let claims = verify_with(&keys.sets[*i], ISSUER, ISSUER, t).expect("our token verifies");
        assert_eq!(claims["partner_id"], "partner-1");
        assert!(verify_with(&keys.sets[*i], ISSUER, "http://other", t).is_none());
        assert!(verify_with(&keys.sets[*i], "http://other", ISSUER, t).is_none());
        // Another key set (another key id) does not know it.
        assert!(verify_with(&keys.sets[1 - *i], ISSUER, ISSUER, t).is_none());
    }
    let strategy = (0..tokens.len(), token_edit());
    fuzz("oauth_jwt_mutation", strategy, |(which, edit)| {
        let (set, token) = &tokens[which];
        let edited = edit_token(token, &edit);
        if edited != *token {
            prop_assert!(
                verify_with(&keys.sets[*set], ISSUER, ISSUER, &edited).is_none(),
                "a mutated token verified: {edited}"
            );
        }
        Ok(())
    });
}

#[test]
fn oauth_token_verifier_never_panics_on_arbitrary_input() {
    use admit_oauth::introspect::verify_with;
    let keys = key_sets();
    let strategy = prop_oneof![
        ".{0,80}",
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
        proptest::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // Header and claims of our shape, with a made-up signature.
        (json_value(), json_value(), "[A-Za-z0-9_-]{0,90}")
            .prop_map(|(h, c, s)| { format!("{}.{}.{s}", b64(&h), b64(&c)) }),
    ];
    fuzz("oauth_jwt_arbitrary", strategy, |raw| {
        for set in &keys.sets {
            prop_assert!(verify_with(set, ISSUER, ISSUER, &raw).is_none());
        }
        Ok(())
    });
}

fn b64(v: &Value) -> String {
    base64_url(v.to_string().as_bytes())
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn partner_key(set: &KeySet) -> DecodingKey {
    let jwks: JwkSet = serde_json::from_value(set.jwks.clone()).expect("a JWKS");
    DecodingKey::from_jwk(jwks.find(&set.kid).expect("the active key")).expect("a decoding key")
}

#[test]
fn partner_bearer_tokens_verify_and_no_mutation_does() {
    use admit_account::partner::{jwt_key_id, partner_of_jwt, AuthError};
    let keys = key_sets();
    let cases: Vec<(DecodingKey, String)> = keys
        .sets
        .iter()
        .map(|s| (partner_key(s), sign(s, "client-1")))
        .collect();
    for (set, (key, token)) in keys.sets.iter().zip(&cases) {
        assert_eq!(jwt_key_id(token), Ok(Some(set.kid.clone())));
        let p = partner_of_jwt(token, key, ISSUER).expect("our token is a partner's");
        assert_eq!(p.partner_id, "partner-1");
        // A token issued to a user (sub is not the client) is not a partner's.
        let user_token = sign(set, "acc_someone");
        assert_eq!(
            partner_of_jwt(&user_token, key, ISSUER),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            partner_of_jwt(token, key, "http://other"),
            Err(AuthError::Invalid)
        );
    }
    let strategy = (0..cases.len(), token_edit());
    fuzz("partner_jwt_mutation", strategy, |(which, edit)| {
        let (key, token) = &cases[which];
        let edited = edit_token(token, &edit);
        let _ = jwt_key_id(&edited);
        if edited != *token {
            prop_assert_eq!(
                partner_of_jwt(&edited, key, ISSUER),
                Err(AuthError::Invalid),
                "a mutated token was taken: {}",
                edited
            );
        }
        Ok(())
    });
}

#[test]
fn opaque_secrets_verify_only_themselves() {
    let strategy = (
        prop_oneof![Just("rt_"), Just("ak_"), Just("cs_"), Just("")],
        token_edit(),
        ".{0,70}",
    );
    fuzz("opaque_tokens", strategy, |(prefix, edit, arbitrary)| {
        let token = secret::generate(prefix);
        let stored = secret::digest(&token);
        prop_assert!(secret::verify(&token, &stored));
        let edited = edit_token(&token, &edit);
        if edited != token {
            prop_assert!(!secret::verify(&edited, &stored), "{edited} verified");
        }
        prop_assert_eq!(secret::verify(&arbitrary, &stored), arbitrary == token);
        // A stored value that is not a digest verifies nothing.
        prop_assert!(!secret::verify(&token, &arbitrary) || arbitrary == stored);
        Ok(())
    });
}

#[test]
fn bearer_header_reader() {
    use admit_account::bearer_credential;
    let strategy = (
        prop_oneof![
            "[bB][eE][aA][rR][eE][rR] ",
            "Basic ",
            "Bearer",
            "Token ",
            ".{0,8}"
        ],
        "[A-Za-z0-9._~+/=-]{0,60}",
        "[ \t]{0,2}",
    );
    fuzz("bearer_header", strategy, |(scheme, credential, pad)| {
        let header = format!("{scheme}{pad}{credential}{pad}");
        let got = bearer_credential(&header);
        if scheme.eq_ignore_ascii_case("bearer ") && header.len() > 7 {
            prop_assert_eq!(got, Some(credential.as_str()));
        } else if !header
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
        {
            prop_assert_eq!(got, None);
        }
        Ok(())
    });
}

// --- Accept-Language (crates/runtime i18n.rs) ----------------------------------------

fn accepted(header: &[u8]) -> Option<Option<&'static str>> {
    let value = actix_web::http::header::HeaderValue::from_bytes(header).ok()?;
    let req = actix_web::test::TestRequest::default()
        .insert_header(("Accept-Language", value))
        .to_http_request();
    Some(admit_runtime::i18n::Lang::accepted(&req).map(|l| l.as_str()))
}

#[test]
fn accept_language_picks_the_heaviest_of_ours() {
    let tag = prop_oneof![
        "en|fr|de|nl|EN|Fr|dE|NL",
        "(en|fr|de|nl)-[A-Z]{2}",
        "es|it|pt-BR|zh-Hant-TW|zz|english",
        Just("*".to_owned()),
    ];
    let strategy = proptest::collection::vec(
        (
            tag,
            prop_oneof![0u16..=1000, Just(1000u16), Just(0u16)],
            any::<bool>(),
        ),
        0..6,
    );
    fuzz("accept_language", strategy, |prefs| {
        let header = prefs
            .iter()
            .map(|(t, q, bare)| match (q, bare) {
                (1000, true) => t.clone(),
                (1000, false) => format!("{t};q=1"),
                (q, _) => format!("{t};q=0.{q:03}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut by_weight: Vec<&(String, u16, bool)> =
            prefs.iter().filter(|(_, q, _)| *q > 0).collect();
        by_weight.sort_by_key(|(_, q, _)| std::cmp::Reverse(*q));
        let expected = by_weight.iter().find_map(|(t, _, _)| {
            let primary = t.split('-').next().unwrap_or_default();
            EMAIL_LANGUAGES
                .iter()
                .find(|l| l.eq_ignore_ascii_case(primary) && t != "*")
                .copied()
        });
        prop_assert_eq!(accepted(header.as_bytes()), Some(expected), "{}", header);
        Ok(())
    });
}

#[test]
fn accept_language_never_panics() {
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..60),
        "[a-zA-Z*;=q0-9., -]{0,40}".prop_map(String::into_bytes),
    ];
    fuzz("accept_language_bytes", strategy, |bytes| {
        if let Some(got) = accepted(&bytes) {
            prop_assert!(got.is_none_or(|l| EMAIL_LANGUAGES.contains(&l)));
        }
        Ok(())
    });
}

// --- the forms of the pages (account pages.rs, oauth authorize.rs, oauth token.rs) ---

#[test]
fn login_and_signup_forms_read_what_was_sent() {
    use admit_account::pages::{read_login_form, read_signup_form};
    let strategy = (
        proptest::collection::vec(any::<String>(), 5),
        proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4], 0..=5),
        proptest::collection::vec(any::<u8>(), 0..80),
    );
    fuzz("page_forms", strategy, |(values, present, bytes)| {
        let names = ["csrf_token", "return_to", "login", "password"];
        let pairs: Vec<(&str, &str)> = present
            .iter()
            .filter(|i| **i < 4)
            .map(|i| (names[*i], values[*i].as_str()))
            .collect();
        let body =
            serde_urlencoded::to_string(&pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let read = read_login_form(body.as_bytes());
        let expected: Vec<String> = (0..4)
            .map(|i| {
                if present.contains(&i) {
                    values[i].clone()
                } else {
                    String::new()
                }
            })
            .collect();
        prop_assert_eq!(read.map(|r| r.to_vec()), Some(expected));
        let names = ["csrf_token", "return_to", "email", "full_name", "password"];
        let pairs: Vec<(&str, &str)> = present
            .iter()
            .map(|i| (names[*i], values[*i].as_str()))
            .collect();
        let body =
            serde_urlencoded::to_string(&pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected: Vec<String> = (0..5)
            .map(|i| {
                if present.contains(&i) {
                    values[i].clone()
                } else {
                    String::new()
                }
            })
            .collect();
        prop_assert_eq!(
            read_signup_form(body.as_bytes()).map(|r| r.to_vec()),
            Some(expected)
        );
        // Whatever else is sent, the readers answer (None for what is not a form).
        let _ = read_login_form(&bytes);
        let _ = read_signup_form(&bytes);
        Ok(())
    });
}

use admit_oauth::authorize::PARAMS as AUTHORIZE_PARAMS;

fn form_pairs() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        prop_oneof![
            proptest::sample::select(AUTHORIZE_PARAMS).prop_map(str::to_owned),
            "[a-z_]{1,10}",
            ".{1,6}",
        ],
        any::<String>(),
        0..8,
    )
}

#[test]
fn authorize_and_token_forms_read_what_was_sent_and_refuse_repeats() {
    use admit_oauth::authorize::read_params;
    use admit_oauth::token::read_form;
    let strategy = (form_pairs(), any::<Index>(), any::<String>(), ".{0,80}");
    fuzz("oauth_forms", strategy, |(pairs, pick, other, raw)| {
        let body =
            serde_urlencoded::to_string(&pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let as_map = |m: std::collections::HashMap<String, String>| {
            m.into_iter().collect::<BTreeMap<_, _>>()
        };
        prop_assert_eq!(read_params(&body).map(as_map), Ok(pairs.clone()));
        prop_assert_eq!(read_form(body.as_bytes()).map(as_map), Some(pairs.clone()));
        // A parameter twice: the token endpoint refuses any; authorize the ones it knows.
        if let Some((k, _)) = pairs.iter().nth(pick.index(pairs.len().max(1))) {
            let mut twice: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            twice.push((k.as_str(), other.as_str()));
            let body = serde_urlencoded::to_string(&twice)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(read_form(body.as_bytes()), None);
            prop_assert_eq!(
                read_params(&body).is_err(),
                AUTHORIZE_PARAMS.contains(&k.as_str())
            );
        }
        let _ = read_params(&raw);
        let _ = read_form(raw.as_bytes());
        Ok(())
    });
}
