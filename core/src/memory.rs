//! The allocator, told to give memory back (issue 11: peak RSS under large answers).
//!
//! glibc's malloc raises its mmap threshold to the largest buffer freed so far (up to
//! 32 MiB), so after the first 13 MB init answer every later one comes from, and stays
//! in, a heap arena, and each thread's arena keeps the high-water mark of what passed
//! through it: peak RSS over 120 large inits was 314 MiB, most of it free memory.
//! Other allocators and platforms need none of this; the functions do nothing there.

/// Buffers from this size up are mapped on their own and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
/// Arenas: the work runs on the tokio runtime's few threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 4;

/// An answer at least this large is followed by [`release_free_memory`].
pub const LARGE_ANSWER: usize = 1 << 20;

/// Fixes the mmap threshold and the number of arenas, once at start, unless the
/// operator tuned malloc through its own environment variables.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str| std::env::var_os(name).is_some();
        if set("GLIBC_TUNABLES") {
            return;
        }
        // SAFETY: mallopt only changes malloc's tuning.
        unsafe {
            if !set("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
            if !set("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
            }
        }
    }
}

/// Hands free pages of every arena back to the system: after a large answer, the
/// thousands of small buffers it was built from are free but spread over the arenas.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
