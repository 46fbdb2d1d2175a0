//! Token signing keys: ES256 (P-256) key pairs generated with aws-lc-rs, kept in the
//! database, the newest one signing. A rotation adds a new key and keeps the old ones
//! published in the JWKS until every token they signed has expired, so verifiers
//! never see a token whose key they cannot find. Every replica re-reads the keys
//! periodically: a rotation needs no restart.

use admit_store::partners::{self, SigningKeyRow};
use admit_store::Db;
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
    #[error("stored key {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error(transparent)]
    Store(#[from] admit_store::StoreError),
}

/// The keys in force at one moment. Built once per refresh: `EncodingKey`s parse the
/// private key, which must not happen per token.
pub struct KeySet {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: HashMap<String, DecodingKey>,
    /// `{"keys": [...]}`, ready to serve.
    pub jwks: serde_json::Value,
}

/// A new ES256 key as stored.
pub fn generate_es256() -> Result<SigningKeyRow, KeyError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::Generate)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| KeyError::Generate)?;
    // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    if point.len() != 65 {
        return Err(KeyError::Generate);
    }
    let kid = admit_domain::secret::identifier("k");
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    Ok(SigningKeyRow {
        kid,
        alg: "ES256".into(),
        private_der: STANDARD.encode(pkcs8.as_ref()),
        public_jwk: jwk.to_string(),
        created_at: admit_store::now(),
        publish_until: None,
    })
}

/// The key set of `rows` (newest first), the first one signing.
pub fn build(rows: &[SigningKeyRow]) -> Result<Option<KeySet>, KeyError> {
    let Some(active) = rows.first() else {
        return Ok(None);
    };
    let der = STANDARD
        .decode(&active.private_der)
        .map_err(|e| KeyError::Corrupt(active.kid.clone(), e.to_string()))?;
    let encoding = EncodingKey::from_ec_der(&der);
    let mut decoding = HashMap::new();
    let mut jwks = Vec::new();
    for row in rows {
        let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk)
            .map_err(|e| KeyError::Corrupt(row.kid.clone(), e.to_string()))?;
        let (x, y) = (
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default(),
        );
        let key = DecodingKey::from_ec_components(x, y)
            .map_err(|e| KeyError::Corrupt(row.kid.clone(), e.to_string()))?;
        decoding.insert(row.kid.clone(), key);
        jwks.push(jwk);
    }
    Ok(Some(KeySet {
        kid: active.kid.clone(),
        algorithm: Algorithm::ES256,
        encoding,
        decoding,
        jwks: serde_json::json!({ "keys": jwks }),
    }))
}

/// Adds a new signing key; the previous ones stay published for `publish_old`.
pub fn rotate(
    conn: &mut admit_store::AnyConnection,
    publish_old: chrono::Duration,
) -> Result<String, KeyError> {
    let row = generate_es256()?;
    let kid = row.kid.clone();
    partners::insert_signing_key(conn, &row)?;
    partners::retire_signing_keys_except(conn, &kid, admit_store::now() + publish_old)?;
    Ok(kid)
}

/// The keys of this replica, refreshed from the database.
#[derive(Clone)]
pub struct KeyRing {
    db: Db,
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl KeyRing {
    /// Loads the keys, creating the first one if there is none.
    pub async fn load(db: Db) -> Result<Self, KeyError> {
        let set = Self::read(&db, true).await?;
        Ok(Self {
            db,
            current: Arc::new(RwLock::new(Arc::new(set))),
        })
    }

    async fn read(db: &Db, create: bool) -> Result<KeySet, KeyError> {
        let rows = db
            .write(move |conn| {
                let now = admit_store::now();
                let mut rows = partners::published_signing_keys(conn, now)?;
                if rows.is_empty() && create {
                    let row = generate_es256()
                        .map_err(|e| admit_store::StoreError::Internal(e.to_string()))?;
                    partners::insert_signing_key(conn, &row)?;
                    rows = partners::published_signing_keys(conn, now)?;
                }
                Ok(rows)
            })
            .await?;
        build(&rows)?.ok_or(KeyError::Generate)
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub async fn refresh(&self) -> Result<(), KeyError> {
        let set = Arc::new(Self::read(&self.db, true).await?);
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
