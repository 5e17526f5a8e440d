//! The data of the long-memory tasks: batches drawn from a random stream
//! (see [`crate::task`] for the tasks).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::task::{TaskConfig, TaskKind};
use crate::train::Data;

/// Symbols of the copy task are classes 1..=8; 0 is blank, 9 the delimiter.
pub(crate) const COPY_SYMBOLS: usize = 8;
/// How many symbols the copy task asks the net to remember.
pub(crate) const COPY_LEN: usize = 10;

/// One batch of a task, time-major.
#[derive(Clone, Debug, Default)]
pub struct TaskBatch {
    /// T, B.
    pub(crate) steps: usize,
    pub(crate) batch: usize,
    /// `[T, B, I]`
    pub(crate) x: Vec<f32>,
    /// `[T, B, O]` targets: bits, values, or one-hot classes.
    pub(crate) y: Vec<f32>,
    /// `[T·B]` target classes (copy).
    pub(crate) classes: Vec<u32>,
    /// `[T, B, O]` which target elements count.
    pub(crate) weight: Vec<f32>,
    /// `[T, B]` each sample's time stamp: the step index, but for the
    /// frequency task's irregular samples (milliseconds).
    pub(crate) times: Vec<f32>,
}

/// The frequency task's sequences last this many milliseconds.
pub(crate) const FREQUENCY_SPAN_MS: f32 = 15.0;

/// Draws a batch of `bn` sequences of `cfg`'s task.
pub(crate) fn draw_batch(
    cfg: &TaskConfig,
    rng: &mut ChaCha8Rng,
    bn: usize,
    test: bool,
) -> TaskBatch {
    let mut bt = TaskBatch::default();
    draw_batch_into(cfg, rng, bn, test, &mut bt);
    bt
}

/// Draws a batch into `bt`, reusing its buffers (one per training step).
pub(crate) fn draw_batch_into(
    cfg: &TaskConfig,
    rng: &mut ChaCha8Rng,
    bn: usize,
    test: bool,
    bt: &mut TaskBatch,
) {
    let tn = cfg.steps_per_sequence(test);
    let (i, o) = (cfg.inputs(), cfg.outputs());
    (bt.steps, bt.batch) = (tn, bn);
    for (v, n) in [
        (&mut bt.x, tn * bn * i),
        (&mut bt.y, tn * bn * o),
        (&mut bt.weight, tn * bn * o),
    ] {
        v.clear();
        v.resize(n, 0.0);
    }
    bt.classes.clear();
    bt.classes.resize(tn * bn, 0);
    bt.times.clear();
    bt.times.extend((0..tn * bn).map(|r| (r / bn) as f32));
    for b in 0..bn {
        match cfg.task {
            TaskKind::BinaryAddition => {
                let bits = if test { cfg.test_bits } else { cfg.train_bits };
                let draw = |rng: &mut ChaCha8Rng| -> u128 {
                    let v: u128 = rng.random();
                    if bits >= 128 {
                        v
                    } else {
                        v & ((1u128 << bits) - 1)
                    }
                };
                let (a, c) = (draw(rng), draw(rng));
                let sum = a + c;
                for t in 0..tn {
                    if t < bits {
                        bt.x[(t * bn + b) * 2] = ((a >> t) & 1) as f32;
                        bt.x[(t * bn + b) * 2 + 1] = ((c >> t) & 1) as f32;
                    }
                    if t >= cfg.delay {
                        bt.y[t * bn + b] = ((sum >> (t - cfg.delay)) & 1) as f32;
                        bt.weight[t * bn + b] = 1.0;
                    }
                }
            }
            TaskKind::Adding => {
                let half = tn / 2;
                let m1 = rng.random_range(0..half);
                let m2 = rng.random_range(half..tn);
                for t in 0..tn {
                    bt.x[(t * bn + b) * 2] = rng.random::<f32>();
                }
                bt.x[(m1 * bn + b) * 2 + 1] = 1.0;
                bt.x[(m2 * bn + b) * 2 + 1] = 1.0;
                let last = (tn - 1) * bn + b;
                bt.y[last] = bt.x[(m1 * bn + b) * 2] + bt.x[(m2 * bn + b) * 2];
                bt.weight[last] = 1.0;
            }
            TaskKind::Frequency => {
                // Neil et al. 2016: a sine of period P ms sampled at
                // irregular times; class 1 when 5 ≤ P ≤ 6, half the time.
                let target = rng.random::<bool>();
                let period = if target {
                    rng.random_range(5.0f32..=6.0)
                } else {
                    // Log-uniform over [1, 5) ∪ (6, 100].
                    loop {
                        let p = rng.random_range(0.0f32..100f32.ln()).exp();
                        if !(5.0..=6.0).contains(&p) {
                            break p;
                        }
                    }
                };
                let phase = rng.random_range(0.0..period);
                let mut stamps: Vec<f32> = (0..tn)
                    .map(|_| rng.random_range(0.0..FREQUENCY_SPAN_MS))
                    .collect();
                stamps.sort_by(f32::total_cmp);
                for (t, &at) in stamps.iter().enumerate() {
                    let r = t * bn + b;
                    bt.times[r] = at;
                    let angle = std::f32::consts::TAU * (at + phase) / period;
                    bt.x[r * 2] = angle.sin();
                    // The time itself, so that a net without a time gate sees it too.
                    bt.x[r * 2 + 1] = at / FREQUENCY_SPAN_MS;
                }
                let last = (tn - 1) * bn + b;
                bt.y[last] = f32::from(u8::from(target));
                bt.weight[last] = 1.0;
            }
            TaskKind::Copy => {
                let delim = tn - COPY_LEN - 1;
                for t in 0..tn {
                    let input = if t < COPY_LEN {
                        rng.random_range(1..=COPY_SYMBOLS)
                    } else if t == delim {
                        COPY_SYMBOLS + 1
                    } else {
                        0
                    };
                    bt.x[(t * bn + b) * i + input] = 1.0;
                    if t < COPY_LEN {
                        let out = tn - COPY_LEN + t;
                        bt.classes[out * bn + b] = input as u32;
                    }
                }
                for t in 0..tn {
                    let r = t * bn + b;
                    bt.y[r * o + bt.classes[r] as usize] = 1.0;
                    bt.weight[r * o..][..o].fill(1.0);
                }
            }
        }
    }
}

/// A task's data: fresh training batches from one random stream, a fixed
/// test set from another, and a check set from a third, which decides when
/// a net has solved the task without touching the test set.
pub struct TaskData {
    cfg: TaskConfig,
    rng: ChaCha8Rng,
    test: Vec<TaskBatch>,
    check: Vec<TaskBatch>,
}

impl TaskData {
    /// The check set: ten times the test set, drawn like it from its own
    /// stream.
    pub fn check(&self) -> &[TaskBatch] {
        &self.check
    }
}

impl TaskData {
    /// The streams `cfg` (its task and seed) describes.
    pub fn new(cfg: &TaskConfig) -> Result<TaskData> {
        cfg.validate()?;
        let mut test_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0x7e57));
        let mut check_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(0xc4ec));
        let chunks = cfg.test_size.div_ceil(cfg.batch);
        let test = (0..chunks)
            .map(|_| draw_batch(cfg, &mut test_rng, cfg.batch, true))
            .collect();
        // Ten times the test set: a net that passes it all errs on fewer
        // than one sequence in about ten thousand.
        let check = (0..10 * chunks)
            .map(|_| draw_batch(cfg, &mut check_rng, cfg.batch, true))
            .collect();
        Ok(TaskData {
            cfg: cfg.clone(),
            rng: ChaCha8Rng::seed_from_u64(cfg.attempt_seed().wrapping_add(0xda7a)),
            test,
            check,
        })
    }
}

impl Data for TaskData {
    type Batch = TaskBatch;

    fn steps_per_epoch(&self) -> Option<usize> {
        None
    }

    fn fill(&mut self, _epoch: usize, _step: usize, bt: &mut TaskBatch) -> Result<()> {
        draw_batch_into(&self.cfg, &mut self.rng, self.cfg.batch, false, bt);
        Ok(())
    }

    fn tokens_per_step(&self) -> usize {
        self.cfg.batch * self.cfg.steps_per_sequence(false)
    }

    fn validation(&self) -> &[TaskBatch] {
        &self.test
    }

    fn fingerprint(&self) -> u64 {
        let s = serde_json::to_string(&self.cfg).expect("config serialises");
        super::batch::fingerprint(s.bytes().map(u64::from))
    }

    fn rng(&mut self) -> Option<&mut ChaCha8Rng> {
        Some(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskCell;

    /// Sorted stamps within the span, the sine of the right period at
    /// them, one target at the last step, and both classes about equally.
    #[test]
    fn frequency_batches_are_irregular_sines() {
        let cfg = TaskConfig::new(TaskKind::Frequency, TaskCell::Phased);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let bt = draw_batch(&cfg, &mut rng, 400, false);
        let (tn, bn) = (bt.steps, bt.batch);
        assert_eq!(tn, cfg.length);
        let mut ones = 0;
        for b in 0..bn {
            let stamps: Vec<f32> = (0..tn).map(|t| bt.times[t * bn + b]).collect();
            assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
            assert!(stamps
                .iter()
                .all(|&s| (0.0..FREQUENCY_SPAN_MS).contains(&s)));
            // Irregular: the gaps differ.
            let gaps: Vec<f32> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(gaps.iter().any(|&g| (g - gaps[0]).abs() > 1e-3));
            for t in 0..tn {
                let r = t * bn + b;
                assert!(bt.x[r * 2].abs() <= 1.0);
                assert_eq!(bt.x[r * 2 + 1], bt.times[r] / FREQUENCY_SPAN_MS);
                assert_eq!(bt.weight[r], f32::from(u8::from(t == tn - 1)));
            }
            ones += usize::from(bt.y[(tn - 1) * bn + b] == 1.0);
        }
        assert!(
            (150..250).contains(&ones),
            "{ones} of 400 in the target band"
        );
    }
}
