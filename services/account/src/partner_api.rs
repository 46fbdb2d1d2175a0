//! `POST /api/account/` (SPEC §4, documents 000 and 002 scenario 1): a partner's
//! client creates an account and receives `accessToken.code`, an authorization code of
//! that client for the new account, exchangeable at `/oauth/token`.
//!
//! Everything the request causes is one transaction: the account and its contacts,
//! the partner's membership, the grant and its code, the set-password link and the
//! "account created by partner" email in the outbox. The account service writes the
//! code itself (the store is shared with the authorization server) instead of calling
//! the authorization server's internal endpoint, so a failure leaves no account
//! without its code and no code without its account.

use crate::error::ApiError;
use crate::signup::{opt_str, parse_body};
use crate::{hasher, AccountState};
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::{secret, Email, Envelope, Notification, Phone, Username};
use admit_store::accounts::AccountRow;
use admit_store::registrations::{self, MembershipRow};
use admit_store::{accounts, grants, outbox, partners, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

const FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "email",
    "username",
    "password",
    "zipcode",
    "phone",
    "timeZone",
    "preferredContact",
];

/// The body of `POST /api/account/`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"firstName": "Doc","lastName": "Test","email": "matt@carvoyant.com","username": "doctest","password": "doctestpassword"}))]
pub struct PartnerAccountRequest {
    /// Not blank.
    #[schema(max_length = 100, pattern = r"\S")]
    pub first_name: String,
    /// Not blank.
    #[schema(max_length = 100, pattern = r"\S")]
    pub last_name: String,
    /// Unique case-insensitively across the platform.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 3 to 64 of letters, digits, `.`, `_`, `-`; unique case-insensitively.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub username: String,
    /// The policy of `POST /account`. The user is emailed a link to choose their own;
    /// the password itself is never emailed.
    #[schema(
        min_length = 6,
        max_length = 18,
        pattern = r"^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub password: String,
    /// Letters, digits, spaces and hyphens.
    #[schema(max_length = 16, pattern = r"^[A-Za-z0-9 -]*$")]
    pub zipcode: Option<String>,
    /// E.164 (separators ` .-()` are accepted too, and dropped).
    #[schema(max_length = 32, pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
    /// An IANA time zone name, `Europe/Amsterdam`.
    #[schema(max_length = 64, pattern = r"^\s*[A-Za-z0-9/_+-]+\s*$")]
    pub time_zone: Option<String>,
    pub preferred_contact: Option<PreferredContact>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PreferredContact {
    Email,
    Phone,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartnerAccountResponse {
    pub account: PartnerAccount,
    #[serde(rename = "totalRecords")]
    pub total_records: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerAccount {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    /// Basic ISO 8601, `20141112T195503+0000`.
    pub date_created: String,
    pub email: String,
    pub zipcode: Option<String>,
    pub phone: Option<String>,
    pub time_zone: Option<String>,
    pub preferred_contact: Option<String>,
    pub access_token: AccessCode,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessCode {
    /// An authorization code of the calling client for this account: single use, ten
    /// minutes, exchanged at `/oauth/token` with `grant_type=authorization_code`.
    pub code: String,
}

/// The request, parsed.
struct Parsed {
    first_name: String,
    last_name: String,
    email: Email,
    username: Username,
    password: admit_domain::Password,
    zipcode: Option<String>,
    phone: Option<Phone>,
    time_zone: Option<String>,
    preferred_contact: Option<String>,
}

fn required<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<&'a str, ApiError> {
    match opt_str(body, field, max)?.map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::invalid(field, format!("{field} is required"))),
    }
}

fn parse(body: &Map<String, Value>, state: &AccountState) -> Result<Parsed, ApiError> {
    if let Some(key) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            key.as_str(),
            format!("{key} is not a field of this request"),
        ));
    }
    let first_name = required(body, "firstName", 100)?.to_owned();
    let last_name = required(body, "lastName", 100)?.to_owned();
    let email = Email::parse(required(body, "email", 320)?).map_err(|e| e.at("email"))?;
    let username =
        Username::parse(required(body, "username", 256)?).map_err(|e| e.at("username"))?;
    let password = match body.get("password") {
        Some(Value::String(s)) => state.policy.check(s).map_err(|e| e.at("password"))?,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("password", "password is required"))
        }
        Some(_) => return Err(ApiError::invalid("password", "expected a string")),
    };
    let zipcode = match opt_str(body, "zipcode", 16)?.map(str::trim) {
        Some(z)
            if !z
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-') =>
        {
            return Err(ApiError::invalid(
                "zipcode",
                "letters, digits, spaces and hyphens only",
            ))
        }
        z => z.filter(|z| !z.is_empty()).map(str::to_owned),
    };
    let phone = opt_str(body, "phone", 32)?
        .map(|p| Phone::parse(p).map_err(|e| e.at("phone")))
        .transpose()?;
    let time_zone = match opt_str(body, "timeZone", 64)?.map(str::trim) {
        Some(tz)
            if tz.is_empty()
                || !tz
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c)) =>
        {
            return Err(ApiError::invalid(
                "timeZone",
                "expected an IANA time zone name such as Europe/Amsterdam",
            ))
        }
        tz => tz.map(str::to_owned),
    };
    let preferred_contact = match opt_str(body, "preferredContact", 16)? {
        None => None,
        Some(p) if p.eq_ignore_ascii_case("email") => Some("email".to_owned()),
        Some(p) if p.eq_ignore_ascii_case("phone") => {
            if phone.is_none() {
                return Err(ApiError::invalid(
                    "preferredContact",
                    "phone is preferred but no phone was given",
                ));
            }
            Some("phone".to_owned())
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "preferredContact",
                "expected email or phone",
            ))
        }
    };
    Ok(Parsed {
        first_name,
        last_name,
        email,
        username,
        password,
        zipcode,
        phone,
        time_zone,
        preferred_contact,
    })
}

/// `20141112T195503+0000`, the document's basic ISO 8601.
pub fn basic_iso8601(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%S+0000").to_string()
}

/// Creates an account for a partner (SPEC §4).
#[utoipa::path(
    post,
    path = "/api/account/",
    tag = "partners",
    request_body = PartnerAccountRequest,
    params(
        ("Accept-Language" = Option<String>, Header, description = "The language of the email the user receives: the first of en, fr, de, nl in the caller's preferences, else en"),
    ),
    security(("client_credentials" = ["accounts:create"])),
    responses(
        (status = 201, description = "Created, with an authorization code for the calling client", body = PartnerAccountResponse),
        (status = 400, description = "A field is malformed or missing; `field` names it", body = crate::api::ErrorBody),
        (status = 401, description = "No bearer access token, or one that is not valid", body = crate::api::ErrorBody),
        (status = 403, description = "The token lacks accounts:create, or its client is not registered for the authorization code grant", body = crate::api::ErrorBody),
        (status = 409, description = "The email or the username is already used", body = crate::api::ErrorBody),
        (status = 413, description = "Body over the configured limit", body = crate::api::ErrorBody),
        (status = 429, description = "The partner is over its request rate (`RateLimitExceededException`) or its daily account-creation quota is used up (`QuotaExceededException`, nothing created); retry after `Retry-After` seconds", body = crate::api::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait, at least 1: until the rate allows one more request, or until 00:00 UTC for the quota"))),
        (status = 503, description = "A dependency is unavailable; retry", body = crate::api::ErrorBody),
    )
)]
#[tracing::instrument(name = "partner_create_account", skip_all)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AccountState>,
) -> Result<HttpResponse, ApiError> {
    let partner = crate::authenticate_partner(&req, &state).await?;
    if !partner.may("accounts:create") {
        return Err(ApiError::IllegalAccess(
            "the access token lacks the scope accounts:create".into(),
        ));
    }
    crate::quota::rate(&state, &partner.partner_id).await?;
    let Some(client_id) = partner.client_id.clone() else {
        return Err(ApiError::IllegalAccess(
            "this endpoint issues a code to the calling OAuth client: authenticate with an access token from the client_credentials grant, not an API key".into(),
        ));
    };
    let body = crate::read_body(payload, state.max_body_bytes).await?;
    let p = parse(&parse_body(&body)?, &state)?;
    let language = email_language(&req);

    let db = state.db.clone();
    let link_key = state.link_key.clone();
    let (grant_ttl, link_ttl) = (state.grant_ttl_secs, state.link_ttl_secs);
    let partner_id = partner.partner_id.clone();
    let limits = state.partner_limits.clone();
    let created = state
        .hasher
        .run(move || -> Result<(AccountRow, String, Parsed), ApiError> {
            let mut conn = db.get()?;
            let (client, brand) = {
                let client = partners::active_client(&mut conn, &client_id)?;
                let partner = partners::find_partner(&mut conn, &partner_id)?;
                match (client, partner) {
                    (Some(c), Some(p)) if c.partner_id == p.id => (c, p.brand()),
                    _ => {
                        return Err(ApiError::Unauthorized(
                            "the client of this access token was revoked".into(),
                        ))
                    }
                }
            };
            let client_grants: Vec<String> =
                serde_json::from_str(&client.grants).unwrap_or_default();
            if !client_grants.iter().any(|g| g == "authorization_code") {
                return Err(ApiError::IllegalAccess(
                    "the client is not registered for the authorization_code grant, so no code can be issued to it".into(),
                ));
            }
            if let Some(taken) = taken(&mut conn, &p)? {
                return Err(taken);
            }
            crate::quota::check(&mut conn, &limits, &partner_id, 1)?;
            let hash = hasher::hash_blocking(p.password.expose())?;
            let now = admit_store::now();
            let account = AccountRow {
                id: uuid::Uuid::now_v7().to_string(),
                username: Some(p.username.as_str().to_owned()),
                username_normalized: Some(p.username.normalized()),
                full_name: Some(format!("{} {}", p.first_name, p.last_name)),
                locale: None,
                password_hash: Some(hash),
                account_type: "standard".into(),
                status: "active".into(),
                created_at: now,
                expires_at: None,
            };
            let mut contacts = vec![crate::contact_row(
                &account.id,
                "EMAIL",
                p.email.as_str(),
                &p.email.normalized(),
                now,
            )];
            if let Some(phone) = &p.phone {
                contacts.push(crate::contact_row(
                    &account.id,
                    "PHONE",
                    phone.as_str(),
                    phone.as_str(),
                    now,
                ));
            }
            let membership = MembershipRow {
                partner_id: partner_id.clone(),
                account_id: account.id.clone(),
                employee_id: None,
                email_normalized: Some(p.email.normalized()),
                outcome: "created".into(),
                attributes: json!({
                    "firstName": p.first_name,
                    "lastName": p.last_name,
                    "zipcode": p.zipcode,
                    "timeZone": p.time_zone,
                    "preferredContact": p.preferred_contact,
                })
                .to_string(),
                created_at: now,
            };
            let scope = client_scopes_for_users(&client.scopes);
            let code = secret::generate("");
            let (grant, code_row) = grants::minted_code(
                &client.id,
                &account.id,
                scope,
                secret::digest(&code),
                now,
                grant_ttl,
            );
            let envelope = Envelope::new(Notification::PartnerAccount {
                to: p.email.as_str().to_owned(),
                account_id: account.id.clone(),
                partner: brand,
                full_name: account.full_name.clone(),
                username: account.username.clone(),
                language,
            });
            let mut link = crate::password_link(&link_key, &envelope, &partner_id, now, link_ttl);
            link.grant_id = Some(grant.id.clone());
            let written = db.write_on(&mut conn, |c| {
                accounts::insert(c, &account, &contacts)?;
                registrations::insert_memberships(c, std::slice::from_ref(&membership))?;
                grants::insert_grant(c, &grant)?;
                grants::insert_code(c, &code_row)?;
                registrations::insert_password_tokens(c, std::slice::from_ref(&link), now)?;
                outbox::enqueue(c, outbox::MAIL_TOPIC, &envelope)
            });
            match written {
                Ok(()) => Ok((account, code, p)),
                Err(StoreError::Conflict(c)) => match taken(&mut conn, &p) {
                    Ok(Some(t)) => Err(t),
                    _ => Err(StoreError::Conflict(c).into()),
                },
                Err(e) => Err(e.into()),
            }
        })
        .await??;
    state.outbox_wake.notify_one();
    let (account, code, p) = created;
    tracing::info!(account_id = %account.id, partner_id = %partner.partner_id, "account created by partner");
    let response = PartnerAccountResponse {
        account: PartnerAccount {
            id: account.id,
            first_name: p.first_name,
            last_name: p.last_name,
            username: account.username,
            date_created: basic_iso8601(account.created_at.and_utc()),
            email: p.email.as_str().to_owned(),
            zipcode: p.zipcode,
            phone: p.phone.map(|x| x.as_str().to_owned()),
            time_zone: p.time_zone,
            preferred_contact: p.preferred_contact,
            access_token: AccessCode { code },
        },
        total_records: 1,
    };
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(response))
}

/// The scopes a user's grant to the client carries: the client's, without the
/// partner-only ones (creating accounts is the partner's right, not the user's).
fn client_scopes_for_users(scopes_json: &str) -> String {
    let scopes: Vec<String> = serde_json::from_str(scopes_json).unwrap_or_default();
    scopes
        .into_iter()
        .filter(|s| s != "accounts:create")
        .collect::<Vec<_>>()
        .join(" ")
}

fn taken(
    conn: &mut admit_store::AnyConnection,
    p: &Parsed,
) -> Result<Option<ApiError>, StoreError> {
    if accounts::find_by_contact(conn, "EMAIL", &p.email.normalized())?.is_some() {
        return Ok(Some(ApiError::ContactAlreadyUsed {
            field: "email".into(),
            message: "this EMAIL is already registered with an account".into(),
        }));
    }
    if let Some(phone) = &p.phone {
        if accounts::find_by_contact(conn, "PHONE", phone.as_str())?.is_some() {
            return Ok(Some(ApiError::ContactAlreadyUsed {
                field: "phone".into(),
                message: "this PHONE is already registered with an account".into(),
            }));
        }
    }
    if accounts::username_taken(conn, &p.username.normalized())? {
        return Ok(Some(ApiError::UsernameAlreadyUsed));
    }
    Ok(None)
}

/// The language of the user's email: the body has no field for it, so the first of
/// the partner's `Accept-Language` preferences that emails are written in, else
/// English (the pages' reader, [`admit_runtime::i18n`]).
fn email_language(req: &HttpRequest) -> String {
    admit_runtime::i18n::Lang::choose(req, None)
        .as_str()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_email_language_is_the_first_preference_emails_are_written_in() {
        let lang = |h: Option<&str>| {
            let mut r = actix_web::test::TestRequest::default();
            if let Some(h) = h {
                r = r.insert_header(("Accept-Language", h));
            }
            email_language(&r.to_http_request())
        };
        assert_eq!(lang(None), "en");
        assert_eq!(lang(Some("fr-CH, fr;q=0.9, en;q=0.8")), "fr");
        assert_eq!(lang(Some("es, nl;q=0.5, de;q=0.7")), "de");
        assert_eq!(lang(Some("NL-be")), "nl");
        assert_eq!(lang(Some("*")), "en");
        assert_eq!(lang(Some("es")), "en");
        assert_eq!(lang(Some("es, fr;q=0")), "en");
        assert_eq!(lang(Some(";;not a language")), "en");
    }

    #[test]
    fn dates_are_basic_iso8601() {
        let t = Utc
            .with_ymd_and_hms(2014, 11, 12, 19, 55, 3)
            .single()
            .expect("date");
        assert_eq!(basic_iso8601(t), "20141112T195503+0000");
    }

    #[test]
    fn user_grants_never_carry_partner_scopes() {
        assert_eq!(
            client_scopes_for_users(r#"["openid","profile","accounts:create"]"#),
            "openid profile"
        );
    }
}
