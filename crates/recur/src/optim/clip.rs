//! Gradient clipping with `torch.nn.utils` semantics.

/// Scales all gradients together so that their global L2 norm is at most
/// `max_norm`, as `torch.nn.utils.clip_grad_norm_`: the norm over every
/// element of every tensor (accumulated in f64), then, when `max_norm` > 0,
/// every element is multiplied by `max_norm / (norm + 1e-6)` (in f32) if
/// that factor is below 1, that is whenever the norm exceeds `max_norm`.
/// `max_norm` ≤ 0 (or NaN) only measures.
///
/// Returns the norm before clipping (inf or NaN if a gradient is; an
/// infinite norm scales the gradients by 0, as PyTorch does).
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let sq: f64 = grads.iter().map(|g| sum_squares(g)).sum();
    let norm = sq.sqrt() as f32;
    if max_norm > 0.0 {
        // clip_coef = max_norm / (total_norm + 1e-6), clamped to 1: a factor
        // of exactly 1 changes nothing, so skip the pass.
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for x in grads.iter_mut().flat_map(|g| g.iter_mut()) {
                *x *= coef;
            }
        }
    }
    norm
}

/// Σ x² in f64 over 8 fixed lanes: it vectorises (one running sum cannot)
/// and the order, hence the result, is always the same.
fn sum_squares(g: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut it = g.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += f64::from(c[l]) * f64::from(c[l]);
        }
    }
    let tail: f64 = it
        .remainder()
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// Clamps every gradient element to [−v, v], as
/// `torch.nn.utils.clip_grad_value_`. `v` ≤ 0 (or NaN) does nothing; NaN
/// elements stay NaN.
pub fn clip_grad_value(grads: &mut [&mut [f32]], v: f32) {
    if v > 0.0 {
        for x in grads.iter_mut().flat_map(|g| g.iter_mut()) {
            *x = x.clamp(-v, v);
        }
    }
}
