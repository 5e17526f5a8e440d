//! Embedding lookup: gathers rows of the table, never builds one-hot inputs.

use crate::float::Float;
use crate::gemm::OutPtr;
use crate::params::{Param, ParamStore, Scope};
use crate::pool::par_ranges;

/// An embedding table as a part of a model: `weight` `[V, E]` in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedding {
    vocab: usize,
    embed: usize,
    weight: Param,
}

impl Embedding {
    /// Registers `weight` (zero) in `scope`.
    pub fn new<T: Float>(mut scope: Scope<'_, T>, vocab: usize, dim: usize) -> Embedding {
        let weight = scope.add("weight", &[vocab, dim]);
        Embedding {
            vocab,
            embed: dim,
            weight,
        }
    }
    /// V: rows.
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    /// E: the width of a row.
    pub fn embed(&self) -> usize {
        self.embed
    }
    /// The table `[V, E]`.
    pub fn weight(&self) -> Param {
        self.weight
    }
    /// `out[N, E]` = the rows of `ids` `[N]` (ids must be < V).
    pub fn forward<T: Float>(&self, store: &ParamStore<T>, ids: &[u32], out: &mut [T]) {
        gather_rows(
            self.weight.of(&store.params),
            self.vocab,
            self.embed,
            ids,
            1,
            None,
            out,
        );
    }
    /// Scatter-adds `d_out` `[N, E]` into the table's gradient.
    pub fn backward<T: Float>(&self, store: &mut ParamStore<T>, ids: &[u32], d_out: &[T]) {
        let d_table = self.weight.of_mut(&mut store.grads);
        scatter_rows(d_out, self.embed, ids, 1, self.vocab, d_table);
    }
}

/// `out[n] = bias + Σ_j tables[j][ids[n·K + j]]` for each of the N rows
/// `[W]` of `out`: K tables `[R, W]` back to back (`tables` `[K, R, W]`),
/// one row taken from each. K = 1 without a bias is an embedding lookup.
/// Rows are split across threads.
pub(crate) fn gather_rows<T: Float>(
    tables: &[T],
    rows: usize,
    w: usize,
    ids: &[u32],
    k: usize,
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let n = ids.len() / k;
    debug_assert!(out.len() >= n * w && tables.len() >= k * rows * w);
    let base = OutPtr(out.as_mut_ptr());
    par_ranges(n, 64, &|range| {
        // SAFETY: `out` holds N·W values and the row ranges are disjoint.
        let out =
            unsafe { std::slice::from_raw_parts_mut(base.at(range.start * w), range.len() * w) };
        for (r, o) in range.zip(out.chunks_exact_mut(w)) {
            let ids = &ids[r * k..(r + 1) * k];
            let row = |j: usize| &tables[(j * rows + ids[j] as usize) * w..][..w];
            match bias {
                Some(b) => {
                    o.copy_from_slice(b);
                    o.iter_mut().zip(row(0)).for_each(|(x, &y)| *x += y);
                }
                None => o.copy_from_slice(row(0)),
            }
            for j in 1..k {
                o.iter_mut().zip(row(j)).for_each(|(x, &y)| *x += y);
            }
        }
    });
}

/// [`gather_rows`] reversed: `d_tables[j][ids[n·K + j]] += d_out[n]` for
/// every row n of `d_out` `[N, W]`. The columns are split across threads
/// and each sums its rows in order, so the numbers do not depend on the
/// thread count.
pub(crate) fn scatter_rows<T: Float>(
    d_out: &[T],
    w: usize,
    ids: &[u32],
    k: usize,
    rows: usize,
    d_tables: &mut [T],
) {
    let n = ids.len() / k;
    debug_assert!(d_out.len() >= n * w && d_tables.len() >= k * rows * w);
    let base = OutPtr(d_tables.as_mut_ptr());
    par_ranges(w, 64, &|cols| {
        for r in 0..n {
            let d = &d_out[r * w..][cols.clone()];
            for (j, &id) in ids[r * k..(r + 1) * k].iter().enumerate() {
                let at = (j * rows + id as usize) * w + cols.start;
                // SAFETY: the tables hold K·R·W values and the column
                // ranges are disjoint.
                let t = unsafe { std::slice::from_raw_parts_mut(base.at(at), cols.len()) };
                t.iter_mut().zip(d).for_each(|(x, &y)| *x += y);
            }
        }
    });
}
