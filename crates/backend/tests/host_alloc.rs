//! The host allocator settings keep freed activation buffers for reuse: a second "training step" with the
//! same allocation pattern takes (almost) no page faults. Runs without the test harness so that the probe
//! allocates on the main thread, the main glibc arena, like the training loop.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    use ernie_backend::cpu::host_alloc::keep_freed_buffers;

    /// Minor page faults taken by this thread so far.
    fn thread_minor_faults() -> i64 {
        // SAFETY: getrusage fills the struct it is given.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut u);
            u.ru_minflt
        }
    }

    /// One step's allocation pattern in miniature: `n` 12-24 MB buffers alive together, written, then all
    /// freed. Returns the page faults of the cycle.
    fn step_cycle(n: usize) -> i64 {
        let before = thread_minor_faults();
        let bufs: Vec<Vec<f32>> = (0..n).map(|i| vec![1.0f32; (3 + i % 4) << 20]).collect();
        std::hint::black_box(&bufs);
        drop(bufs);
        thread_minor_faults() - before
    }

    let name = "host_alloc::freed_buffers_are_reused_without_page_faults";
    if !keep_freed_buffers() {
        println!("SKIPPED (allocator settings overridden by the environment): {name}");
        return;
    }
    // Six buffers (~108 MB, ~26,000 pages): the first cycle faults them in, later cycles reuse them.
    let first = step_cycle(6);
    let later: i64 = (0..3).map(|_| step_cycle(6)).sum();
    assert!(first > 5_000, "first cycle took only {first} faults: the probe does not measure allocation");
    assert!(
        later < first / 10,
        "later cycles took {later} page faults (first: {first}): freed buffers went back to the kernel"
    );
    // A working set that swings by more than 2 GiB, like an adv step's (4.4 GB at e5-small): 150 buffers,
    // 2.8 GB. A finite trim threshold (at most 2 GiB through mallopt) hands the whole free top back here.
    let big_first = step_cycle(150);
    let big_later = step_cycle(150);
    assert!(
        big_later < big_first / 10,
        "a 2.8 GB cycle took {big_later} page faults the second time (first: {big_first}): the heap was trimmed"
    );
    println!(
        "test {name} ... ok (page faults: first cycle {first}, next three {later}; 2.8 GB cycle {big_first}, \
         again {big_later})"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("SKIPPED (glibc only): host_alloc::freed_buffers_are_reused_without_page_faults");
}
