//! The daemon's idle footprint: glibc's malloc arenas and the heap freed after big operations.
//!
//! glibc gives each thread that allocates concurrently its own arena (up to 8 per core), and a
//! freed arena page stays resident until that arena's top is trimmed. The daemon's allocations
//! come from two tokio workers and a blocking pool whose threads come and go, so idle memory
//! was mostly arenas that load/pull/build threads had filled once. [`limit_arenas`] keeps one
//! (set before any thread starts) and [`trim`] returns free pages of every arena to the
//! kernel after an operation that allocated a lot (`load`, `pull`, `build`, `import`, `save`).

/// Caps glibc malloc at one arena (`M_ARENA_MAX`, as `MALLOC_ARENA_MAX=1`); an explicit
/// `MALLOC_ARENA_MAX` in the environment wins. Call before the first thread is spawned.
///
/// With two, a thread that found the main arena locked (other processes loading the CPUs
/// while the daemon loads and saves) made the second one, whose pages stayed: idle RSS after
/// `load` + 2 `save`s was 10.8-14.9 MiB under two busy loops (above 14 in five of nine), and
/// 10.1-10.7 MiB with one arena.
/// Small allocations come from each thread's cache without the arena's lock, and the daemon's
/// big buffers are few; `run --rm` is no slower (A/B, 30 alternating rounds).
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no thread is allocating yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns the free pages of every malloc arena to the kernel (`malloc_trim(0)`). Costs a walk
/// of the free lists (well under a millisecond for the daemon's heap); call after big operations.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}
