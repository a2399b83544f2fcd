//! Embedding sum and its deterministic backward (kernels/embedding.cu). The backward's scatter-add,
//! [`segment_add`], also serves `scatter_rows`.

use super::{need, THREADS};
use crate::buf::{CudaBuf, CudaIds};
use crate::host::segments;
use crate::kernels::Kernel;
use crate::params::{launch_params, Tensor};
use crate::CudaBackend;
use ernie_backend::TokenBatch;

launch_params! {
    struct EmbedFwdParams {
        out: Tensor, word: Tensor, pos: Tensor, typ: Tensor, task: Tensor,
        ids: u64, type_ids: u64, task_ids: u64, tokens: u64, seq: u64, hidden: u64,
    }
    /// Segment `s` adds rows `perm[seg_start[s] .. seg_start[s+1])` of `dy`, in that order, into row
    /// `seg_row[s]` of `d`.
    struct SegmentAddParams { d: Tensor, dy: Tensor, perm: u64, seg_start: u64, seg_row: u64, nseg: u64, cols: u64 }
}

/// Panics unless `ids` holds `n` ids, each a row of a table of `limit` rows.
fn check_ids(ids: &CudaIds, n: usize, limit: usize, what: &str) {
    need(ids.len(), n, what);
    if let Some(&bad) = ids.host[..n].iter().find(|&&v| v as usize >= limit) {
        panic!("ernie-cuda: {what}: id {bad} out of range for a table of {limit} rows");
    }
}

pub(crate) fn embed_sum(
    cuda: &CudaBackend,
    t: &TokenBatch<CudaIds>,
    word: &CudaBuf,
    pos: &CudaBuf,
    typ: &CudaBuf,
    task: Option<&CudaBuf>,
) -> CudaBuf {
    let (l, h) = (t.shape.seq, t.shape.hidden);
    let tokens = t.shape.batch * l;
    let mut out = cuda.alloc(cuda.act(), tokens * h);
    if tokens == 0 || h == 0 {
        return out;
    }
    check_ids(&t.ids, tokens, word.len / h, "embed_sum: word ids");
    check_ids(&t.type_ids, tokens, typ.len / h, "embed_sum: type ids");
    need(pos.len, l * h, "embed_sum: position table");
    if let Some(task) = task {
        check_ids(&t.task_ids, tokens, task.len / h, "embed_sum: task ids");
    }
    let p = EmbedFwdParams {
        out: out.arg_mut(),
        word: word.arg(),
        pos: pos.arg(),
        typ: typ.arg(),
        task: task.map(|x| x.arg()).unwrap_or(Tensor::NONE),
        ids: t.ids.ptr(),
        type_ids: t.type_ids.ptr(),
        task_ids: if task.is_some() { t.task_ids.ptr() } else { 0 },
        tokens: tokens as u64,
        seq: l as u64,
        hidden: h as u64,
    };
    cuda.launch_over(Kernel::embed_fwd, tokens * h, p);
    out
}

pub(crate) fn embed_sum_bwd(
    cuda: &CudaBackend,
    t: &TokenBatch<CudaIds>,
    dy: &CudaBuf,
    dword: &mut CudaBuf,
    dpos: &mut CudaBuf,
    dtyp: &mut CudaBuf,
    dtask: Option<&mut CudaBuf>,
) {
    let (l, h) = (t.shape.seq, t.shape.hidden);
    let tokens = t.shape.batch * l;
    if tokens == 0 || h == 0 {
        return;
    }
    need(t.ids.len(), tokens, "embed_sum_bwd: ids");
    need(t.type_ids.len(), tokens, "embed_sum_bwd: type ids");
    let word_rows = &t.ids.host[..tokens];
    let pos_rows: Vec<u32> = (0..tokens).map(|i| (i % l) as u32).collect();
    let type_rows = &t.type_ids.host[..tokens];
    let mut tables: Vec<(&mut CudaBuf, &[u32], &str)> = vec![
        (dword, word_rows, "embed_sum_bwd: word table"),
        (dpos, &pos_rows, "embed_sum_bwd: position table"),
        (dtyp, type_rows, "embed_sum_bwd: type table"),
    ];
    if let Some(dtask) = dtask {
        need(t.task_ids.len(), tokens, "embed_sum_bwd: task ids");
        tables.push((dtask, &t.task_ids.host[..tokens], "embed_sum_bwd: task table"));
    }
    // Every table's segments in one upload.
    let segs: Vec<Segments> = tables.iter().map(|(d, rows, what)| Segments::new(d, dy, rows, h, what)).collect();
    let mut packed = Vec::new();
    let at: Vec<usize> = segs
        .iter()
        .map(|s| {
            let at = packed.len();
            packed.extend_from_slice(&s.packed);
            at
        })
        .collect();
    let dev = cuda.upload_pod(&packed);
    for (((d, _, what), s), at) in tables.into_iter().zip(&segs).zip(at) {
        s.launch(cuda, d, dy, dev.ptr() + 4 * at as u64, what);
    }
}

/// The segments of a scatter-add `d[rows[t]] += dy[t]` (rows of `cols`), checked and packed for one
/// upload: `perm`, then `seg_start`, then `seg_row`.
struct Segments {
    packed: Vec<u32>,
    nseg: usize,
    off_start: usize,
    off_row: usize,
    cols: usize,
}

impl Segments {
    fn new(d: &CudaBuf, dy: &CudaBuf, rows: &[u32], cols: usize, what: &str) -> Self {
        let table_rows = d.len.checked_div(cols).unwrap_or(0);
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= table_rows) {
            panic!("ernie-cuda: {what}: row {bad} out of range for a table of {table_rows} rows");
        }
        need(dy.len, rows.len() * cols, what);
        let (perm, start, seg_row) = segments(rows);
        let nseg = seg_row.len();
        let mut packed = perm;
        let off_start = packed.len();
        packed.extend_from_slice(&start);
        let off_row = packed.len();
        packed.extend_from_slice(&seg_row);
        Segments { packed, nseg, off_start, off_row, cols }
    }

    /// The kernel, with the packed table at device address `base`.
    fn launch(&self, cuda: &CudaBackend, d: &mut CudaBuf, dy: &CudaBuf, base: u64, what: &str) {
        if self.nseg == 0 || self.cols == 0 {
            return;
        }
        let p = SegmentAddParams {
            d: d.arg_mut(),
            dy: dy.arg(),
            perm: base,
            seg_start: base + 4 * self.off_start as u64,
            seg_row: base + 4 * self.off_row as u64,
            nseg: self.nseg as u64,
            cols: self.cols as u64,
        };
        let ytiles = self.cols.div_ceil(THREADS as usize);
        assert!(ytiles <= 65535, "ernie-cuda: {what}: {} columns is too many", self.cols);
        cuda.launch_grid(Kernel::segment_add, (self.nseg, ytiles), p);
    }
}

/// `d[rows[t]] += dy[t]` (rows of `cols`) without atomics: see `segment_add` in embedding.cu.
pub(crate) fn segment_add(cuda: &CudaBackend, d: &mut CudaBuf, dy: &CudaBuf, rows: &[u32], cols: usize, what: &str) {
    if rows.is_empty() || cols == 0 {
        return;
    }
    let s = Segments::new(d, dy, rows, cols, what);
    let dev = cuda.upload_pod(&s.packed);
    s.launch(cuda, d, dy, dev.ptr(), what);
}
