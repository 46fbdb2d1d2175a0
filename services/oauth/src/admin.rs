//! Operator actions on partners and their credentials, shared by the admin CLI (and,
//! next, the admin HTTP API). Every secret is generated here, returned once, and
//! stored only as its digest. Changes are read from the database on every request,
//! so they take effect at once in running services.

use admit_domain::{secret, PartnerBrand};
use admit_store::partners::{self, ApiKeyRow, ClientRow, PartnerRow};
use admit_store::{Db, StoreError};
use serde::Serialize;

pub const GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "implicit",
];

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no partner {0}")]
    NoPartner(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Serialize)]
pub struct CreatedPartner {
    pub partner_id: String,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct CreatedClient {
    pub client_id: String,
    /// Shown once; only its digest is kept. Absent for public clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    pub key_id: String,
    /// Shown once; only its digest is kept.
    pub api_key: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub partner_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub public: bool,
    pub access_ttl_secs: Option<u32>,
}

fn check_url(field: &'static str, raw: &str) -> Result<(), AdminError> {
    let ok_scheme = raw.starts_with("https://")
        || raw.starts_with("http://localhost")
        || raw.starts_with("http://127.0.0.1")
        || raw.starts_with("http://[::1]");
    if !ok_scheme || raw.contains('#') || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            format!(
                "{raw} is not an absolute https URL without a fragment (http only for localhost)"
            ),
        ));
    }
    Ok(())
}

pub async fn create_partner(
    db: &Db,
    name: &str,
    landing_url: Option<&str>,
    brand_color: Option<&str>,
) -> Result<CreatedPartner, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name", "a partner name has 1 to 200 characters"));
    }
    if let Some(url) = landing_url {
        check_url("landing_url", url)?;
    }
    let brand_color = match brand_color {
        Some(raw) => Some(PartnerBrand::color(raw).ok_or_else(|| {
            invalid(
                "brand_color",
                format!("{raw} is not a colour as #rrggbb (or #rgb)"),
            )
        })?),
        None => None,
    };
    let row = PartnerRow {
        id: secret::identifier("p_"),
        name: name.to_owned(),
        landing_url: landing_url.map(str::to_owned),
        created_at: admit_store::now(),
        brand_color,
    };
    let out = CreatedPartner {
        partner_id: row.id.clone(),
        name: row.name.clone(),
    };
    db.write(move |c| partners::insert_partner(c, &row)).await?;
    Ok(out)
}

async fn require_partner(db: &Db, partner_id: &str) -> Result<(), AdminError> {
    let id = partner_id.to_owned();
    match db.run(move |c| partners::find_partner(c, &id)).await? {
        Some(_) => Ok(()),
        None => Err(AdminError::NoPartner(partner_id.to_owned())),
    }
}

pub async fn create_client(
    db: &Db,
    new: NewClient,
    default_ttl: u32,
) -> Result<CreatedClient, AdminError> {
    require_partner(db, &new.partner_id).await?;
    if new.name.trim().is_empty() {
        return Err(invalid("name", "a client needs a name"));
    }
    let mut grants = new.grants.clone();
    if grants.is_empty() {
        grants.push("authorization_code".into());
        grants.push("refresh_token".into());
    }
    for g in &grants {
        if !GRANTS.contains(&g.as_str()) {
            return Err(invalid(
                "grant",
                format!("{g} is not one of {}", GRANTS.join(", ")),
            ));
        }
    }
    if new.public && grants.iter().any(|g| g == "client_credentials") {
        return Err(invalid(
            "grant",
            "a public client has no secret, so it cannot use client_credentials",
        ));
    }
    let redirecting = grants
        .iter()
        .any(|g| g == "authorization_code" || g == "implicit");
    if redirecting && new.redirect_uris.is_empty() {
        return Err(invalid(
            "redirect_uri",
            "authorization_code and implicit need at least one redirect URI",
        ));
    }
    for uri in &new.redirect_uris {
        check_url("redirect_uri", uri)?;
    }
    for s in &new.scopes {
        // RFC 6749 §3.3 scope-token: printable ASCII without space, '"' or '\'.
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(invalid("scope", format!("{s:?} is not a scope token")));
        }
    }
    let client_secret = (!new.public).then(|| secret::generate("cs_"));
    let row = ClientRow {
        id: secret::identifier("c_"),
        partner_id: new.partner_id.clone(),
        name: new.name.trim().to_owned(),
        secret_hash: client_secret.as_deref().map(secret::digest),
        is_public: new.public,
        redirect_uris: serde_json::to_string(&new.redirect_uris).unwrap_or_else(|_| "[]".into()),
        grants: serde_json::to_string(&grants).unwrap_or_else(|_| "[]".into()),
        scopes: serde_json::to_string(&new.scopes).unwrap_or_else(|_| "[]".into()),
        access_ttl_secs: new
            .access_ttl_secs
            .unwrap_or(default_ttl)
            .min(i32::MAX as u32) as i32,
        created_at: admit_store::now(),
        revoked_at: None,
    };
    let client_id = row.id.clone();
    db.write(move |c| partners::insert_client(c, &row)).await?;
    Ok(CreatedClient {
        client_id,
        client_secret,
    })
}

pub async fn create_api_key(db: &Db, partner_id: &str) -> Result<CreatedApiKey, AdminError> {
    require_partner(db, partner_id).await?;
    let api_key = secret::generate("ak_");
    let row = ApiKeyRow {
        id: secret::identifier("k_"),
        partner_id: partner_id.to_owned(),
        key_hash: secret::digest(&api_key),
        created_at: admit_store::now(),
        revoked_at: None,
    };
    let key_id = row.id.clone();
    db.write(move |c| partners::insert_api_key(c, &row)).await?;
    Ok(CreatedApiKey { key_id, api_key })
}

/// Returns whether a key was revoked (false: no such key, or revoked already).
pub async fn revoke_api_key(db: &Db, key_id: &str) -> Result<bool, AdminError> {
    let id = key_id.to_owned();
    Ok(db
        .write(move |c| partners::revoke_api_key(c, &id, admit_store::now()))
        .await?)
}

pub async fn add_plan_codes(
    db: &Db,
    partner_id: &str,
    codes: &[String],
) -> Result<Vec<String>, AdminError> {
    require_partner(db, partner_id).await?;
    for code in codes {
        if code.trim().is_empty() || code.len() > 64 || code.chars().any(char::is_control) {
            return Err(invalid(
                "code",
                format!("{code:?} is not a plan code (1 to 64 printable characters)"),
            ));
        }
    }
    let (p, codes) = (partner_id.to_owned(), codes.to_vec());
    db.write(move |c| {
        partners::add_plan_codes(c, &p, &codes, admit_store::now())?;
        partners::plan_codes_of(c, &p)
    })
    .await
    .map_err(Into::into)
}
