//! The audit log (`audit_events`): who did what to what, when, from where, and how
//! it ended, for every admin action and credential event. Append-only: this module
//! offers [`insert`] and [`query`] and nothing else, and the database refuses
//! `UPDATE` and `DELETE` on the table (triggers on both backends). The purge of test
//! accounts leaves their events alone: an event holds ids, never an address, a
//! name, a secret or a password, so there is nothing personal to purge.
//!
//! Callers write an event in the transaction of the action it records where the
//! action is one, so an action and its event commit together or not at all.

use crate::schema::audit_events;
use crate::{AnyConnection, StoreError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

pub const SUCCESS: &str = "success";
pub const FAILURE: &str = "failure";
pub const DENIED: &str = "denied";

/// Who acts and where the request came from: the same for every event one request
/// (or one CLI command) records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `admin_token`, `cli`, `account`, `client`, `partner`, `anonymous`.
    pub actor_kind: String,
    pub actor_id: String,
    /// The request span's id (`request_id` in the logs); a CLI command's own UUID.
    pub request_id: String,
    /// The client's address as the rate limits take it (`http.trusted_proxies`), or
    /// `local` for the CLI.
    pub source: String,
}

impl Origin {
    /// The same request, another actor (a login that succeeded is the account's).
    pub fn acting_as(&self, kind: &str, id: &str) -> Self {
        Self {
            actor_kind: kind.to_owned(),
            actor_id: id.to_owned(),
            ..self.clone()
        }
    }

    /// A successful `action` on the `target_kind` `target_id`, now.
    pub fn event(&self, action: &str, target_kind: &str, target_id: &str) -> NewAuditEvent {
        NewAuditEvent {
            at: crate::now(),
            actor_kind: self.actor_kind.clone(),
            actor_id: self.actor_id.clone(),
            action: action.to_owned(),
            target_kind: target_kind.to_owned(),
            target_id: target_id.to_owned(),
            outcome: SUCCESS.to_owned(),
            request_id: self.request_id.clone(),
            source: self.source.clone(),
            detail: "{}".to_owned(),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
    pub at: NaiveDateTime,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub outcome: String,
    pub request_id: String,
    pub source: String,
    /// A small JSON object (counts, reasons, names of things): never a secret.
    pub detail: String,
}

impl NewAuditEvent {
    pub fn outcome(mut self, outcome: &str) -> Self {
        outcome.clone_into(&mut self.outcome);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail.to_string();
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub outcome: String,
    pub request_id: String,
    pub source: String,
    pub detail: String,
}

impl AuditEvent {
    /// The event as one JSON object (`admit audit --json`, `GET /admin/v1/audit`).
    pub fn to_json(&self) -> serde_json::Value {
        let detail = serde_json::from_str::<serde_json::Value>(&self.detail)
            .unwrap_or_else(|_| serde_json::Value::String(self.detail.clone()));
        serde_json::json!({
            "id": self.id,
            "time": self.at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "actor": {"kind": self.actor_kind, "id": self.actor_id},
            "action": self.action,
            "target": {"kind": self.target_kind, "id": self.target_id},
            "outcome": self.outcome,
            "request_id": self.request_id,
            "source": self.source,
            "detail": detail,
        })
    }
}

/// Appends `event`. Call in the transaction of the action it records.
pub fn insert(conn: &mut AnyConnection, event: &NewAuditEvent) -> Result<(), StoreError> {
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)?;
    Ok(())
}

/// Which events [`query`] returns. `actor` and `target` are `kind:id`, an id, or a
/// kind alone; `action` is a name or a dotted prefix of names (`client` matches
/// `client.create` and `client.delete`, not `clients.x`).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<NaiveDateTime>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub limit: i64,
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for ch in prefix.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// The events `filter` selects, newest first, at most `filter.limit` (1 to 10,000).
pub fn query(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEvent>, StoreError> {
    use audit_events::dsl as a;
    let mut q = a::audit_events.into_boxed();
    if let Some(since) = filter.since {
        q = q.filter(a::at.ge(since));
    }
    if let Some(actor) = filter.actor.as_deref().filter(|s| !s.is_empty()) {
        q = match actor.split_once(':') {
            Some((kind, id)) => q
                .filter(a::actor_kind.eq(kind.to_owned()))
                .filter(a::actor_id.eq(id.to_owned())),
            None => q.filter(
                a::actor_id
                    .eq(actor.to_owned())
                    .or(a::actor_kind.eq(actor.to_owned())),
            ),
        };
    }
    if let Some(target) = filter.target.as_deref().filter(|s| !s.is_empty()) {
        q = match target.split_once(':') {
            Some((kind, id)) => q
                .filter(a::target_kind.eq(kind.to_owned()))
                .filter(a::target_id.eq(id.to_owned())),
            None => q.filter(
                a::target_id
                    .eq(target.to_owned())
                    .or(a::target_kind.eq(target.to_owned())),
            ),
        };
    }
    if let Some(action) = filter.action.as_deref().filter(|s| !s.is_empty()) {
        let prefix = action.trim_end_matches(['.', '*']);
        let pattern = like_prefix(&format!("{prefix}."));
        q = q.filter(
            a::action
                .eq(prefix.to_owned())
                .or(a::action.like(pattern).escape('\\')),
        );
    }
    Ok(q.order((a::at.desc(), a::id.desc()))
        .limit(filter.limit.clamp(1, 10_000))
        .select(AuditEvent::as_select())
        .load(conn)?)
}
