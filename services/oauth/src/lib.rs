//! The OAuth 2.0 / OpenID Connect authorization server: clients, codes, tokens, keys
//! and discovery.
//!
//! Available now: the token endpoint with the `client_credentials` grant, JWT access
//! tokens (RFC 9068, ES256) and their keys at `/oauth/jwks` with rotation,
//! introspection (RFC 7662) and revocation (RFC 7009), server metadata (RFC 8414), and
//! the operator actions on partners, clients, API keys and plan codes ([`admin`]). The
//! authorize pages, the code and refresh grants and OpenID Connect are the next pieces.

pub mod admin;
pub mod introspect;
pub mod keys;
pub mod token;

use actix_web::{web, HttpResponse};
use admit_runtime::{Metrics, Readiness, Settings};
use admit_store::Db;
use std::time::Duration;
use token::TokenState;
use tokio_util::sync::CancellationToken;

/// The service's state, built from settings; spawns the key refresh until `stop`.
pub async fn state(
    settings: &Settings,
    db: Db,
    stop: CancellationToken,
) -> anyhow::Result<web::Data<TokenState>> {
    let keys = keys::KeyRing::load(db.clone()).await?;
    tokio::spawn(keys.clone().run_refresh(
        Duration::from_secs(settings.oauth.key_refresh_secs.max(1)),
        stop.clone(),
    ));
    tokio::spawn(purge_revocations(db.clone(), stop));
    let issuer = settings.issuer();
    Ok(web::Data::new(TokenState {
        db,
        keys,
        audience: issuer.clone(),
        issuer,
    }))
}

/// Forgets revocations of expired tokens, every ten minutes.
async fn purge_revocations(db: Db, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = stop.cancelled() => return,
        }
        let purged = db
            .write(|c| admit_store::partners::purge_revoked_tokens(c, admit_store::now()))
            .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e, "cannot purge expired revocations; will retry");
        }
    }
}

/// Mounts the service's public routes.
pub fn configure(
    state: web::Data<TokenState>,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .app_data(web::PayloadConfig::new(16 * 1024))
            .route("/oauth/token", web::post().to(token::token))
            .route("/oauth/introspect", web::post().to(introspect::introspect))
            .route("/oauth/revoke", web::post().to(introspect::revoke))
            .route("/oauth/jwks", web::get().to(jwks))
            .route(
                "/.well-known/oauth-authorization-server",
                web::get().to(metadata),
            );
    }
}

async fn jwks(state: web::Data<TokenState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=60"))
        .json(&state.keys.current().jwks)
}

/// RFC 8414 server metadata: what is offered today, nothing more.
async fn metadata(state: web::Data<TokenState>) -> HttpResponse {
    let i = &state.issuer;
    HttpResponse::Ok().json(serde_json::json!({
        "issuer": i,
        "token_endpoint": format!("{i}/oauth/token"),
        "jwks_uri": format!("{i}/oauth/jwks"),
        "introspection_endpoint": format!("{i}/oauth/introspect"),
        "revocation_endpoint": format!("{i}/oauth/revoke"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "code_challenge_methods_supported": ["S256"],
    }))
}

/// The standalone authorization server. Runs until SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let db = admit_runtime::database::connect(&settings)?;
    let stop = CancellationToken::new();
    let state = state(&settings, db.clone(), stop.clone()).await?;
    let readiness = admit_runtime::database::check(Readiness::new(), db);
    let started = admit_runtime::http::start(
        "admit-oauth",
        admit_runtime::http::bind(&settings.bind, settings.oauth.port)?,
        readiness,
        Metrics::new(),
        stop.clone(),
        admit_runtime::http::grace(Duration::from_secs(5)),
        configure(state),
    )?;
    started.server.await?;
    stop.cancel();
    Ok(())
}
