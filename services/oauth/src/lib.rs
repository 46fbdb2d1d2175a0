//! The OAuth 2.0 / OpenID Connect authorization server: clients, the authorize page,
//! codes, tokens, keys and discovery. At this stage it serves health and metrics; the
//! authorization endpoints are the next piece of work.

use actix_web::web;
use admit_runtime::{Metrics, Readiness, Settings};
use admit_store::Db;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

/// Mounts the service's public routes (none yet beyond health and metrics, which
/// every service gets from the runtime).
pub fn configure() -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    |_cfg: &mut web::ServiceConfig| {}
}

/// The standalone authorization server. Runs until SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let db = Db::connect(
        settings.database.url.expose_secret(),
        settings.database.max_connections,
    )?;
    let readiness = Readiness::new().check("database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|e| e.to_string()) }
    });
    let started = admit_runtime::http::start(
        "admit-oauth",
        admit_runtime::http::bind(&settings.bind, settings.oauth.port)?,
        readiness,
        Metrics::new(),
        CancellationToken::new(),
        admit_runtime::http::grace(std::time::Duration::from_secs(5)),
        configure(),
    )?;
    started.server.await?;
    Ok(())
}
