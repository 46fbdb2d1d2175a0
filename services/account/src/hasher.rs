//! Password hashing, off the async workers.
//!
//! Argon2id at OWASP's parameters costs tens of milliseconds of one core. It runs on a
//! dedicated pool of threads (one per core by default) whose scheduling priority is
//! lowered, so that a saturated pool still leaves the HTTP workers free to answer at
//! once; a semaphore bounds the work waiting for the pool.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
use std::sync::Arc;
use tokio::sync::{oneshot, Semaphore};

/// OWASP Password Storage Cheat Sheet: Argon2id, m=19456 KiB, t=2, p=1.
pub fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("static Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

thread_local! {
    // Argon2's 19 MiB of working memory, kept by each hashing thread: allocating and
    // zeroing it for every hash costs page faults and a memset the algorithm does not
    // need (it writes every block before reading it).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes on the calling thread into a PHC string. For the pool and for benchmarks.
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    let fail = |e: &dyn std::fmt::Display| HashError(e.to_string());
    let argon2 = argon2();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
    BLOCKS
        .with(|cell| {
            let mut blocks = cell.borrow_mut();
            let n = argon2.params().block_count();
            if blocks.len() != n {
                *blocks = vec![Block::new(); n];
            }
            argon2.hash_password_into_with_memory(
                password.as_bytes(),
                salt_raw,
                &mut out,
                &mut blocks[..],
            )
        })
        .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: argon2
            .params()
            .try_into()
            .map_err(|e: argon2::password_hash::Error| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Verifies on the calling thread (constant-time comparison inside argon2).
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl HashError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The hash pool's nice value: below the request workers, above background work.
const HASH_NICE: i32 = 10;

#[derive(Clone)]
pub struct HashPool {
    pool: Arc<rayon::ThreadPool>,
    permits: Arc<Semaphore>,
}

impl HashPool {
    /// `threads == 0`: one per core.
    pub fn new(threads: usize) -> Result<Self, HashError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("argon2-{i}"))
            .start_handler(|_| admit_runtime::priority::lower_current_thread(HASH_NICE))
            .build()
            .map_err(|e| HashError(e.to_string()))?;
        Ok(Self {
            pool: Arc::new(pool),
            permits: Arc::new(Semaphore::new(threads * 64)),
        })
    }

    /// Runs `f` on the pool (a hash, and what must happen just before it).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(f());
        });
        rx.await.map_err(|e| HashError(e.to_string()))
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || hash_blocking(&password)).await?
    }

    pub async fn verify(&self, password: String, phc: String) -> Result<bool, HashError> {
        self.run(move || verify_blocking(&password, &phc)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let pool = HashPool::new(1).expect("pool");
        let phc = pool.hash("doctest1".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(pool
            .verify("doctest1".into(), phc.clone())
            .await
            .expect("verify"));
        assert!(!pool.verify("doctest2".into(), phc).await.expect("verify"));
    }
}
