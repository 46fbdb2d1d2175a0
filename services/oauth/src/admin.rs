//! Operator actions on partners and their credentials, shared by the admin CLI (and,
//! next, the admin HTTP API). Every secret is generated here, returned once, and
//! stored only as its digest. Changes are read from the database on every request,
//! so they take effect at once in running services.
//!
//! Every action is audited ([`admit_store::audit`]) as the caller's [`Origin`]: a
//! success in the transaction of the change, a refusal right after it.

use admit_domain::{secret, PartnerBrand};
use admit_store::audit::{self, Origin};
use admit_store::partners::{self, ApiKeyRow, ClientRow, PartnerRow};
use admit_store::{Db, StoreError};
use serde::Serialize;
use serde_json::json;

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

/// Records the refusal of `action` (the success is recorded with the change).
async fn refused<T>(
    db: &Db,
    origin: &Origin,
    action: &str,
    target: (&str, &str),
    result: Result<T, AdminError>,
) -> Result<T, AdminError> {
    if let Err(e) = &result {
        let detail = match e {
            AdminError::Invalid { field, .. } => json!({"error": "invalid", "field": field}),
            AdminError::NoPartner(_) => json!({"error": "no_partner"}),
            AdminError::Store(_) => json!({"error": "unavailable"}),
        };
        let event = origin
            .event(action, target.0, target.1)
            .outcome(audit::FAILURE)
            .detail(detail);
        admit_runtime::audit::record(db, event).await;
    }
    result
}

pub async fn create_partner(
    db: &Db,
    origin: &Origin,
    name: &str,
    landing_url: Option<&str>,
    brand_color: Option<&str>,
) -> Result<CreatedPartner, AdminError> {
    let r = create_partner_inner(db, origin, name, landing_url, brand_color).await;
    refused(db, origin, "partner.create", ("partner", ""), r).await
}

async fn create_partner_inner(
    db: &Db,
    origin: &Origin,
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
    let event = origin.event("partner.create", "partner", &row.id).detail(
        json!({"name": row.name, "landing_url": row.landing_url, "brand_color": row.brand_color}),
    );
    db.write(move |c| {
        partners::insert_partner(c, &row)?;
        audit::insert(c, &event)
    })
    .await?;
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
    origin: &Origin,
    new: NewClient,
    default_ttl: u32,
) -> Result<CreatedClient, AdminError> {
    let partner = new.partner_id.clone();
    let r = create_client_inner(db, origin, new, default_ttl).await;
    refused(db, origin, "client.create", ("partner", &partner), r).await
}

async fn create_client_inner(
    db: &Db,
    origin: &Origin,
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
    let event = origin
        .event("client.create", "client", &row.id)
        .detail(json!({
            "partner_id": row.partner_id,
            "name": row.name,
            "public": row.is_public,
            "grants": grants,
            "scopes": new.scopes,
            "redirect_uris": new.redirect_uris,
        }));
    db.write(move |c| {
        partners::insert_client(c, &row)?;
        audit::insert(c, &event)
    })
    .await?;
    Ok(CreatedClient {
        client_id,
        client_secret,
    })
}

pub async fn create_api_key(
    db: &Db,
    origin: &Origin,
    partner_id: &str,
) -> Result<CreatedApiKey, AdminError> {
    let r = create_api_key_inner(db, origin, partner_id).await;
    refused(db, origin, "api_key.create", ("partner", partner_id), r).await
}

async fn create_api_key_inner(
    db: &Db,
    origin: &Origin,
    partner_id: &str,
) -> Result<CreatedApiKey, AdminError> {
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
    let event = origin
        .event("api_key.create", "api_key", &row.id)
        .detail(json!({"partner_id": row.partner_id}));
    db.write(move |c| {
        partners::insert_api_key(c, &row)?;
        audit::insert(c, &event)
    })
    .await?;
    Ok(CreatedApiKey { key_id, api_key })
}

/// Returns whether a key was revoked (false: no such key, or revoked already).
pub async fn revoke_api_key(db: &Db, origin: &Origin, key_id: &str) -> Result<bool, AdminError> {
    let id = key_id.to_owned();
    let event = origin.event("api_key.revoke", "api_key", key_id);
    let r = db
        .write(move |c| {
            let revoked = partners::revoke_api_key(c, &id, admit_store::now())?;
            if revoked {
                audit::insert(c, &event)?;
            }
            Ok(revoked)
        })
        .await
        .map_err(AdminError::from);
    let r = refused(db, origin, "api_key.revoke", ("api_key", key_id), r).await;
    if let Ok(false) = r {
        let event = origin
            .event("api_key.revoke", "api_key", key_id)
            .outcome(audit::FAILURE)
            .detail(json!({"error": "no_live_key"}));
        admit_runtime::audit::record(db, event).await;
    }
    r
}

pub async fn add_plan_codes(
    db: &Db,
    origin: &Origin,
    partner_id: &str,
    codes: &[String],
) -> Result<Vec<String>, AdminError> {
    let r = add_plan_codes_inner(db, origin, partner_id, codes).await;
    refused(db, origin, "plan_code.add", ("partner", partner_id), r).await
}

async fn add_plan_codes_inner(
    db: &Db,
    origin: &Origin,
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
    let event = origin
        .event("plan_code.add", "partner", partner_id)
        .detail(json!({"codes": codes}));
    db.write(move |c| {
        partners::add_plan_codes(c, &p, &codes, admit_store::now())?;
        audit::insert(c, &event)?;
        partners::plan_codes_of(c, &p)
    })
    .await
    .map_err(Into::into)
}
