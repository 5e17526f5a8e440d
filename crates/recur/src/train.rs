//! Training a language model: truncated BPTT over the standard batch layout,
//! clipping, an optimiser and a learning-rate schedule, validation, and
//! checkpoints that resume bit-for-bit.
//!
//! A run's state is the model (`last.safetensors`) plus `train_state.safetensors`:
//! the optimiser's moments, the dropout stream's position, the step, epoch
//! and position in the epoch, the recurrent state carried into the next
//! batch, and the settings. Resuming from them continues exactly where the
//! run stopped, so the numbers match an uninterrupted run with the same
//! thread count.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_lm, read_tensors, save_lm, write_tensors};
use crate::data::{split_train_val, Batcher, Vocab};
use crate::error::{Error, Result};
use crate::model::lm::{LanguageModel, LmWorkspace};
use crate::optim::{
    clip_grad_norm, clip_grad_value, LrSchedule, OptimConfig, Optimizer, OptimizerKind,
};

/// The `format` metadata of a training-state file.
pub const STATE_FORMAT: &str = "recur-train-state";

/// Settings of a training run (everything but the model's sizes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// T: steps of truncated BPTT per batch.
    pub seq_len: usize,
    /// B.
    pub batch: usize,
    /// sgd, adam, adamw, rmsprop or adagrad.
    pub optimizer: String,
    /// Base learning rate.
    pub lr: f32,
    /// Momentum (sgd, rmsprop).
    pub momentum: f32,
    /// Weight decay (decoupled for adamw, L2 otherwise).
    pub weight_decay: f32,
    /// constant, step or cosine.
    pub schedule: String,
    /// Step schedule: factor applied after each epoch from `decay_start` on.
    pub lr_decay: f32,
    /// Step schedule: first epoch (0-based) with a decayed rate.
    pub decay_start: usize,
    /// Cosine schedule: the final rate.
    pub min_lr: f32,
    /// Cosine schedule: steps over which the rate falls (the run's length).
    pub total_steps: Option<u64>,
    /// Clip the gradient's global L2 norm to this (0: off).
    pub clip_norm: f32,
    /// Clip every gradient element to ±this (0: off).
    pub clip_value: f32,
    /// Fraction of the tokens, taken from the end, held out for validation.
    pub val_fraction: f64,
    /// Seed of the initial weights and of dropout.
    pub seed: u64,
}

impl TrainConfig {
    fn optim_config(&self) -> Result<OptimConfig> {
        let kind = OptimizerKind::from_name(&self.optimizer).ok_or_else(|| {
            Error::Config(format!(
                "unknown optimizer '{}': expected sgd, adam, adamw, rmsprop or adagrad",
                self.optimizer
            ))
        })?;
        let mut c = OptimConfig::new(kind, self.lr);
        c.momentum = self.momentum;
        c.weight_decay = self.weight_decay;
        c.validate()?;
        Ok(c)
    }

    fn schedule(&self) -> Result<LrSchedule> {
        match self.schedule.as_str() {
            "constant" => Ok(LrSchedule::Constant),
            "step" => {
                if !(self.lr_decay.is_finite() && self.lr_decay > 0.0) {
                    return Err(Error::Config(format!(
                        "lr decay must be a number > 0, got {}",
                        self.lr_decay
                    )));
                }
                Ok(LrSchedule::Step {
                    decay: self.lr_decay,
                    start_epoch: self.decay_start,
                })
            }
            "cosine" => match self.total_steps {
                Some(total_steps) => Ok(LrSchedule::Cosine {
                    total_steps,
                    min_lr: self.min_lr,
                }),
                None => Err(Error::Config(
                    "the cosine schedule needs the run's length: give --steps or --epochs".into(),
                )),
            },
            s => Err(Error::Config(format!(
                "unknown schedule '{s}': expected constant, step or cosine"
            ))),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::Config("batch size must be at least 1, got 0".into()));
        }
        if self.seq_len == 0 {
            return Err(Error::Config(
                "sequence length must be at least 1, got 0".into(),
            ));
        }
        if !(self.val_fraction >= 0.0 && self.val_fraction < 1.0) {
            return Err(Error::Config(format!(
                "validation fraction must be in [0, 1), got {}",
                self.val_fraction
            )));
        }
        for (name, v) in [
            ("clip norm", self.clip_norm),
            ("clip value", self.clip_value),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "{name} must be a number >= 0 (0 turns it off), got {v}"
                )));
            }
        }
        self.optim_config()?;
        self.schedule()?;
        Ok(())
    }
}

/// What one training step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Mean cross-entropy of the batch, before the update.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// The learning rate used.
    pub lr: f32,
}

/// Where a run stands; saved with every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Updates made.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Batches of the current epoch already used.
    pub step_in_epoch: usize,
    /// Training tokens consumed (B·T per step).
    pub tokens_seen: u64,
    /// Best validation loss so far.
    pub best_val: Option<f64>,
}

/// A training run in progress.
pub struct Trainer {
    /// The model being trained.
    pub model: LanguageModel,
    /// Its vocabulary.
    pub vocab: Vocab,
    config: TrainConfig,
    train: Batcher,
    val: Vec<u32>,
    data_hash: u64,
    opt: Optimizer,
    schedule: LrSchedule,
    rng: ChaCha8Rng,
    ws: LmWorkspace,
    eval_ws: LmWorkspace,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    /// Where the run stands.
    pub progress: Progress,
}

/// FNV-1a over the token ids: resuming on different data is an error.
fn hash_ids(ids: &[u32]) -> u64 {
    ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn state_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl Trainer {
    /// Starts a run of `model` on the token ids `data` (split into training
    /// and validation by `config.val_fraction`).
    pub fn new(
        model: LanguageModel,
        vocab: Vocab,
        data: &[u32],
        source: &str,
        config: TrainConfig,
    ) -> Result<Trainer> {
        config.validate()?;
        let (train_ids, val_ids) = split_train_val(data, config.val_fraction);
        let train = Batcher::new(
            train_ids,
            config.batch,
            config.seq_len,
            &format!("the training part of {source}"),
        )?;
        if config.val_fraction > 0.0 && val_ids.len() < 2 {
            return Err(Error::TooShort {
                what: format!("the validation part of {source} ({} tokens)", val_ids.len()),
                have: val_ids.len(),
                need: 2,
                batch: 1,
                seq_len: 1,
            });
        }
        let opt = Optimizer::new(config.optim_config()?, &[model.num_params()])?;
        Ok(Trainer {
            schedule: config.schedule()?,
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_d50f),
            data_hash: hash_ids(data),
            model,
            vocab,
            train,
            val: val_ids.to_vec(),
            opt,
            ws: LmWorkspace::new(),
            eval_ws: LmWorkspace::new(),
            inputs: Vec::new(),
            targets: Vec::new(),
            progress: Progress {
                step: 0,
                epoch: 0,
                step_in_epoch: 0,
                tokens_seen: 0,
                best_val: None,
            },
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.train.steps_per_epoch()
    }

    /// Whether there is validation data.
    pub fn has_validation(&self) -> bool {
        !self.val.is_empty()
    }

    /// One update on the next batch; the state is zeroed at the start of an epoch.
    pub fn train_step(&mut self) -> Result<StepReport> {
        let c = &self.config;
        if self.progress.step_in_epoch == 0 {
            self.ws.reset_state();
        }
        self.train.fill(
            self.progress.step_in_epoch,
            &mut self.inputs,
            &mut self.targets,
        );
        let rng: Option<&mut dyn rand::RngCore> = if self.model.config().dropout > 0.0 {
            Some(&mut self.rng)
        } else {
            None
        };
        let loss = self.model.forward_backward(
            &mut self.ws,
            &self.inputs,
            &self.targets,
            c.seq_len,
            c.batch,
            rng,
        )?;
        let store = &mut self.model.store;
        let grad_norm = clip_grad_norm(&mut [&mut store.grads], c.clip_norm);
        if c.clip_value > 0.0 {
            clip_grad_value(&mut [&mut store.grads], c.clip_value);
        }
        let lr = self
            .schedule
            .lr(c.lr, self.progress.step, self.progress.epoch);
        self.opt.step(&mut [&mut store.params], &[&store.grads], lr);
        let p = &mut self.progress;
        p.step += 1;
        p.tokens_seen += (c.seq_len * c.batch) as u64;
        p.step_in_epoch += 1;
        if p.step_in_epoch == self.train.steps_per_epoch() {
            p.step_in_epoch = 0;
            p.epoch += 1;
        }
        Ok(StepReport {
            loss,
            grad_norm,
            lr,
        })
    }

    /// Mean cross-entropy on the validation tokens (None without any): the
    /// standard layout at batch min(B, ·), every prediction of every row
    /// counted once, state carried along each row.
    pub fn validate(&mut self) -> Result<Option<f64>> {
        if self.val.len() < 2 {
            return Ok(None);
        }
        let n = self.val.len();
        let t = self.config.seq_len;
        let b = self.config.batch.min((n - 1) / t.min(n - 1)).max(1);
        let row = n / b;
        let data = &self.val[..row * b];
        self.eval_ws.reset_state();
        let (mut total, mut count) = (0.0f64, 0usize);
        let mut start = 0;
        while start + 1 < row {
            let len = t.min(row - 1 - start);
            self.inputs.resize(len * b, 0);
            self.targets.resize(len * b, 0);
            for r in 0..b {
                for k in 0..len {
                    self.inputs[k * b + r] = data[r * row + start + k];
                    self.targets[k * b + r] = data[r * row + start + k + 1];
                }
            }
            let loss = self
                .model
                .loss(&mut self.eval_ws, &self.inputs, &self.targets, len, b)?;
            total += loss * (len * b) as f64;
            count += len * b;
            start += len;
        }
        self.eval_ws.reset_state();
        let val = total / count as f64;
        if self.progress.best_val.is_none_or(|b| val < b) {
            self.progress.best_val = Some(val);
        }
        Ok(Some(val))
    }

    /// Writes `DIR/last.safetensors` and `DIR/train_state.safetensors`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_lm(&dir.join("last.safetensors"), &self.model, &self.vocab)?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), STATE_FORMAT.to_string());
        meta.insert(
            "train_config".to_string(),
            serde_json::to_string(&self.config).expect("serialises"),
        );
        meta.insert(
            "progress".to_string(),
            serde_json::to_string(&self.progress).expect("serialises"),
        );
        let rng = serde_json::json!({
            "seed": self.rng.get_seed().to_vec(),
            "stream": self.rng.get_stream().to_string(),
            "word_pos": self.rng.get_word_pos().to_string(),
        });
        meta.insert("rng".to_string(), rng.to_string());
        meta.insert(
            "data".to_string(),
            serde_json::json!({"hash": self.data_hash.to_string()}).to_string(),
        );
        let opt = self.opt.state_tensors();
        let mut tensors: Vec<(String, Vec<usize>, &[f32])> = opt
            .iter()
            .map(|(n, v)| (format!("optim.{n}"), vec![v.len()], &v[..]))
            .collect();
        let (h, c) = (self.ws.state_h(), self.ws.state_c());
        if !h.is_empty() {
            tensors.push(("carry.h".to_string(), vec![h.len()], h));
        }
        if !c.is_empty() {
            tensors.push(("carry.c".to_string(), vec![c.len()], c));
        }
        write_tensors(&dir.join("train_state.safetensors"), &tensors, meta)
    }

    /// Writes the model alone, as the best one so far: `DIR/model.safetensors`.
    pub fn save_best(&self, dir: &Path) -> Result<()> {
        save_lm(&dir.join("model.safetensors"), &self.model, &self.vocab)
    }

    /// Continues a run saved in `dir` on the same data. `total_steps`
    /// replaces the saved run length (the cosine schedule's horizon).
    pub fn resume(
        dir: &Path,
        data: &[u32],
        source: &str,
        total_steps: Option<Option<u64>>,
    ) -> Result<Trainer> {
        let (model, vocab) = load_lm(&dir.join("last.safetensors"))?;
        let path = dir.join("train_state.safetensors");
        let mut st = read_tensors(&path)?;
        if st.metadata.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            return Err(state_err(
                &path,
                format!("is not a recur training state (format '{STATE_FORMAT}')"),
            ));
        }
        let get = |k: &str| {
            st.metadata
                .get(k)
                .cloned()
                .ok_or_else(|| state_err(&path, format!("missing metadata '{k}'")))
        };
        let mut config: TrainConfig = serde_json::from_str(&get("train_config")?)
            .map_err(|e| state_err(&path, format!("metadata 'train_config': {e}")))?;
        if let Some(t) = total_steps {
            config.total_steps = t;
        }
        let progress: Progress = serde_json::from_str(&get("progress")?)
            .map_err(|e| state_err(&path, format!("metadata 'progress': {e}")))?;
        let rng: serde_json::Value = serde_json::from_str(&get("rng")?)
            .map_err(|e| state_err(&path, format!("metadata 'rng': {e}")))?;
        let data_meta: serde_json::Value = serde_json::from_str(&get("data")?)
            .map_err(|e| state_err(&path, format!("metadata 'data': {e}")))?;
        let mut t = Trainer::new(model, vocab, data, source, config)?;
        if data_meta["hash"].as_str() != Some(&t.data_hash.to_string()) {
            return Err(state_err(
                &path,
                format!("was saved for different data than {source}; resume needs the same --data"),
            ));
        }
        let bad_rng = || state_err(&path, "metadata 'rng' is malformed");
        let seed: Vec<u8> = serde_json::from_value(rng["seed"].clone()).map_err(|_| bad_rng())?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| bad_rng())?;
        t.rng = ChaCha8Rng::from_seed(seed);
        t.rng.set_stream(
            rng["stream"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad_rng)?,
        );
        t.rng.set_word_pos(
            rng["word_pos"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad_rng)?,
        );
        let mut opt_state = Vec::new();
        let mut carry_h = Vec::new();
        let mut carry_c = Vec::new();
        for (name, (_, v)) in std::mem::take(&mut st.tensors) {
            if let Some(n) = name.strip_prefix("optim.") {
                opt_state.push((n.to_string(), v));
            } else if name == "carry.h" {
                carry_h = v;
            } else if name == "carry.c" {
                carry_c = v;
            }
        }
        t.opt
            .load_state(&opt_state)
            .map_err(|e| state_err(&path, e.to_string()))?;
        t.ws.set_state(&carry_h, &carry_c, t.config.batch);
        t.progress = progress;
        Ok(t)
    }
}
