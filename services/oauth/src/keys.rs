//! Token signing keys: ES256 (P-256, the default), RS256 (RSA 2048) or EdDSA (Ed25519)
//! key pairs, per `oauth.signing_alg`, generated with aws-lc-rs, kept in the
//! database encrypted (AES-256-GCM under the key-encryption key of
//! `oauth.key_encryption_key`, the key id as associated data), the newest one
//! signing. A rotation adds a new key and keeps the old ones
//! published in the JWKS until every token they signed has expired, so verifiers
//! never see a token whose key they cannot find. Every replica re-reads the keys
//! periodically: a rotation needs no restart.

use admit_store::partners::{self, SigningKeyRow};
use admit_store::Db;
use aws_lc_rs::aead;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("oauth.key_encryption_key must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")]
    NoKek,
    #[error("stored key {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error(transparent)]
    Store(#[from] admit_store::StoreError),
}

/// The key-encryption key: signing keys are stored sealed under it, so a copy of the
/// database alone does not let anyone sign tokens.
#[derive(Clone)]
pub struct Kek(Arc<aead::LessSafeKey>);

const SEALED_PREFIX: &str = "v1:";

impl Kek {
    /// From the base64 of 32 random bytes.
    pub fn from_base64(b64: &str) -> Result<Self, KeyError> {
        let raw = STANDARD.decode(b64.trim()).map_err(|_| KeyError::NoKek)?;
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &raw).map_err(|_| KeyError::NoKek)?;
        Ok(Self(Arc::new(aead::LessSafeKey::new(key))))
    }

    /// A new random key, as base64 (for a data directory's key file).
    pub fn generate_base64() -> Result<String, KeyError> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| KeyError::Generate)?;
        Ok(STANDARD.encode(raw))
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> Result<String, KeyError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Generate)?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(kid.as_bytes()),
                &mut data,
            )
            .map_err(|_| KeyError::Generate)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    fn open(&self, kid: &str, stored: &str) -> Result<Vec<u8>, KeyError> {
        let corrupt = |m: &str| KeyError::Corrupt(kid.to_owned(), m.to_owned());
        let sealed = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| corrupt("not sealed"))?;
        let raw = STANDARD
            .decode(sealed)
            .map_err(|e| corrupt(&e.to_string()))?;
        if raw.len() < aead::NONCE_LEN {
            return Err(corrupt("too short"));
        }
        let (nonce, data) = raw.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt("nonce"))?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, aead::Aad::from(kid.as_bytes()), &mut data)
            .map_err(|_| corrupt("cannot be opened with this key_encryption_key"))?;
        Ok(plain.to_vec())
    }
}

/// The keys in force at one moment. Built once per refresh: `EncodingKey`s parse the
/// private key, which must not happen per token.
pub struct KeySet {
    pub kid: String,
    /// The active key's algorithm.
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    /// Every published key by id, with its own algorithm (a token is verified with
    /// the algorithm of its key, never the one its header claims).
    pub decoding: HashMap<String, (DecodingKey, Algorithm)>,
    /// `{"keys": [...]}`, ready to serve.
    pub jwks: serde_json::Value,
}

/// Parses `oauth.signing_alg`.
pub fn algorithm(name: &str) -> Result<Algorithm, KeyError> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(KeyError::Corrupt(
            "oauth.signing_alg".into(),
            format!("{other} is not ES256, RS256 or EdDSA"),
        )),
    }
}

/// The RFC 8017 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (what jsonwebtoken
/// takes for RS256): the content of its third element, an OCTET STRING.
fn pkcs8_inner(der: &[u8]) -> Option<&[u8]> {
    // One DER element at `at`: (content start, content end).
    fn element(der: &[u8], at: usize) -> Option<(usize, usize)> {
        let first = *der.get(at + 1)?;
        let (len, start) = if first < 0x80 {
            (usize::from(first), at + 2)
        } else {
            let n = usize::from(first & 0x7f);
            let bytes = der.get(at + 2..at + 2 + n)?;
            (
                bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                at + 2 + n,
            )
        };
        Some((start, start.checked_add(len)?))
    }
    let (body, _) = element(der, 0)?; // SEQUENCE
    let (_, version_end) = element(der, body)?; // INTEGER 0
    let (_, alg_end) = element(der, version_end)?; // AlgorithmIdentifier
    if der.get(alg_end)? != &0x04 {
        return None;
    }
    let (key, key_end) = element(der, alg_end)?;
    der.get(key..key_end)
}

/// A new key of `alg`, as stored (the private part sealed under `kek`).
pub fn generate(alg: Algorithm, kek: &Kek) -> Result<SigningKeyRow, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    let kid = admit_domain::secret::identifier("k");
    let rng = SystemRandom::new();
    let (name, private, jwk) = match alg {
        Algorithm::ES256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generate)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|_| KeyError::Generate)?;
            // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(KeyError::Generate);
            }
            let jwk = serde_json::json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            });
            ("ES256", pkcs8.as_ref().to_vec(), jwk)
        }
        Algorithm::EdDSA => {
            let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Generate)?;
            let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| KeyError::Generate)?;
            let jwk = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            });
            ("EdDSA", pkcs8.as_ref().to_vec(), jwk)
        }
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Generate)?;
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|_| KeyError::Generate)?;
            let pkcs1 = pkcs8_inner(pkcs8.as_ref())
                .ok_or(KeyError::Generate)?
                .to_vec();
            let public = pair.public_key();
            let jwk = serde_json::json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            });
            ("RS256", pkcs1, jwk)
        }
        _ => return Err(KeyError::Generate),
    };
    let private_der = kek.seal(&kid, &private)?;
    Ok(SigningKeyRow {
        kid,
        alg: name.into(),
        private_der,
        public_jwk: jwk.to_string(),
        created_at: admit_store::now(),
        publish_until: None,
    })
}

/// The key set of `rows` (newest first), the first one signing.
pub fn build(rows: &[SigningKeyRow], kek: &Kek) -> Result<Option<KeySet>, KeyError> {
    let Some(active) = rows.first() else {
        return Ok(None);
    };
    let der = kek.open(&active.kid, &active.private_der)?;
    let active_alg = algorithm(&active.alg)?;
    let encoding = match active_alg {
        Algorithm::RS256 => EncodingKey::from_rsa_der(&der),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&der),
        _ => EncodingKey::from_ec_der(&der),
    };
    let mut decoding = HashMap::new();
    let mut jwks = Vec::new();
    for row in rows {
        let corrupt = |e: &dyn std::fmt::Display| KeyError::Corrupt(row.kid.clone(), e.to_string());
        let jwk: serde_json::Value =
            serde_json::from_str(&row.public_jwk).map_err(|e| corrupt(&e))?;
        let part = |k: &str| jwk[k].as_str().unwrap_or_default();
        let alg = algorithm(&row.alg)?;
        let key = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_components(part("n"), part("e")),
            Algorithm::EdDSA => DecodingKey::from_ed_components(part("x")),
            _ => DecodingKey::from_ec_components(part("x"), part("y")),
        }
        .map_err(|e| corrupt(&e))?;
        decoding.insert(row.kid.clone(), (key, alg));
        jwks.push(jwk);
    }
    Ok(Some(KeySet {
        kid: active.kid.clone(),
        algorithm: active_alg,
        encoding,
        decoding,
        jwks: serde_json::json!({ "keys": jwks }),
    }))
}

/// Adds a new signing key; the previous ones stay published for `publish_old`.
pub fn rotate(
    conn: &mut admit_store::AnyConnection,
    kek: &Kek,
    alg: Algorithm,
    publish_old: chrono::Duration,
) -> Result<String, KeyError> {
    let row = generate(alg, kek)?;
    let kid = row.kid.clone();
    partners::insert_signing_key(conn, &row)?;
    partners::retire_signing_keys_except(conn, &kid, admit_store::now() + publish_old)?;
    Ok(kid)
}

/// The keys of this replica, refreshed from the database.
#[derive(Clone)]
pub struct KeyRing {
    db: Db,
    kek: Kek,
    /// The algorithm of a first key (a change applies from the next rotation).
    alg: Algorithm,
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl KeyRing {
    /// Loads the keys, creating the first one if there is none.
    pub async fn load(db: Db, kek: Kek, alg: Algorithm) -> Result<Self, KeyError> {
        let set = Self::read(&db, &kek, alg, true).await?;
        Ok(Self {
            db,
            kek,
            alg,
            current: Arc::new(RwLock::new(Arc::new(set))),
        })
    }

    async fn read(db: &Db, kek: &Kek, alg: Algorithm, create: bool) -> Result<KeySet, KeyError> {
        let sealing = kek.clone();
        let rows = db
            .write(move |conn| {
                let now = admit_store::now();
                let mut rows = partners::published_signing_keys(conn, now)?;
                if rows.is_empty() && create {
                    let row = generate(alg, &sealing)
                        .map_err(|e| admit_store::StoreError::Internal(e.to_string()))?;
                    partners::insert_signing_key(conn, &row)?;
                    rows = partners::published_signing_keys(conn, now)?;
                }
                Ok(rows)
            })
            .await?;
        build(&rows, kek)?.ok_or(KeyError::Generate)
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub async fn refresh(&self) -> Result<(), KeyError> {
        let set = Arc::new(Self::read(&self.db, &self.kek, self.alg, true).await?);
        match self.current.write() {
            Ok(mut g) => *g = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }

    /// Re-reads the keys every `every` until `stop`.
    pub async fn run_refresh(self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh signing keys; keeping the current ones");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sealed_and_open_only_with_their_kek_and_kid() {
        let kek = Kek::from_base64(&Kek::generate_base64().expect("kek")).expect("kek");
        let row = generate(Algorithm::ES256, &kek).expect("key");
        assert!(row.private_der.starts_with(SEALED_PREFIX));
        let der = kek.open(&row.kid, &row.private_der).expect("opens");
        assert!(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).is_ok());
        assert!(kek.open("another-kid", &row.private_der).is_err());
        let other = Kek::from_base64(&Kek::generate_base64().expect("kek")).expect("kek");
        assert!(other.open(&row.kid, &row.private_der).is_err());
        assert!(Kek::from_base64("").is_err());
        for alg in [Algorithm::RS256, Algorithm::EdDSA, Algorithm::ES256] {
            let row = generate(alg, &kek).expect("key");
            let set = build(&[row], &kek).expect("builds").expect("a set");
            let mut h = jsonwebtoken::Header::new(alg);
            h.kid = Some(set.kid.clone());
            let t = jsonwebtoken::encode(&h, &serde_json::json!({"sub": "x"}), &set.encoding)
                .expect("signs");
            let (key, a) = &set.decoding[&set.kid];
            let mut v = jsonwebtoken::Validation::new(*a);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<serde_json::Value>(&t, key, &v).expect("verifies");
        }
        assert!(Kek::from_base64("c2hvcnQ=").is_err());
    }
}
