//! An in-process cache of active clients, so that the token, introspection and
//! authorize endpoints do not read the `clients` table on every request.
//!
//! Staleness bound: an entry is served for at most [`TTL`] (one second) after it was
//! read, so a client revoked (or changed) in the database stops working in every
//! replica within one second, without a restart. Unknown and revoked ids are never
//! cached, so a client created a moment ago works at once. The cache holds at most
//! [`MAX_ENTRIES`] clients; when full it is emptied, so its memory is bounded
//! whatever ids callers send (and only ids of real clients are ever stored).

use admit_store::partners::{self, ClientRow};
use admit_store::Db;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a client read from the database is trusted.
pub const TTL: Duration = Duration::from_secs(1);
/// At most this many clients are cached.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct ClientCache {
    entries: RwLock<HashMap<String, (Instant, Arc<ClientRow>)>>,
}

impl ClientCache {
    /// The active client `id`: from the cache if read less than [`TTL`] ago, else
    /// from the database.
    pub async fn get(&self, db: &Db, id: &str) -> Result<Option<Arc<ClientRow>>, String> {
        if let Some(hit) = self.fresh(id) {
            return Ok(Some(hit));
        }
        let owned = id.to_owned();
        let row = db
            .run(move |c| partners::active_client(c, &owned))
            .await
            .map_err(|e| e.to_string())?;
        let Some(row) = row.map(Arc::new) else {
            // Revoked or unknown: forget any entry, cache nothing.
            self.write(|m| {
                m.remove(id);
            });
            return Ok(None);
        };
        let read_at = Instant::now();
        self.write(|m| {
            if m.len() >= MAX_ENTRIES && !m.contains_key(id) {
                m.clear();
            }
            m.insert(id.to_owned(), (read_at, row.clone()));
        });
        Ok(Some(row))
    }

    fn fresh(&self, id: &str) -> Option<Arc<ClientRow>> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (read_at, row) = map.get(id)?;
        (read_at.elapsed() < TTL).then(|| row.clone())
    }

    fn write(&self, f: impl FnOnce(&mut HashMap<String, (Instant, Arc<ClientRow>)>)) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        f(&mut map);
    }
}
