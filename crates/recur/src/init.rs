//! Initialisations from the long-memory literature for [`crate::Rnn`]
//! parameters, told apart by their names: `weight_hh*` and `weight_skip*` are
//! recurrent matrices, `weight_ih*` input weights, `bias*` biases,
//! `leak_logit*` keep their start, and anything else is drawn uniformly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::layer::rnn::Rnn;
use crate::linalg::random_orthogonal;
use crate::params::{ParamInfo, ParamStore};

/// How recurrent matrices are drawn; each H×H gate block separately.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecurrentInit {
    /// PyTorch's default: every parameter from U(−1/√H, 1/√H).
    Uniform,
    /// Recurrent blocks random orthogonal (Saxe et al. 2014), the rest as
    /// `Uniform`: every singular value of W_hh is 1 at the start.
    Orthogonal,
    /// The IRNN of Le, Jaitly & Hinton (2015): recurrent blocks `scale`·I,
    /// biases 0, input weights N(0, 0.001²). Meant for relu units.
    Identity(f64),
}

impl RecurrentInit {
    /// Parses "uniform", "orthogonal" or "identity" (scale 1).
    pub fn from_name(s: &str) -> Option<RecurrentInit> {
        match s {
            "uniform" => Some(RecurrentInit::Uniform),
            "orthogonal" => Some(RecurrentInit::Orthogonal),
            "identity" => Some(RecurrentInit::Identity(1.0)),
            _ => None,
        }
    }
}

/// Fills `params` (described by `info`) for hidden size H = `hidden` from a
/// ChaCha8 stream seeded with `seed`.
pub fn init_params<T: Float>(
    params: &mut [T],
    info: &[ParamInfo],
    hidden: usize,
    init: RecurrentInit,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = 1.0 / (hidden as f64).sqrt();
    let small = Normal::new(0.0, 1e-3).expect("valid normal");
    for p in info {
        let dst = &mut params[p.offset..p.offset + p.len()];
        // The name within its part: `rnn.weight_hh_l0` and `weight_hh_l0` alike.
        let name = p.name.rsplit('.').next().unwrap_or(&p.name);
        let recurrent = name.starts_with("weight_hh") || name.starts_with("weight_skip");
        match init {
            _ if name.starts_with("leak_logit") => {}
            RecurrentInit::Orthogonal if recurrent => {
                for block in dst.chunks_exact_mut(hidden * hidden) {
                    let q = random_orthogonal(hidden, &mut rng);
                    block
                        .iter_mut()
                        .zip(&q)
                        .for_each(|(d, v)| *d = T::from_f64(*v));
                }
            }
            RecurrentInit::Identity(scale) if recurrent => {
                for block in dst.chunks_exact_mut(hidden * hidden) {
                    block.fill(T::ZERO);
                    (0..hidden).for_each(|i| block[i * hidden + i] = T::from_f64(scale));
                }
            }
            RecurrentInit::Identity(_) if name.starts_with("weight_ih") => {
                dst.iter_mut()
                    .for_each(|d| *d = T::from_f64(small.sample(&mut rng)));
            }
            RecurrentInit::Identity(_) if name.starts_with("bias") => dst.fill(T::ZERO),
            _ => dst
                .iter_mut()
                .for_each(|d| *d = T::from_f64(rng.random_range(-k..k))),
        }
    }
}

/// Sets an LSTM's forget-gate bias: b_ih's f block to `value` and b_hh's to
/// 0, so the gate starts at σ(value) (Gers et al. 2000; Jozefowicz et al.
/// 2015 recommend 1).
pub fn set_lstm_forget_bias<T: Float>(
    rnn: &Rnn,
    store: &mut ParamStore<T>,
    value: f64,
) -> Result<()> {
    if !rnn.config().cell.has_cell_state() {
        return Err(Error::Config(format!(
            "a forget-gate bias needs an LSTM, not a {} layer",
            rnn.config().cell.name()
        )));
    }
    let h = rnn.config().hidden;
    let names: Vec<String> = rnn
        .param_info()
        .iter()
        .filter(|p| p.name.starts_with("bias_"))
        .map(|p| p.name.clone())
        .collect();
    for name in names {
        let v = if name.starts_with("bias_ih") {
            T::from_f64(value)
        } else {
            T::ZERO
        };
        let b = rnn.param_mut(store, &name).expect("listed parameter");
        b[h..2 * h].fill(v);
    }
    Ok(())
}

/// Fills `p` with draws from U(−r, r) (PyTorch's `uniform_`).
pub fn fill_uniform<T: Float, R: rand::Rng + ?Sized>(p: &mut [T], r: f64, rng: &mut R) {
    for v in p {
        *v = T::from_f64(rng.random_range(-r..r));
    }
}

/// PyTorch's default initialisation of linear layers, U(−1/√in, 1/√in) for
/// the weight and then the bias of each.
pub fn init_linears<T: Float>(
    params: &mut [T],
    linears: &[crate::layer::linear::Linear],
    rng: &mut impl rand::Rng,
) {
    for l in linears {
        let r = 1.0 / (l.input() as f64).sqrt();
        fill_uniform(l.weight().of_mut(params), r, rng);
        fill_uniform(l.bias().of_mut(params), r, rng);
    }
}
