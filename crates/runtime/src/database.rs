//! The configured database, as every service opens it and reports it in `/readyz`.

use crate::{Readiness, Settings};
use admit_store::{Db, StoreError};
use secrecy::ExposeSecret;

/// A pool on `database.url` with `database.max_connections`, whose callers wait at
/// most `database.connect_timeout_ms` for a connection.
pub fn connect(settings: &Settings) -> Result<Db, StoreError> {
    Db::connect_with(
        settings.database.url.expose_secret(),
        settings.database.max_connections,
        std::time::Duration::from_millis(settings.database.connect_timeout_ms),
    )
}

/// `readiness` with a `database` check: one round trip to `db`.
pub fn check(readiness: Readiness, db: Db) -> Readiness {
    readiness.check("database", move || {
        let db = db.clone();
        async move {
            db.ping()
                .await
                .map_err(|e| format!("cannot reach the database: {e}"))
        }
    })
}
