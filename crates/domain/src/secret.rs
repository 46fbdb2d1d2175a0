//! Machine secrets: client secrets, API keys, codes and tokens. They are random
//! (256 bits from the operating system's CSPRNG), shown once, and stored only as a
//! SHA-256 digest. A password hash would be wrong here: these values are not chosen
//! by people, and a slow hash would cap the token endpoint at a few dozen requests a
//! second.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new random secret: 32 bytes, base64url without padding (43 characters), with a
/// readable prefix that says what it is (`ak_` for API keys, secret scanners use it).
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A random identifier (not a secret): 16 bytes, hex.
pub fn identifier(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The digest stored in place of the secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The hex SHA-256 of bytes (a request body, for idempotency).
pub fn digest_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `secret` is the one whose digest is `stored`, in time independent of
/// where they differ.
pub fn verify(secret: &str, stored: &str) -> bool {
    let d = digest(secret);
    d.len() == stored.len() && bool::from(d.as_bytes().ct_eq(stored.as_bytes()))
}

/// The token of a link in an email (set your password, reset it): an HMAC-SHA-256
/// of the message id under the platform's link key. The service that writes the
/// message stores only [`digest`] of the token and the queue carries only the message
/// id, so neither the database nor the queue holds a usable link; the mailer derives
/// the token again when it renders the email. 256 bits, base64url.
pub fn link_token(link_key: &[u8], purpose: &str, message_id: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(link_key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(message_id.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A fingerprint of the link key that services publish so they can tell whether they
/// share one: HMAC-SHA-256 of a fixed label under the key, its first 16 bytes in hex.
/// It reveals nothing of the key (nor any link token: the label is no message id).
pub fn link_key_fingerprint(link_key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<Sha256>::new_from_slice(link_key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(b"admit link-key check");
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Purposes of [`link_token`].
pub const SET_PASSWORD: &str = "set-password";
pub const RESET_PASSWORD: &str = "reset-password";
/// The link of a "confirm your address" email.
pub const CONFIRM_EMAIL: &str = "confirm-email";
/// The code of a "confirm your phone" text message ([`numeric_code`]).
pub const CONFIRM_PHONE: &str = "confirm-phone";

/// Digits of a code sent by text message.
pub const CODE_DIGITS: usize = 6;

/// The code of a text message: [`CODE_DIGITS`] decimal digits taken from an HMAC of
/// the message id under the link key, as [`link_token`] does for links, so the queue
/// carries only the message id. (64 bits of the HMAC reduced modulo 10^6: the bias is
/// below 10^-13.)
pub fn numeric_code(link_key: &[u8], purpose: &str, message_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<Sha256>::new_from_slice(link_key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(message_id.as_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    let n = u64::from_be_bytes(first) % 10u64.pow(CODE_DIGITS as u32);
    format!("{n:0width$}", width = CODE_DIGITS)
}

/// What is stored of a short code: an HMAC under the link key of the row it belongs
/// to and the code, so a copy of the database alone does not give the codes away
/// (a plain digest of six digits would be reversed at once).
pub fn code_digest(link_key: &[u8], row_id: &str, code: &str) -> String {
    link_token(link_key, "code-digest", &format!("{row_id}\0{code}"))
}

/// Whether `code` is the one of `row_id` whose [`code_digest`] is `stored`, in time
/// independent of where they differ.
pub fn verify_code(link_key: &[u8], row_id: &str, code: &str, stored: &str) -> bool {
    let d = code_digest(link_key, row_id, code);
    d.len() == stored.len() && bool::from(d.as_bytes().ct_eq(stored.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_verify_against_their_digest() {
        let a = generate("ak_");
        let b = generate("ak_");
        assert_ne!(a, b);
        assert!(a.starts_with("ak_") && a.len() == 3 + 43);
        let d = digest(&a);
        assert_eq!(d.len(), 64);
        assert!(!d.contains(&a[3..]));
        assert!(verify(&a, &d));
        assert!(!verify(&b, &d));
        assert!(!verify(&a, "short"));
    }

    #[test]
    fn link_key_fingerprints_tell_keys_apart_and_hide_them() {
        let f = link_key_fingerprint(b"key-1");
        assert_eq!(f.len(), 32);
        assert_eq!(f, link_key_fingerprint(b"key-1"));
        assert_ne!(f, link_key_fingerprint(b"key-2"));
        assert!(!f.contains(&hex::encode(b"key-1")));
    }

    #[test]
    fn link_tokens_depend_on_key_purpose_and_message() {
        let t = link_token(b"key-1", SET_PASSWORD, "m1");
        assert_eq!(t.len(), 43);
        assert_eq!(t, link_token(b"key-1", SET_PASSWORD, "m1"));
        assert_ne!(t, link_token(b"key-2", SET_PASSWORD, "m1"));
        assert_ne!(t, link_token(b"key-1", SET_PASSWORD, "m2"));
        assert_ne!(t, link_token(b"key-1", "other", "m1"));
        assert_ne!(t, link_token(b"key-1", RESET_PASSWORD, "m1"));
    }

    #[test]
    fn codes_are_six_digits_derived_from_the_message_and_stored_keyed() {
        let c = numeric_code(b"key-1", CONFIRM_PHONE, "m1");
        assert_eq!(c.len(), CODE_DIGITS);
        assert!(c.chars().all(|d| d.is_ascii_digit()), "{c}");
        assert_eq!(c, numeric_code(b"key-1", CONFIRM_PHONE, "m1"));
        let others: std::collections::HashSet<String> = (0..50)
            .map(|i| numeric_code(b"key-1", CONFIRM_PHONE, &format!("m{i}")))
            .collect();
        assert!(others.len() > 40, "codes vary with the message");
        let d = code_digest(b"key-1", "row", &c);
        assert!(!d.contains(&c));
        assert!(verify_code(b"key-1", "row", &c, &d));
        assert!(!verify_code(b"key-2", "row", &c, &d));
        assert!(!verify_code(b"key-1", "other-row", &c, &d));
        assert!(!verify_code(b"key-1", "row", "000000x", &d));
    }
}
