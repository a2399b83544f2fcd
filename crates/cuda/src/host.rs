//! Host-side preparation that the kernels rely on, kept apart so it is tested without a GPU.

/// Groups positions `0..rows.len()` by destination row for the deterministic scatter-add kernel
/// (`segment_add`). Returns `(perm, seg_start, seg_row)`: segment `s` adds source rows
/// `perm[seg_start[s]..seg_start[s+1]]`, in increasing position order (the CPU reference's order), into
/// destination row `seg_row[s]`. Segments are in increasing destination order.
pub fn segments(rows: &[u32]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let mut perm: Vec<u32> = (0..rows.len() as u32).collect();
    // Stable: equal rows keep position order.
    perm.sort_by_key(|&t| rows[t as usize]);
    let mut seg_start = Vec::new();
    let mut seg_row = Vec::new();
    for (k, &t) in perm.iter().enumerate() {
        let r = rows[t as usize];
        if seg_row.last() != Some(&r) {
            seg_start.push(k as u32);
            seg_row.push(r);
        }
    }
    seg_start.push(perm.len() as u32);
    (perm, seg_start, seg_row)
}

/// Multi-tensor launches: with `chunk` elements per block, the first block of each tensor and the total.
pub fn block_starts(lens: impl IntoIterator<Item = usize>, chunk: usize) -> (Vec<u64>, u64) {
    let mut starts = Vec::new();
    let mut total = 0u64;
    for n in lens {
        starts.push(total);
        total += n.div_ceil(chunk) as u64;
    }
    (starts, total)
}

/// Threads for a one-block-per-row kernel: a multiple of 32 covering `cols`, at most 256.
pub fn row_threads(cols: usize) -> u32 {
    (cols.div_ceil(32) * 32).clamp(32, 256) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segments_example() {
        let (perm, start, row) = segments(&[3, 1, 3, 0, 1, 3]);
        assert_eq!(row, vec![0, 1, 3]);
        assert_eq!(start, vec![0, 1, 3, 6]);
        assert_eq!(perm, vec![3, 1, 4, 0, 2, 5]);
        let (perm, start, row) = segments(&[]);
        assert!(perm.is_empty() && row.is_empty());
        assert_eq!(start, vec![0]);
    }

    #[test]
    fn block_starts_skip_empty_tensors() {
        let (s, total) = block_starts([5000, 0, 4096, 1], 4096);
        assert_eq!(s, vec![0, 2, 2, 3]);
        assert_eq!(total, 4);
    }

    proptest! {
        // Every position appears once, each segment's positions increase, and all share the segment's row.
        #[test]
        fn segments_partition_in_order(rows in proptest::collection::vec(0u32..20, 0..200)) {
            let (perm, start, row) = segments(&rows);
            prop_assert_eq!(perm.len(), rows.len());
            let mut seen = vec![false; rows.len()];
            for s in 0..row.len() {
                let seg = &perm[start[s] as usize..start[s + 1] as usize];
                prop_assert!(!seg.is_empty());
                for w in seg.windows(2) { prop_assert!(w[0] < w[1]); }
                for &t in seg {
                    prop_assert_eq!(rows[t as usize], row[s]);
                    prop_assert!(!seen[t as usize]);
                    seen[t as usize] = true;
                }
            }
            prop_assert!(seen.iter().all(|&x| x));
            for w in row.windows(2) { prop_assert!(w[0] < w[1]); }
        }
    }
}
