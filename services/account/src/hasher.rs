//! Password hashing, off the async workers.
//!
//! Argon2id at OWASP's parameters costs tens of milliseconds of one core. It runs on a
//! dedicated pool of threads (one per core by default) whose scheduling priority is
//! lowered, so that a saturated pool still leaves the HTTP workers free to answer at
//! once; a semaphore bounds the work waiting for the pool.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::{oneshot, Semaphore};

/// OWASP Password Storage Cheat Sheet: Argon2id, m=19456 KiB, t=2, p=1.
pub fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("static Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes on the calling thread. For the pool and for benchmarks.
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
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
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| HashError(e.to_string()))?;
        Ok(Self {
            pool: Arc::new(pool),
            permits: Arc::new(Semaphore::new(threads * 64)),
        })
    }

    async fn run<T: Send + 'static>(
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

/// Raises the calling thread's nice value, so the kernel prefers the request
/// workers whenever both are runnable. Best effort: failure leaves the default.
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
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
