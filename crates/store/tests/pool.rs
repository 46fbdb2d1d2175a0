//! The pool on PostgreSQL skips r2d2's `SELECT 1` for a connection whose last
//! statement succeeded less than `TRUSTED_AFTER_SUCCESS` ago. A connection the server
//! has dropped must still be replaced: at once when it was idle longer, after at
//! most the one failed statement when it was trusted.

use admit_store::testing::TestDatabase;
use admit_store::{AnyConnection, Db, StoreError, TRUSTED_AFTER_SUCCESS};
use diesel::prelude::*;
use diesel::sql_types::Integer;
use std::time::Duration;

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// The server process behind the pool's (only) connection.
fn backend_pid(db: &Db) -> Result<i32, StoreError> {
    let mut conn = db.get()?;
    let AnyConnection::Pg(pg) = &mut *conn else {
        return Err(StoreError::Internal("not PostgreSQL".into()));
    };
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(pg)?
        .pid)
}

/// Ends server process `pid`, as a restart or an administrator would, and waits until
/// it is gone.
fn terminate(url: &str, pid: i32) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Alive {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut admin = PgConnection::establish(url)?;
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<Integer, _>(pid)
        .execute(&mut admin)?;
    for _ in 0..100 {
        let alive = diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1")
            .bind::<Integer, _>(pid)
            .get_result::<Alive>(&mut admin)?;
        if alive.n == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("backend {pid} still alive")
}

#[test]
fn a_dropped_connection_idle_past_the_window_is_replaced_before_use() -> anyhow::Result<()> {
    let tdb = TestDatabase::postgres()?;
    let db = Db::connect(&tdb.url, 1)?;
    let first = backend_pid(&db)?;
    terminate(&tdb.url, first)?;
    std::thread::sleep(TRUSTED_AFTER_SUCCESS + Duration::from_millis(300));
    let second = backend_pid(&db).map_err(|e| anyhow::anyhow!("tested and replaced: {e}"))?;
    assert_ne!(first, second, "a new connection");
    Ok(())
}

#[test]
fn a_dropped_connection_within_the_window_fails_once_and_is_then_replaced() -> anyhow::Result<()> {
    let tdb = TestDatabase::postgres()?;
    let db = Db::connect(&tdb.url, 1)?;
    let first = backend_pid(&db)?;
    terminate(&tdb.url, first)?;
    // Trusted: its statement may fail (nothing was written)...
    match backend_pid(&db) {
        Ok(pid) => assert_ne!(pid, first),
        Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}"),
    }
    // ... but the failure marks it, and the pool tests and replaces it.
    let next = backend_pid(&db).map_err(|e| anyhow::anyhow!("replaced after a failure: {e}"))?;
    assert_ne!(first, next, "a new connection");
    Ok(())
}
