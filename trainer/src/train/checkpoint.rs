//! A run's checkpoints folder: what `--resume`, `export`, `average` and `prune` read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use mien::classify::ExpressionNet;
use serde::{Deserialize, Serialize};

use burn::optim::ModuleOptimizer;

use super::network::{load_weights, save_weights};
use super::TrainConfig;
use crate::fsutil::write_atomic;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub images_per_second: f64,
    pub seconds: f64,
    /// Where the epoch ran ([`crate::compute::description`]): a resumed run may change machines,
    /// and images/s means little without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// What a checkpoint folder holds besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CheckpointState {
    pub(super) config: TrainConfig,
    pub(super) num_classes: usize,
    /// Epochs completed.
    pub(super) epoch: usize,
    pub(super) best_val: Option<f64>,
    pub(super) best_epoch: usize,
    pub(super) history: Vec<EpochStats>,
    /// The network's parameter ids in traversal order. The optimizer state is keyed by them, and
    /// burn draws them at random when a network is built, so a resumed run must restore them.
    #[serde(default)]
    pub(super) param_ids: Vec<u64>,
}

/// Collects the float parameters' ids in traversal order.
struct IdCollector(Vec<u64>);

impl ModuleVisitor for IdCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

/// Gives the float parameters the ids of a [`IdCollector`] run, in the same order.
struct IdRestorer {
    ids: Vec<u64>,
    next: usize,
}

impl ModuleMapper for IdRestorer {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(&id) = self.ids.get(self.next) {
            param.id = ParamId::from(id);
        }
        self.next += 1;
        param
    }
}

fn param_ids(net: &ExpressionNet) -> Vec<u64> {
    let mut c = IdCollector(Vec::new());
    net.visit(&mut c);
    c.0
}

/// A checkpoint folder's files. Weights and optimizer state carry the epoch in their names, and
/// `state.json` (renamed into place last) is the commit point: a run killed anywhere, even
/// between two files of one checkpoint, leaves `state.json` naming a complete, consistent set,
/// never this epoch's weights beside last epoch's optimizer.
pub struct Checkpoints {
    pub dir: PathBuf,
    /// Keep `last-NNNN.safetensors` of every epoch (1.3 MB each for the shipped width), so that
    /// `average` can take the mean of the last few. Not a training setting: a run resumed with
    /// or without it trains the same.
    pub keep_epochs: bool,
}

/// The weights a checkpoint folder holds after `epoch` (1-based), where the run kept them.
pub fn epoch_weights(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("last-{epoch:04}.safetensors"))
}

impl Checkpoints {
    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    fn last(&self, epoch: usize) -> PathBuf {
        epoch_weights(&self.dir, epoch)
    }
    fn best(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("best-{epoch:04}.safetensors"))
    }
    fn optimizer(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("optimizer-{epoch:04}.bpk"))
    }

    /// Removes what the committed state no longer names (older epochs, temporaries of a killed
    /// write). Failures only leave clutter behind.
    fn prune(&self, state: &CheckpointState) {
        let keep = [self.last(state.epoch), self.best(state.best_epoch), self.optimizer(state.epoch), self.state()];
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let kept_epoch = self.keep_epochs && name.starts_with("last-") && name.ends_with(".safetensors");
            let ours = !kept_epoch
                && (["last-", "best-", "optimizer-"].iter().any(|s| name.starts_with(s)) || name.ends_with(".tmp"));
            if ours && !keep.contains(&p) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// The committed state of a checkpoint folder.
fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (is {} a run's checkpoints folder, <train --out>/checkpoints?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a mien checkpoint state", path.display()))
}

/// Reduces a run's checkpoints folder to what `--resume` and `export` need (the committed state,
/// its last weights and optimizer state, the best epoch's weights), dropping the epochs that
/// `--keep-epochs` kept for `average`. Returns the number of files removed.
pub fn prune_checkpoints(dir: &Path) -> Result<usize> {
    let state = read_state(dir)?;
    let count = || std::fs::read_dir(dir).map(|e| e.count()).unwrap_or(0);
    let before = count();
    Checkpoints { dir: dir.to_path_buf(), keep_epochs: false }.prune(&state);
    Ok(before.saturating_sub(count()))
}

/// The settings, output count, epoch history and best weights file of a checkpoint folder.
pub fn read_checkpoint(dir: &Path) -> Result<(TrainConfig, usize, Vec<EpochStats>, PathBuf)> {
    let state = read_state(dir)?;
    let best = Checkpoints { dir: dir.to_path_buf(), keep_epochs: false }.best(state.best_epoch);
    Ok((state.config, state.num_classes, state.history, best))
}

impl CheckpointState {
    /// The state of a run that has not trained yet: after the epochs of its schedule that
    /// earlier runs trained (none, for a run that trains a schedule from its start).
    pub(super) fn new(cfg: &TrainConfig, num_classes: usize) -> Self {
        CheckpointState {
            config: cfg.clone(),
            num_classes,
            epoch: cfg.schedule_done,
            best_val: None,
            best_epoch: cfg.schedule_done,
            history: Vec::new(),
            param_ids: Vec::new(),
        }
    }

    /// Records a finished epoch; says whether its model is the run's new best (always, where
    /// the run keeps its last epoch or has no validation split).
    pub(super) fn record(&mut self, stats: EpochStats, net: &ExpressionNet) -> bool {
        let val = stats.val_accuracy;
        self.epoch = stats.epoch;
        self.history.push(stats);
        self.param_ids = param_ids(net);
        let improved = self.config.last_epoch
            || match (val, self.best_val) {
                (Some(v), Some(b)) => v > b,
                (Some(_), None) => true,
                (None, _) => true,
            };
        if improved {
            self.best_val = val;
            self.best_epoch = self.epoch;
        }
        improved
    }

    /// Whether early stopping ends the run: `patience` epochs without a better validation accuracy.
    pub(super) fn patience_ran_out(&self) -> bool {
        let p = self.config.patience;
        p > 0 && self.best_val.is_some() && self.epoch - self.best_epoch >= p
    }
}

impl Checkpoints {
    /// The committed checkpoint of a run with `cfg`, if the folder holds one: its state and its
    /// last weights (with their parameter ids, which key the optimizer state). Refused where it
    /// was written with other settings.
    pub(super) fn resume(
        &self,
        cfg: &TrainConfig,
        num_classes: usize,
        device: &Device,
    ) -> Result<Option<(CheckpointState, ExpressionNet)>> {
        if !self.state().exists() {
            return Ok(None);
        }
        let saved = read_state(&self.dir)?;
        anyhow::ensure!(
            saved.config == *cfg && saved.num_classes == num_classes,
            "{} was written with other settings ({}); resume with the same command, or use a new --checkpoints folder",
            self.state().display(),
            settings_apart(&saved.config, cfg, saved.num_classes, num_classes)
        );
        if saved.history.is_empty() {
            return Ok(None);
        }
        let mut net = load_weights(&self.last(saved.epoch), cfg, num_classes, device)?;
        if saved.param_ids.len() == param_ids(&net).len() {
            net = net.map(&mut IdRestorer { ids: saved.param_ids.clone(), next: 0 });
        }
        Ok(Some((saved, net)))
    }

    /// `optim` with the optimizer state of `state`'s last epoch.
    pub(super) fn load_optimizer(&self, state: &CheckpointState, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let opt = self.optimizer(state.epoch);
        optim.load(&opt).map_err(|e| anyhow::anyhow!("loading {}: {e:?}", opt.display()))
    }

    /// The best epoch's weights of a committed state.
    pub(super) fn best_weights(&self, state: &CheckpointState) -> PathBuf {
        self.best(state.best_epoch)
    }

    /// Writes the checkpoint of `state`'s last epoch: the weights (also as the best epoch's where
    /// it `improved`), the optimizer state, then `state.json`, the commit; then removes what the
    /// committed state no longer names.
    pub(super) fn commit(
        &self,
        state: &CheckpointState,
        net: &ExpressionNet,
        optim: &ModuleOptimizer,
        improved: bool,
    ) -> Result<()> {
        save_weights(net, &self.last(state.epoch))?;
        if improved {
            save_weights(net, &self.best(state.best_epoch))?;
        }
        let opt = self.optimizer(state.epoch);
        crate::fsutil::replace_with(&opt, |tmp| {
            optim.save(tmp).map_err(|e| anyhow::anyhow!("saving {}: {e:?}", tmp.display()))
        })?;
        // Fault injection for the tests: a window in which the new epoch's files exist but are
        // not yet committed, to kill the run mid-checkpoint.
        if let Some(ms) = std::env::var("MIEN_FAULT_CHECKPOINT_PAUSE_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        write_atomic(&self.state(), &serde_json::to_vec_pretty(state)?)?;
        self.prune(state);
        Ok(())
    }
}

/// The settings in which a saved run and this command differ, as `name: saved → now` (nested
/// settings by their dotted path), for the message that refuses to resume.
fn settings_apart(saved: &TrainConfig, now: &TrainConfig, saved_classes: usize, now_classes: usize) -> String {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let name = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&name, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                }
            }
            _ if a != b => out.push(format!("{path}: {} → {}", shown(a), shown(b))),
            _ => {}
        }
    }
    // An f32 setting as it was given (0.9, not 0.8999999761581421).
    fn shown(v: &serde_json::Value) -> String {
        match v.as_f64() {
            Some(x) if v.is_f64() && f64::from(x as f32) == x => (x as f32).to_string(),
            _ => v.to_string(),
        }
    }
    let mut out = Vec::new();
    if saved_classes != now_classes {
        out.push(format!("classes: {saved_classes} → {now_classes}"));
    }
    match (serde_json::to_value(saved), serde_json::to_value(now)) {
        (Ok(a), Ok(b)) => walk("", &a, &b, &mut out),
        _ => out.push("the settings could not be compared".into()),
    }
    if out.is_empty() {
        // Equal once written: a setting the file does not hold, or a number its text rounds.
        out.push("the same once written; a number may differ past what the file keeps".into());
    }
    out.join(", ")
}
