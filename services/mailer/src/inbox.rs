//! The embedded default's inbox, for people (`/dev/inbox`) and tests
//! (`/dev/inbox.json`). It exists only when the mail goes to the local inbox; the
//! production mailer has no such route.

use crate::transport::{Inbox, StoredEmail};
use actix_web::{web, HttpResponse};
use std::sync::Arc;

pub fn configure(inbox: Arc<Inbox>) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let data = web::Data::from(inbox);
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(data.clone())
            .route("/dev/inbox", web::get().to(list_page))
            .route("/dev/inbox.json", web::get().to(list_json))
            .route("/dev/inbox/{id}", web::get().to(message_page))
            .route("/dev/inbox/{id}/html", web::get().to(message_html));
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn load(inbox: &Inbox) -> Result<Vec<StoredEmail>, actix_web::Error> {
    inbox
        .list()
        .map_err(actix_web::error::ErrorInternalServerError)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2433}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.5rem;border-bottom:1px solid #d6d9e0}\
a{color:#1f4fd1}pre{white-space:pre-wrap;background:#f4f5f7;padding:1rem;border-radius:6px}\
iframe{width:100%;height:32rem;border:1px solid #d6d9e0;border-radius:6px}";

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
            escape(title)
        ))
}

async fn list_page(inbox: web::Data<Inbox>) -> Result<HttpResponse, actix_web::Error> {
    let messages = load(&inbox)?;
    let mut rows = String::new();
    for m in &messages {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><a href=\"/dev/inbox/{}\">{}</a></td></tr>",
            escape(&m.created_at.format("%Y-%m-%d %H:%M:%S").to_string()),
            escape(&m.to),
            escape(&m.id),
            escape(&m.subject)
        ));
    }
    let body = if messages.is_empty() {
        "<h1>Inbox</h1><p>No email yet. Create an account (see the README) and reload.</p>"
            .to_owned()
    } else {
        format!(
            "<h1>Inbox</h1><p>{} messages sent by this platform, newest first. As JSON: <a href=\"/dev/inbox.json\">/dev/inbox.json</a>.</p>\
             <table><thead><tr><th scope=\"col\">Sent</th><th scope=\"col\">To</th><th scope=\"col\">Subject</th></tr></thead><tbody>{rows}</tbody></table>",
            messages.len()
        )
    };
    Ok(page("Inbox", &body))
}

async fn list_json(inbox: web::Data<Inbox>) -> Result<HttpResponse, actix_web::Error> {
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(load(&inbox)?))
}

fn find(inbox: &Inbox, id: &str) -> Result<Option<StoredEmail>, actix_web::Error> {
    Ok(load(inbox)?.into_iter().find(|m| m.id == id))
}

async fn message_page(
    inbox: web::Data<Inbox>,
    id: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(m) = find(&inbox, &id)? else {
        return Ok(HttpResponse::NotFound().body("no such message"));
    };
    let body = format!(
        "<p><a href=\"/dev/inbox\">&larr; Inbox</a></p><h1>{}</h1><p>To: {}<br>Sent: {}</p>\
         <h2>HTML part</h2><p><a href=\"/dev/inbox/{}/html\">Open on its own</a></p>\
         <iframe title=\"HTML part\" sandbox=\"allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation\" src=\"/dev/inbox/{}/html\"></iframe>\
         <h2>Text part</h2><pre>{}</pre>",
        escape(&m.subject),
        escape(&m.to),
        escape(&m.created_at.to_rfc3339()),
        escape(&m.id),
        escape(&m.id),
        escape(&m.text)
    );
    Ok(page(&m.subject, &body))
}

async fn message_html(
    inbox: web::Data<Inbox>,
    id: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let Some(m) = find(&inbox, &id)? else {
        return Ok(HttpResponse::NotFound().body("no such message"));
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "script-src 'none'"))
        .body(m.html))
}
