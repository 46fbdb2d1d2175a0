//! Who is calling a partner endpoint: a partner system with a bearer access token from
//! the authorization server's `client_credentials` grant (a JWT verified here against
//! the published JWKS: signature, `typ: at+jwt`, issuer, audience, expiry), or with a
//! partner API key (looked up by its SHA-256 digest; a revoked key stops working at
//! once).
//!
//! The JWKS is fetched from `{issuer}/oauth/jwks` and kept; a token signed with a key
//! id not in it triggers one re-fetch (at most every 10 s), so a key rotation is
//! picked up without a restart.

use admit_domain::secret;
use admit_store::{partners, Db};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub partner_id: String,
    /// The OAuth client, for bearer tokens.
    pub client_id: Option<String>,
    /// Space-separated scopes; an API key carries every partner scope.
    pub scopes: Option<String>,
}

impl Partner {
    pub fn may(&self, scope: &str) -> bool {
        match &self.scopes {
            None => true,
            Some(s) => s.split(' ').any(|x| x == scope),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the bearer credential is not valid")]
    Invalid,
    #[error("the credential cannot be checked now; retry")]
    Unavailable(String),
}

pub struct Verifier {
    issuer: String,
    jwks_url: String,
    http: reqwest::Client,
    jwks: Mutex<(Option<JwkSet>, Option<Instant>)>,
}

impl Verifier {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            jwks_url: format!("{issuer}/oauth/jwks"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            jwks: Mutex::new((None, None)),
        }
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let cached = {
            let g = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
            let found = g.0.as_ref().and_then(|s| s.find(kid)).cloned();
            let may_fetch = g.1.is_none_or(|t| t.elapsed() > Duration::from_secs(10));
            (found, may_fetch)
        };
        if let (Some(jwk), _) = &cached {
            return DecodingKey::from_jwk(jwk).map_err(|_| AuthError::Invalid);
        }
        if !cached.1 {
            return Err(AuthError::Invalid);
        }
        let set: JwkSet = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let jwk = set.find(kid).cloned();
        *self.jwks.lock().unwrap_or_else(|p| p.into_inner()) = (Some(set), Some(Instant::now()));
        DecodingKey::from_jwk(&jwk.ok_or(AuthError::Invalid)?).map_err(|_| AuthError::Invalid)
    }

    /// The partner behind `Authorization: Bearer <credential>`.
    pub async fn partner(&self, db: &Db, credential: &str) -> Result<Partner, AuthError> {
        if let Some(kid) = jwt_key_id(credential)? {
            let key = self.key(&kid).await?;
            return partner_of_jwt(credential, &key, &self.issuer);
        }
        let digest = secret::digest(credential);
        let partner = db
            .run(move |c| partners::partner_of_api_key(c, &digest))
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .ok_or(AuthError::Invalid)?;
        Ok(Partner {
            partner_id: partner,
            client_id: None,
            scopes: None,
        })
    }
}

/// The key id of a credential that has the form of a JWT (three dot-separated parts),
/// which must then be an access token (`typ: at+jwt`); `Ok(None)` for anything else,
/// which is taken for an API key.
pub fn jwt_key_id(credential: &str) -> Result<Option<String>, AuthError> {
    if credential.split('.').count() != 3 {
        return Ok(None);
    }
    let header = decode_header(credential).map_err(|_| AuthError::Invalid)?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(AuthError::Invalid);
    }
    Ok(Some(header.kid.unwrap_or_default()))
}

/// The partner of a `client_credentials` access token verified with `key`
/// (signature, issuer, audience, expiry); a token issued to a user is refused.
pub fn partner_of_jwt(
    credential: &str,
    key: &DecodingKey,
    issuer: &str,
) -> Result<Partner, AuthError> {
    let header = decode_header(credential).map_err(|_| AuthError::Invalid)?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(AuthError::Invalid);
    }
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[issuer]);
    v.leeway = 0;
    let claims = decode::<serde_json::Value>(credential, key, &v)
        .map_err(|_| AuthError::Invalid)?
        .claims;
    let partner_id = claims["partner_id"].as_str().ok_or(AuthError::Invalid)?;
    // A token issued to a user (authorization code) is not the partner's own.
    if claims["sub"] != claims["client_id"] {
        return Err(AuthError::Invalid);
    }
    Ok(Partner {
        partner_id: partner_id.to_owned(),
        client_id: claims["client_id"].as_str().map(str::to_owned),
        scopes: Some(claims["scope"].as_str().unwrap_or_default().to_owned()),
    })
}
