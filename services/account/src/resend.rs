//! Resending a welcome email (issue 11): an operator (`admit mail resend ACCOUNT`, or
//! `POST /admin/v1/accounts/{id}/resend` behind `internal.admin_token`) sends a
//! partner-registered account that has no password yet a new "welcome, set your
//! password" email. The new link retires the old one (in the same transaction as
//! its outbox row), keeps the partner and grant of the original, and is sent at most
//! once per `account.resend_cooldown_secs` per recipient (429 with `Retry-After`
//! inside it), so a support desk cannot flood a mailbox.

use crate::AccountState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::{Email, Envelope, Notification};
use admit_runtime::http::{bearer_matches as authorized, json_answer as answer};
use admit_runtime::i18n::Lang;
use admit_store::registrations::{self, purpose};
use admit_store::{accounts, mail_ops, outbox, partners, Db, StoreError};
use serde::Serialize;
use serde_json::json;

/// A welcome email written to the outbox.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Resent {
    pub account_id: String,
    /// The new email's message id (`admit mail status` follows it).
    pub message_id: String,
    pub sent_to: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("no account {0}")]
    NoAccount(String),
    #[error("the account has a password already: it signs in, or uses \"forgot your password?\"")]
    HasPassword,
    #[error("the account has no email address")]
    NoAddress,
    #[error("the account was not registered by a partner: it has no welcome email with a set-password link")]
    NoWelcome,
    #[error(
        "a welcome email was resent to this address less than the cooldown ago; retry in {0} s"
    )]
    Cooldown(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes a new welcome email with a new set-password link for `account_id`, and
/// the `mail.resend` audit event of `origin` in the same transaction (a refusal is
/// recorded right after).
pub async fn resend(
    db: &Db,
    origin: &admit_store::audit::Origin,
    link_key: &[u8],
    link_ttl_secs: i64,
    cooldown_secs: u64,
    account_id: &str,
) -> Result<Resent, ResendError> {
    let (link_key, account_id) = (link_key.to_vec(), account_id.to_owned());
    let cooldown = chrono::Duration::seconds(i64::try_from(cooldown_secs).unwrap_or(i64::MAX / 2));
    let event = origin.event("mail.resend", "account", &account_id);
    let refusal = event.clone();
    let result = db
        .write(move |c| {
            let account = match accounts::find(c, &account_id) {
                Ok(a) => a,
                Err(StoreError::NotFound) => return Ok(Err(ResendError::NoAccount(account_id))),
                Err(e) => return Err(e),
            };
            if account.password_hash.is_some() {
                return Ok(Err(ResendError::HasPassword));
            }
            let Some((address, _)) = accounts::primary_email(c, &account.id)? else {
                return Ok(Err(ResendError::NoAddress));
            };
            let Some(last) =
                registrations::latest_password_token(c, &account.id, purpose::SET_PASSWORD)?
            else {
                return Ok(Err(ResendError::NoWelcome));
            };
            let partner = match &last.partner_id {
                Some(id) => partners::find_partner(c, id)?,
                None => None,
            };
            let Some(partner) = partner else {
                return Ok(Err(ResendError::NoWelcome));
            };
            let normalized = Email::parse(&address)
                .map(|e| e.normalized())
                .unwrap_or_else(|_| address.to_ascii_lowercase());
            let now = admit_store::now();
            if let Err(wait) = mail_ops::take_resend_slot(c, &normalized, now, cooldown)? {
                return Ok(Err(ResendError::Cooldown(wait)));
            }
            let language = account
                .locale
                .as_deref()
                .and_then(Lang::of_locale)
                .map(|l| l.as_str())
                .unwrap_or("en")
                .to_owned();
            let partner_id = partner.id.clone();
            let envelope = Envelope::new(Notification::SetPassword {
                to: address.clone(),
                account_id: account.id.clone(),
                partner: partner.brand(),
                full_name: account.full_name.clone(),
                language,
            });
            let mut link =
                crate::password_link(&link_key, &envelope, &partner_id, now, link_ttl_secs);
            link.grant_id = last.grant_id;
            // A newer link retires the older ones of the account.
            registrations::insert_password_tokens(c, std::slice::from_ref(&link), now)?;
            outbox::enqueue(c, outbox::MAIL_TOPIC, &envelope)?;
            admit_store::audit::insert(
                c,
                &event.detail(
                    json!({"message_id": envelope.id.to_string(), "partner_id": partner_id}),
                ),
            )?;
            Ok(Ok(Resent {
                account_id: account.id,
                message_id: envelope.id.to_string(),
                sent_to: address,
            }))
        })
        .await
        .map_err(ResendError::from)
        .and_then(|r| r);
    if let Err(e) = &result {
        let why = match e {
            ResendError::NoAccount(_) => "no_account",
            ResendError::HasPassword => "has_password",
            ResendError::NoAddress => "no_address",
            ResendError::NoWelcome => "no_welcome",
            ResendError::Cooldown(_) => "cooldown",
            ResendError::Store(_) => "unavailable",
        };
        let event = refusal
            .outcome(admit_store::audit::FAILURE)
            .detail(json!({"error": why}));
        admit_runtime::audit::record(db, event).await;
    }
    result
}

/// Resends the welcome (set-password) email of a partner-registered account that has
/// no password yet: a new link, the old one retired.
#[utoipa::path(
    post,
    path = "/admin/v1/accounts/{id}/resend",
    tag = "admin",
    params(("id" = String, Path, description = "The account id")),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "The email is queued (`admit mail status MESSAGE_ID` follows it)", body = Resent),
        (status = 401, description = "The admin credential is missing or wrong", body = crate::api::ErrorBody),
        (status = 404, description = "No such account", body = crate::api::ErrorBody),
        (status = 409, description = "The account has a password already, no address, or no partner welcome email", body = crate::api::ErrorBody),
        (status = 429, description = "Resent to this address less than `account.resend_cooldown_secs` ago; `Retry-After` says when it may be", body = crate::api::ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = crate::api::ErrorBody),
    )
)]
pub async fn resend_api(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AccountState>,
) -> HttpResponse {
    if !authorized(&req, &state.admin_token) {
        return answer(
            401,
            json!({"error": "UnauthorizedException", "message": "the admin credential is missing or wrong"}),
        );
    }
    let id = path.into_inner();
    match resend(
        &state.db,
        &admit_runtime::audit::admin_origin(&req),
        &state.link_key,
        state.link_ttl_secs,
        state.resend_cooldown_secs,
        &id,
    )
    .await
    {
        Ok(r) => {
            state.outbox_wake.notify_one();
            tracing::info!(account_id = %r.account_id, message_id = %r.message_id, "welcome email resent");
            answer(202, json!(r))
        }
        Err(e) => {
            let (status, error) = match &e {
                ResendError::NoAccount(_) => (404, "NotFoundException"),
                ResendError::HasPassword | ResendError::NoAddress | ResendError::NoWelcome => {
                    (409, "ConflictException")
                }
                ResendError::Cooldown(_) => (429, "TooManyRequestsException"),
                ResendError::Store(err) => {
                    tracing::error!(error = %err, "resend: the database failed");
                    return answer(
                        503,
                        json!({"error": "ServiceUnavailableException", "message": "retry"}),
                    );
                }
            };
            let mut res = answer(
                status,
                json!({"error": error, "message": e.to_string(), "field": "id"}),
            );
            if let ResendError::Cooldown(wait) = e {
                if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            res
        }
    }
}

/// The OpenAPI description of the account service's admin API (merged into
/// `admit openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(resend_api), components(schemas(Resent)))]
pub struct AccountAdminApi;
