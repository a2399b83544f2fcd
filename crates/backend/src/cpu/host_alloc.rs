//! Keeps the CPU backend's large buffers inside the process between training steps.
//!
//! Why: every CPU op returns a fresh `Vec` and a training step allocates and frees gigabytes of
//! activations (e5-small at batch 32 x seq 128: about 4 GB per step, most blocks 6-25 MB). glibc serves
//! blocks above its mmap threshold with a fresh `mmap` and unmaps them on `free`, and it hands the heap's
//! free top back to the kernel past its trim threshold, so each step page-faults (and the kernel zeroes)
//! its whole working set again: 15-20% of a training step on the development machine. Raising the mmap
//! threshold to glibc's maximum and switching trimming off keeps those pages in the heap for the next step;
//! the peak resident size does not change (the pages were resident at the peak anyway).
//!
//! Trimming is off, not merely rare: with a finite threshold (`mallopt` takes an `int`, so at most 2 GiB)
//! glibc returns the *whole* free top of the heap once it exceeds the threshold. An adv step's working set
//! (4.4 GB at e5-small, batch 32 x 128) swings by more than 2 GiB between its phases, so each step gave
//! gigabytes back and faulted them in again: 9% of the step in `clear_page_erms`, 4 GB of page faults a
//! minute, in the IFLYTEK campaign's adv cells.
//!
//! The settings are left alone when the user set glibc's own knobs (`MALLOC_MMAP_THRESHOLD_`,
//! `MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) or `ERNIE_FT_SYSTEM_MALLOC=1`. Other C libraries: no-op.

/// glibc's largest accepted mmap threshold on 64-bit targets (`HEAP_MAX_SIZE / 2`).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// `M_TRIM_THRESHOLD` value that switches trimming off (glibc: "setting M_TRIM_THRESHOLD to -1 disables
/// trimming completely"): the free heap top is kept for the next step whatever its size.
pub const TRIM_NEVER: i32 = -1;

/// Apply the allocator settings once per process (idempotent, cheap after the first call). Returns whether
/// they are in effect.
pub fn keep_freed_buffers() -> bool {
    static APPLIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *APPLIED.get_or_init(|| {
        let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"]
            .iter()
            .any(|k| std::env::var_os(k).is_some())
            || std::env::var("ERNIE_FT_SYSTEM_MALLOC").is_ok_and(|v| v == "1");
        !user_set && apply()
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as i32) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_NEVER) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}
