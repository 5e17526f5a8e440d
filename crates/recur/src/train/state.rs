//! Saving a run and continuing it: `last.safetensors` (the model) and
//! `train_state.safetensors` (optimiser moments, the dropout stream's
//! position, the data stream's position, where the run stands, the state
//! carried into the next batch, and the settings).

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Data, MetricsLine, Model, Progress, TrainConfig, Trainer, STATE_FORMAT};
use crate::checkpoint::{encode_tensors, fill_params, read_tensors, stage};

/// The metadata key of the step a run's `last.safetensors` was saved at.
const STEP_KEY: &str = "run_step";
use crate::error::{Error, Result};

fn state_err(path: &Path, message: impl Into<String>) -> Error {
    Error::input(path.display(), message)
}

/// A ChaCha8 stream's position as JSON.
fn rng_json(rng: &ChaCha8Rng) -> serde_json::Value {
    serde_json::json!({
        "seed": rng.get_seed().to_vec(),
        "stream": rng.get_stream().to_string(),
        "word_pos": rng.get_word_pos().to_string(),
    })
}

/// The stream [`rng_json`] wrote, or None when `v` is malformed.
fn rng_from_json(v: &serde_json::Value) -> Option<ChaCha8Rng> {
    let seed: Vec<u8> = serde_json::from_value(v["seed"].clone()).ok()?;
    let mut rng = ChaCha8Rng::from_seed(seed.try_into().ok()?);
    rng.set_stream(v["stream"].as_str()?.parse().ok()?);
    rng.set_word_pos(v["word_pos"].as_str()?.parse().ok()?);
    Some(rng)
}

impl<M: Model, D: Data<Batch = M::Batch>> Trainer<M, D> {
    /// Writes `DIR/last.safetensors` and `DIR/train_state.safetensors`, each
    /// through a temporary file and a rename, and each stamped with the step:
    /// a crash between the two renames leaves a pair that resume refuses.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        let step = (STEP_KEY.to_string(), self.progress.step.to_string());
        // Both files are written in full before either replaces the old
        // pair: a failure (a full disk) leaves the previous checkpoint whole.
        let last_path = dir.join("last.safetensors");
        let last = stage(&last_path, &self.encode_model(&last_path, vec![step])?)?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), STATE_FORMAT.to_string());
        meta.insert("train_config".to_string(), to_json(&self.config));
        meta.insert("progress".to_string(), to_json(&self.progress));
        meta.insert("rng".to_string(), rng_json(&self.rng).to_string());
        let mut data = serde_json::json!({"hash": self.data.fingerprint().to_string()});
        if let Some(r) = self.data.rng() {
            data["rng"] = rng_json(r);
        }
        meta.insert("data".to_string(), data.to_string());
        let opt = self.opt.state_tensors();
        let mut tensors: Vec<(String, Vec<usize>, &[f32])> = opt
            .iter()
            .map(|(n, v)| (format!("optim.{n}"), vec![v.len()], &v[..]))
            .collect();
        for (name, v) in self.model.carried_state() {
            if !v.is_empty() {
                tensors.push((format!("carry.{name}"), vec![v.len()], v));
            }
        }
        let state_path = dir.join("train_state.safetensors");
        let state = stage(&state_path, &encode_tensors(&state_path, &tensors, meta)?)?;
        last.commit()?;
        state.commit()
    }

    /// Continues the run saved in `dir`: `model` and `data` must be built
    /// as the run's were (same shapes, same data); the weights come from
    /// `DIR/last.safetensors`. `total_steps` replaces the saved run length
    /// (the cosine schedule's horizon).
    pub fn resume(
        dir: &Path,
        mut model: M,
        data: D,
        total_steps: Option<Option<u64>>,
    ) -> Result<Trainer<M, D>> {
        let last = dir.join("last.safetensors");
        let mut weights = read_tensors(&last)?;
        fill_params(model.store_mut(), &mut weights, &last)?;
        let path = dir.join("train_state.safetensors");
        let mut st = read_tensors(&path)?;
        if st.metadata.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            return Err(state_err(
                &path,
                format!("is not a recur training state (format '{STATE_FORMAT}')"),
            ));
        }
        let get = |k: &str| -> Result<serde_json::Value> {
            let s = st
                .metadata
                .get(k)
                .ok_or_else(|| state_err(&path, format!("missing metadata '{k}'")))?;
            serde_json::from_str(s).map_err(|e| state_err(&path, format!("metadata '{k}': {e}")))
        };
        let mut config: TrainConfig = serde_json::from_value(get("train_config")?)
            .map_err(|e| state_err(&path, format!("metadata 'train_config': {e}")))?;
        if let Some(t) = total_steps {
            config.total_steps = t;
        }
        let progress: Progress = serde_json::from_value(get("progress")?)
            .map_err(|e| state_err(&path, format!("metadata 'progress': {e}")))?;
        if weights.metadata.get(STEP_KEY) != Some(&progress.step.to_string()) {
            return Err(state_err(
                &last,
                format!(
                    "holds the weights of step {}, but {} is at step {}: the run stopped while saving; resume needs a matching pair",
                    weights.metadata.get(STEP_KEY).map_or("?", String::as_str),
                    path.display(),
                    progress.step
                ),
            ));
        }
        let rng = get("rng")?;
        let data_meta = get("data")?;
        let mut t = Trainer::new(model, data, config)?;
        if data_meta["hash"].as_str() != Some(&t.data.fingerprint().to_string()) {
            return Err(state_err(
                &path,
                "was saved for different data; resume needs the same data",
            ));
        }
        t.rng =
            rng_from_json(&rng).ok_or_else(|| state_err(&path, "metadata 'rng' is malformed"))?;
        if let Some(r) = t.data.rng() {
            *r = rng_from_json(&data_meta["rng"])
                .ok_or_else(|| state_err(&path, "metadata 'data' has no valid 'rng'"))?;
        }
        let mut opt_state = Vec::new();
        let mut carried = Vec::new();
        for (name, (_, v)) in std::mem::take(&mut st.tensors) {
            if let Some(n) = name.strip_prefix("optim.") {
                opt_state.push((n.to_string(), v));
            } else if let Some(n) = name.strip_prefix("carry.") {
                carried.push((n.to_string(), v));
            }
        }
        t.opt
            .load_state(&opt_state)
            .map_err(|e| state_err(&path, e.to_string()))?;
        t.model
            .set_carried_state(&carried)
            .map_err(|e| state_err(&path, e.to_string()))?;
        t.progress = progress;
        t.history = read_metrics(&dir.join("metrics.jsonl"));
        Ok(t)
    }
}

/// The lines of a `metrics.jsonl` (none when it is missing; bad lines are skipped).
fn read_metrics(path: &Path) -> Vec<MetricsLine> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("settings serialise")
}
