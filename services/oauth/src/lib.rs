//! The OAuth 2.0 / OpenID Connect authorization server: clients, codes, tokens, keys
//! and discovery.
//!
//! - [`authorize`]: `/oauth/authorize` with the consent page; the login page it sends
//!   users to is the account service's, and the session cookie is shared.
//! - [`token`]: `/oauth/token` with `client_credentials`; [`code`]: the
//!   `authorization_code` (PKCE S256) and `refresh_token` (rotation, reuse revokes
//!   the grant) grants, OpenID Connect `id_token` and `/oauth/userinfo`.
//! - JWT access tokens (RFC 9068) signed with the keys of [`keys`], published at
//!   `/oauth/jwks` with rotation; [`introspect`]: introspection (RFC 7662) and
//!   revocation (RFC 7009); server metadata (RFC 8414) and OpenID discovery.
//! - [`admin`]: the operator actions on partners, clients, API keys and plan codes.

pub mod admin;
pub mod admin_api;
pub mod authorize;
pub mod clients;
pub mod code;
pub mod internal;
pub mod introspect;
pub mod keys;
pub mod memo;
pub mod rotate;
pub mod token;

use actix_web::{web, HttpResponse};
use admit_runtime::limits::PartnerLimits;
use admit_runtime::{Metrics, Readiness, Settings};
use admit_store::Db;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use token::TokenState;
use tokio_util::sync::CancellationToken;

/// The service's state, built from settings; spawns the key refresh until `stop`.
/// Token rates are counted in process, by a limiter of its own.
pub async fn state(
    settings: &Settings,
    db: Db,
    stop: CancellationToken,
) -> anyhow::Result<web::Data<TokenState>> {
    let limits = Arc::new(PartnerLimits::memory(&settings.limits));
    state_with_limits(settings, db, stop, limits).await
}

/// [`state`] counting token rates with `limits` (Redis in production; the account
/// service's in the embedded default, so one metric counts every refusal).
pub async fn state_with_limits(
    settings: &Settings,
    db: Db,
    stop: CancellationToken,
    limits: Arc<PartnerLimits>,
) -> anyhow::Result<web::Data<TokenState>> {
    state_with(settings, db, stop, limits, None).await
}

/// [`state_with_limits`] with the revocation feed of the production topology: a
/// view of what is revoked kept current through Redis, and an announcer for this
/// service's own revocations (`None`: introspection reads the database).
pub async fn state_with(
    settings: &Settings,
    db: Db,
    stop: CancellationToken,
    limits: Arc<PartnerLimits>,
    feed: Option<admit_runtime::revocations::Feed>,
) -> anyhow::Result<web::Data<TokenState>> {
    use admit_runtime::revocations::{self, Announcer, View};
    let (view, announcer) = match feed {
        Some(feed) => {
            let view = View::new()?;
            let announcer =
                Announcer::redis(settings.redis.url.expose_secret(), &settings.redis.prefix)?;
            tokio::spawn(revocations::follow(
                view.clone(),
                db.clone(),
                feed,
                stop.clone(),
            ));
            (Some(view), announcer)
        }
        None => (None, Announcer::off()),
    };
    let kek = keys::Kek::from_base64(settings.oauth.key_encryption_key.expose_secret())?;
    let alg = keys::algorithm(&settings.oauth.signing_alg)?;
    let keys = keys::KeyRing::load(db.clone(), kek, alg).await?;
    tokio::spawn(keys.clone().run_refresh(
        Duration::from_secs(settings.oauth.key_refresh_secs.max(1)),
        stop.clone(),
    ));
    tokio::spawn(purge_revocations(db.clone(), stop));
    let issuer = settings.issuer();
    let base = settings.public_base_url.trim_end_matches('/');
    let refresh_ttl_secs = settings.oauth.refresh_ttl_secs.max(60);
    let rotator = rotate::Rotator::spawn(db.clone(), refresh_ttl_secs);
    Ok(web::Data::new(TokenState {
        db,
        keys,
        audience: issuer.clone(),
        issuer,
        pages: admit_runtime::web::Pages::new(authorize::TEMPLATES)?,
        login_url: format!("{base}/login"),
        refresh_ttl_secs,
        rotator,
        internal_token: settings.internal.token.expose_secret().to_owned(),
        admin_token: settings.internal.admin_token.expose_secret().to_owned(),
        default_access_ttl: settings.oauth.access_ttl_secs,
        clients: clients::ClientCache::default(),
        limits,
        revocations: view,
        announcer,
        memo: memo::Memo::default(),
    }))
}

/// Forgets revocations of expired tokens, and grants that have ended, every ten
/// minutes.
async fn purge_revocations(db: Db, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = stop.cancelled() => return,
        }
        let purged = db
            .write(|c| {
                let now = admit_store::now();
                admit_store::partners::purge_revoked_tokens(c, now)?;
                admit_store::revocations::purge_log(
                    c,
                    now - chrono::Duration::seconds(admit_runtime::revocations::LOG_KEEP_SECS),
                )?;
                admit_store::grants::purge_grants(c, now)
            })
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
            .route("/oauth/authorize", web::get().to(authorize::authorize))
            .route("/OAuth/authorize", web::get().to(authorize::authorize))
            .route("/oauth/authorize", web::post().to(authorize::decide))
            .route("/OAuth/authorize", web::post().to(authorize::decide))
            .route("/oauth/token", web::post().to(token::token))
            .route("/internal/v1/codes", web::post().to(internal::mint_code))
            .configure(admin_api::routes)
            .route("/oauth/userinfo", web::get().to(code::userinfo))
            .route("/oauth/userinfo", web::post().to(code::userinfo))
            .route("/oauth/introspect", web::post().to(introspect::introspect))
            .route("/oauth/revoke", web::post().to(introspect::revoke))
            .route("/oauth/jwks", web::get().to(jwks))
            .route(
                "/.well-known/oauth-authorization-server",
                web::get().to(metadata),
            )
            .route("/.well-known/openid-configuration", web::get().to(metadata));
    }
}

async fn jwks(state: web::Data<TokenState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=60"))
        .json(&state.keys.current().jwks)
}

/// RFC 8414 server metadata, which is also the OpenID Connect discovery document.
async fn metadata(state: web::Data<TokenState>) -> HttpResponse {
    let i = &state.issuer;
    let alg = format!("{:?}", state.keys.current().algorithm);
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(serde_json::json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oauth/authorize"),
            "token_endpoint": format!("{i}/oauth/token"),
            "userinfo_endpoint": format!("{i}/oauth/userinfo"),
            "jwks_uri": format!("{i}/oauth/jwks"),
            "introspection_endpoint": format!("{i}/oauth/introspect"),
            "revocation_endpoint": format!("{i}/oauth/revoke"),
            "scopes_supported": ["openid", "profile", "email", "accounts:create"],
            "response_types_supported": ["code", "token"],
            "response_modes_supported": ["query", "fragment"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "implicit"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [alg],
            "token_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "preferred_username", "locale", "email", "email_verified"],
            "prompt_values_supported": ["none", "login", "consent"],
            "authorization_response_iss_parameter_supported": true,
        }))
}

/// The standalone authorization server. Runs until SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    use admit_runtime::selfcheck::{self, Service};
    let db = admit_runtime::database::connect(&settings)?;
    selfcheck::at_start(Service::OAuth, &settings, &db).await?;
    let stop = CancellationToken::new();
    let metrics = Metrics::new();
    // Token rates in Redis, shared by the replicas (they fail open when it is down).
    let limits = Arc::new(
        PartnerLimits::memory(&settings.limits)
            .with_redis(settings.redis.url.expose_secret(), &settings.redis.prefix)?,
    );
    metrics.register(limits.refusals());
    let feed = admit_runtime::revocations::Feed::new(
        settings.redis.url.expose_secret(),
        &settings.redis.prefix,
    )?;
    let state = state_with(&settings, db.clone(), stop.clone(), limits, Some(feed)).await?;
    if let Some(view) = &state.revocations {
        let (checks, trusted) = view.metrics();
        metrics.register(checks);
        metrics.register(trusted);
    }
    let readiness = admit_runtime::database::check(Readiness::new(), db.clone());
    let (routes, proxies) = (configure(state), admit_runtime::client::data(&settings));
    let started = admit_runtime::http::start(
        "admit-oauth",
        admit_runtime::http::bind(&settings.bind, settings.oauth.port)?,
        selfcheck::migrations_check(readiness, db),
        metrics,
        stop.clone(),
        admit_runtime::http::grace(Duration::from_secs(5)),
        move |cfg: &mut web::ServiceConfig| {
            proxies(cfg);
            routes(cfg);
        },
    )?;
    started.server.await?;
    stop.cancel();
    Ok(())
}
