//! Persistence for every admit service: the diesel schema, the migrations of both
//! backends and the repository functions. SQL lives here and nowhere else.
//!
//! One set of repository functions serves PostgreSQL and SQLite: they are written
//! against [`AnyConnection`], diesel's `MultiConnection` over both. Blocking diesel
//! calls run on tokio's blocking pool through [`Db::run`] and [`Db::write`], never on
//! the async workers.
//!
//! Error policy: repository functions return [`StoreError`]. A broken or unreachable
//! database is `Unavailable` (the API answers 503 and the caller may retry); a unique
//! index that refused a row is `Conflict` naming what was taken; anything else is
//! `Internal`, logged with its cause and shown to nobody.

pub mod accounts;
pub mod audit;
pub mod confirmations;
pub mod grants;
pub mod identities;
pub mod mail;
pub mod mail_ops;
pub mod outbox;
pub mod partners;
pub mod purge;
pub mod quota;
pub mod registrations;
pub mod revocations;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool, PooledConnection,
};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Rows per multi-row statement (`INSERT`, or `IN (…)` of ids): under SQLite's limit
/// of 32,766 bound values for the widest table here (10 columns), and large enough
/// that a 10,000-row batch is a handful of statements.
pub const INSERT_CHUNK: usize = 1_000;

/// Inserts `$rows` into `$table` on either backend, inside the caller's transaction:
/// on PostgreSQL one `COPY … FROM STDIN (FORMAT binary)` (diesel's `copy_from`: no
/// SQL text that grows with the rows, nothing to parse or plan per row, values sent
/// in binary), on SQLite one multi-row `INSERT`. Either way the same constraints
/// and indexes check every row: a taken unique value fails the statement, and the
/// transaction rolls back whole. diesel's `MultiConnection` cannot express batch
/// inserts, so this dispatches to the concrete connection. The row type must derive
/// `Insertable` with `treat_none_as_default_value = false` (what `COPY` needs).
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            $crate::AnyConnection::Pg(c) => {
                use diesel::prelude::ExecuteCopyFromDsl as _;
                diesel::copy_from($table).from_insertable($rows).execute(c)
            }
            $crate::AnyConnection::Sqlite(c) => {
                diesel::insert_into($table).values($rows).execute(c)
            }
        }
    };
}

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What a unique index refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Contact,
    Username,
    /// A social identity (provider and subject) that an account already has.
    Identity,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("a unique value is already taken ({0:?})")]
    Conflict(Conflict),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Internal(String),
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                // PostgreSQL names the index; SQLite names the columns.
                let what = format!(
                    "{} {}",
                    info.constraint_name().unwrap_or(""),
                    info.message()
                );
                if what.contains("contacts") {
                    StoreError::Conflict(Conflict::Contact)
                } else if what.contains("username") {
                    StoreError::Conflict(Conflict::Username)
                } else if what.contains("identities") {
                    StoreError::Conflict(Conflict::Identity)
                } else {
                    StoreError::Conflict(Conflict::Other)
                }
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)
            | DieselError::BrokenTransactionManager => StoreError::Unavailable(e.to_string()),
            // Lost a deadlock or a serialization check to a concurrent transaction:
            // nothing was written, and the same request may simply be tried again.
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                StoreError::Unavailable(e.to_string())
            }
            DieselError::DatabaseError(_, info) if is_busy(info.message()) => {
                StoreError::Unavailable(e.to_string())
            }
            // The server went away under a running statement (shut down, restarted,
            // connection cut): a dependency outage, not a bug.
            DieselError::DatabaseError(_, info) if is_connection_lost(info.message()) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

fn is_connection_lost(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "terminating connection",
        "server closed the connection",
        "connection refused",
        "could not connect",
        "connection to server",
        "no connection to the server",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
        "ssl syscall error",
        "broken pipe",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

fn is_busy(message: &str) -> bool {
    message.contains("database is locked")
        || message.contains("database is busy")
        || message.contains("deadlock detected")
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type Conn = PooledConnection<Manager>;

/// How long after a statement succeeded on a PostgreSQL connection the pool hands
/// the connection out again without first asking the server `SELECT 1`.
///
/// r2d2 tests every connection on check-out, a round trip per request; a connection
/// that just worked is not worth the question. One that has failed since, or has been
/// idle longer, is still tested, so after a restart or an outage of the server the
/// pool still replaces its dead connections before it hands them out. A server that
/// dies within this window of a connection's last success costs the request that
/// next takes that connection a 503 (its statement fails; nothing is written), and the
/// connection is tested before its next use.
pub const TRUSTED_AFTER_SUCCESS: Duration = Duration::from_secs(1);

/// The pool's connection manager: diesel's, with the check-out test of PostgreSQL
/// connections skipped for one that succeeded less than [`TRUSTED_AFTER_SUCCESS`] ago.
#[derive(Debug)]
pub struct Manager {
    inner: ConnectionManager<AnyConnection>,
    backend: Backend,
}

/// What a PostgreSQL connection's instrumentation remembers: when its last statement
/// succeeded (`None` after one failed). diesel reports the end of every statement,
/// the pool's own `SELECT 1` included, so this holds for whoever used the connection.
#[derive(Debug, Default)]
struct Health {
    last_ok: Option<Instant>,
}

impl Instrumentation for Health {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            self.last_ok = error.is_none().then(Instant::now);
        }
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let mut conn = self.inner.connect()?;
        if self.backend == Backend::Postgres {
            diesel::Connection::set_instrumentation(&mut conn, Health::default());
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        let trusted = diesel::Connection::instrumentation(conn)
            .downcast_ref::<Health>()
            .and_then(|h| h.last_ok)
            .is_some_and(|at| at.elapsed() < TRUSTED_AFTER_SUCCESS);
        if trusted {
            return Ok(());
        }
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        self.inner.has_broken(conn)
    }
}

/// A pool of connections to the configured database.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    backend: Backend,
    // SQLite admits one writer at a time; writers of this process queue here rather
    // than spin on SQLITE_BUSY. (Other processes are covered by busy_timeout.)
    write_lock: Option<Arc<Mutex<()>>>,
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            // mmap: pages are read from the shared mapping, not with a read(2) for
            // every page another connection's commit made stale.
            "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16000;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Db {
    /// Connects to `url`: `postgres://…` (or `postgresql://…`), or `sqlite://PATH`
    /// (a bare path is taken as SQLite too). Opens nothing eagerly beyond the pool's
    /// first connection, so a database that is down fails here quickly.
    pub fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, Self::DEFAULT_CONNECT_TIMEOUT)
    }

    /// How long a request waits for a connection by default (`database.connect_timeout_ms`).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

    /// [`Db::connect`] with the longest a caller waits for a connection: when the
    /// database is down every request fails (503) after at most `connect_timeout`
    /// instead of queueing behind a pool that cannot connect.
    pub fn connect_with(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let (backend, target) = parse_url(url);
        let manager = Manager {
            inner: ConnectionManager::<AnyConnection>::new(target.clone()),
            backend,
        };
        let builder = Pool::builder()
            .max_size(max_connections.max(1))
            .connection_timeout(connect_timeout.max(Duration::from_millis(100)));
        let (pool, write_lock) = match backend {
            Backend::Postgres => (builder.build(manager)?, None),
            Backend::Sqlite => {
                // WAL lets readers go on while one connection writes. It is a property
                // of the file, set once here rather than by every pooled connection.
                let mut first = SqliteConnection::establish(&target)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                first.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?;
                drop(first);
                (
                    builder
                        .connection_customizer(Box::new(SqlitePragmas))
                        // A connection to a local file does not go stale the way a
                        // network connection does: no `SELECT 1` before every use.
                        .test_on_check_out(false)
                        .build(manager)?,
                    Some(Arc::new(Mutex::new(()))),
                )
            }
        };
        Ok(Self {
            pool,
            backend,
            write_lock,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The most connections the pool opens (`database.max_connections`).
    pub fn max_connections(&self) -> u32 {
        self.pool.max_size()
    }

    pub fn get(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Applies every pending migration of this backend.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.get()?;
        let applied = match &mut *conn {
            AnyConnection::Pg(c) => c.run_pending_migrations(PG_MIGRATIONS),
            AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
        }
        .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    }

    /// The migrations of this backend that this build knows and the database has not
    /// applied (none: the schema is the one this code expects, or newer).
    pub fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.get()?;
        let pending = match &mut *conn {
            AnyConnection::Pg(c) => c
                .pending_migrations(PG_MIGRATIONS)
                .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
            AnyConnection::Sqlite(c) => c
                .pending_migrations(SQLITE_MIGRATIONS)
                .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
        };
        pending.map_err(|e| {
            StoreError::Unavailable(format!("cannot read the applied migrations: {e}"))
        })
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
    }

    /// Runs `f` in one transaction on the blocking pool: all of it commits, or none.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(f))
            .await
            .map_err(|e| StoreError::Internal(format!("blocking task failed: {e}")))?
    }

    /// [`Db::write`] for callers already on a blocking thread.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    {
        let mut conn = self.get()?;
        self.write_on(&mut conn, f)
    }

    /// [`Db::write_blocking`] on a connection the caller already holds (one check-out
    /// for a read followed by a write).
    pub fn write_on<T, F>(&self, conn: &mut AnyConnection, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    {
        let _guard = self
            .write_lock
            .as_ref()
            .map(|lock| lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        conn.transaction(f)
    }

    /// A round trip to the database, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.batch_execute("SELECT 1")?;
            Ok(())
        })
        .await
    }
}

fn parse_url(url: &str) -> (Backend, String) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (Backend::Postgres, url.to_owned())
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        (Backend::Sqlite, path.to_owned())
    }
}

/// The current time as the database stores it: UTC, no zone, microseconds (what
/// PostgreSQL keeps), so a value read back compares equal to the one written.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}
