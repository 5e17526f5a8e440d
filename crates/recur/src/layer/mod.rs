//! Layers: each is a forward/backward pair over preallocated buffers.

pub mod attention;
pub mod dropout;
pub mod embedding;
pub mod linear;
pub mod loss;
pub mod phased;
pub mod pool;
pub mod rnn;
pub mod softmax;

use crate::float::Float;

/// Adds the column sums of `m` `[rows, n]` into `acc` `[n]`: a bias's
/// gradient from dL/d(output) over every row.
pub(crate) fn add_column_sums<T: Float>(acc: &mut [T], m: &[T], n: usize) {
    for row in m.chunks_exact(n) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += *v;
        }
    }
}
