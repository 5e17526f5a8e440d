//! Embedding lookup: gathers rows of the table, never builds one-hot inputs.

use crate::float::Float;

/// `out[n, E] = table[ids[n], E]` for each of the N ids.
pub fn embedding_forward<T: Float>(table: &[T], e: usize, ids: &[u32], out: &mut [T]) {
    for (row, &id) in out.chunks_exact_mut(e).zip(ids) {
        let id = id as usize;
        row.copy_from_slice(&table[id * e..(id + 1) * e]);
    }
}

/// `d_table[ids[n]] += d_out[n]`: scatter-add of the output gradient.
pub fn embedding_backward<T: Float>(d_table: &mut [T], e: usize, ids: &[u32], d_out: &[T]) {
    for (row, &id) in d_out.chunks_exact(e).zip(ids) {
        let id = id as usize;
        for (d, g) in d_table[id * e..(id + 1) * e].iter_mut().zip(row) {
            *d += *g;
        }
    }
}
