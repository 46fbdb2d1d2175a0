//! `POST /receiver/APIv3/user.create` (SPEC §6, document 001): a partner pushes one
//! user (`{"user": {…}}`) or a list (`{"users": […]}`, at most
//! `account.batch_max_users`, 10,000 by default) with its API key.
//!
//! Each row comes out `created` (a new account, pending until the user sets a
//! password from the "welcome and set your password" email), `existing` (the address
//! already has an account: it is linked to the partner and gets "you already have an
//! account") or `failed` (the reasons; "registration failed" goes to an address that
//! can receive mail). One bad row never fails the others.
//!
//! Retries are safe. A row the partner sent before (the same `partner_EmployeeID`,
//! else the same address) answers the first outcome again and sends nothing; a failed
//! row sent again unchanged answers the same reasons and sends nothing. With an
//! `Idempotency-Key` header the whole response is kept for 24 hours and replayed; the
//! same key with another body answers 422.
//!
//! Rows are written a chunk at a time (`INSERT_CHUNK` rows), each chunk one
//! transaction of multi-row statements: accounts, contacts, memberships, set-password
//! links, failures and the emails in the outbox commit together.

use crate::error::ApiError;
use crate::AccountState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use admit_domain::{secret, Email, Envelope, Notification, PartnerBrand};
use admit_store::accounts::{self, AccountRow, ContactRow};
use admit_store::registrations::{
    self, FailureRow, IdempotencyRow, MembershipRow, PasswordTokenRow, Reservation,
};
use admit_store::{outbox, partners, AnyConnection, StoreError, INSERT_CHUNK};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use utoipa::ToSchema;

/// The fields of a user.create row (document 001); anything else is refused.
pub const FIELDS: &[&str] = &[
    "BikePlanCode",
    "FirstName",
    "LastName",
    "Email",
    "Language",
    "ContractType",
    "partner_EmployeeID",
    "PersonnelNumber",
];

/// How long an `Idempotency-Key`'s response is replayed.
const IDEMPOTENCY_SECS: i64 = 24 * 3600;

/// One user of document 001.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"BikePlanCode": "PLAN-A", "FirstName": "Jane", "LastName": "Johansson", "Email": "jane@example.com", "Language": "FR", "ContractType": "", "partner_EmployeeID": "ABC123", "PersonnelNumber": "A1234"}))]
pub struct BatchUser {
    /// One of the partner's plan codes (managed by the operator).
    #[serde(rename = "BikePlanCode")]
    pub bike_plan_code: String,
    #[serde(rename = "FirstName")]
    pub first_name: Option<String>,
    #[serde(rename = "LastName")]
    pub last_name: Option<String>,
    #[serde(rename = "Email")]
    pub email: String,
    /// ISO 639-1, any case: the language of the user's email (en, fr, de, nl; others
    /// get English).
    #[serde(rename = "Language")]
    pub language: Option<String>,
    #[serde(rename = "ContractType")]
    pub contract_type: Option<String>,
    /// The partner's identifier of the user: a row with a known one is a retry.
    #[serde(rename = "partner_EmployeeID")]
    pub partner_employee_id: Option<String>,
    #[serde(rename = "PersonnelNumber")]
    pub personnel_number: Option<String>,
}

/// `{"user": {…}}` or `{"users": […]}`, never both.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchRequest {
    One(OneUser),
    Many(ManyUsers),
}

/// `{"user": {…}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneUser {
    pub user: BatchUser,
}

/// `{"users": […]}`: at least one, at most `account.batch_max_users` (413 above).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManyUsers {
    #[schema(min_items = 1, max_items = 10000)]
    pub users: Vec<BatchUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Reason {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Existing,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowResult {
    /// The row's position in the request, from 0.
    pub index: usize,
    pub status: Status,
    pub account_id: Option<String>,
    #[serde(rename = "Email")]
    pub email: Option<String>,
    #[serde(rename = "partner_EmployeeID")]
    pub partner_employee_id: Option<String>,
    /// Why a `failed` row failed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    pub created: usize,
    pub existing: usize,
    pub failed: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<RowResult>,
    pub counts: Counts,
    pub total: usize,
}

/// A [`BatchResponse`] written as its rows are answered, a chunk at a time: the
/// answers are JSON text from the moment their chunk commits (some 150 bytes a row),
/// not a `RowResult` each until the end. The text is the same as serde's of the whole
/// response.
struct Encoder {
    text: Vec<u8>,
    counts: Counts,
    rows: usize,
}

impl Encoder {
    /// Sized from the start for `total` rows: a buffer that doubles as it grows would
    /// hold up to twice the answer of 10,000 rows at the end.
    fn new(total: usize) -> Self {
        let mut text = Vec::with_capacity(total * 160 + 64);
        text.extend_from_slice(b"{\"results\":[");
        Self {
            text,
            counts: Counts::default(),
            rows: 0,
        }
    }

    fn push(&mut self, row: &RowResult) -> Result<(), serde_json::Error> {
        if self.rows > 0 {
            self.text.push(b',');
        }
        serde_json::to_writer(&mut self.text, row)?;
        self.rows += 1;
        match row.status {
            Status::Created => self.counts.created += 1,
            Status::Existing => self.counts.existing += 1,
            Status::Failed => self.counts.failed += 1,
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(String, Counts), serde_json::Error> {
        self.text.extend_from_slice(b"],\"counts\":");
        serde_json::to_writer(&mut self.text, &self.counts)?;
        self.text
            .extend_from_slice(format!(",\"total\":{}}}", self.rows).as_bytes());
        // serde_json writes UTF-8 only, so this checks and does not copy.
        let text = String::from_utf8(self.text).map_err(serde::ser::Error::custom)?;
        Ok((text, self.counts))
    }
}

/// What a row answered, kept for the later rows of its request that are the same user
/// (each of which answers with its own index, address and employee id): a few dozen
/// bytes a row instead of a whole [`RowResult`].
#[derive(Clone)]
struct Answer {
    status: Status,
    account_id: Option<Box<str>>,
    reasons: Box<[Reason]>,
}

impl From<RowResult> for Answer {
    fn from(r: RowResult) -> Self {
        Self {
            status: r.status,
            account_id: r.account_id.map(String::into_boxed_str),
            reasons: r.reasons.into_boxed_slice(),
        }
    }
}

/// A key by which two rows of a request are the same user (an employee id, an
/// address, an account, a failed row's digest), as a 128-bit keyed hash: 16 bytes a
/// key instead of a string. The hash keys are random per request, so a partner cannot
/// make two keys collide; by chance, among the 30,000 keys of a 10,000-user list, one
/// collision has a probability under 10⁻²⁹.
struct UserKeys(std::hash::RandomState, std::hash::RandomState);

type UserKey = u128;

impl UserKeys {
    fn new() -> Self {
        Self(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    fn key(&self, kind: u8, text: &str) -> UserKey {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one((kind, text))) << 64)
            | u128::from(self.1.hash_one((kind, text)))
    }
}

/// A row that passed validation.
struct Valid {
    email: Email,
    full_name: Option<String>,
    language: String,
    employee_id: Option<String>,
    /// The partner's fields, as the membership keeps them (JSON text).
    attributes: String,
}

struct Row {
    index: usize,
    /// The digest of a failed row as sent (by which a retry of it is known); empty
    /// for a valid row, which is known by its employee id or address instead.
    digest: String,
    email_raw: Option<String>,
    /// The normalised address, when `Email` is one (whether or not the row is valid).
    email_norm: Option<String>,
    employee_raw: Option<String>,
    full_name: Option<String>,
    language: String,
    parsed: Result<Valid, Vec<Reason>>,
}

/// The partner's fields of a valid row, as its membership keeps them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Attributes<'a> {
    bike_plan_code: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    language: Option<&'a str>,
    contract_type: Option<&'a str>,
    personnel_number: Option<&'a str>,
}

impl Attributes<'_> {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

fn reason(field: &str, message: impl Into<String>) -> Reason {
    Reason {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The digest of a row as sent, independent of the order of its keys.
fn row_digest(v: &Value) -> String {
    let text = match v {
        Value::Object(m) => serde_json::to_string(&m.iter().collect::<BTreeMap<&String, &Value>>()),
        other => serde_json::to_string(other),
    };
    secret::digest(&text.unwrap_or_default())
}

fn parse_row(index: usize, v: &Value, plans: &HashSet<String>) -> Row {
    let empty = Map::new();
    let (m, mut reasons) = match v {
        Value::Object(m) => (m, Vec::new()),
        _ => (&empty, vec![reason("user", "expected a JSON object")]),
    };
    for key in m.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        // The partner's key is echoed (in the answer and the email), shortened.
        let shown: String = key.chars().take(40).collect();
        reasons.push(reason(&shown, format!("{shown} is not a field of a user")));
    }
    let mut text = |field: &str, max: usize| -> Option<String> {
        match m.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > max => {
                reasons.push(reason(field, format!("at most {max} characters")));
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Some(_) => {
                reasons.push(reason(field, "expected a string"));
                None
            }
        }
    };
    let email_raw = text("Email", 320);
    let plan = text("BikePlanCode", 100);
    let first = text("FirstName", 100);
    let last = text("LastName", 100);
    let language_raw = text("Language", 16);
    let contract = text("ContractType", 100);
    let employee = text("partner_EmployeeID", 100);
    let personnel = text("PersonnelNumber", 100);
    let email = match &email_raw {
        None => {
            reasons.push(reason("Email", "Email is required"));
            None
        }
        Some(e) => match Email::parse(e) {
            Ok(e) => Some(e),
            Err(err) => {
                reasons.push(reason("Email", err.message));
                None
            }
        },
    };
    match &plan {
        None => reasons.push(reason("BikePlanCode", "BikePlanCode is required")),
        Some(p) if !plans.contains(p) => reasons.push(reason(
            "BikePlanCode",
            format!("{p} is not a plan code of this partner"),
        )),
        Some(_) => {}
    }
    let language = match &language_raw {
        None => Some("en".to_owned()),
        Some(l) => admit_domain::locale::iso639_1(l),
    };
    if language.is_none() {
        reasons.push(reason(
            "Language",
            "expected an ISO 639-1 language code such as EN, FR, DE or NL",
        ));
    }
    let language = language.unwrap_or_else(|| "en".into());
    let full_name = match (&first, &last) {
        (None, None) => None,
        (f, l) => Some(
            [f.as_deref(), l.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
        ),
    };
    let email_norm = email.as_ref().map(Email::normalized);
    let parsed = match (email, reasons.is_empty()) {
        (Some(email), true) => Ok(Valid {
            email,
            full_name: full_name.clone(),
            language: language.clone(),
            employee_id: employee.clone(),
            attributes: Attributes {
                bike_plan_code: plan.as_deref(),
                first_name: first.as_deref(),
                last_name: last.as_deref(),
                language: language_raw.as_deref(),
                contract_type: contract.as_deref(),
                personnel_number: personnel.as_deref(),
            }
            .to_json(),
        }),
        _ => Err(reasons),
    };
    let digest = if parsed.is_err() {
        row_digest(v)
    } else {
        String::new()
    };
    Row {
        index,
        digest,
        email_raw,
        email_norm,
        employee_raw: employee,
        full_name,
        language,
        parsed,
    }
}

/// The users of a request, unparsed: the body and where each user's JSON text sits in
/// it. A list of 10,000 users is kept as its body plus 16 bytes a row; a row becomes
/// a `serde_json::Value` only while its chunk is prepared, so one chunk's values are
/// alive at a time instead of the whole list's (some tens of megabytes).
struct Users {
    body: actix_web::web::Bytes,
    spans: Vec<std::ops::Range<usize>>,
}

impl Users {
    fn len(&self) -> usize {
        self.spans.len()
    }

    /// Row `i` parsed. The whole body was read as JSON before, so this does not
    /// fail; if it did, the row would answer "expected a JSON object".
    fn row(&self, i: usize) -> Value {
        self.spans
            .get(i)
            .and_then(|span| self.body.get(span.clone()))
            .and_then(|text| serde_json::from_slice(text).ok())
            .unwrap_or(Value::Null)
    }
}

/// The users of the body, or the error of the whole request.
fn users_of(body: actix_web::web::Bytes, max: usize) -> Result<Users, ApiError> {
    use serde_json::{error::Category, value::RawValue};
    let not_json = |e: serde_json::Error| {
        ApiError::invalid("body", format!("the body is not valid JSON: {e}"))
    };
    // The members borrow from the body: nothing of a user is copied here.
    let mut map: HashMap<String, &RawValue> =
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            Category::Data => ApiError::invalid("body", "the body is a JSON object"),
            _ => not_json(e),
        })?;
    if let Some(key) = map.keys().find(|k| *k != "user" && *k != "users") {
        return Err(ApiError::invalid(
            key.as_str(),
            format!("{key} is not a field of this request: send {{\"user\": {{…}}}} or {{\"users\": […]}}"),
        ));
    }
    let list: Vec<&RawValue> = match (map.remove("user"), map.remove("users")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "users",
                "send either user or users, not both",
            ))
        }
        (Some(u), None) => vec![u],
        (None, Some(l)) => serde_json::from_str(l.get())
            .map_err(|_| ApiError::invalid("users", "expected a list of users"))?,
        (None, None) => {
            return Err(ApiError::invalid(
                "user",
                "send {\"user\": {…}} or {\"users\": […]}",
            ))
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid("users", "the list is empty"));
    }
    if list.len() > max {
        return Err(ApiError::BatchTooLarge {
            field: "users".into(),
            message: format!(
                "{} users in one request; at most {max}: split the list",
                list.len()
            ),
        });
    }
    let start = body.as_ptr() as usize;
    let spans = list
        .iter()
        .map(|raw| {
            let at = raw.get().as_ptr() as usize - start;
            at..at + raw.get().len()
        })
        .collect();
    drop(map);
    Ok(Users { body, spans })
}

/// One row as [`read_batch`] reads it: its normalised address, or its reasons.
pub type ReadRow = Result<String, Vec<Reason>>;

/// How `user.create` reads a body (an entry point for the fuzz targets): the rows,
/// each `Ok` with its normalised address or `Err` with its reasons; `Err` for a body
/// refused whole (the error's field and message).
#[doc(hidden)]
pub fn read_batch(
    body: &[u8],
    max: usize,
    plans: &HashSet<String>,
) -> Result<Vec<ReadRow>, (String, String)> {
    let users =
        users_of(actix_web::web::Bytes::copy_from_slice(body), max).map_err(|e| match e {
            ApiError::InvalidArgument { field, message }
            | ApiError::BatchTooLarge { field, message } => (field, message),
            other => (String::new(), other.to_string()),
        })?;
    Ok((0..users.len())
        .map(|i| {
            parse_row(i, &users.row(i), plans)
                .parsed
                .map(|ok| ok.email.normalized())
        })
        .collect())
}

/// Registers the users of a partner (SPEC §6).
#[utoipa::path(
    post,
    path = "/receiver/APIv3/user.create",
    tag = "partners",
    request_body = BatchRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 200, pattern = r"^[\t -~]*[!-~][\t -~]*$", description = "Replays this request's response for 24 hours; the same key with another body answers 422."),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "One result per user, in order, and the counts", body = BatchResponse),
        (status = 400, description = "The body is not a user or a list of users; `field` names what is wrong", body = crate::api::ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (revoked)", body = crate::api::ErrorBody),
        (status = 413, description = "More users than the limit (10,000, or the partner's `limits.partners.<id>.batch_max_users`), or a body over the limit", body = crate::api::ErrorBody),
        (status = 422, description = "The Idempotency-Key was used with another body", body = crate::api::ErrorBody),
        (status = 429, description = "The partner is over its request rate (`RateLimitExceededException`), or the accounts this batch would create exceed what is left of its daily account-creation quota (`QuotaExceededException`: the batch is refused whole, nothing is created or sent); retry after `Retry-After` seconds", body = crate::api::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait, at least 1: until the rate allows one more request, or until 00:00 UTC for the quota"))),
        (status = 503, description = "A dependency is unavailable; retry (retries are safe)", body = crate::api::ErrorBody),
    )
)]
#[tracing::instrument(name = "user_create", skip_all)]
pub async fn user_create(
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
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= 200 => Some(k.trim().to_owned()),
            _ => {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "expected 1 to 200 visible ASCII characters",
                ))
            }
        },
    };
    let expected = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let body = crate::read_body_sized(payload, state.batch_max_body_bytes, expected).await?;
    let request_digest = secret::digest_bytes(&body);
    let partner_id = partner.partner_id.clone();
    if let Some(key) = &key {
        // The key is claimed before any work, so two requests with it never both run.
        let now = admit_store::now();
        let row = IdempotencyRow {
            partner_id: partner_id.clone(),
            idem_key: key.clone(),
            request_digest: request_digest.clone(),
            status: 0,
            response: String::new(),
            created_at: now,
        };
        let since = now - chrono::Duration::seconds(IDEMPOTENCY_SECS);
        let reserved = match state
            .db
            .write(move |c| registrations::reserve_idempotency_key(c, &row, since))
            .await
        {
            // Another request claimed it between our look and our insert.
            Err(StoreError::Conflict(_)) => Err(ApiError::IdempotencyInProgress),
            other => Ok(other?),
        }?;
        if let Reservation::Taken(kept) = reserved {
            if kept.request_digest != request_digest {
                return Err(ApiError::IdempotencyMismatch);
            }
            if kept.status == 0 {
                return Err(ApiError::IdempotencyInProgress);
            }
            return Ok(HttpResponse::build(
                StatusCode::from_u16(u16::try_from(kept.status).unwrap_or(200))
                    .unwrap_or(StatusCode::OK),
            )
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(kept.response));
        }
    }
    // As `Bytes`, the answer is kept for the key and sent without a second copy.
    let outcome = register(&state, &partner_id, body.freeze())
        .await
        .map(web::Bytes::from);
    if let Some(key) = key {
        let (pid, status) = (partner_id.clone(), 200);
        let encoded = outcome.as_ref().ok().cloned();
        let kept = state
            .db
            .write(move |c| match encoded {
                Some(response) => {
                    // UTF-8 (`register` checked it), so this borrows.
                    let text = String::from_utf8_lossy(&response);
                    registrations::complete_idempotency_key(c, &pid, &key, status, &text)
                }
                None => registrations::release_idempotency_key(c, &pid, &key),
            })
            .await;
        if let Err(e) = kept {
            // The rows are committed; a replay re-runs them, which answers the same
            // and sends nothing.
            tracing::warn!(error = %e, "could not keep the Idempotency-Key response");
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(outcome?))
}

/// The work of one `user.create` request: its answer, encoded.
async fn register(
    state: &AccountState,
    partner_id: &str,
    body: actix_web::web::Bytes,
) -> Result<String, ApiError> {
    let partner_id = partner_id.to_owned();
    let limits = state.partner_limits.of(&partner_id);
    let max = limits.batch_max_users.unwrap_or(state.batch_max_users);
    let users = users_of(body, max).inspect_err(|e| {
        if matches!(e, ApiError::BatchTooLarge { .. }) {
            state
                .partner_limits
                .refused(&partner_id, admit_runtime::limits::Kind::BatchSize);
        }
    })?;

    let p = partner_id.clone();
    let (brand, plans) = state
        .db
        .run(move |c| {
            let partner = partners::find_partner(c, &p)?.ok_or(StoreError::NotFound)?;
            let plans: HashSet<String> = partners::plan_codes_of(c, &p)?.into_iter().collect();
            Ok((partner.brand(), plans))
        })
        .await?;
    // Under a daily quota, the check and the writes hold the partner's lock, so two
    // batches cannot both take the last places (module `quota`).
    let _quota = match limits.daily_accounts {
        None => None,
        Some(_) => {
            let guard = state.quota_locks.of(&partner_id).lock_owned().await;
            let mut new: Vec<String> = (0..users.len())
                .filter_map(|i| {
                    parse_row(i, &users.row(i), &plans)
                        .parsed
                        .ok()
                        .map(|v| v.email.normalized())
                })
                .collect();
            new.sort_unstable();
            new.dedup();
            let (all, pid) = (state.partner_limits.clone(), partner_id.clone());
            state
                .db
                .run(move |c| {
                    let creating = admit_store::quota::new_addresses(c, &new)?;
                    Ok(crate::quota::check(c, &all, &pid, creating))
                })
                .await??;
            Some(guard)
        }
    };

    let total = users.len();
    let encode =
        |e: serde_json::Error| ApiError::Internal(format!("cannot encode the response: {e}"));
    // Every row's answer, in order: row `i` answers `answers[i]`.
    let mut answers: Arc<Vec<Answer>> = Arc::new(Vec::with_capacity(total));
    let mut encoder = Encoder::new(total);
    let mut sent = 0usize;
    let users = Arc::new(users);
    let common = Arc::new(Common {
        partner_id: partner_id.clone(),
        brand,
        link_key: state.link_key.clone(),
        link_ttl_secs: state.link_ttl_secs,
        plans,
        keys: UserKeys::new(),
    });
    // A chunk's rows are read, and what its new users need is made, on another
    // thread while the chunk before it writes (`prepare`): the database and this
    // service work at the same time even with one request in flight.
    let prepare_chunk = |start: usize| {
        let (users, common) = (users.clone(), common.clone());
        let end = (start + INSERT_CHUNK).min(users.len());
        tokio::task::spawn_blocking(move || prepare(&common, &users, start..end))
    };
    let mut next = (total > 0).then(|| prepare_chunk(0));
    // The first row so far of each key, so that a row repeated later in the list
    // answers the same as its first occurrence (an index into `answers`: a list of
    // 10,000 users has some 30,000 keys, each kept once, beside its row's answer).
    let mut earlier: Arc<HashMap<UserKey, usize>> = Arc::new(HashMap::new());
    for start in (0..total).step_by(INSERT_CHUNK) {
        let end = (start + INSERT_CHUNK).min(total);
        let prepared = match next.take() {
            Some(task) => task
                .await
                .map_err(|e| ApiError::Internal(format!("preparing a chunk failed: {e}")))?,
            None => prepare(&common, &users, start..end),
        };
        let prepared = Arc::new(prepared);
        if end < total {
            next = Some(prepare_chunk(end));
        }
        let mut attempt = 0;
        let (chunk_results, chunk_sent, keys) = loop {
            let ctx = ChunkContext {
                common: common.clone(),
                answers: answers.clone(),
                earlier: earlier.clone(),
            };
            let prepared = prepared.clone();
            match state
                .db
                .write(move |c| register_chunk(c, &ctx, &prepared.rows, &prepared.fresh))
                .await
            {
                // Another request registered one of these users at the same moment
                // (a unique index, a deadlock): the chunk rolled back; classify it
                // again. Retries are safe, so a partner that still loses is told
                // to retry, never that its rows are wrong.
                Err(StoreError::Conflict(_) | StoreError::Unavailable(_)) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                }
                Err(StoreError::Conflict(c)) => {
                    return Err(ApiError::Unavailable(format!(
                        "concurrent registrations of the same users ({c:?}); retry"
                    )))
                }
                other => break other?,
            }
        };
        // The chunk's task has ended and dropped its references: these extend in
        // place.
        Arc::make_mut(&mut earlier).extend(keys);
        for r in &chunk_results {
            encoder.push(r).map_err(encode)?;
        }
        Arc::make_mut(&mut answers).extend(chunk_results.into_iter().map(Answer::from));
        sent += chunk_sent;
        if chunk_sent > 0 {
            state.outbox_wake.notify_one();
        }
    }
    drop((earlier, answers));
    let (encoded, counts) = encoder.finish().map_err(encode)?;
    tracing::info!(
        partner_id = %partner_id,
        rows = total,
        created = counts.created,
        existing = counts.existing,
        failed = counts.failed,
        emails = sent,
        "user.create"
    );
    Ok(encoded)
}

/// What every chunk of a request shares.
struct Common {
    partner_id: String,
    brand: PartnerBrand,
    link_key: Vec<u8>,
    link_ttl_secs: i64,
    /// The partner's plan codes.
    plans: HashSet<String>,
    keys: UserKeys,
}

struct ChunkContext {
    common: Arc<Common>,
    /// The answers of the earlier chunks' rows, in order.
    answers: Arc<Vec<Answer>>,
    /// The first of the earlier chunks' rows with each key (an index into `answers`).
    earlier: Arc<HashMap<UserKey, usize>>,
}

impl ChunkContext {
    /// Row `r`'s answer when it is the same user as row `first`: `first`'s outcome,
    /// with `r`'s own index, address and employee id. Row `first` is an earlier
    /// chunk's, or one of `out`, the answers so far of the chunk whose first row is
    /// `start`.
    fn again(&self, out: &[RowResult], start: usize, first: usize, r: &Row) -> Option<RowResult> {
        let (status, account_id, reasons) = match first.checked_sub(start) {
            Some(at) => out
                .get(at)
                .map(|p| (p.status, p.account_id.as_deref(), p.reasons.as_slice()))?,
            None => self
                .answers
                .get(first)
                .map(|a| (a.status, a.account_id.as_deref(), &*a.reasons))?,
        };
        Some(RowResult {
            index: r.index,
            status,
            account_id: account_id.map(str::to_owned),
            email: r.email_raw.clone(),
            partner_employee_id: r.employee_raw.clone(),
            reasons: reasons.to_vec(),
        })
    }
}

/// What a valid row writes if it turns out to be a new user: its account, its
/// contact, its welcome email (encoded) and the set-password link in it. Made
/// before the chunk's transaction; thrown away for a row that is not new.
struct Fresh {
    account: AccountRow,
    contact: ContactRow,
    message: outbox::Encoded,
    link: PasswordTokenRow,
}

fn fresh_of(common: &Common, v: &Valid, now: NaiveDateTime) -> Result<Fresh, StoreError> {
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = Envelope::new(Notification::SetPassword {
        to: v.email.as_str().to_owned(),
        account_id: id.clone(),
        partner: common.brand.clone(),
        full_name: v.full_name.clone(),
        language: v.language.clone(),
    });
    let message = outbox::encode(&envelope)?;
    let link = crate::password_link(
        &common.link_key,
        &envelope,
        &common.partner_id,
        now,
        common.link_ttl_secs,
    );
    Ok(Fresh {
        account: AccountRow {
            id: id.clone(),
            username: None,
            username_normalized: None,
            full_name: v.full_name.clone(),
            locale: None,
            password_hash: None,
            account_type: "standard".into(),
            status: "pending".into(),
            created_at: now,
            expires_at: None,
        },
        contact: crate::contact_row(&id, "EMAIL", v.email.as_str(), &v.email.normalized(), now),
        message,
        link,
    })
}

/// A chunk ready to write: its rows, and the [`Fresh`] of each (`None` for a row
/// that failed validation, or that could not be prepared, which its chunk then
/// prepares itself and reports). The chunk's transaction takes each `Fresh` it uses
/// out (a second copy of the chunk's new rows would be another megabyte per request
/// in flight); if it rolls back, its retry prepares those rows again.
struct Prepared {
    rows: Vec<Row>,
    fresh: std::sync::Mutex<Vec<Option<Fresh>>>,
}

/// The chunk of the users of `range`.
fn prepare(common: &Common, users: &Users, range: std::ops::Range<usize>) -> Prepared {
    let now = admit_store::now();
    let rows: Vec<Row> = range
        .map(|i| parse_row(i, &users.row(i), &common.plans))
        .collect();
    let fresh = rows
        .iter()
        .map(|r| {
            r.parsed
                .as_ref()
                .ok()
                .and_then(|v| fresh_of(common, v, now).ok())
        })
        .collect();
    Prepared {
        rows,
        fresh: std::sync::Mutex::new(fresh),
    }
}

fn result_of(
    row: &Row,
    status: Status,
    account_id: Option<String>,
    reasons: Vec<Reason>,
) -> RowResult {
    RowResult {
        index: row.index,
        status,
        account_id,
        email: row.email_raw.clone(),
        partner_employee_id: row.employee_raw.clone(),
        reasons,
    }
}

/// The keys by which a row is the same user as another: its employee id, its
/// address, and the account that address already has.
fn user_keys(keys: &UserKeys, r: &Row, account: Option<&String>) -> Vec<UserKey> {
    let mut out = Vec::with_capacity(3);
    if let Some(e) = &r.employee_raw {
        out.push(keys.key(b'e', e));
    }
    if let Some(m) = &r.email_norm {
        out.push(keys.key(b'm', m));
    }
    if let Some(a) = account {
        out.push(keys.key(b'a', a));
    }
    out
}

fn status_of(m: &MembershipRow) -> Status {
    if m.outcome == "created" {
        Status::Created
    } else {
        Status::Existing
    }
}

/// A chunk's answers, the number of emails it queued, and the first of its rows with
/// each key (by row index).
type ChunkOutcome = (Vec<RowResult>, usize, HashMap<UserKey, usize>);

/// Registers one chunk inside its transaction.
fn register_chunk(
    c: &mut AnyConnection,
    ctx: &ChunkContext,
    rows: &[Row],
    fresh: &std::sync::Mutex<Vec<Option<Fresh>>>,
) -> Result<ChunkOutcome, StoreError> {
    // Only this chunk's transaction uses it; a panic elsewhere left nothing half-done.
    let mut fresh = fresh
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = admit_store::now();
    let common = ctx.common.as_ref();
    let pid = common.partner_id.as_str();
    // What this partner sent before: memberships by employee id, by address and by
    // the account an address already has; failed rows by digest.
    let employee_ids: Vec<String> = rows.iter().filter_map(|r| r.employee_raw.clone()).collect();
    let emails: Vec<String> = rows.iter().filter_map(|r| r.email_norm.clone()).collect();
    let failed_digests: Vec<String> = rows
        .iter()
        .filter(|r| r.parsed.is_err())
        .map(|r| r.digest.clone())
        .collect();
    let by_employee: HashMap<String, MembershipRow> =
        registrations::memberships_by_employee(c, pid, &employee_ids)?
            .into_iter()
            .filter_map(|m| Some((m.employee_id.clone()?, m)))
            .collect();
    let by_email: HashMap<String, MembershipRow> =
        registrations::memberships_by_email(c, pid, &emails)?
            .into_iter()
            .filter_map(|m| Some((m.email_normalized.clone()?, m)))
            .collect();
    let accounts_of: HashMap<String, String> = registrations::accounts_by_email(c, &emails)?
        .into_iter()
        .collect();
    let account_ids: Vec<String> = accounts_of.values().cloned().collect();
    let by_account: HashMap<String, MembershipRow> =
        registrations::memberships_by_account(c, pid, &account_ids)?
            .into_iter()
            .map(|m| (m.account_id.clone(), m))
            .collect();
    let failures: HashMap<String, FailureRow> =
        registrations::failures_by_digest(c, pid, &failed_digests)?
            .into_iter()
            .map(|f| (f.row_digest.clone(), f))
            .collect();

    // The first row of this chunk with each key: a row that is the same user as an
    // earlier one (same employee id, address, or account) answers the same.
    let start = rows.first().map_or(0, |r| r.index);
    let mut seen: HashMap<UserKey, usize> = HashMap::new();
    let mut new_accounts: Vec<AccountRow> = Vec::new();
    let mut new_contacts: Vec<ContactRow> = Vec::new();
    let mut new_memberships: Vec<MembershipRow> = Vec::new();
    let mut new_failures: Vec<FailureRow> = Vec::new();
    // Links of accounts that existed before (their older links stop working), and of
    // accounts this chunk creates (nothing older to retire).
    let mut links = Vec::new();
    let mut new_links = Vec::new();
    let mut messages: Vec<outbox::Encoded> = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let account = r.email_norm.as_ref().and_then(|m| accounts_of.get(m));
        let keys = user_keys(&common.keys, r, account);
        if let Some(repeated) = keys
            .iter()
            .find_map(|k| seen.get(k).or_else(|| ctx.earlier.get(k)))
            .and_then(|&first| ctx.again(&out, start, first, r))
        {
            out.push(repeated);
            continue;
        }
        // A user this partner registered before answers as then, even if the row
        // would fail today (a plan code removed since): nothing is sent again.
        let known = r
            .employee_raw
            .as_ref()
            .and_then(|e| by_employee.get(e))
            .or_else(|| r.email_norm.as_ref().and_then(|m| by_email.get(m)))
            .or_else(|| account.and_then(|a| by_account.get(a)));
        if let Some(m) = known {
            for k in user_keys(&common.keys, r, Some(&m.account_id)) {
                seen.entry(k).or_insert(r.index);
            }
            out.push(result_of(
                r,
                status_of(m),
                Some(m.account_id.clone()),
                Vec::new(),
            ));
            continue;
        }
        let v = match &r.parsed {
            Ok(v) => v,
            Err(reasons) => {
                let key = common.keys.key(b'f', &r.digest);
                if let Some(repeated) = seen
                    .get(&key)
                    .or_else(|| ctx.earlier.get(&key))
                    .and_then(|&first| ctx.again(&out, start, first, r))
                {
                    out.push(repeated);
                    continue;
                }
                let result = if let Some(f) = failures.get(&r.digest) {
                    let reasons: Vec<Reason> = serde_json::from_str(&f.reasons).unwrap_or_default();
                    result_of(r, Status::Failed, None, reasons)
                } else {
                    new_failures.push(FailureRow {
                        partner_id: pid.to_owned(),
                        row_digest: r.digest.clone(),
                        reasons: serde_json::to_string(reasons).unwrap_or_else(|_| "[]".into()),
                        created_at: now,
                    });
                    // Only an address that can receive mail is told.
                    if let Some(to) = r.email_raw.as_deref().and_then(|e| Email::parse(e).ok()) {
                        messages.push(outbox::encode(&Envelope::new(
                            Notification::RegistrationFailed {
                                to: to.as_str().to_owned(),
                                partner: common.brand.clone(),
                                full_name: r.full_name.clone(),
                                language: r.language.clone(),
                                reasons: reasons
                                    .iter()
                                    .map(|x| format!("{}: {}", x.field, x.message))
                                    .collect(),
                            },
                        ))?);
                    }
                    result_of(r, Status::Failed, None, reasons.clone())
                };
                seen.insert(key, r.index);
                out.push(result);
                continue;
            }
        };
        let normalized = v.email.normalized();
        let (account_id, status) = match account {
            Some(id) => {
                // An address with an account: "you already have an account", with a
                // link that replaces the account's older ones.
                let envelope = Envelope::new(Notification::AlreadyRegistered {
                    to: v.email.as_str().to_owned(),
                    account_id: id.clone(),
                    partner: common.brand.clone(),
                    full_name: v.full_name.clone(),
                    language: v.language.clone(),
                });
                links.push(crate::password_link(
                    &common.link_key,
                    &envelope,
                    pid,
                    now,
                    common.link_ttl_secs,
                ));
                messages.push(outbox::encode(&envelope)?);
                (id.clone(), Status::Existing)
            }
            None => {
                let f = match fresh.get_mut(i).and_then(Option::take) {
                    Some(f) => f,
                    None => fresh_of(common, v, now)?,
                };
                let id = f.account.id.clone();
                new_accounts.push(f.account);
                new_contacts.push(f.contact);
                new_links.push(f.link);
                messages.push(f.message);
                (id, Status::Created)
            }
        };
        new_memberships.push(MembershipRow {
            partner_id: pid.to_owned(),
            account_id: account_id.clone(),
            employee_id: v.employee_id.clone(),
            email_normalized: Some(normalized),
            outcome: if status == Status::Created {
                "created".into()
            } else {
                "existing".into()
            },
            attributes: v.attributes.clone(),
            created_at: now,
        });
        for k in user_keys(&common.keys, r, Some(&account_id)) {
            seen.entry(k).or_insert(r.index);
        }
        out.push(result_of(r, status, Some(account_id), Vec::new()));
    }
    accounts::insert_many(c, &new_accounts, &new_contacts)?;
    registrations::insert_memberships(c, &new_memberships)?;
    registrations::insert_failures(c, &new_failures)?;
    registrations::insert_password_tokens(c, &links, now)?;
    registrations::insert_new_accounts_password_tokens(c, &new_links)?;
    outbox::enqueue_encoded(c, outbox::MAIL_TOPIC, &messages)?;
    Ok((out, messages.len(), seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(b: &'static [u8]) -> actix_web::web::Bytes {
        actix_web::web::Bytes::from_static(b)
    }

    fn plans() -> HashSet<String> {
        ["PLAN-A".to_owned()].into_iter().collect()
    }

    #[test]
    fn a_good_row_parses_and_keeps_the_partner_fields() {
        let v = json!({"BikePlanCode": "PLAN-A", "FirstName": "Jane", "LastName": "Johansson", "Email": "Jane@Example.com", "Language": "FR", "ContractType": "", "partner_EmployeeID": "ABC123", "PersonnelNumber": "A1234"});
        let r = parse_row(0, &v, &plans());
        let ok = r.parsed.as_ref().expect("valid");
        assert_eq!(ok.language, "fr");
        assert_eq!(ok.full_name.as_deref(), Some("Jane Johansson"));
        assert_eq!(ok.employee_id.as_deref(), Some("ABC123"));
        let attributes: Value = serde_json::from_str(&ok.attributes).expect("json");
        assert_eq!(attributes["PersonnelNumber"], "A1234");
        assert_eq!(attributes["ContractType"], Value::Null);
    }

    #[test]
    fn every_fault_of_a_row_is_named() {
        let v = json!({"BikePlanCode": "NOPE", "Email": "not-an-address", "Language": "xx", "Shoe": 4, "FirstName": 7});
        let r = parse_row(3, &v, &plans());
        let reasons = r.parsed.err().expect("failed");
        let fields: Vec<&str> = reasons.iter().map(|x| x.field.as_str()).collect();
        for f in ["Shoe", "FirstName", "Email", "BikePlanCode", "Language"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn the_digest_ignores_key_order() {
        let a = json!({"Email": "a@example.com", "BikePlanCode": "X"});
        let b: Value =
            serde_json::from_str(r#"{"BikePlanCode":"X","Email":"a@example.com"}"#).expect("json");
        assert_eq!(row_digest(&a), row_digest(&b));
        assert_ne!(
            row_digest(&a),
            row_digest(&json!({"Email": "b@example.com", "BikePlanCode": "X"}))
        );
    }

    #[test]
    fn the_request_is_a_user_or_a_list_within_the_limit() {
        assert_eq!(
            users_of(bytes(br#"{"user": {"Email": "a@b.c"}}"#), 10)
                .expect("one")
                .len(),
            1
        );
        assert!(matches!(
            users_of(bytes(br#"{"users": []}"#), 10),
            Err(ApiError::InvalidArgument { .. })
        ));
        assert!(matches!(
            users_of(bytes(br#"{"users": [{}, {}, {}]}"#), 2),
            Err(ApiError::BatchTooLarge { .. })
        ));
        assert!(matches!(
            users_of(bytes(br#"{"people": []}"#), 2),
            Err(ApiError::InvalidArgument { .. })
        ));
        assert!(matches!(
            users_of(bytes(b"[1]"), 2),
            Err(ApiError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn each_user_is_read_from_its_place_in_the_body() {
        let users = users_of(
            bytes(br#" { "users" : [ {"Email": "a\u0040b.c"} , 7, {"x": [1, {"y": "]"}]} ] } "#),
            10,
        )
        .expect("a list");
        assert_eq!(users.len(), 3);
        assert_eq!(users.row(0), json!({"Email": "a@b.c"}));
        assert_eq!(users.row(1), json!(7));
        assert_eq!(users.row(2), json!({"x": [1, {"y": "]"}]}));
        assert_eq!(users.row(3), Value::Null);
    }

    #[test]
    fn a_body_refused_whole_names_what_is_wrong() {
        let message = |body: &'static [u8]| match users_of(bytes(body), 10) {
            Err(ApiError::InvalidArgument { field, message }) => format!("{field}: {message}"),
            Err(other) => format!("{other:?}"),
            Ok(_) => "accepted".into(),
        };
        assert_eq!(message(b"[1]"), "body: the body is a JSON object");
        assert!(message(b"{\"users\": [").starts_with("body: the body is not valid JSON"));
        assert_eq!(
            message(br#"{"users": {}}"#),
            "users: expected a list of users"
        );
        assert_eq!(
            message(br#"{"user": {}, "users": []}"#),
            "users: send either user or users, not both"
        );
        assert_eq!(message(br#"{"users": []}"#), "users: the list is empty");
    }

    #[test]
    fn the_answer_written_a_chunk_at_a_time_is_serdes_of_the_whole_response() {
        let row = |index, status, account_id: Option<&str>, reasons: Vec<Reason>| RowResult {
            index,
            status,
            account_id: account_id.map(str::to_owned),
            email: Some(format!("user{index}@example.com")),
            partner_employee_id: (index % 2 == 0).then(|| format!("E\"{index}")),
            reasons,
        };
        let results = vec![
            row(0, Status::Created, Some("0190-a"), Vec::new()),
            row(
                1,
                Status::Failed,
                None,
                vec![reason("Email", "Email is required")],
            ),
            row(2, Status::Existing, Some("0190-b"), Vec::new()),
            row(3, Status::Created, Some("0190-c"), Vec::new()),
        ];
        let mut encoder = Encoder::new(results.len());
        for r in &results {
            encoder.push(r).expect("encodes");
        }
        let (text, counts) = encoder.finish().expect("encodes");
        let whole = BatchResponse {
            total: 4,
            counts: Counts {
                created: 2,
                existing: 1,
                failed: 1,
            },
            results,
        };
        assert_eq!(text, serde_json::to_string(&whole).expect("encodes"));
        assert_eq!((counts.created, counts.existing, counts.failed), (2, 1, 1));
        let (empty, _) = Encoder::new(0).finish().expect("encodes");
        assert_eq!(
            empty,
            r#"{"results":[],"counts":{"created":0,"existing":0,"failed":0},"total":0}"#
        );
    }

    #[test]
    fn user_keys_tell_kinds_apart_and_agree_within_a_request() {
        let keys = UserKeys::new();
        assert_eq!(keys.key(b'e', "A1"), keys.key(b'e', "A1"));
        assert_ne!(keys.key(b'e', "A1"), keys.key(b'm', "A1"));
        assert_ne!(keys.key(b'e', "A1"), keys.key(b'e', "A2"));
        // Another request hashes with other keys.
        assert_ne!(keys.key(b'e', "A1"), UserKeys::new().key(b'e', "A1"));
    }
}
