//! Embedding lookup: gathers rows of the table, never builds one-hot inputs.

use crate::float::Float;
use crate::params::{Param, ParamStore, Scope};

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
        embedding_forward(self.weight.of(&store.params), self.embed, ids, out);
    }
    /// Scatter-adds `d_out` `[N, E]` into the table's gradient.
    pub fn backward<T: Float>(&self, store: &mut ParamStore<T>, ids: &[u32], d_out: &[T]) {
        embedding_backward(self.weight.of_mut(&mut store.grads), self.embed, ids, d_out);
    }
}

/// `out[n, E] = table[ids[n], E]` for each of the N ids.
pub(crate) fn embedding_forward<T: Float>(table: &[T], e: usize, ids: &[u32], out: &mut [T]) {
    for (row, &id) in out.chunks_exact_mut(e).zip(ids) {
        let id = id as usize;
        row.copy_from_slice(&table[id * e..(id + 1) * e]);
    }
}

/// `d_table[ids[n]] += d_out[n]`: scatter-add of the output gradient.
pub(crate) fn embedding_backward<T: Float>(d_table: &mut [T], e: usize, ids: &[u32], d_out: &[T]) {
    for (row, &id) in d_out.chunks_exact(e).zip(ids) {
        let id = id as usize;
        for (d, g) in d_table[id * e..(id + 1) * e].iter_mut().zip(row) {
            *d += *g;
        }
    }
}
