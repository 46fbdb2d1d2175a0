//! Test support: a fresh database per test, on either backend, so tests run in
//! parallel without seeing each other's rows. Enabled by the `testing` feature.

use crate::{Db, StoreError};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The PostgreSQL server tests use (`ADMIT_TEST_DATABASE_URL`): a role that may
/// create databases.
pub fn admin_url() -> String {
    std::env::var("ADMIT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped after it.
pub struct TestDatabase {
    pub url: String,
    name: Option<String>,
    admin: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty PostgreSQL database on the test server.
    pub fn postgres() -> Result<Self, StoreError> {
        Self::postgres_on(&admin_url())
    }

    /// A new, empty PostgreSQL database on the server of `admin` (a role that may
    /// create databases), e.g. a private cluster a test stops and starts.
    pub fn postgres_on(admin: &str) -> Result<Self, StoreError> {
        let admin = admin.to_owned();
        let name = format!("admit_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn =
            PgConnection::establish(&admin).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Ok(Self {
            url: format!("{base}/{name}"),
            name: Some(name),
            admin,
            _dir: None,
        })
    }

    /// A new SQLite database file in a temporary directory.
    pub fn sqlite() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(Self {
            url: format!("sqlite://{}", dir.path().join("admit.db").display()),
            name: None,
            admin: String::new(),
            _dir: Some(dir),
        })
    }

    /// Both backends, for suites that run against each.
    pub fn each() -> Result<Vec<(&'static str, Self)>, StoreError> {
        Ok(vec![
            ("sqlite", Self::sqlite()?),
            ("postgres", Self::postgres()?),
        ])
    }

    /// A migrated pool on this database.
    pub fn db(&self) -> Result<Db, StoreError> {
        let db = Db::connect(&self.url, 8)?;
        db.migrate()?;
        Ok(db)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            if let Ok(mut conn) = PgConnection::establish(&self.admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}
