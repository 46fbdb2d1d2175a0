//! A bounded in-process memory of introspection: access tokens whose signature was
//! verified, so a token introspected again is not verified again (when grants end
//! is remembered by the revocation view, [`admit_runtime::revocations::View`]).
//!
//! A map emptied when full, like [`crate::clients::ClientCache`]: memory is
//! bounded whatever callers send, and only what was verified or read is stored. A
//! plain map under a lock is enough here (a hit is one lookup; a clear refills within
//! a few requests), so no cache crate is added.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Tokens remembered as verified.
pub const MAX_TOKENS: usize = 4096;

/// A map of at most `max` entries, emptied when full.
pub struct Bounded<V> {
    max: usize,
    entries: RwLock<HashMap<String, V>>,
}

impl<V: Clone> Bounded<V> {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    pub fn insert(&self, key: &str, value: V) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max && !map.contains_key(key) {
            map.clear();
        }
        map.insert(key.to_owned(), value);
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A verified access token: its claims, the key it was verified with, its `exp`.
#[derive(Clone)]
pub struct Verified {
    pub claims: Arc<Value>,
    pub kid: String,
    pub exp: i64,
}

pub struct Memo {
    pub tokens: Bounded<Verified>,
}

impl Default for Memo {
    fn default() -> Self {
        Self {
            tokens: Bounded::new(MAX_TOKENS),
        }
    }
}
