//! How the C allocator keeps memory it was given back.
//!
//! glibc's malloc gives each thread that contends for memory an arena of its own (up
//! to eight per core), and raises its mmap threshold to the size of every large block
//! freed (up to 32 MiB), with a trim threshold of twice that. A service that reads a
//! 2 MB request body on one thread and frees it on another then keeps megabytes per
//! arena resident for good: admit-account registering lists of 10,000 users stayed at
//! several times the memory it held at any moment. [`tune`] fixes both thresholds and
//! caps the arenas, so that large blocks are mapped and unmapped and freed space at
//! the top of an arena goes back to the kernel.

/// Blocks at least this large are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free space over this at the top of an arena is returned to the kernel.
pub const TRIM_THRESHOLD: i32 = 512 * 1024;
/// Arenas at most (glibc's default is eight per core): with thread caches in front of
/// them, two serve a service of a few cores; one more arena is megabytes more kept.
pub const ARENA_MAX: i32 = 2;

/// Sets the allocator's thresholds (see the module). Call it first in `main`, before
/// the service allocates much (arenas are made as threads first contend). Best
/// effort: elsewhere than glibc it does nothing; an environment that sets
/// `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` keeps its
/// own choice.
#[allow(unsafe_code)]
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str| std::env::var_os(name).is_some();
        // SAFETY: mallopt only changes the allocator's parameters, under glibc's own
        // lock; no memory is handed out or taken back by the call.
        unsafe {
            if !set("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
            if !set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            }
            if !set("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
            }
        }
    }
}
