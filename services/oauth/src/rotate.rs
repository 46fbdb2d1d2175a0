//! Refresh rotations in groups: the refresh grants that arrive while a commit runs
//! are spent and replaced together in the next one ([`grants::rotate_refresh`], one
//! statement on PostgreSQL), so a burst of refreshes pays one round trip and one
//! commit per group instead of one per refresh, and one blocking-pool hop.
//!
//! Every rotation is answered once its group's statement has returned. One that the
//! group did not win (unknown, spent, another client's, its grant revoked or ended,
//! or named twice in the group, where the first rotation spends it) is answered
//! `None`, and so is every rotation of a group whose statement failed: PostgreSQL
//! then rolled the whole group back, or, when the answer was lost after the commit,
//! each winner's successor is stored. The caller runs the refresh transaction, which
//! first looks for that successor (then the refresh won), and otherwise tells a replay
//! from an invalid token and revokes the grant of a replay. So the guarantees of a
//! refresh are those of the single statement: one winner among parallel
//! presentations of a token, and reuse revokes the family.

use admit_store::grants::{self, GrantRow, Rotation};
use admit_store::{Backend, Db};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Rotations taken into one statement at most.
const GROUP: usize = 256;

/// Groups in flight at once, at most: while some commit, the next gathers and can
/// start. Never more than half the pool's connections ([`lanes`]). At
/// c=16 on 2 cores, 4 gave the most refreshes per second (2: 3,974/s, 4: 4,251/s,
/// 8: 3,850/s; one round each of `scripts/bench oauth`, measured with an earlier form
/// of the group statement).
const LANES: usize = 4;

struct Job {
    rotation: Rotation,
    done: oneshot::Sender<Option<GrantRow>>,
}

/// The handle of the group-commit tasks (PostgreSQL), or of nothing (SQLite, where
/// every refresh takes the transaction).
#[derive(Clone)]
pub struct Rotator {
    tx: Option<mpsc::Sender<Job>>,
}

impl Rotator {
    /// Starts the group-commit tasks on `db` when it is PostgreSQL. They end when
    /// every handle is dropped and what they were given is answered, or with the
    /// runtime.
    pub fn spawn(db: Db, ttl_secs: i64) -> Self {
        if db.backend() != Backend::Postgres {
            return Self { tx: None };
        }
        let (tx, rx) = mpsc::channel(GROUP * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..lanes(db.max_connections()) {
            tokio::spawn(lane(db.clone(), rx.clone(), ttl_secs));
        }
        Self { tx: Some(tx) }
    }

    /// Whether refreshes are grouped here (PostgreSQL).
    pub fn is_running(&self) -> bool {
        self.tx.is_some()
    }

    /// Spends the token of `rotation` and stores its successor, durably, when the
    /// token is unspent, unexpired, the client's, and of a live grant: then its grant.
    /// `None` otherwise, and whenever the group could not be written.
    pub async fn rotate(&self, rotation: Rotation) -> Option<GrantRow> {
        let tx = self.tx.as_ref()?;
        let (done, answer) = oneshot::channel();
        tx.send(Job { rotation, done }).await.ok()?;
        answer.await.ok().flatten()
    }
}

/// The lanes for a pool of `connections`: [`LANES`], or half the pool when that is
/// fewer (at least one), so that groups in flight never take every connection from
/// the transactions of the misses and the service's other requests.
fn lanes(connections: u32) -> usize {
    usize::try_from(connections / 2)
        .unwrap_or(LANES)
        .clamp(1, LANES)
}

/// One lane of the group commit: waits for a rotation, takes every other one already
/// waiting (at most [`GROUP`]), writes them in one statement, answers each, and
/// starts again. Each group checks a connection out of the pool and gives it back:
/// a lane that kept one would take it from every other request of the service.
async fn lane(db: Db, rx: Arc<Mutex<mpsc::Receiver<Job>>>, ttl_secs: i64) {
    let mut jobs: Vec<Job> = Vec::with_capacity(GROUP);
    loop {
        if rx.lock().await.recv_many(&mut jobs, GROUP).await == 0 {
            return;
        }
        let (group, answers): (Vec<Rotation>, Vec<_>) =
            jobs.drain(..).map(|j| (j.rotation, j.done)).unzip();
        let count = group.len();
        let db = db.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            grants::rotate_refresh(&mut conn, group, admit_store::now(), ttl_secs)
        })
        .await;
        let won = match written {
            Ok(Ok(won)) => won,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, count, "refresh group not written; each takes the transaction");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "refresh group task failed");
                Vec::new()
            }
        };
        let mut won = won.into_iter();
        for done in answers {
            let _ = done.send(won.next().flatten());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{lanes, LANES};

    #[test]
    fn lanes_never_take_more_than_half_the_pool() {
        assert_eq!(lanes(1), 1);
        assert_eq!(lanes(2), 1);
        assert_eq!(lanes(4), 2);
        assert_eq!(lanes(7), 3);
        assert_eq!(lanes(16), LANES);
        assert_eq!(lanes(100), LANES);
    }
}
