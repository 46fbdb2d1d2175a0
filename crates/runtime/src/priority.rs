//! Thread scheduling priority: background work (password hashing, the embedded
//! mailer) runs at a raised nice value, so that the kernel prefers the request workers
//! whenever both are runnable.

/// Raises the calling thread's nice value to `nice` (0 to 19). Best effort: where it
/// fails, or on another system than Linux, the thread keeps the default.
#[allow(unsafe_code)]
pub fn lower_current_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
