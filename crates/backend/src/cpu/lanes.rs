//! Lanes for data-parallel inference on the CPU ([`Backend::run_lanes`](crate::Backend::run_lanes)): one
//! single-threaded rayon pool per lane, made once per process and reused, so that every op a lane runs (the
//! GEMMs through `gemm`'s rayon parallelism included) stays on that lane's one thread.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex};

/// The pools of lanes `0..n` (made on first use; a later call asking for more lanes adds pools).
fn pools(n: usize) -> Vec<Arc<ThreadPool>> {
    static POOLS: Mutex<Vec<Arc<ThreadPool>>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    while pools.len() < n {
        let lane = pools.len();
        let pool = ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(move |_| format!("ernie-ft-lane-{lane}"))
            .build()
            .expect("cannot start an inference lane's thread");
        pools.push(Arc::new(pool));
    }
    pools[..n].to_vec()
}

/// `job(lane)` for lanes `0..n` at once, each on its lane's thread; the results in lane order. A panic in a
/// lane is resumed on the caller's thread.
pub fn run<R: Send>(n: usize, job: &(dyn Fn(usize) -> R + Sync)) -> Vec<R> {
    if n <= 1 {
        return (0..n).map(job).collect();
    }
    let pools = pools(n);
    std::thread::scope(|s| {
        let others: Vec<_> =
            pools[1..].iter().enumerate().map(|(i, pool)| s.spawn(move || pool.install(|| job(i + 1)))).collect();
        let mut out = vec![pools[0].install(|| job(0))];
        for h in others {
            out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_lane_runs_on_one_thread_and_results_keep_lane_order() {
        let out = super::run(3, &|lane| (lane, rayon::current_num_threads(), std::thread::current().id()));
        assert_eq!(out.iter().map(|o| (o.0, o.1)).collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1)]);
        assert!(out[0].2 != out[1].2 && out[1].2 != out[2].2 && out[0].2 != out[2].2, "lanes share a thread");
        assert_eq!(super::run(1, &|lane| lane + 10), [10]);
        assert!(super::run(0, &|lane| lane).is_empty());
    }
}
